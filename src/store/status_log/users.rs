//! Issue 9: each user's 1:1 conversations, so that the `status` command can
//! list what a user sent lately without an index written per message.
//!
//! A conversation is interned under its name, `n d lo NUL hi` -> its id, so
//! the conversations where a user is the lower address are a prefix scan of
//! the names already. For the higher address one entry per conversation,
//! `u hi NUL id` -> the lower address, is written in the batch that interns
//! the conversation: once per conversation, never per message (measured:
//! an entry for both parties cost 13 bytes per status at 200,000 statuses
//! of 40 per conversation, one entry half that). The messages themselves
//! are found by walking each conversation's chain (its back-pointers) from
//! its head.

use std::collections::HashMap;

use super::page::{self, Page, Slot};
use super::{ConvState, NAME, StatusLog, key, u64_from};
use crate::store::{ConversationKey, Millis, Seq, StoreError, StoreResult};

const USER: u8 = b'u';

fn user_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 2);
    k.push(USER);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k
}

fn user_key(user: &str, id: u64) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The user-index entry of conversation `id`: its higher address's (the
/// lower one finds it among the names).
pub(super) fn entries(conv: &ConversationKey, id: u64) -> Option<(Vec<u8>, Vec<u8>)> {
    let (Some(lo), Some(hi)) = (conv.party(0), conv.party(1)) else {
        return None;
    };
    Some((user_key(hi, id), lo.as_bytes().to_vec()))
}

/// `n d user NUL`: the names of the conversations where `user` is the
/// lower address.
fn lower_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 3);
    k.push(NAME);
    k.push(b'd');
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k
}

/// A 1:1 message as a listing walks it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub conv: u64,
    /// 0: sent by the conversation's lower address, 1: the higher.
    pub sender_side: u8,
    pub sent_at: Millis,
    /// The conversation's previous message, `None` at the chain's end.
    pub prev: Option<Seq>,
    pub refused: bool,
    pub preview: Option<String>,
}

impl Listed {
    fn of(seq: Seq, s: &Slot, preview: Option<&String>) -> Self {
        Listed {
            conv: s.conv,
            sender_side: s.sender_side(),
            sent_at: s.sent_at,
            prev: s.prev(seq),
            refused: s.is(page::REFUSED),
            preview: preview.cloned(),
        }
    }
}

/// Pages a listing read from sled, kept for the rest of that request (and
/// out of the log's own cache, which serves the receipts and markers of
/// recent messages).
pub type ListingPages = HashMap<u64, Option<Page>>;

impl StatusLog {
    /// Up to `limit` of `user`'s conversations, the most recently started
    /// first among those read: (conversation id, the other party). At most
    /// `limit` are read on each side (where the user is the lower address,
    /// in the order of the other's address; where the higher, the newest),
    /// so for a user with more than `limit` on a side which ones take part
    /// is not by recency alone.
    pub fn conversations_of(&self, user: &str, limit: usize) -> StoreResult<Vec<(u64, String)>> {
        let mut found: HashMap<u64, String> = HashMap::new();
        {
            // Interned since the last flush.
            let st = self.lock();
            let flushing = st.flushing.iter().flat_map(|f| f.names.iter());
            for (name, id) in st.dirty.names.iter().chain(flushing) {
                if let Some(conv) = ConversationKey::decode(name)
                    && let Some(side) = conv.side_of(user)
                    && let Some(other) = conv.party(1 - side)
                {
                    found.insert(*id, other.to_owned());
                }
            }
        }
        let prefix = user_prefix(user);
        for entry in self.tree.scan_prefix(&prefix).rev().take(limit) {
            let (k, v) = entry?;
            let id = u64_from(&k[prefix.len()..], "user conversation key")?;
            found.insert(id, String::from_utf8_lossy(&v).into_owned());
        }
        let prefix = lower_prefix(user);
        for entry in self.tree.scan_prefix(&prefix).take(limit) {
            let (k, v) = entry?;
            let id = u64_from(&v, "conversation id")?;
            found.insert(id, String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        let mut out: Vec<(u64, String)> = found.into_iter().collect();
        out.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        out.truncate(limit);
        Ok(out)
    }

    /// The interned id of a conversation, if it has one.
    pub fn conversation_id(&self, conv: &ConversationKey) -> StoreResult<Option<u64>> {
        let mut st = self.lock();
        Ok(self.known_conv(&mut st, conv)?.map(|c| c.id))
    }

    /// The newest message of a conversation's chain, 0 for none.
    pub fn head(&self, id: u64) -> StoreResult<Seq> {
        let st = self.lock();
        let state: ConvState = self.conv_state(&st, super::Conv { id })?;
        Ok(state.head)
    }

    /// The message at `seq`, read for a listing: staged and cached pages
    /// first, then `pages`, then sled (into `pages`).
    pub fn listed(&self, seq: Seq, pages: &mut ListingPages) -> StoreResult<Option<Listed>> {
        let (no, at) = (page::page_of(seq), page::slot_of(seq));
        {
            let st = self.lock();
            let staged = st
                .dirty
                .pages
                .get(&no)
                .or_else(|| st.flushing.as_ref().and_then(|f| f.pages.get(&no)));
            let page = match staged {
                Some(p) => p.as_ref(),
                None => st.clean.pages.get(&no),
            };
            if staged.is_some() || page.is_some() {
                return Ok(page.and_then(|p| {
                    p.slots
                        .get(&at)
                        .map(|s| Listed::of(seq, s, p.previews.get(&at)))
                }));
            }
        }
        if let std::collections::hash_map::Entry::Vacant(e) = pages.entry(no) {
            let page = self
                .tree
                .get(key(super::PAGE, no))?
                .map(|v| Page::decode(&v))
                .transpose()?;
            e.insert(page);
        }
        Ok(pages.get(&no).and_then(Option::as_ref).and_then(|p| {
            p.slots
                .get(&at)
                .map(|s| Listed::of(seq, s, p.previews.get(&at)))
        }))
    }

    /// Keeps the start of a message's text beside it (issue 9,
    /// `status.preview_chars`); nothing if the message is not there.
    pub fn set_preview(&self, conv: &ConversationKey, seq: Seq, text: &str) -> StoreResult<()> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(c) = self.known_conv(st, conv)? else {
            return Ok(());
        };
        if self.slot(st, seq)?.is_some_and(|s| s.conv == c.id) {
            self.page_mut(st, page::page_of(seq))?
                .previews
                .insert(page::slot_of(seq), text.to_owned());
        }
        Ok(())
    }

    /// Writes the user entries of every interned conversation (a store
    /// written before issue 9); returns how many conversations. Straight
    /// to the tree: the entries are derived, and writing one twice is
    /// harmless.
    pub fn build_user_index(&self) -> StoreResult<usize> {
        let mut n = 0;
        for entry in self.tree.scan_prefix([NAME]) {
            let (k, v) = entry?;
            let id = u64_from(&v, "conversation id")?;
            let conv = ConversationKey::decode(&k[1..]).ok_or_else(|| StoreError::Corrupt {
                what: "conversation name",
                detail: format!("{:?}", &k[1..]),
            })?;
            if let Some((user, other)) = entries(&conv, id) {
                self.tree.insert(user, other)?;
            }
            n += 1;
        }
        Ok(n)
    }
}
