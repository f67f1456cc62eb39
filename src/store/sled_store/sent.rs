//! Issue 9: each sender's sent messages, for the `status` ad-hoc command
//! (xep/status-command.md).
//!
//! The status log chains messages per conversation, so "what did alice
//! send lately, anywhere" needs an index by sender. It is kept in chunks of
//! up to [`SENT_CHUNK`] entries, one sled entry per chunk, keyed
//! `sender NUL first-seq` (tree `sent_by_sender`): sled spends about 200
//! bytes per entry whatever its size, so an entry per message would cost
//! more than the message's status itself. A chunk's entries are varint
//! differences from its key, a few bytes each, and each addressee is
//! written once per chunk. A sender keeps about the newest `keep`
//! (`status.sent_list`): when a new chunk is started, the oldest chunks
//! go while the rest still hold `keep`.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::staged::T;
use super::{SledStore, decode, encode};
use crate::store::keys;
use crate::store::{Millis, SENT_CHUNK, SentEntry, SentFrom, SentTo, Seq, StoreResult};

/// A chunk as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Chunk {
    /// `sent_at` of the entries are differences from this.
    base_at: Millis,
    /// The addressees of this chunk's entries, each once.
    to: Vec<SentTo>,
    /// Oldest first.
    entries: Vec<ChunkEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChunkEntry {
    /// `seq` minus the chunk key's sequence number.
    seq: u64,
    /// `sent_at` minus the chunk's `base_at` (an import may go back).
    at: i64,
    /// Index into [`Chunk::to`].
    to: u32,
    preview: Option<String>,
}

fn chunk_key(sender: &str, base: Seq) -> Vec<u8> {
    keys::queue(sender, base)
}

fn prefix(sender: &str) -> Vec<u8> {
    keys::queue_prefix(sender)
}

/// A chunk's entries, oldest first.
fn unpack(base: Seq, bytes: &[u8]) -> StoreResult<Vec<SentEntry>> {
    let chunk: Chunk = decode(bytes, "sent messages chunk")?;
    let mut out = Vec::with_capacity(chunk.entries.len());
    for e in chunk.entries {
        let Some(to) = chunk.to.get(e.to as usize) else {
            continue;
        };
        out.push(SentEntry {
            seq: base.saturating_add(e.seq),
            sent_at: chunk.base_at.saturating_add_signed(e.at),
            to: to.clone(),
            preview: e.preview,
        });
    }
    Ok(out)
}

/// `entries` (oldest first, none below `base`) as a stored chunk.
fn pack(base: Seq, entries: &[SentEntry]) -> StoreResult<Vec<u8>> {
    let base_at = entries.first().map_or(0, |e| e.sent_at);
    let mut chunk = Chunk {
        base_at,
        ..Chunk::default()
    };
    for e in entries {
        let to = match chunk.to.iter().position(|t| *t == e.to) {
            Some(i) => i,
            None => {
                chunk.to.push(e.to.clone());
                chunk.to.len() - 1
            }
        };
        chunk.entries.push(ChunkEntry {
            seq: e.seq - base,
            at: e.sent_at as i64 - base_at as i64,
            to: to as u32,
            preview: e.preview.clone(),
        });
    }
    encode(&chunk, "sent messages chunk")
}

impl SledStore {
    /// Every chunk of `sender`, oldest first: (first seq, entries).
    fn sent_chunks(&self, sender: &str) -> StoreResult<Vec<(Seq, Vec<SentEntry>)>> {
        let prefix = prefix(sender);
        let mut out = Vec::new();
        for (k, v) in self
            .staged
            .scan_prefix(T::Sent, &prefix, false, usize::MAX)?
        {
            let Some(base) = keys::seq_from(&k[prefix.len()..]) else {
                continue;
            };
            out.push((base, unpack(base, &v)?));
        }
        Ok(out)
    }

