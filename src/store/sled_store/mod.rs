//! The sled backend.

mod desk;
mod expire;
mod inbox;
mod logical;
mod sent;
mod staged;
#[cfg(test)]
pub(crate) mod tests;
mod upgrade;

use std::path::Path;

use super::export::{self, ExportError, ExportRecord};
use super::keys::{self, ConversationKey};
use super::status_log::{RECENT_IDS, StatusLog};
use super::{
    DeskConversation, DeskCounts, DeskEvent, DeskView, Expiry, ExpiryCursor, InboxEntry,
    Membership, MessageRecord, Millis, OccupantRecord, QueuedStanza, RoomMessage, RoomRecord,
    RoomSubject, SCHEMA_VERSION, SentFrom, SentPage, SentTo, Seq, Store, StoreError, StoreResult,
};
use staged::{StagedTrees, T};

const SCHEMA_KEY: &[u8] = b"schema_version";
/// Added to sled's id generator, so that sequence numbers after an import
/// continue above the imported ones (the generator itself cannot be set).
const SEQ_OFFSET_KEY: &[u8] = b"seq_offset";

pub struct SledStore {
    db: sled::Db,
    seq_offset: std::sync::atomic::AtomicU64,
    /// 1:1 statuses and their tidemarks (`status_log`).
    log: StatusLog,
    /// Everything else, staged until the flush: tidemarks other than a
    /// 1:1 party's own (room members', and private ones of readers who hide
    /// their reads), presence grants, held stanzas, rooms, preferences and
    /// refused messages by sender (`keys::refusal`, to keep only the newest
    /// few, with a count per sender so trimming needs no count).
    staged: StagedTrees,
    /// One flush at a time: a later one must never write older data.
    flush_lock: std::sync::Mutex<()>,
    /// The conversation list's heads, decoded (`inbox.rs`).
    heads: std::sync::Mutex<inbox::KnownHeads>,
}

impl SledStore {
    /// Opens (or creates) the store at `path` with a page cache of
    /// `cache_bytes` (sled's default of 1 GiB is far too much for a sidecar).
    /// A store of schema 1 is upgraded in place first.
    pub fn open(path: &Path, cache_bytes: u64) -> StoreResult<Self> {
        Self::open_tuned(path, cache_bytes, RECENT_IDS)
    }

