//! The store contract against a real PostgreSQL, when one is named:
//! `TIDEMARK_PG_URL` (say `$(cat DIR/url)` after `scripts/postgres.sh start
//! DIR`) and `TIDEMARK_PG_PASSWORD_FILE` (`DIR/password`). Each check runs
//! in a schema of its own, dropped after it. Without the URL each check
//! says it was skipped and passes: the sled contract runs everywhere, this
//! one where a cluster was started (scripts/test.sh starts one).

use super::{PgOptions, PgStore};

/// A fresh store, or `None` (with a note on stderr) when no database is
/// named.
fn fresh() -> Option<PgStore> {
    let Ok(url) = std::env::var("TIDEMARK_PG_URL") else {
        eprintln!("skipped: TIDEMARK_PG_URL is not set (scripts/postgres.sh start DIR prints one)");
        return None;
    };
    let password = std::env::var_os("TIDEMARK_PG_PASSWORD_FILE").map(std::path::PathBuf::from);
    let options = PgOptions::new(&url, password.as_deref()).expect("password file");
    Some(PgStore::temporary(&options).expect("connect to TIDEMARK_PG_URL"))
}

crate::store_contract_tests!(match fresh() {
    Some(store) => store,
    None => return,
});

fn sorted_body(dump: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(dump)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The move issue 12 asks for: a sled store exported and imported here
/// comes out record for record, and goes back into sled the same way.
#[test]
fn sled_exports_import_here_and_back() {
    use crate::store::export::{export, import};
    use crate::store::{SledStore, Store};
    let Some(pg) = fresh() else { return };
    let sled = SledStore::temporary().unwrap();
    crate::store::sled_store::tests::everything(&sled);
    let mut from_sled = Vec::new();
    let n = export(&sled, &mut from_sled).unwrap();
    assert_eq!(import(&pg, &from_sled[..]).unwrap(), n);
    let mut from_pg = Vec::new();
    assert_eq!(export(&pg, &mut from_pg).unwrap(), n);
    assert_eq!(sorted_body(&from_pg), sorted_body(&from_sled));
    assert!(pg.next_seq().unwrap() > sled.next_seq().unwrap() - 1);
    assert!(!pg.is_empty().unwrap());
    // The counts are not in the export: the import made them as the rows
    // went in.
    for agent in ["alice@x", "bob@x"] {
        assert_eq!(
            pg.desk_counts("support", agent).unwrap(),
            sled.desk_counts("support", agent).unwrap()
        );
    }
    for user in ["alice@x", "bob@x"] {
        assert_eq!(
            pg.inbox_unread_total(user).unwrap(),
            sled.inbox_unread_total(user).unwrap()
        );
        assert_eq!(
            pg.refusal_count(user).unwrap(),
            sled.refusal_count(user).unwrap()
        );
    }
    assert_eq!(
        pg.room_messages_after("team@chat", 0).unwrap(),
        sled.room_messages_after("team@chat", 0).unwrap()
    );

    let back = SledStore::temporary().unwrap();
    assert_eq!(import(&back, &from_pg[..]).unwrap(), n);
    let mut again = Vec::new();
    export(&back, &mut again).unwrap();
    assert_eq!(sorted_body(&again), sorted_body(&from_sled));
}

/// Another store on `store`'s tables (its schema), which it leaves to
/// `store` to drop.
fn beside(store: &PgStore) -> PgStore {
    let mut session = store.options.session().unwrap();
    if let Some(name) = &store.options.search_path {
        session
            .batch_execute(&format!("SET search_path TO {name}"))
            .unwrap();
    }
    PgStore {
        conn: std::sync::Mutex::new(super::Conn::new(session, None)),
        options: store.options.clone(),
    }
}

/// Another component pointed at the tables a tidemark serves from (a
/// copied config) is refused and says why, and takes nothing: the serving
/// one goes on, and a standby of its stands by.
#[test]
fn a_second_component_on_the_same_tables_is_refused() {
    let Some(first) = fresh() else { return };
    let component = format!("tables-{}.localhost", std::process::id());
    assert!(first.try_lead(&component).unwrap());
    let second = beside(&first);
    let err = second
        .try_lead(&format!("other.{component}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another component is served from these tables"),
        "{err}"
    );
    assert!(
        err.contains(&format!("give other.{component} a database")),
        "{err}"
    );
    // It kept no lock: a third is refused the same way (not told that
    // the second serves), and the serving component's standby stands by.
    let third = beside(&first);
    assert!(third.try_lead(&format!("other.{component}")).is_err());
    assert!(!second.try_lead(&component).unwrap());
    assert!(
        first.try_lead(&component).unwrap(),
        "the first still serves"
    );
}

/// Two tidemarks on one database: the first to ask serves, the second
/// stands by until the first's session ends, then takes over. Another
/// component with tables of its own (here a schema; a database of its own
/// the same) is not held up.
#[test]
fn one_serves_the_others_stand_by() {
    let (Some(first), Some(second)) = (fresh(), fresh()) else {
        return;
    };
    // A name of this run's own: other checks run at the same time.
    let component = format!("leader-{}.localhost", std::process::id());
    assert!(first.try_lead(&component).unwrap());
    assert!(!second.try_lead(&component).unwrap());
    assert!(
        second.try_lead(&format!("other.{component}")).unwrap(),
        "another component's lock is another key"
    );
    drop(first);
    // The server ends the session a moment after the client closes it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !second.try_lead(&component).unwrap() {
        assert!(std::time::Instant::now() < deadline, "never took over");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A session the server ends (as on a restart or a failover) makes every
/// later call say the connection is lost, not a generic failure: the
/// service starts over on that, as a standby if another took over.
#[test]
fn a_lost_session_says_so() {
    use crate::store::{Store, StoreError};
    let (Some(store), Some(admin)) = (fresh(), fresh()) else {
        return;
    };
    let pid = store.session_pid().unwrap();
    admin
        .read(|c| {
            c.execute("SELECT pg_terminate_backend($1::int)", &[&(pid as i32)])
                .map_err(super::pg_err)
        })
        .unwrap();
    let err = (0..50)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            store.next_seq().err()
        })
        .expect("the store noticed");
    assert!(matches!(err, StoreError::ConnectionLost(_)), "{err}");
    assert!(matches!(
        store.flush().and_then(|_| store.next_seq()),
        Err(StoreError::ConnectionLost(_))
    ));
}

