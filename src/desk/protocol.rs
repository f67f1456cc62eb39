//! `urn:tidemark:desk:0` (xep/desk.md §6): views, actions and history for
//! programs; every request needs its sender to be an agent of the desk.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use super::view::{self, Page};
use super::{Answer, At, Desks, actions, desk_for_agent, events, not_found};
use crate::context::Context;
use crate::incoming::DeskRequest;
use crate::stanza::{element, ns, set_attr, with_text, xep0082};
use crate::store::{DeskCounts, Millis, StoreError, ViewCount};

/// History entries returned unless fewer are asked for.
pub const HISTORY: usize = 100;

pub fn answer(
    cx: &mut Context,
    desks: &mut Desks,
    from: &Jid,
    req: DeskRequest,
    now: Millis,
) -> Result<Answer, StoreError> {
    let desk_name = match &req {
        DeskRequest::View { desk, .. }
        | DeskRequest::Act { desk, .. }
        | DeskRequest::History { desk, .. } => desk.to_lowercase(),
    };
    let agent = from.to_bare().to_string();
    let (desk, jid) = match desk_for_agent(cx, &desk_name, &agent)? {
        Ok(found) => found,
        Err(e) => return Ok(Answer::error(e)),
    };
    let at = At { desk: &desk, jid };
    match req {
        DeskRequest::View {
            view: name,
            search,
            max,
            after,
            ..
        } => {
            let Some(view) = view::parse_view(&name, &agent) else {
                return Ok(Answer::error(view::no_such_view(&name)));
            };
            let page = view::page(
                cx,
                &at,
                &agent,
                &view,
                search.as_deref(),
                after.as_deref(),
                max.unwrap_or(view::MAX_PAGE),
            )?;
            let mut el = element(
                "view",
                ns::DESK,
                &[("desk", desk.name.as_str()), ("name", view.name())],
            );
            if let Some(s) = &search {
                set_attr(&mut el, "search", s.as_str());
            }
            fill_view(&mut el, &page);
            Ok(Answer::result(Some(el)))
        }
        DeskRequest::Act {
            customer, action, ..
        } => {
            let customer = normalise(&customer);
            Ok(
                match actions::act(cx, desks, &at, &customer, &agent, action, now)? {
                    Ok(shown) => Answer {
                        result: Ok(None),
                        also: shown,
                    },
                    Err(e) => Answer::error(e),
                },
            )
        }
        DeskRequest::History { customer, max, .. } => {
            let customer = normalise(&customer);
            if cx.store.desk_conversation(&desk.name, &customer)?.is_none() {
                return Ok(Answer::error(not_found(format!(
                    "{customer} has no conversation with {}",
                    desk.name
                ))));
            }
            let limit = max.unwrap_or(HISTORY).clamp(1, HISTORY);
            let mut el = element(
                "history",
                ns::DESK,
                &[
                    ("desk", desk.name.as_str()),
                    ("customer", customer.as_str()),
                ],
            );
            for (_, event) in cx.store.desk_events(&desk.name, &customer, limit)? {
                el.append_child(events::event_element(&event));
            }
            Ok(Answer::result(Some(el)))
        }
    }
}

/// A customer's bare JID as the store keys it (stringprep'd).
fn normalise(customer: &str) -> String {
    xmpp_parsers::jid::BareJid::new(customer.trim())
        .map(|b| b.to_string())
        .unwrap_or_else(|_| customer.to_owned())
}

fn count(view: &str, c: ViewCount) -> Element {
    element(
        "count",
        ns::DESK,
        &[
            ("view", view),
            ("conversations", &c.conversations.to_string()),
            ("unread", &c.unread.to_string()),
        ],
    )
}

pub fn counts_in_order(c: &DeskCounts) -> [(&'static str, ViewCount); 4] {
    [
        ("mine", c.mine),
        ("unassigned", c.unassigned),
        ("all", c.all),
        ("done", c.done),
    ]
}

fn fill_view(el: &mut Element, page: &Page) {
    for (name, c) in counts_in_order(&page.counts) {
        el.append_child(count(name, c));
    }
    for r in &page.rows {
        let mut row = element(
            "conversation",
            ns::DESK,
            &[
                ("jid", r.jid.as_str()),
                ("customer", r.customer.as_str()),
                ("name", r.name.as_str()),
            ],
        );
        if let Some(a) = &r.assignee {
            set_attr(&mut row, "assignee", a.as_str());
        }
        set_attr(&mut row, "state", r.state);
        set_attr(&mut row, "unread", r.unread.to_string());
        set_attr(&mut row, "last-activity", xep0082(r.last_activity));
        el.append_child(row);
    }
    if page.more
        && let Some(last) = page.rows.last()
    {
        let mut set = Element::bare("set", ns::RSM);
        set.append_child(with_text(Element::bare("last", ns::RSM), r_customer(last)));
        el.append_child(set);
    }
}

fn r_customer(r: &view::Row) -> String {
    r.customer.clone()
}
