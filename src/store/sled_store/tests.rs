//! What the sled backend promises beyond the contract: the contract itself,
//! durability across a reopen, export and import, the upgrade from schema
//! 1, and the lock.

use crate::store::*;

fn record(sender: &str, recipient: &str, id: &str, at: Millis) -> MessageRecord {
    MessageRecord::sent(sender, recipient, id, at)
}

mod contract {
    crate::store_contract_tests!(crate::store::SledStore::temporary().unwrap());
}

/// `open` retried while it fails, for at most 5 s: sled lets go of its
/// directory's lock only when its last background thread has, a moment
/// after the drop on a busy machine, so opening again right after a drop
/// may find it still locked.
fn when_unlocked<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let mut last = open();
    for _ in 0..100 {
        if last.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        last = open();
    }
    last.unwrap()
}

/// The store at `path` opened again after the test dropped it.
fn reopen(path: &std::path::Path) -> SledStore {
    when_unlocked(|| SledStore::open(path, 8 << 20))
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
    let store = reopen(dir.path());
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

/// A store with one of everything an export carries.
pub(crate) fn everything(store: &SledStore) -> (ConversationKey, Seq) {
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let seq = store.next_seq().unwrap();
    let mut rec = record("alice@x", "bob@x", "m1", 10);
    rec.delivered_at = Some(15);
    store.put_message(&conv, seq, &rec).unwrap();
    store.advance_mark(&conv, "bob@x", seq, 20).unwrap();
    store
        .advance_mark(&conv, "<private>alice@x", seq, 21)
        .unwrap();
    let refused = store.next_seq().unwrap();
    let mut r = record("bob@x", "alice@x", "r1", 30);
    r.failed = Some(Failure {
        at: 30,
        condition: "recipient-unavailable".into(),
        text: "alice@x is offline".into(),
    });
    store.put_refused_message(&conv, refused, &r, 5).unwrap();
    store
        .set_presence_allowed("bob@x", "alice@x", true)
        .unwrap();
    let held = ConversationKey::direct("alice@x", "carol@x");
    let h = store.next_seq().unwrap();
    store
        .put_message(&held, h, &record("alice@x", "carol@x", "q1", 40))
        .unwrap();
    store.enqueue("carol@x", h, &held, b"<message/>").unwrap();
    let room = "team@chat";
    store
        .put_room(
            room,
            &RoomRecord {
                created_at: 1,
                fixed_members: true,
            },
        )
        .unwrap();
    store
        .set_membership(
            room,
            "bob@x",
            &Membership {
                joined: 1,
                left: None,
            },
        )
        .unwrap();
    let rs = store.next_seq().unwrap();
    store
        .put_room_message(
            room,
            rs,
            &RoomMessage {
                id: "g1".into(),
                stanza_id: "s1".into(),
                sender: "alice@x".into(),
                sent_at: 50,
                readable: true,
                stanza: b"<message type='groupchat'/>".to_vec(),
            },
        )
        .unwrap();
    store
        .advance_mark(&ConversationKey::room(room), "bob@x", rs, 60)
        .unwrap();
    store.add_room_creator("alice@x", room).unwrap();
    store.set_read_receipts_pref("alice@x", false).unwrap();
    // Room occupancy (issue 9).
    store
        .set_occupant(
            room,
            "al",
            Some(&crate::store::OccupantRecord {
                user: "alice@x".into(),
                sessions: vec!["alice@x/phone".into()],
                presence: "<presence/>".into(),
            }),
        )
        .unwrap();
    store.put_preview(&conv, seq, "hello").unwrap();
    // Issue 10: the conversation list.
    store
        .inbox_message("bob@x", "alice@x", seq, 10, false)
        .unwrap();
    store.inbox_missed("bob@x", "carol@x", seq + 1, 11).unwrap();
    store.inbox_room_sent("alice@x", "room@chat.x", 1).unwrap();
    // A room's subject (issue 9).
    store
        .set_room_subject(
            room,
            &crate::store::RoomSubject {
                text: "Release on Friday".into(),
                nick: "al".into(),
                setter: Some("alice@x".into()),
                at: 70,
                config: None,
            },
        )
        .unwrap();
    // A desk's conversation, an event and an author (issue 11).
    let desk = crate::store::DeskConversation {
        customer: "dan@x".into(),
        state: crate::store::DeskState::Snoozed { until: 900 },
        assignee: Some("alice@x".into()),
        latest: 80,
        latest_at: 81,
        customer_latest: 80,
        read_upto: 0,
        opened_at: 79,
    };
    store.put_desk_conversation("support", &desk).unwrap();
    store
        .put_desk_event(
            "support",
            "dan@x",
            82,
            &crate::store::DeskEvent {
                at: 82,
                by: "alice@x".into(),
                kind: crate::store::DeskEventKind::Assigned {
                    to: "alice@x".into(),
                },
            },
        )
        .unwrap();
    store
        .put_desk_author("support", "dan@x", 83, "alice@x")
        .unwrap();
    (conv, seq)
}

#[test]
fn an_export_imports_into_an_empty_store_as_it_was() {
    let from = SledStore::temporary().unwrap();
    let (conv, seq) = everything(&from);
    let mut dump = Vec::new();
    let exported = from.export(&mut dump).unwrap();
    let kinds: std::collections::BTreeSet<String> = String::from_utf8_lossy(&dump)
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(
        kinds.len(),
        17,
        "one of every kind but the header: {kinds:?}"
    );
    // A preview travels with its message (issue 9).
    assert!(String::from_utf8_lossy(&dump).contains("\"preview\":\"hello\""));

    let to = SledStore::temporary().unwrap();
    assert_eq!(to.import(&dump[..]).unwrap(), exported);
    // What comes out of the copy is what went in, line for line.
    let mut again = Vec::new();
    to.export(&mut again).unwrap();
    let body = |d: &[u8]| {
        String::from_utf8_lossy(d)
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(body(&again), body(&dump));
    assert_eq!(
        to.find_message(&conv, "alice@x", "m1").unwrap(),
        from.find_message(&conv, "alice@x", "m1").unwrap()
    );
    assert_eq!(to.read_at(&conv, "bob@x", seq).unwrap(), Some(20));
    assert_eq!(to.refusal_count("bob@x").unwrap(), 1);
    assert_eq!(
        to.inbox_entry("bob@x", "alice@x").unwrap(),
        from.inbox_entry("bob@x", "alice@x").unwrap()
    );
    assert_eq!(to.inbox_unread_total("bob@x").unwrap(), 1);
    assert_eq!(
        to.inbox_latest("bob@x", Seq::MAX, 10).unwrap(),
        from.inbox_latest("bob@x", Seq::MAX, 10).unwrap()
    );
    assert!(to.presence_allowed("bob@x", "alice@x").unwrap());
    assert_eq!(
        to.desk_conversation("support", "dan@x").unwrap(),
        from.desk_conversation("support", "dan@x").unwrap()
    );
    assert_eq!(
        to.desk_counts("support", "alice@x").unwrap(),
        from.desk_counts("support", "alice@x").unwrap(),
        "counts rebuilt by the import"
    );
    assert_eq!(to.desk_snoozed().unwrap(), from.desk_snoozed().unwrap());
    assert!(
        to.next_seq().unwrap() > from.next_seq().unwrap() - 1,
        "new messages come after imported ones"
    );
    // Never over existing data, and never from something that is not an export.
    assert!(matches!(to.import(&dump[..]), Err(ExportError::NotEmpty)));
    let fresh = SledStore::temporary().unwrap();
    assert!(matches!(
        fresh.import(&b"not an export\n"[..]),
        Err(ExportError::Format { line: 1, .. })
    ));
    let fresh = SledStore::temporary().unwrap();
    let bad = "{\"kind\":\"header\",\"format\":\"tidemark-export\",\"version\":2,\"next_seq\":9}\n{\"kind\":\"message\"}\n";
    assert!(matches!(
        fresh.import(bad.as_bytes()),
        Err(ExportError::Format { line: 2, .. })
    ));
    // A conversation-list entry whose unread messages come after its
    // latest is refused by the import itself, whatever the backend.
    let entry = crate::store::export::ExportRecord::InboxEntry {
        user: "bob@x".into(),
        contact: "alice@x".into(),
        latest: 5,
        latest_at: 50,
        latest_by_contact: true,
        own_latest: 0,
        unread: vec![4, 6],
        missed: None,
    };
    let bad = format!(
        "{{\"kind\":\"header\",\"format\":\"tidemark-export\",\"version\":2,\"next_seq\":9}}\n{}\n",
        serde_json::to_string(&entry).unwrap()
    );
    let fresh = SledStore::temporary().unwrap();
    match fresh.import(bad.as_bytes()) {
        Err(ExportError::Format { line: 2, detail }) => {
            assert!(
                detail.contains("unread messages after its latest"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// Schema 1 as it was written: one entry per message, an id index, and a
/// tidemark with its log, all keyed by the conversation's name.
#[test]
fn a_schema_1_store_is_upgraded_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let (m1, m2, m3) = (3u64, 4u64, 9u64);
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
        let messages = db.open_tree("messages").unwrap();
        let ids = db.open_tree("message_ids").unwrap();
        let marks = db.open_tree("marks").unwrap();
        let log = db.open_tree("mark_log").unwrap();
        for (seq, id, from, to) in [
            (m1, "a", "alice@x", "bob@x"),
            (m2, "b", "alice@x", "bob@x"),
            (m3, "c", "bob@x", "alice@x"),
        ] {
            let mut k = conv.encode();
            k.push(0);
            k.extend_from_slice(&seq.to_be_bytes());
            messages
                .insert(
                    k,
                    postcard::to_allocvec(&record(from, to, id, seq * 10)).unwrap(),
                )
                .unwrap();
            let mut i = conv.encode();
            for part in [from, id] {
                i.push(0);
                i.extend_from_slice(part.as_bytes());
            }
            ids.insert(i, &seq.to_be_bytes()).unwrap();
        }
        // Bob read up to m1 at 100, then up to m2 at 200.
        marks
            .insert(super::super::keys::mark(&conv, "bob@x"), &m2.to_be_bytes())
            .unwrap();
        for (seq, at) in [(m1, 100u64), (m2, 200)] {
            log.insert(
                super::super::keys::mark_log(&conv, "bob@x", seq),
                &at.to_be_bytes(),
            )
            .unwrap();
        }
        db.flush().unwrap();
    }
    let store = reopen(dir.path());
    let (seq, rec) = store.find_message(&conv, "alice@x", "b").unwrap().unwrap();
    assert_eq!((seq, rec.sent_at), (m2, 40));
    assert_eq!(
        store
            .find_message(&conv, "bob@x", "c")
            .unwrap()
            .map(|f| f.0),
        Some(m3)
    );
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), m2);
    assert_eq!(store.read_at(&conv, "bob@x", m1).unwrap(), Some(100));
    assert_eq!(store.read_at(&conv, "bob@x", m2).unwrap(), Some(200));
    assert_eq!(store.read_at(&conv, "alice@x", m3).unwrap(), None);
    assert!(store.next_seq().unwrap() > 0);
    drop(store);
    // Opened again: schema 2, nothing of schema 1 left, nothing lost.
    let store = reopen(dir.path());
    assert_eq!(store.read_at(&conv, "bob@x", m1).unwrap(), Some(100));
    drop(store);
    let db = when_unlocked(|| sled::open(dir.path()));
    assert_eq!(
        db.get("schema_version").unwrap().unwrap().as_ref(),
        &2u32.to_be_bytes()
    );
    assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"messages"));
    assert!(db.open_tree("marks").unwrap().is_empty());
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

/// Beyond the ids kept in memory, a message is still found by its id: the
/// conversation's unsealed tail is walked, then its id blocks are read.
#[test]
fn old_messages_are_found_beyond_the_ids_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let other = ConversationKey::direct("alice@x", "carol@x");
    let mut sent = vec![];
    {
        let store = SledStore::open_tuned(dir.path(), 8 << 20, 10).unwrap();
        for i in 0..300u64 {
            let (from, to) = if i % 3 == 0 {
                ("bob@x", "alice@x")
            } else {
                ("alice@x", "bob@x")
            };
            let seq = store.next_seq().unwrap();
            store
                .put_message(&conv, seq, &record(from, to, &format!("m{i}"), i))
                .unwrap();
            sent.push((seq, from, format!("m{i}")));
            // Another conversation in between, with the same ids.
            let s = store.next_seq().unwrap();
            store
                .put_message(
                    &other,
                    s,
                    &record("alice@x", "carol@x", &format!("m{i}"), i),
                )
                .unwrap();
        }
        let check = |store: &SledStore| {
            for (seq, from, id) in &sent {
                let found = store.find_message(&conv, from, id).unwrap();
                assert_eq!(found.map(|f| f.0), Some(*seq), "{id} from {from}");
                let to = if *from == "bob@x" { "alice@x" } else { "bob@x" };
                assert_eq!(
                    store.find_message(&conv, to, id).unwrap(),
                    None,
                    "{id} is not {to}'s"
                );
            }
            assert_eq!(store.find_message(&conv, "alice@x", "never").unwrap(), None);
        };
        check(&store);
        assert!(
            store
                .advance_mark(&conv, "bob@x", sent[298].0, 5000)
                .unwrap()
        );
        assert_eq!(
            store.read_at(&conv, "bob@x", sent[1].0).unwrap(),
            Some(5000)
        );
        store.flush().unwrap();
        drop(store);
        let store = when_unlocked(|| SledStore::open_tuned(dir.path(), 8 << 20, 10));
        check(&store);
        assert_eq!(
            store.read_at(&conv, "bob@x", sent[1].0).unwrap(),
            Some(5000)
        );
    }
}

/// The example of `xep/export.md` imports, and means what the document says.
#[test]
fn the_export_documents_example_imports_as_described() {
    let doc = include_str!("../../../xep/export.md");
    let example = doc
        .split("```json\n")
        .nth(2)
        .and_then(|rest| rest.split("```").next())
        .expect("the second json block of xep/export.md");
    let store = SledStore::temporary().unwrap();
    assert_eq!(store.import(example.as_bytes()).unwrap(), 3);
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let (seq, rec) = store.find_message(&conv, "alice@x", "m1").unwrap().unwrap();
    assert_eq!((seq, rec.delivered_at), (1, Some(15)));
    assert_eq!(store.mark(&conv, "bob@x").unwrap(), 1);
    assert_eq!(store.read_at(&conv, "bob@x", 1).unwrap(), Some(20));
    assert!(store.presence_allowed("bob@x", "alice@x").unwrap());
    assert!(store.next_seq().unwrap() > 7, "after the header's next_seq");
}

/// Issue 9: a store written before the user indexes (by main: no user
/// entries in the status log, no `member_rooms`) lists the messages sent
/// before, once reopened by this tidemark.
#[test]
fn messages_sent_before_the_user_index_are_listed_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut mine = vec![];
    {
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        let room = "team@chat";
        let j = store.next_seq().unwrap();
        store
            .set_membership(
                room,
                "alice@x",
                &Membership {
                    joined: j,
                    left: None,
                },
            )
            .unwrap();
        for (i, contact) in ["bob@x", "carol@x", "bob@x"].iter().enumerate() {
            let conv = ConversationKey::direct("alice@x", contact);
            let seq = store.next_seq().unwrap();
            store
                .put_message(
                    &conv,
                    seq,
                    &record("alice@x", contact, &format!("m{i}"), 10),
                )
                .unwrap();
            mine.push(seq);
            let g = store.next_seq().unwrap();
            let m = RoomMessage {
                id: format!("g{i}"),
                stanza_id: g.to_string(),
                sender: "alice@x".into(),
                sent_at: 11,
                readable: true,
                stanza: b"<message/>".to_vec(),
            };
            store.put_room_message(room, g, &m).unwrap();
            mine.push(g);
        }
        store.flush().unwrap();
    }
    {
        // What main's store lacks.
        let db = when_unlocked(|| sled::open(dir.path()));
        let log = db.open_tree("status_log").unwrap();
        let users: Vec<_> = log.scan_prefix(b"u").keys().map(|k| k.unwrap()).collect();
        assert_eq!(users.len(), 2, "the higher address of two conversations");
        for k in users {
            log.remove(k).unwrap();
        }
        db.drop_tree("member_rooms").unwrap();
        db.remove("users_indexed").unwrap();
        db.flush().unwrap();
    }
    let store = reopen(dir.path());
    let listed = store
        .sent_by("alice@x", SentFrom::Before(Seq::MAX), 20, None)
        .unwrap();
    mine.reverse();
    assert_eq!(
        listed.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        mine
    );
    let bobs = store
        .sent_by("bob@x", SentFrom::Before(Seq::MAX), 20, None)
        .unwrap();
    assert!(bobs.entries.is_empty());
}

