//! Who is in a room now: joins, presence updates, leaving, and the
//! XEP-0410 self-ping, and the XEP-0045 status 332 shutdown notice. Occupants are
//! sessions, kept in memory and written through to the store
//! ([`super::persist`]) so that they survive a restart; who belongs to the
//! room is [`super::membership`]'s job.

use minidom::Element;
use tracing::info;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::muc::user::{Affiliation, Item, Role, Status};

use super::{
    LiveRoom, Occupant, Out, RoomStanza, Rooms, addressed, membership, occupant_id_element,
    persist, reflection, subject,
};
use crate::context::Context;
use crate::stanza::ns::MUC_USER;
use crate::stanza::{DefinedCondition, ErrorType, element, ns, set_attr, to_string};
use crate::store::Millis;

/// The most of an occupant's presence the room keeps (it is kept on disk
/// now): a bigger one (a flood of payloads) is kept without the client's
/// payloads, which are shown live but not to later joiners.
const MAX_KEPT_PRESENCE_BYTES: usize = 8 * 1024;

/// XEP-0410 §3: a self-ping answers "still joined" with a result, "not
/// joined" with `not-acceptable`, which makes the client rejoin (after a
/// tidemark restart, say). Other queries to occupants are not forwarded.
pub(super) fn occupant_iq(rooms: &Rooms, at: &RoomStanza, nick: &str, self_ping: bool) -> Element {
    let to = format!("{}/{nick}", at.room);
    match rooms.nick_of(at.room.as_str(), at.from) {
        None => at.origin.error(
            &to,
            ErrorType::Cancel,
            DefinedCondition::NotAcceptable,
            "you are not in this room; join it again",
        ),
        Some(own) if self_ping && own == nick => at.origin.result(&to, None),
        Some(_) => at.origin.error(
            &to,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "queries to occupants are not forwarded",
        ),
    }
}

