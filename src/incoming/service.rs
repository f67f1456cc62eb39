//! IQ requests to the service's own domain: what they ask, read once.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ping::Ping;

use super::{Incoming, Origin, invalid};
use crate::stanza::{DefinedCondition, ns};

#[derive(Debug, Clone, PartialEq)]
pub enum ServiceRequest {
    DiscoInfo {
        node: Option<String>,
    },
    DiscoItems,
    GatewayPrompt,
    GatewayTranslate {
        prompt: String,
    },
    Status {
        conversation: Option<String>,
        id: Option<String>,
    },
    Ping,
    /// disco#items of the XEP-0050 commands node.
    CommandList,
    /// A XEP-0050 `<command/>`.
    Command(CommandRequest),
    Unsupported,
}

/// The node of the one ad-hoc command, and the field of its form.
pub const READ_RECEIPTS: &str = "read-receipts";
pub const READ_RECEIPTS_FIELD: &str = "send-read-receipts";
/// Issue 9: the `status` command (xep/status-command.md) and its filter.
pub const STATUS_COMMAND: &str = "status";
pub const STATUS_FILTER_FIELD: &str = "with";

/// A XEP-0050 command request, as parsed from `<command/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub node: String,
    pub action: String,
    pub session: Option<String>,
    /// The submitted value of the form's field, if a form was submitted.
    pub submitted: Option<String>,
    /// Issue 9: whether a form was submitted, and its `with` field (the
    /// `status` command's filter), if it has one with a value.
    pub form_submitted: bool,
    pub with: Option<String>,
}

impl CommandRequest {
    pub fn parse(cmd: &Element) -> Self {
        let form = cmd
            .get_child("x", ns::DATA)
            .and_then(|x| DataForm::try_from(x.clone()).ok())
            .filter(|form| form.type_ == DataFormType::Submit);
        let value_of = |var: &str| {
            form.as_ref().and_then(|form| {
                form.fields
                    .iter()
                    .find(|f| f.var.as_deref() == Some(var))
                    .map(|f| f.values.first().cloned().unwrap_or_default())
            })
        };
        let submitted = value_of(READ_RECEIPTS_FIELD);
        let with = value_of(STATUS_FILTER_FIELD).filter(|v| !v.trim().is_empty());
        CommandRequest {
            node: cmd.attr("node").unwrap_or_default().to_owned(),
            action: cmd.attr("action").unwrap_or("execute").to_owned(),
            session: cmd.attr("sessionid").map(str::to_owned),
            submitted,
            form_submitted: form.is_some(),
            with,
        }
    }
}

pub(super) fn classify_service_iq<'a>(
    iq: &'a Element,
    from: Jid,
    origin: Origin,
    own: &str,
) -> Incoming<'a> {
    let type_ = iq.attr("type");
    match type_ {
        Some("result") | Some("error") => {
            return Incoming::IqResponse { from, iq };
        }
        Some("get") | Some("set") => {}
        _ => {
            return invalid(
                iq,
                own,
                "iq type must be get, set, result or error".into(),
                DefinedCondition::BadRequest,
            );
        }
    }
    if iq.attr("id").is_none() {
        return invalid(
            iq,
            own,
            "iq without id".into(),
            DefinedCondition::BadRequest,
        );
    }
    let mut children = iq.children();
    let Some(payload) = children.next() else {
        return invalid(
            iq,
            own,
            "iq request without a payload".into(),
            DefinedCondition::BadRequest,
        );
    };
    if children.next().is_some() {
        return invalid(
            iq,
            own,
            "iq request with more than one payload".into(),
            DefinedCondition::BadRequest,
        );
    }
    let get = type_ == Some("get");
    let request = match (payload.ns().as_str(), payload.name(), get) {
        (ns::DISCO_INFO, "query", true) => ServiceRequest::DiscoInfo {
            node: payload.attr("node").map(str::to_owned),
        },
        (ns::DISCO_ITEMS, "query", true) if payload.attr("node") == Some(ns::COMMANDS) => {
            ServiceRequest::CommandList
        }
        (ns::DISCO_ITEMS, "query", true) => ServiceRequest::DiscoItems,
        (ns::COMMANDS, "command", false) => ServiceRequest::Command(CommandRequest::parse(payload)),
        (ns::GATEWAY, "query", true) => ServiceRequest::GatewayPrompt,
        (ns::GATEWAY, "query", false) => ServiceRequest::GatewayTranslate {
            prompt: payload
                .get_child("prompt", ns::GATEWAY)
                .map(|p| p.text())
                .unwrap_or_default(),
        },
        (ns::STATUS, "status", true) => ServiceRequest::Status {
            conversation: payload.attr("conversation").map(str::to_owned),
            id: payload.attr("id").map(str::to_owned),
        },
        (ns::PING, "ping", true) if Ping::try_from(payload.clone()).is_ok() => ServiceRequest::Ping,
        _ => ServiceRequest::Unsupported,
    };
    Incoming::ServiceIq {
        from,
        origin,
        request,
    }
}
