//! A conversation's events (xep/desk.md §4.4): recorded with their time and
//! who, and shown to the agents of the conversation as chat messages from
//! its address.

use minidom::Element;

use super::{At, Desks};
use crate::context::Context;
use crate::stanza::{element, ns, with_text, xep0082};
use crate::store::{DeskEvent, DeskEventKind, Millis, StoreError, Write};

/// The line an agent reads in the conversation's chat.
pub fn text(event: &DeskEvent, customer: &str) -> String {
    let by = event.by.as_str();
    match &event.kind {
        DeskEventKind::Opened => format!("New conversation from {customer}"),
        DeskEventKind::Assigned { to } => format!("Assigned to {to} by {by}"),
        DeskEventKind::Unassigned => format!("Unassigned by {by}"),
        DeskEventKind::Done => format!("Marked done by {by}"),
        DeskEventKind::Pending => format!("Marked pending by {by}"),
        DeskEventKind::Snoozed { until } => {
            format!("Snoozed until {} by {by}", xep0082(*until))
        }
        DeskEventKind::Unsnoozed if by == crate::store::desk::BY_CUSTOMER => {
            "Back from snooze (customer wrote)".to_owned()
        }
        DeskEventKind::Unsnoozed => "Back from snooze (automation)".to_owned(),
        DeskEventKind::Reopened => "Reopened: the customer wrote".to_owned(),
    }
}

/// `<event/>` as the IQ protocol and the event messages carry it.
pub fn event_element(event: &DeskEvent) -> Element {
    let mut el = element(
        "event",
        ns::DESK,
        &[
            ("kind", event.kind.name()),
            ("by", event.by.as_str()),
            ("at", &xep0082(event.at)),
        ],
    );
    match &event.kind {
        DeskEventKind::Assigned { to } => crate::stanza::set_attr(&mut el, "to", to.as_str()),
        DeskEventKind::Snoozed { until } => {
            crate::stanza::set_attr(&mut el, "until", xep0082(*until))
        }
        _ => {}
    }
    el
}

/// Records `event` and returns the messages that show it: to the assignee
/// before and after, the agent who acted, and every available agent while
/// the conversation has no assignee.
#[allow(clippy::too_many_arguments)]
pub fn record(
    cx: &mut Context,
    desks: &Desks,
    at: &At,
    customer: &str,
    before: Option<&str>,
    after: Option<&str>,
    event: DeskEvent,
) -> Result<Vec<Element>, StoreError> {
    let seq = cx.store.next_seq()?;
    let mut audience: Vec<String> = Vec::new();
    let mut add = |a: &str| {
        if at.desk.is_agent(a) && !audience.iter().any(|x| x == a) {
            audience.push(a.to_owned());
        }
    };
    if let Some(b) = before {
        add(b);
    }
    if let Some(a) = after {
        add(a);
    }
    add(&event.by);
    if after.is_none() {
        for a in desks.agents.available(at.desk) {
            add(a);
        }
    }
    let Ok(customer_jid) = xmpp_parsers::jid::BareJid::new(customer) else {
        return Ok(vec![]);
    };
    let from = super::conversation_address(cx, at, &customer_jid)?;
    let body = text(&event, customer);
    let mut out = Vec::with_capacity(audience.len());
    for agent in audience {
        let mut msg = element(
            "message",
            ns::COMPONENT,
            &[
                ("from", from.as_str()),
                ("to", agent.as_str()),
                ("type", "chat"),
                ("id", &cx.local_id(event.at)),
            ],
        );
        msg.append_child(with_text(
            Element::bare("body", ns::COMPONENT),
            body.clone(),
        ));
        msg.append_child(event_element(&event));
        out.push(msg);
    }
    cx.write(Write::DeskEvent {
        desk: at.desk.name.clone(),
        customer: customer.to_owned(),
        seq,
        event,
    });
    Ok(out)
}

/// An event of now, by `by`.
pub fn now(at: Millis, by: &str, kind: DeskEventKind) -> DeskEvent {
    DeskEvent {
        at,
        by: by.to_owned(),
        kind,
    }
}
