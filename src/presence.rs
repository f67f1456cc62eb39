//! Presence through tracked addresses, and the availability rule.
//!
//! Subscriptions flow through tracked addresses the way they do through any
//! gateway; tidemark remembers who lets whom see their presence (durably),
//! and what each contact's resources last said (in memory: after a restart it
//! probes again, since presence may have changed while it was away).
//!
//! Presence travels only along a granted subscription, and is kept only for
//! contacts someone may see: anyone on the federation can send presence to a
//! tracked address, and none of it may reach a user who did not ask for it or
//! grow tidemark's memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use minidom::Element;
use tracing::{debug, info, warn};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::nick::Nick;
use xmpp_parsers::pubsub::event::{Event, Item, Payload};
use xmpp_parsers::pubsub::{ItemId, NodeName};

use crate::context::Context;
use crate::incoming::{Compact, Route, SubscriptionKind};
use crate::metrics::{METRICS, Refusal};
use crate::stanza::{element, ns, set_attr};
use crate::store::{Millis, StoreError, Write};

type Out = Result<Vec<Element>, StoreError>;

/// Resources kept per contact. A person has a few clients; the cap stops one
/// account with thousands of resources from growing tidemark's memory. A
/// resource past the cap is still relayed and the contact still counts as
/// online; it is only missing from probe answers.
pub const MAX_RESOURCES_PER_CONTACT: usize = 16;

/// What tidemark knows of contacts' presence: the last available presence of
/// each resource, and, after a (re)connect, whose presence is not known yet.
#[derive(Default, Debug)]
pub struct PresenceBook {
    online: HashMap<String, Vec<(Box<str>, Compact)>>,
    kept: usize,
    /// Contacts probed after the last (re)connect that have not answered.
    unknown: HashSet<String>,
    /// When a missing probe answer stops meaning "unknown" and means offline.
    unknown_until: Millis,
    /// (watcher, contact) pairs whose watcher was told the contact's name
    /// since tidemark started.
    named: HashSet<(String, String)>,
}

/// Pairs remembered as named; past it the memory is cleared and names are
/// sent again (a name sent twice does no harm).
pub const MAX_NAMED_PAIRS: usize = 65_536;

impl PresenceBook {
    pub fn is_online(&self, contact: &str) -> bool {
        self.online.get(contact).is_some_and(|r| !r.is_empty())
    }

    /// Whether `contact`'s presence is still unknown after a (re)connect.
    pub fn is_unknown(&self, contact: &str) -> bool {
        self.unknown.contains(contact)
    }

    pub fn resources(&self, contact: &str) -> impl Iterator<Item = (&str, &Compact)> {
        self.online
            .get(contact)
            .into_iter()
            .flatten()
            .map(|(r, p)| (r.as_ref(), p))
    }

    /// Resource presences kept, all contacts together.
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// Whether `watcher` has not been told `contact`'s name since tidemark
    /// started; remembers that they have now.
    fn first_time_named(&mut self, watcher: &str, contact: &str) -> bool {
        if self.named.len() >= MAX_NAMED_PAIRS {
            self.named.clear();
        }
        self.named.insert((watcher.to_owned(), contact.to_owned()))
    }

    /// Records a presence; returns true if the contact just came online.
    pub fn update(&mut self, contact: &str, resource: &str, presence: Option<Compact>) -> bool {
        let was_online = self.is_online(contact);
        match presence {
            Some(p) => {
                let resources = self.online.entry(contact.to_owned()).or_default();
                match resources.iter().position(|(r, _)| r.as_ref() == resource) {
                    Some(i) => resources[i].1 = p,
                    None if resources.len() < MAX_RESOURCES_PER_CONTACT => {
                        resources.push((resource.into(), p));
                        self.kept += 1;
                    }
                    None => debug!(contact, "resource cap reached; presence not kept"),
                }
            }
            None => {
                if let Some(r) = self.online.get_mut(contact) {
                    let before = r.len();
                    if resource.is_empty() {
                        // Unavailable from the bare JID: every resource is gone.
                        r.clear();
                    } else {
                        r.retain(|(res, _)| res.as_ref() != resource);
                    }
                    self.kept -= before - r.len();
                    if r.is_empty() {
                        self.online.remove(contact);
                    }
                }
            }
        }
        !was_online && self.is_online(contact)
    }