/// Migration 2 counts the rows a database at version 1 already holds: the
/// kept counts then answer as counting the rows did, and go on from there.
#[test]
fn migration_2_counts_the_rows_already_there() {
    use crate::store::{ConversationKey, DeskState, ExpiryCursor, Store, ViewCount};
    let Ok(url) = std::env::var("TIDEMARK_PG_URL") else {
        eprintln!("skipped: TIDEMARK_PG_URL is not set");
        return;
    };
    let password = std::env::var_os("TIDEMARK_PG_PASSWORD_FILE").map(std::path::PathBuf::from);
    let schema = format!("tidemark_mig_{}", std::process::id());
    let options = PgOptions::new(&url, password.as_deref()).unwrap();
    let mut client = options.connect().unwrap();
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
             SET search_path TO {schema}"
        ))
        .unwrap();
    super::schema::migrate_to(&mut client, 1).unwrap();
    let conv = serde_json::to_string(&ConversationKey::direct("a@x", "b@x")).unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO desk_conversations VALUES \
               ('support', 'c1@x', 'open', NULL, 'alice@x', 5, 5, 5, 0, 1), \
               ('support', 'c2@x', 'snoozed', 900, 'alice@x', 6, 6, 6, 6, 1), \
               ('support', 'c3@x', 'open', NULL, NULL, 7, 7, 7, 0, 1), \
               ('support', 'c4@x', 'done', NULL, 'bob@x', 8, 8, 8, 0, 1); \
             INSERT INTO inbox (jid, contact, latest, latest_at, latest_by_contact, own_latest) \
               VALUES ('u@x', 'a@x', 3, 3, TRUE, 0), ('u@x', 'b@x', 4, 4, TRUE, 0); \
             INSERT INTO inbox_unread VALUES ('u@x', 'a@x', 1), ('u@x', 'a@x', 3), \
               ('u@x', 'b@x', 4); \
             INSERT INTO messages (seq, conv, id, sender, recipient, sent_at, wants_receipt, \
               wants_markers, readable, queued, refused) VALUES \
               (10, '{conv}', 'r1', 'a@x', 'b@x', 100, TRUE, TRUE, TRUE, FALSE, TRUE), \
               (11, '{conv}', 'r2', 'a@x', 'b@x', 100, TRUE, TRUE, TRUE, FALSE, TRUE), \
               (12, '{conv}', 'm1', 'a@x', 'b@x', 100, TRUE, TRUE, TRUE, FALSE, FALSE); \
             INSERT INTO room_messages VALUES \
               ('r@chat', 20, 'g1', 's1', 'a@x', 100, TRUE, ''), \
               ('r@chat', 21, 'g2', 's2', 'a@x', 900, TRUE, ''), \
               ('r@chat', 22, 'g3', 's3', 'a@x', 900, TRUE, '');"
        ))
        .unwrap();
    drop(client);
    // The store opens the schema (search_path from the URL) and migrates it.
    let sep = if url.contains('?') { '&' } else { '?' };
    let at_schema = PgOptions {
        url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
        ..options.clone()
    };
    let store = PgStore::open(&at_schema).unwrap();
    let c = store.desk_counts("support", "alice@x").unwrap();
    let pair = |v: ViewCount| (v.conversations, v.unread);
    assert_eq!(pair(c.mine), (2, 1));
    assert_eq!(pair(c.unassigned), (1, 1));
    assert_eq!(pair(c.all), (3, 2));
    assert_eq!(pair(c.done), (1, 1));
    assert_eq!(
        pair(store.desk_counts("support", "bob@x").unwrap().mine),
        (0, 0)
    );
    assert_eq!(store.inbox_unread_total("u@x").unwrap(), 3);
    assert_eq!(store.inbox_entry("u@x", "a@x").unwrap().unwrap().unread, 2);
    assert_eq!(store.refusal_count("a@x").unwrap(), 2);
    assert_eq!(store.room_messages_after("r@chat", 0).unwrap(), 3);
    assert_eq!(store.room_messages_after("r@chat", 20).unwrap(), 2);
    // And they go on from the counted rows.
    let mut c2 = store.desk_conversation("support", "c2@x").unwrap().unwrap();
    c2.state = DeskState::Done;
    store.put_desk_conversation("support", &c2).unwrap();
    assert_eq!(
        pair(store.desk_counts("support", "alice@x").unwrap().done),
        (2, 1)
    );
    store.inbox_read("u@x", "a@x", 3).unwrap();
    assert_eq!(store.inbox_unread_total("u@x").unwrap(), 1);
    let mut m = store
        .room_message_by_stanza_id("r@chat", "s3")
        .unwrap()
        .unwrap()
        .1;
    m.stanza_id = "s4".into();
    store.put_room_message("r@chat", 23, &m).unwrap();
    assert_eq!(store.room_messages_after("r@chat", 20).unwrap(), 3);
    // Retention takes the room's oldest message and both refusals.
    let mut cursor = ExpiryCursor::default();
    while let Some(next) = store.expire(500, &cursor, 100).unwrap().next {
        cursor = next;
    }
    assert_eq!(store.room_messages_after("r@chat", 0).unwrap(), 3);
    assert_eq!(store.refusal_count("a@x").unwrap(), 0);
    store.flush().unwrap();
    drop(store);
    let mut client = options.connect().unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

