//! Every stanza that arrives is classified once, here, into what it means to
//! tidemark. The router then matches on the kind; nothing further down has to
//! look at raw attributes again. Malformed input is a kind too, carrying the
//! error reply the protocol wants (if any).

use minidom::Element;
use xmpp_parsers::displayed_markers::Displayed;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ping::Ping;
use xmpp_parsers::receipts::Received;

use crate::address::Addresses;
use crate::stanza::{DefinedCondition, ErrorType, error_reply, jid_attr, ns};

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

#[derive(Debug, Clone, PartialEq)]
pub enum ServiceRequest {
    DiscoInfo {
        node: Option<String>,
    },
    DiscoItems,
    GatewayPrompt,
    GatewayTranslate {
        prompt: String,
    },
    Status {
        conversation: Option<String>,
        id: Option<String>,
    },
    Ping,
    /// disco#items of the XEP-0050 commands node.
    CommandList,
    /// A XEP-0050 `<command/>`.
    Command(Element),
    Unsupported,
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
pub struct Chat {
    pub route: Route,
    pub id: Option<String>,
    pub body_bytes: usize,
    pub has_body: bool,
    pub has_attachment: bool,
    pub wants_receipt: bool,
    pub wants_markers: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

/// What a stanza to a room (`room@service` or `room@service/nick`) asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomRequest {
    /// Presence to `room/nick`: join (or update), or leave.
    Presence {
        nick: String,
        available: bool,
    },
    /// A groupchat message with content.
    Groupchat {
        body_bytes: usize,
        has_body: bool,
    },
    /// A read marker in a groupchat message.
    Marker {
        kind: AckKind,
        id: String,
    },
    DiscoInfo,
    DiscoItems,
    /// An iq to `room/nick`; XEP-0410 self-pings are how clients learn
    /// whether they are still in the room.
    OccupantIq {
        nick: String,
        self_ping: bool,
    },
    /// An error from an occupant's client or server: the session is gone.
    Bounce,
    /// Anything else a room does not do (private messages, other queries);
    /// carries the error to answer with, if any.
    Refused {
        reply: Option<Element>,
    },
    Ignored(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Room {
        from: Jid,
        room: xmpp_parsers::jid::BareJid,
        request: RoomRequest,
    },
    ServiceIq {
        from: Jid,
        request: ServiceRequest,
    },
    /// An IQ request addressed to a tracked address.
    ContactIq,
    /// A result or error to one of our own requests (keepalive pings).
    IqResponse,
    /// A message with content for a contact.
    Chat(Chat),
    /// Receipts and markers; `id` names the message acknowledged.
    Ack {
        route: Route,
        kind: AckKind,
        id: String,
    },
    /// A message without content or acks (chat states and the like), relayed
    /// untracked.
    Passthrough(Route),
    /// A message error coming back from the contact's side.
    Bounce(Route),
    Subscription {
        route: Route,
        kind: SubscriptionKind,
    },
    /// Available or unavailable presence from a contact to a watcher's
    /// tracked address.
    Presence {
        route: Route,
        available: bool,
    },
    Probe(Route),
    /// A presence error from a contact: the answer to a probe when the
    /// contact's server cannot say (unknown user, server down).
    PresenceError(Route),
    Ignored(&'static str),
    Invalid {
        reason: String,
        reply: Option<Element>,
    },
}

fn invalid(stanza: &Element, own: &str, reason: String, condition: DefinedCondition) -> Incoming {
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
fn untrackable(stanza: &Element, own: &str, reason: String) -> Incoming {
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

pub fn classify(stanza: &Element, addrs: &Addresses) -> Incoming {
    // Errors come from the address the stanza was sent to, or from the
    // service when that address is not a valid JID.
    let own = stanza
        .attr("to")
        .filter(|to| Jid::new(to).is_ok())
        .unwrap_or(addrs.domain().as_str())
        .to_owned();
    let from = match jid_attr(stanza, "from") {
        Some(Ok(j)) => j,
        Some(Err(e)) => return invalid(stanza, &own, e, DefinedCondition::JidMalformed),
        None => {
            return Incoming::Invalid {
                reason: "stanza without from".into(),
                reply: None,
            };
        }
    };
    let to = match jid_attr(stanza, "to") {
        Some(Ok(j)) => j,
        Some(Err(e)) => return invalid(stanza, &own, e, DefinedCondition::JidMalformed),
        None => return Incoming::Ignored("stanza without to"),
    };
    if addrs.is_ours(&from) {
        // Something of ours came back (a loop through the server).
        return Incoming::Ignored("stanza from this service");
    }
    let type_ = stanza.attr("type");

    if addrs.is_service(&to) {
        return match stanza.name() {
            "iq" => classify_service_iq(stanza, from, &own),
            "message" if type_ == Some("error") => Incoming::Ignored("error to the service"),
            "message" => invalid(
                stanza,
                &own,
                "this service takes no messages; write to a contact's tracked address (user\\40domain@this-service)".into(),
                DefinedCondition::ServiceUnavailable,
            ),
            _ => Incoming::Ignored("presence to the service"),
        };
    }

    if let Some((room, nick)) = addrs.room_of(&to) {
        let request = classify_room(stanza, nick, &own);
        return Incoming::Room {
            from,
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
            Some("result") | Some("error") => Incoming::IqResponse,
            _ => Incoming::ContactIq,
        },
        "message" => classify_message(stanza, route, &own),
        "presence" => classify_presence(stanza, route),
        other => Incoming::Invalid {
            reason: format!("unexpected top-level element <{other}/>"),
            reply: None,
        },
    }
}

/// A receipt or marker payload: its kind and the id of the message it names
/// (None when it names none).
fn ack_payload(child: &Element) -> Option<(AckKind, Option<String>)> {
    let (kind, id) = match (child.ns().as_str(), child.name()) {
        (ns::RECEIPTS, "received") => (
            AckKind::Receipt,
            Received::try_from(child.clone()).ok().map(|r| r.id),
        ),
        (ns::CHAT_MARKERS, "displayed") => (
            AckKind::Displayed,
            Displayed::try_from(child.clone()).ok().map(|d| d.id.0),
        ),
        // Read by hand: xmpp-parsers 0.23 has no legacy <received/> or
        // <acknowledged/> marker.
        (ns::CHAT_MARKERS, "received") => {
            (AckKind::ReceivedMarker, child.attr("id").map(str::to_owned))
        }
        (ns::CHAT_MARKERS, "acknowledged") => {
            (AckKind::Acknowledged, child.attr("id").map(str::to_owned))
        }
        _ => return None,
    };
    Some((kind, id.filter(|id| !id.is_empty())))
}

fn classify_room(stanza: &Element, nick: Option<String>, own: &str) -> RoomRequest {
    let type_ = stanza.attr("type");
    let refuse = |condition: DefinedCondition, text: &str| RoomRequest::Refused {
        reply: match type_ {
            Some("error") | Some("result") => None,
            _ => Some(error_reply(stanza, own, ErrorType::Cancel, condition, text)),
        },
    };
    match stanza.name() {
        "presence" => match (nick, type_) {
            (_, Some("error")) => RoomRequest::Bounce,
            (Some(nick), None) => RoomRequest::Presence {
                nick,
                available: true,
            },
            (Some(nick), Some("unavailable")) => RoomRequest::Presence {
                nick,
                available: false,
            },
            (None, None) => refuse(
                DefinedCondition::JidMalformed,
                "join a room as room@service/nickname (XEP-0045 §7.2.1)",
            ),
            _ => RoomRequest::Ignored("presence to a room that is not a join or leave"),
        },
        "message" => {
            if type_ == Some("error") {
                return RoomRequest::Bounce;
            }
            if nick.is_some() || type_ != Some("groupchat") {
                return refuse(
                    DefinedCondition::NotAcceptable,
                    "this room takes groupchat messages only; private messages are not supported",
                );
            }
            let bodies: Vec<&Element> = stanza.children().filter(|c| c.name() == "body").collect();
            if bodies.is_empty() {
                for child in stanza.children() {
                    let Some((kind, id)) = ack_payload(child) else {
                        continue;
                    };
                    if kind == AckKind::Receipt {
                        // XEP-0184 §5.3: no receipts in groupchat.
                        return RoomRequest::Ignored("receipt in groupchat");
                    }
                    return match id {
                        Some(id) => RoomRequest::Marker { kind, id },
                        None => refuse(
                            DefinedCondition::BadRequest,
                            "marker without the id of the message it names",
                        ),
                    };
                }
            }
            let has_attachment = stanza.has_child("x", ns::OOB);
            if bodies.is_empty() && !has_attachment {
                // Chat states and the like: nothing to keep.
                return RoomRequest::Ignored("groupchat message without content");
            }
            RoomRequest::Groupchat {
                body_bytes: bodies.iter().map(|b| b.text().len()).sum(),
                has_body: !bodies.is_empty(),
            }
        }
        "iq" => match (type_, nick) {
            (Some("result") | Some("error"), _) => RoomRequest::Ignored("iq response to a room"),
            (Some("get") | Some("set"), Some(nick)) => RoomRequest::OccupantIq {
                nick,
                self_ping: type_ == Some("get")
                    && stanza
                        .children()
                        .next()
                        .is_some_and(|q| Ping::try_from(q.clone()).is_ok()),
            },
            (Some("get"), None) => match stanza.children().next() {
                Some(q) if q.is("query", ns::DISCO_INFO) => RoomRequest::DiscoInfo,
                Some(q) if q.is("query", ns::DISCO_ITEMS) => RoomRequest::DiscoItems,
                _ => refuse(
                    DefinedCondition::ServiceUnavailable,
                    "the room does not answer that query",
                ),
            },
            _ => refuse(
                DefinedCondition::ServiceUnavailable,
                "the room does not answer that query",
            ),
        },
        _ => RoomRequest::Ignored("unknown element to a room"),
    }
}

fn classify_service_iq(iq: &Element, from: Jid, own: &str) -> Incoming {
    let type_ = iq.attr("type");
    match type_ {
        Some("result") | Some("error") => return Incoming::IqResponse,
        Some("get") | Some("set") => {}
        _ => {
            return invalid(
                iq,
                own,
                "iq type must be get, set, result or error".into(),
                DefinedCondition::BadRequest,
            );
        }
    }
    if iq.attr("id").is_none() {
        return invalid(
            iq,
            own,
            "iq without id".into(),
            DefinedCondition::BadRequest,
        );
    }
    let mut children = iq.children();
    let Some(payload) = children.next() else {
        return invalid(
            iq,
            own,
            "iq request without a payload".into(),
            DefinedCondition::BadRequest,
        );
    };
    if children.next().is_some() {
        return invalid(
            iq,
            own,
            "iq request with more than one payload".into(),
            DefinedCondition::BadRequest,
        );
    }
    let get = type_ == Some("get");
    let request = match (payload.ns().as_str(), payload.name(), get) {
        (ns::DISCO_INFO, "query", true) => ServiceRequest::DiscoInfo {
            node: payload.attr("node").map(str::to_owned),
        },
        (ns::DISCO_ITEMS, "query", true) if payload.attr("node") == Some(ns::COMMANDS) => {
            ServiceRequest::CommandList
        }
        (ns::DISCO_ITEMS, "query", true) => ServiceRequest::DiscoItems,
        (ns::COMMANDS, "command", false) => ServiceRequest::Command(payload.clone()),
        (ns::GATEWAY, "query", true) => ServiceRequest::GatewayPrompt,
        (ns::GATEWAY, "query", false) => ServiceRequest::GatewayTranslate {
            prompt: payload
                .get_child("prompt", ns::GATEWAY)
                .map(|p| p.text())
                .unwrap_or_default(),
        },
        (ns::STATUS, "status", true) => ServiceRequest::Status {
            conversation: payload.attr("conversation").map(str::to_owned),
            id: payload.attr("id").map(str::to_owned),
        },
        (ns::PING, "ping", true) if Ping::try_from(payload.clone()).is_ok() => ServiceRequest::Ping,
        _ => ServiceRequest::Unsupported,
    };
    Incoming::ServiceIq { from, request }
}

fn classify_message(msg: &Element, route: Route, own: &str) -> Incoming {
    match msg.attr("type") {
        Some("error") => return Incoming::Bounce(route),
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
        return Incoming::Passthrough(route);
    }
    Incoming::Chat(Chat {
        route,
        id: msg.attr("id").filter(|s| !s.is_empty()).map(str::to_owned),
        body_bytes: bodies.iter().map(|b| b.text().len()).sum(),
        has_body,
        has_attachment,
        wants_receipt: msg.has_child("request", ns::RECEIPTS),
        wants_markers: msg.has_child("markable", ns::CHAT_MARKERS),
    })
}

fn classify_presence(p: &Element, route: Route) -> Incoming {
    match p.attr("type") {
        None => Incoming::Presence {
            route,
            available: true,
        },
        Some("unavailable") => Incoming::Presence {
            route,
            available: false,
        },
        Some("subscribe") => Incoming::Subscription {
            route,
            kind: SubscriptionKind::Subscribe,
        },
        Some("subscribed") => Incoming::Subscription {
            route,
            kind: SubscriptionKind::Subscribed,
        },
        Some("unsubscribe") => Incoming::Subscription {
            route,
            kind: SubscriptionKind::Unsubscribe,
        },
        Some("unsubscribed") => Incoming::Subscription {
            route,
            kind: SubscriptionKind::Unsubscribed,
        },
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
                request: ServiceRequest::Status {
                    conversation: Some("bob\\40localhost@chat.localhost".into()),
                    id: Some("m1".into())
                }
            }
        );
    }
}
