//! The message status rules of DESIGN.md: sent → delivered → read, or
//! failed; never backwards; each step with its own time. A message's state is
//! derived from its record and the reader's tidemark, never stored twice.

pub mod acks;
pub mod private_mark;
pub mod room_tally;

use minidom::Element;

use crate::capabilities::Abilities;
use crate::stanza::{element, ns, with_text, xep0082};
use crate::store::{Failure, MessageRecord, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Sent => "sent",
            State::Delivered => "delivered",
            State::Read => "read",
            State::Failed => "failed",
        }
    }
}

/// What one recipient's client did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    pub jid: String,
    pub state: State,
    pub sent: Millis,
    pub delivered: Option<Millis>,
    pub read: Option<Millis>,
    pub failed: Option<Failure>,
}

/// Derives a recipient's status from the message record and the time the
/// recipient's tidemark first passed the message (if it has).
pub fn derive(record: &MessageRecord, read_at: Option<Millis>) -> RecipientStatus {
    let read = if record.readable && record.failed.is_none() {
        read_at
    } else {
        None
    };
    let state = if record.failed.is_some() {
        State::Failed
    } else if read.is_some() {
        State::Read
    } else if record.delivered_at.is_some() {
        State::Delivered
    } else {
        State::Sent
    };
    RecipientStatus {
        jid: record.recipient.clone(),
        state,
        sent: record.sent_at,
        delivered: record.delivered_at,
        read,
        failed: record.failed.clone(),
    }
}

/// A step a recipient's clients will not report, and why, in words a
/// person reads (xep/status.md, "What a client cannot say").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReported {
    pub state: State,
    pub text: String,
}

/// What `status` will not move on to because none of the recipient's
/// clients tidemark has seen says it: read without read markers, delivered
/// without receipts or markers. Nothing when tidemark does not know the
/// clients, or the step is reached already.
pub fn not_reported(
    status: &RecipientStatus,
    readable: bool,
    clients: Option<Abilities>,
) -> Vec<NotReported> {
    let Some(can) = clients else {
        return vec![];
    };
    let who = status.jid.as_str();
    let mut out = Vec::new();
    if status.state == State::Sent && !can.receipts && !can.markers {
        out.push(NotReported {
            state: State::Delivered,
            text: format!(
                "delivery status not available: {who}'s client sends neither receipts nor chat markers"
            ),
        });
    }
    if readable && status.state < State::Read && !can.markers {
        out.push(NotReported {
            state: State::Read,
            text: format!("read status not available: {who}'s client does not send read markers"),
        });
    }
    out
}

/// `<not-reported/>` of the status query.
pub fn not_reported_element(n: &NotReported) -> Element {
    with_text(
        element("not-reported", ns::STATUS, &[("state", n.state.as_str())]),
        n.text.as_str(),
    )
}

/// `<recipient/>` of the status query (xep/status.md).
// Hand-built: tidemark's own urn:tidemark:status:0 has no xmpp-parsers type.
pub fn recipient_element(status: &RecipientStatus) -> Element {
    let sent = xep0082(status.sent);
    let mut el = element(
        "recipient",
        ns::STATUS,
        &[
            ("jid", status.jid.as_str()),
            ("state", status.state.as_str()),
            ("sent", sent.as_str()),
        ],
    );
    if let Some(t) = status.delivered {
        crate::stanza::set_attr(&mut el, "delivered", xep0082(t));
    }
    if let Some(t) = status.read {
        crate::stanza::set_attr(&mut el, "read", xep0082(t));
    }
    if let Some(f) = &status.failed {
        crate::stanza::set_attr(&mut el, "failed", xep0082(f.at));
        el.append_child(with_text(
            element("reason", ns::STATUS, &[("condition", f.condition.as_str())]),
            f.text.as_str(),
        ));
    }
    el
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MessageRecord {
        MessageRecord::sent("alice@x", "bob@x", "m1", 1)
    }

    #[test]
    fn states_follow_the_evidence() {
        let mut r = record();
        assert_eq!(derive(&r, None).state, State::Sent);
        r.delivered_at = Some(2);
        assert_eq!(derive(&r, None).state, State::Delivered);
        let read = derive(&r, Some(3));
        assert_eq!(
            (read.state, read.delivered, read.read),
            (State::Read, Some(2), Some(3))
        );
    }

    #[test]
    fn read_without_receipt_is_read() {
        let s = derive(&record(), Some(5));
        assert_eq!((s.state, s.delivered), (State::Read, None));
    }

    #[test]
    fn attachment_only_messages_are_never_read() {
        let mut r = record();
        r.readable = false;
        r.delivered_at = Some(2);
        assert_eq!(derive(&r, Some(3)).state, State::Delivered);
    }

    #[test]
    fn failure_wins_and_keeps_its_reason() {
        let mut r = record();
        r.failed = Some(Failure {
            at: 9,
            condition: "recipient-unavailable".into(),
            text: "bob@x is offline".into(),
        });
        let s = derive(&r, Some(10));
        assert_eq!(s.state, State::Failed);
        let el = recipient_element(&s);
        assert_eq!(el.attr("state"), Some("failed"));
        let reason = el.get_child("reason", ns::STATUS).unwrap();
        assert_eq!(reason.attr("condition"), Some("recipient-unavailable"));
        assert_eq!(reason.text(), "bob@x is offline");
    }
}
