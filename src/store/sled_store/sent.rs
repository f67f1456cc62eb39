//! Issue 9: what a user sent lately, newest first, for the `status` ad-hoc
//! command (xep/status-command.md), without an index written per message.
//!
//! The streams merged, each newest first:
//!
//! - each of the user's 1:1 conversations (the status log's user entries,
//!   one per conversation), walked along its chain from its head;
//! - the user's refused messages (tree `refusals`, a few per sender), which
//!   are kept out of the chains;
//! - each room the user is or was a member of (tree `member_rooms`, one
//!   entry per (member, room), written with the membership), read from the
//!   room's messages, which are keyed by sequence number.
//!
//! A binary heap holds each stream's next message; the largest sequence
//! number comes out first, so the user's own messages come out newest
//! first across every conversation. The work is bounded: at most
//! [`MAX_CONVERSATIONS`] conversations and [`MAX_ROOMS`] rooms take part,
//! and at most [`MAX_STEPS`] messages (anyone's) are examined per call.

use std::collections::{BinaryHeap, VecDeque};
use std::ops::Bound;

use super::staged::T;
use super::{SledStore, decode, decode_seq};
use crate::store::keys::{self, ConversationKey};
use crate::store::status_log::ListingPages;
use crate::store::{RoomMessage, SentEntry, SentFrom, SentPage, SentTo, Seq, StoreResult};

/// The most 1:1 conversations one listing walks (read on each side of the
/// status log's user index, `status_log::users`). A user with more sees
/// the others with a filter.
pub const MAX_CONVERSATIONS: usize = 2_048;

/// The most rooms one listing walks (the user's memberships, in the order
/// of the rooms' addresses).
pub const MAX_ROOMS: usize = 256;

/// The most messages, the user's and others', one listing examines. At a
/// page of 20 this reaches about 4,000 of the user's messages back when
/// their contacts write as much as they do.
pub const MAX_STEPS: usize = 8_192;

/// Room messages read from sled at a time.
const ROOM_BATCH: usize = 32;

enum Stream {
    /// A 1:1 conversation's chain; the user is on `side`.
    Direct {
        conv: u64,
        contact: String,
        side: u8,
    },
    /// The user's refused messages, newest first, with their contacts.
    Refused(VecDeque<(Seq, String)>),
    /// A room's messages below `below`, newest first, read a batch at a
    /// time; those above `floor` only.
    Room {
        room: String,
        buf: VecDeque<(Seq, RoomMessage)>,
        below: Seq,
        floor: Seq,
    },
}

