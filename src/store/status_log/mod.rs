//! 1:1 statuses in sled, compactly (schema 2).
//!
//! Layout, all in one tree so that a flush is one atomic batch:
//!
//! | key | value |
//! |---|---|
//! | `p` page number | a [`Page`] of statuses |
//! | `c` conversation id | its [`ConvState`] |
//! | `n` conversation name | its id (interning) |
//! | `i` conversation id | its name |
//! | `m` | the next conversation id |
//! | `x` conversation id, newest seq | an [`id_blocks::IdBlock`] of 16 ids |
//! | `u` higher address NUL conversation id | the lower address (issue 9: a user's conversations, with the names) |
//!
//! Writes are staged in memory and reach sled as one batch at
//! [`StatusLog::write_staged`], which the store's flush calls: a page that
//! gets a message, its receipt and its marker within one group commit is
//! written once. Readers see staged data first.

mod id_blocks;
pub mod page;
mod recent;
mod users;

pub use users::ListingPages;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use page::{ConvState, Page, Slot};
use recent::RecentIds;

use super::{ConversationKey, MessageRecord, Millis, Seq, StoreError, StoreResult};

/// How many of the newest messages' ids are kept in memory by default
/// (about 80 bytes each).
pub const RECENT_IDS: usize = 131_072;

/// How many pages are read back into the id index when the store opens:
/// enough for the messages still being acknowledged, few enough that
/// opening stays fast.
const REOPEN_PAGES: usize = 256;

/// How far back a lookup that misses the in-memory index walks a
/// conversation: the bound on what one unknown id can cost.
pub const WALK_LIMIT: usize = 4096;

/// How many messages one forward move of a tidemark stamps as read; a
/// move over more (a reader returning to a conversation of a hundred
/// thousand unread messages) leaves the oldest without a read time.
pub const STAMP_LIMIT: usize = 100_000;

/// Decoded pages kept after they were written, for the receipts and
/// markers that follow a message.
const CLEAN_PAGES: usize = 64;

const PAGE: u8 = b'p';
const CONV: u8 = b'c';
const NAME: u8 = b'n';
const ID_NAME: u8 = b'i';
const NEXT_CONV: &[u8] = b"m";

fn key(kind: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = kind;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn name_key(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.push(NAME);
    k.extend_from_slice(name);
    k
}

fn u64_from(bytes: &[u8], what: &'static str) -> StoreResult<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what,
            detail: format!("{} bytes, expected 8", bytes.len()),
        })
}

/// Writes not yet in sled. A page of `None` was removed.
#[derive(Default)]
struct Staged {
    pages: HashMap<u64, Option<Page>>,
    convs: HashMap<u64, ConvState>,
    names: HashMap<Vec<u8>, u64>,
    next_conv: Option<u64>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.convs.is_empty() && self.names.is_empty()
    }
}

#[derive(Default)]
struct CleanPages {
    pages: HashMap<u64, Page>,
    order: VecDeque<u64>,
}

impl CleanPages {
    fn insert(&mut self, no: u64, page: Page) {
        if self.pages.insert(no, page).is_none() {
            self.order.push_back(no);
        }
        while self.order.len() > CLEAN_PAGES {
            if let Some(old) = self.order.pop_front() {
                self.pages.remove(&old);
            }
        }
    }

    fn take(&mut self, no: u64) -> Option<Page> {
        let page = self.pages.remove(&no)?;
        self.order.retain(|n| *n != no);
        Some(page)
    }
}

/// Interned ids and the states of conversations written before, in memory:
/// every stanza of a conversation needs both. Cleared when full, which only
/// costs reading them again.
const KNOWN_CONVERSATIONS: usize = 65_536;

struct State {
    known_ids: HashMap<ConversationKey, u64>,
    known_states: HashMap<u64, ConvState>,
    dirty: Staged,
    /// What a running flush is writing: still to be read from until sled
    /// has it.
    flushing: Option<Arc<Staged>>,
    clean: CleanPages,
    recent: RecentIds,
    next_conv: u64,
}

