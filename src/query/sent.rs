//! Issue 9: the `status` ad-hoc command (xep/status-command.md). The
//! asker's recent sent messages, 1:1 and in rooms, newest first, as a
//! XEP-0004 multi-item result, a page at a time.
//!
//! Stateless: the session id carries where the page stands (its page
//! number, its newest and oldest sequence numbers and the filter), so no
//! session is kept in memory. A forged session id shows nothing new: the
//! rows are always the asker's own (the `from` of the request, never the
//! session), and one request's work is bounded by the store
//! ([`crate::store::Store::sent_by`]) plus [`PAGE`] rows.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use crate::context::Context;
use crate::conversation::room::tally;
use crate::incoming::{CommandRequest, STATUS_COMMAND, STATUS_FILTER_FIELD};
use crate::stanza::ns::{COMMANDS, DATA};
use crate::stanza::{
    DefinedCondition, ErrorType, StanzaError, element, form_field, stanza_error, with_text, xep0082,
};
use crate::status::{derive, not_reported};
use crate::store::{SentEntry, SentFrom, SentTo, Seq, StoreError, preview};

/// Rows per page.
pub const PAGE: usize = 20;

/// The session id's prefix; the version lets a later format refuse an
/// older one cleanly.
const SESSION: &str = "status1";

/// Where a page stands: what the session id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// 1 for the newest page.
    pub page: u32,
    /// The newest and oldest sequence numbers shown.
    pub top: Seq,
    pub bottom: Seq,
    pub filter: Option<SentTo>,
}

impl Cursor {
    /// `status1:page:top:bottom:filter`, the filter `c:JID`, `r:JID` or
    /// empty; the JID last, since a domain may hold a colon.
    pub fn encode(&self) -> String {
        let filter = match &self.filter {
            None => String::new(),
            Some(SentTo::Contact(j)) => format!("c:{j}"),
            Some(SentTo::Room(j)) => format!("r:{j}"),
        };
        format!(
            "{SESSION}:{}:{}:{}:{filter}",
            self.page, self.top, self.bottom
        )
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let mut parts = s.splitn(5, ':');
        if parts.next()? != SESSION {
            return None;
        }
        let page = parts.next()?.parse().ok().filter(|p| *p > 0)?;
        let top = parts.next()?.parse().ok()?;
        let bottom = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let filter = if rest.is_empty() {
            None
        } else {
            let (kind, jid) = rest.split_once(':')?;
            let jid = Jid::new(jid).ok()?.to_bare().to_string();
            Some(match kind {
                "c" => SentTo::Contact(jid),
                "r" => SentTo::Room(jid),
                _ => return None,
            })
        };
        (bottom <= top).then_some(Cursor {
            page,
            top,
            bottom,
            filter,
        })
    }
}

// Hand-built: xmpp-parsers 0.23 has no XEP-0050 commands.
fn command(session: &str, status: &str) -> Element {
    element(
        "command",
        COMMANDS,
        &[
            ("node", STATUS_COMMAND),
            ("sessionid", session),
            ("status", status),
        ],
    )
}

fn bad_request(text: String) -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

