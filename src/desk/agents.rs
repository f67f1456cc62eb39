//! Who of a desk's agents is available, and the desk's own presence, which
//! customers see: available while any agent is (xep/desk.md §4.1).

use std::collections::{HashMap, HashSet};

use minidom::Element;
use tracing::{debug, info};
use xmpp_parsers::nick::Nick;

use super::{At, Desks, MAX_WATCHERS_PER_DESK, Out, chat};
use crate::config::DeskConfig;
use crate::context::Context;
use crate::incoming::{Route, SubscriptionKind};
use crate::stanza::{element, ns, set_attr};
use crate::store::{Millis, Write};

/// Agents' available resources. Only configured agents are kept: anyone
/// else's presence to a desk is dropped, so nobody can grow it.
#[derive(Debug, Default)]
pub struct AgentBook {
    resources: HashMap<String, HashSet<String>>,
}

/// Resources kept per agent (as for contacts).
const MAX_RESOURCES: usize = 16;

impl AgentBook {
    pub fn is_available(&self, agent: &str) -> bool {
        self.resources.get(agent).is_some_and(|r| !r.is_empty())
    }

    /// The desk's available agents, in the order of the config.
    pub fn available<'d>(&self, desk: &'d DeskConfig) -> Vec<&'d str> {
        desk.agents
            .iter()
            .map(|a| a.as_str())
            .filter(|a| self.is_available(a))
            .collect()
    }

    /// Whether `resource` of `agent` is known to be available.
    fn has(&self, agent: &str, resource: &str) -> bool {
        self.resources
            .get(agent)
            .is_some_and(|r| r.contains(resource))
    }

    pub fn desk_available(&self, desk: &DeskConfig) -> bool {
        desk.agents.iter().any(|a| self.is_available(a.as_str()))
    }

    fn update(&mut self, agent: &str, resource: &str, available: bool) {
        let set = self.resources.entry(agent.to_owned()).or_default();
        if available {
            if set.len() < MAX_RESOURCES || set.contains(resource) {
                set.insert(resource.to_owned());
            }
        } else if resource.is_empty() {
            set.clear();
        } else {
            set.remove(resource);
        }
        if set.is_empty() {
            self.resources.remove(agent);
        }
    }
}

/// The resource the desk's presence comes from.
pub const DESK_RESOURCE: &str = "desk";

/// The desk's presence to `to`: available, or unavailable, with its name.
/// From a resource of the desk's address, as a client's: Gajim 1.7.3 keeps
/// a contact's presence per resource and drops one from a bare JID, so a
/// desk whose presence came from `support@chat.localhost` stayed offline in
/// its contact list while agents were available.
fn desk_presence(at: &At, to: &str, available: bool) -> Element {
    let from = format!("{}/{DESK_RESOURCE}", at.jid);
    let mut p = element("presence", ns::COMPONENT, &[("from", &from), ("to", to)]);
    if !available {
        set_attr(&mut p, "type", "unavailable");
    }
    p.append_child(Nick(at.desk.name.clone()).into());
    p
}

/// A subscription stanza to the desk's address: an agent answering the
/// desk's request, or a customer asking to see the desk.
pub fn on_subscription(
    cx: &mut Context,
    desks: &mut Desks,
    at: &At,
    route: &Route,
    kind: SubscriptionKind,
    id: Option<&str>,
) -> Out {
    let from = route.from.to_bare().to_string();
    let desk_jid = at.jid.to_string();
    if at.desk.is_agent(&from) {
        match kind {
            SubscriptionKind::Subscribed => {
                info!(agent = %from, desk = %at.desk.name, "agent shares presence with the desk");
                cx.write(Write::PresenceAllowed {
                    contact: from.clone(),
                    watcher: desk_jid.clone(),
                    allowed: true,
                });
            }
            SubscriptionKind::Unsubscribed => cx.write(Write::PresenceAllowed {
                contact: from.clone(),
                watcher: desk_jid.clone(),
                allowed: false,
            }),
            _ => {}
        }
        if kind != SubscriptionKind::Subscribe {
            return Ok(vec![]);
        }
    }
    match kind {
        SubscriptionKind::Subscribe => {
            // A desk is public: anyone may see whether it is staffed. Kept
            // (to be told of changes) within MAX_WATCHERS_PER_DESK.
            if !cx.store.presence_allowed(&desk_jid, &from)? {
                let kept = desks.watchers.entry(desk_jid.clone()).or_default();
                if *kept < MAX_WATCHERS_PER_DESK {
                    *kept += 1;
                    cx.write(Write::PresenceAllowed {
                        contact: desk_jid.clone(),
                        watcher: from.clone(),
                        allowed: true,
                    });
                } else {
                    debug!(desk = %desk_jid, "subscriber not kept: the desk has MAX_WATCHERS_PER_DESK");
                }
            }
            let mut ok = element(
                "presence",
                ns::COMPONENT,
                &[
                    ("from", desk_jid.as_str()),
                    ("to", from.as_str()),
                    ("type", "subscribed"),
                ],
            );
            if let Some(id) = id {
                set_attr(&mut ok, "id", id);
            }
            let available = desks.agents.desk_available(at.desk);
            Ok(vec![ok, desk_presence(at, &from, available)])
        }
        SubscriptionKind::Unsubscribe => {
            if cx.store.presence_allowed(&desk_jid, &from)? {
                if let Some(kept) = desks.watchers.get_mut(&desk_jid) {
                    *kept = kept.saturating_sub(1);
                }
                cx.write(Write::PresenceAllowed {
                    contact: desk_jid,
                    watcher: from,
                    allowed: false,
                });
            }
            Ok(vec![])
        }
        SubscriptionKind::Subscribed | SubscriptionKind::Unsubscribed => Ok(vec![]),
    }
}

