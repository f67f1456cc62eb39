//! The contract every [`Store`] backend passes, public so that a backend in
//! another module or crate runs it unchanged: each check takes a fresh,
//! empty store, and [`store_contract_tests!`](crate::store_contract_tests)
//! turns the list into one `#[test]` per check:
//!
//! ```ignore
//! tidemark::store_contract_tests!(MyStore::temporary().unwrap());
//! ```

use super::*;

fn record(sender: &str, recipient: &str, id: &str, at: Millis) -> MessageRecord {
    MessageRecord::sent(sender, recipient, id, at)
}

pub fn sequence_numbers_only_grow(store: &dyn Store) {
    let a = store.next_seq().unwrap();
    let b = store.next_seq().unwrap();
    assert!(a > 0, "0 is reserved for 'nothing read'");
    assert!(b > a);
}

pub fn messages_are_found_by_sender_and_id(store: &dyn Store) {
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

pub fn a_reused_id_finds_the_latest_message(store: &dyn Store) {
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

pub fn tidemarks_only_move_forward_and_remember_when(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let mut seqs = vec![];
    for i in 0..4 {
        let seq = store.next_seq().unwrap();
        let rec = record("alice@x", "bob@x", &format!("m{i}"), 10 + i);
        store.put_message(&conv, seq, &rec).unwrap();
        seqs.push(seq);
    }
    // Bob answers in between: his own message is never "read by him".
    let own = store.next_seq().unwrap();
    store
        .put_message(&conv, own, &record("bob@x", "alice@x", "b1", 20))
        .unwrap();
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), 0);
    assert!(store.advance_mark(&conv, "bob@x", seqs[1], 100).unwrap());
    assert!(!store.advance_mark(&conv, "bob@x", seqs[0], 200).unwrap());
    assert!(!store.advance_mark(&conv, "bob@x", seqs[1], 300).unwrap());
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), seqs[1]);
    assert!(store.advance_mark(&conv, "bob@x", seqs[3], 400).unwrap());
    // Read at the first move that passed the message.
    assert_eq!(store.read_at(&conv, "bob@x", seqs[0]).unwrap(), Some(100));
    assert_eq!(store.read_at(&conv, "bob@x", seqs[1]).unwrap(), Some(100));
    assert_eq!(store.read_at(&conv, "bob@x", seqs[2]).unwrap(), Some(400));
    assert_eq!(store.read_at(&conv, "bob@x", seqs[3]).unwrap(), Some(400));
    assert_eq!(store.read_at(&conv, "bob@x", own).unwrap(), None);
    // Another reader's tidemark is not this reader's.
    assert_eq!(store.mark(&conv, "alice@x").unwrap(), 0);
    assert_eq!(store.read_at(&conv, "alice@x", own).unwrap(), None);
    assert_eq!(store.read_at(&conv, "bob@x.org", seqs[0]).unwrap(), None);
    assert!(store.advance_mark(&conv, "alice@x", own, 500).unwrap());
    assert_eq!(store.read_at(&conv, "alice@x", own).unwrap(), Some(500));
    assert_eq!(store.read_at(&conv, "bob@x", seqs[0]).unwrap(), Some(100));
}

/// In a room, and for anyone else who keeps a tidemark (a reader who hides
/// their reads), the tidemark is a position in sequence numbers, message or
/// not.
pub fn room_tidemarks_remember_when_each_position_was_passed(store: &dyn Store) {
    for conv in [
        ConversationKey::room("team@chat"),
        ConversationKey::direct("alice@x", "bob@x"),
    ] {
        let reader = match conv {
            ConversationKey::Room(_) => "bob@x",
            ConversationKey::Direct { .. } => "<private>bob@x",
        };
        assert!(store.advance_mark(&conv, reader, 5, 100).unwrap());
        assert!(!store.advance_mark(&conv, reader, 3, 200).unwrap());
        assert!(store.advance_mark(&conv, reader, 9, 400).unwrap());
        assert_eq!(store.mark(&conv, reader).unwrap(), 9);
        assert_eq!(store.read_at(&conv, reader, 1).unwrap(), Some(100));
        assert_eq!(store.read_at(&conv, reader, 6).unwrap(), Some(400));
        assert_eq!(store.read_at(&conv, reader, 10).unwrap(), None);
        assert_eq!(store.read_at(&conv, "carol@x", 1).unwrap(), None);
    }
}

/// A message whose parties are not its conversation's is refused, and
/// nothing is stored.
pub fn a_message_outside_its_conversation_is_refused(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let seq = store.next_seq().unwrap();
    let err = store
        .put_message(&conv, seq, &record("alice@x", "carol@x", "m", 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err}");
    assert_eq!(store.message(&conv, seq).unwrap(), None);
    assert_eq!(store.find_message(&conv, "alice@x", "m").unwrap(), None);
    // A sequence number names one message: another conversation cannot
    // take it over.
    let kept = record("alice@x", "bob@x", "kept", 2);
    store.put_message(&conv, seq, &kept).unwrap();
    let other = ConversationKey::direct("alice@x", "carol@x");
    let err = store
        .put_message(&other, seq, &record("alice@x", "carol@x", "k2", 3))
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err}");
    assert_eq!(store.message(&conv, seq).unwrap(), Some(kept));
}

