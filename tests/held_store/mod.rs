//! A sled store whose flush the test can hold, so a test can see what the
//! connection does while a flush runs. Everything else goes to sled as is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tidemark::store::{
    ConversationKey, DeskConversation, DeskCounts, DeskEvent, DeskView, Expiry, ExpiryCursor,
    ExportError, ExportRecord, InboxEntry, Membership, MessageRecord, Millis, OccupantRecord,
    QueuedStanza, RoomMessage, RoomRecord, RoomSubject, SentFrom, SentPage, SentTo, Seq, SledStore,
    Store, StoreResult,
};

pub struct HeldStore {
    inner: SledStore,
    held: Mutex<bool>,
    turn: Condvar,
    /// Messages recorded: how far handling has got.
    pub messages: AtomicUsize,
    /// Flushes completed.
    pub flushes: AtomicUsize,
}

impl HeldStore {
    pub fn new() -> Self {
        HeldStore {
            inner: SledStore::temporary().unwrap(),
            held: Mutex::new(false),
            turn: Condvar::new(),
            messages: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
        }
    }

    /// Flushes from now on wait until [`HeldStore::release`].
    pub fn hold(&self) {
        *self.held.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.held.lock().unwrap() = false;
        self.turn.notify_all();
    }

    pub fn messages(&self) -> usize {
        self.messages.load(Ordering::SeqCst)
    }

    /// Waits (at most 5 s) until `n` messages are recorded.
    pub async fn wait_for_messages(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.messages() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} messages recorded within 5 s",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Store for HeldStore {
    fn inbox_message(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
        own: bool,
    ) -> StoreResult<()> {
        self.inner.inbox_message(user, contact, seq, at, own)
    }

    fn inbox_read(&self, user: &str, contact: &str, upto: Seq) -> StoreResult<()> {
        self.inner.inbox_read(user, contact, upto)
    }

    fn inbox_missed(&self, user: &str, contact: &str, seq: Seq, at: Millis) -> StoreResult<()> {
        self.inner.inbox_missed(user, contact, seq, at)
    }

    fn inbox_room_sent(&self, user: &str, room: &str, seq: Seq) -> StoreResult<()> {
        self.inner.inbox_room_sent(user, room, seq)
    }

    fn inbox_entry(&self, user: &str, contact: &str) -> StoreResult<Option<InboxEntry>> {
        self.inner.inbox_entry(user, contact)
    }

    fn inbox_latest(&self, user: &str, before: Seq, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        self.inner.inbox_latest(user, before, limit)
    }

    fn inbox_entries(&self, user: &str, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        self.inner.inbox_entries(user, limit)
    }

    fn inbox_unread_total(&self, user: &str) -> StoreResult<u64> {
        self.inner.inbox_unread_total(user)
    }

    fn inbox_room_sent_seq(&self, user: &str, room: &str) -> StoreResult<Seq> {
        self.inner.inbox_room_sent_seq(user, room)
    }

    fn member_rooms(&self, user: &str) -> StoreResult<Vec<String>> {
        self.inner.member_rooms(user)
    }

    fn room_messages_after(&self, room: &str, after: Seq) -> StoreResult<u64> {
        self.inner.room_messages_after(room, after)
    }

    fn put_desk_conversation(&self, desk: &str, conv: &DeskConversation) -> StoreResult<()> {
        self.inner.put_desk_conversation(desk, conv)
    }

    fn desk_conversation(
        &self,
        desk: &str,
        customer: &str,
    ) -> StoreResult<Option<DeskConversation>> {
        self.inner.desk_conversation(desk, customer)
    }

