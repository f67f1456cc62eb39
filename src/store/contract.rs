//! The contract every [`Store`] backend passes. Each test takes a fresh store
//! from the factory; a new backend adds one line to `backends!`.

use super::*;

fn record(sender: &str, recipient: &str, id: &str, at: Millis) -> MessageRecord {
    MessageRecord::sent(sender, recipient, id, at)
}

fn sequence_numbers_only_grow(store: &dyn Store) {
    let a = store.next_seq().unwrap();
    let b = store.next_seq().unwrap();
    assert!(a > 0, "0 is reserved for 'nothing read'");
    assert!(b > a);
}

fn messages_are_found_by_sender_and_id(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let seq = store.next_seq().unwrap();
    let rec = record("alice@x", "bob@x", "m1", 1000);
    store.put_message(&conv, seq, &rec).unwrap();
    assert_eq!(store.message(&conv, seq).unwrap(), Some(rec.clone()));
    assert_eq!(
        store.find_message(&conv, "alice@x", "m1").unwrap(),
        Some((seq, rec))
    );
    // The same id from the other side, or in another conversation, is not it.
    assert_eq!(store.find_message(&conv, "bob@x", "m1").unwrap(), None);
    let other = ConversationKey::direct("alice@x", "carol@x");
    assert_eq!(store.find_message(&other, "alice@x", "m1").unwrap(), None);
}

fn a_reused_id_finds_the_latest_message(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let first = store.next_seq().unwrap();
    store
        .put_message(&conv, first, &record("alice@x", "bob@x", "dup", 1))
        .unwrap();
    let second = store.next_seq().unwrap();
    store
        .put_message(&conv, second, &record("alice@x", "bob@x", "dup", 2))
        .unwrap();
    let (seq, rec) = store
        .find_message(&conv, "alice@x", "dup")
        .unwrap()
        .unwrap();
    assert_eq!((seq, rec.sent_at), (second, 2));
}

fn tidemarks_only_move_forward_and_remember_when(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), 0);
    assert!(store.advance_mark(&conv, "bob@x", 5, 100).unwrap());
    assert!(!store.advance_mark(&conv, "bob@x", 3, 200).unwrap());
    assert!(!store.advance_mark(&conv, "bob@x", 5, 300).unwrap());
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), 5);
    assert!(store.advance_mark(&conv, "bob@x", 9, 400).unwrap());
    // Read at the first move that passed the message.
    assert_eq!(store.read_at(&conv, "bob@x", 1).unwrap(), Some(100));
    assert_eq!(store.read_at(&conv, "bob@x", 5).unwrap(), Some(100));
    assert_eq!(store.read_at(&conv, "bob@x", 6).unwrap(), Some(400));
    assert_eq!(store.read_at(&conv, "bob@x", 10).unwrap(), None);
    // Another reader's log is not this reader's.
    assert_eq!(store.read_at(&conv, "alice@x", 1).unwrap(), None);
    assert_eq!(store.read_at(&conv, "bob@x.org", 1).unwrap(), None);
}

/// The mark is an atomic maximum: readers racing on one conversation (two
/// clients of one user, say) end at the highest, and every step up is
/// claimed by exactly one of them.
fn a_tidemark_is_an_atomic_maximum(store: &dyn Store) {
    const TOP: u64 = 2000;
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let claimed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (claimed, conv) = (&claimed, &conv);
            // All threads walk the same values in the same order, so they
            // race on each one.
            s.spawn(move || {
                for seq in 1..=TOP {
                    if store.advance_mark(conv, "bob@x", seq, seq).unwrap() {
                        claimed.lock().unwrap().push(seq);
                    }
                }
            });
        }
    });
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), TOP);
    let mut claimed = claimed.into_inner().unwrap();
    let all = claimed.len();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!(claimed.len(), all, "a move was claimed twice");
}

