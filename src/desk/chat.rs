//! Messages through a desk (xep/desk.md §4.2, §4.3): a customer's to the
//! agents who should see it, an agent's to the customer, and the receipts
//! and markers of each back to the other side. Customers only ever see the
//! desk's address; agents see one address per customer.

use minidom::Element;
use tracing::{debug, info};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::nick::Nick;

use super::{At, Desks, Out, events};
use crate::config::{Assignment, OfflinePolicy};
use crate::context::Context;
use crate::incoming::{AckKind, Bounce, Chat, Route};
use crate::metrics::{METRICS, Refusal};
use crate::stanza::{
    DefinedCondition, ErrorType, condition_name, element, ns, set_attr, to_string,
};
use crate::status::acks::{Evidence, ack_message, payloads_for_sender, request_acks_as};
use crate::status::private_mark::private_reader;
use crate::store::desk::{BY_AUTOMATION, BY_CUSTOMER};
use crate::store::{
    ConversationKey, DeskConversation, DeskEventKind, DeskState, Failure, MessageRecord, Millis,
    Write,
};

fn record_for(
    cx: &Context,
    chat: &Chat,
    id: String,
    sender: &str,
    recipient: &str,
    now: Millis,
) -> MessageRecord {
    MessageRecord {
        id,
        sender: sender.to_owned(),
        recipient: recipient.to_owned(),
        sent_at: now,
        delivered_at: None,
        failed: None,
        wants_receipt: chat.wants_receipt,
        wants_markers: chat.wants_markers,
        readable: chat.has_body || cx.config.status.attachments_get_read_status,
        queued: false,
    }
}

fn too_long(cx: &Context, chat: &Chat, own: &str) -> Option<Element> {
    let limit = cx.config.limits.max_body_bytes;
    (chat.body_bytes > limit).then(|| {
        chat.origin.error(
            own,
            ErrorType::Modify,
            DefinedCondition::PolicyViolation,
            &format!(
                "the message body is {} bytes; this service accepts at most {limit} bytes",
                chat.body_bytes
            ),
        )
    })
}

/// `message` re-addressed from `from` to `to` under `id`, asking for what
/// the recipient's clients can say.
fn readdressed(
    cx: &Context,
    message: &Element,
    from: &str,
    to: &str,
    id: &str,
    readable: bool,
) -> Element {
    let mut out = message.clone();
    set_attr(&mut out, "from", from);
    set_attr(&mut out, "to", to);
    set_attr(&mut out, "id", id);
    request_acks_as(&mut out, readable, cx.clients.of(to));
    out
}

/// What agents call a customer's conversation: "dan (support)".
pub fn conversation_name(desk: &str, customer: &BareJid) -> String {
    let who = customer
        .node()
        .map_or_else(|| customer.to_string(), |n| n.to_string());
    format!("{who} ({desk})")
}

