//! The list for standard clients: the XEP-0050 commands `inbox` and
//! `mark-read` (xep/inbox.md §5). Their nodes and field names are the
//! contract.
//!
//! `inbox` is stateless like the `status` command: the session id carries
//! where the page stands (its number, the cursor, the filters), and the
//! rows are always the asker's own, whatever a session id says.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use super::protocol::{mark_read, settings};
use super::view::{self, Query, Row};
use crate::context::Context;
use crate::incoming::{CommandRequest, INBOX_COMMAND, MARK_READ_COMMAND};
use crate::stanza::ns::{COMMANDS, DATA};
use crate::stanza::{
    DefinedCondition, ErrorType, StanzaError, command_element as command, command_note as note,
    element, fixed_field, form_field, stanza_error, with_text, xep0082,
};
use crate::store::{Millis, Seq, StoreError};

/// Rows per page of the command (a client shows them as a table).
pub const PAGE: usize = 20;

const SESSION: &str = "inbox1";

/// The fields of the first stage, and the reported columns.
pub const SEARCH_FIELD: &str = "search";
pub const UNREAD_ONLY_FIELD: &str = "unread-only";
pub const JID_FIELD: &str = "jid";
const COLUMNS: [(&str, &str); 6] = [
    ("jid", "Address"),
    ("name", "Name"),
    ("unread", "Unread"),
    ("missed", "Missed"),
    ("last-activity", "Last message"),
    ("state", "Your last message"),
];

/// Where a page stands: `inbox1:page:before:unread-only:search`, the
/// search last since it may hold a colon.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    page: u32,
    before: Seq,
    unread_only: bool,
    search: Option<String>,
}

impl Cursor {
    fn encode(&self) -> String {
        format!(
            "{SESSION}:{}:{}:{}:{}",
            self.page,
            self.before,
            u8::from(self.unread_only),
            self.search.as_deref().unwrap_or("")
        )
    }

    fn decode(s: &str) -> Option<Cursor> {
        let mut parts = s.splitn(5, ':');
        if parts.next()? != SESSION {
            return None;
        }
        let page = parts.next()?.parse().ok().filter(|p| *p > 0)?;
        let before = parts.next()?.parse().ok()?;
        let unread_only = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let search = Some(parts.next()?.to_owned()).filter(|s| !s.is_empty());
        Some(Cursor {
            page,
            before,
            unread_only,
            search,
        })
    }
}

fn bad_request(text: impl Into<String>) -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

fn switched_off() -> StanzaError {
    stanza_error(
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        "the conversation list is switched off here (inbox.enabled = false)",
    )
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "" | "0" | "false" => Some(false),
        "1" | "true" => Some(true),
        _ => None,
    }
}

