//! 1:1 chat through tracked addresses: relay with status tracking, the
//! presence gate, receipts and markers, and errors coming back.

use minidom::Element;
use tracing::{debug, info};

use crate::config::OfflinePolicy;
use crate::incoming::{AckKind, Chat, Route};
use crate::presence::{self, Gate};
use crate::service::Tidemark;
use crate::stanza::{ErrorType, error_reply, read_error, set_attr, to_string};
use crate::status::acks::{Evidence, ack_message, payloads_for_sender, request_acks};
use crate::store::{ConversationKey, Failure, MessageRecord, Millis, StoreError};

type Out = Result<Vec<Element>, StoreError>;

pub fn on_chat(tm: &mut Tidemark, stanza: &Element, chat: &Chat, now: Millis) -> Out {
    let sender = chat.route.from.to_bare();
    let recipient = chat.route.to.to_bare();
    let tracked_recipient = tm.tracked(&chat.route.to);
    let limit = tm.config.limits.max_body_bytes;
    if chat.body_bytes > limit {
        // Refused before anything is recorded: bad input changes nothing.
        return Ok(vec![error_reply(
            stanza,
            &tracked_recipient,
            ErrorType::Modify,
            "policy-violation",
            &format!(
                "the message body is {} bytes; this service accepts at most {limit} bytes",
                chat.body_bytes
            ),
        )]);
    }

    let seq = tm.store.next_seq()?;
    let id = chat.id.clone().unwrap_or_else(|| format!("tidemark-{seq}"));
    let conv = ConversationKey::direct(sender.as_str(), recipient.as_str());
    let mut record = MessageRecord {
        id: id.clone(),
        sender: sender.to_string(),
        recipient: recipient.to_string(),
        sent_at: now,
        delivered_at: None,
        failed: None,
        wants_receipt: chat.wants_receipt,
        wants_markers: chat.wants_markers,
        readable: chat.has_body || tm.config.status.attachments_get_read_status,
        queued: false,
    };

    let refuse = |record: &mut MessageRecord, type_, condition: &str, text: String| {
        record.failed = Some(Failure {
            at: now,
            condition: condition.to_owned(),
            text: text.clone(),
        });
        error_reply(stanza, &tracked_recipient, type_, condition, &text)
    };

    let gate = presence::gate(tm, sender.as_str(), recipient.as_str())?;
    let mut relayed = tm.relay(stanza, &chat.route);
    set_attr(&mut relayed, "id", id.as_str());
    request_acks(&mut relayed, record.readable);

    let out = match gate {
        Gate::NotPermitted => {
            // MiVoice's "presence field blank": say chat is unavailable and
            // nothing about whether the contact is online.
            let text = format!(
                "Chat with {recipient} is unavailable: {recipient} has not authorised you to see their presence. Send a subscription request to {tracked_recipient} first."
            );
            vec![refuse(
                &mut record,
                ErrorType::Cancel,
                "service-unavailable",
                text,
            )]
        }
        Gate::Offline => match tm.config.presence.offline {
            OfflinePolicy::Reject => {
                let text = format!("{recipient} is offline; the message was not delivered.");
                vec![refuse(
                    &mut record,
                    ErrorType::Cancel,
                    "recipient-unavailable",
                    text,
                )]
            }
            OfflinePolicy::Queue => {
                let max = tm.config.limits.max_queued_per_contact;
                if tm.store.queued_count(recipient.as_str())? >= max {
                    let text = format!(
                        "{recipient} is offline and already has {max} messages waiting; the message was not delivered."
                    );
                    vec![refuse(
                        &mut record,
                        ErrorType::Wait,
                        "resource-constraint",
                        text,
                    )]
                } else {
                    record.queued = true;
                    tm.store.enqueue(
                        recipient.as_str(),
                        seq,
                        &conv,
                        to_string(&relayed).as_bytes(),
                    )?;
                    info!(seq, "held until the contact comes online");
                    vec![]
                }
            }
        },
        Gate::Online => vec![relayed],
    };
    tm.store.put_message(&conv, seq, &record)?;
    debug!(
        seq,
        state = if record.failed.is_some() {
            "failed"
        } else {
            "sent"
        },
        "recorded"
    );
    Ok(out)
}