    /// Drops everything kept for `contact` (nobody may see them any more).
    fn forget(&mut self, contact: &str) {
        if let Some(r) = self.online.remove(contact) {
            self.kept -= r.len();
        }
    }

    /// `contact` answered: their presence is known. True if it was not.
    fn resolve(&mut self, contact: &str) -> bool {
        self.unknown.remove(contact)
    }

    fn restart(&mut self, unknown: HashSet<String>, until: Millis) {
        self.online.clear();
        self.kept = 0;
        self.unknown = unknown;
        self.unknown_until = until;
    }
}

/// What the availability rule says about `watcher` writing to `contact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The contact has not let the writer see their presence.
    NotPermitted,
    /// Permitted, but the contact's presence is not known yet after a
    /// (re)connect: wait for their probe answer.
    Unknown,
    Offline,
    Online,
}

pub fn gate(
    cx: &Context,
    book: &PresenceBook,
    watcher: &str,
    contact: &str,
) -> Result<Gate, StoreError> {
    if !cx.store.presence_allowed(contact, watcher)? {
        return Ok(Gate::NotPermitted);
    }
    Ok(if book.is_online(contact) {
        Gate::Online
    } else if book.is_unknown(contact) {
        Gate::Unknown
    } else {
        Gate::Offline
    })
}

pub fn on_subscription(
    cx: &mut Context,
    route: &Route,
    kind: SubscriptionKind,
    id: Option<&str>,
) -> Out {
    let from = route.from.to_bare();
    let to = route.to.to_bare();
    let grant = |contact: &BareJid, watcher: &BareJid, allowed| Write::PresenceAllowed {
        contact: contact.to_string(),
        watcher: watcher.to_string(),
        allowed,
    };
    match kind {
        // `from` lets `to` see their presence, or stops.
        SubscriptionKind::Subscribed => cx.write(grant(&from, &to, true)),
        SubscriptionKind::Unsubscribed => cx.write(grant(&from, &to, false)),
        // `from` no longer wants to see `to`.
        SubscriptionKind::Unsubscribe => cx.write(grant(&to, &from, false)),
        SubscriptionKind::Subscribe => {}
    }
    info!(?kind, "subscription relayed");
    // RFC 6121 §3: subscription stanzas go between bare JIDs. They come from
    // people not yet authorised, so only what the protocol needs goes on: a
    // status or nickname in a request is content from a stranger ("Your
    // Bank"). A request does carry a XEP-0172 nickname (§4.2) so that the
    // client shows a name rather than the escaped tracked address: the
    // local part of the sender's real JID, which no one can choose for
    // someone else.
    let tracked = route.tracked_from.to_bare();
    let mut out = element(
        "presence",
        ns::COMPONENT,
        &[
            ("from", tracked.as_str()),
            ("to", to.as_str()),
            ("type", kind.as_str()),
        ],
    );
    if let Some(id) = id {
        set_attr(&mut out, "id", id);
    }
    if kind == SubscriptionKind::Subscribe {
        out.append_child(Nick(display_name(&route.from)).into());
    }
    Ok(vec![out])
}

/// `presence` with a XEP-0172 nickname, the contact's own if they gave one:
/// clients that read it (Dino, Gajim) then show a name for the tracked
/// address instead of its escaped JID.
fn with_nick(mut presence: Element, contact: &Jid) -> Element {
    if !presence.has_child("nick", ns::NICK) {
        presence.append_child(Nick(display_name(contact)).into());
    }
    presence
}

/// The contact's name as a XEP-0172 PEP notification from their tracked
/// address: clients that take a contact's name only from PEP (Gajim,
/// Conversations) never get one otherwise, since the contact's server sends
/// PEP events to the contact's own subscribers, not to their tracked address.
fn name_event(relayed: &Element, route: &Route, id: String) -> Element {
    let nick = relayed
        .get_child("nick", ns::NICK)
        .map(Element::text)
        .unwrap_or_else(|| display_name(&route.from));
    name_message(nick, route.tracked_from.to_bare(), route.to.clone(), id)
}

