//! Which conversation-list heads are written where (issue 8): a head that
//! changes is not written to its own key at every status, but once per
//! flush into that flush's journal record, one value for all the heads the
//! flush changed. sled pays per key written, and the head writes were most
//! of what the list cost (a third of the component's throughput).
//!
//! A user's newest head is in exactly one of three places: the decoded heads
//! in memory (changed since the last flush), the newest journal record that
//! holds it, or its own key. A record stays until none of its heads is
//! newest any more: each flush writes the heads of the oldest records to
//! their keys while the records hold more than [`BYTES`] (or more than
//! [`LIVE`] heads are held only in records), and removes them, in the same
//! atomic batch as the records and statuses it writes. Opening the store replays
//! the records left (`SledStore::replay_head_journal`), so a kill -9 loses
//! no head a flush wrote.
//!
//! This module only keeps the books; the heads themselves, and their
//! encoding, stay with the list (`inbox.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};

/// How much the journal records may hold before the oldest go to the
/// heads' keys: a head that changes again within that much of the journal
/// is never written to its key at all, and a reopen replays at most this.
/// By size, not by count: a busy flush's record holds hundreds of heads, a
/// quiet one's a few.
pub(super) const BYTES: usize = 4 << 20;

/// Heads held only in journal records (which the list must keep in memory,
/// so that no read goes to a stale key): past this, old records go to the
/// keys faster.
pub(super) const LIVE: usize = 16_384;

/// One journal record: the users whose newest head it holds, and how many
/// values it was written as.
#[derive(Debug, Default)]
struct Record {
    users: HashSet<String>,
    chunks: u16,
    bytes: usize,
}

#[derive(Debug, Default)]
pub(super) struct HeadJournal {
    /// Users whose head changed since the last flush.
    changed: HashSet<String>,
    /// Records not yet retired, oldest first.
    records: BTreeMap<u64, Record>,
    /// For each user whose newest head is in a record: which.
    live: HashMap<String, u64>,
    next: u64,
    /// What the records hold, in bytes.
    bytes: usize,
    /// [`BYTES`], or less in tests.
    bound: Option<usize>,
}

/// What a flush must write for the heads: a new record, the heads of the
/// records retired to their keys, and the records to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct HeadWrites {
    /// The new record's number ([`HeadJournal::users_of`] its users).
    pub record: Option<u64>,
    /// Users whose head goes to its key now.
    pub to_keys: Vec<String>,
    /// Records to remove: number and chunk count.
    pub removed: Vec<(u64, u16)>,
}

impl HeadJournal {
    /// Retires records past `bytes` instead of [`BYTES`] (tests of what
    /// retirement leaves behind, without writing megabytes).
    #[cfg(test)]
    pub fn bound_to(&mut self, bytes: usize) {
        self.bound = Some(bytes);
    }

    /// `user`'s head changed (in memory).
    pub fn changed(&mut self, user: &str) {
        if !self.changed.contains(user) {
            self.changed.insert(user.to_owned());
        }
    }

    /// Whether the newest head of `user` is anywhere but its key: its
    /// decoded head must then stay in memory.
    pub fn pinned(&self, user: &str) -> bool {
        self.changed.contains(user) || self.live.contains_key(user)
    }

    /// How many heads are pinned.
    pub fn pinned_count(&self) -> usize {
        self.changed.len() + self.live.len()
    }

    /// The books of a flush: the changed heads into a new record, old
    /// records to the keys. `chunks` is told afterwards how many values the
    /// new record took ([`HeadJournal::written_as`]).
    pub fn flush(&mut self) -> HeadWrites {
        let mut w = HeadWrites::default();
        if !self.changed.is_empty() {
            let n = self.next;
            self.next += 1;
            let users = std::mem::take(&mut self.changed);
            for user in &users {
                let old = match self.live.get_mut(user.as_str()) {
                    Some(at) => Some(std::mem::replace(at, n)),
                    None => {
                        self.live.insert(user.clone(), n);
                        None
                    }
                };
                if let Some(old) = old {
                    self.leave(old, user, &mut w);
                }
            }
            self.records.insert(
                n,
                Record {
                    users,
                    ..Record::default()
                },
            );
            w.record = Some(n);
        }
        while self.bytes > self.bound.unwrap_or(BYTES) || self.live.len() > LIVE {
            // Never the record this flush writes: its size is not known yet.
            if w.record == self.records.keys().next().copied() {
                break;
            }
            let Some((n, record)) = self.records.pop_first() else {
                break;
            };
            for user in record.users {
                self.live.remove(&user);
                w.to_keys.push(user);
            }
            self.bytes -= record.bytes;
            w.removed.push((n, record.chunks));
        }
        w
    }

