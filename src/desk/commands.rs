//! The desk for standard clients: XEP-0050 commands (xep/desk.md §5). Their
//! nodes and field names are the contract. Every command is stateless: a
//! first stage asks, the submitted form does.
//!
//! Hand-built: xmpp-parsers 0.23 has no XEP-0050 commands.

use minidom::Element;
use xmpp_parsers::disco::{DiscoItemsResult, Item};
use xmpp_parsers::jid::{BareJid, Jid};

use super::protocol::counts_in_order;
use super::view::{self, Page};
use super::{
    ASSIGN_COMMAND, Answer, At, CONVERSATION_COMMANDS, DESK_COMMAND, DONE_COMMAND, Desks,
    PENDING_COMMAND, PREDEFINED_COMMAND, SNOOZE_COMMAND, actions, bad_request, chat,
    desk_for_agent, desk_jid, forbidden, not_found,
};
use crate::config::DeskConfig;
use crate::context::Context;
use crate::incoming::{AssignTo, CommandRequest, DeskAction};
use crate::stanza::ns::{COMMANDS, DATA};
use crate::stanza::{
    command_element as command, command_note as note, element, fixed_field, form_field, with_text,
    xep0082,
};
use crate::store::{Millis, StoreError};

pub const VIEW_FIELD: &str = "view";
pub const SEARCH_FIELD: &str = "search";
pub const DESK_FIELD: &str = "desk";
pub const CONVERSATION_FIELD: &str = "conversation";
pub const ASSIGNEE_FIELD: &str = "assignee";
pub const MINUTES_FIELD: &str = "minutes";
pub const MESSAGE_FIELD: &str = "message";

/// Rows of the `desk` command's answer.
pub const PAGE: usize = 50;

const COLUMNS: [(&str, &str); 6] = [
    ("jid", "Conversation"),
    ("name", "Name"),
    ("assignee", "Assignee"),
    ("state", "State"),
    ("unread", "Unread"),
    ("last-activity", "Last message"),
];

fn names() -> [(&'static str, &'static str); 6] {
    [
        (DESK_COMMAND, "Desk: conversations and counts"),
        (ASSIGN_COMMAND, "Desk: assign a conversation"),
        (DONE_COMMAND, "Desk: mark a conversation done"),
        (PENDING_COMMAND, "Desk: mark a conversation pending"),
        (SNOOZE_COMMAND, "Desk: snooze a conversation"),
        (PREDEFINED_COMMAND, "Desk: send a predefined message"),
    ]
}

/// The service's command list with the desk's commands, for agents.
pub fn list_service(cx: &Context) -> Element {
    let mut list = crate::query::commands::list(cx);
    for (node, name) in names() {
        list.append_child(element(
            "item",
            crate::stanza::ns::DISCO_ITEMS,
            &[
                ("jid", cx.addrs.domain().as_str()),
                ("node", node),
                ("name", name),
            ],
        ));
    }
    list
}

/// The commands of a conversation's address: for its desk's agents, the
/// actions on that conversation; nothing for anyone else.
pub fn list_at(_cx: &Context, own: &str, agent: bool) -> Element {
    let own_jid = Jid::new(own).ok();
    let items = match (agent, own_jid) {
        (true, Some(jid)) => names()
            .into_iter()
            .filter(|(node, _)| CONVERSATION_COMMANDS.contains(node))
            .map(|(node, name)| Item {
                jid: jid.clone(),
                node: Some(node.to_owned()),
                name: Some(
                    name.trim_start_matches("Desk: ")
                        .replace(" a conversation", ""),
                ),
            })
            .collect(),
        _ => vec![],
    };
    DiscoItemsResult {
        node: Some(COMMANDS.to_owned()),
        items,
        rsm: None,
    }
    .into()
}

fn executing(node: &str, session: &str, form: Element) -> Element {
    let mut cmd = command(node, session, "executing");
    let mut actions = element("actions", COMMANDS, &[("execute", "complete")]);
    actions.append_child(Element::bare("complete", COMMANDS));
    cmd.append_child(actions);
    cmd.append_child(form);
    cmd
}

fn form(title: &str, instructions: &str) -> Element {
    let mut x = element("x", DATA, &[("type", "form")]);
    x.append_child(with_text(Element::bare("title", DATA), title));
    x.append_child(with_text(Element::bare("instructions", DATA), instructions));
    x
}

fn list_single(var: &str, label: &str, default: &str, options: &[(String, String)]) -> Element {
    let mut f = element(
        "field",
        DATA,
        &[("var", var), ("type", "list-single"), ("label", label)],
    );
    f.append_child(with_text(Element::bare("value", DATA), default));
    for (label, value) in options {
        let mut o = element("option", DATA, &[("label", label.as_str())]);
        o.append_child(with_text(Element::bare("value", DATA), value.as_str()));
        f.append_child(o);
    }
    f
}