/// `nick` as a XEP-0172 PEP notification from `from` (a tracked address,
/// or a desk conversation's: `crate::desk`).
pub fn name_message(nick: String, from: BareJid, to: Jid, id: String) -> Element {
    let event = Event {
        payload: Payload::Items {
            node: NodeName(ns::NICK.to_owned()),
            published: vec![Item {
                id: Some(ItemId("current".to_owned())),
                publisher: None,
                payload: Some(Nick(nick).into()),
            }],
            retracted: vec![],
        },
    };
    let mut message = Message::new(Some(to));
    message.type_ = MessageType::Headline;
    message.from = Some(from.into());
    message.id = Some(Id(id));
    message.payloads.push(event.into());
    message.into()
}

/// The name a contact goes by when they gave none: their JID's local part
/// (`bob` for `bob@example.org`), else their domain.
pub fn display_name(jid: &Jid) -> String {
    jid.node()
        .map_or_else(|| jid.domain().to_string(), |n| n.to_string())
}

/// What a presence from a contact led to: the stanzas to send, and whether
/// the contact's presence was unknown until now (so messages that waited for
/// it can go on).
pub struct Answered {
    pub out: Vec<Element>,
    pub now_known: bool,
}

/// Presence from a contact to a watcher's tracked address: kept if someone
/// may see the contact, relayed only if this watcher may.
pub fn on_presence(
    cx: &mut Context,
    book: &mut PresenceBook,
    route: &Route,
    presence: &Element,
    compact: Option<Compact>,
    now: Millis,
) -> Result<Answered, StoreError> {
    let contact = route.from.to_bare().to_string();
    let watcher = route.to.to_bare();
    let resource = route.from.resource().map_or("", |r| r.as_str());
    let was_unknown = book.resolve(&contact);
    let mut out = Vec::new();
    let mut came_online = false;
    if cx.store.has_watchers(&contact)? {
        came_online = book.update(&contact, resource, compact.clone());
    } else {
        book.forget(&contact);
    }
    METRICS.set_tracked_presences(book.kept());
    if cx.store.presence_allowed(&contact, watcher.as_str())? {
        let from = route.tracked_from.to_string();
        match compact {
            // The watcher is authorised: the presence goes on whole, so that
            // entity caps, avatar hashes and the like still reach their
            // client. Only what is kept for probe answers is compact.
            Some(_) => {
                let relayed = with_nick(cx.relay(presence, route), &route.from);
                let name = book
                    .first_time_named(watcher.as_str(), &contact)
                    .then(|| name_event(&relayed, route, cx.local_id(now)));
                // The name first: Gajim 1.7 redraws a contact list row on
                // presence, so a name that comes after the presence shows
                // only at the contact's next presence change.
                out.extend(name);
                out.push(relayed);
            }
            None => out.push(element(
                "presence",
                ns::COMPONENT,
                &[
                    ("from", from.as_str()),
                    ("to", route.to.as_str()),
                    ("type", "unavailable"),
                ],
            )),
        }
    } else {
        METRICS.refused(Refusal::Gate);
        debug!("presence from a contact who has not granted the watcher dropped");
    }
    if compact.is_some() {
        // What this client can say (receipts, read markers), asked once per
        // kind of client.
        let service = cx.addrs.domain().to_string();
        out.extend(cx.clients.on_presence(&route.from, presence, &service, now));
    }
    if came_online {
        out.extend(deliver_queued(cx, &contact)?);
    }
    Ok(Answered {
        out,
        now_known: was_unknown,
    })
}

/// A presence error from a contact, typically the answer to a probe: their
/// presence is known now (offline). True if it was not known before, so
/// what waited for it goes on.
pub fn on_presence_error(book: &mut PresenceBook, route: &Route) -> bool {
    let contact = route.from.to_bare().to_string();
    if !book.resolve(&contact) {
        return false;
    }
    debug!("probe answered with an error: offline");
    true
}

fn deliver_queued(cx: &mut Context, contact: &str) -> Out {
    let held = cx.store.queued(contact)?;
    if held.is_empty() {
        return Ok(vec![]);
    }
    cx.write(Write::Dequeue {
        recipient: contact.to_owned(),
        seqs: held.iter().map(|q| q.seq).collect(),
    });
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
        if let Some(mut record) = cx.store.message(&q.conv, q.seq)? {
            record.queued = false;
            cx.write(Write::Message {
                conv: q.conv,
                seq: q.seq,
                record,
            });
        }
        out.push(stanza);
    }
    if !out.is_empty() {
        info!(count = out.len(), "delivered held messages");
    }
    Ok(out)
}