fn presence_grants_are_directional(store: &dyn Store) {
    store
        .set_presence_allowed("bob@x", "alice@x", true)
        .unwrap();
    assert!(store.presence_allowed("bob@x", "alice@x").unwrap());
    assert!(!store.presence_allowed("alice@x", "bob@x").unwrap());
    assert_eq!(
        store.presence_grants().unwrap(),
        vec![("bob@x".to_owned(), "alice@x".to_owned())]
    );
    store
        .set_presence_allowed("bob@x", "alice@x", false)
        .unwrap();
    assert!(!store.presence_allowed("bob@x", "alice@x").unwrap());
    assert!(store.presence_grants().unwrap().is_empty());
}

fn queues_come_back_in_order_once(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    store.enqueue("bob@x", 7, &conv, b"<second/>").unwrap();
    store.enqueue("bob@x", 3, &conv, b"<first/>").unwrap();
    store.enqueue("bob@x.org", 4, &conv, b"<other/>").unwrap();
    assert_eq!(store.queued_count("bob@x").unwrap(), 2);
    let got = store.take_queue("bob@x").unwrap();
    let stanzas: Vec<&[u8]> = got.iter().map(|q| q.stanza.as_slice()).collect();
    assert_eq!(stanzas, vec![&b"<first/>"[..], &b"<second/>"[..]]);
    assert_eq!(got[0].conv, conv);
    assert!(store.take_queue("bob@x").unwrap().is_empty());
    assert_eq!(store.queued_count("bob@x.org").unwrap(), 1);
}

fn room_message(sender: &str, id: &str, stanza_id: &str) -> RoomMessage {
    RoomMessage {
        id: id.into(),
        stanza_id: stanza_id.into(),
        sender: sender.into(),
        sent_at: 1,
        readable: true,
        stanza: b"<message/>".to_vec(),
    }
}

fn room_messages_are_found_by_stanza_id_or_sender_id(store: &dyn Store) {
    let room = "team@chat";
    store
        .put_room_message(room, 5, &room_message("alice@x", "a1", "s5"))
        .unwrap();
    store
        .put_room_message(room, 9, &room_message("bob@x", "b1", "s9"))
        .unwrap();
    store
        .put_room_message("other@chat", 7, &room_message("alice@x", "a2", "s7"))
        .unwrap();
    assert_eq!(
        store
            .room_message_by_stanza_id(room, "s5")
            .unwrap()
            .unwrap()
            .0,
        5
    );
    assert_eq!(
        store
            .room_message_by_sender_id(room, "bob@x", "b1")
            .unwrap()
            .unwrap()
            .0,
        9
    );
    assert!(
        store
            .room_message_by_stanza_id(room, "s7")
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .room_message_by_stanza_id(room, "b1")
            .unwrap()
            .is_none()
    );
    let between: Vec<Seq> = store
        .room_messages_between(room, 5, 9)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(between, vec![9]);
    let history: Vec<Seq> = store
        .room_history(room, 10)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(history, vec![5, 9]);
    let last: Vec<Seq> = store
        .room_history(room, 1)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(last, vec![9]);
}

