//! A desk's views and their counts (xep/desk.md §5.1), read from the
//! store's index and counts: nothing here scans a desk, except a search,
//! which examines at most [`SEARCH_SCAN`] conversations.

use xmpp_parsers::jid::BareJid;

use super::{At, bad_request};
use crate::context::Context;
use crate::stanza::StanzaError;
use crate::store::{DeskConversation, DeskCounts, DeskView, Millis, StoreError};

/// The most conversations a search looks at.
pub const SEARCH_SCAN: usize = 10_000;
/// Rows per page unless a client asks for fewer; the most it may ask.
pub const MAX_PAGE: usize = 100;

/// One conversation as a view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The conversation's address for agents.
    pub jid: String,
    pub customer: String,
    pub name: String,
    pub assignee: Option<String>,
    pub state: &'static str,
    /// The customer's messages no agent has read.
    pub unread: u64,
    pub last_activity: Millis,
}

pub struct Page {
    pub counts: DeskCounts,
    pub rows: Vec<Row>,
    /// Whether the view holds more after the last row.
    pub more: bool,
}

/// The view `name` names for `agent`; `None` for no view.
pub fn parse_view(name: &str, agent: &str) -> Option<DeskView> {
    Some(match name.trim() {
        "" | "mine" => DeskView::Mine(agent.to_owned()),
        "unassigned" => DeskView::Unassigned,
        "all" => DeskView::All,
        "done" => DeskView::Done,
        _ => return None,
    })
}

pub fn no_such_view(name: &str) -> StanzaError {
    bad_request(format!(
        "no view {name:?}; the views are mine, unassigned, all and done"
    ))
}

/// The name a customer goes by: their JID's local part.
fn name_of(customer: &str) -> String {
    BareJid::new(customer)
        .ok()
        .and_then(|b| b.node().map(|n| n.to_string()))
        .unwrap_or_else(|| customer.to_owned())
}

fn row(cx: &Context, at: &At, c: &DeskConversation) -> Result<Row, StoreError> {
    let jid = BareJid::new(&c.customer)
        .ok()
        .and_then(|b| cx.addrs.desk_conversation(&at.desk.name, &b).ok())
        .map(|a| a.to_string())
        .unwrap_or_default();
    // Exact when the conversation list keeps the desk's entries (partial
    // reads included); else whether anything is unread.
    // A message refused while nobody was available counts: the customer
    // is waiting for an answer to it as much as to one that got through.
    let unread = match cx.store.inbox_entry(at.jid.as_str(), &c.customer)? {
        Some(e) if cx.config.inbox.enabled => {
            u64::from(e.unread) + u64::from(e.missed.map_or(0, |m| m.count))
        }
        _ => u64::from(c.has_unread()),
    };
    Ok(Row {
        jid,
        customer: c.customer.clone(),
        name: name_of(&c.customer),
        assignee: c.assignee.clone(),
        state: c.state.name(),
        unread,
        last_activity: c.latest_at,
    })
}

fn matches(c: &DeskConversation, needle: &str) -> bool {
    c.customer.to_lowercase().contains(needle)
        || name_of(&c.customer).to_lowercase().contains(needle)
}

/// A page of `view` for `agent`, after the conversation of the customer
/// `after`, at most `max` rows, filtered by `search`.
pub fn page(
    cx: &Context,
    at: &At,
    agent: &str,
    view: &DeskView,
    search: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Result<Page, StoreError> {
    let max = max.clamp(1, MAX_PAGE);
    let counts = cx.store.desk_counts(&at.desk.name, agent)?;
    let needle = search
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty());
    let mut rows = Vec::new();
    let mut cursor = after.map(str::to_owned);
    let mut scanned = 0;
    let mut more = false;
    loop {
        let want = if needle.is_some() { MAX_PAGE } else { max + 1 };
        let found = cx
            .store
            .desk_view(&at.desk.name, view, cursor.as_deref(), want)?;
        let exhausted = found.len() < want;
        for c in &found {
            scanned += 1;
            cursor = Some(c.customer.clone());
            if needle.as_deref().is_some_and(|n| !matches(c, n)) {
                continue;
            }
            if rows.len() == max {
                more = true;
                break;
            }
            rows.push(row(cx, at, c)?);
        }
        if more || exhausted || needle.is_none() || scanned >= SEARCH_SCAN {
            break;
        }
    }
    Ok(Page { counts, rows, more })
}