/// A watcher's server asks what a contact's presence is (the watcher came
/// online): answer from what tidemark knows, if the contact allows it, and
/// tell the watcher's clients the contact's name. A client that comes
/// online after the contact's presence was first relayed (Gajim started in
/// the morning, tidemark running since the day before) would otherwise never
/// get a name, and shows the escaped address (`bob\40localhost`). The server
/// probes once per login of the watcher, so this costs one headline each.
pub fn on_probe(cx: &mut Context, book: &PresenceBook, route: &Route, now: Millis) -> Out {
    let watcher = route.from.to_bare();
    let contact = route.to.to_bare();
    if !cx
        .store
        .presence_allowed(contact.as_str(), watcher.as_str())?
    {
        debug!("probe from a watcher without permission ignored");
        return Ok(vec![]);
    }
    let tracked = route.tracked_to.as_str();
    let mut out: Vec<Element> = book
        .resources(contact.as_str())
        .map(|(resource, p)| {
            let from = if resource.is_empty() {
                tracked.to_owned()
            } else {
                format!("{tracked}/{resource}")
            };
            with_nick(p.to_element(&from, watcher.as_str()), &route.to)
        })
        .collect();
    let nick = out
        .first()
        .and_then(|p| p.get_child("nick", ns::NICK))
        .map(Element::text)
        .unwrap_or_else(|| display_name(&route.to));
    if out.is_empty() {
        out.push(element(
            "presence",
            ns::COMPONENT,
            &[
                ("from", tracked),
                ("to", watcher.as_str()),
                ("type", "unavailable"),
            ],
        ));
    }
    // The name before the presences, as in `on_presence`.
    let id = cx.local_id(now);
    out.insert(
        0,
        name_message(nick, route.tracked_to.to_bare(), watcher.into(), id),
    );
    Ok(out)
}

/// After a (re)connect: forget presence, probe every contact someone may
/// watch. One probe per contact is enough: presence is the same for every
/// watcher, and the server answers any watcher it knows. Until a contact
/// answers (or `presence.probe_wait` passes) their presence is unknown, and
/// messages to them wait instead of failing as if they were offline.
pub fn on_connected(cx: &mut Context, book: &mut PresenceBook, now: Millis) -> Out {
    let mut probed: BTreeMap<String, String> = BTreeMap::new();
    let ours = format!("@{}", cx.addrs.domain());
    for (contact, watcher) in cx.store.presence_grants()? {
        // A desk's grants (issue 11): its agents' presence is asked for
        // by the desk itself, and a desk's own needs no probe.
        if contact.ends_with(&ours) || watcher.ends_with(&ours) {
            continue;
        }
        probed.entry(contact).or_insert(watcher);
    }
    let mut out = Vec::with_capacity(probed.len());
    let mut unknown = HashSet::with_capacity(probed.len());
    for (contact, watcher) in probed {
        let tracked = xmpp_parsers::jid::BareJid::new(&watcher)
            .map_err(|e| e.to_string())
            .and_then(|w| cx.addrs.tracked(&w).map_err(|e| e.to_string()));
        let from = match tracked {
            Ok(t) => t.to_string(),
            Err(e) => {
                warn!(%contact, %watcher, error = %e, "cannot probe for this watcher");
                continue;
            }
        };
        let id = cx.local_id(now);
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
        unknown.insert(contact);
    }
    let wait = u64::try_from(cx.config.presence.probe_wait.as_millis()).unwrap_or(u64::MAX);
    book.restart(unknown, now.saturating_add(wait));
    METRICS.set_tracked_presences(0);
    if !out.is_empty() {
        info!(contacts = out.len(), "probing presence");
    }
    Ok(out)
}

/// Once a second: when the probe wait is over, contacts that never answered
/// are offline. True once it is over: then every message still waiting is
/// handled, including those whose contact answered while a store error kept
/// them from being handled.
pub fn on_tick(book: &mut PresenceBook, now: Millis) -> bool {
    if now < book.unknown_until {
        return false;
    }
    let silent = book.unknown.len();
    book.unknown.clear();
    if silent > 0 {
        info!(
            contacts = silent,
            "probe wait over; unanswered contacts are offline"
        );
    }
    true
}