fn text_field(var: &str, type_: &str, label: &str, value: Option<&str>) -> Element {
    let mut f = element(
        "field",
        DATA,
        &[("var", var), ("type", type_), ("label", label)],
    );
    if let Some(v) = value {
        f.append_child(with_text(Element::bare("value", DATA), v));
    }
    f
}

fn desks_of<'c>(cx: &'c Context, agent: &str) -> Vec<&'c DeskConfig> {
    cx.config
        .desks
        .iter()
        .filter(|d| d.is_agent(agent))
        .collect()
}

/// A command on the service's own address.
pub fn execute(
    cx: &mut Context,
    desks: &mut Desks,
    from: &Jid,
    req: CommandRequest,
    now: Millis,
) -> Result<Answer, StoreError> {
    let agent = from.to_bare().to_string();
    let mine: Vec<DeskConfig> = desks_of(cx, &agent).into_iter().cloned().collect();
    if mine.is_empty() {
        return Ok(Answer::error(forbidden(
            "only the agents of a desk may run the desk's commands",
        )));
    }
    let session = req.session.clone().unwrap_or_else(|| cx.local_id(now));
    if req.action == "cancel" {
        return Ok(Answer::result(Some(command(
            &req.node, &session, "canceled",
        ))));
    }
    if req.node == DESK_COMMAND {
        return desk_command(cx, from, &agent, &mine, &session, &req);
    }
    if !req.form_submitted {
        let mut x = form(
            title_of(&req.node),
            "Give the conversation's address (the chat the customer's messages come from).",
        );
        x.append_child(text_field(
            CONVERSATION_FIELD,
            "jid-single",
            "Conversation",
            None,
        ));
        for f in action_fields(cx, &mine[0], &req.node, &agent) {
            x.append_child(f);
        }
        return Ok(Answer::result(Some(executing(&req.node, &session, x))));
    }
    let Some(target) = req
        .field(CONVERSATION_FIELD)
        .and_then(|c| Jid::new(c.trim()).ok())
        .and_then(|j| cx.addrs.desk_of(&j))
    else {
        return Ok(Answer::error(bad_request(
            "conversation must be a desk conversation's address (desk\\2fcustomer@service)",
        )));
    };
    let Some(customer) = target.customer else {
        return Ok(Answer::error(bad_request(
            "conversation must be a customer's conversation, not the desk's own address",
        )));
    };
    let (desk, jid) = match desk_for_agent(cx, &target.desk, &agent)? {
        Ok(found) => found,
        Err(e) => return Ok(Answer::error(e)),
    };
    let at = At { desk: &desk, jid };
    submitted(cx, desks, &at, &customer, &agent, &session, &req, now)
}

/// A command on a conversation's address: it acts on that conversation.
pub fn execute_in(
    cx: &mut Context,
    desks: &mut Desks,
    at: &At,
    customer: &BareJid,
    from: &Jid,
    req: CommandRequest,
    now: Millis,
) -> Result<Answer, StoreError> {
    let agent = from.to_bare().to_string();
    if !at.desk.is_agent(&agent) {
        return Ok(Answer::error(forbidden(format!(
            "only the agents of {} may do this",
            at.desk.name
        ))));
    }
    let session = req.session.clone().unwrap_or_else(|| cx.local_id(now));
    if req.action == "cancel" {
        return Ok(Answer::result(Some(command(
            &req.node, &session, "canceled",
        ))));
    }
    let fields = action_fields(cx, at.desk, &req.node, &agent);
    if !req.form_submitted && !fields.is_empty() {
        let mut x = form(
            title_of(&req.node),
            &format!("The conversation with {customer}."),
        );
        for f in fields {
            x.append_child(f);
        }
        return Ok(Answer::result(Some(executing(&req.node, &session, x))));
    }
    submitted(cx, desks, at, customer, &agent, &session, &req, now)
}

fn title_of(node: &str) -> &'static str {
    match node {
        ASSIGN_COMMAND => "Assign",
        DONE_COMMAND => "Mark done",
        PENDING_COMMAND => "Mark pending",
        SNOOZE_COMMAND => "Snooze",
        PREDEFINED_COMMAND => "Predefined messages",
        _ => "Desk",
    }
}