    pub(super) fn put_sent_entry(
        &self,
        sender: &str,
        entry: &SentEntry,
        keep: usize,
    ) -> StoreResult<()> {
        // The chunk with the greatest first seq at or below this one.
        let found = self.staged.range(
            T::Sent,
            Bound::Included(prefix(sender)),
            Bound::Included(chunk_key(sender, entry.seq)),
            true,
            1,
        )?;
        let Some((k, v)) = found.into_iter().next() else {
            self.staged.insert(
                T::Sent,
                chunk_key(sender, entry.seq),
                pack(entry.seq, std::slice::from_ref(entry))?,
            );
            return self.trim_sent(sender, keep);
        };
        let base = keys::seq_from(&k[prefix(sender).len()..]).unwrap_or(entry.seq);
        let mut entries = unpack(base, &v)?;
        let at = entries.partition_point(|e| e.seq < entry.seq);
        if entries.get(at).is_some_and(|e| e.seq == entry.seq) {
            // Applied twice, or an import's preview for an entry already
            // there: the same message, replaced.
            entries[at] = entry.clone();
            self.staged.insert(T::Sent, k, pack(base, &entries)?);
            return Ok(());
        }
        if entries.len() < SENT_CHUNK {
            entries.insert(at, entry.clone());
            self.staged.insert(T::Sent, k, pack(base, &entries)?);
            return Ok(());
        }
        // Full: a new chunk starts here, taking the entries after it (none
        // unless an import goes back in time), so chunks never overlap.
        let mut newer = entries.split_off(at);
        newer.insert(0, entry.clone());
        if entries.is_empty() {
            self.staged.remove(T::Sent, k);
        } else if at < SENT_CHUNK {
            self.staged.insert(T::Sent, k, pack(base, &entries)?);
        }
        self.staged.insert(
            T::Sent,
            chunk_key(sender, entry.seq),
            pack(entry.seq, &newer)?,
        );
        self.trim_sent(sender, keep)
    }

    /// Drops the oldest chunks while the others hold at least `keep`.
    fn trim_sent(&self, sender: &str, keep: usize) -> StoreResult<()> {
        let chunks = self.sent_chunks(sender)?;
        let mut total: usize = chunks.iter().map(|(_, e)| e.len()).sum();
        for (base, entries) in chunks {
            if total.saturating_sub(entries.len()) < keep {
                break;
            }
            total -= entries.len();
            self.staged.remove(T::Sent, chunk_key(sender, base));
        }
        Ok(())
    }

    pub(super) fn sent_entries(
        &self,
        sender: &str,
        from: SentFrom,
        limit: usize,
        to: Option<&SentTo>,
    ) -> StoreResult<Vec<SentEntry>> {
        // A sender's chunks are bounded by `keep`: reading all of them is
        // the bounded work a request costs.
        let all = self
            .sent_chunks(sender)?
            .into_iter()
            .flat_map(|(_, e)| e)
            .filter(|e| to.is_none_or(|t| *t == e.to));
        let mut out: Vec<SentEntry> = match from {
            SentFrom::Before(seq) => {
                let mut v: Vec<SentEntry> = all.filter(|e| e.seq < seq).collect();
                v.reverse();
                v.truncate(limit);
                v
            }
            SentFrom::After(seq) => {
                let mut v: Vec<SentEntry> = all.filter(|e| e.seq > seq).take(limit).collect();
                v.reverse();
                v
            }
        };
        out.truncate(limit);
        Ok(out)
    }

    /// Retention of one chunk: entries sent before `cutoff` go (their
    /// messages and previews are going too); an empty chunk goes.
    pub(super) fn expire_sent_chunk(&self, k: &[u8], v: &[u8], cutoff: Millis) -> StoreResult<()> {
        let Some((_, base)) = keys::split_seq_suffix(k) else {
            return Ok(());
        };
        let Ok(entries) = unpack(base, v) else {
            return Ok(());
        };
        let before = entries.len();
        let kept: Vec<SentEntry> = entries
            .into_iter()
            .filter(|e| e.sent_at >= cutoff)
            .collect();
        if kept.len() == before {
            return Ok(());
        }
        if kept.is_empty() {
            self.staged.remove(T::Sent, k);
        } else {
            self.staged.insert(T::Sent, k, pack(base, &kept)?);
        }
        Ok(())
    }

    /// Every entry of every sender, for export: (sender, entry).
    pub(super) fn for_each_sent(
        &self,
        mut each: impl FnMut(String, SentEntry) -> StoreResult<()>,
    ) -> StoreResult<()> {
        for item in self.staged.tree(T::Sent).iter() {
            let (k, v) = item?;
            let Some((sender, base)) = keys::split_seq_suffix(&k) else {
                continue;
            };
            let sender = String::from_utf8_lossy(sender).into_owned();
            for e in unpack(base, &v)? {
                each(sender.clone(), e)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_round_trips_and_an_entry_costs_a_few_bytes() {
        let entries: Vec<SentEntry> = (0..SENT_CHUNK as u64)
            .map(|i| SentEntry {
                seq: 1_000_000 + i * 37,
                sent_at: 1_790_000_000_000 + i * 61_000,
                to: SentTo::Contact(format!("contact{}@example.org", i % 4)),
                preview: None,
            })
            .collect();
        let bytes = pack(1_000_000, &entries).unwrap();
        assert_eq!(unpack(1_000_000, &bytes).unwrap(), entries);
        // Four addressees of 21 bytes once, then about 7 bytes per entry.
        assert!(
            bytes.len() <= 100 + 8 * SENT_CHUNK,
            "{} bytes for {SENT_CHUNK} entries",
            bytes.len()
        );
    }
}
