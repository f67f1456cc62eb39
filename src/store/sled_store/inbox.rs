//! Issue 10: the conversation list in sled, in the status log's tree under
//! keys that start with `I` (staged as [`T::Inbox`]: a flush of 1:1
//! statuses and their entries stays one batch, no transaction), and the
//! room message counts in `room_counts`.
//!
//! | key | value |
//! |---|---|
//! | `Ie` user NUL contact | the [`InboxEntry`] |
//! | `It` user NUL newest seq | the contact: the list by latest activity |
//! | `Iu` user NUL contact NUL seq | nothing: one unread message |
//! | `Is` user | the sum of the user's unread counts |
//! | `Ir` user NUL room | the user's newest message in the room |
//!
//! `room_counts`: room NUL seq -> how many messages the room had up to it.
//!
//! An entry keeps its newest [`INLINE`] unread positions in its own value
//! (a message and the read that clears it write no key of their own: sled
//! pays per key written, so this keeps a 1:1 message at about four list
//! keys); older unread positions spill to `Iu` keys, each written once and
//! removed once, so a message costs O(log n) over its life.

use std::ops::Bound;

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
const TOTAL: u8 = b's';
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

fn total_key(user: &str) -> Vec<u8> {
    key(TOTAL, &[user.as_bytes()])
}

fn room_sent_key(user: &str, room: &str) -> Vec<u8> {
    key(ROOM_SENT, &[user.as_bytes(), room.as_bytes()])
}

/// Unread positions kept inside an entry before they spill to keys.
pub const INLINE: usize = 32;

/// An entry as stored: the list's view, and where its unread messages are.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Stored {
    entry: InboxEntry,
    /// The newest unread positions, oldest first, at most [`INLINE`].
    recent: Vec<Seq>,
    /// How many older unread positions are `Iu` keys.
    spilled: u32,
}

fn u64_value(bytes: &[u8], what: &'static str) -> StoreResult<u64> {
    decode_seq(bytes, what)
}

impl SledStore {
    fn load_stored(&self, user: &str, contact: &str) -> StoreResult<Option<Stored>> {
        let Some(v) = self.staged.get(T::Inbox, &entry_key(user, contact))? else {
            return Ok(None);
        };
        let mut s: Stored = decode(&v, "inbox entry")?;
        s.entry.contact = contact.to_owned();
        Ok(Some(s))
    }

    fn load_entry(&self, user: &str, contact: &str) -> StoreResult<Option<InboxEntry>> {
        Ok(self.load_stored(user, contact)?.map(|s| s.entry))
    }

    fn save(&self, user: &str, s: &Stored) -> StoreResult<()> {
        self.staged.insert(
            T::Inbox,
            entry_key(user, &s.entry.contact),
            encode(s, "inbox entry")?,
        );
        Ok(())
    }

    /// The entry, or a new one with nothing in it yet.
    fn load_or_new(&self, user: &str, contact: &str) -> StoreResult<Stored> {
        Ok(self.load_stored(user, contact)?.unwrap_or_else(|| Stored {
            entry: InboxEntry {
                contact: contact.to_owned(),
                ..InboxEntry::default()
            },
            ..Stored::default()
        }))
    }

    /// One more unread message at `seq` (the newest).
    fn add_unread(&self, user: &str, s: &mut Stored, seq: Seq) -> StoreResult<()> {
        s.recent.push(seq);
        if s.recent.len() > INLINE {
            let oldest = s.recent.remove(0);
            self.staged
                .insert(T::Inbox, unread_key(user, &s.entry.contact, oldest), []);
            s.spilled += 1;
        }
        s.entry.unread = s.entry.unread.saturating_add(1);
        self.add_to_total(user, 1)
    }

    /// Moves `e` to the top of `user`'s list at `seq`.
    fn move_to(&self, user: &str, e: &mut InboxEntry, seq: Seq, at: Millis, by_contact: bool) {
        if e.latest > 0 {
            self.staged.remove(T::Inbox, time_key(user, e.latest));
        }
        self.staged
            .insert(T::Inbox, time_key(user, seq), e.contact.as_bytes());
        e.latest = seq;
        e.latest_at = at;
        e.latest_by_contact = by_contact;
    }

