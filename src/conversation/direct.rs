//! 1:1 chat through tracked addresses: relay with status tracking, the
//! presence gate, receipts and markers, and errors coming back.

use std::collections::{HashMap, VecDeque};

use minidom::Element;
use tracing::{debug, info};

use crate::config::OfflinePolicy;
use crate::context::Context;
use crate::incoming::{AckKind, Bounce, Chat, Route};
use crate::metrics::{METRICS, Refusal};
use crate::presence::{self, Gate, PresenceBook};
use crate::stanza::{
    DefinedCondition, ErrorType, condition_name, element, ns, set_attr, to_string,
};
use crate::status::acks::{Evidence, ack_message, payloads_for_sender, request_acks_as};
use crate::status::private_mark::private_reader;
use crate::store::preview;
use crate::store::{ConversationKey, Failure, MessageRecord, Millis, StoreError, Write};

type Out = Result<Vec<Element>, StoreError>;

/// A message that arrived while its recipient's presence was unknown.
#[derive(Debug)]
struct WaitingChat {
    chat: Chat<'static>,
    arrived: Millis,
}

/// Messages held in memory until their recipients' presence is known after
/// a (re)connect, in arrival order per recipient.
#[derive(Debug, Default)]
pub struct Waiting {
    by_contact: HashMap<String, VecDeque<WaitingChat>>,
    total: usize,
}

impl Waiting {
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The recipients that have messages waiting.
    pub fn contacts(&self) -> Vec<String> {
        self.by_contact.keys().cloned().collect()
    }
}

/// The recipient's presence is known now: the messages that waited for it
/// are handled as if they had just arrived (delivered, queued or refused),
/// oldest first, with the time they really arrived.
pub fn release_waiting(
    cx: &mut Context,
    book: &PresenceBook,
    waiting: &mut Waiting,
    contact: &str,
    now: Millis,
) -> Out {
    let Some(held) = waiting.by_contact.remove(contact) else {
        return Ok(vec![]);
    };
    waiting.total -= held.len();
    info!(
        count = held.len(),
        contact, "presence known; handling waiting messages"
    );
    let mut out = Vec::new();
    for w in held {
        out.extend(on_chat(cx, book, waiting, &w.chat, w.arrived.min(now))?);
    }
    Ok(out)
}