/// The fields an action asks for beyond the conversation.
fn action_fields(_cx: &Context, desk: &DeskConfig, node: &str, agent: &str) -> Vec<Element> {
    match node {
        ASSIGN_COMMAND => {
            let mut options = vec![
                ("Me".to_owned(), "me".to_owned()),
                ("Nobody (unassign)".to_owned(), "nobody".to_owned()),
            ];
            options.extend(
                desk.agents
                    .iter()
                    .filter(|a| a.as_str() != agent)
                    .map(|a| (a.to_string(), a.to_string())),
            );
            vec![list_single(ASSIGNEE_FIELD, "Assign to", "me", &options)]
        }
        SNOOZE_COMMAND => vec![text_field(
            MINUTES_FIELD,
            "text-single",
            "Snooze for (minutes)",
            Some("60"),
        )],
        PREDEFINED_COMMAND => {
            let options: Vec<(String, String)> = desk
                .predefined
                .iter()
                .map(|p| (p.title.clone(), p.title.clone()))
                .collect();
            let default = options.first().map(|(_, v)| v.clone()).unwrap_or_default();
            vec![list_single(MESSAGE_FIELD, "Message", &default, &options)]
        }
        _ => vec![],
    }
}

#[allow(clippy::too_many_arguments)]
fn submitted(
    cx: &mut Context,
    desks: &mut Desks,
    at: &At,
    customer: &BareJid,
    agent: &str,
    session: &str,
    req: &CommandRequest,
    now: Millis,
) -> Result<Answer, StoreError> {
    let field = |var: &str| req.field(var).map(str::trim).unwrap_or("");
    if req.node == PREDEFINED_COMMAND {
        let chosen = field(MESSAGE_FIELD);
        let Some(p) = at.desk.predefined.iter().find(|p| p.title == chosen) else {
            return Ok(Answer::error(bad_request(format!(
                "{chosen:?} is no predefined message of {}",
                at.desk.name
            ))));
        };
        if cx
            .store
            .desk_conversation(&at.desk.name, customer.as_str())?
            .is_none()
        {
            return Ok(Answer::error(not_found(format!(
                "{customer} has not written to {}",
                at.desk.name
            ))));
        }
        let sent = chat::send_as_agent(cx, at, customer, agent, &p.text, now)?;
        let mut done = command(&req.node, session, "completed");
        done.append_child(note(format!("Sent {:?} to {customer}.", p.title)));
        return Ok(Answer {
            result: Ok(Some(done)),
            also: sent,
        });
    }
    let action = match req.node.as_str() {
        ASSIGN_COMMAND => DeskAction::Assign(match field(ASSIGNEE_FIELD) {
            "" | "me" => AssignTo::Me,
            "nobody" => AssignTo::Nobody,
            other => AssignTo::Agent(other.to_owned()),
        }),
        DONE_COMMAND => DeskAction::Done,
        PENDING_COMMAND => DeskAction::Pending,
        SNOOZE_COMMAND => {
            let minutes: u64 = match field(MINUTES_FIELD).parse() {
                Ok(m) if (1..=43_200).contains(&m) => m,
                _ => {
                    return Ok(Answer::error(bad_request(
                        "minutes must be a whole number from 1 to 43200 (30 days)",
                    )));
                }
            };
            DeskAction::Snooze(now.saturating_add(minutes * 60_000))
        }
        other => {
            return Ok(Answer::error(not_found(format!(
                "no desk command {other:?}"
            ))));
        }
    };
    match actions::act(cx, desks, at, customer.as_str(), agent, action, now)? {
        Ok(shown) => {
            let mut done = command(&req.node, session, "completed");
            done.append_child(note(if shown.is_empty() {
                "Nothing to change.".to_owned()
            } else {
                format!("Done: {} ({customer}).", title_of(&req.node))
            }));
            Ok(Answer {
                result: Ok(Some(done)),
                also: shown,
            })
        }
        Err(e) => Ok(Answer::error(e)),
    }
}