/// The export streams each table through a portal, a page at a time: a
/// table of several pages comes out whole, in order, once, with the writes
/// not yet flushed; and a failing writer stops it at once.
#[test]
fn an_export_streams_tables_larger_than_a_page() {
    use crate::store::export::{ExportError, ExportRecord};
    use crate::store::{ConversationKey, MessageRecord, RoomMessage, Store};
    let Some(pg) = fresh() else { return };
    let page = super::exchange::EXPORT_PAGE as u64;
    let conv = ConversationKey::direct("a@x", "b@x");
    let n = 5 * page + 3;
    for seq in 1..=n {
        let record = MessageRecord::sent("a@x", "b@x", &format!("m{seq}"), seq * 10);
        pg.put_message(&conv, seq, &record).unwrap();
        let m = RoomMessage {
            id: format!("g{seq}"),
            stanza_id: format!("s{seq}"),
            sender: "a@x".into(),
            sent_at: seq * 10,
            readable: true,
            stanza: b"<message type='groupchat'/>".to_vec(),
        };
        pg.put_room_message("r@chat", seq, &m).unwrap();
    }
    // Not flushed: the export commits them first.
    let (mut messages, mut room_messages) = (Vec::new(), Vec::new());
    pg.export_records(&mut |r| {
        match r {
            ExportRecord::Message { seq, .. } => messages.push(seq),
            ExportRecord::RoomMessage { seq, .. } => room_messages.push(seq),
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    let all: Vec<u64> = (1..=n).collect();
    assert_eq!(messages, all);
    assert_eq!(room_messages, all);

    let mut seen = 0;
    let stopped = pg.export_records(&mut |_| {
        seen += 1;
        if seen == page + 2 {
            return Err(ExportError::Io(std::io::Error::other("disk full")));
        }
        Ok(())
    });
    assert!(matches!(stopped, Err(ExportError::Io(_))), "{stopped:?}");
    assert_eq!(seen, page + 2, "nothing handed out after the failure");
    // The store goes on as before.
    assert_eq!(pg.message(&conv, n).unwrap().unwrap().id, format!("m{n}"));
}

/// Writes are sent without waiting for their answer (`session.rs`): one
/// that the server refuses still costs the whole batch, at the flush or at
/// the next statement that is waited for, and never commits half of it; the
/// flush says the batch was lost (the service starts over), so no answer of
/// the batch goes out.
#[test]
fn a_refused_write_not_waited_for_rolls_its_batch_back() {
    use crate::store::{Store, StoreError};
    let Some(store) = fresh() else { return };
    // PostgreSQL's text holds no NUL: the server refuses the second write.
    store
        .set_presence_allowed("alice@x", "bob@x", true)
        .unwrap();
    store
        .set_presence_allowed("carol@x", "bad\0@x", true)
        .unwrap();
    let err = store.flush().unwrap_err();
    assert!(matches!(err, StoreError::BatchLost(_)), "{err}");
    assert!(
        !store.presence_allowed("alice@x", "bob@x").unwrap(),
        "the write before the refused one went with the batch"
    );
    // Seen by a read in the same batch instead (one that asks the server:
    // grants already known are answered without it).
    store
        .set_presence_allowed("carol@x", "bad\0@x", true)
        .unwrap();
    let err = store.has_watchers("alice@x").unwrap_err().to_string();
    assert!(err.contains("rolled back"), "{err}");
    // A write after it in the same batch is not committed either.
    store.set_presence_allowed("dan@x", "bob@x", true).unwrap();
    let err = store.flush().unwrap_err();
    assert!(matches!(err, StoreError::BatchLost(_)), "{err}");
    assert!(!store.presence_allowed("dan@x", "bob@x").unwrap());
    next_batch_commits(&store);
}

/// The session goes on after a failure: the next batch commits.
fn next_batch_commits(store: &PgStore) {
    use crate::store::Store;
    store.set_presence_allowed("erin@x", "bob@x", true).unwrap();
    store.flush().unwrap();
    assert!(store.presence_allowed("erin@x", "bob@x").unwrap());
}

/// What the serving tidemark knows without asking (`known.rs`) answers as
/// the database would: a message rewritten under another id, marks moved
/// without waiting, and the same answers once forgotten and read back.
#[test]
fn what_is_known_answers_as_the_database_does() {
    use crate::store::{ConversationKey, MessageRecord, Store};
    let Some(store) = fresh() else { return };
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let seq = store.next_seq().unwrap();
    store
        .put_message(&conv, seq, &MessageRecord::sent("alice@x", "bob@x", "a", 1))
        .unwrap();
    assert_eq!(
        store
            .find_message(&conv, "alice@x", "a")
            .unwrap()
            .unwrap()
            .0,
        seq
    );
    let mut delivered = MessageRecord::sent("alice@x", "bob@x", "b", 1);
    delivered.delivered_at = Some(2);
    store.put_message(&conv, seq, &delivered).unwrap();
    // Another conversation cannot take the sequence number, known or not.
    let other = ConversationKey::direct("carol@x", "dave@x");
    assert!(
        store
            .put_message(
                &other,
                seq,
                &MessageRecord::sent("carol@x", "dave@x", "c", 1)
            )
            .is_err()
    );
    assert!(store.advance_mark(&conv, "bob@x", seq, 3).unwrap());
    assert!(!store.advance_mark(&conv, "bob@x", seq - 1, 4).unwrap());
    assert!(store.advance_mark(&conv, "bob@x", seq + 5, 5).unwrap());
    store.flush().unwrap();
    let answers = |store: &PgStore| {
        (
            store.find_message(&conv, "alice@x", "a").unwrap(),
            store.find_message(&conv, "alice@x", "b").unwrap(),
            store.message(&conv, seq).unwrap(),
            store.message(&other, seq).unwrap(),
            store.mark(&conv, "bob@x").unwrap(),
        )
    };
    let known = answers(&store);
    assert_eq!(known.0, None, "the row was rewritten with id b");
    assert_eq!(known.1, Some((seq, delivered.clone())));
    assert_eq!(known.2, Some(delivered));
    assert_eq!(known.3, None);
    assert_eq!(known.4, seq + 5);
    store.lock().unwrap().known.forget();
    assert_eq!(answers(&store), known, "the database says the same");
}

/// Two long JIDs make a key too large for PostgreSQL to index; anyone on
/// the federation chooses JIDs. Such a write is waited for (`db.rs`) and
/// each stanza's writes have a savepoint of their own (`PgStore::apply`),
/// so it fails that stanza alone, at once: the stanzas before it in the
/// batch, whose answers are gathered, keep their writes, and so does the
/// stanza after it.
#[test]
fn a_key_too_long_to_index_fails_its_own_stanza_alone() {
    use crate::store::write::Write;
    use crate::store::{ConversationKey, MessageRecord, Store};
    let Some(store) = fresh() else { return };
    // Varied characters, so that PostgreSQL's compression cannot shrink the
    // key under the limit.
    let mut x: u64 = 7;
    let mut long = || {
        let local: String = (0..1000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x >> 33) as usize % 36])
            })
            .collect();
        format!("{local}@{}.example", &local[..900])
    };
    let (contact, watcher) = (long(), long());
    let grant = |contact: &str, watcher: &str| Write::PresenceAllowed {
        contact: contact.to_owned(),
        watcher: watcher.to_owned(),
        allowed: true,
    };
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let message = |seq, id: &str| Write::Message {
        conv: conv.clone(),
        seq,
        record: MessageRecord::sent("alice@x", "bob@x", id, 1),
    };
    let (first, second) = (store.next_seq().unwrap(), store.next_seq().unwrap());
    store
        .apply(&[message(first, "before"), grant("alice@x", "bob@x")])
        .unwrap();
    // The refused stanza wrote a message before its refused grant.
    let err = store
        .apply(&[message(second, "refused"), grant(&contact, &watcher)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("54000"), "{err}");
    assert!(
        err.contains("this stanza's writes were rolled back"),
        "{err}"
    );
    store.apply(&[grant("carol@x", "bob@x")]).unwrap();
    store.flush().unwrap();
    assert!(
        store
            .find_message(&conv, "alice@x", "before")
            .unwrap()
            .is_some()
    );
    assert!(store.presence_allowed("alice@x", "bob@x").unwrap());
    assert!(store.presence_allowed("carol@x", "bob@x").unwrap());
    assert!(
        store
            .find_message(&conv, "alice@x", "refused")
            .unwrap()
            .is_none(),
        "the refused stanza's first write went with it"
    );
    assert!(!store.presence_allowed(&contact, &watcher).unwrap());
    next_batch_commits(&store);
}

