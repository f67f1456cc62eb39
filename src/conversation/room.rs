//! Group conversations: the subset of XEP-0045 a private, members-only,
//! non-anonymous group chat needs, with per-recipient read status.
//!
//! Read state follows DESIGN.md "one tidemark per reader": a member's
//! `displayed` marker moves their tidemark in the room, and the room keeps the
//! tidemarks of its members in an ordered multiset, so the "all read"
//! frontier (the lowest tidemark) is known in O(log members) per marker.

use std::collections::{BTreeMap, HashMap};

use minidom::Element;
use sha1::{Digest, Sha1};
use tracing::{debug, info};
use xmpp_parsers::displayed_markers::Markable;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Id, Lang, Message};
use xmpp_parsers::muc::user::{Affiliation, Item, Role, Status};
use xmpp_parsers::occupant_id::OccupantId;
use xmpp_parsers::stanza_id::StanzaId;

use crate::config::RoomCreators;
use crate::context::Context;
use crate::incoming::{AckKind, RoomRequest};
use crate::metrics::{METRICS, Refusal};
use crate::stanza::ns::{DELAY, MUC, MUC_USER, OCCUPANT_ID, SID};
use crate::stanza::{
    DefinedCondition, ErrorType, StanzaError, element, error_reply, ns, remove_attr, set_attr,
    stanza_error, to_string, xep0082,
};
use crate::status::private_mark::{own_mark, private_reader};
use crate::store::{ConversationKey, Membership, Millis, RoomMessage, RoomRecord, Seq, StoreError};

type Out = Result<Vec<Element>, StoreError>;

/// The lowest tidemark among a room's members who send read receipts, kept
/// as an ordered multiset of tidemarks.
#[derive(Debug, Default)]
pub struct Frontier {
    marks: HashMap<String, Seq>,
    counts: BTreeMap<Seq, u32>,
}

impl Frontier {
    pub fn min(&self) -> Option<Seq> {
        self.counts.keys().next().copied()
    }

    pub fn set(&mut self, reader: &str, seq: Seq) {
        if let Some(old) = self.marks.insert(reader.to_owned(), seq) {
            self.decrement(old);
        }
        *self.counts.entry(seq).or_default() += 1;
    }

    pub fn remove(&mut self, reader: &str) {
        if let Some(old) = self.marks.remove(reader) {
            self.decrement(old);
        }
    }

    fn decrement(&mut self, seq: Seq) {
        if let Some(n) = self.counts.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&seq);
            }
        }
    }
}

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
    frontier: Option<Frontier>,
    members: usize,
}

impl LiveRoom {
    fn nick_of(&self, session: &Jid) -> Option<&str> {
        self.occupants
            .iter()
            .find(|(_, o)| o.sessions.iter().any(|s| s == session))
            .map(|(n, _)| n.as_str())
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
            room.frontier = None;
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
}

/// XEP-0421: a stable id per (room, user) that reveals nothing by itself.
fn occupant_id(cx: &Context, room: &str, user: &str) -> String {
    let digest = Sha1::digest(format!("{}\0{room}\0{user}", cx.config.component.secret));
    hex::encode(&digest[..10])
}

/// Declares the rooms of the config file, with their fixed member lists.
pub fn apply_config(cx: &mut Context, rooms: &mut Rooms, now: Millis) -> Result<(), StoreError> {
    let domain = cx.addrs.domain().clone();
    for room_cfg in cx.config.rooms.clone() {
        let room = format!("{}@{}", room_cfg.name, domain);
        cx.store.put_room(
            &room,
            &RoomRecord {
                created_at: cx.store.room(&room)?.map_or(now, |r| r.created_at),
                fixed_members: true,
            },
        )?;
        let wanted: Vec<String> = room_cfg.members.iter().map(|m| m.to_string()).collect();
        for member in &wanted {
            add_member(cx, rooms, &room, member, now)?;
        }
        for (member, m) in cx.store.memberships(&room)? {
            if m.is_current() && !wanted.contains(&member) {
                let left = cx.store.next_seq()?;
                cx.store.set_membership(
                    &room,
                    &member,
                    &Membership {
                        joined: m.joined,
                        left: Some(left),
                    },
                )?;
                info!(%room, %member, "removed from the room by the config file");
            }
        }
    }
    rooms.forget_frontiers();
    rooms.stored = cx.store.rooms()?.len();
    METRICS.set_rooms(rooms.stored);
    Ok(())
}

/// Makes `user` a member from now on. Their tidemark starts at the join, since
/// they are not a recipient of what came before.
fn add_member(
    cx: &mut Context,
    rooms: &mut Rooms,
    room: &str,
    user: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    if cx
        .store
        .membership(room, user)?
        .is_some_and(|m| m.is_current())
    {
        return Ok(false);
    }
    let joined = cx.store.next_seq()?;
    cx.store
        .set_membership(room, user, &Membership { joined, left: None })?;
    let conv = ConversationKey::room(room);
    cx.store.advance_mark(&conv, user, joined, now)?;
    if let Some(live) = rooms.live.get_mut(room) {
        live.frontier = None;
    }
    info!(%room, %user, "new member");
    Ok(true)
}

/// A stanza to a room: what it is, who sent it, and the room.
struct RoomStanza<'a> {
    stanza: &'a Element,
    from: &'a Jid,
    room: &'a BareJid,
}

