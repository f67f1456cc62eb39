//! Retention for the sled backend: a pass over the store in bounded steps
//! (`storage.retention_days`), kind of entry by kind of entry.

use super::staged::T;
use super::{SledStore, decode, decode_seq};
use crate::store::keys::{self, ConversationKey};
use crate::store::{Expiry, ExpiryCursor, Millis, RoomMessage, Seq, StoreResult};

/// The kinds of entry a retention pass visits, in order. Held stanzas come
/// first, while the records that date them still exist.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Queue,
    Messages,
    /// Derived from the messages: not counted as removed statuses.
    IdBlocks,
    RoomMessages,
    MarkLog,
    /// Issue 10: conversation-list entries (not counted as statuses).
    Inbox,
}

impl Phase {
    const ALL: [Phase; 6] = [
        Phase::Queue,
        Phase::Messages,
        Phase::IdBlocks,
        Phase::RoomMessages,
        Phase::MarkLog,
        Phase::Inbox,
    ];
}

impl SledStore {
    pub(super) fn expire_step(
        &self,
        cutoff: Millis,
        from: &ExpiryCursor,
        budget: usize,
    ) -> StoreResult<Expiry> {
        // The pass reads sled's trees: what is staged goes there first, as
        // one transaction (durable at the next flush, as ever).
        self.write_staged()?;
        let mut cursor = from.clone();
        let (mut examined, mut removed) = (0, 0);
        while examined < budget {
            let Some(phase) = Phase::ALL.get(usize::from(cursor.phase)).copied() else {
                return Ok(Expiry {
                    examined,
                    removed,
                    next: None,
                });
            };
            let wanted = budget - examined;
            if let Phase::Messages = phase {
                // The status log expires whole pages.
                let after = cursor
                    .after
                    .as_deref()
                    .map(|k| decode_seq(k, "retention cursor"))
                    .transpose()?;
                let (n, gone, last) = self.log.expire_pages(cutoff, after, wanted)?;
                examined += n;
                removed += gone;
                cursor = match last {
                    Some(last) => ExpiryCursor {
                        phase: cursor.phase,
                        after: Some(last.to_be_bytes().to_vec()),
                    },
                    _ => ExpiryCursor {
                        phase: cursor.phase + 1,
                        after: None,
                    },
                };
                continue;
            }
            if let Phase::IdBlocks = phase {
                let (n, _, next) = self.log.expire_blocks(cursor.after.clone(), wanted)?;
                examined += n;
                cursor = match next {
                    Some(after) => ExpiryCursor {
                        phase: cursor.phase,
                        after: Some(after),
                    },
                    None => ExpiryCursor {
                        phase: cursor.phase + 1,
                        after: None,
                    },
                };
                continue;
            }
            let tree = self.phase_tree(phase);
            // Taken first and then removed, so that removals never race the
            // iterator over the same tree.
            // The list shares the status log's tree: only its keys.
            let (first, end) = match phase {
                Phase::Inbox => {
                    let (first, end) = SledStore::inbox_key_range();
                    (Some(first), Some(end))
                }
                _ => (None, None),
            };
            let from = match (&cursor.after, &first) {
                (Some(k), _) => std::ops::Bound::Excluded(k.clone()),
                (None, Some(f)) => std::ops::Bound::Included(f.clone()),
                (None, None) => std::ops::Bound::Unbounded,
            };
            let to = end.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let batch: Vec<(sled::IVec, sled::IVec)> = tree
                .range::<Vec<u8>, _>((from, to))
                .take(wanted)
                .collect::<sled::Result<_>>()?;
            examined += batch.len();
            if batch.len() < wanted {
                cursor = ExpiryCursor {
                    phase: cursor.phase + 1,
                    after: None,
                };
            } else if let Some((k, _)) = batch.last() {
                cursor.after = Some(k.to_vec());
            }
            for (k, v) in &batch {
                removed += self.expire_entry(phase, k, v, cutoff)?;
            }
        }
        Ok(Expiry {
            examined,
            removed,
            next: Some(cursor),
        })
    }