pub fn on_chat(
    cx: &mut Context,
    book: &PresenceBook,
    waiting: &mut Waiting,
    chat: &Chat,
    now: Millis,
) -> Out {
    let sender = chat.route.from.to_bare();
    let recipient = chat.route.to.to_bare();
    let tracked_recipient = chat.route.tracked_to.to_string();
    if sender == recipient {
        // A conversation has two parties; the store refuses a message to
        // oneself, so it is refused here, with a reason, before anything.
        METRICS.refused(Refusal::Gate);
        return Ok(vec![chat.origin.error(
            &tracked_recipient,
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            &format!("{tracked_recipient} is your own tracked address; message someone else"),
        )]);
    }
    let limit = cx.config.limits.max_body_bytes;
    if chat.body_bytes > limit {
        // Refused before anything is recorded: bad input changes nothing.
        return Ok(vec![chat.origin.error(
            &tracked_recipient,
            ErrorType::Modify,
            DefinedCondition::PolicyViolation,
            &format!(
                "the message body is {} bytes; this service accepts at most {limit} bytes",
                chat.body_bytes
            ),
        )]);
    }

    let gate = presence::gate(cx, book, sender.as_str(), recipient.as_str())?;
    if gate == Gate::Unknown {
        // Nothing is recorded yet: the message is handled when the
        // recipient's presence is known, as if it arrived then.
        return Ok(wait_for_presence(
            cx,
            waiting,
            chat,
            &tracked_recipient,
            now,
        ));
    }

    let seq = cx.store.next_seq()?;
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
        readable: chat.has_body || cx.config.status.attachments_get_read_status,
        queued: false,
    };

    let refuse = |record: &mut MessageRecord, type_, condition: DefinedCondition, text: String| {
        record.failed = Some(Failure {
            at: now,
            condition: condition_name(&condition),
            text: text.clone(),
        });
        chat.origin
            .error(&tracked_recipient, type_, condition, &text)
    };

    let mut relayed = cx.relay(&chat.message, &chat.route);
    set_attr(&mut relayed, "id", id.as_str());
    request_acks_as(
        &mut relayed,
        record.readable,
        cx.clients.of(recipient.as_str()),
    );

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
                DefinedCondition::ServiceUnavailable,
                text,
            )]
        }
        Gate::Offline => match cx.config.presence.offline {
            OfflinePolicy::Reject => {
                let text = format!("{recipient} is offline; the message was not delivered.");
                vec![refuse(
                    &mut record,
                    ErrorType::Cancel,
                    DefinedCondition::RecipientUnavailable,
                    text,
                )]
            }
            OfflinePolicy::Queue => {
                let max = cx.config.limits.max_queued_per_contact;
                if cx.queued_count(recipient.as_str())? >= max {
                    let text = format!(
                        "{recipient} is offline and already has {max} messages waiting; the message was not delivered."
                    );
                    vec![refuse(
                        &mut record,
                        ErrorType::Wait,
                        DefinedCondition::ResourceConstraint,
                        text,
                    )]
                } else {
                    record.queued = true;
                    cx.write(Write::Enqueue {
                        recipient: recipient.to_string(),
                        seq,
                        conv: conv.clone(),
                        stanza: to_string(&relayed).into_bytes(),
                    });
                    info!(seq, "held until the contact comes online");
                    vec![]
                }
            }
        },
        // Handled above; kept in one arm with Online so that no input can
        // reach a panic here.
        Gate::Online | Gate::Unknown => vec![relayed],
    };
    // Issue 9: the start of the text for the `status` command's rows, kept
    // with the message, and only when the admin asks (status.preview_chars).
    let body = chat.message.children().find(|c| c.name() == "body");
    let kept_text = body.and_then(|b| preview(&b.text(), cx.config.status.preview_chars));
    let preview_conv = kept_text.as_ref().map(|_| conv.clone());
    if record.failed.is_some() {
        METRICS.refused(Refusal::Gate);
        // Kept for the sender's status query, newest few only: a flood of
        // refused messages must not grow the store.
        debug!(seq, state = "failed", "recorded");
        let keep = cx.config.limits.max_refusals_per_sender;
        cx.write(Write::RefusedMessage {
            conv,
            seq,
            record,
            keep,
        });
    } else {
        debug!(seq, state = "sent", "recorded");
        cx.write(Write::Message { conv, seq, record });
    }
    if let (Some(conv), Some(text)) = (preview_conv, kept_text) {
        cx.write(Write::Preview { conv, seq, text });
    }
    METRICS.status_recorded();
    Ok(out)
}

/// Holds a message until its recipient's presence is known, within
/// `limits.max_waiting_for_presence` (all recipients together); over it the
/// sender is told to retry, and nothing is kept.
fn wait_for_presence(
    cx: &Context,
    waiting: &mut Waiting,
    chat: &Chat,
    tracked_recipient: &str,
    now: Millis,
) -> Vec<Element> {
    let max = cx.config.limits.max_waiting_for_presence;
    if waiting.total >= max {
        METRICS.refused(Refusal::Gate);
        return vec![chat.origin.error(
            tracked_recipient,
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            &format!(
                "tidemark has just reconnected and {max} messages already wait for their recipients' presence (limits.max_waiting_for_presence); the message was not processed, send it again in a few seconds"
            ),
        )];
    }
    debug!("recipient's presence unknown; waiting for their probe answer");
    waiting
        .by_contact
        .entry(chat.route.to.to_bare().to_string())
        .or_default()
        .push_back(WaitingChat {
            chat: chat.clone().into_owned(),
            arrived: now,
        });
    waiting.total += 1;
    vec![]
}

