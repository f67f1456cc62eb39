//! An update for subscribed sessions, rendered from the store once the
//! stanza's writes are in it: the counts it carries are the ones a query
//! right after would give.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use super::render::update_element;
use super::view::{self, Peer, Settings};
use crate::stanza::{element, ns};
use crate::store::{Store, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The subscribed sessions of `user`.
    pub to: Vec<Jid>,
    pub user: String,
    pub peer: Peer,
    pub settings: Settings,
}

impl Push {
    /// The headline messages to send, none if the conversation is not in
    /// the list (a room the user just left).
    pub fn render(&self, store: &dyn Store) -> StoreResult<Vec<Element>> {
        let Some(row) = view::row(store, &self.settings, &self.user, &self.peer)? else {
            return Ok(vec![]);
        };
        let total = view::total_unread(store, &self.settings, &self.user)?;
        let update = update_element(&row, total);
        let from = self.settings.addrs.domain().to_string();
        let id = format!("inbox-{}", row.latest);
        Ok(self
            .to
            .iter()
            .map(|to| {
                let mut m = element(
                    "message",
                    ns::COMPONENT,
                    &[
                        ("from", from.as_str()),
                        ("to", &to.to_string()),
                        ("type", "headline"),
                        ("id", id.as_str()),
                    ],
                );
                m.append_child(update.clone());
                m
            })
            .collect())
    }
}
