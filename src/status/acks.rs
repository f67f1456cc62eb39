//! Receipts and markers: turning what the recipient's client sent into what
//! the sender's client asked for (XEP-0184 receipts, XEP-0333 markers, or
//! both), so a client that speaks only one of them still sees status.
//!
//! Everything here is built on the path of every message and every ack, so
//! the elements are made directly rather than through xmpp-parsers' typed
//! values (`Message`, `Received`, `Displayed`, `Request`, `Markable`): their
//! conversion to an element goes through xso's event stream and cost a
//! quarter of handling a stanza. The elements are the same, namespaces and
//! attributes alike; the tests compare each with the typed conversion.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use crate::capabilities::Abilities;
use crate::stanza::{element, ns};
use crate::store::MessageRecord;

/// What the recipient's client just told us about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Delivered,
    Read,
}

/// The payloads to send to the sender for `evidence` about `record`, in the
/// forms the sender asked for when sending it.
pub fn payloads_for_sender(record: &MessageRecord, evidence: Evidence) -> Vec<Element> {
    let id = record.id.as_str();
    match evidence {
        Evidence::Delivered if record.wants_receipt => vec![receipt(id)],
        // XEP-0333 1.0 dropped <received/>, but clients that ask for markers
        // and not receipts are the older ones that still show it.
        // Hand-built: xmpp-parsers 0.23 has no legacy <received/> marker.
        Evidence::Delivered if record.wants_markers => {
            vec![element("received", ns::CHAT_MARKERS, &[("id", id)])]
        }
        Evidence::Delivered => vec![],
        Evidence::Read if record.wants_markers => vec![displayed(id)],
        // A receipts-only client cannot show "read", but read implies
        // delivered: give it the receipt if it has not had one.
        Evidence::Read if record.wants_receipt && record.delivered_at.is_none() => {
            vec![receipt(id)]
        }
        Evidence::Read => vec![],
    }
}

/// XEP-0184 `<received/>`: what `xmpp_parsers::receipts::Received` gives.
fn receipt(id: &str) -> Element {
    element("received", ns::RECEIPTS, &[("id", id)])
}

/// XEP-0333 `<displayed/>`: what `xmpp_parsers::displayed_markers::Displayed`
/// gives.
fn displayed(id: &str) -> Element {
    element("displayed", ns::CHAT_MARKERS, &[("id", id)])
}

/// A message carrying acknowledgement payloads: what
/// `xmpp_parsers::message::Message::chat(to)` with `from`, `id` and these
/// payloads gives (a `chat` message in the component namespace, no
/// `xml:lang`), followed by a storage hint.
pub fn ack_message(from: &Jid, to: &Jid, id: &str, payloads: Vec<Element>) -> Element {
    let mut msg = element(
        "message",
        ns::COMPONENT,
        &[
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("id", id),
            ("type", "chat"),
        ],
    );
    for payload in payloads {
        msg.append_child(payload);
    }
    // Markers belong in the archive so the sender's other devices see them
    // (XEP-0334 §4.3). xmpp-parsers 0.23 has no XEP-0334 hints either.
    msg.append_child(Element::bare("store", ns::HINTS));
    msg
}

/// Makes sure a relayed message asks for what tidemark needs to track it,
/// whatever the sender's client asked for: `request_acks_as` with the
/// recipient's clients unknown.
pub fn request_acks(msg: &mut Element, markable: bool) {
    request_acks_as(msg, markable, None);
}

