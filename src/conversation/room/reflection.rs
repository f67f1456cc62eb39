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
use crate::incoming::{AckKind, GroupMarker, GroupMessage};
use crate::metrics::METRICS;
use crate::stanza::ns::DELAY;
use crate::stanza::{
    DefinedCondition, ErrorType, element, remove_attr, set_attr, to_string, xep0082,
};
use crate::store::{ConversationKey, Millis, RoomMessage, Write};

pub(super) fn groupchat(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    message: GroupMessage,
    now: Millis,
) -> Out {
    let RoomStanza { origin, from, room } = *at;
    let GroupMessage {
        id,
        body_bytes,
        has_body,
        markable,
        message: mut reflected,
    } = message;
    let room_s = room.as_str();
    let Some((live, nick)) = rooms.entered(room_s, from) else {
        // XEP-0045 §7.4: only occupants may send.
        return Ok(vec![origin.error(
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
        return Ok(vec![origin.error(
            room_s,
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            "you are no longer a member of this room",
        )]);
    }
    let limit = cx.config.limits.max_body_bytes;
    if body_bytes > limit {
        return Ok(vec![origin.error(
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
    if readable && !markable {
        reflected.append_child(Markable.into());
    }
    let record = RoomMessage {
        id: id.unwrap_or_else(|| stanza_id.clone()),
        stanza_id,
        sender: user.clone(),
        sent_at: now,
        readable,
        stanza: to_string(&reflected).into_bytes(),
    };
    cx.write(Write::RoomMessage {
        room: room_s.to_owned(),
        seq,
        message: record,
    });
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
    marker: GroupMarker,
    now: Millis,
) -> Out {
    let RoomStanza { from, room, .. } = *at;
    let GroupMarker {
        kind,
        id,
        message: mut reflected,
    } = marker;
    let id = id.as_str();
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
