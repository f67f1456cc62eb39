//! The ids of a conversation's older messages, on disk, in blocks of
//! [`BLOCK`]: one sled entry per 16 messages of a conversation, so that a
//! status query for an old message reads a few blocks instead of walking
//! the conversation a page per message. Blocks are derived from the pages
//! and only ever point at slots, which a lookup checks: a block left behind
//! by a crash, or pointing at messages retention removed, costs a check and
//! misleads nobody.

use serde::{Deserialize, Serialize};

use crate::store::{Seq, StoreError, StoreResult};

/// Messages per block. Measured at 300,000 statuses (`tidemark-bench
/// storage --statuses 300000`): 64 gave 97 bytes per status and status
/// queries for old messages at 310/s with a p99 of 15.9 ms (the unsealed
/// tail is walked a page per message); 16 gives 105 bytes and 8,873/s with
/// a p99 of 173 µs.
pub const BLOCK: u32 = 16;

/// The most blocks one lookup reads: 65,536 messages back in one
/// conversation, a few milliseconds, so that receipts naming ids nobody
/// sent cannot stall the connection for long whatever the history.
pub const SCAN_LIMIT: usize = 4_096;

/// The most slots one lookup checks against candidates from the blocks.
/// The hash is not keyed (blocks outlive the process), so a party to a
/// conversation could fill it with ids that collide; this bounds what
/// that costs, and at worst hides their own old messages from lookups.
pub const CANDIDATE_LIMIT: usize = 1_024;

pub const KIND: u8 = b'x';

/// `x`, the conversation, the newest sequence number in the block: newest
/// block last.
pub fn key(conv: u64, newest: Seq) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = KIND;
    k[1..9].copy_from_slice(&conv.to_be_bytes());
    k[9..].copy_from_slice(&newest.to_be_bytes());
    k
}

pub fn prefix(conv: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = KIND;
    k[1..].copy_from_slice(&conv.to_be_bytes());
    k
}

/// The newest sequence number of the block under `key`.
pub fn newest_of(key: &[u8]) -> Option<Seq> {
    Some(Seq::from_be_bytes(key.get(9..17)?.try_into().ok()?))
}

/// A stable hash of (side, id): blocks outlive the process, so unlike the
/// in-memory index it cannot be keyed per process. A collision, chosen or
/// not, only costs a slot check.
pub fn id_hash(side: u8, id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in std::iter::once(side).chain(id.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// (hash, how far before the block's newest message), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdBlock {
    pub entries: Vec<(u32, u64)>,
}

impl IdBlock {
    pub fn encode(&self) -> StoreResult<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| StoreError::Corrupt {
            what: "id block",
            detail: e.to_string(),
        })
    }

    pub fn decode(bytes: &[u8]) -> StoreResult<Self> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
            what: "id block",
            detail: e.to_string(),
        })
    }

    /// The messages in this block whose id may be `hash`, newest first.
    pub fn candidates(&self, newest: Seq, hash: u32) -> impl Iterator<Item = Seq> + '_ {
        self.entries
            .iter()
            .filter(move |(h, _)| *h == hash)
            .map(move |(_, back)| newest.saturating_sub(*back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_names_its_messages_by_id_and_side() {
        let block = IdBlock {
            entries: vec![
                (id_hash(0, "b"), 0),
                (id_hash(0, "a"), 5),
                (id_hash(1, "a"), 9),
            ],
        };
        let back = IdBlock::decode(&block.encode().unwrap()).unwrap();
        assert_eq!(back, block);
        assert_eq!(
            back.candidates(100, id_hash(0, "a")).collect::<Vec<_>>(),
            vec![95]
        );
        assert_eq!(
            back.candidates(100, id_hash(1, "a")).collect::<Vec<_>>(),
            vec![91]
        );
        assert_eq!(back.candidates(100, id_hash(0, "zz")).count(), 0);
        assert!(key(7, 1) < key(7, 2) && key(7, u64::MAX) < key(8, 0));
        assert_eq!(newest_of(&key(7, 42)), Some(42));
    }
}
