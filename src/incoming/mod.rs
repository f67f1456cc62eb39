//! Every stanza that arrives is classified once, here, into what it means to
//! tidemark. The router then matches on the kind; nothing further down looks
//! at the stanza again: what a handler needs (ids, the error to answer with,
//! the element to relay) is carried in the value. Malformed input is a kind
//! too, carrying the error reply the protocol wants (if any).
//!
//! Stanzas to rooms are read in [`room`], queries to the service in
//! [`service`], and what is kept of a contact's presence in [`compact`].

mod compact;
mod room;
mod service;

use std::borrow::Cow;

use minidom::Element;
use xmpp_parsers::displayed_markers::Displayed;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::receipts::Received;

use crate::address::{Addresses, DeskTarget};
use crate::stanza::{
    DefinedCondition, ErrorType, Head, StanzaError, element, error_reply, error_reply_to,
    jid_value, ns, read_error, set_attr, stanza_error,
};

pub use compact::Compact;
pub use room::{GroupMarker, GroupMessage, RoomRequest};
pub use service::{
    AssignTo, CommandRequest, DeskAction, DeskRequest, INBOX_COMMAND, InboxRequest,
    MARK_READ_COMMAND, READ_RECEIPTS, READ_RECEIPTS_FIELD, STATUS_COMMAND, STATUS_FILTER_FIELD,
    ServiceRequest,
};

/// Who sent a stanza and how to answer it (RFC 6120 §8.3.1): what a handler
/// needs to send an error or a result back without the stanza itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// `message`, `presence` or `iq`.
    pub name: String,
    /// The `from` attribute, as written.
    pub from: String,
    /// The `id` attribute, as written.
    pub id: Option<String>,
}

impl Origin {
    fn of(stanza: &Element, head: &Head, from: &str) -> Self {
        Origin {
            name: stanza.name().to_owned(),
            from: from.to_owned(),
            id: head.id.map(str::to_owned),
        }
    }

    /// An error reply from `own`.
    pub fn error(
        &self,
        own: &str,
        type_: ErrorType,
        condition: DefinedCondition,
        text: &str,
    ) -> Element {
        self.reply_with_error(own, stanza_error(type_, condition, text))
    }

    /// [`Origin::error`] for an error built elsewhere.
    pub fn reply_with_error(&self, own: &str, error: StanzaError) -> Element {
        error_reply_to(&self.name, Some(&self.from), self.id.as_deref(), own, error)
    }

    /// The result of an iq, from `own`, with its payload if any.
    pub fn result(&self, own: &str, payload: Option<Element>) -> Element {
        let mut r = element("iq", ns::COMPONENT, &[("type", "result"), ("from", own)]);
        set_attr(&mut r, "to", self.from.as_str());
        if let Some(id) = &self.id {
            set_attr(&mut r, "id", id.as_str());
        }
        if let Some(p) = payload {
            r.append_child(p);
        }
        r
    }
}

/// A stanza between a real user and a tracked address: `from` is the real
/// sender, `to` the real contact the tracked address stands for (resources
/// kept on both).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub from: Jid,
    pub to: Jid,
    /// The sender's tracked address (resource kept), which anything relayed
    /// comes from. Computed once here, so that a sender tidemark cannot
    /// track is refused before any handler runs.
    pub tracked_from: Jid,
    /// The tracked address the stanza was sent to.
    pub tracked_to: BareJid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// XEP-0184 `<received/>`.
    Receipt,
    /// The older XEP-0333 `<received/>` marker; means the same.
    ReceivedMarker,
    /// XEP-0333 `<displayed/>`.
    Displayed,
    /// The older XEP-0333 `<acknowledged/>`; implies displayed.
    Acknowledged,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chat<'a> {
    pub route: Route,
    pub origin: Origin,
    /// The message as it came, to relay: borrowed from the stanza in hand,
    /// owned only by a message that waits ([`Chat::into_owned`]), so that
    /// relaying copies it once.
    pub message: Cow<'a, Element>,
    /// The sender's id, if not empty.
    pub id: Option<String>,
    pub body_bytes: usize,
    pub has_body: bool,
    pub has_attachment: bool,
    pub wants_receipt: bool,
    pub wants_markers: bool,
}

