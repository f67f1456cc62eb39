//! What the conversation list shows of each conversation, read from the
//! store: the rows, a page of them newest first, the search. Pure reads,
//! so the same rows serve the IQ protocol, the ad-hoc command and the
//! pushes rendered after a stanza's writes are applied.

use xmpp_parsers::jid::BareJid;

use crate::address::{Addresses, unescape_node};
use crate::status::derive;
use crate::status::private_mark::own_mark;
use crate::status::room_tally::summary_in;
use crate::store::{ConversationKey, InboxEntry, Millis, Missed, Seq, Store, StoreResult};

/// How many 1:1 entries a search or an unread-only listing examines at
/// most: the bound on one request's work. A user with more 1:1
/// conversations than this has only some of them searched.
pub const SEARCH_LIMIT: usize = 10_000;

/// A conversation of the list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A 1:1 conversation with this contact (bare JID), through their
    /// tracked address.
    Contact(String),
    /// A room (its bare JID).
    Room(String),
}

/// What the list needs besides the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub addrs: Addresses,
    /// `status.send_read_receipts`: for members who never chose.
    pub default_read_receipts: bool,
}

/// One conversation as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub peer: Peer,
    /// The address to open it at: the tracked address, or the room.
    pub jid: String,
    pub name: String,
    pub unread: u64,
    pub missed: Option<Missed>,
    /// Where the conversation stands in the list, and the page cursor:
    /// its newest message (or missed attempt); for a room without any, the
    /// user's joining. Each conversation's own, so a page never skips one.
    pub latest: Seq,
    pub last_activity: Option<Millis>,
    /// Who wrote the newest message (bare JID).
    pub last_from: Option<String>,
    /// The state of the user's own newest message: `sent`, `delivered`,
    /// `read`, `failed` (1:1), `sent`, `some-read`, `all-read` (rooms).
    pub state: Option<&'static str>,
}

impl Row {
    pub fn wants_attention(&self) -> bool {
        self.unread > 0 || self.missed.is_some()
    }

    /// Case-insensitive substring of the address, the contact's JID or the
    /// name, in any script.
    pub fn matches(&self, search: &str) -> bool {
        let needle = fold(search.trim());
        if needle.is_empty() {
            return true;
        }
        let peer = match &self.peer {
            Peer::Contact(j) | Peer::Room(j) => j,
        };
        [self.jid.as_str(), peer, self.name.as_str()]
            .iter()
            .any(|h| fold(h).contains(&needle))
    }
}

/// Case folded as addresses are (RFC 3454 B.2, nodeprep's): lowercasing
/// alone would keep a final sigma (ς) and ß, which an address registered
/// as "Οδυσσευς" or "Straße" no longer has (σ, ss).
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(stringprep::tables::case_fold_for_nfkc)
        .collect()
}

/// A name a person recognises: the local part, unescaped.
fn name_of(jid: &str) -> String {
    match jid.split_once('@') {
        Some((node, _)) => unescape_node(node),
        None => jid.to_owned(),
    }
}

/// The row of `user`'s 1:1 conversation `entry`.
pub fn direct_row(
    store: &dyn Store,
    settings: &Settings,
    user: &str,
    entry: &InboxEntry,
) -> StoreResult<Row> {
    let contact = &entry.contact;
    // A desk (issue 11) is an address at this service already.
    let jid = BareJid::new(contact)
        .ok()
        .filter(|c| c.domain() != settings.addrs.domain().domain())
        .and_then(|c| settings.addrs.tracked(&c).ok())
        .map_or_else(|| contact.clone(), |t| t.to_string());
    let state = if entry.own_latest > 0 {
        let conv = ConversationKey::direct(user, contact);
        match store.message(&conv, entry.own_latest)? {
            Some(record) => {
                let read_at = if record.readable {
                    store.read_at(&conv, &record.recipient, entry.own_latest)?
                } else {
                    None
                };
                Some(derive(&record, read_at).state.as_str())
            }
            None => None,
        }
    } else {
        None
    };
    Ok(Row {
        peer: Peer::Contact(contact.clone()),
        jid,
        name: name_of(contact),
        unread: u64::from(entry.unread),
        missed: entry.missed,
        latest: entry.latest,
        last_activity: (entry.latest > 0).then_some(entry.latest_at),
        last_from: (entry.latest > 0).then(|| {
            if entry.latest_by_contact {
                contact.clone()
            } else {
                user.to_owned()
            }
        }),
        state,
    })
}