/// Which stanzas get a savepoint (`PgStore::apply`): those whose writes
/// hold text enough for a key PostgreSQL cannot index, and not the usual
/// ones, each of which a savepoint would slow down by a sixth.
#[test]
fn only_writes_with_long_text_may_be_refused() {
    use crate::store::write::Write;
    use crate::store::{ConversationKey, MessageRecord};
    let message = |sender: &str, id: &str| Write::Message {
        conv: ConversationKey::direct(sender, "bob@example.org"),
        seq: 7,
        record: MessageRecord::sent(sender, "bob@example.org", id, 1_700_000_000_000),
    };
    assert!(!super::may_be_refused(&message(
        "alice@example.org",
        "a79613b4-a053-4bd0-bdaa-e278d1bb4c3a"
    )));
    let long_jid = format!("{}@{}.example", "a".repeat(1000), "b".repeat(900));
    assert!(super::may_be_refused(&message(&long_jid, "m1")));
    assert!(super::may_be_refused(&message(
        "alice@example.org",
        &"i".repeat(2100)
    )));
    // One long JID in a grant's key stays under the index's limit; two
    // do not.
    let grant = |watcher: &str| Write::PresenceAllowed {
        contact: long_jid.clone(),
        watcher: watcher.into(),
        allowed: true,
    };
    assert!(!super::may_be_refused(&grant("bob@example.org")));
    assert!(super::may_be_refused(&grant(&long_jid.replace('a', "c"))));
}
