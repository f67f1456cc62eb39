//! Group conversations: the subset of XEP-0045 a private, members-only,
//! non-anonymous group chat needs, with per-recipient read status.
//!
//! One file per job: who is in a room now ([`occupants`]), who belongs to it
//! ([`membership`]), what a message or marker sent to it becomes and what a
//! joiner is shown of the past ([`reflection`]), how far its members have
//! read ([`frontier`]), and the status query for its messages ([`status`]).

mod frontier;
mod membership;
mod occupants;
mod reflection;
mod status;

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
use crate::store::{Millis, StoreError};

pub use membership::apply_config;
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

    /// Occupants are sessions on the server; after a reconnect they rejoin.
    pub fn forget_occupants(&mut self) {
        self.live.clear();
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
        } => occupants::join(cx, rooms, &at, &nick, &payloads, now),
        RoomRequest::Presence {
            available: false,
            payloads,
            ..
        } => Ok(occupants::leave(cx, rooms, &at, &payloads)),
        RoomRequest::Groupchat(message) => reflection::groupchat(cx, rooms, &at, message, now),
        RoomRequest::Marker(marker) => reflection::marker(cx, rooms, &at, marker, now),
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
        // XEP-0045 §9.9: a session that bounces the room's stanzas is gone.
        RoomRequest::Bounce { payloads } => Ok(occupants::leave(cx, rooms, &at, &payloads)),
        RoomRequest::Ignored(why) => {
            debug!(why, "ignored");
            Ok(vec![])
        }
    }
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
    let mut features = vec![
        MUC,
        "muc_membersonly",
        "muc_nonanonymous",
        "muc_persistent",
        "muc_unmoderated",
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
