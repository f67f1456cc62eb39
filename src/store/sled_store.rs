//! The sled backend.

use std::path::Path;

use super::keys::{self, ConversationKey};
use super::{
    MessageRecord, Millis, QueuedStanza, SCHEMA_VERSION, Seq, Store, StoreError, StoreResult,
};

const SCHEMA_KEY: &[u8] = b"schema_version";

pub struct SledStore {
    db: sled::Db,
    messages: sled::Tree,
    message_ids: sled::Tree,
    marks: sled::Tree,
    mark_log: sled::Tree,
    grants: sled::Tree,
    queue: sled::Tree,
}

impl SledStore {
    /// Opens (or creates) the store at `path` with a page cache of
    /// `cache_bytes` (sled's default of 1 GiB is far too much for a sidecar).
    pub fn open(path: &Path, cache_bytes: u64) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // tidemark flushes itself, once per batch of stanzas; sled's own
            // timer would only add writes.
            .flush_every_ms(None)
            .open()
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        Self::from_db(db, &path.display().to_string())
    }

    /// A store in a temporary directory that disappears on drop (tests,
    /// benchmarks).
    pub fn temporary() -> StoreResult<Self> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::from_db(db, "<temporary>")
    }

    fn from_db(db: sled::Db, path: &str) -> StoreResult<Self> {
        match db.get(SCHEMA_KEY)? {
            Some(v) => {
                let found =
                    u32::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                        what: "schema version",
                        detail: format!("{} bytes", v.len()),
                    })?);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        path: path.to_owned(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        Ok(Self {
            messages: db.open_tree("messages")?,
            message_ids: db.open_tree("message_ids")?,
            marks: db.open_tree("marks")?,
            mark_log: db.open_tree("mark_log")?,
            grants: db.open_tree("presence_grants")?,
            queue: db.open_tree("queue")?,
            db,
        })
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> StoreResult<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

fn decode_record(bytes: &[u8]) -> StoreResult<MessageRecord> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        what: "message record",
        detail: e.to_string(),
    })
}

fn decode_seq(bytes: &[u8], what: &'static str) -> StoreResult<Seq> {
    keys::seq_from(bytes).ok_or_else(|| StoreError::Corrupt {
        what,
        detail: format!("{} bytes, expected 8", bytes.len()),
    })
}

impl Store for SledStore {
    fn next_seq(&self) -> StoreResult<Seq> {
        // sled's id generator is monotonic across crashes; +1 keeps 0 free to
        // mean "nothing read yet".
        Ok(self.db.generate_id()? + 1)
    }

    fn put_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
    ) -> StoreResult<()> {
        let bytes = postcard::to_allocvec(record).map_err(|e| StoreError::Corrupt {
            what: "message record",
            detail: e.to_string(),
        })?;
        self.messages.insert(keys::message(conv, seq), bytes)?;
        self.message_ids.insert(
            keys::message_id(conv, &record.sender, &record.id),
            &seq.to_be_bytes(),
        )?;
        Ok(())
    }

    fn message(&self, conv: &ConversationKey, seq: Seq) -> StoreResult<Option<MessageRecord>> {
        self.messages
            .get(keys::message(conv, seq))?
            .map(|v| decode_record(&v))
            .transpose()
    }

    fn find_message(
        &self,
        conv: &ConversationKey,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, MessageRecord)>> {
        let Some(seq) = self.message_ids.get(keys::message_id(conv, sender, id))? else {
            return Ok(None);
        };
        let seq = decode_seq(&seq, "message id index")?;
        Ok(self.message(conv, seq)?.map(|r| (seq, r)))
    }

    fn mark(&self, conv: &ConversationKey, reader: &str) -> StoreResult<Seq> {
        match self.marks.get(keys::mark(conv, reader))? {
            Some(v) => decode_seq(&v, "tidemark"),
            None => Ok(0),
        }
    }

    fn advance_mark(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<bool> {
        if seq <= self.mark(conv, reader)? {
            return Ok(false);
        }
        self.marks
            .insert(keys::mark(conv, reader), &seq.to_be_bytes())?;
        self.mark_log
            .insert(keys::mark_log(conv, reader, seq), &at.to_be_bytes())?;
        Ok(true)
    }

    fn read_at(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
    ) -> StoreResult<Option<Millis>> {
        // The first move of the tidemark at or past `seq` is when it was read.
        let prefix = keys::mark_log_prefix(conv, reader);
        let from = keys::mark_log(conv, reader, seq);
        match self.mark_log.range(from..).next() {
            Some(entry) => {
                let (k, v) = entry?;
                if !k.starts_with(&prefix) {
                    return Ok(None);
                }
                Ok(Some(decode_seq(&v, "tidemark log time")?))
            }
            None => Ok(None),
        }
    }

    fn set_presence_allowed(&self, contact: &str, watcher: &str, allowed: bool) -> StoreResult<()> {
        let key = keys::grant(contact, watcher);
        if allowed {
            self.grants.insert(key, &[1u8])?;
        } else {
            self.grants.remove(key)?;
        }
        Ok(())
    }

    fn presence_allowed(&self, contact: &str, watcher: &str) -> StoreResult<bool> {
        Ok(self.grants.contains_key(keys::grant(contact, watcher))?)
    }

    fn presence_grants(&self) -> StoreResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for entry in self.grants.iter() {
            let (k, _) = entry?;
            let pair = keys::split_grant(&k).ok_or_else(|| StoreError::Corrupt {
                what: "presence grant key",
                detail: format!("{k:?}"),
            })?;
            out.push(pair);
        }
        Ok(out)
    }

    fn enqueue(
        &self,
        recipient: &str,
        seq: Seq,
        conv: &ConversationKey,
        stanza: &[u8],
    ) -> StoreResult<()> {
        let value =
            postcard::to_allocvec(&(conv.as_bytes(), stanza)).map_err(|e| StoreError::Corrupt {
                what: "queued stanza",
                detail: e.to_string(),
            })?;
        self.queue.insert(keys::queue(recipient, seq), value)?;
        Ok(())
    }

    fn queued_count(&self, recipient: &str) -> StoreResult<usize> {
        Ok(self
            .queue
            .scan_prefix(keys::queue_prefix(recipient))
            .count())
    }

    fn take_queue(&self, recipient: &str) -> StoreResult<Vec<QueuedStanza>> {
        let prefix = keys::queue_prefix(recipient);
        let mut out = Vec::new();
        for entry in self.queue.scan_prefix(&prefix) {
            let (k, v) = entry?;
            let seq = decode_seq(&k[prefix.len()..], "queue key")?;
            let (conv, stanza): (Vec<u8>, Vec<u8>) =
                postcard::from_bytes(&v).map_err(|e| StoreError::Corrupt {
                    what: "queued stanza",
                    detail: e.to_string(),
                })?;
            out.push(QueuedStanza {
                seq,
                conv: ConversationKey::from_bytes(conv),
                stanza,
            });
        }
        for q in &out {
            self.queue.remove(keys::queue(recipient, q.seq))?;
        }
        Ok(out)
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush()?;
        Ok(())
    }
}
