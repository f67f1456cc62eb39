//! XEP-0050 ad-hoc commands, so people change their settings from the
//! clients they already have (Gajim, Conversations, Dino, Psi all run them).

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoItemsResult, Item};
use xmpp_parsers::jid::Jid;

use crate::context::Context;
use crate::conversation::room::Rooms;
use crate::incoming::{
    CommandRequest, INBOX_COMMAND, MARK_READ_COMMAND, READ_RECEIPTS, READ_RECEIPTS_FIELD,
    STATUS_COMMAND,
};
use crate::stanza::ns::COMMANDS;
use crate::stanza::{
    DefinedCondition, ErrorType, StanzaError, command_element as command, element, stanza_error,
    with_text,
};
use crate::store::{Millis, StoreError, Write};

/// The disco#items of the commands node (XEP-0050 §2.2).
pub fn list(cx: &Context) -> Element {
    DiscoItemsResult {
        node: Some(COMMANDS.to_owned()),
        items: vec![
            Item {
                jid: cx.addrs.domain().clone().into(),
                node: Some(READ_RECEIPTS.to_owned()),
                name: Some("Send read receipts (on/off)".to_owned()),
            },
            // Issue 9: xep/status-command.md.
            Item {
                jid: cx.addrs.domain().clone().into(),
                node: Some(STATUS_COMMAND.to_owned()),
                name: Some("Status of my sent messages".to_owned()),
            },
            // Issue 10: xep/inbox.md.
            Item {
                jid: cx.addrs.domain().clone().into(),
                node: Some(INBOX_COMMAND.to_owned()),
                name: Some("My conversations (unread counts)".to_owned()),
            },
            Item {
                jid: cx.addrs.domain().clone().into(),
                node: Some(MARK_READ_COMMAND.to_owned()),
                name: Some("Mark conversations read".to_owned()),
            },
        ],
        rsm: None,
    }
    .into()
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
    cx: &mut Context,
    rooms: &mut Rooms,
    from: &Jid,
    req: CommandRequest,
    now: Millis,
) -> Result<Result<Element, StanzaError>, StoreError> {
    if req.node == STATUS_COMMAND {
        return super::sent::execute(cx, from, req, now);
    }
    if req.node == INBOX_COMMAND {
        return crate::inbox::commands::inbox(cx, from, req, now);
    }
    if req.node == MARK_READ_COMMAND {
        return crate::inbox::commands::mark_read_command(cx, from, req, now);
    }
    if req.node != READ_RECEIPTS {
        return Ok(Err(stanza_error(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            format!(
                "no command {:?}; try {READ_RECEIPTS:?}, {STATUS_COMMAND:?}, {INBOX_COMMAND:?} or {MARK_READ_COMMAND:?}",
                req.node
            ),
        )));
    }
    let user = from.to_bare().to_string();
    let session = req.session.clone().unwrap_or_else(|| cx.local_id(now));
    if req.action == "cancel" {
        return Ok(Ok(command(&req.node, &session, "canceled")));
    }
    if let Some(value) = req.submitted {
        let Some(enabled) = parse_bool(&value) else {
            return Ok(Err(stanza_error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                format!("{READ_RECEIPTS_FIELD} must be a boolean (1 or 0), not {value:?}"),
            )));
        };
        cx.write(Write::ReadReceiptsPref {
            user: user.clone(),
            enabled,
        });
        // Group frontiers count only members who send read receipts.
        rooms.forget_frontiers();
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
    let current = cx
        .store
        .read_receipts_pref(&user)?
        .unwrap_or(cx.config.status.send_read_receipts);
    let mut cmd = command(&req.node, &session, "executing");
    let mut actions = element("actions", COMMANDS, &[("execute", "complete")]);
    actions.append_child(Element::bare("complete", COMMANDS));
    cmd.append_child(actions);
    cmd.append_child(preference_form(current).into());
    Ok(Ok(cmd))
}

/// The XEP-0004 form asking for the read receipts preference.
fn preference_form(current: bool) -> DataForm {
    let mut field = Field::new(READ_RECEIPTS_FIELD, FieldType::Boolean).with_value(if current {
        "1"
    } else {
        "0"
    });
    field.label = Some("Send read receipts".to_owned());
    DataForm {
        type_: DataFormType::Form,
        title: Some("Read receipts".to_owned()),
        instructions: Some(
            "Choose whether the people you chat with see when you have read their messages."
                .to_owned(),
        ),
        fields: vec![field],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preference_form_is_the_one_clients_always_got() {
        let form: Element = preference_form(true).into();
        let expected: Element = "<x xmlns='jabber:x:data' type='form'><title>Read receipts</title>\
             <instructions>Choose whether the people you chat with see when you have read their messages.</instructions>\
             <field var='send-read-receipts' type='boolean' label='Send read receipts'><value>1</value></field></x>"
            .parse()
            .unwrap();
        assert_eq!(form, expected, "{}", String::from(&form));
    }

    #[test]
    fn a_submitted_form_gives_its_value() {
        let submit = |x: &str| {
            let cmd: Element = format!(
                "<command xmlns='http://jabber.org/protocol/commands' node='read-receipts' sessionid='s1'>{x}</command>"
            )
            .parse()
            .unwrap();
            CommandRequest::parse(&cmd).submitted
        };
        let form = |field: &str| format!("<x xmlns='jabber:x:data' type='submit'>{field}</x>");
        assert_eq!(
            submit(&form(
                "<field var='send-read-receipts'><value>0</value></field>"
            )),
            Some("0".into())
        );
        assert_eq!(
            submit(&form("<field var='send-read-receipts' type='boolean'/>")),
            Some(String::new())
        );
        assert_eq!(
            submit(&form("<field var='other'><value>1</value></field>")),
            None
        );
        assert_eq!(submit(""), None);
    }
}