impl Chat<'_> {
    /// The same chat, holding its own copy of the message.
    pub fn into_owned(self) -> Chat<'static> {
        Chat {
            message: Cow::Owned(self.message.into_owned()),
            route: self.route,
            origin: self.origin,
            id: self.id,
            body_bytes: self.body_bytes,
            has_body: self.has_body,
            has_attachment: self.has_attachment,
            wants_receipt: self.wants_receipt,
            wants_markers: self.wants_markers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl SubscriptionKind {
    /// The presence `type` it came as.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Subscribe => "subscribe",
            SubscriptionKind::Subscribed => "subscribed",
            SubscriptionKind::Unsubscribe => "unsubscribe",
            SubscriptionKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// A message error from the contact's side.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounce {
    pub route: Route,
    /// The id of the message it is about.
    pub id: Option<String>,
    /// The `<error/>` child as received, relayed as is.
    pub error: Option<Element>,
    /// Its defined condition and text (`undefined-condition` for an error
    /// that is no valid RFC 6120 error).
    pub condition: String,
    pub text: String,
}

/// What a stanza means; the elements it carries are borrowed from the
/// stanza, so that only what is relayed is copied, once.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<'a> {
    Room {
        from: Jid,
        origin: Origin,
        room: BareJid,
        request: RoomRequest,
    },
    ServiceIq {
        from: Jid,
        origin: Origin,
        request: ServiceRequest,
    },
    /// An IQ set addressed to a tracked address: refused with `reply`.
    ContactIq {
        reply: Element,
    },
    /// An IQ get addressed to a tracked address, for the contact to answer.
    ContactQuery {
        route: Route,
        origin: Origin,
        iq: &'a Element,
    },
    /// A result or error from a contact to a tracked address: perhaps the
    /// answer to a query relayed to them.
    ContactAnswer {
        route: Route,
        iq: &'a Element,
    },
    /// A result or error to the service: the answer to one of its own
    /// requests (keepalive pings, questions to clients), or nothing.
    IqResponse {
        from: Jid,
        iq: &'a Element,
    },
    /// A message with content for a contact.
    Chat(Chat<'a>),
    /// Receipts and markers; `id` names the message acknowledged.
    Ack {
        route: Route,
        kind: AckKind,
        id: String,
    },
    /// A message without content or acks (chat states and the like), relayed
    /// untracked.
    Passthrough {
        route: Route,
        message: &'a Element,
    },
    /// A message error coming back from the contact's side.
    Bounce(Bounce),
    Subscription {
        route: Route,
        kind: SubscriptionKind,
        id: Option<String>,
    },
    /// Available or unavailable presence from a contact to a watcher's
    /// tracked address. `presence` is the stanza, to relay; `available` what
    /// is kept of it, `None` for unavailable.
    Presence {
        route: Route,
        presence: &'a Element,
        available: Option<Compact>,
    },
    Probe(Route),
    /// A presence error from a contact: the answer to a probe when the
    /// contact's server cannot say (unknown user, server down).
    PresenceError(Route),
    /// Unavailable presence directed to the service: the session `from`
    /// went away (its server tells whoever it sent directed presence).
    SessionGone {
        from: Jid,
    },
    /// Issue 11: a stanza to a desk's address or one of its
    /// conversations', classified as it would be elsewhere.
    Desk {
        target: DeskTarget,
        inner: Box<Incoming<'a>>,
    },
    Ignored(&'static str),
    Invalid {
        reason: String,
        reply: Option<Element>,
    },
}

fn invalid(
    stanza: &Element,
    own: &str,
    reason: String,
    condition: DefinedCondition,
) -> Incoming<'static> {
    // RFC 6120 §8.3.1: never answer an error with an error; presence errors
    // are not worth a reply either.
    let reply = match (stanza.name(), stanza.attr("type")) {
        (_, Some("error")) | ("presence", _) => None,
        ("iq", Some("result")) => None,
        _ if stanza.attr("from").is_some() => Some(error_reply(
            stanza,
            own,
            ErrorType::Modify,
            condition,
            &reason,
        )),
        _ => None,
    };
    Incoming::Invalid { reason, reply }
}

/// A sender without a tracked address: told so, since they would otherwise
/// wait forever (a subscription request too, the way a server answers one it
/// cannot route).
fn untrackable(stanza: &Element, own: &str, reason: String) -> Incoming<'static> {
    if stanza.name() == "presence" && stanza.attr("type") == Some("subscribe") {
        return Incoming::Invalid {
            reply: Some(error_reply(
                stanza,
                own,
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                &reason,
            )),
            reason,
        };
    }
    invalid(stanza, own, reason, DefinedCondition::JidMalformed)
}