fn one_members_id_is_not_anothers(store: &dyn Store) {
    let room = "team@chat";
    store
        .put_room_message(room, 5, &room_message("alice@x", "a1", "s5"))
        .unwrap();
    // bob reuses alice's id, later: alice's own message is still hers.
    store
        .put_room_message(room, 9, &room_message("bob@x", "a1", "s9"))
        .unwrap();
    let of = |sender: &str| {
        store
            .room_message_by_sender_id(room, sender, "a1")
            .unwrap()
            .map(|(seq, m)| (seq, m.sender))
    };
    assert_eq!(of("alice@x"), Some((5, "alice@x".to_owned())));
    assert_eq!(of("bob@x"), Some((9, "bob@x".to_owned())));
    assert_eq!(of("carol@x"), None);
    // Every use of the id, oldest first, above a sequence, at most `limit`.
    let uses = |after, limit| -> Vec<Seq> {
        store
            .room_messages_with_sender_id(room, "a1", after, limit)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    assert_eq!(uses(0, 10), vec![5, 9]);
    assert_eq!(uses(5, 10), vec![9]);
    assert_eq!(uses(0, 1), vec![5]);
    assert_eq!(uses(9, 10), Vec::<Seq>::new());
    assert!(
        store
            .room_messages_with_sender_id(room, "a", 0, 10)
            .unwrap()
            .is_empty(),
        "a prefix of an id is not the id"
    );
}

fn room_creators_are_counted_per_creator(store: &dyn Store) {
    assert_eq!(store.rooms_created_by("bob@x").unwrap(), 0);
    store.add_room_creator("bob@x", "a@chat").unwrap();
    store.add_room_creator("bob@x", "b@chat").unwrap();
    store.add_room_creator("bob@x", "b@chat").unwrap();
    store.add_room_creator("bob@x.org", "c@chat").unwrap();
    assert_eq!(store.rooms_created_by("bob@x").unwrap(), 2);
    assert_eq!(store.rooms_created_by("bob@x.org").unwrap(), 1);
}

/// Old and new statuses of every kind, sent at 100 and 1000 (the cutoff in
/// the retention tests is 500).
struct Aged {
    conv: ConversationKey,
    old: Seq,
    new: Seq,
}

fn aged_statuses(store: &dyn Store) -> Aged {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let old = store.next_seq().unwrap();
    store
        .put_message(&conv, old, &record("alice@x", "bob@x", "m-old", 100))
        .unwrap();
    store.advance_mark(&conv, "bob@x", old, 150).unwrap();
    let held_old = store.next_seq().unwrap();
    store
        .put_message(&conv, held_old, &record("alice@x", "carol@x", "q-old", 110))
        .unwrap();
    store
        .enqueue("carol@x", held_old, &conv, b"<old/>")
        .unwrap();
    let new = store.next_seq().unwrap();
    store
        .put_message(&conv, new, &record("alice@x", "bob@x", "m-new", 1000))
        .unwrap();
    store.advance_mark(&conv, "bob@x", new, 1100).unwrap();
    let held_new = store.next_seq().unwrap();
    store
        .put_message(
            &conv,
            held_new,
            &record("alice@x", "carol@x", "q-new", 1010),
        )
        .unwrap();
    store
        .enqueue("carol@x", held_new, &conv, b"<new/>")
        .unwrap();
    let room = "team@chat";
    let mut m = room_message("alice@x", "r-old", "s-old");
    m.sent_at = 100;
    store.put_room_message(room, old, &m).unwrap();
    let mut m = room_message("alice@x", "r-new", "s-new");
    m.sent_at = 1000;
    store.put_room_message(room, new, &m).unwrap();
    Aged { conv, old, new }
}

fn retention_removes_what_is_older_than_the_cutoff(store: &dyn Store) {
    let Aged { conv, old, new } = aged_statuses(store);
    let done = store.expire(500, &ExpiryCursor::default(), 10_000).unwrap();
    assert_eq!(done.next, None, "the whole store fits in the budget");
    // Old: the message, its held copy, the room message, the log entry.
    assert_eq!(done.removed, 5, "{done:?}");
    assert_eq!(store.message(&conv, old).unwrap(), None);
    assert_eq!(store.find_message(&conv, "alice@x", "m-old").unwrap(), None);
    assert!(
        store
            .room_message_by_stanza_id("team@chat", "s-old")
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .room_message_by_sender_id("team@chat", "alice@x", "r-old")
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .room_messages_with_sender_id("team@chat", "r-old", 0, 10)
            .unwrap()
            .is_empty()
    );
    let queued: Vec<Vec<u8>> = store
        .take_queue("carol@x")
        .unwrap()
        .into_iter()
        .map(|q| q.stanza)
        .collect();
    assert_eq!(queued, vec![b"<new/>".to_vec()]);
    // New: all there; the tidemark stays where it was.
    assert!(
        store
            .find_message(&conv, "alice@x", "m-new")
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .room_message_by_sender_id("team@chat", "alice@x", "r-new")
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.room_history("team@chat", 10).unwrap().len(),
        1,
        "the history lost the old message"
    );
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), new);
    assert_eq!(store.read_at(&conv, "bob@x", new).unwrap(), Some(1100));
    // Nothing is left to remove.
    let again = store.expire(500, &ExpiryCursor::default(), 10_000).unwrap();
    assert_eq!(again.removed, 0);
}

