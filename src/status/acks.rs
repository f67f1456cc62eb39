//! Receipts and markers: turning what the recipient's client sent into what
//! the sender's client asked for (XEP-0184 receipts, XEP-0333 markers, or
//! both), so a client that speaks only one of them still sees status.

use minidom::Element;

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
        Evidence::Delivered if record.wants_receipt => {
            vec![element("received", ns::RECEIPTS, &[("id", id)])]
        }
        // XEP-0333 1.0 dropped <received/>, but clients that ask for markers
        // and not receipts are the older ones that still show it.
        Evidence::Delivered if record.wants_markers => {
            vec![element("received", ns::CHAT_MARKERS, &[("id", id)])]
        }
        Evidence::Delivered => vec![],
        Evidence::Read if record.wants_markers => {
            vec![element("displayed", ns::CHAT_MARKERS, &[("id", id)])]
        }
        // A receipts-only client cannot show "read", but read implies
        // delivered: give it the receipt if it has not had one.
        Evidence::Read if record.wants_receipt && record.delivered_at.is_none() => {
            vec![element("received", ns::RECEIPTS, &[("id", id)])]
        }
        Evidence::Read => vec![],
    }
}

/// A message carrying acknowledgement payloads.
pub fn ack_message(from: &str, to: &str, id: &str, payloads: Vec<Element>) -> Element {
    let mut msg = element(
        "message",
        ns::COMPONENT,
        &[("from", from), ("to", to), ("id", id), ("type", "chat")],
    );
    for p in payloads {
        msg.append_child(p);
    }
    // Markers belong in the archive so the sender's other devices see them
    // (XEP-0334 §4.3).
    msg.append_child(Element::bare("store", ns::HINTS));
    msg
}

/// Makes sure a relayed message asks for what tidemark needs to track it,
/// whatever the sender's client asked for.
pub fn request_acks(msg: &mut Element, markable: bool) {
    if !msg.has_child("request", ns::RECEIPTS) {
        msg.append_child(Element::bare("request", ns::RECEIPTS));
    }
    if markable && !msg.has_child("markable", ns::CHAT_MARKERS) {
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
    fn requests_are_added_once() {
        let mut m: Element = "<message xmlns='jabber:component:accept' id='m1'><body>x</body><request xmlns='urn:xmpp:receipts'/></message>".parse().unwrap();
        request_acks(&mut m, true);
        request_acks(&mut m, true);
        assert_eq!(m.children().filter(|c| c.name() == "request").count(), 1);
        assert_eq!(m.children().filter(|c| c.name() == "markable").count(), 1);
    }
}