pub struct StatusLog {
    tree: sled::Tree,
    state: Mutex<State>,
    /// One flush at a time, so that a later flush never writes an older
    /// version of a page over a newer one.
    flush_lock: Mutex<()>,
}

/// A 1:1 conversation as the log knows it.
#[derive(Clone, Copy)]
struct Conv {
    id: u64,
}

impl StatusLog {
    /// Opens the log, reading the newest pages back into an index of the
    /// `recent_ids` newest ids.
    pub fn open(tree: sled::Tree, recent_ids: usize) -> StoreResult<Self> {
        let next_conv = match tree.get(NEXT_CONV)? {
            Some(v) => u64_from(&v, "next conversation id")?,
            None => 1,
        };
        let mut recent = RecentIds::new(recent_ids);
        // The newest pages, oldest first, into the index.
        let mut pages = Vec::new();
        let (mut complete, mut slots) = (true, 0);
        for entry in tree.scan_prefix([PAGE]).rev() {
            if pages.len() == REOPEN_PAGES || slots >= recent_ids {
                complete = false;
                break;
            }
            let (k, v) = entry?;
            let page = Page::decode(&v)?;
            slots += page.slots.len();
            pages.push((u64_from(&k[1..], "status page key")?, page));
        }
        pages.reverse();
        if !complete && let Some((first, _)) = pages.first() {
            recent.set_floor(page::seq_at(*first, 0));
        }
        for (no, page) in &pages {
            for (slot, s) in &page.slots {
                recent.insert(s.conv, s.sender_side(), &s.id, page::seq_at(*no, *slot));
            }
        }
        Ok(StatusLog {
            tree,
            state: Mutex::new(State {
                known_ids: HashMap::new(),
                known_states: HashMap::new(),
                dirty: Staged::default(),
                flushing: None,
                clean: CleanPages::default(),
                recent,
                next_conv,
            }),
            flush_lock: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held (caught by the stanza guard) left
        // nothing half-written that a reader could not read.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The conversation's interned id, if it has one.
    fn known_conv(&self, st: &mut State, key: &ConversationKey) -> StoreResult<Option<Conv>> {
        if let Some(id) = st.known_ids.get(key) {
            return Ok(Some(Conv { id: *id }));
        }
        let name = key.encode();
        let staged = st.dirty.names.get(&name).copied().or_else(|| {
            st.flushing
                .as_ref()
                .and_then(|f| f.names.get(&name).copied())
        });
        let id = match staged {
            Some(id) => id,
            None => match self.tree.get(name_key(&name))? {
                Some(v) => u64_from(&v, "conversation id")?,
                None => return Ok(None),
            },
        };
        Self::remember(st, key, id);
        Ok(Some(Conv { id }))
    }

    /// The conversation's interned id, interning it first if it is new.
    fn conv_or_new(&self, st: &mut State, key: &ConversationKey) -> StoreResult<Conv> {
        if let Some(conv) = self.known_conv(st, key)? {
            return Ok(conv);
        }
        let id = st.next_conv;
        st.next_conv += 1;
        st.dirty.names.insert(key.encode(), id);
        st.dirty.next_conv = Some(st.next_conv);
        Self::remember(st, key, id);
        Ok(Conv { id })
    }

    fn remember(st: &mut State, key: &ConversationKey, id: u64) {
        if st.known_ids.len() >= KNOWN_CONVERSATIONS {
            st.known_ids.clear();
        }
        st.known_ids.insert(key.clone(), id);
    }

    fn conv_state(&self, st: &State, conv: Conv) -> StoreResult<ConvState> {
        if let Some(s) = st.dirty.convs.get(&conv.id) {
            return Ok(*s);
        }
        if let Some(s) = st.flushing.as_ref().and_then(|f| f.convs.get(&conv.id)) {
            return Ok(*s);
        }
        if let Some(s) = st.known_states.get(&conv.id) {
            return Ok(*s);
        }
        match self.tree.get(key(CONV, conv.id))? {
            Some(v) => postcard::from_bytes(&v).map_err(|e| StoreError::Corrupt {
                what: "conversation state",
                detail: e.to_string(),
            }),
            None => Ok(ConvState::default()),
        }
    }

    fn stored_page(&self, no: u64) -> StoreResult<Option<Page>> {
        self.tree
            .get(key(PAGE, no))?
            .map(|v| Page::decode(&v))
            .transpose()
    }

    fn slot(&self, st: &mut State, seq: Seq) -> StoreResult<Option<Slot>> {
        let (no, at) = (page::page_of(seq), page::slot_of(seq));
        if let Some(p) = st.dirty.pages.get(&no) {
            return Ok(p.as_ref().and_then(|p| p.slots.get(&at).cloned()));
        }
        if let Some(p) = st.flushing.as_ref().and_then(|f| f.pages.get(&no)) {
            return Ok(p.as_ref().and_then(|p| p.slots.get(&at).cloned()));
        }
        if let Some(p) = st.clean.pages.get(&no) {
            return Ok(p.slots.get(&at).cloned());
        }
        let Some(page) = self.stored_page(no)? else {
            return Ok(None);
        };
        let found = page.slots.get(&at).cloned();
        st.clean.insert(no, page);
        Ok(found)
    }

    /// The page to change, staged for the next flush.
    fn page_mut<'s>(&self, st: &'s mut State, no: u64) -> StoreResult<&'s mut Page> {
        if !matches!(st.dirty.pages.get(&no), Some(Some(_))) {
            let current = match st.flushing.as_ref().and_then(|f| f.pages.get(&no)) {
                Some(p) => p.clone().unwrap_or_default(),
                None => match st.clean.take(no) {
                    Some(p) => p,
                    None => self.stored_page(no)?.unwrap_or_default(),
                },
            };
            st.dirty.pages.insert(no, Some(current));
        }
        Ok(st
            .dirty
            .pages
            .entry(no)
            .or_default()
            .get_or_insert_with(Page::default))
    }

    fn put_slot(&self, st: &mut State, seq: Seq, slot: Slot) -> StoreResult<()> {
        self.page_mut(st, page::page_of(seq))?
            .slots
            .insert(page::slot_of(seq), slot);
        Ok(())
    }

    fn with_slot(
        &self,
        st: &mut State,
        seq: Seq,
        change: impl FnOnce(&mut Slot),
    ) -> StoreResult<()> {
        if let Some(s) = self
            .page_mut(st, page::page_of(seq))?
            .slots
            .get_mut(&page::slot_of(seq))
        {
            change(s);
        }
        Ok(())
    }

    /// Stores a new message or updates one (a receipt, a failure, a held
    /// message going out). `refused` keeps it out of the conversation's
    /// chain: refusals are trimmed, and the chain must never break.
    pub fn put(
        &self,
        key: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
        refused: bool,
    ) -> StoreResult<()> {
        let (Some(side), Some(other)) =
            (key.side_of(&record.sender), key.side_of(&record.recipient))
        else {
            return Err(StoreError::Rejected(format!(
                "message {seq} from {} to {} is not in {key:?}",
                record.sender, record.recipient
            )));
        };
        if side == other {
            return Err(StoreError::Rejected(format!(
                "message {seq} is from {} to themselves",
                record.sender
            )));
        }
        let mut st = self.lock();
        let st = &mut *st;
        let conv = self.conv_or_new(st, key)?;
        let mut flags = if side == 1 { page::SENDER_IS_HI } else { 0 };
        for (on, flag) in [
            (record.wants_receipt, page::WANTS_RECEIPT),
            (record.wants_markers, page::WANTS_MARKERS),
            (record.readable, page::READABLE),
            (record.queued, page::QUEUED),
        ] {
            if on {
                flags |= flag;
            }
        }
        let existing = self.slot(st, seq)?;
        if existing.as_ref().is_some_and(|s| s.conv != conv.id) {
            return Err(StoreError::Rejected(format!(
                "sequence number {seq} belongs to another conversation"
            )));
        }
        if let Some(old) = existing {
            // An update keeps the chain and the read time.
            let read = old.at(old.read);
            let mut slot = old;
            slot.flags = flags | (slot.flags & page::REFUSED);
            slot.sent_at = record.sent_at;
            slot.delivered = record.delivered_at.map(|t| slot.delta(t));
            slot.read = read.map(|t| slot.delta(t));
            slot.failed = record.failed.clone();
            if slot.id != record.id {
                slot.id = record.id.clone();
                st.recent.insert(conv.id, side, &record.id, seq);
            }
            return self.put_slot(st, seq, slot);
        }
        let mut slot = Slot {
            conv: conv.id,
            back: 0,
            flags,
            sent_at: record.sent_at,
            delivered: None,
            read: None,
            failed: record.failed.clone(),
            id: record.id.clone(),
        };
        slot.delivered = record.delivered_at.map(|t| slot.delta(t));
        if refused {
            slot.flags |= page::REFUSED;
        } else {
            self.chain(st, conv, seq, &mut slot)?;
        }
        st.recent.insert(conv.id, side, &record.id, seq);
        self.put_slot(st, seq, slot)?;
        if !refused {
            self.seal_if_due(st, conv)?;
        }
        Ok(())
    }

    /// Writes the ids of the unsealed tail as a block once it holds
    /// [`id_blocks::BLOCK`] messages. Straight to the tree, not staged: a
    /// block is derived from the pages, and one that outlives its pages in
    /// a crash only points at slots a lookup finds missing.
    fn seal_if_due(&self, st: &mut State, conv: Conv) -> StoreResult<()> {
        let mut state = self.conv_state(st, conv)?;
        if state.pending < id_blocks::BLOCK {
            return Ok(());
        }
        let mut block = id_blocks::IdBlock::default();
        let mut cur = state.head;
        while cur > state.sealed && cur != 0 {
            let Some(s) = self.slot(st, cur)? else { break };
            block
                .entries
                .push((id_blocks::id_hash(s.sender_side(), &s.id), state.head - cur));
            cur = s.prev(cur).unwrap_or(0);
        }
        self.tree
            .insert(id_blocks::key(conv.id, state.head), block.encode()?)?;
        state.sealed = state.head;
        state.pending = 0;
        st.dirty.convs.insert(conv.id, state);
        Ok(())
    }

    /// Links a new message into its conversation's chain.
    fn chain(&self, st: &mut State, conv: Conv, seq: Seq, slot: &mut Slot) -> StoreResult<()> {
        let mut state = self.conv_state(st, conv)?;
        if state.first == 0 || seq < state.first {
            state.first = seq;
        }
        if state.head < seq {
            slot.back = if state.head == 0 { 0 } else { seq - state.head };
            state.head = seq;
            state.pending += 1;
        } else {
            // Older than the newest (an import out of order): find the
            // message it goes before.
            let mut next = state.head;
            while let Some(s) = self.slot(st, next)? {
                match s.prev(next) {
                    Some(p) if p > seq => next = p,
                    prev => {
                        slot.back = prev.map_or(0, |p| seq - p);
                        let back = next - seq;
                        self.with_slot(st, next, |n| n.back = back)?;
                        break;
                    }
                }
            }
        }
        st.dirty.convs.insert(conv.id, state);
        Ok(())
    }

    pub fn get(&self, key: &ConversationKey, seq: Seq) -> StoreResult<Option<MessageRecord>> {
        let mut st = self.lock();
        let Some(conv) = self.known_conv(&mut st, key)? else {
            return Ok(None);
        };
        Ok(self
            .slot(&mut st, seq)?
            .filter(|s| s.conv == conv.id)
            .and_then(|s| record_of(key, &s)))
    }

    /// The newest message `sender` sent in `key` with the id `id`.
    pub fn find(
        &self,
        key: &ConversationKey,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, MessageRecord)>> {
        let Some(side) = key.side_of(sender) else {
            return Ok(None);
        };
        let mut st = self.lock();
        let st = &mut *st;
        let Some(conv) = self.known_conv(st, key)? else {
            return Ok(None);
        };
        let is_it = |s: &Slot| s.conv == conv.id && s.sender_side() == side && s.id == id;
        if let Some(seq) = st.recent.get(conv.id, side, id)
            && let Some(s) = self.slot(st, seq)?.filter(is_it)
        {
            return Ok(record_of(key, &s).map(|r| (seq, r)));
        }
        let state = self.conv_state(st, conv)?;
        let floor = st.recent.floor();
        if state.first >= floor {
            // Every message of this conversation is in the index.
            return Ok(None);
        }
        // The unsealed tail, unless the index holds all of it.
        if state.sealed.saturating_add(1) < floor {
            let mut cur = state.head;
            for _ in 0..WALK_LIMIT {
                if cur <= state.sealed {
                    break;
                }
                let Some(s) = self.slot(st, cur)? else { break };
                if is_it(&s) {
                    return Ok(record_of(key, &s).map(|r| (cur, r)));
                }
                cur = s.prev(cur).unwrap_or(0);
            }
        }
        let hash = id_blocks::id_hash(side, id);
        let mut checked = 0;
        for entry in self
            .tree
            .scan_prefix(id_blocks::prefix(conv.id))
            .rev()
            .take(id_blocks::SCAN_LIMIT)
        {
            let (k, v) = entry?;
            let Some(newest) = id_blocks::newest_of(&k) else {
                continue;
            };
            for seq in id_blocks::IdBlock::decode(&v)?.candidates(newest, hash) {
                if let Some(s) = self.slot(st, seq)?.filter(is_it) {
                    return Ok(record_of(key, &s).map(|r| (seq, r)));
                }
                checked += 1;
                if checked >= id_blocks::CANDIDATE_LIMIT {
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// Retention for id blocks: removes, among up to `budget` blocks after
    /// `after`, those whose newest message is gone (so are all older ones).
    /// Returns (examined, removed, where to go on, `None` at the end).
    pub fn expire_blocks(
        &self,
        after: Option<Vec<u8>>,
        budget: usize,
    ) -> StoreResult<(usize, usize, Option<Vec<u8>>)> {
        let from = after.unwrap_or_else(|| vec![id_blocks::KIND]);
        let mut keys = Vec::new();
        let mut exhausted = true;
        for entry in self
            .tree
            .range::<&[u8], _>((
                std::ops::Bound::Excluded(from.as_slice()),
                std::ops::Bound::Unbounded,
            ))
            .keys()
        {
            let k = entry?;
            if k.first() != Some(&id_blocks::KIND) {
                break;
            }
            if keys.len() == budget {
                exhausted = false;
                break;
            }
            keys.push(k);
        }
        let mut st = self.lock();
        let mut removed = 0;
        for k in &keys {
            let Some(newest) = id_blocks::newest_of(k) else {
                continue;
            };
            if self.slot(&mut st, newest)?.is_none() {
                self.tree.remove(k)?;
                removed += 1;
            }
        }
        let next = if exhausted {
            None
        } else {
            keys.last().map(|k| k.to_vec())
        };
        Ok((keys.len(), removed, next))
    }

    pub fn mark(&self, key: &ConversationKey, side: u8) -> StoreResult<Seq> {
        let mut st = self.lock();
        let Some(conv) = self.known_conv(&mut st, key)? else {
            return Ok(0);
        };
        Ok(self.conv_state(&st, conv)?.marks[usize::from(side)])
    }

    /// Moves `side`'s tidemark to `seq` if that is forward, and stamps the
    /// other side's messages it passes with `at`. Atomic: the whole log is
    /// behind one lock.
    pub fn advance(
        &self,
        key: &ConversationKey,
        side: u8,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        let st = &mut *st;
        let conv = self.conv_or_new(st, key)?;
        let mut state = self.conv_state(st, conv)?;
        let old = state.marks[usize::from(side)];
        if seq <= old {
            return Ok(false);
        }
        state.marks[usize::from(side)] = seq;
        st.dirty.convs.insert(conv.id, state);
        let mut cur = state.head;
        for _ in 0..STAMP_LIMIT {
            if cur <= old {
                break;
            }
            let Some(s) = self.slot(st, cur)? else { break };
            if cur <= seq && s.sender_side() != side && s.read.is_none() {
                let d = s.delta(at);
                self.with_slot(st, cur, |s| s.read = Some(d))?;
            }
            cur = s.prev(cur).unwrap_or(0);
        }
        Ok(true)
    }

    /// When `side`'s tidemark passed message `seq` of the other side.
    pub fn read_at(
        &self,
        key: &ConversationKey,
        side: u8,
        seq: Seq,
    ) -> StoreResult<Option<Millis>> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(conv) = self.known_conv(st, key)? else {
            return Ok(None);
        };
        if self.conv_state(st, conv)?.marks[usize::from(side)] < seq {
            return Ok(None);
        }
        Ok(self
            .slot(st, seq)?
            .filter(|s| s.conv == conv.id && s.sender_side() != side)
            .and_then(|s| s.at(s.read)))
    }

    /// Removes a refused message (never one in a chain).
    pub fn remove_refused(&self, seq: Seq) -> StoreResult<()> {
        let mut st = self.lock();
        let st = &mut *st;
        if self.slot(st, seq)?.is_some_and(|s| s.is(page::REFUSED)) {
            self.page_mut(st, page::page_of(seq))?
                .remove(page::slot_of(seq));
        }
        Ok(())
    }

    /// Retention: examines the pages after `after` until `budget` statuses
    /// were looked at (whole pages, so up to a page more), removing those
    /// sent before `cutoff`. Returns (statuses examined, statuses removed,
    /// the page to go on after, `None` at the end). Sequence numbers follow time, so
    /// what is older than a removed status in its conversation's chain has
    /// gone too: the chain simply ends there.
    pub fn expire_pages(
        &self,
        cutoff: Millis,
        after: Option<u64>,
        budget: usize,
    ) -> StoreResult<(usize, usize, Option<u64>)> {
        // Pages staged since the last flush are examined once the caller
        // has written them (the store's write of everything staged).
        let from = after.map_or(key(PAGE, 0), |n| key(PAGE, n + 1));
        let mut st = self.lock();
        let st = &mut *st;
        let (mut examined, mut removed, mut last) = (0, 0, None);
        let mut exhausted = true;
        for entry in self.tree.range(from..) {
            if examined >= budget {
                exhausted = false;
                break;
            }
            let (k, v) = entry?;
            if k.first() != Some(&PAGE) {
                break;
            }
            let no = u64_from(&k[1..], "status page key")?;
            last = Some(no);
            let old: Vec<u8> = {
                let page = Page::decode(&v)?;
                examined += page.slots.len();
                page.slots
                    .iter()
                    .filter(|(_, s)| s.sent_at < cutoff)
                    .map(|(at, _)| *at)
                    .collect()
            };
            if old.is_empty() {
                continue;
            }
            removed += old.len();
            let page = self.page_mut(st, no)?;
            for at in old {
                page.remove(at);
            }
            if page.slots.is_empty() {
                st.dirty.pages.insert(no, None);
            }
        }
        Ok((examined, removed, if exhausted { None } else { last }))
    }

    /// Writes everything staged to sled as one batch (made durable by the
    /// db's flush that follows).
    pub fn write_staged(&self) -> StoreResult<()> {
        self.write_staged_with(|batch| {
            if let Some(b) = batch {
                self.tree.apply_batch(b)?;
            }
            Ok(())
        })
    }

    /// The tree the log lives in, for a transaction over several trees.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Hands what is staged to `write` as a batch for [`Self::tree`]
    /// (`None` when nothing is), keeping it readable until `write` returns;
    /// if `write` fails, it is staged again under what changed since.
    pub fn write_staged_with(
        &self,
        write: impl FnOnce(Option<sled::Batch>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let _one = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let staged = {
            let mut st = self.lock();
            if st.dirty.is_empty() {
                None
            } else {
                let staged = Arc::new(std::mem::take(&mut st.dirty));
                st.flushing = Some(staged.clone());
                Some(staged)
            }
        };
        let Some(staged) = staged else {
            return write(None);
        };
        let result = self.batch(&staged).and_then(|b| write(Some(b)));
        let mut st = self.lock();
        st.flushing = None;
        if result.is_ok() {
            // What was just written is what later stanzas of these
            // conversations read first; a newer dirty state still wins.
            if st.known_states.len() + staged.convs.len() > KNOWN_CONVERSATIONS {
                st.known_states.clear();
            }
            for (id, state) in &staged.convs {
                st.known_states.insert(*id, *state);
            }
        }
        if result.is_err() {
            // Nothing was written: keep it for the next flush, under what
            // changed since.
            let staged = Arc::try_unwrap(staged).unwrap_or_else(|a| Staged {
                pages: a.pages.clone(),
                convs: a.convs.clone(),
                names: a.names.clone(),
                next_conv: a.next_conv,
            });
            for (k, v) in staged.pages {
                st.dirty.pages.entry(k).or_insert(v);
            }
            for (k, v) in staged.convs {
                st.dirty.convs.entry(k).or_insert(v);
            }
            for (k, v) in staged.names {
                st.dirty.names.entry(k).or_insert(v);
            }
            if st.dirty.next_conv.is_none() {
                st.dirty.next_conv = staged.next_conv;
            }
        }
        result
    }

    fn batch(&self, staged: &Staged) -> StoreResult<sled::Batch> {
        let mut b = sled::Batch::default();
        for (no, page) in &staged.pages {
            match page {
                Some(p) if !p.slots.is_empty() => b.insert(&key(PAGE, *no), p.encode()?),
                _ => b.remove(&key(PAGE, *no)),
            }
        }
        for (id, state) in &staged.convs {
            let v = postcard::to_allocvec(state).map_err(|e| StoreError::Corrupt {
                what: "conversation state",
                detail: e.to_string(),
            })?;
            b.insert(&key(CONV, *id), v);
        }
        for (name, id) in &staged.names {
            b.insert(name_key(name), &id.to_be_bytes());
            b.insert(&key(ID_NAME, *id), name.as_slice());
            // Issue 9: the higher address's set of conversations (the
            // lower's are the names), written once per conversation, never
            // per message.
            if let Some(conv) = ConversationKey::decode(name)
                && let Some((user, other)) = users::entries(&conv, *id)
            {
                b.insert(user, other);
            }
        }
        if let Some(n) = staged.next_conv {
            b.insert(NEXT_CONV, &n.to_be_bytes());
        }
        Ok(b)
    }

    /// Every stored message, oldest first, with its conversation and read
    /// time (for export). Call after a flush.
    pub fn for_each_message<E: From<StoreError>>(
        &self,
        mut each: impl FnMut(Exported) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut names: HashMap<u64, ConversationKey> = HashMap::new();
        for entry in self.tree.scan_prefix([PAGE]) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let no = u64_from(&k[1..], "status page key")?;
            let mut page = Page::decode(&v)?;
            for (slot, s) in std::mem::take(&mut page.slots) {
                let key = match names.get(&s.conv) {
                    Some(k) => k.clone(),
                    None => {
                        let Some(name) = self
                            .tree
                            .get(key(ID_NAME, s.conv))
                            .map_err(StoreError::from)?
                        else {
                            return Err(StoreError::Corrupt {
                                what: "conversation name",
                                detail: format!("no name for conversation {}", s.conv),
                            }
                            .into());
                        };
                        let k =
                            ConversationKey::decode(&name).ok_or_else(|| StoreError::Corrupt {
                                what: "conversation name",
                                detail: format!("{name:?}"),
                            })?;
                        names.insert(s.conv, k.clone());
                        k
                    }
                };
                if let Some(record) = record_of(&key, &s) {
                    each(Exported {
                        conv: key,
                        seq: page::seq_at(no, slot),
                        record,
                        read_at: s.at(s.read),
                        refused: s.is(page::REFUSED),
                        preview: page.previews.remove(&slot),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Every conversation's tidemarks (for export). Call after a flush.
    pub fn for_each_mark<E: From<StoreError>>(
        &self,
        mut each: impl FnMut(ConversationKey, u8, Seq) -> Result<(), E>,
    ) -> Result<(), E> {
        for entry in self.tree.scan_prefix([CONV]) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let id = u64_from(&k[1..], "conversation key")?;
            let state: ConvState = postcard::from_bytes(&v).map_err(|e| StoreError::Corrupt {
                what: "conversation state",
                detail: e.to_string(),
            })?;
            let Some(name) = self.tree.get(key(ID_NAME, id)).map_err(StoreError::from)? else {
                continue;
            };
            let Some(conv) = ConversationKey::decode(&name) else {
                continue;
            };
            for side in 0..2u8 {
                if state.marks[usize::from(side)] > 0 {
                    each(conv.clone(), side, state.marks[usize::from(side)])?;
                }
            }
        }
        Ok(())
    }

    /// Sets a message's read time directly (import).
    pub fn set_read(&self, key: &ConversationKey, seq: Seq, at: Millis) -> StoreResult<()> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(conv) = self.known_conv(st, key)? else {
            return Ok(());
        };
        if self.slot(st, seq)?.is_some_and(|s| s.conv == conv.id) {
            self.with_slot(st, seq, |s| s.read = Some(at as i64 - s.sent_at as i64))?;
        }
        Ok(())
    }

    /// Sets a tidemark without stamping (import, whose messages carry their
    /// read times already).
    pub fn set_mark(&self, key: &ConversationKey, side: u8, seq: Seq) -> StoreResult<()> {
        let mut st = self.lock();
        let st = &mut *st;
        let conv = self.conv_or_new(st, key)?;
        let mut state = self.conv_state(st, conv)?;
        let m = &mut state.marks[usize::from(side)];
        *m = (*m).max(seq);
        st.dirty.convs.insert(conv.id, state);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty() && self.lock().dirty.is_empty()
    }
}

/// One stored 1:1 message as the export writes it.
pub struct Exported {
    pub conv: ConversationKey,
    pub seq: Seq,
    pub record: MessageRecord,
    pub read_at: Option<Millis>,
    pub refused: bool,
    pub preview: Option<String>,
}

fn record_of(key: &ConversationKey, s: &Slot) -> Option<MessageRecord> {
    let side = s.sender_side();
    Some(MessageRecord {
        id: s.id.clone(),
        sender: key.party(side)?.to_owned(),
        recipient: key.party(1 - side)?.to_owned(),
        sent_at: s.sent_at,
        delivered_at: s.at(s.delivered),
        failed: s.failed.clone(),
        wants_receipt: s.is(page::WANTS_RECEIPT),
        wants_markers: s.is(page::WANTS_MARKERS),
        readable: s.is(page::READABLE),
        queued: s.is(page::QUEUED),
    })
}