/// The `desk` command: a first stage with the view and a search, then the
/// view's conversations with every view's counts.
fn desk_command(
    cx: &mut Context,
    from: &Jid,
    agent: &str,
    mine: &[DeskConfig],
    session: &str,
    req: &CommandRequest,
) -> Result<Answer, StoreError> {
    if !req.form_submitted {
        let mut x = form(
            "Desk",
            "Choose a view; the answer shows how many conversations each view holds, and how many of them have unread messages.",
        );
        let views = [
            ("Mine", "mine"),
            ("Unassigned", "unassigned"),
            ("All (not done)", "all"),
            ("Done", "done"),
        ]
        .map(|(label, v)| (label.to_owned(), v.to_owned()))
        .to_vec();
        x.append_child(list_single(VIEW_FIELD, "View", "mine", &views));
        x.append_child(text_field(
            SEARCH_FIELD,
            "text-single",
            "Search by customer address or name",
            None,
        ));
        if mine.len() > 1 {
            let options: Vec<(String, String)> = mine
                .iter()
                .map(|d| (d.name.clone(), d.name.clone()))
                .collect();
            x.append_child(list_single(DESK_FIELD, "Desk", &mine[0].name, &options));
        }
        return Ok(Answer::result(Some(executing(DESK_COMMAND, session, x))));
    }
    let field = |var: &str| req.field(var).map(str::trim).filter(|v| !v.is_empty());
    let desk = match field(DESK_FIELD) {
        Some(name) => match mine.iter().find(|d| d.name == name.to_lowercase()) {
            Some(d) => d.clone(),
            None => {
                return Ok(Answer::error(forbidden(format!(
                    "you are no agent of a desk {name:?}"
                ))));
            }
        },
        None => mine[0].clone(),
    };
    let name = field(VIEW_FIELD).unwrap_or("mine");
    let Some(view) = view::parse_view(name, agent) else {
        return Ok(Answer::error(view::no_such_view(name)));
    };
    let jid = desk_jid(cx, &desk.name)?;
    let at = At { desk: &desk, jid };
    let page = view::page(cx, &at, agent, &view, field(SEARCH_FIELD), None, PAGE)?;
    let mut done = command(DESK_COMMAND, session, "completed");
    let plain = cx
        .clients
        .client(from)
        .is_some_and(|a| a.no_multi_item_forms);
    let title = format!("{}: {}", desk.name, view.name());
    if plain {
        done.append_child(single_form(&title, &page));
    } else {
        done.append_child(note(lines(&page)));
        done.append_child(result_form(&title, &page));
    }
    Ok(Answer::result(Some(done)))
}

fn count_value(c: crate::store::ViewCount) -> String {
    format!("{}/{}", c.conversations, c.unread)
}

fn lines(page: &Page) -> String {
    let mut l: Vec<String> = counts_in_order(&page.counts)
        .iter()
        .map(|(v, c)| format!("{v}: {} ({} with unread)", c.conversations, c.unread))
        .collect();
    if page.rows.is_empty() {
        l.push("No conversation in this view.".to_owned());
    }
    for r in &page.rows {
        l.push(format!(
            "{} ({}): {}, {} unread, {}{}",
            r.name,
            r.jid,
            r.state,
            r.unread,
            xep0082(r.last_activity),
            r.assignee
                .as_deref()
                .map(|a| format!(", assigned to {a}"))
                .unwrap_or_default()
        ));
    }
    if page.more {
        l.push(format!("Only the latest {PAGE}; search to find others."));
    }
    l.join("\n")
}

fn counts_fields(x: &mut Element, page: &Page) {
    for (v, c) in counts_in_order(&page.counts) {
        x.append_child(form_field(
            &format!("count-{v}"),
            "text-single",
            &format!("{v} (conversations/with unread)"),
            count_value(c),
        ));
    }
}

fn values(r: &view::Row) -> [Option<String>; 6] {
    [
        Some(r.jid.clone()),
        Some(r.name.clone()),
        r.assignee.clone(),
        Some(r.state.to_owned()),
        Some(r.unread.to_string()),
        Some(xep0082(r.last_activity)),
    ]
}

fn result_form(title: &str, page: &Page) -> Element {
    let mut x = element("x", DATA, &[("type", "result")]);
    x.append_child(with_text(Element::bare("title", DATA), title));
    counts_fields(&mut x, page);
    let mut reported = Element::bare("reported", DATA);
    for (var, label) in COLUMNS {
        reported.append_child(element(
            "field",
            DATA,
            &[("var", var), ("label", label), ("type", "text-single")],
        ));
    }
    x.append_child(reported);
    for r in &page.rows {
        let mut item = Element::bare("item", DATA);
        for ((var, _), value) in COLUMNS.iter().zip(values(r)) {
            let mut field = element("field", DATA, &[("var", var)]);
            if let Some(v) = value {
                field.append_child(with_text(Element::bare("value", DATA), v));
            }
            item.append_child(field);
        }
        x.append_child(item);
    }
    x
}

/// For clients that stop on multi-item forms (Gajim 1.7): one plain form,
/// each conversation a `fixed` header and a field per column.
fn single_form(title: &str, page: &Page) -> Element {
    let mut x = element("x", DATA, &[("type", "result")]);
    x.append_child(with_text(Element::bare("title", DATA), title));
    counts_fields(&mut x, page);
    for (i, r) in page.rows.iter().enumerate() {
        let n = i + 1;
        x.append_child(fixed_field(
            &format!("{n}-jid"),
            format!("{} ({})", r.name, r.customer),
        ));
        for ((var, label), value) in COLUMNS.iter().zip(values(r)).skip(2) {
            let Some(v) = value else { continue };
            x.append_child(form_field(&format!("{n}-{var}"), "text-single", label, v));
        }
    }
    x
}
