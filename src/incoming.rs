//! Every stanza that arrives is classified once, here, into what it means to
//! tidemark. The router then matches on the kind; nothing further down has to
//! look at raw attributes again. Malformed input is a kind too, carrying the
//! error reply the protocol wants (if any).

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::displayed_markers::Displayed;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ping::Ping;
use xmpp_parsers::receipts::Received;

use crate::address::Addresses;
use crate::stanza::{
    DefinedCondition, ErrorType, StanzaError, element, error_reply, error_reply_to, jid_attr, ns,
    read_error, set_attr, stanza_error, with_text,
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
    fn of(stanza: &Element, from: &str) -> Self {
        Origin {
            name: stanza.name().to_owned(),
            from: from.to_owned(),
            id: stanza.attr("id").map(str::to_owned),
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
    Command(CommandRequest),
    Unsupported,
}

/// The node of the one ad-hoc command, and the field of its form.
pub const READ_RECEIPTS: &str = "read-receipts";
pub const READ_RECEIPTS_FIELD: &str = "send-read-receipts";

/// A XEP-0050 command request, as parsed from `<command/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub node: String,
    pub action: String,
    pub session: Option<String>,
    /// The submitted value of the form's field, if a form was submitted.
    pub submitted: Option<String>,
}

impl CommandRequest {
    pub fn parse(cmd: &Element) -> Self {
        let submitted = cmd
            .get_child("x", ns::DATA)
            .and_then(|x| DataForm::try_from(x.clone()).ok())
            .filter(|form| form.type_ == DataFormType::Submit)
            .and_then(|form| {
                form.fields
                    .into_iter()
                    .find(|f| f.var.as_deref() == Some(READ_RECEIPTS_FIELD))
                    .map(|f| f.values.into_iter().next().unwrap_or_default())
            });
        CommandRequest {
            node: cmd.attr("node").unwrap_or_default().to_owned(),
            action: cmd.attr("action").unwrap_or("execute").to_owned(),
            session: cmd.attr("sessionid").map(str::to_owned),
            submitted,
        }
    }
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
    pub origin: Origin,
    /// The message as it came, to relay.
    pub message: Element,
    /// The sender's id, if not empty.
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

/// A groupchat message with content.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMessage {
    /// The sender's id, if not empty.
    pub id: Option<String>,
    pub body_bytes: usize,
    pub has_body: bool,
    /// Whether the sender asked for XEP-0333 markers.
    pub markable: bool,
    /// What the room reflects: the message without what only the room may
    /// say.
    pub message: Element,
}

/// A read marker sent to a room.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMarker {
    pub kind: AckKind,
    /// The id it names (the room's stanza-id, or the sender's id).
    pub id: String,
    /// What the room reflects, as with [`GroupMessage::message`].
    pub message: Element,
}

/// What a stanza to a room (`room@service` or `room@service/nick`) asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomRequest {
    /// Presence to `room/nick`: join (or update), or leave. `payloads` are
    /// the client's own (show, status, caps), shown to the other occupants.
    Presence {
        nick: String,
        available: bool,
        payloads: Vec<Element>,
    },
    /// A groupchat message with content.
    Groupchat(GroupMessage),
    /// A read marker in a groupchat message.
    Marker(GroupMarker),
    DiscoInfo,
    DiscoItems,
    /// An iq to `room/nick`; XEP-0410 self-pings are how clients learn
    /// whether they are still in the room.
    OccupantIq {
        nick: String,
        self_ping: bool,
    },
    /// An error from an occupant's client or server: the session is gone.
    /// `payloads` as with presence.
    Bounce {
        payloads: Vec<Element>,
    },
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
        origin: Origin,
        room: BareJid,
        request: RoomRequest,
    },
    ServiceIq {
        from: Jid,
        origin: Origin,
        request: ServiceRequest,
    },
    /// An IQ request addressed to a tracked address: refused with `reply`.
    ContactIq {
        reply: Element,
    },
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
    Passthrough {
        route: Route,
        message: Element,
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
        presence: Element,
        available: Option<Compact>,
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

/// RFC 6121 §4.7.2.1: the `<show/>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Away,
    Chat,
    Dnd,
    Xa,
}

