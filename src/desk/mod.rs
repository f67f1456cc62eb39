//! Issue 11: team desks (xep/desk.md). One shared address per desk that
//! customers chat with as with a person; agents answer from their own
//! clients, one chat per customer; conversations are assigned, marked done
//! or pending, snoozed, and every change is an event of the conversation's
//! history.
//!
//! The desk's messages are 1:1 statuses between the customer and the desk's
//! address, so the status log, the status query and the conversation list
//! carry them unchanged; this module adds routing, the conversation's state
//! and its events (`crate::store::desk`).
//!
//! One-way: the desk uses the store, the context, presence's names and the
//! status rules; nothing but the router knows it exists.

mod actions;
mod agents;
mod chat;
mod commands;
mod events;
mod names;
mod protocol;
mod view;

use std::collections::{BTreeSet, HashMap};

use minidom::Element;
use tracing::debug;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::address::DeskTarget;
use crate::config::DeskConfig;
use crate::context::Context;
use crate::incoming::{Incoming, Origin, ServiceRequest};
use crate::rate_limit::RateLimiter;
use crate::stanza::{DefinedCondition, ErrorType, StanzaError, stanza_error};
use crate::store::{Millis, Store, StoreError};

pub use agents::AgentBook;

type Out = Result<Vec<Element>, StoreError>;

/// The command nodes of desks (xep/desk.md §5).
pub const DESK_COMMAND: &str = "desk";
pub const ASSIGN_COMMAND: &str = "assign";
pub const DONE_COMMAND: &str = "done";
pub const PENDING_COMMAND: &str = "pending";
pub const SNOOZE_COMMAND: &str = "snooze";
pub const PREDEFINED_COMMAND: &str = "predefined";

/// The nodes that act on one conversation.
const CONVERSATION_COMMANDS: [&str; 5] = [
    ASSIGN_COMMAND,
    DONE_COMMAND,
    PENDING_COMMAND,
    SNOOZE_COMMAND,
    PREDEFINED_COMMAND,
];

/// The desks' state in memory: agents' presence, round-robin positions,
/// the snoozed conversations' wake-up times and which conversations' names
/// agents' clients were told (all of it rebuilt after a restart: presence
/// by probes, snoozes from the store, names told again).
#[derive(Debug)]
pub struct Desks {
    agents: AgentBook,
    round_robin: HashMap<String, usize>,
    /// (until, desk, customer).
    snoozes: BTreeSet<(Millis, String, String)>,
    names: names::Names,
    /// Customers subscribed to each desk (by its address), as stored: a
    /// desk accepts anyone, so what it keeps of them is bounded.
    watchers: HashMap<String, usize>,
    /// New conversations per customer's server
    /// (`limits.desk_openings_per_domain_per_minute`).
    openings: RateLimiter,
}

/// Subscribers kept per desk. Past it a subscription is still answered
/// (the desk is public, and probes are answered for anyone) but not kept,
/// so that customers on the federation cannot grow the store without
/// bound; those past it learn the desk's presence when their server probes
/// (at each login), not as it changes.
pub const MAX_WATCHERS_PER_DESK: usize = 10_000;

/// A desk and the addresses the desk module answers from.
struct At<'c> {
    desk: &'c DeskConfig,
    /// `support@chat.localhost`.
    jid: BareJid,
}

/// An IQ's answer: its result payload or error, and the stanzas that go
/// out with it (the events an action caused, a predefined message).
#[derive(Debug)]
pub struct Answer {
    pub result: Result<Option<Element>, StanzaError>,
    pub also: Vec<Element>,
}

impl Answer {
    fn result(payload: Option<Element>) -> Self {
        Answer {
            result: Ok(payload),
            also: vec![],
        }
    }

    fn error(e: StanzaError) -> Self {
        Answer {
            result: Err(e),
            also: vec![],
        }
    }

    /// The IQ's reply from `own`, then the rest.
    fn into_stanzas(self, origin: &Origin, own: &str) -> Vec<Element> {
        let mut out = Vec::with_capacity(1 + self.also.len());
        out.push(match self.result {
            Ok(payload) => origin.result(own, payload),
            Err(e) => origin.reply_with_error(own, e),
        });
        out.extend(self.also);
        out
    }
}

fn desk_config<'c>(cx: &'c Context, name: &str) -> Option<&'c DeskConfig> {
    cx.config.desks.iter().find(|d| d.name == name)
}

