//! What tidemark keeps on disk, behind a trait so the backend can change
//! (sled calls itself beta). Every backend passes the contract tests in
//! `contract.rs`.
//!
//! The model follows DESIGN.md "one tidemark per reader": a message is
//! known by (conversation, sequence); read state is one high-water mark per
//! (conversation, reader), and when it passed each message. How a backend
//! keeps that is its own business (sled: `status_log` for 1:1 statuses,
//! staged trees for the rest, one transaction per flush); what it must do is
//! the contract in `contract.rs`, and what it exchanges with other backends
//! is the export in `export.rs` (`xep/export.md`).

pub mod desk;
pub mod export;
pub mod inbox;
mod keys;
pub mod postgres;
pub mod retention;
mod sled_store;
mod status_log;
pub mod write;

pub mod contract;

pub use desk::{
    DeskConversation, DeskCounts, DeskEvent, DeskEventKind, DeskState, DeskView, ViewCount,
};
pub use export::{ExportError, ExportRecord};
pub use inbox::{InboxEntry, Missed};
pub use keys::ConversationKey;
pub use postgres::{PgOptions, PgStore};
pub use retention::{Expiry, ExpiryCursor};
pub use sled_store::SledStore;
pub use write::Write;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = u64;

/// The position of a message in its conversation. Sequence numbers grow with
/// time across the whole store, so they order messages within a conversation.
pub type Seq = u64;

/// Bumped whenever the on-disk encoding changes incompatibly.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error(
        "the store at {path} is in use by another tidemark process; stop it or set storage.path to another directory"
    )]
    Locked { path: String },
    #[error("the store refused a record: {0}")]
    Rejected(String),
    /// The connection to a database server is gone (it restarted, or the
    /// network failed). What was written since the last flush may be lost
    /// with it, so the service starts over from what the store holds
    /// rather than carry on with state the store may not have.
    #[error("lost the connection to the store: {0}")]
    ConnectionLost(String),
    /// The writes since the last flush were undone by the store (a write
    /// it refused aborted the batch's transaction). Their stanzas'
    /// answers must not go out, and what the service learned from them is
    /// not in the store: the service starts over, as after
    /// [`StoreError::ConnectionLost`].
    #[error("the store rolled back the writes since the last flush: {0}")]
    BatchLost(String),
    #[error("stored record is corrupt ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error(
        "store at {path} has schema version {found}, this tidemark speaks {expected}; migrate or point storage.path elsewhere"
    )]
    Schema {
        path: String,
        found: u32,
        expected: u32,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Why a message failed, as shown to its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub at: Millis,
    /// An RFC 6120 stanza error condition, e.g. `recipient-unavailable`.
    pub condition: String,
    pub text: String,
}

/// One message tidemark carried, with what it knows of it per recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The sender's own id for the message; receipts and markers name it.
    pub id: String,
    /// Sender's bare JID.
    pub sender: String,
    /// Recipient's bare JID (1:1).
    pub recipient: String,
    pub sent_at: Millis,
    /// First XEP-0184 receipt (or chat-markers `received`) from the recipient.
    pub delivered_at: Option<Millis>,
    pub failed: Option<Failure>,
    /// The sender asked for a XEP-0184 receipt.
    pub wants_receipt: bool,
    /// The sender marked the message XEP-0333 markable.
    pub wants_markers: bool,
    /// False for attachment-only messages, which get no read status.
    pub readable: bool,
    /// Held until the recipient comes online (offline policy "queue").
    pub queued: bool,
}

/// The storage contract. Writes become durable at the next [`Store::flush`];
/// callers relay nothing that depends on a write before that flush returns.
pub trait Store: Send + Sync {
    /// A new sequence number, greater than any handed out before, even
    /// across a crash. The core asks for these as it asks for the time: a
    /// number handed out and never written is only a gap.
    fn next_seq(&self) -> StoreResult<Seq>;

