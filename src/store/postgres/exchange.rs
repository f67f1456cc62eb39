//! Export (`xep/export.md`): the same logical records as every backend, so
//! a sled store moves here (and back) by an export and an import (the
//! import is `export::import_record`, over the store's operations, with
//! the `import_*` ones below).

use ::postgres::{Client, IsolationLevel, Row, Transaction};

use super::db::Db;

use super::{
    DESK_COLUMNS, INBOX_COLUMNS, MESSAGE_COLUMNS, ROOM_MESSAGE_COLUMNS, big, conv_from,
    desk_event_from, desk_from, inbox_from, message_from, pg_err, room_message_from, unbig,
};
use crate::store::export::{ExportError, ExportRecord};
use crate::store::{InboxEntry, Membership, Seq, StoreResult};

/// Rows exported per round trip. The export holds one page of rows at a
/// time (and the record being written), whatever the size of the store: at
/// most this many rows of the widest table, a room message or held stanza
/// of up to `limits.max_stanza_bytes` each.
#[cfg(not(test))]
const EXPORT_PAGE: i32 = 1000;
/// Small in the tests, so that their tables span several pages.
#[cfg(test)]
pub(super) const EXPORT_PAGE: i32 = 16;

/// Hands every record to `each`, table by table, from one snapshot (a
/// read-only REPEATABLE READ transaction), each table streamed through a
/// portal in pages of [`EXPORT_PAGE`] rows.
///
/// Called after a flush, so no writes are pending; if another thread wrote
/// in between, the transaction is theirs (PostgreSQL only warns of the
/// second BEGIN) and it is committed at the end, as their flush would.
pub(super) fn export_in(
    client: &mut Client,
    each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err)?;
    let result = export_tables(&mut tx, each);
    // Read only: COMMIT ends it like ROLLBACK would, and keeps what
    // another thread's writes put in it.
    let ended = tx.commit().map_err(pg_err);
    result?;
    ended?;
    Ok(())
}

/// Runs `sql` through a portal, handing each row to `f`, a page at a time.
fn each_row(
    tx: &mut Transaction<'_>,
    sql: &str,
    f: &mut dyn FnMut(&Row) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let portal = tx.bind(sql, &[]).map_err(pg_err)?;
    loop {
        let rows = tx.query_portal(&portal, EXPORT_PAGE).map_err(pg_err)?;
        for r in &rows {
            f(r)?;
        }
        if rows.len() < EXPORT_PAGE as usize {
            return Ok(());
        }
    }
}

