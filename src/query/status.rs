//! The status query (`urn:tidemark:status:0`, xep/status.md): per-recipient
//! state and times of one message, for its sender only.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use super::QueryError;
use crate::service::Tidemark;
use crate::stanza::{ErrorType, element, ns};
use crate::status::{derive, recipient_element};
use crate::store::{ConversationKey, StoreError};

fn error(type_: ErrorType, condition: &'static str, text: impl Into<String>) -> QueryError {
    QueryError {
        type_,
        condition,
        text: text.into(),
    }
}

pub fn answer(
    tm: &Tidemark,
    asker: &Jid,
    conversation: Option<&str>,
    id: Option<&str>,
) -> Result<Result<Element, QueryError>, StoreError> {
    let (Some(conversation), Some(id)) = (conversation, id) else {
        return Ok(Err(error(
            ErrorType::Modify,
            "bad-request",
            "<status/> needs both a conversation and an id attribute",
        )));
    };
    let not_found = || {
        error(
            ErrorType::Cancel,
            "item-not-found",
            format!("no message {id:?} of yours in conversation {conversation}"),
        )
    };
    let Ok(conv_jid) = Jid::new(conversation) else {
        return Ok(Err(error(
            ErrorType::Modify,
            "jid-malformed",
            format!("conversation {conversation:?} is not an XMPP address"),
        )));
    };
    let Ok(contact) = tm.addrs.contact_of(&conv_jid) else {
        return Ok(Err(not_found()));
    };
    let asker = asker.to_bare();
    let contact = contact.to_bare();
    let conv = ConversationKey::direct(asker.as_str(), contact.as_str());
    let Some((seq, record)) = tm.store.find_message(&conv, asker.as_str(), id)? else {
        if tm
            .store
            .find_message(&conv, contact.as_str(), id)?
            .is_some()
        {
            return Ok(Err(error(
                ErrorType::Auth,
                "forbidden",
                "only the sender of a message may ask for its status",
            )));
        }
        return Ok(Err(not_found()));
    };
    let read_at = if record.readable {
        tm.store.read_at(&conv, &record.recipient, seq)?
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
    payload.append_child(recipient_element(&status));
    Ok(Ok(payload))
}
