//! Issue 10: the conversation list in sled, in the staged tree `inbox`
//! (written with the rest of a group commit), and the room message counts
//! in `room_counts`.
//!
//! | key | value |
//! |---|---|
//! | `e` user NUL contact | the [`InboxEntry`] |
//! | `t` user NUL newest seq | the contact: the list by latest activity |
//! | `u` user NUL contact NUL seq | nothing: one unread message |
//! | `s` user | the sum of the user's unread counts |
//! | `r` user NUL room | the user's newest message in the room |
//!
//! `room_counts`: room NUL seq -> how many messages the room had up to it.
//!
//! Every operation touches O(1) keys, except a read that clears `n`
//! unread messages, which removes their `n` keys: each key is written once
//! and removed once, so a message costs O(log n) over its life.

use std::ops::Bound;

use super::staged::T;
use super::{SledStore, decode, decode_seq, encode};
use crate::store::export::{ExportError, ExportRecord};
use crate::store::keys;
use crate::store::{InboxEntry, Millis, Missed, Seq, StoreError, StoreResult};

const ENTRY: u8 = b'e';
const BY_TIME: u8 = b't';
const UNREAD: u8 = b'u';
const TOTAL: u8 = b's';
const ROOM_SENT: u8 = b'r';

fn key(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
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

fn time_key(user: &str, seq: Seq) -> Vec<u8> {
    let mut k = user_prefix(BY_TIME, user);
    k.extend_from_slice(&seq.to_be_bytes());
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

fn u64_value(bytes: &[u8], what: &'static str) -> StoreResult<u64> {
    decode_seq(bytes, what)
}

impl SledStore {
    fn load_entry(&self, user: &str, contact: &str) -> StoreResult<Option<InboxEntry>> {
        let Some(v) = self.staged.get(T::Inbox, &entry_key(user, contact))? else {
            return Ok(None);
        };
        let mut e: InboxEntry = decode(&v, "inbox entry")?;
        e.contact = contact.to_owned();
        Ok(Some(e))
    }

    fn save_entry(&self, user: &str, e: &InboxEntry) -> StoreResult<()> {
        self.staged.insert(
            T::Inbox,
            entry_key(user, &e.contact),
            encode(e, "inbox entry")?,
        );
        Ok(())
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

    /// Clears the unread messages of `e` up to `upto`.
    fn clear_unread(&self, user: &str, e: &mut InboxEntry, upto: Seq) -> StoreResult<()> {
        if e.unread == 0 {
            return Ok(());
        }
        let found = self.staged.range(
            T::Inbox,
            Bound::Included(unread_prefix(user, &e.contact)),
            Bound::Included(unread_key(user, &e.contact, upto)),
            false,
            usize::MAX,
        )?;
        let n = u32::try_from(found.len()).unwrap_or(u32::MAX).min(e.unread);
        for (k, _) in found {
            self.staged.remove(T::Inbox, k);
        }
        e.unread -= n;
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
        let mut e = self
            .load_entry(user, contact)?
            .unwrap_or_else(|| InboxEntry {
                contact: contact.to_owned(),
                ..InboxEntry::default()
            });
        if seq <= e.latest {
            return Ok(());
        }
        self.move_to(user, &mut e, seq, at, !own);
        if own {
            e.own_latest = seq;
            e.missed = None;
            self.clear_unread(user, &mut e, seq)?;
        } else {
            self.staged
                .insert(T::Inbox, unread_key(user, contact, seq), []);
            e.unread = e.unread.saturating_add(1);
            self.add_to_total(user, 1)?;
        }
        self.save_entry(user, &e)
    }

    pub(super) fn put_inbox_read(&self, user: &str, contact: &str, upto: Seq) -> StoreResult<()> {
        let Some(mut e) = self.load_entry(user, contact)? else {
            return Ok(());
        };
        let before = (e.unread, e.missed);
        self.clear_unread(user, &mut e, upto)?;
        e.missed = None;
        if (e.unread, e.missed) != before {
            self.save_entry(user, &e)?;
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
        let mut e = self
            .load_entry(user, contact)?
            .unwrap_or_else(|| InboxEntry {
                contact: contact.to_owned(),
                ..InboxEntry::default()
            });
        if seq <= e.latest {
            return Ok(());
        }
        self.move_to(user, &mut e, seq, at, true);
        e.missed = Some(match e.missed {
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
        self.save_entry(user, &e)
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
            Bound::Included(user_prefix(BY_TIME, user)),
            Bound::Excluded(time_key(user, before)),
            true,
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
            let mut e: InboxEntry = decode(&v, "inbox entry")?;
            e.contact = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push(e);
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
        let prefix = keys::room_prefix(room);
        let last = self
            .staged
            .scan_prefix(T::RoomCounts, &prefix, true, 1)?
            .into_iter()
            .next();
        let n = match last {
            Some((k, v)) => {
                if decode_seq(&k[prefix.len()..], "room count key")? >= seq {
                    return Ok(());
                }
                u64_value(&v, "room count")?
            }
            None => 0,
        };
        self.staged.insert(
            T::RoomCounts,
            keys::room_message(room, seq),
            (n + 1).to_be_bytes(),
        );
        Ok(())
    }

    pub(super) fn count_room_messages_after(&self, room: &str, after: Seq) -> StoreResult<u64> {
        let prefix = keys::room_prefix(room);
        let Some((_, last)) = self
            .staged
            .scan_prefix(T::RoomCounts, &prefix, true, 1)?
            .into_iter()
            .next()
        else {
            return Ok(0);
        };
        let total = u64_value(&last, "room count")?;
        // The count at `after`: the last counted message at or before it;
        // with none (nothing before, or expired), the messages still
        // counted before the first one that is.
        let at_or_before = self
            .staged
            .range(
                T::RoomCounts,
                Bound::Included(prefix.clone()),
                Bound::Included(keys::room_message(room, after)),
                true,
                1,
            )?
            .into_iter()
            .next();
        let upto_after = match at_or_before {
            Some((_, v)) => u64_value(&v, "room count")?,
            None => match self
                .staged
                .scan_prefix(T::RoomCounts, &prefix, false, 1)?
                .into_iter()
                .next()
            {
                Some((_, v)) => u64_value(&v, "room count")?.saturating_sub(1),
                None => 0,
            },
        };
        Ok(total.saturating_sub(upto_after))
    }

    /// Every entry and room position as export records.
    pub(super) fn export_inbox(
        &self,
        each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        let split = |k: &[u8], what: &'static str| -> StoreResult<(String, String)> {
            let rest = &k[1..];
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
        for entry in self.staged.tree(T::Inbox).scan_prefix([ENTRY]) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (user, contact) = split(&k, "inbox entry key")?;
            let e: InboxEntry = decode(&v, "inbox entry")?;
            let prefix = unread_prefix(&user, &contact);
            let mut unread = Vec::with_capacity(e.unread as usize);
            for u in self.staged.tree(T::Inbox).scan_prefix(&prefix) {
                let (uk, _) = u.map_err(StoreError::from)?;
                unread.push(decode_seq(&uk[prefix.len()..], "inbox unread key")?);
            }
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
        for entry in self.staged.tree(T::Inbox).scan_prefix([ROOM_SENT]) {
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
        mut e: InboxEntry,
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
        for seq in unread {
            self.staged
                .insert(T::Inbox, unread_key(user, &e.contact, *seq), []);
        }
        e.unread = u32::try_from(unread.len()).unwrap_or(u32::MAX);
        self.add_to_total(user, i64::from(e.unread))?;
        self.save_entry(user, &e)
    }

    /// Retention: the entry under `k` goes, with its index and unread
    /// messages, if nothing happened in its conversation since `cutoff`
    /// (its messages have gone or are going). Other keys are left alone.
    pub(super) fn expire_inbox_entry(&self, k: &[u8], v: &[u8], cutoff: Millis) -> StoreResult<()> {
        if k.first() != Some(&ENTRY) {
            return Ok(());
        }
        let Ok(e) = decode::<InboxEntry>(v, "inbox entry") else {
            return Ok(());
        };
        if e.latest_at >= cutoff {
            return Ok(());
        }
        let rest = &k[1..];
        let Some(at) = rest.iter().position(|b| *b == 0) else {
            return Ok(());
        };
        let user = String::from_utf8_lossy(&rest[..at]).into_owned();
        let mut e = InboxEntry {
            contact: String::from_utf8_lossy(&rest[at + 1..]).into_owned(),
            ..e
        };
        self.clear_unread(&user, &mut e, Seq::MAX)?;
        self.staged.remove(T::Inbox, time_key(&user, e.latest));
        self.staged.remove(T::Inbox, k.to_vec());
        Ok(())
    }
}