fn export_tables(
    tx: &mut Transaction<'_>,
    each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    // 1:1 messages, with the recipient's read time (the first move of their
    // tidemark at or past the message).
    each_row(
        tx,
        &format!(
            "SELECT {MESSAGE_COLUMNS}, (SELECT at FROM mark_log l WHERE l.conv = m.conv \
                 AND l.reader = m.recipient AND l.seq >= m.seq ORDER BY l.seq LIMIT 1) \
                 FROM messages m ORDER BY seq"
        ),
        &mut |r| {
            let conv = conv_from(r.get(1))?;
            let refused: bool = r.get(14);
            let preview: Option<String> = r.get(15);
            let read_at = r.get::<_, Option<i64>>(16).map(unbig);
            each(ExportRecord::message(
                conv,
                unbig(r.get(0)),
                message_from(r),
                read_at,
                refused,
                preview,
            ))?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT conv, reader, seq FROM marks ORDER BY conv, reader",
        &mut |r| {
            each(ExportRecord::Mark {
                conversation: conv_from(r.get(0))?,
                reader: r.get(1),
                seq: unbig(r.get(2)),
            })?;
            Ok(())
        },
    )?;
    // A party's read times went with the messages; the log of the others
    // (rooms, private tidemarks) goes as it is.
    each_row(
        tx,
        "SELECT conv, reader, seq, at FROM mark_log ORDER BY conv, reader, seq",
        &mut |r| {
            let conversation = conv_from(r.get(0))?;
            let reader: String = r.get(1);
            if conversation.side_of(&reader).is_some() {
                return Ok(());
            }
            each(ExportRecord::MarkMoved {
                conversation,
                reader,
                seq: unbig(r.get(2)),
                at: unbig(r.get(3)),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT contact, watcher FROM grants ORDER BY contact, watcher",
        &mut |r| {
            each(ExportRecord::Grant {
                contact: r.get(0),
                watcher: r.get(1),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT recipient, seq, conv, stanza FROM queue ORDER BY recipient, seq",
        &mut |r| {
            let stanza: Vec<u8> = r.get(3);
            each(ExportRecord::Held {
                recipient: r.get(0),
                seq: unbig(r.get(1)),
                conversation: conv_from(r.get(2))?,
                stanza: String::from_utf8_lossy(&stanza).into_owned(),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT room, created_at, fixed_members FROM rooms ORDER BY room",
        &mut |r| {
            each(ExportRecord::Room {
                room: r.get(0),
                created_at: unbig(r.get(1)),
                fixed_members: r.get(2),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT room, member, joined, left_at FROM memberships ORDER BY room, member",
        &mut |r| {
            each(ExportRecord::member(
                r.get(0),
                r.get(1),
                Membership {
                    joined: unbig(r.get(2)),
                    left: r.get::<_, Option<i64>>(3).map(unbig),
                },
            ))?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        &format!("SELECT {ROOM_MESSAGE_COLUMNS}, room FROM room_messages ORDER BY room, seq"),
        &mut |r| {
            let (seq, m) = room_message_from(r);
            each(ExportRecord::room_message(r.get(7), seq, m))?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT creator, room FROM room_creators ORDER BY creator, room",
        &mut |r| {
            each(ExportRecord::RoomCreator {
                creator: r.get(0),
                room: r.get(1),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT jid, enabled FROM read_receipts_prefs ORDER BY jid",
        &mut |r| {
            each(ExportRecord::ReadReceipts {
                user: r.get(0),
                enabled: r.get(1),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT room, nick, jid, sessions, presence FROM occupants ORDER BY room, nick",
        &mut |r| {
            each(ExportRecord::Occupant {
                room: r.get(0),
                nick: r.get(1),
                user: r.get(2),
                sessions: r.get(3),
                presence: r.get(4),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT room, text, nick, setter, at, config FROM room_subjects ORDER BY room",
        &mut |r| {
            each(ExportRecord::RoomSubject {
                room: r.get(0),
                text: r.get(1),
                nick: r.get(2),
                setter: r.get(3),
                at: unbig(r.get(4)),
                config: r.get(5),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        &format!(
            "SELECT {INBOX_COLUMNS}, jid, ARRAY(SELECT seq FROM inbox_unread u \
                 WHERE u.jid = inbox.jid AND u.contact = inbox.contact ORDER BY seq) \
                 FROM inbox ORDER BY jid, contact"
        ),
        &mut |r| {
            let e = inbox_from(r);
            let unread: Vec<i64> = r.get(10);
            each(ExportRecord::InboxEntry {
                user: r.get(9),
                contact: e.contact,
                latest: e.latest,
                latest_at: e.latest_at,
                latest_by_contact: e.latest_by_contact,
                own_latest: e.own_latest,
                unread: unread.into_iter().map(unbig).collect(),
                missed: e.missed,
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT jid, room, seq FROM inbox_room_sent ORDER BY jid, room",
        &mut |r| {
            each(ExportRecord::InboxRoomSent {
                user: r.get(0),
                room: r.get(1),
                seq: unbig(r.get(2)),
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        &format!("SELECT {DESK_COLUMNS}, desk FROM desk_conversations ORDER BY desk, customer"),
        &mut |r| {
            let conversation = desk_from(r)?;
            each(ExportRecord::DeskConversation {
                desk: r.get(9),
                customer: conversation.customer.clone(),
                conversation,
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT seq, at, by_whom, kind, desk, customer FROM desk_events \
             ORDER BY desk, customer, seq",
        &mut |r| {
            let (seq, event) = desk_event_from(r)?;
            each(ExportRecord::DeskEvent {
                desk: r.get(4),
                customer: r.get(5),
                seq,
                at: event.at,
                by: event.by,
                event: event.kind,
            })?;
            Ok(())
        },
    )?;
    each_row(
        tx,
        "SELECT desk, customer, seq, agent FROM desk_authors ORDER BY desk, customer, seq",
        &mut |r| {
            each(ExportRecord::DeskAuthor {
                desk: r.get(0),
                customer: r.get(1),
                seq: unbig(r.get(2)),
                agent: r.get(3),
            })?;
            Ok(())
        },
    )?;
    Ok(())
}

/// An entry of the conversation list as exported (checked by the import);
/// its unread count follows from the rows (migration 2's trigger).
pub(super) fn import_inbox_entry_in(
    c: &mut Db<'_>,
    user: &str,
    e: &InboxEntry,
    unread: &[Seq],
) -> StoreResult<()> {
    let missed = e.missed;
    c.execute(
        "INSERT INTO inbox (jid, contact, latest, latest_at, latest_by_contact, own_latest, \
         missed_count, missed_first_at, missed_last_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (jid, contact) DO UPDATE SET \
         latest = EXCLUDED.latest, latest_at = EXCLUDED.latest_at, \
         latest_by_contact = EXCLUDED.latest_by_contact, own_latest = EXCLUDED.own_latest, \
         missed_count = EXCLUDED.missed_count, missed_first_at = EXCLUDED.missed_first_at, \
         missed_last_at = EXCLUDED.missed_last_at",
        &[
            &user,
            &e.contact,
            &big(e.latest),
            &big(e.latest_at),
            &e.latest_by_contact,
            &big(e.own_latest),
            &missed.map(|m| m.count as i32),
            &missed.map(|m| big(m.first_at)),
            &missed.map(|m| big(m.last_at)),
        ],
    )
    .map_err(pg_err)?;
    let unread: Vec<i64> = unread.iter().copied().map(big).collect();
    c.execute(
        "INSERT INTO inbox_unread (jid, contact, seq) SELECT $1, $2, s FROM UNNEST($3::BIGINT[]) s \
         ON CONFLICT DO NOTHING",
        &[&user, &e.contact, &unread],
    )
    .map_err(pg_err)?;
    Ok(())
}