/// A XEP-0356 `<privilege/>` advertisement, in either namespace version.
fn is_privilege_offer(message: &Element) -> bool {
    message.has_child("privilege", ns::PRIVILEGE_1)
        || message.has_child("privilege", ns::PRIVILEGE_2)
}

pub fn classify<'a>(stanza: &'a Element, addrs: &Addresses) -> Incoming<'a> {
    classify_head(stanza, &Head::of(stanza), addrs)
}

/// [`classify`] with the stanza's [`Head`] already read.
pub fn classify_head<'a>(stanza: &'a Element, head: &Head, addrs: &Addresses) -> Incoming<'a> {
    // `to` is parsed once, for both uses: it is every stanza's.
    let to = jid_value("to", head.to);
    // Errors come from the address the stanza was sent to, or from the
    // service when that address is not a valid JID.
    // `to` as written, not as stringprep normalised it.
    let own = match (&to, head.to) {
        (Some(Ok(_)), Some(written)) => written,
        _ => addrs.domain().as_str(),
    }
    .to_owned();
    let from = match jid_value("from", head.from) {
        Some(Ok(j)) => j,
        Some(Err(e)) => return invalid(stanza, &own, e, DefinedCondition::JidMalformed),
        None => {
            return Incoming::Invalid {
                reason: "stanza without from".into(),
                reply: None,
            };
        }
    };
    let to = match to {
        Some(Ok(j)) => j,
        Some(Err(e)) => return invalid(stanza, &own, e, DefinedCondition::JidMalformed),
        None => return Incoming::Ignored("stanza without to"),
    };
    if addrs.is_ours(&from) {
        // Something of ours came back (a loop through the server).
        return Incoming::Ignored("stanza from this service");
    }
    let type_ = head.type_;

    let origin = Origin::of(stanza, head, head.from.unwrap_or_default());
    if addrs.is_service(&to) {
        return match stanza.name() {
            "iq" => service::classify_service_iq(stanza, from, origin, &own),
            "message" if type_ == Some("error") => Incoming::Ignored("error to the service"),
            // XEP-0356: a server with mod_privilege (ejabberd) tells the
            // component what it may do, in a message from the server's
            // own domain, as it connects. tidemark uses no privileges;
            // answering the offer with an error would be noise in the
            // server's log, so it is taken quietly. A user cannot send
            // it: their JIDs have a node.
            "message" if from.node().is_none() && is_privilege_offer(stanza) => {
                Incoming::Ignored("XEP-0356 privileges offered by the server (none used)")
            }
            "message" => invalid(
                stanza,
                &own,
                "this service takes no messages; write to a contact's tracked address (user\\40domain@this-service)".into(),
                DefinedCondition::ServiceUnavailable,
            ),
            _ if type_ == Some("unavailable") => Incoming::SessionGone { from },
            _ => Incoming::Ignored("presence to the service"),
        };
    }

    // Issue 11: a desk's addresses look like rooms (its own) or like
    // nothing else (its conversations'), so they are read first.
    if let Some(target) = addrs.desk_of(&to) {
        return classify_desk(stanza, head, target, from, to, origin, own);
    }

    if let Some((room, nick)) = addrs.room_of(&to) {
        let request = room::classify_room(stanza, &room, nick, &own);
        return Incoming::Room {
            from,
            origin,
            room,
            request,
        };
    }

    let contact = match addrs.contact_of(&to) {
        Ok(c) => c,
        Err(e) => return invalid(stanza, &own, e.to_string(), DefinedCondition::ItemNotFound),
    };
    // XEP-0106 makes a node longer than the JID it escapes: a sender whose
    // tracked address would be over RFC 7622's limits gets a clear error,
    // and nothing further down ever has an address it cannot relay from.
    let tracked_from = match addrs.tracked_full(&from) {
        Ok(t) => t,
        Err(e) => return untrackable(stanza, &own, e.to_string()),
    };
    let route = Route {
        tracked_to: to.to_bare(),
        from,
        to: contact,
        tracked_from,
    };

    match stanza.name() {
        "iq" => match type_ {
            Some("result") | Some("error") => Incoming::ContactAnswer { route, iq: stanza },
            Some("get") => Incoming::ContactQuery {
                route,
                origin,
                iq: stanza,
            },
            _ => Incoming::ContactIq {
                reply: origin.error(
                    &own,
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "tracked addresses relay only queries (iq get) to the contact, never changes",
                ),
            },
        },
        "message" => classify_message(stanza, head, route, origin, &own),
        "presence" => classify_presence(stanza, head, route),
        other => Incoming::Invalid {
            reason: format!("unexpected top-level element <{other}/>"),
            reply: None,
        },
    }
}

