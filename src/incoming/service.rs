//! IQ requests to the service's own domain: what they ask, read once.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ping::Ping;
use xmpp_parsers::rsm::SetQuery;

use super::{Incoming, Origin, invalid};
use crate::stanza::{DefinedCondition, ns};
use crate::store::Millis;

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
    /// Issue 10: the conversation list (xep/inbox.md).
    Inbox(InboxRequest),
    /// Issue 11: team desks (xep/desk.md §6).
    Desk(DeskRequest),
    Unsupported,
}

/// Issue 11: whom `<assign/>` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignTo {
    /// The agent asking (no `to`).
    Me,
    /// Nobody (`to=''`).
    Nobody,
    Agent(String),
}

/// Issue 11: what an action does to a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeskAction {
    Assign(AssignTo),
    Done,
    Pending,
    /// Until this time (XEP-0082, as written; checked by the desk).
    Snooze(Millis),
}

/// Issue 11: a request of `urn:tidemark:desk:0` (xep/desk.md §6).
#[derive(Debug, Clone, PartialEq)]
pub enum DeskRequest {
    View {
        desk: String,
        view: String,
        search: Option<String>,
        max: Option<usize>,
        after: Option<String>,
    },
    Act {
        desk: String,
        customer: String,
        action: DeskAction,
    },
    History {
        desk: String,
        customer: String,
        max: Option<usize>,
    },
}

impl DeskRequest {
    fn parse(payload: &Element, get: bool) -> Result<Self, String> {
        let attr = |name: &str| payload.attr(name).map(str::to_owned);
        let need = |name: &str| {
            attr(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| format!("<{}/> needs a {name} attribute", payload.name()))
        };
        let rsm = payload
            .get_child("set", ns::RSM)
            .map(|set| SetQuery::try_from(set.clone()))
            .transpose()
            .map_err(|e| format!("the result set (XEP-0059) is malformed: {e}"))?;
        let act = |action| -> Result<Self, String> {
            Ok(DeskRequest::Act {
                desk: need("desk")?,
                customer: need("customer")?,
                action,
            })
        };
        match (payload.name(), get) {
            ("view", true) => Ok(DeskRequest::View {
                desk: need("desk")?,
                view: attr("name").unwrap_or_else(|| "mine".into()),
                search: attr("search").filter(|s| !s.trim().is_empty()),
                max: rsm.as_ref().and_then(|r| r.max),
                after: rsm.and_then(|r| r.after),
            }),
            ("history", true) => Ok(DeskRequest::History {
                desk: need("desk")?,
                customer: need("customer")?,
                max: rsm.and_then(|r| r.max),
            }),
            ("assign", false) => act(DeskAction::Assign(match payload.attr("to") {
                None => AssignTo::Me,
                Some(t) if t.trim().is_empty() => AssignTo::Nobody,
                Some(t) => AssignTo::Agent(t.to_owned()),
            })),
            ("done", false) => act(DeskAction::Done),
            ("pending", false) => act(DeskAction::Pending),
            ("snooze", false) => {
                let until = need("until")?;
                let at = until
                    .parse::<xmpp_parsers::date::DateTime>()
                    .map_err(|e| format!("until={until:?} is no XEP-0082 date-time: {e}"))?;
                let ms = u64::try_from(at.0.timestamp_millis())
                    .map_err(|_| format!("until={until:?} is before 1970"))?;
                act(DeskAction::Snooze(ms))
            }
            (name, _) => Err(format!(
                "no {name:?} {} in {}; see xep/desk.md",
                if get { "get" } else { "set" },
                ns::DESK
            )),
        }
    }
}

/// The node of the one ad-hoc command, and the field of its form.
pub const READ_RECEIPTS: &str = "read-receipts";
pub const READ_RECEIPTS_FIELD: &str = "send-read-receipts";
/// Issue 9: the `status` command (xep/status-command.md) and its filter.
pub const STATUS_COMMAND: &str = "status";
pub const STATUS_FILTER_FIELD: &str = "with";

