//! What the serving tidemark already knows of the rows its stanzas read
//! most, so that reading it costs no round trip.
//!
//! Sound because one tidemark serves a database and writes through this
//! one session (`leader.rs`): every change to these rows passes here. A
//! standby learns nothing until it serves, and a batch rolled back forgets
//! everything (its writes are known here before they commit). Bounded:
//! emptied when full, as the status log's cache is.

use std::collections::HashMap;
use std::hash::Hash;

use crate::store::{MessageRecord, Seq};

const LIMIT: usize = 65_536;
/// Messages are larger: a few hundred bytes each.
const MESSAGES: usize = 16_384;

/// A map emptied when it reaches its limit.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    limit: usize,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    fn new(limit: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            limit,
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.len() >= self.limit {
            self.map.clear();
        }
        self.map.insert(key, value);
    }

    fn clear(&mut self) {
        self.map.clear();
    }
}

/// Two names as one key (a JID holds no NUL).
fn pair(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

pub(super) struct Known {
    /// (contact, watcher) -> whether the watcher may see the contact's
    /// presence.
    grants: Bounded<String, bool>,
    /// A user's read-receipts choice, `None` for none made.
    receipts: Bounded<String, Option<bool>>,
    /// seq -> its conversation (as stored) and the message as written.
    messages: Bounded<Seq, (String, MessageRecord)>,
    /// (conversation, sender, id) -> the newest seq written with them.
    newest_by_id: Bounded<(String, String, String), Seq>,
    /// (conversation, reader) -> the reader's mark.
    marks: Bounded<String, Seq>,
    /// Sequence numbers this session took and has not written a message
    /// with: no row holds them (a sequence never hands a number out twice).
    fresh: Bounded<Seq, ()>,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            grants: Bounded::new(LIMIT),
            receipts: Bounded::new(LIMIT),
            messages: Bounded::new(MESSAGES),
            newest_by_id: Bounded::new(MESSAGES),
            marks: Bounded::new(LIMIT),
            fresh: Bounded::new(LIMIT),
        }
    }
}

impl Known {
    pub fn grant(&self, contact: &str, watcher: &str) -> Option<bool> {
        self.grants.get(&pair(contact, watcher)).copied()
    }

    pub fn set_grant(&mut self, contact: &str, watcher: &str, allowed: bool) {
        self.grants.insert(pair(contact, watcher), allowed);
    }

    pub fn receipts(&self, user: &str) -> Option<Option<bool>> {
        self.receipts.get(&user.to_owned()).copied()
    }

    pub fn set_receipts(&mut self, user: &str, enabled: Option<bool>) {
        self.receipts.insert(user.to_owned(), enabled);
    }

    /// `Some(found)` when known: the message at `seq` if it is of `conv`.
    pub fn message(&self, conv: &str, seq: Seq) -> Option<Option<MessageRecord>> {
        let (of, record) = self.messages.get(&seq)?;
        Some((of == conv).then(|| record.clone()))
    }

    /// Whether `seq` is known to be a message of `conv`.
    pub fn is_message_of(&self, conv: &str, seq: Seq) -> bool {
        self.messages.get(&seq).is_some_and(|(of, _)| of == conv)
    }

    /// The newest message of `conv` from `sender` with `id`, when known.
    pub fn find(&self, conv: &str, sender: &str, id: &str) -> Option<(Seq, MessageRecord)> {
        let seq = *self
            .newest_by_id
            .get(&(conv.to_owned(), sender.to_owned(), id.to_owned()))?;
        let record = self.message(conv, seq)??;
        // The row at `seq` may have been rewritten with another id since.
        (record.sender == sender && record.id == id).then_some((seq, record))
    }

    /// `record` is what the row at `seq` holds now.
    pub fn set_message(&mut self, conv: &str, seq: Seq, record: &MessageRecord) {
        let key = (conv.to_owned(), record.sender.clone(), record.id.clone());
        let newest = self.newest_by_id.get(&key).map_or(seq, |n| (*n).max(seq));
        self.newest_by_id.insert(key, newest);
        self.messages.insert(seq, (conv.to_owned(), record.clone()));
    }

    /// Rows of `messages` went away (retention, the refusal bound).
    pub fn forget_messages(&mut self) {
        self.messages.clear();
        self.newest_by_id.clear();
    }

    pub fn mark(&self, conv: &str, reader: &str) -> Option<Seq> {
        self.marks.get(&pair(conv, reader)).copied()
    }

    pub fn set_mark(&mut self, conv: &str, reader: &str, seq: Seq) {
        self.marks.insert(pair(conv, reader), seq);
    }

    /// `seq` was just taken from the database's sequence.
    pub fn set_fresh(&mut self, seq: Seq) {
        self.fresh.insert(seq, ());
    }

    /// Whether no row can hold `seq` yet; it is not fresh after this.
    pub fn take_fresh(&mut self, seq: Seq) -> bool {
        self.fresh.map.remove(&seq).is_some()
    }

    pub fn forget(&mut self) {
        self.grants.clear();
        self.receipts.clear();
        self.forget_messages();
        self.marks.clear();
        self.fresh.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_starts_over_rather_than_grow() {
        let mut b = Bounded::new(2);
        b.insert(1, "a");
        b.insert(2, "b");
        b.insert(3, "c");
        assert_eq!((b.get(&1), b.get(&3)), (None, Some(&"c")));
        assert!(b.map.len() <= 2);
    }
}