pub fn execute(
    cx: &mut Context,
    from: &Jid,
    req: CommandRequest,
    now: crate::store::Millis,
) -> Result<Result<Element, StanzaError>, StoreError> {
    let asker = from.to_bare().to_string();
    if req.action == "cancel" {
        let session = req.session.unwrap_or_else(|| cx.local_id(now));
        return Ok(Ok(command(&session, "canceled")));
    }
    // Where to read from, and which page that is. A page's session id
    // wins over a form: some clients submit the page's form again with
    // `next`.
    let cursor = req.session.as_deref().and_then(Cursor::decode);
    if let Some(session) = req.session.as_deref()
        && cursor.is_none()
        && session.starts_with(SESSION)
    {
        return Ok(Err(bad_request(format!(
            "session {session:?} is not a page of the {STATUS_COMMAND} command; run the command again"
        ))));
    }
    let (from_pos, page, filter) = if let Some(cursor) = cursor {
        match req.action.as_str() {
            "next" | "execute" => (
                SentFrom::Before(cursor.bottom),
                cursor.page.saturating_add(1),
                cursor.filter,
            ),
            "prev" => (
                SentFrom::After(cursor.top),
                cursor.page.saturating_sub(1).max(1),
                cursor.filter,
            ),
            "complete" => {
                return Ok(Ok(command(&cursor.encode(), "completed")));
            }
            other => {
                return Ok(Err(bad_request(format!(
                    "action {other:?} is not one of execute, next, prev, complete, cancel"
                ))));
            }
        }
    } else if req.form_submitted {
        let filter = match req.with.as_deref().map(|w| filter_of(cx, w)).transpose() {
            Ok(f) => f,
            Err(text) => return Ok(Err(bad_request(text))),
        };
        (SentFrom::Before(Seq::MAX), 1, filter)
    } else if req.session.is_some() {
        // The first stage's session, moved on without its form: all.
        (SentFrom::Before(Seq::MAX), 1, None)
    } else {
        // The first stage: the filter form (XEP-0050 §3.4, multi-stage).
        let mut cmd = command(&cx.local_id(now), "executing");
        let mut actions = element("actions", COMMANDS, &[("execute", "next")]);
        actions.append_child(Element::bare("next", COMMANDS));
        cmd.append_child(actions);
        cmd.append_child(filter_form());
        return Ok(Ok(cmd));
    };
    // One more than a page tells whether there are older ones.
    let found = cx
        .store
        .sent_by(&asker, from_pos, PAGE + 1, filter.as_ref())?;
    let mut entries = found.entries;
    let mut older = match from_pos {
        SentFrom::Before(_) => entries.len() > PAGE,
        // A previous page: the page it came from is older.
        SentFrom::After(_) => true,
    };
    match from_pos {
        SentFrom::Before(_) => entries.truncate(PAGE),
        // The oldest PAGE + 1 above: the newest PAGE of them make the page.
        SentFrom::After(_) => {
            if entries.len() > PAGE {
                entries.remove(0);
            }
        }
    }
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        let session = Cursor {
            page: 1,
            top: 0,
            bottom: 0,
            filter: filter.clone(),
        }
        .encode();
        let mut done = command(&session, "completed");
        done.append_child(with_text(
            element("note", COMMANDS, &[("type", "info")]),
            match &filter {
                None => "You have sent no messages through this service.".to_owned(),
                Some(SentTo::Contact(j) | SentTo::Room(j)) => {
                    format!("You have sent no messages to {j} through this service.")
                }
            },
        ));
        if multi_item_forms(cx, from) {
            done.append_child(result_form(cx, &asker, &[], 1)?);
        }
        return Ok(Ok(done));
    };
    let cursor = Cursor {
        page,
        top: first.seq,
        bottom: last.seq,
        filter,
    };
    if matches!(from_pos, SentFrom::After(_)) {
        older = !cx
            .store
            .sent_by(
                &asker,
                SentFrom::Before(cursor.bottom),
                1,
                cursor.filter.as_ref(),
            )?
            .entries
            .is_empty();
    }
    // Newer ones: is the newest of all above this page? (Cheap: the walk
    // stops at the first message found.)
    let newer = from_pos != SentFrom::Before(Seq::MAX)
        && cx
            .store
            .sent_by(
                &asker,
                SentFrom::Before(Seq::MAX),
                1,
                cursor.filter.as_ref(),
            )?
            .entries
            .first()
            .is_some_and(|e| e.seq > cursor.top);
    // The store stopped at its bound on work: say why the list ends here.
    let cut = found.cut && !older;
    let session = cursor.encode();
    let mut cmd = if older || newer {
        let mut cmd = command(&session, "executing");
        let mut actions = element(
            "actions",
            COMMANDS,
            &[("execute", if older { "next" } else { "complete" })],
        );
        if newer {
            actions.append_child(Element::bare("prev", COMMANDS));
        }
        if older {
            actions.append_child(Element::bare("next", COMMANDS));
        }
        actions.append_child(Element::bare("complete", COMMANDS));
        cmd.append_child(actions);
        cmd
    } else {
        command(&session, "completed")
    };
    if cut {
        cmd.append_child(with_text(
            element("note", COMMANDS, &[("type", "info")]),
            "Older messages are not listed: this list looks only so far back at a time. To see older messages of one conversation, give its contact or room.",
        ));
    }
    let (form, lines, rows) = page_of(cx, &asker, &entries, cursor.page)?;
    if multi_item_forms(cx, from) {
        cmd.append_child(text_note(&lines));
        cmd.append_child(form);
    } else {
        cmd.append_child(single_form(
            &rows,
            cursor.page,
            cx.config.status.preview_chars > 0,
        ));
    }
    Ok(Ok(cmd))
}