/// The `inbox` command.
pub fn inbox(
    cx: &mut Context,
    from: &Jid,
    req: CommandRequest,
    now: Millis,
) -> Result<Result<Element, StanzaError>, StoreError> {
    if !cx.config.inbox.enabled {
        return Ok(Err(switched_off()));
    }
    let user = from.to_bare().to_string();
    if req.action == "cancel" {
        let session = req.session.unwrap_or_else(|| cx.local_id(now));
        return Ok(Ok(command(INBOX_COMMAND, &session, "canceled")));
    }
    let cursor = req.session.as_deref().and_then(Cursor::decode);
    let cursor = if let Some(c) = cursor {
        match req.action.as_str() {
            // A page's session wins over a form some clients send again.
            "next" | "execute" => c,
            "complete" => return Ok(Ok(command(INBOX_COMMAND, &c.encode(), "completed"))),
            other => {
                return Ok(Err(bad_request(format!(
                    "action {other:?} is not one of execute, next, complete, cancel"
                ))));
            }
        }
    } else if req.form_submitted {
        let Some(unread_only) = parse_bool(req.field(UNREAD_ONLY_FIELD).unwrap_or("")) else {
            return Ok(Err(bad_request(format!(
                "{UNREAD_ONLY_FIELD} must be a boolean (1 or 0)"
            ))));
        };
        Cursor {
            page: 0,
            before: Seq::MAX,
            unread_only,
            search: req
                .field(SEARCH_FIELD)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }
    } else if req.session.is_some() {
        // The first stage's session, moved on without its form: all.
        Cursor {
            page: 0,
            before: Seq::MAX,
            unread_only: false,
            search: None,
        }
    } else {
        let mut cmd = command(INBOX_COMMAND, &cx.local_id(now), "executing");
        let mut actions = element("actions", COMMANDS, &[("execute", "next")]);
        actions.append_child(Element::bare("next", COMMANDS));
        cmd.append_child(actions);
        cmd.append_child(filter_form());
        return Ok(Ok(cmd));
    };
    let q = Query {
        search: cursor.search.clone(),
        unread_only: cursor.unread_only,
        before: Some(cursor.before),
        max: PAGE,
    };
    let page = view::list(&*cx.store, &settings(cx), &user, &q)?;
    let next = Cursor {
        page: cursor.page + 1,
        before: page.rows.last().map_or(0, |r| r.latest),
        ..cursor
    };
    let mut cmd = if page.more {
        let mut cmd = command(INBOX_COMMAND, &next.encode(), "executing");
        let mut actions = element("actions", COMMANDS, &[("execute", "next")]);
        actions.append_child(Element::bare("next", COMMANDS));
        actions.append_child(Element::bare("complete", COMMANDS));
        cmd.append_child(actions);
        cmd
    } else {
        command(INBOX_COMMAND, &next.encode(), "completed")
    };
    let mut lines = vec![format!("{} unread in all", page.total_unread)];
    if page.rows.is_empty() {
        lines.push(if next.search.is_some() || next.unread_only {
            "No conversation matches.".to_owned()
        } else {
            "You have no conversations through this service yet.".to_owned()
        });
    }
    lines.extend(page.rows.iter().map(line));
    // Gajim 1.7 stops on multi-item forms (xep/status-command.md): its
    // sessions get the page as one plain form, as the status command does.
    let plain = cx
        .clients
        .client(from)
        .is_some_and(|a| a.no_multi_item_forms);
    if plain {
        cmd.append_child(single_form(&page, next.page));
    } else {
        cmd.append_child(note(lines.join("\n")));
        cmd.append_child(result_form(&page, next.page));
    }
    Ok(Ok(cmd))
}

/// One row as a line of text, for clients that show only notes.
fn line(r: &Row) -> String {
    let mut l = format!("{} ({})", r.name, r.jid);
    if r.unread > 0 {
        l.push_str(&format!(": {} unread", r.unread));
    }
    if let Some(m) = r.missed {
        l.push_str(&format!(
            ", missed {} attempt{} (last {})",
            m.count,
            if m.count == 1 { "" } else { "s" },
            xep0082(m.last_at)
        ));
    }
    if let Some(at) = r.last_activity {
        l.push_str(&format!(", last {}", xep0082(at)));
    }
    if let Some(s) = r.state {
        l.push_str(&format!(", yours {s}"));
    }
    l
}

fn filter_form() -> Element {
    let mut x = element("x", DATA, &[("type", "form")]);
    x.append_child(with_text(Element::bare("title", DATA), "Conversations"));
    x.append_child(with_text(
        Element::bare("instructions", DATA),
        "Leave both empty to list every conversation, newest first.",
    ));
    x.append_child(element(
        "field",
        DATA,
        &[
            ("var", SEARCH_FIELD),
            ("type", "text-single"),
            ("label", "Search by address or name"),
        ],
    ));
    let mut unread = element(
        "field",
        DATA,
        &[
            ("var", UNREAD_ONLY_FIELD),
            ("type", "boolean"),
            ("label", "Only conversations with unread messages"),
        ],
    );
    unread.append_child(with_text(Element::bare("value", DATA), "0"));
    x.append_child(unread);
    x
}

