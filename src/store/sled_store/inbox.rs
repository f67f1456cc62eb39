//! Issue 10: the conversation list in sled, in the status log's tree under
//! keys that start with `I` (staged as [`T::Inbox`]: a flush of 1:1
//! statuses and their entries stays one batch, no transaction), and the
//! room message counts in `room_counts`.
//!
//! | key | value |
//! |---|---|
//! | `Ih` user | the user's [`Head`]: their unread total and their [`HOT`] most recently active entries, whole |
//! | `Ie` user NUL contact | a cold entry (not in the head) |
//! | `It` user NUL inverted newest seq | a cold entry's contact: the cold ones by latest activity |
//! | `Iu` user NUL contact NUL seq | nothing: one spilled unread message |
//! | `Ir` user NUL room | the user's newest message in the room |
//!
//! `room_counts`: room NUL seq -> how many messages the room had up to it.
//!
//! sled pays per key written, so a 1:1 message in a conversation of the
//! head rewrites one key per party, the head: an entry keeps its newest
//! [`INLINE`] unread positions in its own value, the head the unread
//! total. A conversation coming back into the head removes its two cold
//! keys and may push the head's oldest out (two keys); older unread
//! positions spill to `Iu` keys, each written once and removed once. Every
//! operation is O(log n).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::MutexGuard;

use super::staged::T;
use super::{SledStore, decode, decode_seq, encode};
use crate::store::export::{ExportError, ExportRecord};
use crate::store::keys;
use crate::store::{InboxEntry, Millis, Missed, Seq, StoreError, StoreResult};

/// The first byte of every key of the list: the status log's own keys
/// start with lower-case letters.
const LIST: u8 = b'I';
const ENTRY: u8 = b'e';
const BY_TIME: u8 = b't';
const UNREAD: u8 = b'u';
const HEAD: u8 = b'h';
const ROOM_SENT: u8 = b'r';

