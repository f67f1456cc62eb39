//! Group conversations: the subset of XEP-0045 a non-anonymous group chat
//! of members needs, with per-recipient read status. Rooms of the config
//! file are members-only; rooms created by a join are open, and whoever
//! joins becomes a member (disco#info says which, [`disco_info`]).
//!
//! One file per job: who is in a room now ([`occupants`]), who belongs to it
//! ([`membership`]), what a message or marker sent to it becomes and what a
//! joiner is shown of the past ([`reflection`]), how far its members have
//! read ([`frontier`]), its subject ([`subject`]), and the status query for
//! its messages ([`status`]).

mod frontier;
mod membership;
mod occupants;
mod reflection;
mod status;
mod subject;

use std::collections::{BTreeMap, HashMap};

use minidom::Element;
use sha1::{Digest, Sha1};
use tracing::debug;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::occupant_id::OccupantId;

use crate::context::Context;
use crate::incoming::{Origin, RoomRequest};
use crate::stanza::ns::{MUC, OCCUPANT_ID, SID};
use crate::stanza::{DefinedCondition, ErrorType, element, ns, set_attr};
use crate::store::{Millis, OccupantRecord, Store, StoreError, Write};

pub use membership::apply_config;
pub use occupants::shutdown;
pub use status::{RoomTally, status, tally};

type Out = Result<Vec<Element>, StoreError>;

/// One nickname in a room; a user may be in with several clients.
#[derive(Debug, Clone)]
struct Occupant {
    user: String,
    sessions: Vec<Jid>,
    /// The last presence the occupant sent, addressed from their nick, as
    /// text: a parsed element costs about ten times the memory (some 5 KB
    /// for a presence with caps), and it is only read when someone joins.
    presence: String,
}

#[derive(Debug, Default)]
struct LiveRoom {
    occupants: BTreeMap<String, Occupant>,
    /// Loaded from the store on first use; `None` until then.
    read: Option<frontier::ReadState>,
}

impl LiveRoom {
    /// The nickname under which `session` is in the room, and its occupant.
    fn occupant_of(&self, session: &Jid) -> Option<(&String, &Occupant)> {
        self.occupants
            .iter()
            .find(|(_, o)| o.sessions.iter().any(|s| s == session))
    }

    fn nick_of(&self, session: &Jid) -> Option<&str> {
        self.occupant_of(session).map(|(n, _)| n.as_str())
    }

    fn all_sessions(&self) -> impl Iterator<Item = &Jid> {
        self.occupants.values().flat_map(|o| o.sessions.iter())
    }
}

/// What tidemark knows of rooms beyond the store: who is in them now, and
/// the read frontier. Only rooms someone is in are kept: the last occupant's
/// leaving drops the room's entry, and the frontier is loaded again from the
/// store when someone is back, so memory follows occupancy, not the number
/// of rooms ever made.
#[derive(Debug, Default)]
pub struct Rooms {
    live: HashMap<String, LiveRoom>,
    /// Rooms in the store, for the metrics.
    stored: usize,
    /// Room sessions per user (bare JID), all rooms together, for
    /// `groups.max_joins_per_user`.
    joins: HashMap<String, usize>,
}

impl Rooms {
    /// The nickname under which `session` is in `room`, if it is.
    pub fn nick_of(&self, room: &str, session: &Jid) -> Option<String> {
        self.live
            .get(room)
            .and_then(|l| l.nick_of(session))
            .map(str::to_owned)
    }

    /// Forgets the frontiers, so they are rebuilt from the store (after a
    /// member changes their read-receipt choice).
    pub fn forget_frontiers(&mut self) {
        for room in self.live.values_mut() {
            room.read = None;
        }
    }

    /// Takes back who was in which room when tidemark stopped (or was
    /// killed): occupancy is kept in the store, so a client that never
    /// rejoins (no XEP-0410 self-ping) goes on chatting. A session that is
    /// gone is dropped when its server says so (unavailable presence, or
    /// an error bounced for what the room sent it).
    pub fn restore(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        self.live.clear();
        self.joins.clear();
        for (room, nick, record) in store.occupants()? {
            let sessions: Vec<Jid> = record
                .sessions
                .iter()
                .filter_map(|s| Jid::new(s).ok())
                .collect();
            if sessions.is_empty() {
                continue;
            }
            *self.joins.entry(record.user.clone()).or_default() += sessions.len();
            self.live.entry(room).or_default().occupants.insert(
                nick,
                Occupant {
                    user: record.user,
                    sessions,
                    presence: record.presence,
                },
            );
        }
        Ok(())
    }

    /// How many room sessions `user` holds, all rooms together.
    fn joins_of(&self, user: &str) -> usize {
        self.joins.get(user).copied().unwrap_or(0)
    }

    fn count_join(&mut self, user: &str, delta: isize) {
        let n = self.joins.entry(user.to_owned()).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.joins.remove(user);
        }
    }

    /// How many rooms are in memory (someone is in them).
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The room `session` is in, with the nickname it is in under.
    fn entered(&mut self, room: &str, session: &Jid) -> Option<(&mut LiveRoom, String)> {
        let live = self.live.get_mut(room)?;
        let nick = live.nick_of(session)?.to_owned();
        Some((live, nick))
    }
}

/// A stanza to a room: how to answer it, who sent it, and the room.
struct RoomStanza<'a> {
    origin: &'a Origin,
    from: &'a Jid,
    room: &'a BareJid,
}