impl SledStore {
    /// The user's rooms, at most [`MAX_ROOMS`].
    pub(super) fn rooms_of(&self, user: &str) -> StoreResult<Vec<String>> {
        let prefix = keys::member_rooms_prefix(user);
        Ok(self
            .staged
            .scan_prefix(T::MemberRooms, &prefix, false, MAX_ROOMS)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    /// The next batch of a room stream, newest first.
    fn refill(&self, stream: &mut Stream) -> StoreResult<()> {
        let Stream::Room {
            room,
            buf,
            below,
            floor,
        } = stream
        else {
            return Ok(());
        };
        if !buf.is_empty() || *below <= floor.saturating_add(1) {
            return Ok(());
        }
        let prefix_len = keys::room_prefix(room).len();
        let entries = self.staged.range(
            T::RoomMessages,
            Bound::Excluded(keys::room_message(room, *floor)),
            Bound::Excluded(keys::room_message(room, *below)),
            true,
            ROOM_BATCH,
        )?;
        for (k, v) in entries {
            let seq = decode_seq(&k[prefix_len..], "room message key")?;
            buf.push_back((seq, decode(&v, "room message")?));
            *below = seq;
        }
        if buf.is_empty() {
            *below = *floor;
        }
        Ok(())
    }

    pub(super) fn sent_page(
        &self,
        user: &str,
        from: SentFrom,
        limit: usize,
        filter: Option<&SentTo>,
    ) -> StoreResult<SentPage> {
        // Sequence numbers strictly between `floor` and `ceiling`.
        let (floor, ceiling) = match from {
            SentFrom::Before(s) => (0, s),
            SentFrom::After(s) => (s, Seq::MAX),
        };
        let mut streams: Vec<Stream> = Vec::new();
        let mut heads: BinaryHeap<(Seq, usize)> = BinaryHeap::new();
        let direct = |conv: u64, contact: &str| {
            let side = ConversationKey::direct(user, contact).side_of(user)?;
            Some(Stream::Direct {
                conv,
                contact: contact.to_owned(),
                side,
            })
        };
        let (contacts, rooms): (Vec<(u64, String)>, Vec<String>) = match filter {
            None => (
                self.log.conversations_of(user, MAX_CONVERSATIONS)?,
                self.rooms_of(user)?,
            ),
            Some(SentTo::Contact(c)) => (
                self.log
                    .conversation_id(&ConversationKey::direct(user, c))?
                    .map(|id| (id, c.clone()))
                    .into_iter()
                    .collect(),
                vec![],
            ),
            Some(SentTo::Room(r)) => (vec![], vec![r.clone()]),
        };
        for (id, contact) in contacts {
            let head = self.log.head(id)?;
            if head > floor
                && let Some(s) = direct(id, &contact)
            {
                heads.push((head, streams.len()));
                streams.push(s);
            }
        }
        if !matches!(filter, Some(SentTo::Room(_))) {
            // Refused messages, bounded per sender (limits.max_refusals_per_sender).
            let prefix = keys::refusal_prefix(user);
            let mut refused = VecDeque::new();
            for (k, v) in self
                .staged
                .scan_prefix(T::Refusals, &prefix, true, usize::MAX)?
            {
                let seq = decode_seq(&k[prefix.len()..], "refusal key")?;
                let Some(conv) = ConversationKey::decode(&v) else {
                    continue;
                };
                let Some(contact) = conv.side_of(user).and_then(|s| conv.party(1 - s)) else {
                    continue;
                };
                if filter.is_none_or(|f| *f == SentTo::Contact(contact.to_owned()))
                    && seq > floor
                    && seq < ceiling
                {
                    refused.push_back((seq, contact.to_owned()));
                }
            }
            if let Some((seq, _)) = refused.front() {
                heads.push((*seq, streams.len()));
                streams.push(Stream::Refused(refused));
            }
        }
        for room in rooms {
            let mut s = Stream::Room {
                room,
                buf: VecDeque::new(),
                below: ceiling,
                floor,
            };
            self.refill(&mut s)?;
            if let Stream::Room { buf, .. } = &s
                && let Some((seq, _)) = buf.front()
            {
                heads.push((*seq, streams.len()));
                streams.push(s);
            }
        }

        let mut out: VecDeque<SentEntry> = VecDeque::new();
        let mut pages = ListingPages::new();
        let mut steps = 0;
        let mut cut = false;
        while let Some((seq, i)) = heads.pop() {
            if matches!(from, SentFrom::Before(_)) && out.len() >= limit {
                break;
            }
            if steps >= MAX_STEPS {
                cut = true;
                break;
            }
            steps += 1;
            let mut next = None;
            match &mut streams[i] {
                Stream::Direct {
                    conv,
                    contact,
                    side,
                } => {
                    // A slot gone (retention) or taken by another
                    // conversation ends the chain.
                    let Some(m) = self.log.listed(seq, &mut pages)? else {
                        continue;
                    };
                    if m.conv != *conv {
                        continue;
                    }
                    if seq < ceiling && m.sender_side == *side && !m.refused {
                        out.push_back(SentEntry {
                            seq,
                            sent_at: m.sent_at,
                            to: SentTo::Contact(contact.clone()),
                            preview: m.preview,
                        });
                    }
                    next = m.prev.filter(|p| *p > floor);
                }
                Stream::Refused(list) => {
                    if let Some((seq, contact)) = list.pop_front()
                        && let Some(m) = self.log.listed(seq, &mut pages)?
                        && m.refused
                    {
                        out.push_back(SentEntry {
                            seq,
                            sent_at: m.sent_at,
                            to: SentTo::Contact(contact),
                            preview: m.preview,
                        });
                    }
                    next = list.front().map(|(s, _)| *s);
                }
                s @ Stream::Room { .. } => {
                    if let Stream::Room { room, buf, .. } = s
                        && let Some((seq, m)) = buf.pop_front()
                        && m.sender == user
                    {
                        out.push_back(SentEntry {
                            seq,
                            sent_at: m.sent_at,
                            to: SentTo::Room(room.clone()),
                            preview: None,
                        });
                    }
                    self.refill(s)?;
                    if let Stream::Room { buf, .. } = s {
                        next = buf.front().map(|(s, _)| *s);
                    }
                }
            }
            if let Some(n) = next {
                heads.push((n, i));
            }
            // A previous page: the oldest `limit` above the position.
            if matches!(from, SentFrom::After(_)) && out.len() > limit {
                out.pop_front();
            }
        }
        let mut entries: Vec<SentEntry> = out.into();
        entries.truncate(limit);
        Ok(SentPage { entries, cut })
    }
}