fn key(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push(LIST);
    k.push(kind);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn entry_key(user: &str, contact: &str) -> Vec<u8> {
    key(ENTRY, &[user.as_bytes(), contact.as_bytes()])
}

fn user_prefix(kind: u8, user: &str) -> Vec<u8> {
    let mut k = key(kind, &[user.as_bytes()]);
    k.push(0);
    k
}

/// Newest first in key order (the sequence inverted): sled walks forward
/// far faster than backward.
fn time_key(user: &str, seq: Seq) -> Vec<u8> {
    let mut k = user_prefix(BY_TIME, user);
    k.extend_from_slice(&(Seq::MAX - seq).to_be_bytes());
    k
}

/// Past the last key of `prefix` (which ends in NUL).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// A room's count head: its last counted message and how many it counted,
/// under `room 0x01`, after every `room NUL seq` key of the room.
pub(super) fn room_count_head(room: &str) -> Vec<u8> {
    let mut k = room.as_bytes().to_vec();
    k.push(1);
    k
}

fn unread_prefix(user: &str, contact: &str) -> Vec<u8> {
    let mut k = key(UNREAD, &[user.as_bytes(), contact.as_bytes()]);
    k.push(0);
    k
}

fn unread_key(user: &str, contact: &str, seq: Seq) -> Vec<u8> {
    let mut k = unread_prefix(user, contact);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn room_sent_key(user: &str, room: &str) -> Vec<u8> {
    key(ROOM_SENT, &[user.as_bytes(), room.as_bytes()])
}

/// Unread positions kept inside an entry before they spill to keys.
pub const INLINE: usize = 32;

/// Conversations a user's head keeps whole, the most recently active: a
/// message in one of them rewrites the head alone.
pub const HOT: usize = 4;

/// An entry as stored: the list's view, and where its unread messages are.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Stored {
    entry: InboxEntry,
    /// The newest unread positions, oldest first, at most [`INLINE`].
    recent: Vec<Seq>,
    /// How many older unread positions are `Iu` keys.
    spilled: u32,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Hot {
    contact: String,
    stored: Stored,
}

/// `Ih user`: the sum of the user's unread counts, and their [`HOT`] most
/// recently active conversations, newest first. The others are cold: an
/// `Ie` entry and its `It` place in the index by latest activity, written
/// when the conversation leaves the head and removed when it comes back.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Head {
    total: u64,
    hot: Vec<Hot>,
}

/// Heads kept in memory, cleared when full (which costs reading them
/// again): a user's next status reads no sled page and decodes nothing.
const KNOWN_HEADS: usize = 16_384;

/// Users' heads as last loaded or written, decoded. Every write of a head
/// goes through [`SledStore::save_head`], which keeps this in step; a
/// failed flush stages its writes again (`StagedTrees::end_flush`), so
/// what is here stays what a read of the staged trees would give.
#[derive(Default)]
pub(super) struct KnownHeads(HashMap<String, Head>);

impl KnownHeads {
    fn get(&self, user: &str) -> Option<&Head> {
        self.0.get(user)
    }

    fn put(&mut self, user: &str, head: Head) {
        if self.0.len() >= KNOWN_HEADS && !self.0.contains_key(user) {
            self.0.clear();
        }
        self.0.insert(user.to_owned(), head);
    }
}

/// Where an entry was found.
enum Place {
    Hot(usize),
    /// Cold, at this latest activity (its `It` key).
    Cold(Seq),
    New,
}

fn head_key(user: &str) -> Vec<u8> {
    key(HEAD, &[user.as_bytes()])
}

/// A stored head, its entries' contacts filled in from their keys.
fn decode_head(v: &[u8]) -> StoreResult<Head> {
    let mut head: Head = decode(v, "inbox head")?;
    for h in &mut head.hot {
        h.stored.entry.contact = h.contact.clone();
    }
    Ok(head)
}

fn u64_value(bytes: &[u8], what: &'static str) -> StoreResult<u64> {
    decode_seq(bytes, what)
}

impl SledStore {
    fn known_heads(&self) -> MutexGuard<'_, KnownHeads> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_head(&self, user: &str) -> StoreResult<Head> {
        if let Some(head) = self.known_heads().get(user) {
            return Ok(head.clone());
        }
        let head = match self.staged.get(T::Inbox, &head_key(user))? {
            None => Head::default(),
            Some(v) => decode_head(&v)?,
        };
        self.known_heads().put(user, head.clone());
        Ok(head)
    }

    fn save_head(&self, user: &str, head: Head) -> StoreResult<()> {
        self.staged
            .insert(T::Inbox, head_key(user), encode(&head, "inbox head")?);
        self.known_heads().put(user, head);
        Ok(())
    }

    fn load_cold(&self, user: &str, contact: &str) -> StoreResult<Option<Stored>> {
        let Some(v) = self.staged.get(T::Inbox, &entry_key(user, contact))? else {
            return Ok(None);
        };
        let mut s: Stored = decode(&v, "inbox entry")?;
        s.entry.contact = contact.to_owned();
        Ok(Some(s))
    }

    fn save_cold(&self, user: &str, s: &Stored) -> StoreResult<()> {
        self.staged.insert(
            T::Inbox,
            time_key(user, s.entry.latest),
            s.entry.contact.as_bytes(),
        );
        self.staged.insert(
            T::Inbox,
            entry_key(user, &s.entry.contact),
            encode(s, "inbox entry")?,
        );
        Ok(())
    }

    fn load_entry(&self, user: &str, contact: &str) -> StoreResult<Option<InboxEntry>> {
        let head = self.load_head(user)?;
        if let Some(h) = head.hot.into_iter().find(|h| h.contact == contact) {
            return Ok(Some(h.stored.entry));
        }
        Ok(self.load_cold(user, contact)?.map(|s| s.entry))
    }

    /// Runs `change` on `user`'s entry for `contact` (a new one if there is
    /// none and `create`); when it reports a change, the entry goes to the
    /// front of the head, and the head's oldest goes cold if it is full.
    fn with_entry(
        &self,
        user: &str,
        contact: &str,
        create: bool,
        change: impl FnOnce(&Self, &mut Stored, &mut u64) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        let mut head = self.load_head(user)?;
        let (mut s, place) = match head.hot.iter().position(|h| h.contact == contact) {
            Some(i) => (head.hot[i].stored.clone(), Place::Hot(i)),
            None => match self.load_cold(user, contact)? {
                Some(s) => {
                    let latest = s.entry.latest;
                    (s, Place::Cold(latest))
                }
                None if create => (
                    Stored {
                        entry: InboxEntry {
                            contact: contact.to_owned(),
                            ..InboxEntry::default()
                        },
                        ..Stored::default()
                    },
                    Place::New,
                ),
                None => return Ok(()),
            },
        };
        if !change(self, &mut s, &mut head.total)? {
            return Ok(());
        }
        match place {
            Place::Hot(i) => {
                head.hot.remove(i);
            }
            Place::Cold(latest) => {
                self.staged.remove(T::Inbox, time_key(user, latest));
                self.staged.remove(T::Inbox, entry_key(user, contact));
            }
            Place::New => {}
        }
        let at = head
            .hot
            .iter()
            .position(|h| h.stored.entry.latest < s.entry.latest)
            .unwrap_or(head.hot.len());
        head.hot.insert(
            at,
            Hot {
                contact: contact.to_owned(),
                stored: s,
            },
        );
        while head.hot.len() > HOT {
            if let Some(cold) = head.hot.pop() {
                self.save_cold(user, &cold.stored)?;
            }
        }
        self.save_head(user, head)
    }

    /// One more unread message at `seq` (the newest).
    fn add_unread(&self, user: &str, s: &mut Stored, seq: Seq, total: &mut u64) {
        s.recent.push(seq);
        if s.recent.len() > INLINE {
            let oldest = s.recent.remove(0);
            self.staged
                .insert(T::Inbox, unread_key(user, &s.entry.contact, oldest), []);
            s.spilled += 1;
        }
        s.entry.unread = s.entry.unread.saturating_add(1);
        *total = total.saturating_add(1);
    }

    /// Marks `e` the newest activity of its conversation.
    fn move_to(e: &mut InboxEntry, seq: Seq, at: Millis, by_contact: bool) {
        e.latest = seq;
        e.latest_at = at;
        e.latest_by_contact = by_contact;
    }

    /// Clears the unread messages of `s` up to `upto`.
    fn clear_unread(
        &self,
        user: &str,
        s: &mut Stored,
        upto: Seq,
        total: &mut u64,
    ) -> StoreResult<()> {
        if s.entry.unread == 0 {
            return Ok(());
        }
        let before = s.recent.len();
        s.recent.retain(|seq| *seq > upto);
        let mut n = (before - s.recent.len()) as u32;
        // Spilled positions are older than every inline one.
        if s.spilled > 0 {
            let found = self.staged.range(
                T::Inbox,
                Bound::Included(unread_prefix(user, &s.entry.contact)),
                Bound::Included(unread_key(user, &s.entry.contact, upto)),
                false,
                usize::MAX,
            )?;
            let gone = u32::try_from(found.len())
                .unwrap_or(u32::MAX)
                .min(s.spilled);
            for (k, _) in found {
                self.staged.remove(T::Inbox, k);
            }
            s.spilled -= gone;
            n += gone;
        }
        let n = n.min(s.entry.unread);
        s.entry.unread -= n;
        *total = total.saturating_sub(u64::from(n));
        Ok(())
    }

    pub(super) fn put_inbox_message(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
        own: bool,
    ) -> StoreResult<()> {
        self.with_entry(user, contact, true, |st, s, total| {
            if seq <= s.entry.latest {
                return Ok(false);
            }
            Self::move_to(&mut s.entry, seq, at, !own);
            if own {
                s.entry.own_latest = seq;
                s.entry.missed = None;
                st.clear_unread(user, s, seq, total)?;
            } else {
                st.add_unread(user, s, seq, total);
            }
            Ok(true)
        })
    }

    pub(super) fn put_inbox_read(&self, user: &str, contact: &str, upto: Seq) -> StoreResult<()> {
        self.with_entry(user, contact, false, |st, s, total| {
            let before = (s.entry.unread, s.entry.missed);
            st.clear_unread(user, s, upto, total)?;
            s.entry.missed = None;
            Ok((s.entry.unread, s.entry.missed) != before)
        })
    }

    pub(super) fn put_inbox_missed(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<()> {
        self.with_entry(user, contact, true, |_, s, _| {
            if seq <= s.entry.latest {
                return Ok(false);
            }
            Self::move_to(&mut s.entry, seq, at, true);
            s.entry.missed = Some(match s.entry.missed {
                Some(m) => Missed {
                    count: m.count.saturating_add(1),
                    last_at: at,
                    ..m
                },
                None => Missed {
                    count: 1,
                    first_at: at,
                    last_at: at,
                },
            });
            Ok(true)
        })
    }

    pub(super) fn put_inbox_room_sent(&self, user: &str, room: &str, seq: Seq) -> StoreResult<()> {
        self.staged
            .insert(T::Inbox, room_sent_key(user, room), seq.to_be_bytes());
        Ok(())
    }

    pub(super) fn get_inbox_entry(
        &self,
        user: &str,
        contact: &str,
    ) -> StoreResult<Option<InboxEntry>> {
        self.load_entry(user, contact)
    }

    pub(super) fn get_inbox_latest(
        &self,
        user: &str,
        before: Seq,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        let hot: Vec<InboxEntry> = self
            .load_head(user)?
            .hot
            .into_iter()
            .map(|h| h.stored.entry)
            .filter(|e| e.latest < before)
            .take(limit)
            .collect();
        let found = self.staged.range(
            T::Inbox,
            Bound::Excluded(time_key(user, before)),
            Bound::Excluded(prefix_end(&user_prefix(BY_TIME, user))),
            false,
            limit,
        )?;
        let mut cold = Vec::with_capacity(found.len());
        for (_, contact) in found {
            let contact = String::from_utf8(contact).map_err(|e| StoreError::Corrupt {
                what: "inbox index",
                detail: e.to_string(),
            })?;
            if let Some(s) = self.load_cold(user, &contact)? {
                cold.push(s.entry);
            }
        }
        // Both newest first; the head's are usually the newest of all.
        let mut out = Vec::with_capacity(limit.min(hot.len() + cold.len()));
        let (mut h, mut c) = (hot.into_iter().peekable(), cold.into_iter().peekable());
        while out.len() < limit {
            let take_hot = match (h.peek(), c.peek()) {
                (Some(a), Some(b)) => a.latest >= b.latest,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            out.extend(if take_hot { h.next() } else { c.next() });
        }
        Ok(out)
    }

    pub(super) fn get_inbox_entries(
        &self,
        user: &str,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        let mut out: Vec<InboxEntry> = self
            .load_head(user)?
            .hot
            .into_iter()
            .map(|h| h.stored.entry)
            .take(limit)
            .collect();
        let prefix = user_prefix(ENTRY, user);
        let rest = limit.saturating_sub(out.len());
        for (k, v) in self.staged.scan_prefix(T::Inbox, &prefix, false, rest)? {
            let mut s: Stored = decode(&v, "inbox entry")?;
            s.entry.contact = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push(s.entry);
        }
        Ok(out)
    }

    pub(super) fn get_inbox_unread_total(&self, user: &str) -> StoreResult<u64> {
        Ok(self.load_head(user)?.total)
    }

    pub(super) fn get_inbox_room_sent(&self, user: &str, room: &str) -> StoreResult<Seq> {
        self.staged
            .get(T::Inbox, &room_sent_key(user, room))?
            .map_or(Ok(0), |v| u64_value(&v, "inbox room position"))
    }

    /// Counts room message `seq`: called for every room message stored.
    pub(super) fn count_room_message(&self, room: &str, seq: Seq) -> StoreResult<()> {
        let head = room_count_head(room);
        let (last, n) = match self.staged.get(T::RoomCounts, &head)? {
            Some(v) => decode::<(Seq, u64)>(&v, "room count head")?,
            None => (0, 0),
        };
        if seq <= last {
            return Ok(());
        }
        self.staged.insert(
            T::RoomCounts,
            keys::room_message(room, seq),
            (n + 1).to_be_bytes(),
        );
        self.staged.insert(
            T::RoomCounts,
            head,
            encode(&(seq, n + 1), "room count head")?,
        );
        Ok(())
    }

    pub(super) fn count_room_messages_after(&self, room: &str, after: Seq) -> StoreResult<u64> {
        let head = room_count_head(room);
        let total = match self.staged.get(T::RoomCounts, &head)? {
            Some(v) => decode::<(Seq, u64)>(&v, "room count head")?.1,
            None => return Ok(0),
        };
        // The first message still counted after `after`: those from it on
        // are the ones after (expired ones are not counted).
        let first_after = self
            .staged
            .range(
                T::RoomCounts,
                Bound::Excluded(keys::room_message(room, after)),
                Bound::Excluded(head),
                false,
                1,
            )?
            .into_iter()
            .next();
        Ok(match first_after {
            Some((_, v)) => total + 1 - u64_value(&v, "room count")?.min(total + 1),
            None => 0,
        })
    }

    /// Every entry and room position as export records.
    pub(super) fn export_inbox(
        &self,
        each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        let split = |k: &[u8], what: &'static str| -> StoreResult<(String, String)> {
            let rest = &k[2..];
            let at = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| StoreError::Corrupt {
                    what,
                    detail: format!("{k:?}"),
                })?;
            Ok((
                String::from_utf8_lossy(&rest[..at]).into_owned(),
                String::from_utf8_lossy(&rest[at + 1..]).into_owned(),
            ))
        };
        let mut all: Vec<(String, String, Stored)> = Vec::new();
        for entry in self.staged.tree(T::Inbox).scan_prefix([LIST, HEAD]) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let user = String::from_utf8_lossy(&k[2..]).into_owned();
            let head: Head = decode(&v, "inbox head")?;
            for h in head.hot {
                all.push((user.clone(), h.contact, h.stored));
            }
        }
        for entry in self.staged.tree(T::Inbox).scan_prefix([LIST, ENTRY]) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (user, contact) = split(&k, "inbox entry key")?;
            all.push((user, contact, decode(&v, "inbox entry")?));
        }
        // One order whether an entry is in its head or cold: an export
        // imported and exported again is the same, line for line.
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (user, contact, s) in all {
            let e = s.entry;
            let prefix = unread_prefix(&user, &contact);
            let mut unread = Vec::with_capacity(e.unread as usize);
            if s.spilled > 0 {
                for u in self.staged.tree(T::Inbox).scan_prefix(&prefix) {
                    let (uk, _) = u.map_err(StoreError::from)?;
                    unread.push(decode_seq(&uk[prefix.len()..], "inbox unread key")?);
                }
            }
            unread.extend(s.recent);
            each(ExportRecord::InboxEntry {
                user,
                contact,
                latest: e.latest,
                latest_at: e.latest_at,
                latest_by_contact: e.latest_by_contact,
                own_latest: e.own_latest,
                unread,
                missed: e.missed,
            })?;
        }
        for entry in self.staged.tree(T::Inbox).scan_prefix([LIST, ROOM_SENT]) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (user, room) = split(&k, "inbox room key")?;
            each(ExportRecord::InboxRoomSent {
                user,
                room,
                seq: u64_value(&v, "inbox room position")?,
            })?;
        }
        Ok(())
    }

    /// One entry of an export, as it was (checked by the import: its
    /// unread messages sorted, none after its latest).
    pub(super) fn import_inbox(
        &self,
        user: &str,
        e: InboxEntry,
        unread: &[Seq],
    ) -> StoreResult<()> {
        // Imported cold: the head fills again as conversations go on.
        let mut head = self.load_head(user)?;
        let mut s = Stored {
            entry: InboxEntry { unread: 0, ..e },
            ..Stored::default()
        };
        for &seq in unread {
            self.add_unread(user, &mut s, seq, &mut head.total);
        }
        self.save_cold(user, &s)?;
        self.save_head(user, head)
    }

    /// Retention: entries with nothing since `cutoff` go (their messages
    /// have gone or are going), with their index and unread messages:
    /// a cold entry under `k`, or the head's entries under a head `k`.
    /// Other keys are left alone.
    pub(super) fn expire_inbox_entry(&self, k: &[u8], v: &[u8], cutoff: Millis) -> StoreResult<()> {
        if k.starts_with(&[LIST, HEAD]) {
            let user = String::from_utf8_lossy(&k[2..]).into_owned();
            let Ok(mut head) = decode_head(v) else {
                return Ok(());
            };
            if head.hot.iter().all(|h| h.stored.entry.latest_at >= cutoff) {
                return Ok(());
            }
            let (keep, gone): (Vec<Hot>, Vec<Hot>) = std::mem::take(&mut head.hot)
                .into_iter()
                .partition(|h| h.stored.entry.latest_at >= cutoff);
            for mut h in gone {
                self.clear_unread(&user, &mut h.stored, Seq::MAX, &mut head.total)?;
            }
            head.hot = keep;
            // The pass reads sled after the staged writes went there
            // (`expire_step`): `v` is the head as it stands.
            return self.save_head(&user, head);
        }
        if !k.starts_with(&[LIST, ENTRY]) {
            return Ok(());
        }
        let Ok(mut s) = decode::<Stored>(v, "inbox entry") else {
            return Ok(());
        };
        if s.entry.latest_at >= cutoff {
            return Ok(());
        }
        let rest = &k[2..];
        let Some(at) = rest.iter().position(|b| *b == 0) else {
            return Ok(());
        };
        let user = String::from_utf8_lossy(&rest[..at]).into_owned();
        s.entry.contact = String::from_utf8_lossy(&rest[at + 1..]).into_owned();
        let mut head = self.load_head(&user)?;
        self.clear_unread(&user, &mut s, Seq::MAX, &mut head.total)?;
        self.save_head(&user, head)?;
        self.staged
            .remove(T::Inbox, time_key(&user, s.entry.latest));
        self.staged.remove(T::Inbox, k.to_vec());
        Ok(())
    }

    /// Where the list's keys start and end in the status log's tree, for
    /// retention's pass.
    pub(super) fn inbox_key_range() -> (Vec<u8>, Vec<u8>) {
        (vec![LIST], vec![LIST + 1])
    }
}
