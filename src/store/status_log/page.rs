//! The on-disk form of 1:1 statuses: pages of [`Slot`]s, one page per
//! [`PAGE_SLOTS`] consecutive sequence numbers.
//!
//! Why pages: sled spends about 200 bytes on disk per entry it keeps,
//! whatever the entry's size, and far more per entry written at a random
//! place (measured: a per-status id index alone cost 345 B/status). A page
//! key only ever grows, so writing statuses is appending to the end of one
//! tree, and sled's per-entry cost is shared by a page's statuses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Failure, Millis, Seq, StoreError, StoreResult};

/// Sequence numbers per page, as a shift: 256.
pub const PAGE_BITS: u32 = 8;

pub fn page_of(seq: Seq) -> u64 {
    seq >> PAGE_BITS
}

pub fn slot_of(seq: Seq) -> u8 {
    (seq & ((1 << PAGE_BITS) - 1)) as u8
}

pub fn seq_at(page: u64, slot: u8) -> Seq {
    (page << PAGE_BITS) | Seq::from(slot)
}

pub const SENDER_IS_HI: u8 = 1;
pub const WANTS_RECEIPT: u8 = 1 << 1;
pub const WANTS_MARKERS: u8 = 1 << 2;
pub const READABLE: u8 = 1 << 3;
pub const QUEUED: u8 = 1 << 4;
/// Refused: kept for the sender's status queries, not part of the
/// conversation's chain (its count per sender is bounded and the oldest go).
pub const REFUSED: u8 = 1 << 5;

/// One 1:1 message. Times after `sent_at` are kept as differences from it,
/// which are a byte or two where the absolute time takes six.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The interned conversation.
    pub conv: u64,
    /// How far back the conversation's previous message is (`seq - prev`);
    /// 0 for the first. The chain lets a conversation be walked newest first
    /// without an index.
    pub back: u64,
    pub flags: u8,
    pub sent_at: Millis,
    pub delivered: Option<i64>,
    /// When the recipient's tidemark first passed this message.
    pub read: Option<i64>,
    pub failed: Option<Failure>,
    /// The sender's own id.
    pub id: String,
}

impl Slot {
    pub fn sender_side(&self) -> u8 {
        u8::from(self.flags & SENDER_IS_HI != 0)
    }

    pub fn is(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn prev(&self, seq: Seq) -> Option<Seq> {
        (self.back != 0).then(|| seq.saturating_sub(self.back))
    }

    pub fn at(&self, delta: Option<i64>) -> Option<Millis> {
        delta.map(|d| self.sent_at.saturating_add_signed(d))
    }

    pub fn delta(&self, at: Millis) -> i64 {
        at as i64 - self.sent_at as i64
    }
}

/// The slots of one page, by their place in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub slots: BTreeMap<u8, Slot>,
    /// Issue 9: the start of a slot's text, by its place, kept only when
    /// `status.preview_chars` is above 0. Encoded after the slots and only
    /// when there is one, so that a page without previews is byte for byte
    /// what schema 2 wrote before issue 9, and a page with previews still
    /// decodes in a tidemark that knows nothing of them (postcard leaves
    /// trailing bytes alone).
    pub previews: BTreeMap<u8, String>,
}

fn corrupt(e: postcard::Error) -> StoreError {
    StoreError::Corrupt {
        what: "status page",
        detail: e.to_string(),
    }
}

impl Page {
    pub fn encode(&self) -> StoreResult<Vec<u8>> {
        let slots: Vec<(&u8, &Slot)> = self.slots.iter().collect();
        let mut bytes = postcard::to_allocvec(&slots).map_err(corrupt)?;
        // Only previews of slots still here: a removed slot takes its text.
        let previews: Vec<(&u8, &String)> = self
            .previews
            .iter()
            .filter(|(at, _)| self.slots.contains_key(at))
            .collect();
        if !previews.is_empty() {
            bytes.extend(postcard::to_allocvec(&previews).map_err(corrupt)?);
        }
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> StoreResult<Self> {
        let (slots, rest): (Vec<(u8, Slot)>, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(corrupt)?;
        let previews: Vec<(u8, String)> = if rest.is_empty() {
            Vec::new()
        } else {
            postcard::from_bytes(rest).map_err(corrupt)?
        };
        Ok(Page {
            slots: slots.into_iter().collect(),
            previews: previews.into_iter().collect(),
        })
    }

    /// Removes the slot at `at` with its preview.
    pub fn remove(&mut self, at: u8) {
        self.slots.remove(&at);
        self.previews.remove(&at);
    }
}

/// What tidemark keeps per 1:1 conversation: where its chain starts and
/// each side's tidemark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvState {
    /// The newest message in the chain, 0 for none.
    pub head: Seq,
    /// The oldest message ever chained, 0 for none: a lookup that misses
    /// the recent-id index need not walk a conversation younger than it.
    pub first: Seq,
    /// The tidemark of each side (0: the lower address, 1: the higher).
    pub marks: [Seq; 2],
    /// The newest message whose id is in an id block; the chain after it
    /// is the unsealed tail.
    pub sealed: Seq,
    /// How many messages the unsealed tail holds.
    pub pending: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_split_into_page_and_slot_and_back() {
        for seq in [1, 255, 256, 257, 1 << 40] {
            assert_eq!(seq_at(page_of(seq), slot_of(seq)), seq);
        }
        assert_eq!(page_of(255), 0);
        assert_eq!(page_of(256), 1);
    }

    #[test]
    fn a_page_round_trips_and_stays_small() {
        let mut page = Page::default();
        for i in 0..=255u8 {
            page.slots.insert(
                i,
                Slot {
                    conv: 4000 + u64::from(i),
                    back: 300,
                    flags: WANTS_RECEIPT | WANTS_MARKERS | READABLE,
                    sent_at: 1_790_000_000_000,
                    delivered: Some(120),
                    read: Some(4000),
                    failed: None,
                    id: format!("0f8b1d2e-{i:04}-4c6a-9d7e-2b5a8c3f1e90"),
                },
            );
        }
        let bytes = page.encode().unwrap();
        assert_eq!(Page::decode(&bytes).unwrap(), page);
        // A UUID id is 37 bytes of the slot; everything else fits in 20.
        assert!(
            bytes.len() / 256 <= 60,
            "{} bytes per slot",
            bytes.len() / 256
        );
        // Previews come after the slots: the bytes before them are the
        // page without previews, so either tidemark reads either page.
        let mut with = page.clone();
        with.previews.insert(3, "Lunch at noon?".into());
        with.previews.insert(7, "日本語".into());
        let more = with.encode().unwrap();
        assert_eq!(&more[..bytes.len()], &bytes[..]);
        assert_eq!(Page::decode(&more).unwrap(), with);
        let old: Vec<(u8, Slot)> = postcard::from_bytes(&more).unwrap();
        assert_eq!(old.len(), 256);
        // A preview whose slot is gone is not written.
        with.remove(3);
        with.slots.remove(&7);
        let fewer = Page::decode(&with.encode().unwrap()).unwrap();
        assert_eq!(fewer.previews.len(), 0);
    }
}