/// The agents a customer's message goes to now: the assignee if available,
/// else every available agent.
fn recipients(desks: &Desks, at: &At, conv: &DeskConversation) -> Vec<String> {
    if let Some(a) = &conv.assignee
        && desks.agents.is_available(a)
    {
        return vec![a.clone()];
    }
    desks
        .agents
        .available(at.desk)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The next available agent after the last one round-robin chose.
fn next_in_turn(desks: &mut Desks, at: &At) -> Option<String> {
    let agents = &at.desk.agents;
    let start = desks.round_robin.get(&at.desk.name).copied().unwrap_or(0);
    for k in 0..agents.len() {
        let i = (start + k) % agents.len();
        if desks.agents.is_available(agents[i].as_str()) {
            desks.round_robin.insert(at.desk.name.clone(), i + 1);
            return Some(agents[i].to_string());
        }
    }
    None
}

/// Whether `customer` may open a new conversation now: one server's users
/// share a budget (a server can make up any number of JIDs, and each new
/// conversation reaches every available agent). The desk's own server's
/// users are its admin's to answer for.
fn may_open(cx: &Context, desks: &mut Desks, customer: &BareJid, now: Millis) -> bool {
    let domain = customer.domain().as_str();
    domain == crate::config::own_server_domain(&cx.config.component.jid)
        || desks.openings.allow(domain, now)
}

/// A customer writes to the desk.
pub fn from_customer(
    cx: &mut Context,
    desks: &mut Desks,
    at: &At,
    chat: &Chat,
    now: Millis,
) -> Out {
    let customer = chat.route.from.to_bare();
    let desk_jid = at.jid.as_str();
    if let Some(e) = too_long(cx, chat, desk_jid) {
        return Ok(vec![e]);
    }
    let from = match cx.addrs.desk_conversation(&at.desk.name, &customer) {
        Ok(a) => a,
        Err(e) => {
            return Ok(vec![chat.origin.error(
                desk_jid,
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                &e.to_string(),
            )]);
        }
    };
    let seq = cx.store.next_seq()?;
    let id = chat.id.clone().unwrap_or_else(|| format!("tidemark-{seq}"));
    let mut record = record_for(cx, chat, id.clone(), customer.as_str(), desk_jid, now);
    let stored = cx
        .store
        .desk_conversation(&at.desk.name, customer.as_str())?;
    if stored.is_none() && !may_open(cx, desks, &customer, now) {
        METRICS.refused(Refusal::RateLimit);
        return Ok(vec![chat.origin.error(
            desk_jid,
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            &format!(
                "{} is taking too many new conversations from {} just now; try again in a minute.",
                at.desk.name,
                customer.domain()
            ),
        )]);
    }
    let mut conv = stored.clone().unwrap_or_else(|| DeskConversation {
        customer: customer.to_string(),
        opened_at: now,
        ..DeskConversation::default()
    });
    let before = conv.assignee.clone();
    let mut shown = Vec::new();
    let mut happened: Vec<(DeskEventKind, &str)> = Vec::new();
    if stored.is_none() {
        happened.push((DeskEventKind::Opened, BY_CUSTOMER));
    }
    match conv.state {
        DeskState::Done => {
            conv.state = DeskState::Open;
            happened.push((DeskEventKind::Reopened, BY_CUSTOMER));
        }
        DeskState::Snoozed { until } => {
            conv.state = DeskState::Open;
            desks
                .snoozes
                .remove(&(until, at.desk.name.clone(), customer.to_string()));
            happened.push((DeskEventKind::Unsnoozed, BY_CUSTOMER));
        }
        DeskState::Open | DeskState::Pending => {}
    }
    if conv.assignee.is_none()
        && at.desk.assignment == Assignment::RoundRobin
        && let Some(agent) = next_in_turn(desks, at)
    {
        conv.assignee = Some(agent.clone());
        happened.push((DeskEventKind::Assigned { to: agent }, BY_AUTOMATION));
    }
    for (kind, by) in happened {
        let event = events::now(now, by, kind);
        shown.extend(events::record(
            cx,
            desks,
            at,
            customer.as_str(),
            before.as_deref(),
            conv.assignee.as_deref(),
            event,
        )?);
    }
    conv.latest = seq;
    conv.latest_at = now;
    conv.customer_latest = seq;

    let to = recipients(desks, at, &conv);
    let mut relayed = readdressed(
        cx,
        &chat.message,
        from.as_str(),
        desk_jid,
        &id,
        record.readable,
    );
    // The conversation's name (XEP-0172 §4.5), ours rather than one a
    // stranger chose: agents see "dan (support)", not the escaped address.
    while relayed.remove_child("nick", ns::NICK).is_some() {}
    relayed.append_child(Nick(conversation_name(&at.desk.name, &customer)).into());
    let conv_key = ConversationKey::direct(customer.as_str(), desk_jid);
    let mut out = shown;
    if to.is_empty() {
        match cx.config.presence.offline {
            OfflinePolicy::Reject => {
                let text = format!(
                    "No agent of {} is available; the message was not delivered.",
                    at.desk.name
                );
                METRICS.refused(Refusal::Gate);
                record.failed = Some(Failure {
                    at: now,
                    condition: condition_name(&DefinedCondition::RecipientUnavailable),
                    text: text.clone(),
                });
                out.push(chat.origin.error(
                    desk_jid,
                    ErrorType::Cancel,
                    DefinedCondition::RecipientUnavailable,
                    &text,
                ));
                let keep = cx.config.limits.max_refusals_per_sender;
                cx.write(Write::RefusedMessage {
                    conv: conv_key,
                    seq,
                    record,
                    keep,
                });
            }
            OfflinePolicy::Queue => {
                let max = cx.config.limits.max_queued_per_contact;
                if cx.queued_count(desk_jid)? >= max {
                    let text = format!(
                        "No agent of {} is available and {max} messages already wait; the message was not delivered.",
                        at.desk.name
                    );
                    out.push(chat.origin.error(
                        desk_jid,
                        ErrorType::Wait,
                        DefinedCondition::ResourceConstraint,
                        &text,
                    ));
                    return Ok(out);
                }
                record.queued = true;
                set_attr(&mut relayed, "to", desk_jid);
                cx.write(Write::Enqueue {
                    recipient: desk_jid.to_owned(),
                    seq,
                    conv: conv_key.clone(),
                    stanza: to_string(&relayed).into_bytes(),
                });
                info!(seq, desk = %at.desk.name, "held until an agent is available");
                cx.write(Write::Message {
                    conv: conv_key,
                    seq,
                    record,
                });
            }
        }
    } else {
        for agent in &to {
            let mut copy = relayed.clone();
            set_attr(&mut copy, "to", agent.as_str());
            out.push(copy);
        }
        cx.write(Write::Message {
            conv: conv_key,
            seq,
            record,
        });
    }
    cx.write(Write::DeskConversation {
        desk: at.desk.name.clone(),
        conv,
    });
    METRICS.status_recorded();
    Ok(out)
}

/// Messages held while no agent was available go out to the agents
/// available now (`presence.offline = "queue"`).
pub fn release_held(cx: &mut Context, desks: &Desks, at: &At, _now: Millis) -> Out {
    let desk_jid = at.jid.as_str();
    let held = cx.store.queued(desk_jid)?;
    if held.is_empty() {
        return Ok(vec![]);
    }
    cx.write(Write::Dequeue {
        recipient: desk_jid.to_owned(),
        seqs: held.iter().map(|q| q.seq).collect(),
    });
    let mut out = Vec::new();
    for q in held {
        let Some(stanza) = std::str::from_utf8(&q.stanza)
            .ok()
            .and_then(|s| s.parse::<Element>().ok())
        else {
            tracing::error!(seq = q.seq, "held desk message is corrupt; dropped");
            continue;
        };
        let Some(mut record) = cx.store.message(&q.conv, q.seq)? else {
            continue;
        };
        let conv = cx
            .store
            .desk_conversation(&at.desk.name, &record.sender)?
            .unwrap_or_default();
        for agent in recipients(desks, at, &conv) {
            let mut copy = stanza.clone();
            set_attr(&mut copy, "to", agent.as_str());
            out.push(copy);
        }
        record.queued = false;
        cx.write(Write::Message {
            conv: q.conv,
            seq: q.seq,
            record,
        });
    }
    info!(count = out.len(), desk = %at.desk.name, "delivered held desk messages");
    Ok(out)
}

/// An agent writes in a customer's conversation.
pub fn from_agent(cx: &mut Context, at: &At, customer: &BareJid, chat: &Chat, now: Millis) -> Out {
    let agent = chat.route.from.to_bare().to_string();
    let own = chat.route.tracked_to.to_string();
    if !at.desk.is_agent(&agent) {
        METRICS.refused(Refusal::Gate);
        return Ok(vec![chat.origin.error(
            &own,
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            &format!("only the agents of {} write here", at.desk.name),
        )]);
    }
    if let Some(e) = too_long(cx, chat, &own) {
        return Ok(vec![e]);
    }
    let Some(conv) = cx
        .store
        .desk_conversation(&at.desk.name, customer.as_str())?
    else {
        return Ok(vec![chat.origin.error(
            &own,
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            &format!("{customer} has not written to {}", at.desk.name),
        )]);
    };
    let desk_jid = at.jid.as_str();
    let seq = cx.store.next_seq()?;
    let id = chat.id.clone().unwrap_or_else(|| format!("tidemark-{seq}"));
    let record = record_for(cx, chat, id.clone(), desk_jid, customer.as_str(), now);
    let relayed = readdressed(
        cx,
        &chat.message,
        desk_jid,
        customer.as_str(),
        &id,
        record.readable,
    );
    record_agent_message(cx, at, conv, seq, record, &agent, now);
    Ok(vec![relayed])
}

/// An agent's message to the customer (`record`, sequence `seq`): kept with
/// who wrote it, and the conversation moved on. Answering means the desk
/// has read what came before.
fn record_agent_message(
    cx: &mut Context,
    at: &At,
    mut conv: DeskConversation,
    seq: crate::store::Seq,
    record: MessageRecord,
    agent: &str,
    now: Millis,
) {
    cx.write(Write::DeskAuthor {
        desk: at.desk.name.clone(),
        customer: conv.customer.clone(),
        seq,
        agent: agent.to_owned(),
    });
    cx.write(Write::Message {
        conv: ConversationKey::direct(&conv.customer, at.jid.as_str()),
        seq,
        record,
    });
    conv.latest = seq;
    conv.latest_at = now;
    conv.read_upto = conv.read_upto.max(conv.customer_latest);
    cx.write(Write::DeskConversation {
        desk: at.desk.name.clone(),
        conv,
    });
    METRICS.status_recorded();
}

/// An agent's client acknowledges a customer's message: delivered at the
/// first receipt of any agent, read at the first displayed marker; both go
/// on to the customer from the desk.
pub fn agent_ack(
    cx: &mut Context,
    at: &At,
    customer: &BareJid,
    route: &Route,
    kind: AckKind,
    id: &str,
    now: Millis,
) -> Out {
    let agent = route.from.to_bare();
    if !at.desk.is_agent(agent.as_str()) {
        debug!(id, "ack from someone who is no agent of the desk ignored");
        return Ok(vec![]);
    }
    let desk_jid = at.jid.as_str();
    let conv_key = ConversationKey::direct(customer.as_str(), desk_jid);
    let Some((seq, record)) = cx.store.find_message(&conv_key, customer.as_str(), id)? else {
        debug!(id, "ack for an unknown message ignored");
        return Ok(vec![]);
    };
    if record.failed.is_some() {
        return Ok(vec![]);
    }
    let to = Jid::from(customer.clone());
    let from = Jid::from(at.jid.clone());
    let evidence = match kind {
        AckKind::Receipt | AckKind::ReceivedMarker => {
            return Ok(match first_receipt(cx, conv_key, seq, record, now) {
                Some(payloads) => ack(cx, &from, &to, payloads, now),
                None => vec![],
            });
        }
        AckKind::Displayed | AckKind::Acknowledged => Evidence::Read,
    };
    if cx.store.mark(&conv_key, desk_jid)? >= seq {
        return Ok(vec![]);
    }
    cx.write(Write::Mark {
        conv: conv_key,
        reader: desk_jid.to_owned(),
        seq,
        at: now,
    });
    if let Some(mut conv) = cx
        .store
        .desk_conversation(&at.desk.name, customer.as_str())?
    {
        conv.read_upto = conv.read_upto.max(seq);
        cx.write(Write::DeskConversation {
            desk: at.desk.name.clone(),
            conv,
        });
    }
    METRICS.status_recorded();
    let payloads = payloads_for_sender(&record, evidence);
    Ok(ack(cx, &from, &to, payloads, now))
}

/// The first receipt for `record` (any resource's, XEP-0184 §5.3),
/// recorded; what its sender asked to be told, or `None` for a receipt
/// after the first.
fn first_receipt(
    cx: &mut Context,
    conv: ConversationKey,
    seq: crate::store::Seq,
    mut record: MessageRecord,
    now: Millis,
) -> Option<Vec<Element>> {
    if record.delivered_at.is_some() {
        return None;
    }
    record.delivered_at = Some(now);
    let payloads = payloads_for_sender(&record, Evidence::Delivered);
    cx.write(Write::Message { conv, seq, record });
    METRICS.status_recorded();
    Some(payloads)
}

fn ack(
    cx: &mut Context,
    from: &Jid,
    to: &Jid,
    payloads: Vec<Element>,
    now: Millis,
) -> Vec<Element> {
    if payloads.is_empty() {
        return vec![];
    }
    let id = cx.local_id(now);
    vec![ack_message(from, to, &id, payloads)]
}

/// The customer's client acknowledges one of the desk's messages: recorded,
/// and passed on to the agent who wrote it.
pub fn customer_ack(
    cx: &mut Context,
    at: &At,
    route: &Route,
    kind: AckKind,
    id: &str,
    now: Millis,
) -> Out {
    let customer = route.from.to_bare();
    let desk_jid = at.jid.as_str();
    let conv_key = ConversationKey::direct(customer.as_str(), desk_jid);
    let Some((seq, record)) = cx.store.find_message(&conv_key, desk_jid, id)? else {
        debug!(id, "ack for an unknown desk message ignored");
        return Ok(vec![]);
    };
    if record.recipient != customer.as_str() || record.failed.is_some() {
        return Ok(vec![]);
    }
    let author = cx
        .store
        .desk_author(&at.desk.name, customer.as_str(), seq)?;
    let from = Jid::from(super::conversation_address(cx, at, &customer)?);
    let evidence = match kind {
        AckKind::Receipt | AckKind::ReceivedMarker => {
            return Ok(match first_receipt(cx, conv_key, seq, record, now) {
                Some(payloads) => to_author(cx, &from, author, payloads, now),
                None => vec![],
            });
        }
        AckKind::Displayed | AckKind::Acknowledged => Evidence::Read,
    };
    if !cx.sends_read_receipts(customer.as_str())? {
        cx.write(Write::Mark {
            conv: conv_key,
            reader: private_reader(customer.as_str()),
            seq,
            at: now,
        });
        return Ok(vec![]);
    }
    if cx.store.mark(&conv_key, customer.as_str())? >= seq {
        return Ok(vec![]);
    }
    cx.write(Write::Mark {
        conv: conv_key,
        reader: customer.to_string(),
        seq,
        at: now,
    });
    METRICS.status_recorded();
    let payloads = payloads_for_sender(&record, evidence);
    Ok(to_author(cx, &from, author, payloads, now))
}

fn to_author(
    cx: &mut Context,
    from: &Jid,
    author: Option<String>,
    payloads: Vec<Element>,
    now: Millis,
) -> Vec<Element> {
    let Some(author) = author.and_then(|a| BareJid::new(&a).ok()) else {
        return vec![];
    };
    ack(cx, from, &Jid::from(author), payloads, now)
}

/// An error from the customer's side for one of the desk's messages: it
/// failed, and its author hears of it from the conversation's address.
pub fn customer_bounce(cx: &mut Context, at: &At, bounce: &Bounce, now: Millis) -> Out {
    let Some(id) = bounce.id.as_deref() else {
        return Ok(vec![]);
    };
    let customer = bounce.route.from.to_bare();
    let desk_jid = at.jid.as_str();
    let conv_key = ConversationKey::direct(customer.as_str(), desk_jid);
    let Some((seq, mut record)) = cx.store.find_message(&conv_key, desk_jid, id)? else {
        debug!(id, "error for no message of the desk dropped");
        return Ok(vec![]);
    };
    if record.recipient != customer.as_str() || record.failed.is_some() {
        return Ok(vec![]);
    }
    if record.delivered_at.is_none() && cx.store.mark(&conv_key, customer.as_str())? < seq {
        record.failed = Some(Failure {
            at: now,
            condition: bounce.condition.clone(),
            text: bounce.text.clone(),
        });
        cx.write(Write::Message {
            conv: conv_key,
            seq,
            record,
        });
        METRICS.status_recorded();
    }
    let Some(author) = cx
        .store
        .desk_author(&at.desk.name, customer.as_str(), seq)?
    else {
        return Ok(vec![]);
    };
    let from = super::conversation_address(cx, at, &customer)?;
    let mut out = element(
        "message",
        ns::COMPONENT,
        &[
            ("from", from.as_str()),
            ("to", author.as_str()),
            ("type", "error"),
            ("id", id),
        ],
    );
    if let Some(error) = &bounce.error {
        out.append_child(error.clone());
    }
    Ok(vec![out])
}

/// A customer's chat state (typing...) goes to the agents who would get
/// their message; nothing is recorded.
pub fn customer_chat_state(
    cx: &Context,
    desks: &Desks,
    at: &At,
    route: &Route,
    message: &Element,
) -> Vec<Element> {
    let customer = route.from.to_bare();
    let Ok(Some(conv)) = cx.store.desk_conversation(&at.desk.name, customer.as_str()) else {
        return vec![];
    };
    let Ok(from) = super::conversation_address(cx, at, &customer) else {
        return vec![];
    };
    recipients(desks, at, &conv)
        .into_iter()
        .map(|agent| {
            let mut m = message.clone();
            set_attr(&mut m, "from", from.as_str());
            set_attr(&mut m, "to", agent.as_str());
            m
        })
        .collect()
}

/// An agent's chat state goes to the customer from the desk.
pub fn agent_chat_state(
    cx: &Context,
    at: &At,
    customer: &BareJid,
    route: &Route,
    message: &Element,
) -> Vec<Element> {
    if !at.desk.is_agent(route.from.to_bare().as_str()) {
        return vec![];
    }
    if !matches!(
        cx.store.desk_conversation(&at.desk.name, customer.as_str()),
        Ok(Some(_))
    ) {
        return vec![];
    }
    let mut m = message.clone();
    set_attr(&mut m, "from", at.jid.as_str());
    set_attr(&mut m, "to", customer.as_str());
    vec![m]
}

/// An agent's message chosen from the predefined ones: sent and recorded
/// as if the agent had typed it.
pub fn send_as_agent(
    cx: &mut Context,
    at: &At,
    customer: &BareJid,
    agent: &str,
    text: &str,
    now: Millis,
) -> Out {
    let Some(conv) = cx
        .store
        .desk_conversation(&at.desk.name, customer.as_str())?
    else {
        return Ok(vec![]);
    };
    let desk_jid = at.jid.as_str();
    let seq = cx.store.next_seq()?;
    let id = format!("tidemark-{seq}");
    let mut msg = element(
        "message",
        ns::COMPONENT,
        &[
            ("from", desk_jid),
            ("to", customer.as_str()),
            ("type", "chat"),
            ("id", &id),
        ],
    );
    msg.append_child(crate::stanza::with_text(
        Element::bare("body", ns::COMPONENT),
        text,
    ));
    request_acks_as(&mut msg, true, cx.clients.of(customer.as_str()));
    // tidemark wrote this message itself, asking for receipts and markers.
    let record = MessageRecord::sent(desk_jid, customer.as_str(), &id, now);
    record_agent_message(cx, at, conv, seq, record, agent, now);
    Ok(vec![msg])
}
