//! The ids of the newest 1:1 messages, in memory: receipts and markers name
//! recent messages, and an id index kept on disk would cost more than the
//! statuses themselves (sled rewrites a page for every entry put at a random
//! place). It is rebuilt from the newest pages when the store opens.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use crate::store::Seq;

/// (conversation, sender's side, hash of the sender's id).
type Key = (u64, u8, u64);

pub struct RecentIds {
    latest: HashMap<Key, Seq>,
    /// In sequence order, for eviction.
    order: VecDeque<(Seq, Key)>,
    capacity: usize,
    /// Every message with a sequence number from here on is in the index.
    floor: Seq,
    hasher: std::collections::hash_map::RandomState,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            latest: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            floor: 0,
            hasher: Default::default(),
        }
    }

    /// Nothing before `floor` is known to be indexed (after a reopen that
    /// read only the newest pages).
    pub fn set_floor(&mut self, floor: Seq) {
        self.floor = self.floor.max(floor);
    }

    pub fn floor(&self) -> Seq {
        self.floor
    }

    fn key(&self, conv: u64, side: u8, id: &str) -> Key {
        // Keyed by a per-process random hash, so a sender cannot choose ids
        // that collide; a collision is still checked against the slot.
        let mut h = self.hasher.build_hasher();
        h.write(id.as_bytes());
        (conv, side, h.finish())
    }

    pub fn insert(&mut self, conv: u64, side: u8, id: &str, seq: Seq) {
        let key = self.key(conv, side, id);
        let newer = self.latest.get(&key).is_none_or(|s| *s < seq);
        if newer {
            self.latest.insert(key, seq);
        }
        // Kept in order only while messages arrive in order; an older one
        // (an import out of order) is indexed but evicted with its place.
        if self.order.back().is_none_or(|(s, _)| *s <= seq) {
            self.order.push_back((seq, key));
        } else {
            let at = self.order.partition_point(|(s, _)| *s <= seq);
            self.order.insert(at, (seq, key));
        }
        while self.order.len() > self.capacity {
            let Some((old, key)) = self.order.pop_front() else {
                break;
            };
            if self.latest.get(&key) == Some(&old) {
                self.latest.remove(&key);
            }
            self.floor = self.floor.max(old + 1);
        }
    }

    /// The newest message with this id, if the index has it: to be checked
    /// against the slot, which may have gone or hash alike.
    pub fn get(&self, conv: u64, side: u8, id: &str) -> Option<Seq> {
        self.latest.get(&self.key(conv, side, id)).copied()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_of_a_reused_id_wins_and_old_ones_leave() {
        let mut ids = RecentIds::new(3);
        ids.insert(1, 0, "a", 10);
        ids.insert(1, 0, "a", 11);
        assert_eq!(ids.get(1, 0, "a"), Some(11));
        assert_eq!(ids.get(1, 1, "a"), None, "the other side's id is not it");
        ids.insert(1, 0, "b", 12);
        ids.insert(1, 0, "c", 13);
        assert_eq!(ids.len(), 3);
        assert_eq!(
            ids.floor(),
            11,
            "10 went, so not everything from 10 on is here"
        );
        assert_eq!(ids.get(1, 0, "a"), Some(11));
        ids.insert(1, 0, "d", 14);
        assert_eq!(ids.get(1, 0, "a"), None);
        assert_eq!(ids.floor(), 12);
    }
}