pub fn handle(
    cx: &mut Context,
    rooms: &mut Rooms,
    stanza: &Element,
    from: &Jid,
    room: &BareJid,
    request: RoomRequest,
    now: Millis,
) -> Out {
    match request {
        RoomRequest::Presence {
            nick,
            available: true,
        } => join(cx, rooms, stanza, from, room, &nick, now),
        RoomRequest::Presence {
            available: false, ..
        } => Ok(leave(cx, rooms, stanza, from, room)),
        RoomRequest::Groupchat {
            body_bytes,
            has_body,
        } => groupchat(
            cx,
            rooms,
            &RoomStanza { stanza, from, room },
            body_bytes,
            has_body,
            now,
        ),
        RoomRequest::Marker { kind, id } => marker(
            cx,
            rooms,
            &RoomStanza { stanza, from, room },
            kind,
            &id,
            now,
        ),
        RoomRequest::DiscoInfo => disco_info(cx, stanza, room),
        RoomRequest::DiscoItems => {
            let mut r = iq_result(stanza, room.as_str());
            r.append_child(crate::stanza::no_disco_items());
            Ok(vec![r])
        }
        RoomRequest::OccupantIq { nick, self_ping } => Ok(vec![occupant_iq(
            rooms, stanza, from, room, &nick, self_ping,
        )]),
        RoomRequest::Refused { reply } => Ok(reply.into_iter().collect()),
        // XEP-0045 §9.9: a session that bounces the room's stanzas is gone.
        RoomRequest::Bounce => Ok(leave(cx, rooms, stanza, from, room)),
        RoomRequest::Ignored(why) => {
            debug!(why, "ignored");
            Ok(vec![])
        }
    }
}

/// XEP-0410 §3: a self-ping answers "still joined" with a result, "not
/// joined" with `not-acceptable`, which makes the client rejoin (after a
/// tidemark restart, say). Other queries to occupants are not forwarded.
fn occupant_iq(
    rooms: &Rooms,
    iq: &Element,
    from: &Jid,
    room: &BareJid,
    nick: &str,
    self_ping: bool,
) -> Element {
    let to = format!("{room}/{nick}");
    let in_room = rooms.nick_of(room.as_str(), from);
    match in_room {
        None => error_reply(
            iq,
            &to,
            ErrorType::Cancel,
            DefinedCondition::NotAcceptable,
            "you are not in this room; join it again",
        ),
        Some(own) if self_ping && own == nick => iq_result(iq, &to),
        Some(_) => error_reply(
            iq,
            &to,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "queries to occupants are not forwarded",
        ),
    }
}

fn iq_result(iq: &Element, from: &str) -> Element {
    let mut r = element("iq", ns::COMPONENT, &[("type", "result"), ("from", from)]);
    if let Some(to) = iq.attr("from") {
        set_attr(&mut r, "to", to);
    }
    if let Some(id) = iq.attr("id") {
        set_attr(&mut r, "id", id);
    }
    r
}

