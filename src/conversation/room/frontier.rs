//! How far a room's members have read: each member's tidemark moves
//! forward only (DESIGN.md "one tidemark per reader"), and the room keeps
//! the tidemarks of its members in an ordered multiset, so the "all read"
//! frontier (the lowest tidemark) is known in O(log members) per marker.
//! When the frontier passes messages, their senders hear that everyone read
//! them.

use std::collections::{BTreeMap, HashMap};

use super::{LiveRoom, Out};
use crate::context::Context;
use crate::metrics::METRICS;
use crate::stanza::{element, ns, xep0082};
use crate::status::private_mark::{own_mark, private_reader};
use crate::store::{ConversationKey, Millis, RoomMessage, Seq, StoreError, Write};

/// The lowest tidemark among a room's members who send read receipts, kept
/// as an ordered multiset of tidemarks.
#[derive(Debug, Default)]
pub(super) struct Frontier {
    marks: HashMap<String, Seq>,
    counts: BTreeMap<Seq, u32>,
}

impl Frontier {
    pub fn min(&self) -> Option<Seq> {
        self.counts.keys().next().copied()
    }

    pub fn set(&mut self, reader: &str, seq: Seq) {
        if let Some(old) = self.marks.insert(reader.to_owned(), seq) {
            self.decrement(old);
        }
        *self.counts.entry(seq).or_default() += 1;
    }

    fn decrement(&mut self, seq: Seq) {
        if let Some(n) = self.counts.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&seq);
            }
        }
    }
}

/// What a live room knows of its members' reading, loaded from the store.
#[derive(Debug)]
pub(super) struct ReadState {
    frontier: Frontier,
    /// Current members, read receipts or not.
    pub(super) members: usize,
}

/// Loads the room's read state from the store: each current member who
/// shows their reads counts in the frontier.
fn load(cx: &Context, room: &str) -> Result<ReadState, StoreError> {
    let conv = ConversationKey::room(room);
    let mut frontier = Frontier::default();
    let mut members = 0;
    for (member, m) in cx.store.memberships(room)? {
        if !m.is_current() {
            continue;
        }
        members += 1;
        if cx.sends_read_receipts(&member)? {
            frontier.set(&member, cx.store.mark(&conv, &member)?);
        }
    }
    Ok(ReadState { frontier, members })
}

/// The room's read state, loaded from the store on first use (after a
/// restart, a membership change, or a read-receipt choice).
pub(super) fn read_state<'a>(
    cx: &Context,
    live: &'a mut LiveRoom,
    room: &str,
) -> Result<&'a mut ReadState, StoreError> {
    let state = match live.read.take() {
        Some(state) => state,
        None => load(cx, room)?,
    };
    Ok(live.read.insert(state))
}

/// Moves `reader`'s tidemark and returns the "all read" notices it causes.
pub(super) fn advance(
    cx: &mut Context,
    live: &mut LiveRoom,
    room: &str,
    reader: &str,
    seq: Seq,
    now: Millis,
) -> Out {
    let conv = ConversationKey::room(room);
    if !cx.sends_read_receipts(reader)? {
        cx.write(Write::Mark {
            conv,
            reader: private_reader(reader),
            seq,
            at: now,
        });
        return Ok(vec![]);
    }
    // Loaded before the mark moves, so that it says where things stood.
    let state = read_state(cx, live, room)?;
    if cx.store.mark(&conv, reader)? >= seq {
        return Ok(vec![]);
    }
    cx.write(Write::Mark {
        conv,
        reader: reader.to_owned(),
        seq,
        at: now,
    });
    METRICS.status_recorded();
    let before = state.frontier.min();
    state.frontier.set(reader, seq);
    let after = state.frontier.min();
    match (before, after) {
        (Some(b), Some(a)) if a > b => all_read_notices(cx, room, b, a, now),
        _ => Ok(vec![]),
    }
}

/// Messages in `(from, upto]` just became read by every member: tell each
/// sender once, about their latest such message (a notice covers the
/// sender's earlier messages, as a XEP-0333 marker does).
fn all_read_notices(cx: &mut Context, room: &str, from: Seq, upto: Seq, now: Millis) -> Out {
    let mut latest: BTreeMap<String, RoomMessage> = BTreeMap::new();
    // The message in hand, if it is in the range, is not in the store yet.
    let in_hand: Vec<RoomMessage> = cx
        .pending()
        .iter()
        .filter_map(|w| match w {
            Write::RoomMessage {
                room: r,
                seq,
                message,
            } if r == room && from < *seq && *seq <= upto => Some(message.clone()),
            _ => None,
        })
        .collect();
    let stored = cx.store.room_messages_between(room, from, upto)?;
    for m in stored.into_iter().map(|(_, m)| m).chain(in_hand) {
        if m.readable {
            latest.insert(m.sender.clone(), m);
        }
    }
    let mut out = Vec::with_capacity(latest.len());
    for (sender, m) in latest {
        let id = cx.local_id(now);
        // Hand-built: <all-read/> is tidemark's own (urn:tidemark:status:0).
        let mut notice = element(
            "message",
            ns::COMPONENT,
            &[
                ("type", "headline"),
                ("from", room),
                ("to", &sender),
                ("id", &id),
            ],
        );
        notice.append_child(element(
            "all-read",
            ns::STATUS,
            &[
                ("id", &m.id),
                ("stanza-id", &m.stanza_id),
                ("at", &xep0082(now)),
            ],
        ));
        out.push(notice);
    }
    Ok(out)
}

/// How many messages with the same sender's id a marker naming that id looks
/// at; beyond them, a marker by sender's id is ignored (by stanza-id it never
/// is).
const SENDER_ID_CANDIDATES: usize = 32;

/// The message a member's marker names. The room's stanza-id first
/// (DESIGN.md, XEP-0333 §3.3): only the room assigns it, so nobody can make
/// it name another message. Some clients name the sender's id instead
/// (xep/groups.md §3), and any member may reuse any id, so among the messages
/// with that id the one taken is the oldest the reader has not read yet and
/// that was sent to them by someone else. A message that reuses the id (bob
/// sending alice's) can then only make the marker cover less than the reader
/// read, never more: it cannot produce a false "read" or "all read".
pub(super) fn marked_message(
    cx: &Context,
    room: &str,
    reader: &str,
    id: &str,
) -> Result<Option<(Seq, RoomMessage)>, StoreError> {
    if let Some(found) = cx.store.room_message_by_stanza_id(room, id)? {
        return Ok(Some(found));
    }
    let conv = ConversationKey::room(room);
    let read = own_mark(&*cx.store, &conv, reader)?;
    let Some(membership) = cx.store.membership(room, reader)? else {
        return Ok(None);
    };
    Ok(cx
        .store
        .room_messages_with_sender_id(room, id, read, SENDER_ID_CANDIDATES)?
        .into_iter()
        .find(|(seq, m)| m.sender != reader && membership.covers(*seq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_is_the_lowest_tidemark() {
        let mut f = Frontier::default();
        assert_eq!(f.min(), None);
        f.set("a", 5);
        f.set("b", 3);
        f.set("c", 3);
        assert_eq!(f.min(), Some(3));
        f.set("b", 9);
        assert_eq!(f.min(), Some(3));
        f.set("c", 7);
        assert_eq!(f.min(), Some(5));
        f.set("a", 8);
        assert_eq!(f.min(), Some(7));
    }
}