/// A stanza to a desk's address or one of its conversations': IQ requests
/// are read as the service's (commands, disco, ping on a conversation's
/// address), the rest as to a tracked address, with a route whose `to` is
/// the desk's address or the customer and whose `tracked_from` is the
/// address the stanza was sent to (the desk module addresses what it sends
/// itself).
fn classify_desk<'a>(
    stanza: &'a Element,
    head: &Head,
    target: DeskTarget,
    from: Jid,
    to: Jid,
    origin: Origin,
    own: String,
) -> Incoming<'a> {
    // A join of a room of the desk's name: the name is taken, and a client
    // waiting for its join to be answered would wait forever.
    if stanza.name() == "presence" && head.type_.is_none() && stanza.has_child("x", ns::MUC) {
        let reason = format!(
            "{} is a team desk, not a room: write to it as to a person",
            to.to_bare()
        );
        return Incoming::Invalid {
            reply: Some(error_reply(
                stanza,
                &own,
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                &reason,
            )),
            reason,
        };
    }
    let inner = match stanza.name() {
        "iq" => service::classify_service_iq(stanza, from, origin, &own),
        "message" | "presence" => {
            let real_to = match &target.customer {
                Some(c) => Jid::from(c.clone()),
                None => Jid::from(to.to_bare()),
            };
            let route = Route {
                tracked_to: to.to_bare(),
                from,
                to: real_to,
                tracked_from: to,
            };
            if stanza.name() == "message" {
                classify_message(stanza, head, route, origin, &own)
            } else {
                classify_presence(stanza, head, route)
            }
        }
        other => {
            return Incoming::Invalid {
                reason: format!("unexpected top-level element <{other}/>"),
                reply: None,
            };
        }
    };
    match inner {
        // Nothing for the desk in these.
        Incoming::Invalid { .. } | Incoming::Ignored(_) => inner,
        inner => Incoming::Desk {
            target,
            inner: Box::new(inner),
        },
    }
}