    /// Every head to its key, every record removed: before a pass that
    /// reads the heads' keys themselves (an export).
    pub fn flush_all(&mut self) -> HeadWrites {
        let mut w = HeadWrites {
            to_keys: self.changed.drain().collect(),
            ..HeadWrites::default()
        };
        for (n, record) in std::mem::take(&mut self.records) {
            w.to_keys.extend(record.users);
            w.removed.push((n, record.chunks));
        }
        self.live.clear();
        self.bytes = 0;
        w.to_keys.sort();
        w.to_keys.dedup();
        w
    }

    /// The users whose newest head record `n` holds.
    pub fn users_of(&self, n: u64) -> impl Iterator<Item = &str> {
        self.records
            .get(&n)
            .into_iter()
            .flat_map(|r| r.users.iter().map(String::as_str))
    }

    /// The new record `n` was written as `chunks` values of `bytes` in all.
    pub fn written_as(&mut self, n: u64, chunks: u16, bytes: usize) {
        if let Some(r) = self.records.get_mut(&n) {
            r.chunks = chunks;
            r.bytes = bytes;
            self.bytes += bytes;
        }
    }

    /// `user`'s head moved on from record `n`; a record left with no user
    /// is removed.
    fn leave(&mut self, n: u64, user: &str, w: &mut HeadWrites) {
        let Some(record) = self.records.get_mut(&n) else {
            return;
        };
        record.users.remove(user);
        if record.users.is_empty() {
            let (chunks, bytes) = (record.chunks, record.bytes);
            self.records.remove(&n);
            self.bytes -= bytes;
            w.removed.push((n, chunks));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(j: &HeadJournal, w: &HeadWrites) -> Vec<String> {
        let mut u: Vec<String> = w
            .record
            .map(|n| j.users_of(n).map(str::to_owned).collect())
            .unwrap_or_default();
        u.sort();
        u
    }

    #[test]
    fn a_flush_journals_what_changed_once_and_nothing_when_nothing_did() {
        let mut j = HeadJournal::default();
        j.changed("alice");
        j.changed("bob");
        j.changed("alice");
        assert!(j.pinned("alice") && !j.pinned("carol"));
        let w = j.flush();
        assert_eq!(users(&j, &w), ["alice", "bob"]);
        assert!(w.to_keys.is_empty() && w.removed.is_empty());
        j.written_as(0, 1, 100);
        assert!(j.pinned("alice"), "held in the record only");
        assert_eq!(j.flush(), HeadWrites::default());
    }

    #[test]
    fn a_record_whose_heads_all_moved_on_is_removed() {
        let mut j = HeadJournal::default();
        j.changed("alice");
        j.flush();
        j.written_as(0, 2, 100);
        j.changed("alice");
        let w = j.flush();
        assert_eq!(w.record, Some(1));
        assert_eq!(w.removed, [(0, 2)]);
        assert!(w.to_keys.is_empty());
    }

    #[test]
    fn past_the_size_bound_the_oldest_records_go_to_the_keys() {
        let mut j = HeadJournal::default();
        let quarter = BYTES / 4;
        for i in 0..4 {
            j.changed(&format!("user{i}"));
            let w = j.flush();
            j.written_as(i, 1, quarter);
            assert!(w.to_keys.is_empty(), "flush {i}");
        }
        // The new record is never retired with the old ones, however big.
        j.changed("late");
        let w = j.flush();
        assert!(w.to_keys.is_empty());
        j.written_as(4, 3, 2 * quarter);
        j.changed("later");
        let w = j.flush();
        assert_eq!(w.to_keys, ["user0", "user1"]);
        assert_eq!(w.removed, [(0, 1), (1, 1)]);
        assert!(!j.pinned("user1") && j.pinned("user2") && j.pinned("later"));
        assert_eq!(j.pinned_count(), 4);
    }

    #[test]
    fn past_the_live_bound_old_records_go_to_the_keys() {
        let mut j = HeadJournal::default();
        for i in 0..=LIVE {
            j.changed(&format!("user{i}"));
        }
        j.flush();
        j.written_as(0, 9, 1000);
        j.changed("late");
        let w = j.flush();
        assert_eq!(w.to_keys.len(), LIVE + 1);
        assert_eq!(w.removed, [(0, 9)]);
        assert_eq!(j.pinned_count(), 1);
    }

    #[test]
    fn flush_all_sends_every_head_to_its_key() {
        let mut j = HeadJournal::default();
        j.changed("alice");
        j.flush();
        j.written_as(0, 1, 100);
        j.changed("bob");
        j.changed("alice");
        let w = j.flush_all();
        assert_eq!(w.to_keys, ["alice", "bob"]);
        assert_eq!(w.removed, [(0, 1)]);
        assert_eq!(j.pinned_count(), 0);
        assert_eq!(j.flush(), HeadWrites::default());
    }
}