    fn desk_view(
        &self,
        desk: &str,
        view: &DeskView,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeskConversation>> {
        self.inner.desk_view(desk, view, after, limit)
    }

    fn desk_counts(&self, desk: &str, agent: &str) -> StoreResult<DeskCounts> {
        self.inner.desk_counts(desk, agent)
    }

    fn put_desk_event(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        event: &DeskEvent,
    ) -> StoreResult<()> {
        self.inner.put_desk_event(desk, customer, seq, event)
    }

    fn desk_events(
        &self,
        desk: &str,
        customer: &str,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, DeskEvent)>> {
        self.inner.desk_events(desk, customer, limit)
    }

    fn put_desk_author(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        agent: &str,
    ) -> StoreResult<()> {
        self.inner.put_desk_author(desk, customer, seq, agent)
    }

    fn desk_author(&self, desk: &str, customer: &str, seq: Seq) -> StoreResult<Option<String>> {
        self.inner.desk_author(desk, customer, seq)
    }

    fn desk_snoozed(&self) -> StoreResult<Vec<(String, String, Millis)>> {
        self.inner.desk_snoozed()
    }

    fn export_records(
        &self,
        each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        self.inner.export_records(each)
    }

    fn import_mark(&self, conv: &ConversationKey, reader: &str, seq: Seq) -> StoreResult<()> {
        self.inner.import_mark(conv, reader, seq)
    }

    fn import_mark_moved(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<()> {
        self.inner.import_mark_moved(conv, reader, seq, at)
    }

    fn import_inbox_entry(&self, user: &str, entry: InboxEntry, unread: &[Seq]) -> StoreResult<()> {
        self.inner.import_inbox_entry(user, entry, unread)
    }

    fn is_empty(&self) -> StoreResult<bool> {
        self.inner.is_empty()
    }

    fn continue_after(&self, seq: Seq) -> StoreResult<()> {
        self.inner.continue_after(seq)
    }

    fn flush(&self) -> StoreResult<()> {
        // Never for good: a failed test must end, not hang on this flush.
        let held = self.held.lock().unwrap();
        let (held, _) = self
            .turn
            .wait_timeout_while(held, Duration::from_secs(10), |h| *h)
            .unwrap();
        drop(held);
        self.inner.flush()?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn put_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
    ) -> StoreResult<()> {
        self.inner.put_message(conv, seq, record)?;
        self.messages.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn next_seq(&self) -> StoreResult<Seq> {
        self.inner.next_seq()
    }

    fn message(&self, conv: &ConversationKey, seq: Seq) -> StoreResult<Option<MessageRecord>> {
        self.inner.message(conv, seq)
    }

    fn find_message(
        &self,
        conv: &ConversationKey,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, MessageRecord)>> {
        self.inner.find_message(conv, sender, id)
    }

    fn mark(&self, conv: &ConversationKey, reader: &str) -> StoreResult<Seq> {
        self.inner.mark(conv, reader)
    }

    fn advance_mark(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<bool> {
        self.inner.advance_mark(conv, reader, seq, at)
    }

    fn read_at(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
    ) -> StoreResult<Option<Millis>> {
        self.inner.read_at(conv, reader, seq)
    }

    fn set_presence_allowed(&self, contact: &str, watcher: &str, allowed: bool) -> StoreResult<()> {
        self.inner.set_presence_allowed(contact, watcher, allowed)
    }

    fn presence_allowed(&self, contact: &str, watcher: &str) -> StoreResult<bool> {
        self.inner.presence_allowed(contact, watcher)
    }

    fn presence_grants(&self) -> StoreResult<Vec<(String, String)>> {
        self.inner.presence_grants()
    }

    fn has_watchers(&self, contact: &str) -> StoreResult<bool> {
        self.inner.has_watchers(contact)
    }

    fn put_refused_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
        keep: usize,
    ) -> StoreResult<()> {
        self.inner.put_refused_message(conv, seq, record, keep)
    }

    fn refusal_count(&self, sender: &str) -> StoreResult<usize> {
        self.inner.refusal_count(sender)
    }

    fn enqueue(
        &self,
        recipient: &str,
        seq: Seq,
        conv: &ConversationKey,
        stanza: &[u8],
    ) -> StoreResult<()> {
        self.inner.enqueue(recipient, seq, conv, stanza)
    }

    fn queued_count(&self, recipient: &str) -> StoreResult<usize> {
        self.inner.queued_count(recipient)
    }

    fn queued(&self, recipient: &str) -> StoreResult<Vec<QueuedStanza>> {
        self.inner.queued(recipient)
    }

    fn dequeue(&self, recipient: &str, seqs: &[Seq]) -> StoreResult<()> {
        self.inner.dequeue(recipient, seqs)
    }

    fn put_room(&self, room: &str, record: &RoomRecord) -> StoreResult<()> {
        self.inner.put_room(room, record)
    }

    fn room(&self, room: &str) -> StoreResult<Option<RoomRecord>> {
        self.inner.room(room)
    }

    fn rooms(&self) -> StoreResult<Vec<(String, RoomRecord)>> {
        self.inner.rooms()
    }

    fn set_membership(&self, room: &str, member: &str, m: &Membership) -> StoreResult<()> {
        self.inner.set_membership(room, member, m)
    }

    fn membership(&self, room: &str, member: &str) -> StoreResult<Option<Membership>> {
        self.inner.membership(room, member)
    }

    fn memberships(&self, room: &str) -> StoreResult<Vec<(String, Membership)>> {
        self.inner.memberships(room)
    }

    fn put_room_message(&self, room: &str, seq: Seq, message: &RoomMessage) -> StoreResult<()> {
        self.inner.put_room_message(room, seq, message)
    }

    fn room_message_by_stanza_id(
        &self,
        room: &str,
        stanza_id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>> {
        self.inner.room_message_by_stanza_id(room, stanza_id)
    }

    fn room_message_by_sender_id(
        &self,
        room: &str,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>> {
        self.inner.room_message_by_sender_id(room, sender, id)
    }

    fn room_messages_with_sender_id(
        &self,
        room: &str,
        id: &str,
        after: Seq,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        self.inner
            .room_messages_with_sender_id(room, id, after, limit)
    }

    fn add_room_creator(&self, creator: &str, room: &str) -> StoreResult<()> {
        self.inner.add_room_creator(creator, room)
    }

    fn rooms_created_by(&self, creator: &str) -> StoreResult<usize> {
        self.inner.rooms_created_by(creator)
    }

    fn room_messages_between(
        &self,
        room: &str,
        after: Seq,
        upto: Seq,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        self.inner.room_messages_between(room, after, upto)
    }

    fn room_history(&self, room: &str, limit: usize) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        self.inner.room_history(room, limit)
    }

    fn read_receipts_pref(&self, user: &str) -> StoreResult<Option<bool>> {
        self.inner.read_receipts_pref(user)
    }

    fn set_read_receipts_pref(&self, user: &str, enabled: bool) -> StoreResult<()> {
        self.inner.set_read_receipts_pref(user, enabled)
    }

    // Room occupancy (issue 9).
    fn set_occupant(
        &self,
        room: &str,
        nick: &str,
        occupant: Option<&OccupantRecord>,
    ) -> StoreResult<()> {
        self.inner.set_occupant(room, nick, occupant)
    }

    fn occupants(&self) -> StoreResult<Vec<(String, String, OccupantRecord)>> {
        self.inner.occupants()
    }

    fn set_room_subject(&self, room: &str, subject: &RoomSubject) -> StoreResult<()> {
        self.inner.set_room_subject(room, subject)
    }

    fn room_subject(&self, room: &str) -> StoreResult<Option<RoomSubject>> {
        self.inner.room_subject(room)
    }

    fn created_room(&self, creator: &str, room: &str) -> StoreResult<bool> {
        self.inner.created_room(creator, room)
    }

    fn put_preview(&self, conv: &ConversationKey, seq: Seq, text: &str) -> StoreResult<()> {
        self.inner.put_preview(conv, seq, text)
    }

    fn sent_by(
        &self,
        user: &str,
        from: SentFrom,
        limit: usize,
        filter: Option<&SentTo>,
    ) -> StoreResult<SentPage> {
        self.inner.sent_by(user, from, limit, filter)
    }

    fn expire(&self, cutoff: Millis, from: &ExpiryCursor, budget: usize) -> StoreResult<Expiry> {
        self.inner.expire(cutoff, from, budget)
    }
}