/// A probe of the desk: its presence, to anyone (a desk is public, and a
/// subscriber past MAX_WATCHERS_PER_DESK learns it only this way).
pub fn on_probe(desks: &Desks, at: &At, route: &Route) -> Out {
    let from = route.from.to_bare().to_string();
    Ok(vec![desk_presence(
        at,
        &from,
        desks.agents.desk_available(at.desk),
    )])
}

/// An agent's presence (`None`: unavailable, or a presence error): the
/// desk's own presence follows when it changes, and messages held while
/// nobody was there go out when someone comes.
pub fn on_agent_presence(
    cx: &mut Context,
    desks: &mut Desks,
    at: &At,
    route: &Route,
    presence: Option<&Element>,
    now: Millis,
) -> Out {
    let available = presence.is_some();
    let agent = route.from.to_bare().to_string();
    if !at.desk.is_agent(&agent) {
        debug!("presence to a desk from someone who is not its agent ignored");
        return Ok(vec![]);
    }
    let resource = route.from.resource().map_or("", |r| r.as_str());
    // Every desk the agent serves sees the same presence.
    let serves: Vec<DeskConfig> = cx
        .config
        .desks
        .iter()
        .filter(|d| d.is_agent(&agent))
        .cloned()
        .collect();
    let before: Vec<bool> = serves
        .iter()
        .map(|d| desks.agents.desk_available(d))
        .collect();
    let was = desks.agents.is_available(&agent);
    let new_client = available && !desks.agents.has(&agent, resource);
    desks.agents.update(&agent, resource, available);
    let mut out = Vec::new();
    if was != desks.agents.is_available(&agent) {
        info!(%agent, available, "desk agent availability changed");
    }
    if new_client {
        // A client that just came online may know no conversation's name.
        desks.names.forget_agent(&agent);
    }
    if let Some(p) = presence {
        // What the agent's client can take: the `desk` command's answer
        // depends on it (Gajim 1.7.3 stops at "Executing…" on a table), and
        // an agent who has no tracked contact sends their caps only here.
        let service = cx.addrs.domain().to_string();
        out.extend(cx.clients.on_presence(&route.from, p, &service, now));
    }
    // Only this desk's change is announced here: each desk gets the
    // agent's presence at its own address and answers for itself.
    let index = serves.iter().position(|d| d.name == at.desk.name);
    if let Some(i) = index {
        let now_available = desks.agents.desk_available(at.desk);
        if before[i] != now_available {
            out.extend(broadcast(cx, at, now_available)?);
        }
        if now_available && available {
            out.extend(chat::release_held(cx, desks, at, now)?);
        }
    }
    Ok(out)
}

/// The desk's presence to every customer who subscribed to it.
fn broadcast(cx: &Context, at: &At, available: bool) -> Out {
    let desk = at.jid.as_str();
    Ok(cx
        .store
        .presence_grants()?
        .into_iter()
        .filter(|(contact, _)| contact == desk)
        .map(|(_, watcher)| desk_presence(at, &watcher, available))
        .collect())
}

/// Each desk asks its agents for their presence: a subscription request
/// to those who have not granted it yet (their client asks them once),
/// a probe to the others.
pub fn ask_agents(cx: &mut Context, now: Millis) -> Out {
    let mut out = Vec::new();
    for desk in cx.config.desks.clone() {
        let Ok(jid) = cx.addrs.desk_address(&desk.name) else {
            continue;
        };
        for agent in &desk.agents {
            if !cx.store.presence_allowed(agent.as_str(), jid.as_str())? {
                let mut sub = element(
                    "presence",
                    ns::COMPONENT,
                    &[
                        ("from", jid.as_str()),
                        ("to", agent.as_str()),
                        ("type", "subscribe"),
                    ],
                );
                sub.append_child(Nick(desk.name.clone()).into());
                out.push(sub);
                // No probe with it: Prosody answers a probe from someone
                // not subscribed with `unsubscribed` on the agent's behalf,
                // which cancels the request just sent.
                continue;
            }
            let mut probe = element(
                "presence",
                ns::COMPONENT,
                &[
                    ("from", jid.as_str()),
                    ("to", agent.as_str()),
                    ("type", "probe"),
                ],
            );
            set_attr(&mut probe, "id", cx.local_id(now));
            out.push(probe);
        }
    }
    Ok(out)
}
