//! `urn:tidemark:inbox:0` (xep/inbox.md): the list for programs, shaped
//! after XEP-0430 (XEP-0059 paging, unread-only, search), and the updates
//! pushed to the sessions that subscribe.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use super::view::{self, Peer, Query, Settings};
use super::{Inbox, render};
use crate::context::Context;
use crate::incoming::InboxRequest;
use crate::stanza::{DefinedCondition, ErrorType, StanzaError, stanza_error};
use crate::status::private_mark::private_reader;
use crate::store::{ConversationKey, Millis, StoreError, Write};

/// Rows per page unless the asker says (XEP-0059 `max`), and the most.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 100;

pub fn settings(cx: &Context) -> Settings {
    Settings {
        addrs: cx.addrs.clone(),
        default_read_receipts: cx.config.status.send_read_receipts,
    }
}

fn bad_request(text: impl Into<String>) -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

/// Answers one request of `from`; `Ok(None)` is an empty result.
pub fn answer(
    cx: &mut Context,
    inbox: &mut Inbox,
    from: &Jid,
    req: InboxRequest,
    now: Millis,
) -> Result<Result<Option<Element>, StanzaError>, StoreError> {
    let user = from.to_bare().to_string();
    if !cx.config.inbox.enabled {
        return Ok(Err(stanza_error(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "the conversation list is switched off here (inbox.enabled = false)",
        )));
    }
    Ok(match req {
        InboxRequest::List {
            owner,
            search,
            unread_only,
            max,
            after,
        } => {
            // Same answer whoever the owner is and whether they exist: a
            // list is only ever its owner's business.
            if owner.is_some_and(|o| !Jid::new(&o).is_ok_and(|o| o.to_bare() == from.to_bare())) {
                return Ok(Err(stanza_error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "you can only see your own conversation list",
                )));
            }
            let before = match after.as_deref().map(str::parse::<u64>).transpose() {
                Ok(b) => b,
                Err(_) => {
                    return Ok(Err(bad_request(
                        "the page cursor (XEP-0059 after) is not one this service handed out",
                    )));
                }
            };
            let q = Query {
                search,
                unread_only,
                before,
                max: max.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE),
            };
            let page = view::list(&*cx.store, &settings(cx), &user, &q)?;
            Ok(Some(render::list_element(&page)))
        }
        InboxRequest::MarkRead { jid } => match mark_read(cx, &user, jid.as_deref(), now)? {
            Ok(()) => Ok(None),
            Err(e) => Err(e),
        },
        InboxRequest::Subscribe => match inbox.subscribe(
            from,
            &crate::config::own_server_domain(&cx.config.component.jid),
        ) {
            Ok(()) => Ok(None),
            Err(e) => Err(e.error()),
        },
        InboxRequest::Unsubscribe => {
            inbox.unsubscribe(from);
            Ok(None)
        }
    })
}

/// The conversation `jid` names for `user`: a room, a tracked address or
/// a contact's own JID.
/// A bad `jid` gives the text of a `bad-request`.
pub fn peer_of(cx: &Context, jid: &str) -> Result<Peer, String> {
    let parsed =
        Jid::new(jid.trim()).map_err(|e| format!("{jid:?} is not an XMPP address: {e}"))?;
    if let Some((room, None)) = cx.addrs.room_of(&parsed) {
        return Ok(Peer::Room(room.to_string()));
    }
    if cx.addrs.is_ours(&parsed) {
        return cx
            .addrs
            .contact_of(&parsed)
            .map(|c| Peer::Contact(c.to_bare().to_string()))
            .map_err(|_| format!("{jid:?} is neither a room nor a tracked address here"));
    }
    Ok(Peer::Contact(parsed.to_bare().to_string()))
}

/// Marks one conversation, or all, read for `user` alone: nobody is told.
pub fn mark_read(
    cx: &mut Context,
    user: &str,
    jid: Option<&str>,
    now: Millis,
) -> Result<Result<(), StanzaError>, StoreError> {
    let peers = match jid {
        Some(jid) => match peer_of(cx, jid) {
            Ok(p) => vec![p],
            Err(text) => return Ok(Err(bad_request(text))),
        },
        None => {
            let mut all: Vec<Peer> = cx
                .store
                .inbox_entries(user, view::SEARCH_LIMIT)?
                .into_iter()
                .filter(|e| e.wants_attention())
                .map(|e| Peer::Contact(e.contact))
                .collect();
            all.extend(cx.store.member_rooms(user)?.into_iter().map(Peer::Room));
            all
        }
    };
    let single = jid.is_some();
    for peer in peers {
        match &peer {
            Peer::Contact(contact) => match cx.store.inbox_entry(user, contact)? {
                Some(e) => cx.write(Write::InboxRead {
                    user: user.to_owned(),
                    contact: contact.clone(),
                    upto: e.latest,
                }),
                None if single => return Ok(Err(not_in_list(contact))),
                None => {}
            },
            Peer::Room(room) => {
                let member = cx
                    .store
                    .membership(room, user)?
                    .is_some_and(|m| m.is_current());
                if !member {
                    if single {
                        return Ok(Err(not_in_list(room)));
                    }
                    continue;
                }
                if let Some((seq, _)) = cx.store.room_history(room, 1)?.into_iter().next() {
                    // The private tidemark: it clears the user's unread
                    // count and tells nobody (no marker, no all-read).
                    cx.write(Write::Mark {
                        conv: ConversationKey::room(room),
                        reader: private_reader(user),
                        seq,
                        at: now,
                    });
                }
            }
        }
    }
    Ok(Ok(()))
}

fn not_in_list(jid: &str) -> StanzaError {
    stanza_error(
        ErrorType::Cancel,
        DefinedCondition::ItemNotFound,
        format!("{jid} is not in your conversation list"),
    )
}
