//! Issue 10: the conversation list (xep/inbox.md) through the router, no
//! socket: a real sled store, exact unread counts with partial reads, a
//! reader who hides their reads, rooms, mark read, missed attempts in
//! "reject" mode and held messages in "queue" mode, search and paging,
//! pushed updates, and nobody else's list.

use minidom::Element;

mod common;
use common::{Router, Varies, World, XepDoc, millis, with_ns};

const INBOX: &str = "urn:tidemark:inbox:0";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";
const ROOM: &str = "team@chat.localhost";
const START: &str = "2026-11-20T09:00:00.000Z";
/// The room of the tests that have one.
const TEAM: &str = "[[rooms]]\nname = \"team\"\nmembers = [\"alice@localhost\", \"bob@localhost\", \"carol@localhost\"]\n";

impl World {
    fn new(extra: &str) -> Self {
        World(Router::new(extra, millis(START)))
    }

    /// `contact` lets `watcher` see their presence, and is online (or not).
    fn grant(&mut self, watcher: &str, contact: &str, online: bool) {
        let tracked = format!("{watcher}\\40localhost@chat.localhost");
        self.send(&format!(
            "<presence type='subscribed' from='{contact}@localhost' to='{tracked}'/>"
        ));
        let kind = if online { "" } else { " type='unavailable'" };
        self.send(&format!(
            "<presence{kind} from='{contact}@localhost/res' to='{tracked}'/>"
        ));
    }

    /// Everyone lets everyone see them, everyone online.
    fn friends(&mut self, users: &[&str]) {
        for a in users {
            for b in users {
                if a != b {
                    self.grant(a, b, true);
                }
            }
        }
    }

    fn chat_at(&mut self, at: &str, from: &str, to: &str, id: &str) -> Vec<Element> {
        self.send_at(
            at,
            &format!(
                "<message type='chat' id='{id}' from='{from}@localhost/res' to='{to}\\40localhost@chat.localhost'><body>{id}</body>\
                 <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
            ),
        )
    }

    fn chat(&mut self, from: &str, to: &str, id: &str) -> Vec<Element> {
        let at = self.now + 1000;
        self.handle_at(
            at,
            &with_ns(&format!(
                "<message type='chat' id='{id}' from='{from}@localhost/res' to='{to}\\40localhost@chat.localhost'><body>{id}</body>\
                 <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
            ))
            .parse()
            .unwrap(),
        )
    }

    /// `reader`'s client shows `writer`'s message `id`.
    fn displayed(&mut self, reader: &str, writer: &str, id: &str) -> Vec<Element> {
        self.send(&format!(
            "<message type='chat' from='{reader}@localhost/res' to='{writer}\\40localhost@chat.localhost'><displayed xmlns='urn:xmpp:chat-markers:0' id='{id}'/></message>"
        ))
    }

