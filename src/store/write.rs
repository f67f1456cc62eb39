//! The store writes the core asks for, as values. The core never writes: it
//! returns these in its [`crate::effects::Effects`], and the shell applies a
//! stanza's writes with [`Store::apply`] before it handles the next stanza,
//! so every stanza reads what the ones before it wrote. A stanza whose
//! handling fails returns no writes at all: it changes nothing.

use super::{
    ConversationKey, DeskConversation, DeskEvent, Membership, MessageRecord, Millis,
    OccupantRecord, RoomMessage, RoomRecord, RoomSubject, Seq, Store, StoreResult,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Records a 1:1 message, or what is new about it (its receipt, its
    /// failure, its release from the queue).
    Message {
        conv: ConversationKey,
        seq: Seq,
        record: MessageRecord,
    },
    /// Records a message tidemark refused, keeping only the sender's newest
    /// `keep` refusals.
    RefusedMessage {
        conv: ConversationKey,
        seq: Seq,
        record: MessageRecord,
        keep: usize,
    },
    /// Moves `reader`'s tidemark in `conv` to `seq` if that is forward (an
    /// atomic maximum: applying it late or twice never moves it back).
    Mark {
        conv: ConversationKey,
        reader: String,
        seq: Seq,
        at: Millis,
    },
    PresenceAllowed {
        contact: String,
        watcher: String,
        allowed: bool,
    },
    /// Holds a relayed stanza until `recipient` comes online.
    Enqueue {
        recipient: String,
        seq: Seq,
        conv: ConversationKey,
        stanza: Vec<u8>,
    },
    /// The held stanzas `seqs` of `recipient` went out.
    Dequeue {
        recipient: String,
        seqs: Vec<Seq>,
    },
    Room {
        room: String,
        record: RoomRecord,
    },
    Membership {
        room: String,
        member: String,
        membership: Membership,
    },
    RoomMessage {
        room: String,
        seq: Seq,
        message: RoomMessage,
    },
    RoomCreator {
        creator: String,
        room: String,
    },
    ReadReceiptsPref {
        user: String,
        enabled: bool,
    },
    /// Who is in `room` under `nick` now; `None`: nobody any more.
    Occupant {
        room: String,
        nick: String,
        occupant: Option<OccupantRecord>,
    },
    // --- issue 9 ---
    /// `room`'s subject from now on (XEP-0045 §8.1).
    RoomSubject {
        room: String,
        subject: RoomSubject,
    },
    /// Keeps the start of a 1:1 message's text with it (the `status`
    /// command's preview, only when `status.preview_chars` is above 0).
    Preview {
        conv: ConversationKey,
        seq: Seq,
        text: String,
    },
    // --- issue 10: the conversation list ---
    /// [`Store::inbox_message`].
    InboxMessage {
        user: String,
        contact: String,
        seq: Seq,
        at: Millis,
        own: bool,
    },
    /// [`Store::inbox_read`].
    InboxRead {
        user: String,
        contact: String,
        upto: Seq,
    },
    /// [`Store::inbox_missed`].
    InboxMissed {
        user: String,
        contact: String,
        seq: Seq,
        at: Millis,
    },
    /// [`Store::inbox_room_sent`].
    InboxRoomSent {
        user: String,
        room: String,
        seq: Seq,
    },
    // --- issue 11: team desks ---
    /// [`Store::put_desk_conversation`].
    DeskConversation {
        desk: String,
        conv: DeskConversation,
    },
    /// [`Store::put_desk_event`].
    DeskEvent {
        desk: String,
        customer: String,
        seq: Seq,
        event: DeskEvent,
    },
    /// [`Store::put_desk_author`].
    DeskAuthor {
        desk: String,
        customer: String,
        seq: Seq,
        agent: String,
    },
}

/// Applies `writes` in order through the store's logical operations: what
/// [`Store::apply`] does unless a backend has a better way.
pub fn apply_each<S: Store + ?Sized>(store: &S, writes: &[Write]) -> StoreResult<()> {
    for write in writes {
        match write {
            Write::Message { conv, seq, record } => store.put_message(conv, *seq, record)?,
            Write::RefusedMessage {
                conv,
                seq,
                record,
                keep,
            } => store.put_refused_message(conv, *seq, record, *keep)?,
            Write::Mark {
                conv,
                reader,
                seq,
                at,
            } => {
                store.advance_mark(conv, reader, *seq, *at)?;
            }
            Write::PresenceAllowed {
                contact,
                watcher,
                allowed,
            } => store.set_presence_allowed(contact, watcher, *allowed)?,
            Write::Enqueue {
                recipient,
                seq,
                conv,
                stanza,
            } => store.enqueue(recipient, *seq, conv, stanza)?,
            Write::Dequeue { recipient, seqs } => store.dequeue(recipient, seqs)?,
            Write::Room { room, record } => store.put_room(room, record)?,
            Write::Membership {
                room,
                member,
                membership,
            } => store.set_membership(room, member, membership)?,
            Write::RoomMessage { room, seq, message } => {
                store.put_room_message(room, *seq, message)?
            }
            Write::RoomCreator { creator, room } => store.add_room_creator(creator, room)?,
            Write::ReadReceiptsPref { user, enabled } => {
                store.set_read_receipts_pref(user, *enabled)?
            }
            Write::Occupant {
                room,
                nick,
                occupant,
            } => store.set_occupant(room, nick, occupant.as_ref())?,
            Write::Preview { conv, seq, text } => store.put_preview(conv, *seq, text)?,
            Write::InboxMessage {
                user,
                contact,
                seq,
                at,
                own,
            } => store.inbox_message(user, contact, *seq, *at, *own)?,
            Write::InboxRead {
                user,
                contact,
                upto,
            } => store.inbox_read(user, contact, *upto)?,
            Write::InboxMissed {
                user,
                contact,
                seq,
                at,
            } => store.inbox_missed(user, contact, *seq, *at)?,
            Write::InboxRoomSent { user, room, seq } => store.inbox_room_sent(user, room, *seq)?,
            Write::RoomSubject { room, subject } => store.set_room_subject(room, subject)?,
            Write::DeskConversation { desk, conv } => store.put_desk_conversation(desk, conv)?,
            Write::DeskEvent {
                desk,
                customer,
                seq,
                event,
            } => store.put_desk_event(desk, customer, *seq, event)?,
            Write::DeskAuthor {
                desk,
                customer,
                seq,
                agent,
            } => store.put_desk_author(desk, customer, *seq, agent)?,
        }
    }
    Ok(())
}
