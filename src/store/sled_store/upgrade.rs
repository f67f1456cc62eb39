//! Upgrading a store written by schema 1 (one sled entry per message, an id
//! index, a log entry per tidemark move) to schema 2's status log, in place,
//! when it is opened. Nothing is dropped before the new form is flushed;
//! an upgrade cut short runs again from the start at the next open.

use tracing::info;

use super::staged::T;
use super::{SledStore, decode, decode_seq};
use crate::store::keys::{self, ConversationKey};
use crate::store::{MessageRecord, Store, StoreError, StoreResult};

const MESSAGES: &[u8] = b"messages";
const MESSAGE_IDS: &[u8] = b"message_ids";

/// Messages staged between writes, so an upgrade of any size runs in
/// bounded memory.
const STEP: usize = 10_000;

pub(super) fn from_schema_1(db: &sled::Db, store: &SledStore, path: &str) -> StoreResult<()> {
    let started = std::time::Instant::now();
    let messages = db.open_tree(MESSAGES)?;
    let mut n = 0usize;
    for entry in messages.iter() {
        let (k, v) = entry?;
        let Some((conv, seq)) = keys::split_seq_suffix(&k) else {
            return Err(corrupt("schema 1 message key", &k));
        };
        let conv =
            ConversationKey::decode(conv).ok_or_else(|| corrupt("schema 1 conversation", conv))?;
        let record: MessageRecord = decode(&v, "schema 1 message")?;
        let refused = store
            .staged
            .tree(T::Refusals)
            .contains_key(keys::refusal(&record.sender, seq))?;
        store.log.put(&conv, seq, &record, refused)?;
        if let Some(at) = schema_1_read_at(store, &conv, &record.recipient, seq)? {
            store.log.set_read(&conv, seq, at)?;
        }
        n += 1;
        if n.is_multiple_of(STEP) {
            store.log.write_staged()?;
        }
    }
    for entry in store.staged.tree(T::Marks).iter() {
        let (k, v) = entry?;
        if let Some((conv, reader)) = keys::split_mark(&k)
            && let Some(side) = conv.side_of(&reader)
        {
            store
                .log
                .set_mark(&conv, side, decode_seq(&v, "tidemark")?)?;
        }
    }
    store.flush()?;
    info!(
        path,
        messages = n,
        secs = started.elapsed().as_secs_f64(),
        "store upgraded from schema 1 to 2"
    );
    Ok(())
}

/// Schema 1's answer: the first move of the reader's tidemark at or past
/// `seq`.
fn schema_1_read_at(
    store: &SledStore,
    conv: &ConversationKey,
    reader: &str,
    seq: u64,
) -> StoreResult<Option<u64>> {
    let prefix = keys::mark_log_prefix(conv, reader);
    match store
        .staged
        .tree(T::MarkLog)
        .range(keys::mark_log(conv, reader, seq)..)
        .next()
    {
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

/// Removes what schema 1 kept that schema 2 keeps in the status log: run at
/// every open, it costs nothing once done.
pub(super) fn drop_schema_1_trees(db: &sled::Db, store: &SledStore) -> StoreResult<()> {
    if !db.tree_names().iter().any(|n| n.as_ref() == MESSAGES) {
        return Ok(());
    }
    for tree in [store.staged.tree(T::Marks), store.staged.tree(T::MarkLog)] {
        for entry in tree.scan_prefix(b"d") {
            let (k, _) = entry?;
            let whole = keys::split_seq_suffix(&k)
                .and_then(|(p, _)| keys::split_mark(p))
                .filter(|(c, r)| c.side_of(r).is_some());
            let party = whole.is_some()
                || keys::split_mark(&k).is_some_and(|(c, r)| c.side_of(&r).is_some());
            if party {
                tree.remove(k)?;
            }
        }
    }
    db.drop_tree(MESSAGE_IDS)?;
    db.drop_tree(MESSAGES)?;
    db.flush()?;
    Ok(())
}

/// Set once the user indexes of issue 9 (each user's 1:1 conversations in
/// the status log, each member's rooms) cover everything stored.
const USERS_INDEXED: &[u8] = b"users_indexed";

/// Issue 9: builds each user's conversations and rooms from what a store
/// written before them holds (the interned conversations, the
/// memberships), once; later writes keep them. Derived entries only, so
/// an open cut short simply builds them again. The tree of an earlier
/// draft of the `status` command's index goes.
pub(super) fn index_users(db: &sled::Db, store: &SledStore, path: &str) -> StoreResult<()> {
    if db.get(USERS_INDEXED)?.is_some() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let conversations = store.log.build_user_index()?;
    let mut rooms = 0usize;
    let by_member = store.staged.tree(T::MemberRooms);
    for entry in store.staged.tree(T::RoomMembers).iter() {
        let (k, _) = entry?;
        let (room, member) = keys::split_grant(&k).ok_or_else(|| corrupt("membership key", &k))?;
        by_member.insert(keys::member_room(&member, &room), &[])?;
        rooms += 1;
    }
    if db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"sent_by_sender")
    {
        db.drop_tree("sent_by_sender")?;
    }
    db.insert(USERS_INDEXED, &[1u8])?;
    db.flush()?;
    if conversations + rooms > 0 {
        info!(
            path,
            conversations,
            memberships = rooms,
            secs = started.elapsed().as_secs_f64(),
            "indexed each user's conversations and rooms (the status command)"
        );
    }
    Ok(())
}

fn corrupt(what: &'static str, bytes: &[u8]) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: format!("{bytes:?}"),
    }
}

/// Issue 10: counts the room messages of a store written before rooms were
/// counted (`room_counts`), so that unread counts in rooms are exact from
/// the first open. Runs once: a store with any count is done.
pub(super) fn count_room_messages(store: &SledStore) -> StoreResult<()> {
    let counts = store.staged.tree(T::RoomCounts);
    if !counts.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    let (mut room, mut last, mut n, mut total) = (Vec::new(), 0u64, 0u64, 0usize);
    let head = |batch: &mut sled::Batch, room: &[u8], last: u64, n: u64| -> StoreResult<()> {
        if n > 0 {
            let mut k = room.to_vec();
            k.push(1);
            batch.insert(k, super::encode(&(last, n), "room count head")?);
        }
        Ok(())
    };
    for entry in store.staged.tree(T::RoomMessages).iter() {
        let (k, _) = entry?;
        let Some((prefix, seq)) = keys::split_seq_suffix(&k) else {
            return Err(corrupt("room message key", &k));
        };
        if prefix != room.as_slice() {
            head(&mut batch, &room, last, n)?;
            room = prefix.to_vec();
            n = 0;
        }
        n += 1;
        last = seq;
        total += 1;
        batch.insert(k.to_vec(), n.to_be_bytes().to_vec());
    }
    head(&mut batch, &room, last, n)?;
    if total > 0 {
        counts.apply_batch(batch)?;
        counts.flush()?;
        info!(messages = total, "room messages counted for unread counts");
    }
    Ok(())
}