    fn add_to_total(&self, user: &str, delta: i64) -> StoreResult<()> {
        if delta == 0 {
            return Ok(());
        }
        let k = total_key(user);
        let mut bad = None;
        self.staged.update(T::Inbox, &k, |v| {
            let now = match v.map(|v| u64_value(v, "inbox total")) {
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    bad = Some(e);
                    0
                }
                None => 0,
            };
            let new = now.saturating_add_signed(delta);
            (new > 0).then(|| new.to_be_bytes().to_vec())
        })?;
        bad.map_or(Ok(()), Err)
    }

    /// Clears the unread messages of `s` up to `upto`.
    fn clear_unread(&self, user: &str, s: &mut Stored, upto: Seq) -> StoreResult<()> {
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
        self.add_to_total(user, -i64::from(n))
    }

    pub(super) fn put_inbox_message(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
        own: bool,
    ) -> StoreResult<()> {
        let mut s = self.load_or_new(user, contact)?;
        if seq <= s.entry.latest {
            return Ok(());
        }
        self.move_to(user, &mut s.entry, seq, at, !own);
        if own {
            s.entry.own_latest = seq;
            s.entry.missed = None;
            self.clear_unread(user, &mut s, seq)?;
        } else {
            self.add_unread(user, &mut s, seq)?;
        }
        self.save(user, &s)
    }

    pub(super) fn put_inbox_read(&self, user: &str, contact: &str, upto: Seq) -> StoreResult<()> {
        let Some(mut s) = self.load_stored(user, contact)? else {
            return Ok(());
        };
        let before = (s.entry.unread, s.entry.missed);
        self.clear_unread(user, &mut s, upto)?;
        s.entry.missed = None;
        if (s.entry.unread, s.entry.missed) != before {
            self.save(user, &s)?;
        }
        Ok(())
    }

    pub(super) fn put_inbox_missed(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<()> {
        let mut s = self.load_or_new(user, contact)?;
        if seq <= s.entry.latest {
            return Ok(());
        }
        self.move_to(user, &mut s.entry, seq, at, true);
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
        self.save(user, &s)
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
        let found = self.staged.range(
            T::Inbox,
            Bound::Excluded(time_key(user, before)),
            Bound::Excluded(prefix_end(&user_prefix(BY_TIME, user))),
            false,
            limit,
        )?;
        let mut out = Vec::with_capacity(found.len());
        for (_, contact) in found {
            let contact = String::from_utf8(contact).map_err(|e| StoreError::Corrupt {
                what: "inbox index",
                detail: e.to_string(),
            })?;
            if let Some(e) = self.load_entry(user, &contact)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    pub(super) fn get_inbox_entries(
        &self,
        user: &str,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        let prefix = user_prefix(ENTRY, user);
        let mut out = Vec::new();
        for (k, v) in self.staged.scan_prefix(T::Inbox, &prefix, false, limit)? {
            let mut s: Stored = decode(&v, "inbox entry")?;
            s.entry.contact = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push(s.entry);
        }
        Ok(out)
    }

    pub(super) fn get_inbox_unread_total(&self, user: &str) -> StoreResult<u64> {
        self.staged
            .get(T::Inbox, &total_key(user))?
            .map_or(Ok(0), |v| u64_value(&v, "inbox total"))
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
        for entry in self.staged.tree(T::Inbox).scan_prefix([LIST, ENTRY]) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (user, contact) = split(&k, "inbox entry key")?;
            let s: Stored = decode(&v, "inbox entry")?;
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

    /// One entry of an export, as it was.
    pub(super) fn import_inbox_entry(
        &self,
        user: &str,
        e: InboxEntry,
        unread: &[Seq],
    ) -> StoreResult<()> {
        if e.latest == 0 || unread.iter().any(|s| *s > e.latest) {
            return Err(StoreError::Rejected(format!(
                "inbox entry of {user} for {}: unread messages after its latest",
                e.contact
            )));
        }
        self.staged
            .insert(T::Inbox, time_key(user, e.latest), e.contact.as_bytes());
        let mut s = Stored {
            entry: InboxEntry { unread: 0, ..e },
            ..Stored::default()
        };
        let mut sorted = unread.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for seq in sorted {
            self.add_unread(user, &mut s, seq)?;
        }
        self.save(user, &s)
    }

    /// Retention: the entry under `k` goes, with its index and unread
    /// messages, if nothing happened in its conversation since `cutoff`
    /// (its messages have gone or are going). Other keys are left alone.
    pub(super) fn expire_inbox_entry(&self, k: &[u8], v: &[u8], cutoff: Millis) -> StoreResult<()> {
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
        self.clear_unread(&user, &mut s, Seq::MAX)?;
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
