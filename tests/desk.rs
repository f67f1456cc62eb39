//! Issue 11: team desks (xep/desk.md) through the router, no socket, on a
//! real sled store: the document's examples by value, what customers and
//! agents each see, assignment (manual and round-robin), done, pending,
//! snooze and waking, the counts of every view after each action, events,
//! predefined messages, statuses across the desk, and refusals.

use std::path::Path;
use std::sync::Arc;

use minidom::Element;
use tidemark::config::Config;
use tidemark::store::{SledStore, Store};

mod common;
use common::{Router, Varies, World, XepDoc, caps_ver, millis};

const DESK_NS: &str = "urn:tidemark:desk:0";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";
const DESK: &str = "support@chat.localhost";
const DAN: &str = "support\\2fdan\\40example.org@chat.localhost";
const ERIN: &str = "support\\2ferin\\40example.org@chat.localhost";

/// The desk of these tests, with `extra` lines in its section.
fn desk(extra: &str) -> String {
    format!(
        "[[desks]]\nname = \"support\"\nagents = [\"alice@localhost\", \"bob@localhost\", \"carol@localhost\"]\n{extra}\n\
         [[desks.predefined]]\ntitle = \"Greeting\"\ntext = \"Hello! An agent is looking at your message.\"\n"
    )
}

const START: &str = "2026-12-05T09:00:00.000Z";

impl World {
    fn new(extra: &str) -> Self {
        World(Router::new(&desk(extra), millis(START)))
    }

    fn on(store: Arc<dyn Store>, extra: &str) -> Self {
        World(Router::on(store, &desk(extra), millis(START)))
    }

    /// `agent` shares their presence with the desk and is online.
    fn online(&mut self, agent: &str) -> Vec<Element> {
        self.send(&format!(
            "<presence type='subscribed' from='{agent}@localhost' to='{DESK}'/>"
        ));
        self.send(&format!(
            "<presence from='{agent}@localhost/pc' to='{DESK}'/>"
        ))
    }

    fn offline(&mut self, agent: &str) -> Vec<Element> {
        self.send(&format!(
            "<presence type='unavailable' from='{agent}@localhost/pc' to='{DESK}'/>"
        ))
    }

