//! Issue 11: team desks in sled, in the staged tree `desks`.
//!
//! | key | value |
//! |---|---|
//! | `c` desk NUL customer | the [`DeskConversation`] |
//! | `v` desk NUL view NUL inverted latest, customer | nothing: the view's index, latest first |
//! | `n` desk | the desk's [`Counts`] |
//! | `e` desk NUL customer NUL seq | a [`DeskEvent`] |
//! | `w` desk NUL customer NUL seq | the agent who wrote the desk's message `seq` |
//! | `s` until, desk NUL customer | nothing: a snoozed conversation |
//!
//! Views in the index: `a` (every conversation not done), `u` (unassigned,
//! not done), `d` (done), `m` + agent (assigned to the agent, not done).
//! A conversation is in `a` and in one of the others; a change rewrites
//! its record, moves its index keys only when its view or latest activity
//! changed, and rewrites the desk's counts only when they changed.

use std::ops::Bound;

use super::staged::T;
use super::{SledStore, decode, decode_seq, encode};
use crate::store::{
    DeskConversation, DeskCounts, DeskEvent, DeskState, DeskView, Millis, Seq, StoreError,
    StoreResult, ViewCount,
};

const CONV: u8 = b'c';
const VIEW: u8 = b'v';
const COUNTS: u8 = b'n';
const EVENT: u8 = b'e';
const AUTHOR: u8 = b'w';
const SNOOZED: u8 = b's';