/// A configured desk's address. Desk names are checked when the config is
/// read, so this fails only on a config built around that check.
fn desk_jid(cx: &Context, name: &str) -> Result<BareJid, StoreError> {
    cx.addrs
        .desk_address(name)
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// The desk `name`, for `agent` to act on: `item-not-found` for no such
/// desk, `forbidden` for someone who is not its agent.
fn desk_for_agent(
    cx: &Context,
    name: &str,
    agent: &str,
) -> Result<Result<(DeskConfig, BareJid), StanzaError>, StoreError> {
    let Some(desk) = desk_config(cx, name).cloned() else {
        return Ok(Err(not_found(format!("no desk {name:?} here"))));
    };
    if !desk.is_agent(agent) {
        return Ok(Err(forbidden(format!(
            "only the agents of {} may do this",
            desk.name
        ))));
    }
    let jid = desk_jid(cx, &desk.name)?;
    Ok(Ok((desk, jid)))
}

fn forbidden(text: impl Into<String>) -> StanzaError {
    stanza_error(ErrorType::Auth, DefinedCondition::Forbidden, text)
}

fn not_found(text: impl Into<String>) -> StanzaError {
    stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound, text)
}

fn bad_request(text: impl Into<String>) -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

impl Desks {
    /// The snoozed conversations and the desks' subscribers, from the
    /// store; `domain` is the component's.
    pub fn start(
        store: &dyn Store,
        domain: &str,
        openings_per_minute: u32,
    ) -> Result<Self, StoreError> {
        let per_minute = openings_per_minute.max(1);
        let mut desks = Desks {
            agents: AgentBook::default(),
            round_robin: HashMap::new(),
            snoozes: BTreeSet::new(),
            names: names::Names::default(),
            watchers: HashMap::new(),
            openings: RateLimiter::new(f64::from(per_minute) / 60.0, per_minute),
        };
        for (desk, customer, until) in store.desk_snoozed()? {
            desks.snoozes.insert((until, desk, customer));
        }
        let ours = format!("@{domain}");
        for (contact, _) in store.presence_grants()? {
            if contact.ends_with(&ours) {
                *desks.watchers.entry(contact).or_default() += 1;
            }
        }
        Ok(desks)
    }

    pub fn agents(&self) -> &AgentBook {
        &self.agents
    }

    /// A stanza to a desk's address or one of its conversations'.
    pub fn handle(
        &mut self,
        cx: &mut Context,
        target: DeskTarget,
        inner: Incoming,
        now: Millis,
    ) -> Out {
        let out = self.route(cx, target, inner, now)?;
        Ok(self.names.add(cx, out, now))
    }