/// The row of `room` for `user`, `None` unless they are a member now.
pub fn room_row(
    store: &dyn Store,
    settings: &Settings,
    user: &str,
    room: &str,
) -> StoreResult<Option<Row>> {
    let Some(membership) = store.membership(room, user)?.filter(|m| m.is_current()) else {
        return Ok(None);
    };
    let conv = ConversationKey::room(room);
    let own_sent = store.inbox_room_sent_seq(user, room)?;
    // Read up to: what their markers say (shared or private), their own
    // latest message (they had the room open), and nothing before they
    // joined.
    let position = own_mark(store, &conv, user)?
        .max(own_sent)
        .max(membership.joined);
    let unread = store.room_messages_after(room, position)?;
    let latest = store.room_history(room, 1)?.into_iter().next();
    let state = if own_sent > 0 {
        store
            .room_messages_between(room, own_sent - 1, own_sent)?
            .into_iter()
            .find(|(s, m)| *s == own_sent && m.sender == user)
            .map(|(seq, m)| summary_in(store, settings.default_read_receipts, room, seq, &m))
            .transpose()?
    } else {
        None
    };
    Ok(Some(Row {
        peer: Peer::Room(room.to_owned()),
        jid: room.to_owned(),
        name: name_of(room),
        unread,
        missed: None,
        // A room nobody wrote in yet stands where the user joined it: a
        // position of its own (rooms sharing 0 would tie, and a page
        // ending on one would skip the others).
        latest: latest.as_ref().map_or(membership.joined, |(s, _)| *s),
        last_activity: latest.as_ref().map(|(_, m)| m.sent_at),
        last_from: latest.map(|(_, m)| m.sender),
        state,
    }))
}

/// The row of one conversation, `None` if `user` has none with `peer`.
pub fn row(
    store: &dyn Store,
    settings: &Settings,
    user: &str,
    peer: &Peer,
) -> StoreResult<Option<Row>> {
    match peer {
        Peer::Contact(contact) => store
            .inbox_entry(user, contact)?
            .map(|e| direct_row(store, settings, user, &e))
            .transpose(),
        Peer::Room(room) => room_row(store, settings, user, room),
    }
}

/// What a listing asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub search: Option<String>,
    pub unread_only: bool,
    /// Only conversations whose newest activity is below this (the paging
    /// cursor: the `latest` of the last row shown); `None` from the top.
    pub before: Option<Seq>,
    pub max: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Newest first.
    pub rows: Vec<Row>,
    /// More conversations match below the last row.
    pub more: bool,
    /// All of the user's unread messages, every conversation.
    pub total_unread: u64,
}

/// A page of `user`'s list. Rooms are the user's current memberships
/// (bounded by the store); 1:1 conversations come from the store's index
/// by latest activity, so an unfiltered page reads O(page) entries, and a
/// search or an unread-only page at most [`SEARCH_LIMIT`].
pub fn list(store: &dyn Store, settings: &Settings, user: &str, q: &Query) -> StoreResult<Page> {
    let before = q.before.unwrap_or(Seq::MAX);
    let keep = |r: &Row| {
        r.latest < before
            && (!q.unread_only || r.wants_attention())
            && q.search.as_deref().is_none_or(|s| r.matches(s))
    };
    let mut total_unread = store.inbox_unread_total(user)?;
    let mut rows = Vec::new();
    for room in store.member_rooms(user)? {
        if let Some(r) = room_row(store, settings, user, &room)? {
            total_unread += r.unread;
            if keep(&r) {
                rows.push(r);
            }
        }
    }
    let filtered = q.unread_only || q.search.is_some();
    let entries = if filtered {
        store.inbox_entries(user, SEARCH_LIMIT)?
    } else {
        store.inbox_latest(user, before, q.max + 1)?
    };
    for e in &entries {
        let r = direct_row(store, settings, user, e)?;
        if keep(&r) {
            rows.push(r);
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.latest));
    let more = rows.len() > q.max;
    rows.truncate(q.max);
    Ok(Page {
        rows,
        more,
        total_unread,
    })
}

/// `user`'s unread messages, every conversation.
pub fn total_unread(store: &dyn Store, settings: &Settings, user: &str) -> StoreResult<u64> {
    let mut total = store.inbox_unread_total(user)?;
    for room in store.member_rooms(user)? {
        if let Some(r) = room_row(store, settings, user, &room)? {
            total += r.unread;
        }
    }
    Ok(total)
}