/// Whether the asking client may be sent a multi-item result form: yes
/// unless its caps say it is one that stops on them (Gajim 1.7), so a
/// client tidemark knows nothing of gets the page as specified.
fn multi_item_forms(cx: &Context, from: &Jid) -> bool {
    !cx.clients
        .client(from)
        .is_some_and(|a| a.no_multi_item_forms)
}

/// The page for a client that stops on multi-item forms: one `result` form,
/// each message a `fixed` field naming its addressee followed by a
/// read-only `text-single` field per column it has a value for (Gajim shows
/// a header, then short label/value pairs; its notes are centred labels,
/// hard to read as a list, and a long value is not wrapped). Vars are
/// numbered by message: `3-sent`.
fn single_form(rows: &[Row], page: u32, with_preview: bool) -> Element {
    let mut x = element("x", DATA, &[("type", "result")]);
    x.append_child(with_text(
        Element::bare("title", DATA),
        format!("Sent messages, page {page}, newest first"),
    ));
    for (i, row) in rows.iter().enumerate() {
        let n = i + 1;
        let get = |var: &str| row.iter().find(|(k, _)| *k == var).map(|(_, v)| v.as_str());
        let mut header = element(
            "field",
            DATA,
            &[("var", &format!("{n}-to")), ("type", "fixed")],
        );
        header.append_child(with_text(
            Element::bare("value", DATA),
            get("to").unwrap_or("?"),
        ));
        x.append_child(header);
        for (var, label, _) in columns(with_preview) {
            let Some(v) = get(var).filter(|_| var != "to") else {
                continue;
            };
            x.append_child(form_field(&format!("{n}-{var}"), "text-single", label, v));
        }
    }
    x
}

/// A contact's bare JID, their tracked address, or a room, as a filter.
fn filter_of(cx: &Context, with: &str) -> Result<SentTo, String> {
    let with = with.trim();
    let jid = Jid::new(with).map_err(|e| format!("{with:?} is not an XMPP address: {e}"))?;
    if let Some((room, None)) = cx.addrs.room_of(&jid) {
        return Ok(SentTo::Room(room.to_string()));
    }
    if cx.addrs.is_ours(&jid) {
        return match cx.addrs.contact_of(&jid) {
            Ok(contact) => Ok(SentTo::Contact(contact.to_bare().to_string())),
            Err(_) => Err(format!(
                "{with:?} is neither a room nor a tracked address at this service"
            )),
        };
    }
    let bare = jid.to_bare();
    if bare.node().is_none() {
        return Err(format!(
            "{with:?} is a server, not a contact; give an address like user@example.org"
        ));
    }
    Ok(SentTo::Contact(bare.to_string()))
}

/// The first stage's form: an optional filter.
fn filter_form() -> Element {
    let mut x = element("x", DATA, &[("type", "form")]);
    x.append_child(with_text(Element::bare("title", DATA), "Sent messages"));
    x.append_child(with_text(
        Element::bare("instructions", DATA),
        "Your recent messages, newest first, with whether they were delivered and read. To see only one conversation, give the contact's address or the room's; leave it empty for all.",
    ));
    x.append_child(element(
        "field",
        DATA,
        &[
            ("var", STATUS_FILTER_FIELD),
            ("type", "jid-single"),
            ("label", "Contact or room (optional)"),
        ],
    ));
    x
}