    fn route(&mut self, cx: &mut Context, target: DeskTarget, inner: Incoming, now: Millis) -> Out {
        let Some(desk) = desk_config(cx, &target.desk).cloned() else {
            return Ok(vec![]);
        };
        let jid = desk_jid(cx, &desk.name)?;
        let at = At { desk: &desk, jid };
        match (target.customer, inner) {
            (
                customer,
                Incoming::ServiceIq {
                    from,
                    origin,
                    request,
                },
            ) => {
                // Answered from the address it was sent to.
                let own = match &customer {
                    Some(c) => conversation_address(cx, &at, c)?.to_string(),
                    None => at.jid.to_string(),
                };
                self.iq(
                    cx,
                    &at,
                    customer.as_ref(),
                    &own,
                    &origin,
                    &from,
                    request,
                    now,
                )
            }
            (None, Incoming::Chat(chat)) => chat::from_customer(cx, self, &at, &chat, now),
            (None, Incoming::Ack { route, kind, id }) => {
                chat::customer_ack(cx, &at, &route, kind, &id, now)
            }
            (None, Incoming::Bounce(bounce)) => chat::customer_bounce(cx, &at, &bounce, now),
            (None, Incoming::Passthrough { route, message }) => {
                Ok(chat::customer_chat_state(cx, self, &at, &route, message))
            }
            (None, Incoming::Subscription { route, kind, id }) => {
                agents::on_subscription(cx, self, &at, &route, kind, id.as_deref())
            }
            (
                None,
                Incoming::Presence {
                    route,
                    presence,
                    available,
                },
            ) => {
                let available = available.map(|_| presence);
                agents::on_agent_presence(cx, self, &at, &route, available, now)
            }
            (None, Incoming::PresenceError(route)) => {
                agents::on_agent_presence(cx, self, &at, &route, None, now)
            }
            (None, Incoming::Probe(route)) => agents::on_probe(self, &at, &route),
            (Some(customer), Incoming::Chat(chat)) => {
                chat::from_agent(cx, &at, &customer, &chat, now)
            }
            (Some(customer), Incoming::Ack { route, kind, id }) => {
                chat::agent_ack(cx, &at, &customer, &route, kind, &id, now)
            }
            (Some(customer), Incoming::Passthrough { route, message }) => {
                Ok(chat::agent_chat_state(cx, &at, &customer, &route, message))
            }
            (_, other) => {
                debug!(?other, "nothing for a desk in this stanza");
                Ok(vec![])
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn iq(
        &mut self,
        cx: &mut Context,
        at: &At,
        customer: Option<&BareJid>,
        own: &str,
        origin: &Origin,
        from: &Jid,
        request: ServiceRequest,
        now: Millis,
    ) -> Out {
        let answer = match request {
            ServiceRequest::Ping => Answer::result(None),
            // Clients ask before they offer "Execute command" on a contact.
            ServiceRequest::DiscoInfo { node: None } => {
                let name = match customer {
                    Some(c) => chat::conversation_name(&at.desk.name, c),
                    None => at.desk.name.clone(),
                };
                Answer::result(Some(disco_info(&name)))
            }
            ServiceRequest::CommandList => {
                let agent = at.desk.is_agent(from.to_bare().as_str());
                Answer::result(Some(commands::list_at(
                    cx,
                    own,
                    customer.is_some() && agent,
                )))
            }
            ServiceRequest::Command(cmd) => match customer {
                Some(customer) if CONVERSATION_COMMANDS.contains(&cmd.node.as_str()) => {
                    commands::execute_in(cx, self, at, customer, from, cmd, now)?
                }
                _ => Answer::error(not_found(format!(
                    "no command {:?} here; a conversation's address offers {}",
                    cmd.node,
                    CONVERSATION_COMMANDS.join(", ")
                ))),
            },
            _ => Answer::error(stanza_error(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "a desk's address answers pings and commands; ask the service for the rest",
            )),
        };
        Ok(answer.into_stanzas(origin, own))
    }

    /// A request to the service's own address that is a desk's: its IQ
    /// protocol, its commands, and the command list (which grows by the
    /// desk commands for agents). `None`: not the desk's.
    pub fn service_iq(
        &mut self,
        cx: &mut Context,
        origin: &Origin,
        from: &Jid,
        request: &ServiceRequest,
        now: Millis,
    ) -> Result<Option<Vec<Element>>, StoreError> {
        if cx.config.desks.is_empty() {
            return Ok(None);
        }
        let own = cx.addrs.domain().to_string();
        let answer = match request {
            ServiceRequest::Desk(req) => protocol::answer(cx, self, from, req.clone(), now)?,
            ServiceRequest::Command(cmd)
                if cmd.node == DESK_COMMAND
                    || CONVERSATION_COMMANDS.contains(&cmd.node.as_str()) =>
            {
                commands::execute(cx, self, from, cmd.clone(), now)?
            }
            ServiceRequest::CommandList if is_any_agent(cx, from) => {
                Answer::result(Some(commands::list_service(cx)))
            }
            _ => return Ok(None),
        };
        let out = answer.into_stanzas(origin, &own);
        Ok(Some(self.names.add(cx, out, now)))
    }

    /// Once a second: snoozed conversations whose time came are back.
    pub fn tick(&mut self, cx: &mut Context, now: Millis) -> Out {
        self.openings.sweep(now);
        let mut out = Vec::new();
        while let Some(first) = self.snoozes.first() {
            if first.0 > now {
                break;
            }
            let Some((until, desk, customer)) = self.snoozes.pop_first() else {
                break;
            };
            let Some(config) = desk_config(cx, &desk).cloned() else {
                continue;
            };
            let jid = desk_jid(cx, &desk)?;
            let at = At { desk: &config, jid };
            out.extend(actions::wake(cx, self, &at, &customer, until, now)?);
        }
        Ok(self.names.add(cx, out, now))
    }

    /// After every (re)connect: what was known of agents is stale; each
    /// desk asks its agents for their presence again (a subscription
    /// request to those who have not granted it yet, a probe to all).
    pub fn on_connected(&mut self, cx: &mut Context, now: Millis) -> Out {
        self.agents = AgentBook::default();
        agents::ask_agents(cx, now)
    }
}

/// What a desk's or a conversation's address is: a bot that takes
/// messages, acknowledges them, and runs commands.
// Hand-built, in the order clients have always had the service's.
fn disco_info(name: &str) -> Element {
    use crate::stanza::{element, ns};
    let mut q = Element::bare("query", ns::DISCO_INFO);
    q.append_child(element(
        "identity",
        ns::DISCO_INFO,
        &[("category", "client"), ("type", "bot"), ("name", name)],
    ));
    for f in [
        ns::DISCO_INFO,
        ns::COMMANDS,
        ns::RECEIPTS,
        ns::CHAT_MARKERS,
        ns::PING,
    ] {
        q.append_child(element("feature", ns::DISCO_INFO, &[("var", f)]));
    }
    q
}

fn is_any_agent(cx: &Context, from: &Jid) -> bool {
    let bare = from.to_bare();
    cx.config.desks.iter().any(|d| d.is_agent(bare.as_str()))
}

/// The address agents see `customer`'s conversation at. Only addresses
/// that parsed as one reach the desk, so this cannot fail for them; a
/// customer from a stanza is checked where it enters (`chat.rs`).
fn conversation_address(cx: &Context, at: &At, customer: &BareJid) -> Result<BareJid, StoreError> {
    cx.addrs
        .desk_conversation(&at.desk.name, customer)
        .map_err(|e| StoreError::Backend(e.to_string()))
}
