//! The status query for a room message (xep/status.md §4): per member the
//! message was sent to, whether and when they read it.

use minidom::Element;
use xmpp_parsers::jid::BareJid;

use crate::context::Context;
use crate::stanza::{
    DefinedCondition, ErrorType, StanzaError, element, ns, set_attr, stanza_error, xep0082,
};
pub use crate::status::room_tally::RoomTally;
use crate::store::{RoomMessage, Seq, StoreError, StoreResult};

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
    let RoomTally {
        summary,
        read: read_count,
        recipients,
        all_read_at,
    } = tally(cx, room_s, seq, &message)?;
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
    if let Some(last) = all_read_at {
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

/// Tallies message `seq` of `room_s`: one recipient per member it was sent
/// to, O(members) reads.
pub fn tally(
    cx: &Context,
    room_s: &str,
    seq: Seq,
    message: &RoomMessage,
) -> StoreResult<RoomTally> {
    crate::status::room_tally::tally_in(
        &*cx.store,
        cx.config.status.send_read_receipts,
        room_s,
        seq,
        message,
    )
}
