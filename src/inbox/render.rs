//! The list's rows as `urn:tidemark:inbox:0` XML (xep/inbox.md). Hand-built:
//! our own namespace has no xmpp-parsers type; the result set is
//! xmpp-parsers' XEP-0059 `SetResult`.

use minidom::Element;
use xmpp_parsers::rsm::SetResult;

use super::view::{Page, Peer, Row};
use crate::stanza::{element, ns, set_attr, xep0082};

/// One row as `<conversation/>`.
pub fn conversation_element(row: &Row) -> Element {
    let unread = row.unread.to_string();
    let missed = row.missed.map_or(0, |m| m.count).to_string();
    let kind = match row.peer {
        Peer::Contact(_) => "chat",
        Peer::Room(_) => "groupchat",
    };
    let mut el = element(
        "conversation",
        ns::INBOX,
        &[
            ("jid", row.jid.as_str()),
            ("name", row.name.as_str()),
            ("type", kind),
            ("unread", unread.as_str()),
            ("missed", missed.as_str()),
        ],
    );
    if let Peer::Contact(contact) = &row.peer {
        set_attr(&mut el, "contact", contact.as_str());
    }
    if let Some(at) = row.last_activity {
        set_attr(&mut el, "last-activity", xep0082(at));
    }
    if let Some(from) = &row.last_from {
        set_attr(&mut el, "last-from", from.as_str());
    }
    if let Some(state) = row.state {
        set_attr(&mut el, "state", state);
    }
    if let Some(m) = row.missed {
        set_attr(&mut el, "missed-first", xep0082(m.first_at));
        set_attr(&mut el, "missed-last", xep0082(m.last_at));
    }
    el
}

/// The answer to a listing.
pub fn list_element(page: &Page) -> Element {
    let total = page.total_unread.to_string();
    let mut el = element(
        "inbox",
        ns::INBOX,
        &[
            ("total-unread", total.as_str()),
            ("complete", if page.more { "false" } else { "true" }),
        ],
    );
    for row in &page.rows {
        el.append_child(conversation_element(row));
    }
    if let (Some(first), Some(last)) = (page.rows.first(), page.rows.last()) {
        el.append_child(
            SetResult {
                first: Some(xmpp_parsers::rsm::First {
                    index: None,
                    item: first.latest.to_string(),
                }),
                last: Some(last.latest.to_string()),
                count: None,
            }
            .into(),
        );
    }
    el
}

/// The update pushed to a subscribed session.
pub fn update_element(row: &Row, total_unread: u64) -> Element {
    let total = total_unread.to_string();
    let mut el = element("update", ns::INBOX, &[("total-unread", total.as_str())]);
    el.append_child(conversation_element(row));
    el
}
