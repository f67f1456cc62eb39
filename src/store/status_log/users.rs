//! Issue 9: each user's 1:1 conversations, so that the `status` command can
//! list what a user sent lately without an index written per message.
//!
//! One entry per (party, conversation), `u user NUL id` -> the other party,
//! written in the batch that interns the conversation: once per
//! conversation, never per message. The messages themselves are found by
//! walking each conversation's chain (its back-pointers) from its head.

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

/// The user-index entries of conversation `id`: one per party.
pub(super) fn entries(conv: &ConversationKey, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (Some(lo), Some(hi)) = (conv.party(0), conv.party(1)) else {
        return Vec::new();
    };
    vec![
        (user_key(lo, id), hi.as_bytes().to_vec()),
        (user_key(hi, id), lo.as_bytes().to_vec()),
    ]
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
    /// first: (conversation id, the other party).
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
        let mut out: Vec<(u64, String)> = found.into_iter().collect();
        out.sort_unstable_by(|a, b| b.0.cmp(&a.0));
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
        if !pages.contains_key(&no) {
            let page = self
                .tree
                .get(key(super::PAGE, no))?
                .map(|v| Page::decode(&v))
                .transpose()?;
            pages.insert(no, page);
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
            for (user, other) in entries(&conv, id) {
                self.tree.insert(user, other)?;
            }
            n += 1;
        }
        Ok(n)
    }
}