    fn customer_says(&mut self, customer: &str, id: &str) -> Vec<Element> {
        self.send(&format!(
            "<message type='chat' id='{id}' from='{customer}@example.org/phone' to='{DESK}'><body>{id}</body>\
             <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        ))
    }

    fn agent_says(&mut self, agent: &str, conv: &str, id: &str) -> Vec<Element> {
        self.send(&format!(
            "<message type='chat' id='{id}' from='{agent}@localhost/pc' to='{conv}'><body>{id}</body>\
             <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        ))
    }

    fn iq(&mut self, agent: &str, type_: &str, payload: &str) -> Element {
        let out = self.send(&format!(
            "<iq type='{type_}' id='q' from='{agent}@localhost/pc' to='chat.localhost'>{payload}</iq>"
        ));
        out.into_iter()
            .find(|el| el.name() == "iq")
            .expect("an answer to the iq")
    }

    fn act(&mut self, agent: &str, action: &str, customer: &str, extra: &str) -> Vec<Element> {
        let out = self.send(&format!(
            "<iq type='set' id='a' from='{agent}@localhost/pc' to='chat.localhost'><{action} xmlns='{DESK_NS}' desk='support' customer='{customer}@example.org' {extra}/></iq>"
        ));
        assert_eq!(out[0].attr("type"), Some("result"), "{action}: {out:?}");
        out[1..].to_vec()
    }

    /// The counts `agent` sees: (view, conversations, unread).
    fn counts(&mut self, agent: &str) -> Vec<(String, u64, u64)> {
        let iq = self.iq(
            agent,
            "get",
            &format!("<view xmlns='{DESK_NS}' desk='support' name='all'/>"),
        );
        let view = iq
            .get_child("view", DESK_NS)
            .unwrap_or_else(|| panic!("{}", String::from(&iq)));
        view.children()
            .filter(|c| c.name() == "count")
            .map(|c| {
                (
                    c.attr("view").unwrap().to_owned(),
                    c.attr("conversations").unwrap().parse().unwrap(),
                    c.attr("unread").unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// The customers of a view, in order, with their states.
    fn view(&mut self, agent: &str, name: &str) -> Vec<(String, String)> {
        let iq = self.iq(
            agent,
            "get",
            &format!("<view xmlns='{DESK_NS}' desk='support' name='{name}'/>"),
        );
        iq.get_child("view", DESK_NS)
            .unwrap_or_else(|| panic!("{}", String::from(&iq)))
            .children()
            .filter(|c| c.name() == "conversation")
            .map(|c| {
                (
                    c.attr("customer").unwrap().to_owned(),
                    c.attr("state").unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// Counts as [`World::counts`] gives them, from (conversations, unread)
/// of mine, unassigned, all and done.
fn counts(v: [(u64, u64); 4]) -> Vec<(String, u64, u64)> {
    ["mine", "unassigned", "all", "done"]
        .iter()
        .zip(v)
        .map(|(n, (c, u))| (n.to_string(), c, u))
        .collect()
}

/// Who each stanza goes to, in order.
fn recipients(out: &[Element]) -> Vec<String> {
    out.iter()
        .map(|el| el.attr("to").unwrap_or_default().to_owned())
        .collect()
}

fn event_kinds(out: &[Element]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|el| {
            let ev = el.get_child("event", DESK_NS)?;
            Some((
                el.attr("to").unwrap().to_owned(),
                ev.attr("kind").unwrap().to_owned(),
            ))
        })
        .collect()
}

/// xep/desk.md, example by example, compared by value: erin wrote at 09:30
/// and alice took and answered her; dan writes at 10:00 while alice is
/// the only agent online; alice looks at the unassigned view, assigns dan
/// to bob at 10:02, and reads dan's history.
#[test]
fn xep_desk_examples_are_what_tidemark_says() {
    let doc = XepDoc::load("desk.md");
    let mut w = World::new("");
    w.online("alice");
    w.send_at(
        "2026-12-05T09:30:00.000Z",
        "<message type='chat' id='e1' from='erin@example.org/pc' to='support@chat.localhost'><body>hi</body></message>",
    );
    w.act("alice", "assign", "erin", "");
    w.agent_says("alice", ERIN, "a-e1");

    let first = doc.example_where("dan's message", |el| {
        el.attr("id") == Some("d1") && el.attr("to") == Some(DESK)
    });
    let written = String::from(&first.el);
    let out = w.send_at("2026-12-05T10:00:00.000Z", &written);
    let relayed = out
        .iter()
        .find(|el| el.attr("id") == Some("d1"))
        .expect("dan's message relayed to alice");
    doc.example_where("the relayed message", |el| {
        el.attr("id") == Some("d1") && el.attr("to") == Some("alice@localhost")
    })
    .assert_answer("dan's message as alice gets it", relayed, &[]);
    assert_eq!(
        event_kinds(&out),
        vec![("alice@localhost".into(), "opened".into())],
        "alice hears of the new conversation first"
    );

    let request = doc.example("iq", "get", Some("v1"));
    let out = w.send_at("2026-12-05T10:01:00.000Z", &String::from(&request.el));
    doc.example("iq", "result", Some("v1"))
        .assert_answer("the unassigned view", &out[0], &[]);

    w.online("bob");
    let request = doc.example("iq", "set", Some("a1"));
    let out = w.send_at("2026-12-05T10:02:00.000Z", &String::from(&request.el));
    assert_eq!(out[0].attr("type"), Some("result"), "{out:?}");
    assert!(out[0].children().next().is_none(), "an empty result");
    let to_bob = out
        .iter()
        .find(|el| {
            el.attr("to") == Some("bob@localhost") && el.get_child("event", DESK_NS).is_some()
        })
        .expect("bob hears he was given dan");
    doc.example_where("the event message", |el| {
        el.get_child("event", DESK_NS).is_some()
    })
    .assert_answer(
        "the assignment as bob sees it",
        to_bob,
        &[Varies {
            path: "message",
            attr: "id",
            why: "tidemark's own id, from the clock",
        }],
    );
    assert!(
        out.iter()
            .any(|el| el.attr("to") == Some("alice@localhost")),
        "alice, who acted, sees it too"
    );

    let request = doc.example("iq", "get", Some("h1"));
    let out = w.send_at("2026-12-05T10:03:00.000Z", &String::from(&request.el));
    doc.example("iq", "result", Some("h1"))
        .assert_answer("dan's history", &out[0], &[]);

    // Nobody online: the reject example.
    let mut empty = World::new("");
    let out = empty.send_at("2026-12-05T10:00:00.000Z", &written);
    doc.example("message", "error", Some("d1"))
        .assert_answer("nobody available", &out[0], &[]);
    doc.assert_all_checked();
}

/// Unassigned conversations reach every available agent from the
/// conversation's own address; once assigned, only the assignee.
#[test]
fn unassigned_reaches_every_available_agent_then_only_the_assignee() {
    let mut w = World::new("");
    w.online("alice");
    w.online("bob");
    let out = w.customer_says("dan", "m1");
    let relayed: Vec<&Element> = out
        .iter()
        .filter(|el| el.attr("id") == Some("m1"))
        .collect();
    assert_eq!(
        recipients(&relayed.iter().map(|e| (*e).clone()).collect::<Vec<_>>()),
        vec!["alice@localhost", "bob@localhost"],
        "carol is offline"
    );
    assert!(relayed.iter().all(|el| el.attr("from") == Some(DAN)));
    w.act("bob", "assign", "dan", "");
    let out = w.customer_says("dan", "m2");
    let relayed: Vec<String> = out
        .iter()
        .filter(|el| el.attr("id") == Some("m2"))
        .map(|el| el.attr("to").unwrap().to_owned())
        .collect();
    assert_eq!(relayed, vec!["bob@localhost"]);
    // The assignee gone: everyone available sees it, so nobody misses it.
    w.offline("bob");
    let out = w.customer_says("dan", "m3");
    let relayed: Vec<String> = out
        .iter()
        .filter(|el| el.attr("id") == Some("m3"))
        .map(|el| el.attr("to").unwrap().to_owned())
        .collect();
    assert_eq!(relayed, vec!["alice@localhost"]);
}

/// Receipts and markers cross the desk both ways, and the customer only
/// ever sees the desk's address.
#[test]
fn statuses_cross_the_desk_and_agents_stay_hidden() {
    let mut w = World::new("");
    w.online("alice");
    w.online("bob");
    w.customer_says("dan", "m1");
    let out = w.send(&format!(
        "<message from='bob@localhost/pc' to='{DAN}'><received xmlns='urn:xmpp:receipts' id='m1'/></message>"
    ));
    assert_eq!(recipients(&out), vec!["dan@example.org"]);
    assert_eq!(out[0].attr("from"), Some(DESK));
    assert!(out[0].get_child("received", "urn:xmpp:receipts").is_some());
    let out = w.send(&format!(
        "<message from='alice@localhost/pc' to='{DAN}'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>"
    ));
    assert_eq!(out[0].attr("from"), Some(DESK));
    assert!(
        out[0]
            .get_child("displayed", "urn:xmpp:chat-markers:0")
            .is_some()
    );

    let out = w.agent_says("alice", DAN, "r1");
    assert_eq!(recipients(&out), vec!["dan@example.org"]);
    assert_eq!(
        out[0].attr("from"),
        Some(DESK),
        "the customer sees the desk"
    );
    assert_eq!(out[0].attr("id"), Some("r1"));
    let out = w.send(&format!(
        "<message from='dan@example.org/phone' to='{DESK}'><received xmlns='urn:xmpp:receipts' id='r1'/></message>"
    ));
    assert_eq!(
        recipients(&out),
        vec!["alice@localhost"],
        "to the agent who wrote"
    );
    assert_eq!(out[0].attr("from"), Some(DAN));
    w.send(&format!(
        "<message from='dan@example.org/phone' to='{DESK}'><displayed xmlns='urn:xmpp:chat-markers:0' id='r1'/></message>"
    ));
    // Any agent may ask; the customer asks at the desk's address.
    let status = |w: &mut World, who: &str, conv: &str, id: &str| -> Element {
        let out = w.send(&format!(
            "<iq type='get' id='s' from='{who}' to='chat.localhost'><status xmlns='urn:tidemark:status:0' conversation='{conv}' id='{id}'/></iq>"
        ));
        out[0].clone()
    };
    let summary = |answer: &Element| -> Element {
        let st = answer
            .get_child("status", "urn:tidemark:status:0")
            .unwrap_or_else(|| panic!("{}", String::from(answer)))
            .clone();
        assert_eq!(st.attr("summary"), Some("read"), "{}", String::from(answer));
        st
    };
    summary(&status(&mut w, "bob@localhost/pc", DAN, "r1"));
    let st = summary(&status(&mut w, "dan@example.org/phone", DESK, "m1"));
    let recipient = st.children().next().unwrap();
    assert_eq!(recipient.attr("jid"), Some(DESK), "no agent's JID");
    let stranger = status(&mut w, "eve@localhost/pc", DAN, "r1");
    assert_eq!(stranger.attr("type"), Some("error"));
    assert!(String::from(&stranger).contains("forbidden"));
}

/// The counts of every view follow each action, without a scan.
#[test]
fn counts_follow_every_action() {
    let mut w = World::new("");
    w.online("alice");
    w.online("bob");
    w.customer_says("dan", "d1");
    w.customer_says("erin", "e1");
    assert_eq!(w.counts("alice"), counts([(0, 0), (2, 2), (2, 2), (0, 0)]));
    w.act("alice", "assign", "dan", "");
    assert_eq!(w.counts("alice"), counts([(1, 1), (1, 1), (2, 2), (0, 0)]));
    assert_eq!(w.counts("bob"), counts([(0, 0), (1, 1), (2, 2), (0, 0)]));
    // alice reads dan's message: nothing unread there any more.
    w.send(&format!(
        "<message from='alice@localhost/pc' to='{DAN}'><displayed xmlns='urn:xmpp:chat-markers:0' id='d1'/></message>"
    ));
    assert_eq!(w.counts("alice"), counts([(1, 0), (1, 1), (2, 1), (0, 0)]));
    w.act("alice", "assign", "erin", "to='bob@localhost'");
    w.act("alice", "done", "dan", "");
    assert_eq!(w.counts("alice"), counts([(0, 0), (0, 0), (1, 1), (1, 0)]));
    assert_eq!(w.counts("bob"), counts([(1, 1), (0, 0), (1, 1), (1, 0)]));
    assert_eq!(
        w.view("alice", "done"),
        vec![("dan@example.org".into(), "done".into())]
    );
    // dan writes again: reopened, still alice's, unread.
    let out = w.customer_says("dan", "d2");
    assert!(
        event_kinds(&out).contains(&("alice@localhost".into(), "reopened".into())),
        "{out:?}"
    );
    assert_eq!(w.counts("alice"), counts([(1, 1), (0, 0), (2, 2), (0, 0)]));
    w.act("bob", "pending", "erin", "");
    w.act("bob", "assign", "erin", "to=''");
    assert_eq!(
        w.view("bob", "unassigned"),
        vec![("erin@example.org".into(), "pending".into())]
    );
    // Latest first.
    assert_eq!(
        w.view("bob", "all"),
        vec![
            ("dan@example.org".into(), "open".into()),
            ("erin@example.org".into(), "pending".into())
        ]
    );
    // An action that changes nothing records nothing.
    assert!(w.act("bob", "pending", "erin", "").is_empty());
}

/// Round-robin assigns new conversations in the config's order among the
/// agents available, as automation.
#[test]
fn round_robin_goes_round_the_available_agents() {
    let mut w = World::new("assignment = \"round-robin\"");
    w.online("alice");
    w.online("carol");
    let mut given = vec![];
    for c in ["c1", "c2", "c3"] {
        let out = w.customer_says(c, "hello");
        let assigned: Vec<String> = out
            .iter()
            .filter_map(|el| {
                let ev = el.get_child("event", DESK_NS)?;
                (ev.attr("kind") == Some("assigned") && ev.attr("by") == Some("automation"))
                    .then(|| ev.attr("to").unwrap().to_owned())
            })
            .collect();
        given.push(assigned[0].clone());
        let relayed: Vec<String> = out
            .iter()
            .filter(|el| el.attr("id") == Some("hello"))
            .map(|el| el.attr("to").unwrap().to_owned())
            .collect();
        assert_eq!(
            relayed,
            vec![assigned[0].clone()],
            "only the assignee gets it"
        );
    }
    assert_eq!(
        given,
        vec!["alice@localhost", "carol@localhost", "alice@localhost"]
    );
}

/// A snoozed conversation comes back by itself when its time comes, or
/// when the customer writes first.
#[test]
fn snooze_wakes_by_time_and_by_the_customer() {
    let mut w = World::new("");
    w.online("alice");
    w.customer_says("dan", "d1");
    w.customer_says("erin", "e1");
    w.act("alice", "assign", "dan", "");
    w.act("alice", "assign", "erin", "");
    let until = w.now + 60_000;
    let until_text = tidemark::stanza::xep0082(until);
    let out = w.act("alice", "snooze", "dan", &format!("until='{until_text}'"));
    assert_eq!(
        event_kinds(&out),
        vec![("alice@localhost".into(), "snoozed".into())]
    );
    w.act("alice", "snooze", "erin", &format!("until='{until_text}'"));
    assert_eq!(w.view("alice", "mine")[0].1, "snoozed");
    // erin writes before the time: back at once.
    let out = w.customer_says("erin", "e2");
    assert!(event_kinds(&out).contains(&("alice@localhost".into(), "unsnoozed".into())));
    assert!(w.tick_at(until - 1).is_empty(), "not yet");
    let out = w.tick_at(until);
    assert_eq!(
        event_kinds(&out),
        vec![("alice@localhost".into(), "unsnoozed".into())]
    );
    assert!(
        out[0]
            .get_child("body", "jabber:component:accept")
            .is_some_and(|b| b.text() == "Back from snooze (automation)")
    );
    assert!(w.tick_at(until + 1000).is_empty(), "once");
    let states: Vec<String> = w
        .view("alice", "mine")
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(states, vec!["open", "open"]);
    // In the past, or too far ahead: refused.
    let out = w.send(&format!(
        "<iq type='set' id='x' from='alice@localhost/pc' to='chat.localhost'><snooze xmlns='{DESK_NS}' desk='support' customer='dan@example.org' until='2020-01-01T00:00:00Z'/></iq>"
    ));
    assert_eq!(out[0].attr("type"), Some("error"));
}

/// The predefined command on a conversation's address offers the titles
/// and sends the chosen text to the customer as the desk, recorded as the
/// agent's.
#[test]
fn predefined_messages_go_to_the_customer() {
    let mut w = World::new("");
    w.online("alice");
    w.customer_says("dan", "d1");
    let out = w.send(&format!(
        "<iq type='set' id='p1' from='alice@localhost/pc' to='{DAN}'><command xmlns='{COMMANDS}' node='predefined' action='execute'/></iq>"
    ));
    let cmd = out[0].get_child("command", COMMANDS).expect("a form");
    let x = cmd.get_child("x", DATA).unwrap();
    let field = x
        .children()
        .find(|f| f.attr("var") == Some("message"))
        .unwrap();
    let options: Vec<String> = field
        .children()
        .filter(|c| c.name() == "option")
        .map(|o| o.attr("label").unwrap().to_owned())
        .collect();
    assert_eq!(options, vec!["Greeting"]);
    let session = cmd.attr("sessionid").unwrap().to_owned();
    let out = w.send(&format!(
        "<iq type='set' id='p2' from='alice@localhost/pc' to='{DAN}'><command xmlns='{COMMANDS}' node='predefined' sessionid='{session}'>\
         <x xmlns='{DATA}' type='submit'><field var='message'><value>Greeting</value></field></x></command></iq>"
    ));
    assert_eq!(out[0].attr("type"), Some("result"));
    let sent = &out[1];
    assert_eq!(sent.attr("to"), Some("dan@example.org"));
    assert_eq!(sent.attr("from"), Some(DESK));
    assert_eq!(
        sent.get_child("body", "jabber:component:accept")
            .unwrap()
            .text(),
        "Hello! An agent is looking at your message."
    );
    let id = sent.attr("id").unwrap().to_owned();
    let out = w.send(&format!(
        "<message from='dan@example.org/phone' to='{DESK}'><received xmlns='urn:xmpp:receipts' id='{id}'/></message>"
    ));
    assert_eq!(
        recipients(&out),
        vec!["alice@localhost"],
        "the receipt reaches alice"
    );
}

/// The `desk` command answers with every view's counts and the view's rows.
#[test]
fn the_desk_command_shows_counts_and_rows() {
    let mut w = World::new("");
    w.online("alice");
    w.customer_says("dan", "d1");
    let out = w.send(&format!(
        "<iq type='set' id='c1' from='alice@localhost/pc' to='chat.localhost'><command xmlns='{COMMANDS}' node='desk' action='execute'>\
         <x xmlns='{DATA}' type='submit'><field var='view'><value>unassigned</value></field></x></command></iq>"
    ));
    let cmd = out[0].get_child("command", COMMANDS).unwrap();
    assert_eq!(cmd.attr("status"), Some("completed"));
    let x = cmd.get_child("x", DATA).unwrap();
    let value = |var: &str| {
        x.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", DATA))
            .map(|v| v.text())
    };
    assert_eq!(value("count-unassigned").as_deref(), Some("1/1"));
    assert_eq!(value("count-mine").as_deref(), Some("0/0"));
    assert_eq!(value("count-all").as_deref(), Some("1/1"));
    assert_eq!(value("count-done").as_deref(), Some("0/0"));
    let reported: Vec<&str> = x
        .get_child("reported", DATA)
        .unwrap()
        .children()
        .map(|f| f.attr("var").unwrap())
        .collect();
    for needed in [
        "jid",
        "name",
        "assignee",
        "state",
        "unread",
        "last-activity",
    ] {
        assert!(reported.contains(&needed), "{needed} reported");
    }
    let items: Vec<&Element> = x.children().filter(|c| c.name() == "item").collect();
    assert_eq!(items.len(), 1);
    // Not an agent: refused.
    let out = w.send(&format!(
        "<iq type='set' id='c2' from='eve@localhost/pc' to='chat.localhost'><command xmlns='{COMMANDS}' node='desk' action='execute'/></iq>"
    ));
    assert_eq!(out[0].attr("type"), Some("error"));
    assert!(String::from(&out[0]).contains("forbidden"));
}

/// Writing into a conversation: only its desk's agents, only where a
/// customer wrote; acks from others change nothing.
#[test]
fn strangers_and_unknown_conversations_are_refused() {
    let mut w = World::new("");
    w.online("alice");
    w.customer_says("dan", "d1");
    let out = w.agent_says("eve", DAN, "x1");
    assert_eq!(out[0].attr("type"), Some("error"));
    assert!(String::from(&out[0]).contains("forbidden"), "{out:?}");
    let out = w.agent_says("alice", ERIN, "x2");
    assert_eq!(out[0].attr("type"), Some("error"));
    assert!(String::from(&out[0]).contains("item-not-found"), "{out:?}");
    // eve's marker for dan's message: ignored, still unread.
    let out = w.send(&format!(
        "<message from='eve@localhost/pc' to='{DAN}'><displayed xmlns='urn:xmpp:chat-markers:0' id='d1'/></message>"
    ));
    assert!(out.is_empty());
    assert_eq!(w.counts("alice")[1], ("unassigned".into(), 1, 1));
    let iq = w.iq(
        "eve",
        "get",
        &format!("<view xmlns='{DESK_NS}' desk='support' name='all'/>"),
    );
    assert_eq!(iq.attr("type"), Some("error"));
    // A desk and a room cannot share a name.
    let both = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"s\"\n[storage]\npath = \"unused\"\n{}[[rooms]]\nname = \"support\"\nmembers = [\"alice@localhost\"]\n",
        desk("")
    );
    let err = Config::parse(&both, Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("both a room and a desk"), "{err}");
}

/// Everything acknowledged survives a restart on the same store: states,
/// assignments, events, counts, snoozes.
#[test]
fn the_desk_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let until;
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&path, 8 << 20).unwrap());
        let mut w = World::on(store.clone(), "");
        w.online("alice");
        w.customer_says("dan", "d1");
        w.customer_says("erin", "e1");
        w.act("alice", "assign", "dan", "");
        w.act("alice", "done", "erin", "");
        until = w.now + 60_000;
        w.act(
            "alice",
            "snooze",
            "dan",
            &format!("until='{}'", tidemark::stanza::xep0082(until)),
        );
        store.flush().unwrap();
    }
    // sled lets go of its directory's lock when its last thread has.
    let mut tries = 0;
    let store: Arc<dyn Store> = loop {
        match SledStore::open(&path, 8 << 20) {
            Ok(s) => break Arc::new(s),
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let mut w = World::on(store, "");
    w.now = until - 30_000;
    w.online("alice");
    assert_eq!(w.counts("alice"), counts([(1, 1), (0, 0), (1, 1), (1, 1)]));
    let out = w.tick_at(until);
    assert_eq!(
        event_kinds(&out),
        vec![("alice@localhost".into(), "unsnoozed".into())]
    );
    let iq = w.iq(
        "alice",
        "get",
        &format!("<history xmlns='{DESK_NS}' desk='support' customer='dan@example.org'/>"),
    );
    let kinds: Vec<&str> = iq
        .get_child("history", DESK_NS)
        .unwrap()
        .children()
        .map(|e| e.attr("kind").unwrap())
        .collect();
    assert_eq!(kinds, vec!["opened", "assigned", "snoozed", "unsnoozed"]);
}

/// A client asks a contact's disco#info before it offers "Execute
/// command": a conversation's address says it runs commands, and lists
/// the actions to the desk's agents only.
#[test]
fn a_conversation_address_offers_its_commands_to_agents() {
    let mut w = World::new("");
    w.online("alice");
    w.customer_says("dan", "d1");
    let out = w.send(&format!(
        "<iq type='get' id='i' from='alice@localhost/pc' to='{DAN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let q = out[0]
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let identity = q
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(identity.attr("name"), Some("dan (support)"));
    assert!(q.children().any(|f| f.attr("var") == Some(COMMANDS)));
    let items = |w: &mut World, who: &str| -> Vec<String> {
        let out = w.send(&format!(
            "<iq type='get' id='c' from='{who}' to='{DAN}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>"
        ));
        out[0]
            .get_child("query", "http://jabber.org/protocol/disco#items")
            .unwrap()
            .children()
            .map(|i| i.attr("node").unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        items(&mut w, "alice@localhost/pc"),
        vec!["assign", "done", "pending", "snooze", "predefined"]
    );
    assert!(items(&mut w, "eve@localhost/pc").is_empty());
    // The done command there acts on dan's conversation at once.
    let out = w.send(&format!(
        "<iq type='set' id='d' from='alice@localhost/pc' to='{DAN}'><command xmlns='{COMMANDS}' node='done' action='execute'/></iq>"
    ));
    let cmd = out[0].get_child("command", COMMANDS).unwrap();
    assert_eq!(cmd.attr("status"), Some("completed"));
    assert_eq!(
        w.view("alice", "done"),
        vec![("dan@example.org".into(), "done".into())]
    );
}

/// A message refused while no agent was there still waits for an answer:
/// it counts as unread until an agent reads or answers.
#[test]
fn a_refused_message_counts_until_answered() {
    let mut w = World::new("");
    let out = w.customer_says("dan", "d1");
    assert_eq!(out[0].attr("type"), Some("error"));
    w.online("alice");
    assert_eq!(w.counts("alice")[1], ("unassigned".into(), 1, 1));
    let iq = w.iq(
        "alice",
        "get",
        &format!("<view xmlns='{DESK_NS}' desk='support' name='unassigned'/>"),
    );
    let row = iq
        .get_child("view", DESK_NS)
        .unwrap()
        .children()
        .find(|c| c.name() == "conversation")
        .unwrap()
        .clone();
    assert_eq!(row.attr("unread"), Some("1"));
    w.agent_says("alice", DAN, "sorry");
    assert_eq!(w.counts("alice")[1], ("unassigned".into(), 1, 0));
}

const NICK: &str = "http://jabber.org/protocol/nick";
const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// The name in a XEP-0172 PEP notification, if `el` is one.
fn pep_nick(el: &Element) -> Option<String> {
    let items = el
        .get_child("event", PUBSUB_EVENT)?
        .get_child("items", PUBSUB_EVENT)?;
    (items.attr("node") == Some(NICK)).then_some(())?;
    let item = items.get_child("item", PUBSUB_EVENT)?;
    Some(item.get_child("nick", NICK)?.text())
}

/// (from, to, what) of each message: the PEP name, or the body.
fn messages(out: &[Element]) -> Vec<(String, String, String)> {
    out.iter()
        .filter(|el| el.name() == "message")
        .map(|el| {
            let what = pep_nick(el)
                .map(|n| format!("name {n}"))
                .or_else(|| {
                    el.get_child("body", "jabber:component:accept")
                        .map(Element::text)
                })
                .unwrap_or_default();
            (
                el.attr("from").unwrap_or_default().to_owned(),
                el.attr("to").unwrap_or_default().to_owned(),
                what,
            )
        })
        .collect()
}

/// Gajim 1.7.3 names a contact only from its roster or a PEP notification
/// (the nick in the relayed message is not read; it showed
/// `support\2fdan\40localhost` everywhere under Xvfb): each agent's client
/// is told a conversation's name before its first message from it, once
/// per client that comes online.
#[test]
fn a_conversation_is_named_before_its_first_message_to_each_client() {
    let mut w = World::new("");
    w.online("alice");
    w.online("bob");
    let dan = |to: &str, what: &str| (DAN.to_owned(), format!("{to}@localhost"), what.to_owned());
    assert_eq!(
        messages(&w.customer_says("dan", "d1")),
        vec![
            dan("alice", "name dan (support)"),
            dan("alice", "New conversation from dan@example.org"),
            dan("bob", "name dan (support)"),
            dan("bob", "New conversation from dan@example.org"),
            dan("alice", "d1"),
            dan("bob", "d1"),
        ]
    );
    assert_eq!(
        messages(&w.customer_says("dan", "d2")),
        vec![dan("alice", "d2"), dan("bob", "d2")],
        "told once"
    );
    // Another client of alice's comes online: it may not know the name.
    w.send(&format!(
        "<presence from='alice@localhost/phone' to='{DESK}'/>"
    ));
    assert_eq!(
        messages(&w.customer_says("dan", "d3")),
        vec![
            dan("alice", "name dan (support)"),
            dan("alice", "d3"),
            dan("bob", "d3")
        ]
    );
    // An action's event, from the service's command: named the same way.
    w.offline("bob");
    w.online("bob");
    let out = w.act("alice", "assign", "dan", "to='bob@localhost'");
    assert_eq!(
        messages(&out),
        vec![
            dan("bob", "name dan (support)"),
            dan("bob", "Assigned to bob@localhost by alice@localhost"),
            dan("alice", "Assigned to bob@localhost by alice@localhost"),
        ]
    );
    // Another customer's conversation has its own name.
    let erin = messages(&w.customer_says("erin", "e1"));
    assert_eq!(
        erin[0],
        (
            ERIN.into(),
            "alice@localhost".into(),
            "name erin (support)".into()
        )
    );
    // No name for an address nobody wrote to, where only an error comes from.
    let out = w.agent_says(
        "alice",
        "support\\2fzoe\\40example.org@chat.localhost",
        "z1",
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("type"), Some("error"));
}

/// Gajim 1.7.3 keeps presence per resource and drops a presence from a bare
/// JID: a desk whose presence came from `support@chat.localhost` stayed
/// offline in its contact list. The desk's presence comes from a resource;
/// its subscription answers, as RFC 6121 has them, from the bare address.
#[test]
fn the_desk_presence_comes_from_a_resource() {
    let mut w = World::new("");
    let out = w.send(&format!(
        "<presence type='subscribe' id='s1' from='dan@example.org' to='{DESK}'/>"
    ));
    let got: Vec<(&str, Option<&str>)> = out
        .iter()
        .map(|el| (el.attr("from").unwrap(), el.attr("type")))
        .collect();
    assert_eq!(
        got,
        vec![
            (DESK, Some("subscribed")),
            ("support@chat.localhost/desk", Some("unavailable"))
        ]
    );
    let out = w.online("alice");
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].attr("from"), Some("support@chat.localhost/desk"));
    assert_eq!(out[0].attr("to"), Some("dan@example.org"));
    assert_eq!(out[0].attr("type"), None, "available");
    let out = w.send(&format!(
        "<presence type='probe' from='dan@example.org' to='{DESK}'/>"
    ));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].attr("from"), Some("support@chat.localhost/desk"));
    assert_eq!(out[0].attr("type"), None);
    let out = w.offline("alice");
    assert_eq!(out[0].attr("from"), Some("support@chat.localhost/desk"));
    assert_eq!(out[0].attr("type"), Some("unavailable"));
    // Whatever the customer's client makes of it, a message to that
    // resource reaches the desk.
    w.online("alice");
    let out = w.send(
        "<message type='chat' id='r1' from='dan@example.org/phone' to='support@chat.localhost/desk'><body>hi</body></message>",
    );
    assert!(
        out.iter()
            .any(|el| el.attr("id") == Some("r1") && el.attr("from") == Some(DAN)),
        "{out:?}"
    );
}

/// The `desk` command's answer depends on what the agent's client shows
/// (Gajim 1.7.3 stops at "Executing…" on a table: seen under Xvfb). An
/// agent with no tracked contact sends their caps only to the desk, so the
/// desk asks about them there.
#[test]
fn an_agent_on_gajim_gets_the_desk_view_as_one_form() {
    let mut w = World::new("");
    let info = "<query xmlns='http://jabber.org/protocol/disco#info'>\
        <identity category='client' type='pc' name='Gajim'/>\
        <feature var='urn:xmpp:receipts'/><feature var='urn:xmpp:chat-markers:0'/></query>";
    let ver = caps_ver(info);
    w.send(&format!(
        "<presence type='subscribed' from='alice@localhost' to='{DESK}'/>"
    ));
    let out = w.send(&format!(
        "<presence from='alice@localhost/gajim' to='{DESK}'>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='{ver}'/></presence>"
    ));
    let question = out
        .iter()
        .find(|e| e.name() == "iq")
        .expect("the desk asks what alice's client is");
    assert_eq!(question.attr("to"), Some("alice@localhost/gajim"));
    assert_eq!(question.attr("from"), Some("chat.localhost"));
    let id = question.attr("id").unwrap().to_owned();
    w.send(&format!(
        "<iq type='result' id='{id}' from='alice@localhost/gajim' to='chat.localhost'>{}</iq>",
        info.replace(
            "disco#info'>",
            &format!("disco#info' node='https://gajim.org#{ver}'>")
        )
    ));
    w.customer_says("dan", "d1");
    let run = |w: &mut World, resource: &str| -> Element {
        let out = w.send(&format!(
            "<iq type='set' id='c1' from='alice@localhost/{resource}' to='chat.localhost'><command xmlns='{COMMANDS}' node='desk' action='execute'>\
             <x xmlns='{DATA}' type='submit'><field var='view'><value>all</value></field></x></command></iq>"
        ));
        out[0]
            .get_child("command", COMMANDS)
            .and_then(|c| c.get_child("x", DATA))
            .expect("a form")
            .clone()
    };
    let x = run(&mut w, "gajim");
    assert!(
        x.get_child("reported", DATA).is_none(),
        "{}",
        String::from(&x)
    );
    assert!(
        !x.children().any(|c| c.name() == "item"),
        "{}",
        String::from(&x)
    );
    let header = x
        .children()
        .find(|f| f.attr("var") == Some("1-jid"))
        .and_then(|f| f.get_child("value", DATA))
        .map(Element::text);
    assert_eq!(
        header.as_deref(),
        Some("dan (dan@example.org)"),
        "the customer, not the escaped address"
    );
    // Another client of hers, whose caps the desk never saw: the table.
    let x = run(&mut w, "pc");
    assert!(
        x.get_child("reported", DATA).is_some(),
        "{}",
        String::from(&x)
    );
}

/// The desk's name is not a room's: a client joining a room of that name
/// is told so at once rather than waiting for an answer.
#[test]
fn joining_a_room_of_the_desks_name_is_refused() {
    let mut w = World::new("");
    let out = w.send(
        "<presence from='eve@localhost/pc' to='support@chat.localhost/eve'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].attr("type"), Some("error"));
    let text = String::from(&out[0]);
    assert!(
        text.contains("not-allowed") && text.contains("team desk"),
        "{text}"
    );
}

/// Anyone may subscribe to a desk and is answered, but what the desk keeps
/// of its subscribers is bounded: past the cap a subscriber is answered,
/// not kept, and still learns the desk's presence from a probe.
#[test]
fn a_desks_subscribers_are_bounded() {
    use tidemark::desk::MAX_WATCHERS_PER_DESK;
    let mut w = World::new("");
    w.online("alice");
    for i in 0..MAX_WATCHERS_PER_DESK + 3 {
        let out = w.send(&format!(
            "<presence type='subscribe' from='c{i}@example.org' to='{DESK}'/>"
        ));
        assert_eq!(out[0].attr("type"), Some("subscribed"), "{out:?}");
        assert_eq!(out[1].attr("type"), None, "available: alice is online");
    }
    let kept =
        w.tm.store()
            .presence_grants()
            .unwrap()
            .into_iter()
            .filter(|(contact, _)| contact == DESK)
            .count();
    assert_eq!(kept, MAX_WATCHERS_PER_DESK);
    // One past the cap: told when their server probes.
    let last = MAX_WATCHERS_PER_DESK + 2;
    let out = w.send(&format!(
        "<presence type='probe' from='c{last}@example.org' to='{DESK}'/>"
    ));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].attr("to"),
        Some(format!("c{last}@example.org").as_str())
    );
    // Who leaves makes room.
    w.send(&format!(
        "<presence type='unsubscribe' from='c0@example.org' to='{DESK}'/>"
    ));
    w.send(&format!(
        "<presence type='subscribe' from='c{last}@example.org' to='{DESK}'/>"
    ));
    assert!(
        w.tm.store()
            .presence_allowed(DESK, &format!("c{last}@example.org"))
            .unwrap()
    );
}

/// One server's users share a budget of new conversations: a server making
/// up JIDs cannot flood every agent's screen. Known customers go on, other
/// servers are not held up, the desk's own server is not limited, and the
/// budget refills.
#[test]
fn one_servers_new_conversations_are_bounded() {
    let config = format!(
        "{}\n[limits]\ndesk_openings_per_domain_per_minute = 3\n",
        desk("")
    );
    let mut w = World(Router::new(&config, millis(START)));
    w.online("alice");
    let at = w.now;
    let reached_alice = |out: &[Element]| {
        out.iter().any(|el| {
            el.attr("to") == Some("alice@localhost")
                && el.attr("type") == Some("chat")
                && el
                    .get_child("body", "jabber:component:accept")
                    .map(|b| b.text())
                    == Some("hi".into())
        })
    };
    let from = |user: &str, domain: &str, id: &str| -> Element {
        common::with_ns(&format!(
            "<message type='chat' id='{id}' from='{user}@{domain}/phone' to='{DESK}'><body>hi</body></message>"
        ))
        .parse()
        .unwrap()
    };
    for i in 0..3 {
        let out = w.handle_at(at, &from(&format!("c{i}"), "example.org", "m1"));
        assert!(reached_alice(&out), "{out:?}");
    }
    let refused = w.handle_at(at, &from("c3", "example.org", "m1"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].attr("type"), Some("error"));
    assert_eq!(refused[0].attr("to"), Some("c3@example.org/phone"));
    let text = String::from(&refused[0]);
    assert!(text.contains("resource-constraint"), "{text}");
    assert!(
        text.contains("too many new conversations from example.org"),
        "{text}"
    );
    // Nothing was recorded for it: no conversation in any view.
    assert!(
        w.tm.store()
            .desk_conversation("support", "c3@example.org")
            .unwrap()
            .is_none()
    );
    // A known customer of that server still gets through, and so do other
    // servers' and the desk's own server's new customers.
    let out = w.handle_at(at, &from("c0", "example.org", "m2"));
    assert!(reached_alice(&out), "{out:?}");
    let out = w.handle_at(at, &from("c9", "elsewhere.net", "m1"));
    assert!(reached_alice(&out), "{out:?}");
    for i in 0..5 {
        let out = w.handle_at(at, &from(&format!("staff{i}"), "localhost", "m1"));
        assert!(
            out.iter().all(|el| el.attr("type") != Some("error")),
            "{out:?}"
        );
    }
    // A minute on, the budget is back.
    let out = w.handle_at(at + 60_000, &from("c3", "example.org", "m1"));
    assert!(reached_alice(&out), "{out:?}");
}