pub fn on_ack(tm: &mut Tidemark, route: &Route, kind: AckKind, id: &str, now: Millis) -> Out {
    // The acknowledging side is the recipient of the original message; the
    // ack travels to the original sender.
    let reader = route.from.to_bare();
    let sender = route.to.to_bare();
    let conv = ConversationKey::direct(reader.as_str(), sender.as_str());
    let Some((seq, mut record)) = tm.store.find_message(&conv, sender.as_str(), id)? else {
        debug!(id, "ack for an unknown message ignored");
        return Ok(vec![]);
    };
    // Only the recipient of a message can acknowledge it.
    if record.recipient != reader.as_str() || record.failed.is_some() {
        debug!(id, "ack from someone who is not the recipient ignored");
        return Ok(vec![]);
    }
    let evidence = match kind {
        AckKind::Receipt | AckKind::ReceivedMarker => {
            if record.delivered_at.is_some() {
                // A receipt per resource (XEP-0184 §5.3): the first one counts.
                return Ok(vec![]);
            }
            record.delivered_at = Some(now);
            tm.store.put_message(&conv, seq, &record)?;
            return Ok(send_ack(tm, route, &record, Evidence::Delivered));
        }
        AckKind::Displayed | AckKind::Acknowledged => Evidence::Read,
    };
    // XEP-0333 §3.2: a displayed marker covers every earlier message of the
    // conversation, so one forward move of the reader's tidemark records it.
    if !tm.store.advance_mark(&conv, reader.as_str(), seq, now)? {
        debug!(id, "marker for a message already read ignored");
        return Ok(vec![]);
    }
    Ok(send_ack(tm, route, &record, evidence))
}

fn send_ack(
    tm: &mut Tidemark,
    route: &Route,
    record: &MessageRecord,
    evidence: Evidence,
) -> Vec<Element> {
    let payloads = payloads_for_sender(record, evidence);
    if payloads.is_empty() {
        return vec![];
    }
    let from = tm.addrs.tracked_full(&route.from).to_string();
    let id = tm.local_id();
    vec![ack_message(&from, route.to.as_str(), &id, payloads)]
}

/// An error from the contact's side (their server or client) for a message:
/// the message failed, with the condition and text they gave.
pub fn on_bounce(tm: &mut Tidemark, stanza: &Element, route: &Route, now: Millis) -> Out {
    if let Some(id) = stanza.attr("id") {
        let reader = route.from.to_bare();
        let sender = route.to.to_bare();
        let conv = ConversationKey::direct(reader.as_str(), sender.as_str());
        if let Some((seq, mut record)) = tm.store.find_message(&conv, sender.as_str(), id)? {
            let unanswered = record.delivered_at.is_none()
                && record.failed.is_none()
                && tm.store.mark(&conv, reader.as_str())? < seq;
            if record.recipient == reader.as_str() && unanswered {
                let (condition, text) = read_error(stanza);
                info!(id, %condition, "message failed");
                record.failed = Some(Failure {
                    at: now,
                    condition,
                    text,
                });
                tm.store.put_message(&conv, seq, &record)?;
            }
        }
    }
    Ok(vec![tm.relay(stanza, route)])
}

/// Chat states and other content-free messages: relayed untracked, and only
/// where the contact lets the sender see their presence.
pub fn on_passthrough(tm: &mut Tidemark, stanza: &Element, route: &Route) -> Out {
    let allowed = presence::gate(
        tm,
        route.from.to_bare().as_str(),
        route.to.to_bare().as_str(),
    )?;
    Ok(match allowed {
        Gate::NotPermitted => vec![],
        _ => vec![tm.relay(stanza, route)],
    })
}
