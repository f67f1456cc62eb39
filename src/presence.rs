//! Presence through tracked addresses, and the availability rule.
//!
//! Subscriptions flow through tracked addresses the way they do through any
//! gateway; tidemark remembers who lets whom see their presence (durably),
//! and what each contact's resources last said (in memory: after a restart it
//! probes again, since presence may have changed while it was away).

use std::collections::{BTreeMap, HashMap};

use minidom::Element;
use tracing::{debug, info};

use crate::incoming::{Route, SubscriptionKind};
use crate::service::Tidemark;
use crate::stanza::{element, ns, set_attr};
use crate::store::StoreError;

type Out = Result<Vec<Element>, StoreError>;

/// The last available presence of each resource of each contact.
#[derive(Default, Debug)]
pub struct PresenceBook {
    online: HashMap<String, BTreeMap<String, Element>>,
}

impl PresenceBook {
    pub fn is_online(&self, contact: &str) -> bool {
        self.online.get(contact).is_some_and(|r| !r.is_empty())
    }

    pub fn resources(&self, contact: &str) -> impl Iterator<Item = (&String, &Element)> {
        self.online.get(contact).into_iter().flatten()
    }

    /// Records a presence; returns true if the contact just came online.
    fn update(&mut self, contact: &str, resource: &str, presence: Option<Element>) -> bool {
        let was_online = self.is_online(contact);
        match presence {
            Some(p) => {
                self.online
                    .entry(contact.to_owned())
                    .or_default()
                    .insert(resource.to_owned(), p);
            }
            None => {
                if let Some(r) = self.online.get_mut(contact) {
                    if resource.is_empty() {
                        // Unavailable from the bare JID: every resource is gone.
                        r.clear();
                    } else {
                        r.remove(resource);
                    }
                    if r.is_empty() {
                        self.online.remove(contact);
                    }
                }
            }
        }
        !was_online && self.is_online(contact)
    }

    fn clear(&mut self) {
        self.online.clear();
    }
}

/// What the availability rule says about `watcher` writing to `contact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The contact has not let the writer see their presence.
    NotPermitted,
    Offline,
    Online,
}

pub fn gate(tm: &Tidemark, watcher: &str, contact: &str) -> Result<Gate, StoreError> {
    if !tm.store.presence_allowed(contact, watcher)? {
        return Ok(Gate::NotPermitted);
    }
    Ok(if tm.presence.is_online(contact) {
        Gate::Online
    } else {
        Gate::Offline
    })
}

pub fn on_subscription(
    tm: &mut Tidemark,
    stanza: &Element,
    route: &Route,
    kind: SubscriptionKind,
) -> Out {
    let from = route.from.to_bare();
    let to = route.to.to_bare();
    match kind {
        // `from` lets `to` see their presence, or stops.
        SubscriptionKind::Subscribed => {
            tm.store
                .set_presence_allowed(from.as_str(), to.as_str(), true)?
        }
        SubscriptionKind::Unsubscribed => {
            tm.store
                .set_presence_allowed(from.as_str(), to.as_str(), false)?
        }
        // `from` no longer wants to see `to`.
        SubscriptionKind::Unsubscribe => {
            tm.store
                .set_presence_allowed(to.as_str(), from.as_str(), false)?
        }
        SubscriptionKind::Subscribe => {}
    }
    info!(?kind, "subscription relayed");
    // RFC 6121 §3: subscription stanzas go between bare JIDs.
    let mut out = stanza.clone();
    set_attr(&mut out, "from", tm.tracked(&route.from));
    set_attr(&mut out, "to", to.to_string());
    Ok(vec![out])
}

pub fn on_presence(tm: &mut Tidemark, stanza: &Element, route: &Route, available: bool) -> Out {
    let contact = route.from.to_bare().to_string();
    let resource = route
        .from
        .resource()
        .map(|r| r.as_str().to_owned())
        .unwrap_or_default();
    let came_online = tm
        .presence
        .update(&contact, &resource, available.then(|| stanza.clone()));
    let mut out = vec![tm.relay(stanza, route)];
    if came_online {
        out.extend(deliver_queued(tm, &contact)?);
    }
    Ok(out)
}

fn deliver_queued(tm: &mut Tidemark, contact: &str) -> Out {
    let held = tm.store.take_queue(contact)?;
    let mut out = Vec::with_capacity(held.len());
    for q in held {
        let stanza: Element = match std::str::from_utf8(&q.stanza)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(el) => el,
            None => {
                tracing::error!(seq = q.seq, "queued stanza is corrupt; dropped");
                continue;
            }
        };
        if let Some(mut record) = tm.store.message(&q.conv, q.seq)? {
            record.queued = false;
            tm.store.put_message(&q.conv, q.seq, &record)?;
        }
        out.push(stanza);
    }
    if !out.is_empty() {
        info!(count = out.len(), "delivered held messages");
    }
    Ok(out)
}

/// A watcher's server asks what a contact's presence is (the watcher came
/// online): answer from what tidemark knows, if the contact allows it.
pub fn on_probe(tm: &mut Tidemark, route: &Route) -> Out {
    let watcher = route.from.to_bare();
    let contact = route.to.to_bare();
    if !tm
        .store
        .presence_allowed(contact.as_str(), watcher.as_str())?
    {
        debug!("probe from a watcher without permission ignored");
        return Ok(vec![]);
    }
    let tracked = tm.tracked(&route.to);
    let mut out: Vec<Element> = tm
        .presence
        .resources(contact.as_str())
        .map(|(resource, p)| {
            let mut p = p.clone();
            let from = if resource.is_empty() {
                tracked.clone()
            } else {
                format!("{tracked}/{resource}")
            };
            set_attr(&mut p, "from", from);
            set_attr(&mut p, "to", watcher.to_string());
            p
        })
        .collect();
    if out.is_empty() {
        out.push(element(
            "presence",
            ns::COMPONENT,
            &[
                ("from", tracked.as_str()),
                ("to", watcher.as_str()),
                ("type", "unavailable"),
            ],
        ));
    }
    Ok(out)
}

/// After a (re)connect: forget presence, probe every contact someone may
/// watch. One probe per contact is enough: presence is the same for every
/// watcher, and the server answers any watcher it knows.
pub fn on_connected(tm: &mut Tidemark) -> Out {
    tm.presence.clear();
    let mut probed: BTreeMap<String, String> = BTreeMap::new();
    for (contact, watcher) in tm.store.presence_grants()? {
        probed.entry(contact).or_insert(watcher);
    }
    let mut out = Vec::with_capacity(probed.len());
    for (contact, watcher) in probed {
        let Ok(watcher) = xmpp_parsers::jid::BareJid::new(&watcher) else {
            continue;
        };
        let from = tm.addrs.tracked(&watcher).to_string();
        let id = tm.local_id();
        let mut probe = element(
            "presence",
            ns::COMPONENT,
            &[
                ("from", from.as_str()),
                ("to", contact.as_str()),
                ("type", "probe"),
            ],
        );
        set_attr(&mut probe, "id", id);
        out.push(probe);
    }
    if !out.is_empty() {
        info!(contacts = out.len(), "probing presence");
    }
    Ok(out)
}