/// [`request_acks`] in the forms the recipient's clients speak, when
/// tidemark knows them: a client that announces only receipts is not asked
/// for markers, one that announces only markers is not asked for a receipt.
/// Unknown clients, or clients that announce neither, are asked both ways.
/// What the sender's own client put in the message stays as it is. The
/// XEP-0184 `<request/>` and XEP-0333 `<markable/>` are built directly, as
/// `Request` and `Markable` give them (a hot path).
pub fn request_acks_as(msg: &mut Element, markable: bool, speaks: Option<Abilities>) {
    let (receipt, markers) = match speaks {
        Some(can) if can.receipts || can.markers => (can.receipts, can.markers),
        _ => (true, true),
    };
    if receipt && !msg.has_child("request", ns::RECEIPTS) {
        msg.append_child(Element::bare("request", ns::RECEIPTS));
    }
    if markers && markable && !msg.has_child("markable", ns::CHAT_MARKERS) {
        msg.append_child(Element::bare("markable", ns::CHAT_MARKERS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(receipt: bool, markers: bool) -> MessageRecord {
        MessageRecord {
            wants_receipt: receipt,
            wants_markers: markers,
            ..MessageRecord::sent("alice@x", "bob@x", "m1", 1)
        }
    }

    fn names(v: &[Element]) -> Vec<(String, String)> {
        v.iter().map(|e| (e.ns(), e.name().to_owned())).collect()
    }

    #[test]
    fn receipt_goes_out_as_receipt_or_marker() {
        let r = payloads_for_sender(&record(true, true), Evidence::Delivered);
        assert_eq!(names(&r), vec![(ns::RECEIPTS.into(), "received".into())]);
        let m = payloads_for_sender(&record(false, true), Evidence::Delivered);
        assert_eq!(
            names(&m),
            vec![(ns::CHAT_MARKERS.into(), "received".into())]
        );
        assert!(payloads_for_sender(&record(false, false), Evidence::Delivered).is_empty());
    }

    #[test]
    fn read_goes_to_receipt_only_clients_as_delivery() {
        let d = payloads_for_sender(&record(true, true), Evidence::Read);
        assert_eq!(
            names(&d),
            vec![(ns::CHAT_MARKERS.into(), "displayed".into())]
        );
        let r = payloads_for_sender(&record(true, false), Evidence::Read);
        assert_eq!(names(&r), vec![(ns::RECEIPTS.into(), "received".into())]);
        let mut delivered = record(true, false);
        delivered.delivered_at = Some(2);
        assert!(payloads_for_sender(&delivered, Evidence::Read).is_empty());
    }

    #[test]
    fn ack_messages_are_what_we_always_sent() {
        let jid = |s: &str| Jid::new(s).unwrap();
        let msg = ack_message(
            &jid("bob\\40localhost@chat.localhost/b"),
            &jid("alice@localhost/a"),
            "tm-1",
            payloads_for_sender(&record(true, true), Evidence::Read),
        );
        let expected: Element = "<message xmlns='jabber:component:accept' from='bob\\40localhost@chat.localhost/b' to='alice@localhost/a' id='tm-1' type='chat'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/><store xmlns='urn:xmpp:hints'/></message>"
            .parse()
            .unwrap();
        assert_eq!(msg, expected, "{}", String::from(&msg));
        let mut relayed: Element =
            "<message xmlns='jabber:component:accept' id='m1'><body>x</body></message>"
                .parse()
                .unwrap();
        request_acks(&mut relayed, true);
        let expected: Element = "<message xmlns='jabber:component:accept' id='m1'><body>x</body>\
             <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
            .parse()
            .unwrap();
        assert_eq!(relayed, expected);
    }

    /// The direct builds are what xmpp-parsers' typed values convert to, for
    /// addresses with and without resources, escaped nodes, and ids that
    /// need escaping in XML.
    #[test]
    fn direct_builds_equal_the_typed_conversions() {
        use xmpp_parsers::displayed_markers::{Displayed, Markable};
        use xmpp_parsers::message::{Id, Message};
        use xmpp_parsers::receipts::{Received, Request};

        let jid = |s: &str| Jid::new(s).unwrap();
        for id in ["m1", "", "a'b\"<c>&d", "\u{e9}t\u{e9} \u{1f600}"] {
            let typed: Element = Received { id: id.to_owned() }.into();
            assert_eq!(receipt(id), typed, "{id:?}");
            let typed: Element = Displayed {
                id: Id(id.to_owned()),
            }
            .into();
            assert_eq!(displayed(id), typed, "{id:?}");
            for (from, to) in [
                ("bob\\40localhost@chat.localhost/b", "alice@localhost/a"),
                ("bob\\40localhost@chat.localhost", "alice@localhost"),
                ("x\\40y.org@chat.example.org/r\u{e9}s o", "x@y.org/r"),
            ] {
                for payloads in [
                    vec![],
                    vec![receipt(id)],
                    vec![displayed(id), receipt("other")],
                ] {
                    let mut typed = Message::chat(jid(to));
                    typed.from = Some(jid(from));
                    typed.id = Some(Id(id.to_owned()));
                    typed.payloads = payloads.clone();
                    typed.payloads.push(Element::bare("store", ns::HINTS));
                    let typed: Element = typed.into();
                    let direct = ack_message(&jid(from), &jid(to), id, payloads);
                    assert_eq!(direct, typed, "{id:?} {from} {to}");
                    assert_eq!(String::from(&direct), String::from(&typed));
                }
            }
        }
        let typed: Element = Request.into();
        assert_eq!(Element::bare("request", ns::RECEIPTS), typed);
        let typed: Element = Markable.into();
        assert_eq!(Element::bare("markable", ns::CHAT_MARKERS), typed);
        let mut relayed: Element =
            "<message xmlns='jabber:component:accept' id='m1'><body>x</body></message>"
                .parse()
                .unwrap();
        let mut expected = relayed.clone();
        expected.append_child(Request.into());
        expected.append_child(Markable.into());
        request_acks(&mut relayed, true);
        assert_eq!(String::from(&relayed), String::from(&expected));
    }

    #[test]
    fn requests_are_added_once() {
        let mut m: Element = "<message xmlns='jabber:component:accept' id='m1'><body>x</body><request xmlns='urn:xmpp:receipts'/></message>".parse().unwrap();
        request_acks(&mut m, true);
        request_acks(&mut m, true);
        assert_eq!(m.children().filter(|c| c.name() == "request").count(), 1);
        assert_eq!(m.children().filter(|c| c.name() == "markable").count(), 1);
    }

    fn asked(speaks: Option<Abilities>, markable: bool) -> (bool, bool) {
        let mut msg = Element::bare("message", ns::COMPONENT);
        request_acks_as(&mut msg, markable, speaks);
        (
            msg.has_child("request", ns::RECEIPTS),
            msg.has_child("markable", ns::CHAT_MARKERS),
        )
    }

    #[test]
    fn requests_follow_what_the_recipients_clients_speak() {
        let only = |receipts, markers| {
            Some(Abilities {
                receipts,
                markers,
                ..Abilities::default()
            })
        };
        assert_eq!(asked(None, true), (true, true), "unknown: both ways");
        assert_eq!(asked(only(true, false), true), (true, false));
        assert_eq!(asked(only(false, true), true), (false, true));
        assert_eq!(asked(only(true, true), true), (true, true));
        assert_eq!(
            asked(only(false, false), true),
            (true, true),
            "neither: both ways"
        );
        assert_eq!(
            asked(None, false),
            (true, false),
            "no read status: no markable"
        );
    }
}