    /// [`SledStore::open`] keeping the `recent_ids` newest message ids in
    /// memory (tests and benchmarks of what lies beyond them).
    pub fn open_tuned(path: &Path, cache_bytes: u64, recent_ids: usize) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // tidemark flushes itself, once per batch of stanzas; sled's own
            // timer would only add writes.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                // sled takes an exclusive file lock on its directory and
                // reports a held lock only as text (config.rs: an `Other`
                // error "could not acquire lock on ..: WouldBlock"), so the
                // text is all there is to match.
                sled::Error::Io(io) if is_would_block(&io) => StoreError::Locked {
                    path: path.display().to_string(),
                },
                e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
            })?;
        Self::from_db(db, &path.display().to_string(), recent_ids)
    }

    /// A store in a temporary directory that disappears on drop (tests,
    /// benchmarks).
    pub fn temporary() -> StoreResult<Self> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::from_db(db, "<temporary>", RECENT_IDS)
    }

    fn from_db(db: sled::Db, path: &str, recent_ids: usize) -> StoreResult<Self> {
        let found = match db.get(SCHEMA_KEY)? {
            Some(v) => Some(u32::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt {
                    what: "schema version",
                    detail: format!("{} bytes", v.len()),
                }
            })?)),
            None => None,
        };
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(1) => {}
            Some(found) => {
                return Err(StoreError::Schema {
                    path: path.to_owned(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            None => {
                db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        let seq_offset = match db.get(SEQ_OFFSET_KEY)? {
            Some(v) => decode_seq(&v, "sequence offset")?,
            None => 0,
        };
        let store = Self {
            seq_offset: seq_offset.into(),
            log: StatusLog::open(db.open_tree("status_log")?, recent_ids)?,
            staged: StagedTrees::open(&db)?,
            flush_lock: std::sync::Mutex::new(()),
            heads: std::sync::Mutex::default(),
            db,
        };
        if found == Some(1) {
            upgrade::from_schema_1(&store.db, &store, path)?;
            store.db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            store.db.flush()?;
        }
        upgrade::drop_schema_1_trees(&store.db, &store)?;
        upgrade::index_users(&store.db, &store, path)?;
        upgrade::count_room_messages(&store)?;
        Ok(store)
    }

    /// Writes everything staged, the status log's pages and the other
    /// trees' writes, in one sled transaction (made durable by the db's
    /// flush that follows): a crash keeps all of a group commit or none.
    fn write_staged(&self) -> StoreResult<()> {
        let _one = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let writes = self.staged.begin_flush();
        // The conversation list lives in the status log's tree: its
        // writes join the log's batch, and that tree is never listed twice.
        let inbox = T::Inbox as usize;
        let mut trees: Vec<&sled::Tree> = vec![self.log.tree()];
        let mut others: Vec<usize> = Vec::new();
        for (i, tree) in self.staged.trees().iter().enumerate() {
            if i != inbox {
                trees.push(tree);
                others.push(i);
            }
        }
        let result = self.log.write_staged_with(|log_batch| {
            let log_batch = if writes[inbox].is_empty() {
                log_batch
            } else {
                let mut b = log_batch.unwrap_or_default();
                staged::extend(&mut b, &writes[inbox]);
                Some(b)
            };
            // Writes to one tree alone (the status log, in the common case
            // of 1:1 statuses) need no transaction: sled applies a batch
            // atomically, at a fraction of a transaction's cost.
            let mut written = others.iter().filter(|i| !writes[**i].is_empty());
            let log_batch = match (log_batch, written.next(), written.next()) {
                (None, None, _) => return Ok(()),
                (Some(b), None, _) => return Ok(self.log.tree().apply_batch(b)?),
                (None, Some(i), None) => {
                    return Ok(self.staged.trees()[*i].apply_batch(staged::batch(&writes[*i]))?);
                }
                (log_batch, _, _) => log_batch,
            };
            let batches: Vec<sled::Batch> =
                others.iter().map(|i| staged::batch(&writes[*i])).collect();
            use sled::Transactional;
            trees
                .as_slice()
                .transaction(|tx| {
                    if let Some(b) = &log_batch {
                        tx[0].apply_batch(b)?;
                    }
                    for (i, b) in batches.iter().enumerate() {
                        tx[i + 1].apply_batch(b)?;
                    }
                    Ok(())
                })
                .map_err(|e: sled::transaction::TransactionError<()>| match e {
                    sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
                    sled::transaction::TransactionError::Abort(()) => {
                        StoreError::Backend("the flush's transaction was aborted".into())
                    }
                })
        });
        self.staged.end_flush(writes, result.is_ok());
        result
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> StoreResult<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Writes every record as a logical export ([`crate::store::export`]).
    pub fn export(&self, out: &mut impl std::io::Write) -> Result<u64, ExportError> {
        export::export(self, out)
    }

    /// Loads an [`export`](Self::export) into this store, which must be
    /// empty; flushed when done.
    pub fn import(&self, input: impl std::io::BufRead) -> Result<u64, ExportError> {
        export::import(self, input)
    }

    /// A tidemark kept outside the status log: in a room, or a private one.
    fn other_mark(&self, conv: &ConversationKey, reader: &str) -> StoreResult<Seq> {
        match self.staged.get(T::Marks, &keys::mark(conv, reader))? {
            Some(v) => decode_seq(&v, "tidemark"),
            None => Ok(0),
        }
    }

    /// The side of a 1:1 conversation `reader` is on, if their tidemark is
    /// kept in the status log.
    fn log_side(conv: &ConversationKey, reader: &str) -> Option<u8> {
        conv.side_of(reader)
    }

    /// The sender's refused message with this id, when the in-memory index
    /// no longer has it: a sender keeps only a bounded number.
    fn find_refused(
        &self,
        conv: &ConversationKey,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, MessageRecord)>> {
        let prefix = keys::refusal_prefix(sender);
        let wanted = conv.encode();
        for (k, v) in self
            .staged
            .scan_prefix(T::Refusals, &prefix, true, usize::MAX)?
        {
            if v != wanted {
                continue;
            }
            let seq = decode_seq(&k[prefix.len()..], "refusal key")?;
            if let Some(r) = self.log.get(conv, seq)?
                && r.id == id
                && r.sender == sender
            {
                return Ok(Some((seq, r)));
            }
        }
        Ok(None)
    }
}

fn encode<T: serde::Serialize>(value: &T, what: &'static str) -> StoreResult<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], what: &'static str) -> StoreResult<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn decode_room_messages(
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    prefix_len: usize,
) -> StoreResult<Vec<(Seq, RoomMessage)>> {
    let mut out = Vec::new();
    for (k, v) in entries {
        let seq = decode_seq(&k[prefix_len..], "room message key")?;
        out.push((seq, decode(&v, "room message")?));
    }
    Ok(out)
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
        let offset = self.seq_offset.load(std::sync::atomic::Ordering::Relaxed);
        Ok(self.db.generate_id()? + 1 + offset)
    }

    fn put_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
    ) -> StoreResult<()> {
        self.log.put(conv, seq, record, false)
    }

    fn message(&self, conv: &ConversationKey, seq: Seq) -> StoreResult<Option<MessageRecord>> {
        self.log.get(conv, seq)
    }

    fn find_message(
        &self,
        conv: &ConversationKey,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, MessageRecord)>> {
        let chained = self.log.find(conv, sender, id)?;
        if chained.is_some() || self.refusal_count(sender)? == 0 {
            return Ok(chained);
        }
        self.find_refused(conv, sender, id)
    }

    fn mark(&self, conv: &ConversationKey, reader: &str) -> StoreResult<Seq> {
        match Self::log_side(conv, reader) {
            Some(side) => self.log.mark(conv, side),
            None => self.other_mark(conv, reader),
        }
    }

    fn advance_mark(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<bool> {
        if let Some(side) = Self::log_side(conv, reader) {
            return self.log.advance(conv, side, seq, at);
        }
        // An atomic maximum under the staging lock, so two writers can never
        // move the mark backwards or both claim one move.
        let mut moved = false;
        self.staged
            .update(T::Marks, &keys::mark(conv, reader), |old| {
                let current = old.and_then(|v| v.try_into().ok().map(Seq::from_be_bytes));
                moved = current.is_none_or(|c| c < seq);
                if moved {
                    Some(seq.to_be_bytes().to_vec())
                } else {
                    old.map(<[u8]>::to_vec)
                }
            })?;
        if !moved {
            return Ok(false);
        }
        self.staged.insert(
            T::MarkLog,
            keys::mark_log(conv, reader, seq),
            at.to_be_bytes(),
        );
        Ok(true)
    }

    fn read_at(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
    ) -> StoreResult<Option<Millis>> {
        if let Some(side) = Self::log_side(conv, reader) {
            return self.log.read_at(conv, side, seq);
        }
        // The first move of the tidemark at or past `seq` is when it was read.
        let prefix = keys::mark_log_prefix(conv, reader);
        let from = keys::mark_log(conv, reader, seq);
        let first = self.staged.range(
            T::MarkLog,
            std::ops::Bound::Included(from),
            std::ops::Bound::Unbounded,
            false,
            1,
        )?;
        match first.first() {
            Some((k, v)) if k.starts_with(&prefix) => Ok(Some(decode_seq(v, "tidemark log time")?)),
            _ => Ok(None),
        }
    }

    fn set_presence_allowed(&self, contact: &str, watcher: &str, allowed: bool) -> StoreResult<()> {
        let key = keys::grant(contact, watcher);
        if allowed {
            self.staged.insert(T::Grants, key, [1u8]);
        } else {
            self.staged.remove(T::Grants, key);
        }
        Ok(())
    }

    fn presence_allowed(&self, contact: &str, watcher: &str) -> StoreResult<bool> {
        self.staged
            .contains(T::Grants, &keys::grant(contact, watcher))
    }

    fn presence_grants(&self) -> StoreResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for (k, _) in self.staged.range(
            T::Grants,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
            usize::MAX,
        )? {
            let pair = keys::split_grant(&k).ok_or_else(|| StoreError::Corrupt {
                what: "presence grant key",
                detail: format!("{k:?}"),
            })?;
            out.push(pair);
        }
        Ok(out)
    }

    fn has_watchers(&self, contact: &str) -> StoreResult<bool> {
        let mut prefix = contact.as_bytes().to_vec();
        prefix.push(0);
        Ok(!self
            .staged
            .scan_prefix(T::Grants, &prefix, false, 1)?
            .is_empty())
    }

    fn put_refused_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
        keep: usize,
    ) -> StoreResult<()> {
        self.log.put(conv, seq, record, true)?;
        let sender = record.sender.as_str();
        self.staged
            .insert(T::Refusals, keys::refusal(sender, seq), conv.encode());
        let mut count = self.refusal_count(sender)? + 1;
        let prefix = keys::refusal_prefix(sender);
        if count > keep {
            let oldest = self
                .staged
                .scan_prefix(T::Refusals, &prefix, false, count - keep)?;
            for (k, _) in &oldest {
                let old_seq = decode_seq(&k[prefix.len()..], "refusal key")?;
                self.log.remove_refused(old_seq)?;
                self.staged.remove(T::Refusals, k.clone());
            }
            count -= oldest.len();
        }
        self.staged.insert(
            T::RefusalCounts,
            sender.as_bytes(),
            (count as u64).to_be_bytes(),
        );
        Ok(())
    }

    fn refusal_count(&self, sender: &str) -> StoreResult<usize> {
        match self.staged.get(T::RefusalCounts, sender.as_bytes())? {
            Some(v) => Ok(decode_seq(&v, "refusal count")? as usize),
            None => Ok(0),
        }
    }

    fn enqueue(
        &self,
        recipient: &str,
        seq: Seq,
        conv: &ConversationKey,
        stanza: &[u8],
    ) -> StoreResult<()> {
        let value =
            postcard::to_allocvec(&(conv.encode(), stanza)).map_err(|e| StoreError::Corrupt {
                what: "queued stanza",
                detail: e.to_string(),
            })?;
        self.staged
            .insert(T::Queue, keys::queue(recipient, seq), value);
        Ok(())
    }

    fn queued_count(&self, recipient: &str) -> StoreResult<usize> {
        Ok(self
            .staged
            .scan_prefix(T::Queue, &keys::queue_prefix(recipient), false, usize::MAX)?
            .len())
    }

    fn queued(&self, recipient: &str) -> StoreResult<Vec<QueuedStanza>> {
        let prefix = keys::queue_prefix(recipient);
        let mut out = Vec::new();
        for (k, v) in self
            .staged
            .scan_prefix(T::Queue, &prefix, false, usize::MAX)?
        {
            let seq = decode_seq(&k[prefix.len()..], "queue key")?;
            let (conv, stanza): (Vec<u8>, Vec<u8>) = decode(&v, "queued stanza")?;
            let conv = ConversationKey::decode(&conv).ok_or_else(|| StoreError::Corrupt {
                what: "held stanza's conversation",
                detail: format!("{conv:?}"),
            })?;
            out.push(QueuedStanza { seq, conv, stanza });
        }
        Ok(out)
    }

    fn dequeue(&self, recipient: &str, seqs: &[Seq]) -> StoreResult<()> {
        for seq in seqs {
            self.staged.remove(T::Queue, keys::queue(recipient, *seq));
        }
        Ok(())
    }

    fn put_room(&self, room: &str, record: &RoomRecord) -> StoreResult<()> {
        self.staged
            .insert(T::Rooms, room.as_bytes(), encode(record, "room")?);
        Ok(())
    }

    fn room(&self, room: &str) -> StoreResult<Option<RoomRecord>> {
        self.staged
            .get(T::Rooms, room.as_bytes())?
            .map(|v| decode(&v, "room"))
            .transpose()
    }

    fn rooms(&self) -> StoreResult<Vec<(String, RoomRecord)>> {
        let mut out = Vec::new();
        for (k, v) in self.staged.range(
            T::Rooms,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
            usize::MAX,
        )? {
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                decode(&v, "room")?,
            ));
        }
        Ok(out)
    }

    fn set_membership(&self, room: &str, member: &str, m: &Membership) -> StoreResult<()> {
        self.staged.insert(
            T::RoomMembers,
            keys::room_member(room, member),
            encode(m, "membership")?,
        );
        // Issue 9: the member's rooms, for the `status` command. Written
        // again only when the membership changes (a join, a leave).
        let by_member = keys::member_room(member, room);
        if !self.staged.contains(T::MemberRooms, &by_member)? {
            self.staged.insert(T::MemberRooms, by_member, []);
        }
        Ok(())
    }

    fn membership(&self, room: &str, member: &str) -> StoreResult<Option<Membership>> {
        self.staged
            .get(T::RoomMembers, &keys::room_member(room, member))?
            .map(|v| decode(&v, "membership"))
            .transpose()
    }

    fn memberships(&self, room: &str) -> StoreResult<Vec<(String, Membership)>> {
        let prefix = keys::room_prefix(room);
        let mut out = Vec::new();
        for (k, v) in self
            .staged
            .scan_prefix(T::RoomMembers, &prefix, false, usize::MAX)?
        {
            let member = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((member, decode(&v, "membership")?));
        }
        Ok(out)
    }

    fn put_room_message(&self, room: &str, seq: Seq, message: &RoomMessage) -> StoreResult<()> {
        self.staged.insert(
            T::RoomMessages,
            keys::room_message(room, seq),
            encode(message, "room message")?,
        );
        let seq_bytes = seq.to_be_bytes();
        let ids = T::RoomMessageIds;
        self.staged.insert(
            ids,
            keys::room_message_id(room, b's', &message.stanza_id),
            seq_bytes,
        );
        self.staged.insert(
            ids,
            keys::room_sender_id(room, &message.sender, &message.id),
            seq_bytes,
        );
        self.staged
            .insert(ids, keys::room_id_use(room, &message.id, seq), []);
        self.count_room_message(room, seq)
    }

    fn room_message_by_stanza_id(
        &self,
        room: &str,
        stanza_id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>> {
        self.room_message_at(room, keys::room_message_id(room, b's', stanza_id))
    }

    fn room_message_by_sender_id(
        &self,
        room: &str,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>> {
        if let Some(found) = self.room_message_at(room, keys::room_sender_id(room, sender, id))? {
            return Ok(Some(found));
        }
        // Stored before ids were kept per sender: the shared index, believed
        // only when the message it names is the sender's.
        Ok(self
            .room_message_at(room, keys::room_message_id(room, b'i', id))?
            .filter(|(_, m)| m.sender == sender))
    }

    fn room_messages_with_sender_id(
        &self,
        room: &str,
        id: &str,
        after: Seq,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        let prefix = keys::room_id_uses_prefix(room, id);
        let from = keys::room_id_use(room, id, after.saturating_add(1));
        let mut out = Vec::new();
        let to = keys::room_id_use(room, id, Seq::MAX);
        for (k, _) in self.staged.range(
            T::RoomMessageIds,
            std::ops::Bound::Included(from),
            std::ops::Bound::Included(to),
            false,
            limit,
        )? {
            let seq = decode_seq(&k[prefix.len()..], "room id use")?;
            if let Some(m) = self
                .staged
                .get(T::RoomMessages, &keys::room_message(room, seq))?
            {
                out.push((seq, decode(&m, "room message")?));
            }
        }
        if out.is_empty() {
            // Stored before ids were kept per sender, as above.
            if let Some((seq, m)) =
                self.room_message_at(room, keys::room_message_id(room, b'i', id))?
                && seq > after
            {
                out.push((seq, m));
            }
        }
        Ok(out)
    }

    fn add_room_creator(&self, creator: &str, room: &str) -> StoreResult<()> {
        self.staged
            .insert(T::RoomCreators, keys::room_creator(creator, room), []);
        Ok(())
    }

    fn rooms_created_by(&self, creator: &str) -> StoreResult<usize> {
        Ok(self
            .staged
            .scan_prefix(
                T::RoomCreators,
                &keys::room_creator_prefix(creator),
                false,
                usize::MAX,
            )?
            .len())
    }

    fn room_messages_between(
        &self,
        room: &str,
        after: Seq,
        upto: Seq,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        if upto <= after {
            return Ok(vec![]);
        }
        let prefix_len = keys::room_prefix(room).len();
        let entries = self.staged.range(
            T::RoomMessages,
            std::ops::Bound::Included(keys::room_message(room, after + 1)),
            std::ops::Bound::Included(keys::room_message(room, upto)),
            false,
            usize::MAX,
        )?;
        decode_room_messages(entries, prefix_len)
    }

    fn room_history(&self, room: &str, limit: usize) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        let prefix = keys::room_prefix(room);
        let entries = self
            .staged
            .scan_prefix(T::RoomMessages, &prefix, true, limit)?;
        let mut out = decode_room_messages(entries, prefix.len())?;
        out.reverse();
        Ok(out)
    }

    fn read_receipts_pref(&self, user: &str) -> StoreResult<Option<bool>> {
        Ok(self
            .staged
            .get(T::Prefs, user.as_bytes())?
            .map(|v| v.first() == Some(&1)))
    }

    fn set_read_receipts_pref(&self, user: &str, enabled: bool) -> StoreResult<()> {
        self.staged
            .insert(T::Prefs, user.as_bytes(), [u8::from(enabled)]);
        Ok(())
    }

    // --- Room occupancy (issue 9): one entry per (room, nick).

    fn set_occupant(
        &self,
        room: &str,
        nick: &str,
        occupant: Option<&OccupantRecord>,
    ) -> StoreResult<()> {
        let key = keys::room_member(room, nick);
        match occupant {
            Some(o) => self
                .staged
                .insert(T::Occupants, key, encode(o, "occupant")?),
            None => self.staged.remove(T::Occupants, key),
        }
        Ok(())
    }

    fn occupants(&self) -> StoreResult<Vec<(String, String, OccupantRecord)>> {
        let mut out = Vec::new();
        for (k, v) in self.staged.range(
            T::Occupants,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
            usize::MAX,
        )? {
            let (room, nick) = keys::split_grant(&k).ok_or_else(|| StoreError::Corrupt {
                what: "occupant key",
                detail: String::from_utf8_lossy(&k).into_owned(),
            })?;
            out.push((room, nick, decode(&v, "occupant")?));
        }
        Ok(out)
    }

    // --- end of room occupancy

    fn set_room_subject(&self, room: &str, subject: &RoomSubject) -> StoreResult<()> {
        self.staged.insert(
            T::RoomSubjects,
            room.as_bytes(),
            encode(subject, "room subject")?,
        );
        Ok(())
    }

    fn room_subject(&self, room: &str) -> StoreResult<Option<RoomSubject>> {
        self.staged
            .get(T::RoomSubjects, room.as_bytes())?
            .map(|v| decode(&v, "room subject"))
            .transpose()
    }

    fn created_room(&self, creator: &str, room: &str) -> StoreResult<bool> {
        Ok(self
            .staged
            .get(T::RoomCreators, &keys::room_creator(creator, room))?
            .is_some())
    }

    // --- issue 9: a user's sent messages (sent.rs) ---
    fn put_preview(&self, conv: &ConversationKey, seq: Seq, text: &str) -> StoreResult<()> {
        self.log.set_preview(conv, seq, text)
    }

    fn sent_by(
        &self,
        user: &str,
        from: SentFrom,
        limit: usize,
        filter: Option<&SentTo>,
    ) -> StoreResult<SentPage> {
        self.sent_page(user, from, limit, filter)
    }
    // --- end issue 9 ---

    fn expire(&self, cutoff: Millis, from: &ExpiryCursor, budget: usize) -> StoreResult<Expiry> {
        self.expire_step(cutoff, from, budget)
    }

    fn inbox_message(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
        own: bool,
    ) -> StoreResult<()> {
        self.put_inbox_message(user, contact, seq, at, own)
    }

    fn inbox_read(&self, user: &str, contact: &str, upto: Seq) -> StoreResult<()> {
        self.put_inbox_read(user, contact, upto)
    }

    fn inbox_missed(&self, user: &str, contact: &str, seq: Seq, at: Millis) -> StoreResult<()> {
        self.put_inbox_missed(user, contact, seq, at)
    }

    fn inbox_room_sent(&self, user: &str, room: &str, seq: Seq) -> StoreResult<()> {
        self.put_inbox_room_sent(user, room, seq)
    }

    fn inbox_entry(&self, user: &str, contact: &str) -> StoreResult<Option<InboxEntry>> {
        self.get_inbox_entry(user, contact)
    }

    fn inbox_latest(&self, user: &str, before: Seq, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        self.get_inbox_latest(user, before, limit)
    }

    fn inbox_entries(&self, user: &str, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        self.get_inbox_entries(user, limit)
    }

    fn inbox_unread_total(&self, user: &str) -> StoreResult<u64> {
        self.get_inbox_unread_total(user)
    }

    fn inbox_room_sent_seq(&self, user: &str, room: &str) -> StoreResult<Seq> {
        self.get_inbox_room_sent(user, room)
    }

    fn member_rooms(&self, user: &str) -> StoreResult<Vec<String>> {
        self.rooms_of(user)
    }

    fn put_desk_conversation(&self, desk: &str, conv: &DeskConversation) -> StoreResult<()> {
        self.put_desk_conv(desk, conv)
    }

    fn desk_conversation(
        &self,
        desk: &str,
        customer: &str,
    ) -> StoreResult<Option<DeskConversation>> {
        self.get_desk_conv(desk, customer)
    }

    fn desk_view(
        &self,
        desk: &str,
        view: &DeskView,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeskConversation>> {
        self.get_desk_view(desk, view, after, limit)
    }

    fn desk_counts(&self, desk: &str, agent: &str) -> StoreResult<DeskCounts> {
        self.get_desk_counts(desk, agent)
    }

    fn put_desk_event(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        event: &DeskEvent,
    ) -> StoreResult<()> {
        self.put_desk_ev(desk, customer, seq, event)
    }

    fn desk_events(
        &self,
        desk: &str,
        customer: &str,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, DeskEvent)>> {
        self.get_desk_events(desk, customer, limit)
    }

    fn put_desk_author(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        agent: &str,
    ) -> StoreResult<()> {
        self.put_desk_writer(desk, customer, seq, agent)
    }

    fn desk_author(&self, desk: &str, customer: &str, seq: Seq) -> StoreResult<Option<String>> {
        self.get_desk_writer(desk, customer, seq)
    }

    fn desk_snoozed(&self) -> StoreResult<Vec<(String, String, Millis)>> {
        self.get_desk_snoozed()
    }

    fn room_messages_after(&self, room: &str, after: Seq) -> StoreResult<u64> {
        self.count_room_messages_after(room, after)
    }

    fn flush(&self) -> StoreResult<()> {
        self.write_staged()?;
        self.db.flush()?;
        Ok(())
    }

    fn export_records(
        &self,
        each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        self.export_all(each)
    }

    fn import_mark(&self, conv: &ConversationKey, reader: &str, seq: Seq) -> StoreResult<()> {
        match conv.side_of(reader) {
            Some(side) => self.log.set_mark(conv, side, seq),
            None => {
                self.staged
                    .insert(T::Marks, keys::mark(conv, reader), seq.to_be_bytes());
                Ok(())
            }
        }
    }

    fn import_mark_moved(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<()> {
        match conv.side_of(reader) {
            // A party's moves are the read times the status log keeps with
            // the messages.
            Some(_) => self.log.set_read(conv, seq, at),
            None => {
                self.staged.insert(
                    T::MarkLog,
                    keys::mark_log(conv, reader, seq),
                    at.to_be_bytes(),
                );
                Ok(())
            }
        }
    }

    fn import_inbox_entry(&self, user: &str, entry: InboxEntry, unread: &[Seq]) -> StoreResult<()> {
        self.import_inbox(user, entry, unread)
    }

    fn is_empty(&self) -> StoreResult<bool> {
        Ok(self.log.is_empty() && self.staged.is_empty()?)
    }

    fn continue_after(&self, seq: Seq) -> StoreResult<()> {
        let current = self.next_seq()?;
        if current > seq {
            return Ok(());
        }
        let offset =
            self.seq_offset.load(std::sync::atomic::Ordering::Relaxed) + (seq - current) + 1;
        self.db.insert(SEQ_OFFSET_KEY, &offset.to_be_bytes())?;
        self.seq_offset
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl SledStore {
    fn room_message_at(
        &self,
        room: &str,
        index_key: Vec<u8>,
    ) -> StoreResult<Option<(Seq, RoomMessage)>> {
        let Some(seq) = self.staged.get(T::RoomMessageIds, &index_key)? else {
            return Ok(None);
        };
        let seq = decode_seq(&seq, "room message index")?;
        Ok(self
            .staged
            .get(T::RoomMessages, &keys::room_message(room, seq))?
            .map(|v| decode(&v, "room message"))
            .transpose()?
            .map(|m| (seq, m)))
    }
}

fn is_would_block(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}