    fn join(&mut self, user: &str) -> Vec<Element> {
        self.send(&format!(
            "<presence from='{user}@localhost/res' to='{ROOM}/{user}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ))
    }

    fn say(&mut self, user: &str, id: &str) -> Vec<Element> {
        self.send(&format!(
            "<message type='groupchat' id='{id}' from='{user}@localhost/res' to='{ROOM}'><body>{id}</body></message>"
        ))
    }

    /// The room's stanza-id of `id`, from what tidemark reflected.
    fn say_and_id(&mut self, user: &str, id: &str) -> String {
        let out = self.say(user, id);
        out.iter()
            .find_map(|el| {
                el.get_child("stanza-id", "urn:xmpp:sid:0")
                    .and_then(|s| s.attr("id"))
                    .map(str::to_owned)
            })
            .expect("a reflected message with a stanza-id")
    }

    fn room_displayed(&mut self, user: &str, stanza_id: &str) -> Vec<Element> {
        self.send(&format!(
            "<message type='groupchat' from='{user}@localhost/res' to='{ROOM}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{stanza_id}'/></message>"
        ))
    }

    fn iq(&mut self, user: &str, type_: &str, payload: &str) -> Element {
        let out = self.send(&format!(
            "<iq type='{type_}' id='q' from='{user}@localhost/res' to='chat.localhost'>{payload}</iq>"
        ));
        assert_eq!(out.len(), 1, "one answer: {out:?}");
        out.into_iter().next().unwrap()
    }

    fn list(&mut self, user: &str, attrs: &str) -> Element {
        let answer = self.iq(user, "get", &format!("<inbox xmlns='{INBOX}' {attrs}/>"));
        assert_eq!(
            answer.attr("type"),
            Some("result"),
            "{}",
            String::from(&answer)
        );
        answer.get_child("inbox", INBOX).unwrap().clone()
    }

    /// Every page of `max` rows, each asked `after` the last row of the one
    /// before (XEP-0059), until one says it is complete: the addresses.
    fn pages(&mut self, user: &str, max: usize) -> Vec<String> {
        let mut seen = vec![];
        let mut after = String::new();
        for _ in 0..20 {
            let cursor = if after.is_empty() {
                String::new()
            } else {
                format!("<after>{after}</after>")
            };
            let answer = self.iq(
                user,
                "get",
                &format!(
                    "<inbox xmlns='{INBOX}'><set xmlns='http://jabber.org/protocol/rsm'><max>{max}</max>{cursor}</set></inbox>"
                ),
            );
            let inbox = answer.get_child("inbox", INBOX).unwrap();
            let page: Vec<String> = inbox
                .children()
                .filter(|c| c.name() == "conversation")
                .map(|c| c.attr("jid").unwrap().to_owned())
                .collect();
            assert!(page.len() <= max);
            seen.extend(page);
            if inbox.attr("complete") == Some("true") {
                return seen;
            }
            after = inbox
                .get_child("set", "http://jabber.org/protocol/rsm")
                .unwrap()
                .get_child("last", "http://jabber.org/protocol/rsm")
                .unwrap()
                .text();
        }
        panic!("no complete page after 20: {seen:?}");
    }

    /// (address, unread, missed) per row, newest first, and the total.
    fn counts(&mut self, user: &str, attrs: &str) -> (Vec<(String, u64, u64)>, u64) {
        let inbox = self.list(user, attrs);
        let rows = inbox
            .children()
            .filter(|c| c.name() == "conversation")
            .map(|c| {
                (
                    c.attr("jid").unwrap().to_owned(),
                    c.attr("unread").unwrap().parse().unwrap(),
                    c.attr("missed").unwrap().parse().unwrap(),
                )
            })
            .collect();
        (rows, inbox.attr("total-unread").unwrap().parse().unwrap())
    }
}

fn tracked(user: &str) -> String {
    format!("{user}\\40localhost@chat.localhost")
}

fn row(jid: &str, unread: u64, missed: u64) -> (String, u64, u64) {
    (jid.to_owned(), unread, missed)
}

#[test]
fn partial_reads_leave_exactly_the_rest_unread() {
    let mut w = World::new("");
    w.friends(&["alice", "bob", "carol"]);
    for i in 1..=5 {
        w.chat("bob", "alice", &format!("b{i}"));
    }
    assert_eq!(w.counts("alice", ""), (vec![row(&tracked("bob"), 5, 0)], 5));
    // Reading message 3 of 5 leaves 2.
    w.displayed("alice", "bob", "b3");
    assert_eq!(w.counts("alice", ""), (vec![row(&tracked("bob"), 2, 0)], 2));
    // Bob's own list: nothing unread, his latest delivered? no receipt
    // yet, but read up to b3.
    let bob = w.list("bob", "");
    let conv = bob.get_child("conversation", INBOX).unwrap();
    assert_eq!(conv.attr("unread"), Some("0"));
    assert_eq!(conv.attr("state"), Some("sent"), "b5 is not read yet");
    w.displayed("alice", "bob", "b5");
    let bob = w.list("bob", "");
    let conv = bob.get_child("conversation", INBOX).unwrap();
    assert_eq!(conv.attr("state"), Some("read"));
    assert_eq!(w.counts("alice", "").1, 0);
}

#[test]
fn a_reader_who_hides_reads_still_clears_their_count() {
    let mut w = World::new("[status]\nsend_read_receipts = false\n");
    w.friends(&["alice", "bob"]);
    w.chat("bob", "alice", "b1");
    w.chat("bob", "alice", "b2");
    let out = w.displayed("alice", "bob", "b1");
    assert!(out.is_empty(), "nobody is told: {out:?}");
    assert_eq!(w.counts("alice", "").1, 1);
    // Bob does not learn it.
    let bob = w.list("bob", "");
    assert_eq!(
        bob.get_child("conversation", INBOX).unwrap().attr("state"),
        Some("sent")
    );
}

#[test]
fn answering_reads_what_came_before() {
    let mut w = World::new("");
    w.friends(&["alice", "bob"]);
    w.chat("bob", "alice", "b1");
    w.chat("bob", "alice", "b2");
    w.chat("alice", "bob", "a1");
    assert_eq!(w.counts("alice", "").1, 0);
    let alice = w.list("alice", "");
    let conv = alice.get_child("conversation", INBOX).unwrap();
    assert_eq!(conv.attr("last-from"), Some("alice@localhost"));
}

#[test]
fn rooms_count_what_came_after_the_members_read_position() {
    let mut w = World::new(TEAM);
    for u in ["alice", "bob", "carol"] {
        w.join(u);
    }
    let s1 = w.say_and_id("bob", "r1");
    w.say("carol", "r2");
    w.say("bob", "r3");
    assert_eq!(w.counts("alice", ""), (vec![row(ROOM, 3, 0)], 3));
    // Nobody's own messages are unread for them, and writing reads what
    // came before: bob (who wrote last) has none, carol has bob's r3.
    assert_eq!(w.counts("bob", ""), (vec![row(ROOM, 0, 0)], 0));
    assert_eq!(w.counts("carol", ""), (vec![row(ROOM, 1, 0)], 1));
    w.room_displayed("alice", &s1);
    assert_eq!(w.counts("alice", "").1, 2);
    // Alice writes: she had the room open.
    w.say("alice", "r4");
    assert_eq!(w.counts("alice", "").1, 0);
    let alice = w.list("alice", "");
    let conv = alice.get_child("conversation", INBOX).unwrap();
    assert_eq!(conv.attr("type"), Some("groupchat"));
    assert_eq!(conv.attr("state"), Some("sent"));
    assert_eq!(conv.attr("last-from"), Some("alice@localhost"));
}

#[test]
fn mark_read_clears_one_conversation_or_all_and_tells_nobody() {
    let mut w = World::new(TEAM);
    w.friends(&["alice", "bob", "carol"]);
    for u in ["alice", "bob", "carol"] {
        w.join(u);
    }
    w.chat("bob", "alice", "b1");
    w.chat("carol", "alice", "c1");
    w.say("bob", "r1");
    assert_eq!(w.counts("alice", "").1, 3);
    let out = w.send(&format!(
        "<iq type='set' id='m' from='alice@localhost/res' to='chat.localhost'><mark-read xmlns='{INBOX}' jid='bob@localhost'/></iq>"
    ));
    assert_eq!(out.len(), 1, "only the answer goes out: {out:?}");
    assert_eq!(out[0].attr("type"), Some("result"));
    assert_eq!(w.counts("alice", "").1, 2);
    // Bob's message does not read as read for him.
    let bob = w.list("bob", "");
    let conv = bob
        .children()
        .find(|c| c.attr("jid") == Some(tracked("alice").as_str()))
        .unwrap();
    assert_eq!(conv.attr("state"), Some("sent"));
    // All: the room too, with no marker reflected to anyone.
    let out = w.send(&format!(
        "<iq type='set' id='m2' from='alice@localhost/res' to='chat.localhost'><mark-read xmlns='{INBOX}'/></iq>"
    ));
    assert_eq!(out.len(), 1, "only the answer goes out: {out:?}");
    assert_eq!(w.counts("alice", "").1, 0);
    // Unknown conversation: a clear error, nothing changed.
    let answer = w.iq(
        "alice",
        "set",
        &format!("<mark-read xmlns='{INBOX}' jid='nobody@localhost'/>"),
    );
    assert_eq!(answer.attr("type"), Some("error"));
    assert!(String::from(&answer).contains("item-not-found"));
}

#[test]
fn reject_mode_lists_missed_attempts_until_opened() {
    let mut w = World::new("[presence]\noffline = \"reject\"\n");
    w.grant("bob", "alice", false);
    w.grant("alice", "bob", true);
    let out = w.chat("bob", "alice", "b1");
    assert!(String::from(&out[0]).contains("recipient-unavailable"));
    w.chat("bob", "alice", "b2");
    let (rows, total) = w.counts("alice", "");
    assert_eq!((rows, total), (vec![row(&tracked("bob"), 0, 2)], 0));
    let only = w.counts("alice", "unread-only='true'").0;
    assert_eq!(
        only,
        vec![row(&tracked("bob"), 0, 2)],
        "missed wants attention"
    );
    // Bob's side: his last message failed.
    let bob = w.list("bob", "");
    assert_eq!(
        bob.get_child("conversation", INBOX).unwrap().attr("state"),
        Some("failed")
    );
    w.iq(
        "alice",
        "set",
        &format!("<mark-read xmlns='{INBOX}' jid='{}'/>", tracked("bob")),
    );
    assert_eq!(w.counts("alice", "").0, vec![row(&tracked("bob"), 0, 0)]);
}

#[test]
fn queue_mode_counts_held_messages_as_unread() {
    let mut w = World::new("[presence]\noffline = \"queue\"\n");
    w.grant("bob", "alice", false);
    w.grant("alice", "bob", true);
    w.chat("bob", "alice", "b1");
    w.chat("bob", "alice", "b2");
    assert_eq!(w.counts("alice", ""), (vec![row(&tracked("bob"), 2, 0)], 2));
    // Alice comes online: the held messages go out, still unread once.
    w.send(&format!(
        "<presence from='alice@localhost/res' to='{}'/>",
        tracked("bob")
    ));
    assert_eq!(w.counts("alice", ""), (vec![row(&tracked("bob"), 2, 0)], 2));
}

#[test]
fn search_filters_and_pages_go_newest_first() {
    let mut w = World::new("");
    let users = ["alice", "bob", "carol", "dave", "émile", "zoë"];
    w.friends(&users);
    for u in &users[1..] {
        w.chat(u, "alice", "hi");
    }
    let (rows, total) = w.counts("alice", "");
    assert_eq!(total, 5);
    let order: Vec<String> = rows.into_iter().map(|r| r.0).collect();
    assert_eq!(
        order,
        ["zoë", "émile", "dave", "carol", "bob"].map(tracked),
        "newest first"
    );
    // Any script, any case.
    let found = w.counts("alice", "search='ÉMI'").0;
    assert_eq!(found, vec![row(&tracked("émile"), 1, 0)]);
    assert_eq!(w.counts("alice", "search='nobody'").0, vec![]);
    // Pages of two, each going on below the last row shown.
    assert_eq!(
        w.pages("alice", 2),
        order,
        "the pages together are the list, once each"
    );
}

#[test]
fn search_folds_case_as_addresses_do() {
    // Addresses are case-folded (RFC 3454 B.2) when registered: a final
    // sigma is a sigma, ß is ss. Lowercasing the search alone would miss
    // them.
    let mut w = World::new("");
    let users = ["alice", "οδυσσευσ", "strasse"];
    w.friends(&users);
    for u in &users[1..] {
        w.chat(u, "alice", "hi");
    }
    for (search, found) in [
        ("ΟΔΥΣΣΕΥΣ", "οδυσσευσ"),
        ("Οδυσσευς", "οδυσσευσ"),
        ("STRAßE", "strasse"),
        ("straße", "strasse"),
        ("STRASSE", "strasse"),
    ] {
        assert_eq!(
            w.counts("alice", &format!("search='{search}'")).0,
            vec![row(&tracked(found), 1, 0)],
            "{search}"
        );
    }
}

#[test]
fn rooms_nobody_wrote_in_yet_are_paged_too() {
    let mut w = World::new("");
    w.friends(&["alice", "bob"]);
    w.chat("bob", "alice", "b1");
    let rooms = ["quiet", "calm", "still"].map(|r| format!("{r}@chat.localhost"));
    for room in &rooms {
        w.send(&format!(
            "<presence from='alice@localhost/res' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
    }
    let order: Vec<String> = w.counts("alice", "").0.into_iter().map(|r| r.0).collect();
    // A room without messages stands where alice joined it.
    assert_eq!(
        order,
        [&rooms[2], &rooms[1], &rooms[0], &tracked("bob")].map(String::clone),
        "newest first"
    );
    // They would all stand at 0 otherwise: a page ending on one of them
    // skipped the others.
    assert_eq!(
        w.pages("alice", 1),
        order,
        "the pages together are the list, once each"
    );
}

#[test]
fn nobody_sees_anothers_list() {
    let mut w = World::new("");
    w.friends(&["alice", "bob"]);
    w.chat("bob", "alice", "b1");
    let mut answers = vec![];
    for owner in ["alice@localhost", "nobody@localhost"] {
        let a = w.iq(
            "bob",
            "get",
            &format!("<inbox xmlns='{INBOX}' user='{owner}'/>"),
        );
        assert_eq!(a.attr("type"), Some("error"));
        answers.push(String::from(
            a.get_child("error", "jabber:component:accept").unwrap(),
        ));
    }
    assert_eq!(
        answers[0], answers[1],
        "the same answer whether the owner exists"
    );
    assert!(answers[0].contains("forbidden"));
    // Their own list, named or not, is theirs.
    assert_eq!(w.list("bob", "user='bob@localhost'"), w.list("bob", ""));
}

#[test]
fn subscribed_sessions_get_each_change_pushed() {
    let mut w = World::new("");
    w.friends(&["alice", "bob"]);
    let ok = w.iq("alice", "set", &format!("<subscribe xmlns='{INBOX}'/>"));
    assert_eq!(ok.attr("type"), Some("result"));
    let out = w.chat("bob", "alice", "b1");
    let push = out
        .iter()
        .find(|el| {
            el.attr("to") == Some("alice@localhost/res") && el.attr("type") == Some("headline")
        })
        .expect("a pushed update");
    let update = push.get_child("update", INBOX).unwrap();
    assert_eq!(update.attr("total-unread"), Some("1"));
    let conv = update.get_child("conversation", INBOX).unwrap();
    assert_eq!(conv.attr("unread"), Some("1"));
    // Her read: pushed too, with the count after it.
    let out = w.displayed("alice", "bob", "b1");
    let push = out
        .iter()
        .find(|el| el.attr("to") == Some("alice@localhost/res"))
        .expect("a pushed update");
    assert_eq!(
        push.get_child("update", INBOX)
            .unwrap()
            .attr("total-unread"),
        Some("0")
    );
    w.iq("alice", "set", &format!("<unsubscribe xmlns='{INBOX}'/>"));
    let out = w.chat("bob", "alice", "b2");
    assert!(
        out.iter()
            .all(|el| el.attr("to") != Some("alice@localhost/res")),
        "no push after unsubscribing: {out:?}"
    );
}

#[test]
fn a_session_that_goes_away_gets_no_more_updates() {
    let mut w = World::new("");
    w.friends(&["alice", "bob"]);
    let subscribe = |w: &mut World, res: &str| {
        let out = w.send(&format!(
            "<iq type='set' id='s' from='alice@localhost/{res}' to='chat.localhost'><subscribe xmlns='{INBOX}'/></iq>"
        ));
        assert_eq!(out[0].attr("type"), Some("result"), "{out:?}");
    };
    let pushed = |out: &[Element], res: &str| {
        out.iter().any(|el| {
            el.attr("to") == Some(&format!("alice@localhost/{res}"))
                && el.attr("type") == Some("headline")
        })
    };
    subscribe(&mut w, "res");
    subscribe(&mut w, "other");
    let out = w.chat("bob", "alice", "b1");
    assert!(pushed(&out, "res") && pushed(&out, "other"), "{out:?}");
    // Its server tells the tracked addresses of its contacts that it left;
    // a session that comes later on the same resource never asked.
    w.send("<presence type='unavailable' from='alice@localhost/res' to='bob\\40localhost@chat.localhost'/>");
    assert_eq!(w.tm.inbox().subscribed_sessions(), 1);
    let out = w.chat("bob", "alice", "b2");
    assert!(!pushed(&out, "res") && pushed(&out, "other"), "{out:?}");
    // Or the service itself, which the session sent its presence to.
    w.send("<presence type='unavailable' from='alice@localhost/other' to='chat.localhost'/>");
    assert_eq!(w.tm.inbox().subscribed_sessions(), 0);
    let out = w.chat("bob", "alice", "b3");
    assert!(!pushed(&out, "res") && !pushed(&out, "other"), "{out:?}");
}

#[test]
fn malformed_requests_get_clear_errors() {
    let mut w = World::new("");
    for payload in [
        format!("<inbox xmlns='{INBOX}' unread-only='maybe'/>"),
        format!(
            "<inbox xmlns='{INBOX}'><set xmlns='http://jabber.org/protocol/rsm'><after>x</after></set></inbox>"
        ),
        format!("<frobnicate xmlns='{INBOX}'/>"),
    ] {
        let a = w.iq("alice", "get", &payload);
        assert_eq!(a.attr("type"), Some("error"), "{payload}");
        assert!(
            String::from(&a).contains("bad-request"),
            "{}",
            String::from(&a)
        );
    }
}

/// The story of xep/inbox.md, up to its first query: who wrote what when.
fn story() -> World {
    let mut w = World::new(TEAM);
    w.friends(&["alice", "bob", "carol"]);
    w.grant("dave", "alice", true);
    w.grant("alice", "dave", true);
    for u in ["alice", "bob", "carol"] {
        w.join(u);
    }
    // Alice is away for a while: dave tries to reach her twice.
    w.send_at(
        "2026-11-20T09:50:00.000Z",
        "<presence type='unavailable' from='alice@localhost/res' to='dave\\40localhost@chat.localhost'/>",
    );
    w.chat_at("2026-11-20T09:52:00.000Z", "dave", "alice", "d1");
    w.chat_at("2026-11-20T09:55:00.000Z", "dave", "alice", "d2");
    w.send_at(
        "2026-11-20T09:58:00.000Z",
        "<presence from='alice@localhost/res' to='dave\\40localhost@chat.localhost'/>",
    );
    w.chat_at("2026-11-20T10:00:00.000Z", "bob", "alice", "b1");
    w.chat_at("2026-11-20T10:01:00.000Z", "bob", "alice", "b2");
    w.chat_at("2026-11-20T10:02:00.000Z", "bob", "alice", "b3");
    w.chat_at("2026-11-20T10:04:00.000Z", "alice", "bob", "a1");
    w.send_at(
        "2026-11-20T10:05:00.000Z",
        "<message type='groupchat' id='r1' from='carol@localhost/res' to='team@chat.localhost'><body>standup?</body></message>",
    );
    w.chat_at("2026-11-20T10:06:00.000Z", "carol", "alice", "c1");
    w.send_at(
        "2026-11-20T10:07:00.000Z",
        "<message type='chat' from='bob@localhost/res' to='alice\\40localhost@chat.localhost'><displayed xmlns='urn:xmpp:chat-markers:0' id='a1'/></message>",
    );
    w.chat_at("2026-11-20T10:07:30.000Z", "bob", "alice", "b4");
    w.now = millis("2026-11-20T10:08:00.000Z");
    w
}

/// xep/inbox.md, example by example, compared by value.
#[test]
fn xep_inbox_examples_are_what_tidemark_says() {
    let doc = XepDoc::load("inbox.md");
    let mut w = story();
    let session = [Varies {
        path: "iq/command",
        attr: "sessionid",
        why: "a fresh session id, from the clock",
    }];
    let ask = |w: &mut World, id: &str, type_: &str, varies: &[Varies]| {
        let request = doc.example("iq", type_, Some(id));
        let out = w.send(&String::from(&request.el));
        let [answer] = &out[..] else {
            panic!("{id}: one answer expected, got {out:?}")
        };
        let kind = if answer.attr("type") == Some("error") {
            "error"
        } else {
            "result"
        };
        doc.example("iq", kind, Some(id))
            .assert_answer(id, answer, varies);
    };
    ask(&mut w, "inbox-1", "get", &[]);
    ask(&mut w, "inbox-2", "get", &[]);
    ask(&mut w, "inbox-3", "get", &[]);
    ask(&mut w, "inbox-4", "set", &[]);
    ask(&mut w, "inbox-5", "set", &[]);
    let out = w.send_at(
        "2026-11-20T10:10:00.000Z",
        "<message type='chat' id='c2' from='carol@localhost/res' to='alice\\40localhost@chat.localhost'><body>lunch?</body><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
    );
    let push = out
        .iter()
        .find(|el| el.attr("type") == Some("headline"))
        .expect("the update pushed to alice's session");
    doc.only("message", "headline")
        .assert_answer("the pushed update", push, &[]);
    ask(&mut w, "inbox-6", "get", &[]);
    ask(&mut w, "cmd-1", "set", &session);
    ask(&mut w, "cmd-2", "set", &[]);
    ask(&mut w, "cmd-3", "set", &session);
    ask(&mut w, "cmd-4", "set", &[]);
    doc.assert_all_checked();
}

/// The `inbox` command pages 20 conversations at a time, newest first,
/// and `next` goes on where the page ended.
#[test]
fn the_inbox_command_pages_through_long_lists() {
    let mut w = World::new("");
    let users: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    for u in &users {
        w.grant(u, "alice", true);
        w.grant("alice", u, true);
        w.chat(u, "alice", "hi");
    }
    let run = |w: &mut World, attrs: &str, payload: &str| -> Element {
        let out = w.send(&format!(
            "<iq type='set' id='c' from='alice@localhost/res' to='chat.localhost'><command xmlns='{COMMANDS}' node='inbox' {attrs}>{payload}</command></iq>"
        ));
        out[0].get_child("command", COMMANDS).unwrap().clone()
    };
    let names = |cmd: &Element| -> Vec<String> {
        let x = cmd.get_child("x", DATA).unwrap();
        x.children()
            .filter(|c| c.name() == "item")
            .map(|item| {
                item.children()
                    .find(|f| f.attr("var") == Some("name"))
                    .unwrap()
                    .get_child("value", DATA)
                    .unwrap()
                    .text()
            })
            .collect()
    };
    let first = run(
        &mut w,
        "",
        &format!("<x xmlns='{DATA}' type='submit'><field var='search'><value/></field></x>"),
    );
    assert_eq!(first.attr("status"), Some("executing"));
    let page1 = names(&first);
    assert_eq!(page1.len(), 20);
    assert_eq!(page1[0], "u24", "newest first");
    let session = first.attr("sessionid").unwrap().to_owned();
    let second = run(&mut w, &format!("sessionid='{session}' action='next'"), "");
    assert_eq!(second.attr("status"), Some("completed"));
    let page2 = names(&second);
    assert_eq!(page2, ["u04", "u03", "u02", "u01", "u00"]);
}

/// Gajim 1.7.3 stops on multi-item result forms (xep/status-command.md):
/// a session whose caps say Gajim gets the `inbox` page as one form of
/// short fields; others get the table.
#[test]
fn gajim_gets_the_inbox_page_as_one_form_of_short_fields() {
    let mut w = World::new("");
    w.friends(&["alice", "bob"]);
    let info = "<query xmlns='http://jabber.org/protocol/disco#info'>\
        <identity category='client' type='pc' name='Gajim'/>\
        <feature var='urn:xmpp:receipts'/><feature var='urn:xmpp:chat-markers:0'/></query>";
    let ver = common::caps_ver(info);
    let out = w.send(&format!(
        "<presence from='alice@localhost/gajim' to='bob\\40localhost@chat.localhost'>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='{ver}'/></presence>"
    ));
    let question = out.iter().find(|e| e.name() == "iq").expect("asked");
    let id = question.attr("id").unwrap().to_owned();
    w.send(&format!(
        "<iq type='result' id='{id}' from='alice@localhost/gajim' to='chat.localhost'>{}</iq>",
        info.replace(
            "disco#info'>",
            &format!("disco#info' node='https://gajim.org#{ver}'>")
        )
    ));
    w.chat("bob", "alice", "b1");
    let page = |w: &mut World, resource: &str| -> Element {
        let out = w.send(&format!(
            "<iq type='set' id='c' from='alice@localhost/{resource}' to='chat.localhost'>\
             <command xmlns='{COMMANDS}' node='inbox'><x xmlns='{DATA}' type='submit'/></command></iq>"
        ));
        out[0].get_child("command", COMMANDS).unwrap().clone()
    };
    let gajim = page(&mut w, "gajim");
    let x = gajim.get_child("x", DATA).unwrap();
    assert!(
        x.get_child("reported", DATA).is_none(),
        "{}",
        String::from(&gajim)
    );
    let fields: Vec<(String, String)> = x
        .children()
        .filter(|c| c.name() == "field")
        .map(|f| {
            (
                f.attr("var").unwrap().to_owned(),
                f.get_child("value", DATA)
                    .map(Element::text)
                    .unwrap_or_default(),
            )
        })
        .collect();
    let vars: Vec<&str> = fields.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        vars,
        ["total-unread", "1-jid", "1-unread", "1-last-activity"]
    );
    assert_eq!(fields[0].1, "1");
    assert_eq!(fields[1].1, "bob (bob\\40localhost@chat.localhost)");
    assert_eq!(fields[2].1, "1");
    let other = page(&mut w, "res");
    assert!(
        other
            .get_child("x", DATA)
            .unwrap()
            .get_child("reported", DATA)
            .is_some()
    );
}
