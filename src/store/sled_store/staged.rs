//! Writes to the trees beside the status log, held in memory until the
//! flush writes them, with the status log's pages, in one sled transaction:
//! a crash keeps every write of a group commit or none, never half of a
//! stanza's. Reads see the staged writes first.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::StoreResult;

/// The staged trees, by position in [`StagedTrees::trees`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum T {
    Marks,
    MarkLog,
    Grants,
    Queue,
    Rooms,
    RoomMembers,
    RoomMessages,
    RoomMessageIds,
    RoomCreators,
    Prefs,
    Refusals,
    RefusalCounts,
    // Room occupancy (issue 9).
    Occupants,
    /// Issue 9: the rooms each user is or was a member of (`sent.rs`).
    MemberRooms,
    /// Issue 10: the conversation list (`inbox.rs`).
    Inbox,
    /// Issue 10: how many messages each room had at each message.
    RoomCounts,
    /// Issue 9: each room's subject, by room.
    RoomSubjects,
    /// Issue 11: team desks (`desk.rs`).
    Desks,
}

pub(super) const TREE_NAMES: [(T, &str); 18] = [
    (T::Marks, "marks"),
    (T::MarkLog, "mark_log"),
    (T::Grants, "presence_grants"),
    (T::Queue, "queue"),
    (T::Rooms, "rooms"),
    (T::RoomMembers, "room_members"),
    (T::RoomMessages, "room_messages"),
    (T::RoomMessageIds, "room_message_ids"),
    (T::RoomCreators, "room_creators"),
    (T::Prefs, "read_receipt_prefs"),
    (T::Refusals, "refusals"),
    (T::RefusalCounts, "refusal_counts"),
    // Room occupancy (issue 9).
    (T::Occupants, "room_occupants"),
    (T::MemberRooms, "member_rooms"),
    // In the status log's own tree, under keys of its own (`I...`), so
    // that a flush of 1:1 statuses and their list entries stays one batch.
    (T::Inbox, "status_log"),
    (T::RoomCounts, "room_counts"),
    (T::RoomSubjects, "room_subjects"),
    (T::Desks, "desks"),
];

/// One tree's staged writes: key -> the new value, `None` for removed.
type TreeWrites = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Per tree.
pub(super) type Writes = Vec<TreeWrites>;

type StoredEntries<'a> = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + 'a>;
type StagedEntries<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

#[derive(Default)]
struct Layers {
    dirty: Writes,
    /// What a running flush writes: read from until sled has it.
    flushing: Option<Arc<Writes>>,
}

pub(super) struct StagedTrees {
    trees: Vec<sled::Tree>,
    layers: Mutex<Layers>,
}

