//! The list follows the core's own writes: a message recorded, refused,
//! held or read becomes the list's writes here, so no handler of 1:1 chat
//! or rooms knows the list exists (one-way: the list depends on the store's
//! writes, nothing depends on the list).

use crate::status::private_mark::private_reader;
use crate::store::{ConversationKey, Write};

use super::view::Peer;

/// Whose list a stanza's writes changed, for pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// `user`'s entry for `peer`.
    One { user: String, peer: Peer },
    /// Every member's entry for this room (a new message).
    Room(String),
}

/// The condition of a refusal because the recipient was offline: the only
/// refusal that is an attempt the recipient missed. Others (the sender not
/// authorised, over a limit) are the sender's business alone.
const OFFLINE: &str = "recipient-unavailable";

/// The list's writes for `writes` (a stanza's), and whose lists they touch.
pub fn follow(writes: &[Write]) -> (Vec<Write>, Vec<Touched>) {
    let mut out = Vec::new();
    let mut touched = Vec::new();
    for write in writes {
        match write {
            // A new message, or a held one going out (a no-op for the list:
            // its entry is already past it). Receipts and failures change
            // only the sender's state, which is read when shown.
            Write::Message { seq, record, .. } => {
                let (s, r) = (&record.sender, &record.recipient);
                if record.delivered_at.is_none() && record.failed.is_none() {
                    out.push(Write::InboxMessage {
                        user: s.clone(),
                        contact: r.clone(),
                        seq: *seq,
                        at: record.sent_at,
                        own: true,
                    });
                    out.push(Write::InboxMessage {
                        user: r.clone(),
                        contact: s.clone(),
                        seq: *seq,
                        at: record.sent_at,
                        own: false,
                    });
                    touch(&mut touched, r, Peer::Contact(s.clone()));
                }
                touch(&mut touched, s, Peer::Contact(r.clone()));
            }
            Write::RefusedMessage { seq, record, .. } => {
                let (s, r) = (&record.sender, &record.recipient);
                out.push(Write::InboxMessage {
                    user: s.clone(),
                    contact: r.clone(),
                    seq: *seq,
                    at: record.sent_at,
                    own: true,
                });
                touch(&mut touched, s, Peer::Contact(r.clone()));
                if record
                    .failed
                    .as_ref()
                    .is_some_and(|f| f.condition == OFFLINE)
                {
                    out.push(Write::InboxMissed {
                        user: r.clone(),
                        contact: s.clone(),
                        seq: *seq,
                        at: record.sent_at,
                    });
                    touch(&mut touched, r, Peer::Contact(s.clone()));
                }
            }
            Write::Mark {
                conv, reader, seq, ..
            } => {
                // A private tidemark is the reader's own too.
                let prefix = private_reader("");
                let (user, shared) = match reader.strip_prefix(&prefix) {
                    Some(user) => (user, false),
                    None => (reader.as_str(), true),
                };
                match conv {
                    ConversationKey::Direct { .. } => {
                        let Some(side) = conv.side_of(user) else {
                            continue;
                        };
                        let Some(contact) = conv.party(1 - side) else {
                            continue;
                        };
                        out.push(Write::InboxRead {
                            user: user.to_owned(),
                            contact: contact.to_owned(),
                            upto: *seq,
                        });
                        touch(&mut touched, user, Peer::Contact(contact.to_owned()));
                        if shared {
                            // The contact's own message may read as read now.
                            touch(&mut touched, contact, Peer::Contact(user.to_owned()));
                        }
                    }
                    ConversationKey::Room(room) => {
                        touch(&mut touched, user, Peer::Room(room.clone()))
                    }
                }
            }
            Write::RoomMessage { room, seq, message } => {
                out.push(Write::InboxRoomSent {
                    user: message.sender.clone(),
                    room: room.clone(),
                    seq: *seq,
                });
                if !touched.contains(&Touched::Room(room.clone())) {
                    touched.push(Touched::Room(room.clone()));
                }
            }
            Write::Membership { room, member, .. } => {
                touch(&mut touched, member, Peer::Room(room.clone()))
            }
            _ => {}
        }
    }
    (out, touched)
}

fn touch(touched: &mut Vec<Touched>, user: &str, peer: Peer) {
    let t = Touched::One {
        user: user.to_owned(),
        peer,
    };
    if !touched.contains(&t) {
        touched.push(t);
    }
}
