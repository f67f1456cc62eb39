//! XEP-0050 ad-hoc commands, so people change their settings from the
//! clients they already have (Gajim, Conversations, Dino, Psi all run them).

use minidom::Element;
use xmpp_parsers::jid::Jid;

use crate::service::Tidemark;
use crate::stanza::{DefinedCondition, ErrorType, StanzaError, element, stanza_error, with_text};
use crate::store::StoreError;

pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
pub const DATA: &str = "jabber:x:data";
pub const READ_RECEIPTS: &str = "read-receipts";
const FIELD: &str = "send-read-receipts";

/// The disco#items of the commands node (XEP-0050 §2.2).
pub fn list(tm: &Tidemark) -> Element {
    let mut q = element(
        "query",
        crate::stanza::ns::DISCO_ITEMS,
        &[("node", COMMANDS)],
    );
    q.append_child(element(
        "item",
        crate::stanza::ns::DISCO_ITEMS,
        &[
            ("jid", tm.addrs.domain().as_str()),
            ("node", READ_RECEIPTS),
            ("name", "Send read receipts (on/off)"),
        ],
    ));
    q
}

/// A command request, as parsed from `<command/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub node: String,
    pub action: String,
    pub session: Option<String>,
    /// The submitted value of the form's field, if a form was submitted.
    pub submitted: Option<String>,
}

pub fn parse(cmd: &Element) -> CommandRequest {
    let submitted = cmd
        .get_child("x", DATA)
        .filter(|x| x.attr("type") == Some("submit"))
        .and_then(|x| {
            x.children()
                .find(|f| f.name() == "field" && f.attr("var") == Some(FIELD))
                .map(|f| {
                    f.children()
                        .find(|v| v.name() == "value")
                        .map(|v| v.text())
                        .unwrap_or_default()
                })
        });
    CommandRequest {
        node: cmd.attr("node").unwrap_or_default().to_owned(),
        action: cmd.attr("action").unwrap_or("execute").to_owned(),
        session: cmd.attr("sessionid").map(str::to_owned),
        submitted,
    }
}

fn command(node: &str, session: &str, status: &str) -> Element {
    element(
        "command",
        COMMANDS,
        &[("node", node), ("sessionid", session), ("status", status)],
    )
}

/// XEP-0004 boolean: "1"/"true" or "0"/"false".
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

pub fn execute(
    tm: &mut Tidemark,
    from: &Jid,
    req: CommandRequest,
) -> Result<Result<Element, StanzaError>, StoreError> {
    if req.node != READ_RECEIPTS {
        return Ok(Err(stanza_error(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            format!("no command {:?}; try {READ_RECEIPTS:?}", req.node),
        )));
    }
    let user = from.to_bare().to_string();
    let session = req.session.clone().unwrap_or_else(|| tm.local_id());
    if req.action == "cancel" {
        return Ok(Ok(command(&req.node, &session, "canceled")));
    }
    if let Some(value) = req.submitted {
        let Some(enabled) = parse_bool(&value) else {
            return Ok(Err(stanza_error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                format!("{FIELD} must be a boolean (1 or 0), not {value:?}"),
            )));
        };
        tm.store.set_read_receipts_pref(&user, enabled)?;
        // Group frontiers count only members who send read receipts.
        tm.rooms.forget_frontiers();
        tracing::info!(%user, enabled, "read receipts preference changed");
        let mut done = command(&req.node, &session, "completed");
        done.append_child(with_text(
            element("note", COMMANDS, &[("type", "info")]),
            if enabled {
                "Read receipts are on: people see when you have read their messages."
            } else {
                "Read receipts are off: nobody sees when you read their messages, and your unread counts still clear."
            },
        ));
        return Ok(Ok(done));
    }
    let current = tm
        .store
        .read_receipts_pref(&user)?
        .unwrap_or(tm.config.status.send_read_receipts);
    let mut cmd = command(&req.node, &session, "executing");
    let mut actions = element("actions", COMMANDS, &[("execute", "complete")]);
    actions.append_child(Element::bare("complete", COMMANDS));
    cmd.append_child(actions);
    let mut form = element("x", DATA, &[("type", "form")]);
    form.append_child(with_text(Element::bare("title", DATA), "Read receipts"));
    form.append_child(with_text(
        Element::bare("instructions", DATA),
        "Choose whether the people you chat with see when you have read their messages.",
    ));
    let mut field = element(
        "field",
        DATA,
        &[
            ("var", FIELD),
            ("type", "boolean"),
            ("label", "Send read receipts"),
        ],
    );
    field.append_child(with_text(
        Element::bare("value", DATA),
        if current { "1" } else { "0" },
    ));
    form.append_child(field);
    cmd.append_child(form);
    Ok(Ok(cmd))
}
