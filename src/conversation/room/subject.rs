//! A room's subject (XEP-0045 §8.1): who may change it, what everyone in
//! the room is shown when it changes, and what a joiner is shown of it.
//!
//! Clients show a subject's author and time from the subject message
//! itself: the nickname of its `from` and a XEP-0203 delay. Gajim 1.7 shows
//! every subject as "Changed by <nick>", and "Changed by Unknown" for one
//! from the room's bare JID, even an empty one. So a subject is always sent
//! from an occupant JID: the setter's nickname with the time it was set,
//! or, for a room nobody gave a subject and for the config file's, the
//! service's own nickname [`SERVICE_NICK`], which nobody may join under.

use minidom::Element;
use tracing::info;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Lang, Message};

use super::{Out, RoomStanza, Rooms, addressed, occupant_id_element};
use crate::config::MAX_SUBJECT_BYTES;
use crate::context::Context;
use crate::stanza::ns::DELAY;
use crate::stanza::{DefinedCondition, ErrorType, element, set_attr, xep0082};
use crate::store::{Millis, RoomSubject, StoreError, Write};

/// The nickname the service speaks under in every room: the author of a
/// subject nobody set, and of the config file's. Reserved: a join under it
/// is refused with `conflict`, so it always means the service.
pub const SERVICE_NICK: &str = "tidemark";

/// An occupant changes the subject. In a room of the config file any
/// member may (the administrator chose the members); in an open room, which
/// anyone may join, only the member who created it, as Prosody lets only
/// owners and moderators by default. Others get `forbidden` (XEP-0045
/// §8.1).
pub(super) fn change(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    text: String,
    id: Option<String>,
    now: Millis,
) -> Out {
    let RoomStanza { origin, from, room } = *at;
    let room_s = room.as_str();
    let Some((live, nick)) = rooms.entered(room_s, from) else {
        // XEP-0045 §7.4: only occupants may send.
        return Ok(vec![origin.error(
            room_s,
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            "you are not in this room; join it before changing its subject",
        )]);
    };
    let user = from.to_bare().to_string();
    let member = cx
        .store
        .membership(room_s, &user)?
        .is_some_and(|m| m.is_current());
    let Some(record) = cx.store.room(room_s)? else {
        return Ok(vec![]);
    };
    let allowed = member && (record.fixed_members || cx.store.created_room(&user, room_s)?);
    if !allowed {
        let text = if !member {
            "you are no longer a member of this room"
        } else {
            "anyone may join this room, so only the member who created it may change its subject"
        };
        return Ok(vec![origin.error(
            room_s,
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            text,
        )]);
    }
    if text.len() > MAX_SUBJECT_BYTES {
        return Ok(vec![origin.error(
            room_s,
            ErrorType::Modify,
            DefinedCondition::PolicyViolation,
            &format!(
                "the subject is {} bytes; this service accepts at most {MAX_SUBJECT_BYTES} bytes",
                text.len()
            ),
        )]);
    }
    let config = cx.store.room_subject(room_s)?.and_then(|s| s.config);
    let subject = RoomSubject {
        text,
        nick: nick.clone(),
        setter: Some(user.clone()),
        at: now,
        config,
    };
    let mut message = subject_message(room, &subject.nick, &subject.text);
    if let Some(id) = id {
        set_attr(&mut message, "id", id);
    }
    message.append_child(occupant_id_element(cx, room_s, &user));
    cx.write(Write::RoomSubject {
        room: room_s.to_owned(),
        subject,
    });
    info!(room = %room_s, %nick, "subject changed");
    Ok(live
        .all_sessions()
        .map(|s| addressed(message.clone(), s))
        .collect())
}

/// The subject that ends a join (XEP-0045 §7.2.15), from the nickname that
/// set it, with the time it was set; for a room nobody gave one, empty,
/// from the service's nickname, since the room was made.
pub(super) fn on_join(
    cx: &Context,
    room: &BareJid,
    to: &Jid,
    now: Millis,
) -> Result<Element, StoreError> {
    let room_s = room.as_str();
    let (mut message, at) = match cx.store.room_subject(room_s)? {
        Some(s) => {
            let mut m = subject_message(room, &s.nick, &s.text);
            if let Some(setter) = &s.setter {
                m.append_child(occupant_id_element(cx, room_s, setter));
            }
            (m, s.at)
        }
        None => {
            let created = cx.store.room(room_s)?.map_or(now, |r| r.created_at);
            (subject_message(room, SERVICE_NICK, ""), created)
        }
    };
    // Hand-built, as the history's: Gajim takes a subject's time from a
    // delay `from` the room.
    message.append_child(element(
        "delay",
        DELAY,
        &[("stamp", &xep0082(at)), ("from", room_s)],
    ));
    Ok(addressed(message, to))
}

/// The config file's `subject` for `room`, applied when it differs from
/// what the file said when it was last applied: a change in the file wins
/// once, and a member's change after it stands until the file changes
/// again.
pub(super) fn apply_config(
    cx: &mut Context,
    room: &str,
    wanted: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    let current = cx.store.room_subject(room)?;
    if current.as_ref().and_then(|s| s.config.as_deref()) == Some(wanted) {
        return Ok(());
    }
    cx.write(Write::RoomSubject {
        room: room.to_owned(),
        subject: RoomSubject {
            text: wanted.to_owned(),
            nick: SERVICE_NICK.to_owned(),
            setter: None,
            at: now,
            config: Some(wanted.to_owned()),
        },
    });
    info!(%room, "subject set from the config file");
    Ok(())
}

/// `<message type='groupchat' from='room/nick'><subject>text</subject>`,
/// without `to`.
fn subject_message(room: &BareJid, nick: &str, text: &str) -> Element {
    let mut subject = Message::groupchat(None);
    subject.from = Some(match Jid::new(&format!("{room}/{nick}")) {
        Ok(jid) => jid,
        // A nickname the room let in is a valid resource; should one not
        // be, the bare room is still a valid author.
        Err(_) => room.clone().into(),
    });
    subject.subjects.insert(Lang::default(), text.to_owned());
    subject.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_message_is_from_the_nick_and_without_lang() {
        let room = BareJid::new("team@rooms.localhost").unwrap();
        let m: Element = String::from(&subject_message(&room, "bob", "Release on Friday"))
            .parse()
            .unwrap();
        let expected: Element = "<message xmlns='jabber:component:accept' type='groupchat' from='team@rooms.localhost/bob'><subject>Release on Friday</subject></message>"
            .parse()
            .unwrap();
        assert_eq!(m, expected, "{}", String::from(&m));
        // Empty, as on the wire: <subject></subject> is the same XML as <subject/>.
        let m: Element = String::from(&subject_message(&room, SERVICE_NICK, ""))
            .parse()
            .unwrap();
        let expected: Element = "<message xmlns='jabber:component:accept' type='groupchat' from='team@rooms.localhost/tidemark'><subject/></message>"
            .parse()
            .unwrap();
        assert_eq!(m, expected, "{}", String::from(&m));
    }
}