fn key(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push(kind);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn conv_key(desk: &str, customer: &str) -> Vec<u8> {
    key(CONV, &[desk.as_bytes(), customer.as_bytes()])
}

fn seq_key(kind: u8, desk: &str, customer: &str, seq: Seq) -> Vec<u8> {
    let mut k = key(kind, &[desk.as_bytes(), customer.as_bytes()]);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn bucket_name(view: &DeskView) -> Vec<u8> {
    match view {
        DeskView::All => b"a".to_vec(),
        DeskView::Unassigned => b"u".to_vec(),
        DeskView::Done => b"d".to_vec(),
        DeskView::Mine(agent) => {
            let mut b = b"m".to_vec();
            b.extend_from_slice(agent.as_bytes());
            b
        }
    }
}

/// The start of a view's index keys (ends in NUL).
fn view_prefix(desk: &str, view: &DeskView) -> Vec<u8> {
    let mut k = key(VIEW, &[desk.as_bytes(), &bucket_name(view)]);
    k.push(0);
    k
}

/// Newest first in key order: sled walks forward far faster than back.
fn view_key(desk: &str, view: &DeskView, c: &DeskConversation) -> Vec<u8> {
    let mut k = view_prefix(desk, view);
    k.extend_from_slice(&(Seq::MAX - c.latest).to_be_bytes());
    k.extend_from_slice(c.customer.as_bytes());
    k
}

fn snooze_key(until: Millis, desk: &str, customer: &str) -> Vec<u8> {
    let mut k = vec![SNOOZED];
    k.extend_from_slice(&until.to_be_bytes());
    k.extend_from_slice(desk.as_bytes());
    k.push(0);
    k.extend_from_slice(customer.as_bytes());
    k
}

/// The views a conversation is in: `All` and one other, or `Done` alone.
fn views_of(c: &DeskConversation) -> Vec<DeskView> {
    if c.state == DeskState::Done {
        return vec![DeskView::Done];
    }
    let own = match &c.assignee {
        Some(agent) => DeskView::Mine(agent.clone()),
        None => DeskView::Unassigned,
    };
    vec![DeskView::All, own]
}

/// A record keyed by conversation and sequence: (desk, customer, seq,
/// value).
type SeqRecord = (String, String, Seq, Vec<u8>);

/// A desk's counts: per view, and per agent for `mine`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Counts {
    unassigned: ViewCount,
    all: ViewCount,
    done: ViewCount,
    mine: Vec<(String, ViewCount)>,
}

impl Counts {
    fn slot(&mut self, view: &DeskView) -> &mut ViewCount {
        match view {
            DeskView::Unassigned => &mut self.unassigned,
            DeskView::All => &mut self.all,
            DeskView::Done => &mut self.done,
            DeskView::Mine(agent) => {
                let i = match self.mine.iter().position(|(a, _)| a == agent) {
                    Some(i) => i,
                    None => {
                        self.mine.push((agent.clone(), ViewCount::default()));
                        self.mine.len() - 1
                    }
                };
                &mut self.mine[i].1
            }
        }
    }

    fn add(&mut self, c: &DeskConversation, sign: i64) {
        let unread = c.has_unread();
        for view in views_of(c) {
            let slot = self.slot(&view);
            slot.conversations = slot.conversations.saturating_add_signed(sign);
            if unread {
                slot.unread = slot.unread.saturating_add_signed(sign);
            }
        }
        self.mine.retain(|(_, v)| v.conversations > 0);
    }
}

impl SledStore {
    fn load_counts(&self, desk: &str) -> StoreResult<Counts> {
        self.staged
            .get(T::Desks, &key(COUNTS, &[desk.as_bytes()]))?
            .map(|v| decode(&v, "desk counts"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    pub(super) fn put_desk_conv(&self, desk: &str, c: &DeskConversation) -> StoreResult<()> {
        if c.customer.is_empty() {
            return Err(StoreError::Rejected(
                "a desk conversation needs its customer".into(),
            ));
        }
        let old = self.get_desk_conv(desk, &c.customer)?;
        let (old_views, old_key_of): (Vec<DeskView>, _) = match &old {
            Some(o) => (views_of(o), Some(o)),
            None => (vec![], None),
        };
        let new_views = views_of(c);
        let moved = old_key_of.is_none_or(|o| o.latest != c.latest || old_views != new_views);
        if moved {
            if let Some(o) = old_key_of {
                for v in &old_views {
                    self.staged.remove(T::Desks, view_key(desk, v, o));
                }
            }
            for v in &new_views {
                self.staged.insert(T::Desks, view_key(desk, v, c), []);
            }
        }
        let counted_same = old
            .as_ref()
            .is_some_and(|o| old_views == new_views && o.has_unread() == c.has_unread());
        if !counted_same {
            let mut counts = self.load_counts(desk)?;
            if let Some(o) = &old {
                counts.add(o, -1);
            }
            counts.add(c, 1);
            self.staged.insert(
                T::Desks,
                key(COUNTS, &[desk.as_bytes()]),
                encode(&counts, "desk counts")?,
            );
        }
        let old_snooze = old.as_ref().and_then(|o| match o.state {
            DeskState::Snoozed { until } => Some(until),
            _ => None,
        });
        let new_snooze = match c.state {
            DeskState::Snoozed { until } => Some(until),
            _ => None,
        };
        if old_snooze != new_snooze {
            if let Some(until) = old_snooze {
                self.staged
                    .remove(T::Desks, snooze_key(until, desk, &c.customer));
            }
            if let Some(until) = new_snooze {
                self.staged
                    .insert(T::Desks, snooze_key(until, desk, &c.customer), []);
            }
        }
        self.staged.insert(
            T::Desks,
            conv_key(desk, &c.customer),
            encode(c, "desk conversation")?,
        );
        Ok(())
    }

    pub(super) fn get_desk_conv(
        &self,
        desk: &str,
        customer: &str,
    ) -> StoreResult<Option<DeskConversation>> {
        let Some(v) = self.staged.get(T::Desks, &conv_key(desk, customer))? else {
            return Ok(None);
        };
        let mut c: DeskConversation = decode(&v, "desk conversation")?;
        c.customer = customer.to_owned();
        Ok(Some(c))
    }

    pub(super) fn get_desk_view(
        &self,
        desk: &str,
        view: &DeskView,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeskConversation>> {
        let prefix = view_prefix(desk, view);
        let from = match after.map(|a| self.get_desk_conv(desk, a)).transpose()? {
            Some(Some(a)) if view.holds(&a) => Bound::Excluded(view_key(desk, view, &a)),
            // After a conversation that left the view (or never was): from
            // the start, as a client that lost its place would want.
            _ => Bound::Included(prefix.clone()),
        };
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let keys = self
            .staged
            .range(T::Desks, from, Bound::Excluded(end), false, limit)?;
        let mut out = Vec::with_capacity(keys.len());
        for (k, _) in keys {
            let Some(customer) = k.get(prefix.len() + 8..) else {
                return Err(StoreError::Corrupt {
                    what: "desk view key",
                    detail: format!("{} bytes", k.len()),
                });
            };
            let customer = String::from_utf8_lossy(customer);
            if let Some(c) = self.get_desk_conv(desk, &customer)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub(super) fn get_desk_counts(&self, desk: &str, agent: &str) -> StoreResult<DeskCounts> {
        let counts = self.load_counts(desk)?;
        Ok(DeskCounts {
            mine: counts
                .mine
                .iter()
                .find(|(a, _)| a == agent)
                .map(|(_, v)| *v)
                .unwrap_or_default(),
            unassigned: counts.unassigned,
            all: counts.all,
            done: counts.done,
        })
    }

    pub(super) fn put_desk_ev(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        event: &DeskEvent,
    ) -> StoreResult<()> {
        self.staged.insert(
            T::Desks,
            seq_key(EVENT, desk, customer, seq),
            encode(event, "desk event")?,
        );
        Ok(())
    }

    pub(super) fn get_desk_events(
        &self,
        desk: &str,
        customer: &str,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, DeskEvent)>> {
        let mut prefix = key(EVENT, &[desk.as_bytes(), customer.as_bytes()]);
        prefix.push(0);
        let found = self.staged.scan_prefix(T::Desks, &prefix, true, limit)?;
        let mut out = Vec::with_capacity(found.len());
        for (k, v) in found.into_iter().rev() {
            let seq = decode_seq(&k[prefix.len()..], "desk event key")?;
            out.push((seq, decode(&v, "desk event")?));
        }
        Ok(out)
    }

    pub(super) fn put_desk_writer(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        agent: &str,
    ) -> StoreResult<()> {
        self.staged.insert(
            T::Desks,
            seq_key(AUTHOR, desk, customer, seq),
            agent.as_bytes(),
        );
        Ok(())
    }

    pub(super) fn get_desk_writer(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
    ) -> StoreResult<Option<String>> {
        Ok(self
            .staged
            .get(T::Desks, &seq_key(AUTHOR, desk, customer, seq))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(super) fn get_desk_snoozed(&self) -> StoreResult<Vec<(String, String, Millis)>> {
        let found = self
            .staged
            .scan_prefix(T::Desks, &[SNOOZED], false, usize::MAX)?;
        let mut out = Vec::with_capacity(found.len());
        for (k, _) in found {
            let corrupt = || StoreError::Corrupt {
                what: "desk snooze key",
                detail: format!("{} bytes", k.len()),
            };
            let until = decode_seq(k.get(1..9).ok_or_else(corrupt)?, "desk snooze key")?;
            let rest = k.get(9..).ok_or_else(corrupt)?;
            let nul = rest.iter().position(|b| *b == 0).ok_or_else(corrupt)?;
            out.push((
                String::from_utf8_lossy(&rest[..nul]).into_owned(),
                String::from_utf8_lossy(&rest[nul + 1..]).into_owned(),
                until,
            ));
        }
        Ok(out)
    }

    /// Every desk conversation, for the export.
    pub(super) fn all_desk_convs(&self) -> StoreResult<Vec<(String, DeskConversation)>> {
        let mut out = Vec::new();
        for entry in self.staged.tree(T::Desks).scan_prefix([CONV]) {
            let (k, v) = entry?;
            let rest = &k[1..];
            let Some(nul) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let desk = String::from_utf8_lossy(&rest[..nul]).into_owned();
            let mut c: DeskConversation = decode(&v, "desk conversation")?;
            c.customer = String::from_utf8_lossy(&rest[nul + 1..]).into_owned();
            out.push((desk, c));
        }
        Ok(out)
    }

    /// Every desk event (`events`) or author (`!events`), for the export:
    /// (desk, customer, seq, value).
    pub(super) fn all_desk_seq_records(&self, events: bool) -> StoreResult<Vec<SeqRecord>> {
        let kind = if events { EVENT } else { AUTHOR };
        let mut out = Vec::new();
        for entry in self.staged.tree(T::Desks).scan_prefix([kind]) {
            let (k, v) = entry?;
            let rest = &k[1..];
            let corrupt = || StoreError::Corrupt {
                what: "desk record key",
                detail: format!("{} bytes", k.len()),
            };
            let nul = rest.iter().position(|b| *b == 0).ok_or_else(corrupt)?;
            let after = &rest[nul + 1..];
            if after.len() < 9 {
                return Err(corrupt());
            }
            let (customer, seq) = after.split_at(after.len() - 9);
            out.push((
                String::from_utf8_lossy(&rest[..nul]).into_owned(),
                String::from_utf8_lossy(customer).into_owned(),
                decode_seq(&seq[1..], "desk record key")?,
                v.to_vec(),
            ));
        }
        Ok(out)
    }
}
