//! Key layout. JIDs never contain NUL, so NUL separates the variable parts
//! and a prefix scan can never run into a neighbour's keys. Sequence numbers
//! are big-endian so byte order is numeric order.

use super::Seq;

const SEP: u8 = 0;

/// A conversation: two people, or a room. A 1:1 conversation is the same
/// key whichever side names it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKey {
    /// Between two bare JIDs, `lo < hi`.
    Direct { lo: String, hi: String },
    /// A group conversation, by the room's bare JID.
    Room(String),
}

impl ConversationKey {
    /// The conversation between two bare JIDs.
    pub fn direct(a: &str, b: &str) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ConversationKey::Direct {
            lo: lo.to_owned(),
            hi: hi.to_owned(),
        }
    }

    pub fn room(room: &str) -> Self {
        ConversationKey::Room(room.to_owned())
    }

    /// Which side of a 1:1 conversation `who` is: 0 for the lower address,
    /// 1 for the higher; `None` for a room or someone else.
    pub fn side_of(&self, who: &str) -> Option<u8> {
        match self {
            ConversationKey::Direct { lo, hi } if who == lo => Some(0),
            ConversationKey::Direct { hi, .. } if who == hi => Some(1),
            _ => None,
        }
    }

    /// The party on `side` of a 1:1 conversation.
    pub fn party(&self, side: u8) -> Option<&str> {
        match self {
            ConversationKey::Direct { lo, .. } if side == 0 => Some(lo),
            ConversationKey::Direct { hi, .. } => Some(hi),
            ConversationKey::Room(_) => None,
        }
    }

    /// The storage encoding: `d lo NUL hi` or `r room` (schema 1's key
    /// prefix, kept so held stanzas and refusals need no rewrite).
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            ConversationKey::Direct { lo, hi } => {
                let mut k = Vec::with_capacity(lo.len() + hi.len() + 2);
                k.push(b'd');
                k.extend_from_slice(lo.as_bytes());
                k.push(SEP);
                k.extend_from_slice(hi.as_bytes());
                k
            }
            ConversationKey::Room(room) => {
                let mut k = Vec::with_capacity(room.len() + 1);
                k.push(b'r');
                k.extend_from_slice(room.as_bytes());
                k
            }
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (kind, rest) = bytes.split_first()?;
        let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
        match kind {
            b'd' => {
                let pos = rest.iter().position(|b| *b == SEP)?;
                Some(ConversationKey::Direct {
                    lo: text(&rest[..pos])?,
                    hi: text(&rest[pos + 1..])?,
                })
            }
            b'r' => Some(ConversationKey::Room(text(rest)?)),
            _ => None,
        }
    }
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

pub fn mark(conv: &ConversationKey, reader: &str) -> Vec<u8> {
    join(&[&conv.encode(), reader.as_bytes()])
}

/// Prefix of a reader's mark log; the log key appends the sequence number.
pub fn mark_log_prefix(conv: &ConversationKey, reader: &str) -> Vec<u8> {
    let mut k = join(&[&conv.encode(), reader.as_bytes()]);
    k.push(SEP);
    k
}