pub(super) fn join(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    nick: &str,
    payloads: &[Element],
    muc_join: bool,
    now: Millis,
) -> Out {
    let RoomStanza { origin, from, room } = *at;
    let room_s = room.as_str().to_owned();
    let user = from.to_bare().to_string();
    let own = format!("{room_s}/{nick}");
    if nick == subject::SERVICE_NICK {
        // XEP-0045 §7.2.9: the service speaks under this nickname (the
        // author of a subject nobody set), so nobody else may.
        return Ok(vec![origin.error(
            &own,
            ErrorType::Cancel,
            DefinedCondition::Conflict,
            &format!(
                "the nickname {} is the service's own in every room; choose another",
                subject::SERVICE_NICK
            ),
        )]);
    }
    // Nothing is kept in memory for the room until the join is accepted.
    if let Some(live) = rooms.live.get_mut(&room_s) {
        if let Some((current, _)) = live.occupant_of(from) {
            if current != nick {
                return Ok(vec![origin.error(
                    &own,
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "nickname changes are not supported; leave and join again",
                )]);
            }
            if !muc_join {
                return Ok(update(cx, live, payloads, &room_s, nick, &user));
            }
            // A rejoin of a session the room has (the client restarted
            // its session, or rejoins after tidemark restarted, as clients
            // with XEP-0410 may): the full join again, as Prosody does, so
            // the client gets what a join ends with; the others see a
            // presence update.
            let mut out = update(cx, live, payloads, &room_s, nick, &user);
            out.retain(|p| p.attr("to") != Some(from.to_string().as_str()));
            out.extend(joined(cx, live, room, from, nick, now)?);
            return Ok(out);
        }
        if live
            .occupants
            .get(nick)
            .is_some_and(|holder| holder.user != user)
        {
            // XEP-0045 §7.2.9.
            return Ok(vec![origin.error(
                &own,
                ErrorType::Cancel,
                DefinedCondition::Conflict,
                "that nickname is in use in this room; choose another",
            )]);
        }
    }
    // Occupancy is kept on disk, so it is bounded, before anything is kept
    // for this join.
    let groups = &cx.config.groups;
    let in_room = rooms
        .live
        .get(&room_s)
        .map_or(0, |l| l.all_sessions().count());
    if in_room >= groups.max_occupants_per_room {
        // XEP-0045 §7.2.10: the room is full.
        return Ok(vec![origin.error(
            &own,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            &format!(
                "this room holds {in_room} sessions, the most groups.max_occupants_per_room allows; try again later"
            ),
        )]);
    }
    if rooms.joins_of(&user) >= groups.max_joins_per_user {
        return Ok(vec![origin.error(
            &own,
            ErrorType::Cancel,
            DefinedCondition::PolicyViolation,
            &format!(
                "you are in rooms with {} sessions, the most groups.max_joins_per_user allows; leave a room first",
                groups.max_joins_per_user
            ),
        )]);
    }
    let created = match membership::admit(cx, rooms, at, &own, now)? {
        Ok(created) => created,
        Err(refusal) => return Ok(vec![refusal]),
    };

    let presence = occupant_presence(cx, payloads, &room_s, nick, &user);
    let history = reflection::history(cx, room, from)?;
    let live = rooms.live.entry(room_s.clone()).or_default();
    // XEP-0045 §7.2.3: first the other occupants, then the joiner's own
    // presence to everyone, the joiner's copy last with status 110.
    let mut out = others(live, from, nick);
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
            presence: kept_presence(cx, &presence, &room_s, nick, &user),
        });
    occupant.sessions.push(from.clone());
    persist(cx, &room_s, Some(live), nick);
    let mut own_presence = presence;
    let mut codes = vec![Status::NonAnonymousRoom, Status::SelfPresence];
    if created {
        codes.push(Status::RoomHasBeenCreated);
    }
    own_presence.append_child(muc_user(Some(from), Role::Participant, &codes));
    out.push(addressed(own_presence, from));

    // XEP-0045 §7.2.15: history with its original time, then the subject,
    // which tells the client the join is complete.
    out.extend(history);
    out.push(subject::on_join(cx, room, from, now)?);
    rooms.count_join(&user, 1);
    info!(room = %room_s, %nick, "joined");
    Ok(out)
}

/// The presences of everyone in `live` but `nick`, addressed to `from`.
fn others(live: &LiveRoom, from: &Jid, nick: &str) -> Vec<Element> {
    let mut out = Vec::new();
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
    out
}

/// What a rejoining session gets: the other occupants, its own presence
/// (100, 110), history and the subject, as at its first join.
fn joined(
    cx: &Context,
    live: &LiveRoom,
    room: &BareJid,
    from: &Jid,
    nick: &str,
    now: Millis,
) -> Out {
    let mut out = others(live, from, nick);
    if let Some(own) = live.occupants.get(nick)
        && let Ok(mut p) = own.presence.parse::<Element>()
    {
        p.append_child(muc_user(
            Some(from),
            Role::Participant,
            &[Status::NonAnonymousRoom, Status::SelfPresence],
        ));
        out.push(addressed(p, from));
    }
    out.extend(reflection::history(cx, room, from)?);
    out.push(subject::on_join(cx, room, from, now)?);
    Ok(out)
}

/// A presence update from someone already in: shown to everyone.
fn update(
    cx: &mut Context,
    live: &mut LiveRoom,
    payloads: &[Element],
    room: &str,
    nick: &str,
    user: &str,
) -> Vec<Element> {
    let p = occupant_presence(cx, payloads, room, nick, user);
    let mut first = None;
    let kept = kept_presence(cx, &p, room, nick, user);
    if let Some(occupant) = live.occupants.get_mut(nick) {
        occupant.presence = kept;
        first = occupant.sessions.first().cloned();
    }
    persist(cx, room, Some(live), nick);
    live.all_sessions()
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
        .collect()
}