impl StagedTrees {
    pub fn open(db: &sled::Db) -> StoreResult<Self> {
        let mut trees = Vec::with_capacity(TREE_NAMES.len());
        for (i, (t, name)) in TREE_NAMES.iter().enumerate() {
            debug_assert_eq!(*t as usize, i);
            trees.push(db.open_tree(name)?);
        }
        Ok(StagedTrees {
            layers: Mutex::new(Layers {
                dirty: vec![BTreeMap::new(); trees.len()],
                flushing: None,
            }),
            trees,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tree itself, for whole-store passes after a flush (export,
    /// retention, upgrade).
    pub fn tree(&self, t: T) -> &sled::Tree {
        &self.trees[t as usize]
    }

    pub fn trees(&self) -> &[sled::Tree] {
        &self.trees
    }

    fn staged(l: &Layers, t: T, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(v) = l.dirty[t as usize].get(key) {
            return Some(v.clone());
        }
        l.flushing
            .as_ref()
            .and_then(|f| f[t as usize].get(key).cloned())
    }

    pub fn get(&self, t: T, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        if let Some(v) = Self::staged(&self.lock(), t, key) {
            return Ok(v);
        }
        Ok(self.trees[t as usize].get(key)?.map(|v| v.to_vec()))
    }

    pub fn contains(&self, t: T, key: &[u8]) -> StoreResult<bool> {
        Ok(self.get(t, key)?.is_some())
    }

    pub fn insert(&self, t: T, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.lock().dirty[t as usize].insert(key.into(), Some(value.into()));
    }

    pub fn remove(&self, t: T, key: impl Into<Vec<u8>>) {
        self.lock().dirty[t as usize].insert(key.into(), None);
    }

    /// Replaces the value under `key` with what `f` makes of it, atomically
    /// with every other staged read and write.
    pub fn update(
        &self,
        t: T,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> StoreResult<()> {
        let mut l = self.lock();
        let current = match Self::staged(&l, t, key) {
            Some(v) => v,
            None => self.trees[t as usize].get(key)?.map(|v| v.to_vec()),
        };
        let new = f(current.as_deref());
        if new != current {
            l.dirty[t as usize].insert(key.to_vec(), new);
        }
        Ok(())
    }

    /// Entries with keys in (`from`, `to`), in order (`rev` for newest
    /// first), at most `limit`: sled's merged with the staged writes.
    pub fn range(
        &self,
        t: T,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
        rev: bool,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let bounds = (from, to);
        // The staged writes in range, flushing under dirty.
        let over: TreeWrites = {
            let l = self.lock();
            let mut over = BTreeMap::new();
            if let Some(f) = &l.flushing {
                for (k, v) in f[t as usize].range(bounds.clone()) {
                    over.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in l.dirty[t as usize].range(bounds.clone()) {
                over.insert(k.clone(), v.clone());
            }
            over
        };
        let tree = &self.trees[t as usize];
        let stored: StoredEntries = if rev {
            Box::new(tree.range(bounds.clone()).rev())
        } else {
            Box::new(tree.range(bounds))
        };
        let mut staged: StagedEntries = if rev {
            Box::new(over.iter().rev())
        } else {
            Box::new(over.iter())
        };
        let mut out = Vec::new();
        let mut next_staged = staged.next();
        let before = |a: &[u8], b: &[u8]| if rev { a > b } else { a < b };
        for entry in stored {
            if out.len() >= limit {
                return Ok(out);
            }
            let (k, v) = entry?;
            // Staged keys that come first.
            while let Some((sk, sv)) = next_staged {
                if !before(sk, &k) {
                    break;
                }
                if let Some(sv) = sv
                    && out.len() < limit
                {
                    out.push((sk.clone(), sv.clone()));
                }
                next_staged = staged.next();
            }
            match next_staged {
                Some((sk, sv)) if sk.as_slice() == k.as_ref() => {
                    if let Some(sv) = sv
                        && out.len() < limit
                    {
                        out.push((sk.clone(), sv.clone()));
                    }
                    next_staged = staged.next();
                }
                _ => {
                    if out.len() < limit {
                        out.push((k.to_vec(), v.to_vec()));
                    }
                }
            }
        }
        while let Some((sk, sv)) = next_staged {
            if out.len() >= limit {
                break;
            }
            if let Some(sv) = sv {
                out.push((sk.clone(), sv.clone()));
            }
            next_staged = staged.next();
        }
        Ok(out)
    }

    pub fn scan_prefix(
        &self,
        t: T,
        prefix: &[u8],
        rev: bool,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let to = match prefix_end(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        self.range(t, Bound::Included(prefix.to_vec()), to, rev, limit)
    }

    /// Whether nothing is stored or staged in any tree.
    pub fn is_empty(&self) -> StoreResult<bool> {
        for (t, _) in TREE_NAMES {
            if !self
                .range(t, Bound::Unbounded, Bound::Unbounded, false, 1)?
                .is_empty()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Takes what is staged for a flush; [`StagedTrees::end_flush`] must
    /// follow.
    pub fn begin_flush(&self) -> Arc<Writes> {
        let mut l = self.lock();
        let empty = vec![BTreeMap::new(); self.trees.len()];
        let writes = Arc::new(std::mem::replace(&mut l.dirty, empty));
        l.flushing = Some(writes.clone());
        writes
    }

    /// After the flush's transaction: on failure, what it held is staged
    /// again, under whatever was written since.
    pub fn end_flush(&self, writes: Arc<Writes>, written: bool) {
        let mut l = self.lock();
        l.flushing = None;
        if !written {
            for (t, map) in writes.iter().enumerate() {
                for (k, v) in map {
                    l.dirty[t].entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
}

/// The smallest key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The batch of one tree's writes.
pub(super) fn batch(map: &TreeWrites) -> sled::Batch {
    let mut b = sled::Batch::default();
    extend(&mut b, map);
    b
}

/// Adds `map`'s writes to `b`: for a staged tree kept inside another
/// tree's key space (the conversation list in the status log's tree).
pub(super) fn extend(b: &mut sled::Batch, map: &TreeWrites) {
    for (k, v) in map {
        match v {
            Some(v) => b.insert(k.as_slice(), v.as_slice()),
            None => b.remove(k.as_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
        v.iter().map(|(k, _)| k.as_slice()).collect()
    }

    #[test]
    fn ranges_merge_staged_writes_over_stored_ones_both_ways() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let s = StagedTrees::open(&db).unwrap();
        for k in [b"a1", b"a3", b"a5", b"b1"] {
            s.tree(T::Queue).insert(k, b"old").unwrap();
        }
        s.insert(T::Queue, b"a2".to_vec(), b"new".to_vec());
        s.insert(T::Queue, b"a3".to_vec(), b"new".to_vec());
        s.remove(T::Queue, b"a5".to_vec());
        s.insert(T::Queue, b"a6".to_vec(), b"new".to_vec());
        let all = s.scan_prefix(T::Queue, b"a", false, usize::MAX).unwrap();
        assert_eq!(keys(&all), vec![&b"a1"[..], b"a2", b"a3", b"a6"]);
        assert_eq!(all[2].1, b"new");
        let last_two = s.scan_prefix(T::Queue, b"a", true, 2).unwrap();
        assert_eq!(keys(&last_two), vec![&b"a6"[..], b"a3"]);
        assert_eq!(s.get(T::Queue, b"a5").unwrap(), None);
        // A flush in flight is still read; a failed one is staged again.
        let w = s.begin_flush();
        assert_eq!(s.get(T::Queue, b"a2").unwrap(), Some(b"new".to_vec()));
        s.insert(T::Queue, b"a2".to_vec(), b"newer".to_vec());
        s.end_flush(w, false);
        assert_eq!(s.get(T::Queue, b"a2").unwrap(), Some(b"newer".to_vec()));
        assert_eq!(s.get(T::Queue, b"a6").unwrap(), Some(b"new".to_vec()));
        assert!(
            s.tree(T::Queue).get(b"a6").unwrap().is_none(),
            "not in sled before a flush"
        );
    }

    #[test]
    fn a_prefix_ends_before_the_next_one() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255]), None);
    }
}