/// Issue 10: a request of `urn:tidemark:inbox:0` (xep/inbox.md).
#[derive(Debug, Clone, PartialEq)]
pub enum InboxRequest {
    List {
        /// Whose list: absent means the asker's, and anyone else's is
        /// refused.
        owner: Option<String>,
        search: Option<String>,
        unread_only: bool,
        /// XEP-0059: the page size asked for and where the page starts.
        max: Option<usize>,
        after: Option<String>,
    },
    /// One conversation (a tracked address, a contact or a room), or all.
    MarkRead {
        jid: Option<String>,
    },
    Subscribe,
    Unsubscribe,
}

impl InboxRequest {
    fn parse(payload: &Element, get: bool) -> Result<Self, String> {
        let attr = |name: &str| payload.attr(name).map(str::to_owned);
        Ok(match (payload.name(), get) {
            ("inbox", true) => {
                let unread_only = match payload.attr("unread-only") {
                    None | Some("false") | Some("0") => false,
                    Some("true") | Some("1") => true,
                    Some(other) => {
                        return Err(format!("unread-only must be true or false, not {other:?}"));
                    }
                };
                let rsm = payload
                    .get_child("set", ns::RSM)
                    .map(|set| SetQuery::try_from(set.clone()))
                    .transpose()
                    .map_err(|e| format!("the result set (XEP-0059) is malformed: {e}"))?;
                InboxRequest::List {
                    owner: attr("user"),
                    search: attr("search").filter(|s| !s.trim().is_empty()),
                    unread_only,
                    max: rsm.as_ref().and_then(|r| r.max),
                    after: rsm.and_then(|r| r.after),
                }
            }
            ("mark-read", false) => InboxRequest::MarkRead {
                jid: attr("jid").filter(|j| !j.trim().is_empty()),
            },
            ("subscribe", false) => InboxRequest::Subscribe,
            ("unsubscribe", false) => InboxRequest::Unsubscribe,
            (name, _) => {
                return Err(format!(
                    "no {name:?} {} in {}; see xep/inbox.md",
                    if get { "get" } else { "set" },
                    ns::INBOX
                ));
            }
        })
    }
}

/// Issue 10: the conversation list's commands (xep/inbox.md).
pub const INBOX_COMMAND: &str = "inbox";
pub const MARK_READ_COMMAND: &str = "mark-read";

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
    /// Issue 10: every field of a submitted form with its first value
    /// (the `inbox` and `mark-read` commands read theirs from here).
    pub fields: Vec<(String, String)>,
}

impl CommandRequest {
    /// The submitted value of `var`, if the form had that field.
    pub fn field(&self, var: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, value)| value.as_str())
    }

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
        let fields = form
            .as_ref()
            .map(|form| {
                form.fields
                    .iter()
                    .filter_map(|f| {
                        let var = f.var.clone()?;
                        Some((var, f.values.first().cloned().unwrap_or_default()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let with = value_of(STATUS_FILTER_FIELD).filter(|v| !v.trim().is_empty());
        CommandRequest {
            node: cmd.attr("node").unwrap_or_default().to_owned(),
            action: cmd.attr("action").unwrap_or("execute").to_owned(),
            session: cmd.attr("sessionid").map(str::to_owned),
            submitted,
            form_submitted: form.is_some(),
            with,
            fields,
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
        (ns::INBOX, _, _) => match InboxRequest::parse(payload, get) {
            Ok(req) => ServiceRequest::Inbox(req),
            Err(reason) => return invalid(iq, own, reason, DefinedCondition::BadRequest),
        },
        (ns::DESK, _, _) => match DeskRequest::parse(payload, get) {
            Ok(req) => ServiceRequest::Desk(req),
            Err(reason) => return invalid(iq, own, reason, DefinedCondition::BadRequest),
        },
        _ => ServiceRequest::Unsupported,
    };
    Incoming::ServiceIq {
        from,
        origin,
        request,
    }
}