/// Issue 9: a listing's work is bounded whatever a user's history: the
/// most recently started conversations only, and a bounded number of
/// messages examined, saying so when it stopped early.
#[test]
fn a_listing_is_bounded_by_conversations_and_steps() {
    use super::sent::{MAX_CONVERSATIONS, MAX_STEPS};
    let store = SledStore::temporary().unwrap();
    let n = MAX_CONVERSATIONS + 50;
    let mut mine = vec![];
    // Contacts whose addresses sort before alice's: she is the higher
    // address, whose conversations are read newest first.
    for i in 0..n {
        let contact = format!("a{i}@x");
        let conv = ConversationKey::direct("alice@x", &contact);
        let seq = store.next_seq().unwrap();
        store
            .put_message(&conv, seq, &record("alice@x", &contact, "m", 10))
            .unwrap();
        mine.push(seq);
        if i % 500 == 0 {
            store.flush().unwrap();
        }
    }
    store.flush().unwrap();
    let all = store
        .sent_by("alice@x", SentFrom::Before(Seq::MAX), usize::MAX, None)
        .unwrap();
    // The newest conversations' messages, newest first; the 50 oldest
    // conversations are beyond the bound (a filter still reaches them).
    mine.reverse();
    assert_eq!(all.entries.len(), MAX_CONVERSATIONS);
    assert_eq!(
        all.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        mine[..MAX_CONVERSATIONS]
    );
    let oldest = SentTo::Contact("a0@x".into());
    let one = store
        .sent_by("alice@x", SentFrom::Before(Seq::MAX), 20, Some(&oldest))
        .unwrap();
    assert_eq!(one.entries.len(), 1);

    // bob answers alice's one message with more than a listing examines:
    // her message is beyond reach, and the listing says it stopped.
    let conv = ConversationKey::direct("alice@x", "bob@x");
    let first = store.next_seq().unwrap();
    store
        .put_message(&conv, first, &record("alice@x", "bob@x", "hi", 10))
        .unwrap();
    for i in 0..MAX_STEPS + 10 {
        let seq = store.next_seq().unwrap();
        store
            .put_message(
                &conv,
                seq,
                &record("bob@x", "alice@x", &format!("b{i}"), 11),
            )
            .unwrap();
    }
    store.flush().unwrap();
    let page = store
        .sent_by(
            "alice@x",
            SentFrom::Before(Seq::MAX),
            20,
            Some(&SentTo::Contact("bob@x".into())),
        )
        .unwrap();
    assert!(page.entries.is_empty());
    assert!(page.cut);
}