pub fn mark_log(conv: &ConversationKey, reader: &str, seq: Seq) -> Vec<u8> {
    let mut k = mark_log_prefix(conv, reader);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The conversation and reader of a [`mark`] key.
pub fn split_mark(key: &[u8]) -> Option<(ConversationKey, String)> {
    let cut = match key.first()? {
        // `d lo NUL hi NUL reader`: the reader follows the second NUL.
        b'd' => {
            let first = key.iter().position(|b| *b == SEP)?;
            first + 1 + key[first + 1..].iter().position(|b| *b == SEP)?
        }
        _ => key.iter().position(|b| *b == SEP)?,
    };
    let conv = ConversationKey::decode(&key[..cut])?;
    let reader = std::str::from_utf8(&key[cut + 1..]).ok()?.to_owned();
    Some((conv, reader))
}

pub fn grant(contact: &str, watcher: &str) -> Vec<u8> {
    join(&[contact.as_bytes(), watcher.as_bytes()])
}

pub fn split_grant(key: &[u8]) -> Option<(String, String)> {
    let pos = key.iter().position(|b| *b == SEP)?;
    let contact = std::str::from_utf8(&key[..pos]).ok()?;
    let watcher = std::str::from_utf8(&key[pos + 1..]).ok()?;
    Some((contact.to_owned(), watcher.to_owned()))
}

pub fn queue_prefix(recipient: &str) -> Vec<u8> {
    let mut k = recipient.as_bytes().to_vec();
    k.push(SEP);
    k
}

pub fn queue(recipient: &str, seq: Seq) -> Vec<u8> {
    let mut k = queue_prefix(recipient);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn room_member(room: &str, member: &str) -> Vec<u8> {
    join(&[room.as_bytes(), member.as_bytes()])
}

pub fn room_prefix(room: &str) -> Vec<u8> {
    let mut k = room.as_bytes().to_vec();
    k.push(SEP);
    k
}

pub fn room_message(room: &str, seq: Seq) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Room message index: `s` for stanza-ids, `i` for senders' ids (no longer
/// written: one index for every sender let a member take over another's id;
/// read only for messages stored before `p` and `m` existed).
pub fn room_message_id(room: &str, kind: u8, id: &str) -> Vec<u8> {
    join(&[room.as_bytes(), &[kind], id.as_bytes()])
}

/// A sender's own id in a room, per sender: (room, sender, id) -> the latest
/// such message. Only `sender` writes under it, so nobody can take it over.
pub fn room_sender_id(room: &str, sender: &str, id: &str) -> Vec<u8> {
    join(&[room.as_bytes(), b"p", sender.as_bytes(), id.as_bytes()])
}

/// Every room message with a sender's id `id`, whoever sent it, in sequence
/// order: the prefix, then [`room_id_use`] appends the sequence number. XML
/// forbids NUL in attributes, so an id never runs into its neighbour's.
pub fn room_id_uses_prefix(room: &str, id: &str) -> Vec<u8> {
    let mut k = join(&[room.as_bytes(), b"m", id.as_bytes()]);
    k.push(SEP);
    k
}

pub fn room_id_use(room: &str, id: &str, seq: Seq) -> Vec<u8> {
    let mut k = room_id_uses_prefix(room, id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Issue 9: the rooms a user is or was a member of, `member NUL room`
/// (the other way round from [`room_member`]).
pub fn member_room(member: &str, room: &str) -> Vec<u8> {
    join(&[member.as_bytes(), room.as_bytes()])
}

pub fn member_rooms_prefix(member: &str) -> Vec<u8> {
    queue_prefix(member)
}

/// The rooms a user created by joining: (creator, room), counted against
/// `groups.max_rooms_per_creator`.
pub fn room_creator(creator: &str, room: &str) -> Vec<u8> {
    join(&[creator.as_bytes(), room.as_bytes()])
}

pub fn room_creator_prefix(creator: &str) -> Vec<u8> {
    let mut k = creator.as_bytes().to_vec();
    k.push(SEP);
    k
}

/// The conversation (or room) part of a key that ends in `SEP` and a
/// sequence number, with the sequence number.
pub fn split_seq_suffix(key: &[u8]) -> Option<(&[u8], Seq)> {
    let cut = key.len().checked_sub(9)?;
    if key[cut] != SEP {
        return None;
    }
    Some((&key[..cut], seq_from(&key[cut + 1..])?))
}

/// Refused messages by sender, oldest first: `sender NUL seq`.
pub fn refusal_prefix(sender: &str) -> Vec<u8> {
    queue_prefix(sender)
}

pub fn refusal(sender: &str, seq: Seq) -> Vec<u8> {
    queue(sender, seq)
}

pub fn seq_from(bytes: &[u8]) -> Option<Seq> {
    Some(Seq::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_conversation_is_symmetric() {
        assert_eq!(
            ConversationKey::direct("alice@x", "bob@x"),
            ConversationKey::direct("bob@x", "alice@x")
        );
        assert_ne!(
            ConversationKey::direct("alice@x", "bob@x"),
            ConversationKey::direct("alice@x", "carol@x")
        );
    }

    #[test]
    fn sequence_keys_sort_numerically() {
        let c = ConversationKey::direct("a@x", "b@x");
        assert!(mark_log(&c, "a@x", 9) < mark_log(&c, "a@x", 10));
    }

    #[test]
    fn a_sequence_suffix_splits_off_what_it_follows() {
        let c = ConversationKey::direct("a@x", "b@x");
        let log = mark_log(&c, "a@x", 300);
        assert_eq!(
            split_seq_suffix(&log),
            Some((&mark_log_prefix(&c, "a@x")[..log.len() - 9], 300))
        );
        assert_eq!(
            split_mark(&mark(&c, "a@x")),
            Some((c.clone(), "a@x".to_owned()))
        );
        assert_eq!(ConversationKey::decode(&c.encode()), Some(c));
        assert_eq!(
            split_seq_suffix(&room_message("team@chat", 7)),
            Some((&b"team@chat"[..], 7))
        );
        assert_eq!(split_seq_suffix(b"short"), None);
    }

    #[test]
    fn one_senders_ids_are_not_anothers() {
        assert_ne!(
            room_sender_id("r@c", "alice@x", "a1"),
            room_sender_id("r@c", "bob@x", "a1")
        );
        assert!(!room_id_use("r@c", "a10", 1).starts_with(&room_id_uses_prefix("r@c", "a1")));
    }

    #[test]
    fn a_reader_prefix_does_not_cover_a_longer_name() {
        let c = ConversationKey::direct("a@x", "b@x");
        let log = mark_log(&c, "bob@x.org", 1);
        assert!(!log.starts_with(&mark_log_prefix(&c, "bob@x")));
    }
}
