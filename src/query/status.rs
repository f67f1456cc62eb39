//! The status query (`urn:tidemark:status:0`, xep/status.md): per-recipient
//! state and times of one message, for its sender only.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use crate::context::Context;
use crate::stanza::{DefinedCondition, ErrorType, StanzaError, element, ns, stanza_error};
use crate::status::{derive, not_reported, not_reported_element, recipient_element};
use crate::store::{ConversationKey, StoreError};

pub fn answer(
    cx: &Context,
    asker: &Jid,
    conversation: Option<&str>,
    id: Option<&str>,
) -> Result<Result<Element, StanzaError>, StoreError> {
    let (Some(conversation), Some(id)) = (conversation, id) else {
        return Ok(Err(stanza_error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "<status/> needs both a conversation and an id attribute",
        )));
    };
    let not_found = || {
        stanza_error(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            format!("no message {id:?} of yours in conversation {conversation}"),
        )
    };
    let Ok(conv_jid) = Jid::new(conversation) else {
        return Ok(Err(stanza_error(
            ErrorType::Modify,
            DefinedCondition::JidMalformed,
            format!("conversation {conversation:?} is not an XMPP address"),
        )));
    };
    if let Some((room, None)) = cx
        .addrs
        .room_of(&conv_jid)
        .filter(|_| cx.addrs.desk_of(&conv_jid).is_none())
    {
        let asker = asker.to_bare();
        return crate::conversation::room::status(cx, asker.as_str(), &room, id);
    }
    // The sender whose message is asked about, and the other party. At a
    // desk (issue 11) a customer asks about their own messages at the
    // desk's address, and any agent about the desk's at a conversation's.
    let (sender, contact) = match cx.addrs.desk_of(&conv_jid) {
        Some(target) => {
            let Ok(desk_jid) = cx.addrs.desk_address(&target.desk) else {
                return Ok(Err(not_found()));
            };
            match target.customer {
                None => (asker.to_bare().to_string(), desk_jid.to_string()),
                Some(customer) => {
                    let agent = cx
                        .config
                        .desks
                        .iter()
                        .any(|d| d.name == target.desk && d.is_agent(asker.to_bare().as_str()));
                    if !agent {
                        return Ok(Err(stanza_error(
                            ErrorType::Auth,
                            DefinedCondition::Forbidden,
                            format!("only the agents of {} may ask here", target.desk),
                        )));
                    }
                    (desk_jid.to_string(), customer.to_string())
                }
            }
        }
        None => {
            let Ok(contact) = cx.addrs.contact_of(&conv_jid) else {
                return Ok(Err(not_found()));
            };
            (asker.to_bare().to_string(), contact.to_bare().to_string())
        }
    };
    let conv = ConversationKey::direct(&sender, &contact);
    let Some((seq, record)) = cx.store.find_message(&conv, &sender, id)? else {
        if cx.store.find_message(&conv, &contact, id)?.is_some() {
            return Ok(Err(stanza_error(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "only the sender of a message may ask for its status",
            )));
        }
        return Ok(Err(not_found()));
    };
    let read_at = if record.readable {
        cx.store.read_at(&conv, &record.recipient, seq)?
    } else {
        None
    };
    let status = derive(&record, read_at);
    let mut payload = element(
        "status",
        ns::STATUS,
        &[
            ("conversation", conv_jid.to_bare().as_str()),
            ("id", id),
            ("summary", status.state.as_str()),
        ],
    );
    let mut recipient = recipient_element(&status);
    let clients = cx.clients.of(&record.recipient);
    for n in not_reported(&status, record.readable, clients) {
        recipient.append_child(not_reported_element(&n));
    }
    payload.append_child(recipient);
    Ok(Ok(payload))
}