    /// Stores a message and indexes it by (sender, id) in its conversation.
    fn put_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
    ) -> StoreResult<()>;

    fn message(&self, conv: &ConversationKey, seq: Seq) -> StoreResult<Option<MessageRecord>>;

    /// The latest message `sender` sent in `conv` with the id `id`.
    fn find_message(
        &self,
        conv: &ConversationKey,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, MessageRecord)>>;

    /// `reader`'s tidemark in `conv`: the highest sequence they have read, 0
    /// for none.
    fn mark(&self, conv: &ConversationKey, reader: &str) -> StoreResult<Seq>;

    /// Moves `reader`'s tidemark to `seq` at time `at` if that is forward.
    /// Returns whether it moved; a tidemark never goes back.
    fn advance_mark(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<bool>;

    /// When `reader`'s tidemark first reached `seq`, if it has. For a
    /// party to a 1:1 conversation, `seq` is a message of the other party
    /// (their own messages and positions that are no message have no read
    /// time); in a room, or for a private tidemark, any position.
    fn read_at(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
    ) -> StoreResult<Option<Millis>>;

    /// Records whether `contact` lets `watcher` see their presence.
    fn set_presence_allowed(&self, contact: &str, watcher: &str, allowed: bool) -> StoreResult<()>;

    fn presence_allowed(&self, contact: &str, watcher: &str) -> StoreResult<bool>;

    /// Every (contact, watcher) pair with permission, for probing after a
    /// (re)connect.
    fn presence_grants(&self) -> StoreResult<Vec<(String, String)>>;

    /// Whether `contact` lets anyone see their presence.
    fn has_watchers(&self, contact: &str) -> StoreResult<bool>;

    /// Stores a refused message like [`Store::put_message`], keeping only
    /// the sender's newest `keep` refused messages: the oldest beyond that
    /// is removed (with its id index, unless a later message took the id),
    /// in O(1) amortised.
    fn put_refused_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
        keep: usize,
    ) -> StoreResult<()>;

    /// How many refused messages of `sender` are kept.
    fn refusal_count(&self, sender: &str) -> StoreResult<usize>;

    /// Holds a stanza for `recipient` until they come online.
    fn enqueue(
        &self,
        recipient: &str,
        seq: Seq,
        conv: &ConversationKey,
        stanza: &[u8],
    ) -> StoreResult<()>;

    fn queued_count(&self, recipient: &str) -> StoreResult<usize>;

    /// Everything held for `recipient`, oldest first.
    fn queued(&self, recipient: &str) -> StoreResult<Vec<QueuedStanza>>;

    /// Removes the stanzas `seqs` held for `recipient` (they went out);
    /// sequences not held are ignored.
    fn dequeue(&self, recipient: &str, seqs: &[Seq]) -> StoreResult<()>;

    fn put_room(&self, room: &str, record: &RoomRecord) -> StoreResult<()>;

    fn room(&self, room: &str) -> StoreResult<Option<RoomRecord>>;

    fn rooms(&self) -> StoreResult<Vec<(String, RoomRecord)>>;

    fn set_membership(&self, room: &str, member: &str, m: &Membership) -> StoreResult<()>;

    fn membership(&self, room: &str, member: &str) -> StoreResult<Option<Membership>>;

    /// Everyone who is or was a member of `room`.
    fn memberships(&self, room: &str) -> StoreResult<Vec<(String, Membership)>>;

    /// Stores a room message, indexed by its stanza-id and by its sender's
    /// id per sender.
    fn put_room_message(&self, room: &str, seq: Seq, message: &RoomMessage) -> StoreResult<()>;

    /// The message with the room's XEP-0359 stanza-id `stanza_id`.
    fn room_message_by_stanza_id(
        &self,
        room: &str,
        stanza_id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>>;

    /// The latest message `sender` sent to `room` with their own id `id`;
    /// another sender's use of the same id is never it.
    fn room_message_by_sender_id(
        &self,
        room: &str,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>>;

    /// Up to `limit` messages of `room`, from any sender, whose sender's id
    /// is `id` and whose sequence is above `after`, oldest first.
    fn room_messages_with_sender_id(
        &self,
        room: &str,
        id: &str,
        after: Seq,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>>;

    /// Records that `creator` created `room` by joining it.
    fn add_room_creator(&self, creator: &str, room: &str) -> StoreResult<()>;

    /// How many rooms `creator` created by joining.
    fn rooms_created_by(&self, creator: &str) -> StoreResult<usize>;

    /// Room messages with `after < seq <= upto`, oldest first.
    fn room_messages_between(
        &self,
        room: &str,
        after: Seq,
        upto: Seq,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>>;

    /// The last `limit` room messages, oldest first.
    fn room_history(&self, room: &str, limit: usize) -> StoreResult<Vec<(Seq, RoomMessage)>>;

    /// A user's choice to send read receipts, if they made one.
    fn read_receipts_pref(&self, user: &str) -> StoreResult<Option<bool>>;

    fn set_read_receipts_pref(&self, user: &str, enabled: bool) -> StoreResult<()>;

    // --- Room occupancy (issue 9): who is in which room now, kept so that
    // clients that never rejoin (no XEP-0410 self-ping) stay in across a
    // restart of tidemark.

    /// Sets who is in `room` under `nick` (their sessions and presence), or
    /// with `None` that nobody is.
    fn set_occupant(
        &self,
        room: &str,
        nick: &str,
        occupant: Option<&OccupantRecord>,
    ) -> StoreResult<()>;

    /// Every occupant of every room, by room and nickname: what tidemark
    /// restores at start.
    fn occupants(&self) -> StoreResult<Vec<(String, String, OccupantRecord)>>;

    // --- end of room occupancy

    // --- Room subjects (issue 9): XEP-0045 §8.1.

    /// Sets `room`'s subject, replacing the one before.
    fn set_room_subject(&self, room: &str, subject: &RoomSubject) -> StoreResult<()>;

    /// `room`'s subject, if anyone (or the config file) ever set one.
    fn room_subject(&self, room: &str) -> StoreResult<Option<RoomSubject>>;

    /// Whether `creator` created `room` by joining it.
    fn created_room(&self, creator: &str, room: &str) -> StoreResult<bool>;

    /// Retention: examines about `budget` entries from `from` on (a backend
    /// may round up to its unit of storage: sled's status log examines whole
    /// pages of 256) and
    /// removes the statuses older than `cutoff` among them (messages and
    /// their indexes, room messages and theirs, tidemark log entries, held
    /// stanzas); tidemarks themselves stay. [`Expiry::next`] is where to go
    /// on, `None` when a pass over the whole store is complete.
    fn expire(&self, cutoff: Millis, from: &ExpiryCursor, budget: usize) -> StoreResult<Expiry>;

    // --- issue 9: a user's sent messages (the `status` command) ---

    /// Keeps `text`, the start of a 1:1 message's body, with the message
    /// (`status.preview_chars`); it goes when the message goes (retention,
    /// a trimmed refusal). Nothing happens if the message is not stored.
    fn put_preview(&self, conv: &ConversationKey, seq: Seq, text: &str) -> StoreResult<()>;

    /// Up to `limit` of the messages `user` sent, 1:1 (refused ones too)
    /// and in rooms, on one side of a position, newest first; only those
    /// to `filter` if given. Derived from what is stored anyway (no list
    /// is written per message): messages sent before this existed are
    /// listed too. The work is bounded whatever the store holds: a
    /// backend may examine only so much and says so with
    /// [`SentPage::cut`] (sled: `sled_store::sent`).
    fn sent_by(
        &self,
        user: &str,
        from: SentFrom,
        limit: usize,
        filter: Option<&SentTo>,
    ) -> StoreResult<SentPage>;

    // --- end issue 9 ---

    // --- issue 10: the conversation list (the inbox) ---

    /// Records message `seq` of the 1:1 conversation of `user` and
    /// `contact` in `user`'s list, made by `user` (`own`) or by `contact`.
    /// A message from the contact is unread; the user's own message means
    /// they have the conversation open: what came before it is read and
    /// missed attempts are cleared. Idempotent: a `seq` not above the
    /// entry's newest changes nothing.
    fn inbox_message(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
        own: bool,
    ) -> StoreResult<()>;

    /// `user` read the conversation with `contact` up to `upto`: the
    /// contact's messages up to it are no longer unread, missed attempts
    /// are cleared. Nothing happens without an entry.
    fn inbox_read(&self, user: &str, contact: &str, upto: Seq) -> StoreResult<()>;

    /// `contact` tried to reach `user` (refused attempt `seq`, at `at`)
    /// while `user` was offline. Idempotent like [`Store::inbox_message`].
    fn inbox_missed(&self, user: &str, contact: &str, seq: Seq, at: Millis) -> StoreResult<()>;

    /// `user` sent message `seq` to `room`: their read position there is at
    /// least that message.
    fn inbox_room_sent(&self, user: &str, room: &str, seq: Seq) -> StoreResult<()>;

    fn inbox_entry(&self, user: &str, contact: &str) -> StoreResult<Option<InboxEntry>>;

    /// Up to `limit` of `user`'s entries whose newest activity is below
    /// `before`, newest first, in O(log n + limit).
    fn inbox_latest(&self, user: &str, before: Seq, limit: usize) -> StoreResult<Vec<InboxEntry>>;

    /// Up to `limit` of `user`'s entries in no particular order (a search
    /// examines them all, within its bound).
    fn inbox_entries(&self, user: &str, limit: usize) -> StoreResult<Vec<InboxEntry>>;

    /// The sum of the unread counts of `user`'s entries.
    fn inbox_unread_total(&self, user: &str) -> StoreResult<u64>;

    /// `user`'s newest message in `room`, 0 for none.
    fn inbox_room_sent_seq(&self, user: &str, room: &str) -> StoreResult<Seq>;

    /// The rooms `user` is or was a member of (bounded by the store).
    fn member_rooms(&self, user: &str) -> StoreResult<Vec<String>>;

    /// How many messages of `room` still stored have a sequence above
    /// `after`, in O(log n).
    fn room_messages_after(&self, room: &str, after: Seq) -> StoreResult<u64>;

    // --- end issue 10 ---

    // --- issue 11: team desks (`desk.rs`) ---

    /// Stores `conv` as `desk`'s conversation with `conv.customer`, keeping
    /// the views' index and counts in step with what it was before.
    fn put_desk_conversation(&self, desk: &str, conv: &DeskConversation) -> StoreResult<()>;

    fn desk_conversation(
        &self,
        desk: &str,
        customer: &str,
    ) -> StoreResult<Option<DeskConversation>>;

    /// Up to `limit` conversations of `view`, latest first, starting after
    /// the conversation of the customer `after` (XEP-0059), in
    /// O(log n + limit).
    fn desk_view(
        &self,
        desk: &str,
        view: &DeskView,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeskConversation>>;

    /// The counts of every view as `agent` sees them, in O(1).
    fn desk_counts(&self, desk: &str, agent: &str) -> StoreResult<DeskCounts>;

    fn put_desk_event(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        event: &DeskEvent,
    ) -> StoreResult<()>;

    /// The newest `limit` events of a conversation, oldest first.
    fn desk_events(
        &self,
        desk: &str,
        customer: &str,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, DeskEvent)>>;

    /// Remembers that `agent` wrote the desk's message `seq` to `customer`.
    fn put_desk_author(&self, desk: &str, customer: &str, seq: Seq, agent: &str)
    -> StoreResult<()>;

    fn desk_author(&self, desk: &str, customer: &str, seq: Seq) -> StoreResult<Option<String>>;

    /// Every snoozed conversation of every desk: (desk, customer, until).
    fn desk_snoozed(&self) -> StoreResult<Vec<(String, String, Millis)>>;

    // --- end issue 11 ---

    /// Makes every write so far durable.
    fn flush(&self) -> StoreResult<()>;

    /// Whether the store can still be reached, asked once a second while
    /// the service runs: a database session lost while idle is then found
    /// at once, not by the next stanza (whose answer it would cost).
    /// Local stores are always there.
    fn check(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Applies the core's writes, in order (durable at the next
    /// [`Store::flush`] like any other write).
    fn apply(&self, writes: &[Write]) -> StoreResult<()> {
        write::apply_each(self, writes)
    }

    /// Hands every record to `each`, as [`export::export`] writes them.
    fn export_records(
        &self,
        each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
    ) -> Result<(), ExportError>;

    // What an import ([`export::import_record`]) writes that no other
    // operation can: the past as it was, not as it happens.

    /// Sets `reader`'s tidemark in `conv` to at least `seq`, with no move
    /// logged (the export's `Mark`).
    fn import_mark(&self, conv: &ConversationKey, reader: &str, seq: Seq) -> StoreResult<()>;

    /// Records that `reader`'s tidemark in `conv` passed `seq` at `at` (a
    /// `MarkMoved`, or a party's read time of message `seq`), leaving the
    /// tidemark itself to [`Store::import_mark`].
    fn import_mark_moved(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<()>;

    /// Stores `user`'s conversation-list entry as exported, its unread
    /// messages `unread` (sorted, none after `entry.latest`); `entry.unread`
    /// is ignored.
    fn import_inbox_entry(&self, user: &str, entry: InboxEntry, unread: &[Seq]) -> StoreResult<()>;

    /// Whether the store holds nothing (an import needs an empty one).
    fn is_empty(&self) -> StoreResult<bool>;

    /// Sequence numbers handed out from now on are above `seq`.
    fn continue_after(&self, seq: Seq) -> StoreResult<()>;
}

impl MessageRecord {
    /// A 1:1 message just sent, whose sender asked for receipts and
    /// markers (tests and benchmarks start from it, and a desk's
    /// predefined message is one).
    pub fn sent(sender: &str, recipient: &str, id: &str, at: Millis) -> Self {
        MessageRecord {
            id: id.into(),
            sender: sender.into(),
            recipient: recipient.into(),
            sent_at: at,
            delivered_at: None,
            failed: None,
            wants_receipt: true,
            wants_markers: true,
            readable: true,
            queued: false,
        }
    }
}

/// A group conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub created_at: Millis,
    /// The member list comes from the config file; joining does not add to it.
    pub fixed_members: bool,
}

/// When someone was a member of a room, in sequence numbers: a member is a
/// recipient of the messages sent while they were one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub joined: Seq,
    pub left: Option<Seq>,
}

impl Membership {
    pub fn is_current(&self) -> bool {
        self.left.is_none()
    }

    /// Whether a message with sequence `seq` was sent while this membership
    /// lasted.
    pub fn covers(&self, seq: Seq) -> bool {
        self.joined < seq && self.left.is_none_or(|l| seq < l)
    }
}

/// One message sent to a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMessage {
    /// The sender's own id for the message.
    pub id: String,
    /// The room's XEP-0359 stanza-id.
    pub stanza_id: String,
    pub sender: String,
    pub sent_at: Millis,
    pub readable: bool,
    /// The message as reflected to occupants (without `to`), for history.
    pub stanza: Vec<u8>,
}

/// A room's subject (XEP-0045 §8.1), as a joiner is shown it: from
/// `room/nick`, with the time it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSubject {
    /// The subject; empty when someone cleared it.
    pub text: String,
    /// The nickname it was set under (the service's own for the config
    /// file's subject).
    pub nick: String,
    /// Who set it (bare JID); `None`: the config file.
    pub setter: Option<String>,
    pub at: Millis,
    /// The config file's `subject` for this room when it was last applied,
    /// so that a change in the file is applied once, and an occupant's
    /// later change stands until the file changes again.
    pub config: Option<String>,
}

/// One nickname in a room now: whose it is, the sessions in under it, and
/// the last presence it sent as the room shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccupantRecord {
    /// The occupant's bare JID.
    pub user: String,
    /// Full JIDs of the sessions in the room under this nickname.
    pub sessions: Vec<String>,
    /// The occupant's presence, from `room/nick`, serialized.
    pub presence: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedStanza {
    pub seq: Seq,
    pub conv: ConversationKey,
    pub stanza: Vec<u8>,
}

// --- issue 9: each sender's sent messages (the `status` command) ---

/// Where a sent message went.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentTo {
    /// A 1:1 message to this bare JID (through its tracked address).
    Contact(String),
    /// A message to this room (its bare JID).
    Room(String),
}

impl SentTo {
    /// The conversation the message is kept in, for `sender`.
    pub fn conversation(&self, sender: &str) -> ConversationKey {
        match self {
            SentTo::Contact(contact) => ConversationKey::direct(sender, contact),
            SentTo::Room(room) => ConversationKey::room(room),
        }
    }
}

/// One message a user sent, as [`Store::sent_by`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEntry {
    pub seq: Seq,
    pub sent_at: Millis,
    pub to: SentTo,
    /// The start of its text, when `status.preview_chars` kept some (1:1
    /// messages; a room's comes from the stanza kept for its history).
    pub preview: Option<String>,
}

/// What [`Store::sent_by`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentPage {
    /// Newest first.
    pub entries: Vec<SentEntry>,
    /// The backend stopped at its bound on work before it had looked at
    /// everything: there may be more on the far side than `entries` shows.
    pub cut: bool,
}

/// Which side of a position [`Store::sent_by`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentFrom {
    /// The newest messages below this sequence number (`Seq::MAX`: the
    /// newest of all).
    Before(Seq),
    /// The oldest messages above this sequence number (a previous page).
    After(Seq),
}

/// The first `chars` characters of `text` (cut on a character boundary),
/// `None` when `chars` is 0 or there is no text: 0 keeps nothing.
pub fn preview(text: &str, chars: usize) -> Option<String> {
    if chars == 0 {
        return None;
    }
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(chars) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    })
}

// --- end issue 9 ---