impl Show {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "away" => Some(Show::Away),
            "chat" => Some(Show::Chat),
            "dnd" => Some(Show::Dnd),
            "xa" => Some(Show::Xa),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Show::Away => "away",
            Show::Chat => "chat",
            Show::Dnd => "dnd",
            Show::Xa => "xa",
        }
    }
}

/// An available presence as tidemark keeps it for probe answers: the RFC 6121
/// availability fields, nothing else: live presence goes on whole, and a
/// probe answer needs only whether and how the contact is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compact {
    show: Option<Show>,
    status: Option<Box<str>>,
    priority: i8,
}

impl Compact {
    pub fn of(p: &Element) -> Self {
        let child = |name: &str| p.children().find(|c| c.name() == name);
        Compact {
            show: child("show").and_then(|s| Show::parse(&s.text())),
            status: child("status").map(|s| s.text().into_boxed_str()),
            priority: child("priority")
                .and_then(|s| s.text().trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// The presence as sent on: `from` and `to` set, and only the fields
    /// kept.
    pub fn to_element(&self, from: &str, to: &str) -> Element {
        let mut p = element("presence", ns::COMPONENT, &[("from", from), ("to", to)]);
        if let Some(show) = self.show {
            p.append_child(with_text(
                Element::bare("show", ns::COMPONENT),
                show.as_str(),
            ));
        }
        if let Some(status) = &self.status {
            p.append_child(with_text(
                Element::bare("status", ns::COMPONENT),
                status.as_ref(),
            ));
        }
        if self.priority != 0 {
            p.append_child(with_text(
                Element::bare("priority", ns::COMPONENT),
                self.priority.to_string(),
            ));
        }
        p
    }
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

    let origin = Origin::of(stanza, stanza.attr("from").unwrap_or_default());
    if addrs.is_service(&to) {
        return match stanza.name() {
            "iq" => classify_service_iq(stanza, from, origin, &own),
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
        let request = classify_room(stanza, &room, nick, &own);
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
            Some("result") | Some("error") => Incoming::IqResponse,
            _ => Incoming::ContactIq {
                reply: origin.error(
                    &own,
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "tracked addresses answer no queries; ask the service's domain",
                ),
            },
        },
        "message" => classify_message(stanza, route, origin, &own),
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

/// The children of a stanza to a room that the room shows on, without what
/// only the room may say (its own MUC payloads and occupant id).
fn client_payloads(stanza: &Element) -> Vec<Element> {
    stanza
        .children()
        .filter(|c| {
            !(c.is("x", ns::MUC) || c.is("x", ns::MUC_USER) || c.is("occupant-id", ns::OCCUPANT_ID))
        })
        .cloned()
        .collect()
}

/// Removes what only the room may say (XEP-0359 §5: a stanza-id `by` the
/// room from anyone else is spoofed), and XEP-0184 requests, which have no
/// place in groupchat.
fn strip_room_claims(msg: &Element, room: &str) -> Element {
    let mut bare = Element::bare(msg.name(), msg.ns());
    for ((attr_ns, name), value) in msg.attrs().iter() {
        bare.attrs_mut()
            .insert(attr_ns.clone(), name.clone(), value.clone());
    }
    for c in msg.children() {
        let spoofed_id = c.is("stanza-id", ns::SID) && c.attr("by") == Some(room);
        if !(spoofed_id || c.is("occupant-id", ns::OCCUPANT_ID) || c.is("request", ns::RECEIPTS)) {
            bare.append_child(c.clone());
        }
    }
    bare
}

fn classify_room(stanza: &Element, room: &BareJid, nick: Option<String>, own: &str) -> RoomRequest {
    let type_ = stanza.attr("type");
    let refuse = |condition: DefinedCondition, text: &str| RoomRequest::Refused {
        reply: match type_ {
            Some("error") | Some("result") => None,
            _ => Some(error_reply(stanza, own, ErrorType::Cancel, condition, text)),
        },
    };
    match stanza.name() {
        "presence" => match (nick, type_) {
            (_, Some("error")) => RoomRequest::Bounce {
                payloads: client_payloads(stanza),
            },
            (Some(nick), None) => RoomRequest::Presence {
                nick,
                available: true,
                payloads: client_payloads(stanza),
            },
            (Some(nick), Some("unavailable")) => RoomRequest::Presence {
                nick,
                available: false,
                payloads: client_payloads(stanza),
            },
            (None, None) => refuse(
                DefinedCondition::JidMalformed,
                "join a room as room@service/nickname (XEP-0045 §7.2.1)",
            ),
            _ => RoomRequest::Ignored("presence to a room that is not a join or leave"),
        },
        "message" => {
            if type_ == Some("error") {
                return RoomRequest::Bounce {
                    payloads: client_payloads(stanza),
                };
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
                        Some(id) => RoomRequest::Marker(GroupMarker {
                            kind,
                            id,
                            message: strip_room_claims(stanza, room.as_str()),
                        }),
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
            RoomRequest::Groupchat(GroupMessage {
                id: stanza
                    .attr("id")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
                body_bytes: bodies.iter().map(|b| b.text().len()).sum(),
                has_body: !bodies.is_empty(),
                markable: stanza.has_child("markable", ns::CHAT_MARKERS),
                message: strip_room_claims(stanza, room.as_str()),
            })
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

fn classify_service_iq(iq: &Element, from: Jid, origin: Origin, own: &str) -> Incoming {
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
        (ns::COMMANDS, "command", false) => ServiceRequest::Command(CommandRequest::parse(payload)),
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
    Incoming::ServiceIq {
        from,
        origin,
        request,
    }
}

fn classify_message(msg: &Element, route: Route, origin: Origin, own: &str) -> Incoming {
    match msg.attr("type") {
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
            message: msg.clone(),
        };
    }
    Incoming::Chat(Chat {
        route,
        origin,
        message: msg.clone(),
        id: msg.attr("id").filter(|s| !s.is_empty()).map(str::to_owned),
        body_bytes: bodies.iter().map(|b| b.text().len()).sum(),
        has_body,
        has_attachment,
        wants_receipt: msg.has_child("request", ns::RECEIPTS),
        wants_markers: msg.has_child("markable", ns::CHAT_MARKERS),
    })
}

fn classify_presence(p: &Element, route: Route) -> Incoming {
    let subscription = |route, kind| Incoming::Subscription {
        route,
        kind,
        id: p.attr("id").map(str::to_owned),
    };
    match p.attr("type") {
        None => Incoming::Presence {
            route,
            presence: p.clone(),
            available: Some(Compact::of(p)),
        },
        Some("unavailable") => Incoming::Presence {
            route,
            presence: p.clone(),
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

    #[test]
    fn spoofed_stanza_ids_and_receipt_requests_are_stripped() {
        let m: Element = "<message xmlns='jabber:component:accept' type='groupchat' id='x'>\
            <body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' id='fake' by='team@chat'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='keep' by='alice@x'/>\
            <request xmlns='urn:xmpp:receipts'/></message>"
            .parse()
            .unwrap();
        let m = strip_room_claims(&m, "team@chat");
        let ids: Vec<_> = m
            .children()
            .filter(|c| c.is("stanza-id", ns::SID))
            .map(|c| c.attr("id").unwrap())
            .collect();
        assert_eq!(ids, vec!["keep"]);
        assert!(!m.has_child("request", ns::RECEIPTS));
        assert_eq!(m.attr("id"), Some("x"));
        assert!(m.has_child("body", ns::COMPONENT));
    }
}