fn disco_info(cx: &Context, iq: &Element, room: &BareJid) -> Out {
    let Some(record) = cx.store.room(room.as_str())? else {
        return Ok(vec![error_reply(
            iq,
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
    let mut r = iq_result(iq, room.as_str());
    r.append_child(q);
    Ok(vec![r])
}

/// `<x xmlns='muc#user'>` with the occupant's item and status codes.
fn muc_user(jid: Option<&Jid>, role: Role, codes: &[Status]) -> Element {
    let mut item = Item::new(Affiliation::Member, role.clone());
    item.jid = jid.and_then(|j| j.clone().try_into_full().ok());
    let mut item = Element::from(item);
    // 0.23 leaves the default role out; a leaving occupant has always been
    // shown role='none' (XEP-0045 §7.14).
    if role == Role::None {
        set_attr(&mut item, "role", "none");
    }
    // A session address is always full; should a bare one come, it is still
    // shown rather than dropped.
    if let Some(bare) = jid.filter(|j| j.try_as_full().is_err()) {
        set_attr(&mut item, "jid", bare.to_string());
    }
    // Assembled here rather than as a MucUser, which writes the status codes
    // before the item: clients and xep/ have always had the item first.
    let mut x = Element::bare("x", MUC_USER);
    x.append_child(item);
    for code in codes {
        x.append_child(code.clone().into());
    }
    x
}

/// The empty subject that ends a join (XEP-0045 §7.2.15).
fn subject_message(room: &BareJid, id: &str, to: &Jid) -> Element {
    let mut subject = Message::groupchat(to.clone());
    subject.from = Some(room.clone().into());
    subject.id = Some(Id(id.to_owned()));
    subject.subjects.insert(Lang::default(), String::new());
    subject.into()
}

/// An occupant's presence as the room shows it: the client's own payloads
/// (show, status, caps), the room's additions, from `room/nick`.
fn occupant_presence(
    cx: &Context,
    client_presence: &Element,
    room: &str,
    nick: &str,
    user: &str,
) -> Element {
    let mut p = element(
        "presence",
        ns::COMPONENT,
        &[("from", &format!("{room}/{nick}"))],
    );
    if client_presence.attr("type") == Some("unavailable") {
        set_attr(&mut p, "type", "unavailable");
    }
    for child in client_presence.children() {
        let ours =
            child.is("x", MUC) || child.is("x", MUC_USER) || child.is("occupant-id", OCCUPANT_ID);
        if !ours {
            p.append_child(child.clone());
        }
    }
    p.append_child(occupant_id_element(cx, room, user));
    p
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

fn join(
    cx: &mut Context,
    rooms: &mut Rooms,
    stanza: &Element,
    from: &Jid,
    room: &BareJid,
    nick: &str,
    now: Millis,
) -> Out {
    let room_s = room.as_str().to_owned();
    let user = from.to_bare().to_string();
    let own = format!("{room_s}/{nick}");
    // Nothing is kept in memory for the room until the join is accepted.
    let live = rooms.live.get(&room_s);

    if let Some(current) = live.and_then(|l| l.nick_of(from)).map(str::to_owned) {
        if current != nick {
            return Ok(vec![error_reply(
                stanza,
                &own,
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                "nickname changes are not supported; leave and join again",
            )]);
        }
        // A presence update from someone already in: show it to everyone.
        let p = occupant_presence(cx, stanza, &room_s, nick, &user);
        let live = rooms.live.get_mut(&room_s).expect("present");
        let occupant = live.occupants.get_mut(nick).expect("present");
        occupant.presence = to_string(&p);
        let first = occupant.sessions.first().cloned();
        return Ok(live
            .all_sessions()
            .map(|s| {
                let mut p = p.clone();
                let codes: &[Status] = if s.to_bare().as_str() == user {
                    &[Status::SelfPresence]
                } else {
                    &[]
                };
                p.append_child(muc_user(first.as_ref(), Role::Participant, codes));
                addressed(p, s)
            })
            .collect());
    }
    if live
        .and_then(|l| l.occupants.get(nick))
        .is_some_and(|holder| holder.user != user)
    {
        // XEP-0045 §7.2.9.
        return Ok(vec![error_reply(
            stanza,
            &own,
            ErrorType::Cancel,
            DefinedCondition::Conflict,
            "that nickname is in use in this room; choose another",
        )]);
    }

    let created = match cx.store.room(&room_s)? {
        Some(record) => {
            let member = cx
                .store
                .membership(&room_s, &user)?
                .is_some_and(|m| m.is_current());
            if record.fixed_members && !member {
                // XEP-0045 §7.2.6: members-only room.
                METRICS.refused(Refusal::Room);
                return Ok(vec![error_reply(
                    stanza,
                    &own,
                    ErrorType::Auth,
                    DefinedCondition::RegistrationRequired,
                    "this room's members are set by the administrator, and you are not one of them",
                )]);
            }
            false
        }
        None => {
            if let Some(refusal) = may_not_create(cx, stanza, from, &own)? {
                METRICS.refused(Refusal::Room);
                return Ok(vec![refusal]);
            }
            cx.store.put_room(
                &room_s,
                &RoomRecord {
                    created_at: now,
                    fixed_members: false,
                },
            )?;
            cx.store.add_room_creator(&user, &room_s)?;
            rooms.stored += 1;
            METRICS.set_rooms(rooms.stored);
            info!(room = %room_s, creator = %user, "room created");
            true
        }
    };
    add_member(cx, rooms, &room_s, &user, now)?;

    let presence = occupant_presence(cx, stanza, &room_s, nick, &user);
    let history = cx.store.room_history(&room_s, cx.config.groups.history)?;
    let live = rooms.live.entry(room_s.clone()).or_default();
    let mut out = Vec::new();
    // XEP-0045 §7.2.3: first the other occupants, then the joiner's own
    // presence to everyone, the joiner's copy last with status 110.
    for (other_nick, o) in &live.occupants {
        if other_nick == nick {
            continue;
        }
        let Ok(mut p) = o.presence.parse::<Element>() else {
            continue;
        };
        p.append_child(muc_user(o.sessions.first(), Role::Participant, &[]));
        out.push(addressed(p, from));
    }
    let new_nick = !live.occupants.contains_key(nick);
    if new_nick {
        for s in live.all_sessions() {
            let mut p = presence.clone();
            p.append_child(muc_user(Some(from), Role::Participant, &[]));
            out.push(addressed(p, s));
        }
    }
    let occupant = live
        .occupants
        .entry(nick.to_owned())
        .or_insert_with(|| Occupant {
            user: user.clone(),
            sessions: vec![],
            presence: to_string(&presence),
        });
    occupant.sessions.push(from.clone());
    let mut own_presence = presence;
    let mut codes = vec![Status::NonAnonymousRoom, Status::SelfPresence];
    if created {
        codes.push(Status::RoomHasBeenCreated);
    }
    own_presence.append_child(muc_user(Some(from), Role::Participant, &codes));
    out.push(addressed(own_presence, from));

    // XEP-0045 §7.2.15: history with its original time, then the subject,
    // which tells the client the join is complete.
    for (_, m) in history {
        let Some(mut msg) = std::str::from_utf8(&m.stanza)
            .ok()
            .and_then(|s| s.parse::<Element>().ok())
        else {
            continue;
        };
        // Hand-built: 0.23's Delay writes its stamp as `+00:00` without
        // our milliseconds, and clients have always seen `...123Z` here.
        msg.append_child(element(
            "delay",
            DELAY,
            &[("stamp", &xep0082(m.sent_at)), ("from", &room_s)],
        ));
        out.push(addressed(msg, from));
    }
    out.push(subject_message(room, &cx.local_id(), from));
    info!(room = %room_s, %nick, "joined");
    Ok(out)
}

/// Whether `from` may create a room by joining it: their domain must be one
/// of `groups.room_creators`, and they must be under
/// `groups.max_rooms_per_creator`. The refusal to send if not.
fn may_not_create(
    cx: &Context,
    stanza: &Element,
    from: &Jid,
    own: &str,
) -> Result<Option<Element>, StoreError> {
    let service = cx.addrs.domain();
    let groups = &cx.config.groups;
    if let RoomCreators::Domains(domains) = &groups.room_creators
        && !groups.room_creators.allows(from.domain().as_str())
    {
        let text = if domains.is_empty() {
            format!(
                "rooms at {service} are not created by joining (groups.room_creators is empty); ask the administrator"
            )
        } else {
            format!(
                "rooms at {service} are created by users of {}; ask a member to invite you",
                domains.join(", ")
            )
        };
        debug!(%from, "room creation refused: domain not allowed");
        return Ok(Some(error_reply(
            stanza,
            own,
            ErrorType::Cancel,
            DefinedCondition::NotAllowed,
            &text,
        )));
    }
    let max = groups.max_rooms_per_creator;
    let creator = from.to_bare();
    if cx.store.rooms_created_by(creator.as_str())? >= max {
        debug!(%from, max, "room creation refused: over the cap");
        return Ok(Some(error_reply(
            stanza,
            own,
            ErrorType::Cancel,
            DefinedCondition::PolicyViolation,
            &format!(
                "you have created {max} rooms at {service}, the most groups.max_rooms_per_creator allows; join an existing room"
            ),
        )));
    }
    Ok(None)
}

fn leave(
    cx: &mut Context,
    rooms: &mut Rooms,
    stanza: &Element,
    from: &Jid,
    room: &BareJid,
) -> Vec<Element> {
    let room_s = room.as_str();
    let Some(live) = rooms.live.get_mut(room_s) else {
        return vec![];
    };
    let Some(nick) = live.nick_of(from).map(str::to_owned) else {
        return vec![];
    };
    let occupant = live.occupants.get_mut(&nick).expect("found above");
    occupant.sessions.retain(|s| s != from);
    let user = occupant.user.clone();
    let gone = occupant.sessions.is_empty();
    if gone {
        live.occupants.remove(&nick);
    }
    let mut p = occupant_presence(cx, stanza, room_s, &nick, &user);
    set_attr(&mut p, "type", "unavailable");
    let mut out = Vec::new();
    let live = rooms.live.get(room_s).expect("present");
    if gone {
        for s in live.all_sessions() {
            let mut p = p.clone();
            p.append_child(muc_user(Some(from), Role::None, &[]));
            out.push(addressed(p, s));
        }
    }
    p.append_child(muc_user(Some(from), Role::None, &[Status::SelfPresence]));
    out.push(addressed(p, from));
    if live.occupants.is_empty() {
        rooms.live.remove(room_s);
    }
    info!(room = %room_s, %nick, "left");
    out
}

/// The room's frontier, loaded from the store on first use.
fn frontier<'a>(
    cx: &Context,
    rooms: &'a mut Rooms,
    room: &str,
) -> Result<&'a mut LiveRoom, StoreError> {
    let loaded = rooms.live.get(room).is_some_and(|l| l.frontier.is_some());
    if !loaded {
        let conv = ConversationKey::room(room);
        let mut f = Frontier::default();
        let mut members = 0;
        for (member, m) in cx.store.memberships(room)? {
            if !m.is_current() {
                continue;
            }
            members += 1;
            if cx.sends_read_receipts(&member)? {
                f.set(&member, cx.store.mark(&conv, &member)?);
            }
        }
        let live = rooms.live.entry(room.to_owned()).or_default();
        live.frontier = Some(f);
        live.members = members;
    }
    Ok(rooms.live.get_mut(room).expect("loaded above"))
}

/// Moves `reader`'s tidemark and returns the "all read" notices it causes.
fn advance(
    cx: &mut Context,
    rooms: &mut Rooms,
    room: &str,
    reader: &str,
    seq: Seq,
    now: Millis,
) -> Out {
    let conv = ConversationKey::room(room);
    if !cx.sends_read_receipts(reader)? {
        cx.store
            .advance_mark(&conv, &private_reader(reader), seq, now)?;
        return Ok(vec![]);
    }
    // Load the frontier (from the store, after a restart or a membership
    // change) before the mark moves, so that it says where things stood.
    frontier(cx, rooms, room)?;
    if !cx.store.advance_mark(&conv, reader, seq, now)? {
        return Ok(vec![]);
    }
    METRICS.status_recorded();
    let live = rooms.live.get_mut(room).expect("loaded above");
    let f = live.frontier.as_mut().expect("loaded above");
    let before = f.min();
    f.set(reader, seq);
    let after = f.min();
    match (before, after) {
        (Some(b), Some(a)) if a > b => all_read_notices(cx, room, b, a, now),
        _ => Ok(vec![]),
    }
}

/// Messages in `(from, upto]` just became read by every member: tell each
/// sender once, about their latest such message (a notice covers the
/// sender's earlier messages, as a XEP-0333 marker does).
fn all_read_notices(cx: &mut Context, room: &str, from: Seq, upto: Seq, now: Millis) -> Out {
    let mut latest: BTreeMap<String, RoomMessage> = BTreeMap::new();
    for (_, m) in cx.store.room_messages_between(room, from, upto)? {
        if m.readable {
            latest.insert(m.sender.clone(), m);
        }
    }
    let mut out = Vec::with_capacity(latest.len());
    for (sender, m) in latest {
        let id = cx.local_id();
        // Hand-built: <all-read/> is tidemark's own (urn:tidemark:status:0).
        let mut notice = element(
            "message",
            ns::COMPONENT,
            &[
                ("type", "headline"),
                ("from", room),
                ("to", &sender),
                ("id", &id),
            ],
        );
        notice.append_child(element(
            "all-read",
            ns::STATUS,
            &[
                ("id", &m.id),
                ("stanza-id", &m.stanza_id),
                ("at", &xep0082(now)),
            ],
        ));
        out.push(notice);
    }
    Ok(out)
}

fn groupchat(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    body_bytes: usize,
    has_body: bool,
    now: Millis,
) -> Out {
    let RoomStanza { stanza, from, room } = *at;
    let room_s = room.as_str().to_owned();
    let Some(nick) = rooms.nick_of(&room_s, from) else {
        // XEP-0045 §7.4: only occupants may send.
        return Ok(vec![error_reply(
            stanza,
            &room_s,
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            "you are not in this room; join it before sending",
        )]);
    };
    let user = from.to_bare().to_string();
    if !cx
        .store
        .membership(&room_s, &user)?
        .is_some_and(|m| m.is_current())
    {
        return Ok(vec![error_reply(
            stanza,
            &room_s,
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            "you are no longer a member of this room",
        )]);
    }
    let limit = cx.config.limits.max_body_bytes;
    if body_bytes > limit {
        return Ok(vec![error_reply(
            stanza,
            &room_s,
            ErrorType::Modify,
            DefinedCondition::PolicyViolation,
            &format!(
                "the message body is {body_bytes} bytes; this service accepts at most {limit} bytes"
            ),
        )]);
    }

    let seq = cx.store.next_seq()?;
    let stanza_id = seq.to_string();
    let readable = has_body || cx.config.status.attachments_get_read_status;
    let mut reflected = stanza.clone();
    strip_room_claims(&mut reflected, &room_s);
    set_attr(&mut reflected, "from", format!("{room_s}/{nick}"));
    remove_attr(&mut reflected, "to");
    reflected.append_child(
        StanzaId {
            id: stanza_id.clone(),
            by: room.clone().into(),
        }
        .into(),
    );
    reflected.append_child(occupant_id_element(cx, &room_s, &user));
    if readable && !reflected.has_child("markable", ns::CHAT_MARKERS) {
        reflected.append_child(Markable.into());
    }
    let record = RoomMessage {
        id: stanza
            .attr("id")
            .filter(|s| !s.is_empty())
            .unwrap_or(&stanza_id)
            .to_owned(),
        stanza_id,
        sender: user.clone(),
        sent_at: now,
        readable,
        stanza: to_string(&reflected).into_bytes(),
    };
    cx.store.put_room_message(&room_s, seq, &record)?;
    METRICS.status_recorded();

    let live = rooms.live.get(&room_s).expect("sender is in it");
    let mut out: Vec<Element> = live
        .all_sessions()
        .map(|s| addressed(reflected.clone(), s))
        .collect();
    // Writing to the room means having seen what came before.
    out.extend(advance(cx, rooms, &room_s, &user, seq, now)?);
    debug!(seq, "group message recorded");
    Ok(out)
}

/// Removes what only the room may say (XEP-0359 §5: a stanza-id `by` the
/// room from anyone else is spoofed), and XEP-0184 requests, which have no
/// place in groupchat.
fn strip_room_claims(msg: &mut Element, room: &str) {
    let keep: Vec<Element> = msg
        .children()
        .filter(|c| {
            let spoofed_id = c.is("stanza-id", SID) && c.attr("by") == Some(room);
            !(spoofed_id || c.is("occupant-id", OCCUPANT_ID) || c.is("request", ns::RECEIPTS))
        })
        .cloned()
        .collect();
    let mut bare = Element::bare(msg.name(), msg.ns());
    for ((attr_ns, name), value) in msg.attrs().iter() {
        bare.attrs_mut()
            .insert(attr_ns.clone(), name.clone(), value.clone());
    }
    for c in keep {
        bare.append_child(c);
    }
    *msg = bare;
}

fn marker(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    kind: AckKind,
    id: &str,
    now: Millis,
) -> Out {
    let RoomStanza { stanza, from, room } = *at;
    let room_s = room.as_str().to_owned();
    let reader = from.to_bare().to_string();
    let Some(nick) = rooms.nick_of(&room_s, from) else {
        debug!("marker from someone not in the room ignored");
        return Ok(vec![]);
    };
    if kind == AckKind::ReceivedMarker {
        // Groups have no delivered state (the Avaya rule).
        return Ok(vec![]);
    }
    let Some((seq, message)) = marked_message(cx, &room_s, &reader, id)? else {
        debug!(id, "marker for an unknown message ignored");
        return Ok(vec![]);
    };
    let recipient = cx
        .store
        .membership(&room_s, &reader)?
        .is_some_and(|m| m.covers(seq));
    if message.sender == reader || !recipient {
        debug!(id, "marker from someone who is not a recipient ignored");
        return Ok(vec![]);
    }
    let reflect = cx.sends_read_receipts(&reader)?;
    let conv = ConversationKey::room(&room_s);
    let moved = reflect && cx.store.mark(&conv, &reader)? < seq;
    let mut out = advance(cx, rooms, &room_s, &reader, seq, now)?;
    if !moved {
        return Ok(out);
    }

    let mut reflected = stanza.clone();
    strip_room_claims(&mut reflected, &room_s);
    set_attr(&mut reflected, "from", format!("{room_s}/{nick}"));
    reflected.append_child(occupant_id_element(cx, &room_s, &reader));
    let live = frontier(cx, rooms, &room_s)?;
    // Above the limit, reflecting to everyone is O(members) stanzas per
    // marker, O(members²) per message read by all: only the sender, whose
    // client shows "read by", gets it.
    let everyone = live.members <= cx.config.groups.marker_reflection_limit;
    let live = rooms.live.get(&room_s).expect("loaded");
    for o in live.occupants.values() {
        if everyone || o.user == message.sender {
            for s in &o.sessions {
                out.push(addressed(reflected.clone(), s));
            }
        }
    }
    Ok(out)
}

/// How many messages with the same sender's id a marker naming that id looks
/// at; beyond them, a marker by sender's id is ignored (by stanza-id it never
/// is).
const SENDER_ID_CANDIDATES: usize = 32;

/// The message a member's marker names. The room's stanza-id first
/// (DESIGN.md, XEP-0333 §3.3): only the room assigns it, so nobody can make
/// it name another message. Some clients name the sender's id instead
/// (xep/groups.md §3), and any member may reuse any id, so among the messages
/// with that id the one taken is the oldest the reader has not read yet and
/// that was sent to them by someone else. A message that reuses the id (bob
/// sending alice's) can then only make the marker cover less than the reader
/// read, never more: it cannot produce a false "read" or "all read".
fn marked_message(
    cx: &Context,
    room: &str,
    reader: &str,
    id: &str,
) -> Result<Option<(Seq, RoomMessage)>, StoreError> {
    if let Some(found) = cx.store.room_message_by_stanza_id(room, id)? {
        return Ok(Some(found));
    }
    let conv = ConversationKey::room(room);
    let read = own_mark(&*cx.store, &conv, reader)?;
    let Some(membership) = cx.store.membership(room, reader)? else {
        return Ok(None);
    };
    Ok(cx
        .store
        .room_messages_with_sender_id(room, id, read, SENDER_ID_CANDIDATES)?
        .into_iter()
        .find(|(seq, m)| m.sender != reader && membership.covers(*seq)))
}

/// The status query for a room message (xep/status.md §4): one recipient per
/// member the message was sent to.
pub fn status(
    cx: &Context,
    asker: &str,
    room: &BareJid,
    id: &str,
) -> Result<Result<Element, StanzaError>, StoreError> {
    let room_s = room.as_str();
    // The asker's own id first: only the asker writes under it, so another
    // member's message with the same id never answers for theirs.
    let found = match cx.store.room_message_by_sender_id(room_s, asker, id)? {
        Some(found) => Some(found),
        None => cx.store.room_message_by_stanza_id(room_s, id)?,
    };
    let Some((seq, message)) = found else {
        let someone_elses = !cx
            .store
            .room_messages_with_sender_id(room_s, id, 0, 1)?
            .is_empty();
        if someone_elses {
            return Ok(Err(stanza_error(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "only the sender of a message may ask for its status",
            )));
        }
        return Ok(Err(stanza_error(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            format!("no message {id:?} in {room_s}"),
        )));
    };
    if message.sender != asker {
        return Ok(Err(stanza_error(
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            "only the sender of a message may ask for its status",
        )));
    }
    let conv = ConversationKey::room(room_s);
    let mut recipients = Vec::new();
    for (member, m) in cx.store.memberships(room_s)? {
        if member == message.sender || !m.covers(seq) {
            continue;
        }
        let shows_reads = cx.sends_read_receipts(&member)?;
        let read = if message.readable && shows_reads {
            cx.store.read_at(&conv, &member, seq)?
        } else {
            None
        };
        recipients.push((member, read, shows_reads));
    }
    let read_count = recipients.iter().filter(|(_, r, _)| r.is_some()).count();
    // Those who turned read receipts off are listed but not waited for, as
    // with the all-read notice.
    let counted = recipients.iter().filter(|(_, _, shows)| *shows).count();
    let summary = if read_count == 0 {
        "sent"
    } else if read_count == counted {
        "all-read"
    } else {
        "some-read"
    };
    let mut payload = element(
        "status",
        ns::STATUS,
        &[
            ("conversation", room_s),
            ("id", id),
            ("summary", summary),
            ("read", &read_count.to_string()),
            ("recipients", &recipients.len().to_string()),
        ],
    );
    if summary == "all-read" {
        let last = recipients
            .iter()
            .filter_map(|(_, r, _)| *r)
            .max()
            .unwrap_or(0);
        set_attr(&mut payload, "all-read", xep0082(last));
    }
    let sent = xep0082(message.sent_at);
    for (member, read, _) in recipients {
        let mut r = element(
            "recipient",
            ns::STATUS,
            &[
                ("jid", &member),
                ("state", if read.is_some() { "read" } else { "sent" }),
                ("sent", &sent),
            ],
        );
        if let Some(t) = read {
            set_attr(&mut r, "read", xep0082(t));
        }
        payload.append_child(r);
    }
    Ok(Ok(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_ending_a_join_is_empty_and_without_lang() {
        let room = BareJid::new("team@rooms.localhost").unwrap();
        let to = Jid::new("alice@localhost/a").unwrap();
        // As it goes on the wire: 0.23 writes <subject></subject>, the same
        // XML as the <subject/> sent before.
        let m: Element = String::from(&subject_message(&room, "tm-9", &to))
            .parse()
            .unwrap();
        let expected: Element = "<message xmlns='jabber:component:accept' type='groupchat' from='team@rooms.localhost' id='tm-9' to='alice@localhost/a'><subject/></message>"
            .parse()
            .unwrap();
        assert_eq!(m, expected, "{}", String::from(&m));
    }

    #[test]
    fn muc_user_has_the_item_then_the_status_codes() {
        let full = Jid::new("alice@localhost/a").unwrap();
        let bare = Jid::new("alice@localhost").unwrap();
        let x = muc_user(
            Some(&full),
            Role::Participant,
            &[Status::NonAnonymousRoom, Status::SelfPresence],
        );
        let expected: Element = "<x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='member' role='participant' jid='alice@localhost/a'/>\
             <status code='100'/><status code='110'/></x>"
            .parse()
            .unwrap();
        assert_eq!(x, expected, "{}", String::from(&x));
        let x = muc_user(Some(&bare), Role::None, &[]);
        let expected: Element = "<x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='member' role='none' jid='alice@localhost'/></x>"
            .parse()
            .unwrap();
        assert_eq!(x, expected, "{}", String::from(&x));
    }

    #[test]
    fn frontier_is_the_lowest_tidemark() {
        let mut f = Frontier::default();
        assert_eq!(f.min(), None);
        f.set("a", 5);
        f.set("b", 3);
        f.set("c", 3);
        assert_eq!(f.min(), Some(3));
        f.set("b", 9);
        assert_eq!(f.min(), Some(3));
        f.set("c", 7);
        assert_eq!(f.min(), Some(5));
        f.remove("a");
        assert_eq!(f.min(), Some(7));
    }

    #[test]
    fn spoofed_stanza_ids_and_receipt_requests_are_stripped() {
        let mut m: Element = "<message xmlns='jabber:component:accept' type='groupchat' id='x'>\
            <body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' id='fake' by='team@chat'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='keep' by='alice@x'/>\
            <request xmlns='urn:xmpp:receipts'/></message>"
            .parse()
            .unwrap();
        strip_room_claims(&mut m, "team@chat");
        let ids: Vec<_> = m
            .children()
            .filter(|c| c.is("stanza-id", SID))
            .map(|c| c.attr("id").unwrap())
            .collect();
        assert_eq!(ids, vec!["keep"]);
        assert!(!m.has_child("request", ns::RECEIPTS));
        assert_eq!(m.attr("id"), Some("x"));
        assert!(m.has_child("body", ns::COMPONENT));
    }
}