/// A receipt or marker payload: its kind and the id of the message it names
/// (None when it names none).
fn ack_payload(child: &Element) -> Option<(AckKind, Option<String>)> {
    // Names first, then namespaces by comparison: `Element::ns` copies the
    // namespace into a new String, for every child of every message.
    let (kind, id) = match child.name() {
        "received" if child.has_ns(ns::RECEIPTS) => (
            AckKind::Receipt,
            plain_id(child).or_else(|| Received::try_from(child.clone()).ok().map(|r| r.id)),
        ),
        "displayed" if child.has_ns(ns::CHAT_MARKERS) => (
            AckKind::Displayed,
            plain_id(child).or_else(|| Displayed::try_from(child.clone()).ok().map(|d| d.id.0)),
        ),
        // Read by hand: xmpp-parsers 0.23 has no legacy <received/> or
        // <acknowledged/> marker.
        "received" if child.has_ns(ns::CHAT_MARKERS) => {
            (AckKind::ReceivedMarker, child.attr("id").map(str::to_owned))
        }
        "acknowledged" if child.has_ns(ns::CHAT_MARKERS) => {
            (AckKind::Acknowledged, child.attr("id").map(str::to_owned))
        }
        _ => return None,
    };
    Some((kind, id.filter(|id| !id.is_empty())))
}

/// The id of a receipt or marker that has nothing but its `id` attribute:
/// what xmpp-parsers' `Received` and `Displayed` read from it, without
/// cloning the element and running xso over it (every ack's cost). Anything
/// else (other attributes, children, text) is left to the typed parse.
fn plain_id(child: &Element) -> Option<String> {
    let attrs = child.attrs();
    if attrs.len() != 1 || child.nodes().next().is_some() {
        return None;
    }
    attrs.get(&rxml::Namespace::NONE, "id").cloned()
}

fn classify_message<'a>(
    msg: &'a Element,
    head: &Head,
    route: Route,
    origin: Origin,
    own: &str,
) -> Incoming<'a> {
    match head.type_ {
        Some("error") => {
            let (condition, text) = read_error(msg);
            return Incoming::Bounce(Bounce {
                route,
                id: origin.id,
                error: msg.children().find(|c| c.name() == "error").cloned(),
                condition,
                text,
            });
        }
        Some("groupchat") => {
            return invalid(
                msg,
                own,
                "groupchat messages go to a room, not to a contact".into(),
                DefinedCondition::BadRequest,
            );
        }
        None | Some("chat") | Some("normal") | Some("headline") => {}
        Some(other) => {
            return invalid(
                msg,
                own,
                format!("unknown message type {other:?}"),
                DefinedCondition::BadRequest,
            );
        }
    }
    let bodies: Vec<&Element> = msg.children().filter(|c| c.name() == "body").collect();
    let has_body = !bodies.is_empty();
    if !has_body {
        for child in msg.children() {
            let Some((kind, id)) = ack_payload(child) else {
                continue;
            };
            return match id {
                Some(id) => Incoming::Ack { route, kind, id },
                None => invalid(
                    msg,
                    own,
                    format!(
                        "<{}/> without the id of the message it acknowledges",
                        child.name()
                    ),
                    DefinedCondition::BadRequest,
                ),
            };
        }
    }
    let has_attachment = msg.has_child("x", ns::OOB);
    if !has_body && !has_attachment {
        return Incoming::Passthrough {
            route,
            message: msg,
        };
    }
    Incoming::Chat(Chat {
        route,
        origin,
        message: Cow::Borrowed(msg),
        id: head.id.filter(|s| !s.is_empty()).map(str::to_owned),
        body_bytes: bodies.iter().map(|b| b.text().len()).sum(),
        has_body,
        has_attachment,
        wants_receipt: msg.has_child("request", ns::RECEIPTS),
        wants_markers: msg.has_child("markable", ns::CHAT_MARKERS),
    })
}