pub fn on_ack(cx: &mut Context, route: &Route, kind: AckKind, id: &str, now: Millis) -> Out {
    // The acknowledging side is the recipient of the original message; the
    // ack travels to the original sender.
    let reader = route.from.to_bare();
    let sender = route.to.to_bare();
    let conv = ConversationKey::direct(reader.as_str(), sender.as_str());
    let Some((seq, mut record)) = cx.store.find_message(&conv, sender.as_str(), id)? else {
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
            METRICS.status_recorded();
            let out = send_ack(cx, route, &record, Evidence::Delivered, now);
            cx.write(Write::Message { conv, seq, record });
            return Ok(out);
        }
        AckKind::Displayed | AckKind::Acknowledged => Evidence::Read,
    };
    // A reader who turned read receipts off still clears their own unread
    // state (a private tidemark), and nobody learns that they read anything.
    // For everyone else the shared tidemark is their own too: one write.
    if !cx.sends_read_receipts(reader.as_str())? {
        cx.write(Write::Mark {
            conv,
            reader: private_reader(reader.as_str()),
            seq,
            at: now,
        });
        return Ok(vec![]);
    }
    // XEP-0333 §3.2: a displayed marker covers every earlier message of the
    // conversation, so one forward move of the reader's tidemark records it.
    if cx.store.mark(&conv, reader.as_str())? >= seq {
        debug!(id, "marker for a message already read ignored");
        return Ok(vec![]);
    }
    cx.write(Write::Mark {
        conv,
        reader: reader.to_string(),
        seq,
        at: now,
    });
    METRICS.status_recorded();
    Ok(send_ack(cx, route, &record, evidence, now))
}

fn send_ack(
    cx: &mut Context,
    route: &Route,
    record: &MessageRecord,
    evidence: Evidence,
    now: Millis,
) -> Vec<Element> {
    let payloads = payloads_for_sender(record, evidence);
    if payloads.is_empty() {
        return vec![];
    }
    let id = cx.local_id(now);
    vec![ack_message(&route.tracked_from, &route.to, &id, payloads)]
}

/// An error from the contact's side (their server or client) for a message:
/// the message failed, with the condition and text they gave.
///
/// An error is relayed only for a message the erring side really received
/// from the one it goes to, and only as an error (id, type, `<error/>`):
/// anyone can send `type='error'`, and a body in it would otherwise reach a
/// user who never authorised the sender.
pub fn on_bounce(cx: &mut Context, bounce: &Bounce, now: Millis) -> Out {
    let route = &bounce.route;
    let Some(id) = bounce.id.as_deref() else {
        METRICS.refused(Refusal::Gate);
        debug!("error without an id dropped");
        return Ok(vec![]);
    };
    let reader = route.from.to_bare();
    let sender = route.to.to_bare();
    let conv = ConversationKey::direct(reader.as_str(), sender.as_str());
    let found = cx.store.find_message(&conv, sender.as_str(), id)?;
    let Some((seq, mut record)) = found.filter(|(_, r)| {
        // Relayed to the erring side: not refused by tidemark, not still held.
        r.recipient == reader.as_str() && r.failed.is_none() && !r.queued
    }) else {
        METRICS.refused(Refusal::Gate);
        debug!(id, "error for no message the sender sent there dropped");
        return Ok(vec![]);
    };
    let unanswered = record.delivered_at.is_none() && cx.store.mark(&conv, reader.as_str())? < seq;
    if unanswered {
        info!(id, condition = %bounce.condition, "message failed");
        record.failed = Some(Failure {
            at: now,
            condition: bounce.condition.clone(),
            text: bounce.text.clone(),
        });
        cx.write(Write::Message { conv, seq, record });
        METRICS.status_recorded();
    }
    let mut out = element(
        "message",
        ns::COMPONENT,
        &[
            ("from", route.tracked_from.as_str()),
            ("to", route.to.as_str()),
            ("type", "error"),
            ("id", id),
        ],
    );
    if let Some(error) = &bounce.error {
        out.append_child(error.clone());
    }
    Ok(vec![out])
}

/// Chat states and other content-free messages: relayed untracked, and only
/// where the contact lets the sender see their presence.
pub fn on_passthrough(cx: &Context, book: &PresenceBook, route: &Route, message: &Element) -> Out {
    let allowed = presence::gate(
        cx,
        book,
        route.from.to_bare().as_str(),
        route.to.to_bare().as_str(),
    )?;
    Ok(match allowed {
        Gate::NotPermitted => {
            METRICS.refused(Refusal::Gate);
            vec![]
        }
        _ => vec![cx.relay(message, route)],
    })
}