/// A result form's start: its title and the field `total-unread`.
fn page_start(title: String, page: &view::Page) -> Element {
    let mut x = element("x", DATA, &[("type", "result")]);
    x.append_child(with_text(Element::bare("title", DATA), title));
    x.append_child(form_field(
        "total-unread",
        "text-single",
        "Unread in all",
        page.total_unread.to_string(),
    ));
    x
}

fn result_form(page: &view::Page, number: u32) -> Element {
    let mut x = page_start(format!("Conversations, page {number}"), page);
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
        let values = [
            Some(r.jid.clone()),
            Some(r.name.clone()),
            Some(r.unread.to_string()),
            Some(r.missed.map_or(0, |m| m.count).to_string()),
            r.last_activity.map(xep0082),
            r.state.map(str::to_owned),
        ];
        let mut item = Element::bare("item", DATA);
        for ((var, _), value) in COLUMNS.iter().zip(values) {
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

/// The page for a client that stops on multi-item forms: one `result`
/// form, the total first, then each conversation a `fixed` field (its name
/// and address) followed by a read-only field per column it has a value
/// for; vars numbered by row (`3-unread`).
fn single_form(page: &view::Page, number: u32) -> Element {
    let mut x = page_start(format!("Conversations, page {number}, newest first"), page);
    for (i, r) in page.rows.iter().enumerate() {
        let n = i + 1;
        x.append_child(fixed_field(
            &format!("{n}-jid"),
            format!("{} ({})", r.name, r.jid),
        ));
        let values = [
            ("unread", "Unread", Some(r.unread.to_string())),
            ("missed", "Missed", r.missed.map(|m| m.count.to_string())),
            (
                "last-activity",
                "Last message",
                r.last_activity.map(xep0082),
            ),
            ("state", "Your last message", r.state.map(str::to_owned)),
        ];
        for (var, label, value) in values {
            let Some(v) = value else { continue };
            x.append_child(form_field(&format!("{n}-{var}"), "text-single", label, v));
        }
    }
    x
}

/// The `mark-read` command: one conversation (field `jid`) or, left
/// empty, all; nobody else is told.
pub fn mark_read_command(
    cx: &mut Context,
    from: &Jid,
    req: CommandRequest,
    now: Millis,
) -> Result<Result<Element, StanzaError>, StoreError> {
    if !cx.config.inbox.enabled {
        return Ok(Err(switched_off()));
    }
    let user = from.to_bare().to_string();
    let session = req.session.clone().unwrap_or_else(|| cx.local_id(now));
    if req.action == "cancel" {
        return Ok(Ok(command(MARK_READ_COMMAND, &session, "canceled")));
    }
    if !req.form_submitted {
        let mut cmd = command(MARK_READ_COMMAND, &session, "executing");
        let mut actions = element("actions", COMMANDS, &[("execute", "complete")]);
        actions.append_child(Element::bare("complete", COMMANDS));
        cmd.append_child(actions);
        let mut x = element("x", DATA, &[("type", "form")]);
        x.append_child(with_text(Element::bare("title", DATA), "Mark as read"));
        x.append_child(with_text(
            Element::bare("instructions", DATA),
            "Give a contact, their tracked address or a room; leave it empty to mark every conversation read. Nobody is told.",
        ));
        x.append_child(element(
            "field",
            DATA,
            &[
                ("var", JID_FIELD),
                ("type", "text-single"),
                ("label", "Conversation"),
            ],
        ));
        cmd.append_child(x);
        return Ok(Ok(cmd));
    }
    let jid = req
        .field(JID_FIELD)
        .map(str::trim)
        .filter(|j| !j.is_empty());
    if let Err(e) = mark_read(cx, &user, jid, now)? {
        return Ok(Err(e));
    }
    let mut done = command(MARK_READ_COMMAND, &session, "completed");
    done.append_child(note(match jid {
        Some(j) => format!("{j} is marked read."),
        None => "Every conversation is marked read.".to_owned(),
    }));
    Ok(Ok(done))
}