fn classify_presence<'a>(p: &'a Element, head: &Head, route: Route) -> Incoming<'a> {
    let subscription = |route, kind| Incoming::Subscription {
        route,
        kind,
        id: head.id.map(str::to_owned),
    };
    match head.type_ {
        None => Incoming::Presence {
            route,
            presence: p,
            available: Some(Compact::of(p)),
        },
        Some("unavailable") => Incoming::Presence {
            route,
            presence: p,
            available: None,
        },
        Some("subscribe") => subscription(route, SubscriptionKind::Subscribe),
        Some("subscribed") => subscription(route, SubscriptionKind::Subscribed),
        Some("unsubscribe") => subscription(route, SubscriptionKind::Unsubscribe),
        Some("unsubscribed") => subscription(route, SubscriptionKind::Unsubscribed),
        Some("probe") => Incoming::Probe(route),
        Some("error") => Incoming::PresenceError(route),
        Some(_) => Incoming::Ignored("presence of unknown type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Addresses {
        Addresses::new(BareJid::new("chat.localhost").unwrap())
    }

    fn parse(xml: &str) -> Element {
        xml.replace("<message ", "<message xmlns='jabber:component:accept' ")
            .replace("<iq ", "<iq xmlns='jabber:component:accept' ")
            .replace("<presence ", "<presence xmlns='jabber:component:accept' ")
            .parse()
            .unwrap()
    }

    #[test]
    fn chat_to_a_tracked_address() {
        let m = parse(
            "<message from='alice@localhost/a' to='bob\\40localhost@chat.localhost' id='m1' type='chat'>\
             <body>hi</body><request xmlns='urn:xmpp:receipts'/></message>",
        );
        let Incoming::Chat(chat) = classify(&m, &addrs()) else {
            panic!("not a chat")
        };
        assert_eq!(chat.route.to.as_str(), "bob@localhost");
        assert_eq!(chat.id.as_deref(), Some("m1"));
        assert!(chat.wants_receipt && !chat.wants_markers);
        assert_eq!(chat.body_bytes, 2);
    }

    #[test]
    fn receipts_and_markers_in_both_generations() {
        for (payload, kind) in [
            (
                "<received xmlns='urn:xmpp:receipts' id='m1'/>",
                AckKind::Receipt,
            ),
            (
                "<received xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
                AckKind::ReceivedMarker,
            ),
            (
                "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
                AckKind::Displayed,
            ),
            (
                "<acknowledged xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
                AckKind::Acknowledged,
            ),
        ] {
            let m = parse(&format!(
                "<message from='bob@localhost/b' to='alice\\40localhost@chat.localhost'>{payload}</message>"
            ));
            match classify(&m, &addrs()) {
                Incoming::Ack { kind: k, id, .. } => {
                    assert_eq!((k, id.as_str()), (kind, "m1"))
                }
                other => panic!("{payload}: {other:?}"),
            }
        }
    }

    #[test]
    fn receipts_and_markers_name_their_message() {
        for (payload, kind) in [
            (
                "<received xmlns='urn:xmpp:receipts' id='m7'/>",
                AckKind::Receipt,
            ),
            (
                "<received xmlns='urn:xmpp:chat-markers:0' id='m7'/>",
                AckKind::ReceivedMarker,
            ),
            (
                "<displayed xmlns='urn:xmpp:chat-markers:0' id='m7'/>",
                AckKind::Displayed,
            ),
            (
                "<acknowledged xmlns='urn:xmpp:chat-markers:0' id='m7'/>",
                AckKind::Acknowledged,
            ),
        ] {
            let m = parse(&format!(
                "<message from='bob@localhost/b' to='alice\\40localhost@chat.localhost'>{payload}</message>"
            ));
            let Incoming::Ack { kind: k, id, .. } = classify(&m, &addrs()) else {
                panic!("{payload} not read as an ack")
            };
            assert_eq!((k, id.as_str()), (kind, "m7"), "{payload}");
            let empty = parse(&format!(
                "<message from='bob@localhost/b' to='alice\\40localhost@chat.localhost'>{}</message>",
                payload.replace("m7", "")
            ));
            assert!(
                matches!(
                    classify(&empty, &addrs()),
                    Incoming::Invalid { reply: Some(_), .. }
                ),
                "{payload} with an empty id accepted"
            );
        }
    }

    #[test]
    fn plain_ids_are_what_the_typed_parse_reads() {
        let mut checked_fast = 0;
        for payload in [
            "<P id='m1'/>",
            "<P id=''/>",
            "<P/>",
            "<P id='m1' x='y'/>",
            "<P x='y'/>",
            "<P id='m1'>text</P>",
            "<P id='m1'> </P>",
            "<P id='m1'><x xmlns='urn:x'/></P>",
            "<P id='a&amp;b&apos;c'/>",
            "<P xml:lang='en' id='m1'/>",
            "<P xmlns:p='urn:p' p:id='m1'/>",
        ] {
            for (name, ns) in [("received", ns::RECEIPTS), ("displayed", ns::CHAT_MARKERS)] {
                let xml = payload
                    .replace("<P", &format!("<{name} xmlns='{ns}'"))
                    .replace("</P>", &format!("</{name}>"));
                let el: Element = xml.parse().unwrap();
                let typed = match name {
                    "received" => Received::try_from(el.clone()).ok().map(|r| r.id),
                    _ => Displayed::try_from(el.clone()).ok().map(|d| d.id.0),
                };
                if let Some(fast) = plain_id(&el) {
                    assert_eq!(Some(fast), typed, "{xml}");
                    checked_fast += 1;
                }
                let (_, id) = ack_payload(&el).unwrap();
                assert_eq!(id, typed.filter(|id| !id.is_empty()), "{xml}");
            }
        }
        assert_eq!(checked_fast, 6, "the fast path takes the plain shapes");
    }

    #[test]
    fn marker_without_id_is_a_bad_request() {
        let m = parse(
            "<message from='bob@localhost/b' to='alice\\40localhost@chat.localhost'><displayed xmlns='urn:xmpp:chat-markers:0'/></message>",
        );
        let Incoming::Invalid { reply: Some(r), .. } = classify(&m, &addrs()) else {
            panic!("accepted")
        };
        assert!(
            r.get_child("error", ns::COMPONENT)
                .unwrap()
                .has_child("bad-request", ns::STANZAS)
        );
    }

    #[test]
    fn iq_without_payload_gets_bad_request() {
        let iq = parse("<iq from='alice@localhost/a' to='chat.localhost' id='x' type='get'/>");
        let Incoming::Invalid { reply: Some(r), .. } = classify(&iq, &addrs()) else {
            panic!("accepted")
        };
        assert_eq!(r.attr("type"), Some("error"));
        assert_eq!(r.attr("id"), Some("x"));
    }

    #[test]
    fn errors_are_never_answered() {
        let m = parse("<message from='bad jid@@' to='chat.localhost' type='error'/>");
        assert!(matches!(
            classify(&m, &addrs()),
            Incoming::Invalid { reply: None, .. }
        ));
    }

    #[test]
    fn tracked_address_that_names_nobody() {
        let m = parse(
            "<message from='alice@localhost/a' to='bob\\40@chat.localhost' id='m'><body>x</body></message>",
        );
        let Incoming::Invalid { reply: Some(r), .. } = classify(&m, &addrs()) else {
            panic!("accepted")
        };
        assert!(
            r.get_child("error", ns::COMPONENT)
                .unwrap()
                .has_child("item-not-found", ns::STANZAS)
        );
    }

    #[test]
    fn status_query_is_recognised() {
        let iq = parse(
            "<iq from='alice@localhost/a' to='chat.localhost' id='q1' type='get'>\
             <status xmlns='urn:tidemark:status:0' conversation='bob\\40localhost@chat.localhost' id='m1'/></iq>",
        );
        assert_eq!(
            classify(&iq, &addrs()),
            Incoming::ServiceIq {
                from: Jid::new("alice@localhost/a").unwrap(),
                origin: Origin {
                    name: "iq".into(),
                    from: "alice@localhost/a".into(),
                    id: Some("q1".into()),
                },
                request: ServiceRequest::Status {
                    conversation: Some("bob\\40localhost@chat.localhost".into()),
                    id: Some("m1".into())
                }
            }
        );
    }
}