pub fn handle(
    cx: &mut Context,
    rooms: &mut Rooms,
    origin: &Origin,
    from: &Jid,
    room: &BareJid,
    request: RoomRequest,
    now: Millis,
) -> Out {
    let at = RoomStanza { origin, from, room };
    match request {
        RoomRequest::Presence {
            nick,
            available: true,
            payloads,
            muc_join,
        } => occupants::join(cx, rooms, &at, &nick, &payloads, muc_join, now),
        RoomRequest::Presence {
            available: false,
            payloads,
            ..
        } => Ok(occupants::leave(cx, rooms, &at, &payloads)),
        RoomRequest::Groupchat(message) => reflection::groupchat(cx, rooms, &at, message, now),
        RoomRequest::Marker(marker) => reflection::marker(cx, rooms, &at, marker, now),
        RoomRequest::Subject { text, id } => subject::change(cx, rooms, &at, text, id, now),
        RoomRequest::DiscoInfo => disco_info(cx, origin, room),
        RoomRequest::DiscoItems => {
            Ok(vec![origin.result(
                room.as_str(),
                Some(crate::stanza::no_disco_items()),
            )])
        }
        RoomRequest::OccupantIq { nick, self_ping } => {
            Ok(vec![occupants::occupant_iq(rooms, &at, &nick, self_ping)])
        }
        RoomRequest::Refused { reply } => Ok(reply.into_iter().collect()),
        // A session whose server or client says it is gone is dropped, and
        // the others see it leave; other errors (a client that does not do
        // something) leave it in.
        RoomRequest::Bounce { payloads } => {
            if session_is_gone(&payloads) {
                Ok(occupants::leave(cx, rooms, &at, &[]))
            } else {
                debug!("error from an occupant that does not end its session; ignored");
                Ok(vec![])
            }
        }
        RoomRequest::Ignored(why) => {
            debug!(why, "ignored");
            Ok(vec![])
        }
    }
}

/// Whether the `<error/>` bounced back from a session means the session is
/// gone: the conditions Prosody's MUC treats so (`muc.lib.lua`,
/// `kickable_error_conditions`), and an error without a condition.
fn session_is_gone(payloads: &[Element]) -> bool {
    const GONE: [&str; 9] = [
        "gone",
        "internal-server-error",
        "item-not-found",
        "jid-malformed",
        "recipient-unavailable",
        "redirect",
        "remote-server-not-found",
        "remote-server-timeout",
        "service-unavailable",
    ];
    let Some(error) = payloads.iter().find(|p| p.name() == "error") else {
        return true;
    };
    match error
        .children()
        .find(|c| c.ns() == ns::STANZAS && c.name() != "text")
    {
        Some(condition) => GONE.contains(&condition.name()),
        None => true,
    }
}

/// Writes what is now known of `nick` in `room` (nothing, once the
/// nickname's last session left): occupancy is kept across restarts.
fn persist(cx: &mut Context, room: &str, live: Option<&LiveRoom>, nick: &str) {
    let occupant = live
        .and_then(|l| l.occupants.get(nick))
        .map(|o| OccupantRecord {
            user: o.user.clone(),
            sessions: o.sessions.iter().map(|s| s.to_string()).collect(),
            presence: o.presence.clone(),
        });
    cx.write(Write::Occupant {
        room: room.to_owned(),
        nick: nick.to_owned(),
        occupant,
    });
}

fn disco_info(cx: &Context, origin: &Origin, room: &BareJid) -> Out {
    let Some(record) = cx.store.room(room.as_str())? else {
        return Ok(vec![origin.error(
            room.as_str(),
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "no such room",
        )]);
    };
    // Hand-built: 0.23's DiscoInfoResult keeps features sorted, and clients
    // and xep/groups.md have always had them in this order.
    let mut q = Element::bare("query", ns::DISCO_INFO);
    let name = room
        .node()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    q.append_child(element(
        "identity",
        ns::DISCO_INFO,
        &[
            ("category", "conference"),
            ("type", "text"),
            ("name", &name),
        ],
    ));
    // What a client shows of the room and decides by: rooms are not listed
    // in the service's disco#items (muc_hidden) and have no password
    // (muc_unsecured); muc_open / muc_membersonly follow what `admit` does.
    let mut features = vec![
        MUC,
        "muc_membersonly",
        "muc_nonanonymous",
        "muc_persistent",
        "muc_unmoderated",
        "muc_hidden",
        "muc_unsecured",
        SID,
        OCCUPANT_ID,
        ns::CHAT_MARKERS,
        ns::STATUS,
    ];
    if !record.fixed_members {
        features.push("muc_open");
        features.retain(|f| *f != "muc_membersonly");
    }
    for f in features {
        q.append_child(element("feature", ns::DISCO_INFO, &[("var", f)]));
    }
    Ok(vec![origin.result(room.as_str(), Some(q))])
}

/// XEP-0421: a stable id per (room, user) that reveals nothing by itself.
fn occupant_id(cx: &Context, room: &str, user: &str) -> String {
    let digest = Sha1::digest(format!("{}\0{room}\0{user}", cx.config.component.secret));
    hex::encode(&digest[..10])
}

/// The XEP-0421 `<occupant-id/>` of `user` in `room`.
fn occupant_id_element(cx: &Context, room: &str, user: &str) -> Element {
    OccupantId {
        id: occupant_id(cx, room, user),
    }
    .into()
}

fn addressed(mut el: Element, to: &Jid) -> Element {
    set_attr(&mut el, "to", to.to_string());
    el
}
