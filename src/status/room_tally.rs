//! Who of a room message's recipients read it: the counts behind its
//! "some read" / "all read", from the store alone (the status query, the
//! `status` command and the conversation list share it).

use crate::store::{ConversationKey, Millis, RoomMessage, Seq, Store, StoreResult};

/// Who of a room message's recipients read it: the counts behind its
/// "some read" / "all read", for the status query and the `status` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTally {
    /// `sent`, `some-read` or `all-read`.
    pub summary: &'static str,
    /// How many recipients read it.
    pub read: usize,
    /// Each member it was sent to: when they read it, and whether they
    /// send read receipts (those who do not are listed, never waited for).
    pub recipients: Vec<(String, Option<Millis>, bool)>,
    /// When the last recipient read it, once all have.
    pub all_read_at: Option<Millis>,
}

/// Tallies message `seq` of `room_s`: one recipient per member it was sent
/// to, O(members) reads. `default_receipts` is `status.send_read_receipts`,
/// for members who never chose.
pub fn tally_in(
    store: &dyn Store,
    default_receipts: bool,
    room_s: &str,
    seq: Seq,
    message: &RoomMessage,
) -> StoreResult<RoomTally> {
    let conv = ConversationKey::room(room_s);
    let mut recipients = Vec::new();
    for (member, m) in store.memberships(room_s)? {
        if member == message.sender || !m.covers(seq) {
            continue;
        }
        let shows_reads = store
            .read_receipts_pref(&member)?
            .unwrap_or(default_receipts);
        let read = if message.readable && shows_reads {
            store.read_at(&conv, &member, seq)?
        } else {
            None
        };
        recipients.push((member, read, shows_reads));
    }
    let read_count = recipients.iter().filter(|(_, r, _)| r.is_some()).count();
    // Those who turned read receipts off are listed but not waited for, as
    // with the all-read notice.
    let counted = recipients.iter().filter(|(_, _, shows)| *shows).count();
    let summary = if read_count == 0 {
        "sent"
    } else if read_count == counted {
        "all-read"
    } else {
        "some-read"
    };
    let all_read_at = (summary == "all-read").then(|| {
        recipients
            .iter()
            .filter_map(|(_, r, _)| *r)
            .max()
            .unwrap_or(0)
    });
    Ok(RoomTally {
        summary,
        read: read_count,
        recipients,
        all_read_at,
    })
}

/// [`tally_in`]'s summary alone (`sent`, `some-read` or `all-read`), which
/// stops at the first member who read and the first who did not: a list of
/// conversations shows this for each room without reading every member's
/// tidemark when some have read.
pub fn summary_in(
    store: &dyn Store,
    default_receipts: bool,
    room_s: &str,
    seq: Seq,
    message: &RoomMessage,
) -> StoreResult<&'static str> {
    let conv = ConversationKey::room(room_s);
    let (mut read, mut unread) = (false, false);
    for (member, m) in store.memberships(room_s)? {
        if member == message.sender || !m.covers(seq) {
            continue;
        }
        // Those who hide their reads are not waited for.
        let shows_reads = store
            .read_receipts_pref(&member)?
            .unwrap_or(default_receipts);
        if !shows_reads {
            continue;
        }
        let has_read = message.readable && store.read_at(&conv, &member, seq)?.is_some();
        if has_read {
            read = true;
        } else {
            unread = true;
        }
        if read && unread {
            return Ok("some-read");
        }
    }
    Ok(if read { "all-read" } else { "sent" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Membership, SledStore};

    #[test]
    fn the_summary_is_the_tallys_whoever_read() {
        let store = SledStore::temporary().unwrap();
        let room = "team@chat.x";
        for m in ["a@x", "b@x", "c@x", "d@x"] {
            store
                .set_membership(
                    room,
                    m,
                    &Membership {
                        joined: 0,
                        left: None,
                    },
                )
                .unwrap();
        }
        // d hides their reads: never waited for.
        store.set_read_receipts_pref("d@x", false).unwrap();
        let message = RoomMessage {
            id: "m".into(),
            stanza_id: "s".into(),
            sender: "a@x".into(),
            sent_at: 1,
            readable: true,
            stanza: vec![],
        };
        store.put_room_message(room, 5, &message).unwrap();
        let conv = ConversationKey::room(room);
        let check = |want: &str| {
            let tally = tally_in(&store, true, room, 5, &message).unwrap();
            let summary = summary_in(&store, true, room, 5, &message).unwrap();
            assert_eq!((tally.summary, summary), (want, want));
        };
        check("sent");
        store.advance_mark(&conv, "b@x", 5, 10).unwrap();
        check("some-read");
        store.advance_mark(&conv, "c@x", 5, 11).unwrap();
        check("all-read");
    }
}