    fn phase_tree(&self, phase: Phase) -> &sled::Tree {
        match phase {
            Phase::Queue => self.staged.tree(T::Queue),
            Phase::Messages | Phase::IdBlocks => {
                unreachable!("the status log expires its own pages and blocks")
            }
            Phase::RoomMessages => self.staged.tree(T::RoomMessages),
            Phase::MarkLog => self.staged.tree(T::MarkLog),
            Phase::Inbox => self.staged.tree(T::Inbox),
        }
    }

    /// Removes `index_key` if it still names `seq` (a later message may have
    /// reused the id).
    fn remove_index_to(&self, index_key: Vec<u8>, seq: Seq) -> StoreResult<()> {
        self.staged
            .update(T::RoomMessageIds, &index_key, |current| {
                if current == Some(&seq.to_be_bytes()[..]) {
                    None
                } else {
                    current.map(<[u8]>::to_vec)
                }
            })
    }

    /// Removes one entry (and what indexes it) if it is older than `cutoff`;
    /// returns how many statuses went. An entry that does not decode is left
    /// for `tidemark export` to show, rather than stopping every later pass.
    fn expire_entry(&self, phase: Phase, k: &[u8], v: &[u8], cutoff: Millis) -> StoreResult<usize> {
        match phase {
            Phase::Queue => {
                // A stanza held for a contact who has been away longer than
                // the retention: its status is about to go (or has gone), so
                // delivering it later would carry a message nobody can ask
                // about any more, and keeping it lets one absent contact
                // grow the store. It goes with its record; its sender's
                // client already showed it as not delivered.
                let Some((recipient_prefix, seq)) = keys::split_seq_suffix(k) else {
                    return Ok(0);
                };
                let Ok((conv, _)) = decode::<(Vec<u8>, Vec<u8>)>(v, "queued stanza") else {
                    return Ok(0);
                };
                let Some(conv) = ConversationKey::decode(&conv) else {
                    return Ok(0);
                };
                let sent_at = self.log.get(&conv, seq).ok().flatten().map(|r| r.sent_at);
                if sent_at.is_some_and(|t| t >= cutoff) {
                    return Ok(0);
                }
                tracing::debug!(
                    recipient = %String::from_utf8_lossy(recipient_prefix),
                    seq,
                    "held message older than the retention dropped"
                );
                self.staged.remove(T::Queue, k);
                Ok(1)
            }
            Phase::Messages | Phase::IdBlocks => Ok(0),
            Phase::RoomMessages => {
                let Ok(m) = decode::<RoomMessage>(v, "room message") else {
                    return Ok(0);
                };
                let Some((room, seq)) = keys::split_seq_suffix(k) else {
                    return Ok(0);
                };
                if m.sent_at >= cutoff {
                    return Ok(0);
                }
                let room = String::from_utf8_lossy(room).into_owned();
                self.staged.remove(T::RoomMessages, k);
                self.staged.remove(T::RoomCounts, k);
                self.remove_index_to(keys::room_message_id(&room, b's', &m.stanza_id), seq)?;
                self.remove_index_to(keys::room_sender_id(&room, &m.sender, &m.id), seq)?;
                self.remove_index_to(keys::room_message_id(&room, b'i', &m.id), seq)?;
                self.staged
                    .remove(T::RoomMessageIds, keys::room_id_use(&room, &m.id, seq));
                Ok(1)
            }
            Phase::Inbox => {
                self.expire_inbox_entry(k, v, cutoff)?;
                Ok(0)
            }
            Phase::MarkLog => {
                // A tidemark's log entry older than the cutoff only dates
                // messages read before it, hence sent before it: expired too.
                // The tidemark itself stays, so nothing reads as unread.
                match keys::seq_from(v) {
                    Some(at) if at < cutoff => {
                        self.staged.remove(T::MarkLog, k);
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
    }
}