/// The session leaves (or is gone): the others see it go if it was the
/// nickname's last session; the session itself always gets its own
/// unavailable presence.
pub(super) fn leave(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    payloads: &[Element],
) -> Vec<Element> {
    let RoomStanza { from, room, .. } = *at;
    let room_s = room.as_str();
    let Some(live) = rooms.live.get_mut(room_s) else {
        return vec![];
    };
    let Some(departure) = depart(live, from) else {
        return vec![];
    };
    persist(cx, room_s, Some(live), &departure.nick);
    let mut p = occupant_presence(cx, payloads, room_s, &departure.nick, &departure.user);
    set_attr(&mut p, "type", "unavailable");
    let mut out = Vec::new();
    if departure.gone {
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
    rooms.count_join(&departure.user, -1);
    info!(room = %room_s, nick = %departure.nick, "left");
    out
}

/// A graceful stop of the service: every session is told it is out of its
/// room because the service shuts down (XEP-0045 status 332, with 110 as it
/// is its own presence), and occupancy is cleared, so nobody counts as in a
/// room they were told they left. The writes go first, the notices once they
/// are durable, before the stream closes.
pub fn shutdown(cx: &mut Context, rooms: &mut Rooms) -> Vec<Element> {
    let mut out = Vec::new();
    let mut live: Vec<_> = rooms.live.drain().collect();
    // In a stable order, so the notices and writes are the same each time.
    live.sort_by(|a, b| a.0.cmp(&b.0));
    for (room, l) in live {
        for (nick, o) in &l.occupants {
            for s in &o.sessions {
                let mut p = element(
                    "presence",
                    ns::COMPONENT,
                    &[("from", &format!("{room}/{nick}")), ("type", "unavailable")],
                );
                p.append_child(occupant_id_element(cx, &room, &o.user));
                p.append_child(muc_user(
                    Some(s),
                    Role::None,
                    &[Status::SelfPresence, Status::ServiceShutdown],
                ));
                out.push(addressed(p, s));
            }
            persist(cx, &room, None, nick);
        }
    }
    rooms.joins.clear();
    if !out.is_empty() {
        info!(
            sessions = out.len(),
            "told occupants the service is shutting down"
        );
    }
    out
}

/// The presence to keep for an occupant: `presence` itself, or, if it is
/// larger than [`MAX_KEPT_PRESENCE_BYTES`], one without the client's
/// payloads.
fn kept_presence(cx: &Context, presence: &Element, room: &str, nick: &str, user: &str) -> String {
    let text = to_string(presence);
    if text.len() <= MAX_KEPT_PRESENCE_BYTES {
        return text;
    }
    to_string(&occupant_presence(cx, &[], room, nick, user))
}

/// An occupant's session that left.
struct Departure {
    nick: String,
    user: String,
    /// Whether it was the nickname's last session.
    gone: bool,
}

fn depart(live: &mut LiveRoom, session: &Jid) -> Option<Departure> {
    let (nick, occupant) = live
        .occupants
        .iter_mut()
        .find(|(_, o)| o.sessions.iter().any(|s| s == session))?;
    occupant.sessions.retain(|s| s != session);
    let departure = Departure {
        nick: nick.clone(),
        user: occupant.user.clone(),
        gone: occupant.sessions.is_empty(),
    };
    if departure.gone {
        live.occupants.remove(&departure.nick);
    }
    Some(departure)
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

/// An occupant's presence as the room shows it: the client's own payloads
/// (show, status, caps), the room's additions, from `room/nick`.
fn occupant_presence(
    cx: &Context,
    payloads: &[Element],
    room: &str,
    nick: &str,
    user: &str,
) -> Element {
    let mut p = element(
        "presence",
        ns::COMPONENT,
        &[("from", &format!("{room}/{nick}"))],
    );
    for child in payloads {
        p.append_child(child.clone());
    }
    p.append_child(occupant_id_element(cx, room, user));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