/// The mark is an atomic maximum: readers racing on one conversation (two
/// clients of one user, say) end at the highest, and every step up is
/// claimed by exactly one of them.
pub fn a_tidemark_is_an_atomic_maximum(store: &dyn Store) {
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

pub fn presence_grants_are_directional(store: &dyn Store) {
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

pub fn held_stanzas_stay_until_dequeued(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    store.enqueue("bob@x", 7, &conv, b"<second/>").unwrap();
    store.enqueue("bob@x", 3, &conv, b"<first/>").unwrap();
    store.enqueue("bob@x.org", 4, &conv, b"<other/>").unwrap();
    assert_eq!(store.queued_count("bob@x").unwrap(), 2);
    let got = store.queued("bob@x").unwrap();
    let stanzas: Vec<&[u8]> = got.iter().map(|q| q.stanza.as_slice()).collect();
    assert_eq!(stanzas, vec![&b"<first/>"[..], &b"<second/>"[..]]);
    assert_eq!(got[0].conv, conv);
    // Reading keeps them; only a dequeue of what went out removes it, and
    // a sequence that is not held changes nothing.
    assert_eq!(store.queued("bob@x").unwrap(), got);
    store.dequeue("bob@x", &[3, 99]).unwrap();
    let left: Vec<Seq> = store
        .queued("bob@x")
        .unwrap()
        .iter()
        .map(|q| q.seq)
        .collect();
    assert_eq!(left, vec![7]);
    store.dequeue("bob@x", &[7]).unwrap();
    assert!(store.queued("bob@x").unwrap().is_empty());
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

pub fn room_messages_are_found_by_stanza_id_or_sender_id(store: &dyn Store) {
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

pub fn one_members_id_is_not_anothers(store: &dyn Store) {
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

pub fn room_creators_are_counted_per_creator(store: &dyn Store) {
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
    let held = ConversationKey::direct("alice@x", "carol@x");
    let held_old = store.next_seq().unwrap();
    store
        .put_message(&held, held_old, &record("alice@x", "carol@x", "q-old", 110))
        .unwrap();
    store
        .enqueue("carol@x", held_old, &held, b"<old/>")
        .unwrap();
    let new = store.next_seq().unwrap();
    store
        .put_message(&conv, new, &record("alice@x", "bob@x", "m-new", 1000))
        .unwrap();
    store.advance_mark(&conv, "bob@x", new, 1100).unwrap();
    let held_new = store.next_seq().unwrap();
    store
        .put_message(
            &held,
            held_new,
            &record("alice@x", "carol@x", "q-new", 1010),
        )
        .unwrap();
    store
        .enqueue("carol@x", held_new, &held, b"<new/>")
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

pub fn retention_removes_what_is_older_than_the_cutoff(store: &dyn Store) {
    let Aged { conv, old, new } = aged_statuses(store);
    let done = store.expire(500, &ExpiryCursor::default(), 10_000).unwrap();
    assert_eq!(done.next, None, "the whole store fits in the budget");
    // Old: the message, the held one and its stanza, the room message.
    assert_eq!(done.removed, 4, "{done:?}");
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
        .queued("carol@x")
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
    // The room's count lost the old message too.
    assert_eq!(store.room_messages_after("team@chat", 0).unwrap(), 1);
    assert_eq!(store.room_messages_after("team@chat", old).unwrap(), 1);
    assert_eq!(store.room_messages_after("team@chat", new).unwrap(), 0);
    // Nothing is left to remove.
    let again = store.expire(500, &ExpiryCursor::default(), 10_000).unwrap();
    assert_eq!(again.removed, 0);
}

pub fn retention_goes_in_bounded_steps_from_a_cursor(store: &dyn Store) {
    aged_statuses(store);
    let mut cursor = ExpiryCursor::default();
    let (mut steps, mut removed) = (0, 0);
    loop {
        let done = store.expire(500, &cursor, 2).unwrap();
        // A backend may round the budget up to its unit of storage, at
        // most a page of 256 statuses in sled's status log.
        assert!(done.examined <= 2 + 255, "{done:?}");
        assert!(done.removed <= done.examined, "{done:?}");
        removed += done.removed;
        steps += 1;
        assert!(steps < 100, "the pass never ends");
        match done.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(removed, 4);
    assert!(steps >= 3, "{steps} steps of 2 entries");
}

pub fn a_reused_id_keeps_the_newer_messages_index(store: &dyn Store) {
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

pub fn memberships_and_rooms_are_kept(store: &dyn Store) {
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

pub fn read_receipt_preferences_are_kept(store: &dyn Store) {
    assert_eq!(store.read_receipts_pref("bob@x").unwrap(), None);
    store.set_read_receipts_pref("bob@x", false).unwrap();
    assert_eq!(store.read_receipts_pref("bob@x").unwrap(), Some(false));
    store.set_read_receipts_pref("bob@x", true).unwrap();
    assert_eq!(store.read_receipts_pref("bob@x").unwrap(), Some(true));
}

pub fn refusals_keep_only_the_newest_per_sender(store: &dyn Store) {
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

pub fn a_trimmed_refusal_leaves_a_later_message_with_its_id(store: &dyn Store) {
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

pub fn watchers_are_known_per_contact(store: &dyn Store) {
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

/// Every kind of [`Write`], applied as the shell applies the core's, does
/// what the logical operation of the same name does; a mark applied late
/// never moves back.
pub fn writes_applied_are_the_logical_operations(store: &dyn Store) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let room_conv = ConversationKey::room("team@chat");
    let mut sent = MessageRecord::sent("alice@x", "bob@x", "m1", 1_000);
    let mut refused = MessageRecord::sent("alice@x", "bob@x", "m0", 900);
    refused.failed = Some(Failure {
        at: 900,
        condition: "service-unavailable".into(),
        text: "no".into(),
    });
    let message = room_message("alice@x", "r1", "s1");
    store
        .apply(&[
            Write::RefusedMessage {
                conv: conv.clone(),
                seq: 4,
                record: refused.clone(),
                keep: 10,
            },
            Write::Message {
                conv: conv.clone(),
                seq: 5,
                record: sent.clone(),
            },
            Write::Mark {
                conv: conv.clone(),
                reader: "bob@x".into(),
                seq: 5,
                at: 2_000,
            },
            // Late and backwards: ignored.
            Write::Mark {
                conv: conv.clone(),
                reader: "bob@x".into(),
                seq: 3,
                at: 3_000,
            },
            Write::PresenceAllowed {
                contact: "bob@x".into(),
                watcher: "alice@x".into(),
                allowed: true,
            },
            Write::Enqueue {
                recipient: "bob@x".into(),
                seq: 6,
                conv: conv.clone(),
                stanza: b"<held/>".to_vec(),
            },
            Write::Enqueue {
                recipient: "bob@x".into(),
                seq: 7,
                conv: conv.clone(),
                stanza: b"<later/>".to_vec(),
            },
            Write::Dequeue {
                recipient: "bob@x".into(),
                seqs: vec![6],
            },
            Write::Room {
                room: "team@chat".into(),
                record: RoomRecord {
                    created_at: 1,
                    fixed_members: false,
                },
            },
            Write::RoomCreator {
                creator: "alice@x".into(),
                room: "team@chat".into(),
            },
            Write::Membership {
                room: "team@chat".into(),
                member: "bob@x".into(),
                membership: Membership {
                    joined: 2,
                    left: None,
                },
            },
            Write::RoomMessage {
                room: "team@chat".into(),
                seq: 8,
                message: message.clone(),
            },
            Write::Mark {
                conv: room_conv.clone(),
                reader: "bob@x".into(),
                seq: 8,
                at: 4_000,
            },
            Write::ReadReceiptsPref {
                user: "bob@x".into(),
                enabled: false,
            },
        ])
        .unwrap();
    assert_eq!(store.message(&conv, 4).unwrap(), Some(refused));
    assert_eq!(store.refusal_count("alice@x").unwrap(), 1);
    assert_eq!(store.message(&conv, 5).unwrap(), Some(sent.clone()));
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), 5);
    assert_eq!(store.read_at(&conv, "bob@x", 5).unwrap(), Some(2_000));
    assert!(store.presence_allowed("bob@x", "alice@x").unwrap());
    let held: Vec<Seq> = store
        .queued("bob@x")
        .unwrap()
        .iter()
        .map(|q| q.seq)
        .collect();
    assert_eq!(held, vec![7]);
    assert!(store.room("team@chat").unwrap().is_some());
    assert_eq!(store.rooms_created_by("alice@x").unwrap(), 1);
    assert_eq!(
        store.membership("team@chat", "bob@x").unwrap(),
        Some(Membership {
            joined: 2,
            left: None
        })
    );
    assert_eq!(
        store.room_message_by_stanza_id("team@chat", "s1").unwrap(),
        Some((8, message))
    );
    assert_eq!(store.mark(&room_conv, "bob@x").unwrap(), 8);
    assert_eq!(store.read_receipts_pref("bob@x").unwrap(), Some(false));

    // A later write of the same message replaces what is known of it.
    sent.delivered_at = Some(1_500);
    store
        .apply(&[Write::Message {
            conv: conv.clone(),
            seq: 5,
            record: sent.clone(),
        }])
        .unwrap();
    assert_eq!(store.message(&conv, 5).unwrap(), Some(sent));
}

// --- Room occupancy (issue 9).

/// Occupants are kept per (room, nick), replaced by a later write, removed
/// by `None`, listed for every room, in the export, and written through
/// [`Write::Occupant`] like the rest.
pub fn room_occupants_are_kept_replaced_and_removed(store: &dyn Store) {
    let alice = OccupantRecord {
        user: "alice@x".into(),
        sessions: vec!["alice@x/phone".into()],
        presence: "<presence from='team@chat/al'/>".into(),
    };
    let bob = OccupantRecord {
        user: "bob@x".into(),
        sessions: vec!["bob@x/pc".into()],
        presence: "<presence from='other@chat/bob'/>".into(),
    };
    assert!(store.occupants().unwrap().is_empty());
    store.set_occupant("team@chat", "al", Some(&alice)).unwrap();
    store
        .apply(&[Write::Occupant {
            room: "other@chat".into(),
            nick: "bob".into(),
            occupant: Some(bob.clone()),
        }])
        .unwrap();
    let mut both = alice.clone();
    both.sessions.push("alice@x/laptop".into());
    store.set_occupant("team@chat", "al", Some(&both)).unwrap();
    let mut all = store.occupants().unwrap();
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        all,
        vec![
            ("other@chat".into(), "bob".into(), bob.clone()),
            ("team@chat".into(), "al".into(), both.clone()),
        ]
    );
    store.flush().unwrap();
    let mut exported = Vec::new();
    store
        .export_records(&mut |r| {
            if let export::ExportRecord::Occupant { .. } = r {
                exported.push(r);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(exported.len(), 2, "{exported:?}");
    assert!(exported.contains(&export::ExportRecord::occupant(
        "team@chat".into(),
        "al".into(),
        both
    )));
    store
        .apply(&[Write::Occupant {
            room: "team@chat".into(),
            nick: "al".into(),
            occupant: None,
        }])
        .unwrap();
    assert_eq!(
        store.occupants().unwrap(),
        vec![("other@chat".into(), "bob".into(), bob)]
    );
}

// --- end of room occupancy

/// A room's subject is kept per room, replaced by a later write (through
/// [`Write::RoomSubject`] like the rest), in the export; room creators are
/// known per (creator, room).
pub fn room_subjects_are_kept_and_replaced(store: &dyn Store) {
    assert_eq!(store.room_subject("team@chat").unwrap(), None);
    let first = RoomSubject {
        text: "Welcome".into(),
        nick: "tidemark".into(),
        setter: None,
        at: 5,
        config: Some("Welcome".into()),
    };
    store.set_room_subject("team@chat", &first).unwrap();
    let second = RoomSubject {
        text: "Release on Friday".into(),
        nick: "al".into(),
        setter: Some("alice@x".into()),
        at: 9,
        config: Some("Welcome".into()),
    };
    store
        .apply(&[Write::RoomSubject {
            room: "team@chat".into(),
            subject: second.clone(),
        }])
        .unwrap();
    assert_eq!(
        store.room_subject("team@chat").unwrap(),
        Some(second.clone())
    );
    assert_eq!(store.room_subject("other@chat").unwrap(), None);
    store.flush().unwrap();
    let mut exported = Vec::new();
    store
        .export_records(&mut |r| {
            if let export::ExportRecord::RoomSubject { .. } = r {
                exported.push(r);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        exported,
        vec![export::ExportRecord::room_subject(
            "team@chat".into(),
            second
        )]
    );
    store.add_room_creator("alice@x", "team@chat").unwrap();
    assert!(store.created_room("alice@x", "team@chat").unwrap());
    assert!(!store.created_room("alice@x", "other@chat").unwrap());
    assert!(!store.created_room("bob@x", "team@chat").unwrap());
}

// --- issue 9: a user's sent messages ---

/// A user's sent messages, derived from what is stored: 1:1 (refused ones
/// too) and room messages, newest first across conversations, paged both
/// ways, filtered by contact or room, only the user's own, with 1:1
/// previews; retention takes messages and their previews.
pub fn sent_messages_are_listed_per_sender(store: &dyn Store) {
    let bob = SentTo::Contact("bob@x".into());
    let carol = SentTo::Contact("carol@x".into());
    let room = SentTo::Room("team@chat.x".into());
    let r = "team@chat.x";
    let joined = store.next_seq().unwrap();
    store
        .set_membership(r, "alice@x", &Membership { joined, left: None })
        .unwrap();
    let mut mine: Vec<(Seq, SentTo)> = vec![];
    for i in 0..200u64 {
        let seq = store.next_seq().unwrap();
        let at = 1000 + i;
        match i % 5 {
            // alice to bob, with a preview of its text
            0 | 1 => {
                let conv = ConversationKey::direct("alice@x", "bob@x");
                let rec = record("alice@x", "bob@x", &format!("a{i}"), at);
                store.put_message(&conv, seq, &rec).unwrap();
                store.put_preview(&conv, seq, &format!("text {i}")).unwrap();
                mine.push((seq, bob.clone()));
            }
            // bob to alice: not hers
            2 => {
                let conv = ConversationKey::direct("alice@x", "bob@x");
                let rec = record("bob@x", "alice@x", &format!("b{i}"), at);
                store.put_message(&conv, seq, &rec).unwrap();
            }
            // alice in the room, and someone else in it
            3 => {
                let sender = if i % 10 == 3 { "alice@x" } else { "dave@x" };
                let m = RoomMessage {
                    id: format!("g{i}"),
                    stanza_id: seq.to_string(),
                    sender: sender.into(),
                    sent_at: at,
                    readable: true,
                    stanza: b"<message/>".to_vec(),
                };
                store.put_room_message(r, seq, &m).unwrap();
                if sender == "alice@x" {
                    mine.push((seq, room.clone()));
                }
            }
            // alice to carol, refused every tenth time
            _ => {
                let conv = ConversationKey::direct("alice@x", "carol@x");
                let mut rec = record("alice@x", "carol@x", &format!("c{i}"), at);
                if i % 10 == 4 {
                    rec.failed = Some(Failure {
                        at,
                        condition: "recipient-unavailable".into(),
                        text: "offline".into(),
                    });
                    store.put_refused_message(&conv, seq, &rec, 1000).unwrap();
                } else {
                    store.put_message(&conv, seq, &rec).unwrap();
                }
                mine.push((seq, carol.clone()));
            }
        }
        // Half of it flushed: the listing reads stored and staged writes.
        if i == 100 {
            store.flush().unwrap();
        }
    }
    mine.reverse();
    let seqs = |p: &SentPage| p.entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let want = |skip: usize, n: usize| {
        mine.iter()
            .skip(skip)
            .take(n)
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
    };
    let first = store
        .sent_by("alice@x", SentFrom::Before(Seq::MAX), 20, None)
        .unwrap();
    assert_eq!(seqs(&first), want(0, 20));
    assert!(!first.cut);
    for (e, (_, to)) in first.entries.iter().zip(&mine) {
        assert_eq!(&e.to, to);
    }
    let older = store
        .sent_by("alice@x", SentFrom::Before(want(0, 20)[19]), 20, None)
        .unwrap();
    assert_eq!(seqs(&older), want(20, 20));
    // After: the oldest above a position, newest first (a previous page).
    let back = store
        .sent_by("alice@x", SentFrom::After(want(20, 1)[0]), 20, None)
        .unwrap();
    assert_eq!(seqs(&back), want(0, 20));
    // Everything: the refused ones too, each message once.
    let all = store
        .sent_by("alice@x", SentFrom::Before(Seq::MAX), usize::MAX, None)
        .unwrap();
    assert_eq!(seqs(&all), want(0, mine.len()));
    // Previews of 1:1 messages, and only where one was kept.
    for e in &all.entries {
        match &e.to {
            SentTo::Contact(c) if c == "bob@x" => {
                let i = e.sent_at - 1000;
                assert_eq!(e.preview.as_deref(), Some(format!("text {i}").as_str()));
            }
            _ => assert_eq!(e.preview, None),
        }
    }
    // Filters: one conversation or one room.
    for f in [&bob, &carol, &room] {
        let only = store
            .sent_by("alice@x", SentFrom::Before(Seq::MAX), usize::MAX, Some(f))
            .unwrap();
        let expected: Vec<Seq> = mine
            .iter()
            .filter(|(_, t)| t == f)
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(seqs(&only), expected, "{f:?}");
    }
    // Another user's list is theirs alone: bob sent 40 to alice, dave 20
    // to the room he is no member of, eve nothing.
    let bobs = store
        .sent_by("bob@x", SentFrom::Before(Seq::MAX), usize::MAX, None)
        .unwrap();
    assert_eq!(bobs.entries.len(), 40);
    assert!(
        bobs.entries
            .iter()
            .all(|e| e.to == SentTo::Contact("alice@x".into()))
    );
    let daves = store
        .sent_by(
            "dave@x",
            SentFrom::Before(Seq::MAX),
            usize::MAX,
            Some(&room),
        )
        .unwrap();
    assert_eq!(daves.entries.len(), 20);
    assert!(
        store
            .sent_by("eve@x", SentFrom::Before(Seq::MAX), 20, None)
            .unwrap()
            .entries
            .is_empty()
    );
    // Retention takes messages sent before the cutoff, and their previews.
    store.flush().unwrap();
    let mut cursor = ExpiryCursor::default();
    loop {
        let step = store.expire(1100, &cursor, 10_000).unwrap();
        match step.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let left = store
        .sent_by("alice@x", SentFrom::Before(Seq::MAX), usize::MAX, None)
        .unwrap();
    let kept: Vec<Seq> = all
        .entries
        .iter()
        .filter(|e| e.sent_at >= 1100)
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs(&left), kept);
    store.flush().unwrap();
    let mut exported = Vec::new();
    store
        .export_records(&mut |r| {
            exported.push(r);
            Ok(())
        })
        .unwrap();
    let previews = exported
        .iter()
        .filter(|r| {
            matches!(
                r,
                ExportRecord::Message {
                    preview: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        previews,
        left.entries.iter().filter(|e| e.preview.is_some()).count()
    );
}

// --- end issue 9 ---

/// A contract check over a fresh store.
pub type Check = fn(&dyn Store);

// --- issue 10: the conversation list ---

/// Partial reads leave exactly the rest unread; the user's own message
/// clears what came before it; the totals follow.
pub fn inbox_unread_counts_are_exact(store: &dyn Store) {
    let (a, b) = ("alice@x", "bob@x");
    for seq in 1..=5 {
        store.inbox_message(a, b, seq, 100 + seq, false).unwrap();
        store.inbox_message(b, a, seq, 100 + seq, true).unwrap();
    }
    let e = store.inbox_entry(a, b).unwrap().unwrap();
    assert_eq!(
        (e.contact.as_str(), e.unread, e.latest, e.latest_at),
        (b, 5, 5, 105)
    );
    assert!(e.latest_by_contact);
    assert_eq!(store.inbox_unread_total(a).unwrap(), 5);
    // Reading message 3 of 5 leaves 2.
    store.inbox_read(a, b, 3).unwrap();
    assert_eq!(store.inbox_entry(a, b).unwrap().unwrap().unread, 2);
    assert_eq!(store.inbox_unread_total(a).unwrap(), 2);
    // Reading backwards changes nothing.
    store.inbox_read(a, b, 1).unwrap();
    assert_eq!(store.inbox_entry(a, b).unwrap().unwrap().unread, 2);
    // The same message twice is counted once.
    store.inbox_message(a, b, 5, 105, false).unwrap();
    assert_eq!(store.inbox_unread_total(a).unwrap(), 2);
    // Bob's side: his own messages are never unread for him.
    let eb = store.inbox_entry(b, a).unwrap().unwrap();
    assert_eq!((eb.unread, eb.own_latest), (0, 5));
    assert!(!eb.latest_by_contact);
    assert_eq!(store.inbox_unread_total(b).unwrap(), 0);
    // Alice answers: what came before her answer is read.
    store.inbox_message(a, b, 6, 106, true).unwrap();
    let e = store.inbox_entry(a, b).unwrap().unwrap();
    assert_eq!((e.unread, e.own_latest, e.latest), (0, 6, 6));
    assert_eq!(store.inbox_unread_total(a).unwrap(), 0);
    // A read without an entry makes none.
    store.inbox_read(a, "carol@x", 10).unwrap();
    assert_eq!(store.inbox_entry(a, "carol@x").unwrap(), None);
}

/// Long unread runs are exact too, wherever the read lands.
pub fn inbox_long_unread_runs_stay_exact(store: &dyn Store) {
    let (a, b) = ("alice@x", "bob@x");
    for seq in 1..=100 {
        store.inbox_message(a, b, seq, seq, false).unwrap();
    }
    let unread = |store: &dyn Store| store.inbox_entry(a, b).unwrap().unwrap().unread;
    assert_eq!(unread(store), 100);
    store.inbox_read(a, b, 10).unwrap();
    assert_eq!(unread(store), 90);
    store.inbox_read(a, b, 80).unwrap();
    assert_eq!(unread(store), 20);
    assert_eq!(store.inbox_unread_total(a).unwrap(), 20);
    store.inbox_message(a, b, 101, 101, true).unwrap();
    assert_eq!(unread(store), 0);
    assert_eq!(store.inbox_unread_total(a).unwrap(), 0);
    for seq in 102..=150 {
        store.inbox_message(a, b, seq, seq, false).unwrap();
    }
    assert_eq!(unread(store), 49);
}

/// Many conversations (more than a backend may keep close at hand): the
/// order, the counts and the pages stay right as they change.
pub fn inbox_many_conversations_keep_order_and_counts(store: &dyn Store) {
    let u = "u@x";
    let contact = |i: u64| format!("c{i:02}@x");
    let mut seq = 0;
    for _ in 0..2 {
        for i in 0..30 {
            seq += 1;
            store
                .inbox_message(u, &contact(i), seq, seq, false)
                .unwrap();
        }
    }
    let order = |before: Seq, limit: usize| -> Vec<String> {
        store
            .inbox_latest(u, before, limit)
            .unwrap()
            .into_iter()
            .map(|e| e.contact)
            .collect()
    };
    let newest_first: Vec<String> = (0..30).rev().map(contact).collect();
    assert_eq!(order(Seq::MAX, 100), newest_first);
    assert_eq!(store.inbox_unread_total(u).unwrap(), 60);
    // Pages of 7 add up to the list.
    let mut paged = vec![];
    let mut before = Seq::MAX;
    loop {
        let page = store.inbox_latest(u, before, 7).unwrap();
        let Some(last) = page.last() else { break };
        before = last.latest;
        paged.extend(page.into_iter().map(|e| e.contact));
    }
    assert_eq!(paged, newest_first);
    // The oldest conversation: read halfway, then it writes again.
    let first = contact(0);
    assert_eq!(store.inbox_entry(u, &first).unwrap().unwrap().unread, 2);
    store.inbox_read(u, &first, 1).unwrap();
    assert_eq!(store.inbox_entry(u, &first).unwrap().unwrap().unread, 1);
    assert_eq!(store.inbox_unread_total(u).unwrap(), 59);
    seq += 1;
    store.inbox_message(u, &first, seq, seq, false).unwrap();
    assert_eq!(order(Seq::MAX, 2), [first.clone(), contact(29)]);
    assert_eq!(store.inbox_entry(u, &first).unwrap().unwrap().unread, 2);
    assert_eq!(store.inbox_unread_total(u).unwrap(), 60);
    assert_eq!(store.inbox_entries(u, 1000).unwrap().len(), 30);
    // The user answers an old one: its count and the total clear.
    seq += 1;
    store.inbox_message(u, &contact(5), seq, seq, true).unwrap();
    assert_eq!(
        store.inbox_entry(u, &contact(5)).unwrap().unwrap().unread,
        0
    );
    assert_eq!(store.inbox_unread_total(u).unwrap(), 58);
    assert_eq!(order(Seq::MAX, 1), [contact(5)]);
}

/// The list comes newest first, a page at a time, and each user sees only
/// their own entries.
pub fn inbox_lists_latest_first_per_user(store: &dyn Store) {
    let u = "u@x";
    for (i, c) in ["c1@x", "c2@x", "c3@x"].iter().enumerate() {
        let seq = 10 * (i as u64 + 1);
        store.inbox_message(u, c, seq, seq, false).unwrap();
    }
    // c1 writes again: it moves to the top.
    store.inbox_message(u, "c1@x", 40, 40, false).unwrap();
    store
        .inbox_message("other@x", "c9@x", 50, 50, false)
        .unwrap();
    let order = |before, limit| -> Vec<String> {
        store
            .inbox_latest(u, before, limit)
            .unwrap()
            .into_iter()
            .map(|e| e.contact)
            .collect()
    };
    assert_eq!(order(Seq::MAX, 10), ["c1@x", "c3@x", "c2@x"]);
    assert_eq!(order(Seq::MAX, 2), ["c1@x", "c3@x"]);
    assert_eq!(order(30, 10), ["c2@x"]);
    let mut all: Vec<String> = store
        .inbox_entries(u, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.contact)
        .collect();
    all.sort();
    assert_eq!(all, ["c1@x", "c2@x", "c3@x"]);
    assert_eq!(store.inbox_unread_total(u).unwrap(), 4);
}

/// Missed attempts count until the user opens the conversation.
pub fn inbox_missed_attempts_clear_on_read(store: &dyn Store) {
    let (u, c) = ("u@x", "c@x");
    store.inbox_missed(u, c, 7, 1_000).unwrap();
    store.inbox_missed(u, c, 9, 2_000).unwrap();
    store.inbox_missed(u, c, 9, 2_000).unwrap();
    let e = store.inbox_entry(u, c).unwrap().unwrap();
    assert_eq!(
        e.missed,
        Some(Missed {
            count: 2,
            first_at: 1_000,
            last_at: 2_000
        })
    );
    assert_eq!((e.unread, e.latest), (0, 9));
    assert!(e.wants_attention());
    store.inbox_read(u, c, 9).unwrap();
    let e = store.inbox_entry(u, c).unwrap().unwrap();
    assert_eq!(e.missed, None);
    assert!(!e.wants_attention());
}

/// Room messages are counted, so unread counts in rooms cost O(log n).
pub fn rooms_count_their_messages(store: &dyn Store) {
    let room = "team@chat.x";
    assert_eq!(store.room_messages_after(room, 0).unwrap(), 0);
    for seq in [3, 5, 8, 13] {
        store
            .put_room_message(
                room,
                seq,
                &room_message("a@x", &format!("m{seq}"), &format!("s{seq}")),
            )
            .unwrap();
    }
    assert_eq!(store.room_messages_after(room, 0).unwrap(), 4);
    assert_eq!(store.room_messages_after(room, 5).unwrap(), 2);
    assert_eq!(store.room_messages_after(room, 6).unwrap(), 2);
    assert_eq!(store.room_messages_after(room, 13).unwrap(), 0);
    assert_eq!(store.room_messages_after("other@chat.x", 0).unwrap(), 0);
    store.inbox_room_sent("a@x", room, 8).unwrap();
    assert_eq!(store.inbox_room_sent_seq("a@x", room).unwrap(), 8);
    assert_eq!(store.inbox_room_sent_seq("b@x", room).unwrap(), 0);
}

/// Retention: an entry with nothing newer than the cutoff goes, with its
/// unread count; a recent one stays.
pub fn inbox_entries_expire_with_their_conversation(store: &dyn Store) {
    let u = "u@x";
    store.inbox_message(u, "old@x", 1, 1_000, false).unwrap();
    store.inbox_message(u, "new@x", 2, 9_000, false).unwrap();
    let mut cursor = ExpiryCursor::default();
    loop {
        let step = store.expire(5_000, &cursor, 100).unwrap();
        match step.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(store.inbox_entry(u, "old@x").unwrap(), None);
    assert!(store.inbox_entry(u, "new@x").unwrap().is_some());
    assert_eq!(store.inbox_unread_total(u).unwrap(), 1);
    let listed: Vec<String> = store
        .inbox_latest(u, Seq::MAX, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.contact)
        .collect();
    assert_eq!(listed, ["new@x"]);
}

// --- end issue 10 ---

/// Every check, by name.
pub const ALL: &[(&str, Check)] = &[
    (
        "sent_messages_are_listed_per_sender",
        sent_messages_are_listed_per_sender,
    ),
    ("sequence_numbers_only_grow", sequence_numbers_only_grow),
    (
        "messages_are_found_by_sender_and_id",
        messages_are_found_by_sender_and_id,
    ),
    (
        "a_reused_id_finds_the_latest_message",
        a_reused_id_finds_the_latest_message,
    ),
    (
        "tidemarks_only_move_forward_and_remember_when",
        tidemarks_only_move_forward_and_remember_when,
    ),
    (
        "room_tidemarks_remember_when_each_position_was_passed",
        room_tidemarks_remember_when_each_position_was_passed,
    ),
    (
        "a_message_outside_its_conversation_is_refused",
        a_message_outside_its_conversation_is_refused,
    ),
    (
        "a_tidemark_is_an_atomic_maximum",
        a_tidemark_is_an_atomic_maximum,
    ),
    (
        "presence_grants_are_directional",
        presence_grants_are_directional,
    ),
    (
        "held_stanzas_stay_until_dequeued",
        held_stanzas_stay_until_dequeued,
    ),
    (
        "room_messages_are_found_by_stanza_id_or_sender_id",
        room_messages_are_found_by_stanza_id_or_sender_id,
    ),
    (
        "one_members_id_is_not_anothers",
        one_members_id_is_not_anothers,
    ),
    (
        "room_creators_are_counted_per_creator",
        room_creators_are_counted_per_creator,
    ),
    (
        "retention_removes_what_is_older_than_the_cutoff",
        retention_removes_what_is_older_than_the_cutoff,
    ),
    (
        "retention_goes_in_bounded_steps_from_a_cursor",
        retention_goes_in_bounded_steps_from_a_cursor,
    ),
    (
        "a_reused_id_keeps_the_newer_messages_index",
        a_reused_id_keeps_the_newer_messages_index,
    ),
    (
        "memberships_and_rooms_are_kept",
        memberships_and_rooms_are_kept,
    ),
    (
        "read_receipt_preferences_are_kept",
        read_receipt_preferences_are_kept,
    ),
    (
        "refusals_keep_only_the_newest_per_sender",
        refusals_keep_only_the_newest_per_sender,
    ),
    (
        "a_trimmed_refusal_leaves_a_later_message_with_its_id",
        a_trimmed_refusal_leaves_a_later_message_with_its_id,
    ),
    (
        "watchers_are_known_per_contact",
        watchers_are_known_per_contact,
    ),
    (
        "writes_applied_are_the_logical_operations",
        writes_applied_are_the_logical_operations,
    ),
    // Room occupancy (issue 9).
    (
        "room_occupants_are_kept_replaced_and_removed",
        room_occupants_are_kept_replaced_and_removed,
    ),
    // Issue 10.
    (
        "inbox_unread_counts_are_exact",
        inbox_unread_counts_are_exact,
    ),
    (
        "inbox_lists_latest_first_per_user",
        inbox_lists_latest_first_per_user,
    ),
    (
        "inbox_missed_attempts_clear_on_read",
        inbox_missed_attempts_clear_on_read,
    ),
    ("rooms_count_their_messages", rooms_count_their_messages),
    (
        "inbox_entries_expire_with_their_conversation",
        inbox_entries_expire_with_their_conversation,
    ),
    (
        "room_subjects_are_kept_and_replaced",
        room_subjects_are_kept_and_replaced,
    ),
];

// --- issue 11: team desks ---

fn desk_conv(customer: &str, latest: Seq) -> DeskConversation {
    DeskConversation {
        customer: customer.to_owned(),
        latest,
        latest_at: latest * 10,
        customer_latest: latest,
        opened_at: latest * 10,
        ..DeskConversation::default()
    }
}

fn customers(found: Vec<DeskConversation>) -> Vec<String> {
    found.into_iter().map(|c| c.customer).collect()
}

/// Every view holds what its rule says, latest first, and its counts
/// follow each change of a conversation (state, assignee, unread, latest),
/// per agent for `mine`, without anything else being written.
pub fn desk_views_and_counts_follow_each_change(store: &dyn Store) {
    let desk = "support";
    store
        .put_desk_conversation(desk, &desk_conv("dan@x", 10))
        .unwrap();
    store
        .put_desk_conversation(desk, &desk_conv("erin@x", 20))
        .unwrap();
    let all = |s: &dyn Store| customers(s.desk_view(desk, &DeskView::All, None, 10).unwrap());
    assert_eq!(all(store), vec!["erin@x", "dan@x"], "latest first");
    let c = store.desk_counts(desk, "alice@x").unwrap();
    assert_eq!((c.all.conversations, c.all.unread), (2, 2));
    assert_eq!((c.unassigned.conversations, c.unassigned.unread), (2, 2));
    assert_eq!(c.mine, ViewCount::default());

    let mut dan = store.desk_conversation(desk, "dan@x").unwrap().unwrap();
    dan.assignee = Some("alice@x".into());
    dan.read_upto = 10;
    dan.latest = 30;
    store.put_desk_conversation(desk, &dan).unwrap();
    assert_eq!(
        all(store),
        vec!["dan@x", "erin@x"],
        "dan's answer moved him up"
    );
    let c = store.desk_counts(desk, "alice@x").unwrap();
    assert_eq!((c.mine.conversations, c.mine.unread), (1, 0));
    assert_eq!((c.unassigned.conversations, c.unassigned.unread), (1, 1));
    assert_eq!((c.all.conversations, c.all.unread), (2, 1));
    assert_eq!(
        store.desk_counts(desk, "bob@x").unwrap().mine,
        ViewCount::default()
    );
    assert_eq!(
        customers(
            store
                .desk_view(desk, &DeskView::Mine("alice@x".into()), None, 10)
                .unwrap()
        ),
        vec!["dan@x"]
    );

    dan.state = DeskState::Done;
    store.put_desk_conversation(desk, &dan).unwrap();
    let c = store.desk_counts(desk, "alice@x").unwrap();
    assert_eq!(
        (
            c.mine.conversations,
            c.done.conversations,
            c.all.conversations
        ),
        (0, 1, 1)
    );
    assert_eq!(
        customers(store.desk_view(desk, &DeskView::Done, None, 10).unwrap()),
        vec!["dan@x"]
    );
    assert_eq!(all(store), vec!["erin@x"]);
    // Another desk is another count.
    assert_eq!(
        store.desk_counts("sales", "alice@x").unwrap(),
        DeskCounts::default()
    );
    // Paging: after a conversation, the ones below it.
    store
        .put_desk_conversation(desk, &desk_conv("fay@x", 40))
        .unwrap();
    assert_eq!(
        customers(
            store
                .desk_view(desk, &DeskView::All, Some("fay@x"), 10)
                .unwrap()
        ),
        vec!["erin@x"]
    );
    assert_eq!(
        customers(store.desk_view(desk, &DeskView::All, None, 1).unwrap()),
        vec!["fay@x"]
    );
}

/// The counts follow the moves the first check does not make: a
/// conversation handed from one agent to another, snoozed (still in its
/// views), read without any other change, reopened from done, and a
/// customer writing again; several desks and agents side by side.
pub fn desk_counts_follow_handovers_snoozes_and_reopening(store: &dyn Store) {
    let desk = "support";
    let count = |s: &dyn Store, agent: &str| s.desk_counts(desk, agent).unwrap();
    let pair = |v: ViewCount| (v.conversations, v.unread);
    let mut dan = desk_conv("dan@x", 10);
    dan.assignee = Some("alice@x".into());
    store.put_desk_conversation(desk, &dan).unwrap();
    let mut erin = desk_conv("erin@x", 20);
    erin.assignee = Some("alice@x".into());
    store.put_desk_conversation(desk, &erin).unwrap();
    store
        .put_desk_conversation("sales", &desk_conv("dan@x", 30))
        .unwrap();
    assert_eq!(pair(count(store, "alice@x").mine), (2, 2));
    assert_eq!(pair(count(store, "alice@x").unassigned), (0, 0));

    // Handed to bob: alice's count falls, bob's rises, the desk's stays.
    dan.assignee = Some("bob@x".into());
    store.put_desk_conversation(desk, &dan).unwrap();
    assert_eq!(pair(count(store, "alice@x").mine), (1, 1));
    assert_eq!(pair(count(store, "bob@x").mine), (1, 1));
    assert_eq!(pair(count(store, "bob@x").all), (2, 2));

    // Read by the desk: unread falls, nothing else moves.
    dan.read_upto = dan.customer_latest;
    store.put_desk_conversation(desk, &dan).unwrap();
    assert_eq!(pair(count(store, "bob@x").mine), (1, 0));
    assert_eq!(pair(count(store, "bob@x").all), (2, 1));

    // Snoozed: still bob's, still in all.
    dan.state = DeskState::Snoozed { until: 500 };
    store.put_desk_conversation(desk, &dan).unwrap();
    assert_eq!(pair(count(store, "bob@x").mine), (1, 0));
    assert_eq!(pair(count(store, "bob@x").all), (2, 1));

    // Done, then the customer writes and it is reopened, unassigned.
    dan.state = DeskState::Done;
    store.put_desk_conversation(desk, &dan).unwrap();
    assert_eq!(pair(count(store, "bob@x").mine), (0, 0));
    assert_eq!(pair(count(store, "bob@x").done), (1, 0));
    assert_eq!(pair(count(store, "bob@x").all), (1, 1));
    dan.state = DeskState::Open;
    dan.assignee = None;
    dan.latest = 40;
    dan.customer_latest = 40;
    store.put_desk_conversation(desk, &dan).unwrap();
    let c = count(store, "bob@x");
    assert_eq!(pair(c.done), (0, 0));
    assert_eq!(pair(c.mine), (0, 0));
    assert_eq!(pair(c.unassigned), (1, 1));
    assert_eq!(pair(c.all), (2, 2));
    // A rewrite of what is already stored changes no count.
    store.put_desk_conversation(desk, &dan).unwrap();
    assert_eq!(count(store, "bob@x"), c);
    // The other desk kept its own.
    let sales = store.desk_counts("sales", "alice@x").unwrap();
    assert_eq!((pair(sales.all), pair(sales.unassigned)), ((1, 1), (1, 1)));
}

/// Events come back oldest first, the newest `limit`; authors by message;
/// snoozed conversations listed with their time until they wake.
pub fn desk_events_authors_and_snoozes_are_kept(store: &dyn Store) {
    let desk = "support";
    let mut c = desk_conv("dan@x", 5);
    store.put_desk_conversation(desk, &c).unwrap();
    for (seq, by) in [(6, "customer"), (7, "alice@x"), (8, "bob@x")] {
        store
            .put_desk_event(
                desk,
                "dan@x",
                seq,
                &DeskEvent {
                    at: seq * 10,
                    by: by.into(),
                    kind: DeskEventKind::Pending,
                },
            )
            .unwrap();
    }
    let by: Vec<String> = store
        .desk_events(desk, "dan@x", 2)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.by)
        .collect();
    assert_eq!(by, vec!["alice@x", "bob@x"]);
    assert!(store.desk_events(desk, "erin@x", 10).unwrap().is_empty());
    store.put_desk_author(desk, "dan@x", 9, "alice@x").unwrap();
    assert_eq!(
        store.desk_author(desk, "dan@x", 9).unwrap().as_deref(),
        Some("alice@x")
    );
    assert_eq!(store.desk_author(desk, "dan@x", 10).unwrap(), None);
    c.state = DeskState::Snoozed { until: 500 };
    store.put_desk_conversation(desk, &c).unwrap();
    assert_eq!(
        store.desk_snoozed().unwrap(),
        vec![("support".to_owned(), "dan@x".to_owned(), 500)]
    );
    c.state = DeskState::Open;
    store.put_desk_conversation(desk, &c).unwrap();
    assert!(store.desk_snoozed().unwrap().is_empty());
    // In the export, once flushed.
    store.flush().unwrap();
    let mut exported = Vec::new();
    store
        .export_records(&mut |r| {
            if matches!(
                r,
                export::ExportRecord::DeskConversation { .. }
                    | export::ExportRecord::DeskEvent { .. }
                    | export::ExportRecord::DeskAuthor { .. }
            ) {
                exported.push(r);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(exported.len(), 1 + 3 + 1, "{exported:?}");
}

/// One `#[test]` per contract check, each over a fresh store from `$make`.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        #[test]
        fn desk_views_and_counts_follow_each_change() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::desk_views_and_counts_follow_each_change(&*store)
        }
        #[test]
        fn desk_counts_follow_handovers_snoozes_and_reopening() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::desk_counts_follow_handovers_snoozes_and_reopening(&*store)
        }
        #[test]
        fn desk_events_authors_and_snoozes_are_kept() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::desk_events_authors_and_snoozes_are_kept(&*store)
        }
        #[test]
        fn sequence_numbers_only_grow() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::sequence_numbers_only_grow(&*store)
        }
        #[test]
        fn messages_are_found_by_sender_and_id() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::messages_are_found_by_sender_and_id(&*store)
        }
        #[test]
        fn a_reused_id_finds_the_latest_message() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::a_reused_id_finds_the_latest_message(&*store)
        }
        #[test]
        fn tidemarks_only_move_forward_and_remember_when() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::tidemarks_only_move_forward_and_remember_when(&*store)
        }
        #[test]
        fn room_tidemarks_remember_when_each_position_was_passed() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::room_tidemarks_remember_when_each_position_was_passed(&*store)
        }
        #[test]
        fn a_message_outside_its_conversation_is_refused() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::a_message_outside_its_conversation_is_refused(&*store)
        }
        #[test]
        fn a_tidemark_is_an_atomic_maximum() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::a_tidemark_is_an_atomic_maximum(&*store)
        }
        #[test]
        fn presence_grants_are_directional() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::presence_grants_are_directional(&*store)
        }
        #[test]
        fn held_stanzas_stay_until_dequeued() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::held_stanzas_stay_until_dequeued(&*store)
        }
        #[test]
        fn room_messages_are_found_by_stanza_id_or_sender_id() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::room_messages_are_found_by_stanza_id_or_sender_id(&*store)
        }
        #[test]
        fn one_members_id_is_not_anothers() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::one_members_id_is_not_anothers(&*store)
        }
        #[test]
        fn room_creators_are_counted_per_creator() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::room_creators_are_counted_per_creator(&*store)
        }
        #[test]
        fn retention_removes_what_is_older_than_the_cutoff() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::retention_removes_what_is_older_than_the_cutoff(&*store)
        }
        #[test]
        fn retention_goes_in_bounded_steps_from_a_cursor() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::retention_goes_in_bounded_steps_from_a_cursor(&*store)
        }
        #[test]
        fn a_reused_id_keeps_the_newer_messages_index() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::a_reused_id_keeps_the_newer_messages_index(&*store)
        }
        #[test]
        fn memberships_and_rooms_are_kept() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::memberships_and_rooms_are_kept(&*store)
        }
        #[test]
        fn read_receipt_preferences_are_kept() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::read_receipt_preferences_are_kept(&*store)
        }
        #[test]
        fn refusals_keep_only_the_newest_per_sender() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::refusals_keep_only_the_newest_per_sender(&*store)
        }
        #[test]
        fn a_trimmed_refusal_leaves_a_later_message_with_its_id() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::a_trimmed_refusal_leaves_a_later_message_with_its_id(&*store)
        }
        #[test]
        fn watchers_are_known_per_contact() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::watchers_are_known_per_contact(&*store)
        }
        #[test]
        fn sent_messages_are_listed_per_sender() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::sent_messages_are_listed_per_sender(&*store)
        }
        #[test]
        fn writes_applied_are_the_logical_operations() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::writes_applied_are_the_logical_operations(&*store)
        }
        // Room occupancy (issue 9).
        #[test]
        fn room_occupants_are_kept_replaced_and_removed() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::room_occupants_are_kept_replaced_and_removed(&*store)
        }
        // Issue 10.
        #[test]
        fn inbox_unread_counts_are_exact() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::inbox_unread_counts_are_exact(&*store)
        }
        #[test]
        fn inbox_lists_latest_first_per_user() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::inbox_lists_latest_first_per_user(&*store)
        }
        #[test]
        fn inbox_missed_attempts_clear_on_read() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::inbox_missed_attempts_clear_on_read(&*store)
        }
        #[test]
        fn rooms_count_their_messages() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::rooms_count_their_messages(&*store)
        }
        #[test]
        fn inbox_many_conversations_keep_order_and_counts() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::inbox_many_conversations_keep_order_and_counts(&*store)
        }
        #[test]
        fn inbox_long_unread_runs_stay_exact() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::inbox_long_unread_runs_stay_exact(&*store)
        }
        #[test]
        fn inbox_entries_expire_with_their_conversation() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::inbox_entries_expire_with_their_conversation(&*store)
        }
        #[test]
        fn room_subjects_are_kept_and_replaced() {
            let store: Box<dyn $crate::store::Store> = Box::new($make);
            $crate::store::contract::room_subjects_are_kept_and_replaced(&*store)
        }
    };
}
