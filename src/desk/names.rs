//! Conversations' names for clients that take a contact's name only from
//! their roster or a XEP-0172 PEP notification: Gajim 1.7.3 ignores the
//! nick in each relayed message (`chat.rs`) and shows the escaped address
//! (`support\2fdan\40example.org`) in its chat list, the chat's header, as
//! the author of every line and in "… has read up to this point". So before
//! the first message from a conversation's address to an agent since their
//! client came online, the name goes as a PEP notification, as it does for
//! tracked addresses (`crate::presence`).

use std::collections::{HashMap, HashSet};

use minidom::Element;
use xmpp_parsers::jid::Jid;

use super::{chat, desk_config};
use crate::context::Context;
use crate::presence::name_message;
use crate::store::Millis;

/// (agent, conversation) pairs remembered; past it, everyone is told again
/// (once each), which costs a small stanza and keeps this bounded.
pub const MAX_NAMED_PAIRS: usize = 65_536;

/// Which conversations' names each agent's clients were told since the
/// agent's latest client came online.
#[derive(Debug, Default)]
pub struct Names {
    told: HashMap<String, HashSet<String>>,
    pairs: usize,
}

impl Names {
    /// A client of `agent` came online: it may not know any name yet.
    pub fn forget_agent(&mut self, agent: &str) {
        if let Some(set) = self.told.remove(agent) {
            self.pairs -= set.len();
        }
    }

    fn first_time(&mut self, agent: &str, conversation: &str) -> bool {
        if self.pairs >= MAX_NAMED_PAIRS {
            self.told.clear();
            self.pairs = 0;
        }
        let new = self
            .told
            .entry(agent.to_owned())
            .or_default()
            .insert(conversation.to_owned());
        if new {
            self.pairs += 1;
        }
        new
    }

    /// `out`, each conversation's name before its first message to an
    /// agent (messages from a conversation's address go only to agents).
    pub fn add(&mut self, cx: &mut Context, out: Vec<Element>, now: Millis) -> Vec<Element> {
        let mut named = Vec::with_capacity(out.len());
        for el in out {
            if let Some(name) = self.name_for(cx, &el, now) {
                named.push(name);
            }
            named.push(el);
        }
        named
    }

    fn name_for(&mut self, cx: &mut Context, el: &Element, now: Millis) -> Option<Element> {
        // An error can come from an address no customer wrote to.
        if el.name() != "message" || el.attr("type") == Some("error") {
            return None;
        }
        let from = Jid::new(el.attr("from")?).ok()?;
        let to = Jid::new(el.attr("to")?).ok()?;
        let target = cx.addrs.desk_of(&from)?;
        let customer = target.customer?;
        let agent = to.to_bare();
        if !desk_config(cx, &target.desk)?.is_agent(agent.as_str()) {
            return None;
        }
        let conversation = from.to_bare();
        if !self.first_time(agent.as_str(), conversation.as_str()) {
            return None;
        }
        let name = chat::conversation_name(&target.desk, &customer);
        Some(name_message(
            name,
            conversation,
            agent.into(),
            cx.local_id(now),
        ))
    }
}