/// The columns, in order: (var, label, type).
fn columns(with_preview: bool) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut c = vec![
        ("to", "To", "jid-single"),
        ("sent", "Sent", "text-single"),
        ("state", "Status", "text-single"),
        ("delivered", "Delivered", "text-single"),
        ("read", "Read", "text-single"),
        ("read-by", "Read by", "text-single"),
        ("failure", "Failure", "text-single"),
        // A state the recipient's client will not report (xep/status.md).
        ("note", "Note", "text-single"),
        ("id", "Message id", "text-single"),
    ];
    if with_preview {
        c.insert(1, ("preview", "Message", "text-single"));
    }
    c
}

/// One row: values by column var (absent: no value).
type Row = Vec<(&'static str, String)>;

/// The `result` form of one page (XEP-0004 §3.4: `<reported/>`, then one
/// `<item/>` per message with every reported field).
fn result_form(
    cx: &Context,
    asker: &str,
    entries: &[SentEntry],
    page: u32,
) -> Result<Element, StoreError> {
    Ok(page_of(cx, asker, entries, page)?.0)
}

/// The page as a XEP-0050 note, one line per message: clients that show no
/// multi-item results (Profanity 0.13 shows only the form's title) show
/// notes.
fn text_note(lines: &[String]) -> Element {
    with_text(
        element("note", COMMANDS, &[("type", "info")]),
        lines.join("\n"),
    )
}

/// One row as a line a person reads: to whom, what, when, and its state.
fn line(row: &Row) -> String {
    let get = |var: &str| row.iter().find(|(k, _)| *k == var).map(|(_, v)| v.as_str());
    let mut out = format!(
        "{}: {}",
        get("to").unwrap_or("?"),
        get("state").unwrap_or("?")
    );
    for (var, label) in [
        ("read-by", "read by"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
    ] {
        if let Some(v) = get(var) {
            out.push_str(&format!(", {label} {v}"));
        }
    }
    if let Some(p) = get("preview") {
        out.push_str(&format!(", \"{p}\""));
    }
    for var in ["failure", "note"] {
        if let Some(v) = get(var) {
            out.push_str(&format!(" ({v})"));
        }
    }
    if let Some(id) = get("id") {
        out.push_str(&format!(" [id {id}]"));
    }
    out
}

/// The result form of one page, its rows as lines of text, and the rows.
fn page_of(
    cx: &Context,
    asker: &str,
    entries: &[SentEntry],
    page: u32,
) -> Result<(Element, Vec<String>, Vec<Row>), StoreError> {
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    let chars = cx.config.status.preview_chars;
    let cols = columns(chars > 0);
    let mut x = element("x", DATA, &[("type", "result")]);
    x.append_child(with_text(
        Element::bare("title", DATA),
        format!("Sent messages, page {page}"),
    ));
    let mut reported = Element::bare("reported", DATA);
    for (var, label, type_) in &cols {
        reported.append_child(element(
            "field",
            DATA,
            &[("var", var), ("label", label), ("type", type_)],
        ));
    }
    x.append_child(reported);
    for entry in entries {
        let Some(row) = row(cx, asker, entry, chars)? else {
            continue;
        };
        lines.push(line(&row));
        rows.push(row.clone());
        let mut item = Element::bare("item", DATA);
        for (var, _, _) in &cols {
            let mut field = element("field", DATA, &[("var", var)]);
            if let Some((_, v)) = row.iter().find(|(k, _)| k == var) {
                field.append_child(with_text(Element::bare("value", DATA), v.as_str()));
            }
            item.append_child(field);
        }
        x.append_child(item);
    }
    Ok((x, lines, rows))
}

/// A message's row, `None` if it is gone (retention, a trimmed refusal).
fn row(
    cx: &Context,
    asker: &str,
    entry: &SentEntry,
    chars: usize,
) -> Result<Option<Row>, StoreError> {
    let seq = entry.seq;
    let mut row: Row = Vec::new();
    match &entry.to {
        SentTo::Contact(contact) => {
            let conv = entry.to.conversation(asker);
            let Some(record) = cx.store.message(&conv, seq)? else {
                return Ok(None);
            };
            if record.sender != asker {
                return Ok(None);
            }
            let read_at = if record.readable {
                cx.store.read_at(&conv, &record.recipient, seq)?
            } else {
                None
            };
            let status = derive(&record, read_at);
            row.push(("to", contact.clone()));
            row.push(("sent", xep0082(record.sent_at)));
            row.push(("state", status.state.as_str().to_owned()));
            if let Some(t) = status.delivered {
                row.push(("delivered", xep0082(t)));
            }
            if let Some(t) = status.read {
                row.push(("read", xep0082(t)));
            }
            if record.readable && record.failed.is_none() {
                row.push(("read-by", format!("{}/1", u8::from(status.read.is_some()))));
            }
            if let Some(f) = &record.failed {
                row.push(("failure", format!("{}: {}", f.condition, f.text)));
            }
            let unsaid = not_reported(&status, record.readable, cx.clients.of(contact));
            if !unsaid.is_empty() {
                let texts: Vec<&str> = unsaid.iter().map(|n| n.text.as_str()).collect();
                row.push(("note", texts.join("; ")));
            }
            row.push(("id", record.id));
            if let Some(p) = entry.preview.as_deref().and_then(|p| preview(p, chars)) {
                row.push(("preview", p));
            }
        }
        SentTo::Room(room) => {
            let found = cx
                .store
                .room_messages_between(room, seq.saturating_sub(1), seq)?;
            let Some((_, message)) = found.into_iter().find(|(s, _)| *s == seq) else {
                return Ok(None);
            };
            if message.sender != asker {
                return Ok(None);
            }
            let t = tally(cx, room, seq, &message)?;
            row.push(("to", room.clone()));
            row.push(("sent", xep0082(message.sent_at)));
            row.push(("state", t.summary.to_owned()));
            if let Some(at) = t.all_read_at {
                row.push(("read", xep0082(at)));
            }
            if message.readable {
                row.push(("read-by", format!("{}/{}", t.read, t.recipients.len())));
            }
            row.push(("id", message.id.clone()));
            if chars > 0
                && let Some(p) = room_preview(&message.stanza, chars)
            {
                row.push(("preview", p));
            }
        }
    }
    Ok(Some(row))
}

/// The start of a room message's text, from the stanza kept for history.
fn room_preview(stanza: &[u8], chars: usize) -> Option<String> {
    let el: Element = std::str::from_utf8(stanza).ok()?.parse().ok()?;
    let body = el.children().find(|c| c.name() == "body")?;
    preview(&body.text(), chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        for filter in [
            None,
            Some(SentTo::Contact("bob@example.org".into())),
            Some(SentTo::Room("team@chat.example.org".into())),
            Some(SentTo::Contact("bob@[::1]".into())),
        ] {
            let c = Cursor {
                page: 3,
                top: 900,
                bottom: 450,
                filter,
            };
            assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        }
        for bad in [
            "",
            "status1",
            "status1:0:9:1:",
            "status1:1:1:9:",
            "status1:1:x:1:",
            "status1:1:9:1:z:bob@x",
            "status1:1:9:1:c:",
            "status0:1:9:1:",
            "1-2-3",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_preview_is_cut_on_a_character_boundary() {
        assert_eq!(preview("héllo wörld", 4), Some("héll".into()));
        assert_eq!(preview("日本語のテキスト", 3), Some("日本語".into()));
        assert_eq!(preview("short", 40), Some("short".into()));
        assert_eq!(preview("anything", 0), None);
        assert_eq!(preview("   ", 10), None);
    }
}