/// Issue 10: a store whose room messages were written before rooms were
/// counted gets its counts when it opens, and unread counts in rooms are
/// exact from then on.
#[test]
fn room_messages_written_before_counting_are_counted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let room = "team@chat.x";
    {
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        for seq in [2, 4, 6] {
            let m = RoomMessage {
                id: format!("m{seq}"),
                stanza_id: format!("s{seq}"),
                sender: "a@x".into(),
                sent_at: seq,
                readable: true,
                stanza: vec![],
            };
            store.put_room_message(room, seq, &m).unwrap();
        }
        store.flush().unwrap();
        // As an older tidemark left it: no counts.
        store.staged.tree(super::T::RoomCounts).clear().unwrap();
        store.db.flush().unwrap();
    }
    let store = reopen(dir.path());
    assert_eq!(store.room_messages_after(room, 0).unwrap(), 3);
    assert_eq!(store.room_messages_after(room, 4).unwrap(), 1);
    let m = RoomMessage {
        id: "m9".into(),
        stanza_id: "s9".into(),
        sender: "b@x".into(),
        sent_at: 9,
        readable: true,
        stanza: vec![],
    };
    store.put_room_message(room, 9, &m).unwrap();
    assert_eq!(store.room_messages_after(room, 4).unwrap(), 2);
}