fn retention_goes_in_bounded_steps_from_a_cursor(store: &dyn Store) {
    aged_statuses(store);
    let mut cursor = ExpiryCursor::default();
    let (mut steps, mut removed) = (0, 0);
    loop {
        let done = store.expire(500, &cursor, 2).unwrap();
        assert!(done.examined <= 2, "{done:?}");
        assert!(done.removed <= done.examined, "{done:?}");
        removed += done.removed;
        steps += 1;
        assert!(steps < 100, "the pass never ends");
        match done.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(removed, 5);
    assert!(steps >= 5, "{steps} steps of 2 entries for 11 entries");
}

fn a_reused_id_keeps_the_newer_messages_index(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    store
        .put_message(&conv, 3, &record("alice@x", "bob@x", "dup", 100))
        .unwrap();
    store
        .put_message(&conv, 8, &record("alice@x", "bob@x", "dup", 1000))
        .unwrap();
    store.expire(500, &ExpiryCursor::default(), 100).unwrap();
    assert_eq!(
        store
            .find_message(&conv, "alice@x", "dup")
            .unwrap()
            .map(|(s, _)| s),
        Some(8)
    );
}

fn memberships_and_rooms_are_kept(store: &dyn Store) {
    let rec = RoomRecord {
        created_at: 3,
        fixed_members: true,
    };
    store.put_room("team@chat", &rec).unwrap();
    assert_eq!(store.room("team@chat").unwrap(), Some(rec.clone()));
    assert_eq!(store.rooms().unwrap(), vec![("team@chat".to_owned(), rec)]);
    let m = Membership {
        joined: 4,
        left: Some(8),
    };
    store.set_membership("team@chat", "bob@x", &m).unwrap();
    store.set_membership("team@chat.org", "eve@x", &m).unwrap();
    assert_eq!(
        store.memberships("team@chat").unwrap(),
        vec![("bob@x".to_owned(), m)]
    );
    assert_eq!(store.membership("team@chat", "bob@x").unwrap(), Some(m));
    assert_eq!(store.membership("team@chat", "eve@x").unwrap(), None);
    assert!(m.covers(5) && !m.covers(4) && !m.covers(8));
}

fn read_receipt_preferences_are_kept(store: &dyn Store) {
    assert_eq!(store.read_receipts_pref("bob@x").unwrap(), None);
    store.set_read_receipts_pref("bob@x", false).unwrap();
    assert_eq!(store.read_receipts_pref("bob@x").unwrap(), Some(false));
    store.set_read_receipts_pref("bob@x", true).unwrap();
    assert_eq!(store.read_receipts_pref("bob@x").unwrap(), Some(true));
}

fn refusals_keep_only_the_newest_per_sender(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let mut seqs = vec![];
    for i in 0..10 {
        let seq = store.next_seq().unwrap();
        let mut r = record("alice@x", "bob@x", &format!("r{i}"), i);
        r.failed = Some(super::Failure {
            at: i,
            condition: "service-unavailable".into(),
            text: "no".into(),
        });
        store.put_refused_message(&conv, seq, &r, 3).unwrap();
        seqs.push(seq);
    }
    assert_eq!(store.refusal_count("alice@x").unwrap(), 3);
    for (i, seq) in seqs.iter().enumerate().take(7) {
        assert!(
            store
                .find_message(&conv, "alice@x", &format!("r{i}"))
                .unwrap()
                .is_none(),
            "r{i}"
        );
        assert!(store.message(&conv, *seq).unwrap().is_none());
    }
    for i in 7..10 {
        assert!(
            store
                .find_message(&conv, "alice@x", &format!("r{i}"))
                .unwrap()
                .is_some(),
            "r{i}"
        );
    }
    // Another sender has a bound of their own.
    let seq = store.next_seq().unwrap();
    store
        .put_refused_message(&conv, seq, &record("bob@x", "alice@x", "b", 1), 3)
        .unwrap();
    assert_eq!(store.refusal_count("bob@x").unwrap(), 1);
    assert_eq!(store.refusal_count("alice@x").unwrap(), 3);
}

fn a_trimmed_refusal_leaves_a_later_message_with_its_id(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let old = store.next_seq().unwrap();
    store
        .put_refused_message(&conv, old, &record("alice@x", "bob@x", "same", 1), 1)
        .unwrap();
    // The id is sent again and goes through this time.
    let delivered = store.next_seq().unwrap();
    store
        .put_message(&conv, delivered, &record("alice@x", "bob@x", "same", 2))
        .unwrap();
    let next = store.next_seq().unwrap();
    store
        .put_refused_message(&conv, next, &record("alice@x", "bob@x", "other", 3), 1)
        .unwrap();
    let (seq, _) = store
        .find_message(&conv, "alice@x", "same")
        .unwrap()
        .unwrap();
    assert_eq!(seq, delivered);
    assert!(store.message(&conv, old).unwrap().is_none());
}

fn watchers_are_known_per_contact(store: &dyn Store) {
    assert!(!store.has_watchers("bob@x").unwrap());
    store
        .set_presence_allowed("bob@x.org", "alice@x", true)
        .unwrap();
    assert!(
        !store.has_watchers("bob@x").unwrap(),
        "a longer name is not bob@x"
    );
    store
        .set_presence_allowed("bob@x", "alice@x", true)
        .unwrap();
    assert!(store.has_watchers("bob@x").unwrap());
    assert!(
        !store.has_watchers("alice@x").unwrap(),
        "grants are directional"
    );
    store
        .set_presence_allowed("bob@x", "alice@x", false)
        .unwrap();
    assert!(!store.has_watchers("bob@x").unwrap());
}

macro_rules! backends {
    ($($backend:ident => $make:expr),* $(,)?) => {
        $(mod $backend {
            use super::*;
            fn store() -> Box<dyn Store> { Box::new($make) }
            #[test] fn sequence_numbers_only_grow() { super::sequence_numbers_only_grow(&*store()) }
            #[test] fn messages_are_found_by_sender_and_id() { super::messages_are_found_by_sender_and_id(&*store()) }
            #[test] fn a_reused_id_finds_the_latest_message() { super::a_reused_id_finds_the_latest_message(&*store()) }
            #[test] fn tidemarks_only_move_forward_and_remember_when() { super::tidemarks_only_move_forward_and_remember_when(&*store()) }
            #[test] fn a_tidemark_is_an_atomic_maximum() { super::a_tidemark_is_an_atomic_maximum(&*store()) }
            #[test] fn presence_grants_are_directional() { super::presence_grants_are_directional(&*store()) }
            #[test] fn queues_come_back_in_order_once() { super::queues_come_back_in_order_once(&*store()) }
            #[test] fn room_messages_are_found_by_stanza_id_or_sender_id() { super::room_messages_are_found_by_stanza_id_or_sender_id(&*store()) }
            #[test] fn one_members_id_is_not_anothers() { super::one_members_id_is_not_anothers(&*store()) }
            #[test] fn room_creators_are_counted_per_creator() { super::room_creators_are_counted_per_creator(&*store()) }
            #[test] fn retention_removes_what_is_older_than_the_cutoff() { super::retention_removes_what_is_older_than_the_cutoff(&*store()) }
            #[test] fn retention_goes_in_bounded_steps_from_a_cursor() { super::retention_goes_in_bounded_steps_from_a_cursor(&*store()) }
            #[test] fn a_reused_id_keeps_the_newer_messages_index() { super::a_reused_id_keeps_the_newer_messages_index(&*store()) }
            #[test] fn memberships_and_rooms_are_kept() { super::memberships_and_rooms_are_kept(&*store()) }
            #[test] fn read_receipt_preferences_are_kept() { super::read_receipt_preferences_are_kept(&*store()) }
            #[test] fn refusals_keep_only_the_newest_per_sender() { super::refusals_keep_only_the_newest_per_sender(&*store()) }
            #[test] fn a_trimmed_refusal_leaves_a_later_message_with_its_id() { super::a_trimmed_refusal_leaves_a_later_message_with_its_id(&*store()) }
            #[test] fn watchers_are_known_per_contact() { super::watchers_are_known_per_contact(&*store()) }
        })*
    };
}

backends! {
    sled => SledStore::temporary().unwrap(),
}

#[test]
fn sled_keeps_everything_flushed_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let seq;
    {
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        seq = store.next_seq().unwrap();
        store
            .put_message(&conv, seq, &record("alice@x", "bob@x", "m1", 10))
            .unwrap();
        store.advance_mark(&conv, "bob@x", seq, 20).unwrap();
        store
            .set_presence_allowed("bob@x", "alice@x", true)
            .unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    assert!(
        store
            .find_message(&conv, "alice@x", "m1")
            .unwrap()
            .is_some()
    );
    assert_eq!(store.read_at(&conv, "bob@x", seq).unwrap(), Some(20));
    assert!(store.presence_allowed("bob@x", "alice@x").unwrap());
    assert!(store.next_seq().unwrap() > seq);
}

#[test]
fn an_export_imports_into_an_empty_store_as_it_was() {
    let from = SledStore::temporary().unwrap();
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let seq = from.next_seq().unwrap();
    from.put_message(&conv, seq, &record("alice@x", "bob@x", "m1", 10))
        .unwrap();
    from.advance_mark(&conv, "bob@x", seq, 20).unwrap();
    from.set_presence_allowed("bob@x", "alice@x", true).unwrap();
    let mut dump = Vec::new();
    let exported = from.export(&mut dump).unwrap();
    assert!(exported >= 4, "{exported}");

    let to = SledStore::temporary().unwrap();
    assert_eq!(to.import(&dump[..]).unwrap(), exported);
    assert_eq!(
        to.find_message(&conv, "alice@x", "m1").unwrap(),
        from.find_message(&conv, "alice@x", "m1").unwrap()
    );
    assert_eq!(to.read_at(&conv, "bob@x", seq).unwrap(), Some(20));
    assert!(to.presence_allowed("bob@x", "alice@x").unwrap());
    assert!(
        to.next_seq().unwrap() > seq,
        "new messages come after imported ones"
    );
    // Never over existing data, and never from something that is not an export.
    assert!(matches!(to.import(&dump[..]), Err(ExportError::NotEmpty)));
    let fresh = SledStore::temporary().unwrap();
    assert!(matches!(
        fresh.import(&b"not an export\n"[..]),
        Err(ExportError::Format { line: 1, .. })
    ));
}

#[test]
fn a_store_held_by_another_process_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path(), 1 << 20).unwrap();
    // sled's lock is an flock on its directory's files: a second open, even
    // from this process, meets it as another tidemark would.
    match SledStore::open(dir.path(), 1 << 20) {
        Err(e @ StoreError::Locked { .. }) => {
            assert!(e.to_string().contains("in use by another tidemark"), "{e}")
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("the store opened twice"),
    }
}
