//! Stanzas to a room (`room@service` or `room@service/nick`): joins and
//! leaves, groupchat messages and markers, queries to the room and its
//! occupants.

use minidom::Element;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ping::Ping;

use super::{AckKind, ack_payload};
use crate::stanza::{DefinedCondition, ErrorType, error_reply, ns};

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
        /// Carries `<x xmlns='http://jabber.org/protocol/muc'/>`: a join,
        /// or a rejoin of a session the room already has (XEP-0045 §7.2.1).
        muc_join: bool,
    },
    /// A groupchat message with content.
    Groupchat(GroupMessage),
    /// A read marker in a groupchat message.
    Marker(GroupMarker),
    /// A subject change (XEP-0045 §8.1): a groupchat message with a
    /// `<subject/>` and no body or thread. Empty `text` clears the subject.
    Subject {
        text: String,
        /// The sender's id, if not empty.
        id: Option<String>,
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

pub(super) fn classify_room(
    stanza: &Element,
    room: &BareJid,
    nick: Option<String>,
    own: &str,
) -> RoomRequest {
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
                muc_join: stanza.has_child("x", ns::MUC),
            },
            (Some(nick), Some("unavailable")) => RoomRequest::Presence {
                nick,
                available: false,
                payloads: client_payloads(stanza),
                muc_join: false,
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
            // XEP-0045 §8.1: a subject with a body or a thread is a message
            // like any other, not a subject change.
            if bodies.is_empty() && !stanza.children().any(|c| c.name() == "thread") {
                let subjects: Vec<&Element> = stanza
                    .children()
                    .filter(|c| c.name() == "subject")
                    .collect();
                let chosen = subjects
                    .iter()
                    .find(|s| s.attr("xml:lang").is_none_or(str::is_empty))
                    .or(subjects.first());
                if let Some(subject) = chosen {
                    return RoomRequest::Subject {
                        text: subject.text(),
                        id: stanza
                            .attr("id")
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    };
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
