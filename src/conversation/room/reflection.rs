//! What the room makes of what its occupants send: a groupchat message is
//! recorded and reflected to every occupant with the room's stanza-id, a
//! marker is reflected once it moves its sender's tidemark, and a joiner is
//! shown the latest messages with their original time.

use minidom::Element;
use tracing::debug;
use xmpp_parsers::displayed_markers::Markable;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::stanza_id::StanzaId;

use super::{Out, RoomStanza, Rooms, addressed, frontier, occupant_id_element};
use crate::context::Context;
use crate::incoming::AckKind;
use crate::metrics::METRICS;
use crate::stanza::ns::{DELAY, OCCUPANT_ID, SID};
use crate::stanza::{
    DefinedCondition, ErrorType, element, error_reply, ns, remove_attr, set_attr, to_string,
    xep0082,
};
use crate::store::{ConversationKey, Millis, RoomMessage};

pub(super) fn groupchat(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    body_bytes: usize,
    has_body: bool,
    now: Millis,
) -> Out {
    let RoomStanza { stanza, from, room } = *at;
    let room_s = room.as_str();
    let Some((live, nick)) = rooms.entered(room_s, from) else {
        // XEP-0045 §7.4: only occupants may send.
        return Ok(vec![error_reply(
            stanza,
            room_s,
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            "you are not in this room; join it before sending",
        )]);
    };
    let user = from.to_bare().to_string();
    if !cx
        .store
        .membership(room_s, &user)?
        .is_some_and(|m| m.is_current())
    {
        return Ok(vec![error_reply(
            stanza,
            room_s,
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            "you are no longer a member of this room",
        )]);
    }
    let limit = cx.config.limits.max_body_bytes;
    if body_bytes > limit {
        return Ok(vec![error_reply(
            stanza,
            room_s,
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
    strip_room_claims(&mut reflected, room_s);
    set_attr(&mut reflected, "from", format!("{room_s}/{nick}"));
    remove_attr(&mut reflected, "to");
    reflected.append_child(
        StanzaId {
            id: stanza_id.clone(),
            by: room.clone().into(),
        }
        .into(),
    );
    reflected.append_child(occupant_id_element(cx, room_s, &user));
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
    cx.store.put_room_message(room_s, seq, &record)?;
    METRICS.status_recorded();

    let mut out: Vec<Element> = live
        .all_sessions()
        .map(|s| addressed(reflected.clone(), s))
        .collect();
    // Writing to the room means having seen what came before.
    out.extend(frontier::advance(cx, live, room_s, &user, seq, now)?);
    debug!(seq, "group message recorded");
    Ok(out)
}

pub(super) fn marker(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    kind: AckKind,
    id: &str,
    now: Millis,
) -> Out {
    let RoomStanza { stanza, from, room } = *at;
    let room_s = room.as_str();
    let reader = from.to_bare().to_string();
    let Some((live, nick)) = rooms.entered(room_s, from) else {
        debug!("marker from someone not in the room ignored");
        return Ok(vec![]);
    };
    if kind == AckKind::ReceivedMarker {
        // Groups have no delivered state (the Avaya rule).
        return Ok(vec![]);
    }
    let Some((seq, message)) = frontier::marked_message(cx, room_s, &reader, id)? else {
        debug!(id, "marker for an unknown message ignored");
        return Ok(vec![]);
    };
    let recipient = cx
        .store
        .membership(room_s, &reader)?
        .is_some_and(|m| m.covers(seq));
    if message.sender == reader || !recipient {
        debug!(id, "marker from someone who is not a recipient ignored");
        return Ok(vec![]);
    }
    let reflect = cx.sends_read_receipts(&reader)?;
    let conv = ConversationKey::room(room_s);
    let moved = reflect && cx.store.mark(&conv, &reader)? < seq;
    let mut out = frontier::advance(cx, live, room_s, &reader, seq, now)?;
    if !moved {
        return Ok(out);
    }

    let mut reflected = stanza.clone();
    strip_room_claims(&mut reflected, room_s);
    set_attr(&mut reflected, "from", format!("{room_s}/{nick}"));
    reflected.append_child(occupant_id_element(cx, room_s, &reader));
    // Above the limit, reflecting to everyone is O(members) stanzas per
    // marker, O(members²) per message read by all: only the sender, whose
    // client shows "read by", gets it.
    let members = frontier::read_state(cx, live, room_s)?.members;
    let everyone = members <= cx.config.groups.marker_reflection_limit;
    for o in live.occupants.values() {
        if everyone || o.user == message.sender {
            for s in &o.sessions {
                out.push(addressed(reflected.clone(), s));
            }
        }
    }
    Ok(out)
}

/// The latest messages of `room` for a joiner, each with its original time
/// (XEP-0045 §7.2.15).
pub(super) fn history(cx: &Context, room: &BareJid, to: &Jid) -> Out {
    let room_s = room.as_str();
    let mut out = Vec::new();
    for (_, m) in cx.store.room_history(room_s, cx.config.groups.history)? {
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
            &[("stamp", &xep0082(m.sent_at)), ("from", room_s)],
        ));
        out.push(addressed(msg, to));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
