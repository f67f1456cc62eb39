//! IQ requests to the service's own domain: service discovery, the XEP-0100
//! gateway prompt, pings, and the status query of `xep/status.md`.

pub mod commands;
pub mod sent;
mod status;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::context::Context;
use crate::conversation::room::Rooms;
use crate::inbox::Inbox;
use crate::incoming::{Origin, ServiceRequest};
use crate::stanza::{DefinedCondition, ErrorType, element, ns, with_text};
use crate::store::{Millis, StoreError};

/// What the service really serves, announced in disco#info (XEP-0030).
pub const FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::COMMANDS,
    ns::MUC,
    ns::GATEWAY,
    ns::PING,
    ns::RECEIPTS,
    ns::CHAT_MARKERS,
    ns::STATUS,
    ns::INBOX,
];

pub fn answer(
    cx: &mut Context,
    rooms: &mut Rooms,
    inbox: &mut Inbox,
    origin: &Origin,
    from: &Jid,
    request: ServiceRequest,
    now: Millis,
) -> Result<Element, StoreError> {
    let own = cx.addrs.domain().to_string();
    Ok(match request {
        ServiceRequest::DiscoInfo { node: Some(_) } => origin.error(
            &own,
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "this service has no disco nodes",
        ),
        ServiceRequest::DiscoInfo { node: None } => {
            origin.result(&own, Some(disco_info(!cx.config.desks.is_empty())))
        }
        ServiceRequest::DiscoItems => origin.result(&own, Some(crate::stanza::no_disco_items())),
        // Hand-built: xmpp-parsers 0.23 has no XEP-0100 jabber:iq:gateway.
        ServiceRequest::GatewayPrompt => {
            let mut q = Element::bare("query", ns::GATEWAY);
            q.append_child(with_text(
                Element::bare("desc", ns::GATEWAY),
                "Enter the XMPP address of the contact you want to chat with; tidemark tracks the status of every message you send them.",
            ));
            q.append_child(with_text(
                Element::bare("prompt", ns::GATEWAY),
                "XMPP address",
            ));
            origin.result(&own, Some(q))
        }
        ServiceRequest::GatewayTranslate { prompt } => match translate(cx, &prompt) {
            Ok(tracked) => {
                // Hand-built: 0.23 has no jabber:iq:gateway (XEP-0100).
                let mut q = Element::bare("query", ns::GATEWAY);
                q.append_child(with_text(Element::bare("jid", ns::GATEWAY), tracked));
                origin.result(&own, Some(q))
            }
            Err(text) => origin.error(&own, ErrorType::Modify, DefinedCondition::BadRequest, &text),
        },
        ServiceRequest::Ping => origin.result(&own, None),
        ServiceRequest::CommandList => origin.result(&own, Some(commands::list(cx))),
        ServiceRequest::Command(cmd) => match commands::execute(cx, rooms, from, cmd, now)? {
            Ok(payload) => origin.result(&own, Some(payload)),
            Err(e) => origin.reply_with_error(&own, e),
        },
        ServiceRequest::Status { conversation, id } => {
            match status::answer(cx, from, conversation.as_deref(), id.as_deref())? {
                Ok(payload) => origin.result(&own, Some(payload)),
                Err(e) => origin.reply_with_error(&own, e),
            }
        }
        ServiceRequest::Inbox(req) => {
            match crate::inbox::protocol::answer(cx, inbox, from, req, now)? {
                Ok(payload) => origin.result(&own, payload),
                Err(e) => origin.reply_with_error(&own, e),
            }
        }
        // Answered by the desk before it gets here; without desks, there
        // is no desk to ask.
        ServiceRequest::Desk(_) => origin.error(
            &own,
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "this service has no desks",
        ),
        ServiceRequest::Unsupported => origin.error(
            &own,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "this service does not answer that query",
        ),
    })
}

/// Hand-built: 0.23's DiscoInfoResult keeps features sorted, and clients and
/// xep/status.md have always had them in this order.
pub fn disco_info(desks: bool) -> Element {
    let mut q = Element::bare("query", ns::DISCO_INFO);
    q.append_child(element(
        "identity",
        ns::DISCO_INFO,
        &[
            ("category", "gateway"),
            ("type", "xmpp"),
            ("name", "tidemark message status"),
        ],
    ));
    for f in FEATURES {
        q.append_child(element("feature", ns::DISCO_INFO, &[("var", f)]));
    }
    // Issue 11: only where desks are configured.
    if desks {
        q.append_child(element("feature", ns::DISCO_INFO, &[("var", ns::DESK)]));
    }
    q
}

/// XEP-0100 §6.3: a plain JID in, its tracked address out.
fn translate(cx: &Context, prompt: &str) -> Result<String, String> {
    let prompt = prompt.trim();
    let jid = Jid::new(prompt).map_err(|e| format!("{prompt:?} is not an XMPP address: {e}"))?;
    let bare: BareJid = jid.to_bare();
    if bare.node().is_none() {
        return Err(format!(
            "{prompt:?} is a server, not a contact; give an address like user@example.org"
        ));
    }
    if cx.addrs.is_ours(&jid) {
        return Err(format!("{prompt:?} is already an address at this service"));
    }
    cx.addrs
        .tracked(&bare)
        .map(|t| t.to_string())
        .map_err(|e| e.to_string())
}
