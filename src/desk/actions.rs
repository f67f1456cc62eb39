//! What agents do to a conversation (assign, done, pending, snooze) and
//! what automation does by itself (wake a snoozed one), each an event.

use minidom::Element;
use tracing::info;

use super::{At, Desks, bad_request, events, not_found};
use crate::context::Context;
use crate::incoming::{AssignTo, DeskAction};
use crate::stanza::StanzaError;
use crate::store::desk::BY_AUTOMATION;
use crate::store::{DeskEventKind, DeskState, Millis, StoreError, Write};

/// The furthest ahead a conversation may be snoozed.
pub const MAX_SNOOZE_MS: Millis = 30 * 24 * 3600 * 1000;

/// `agent` does `action` to `customer`'s conversation; the messages that
/// show the event to the agents concerned. An action that changes nothing
/// records nothing.
pub fn act(
    cx: &mut Context,
    desks: &mut Desks,
    at: &At,
    customer: &str,
    agent: &str,
    action: DeskAction,
    now: Millis,
) -> Result<Result<Vec<Element>, StanzaError>, StoreError> {
    let Some(mut conv) = cx.store.desk_conversation(&at.desk.name, customer)? else {
        return Ok(Err(not_found(format!(
            "{customer} has no conversation with {}",
            at.desk.name
        ))));
    };
    let before = conv.assignee.clone();
    let kind = match action {
        DeskAction::Assign(to) => {
            let to = match to {
                AssignTo::Me => Some(agent.to_owned()),
                AssignTo::Nobody => None,
                AssignTo::Agent(j) => {
                    let bare = xmpp_parsers::jid::BareJid::new(j.trim())
                        .map(|b| b.to_string())
                        .unwrap_or_default();
                    if !at.desk.is_agent(&bare) {
                        return Ok(Err(bad_request(format!(
                            "{j:?} is no agent of {}",
                            at.desk.name
                        ))));
                    }
                    Some(bare)
                }
            };
            if to == conv.assignee {
                return Ok(Ok(vec![]));
            }
            conv.assignee = to.clone();
            match to {
                Some(to) => DeskEventKind::Assigned { to },
                None => DeskEventKind::Unassigned,
            }
        }
        DeskAction::Done => {
            if conv.state == DeskState::Done {
                return Ok(Ok(vec![]));
            }
            conv.state = DeskState::Done;
            DeskEventKind::Done
        }
        DeskAction::Pending => {
            if conv.state == DeskState::Pending {
                return Ok(Ok(vec![]));
            }
            conv.state = DeskState::Pending;
            DeskEventKind::Pending
        }
        DeskAction::Snooze(until) => {
            if until <= now {
                return Ok(Err(bad_request(
                    "a conversation is snoozed until a time in the future",
                )));
            }
            if until > now.saturating_add(MAX_SNOOZE_MS) {
                return Ok(Err(bad_request(
                    "a conversation is snoozed for at most 30 days",
                )));
            }
            if conv.state == (DeskState::Snoozed { until }) {
                return Ok(Ok(vec![]));
            }
            conv.state = DeskState::Snoozed { until };
            desks
                .snoozes
                .insert((until, at.desk.name.clone(), customer.to_owned()));
            DeskEventKind::Snoozed { until }
        }
    };
    info!(desk = %at.desk.name, %customer, %agent, event = kind.name(), "desk action");
    let after = conv.assignee.clone();
    let shown = events::record(
        cx,
        desks,
        at,
        customer,
        before.as_deref(),
        after.as_deref(),
        events::now(now, agent, kind),
    )?;
    cx.write(Write::DeskConversation {
        desk: at.desk.name.clone(),
        conv,
    });
    Ok(Ok(shown))
}

/// A snooze that ran out: the conversation is open again, if it is still
/// snoozed until then (an agent or the customer may have woken it).
pub fn wake(
    cx: &mut Context,
    desks: &Desks,
    at: &At,
    customer: &str,
    until: Millis,
    now: Millis,
) -> Result<Vec<Element>, StoreError> {
    let Some(mut conv) = cx.store.desk_conversation(&at.desk.name, customer)? else {
        return Ok(vec![]);
    };
    if conv.state != (DeskState::Snoozed { until }) {
        return Ok(vec![]);
    }
    conv.state = DeskState::Open;
    let assignee = conv.assignee.clone();
    let shown = events::record(
        cx,
        desks,
        at,
        customer,
        assignee.as_deref(),
        assignee.as_deref(),
        events::now(now, BY_AUTOMATION, DeskEventKind::Unsnoozed),
    )?;
    cx.write(Write::DeskConversation {
        desk: at.desk.name.clone(),
        conv,
    });
    Ok(shown)
}
