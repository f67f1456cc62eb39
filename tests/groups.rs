//! Group conversations through the router, no socket: joins, reflection with
//! stanza-ids, markers, "some read" / "all read", opt-out, membership.

use std::path::Path;
use std::sync::Arc;

use minidom::Element;
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::retention::Retention;
use tidemark::store::{SledStore, Store};

mod common;
use common::{NS, Router, Varies, World, XepDoc, millis};
const STATUS: &str = "urn:tidemark:status:0";
const ROOM: &str = "team@chat.localhost";

impl World {
    fn new(extra: &str) -> Self {
        World(Router::new(extra, 1_795_000_000_000))
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

    fn display(&mut self, user: &str, id: &str) -> Vec<Element> {
        self.send(&format!(
            "<message type='groupchat' from='{user}@localhost/res' to='{ROOM}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{id}'/></message>"
        ))
    }

    fn status(&mut self, user: &str, id: &str) -> Element {
        let out = self.send(&format!(
            "<iq type='get' id='q' from='{user}@localhost/res' to='chat.localhost'><status xmlns='{STATUS}' conversation='{ROOM}' id='{id}'/></iq>"
        ));
        out.into_iter().next().unwrap()
    }

    fn summary(&mut self, user: &str, id: &str) -> (String, Vec<(String, String)>) {
        let r = self.status(user, id);
        let s = r
            .get_child("status", STATUS)
            .unwrap_or_else(|| panic!("{}", String::from(&r)));
        let recipients = s
            .children()
            .map(|c| {
                (
                    c.attr("jid").unwrap().to_owned(),
                    c.attr("state").unwrap().to_owned(),
                )
            })
            .collect();
        (s.attr("summary").unwrap().to_owned(), recipients)
    }
}

fn to_of(out: &[Element]) -> Vec<String> {
    out.iter()
        .map(|e| e.attr("to").unwrap().to_owned())
        .collect()
}

fn stanza_id(msg: &Element) -> String {
    msg.get_child("stanza-id", "urn:xmpp:sid:0")
        .unwrap()
        .attr("id")
        .unwrap()
        .to_owned()
}

fn condition(el: &Element) -> Option<String> {
    el.get_child("error", NS)?
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
}

#[test]
fn the_first_join_creates_the_room_and_later_joiners_see_everyone() {
    let mut w = World::new("");
    let out = w.join("alice");
    let own = out.iter().find(|e| e.name() == "presence").unwrap();
    let codes: Vec<_> = own
        .get_child("x", "http://jabber.org/protocol/muc#user")
        .unwrap()
        .children()
        .filter_map(|c| c.attr("code"))
        .collect();
    assert!(
        codes.contains(&"110") && codes.contains(&"201"),
        "{codes:?}"
    );
    // The join ends with the subject, as XEP-0045 §7.2.16 wants.
    assert!(out.last().unwrap().has_child("subject", NS));

    let out = w.join("bob");
    let presences: Vec<_> = out.iter().filter(|e| e.name() == "presence").collect();
    // Alice's presence to bob, bob's to alice, bob's own.
    assert_eq!(presences.len(), 3);
    assert_eq!(presences[0].attr("from"), Some("team@chat.localhost/alice"));
    assert_eq!(presences[0].attr("to"), Some("bob@localhost/res"));
    let item = presences[0]
        .get_child("x", "http://jabber.org/protocol/muc#user")
        .and_then(|x| x.get_child("item", "http://jabber.org/protocol/muc#user"))
        .unwrap();
    assert_eq!(
        item.attr("jid"),
        Some("alice@localhost/res"),
        "real JIDs to members"
    );
    assert!(presences[0].has_child("occupant-id", "urn:xmpp:occupant-id:0"));
}

#[test]
fn a_nickname_in_use_is_a_conflict() {
    let mut w = World::new("");
    w.join("alice");
    let out = w.send(&format!(
        "<presence from='bob@localhost/res' to='{ROOM}/alice'/>"
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(condition(&out[0]).as_deref(), Some("conflict"));
}

#[test]
fn messages_are_reflected_to_everyone_with_the_rooms_stanza_id() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    w.join("carol");
    let out = w.send(&format!(
        "<message type='groupchat' id='a1' from='alice@localhost/res' to='{ROOM}'><body>hi</body>\
         <stanza-id xmlns='urn:xmpp:sid:0' id='spoof' by='{ROOM}'/><request xmlns='urn:xmpp:receipts'/></message>"
    ));
    let mut tos = to_of(&out);
    tos.sort();
    assert_eq!(
        tos,
        vec![
            "alice@localhost/res",
            "bob@localhost/res",
            "carol@localhost/res"
        ]
    );
    for m in &out {
        assert_eq!(m.attr("from"), Some("team@chat.localhost/alice"));
        assert_eq!(m.attr("id"), Some("a1"));
        let ids: Vec<_> = m
            .children()
            .filter(|c| c.is("stanza-id", "urn:xmpp:sid:0"))
            .collect();
        assert_eq!(ids.len(), 1, "the spoofed stanza-id is gone");
        assert_ne!(ids[0].attr("id"), Some("spoof"));
        assert!(m.has_child("markable", "urn:xmpp:chat-markers:0"));
        assert!(
            !m.has_child("request", "urn:xmpp:receipts"),
            "no receipts in groupchat"
        );
    }
}

#[test]
fn some_read_then_all_read_with_a_notice_to_the_sender() {
    let mut w = World::new("");
    for u in ["alice", "bob", "carol"] {
        w.join(u);
    }
    let sid = stanza_id(&w.say("alice", "a1")[0]);
    assert_eq!(
        w.summary("alice", "a1"),
        (
            "sent".into(),
            vec![
                ("bob@localhost".into(), "sent".into()),
                ("carol@localhost".into(), "sent".into())
            ]
        )
    );
    // Bob reads by stanza-id: reflected to all occupants.
    let out = w.display("bob", &sid);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out.iter()
            .all(|e| e.attr("from") == Some("team@chat.localhost/bob"))
    );
    let (summary, recipients) = w.summary("alice", "a1");
    assert_eq!(summary, "some-read");
    assert_eq!(recipients[0], ("bob@localhost".into(), "read".into()));
    let r = w.status("alice", "a1");
    let s = r.get_child("status", STATUS).unwrap();
    assert_eq!(
        (s.attr("read"), s.attr("recipients")),
        (Some("1"), Some("2"))
    );

    // Carol reads by the sender's id (older clients do): now all read, and
    // alice gets the notice.
    let out = w.display("carol", "a1");
    let notice = out
        .iter()
        .find(|e| e.has_child("all-read", STATUS))
        .expect("all-read notice");
    assert_eq!(notice.attr("to"), Some("alice@localhost"));
    assert_eq!(notice.attr("from"), Some(ROOM));
    let all = notice.get_child("all-read", STATUS).unwrap();
    assert_eq!(
        (all.attr("id"), all.attr("stanza-id")),
        (Some("a1"), Some(&*sid))
    );
    let r = w.status("alice", "a1");
    let s = r.get_child("status", STATUS).unwrap();
    assert_eq!(s.attr("summary"), Some("all-read"));
    assert!(s.attr("all-read").is_some());
}

#[test]
fn a_marker_covers_earlier_messages_and_a_late_one_changes_nothing() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    w.say("alice", "a1");
    w.say("alice", "a2");
    let sid3 = stanza_id(&w.say("alice", "a3")[0]);
    w.display("bob", &sid3);
    assert_eq!(w.summary("alice", "a1").0, "all-read");
    assert!(w.display("bob", "a1").is_empty(), "older marker ignored");
}

#[test]
fn markers_from_non_recipients_change_nothing() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    w.say("alice", "a1");
    // Dave never joined; carol joins after the message, so it was not sent to her.
    assert!(w.display("dave", "a1").is_empty());
    w.join("carol");
    assert!(w.display("carol", "a1").is_empty());
    // The sender cannot mark her own message.
    assert!(w.display("alice", "a1").is_empty());
    let (summary, recipients) = w.summary("alice", "a1");
    assert_eq!(summary, "sent");
    assert_eq!(recipients, vec![("bob@localhost".into(), "sent".into())]);
    // Nobody else may ask.
    let r = w.status("bob", "a1");
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));
}

#[test]
fn above_the_reflection_limit_markers_go_only_to_the_sender() {
    let mut w = World::new("[groups]\nmarker_reflection_limit = 2\n");
    for u in ["alice", "bob", "carol"] {
        w.join(u);
    }
    let sid = stanza_id(&w.say("alice", "a1")[0]);
    let out = w.display("bob", &sid);
    assert_eq!(to_of(&out), vec!["alice@localhost/res"]);
}

#[test]
fn a_member_who_turned_read_receipts_off_never_shows_as_read() {
    let mut w = World::new("");
    for u in ["alice", "bob", "carol"] {
        w.join(u);
    }
    let out = w.send(
        "<iq type='set' id='c1' from='carol@localhost/res' to='chat.localhost'>\
         <command xmlns='http://jabber.org/protocol/commands' node='read-receipts' action='execute'/></iq>",
    );
    let cmd = out[0]
        .get_child("command", "http://jabber.org/protocol/commands")
        .unwrap();
    assert_eq!(cmd.attr("status"), Some("executing"));
    let session = cmd.attr("sessionid").unwrap().to_owned();
    let out = w.send(&format!(
        "<iq type='set' id='c2' from='carol@localhost/res' to='chat.localhost'>\
         <command xmlns='http://jabber.org/protocol/commands' node='read-receipts' sessionid='{session}'>\
         <x xmlns='jabber:x:data' type='submit'><field var='send-read-receipts'><value>0</value></field></x>\
         </command></iq>"
    ));
    let cmd = out[0]
        .get_child("command", "http://jabber.org/protocol/commands")
        .unwrap();
    assert_eq!(cmd.attr("status"), Some("completed"));

    let sid = stanza_id(&w.say("alice", "a1")[0]);
    assert!(w.display("carol", &sid).is_empty(), "not reflected");
    let (_, recipients) = w.summary("alice", "a1");
    assert!(recipients.contains(&("carol@localhost".into(), "sent".into())));
    // Bob's read completes the group: carol, who hides her reads, is not waited for.
    let out = w.display("bob", &sid);
    assert!(out.iter().any(|e| e.has_child("all-read", STATUS)));
    let (summary, recipients) = w.summary("alice", "a1");
    assert_eq!(summary, "all-read", "the query agrees with the notice");
    assert!(recipients.contains(&("carol@localhost".into(), "sent".into())));
}

#[test]
fn the_all_read_notice_comes_after_the_frontier_was_rebuilt() {
    let mut w = World::new("");
    for u in ["alice", "bob", "carol"] {
        w.join(u);
    }
    let sid = stanza_id(&w.say("alice", "a1")[0]);
    w.display("bob", &sid);
    // A new member makes the room rebuild its frontier from the store.
    w.join("dave");
    let out = w.display("carol", &sid);
    assert!(
        out.iter().any(|e| e.has_child("all-read", STATUS)),
        "{out:?}"
    );
}

#[test]
fn a_fixed_member_list_keeps_others_out() {
    let mut w = World::new(
        "[[rooms]]\nname = \"team\"\nmembers = [\"alice@localhost\", \"bob@localhost\"]\n",
    );
    let out = w.join("eve");
    assert_eq!(condition(&out[0]).as_deref(), Some("registration-required"));
    w.join("alice");
    w.say("alice", "a1");
    // Bob is a member from the config even before he ever joined.
    let (_, recipients) = w.summary("alice", "a1");
    assert_eq!(recipients, vec![("bob@localhost".into(), "sent".into())]);
}

#[test]
fn history_comes_with_its_original_time() {
    let mut w = World::new("[groups]\nhistory = 2\n");
    w.join("alice");
    for id in ["a1", "a2", "a3"] {
        w.say("alice", id);
    }
    let out = w.join("bob");
    let history: Vec<_> = out
        .iter()
        .filter(|e| e.name() == "message" && e.has_child("body", NS))
        .collect();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].attr("id"), Some("a2"));
    assert!(history[0].has_child("delay", "urn:xmpp:delay"));
    assert!(history[0].has_child("stanza-id", "urn:xmpp:sid:0"));
}

#[test]
fn only_occupants_may_write_and_leaving_is_announced() {
    let mut w = World::new("");
    let out = w.say("alice", "a1");
    assert_eq!(condition(&out[0]).as_deref(), Some("not-acceptable"));
    w.join("alice");
    w.join("bob");
    let out = w.send(&format!(
        "<presence type='unavailable' from='bob@localhost/res' to='{ROOM}/bob'/>"
    ));
    let mut tos = to_of(&out);
    tos.sort();
    assert_eq!(tos, vec!["alice@localhost/res", "bob@localhost/res"]);
    assert!(out.iter().all(|p| p.attr("type") == Some("unavailable")));
    // Bob left the room but is still a member: a message reaches his status list.
    w.say("alice", "a2");
    let (_, recipients) = w.summary("alice", "a2");
    assert_eq!(recipients, vec![("bob@localhost".into(), "sent".into())]);
}

#[test]
fn a_self_ping_tells_a_client_whether_it_is_still_in_the_room() {
    let mut w = World::new("");
    let ping = |user: &str| {
        format!(
            "<iq type='get' id='p' from='{user}@localhost/res' to='{ROOM}/{user}'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
    };
    w.join("alice");
    let out = w.send(&ping("alice"));
    assert_eq!(out[0].attr("type"), Some("result"));
    // Not joined (or forgotten by a restart): not-acceptable makes the client rejoin.
    let out = w.send(&ping("bob"));
    assert_eq!(condition(&out[0]).as_deref(), Some("not-acceptable"));
}

#[test]
fn room_disco_announces_stanza_ids() {
    let mut w = World::new("");
    w.join("alice");
    let out = w.send(&format!(
        "<iq type='get' id='d' from='bob@localhost/res' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let features: Vec<_> = out[0]
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .children()
        .filter_map(|c| c.attr("var"))
        .collect();
    for f in [
        "http://jabber.org/protocol/muc",
        "urn:xmpp:sid:0",
        "urn:xmpp:occupant-id:0",
    ] {
        assert!(features.contains(&f), "{f} in {features:?}");
    }
}

/// Every XML example of xep/groups.md is what tidemark says, by value: the
/// test plays the document's story (alice, bob and carol in team, alice's
/// message a1, bob then carol reading it, carol turning read receipts off,
/// mallory refused) at the document's times and compares each answer with
/// the document's, element by element.
#[test]
fn xep_groups_examples_are_what_tidemark_says() {
    let doc = XepDoc::load("groups.md");
    let mut w = World::new("");
    for user in [
        "alice@localhost/phone",
        "bob@localhost/laptop",
        "carol@localhost/desk",
    ] {
        let nick = user.split('@').next().unwrap();
        w.send(&format!(
            "<presence from='{user}' to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
    }

    // §2 the subject that ends a join (the last stanza of bob's join; he
    // is in already, so a second session of his joins).
    let joined = w.send(&format!(
        "<presence from='bob@localhost/laptop2' to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    let mut subject = joined.last().expect("a join ends with the subject").clone();
    tidemark::stanza::set_attr(&mut subject, "to", "bob@localhost/laptop");
    doc.example_where("the subject nobody set", |el| {
        el.has_child("subject", "jabber:component:accept")
            && el.attr("from") == Some("team@chat.localhost/tidemark")
    })
    .assert_answer(
        "§2 the subject ending a join",
        &subject,
        &[Varies {
            path: "message/delay",
            attr: "stamp",
            why: "when this test's room was made, by its own clock",
        }],
    );
    w.send(&format!(
        "<presence type='unavailable' from='bob@localhost/laptop2' to='{ROOM}/bob'/>"
    ));

    // §2.1 alice, who made the room, sets its subject; bob is shown it,
    // and a later session of carol's gets it with its time.
    let change = doc.example_where("alice's subject change", |el| {
        el.attr("to") == Some(ROOM) && el.has_child("subject", "jabber:component:accept")
    });
    let out = w.handle_at(millis("2026-11-24T21:20:00.000Z"), &change.el);
    let to_bob = out
        .iter()
        .find(|m| m.attr("to") == Some("bob@localhost/laptop"))
        .expect("the change shown to bob");
    doc.example_where("the change as bob gets it", |el| {
        el.attr("to") == Some("bob@localhost/laptop")
            && el.has_child("subject", "jabber:component:accept")
            && el.attr("from") == Some("team@chat.localhost/alice")
    })
    .assert_answer("§2.1 the subject change", to_bob, &[]);
    let joined = w.send(&format!(
        "<presence from='carol@localhost/desk2' to='{ROOM}/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    let mut subject = joined.last().expect("a join ends with the subject").clone();
    tidemark::stanza::set_attr(&mut subject, "to", "carol@localhost/desk");
    doc.example_where("the subject as a joiner gets it", |el| {
        el.attr("to") == Some("carol@localhost/desk")
            && el.has_child("subject", "jabber:component:accept")
    })
    .assert_answer("§2.1 the subject ending a join", &subject, &[]);
    w.send(&format!(
        "<presence type='unavailable' from='carol@localhost/desk2' to='{ROOM}/carol'/>"
    ));

    // §2 the room's disco#info.
    let got = w.send(&format!(
        "<iq type='get' id='rd1' from='bob@localhost/laptop' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    assert_eq!(got.len(), 1);
    doc.example("iq", "result", Some("rd1"))
        .assert_answer("§2 room disco#info", &got[0], &[]);

    // §2 alice's message, reflected to bob; her receipt request is dropped.
    let reflected = w.send_at(
        "2026-11-24T21:20:15.399Z",
        &format!(
            "<message type='groupchat' id='a1' from='alice@localhost/phone' to='{ROOM}'>\
             <body>Stand-up in five minutes</body><request xmlns='urn:xmpp:receipts'/></message>"
        ),
    );
    let to_bob = reflected
        .iter()
        .find(|m| m.attr("to") == Some("bob@localhost/laptop"))
        .expect("reflected to bob");
    // The room's stanza-id is the store's next sequence number, so the
    // document's 1041 stands for whatever this run's room assigned; every
    // later example naming 1041 must then name that same one.
    let sid = stanza_id(to_bob);
    doc.example("message", "groupchat", Some("a1"))
        .with("1041", &sid)
        .assert_answer("§2 reflected message", to_bob, &[]);

    // §3 bob's marker, reflected to alice naming the stanza-id; then §5
    // alice's query: bob read, carol not yet.
    let to_room =
        |el: &Element| el.name() == "message" && el.attr("to") == Some("team@chat.localhost");
    let marker = doc
        .example_where("bob's marker to the room", |el| {
            to_room(el) && el.has_child("displayed", "urn:xmpp:chat-markers:0")
        })
        .with("1041", &sid);
    let out = w.handle_at(millis("2026-11-24T21:20:15.440Z"), &marker.el);
    let to_alice = out
        .iter()
        .find(|m| m.attr("to") == Some("alice@localhost/phone"))
        .expect("bob's marker reflected to alice");
    doc.example_where("bob's marker as alice gets it", |el| {
        el.attr("from") == Some("team@chat.localhost/bob")
            && el.has_child("displayed", "urn:xmpp:chat-markers:0")
    })
    .with("1041", &sid)
    .assert_answer("§3 reflected marker", to_alice, &[]);
    let ask = doc.example("iq", "get", Some("q4"));
    let got = w.send_el(&ask.el);
    assert_eq!(got.len(), 1);
    doc.example("iq", "result", Some("q4"))
        .assert_answer("§5 room status query", &got[0], &[]);

    // §4 carol reads it too: the notice to alice.
    let out = w.send_at(
        "2026-11-24T21:20:31.207Z",
        &format!(
            "<message type='groupchat' from='carol@localhost/desk' to='{ROOM}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{sid}'/></message>"
        ),
    );
    let notices: Vec<_> = out
        .iter()
        .filter(|e| e.has_child("all-read", STATUS))
        .collect();
    assert_eq!(notices.len(), 1, "{out:?}");
    doc.only("message", "headline")
        .with("1041", &sid)
        .assert_answer(
            "§4 all-read notice",
            notices[0],
            &[Varies {
                path: "message",
                attr: "id",
                why: "tidemark's own stanza id, made from the wall clock",
            }],
        );

    // §6 carol turns read receipts off.
    let got = w.send_el(&doc.example("iq", "set", Some("c1")).el);
    assert_eq!(got.len(), 1);
    // The session id is tidemark's own (from the wall clock): the document's
    // s1 stands for it, and carol's answer must carry it back.
    let session = got[0]
        .get_child("command", "http://jabber.org/protocol/commands")
        .and_then(|c| c.attr("sessionid"))
        .expect("a session id")
        .to_owned();
    doc.example("iq", "result", Some("c1"))
        .with("s1", &session)
        .assert_answer("§6 the command's form", &got[0], &[]);
    let submit = doc.example("iq", "set", Some("c2")).with("s1", &session);
    let got = w.send_el(&submit.el);
    assert_eq!(got.len(), 1);
    doc.example("iq", "result", Some("c2"))
        .with("s1", &session)
        .assert_answer("§6 the command completed", &got[0], &[]);

    // §2 a graceful stop: every session is told, bob's as the document shows.
    let bye = w.tm.shutdown().apply(&**w.tm.store()).unwrap();
    let to_bob = bye
        .iter()
        .find(|p| p.attr("to") == Some("bob@localhost/laptop"))
        .expect("bob is told");
    doc.example("presence", "unavailable", None).assert_answer(
        "§2 the service shuts down",
        to_bob,
        &[],
    );

    // §8 a join that would create a room for a user of another domain.
    let mut w = World::new("");
    let got = w.send(&format!(
        "<presence from='mallory@evil.example/pc' to='{ROOM}/mallory'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    assert_eq!(got.len(), 1);
    doc.example("presence", "error", None)
        .assert_answer("§8 room creation refused", &got[0], &[]);

    doc.assert_all_checked();
}

#[test]
fn a_bad_read_receipts_answer_is_refused_and_changes_nothing() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    let out = w.send(
        "<iq type='set' id='c' from='bob@localhost/res' to='chat.localhost'>\
         <command xmlns='http://jabber.org/protocol/commands' node='read-receipts' sessionid='s'>\
         <x xmlns='jabber:x:data' type='submit'><field var='send-read-receipts'><value>maybe</value></field></x>\
         </command></iq>",
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
    let out = w.send(
        "<iq type='set' id='c' from='bob@localhost/res' to='chat.localhost'>\
         <command xmlns='http://jabber.org/protocol/commands' node='no-such-command'/></iq>",
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
    // Bob still sends read receipts: his marker is reflected.
    let sid = stanza_id(&w.say("alice", "a1")[0]);
    assert!(!w.display("bob", &sid).is_empty());
}

fn join_as(w: &mut World, jid: &str, room: &str) -> Vec<Element> {
    let nick = jid.split('@').next().unwrap();
    w.send(&format!(
        "<presence from='{jid}/res' to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
}

fn leave(w: &mut World, user: &str) -> Vec<Element> {
    w.send(&format!(
        "<presence type='unavailable' from='{user}@localhost/res' to='{ROOM}/{user}'/>"
    ))
}

fn error_of(el: &Element) -> (String, String, String) {
    let err = el.get_child("error", NS).unwrap();
    (
        err.attr("type").unwrap_or_default().to_owned(),
        condition(el).unwrap_or_default(),
        err.get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas")
            .map(|t| t.text())
            .unwrap_or_default(),
    )
}

fn disco_features(w: &mut World, room: &str) -> Vec<String> {
    let out = w.send(&format!(
        "<iq type='get' id='d' from='alice@localhost/res' to='{room}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    out[0]
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .map(|q| {
            q.children()
                .filter_map(|c| c.attr("var"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_joiner_whose_domain_may_not_create_rooms_creates_nothing() {
    let mut w = World::new("[groups]\nroom_creators = [\"example.org\"]\n");
    let out = w.join("alice");
    assert_eq!(out.len(), 1, "only the refusal: {out:?}");
    let (type_, cond, text) = error_of(&out[0]);
    assert_eq!((type_.as_str(), cond.as_str()), ("cancel", "not-allowed"));
    assert!(
        text.contains("chat.localhost") && text.contains("example.org"),
        "{text}"
    );
    assert_eq!(out[0].name(), "presence");
    assert_eq!(out[0].attr("from"), Some("team@chat.localhost/alice"));
    // Nothing kept: not on disk, not in memory.
    assert_eq!(w.tm.store().room(ROOM).unwrap(), None);
    assert!(w.tm.store().memberships(ROOM).unwrap().is_empty());
    assert_eq!(w.tm.rooms().live_count(), 0);
    assert!(disco_features(&mut w, ROOM).is_empty(), "the room exists");

    // A user of an allowed domain creates it; then anyone may join it.
    let out = join_as(&mut w, "eve@example.org", ROOM);
    assert!(
        out.iter().all(|e| e.attr("type") != Some("error")),
        "{out:?}"
    );
    let out = w.join("alice");
    assert!(
        out.iter().all(|e| e.attr("type") != Some("error")),
        "{out:?}"
    );
    assert_eq!(w.tm.store().rooms_created_by("alice@localhost").unwrap(), 0);
}

#[test]
fn with_no_room_creators_only_the_config_files_rooms_exist() {
    let mut w = World::new(
        "[groups]\nroom_creators = []\n[[rooms]]\nname = \"plan\"\nmembers = [\"alice@localhost\"]\n",
    );
    let (_, cond, text) = error_of(&w.join("alice")[0]);
    assert_eq!(cond, "not-allowed");
    assert!(text.contains("groups.room_creators"), "{text}");
    let out = join_as(&mut w, "alice@localhost", "plan@chat.localhost");
    assert!(
        out.iter().all(|e| e.attr("type") != Some("error")),
        "{out:?}"
    );
}

#[test]
fn a_creator_over_the_cap_is_refused_even_after_a_restart() {
    let mut w = World::new("[groups]\nmax_rooms_per_creator = 2\n");
    for room in ["r1@chat.localhost", "r2@chat.localhost"] {
        let out = join_as(&mut w, "alice@localhost", room);
        assert!(
            out.iter().all(|e| e.attr("type") != Some("error")),
            "{out:?}"
        );
    }
    let out = join_as(&mut w, "alice@localhost", "r3@chat.localhost");
    let (type_, cond, text) = error_of(&out[0]);
    assert_eq!(
        (type_.as_str(), cond.as_str()),
        ("cancel", "policy-violation")
    );
    assert!(text.contains("groups.max_rooms_per_creator"), "{text}");
    assert_eq!(w.tm.store().room("r3@chat.localhost").unwrap(), None);
    // Others still may; joining an existing room is not creating one.
    let out = join_as(&mut w, "bob@localhost", "r3@chat.localhost");
    assert!(
        out.iter().all(|e| e.attr("type") != Some("error")),
        "{out:?}"
    );
    let out = join_as(&mut w, "alice@localhost", "r3@chat.localhost");
    assert!(
        out.iter().all(|e| e.attr("type") != Some("error")),
        "{out:?}"
    );

    // The count is on disk: a restarted tidemark still refuses a fourth.
    let (config, store) = (w.tm.config().clone(), w.tm.store().clone());
    w.tm = Tidemark::new(config, store, w.now).unwrap();
    let out = join_as(&mut w, "alice@localhost", "r4@chat.localhost");
    assert_eq!(error_of(&out[0]).1, "policy-violation");
}

#[test]
fn rooms_announce_whether_anyone_may_join() {
    let mut w = World::new("[[rooms]]\nname = \"plan\"\nmembers = [\"alice@localhost\"]\n");
    w.join("alice");
    let open = disco_features(&mut w, ROOM);
    assert!(open.iter().any(|f| f == "muc_open"), "{open:?}");
    assert!(!open.iter().any(|f| f == "muc_membersonly"), "{open:?}");
    let fixed = disco_features(&mut w, "plan@chat.localhost");
    assert!(fixed.iter().any(|f| f == "muc_membersonly"), "{fixed:?}");
    assert!(!fixed.iter().any(|f| f == "muc_open"), "{fixed:?}");
    // What disco says is what joining does: anyone joins the open room
    // (from a domain that may not create rooms, too), nobody else the fixed.
    let mut w = World::new(
        "[groups]\nroom_creators = [\"localhost\"]\n[[rooms]]\nname = \"plan\"\nmembers = [\"alice@localhost\"]\n",
    );
    w.join("alice");
    let out = join_as(&mut w, "eve@example.org", ROOM);
    assert!(
        out.iter().all(|e| e.attr("type") != Some("error")),
        "{out:?}"
    );
    let out = join_as(&mut w, "bob@localhost", "plan@chat.localhost");
    assert_eq!(error_of(&out[0]).1, "registration-required");
    for features in [&open, &fixed] {
        for f in [
            "muc_hidden",
            "muc_unsecured",
            "muc_nonanonymous",
            "muc_persistent",
        ] {
            assert!(features.iter().any(|x| x == f), "{f} in {features:?}");
        }
    }
}

#[test]
fn rooms_nobody_is_in_leave_memory_and_come_back_as_they_were() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    w.join("carol");
    let sid = stanza_id(&w.say("alice", "a1")[0]);
    w.display("bob", &sid);
    for u in ["alice", "bob", "carol"] {
        leave(&mut w, u);
    }
    assert_eq!(w.tm.rooms().live_count(), 0);
    // Refused joins keep nothing either.
    w.send(&format!("<presence from='eve@localhost/res' to='{ROOM}'/>"));
    assert_eq!(w.tm.rooms().live_count(), 0);

    w.join("carol");
    assert_eq!(w.tm.rooms().live_count(), 1);
    let out = w.display("carol", &sid);
    assert!(
        out.iter().any(|e| e.has_child("all-read", STATUS)),
        "the frontier came back from the store: {out:?}"
    );
}

#[test]
fn a_member_cannot_take_over_another_members_message_id() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    w.join("carol");
    let a1 = stanza_id(&w.say("alice", "a1")[0]);
    let a2 = stanza_id(&w.say("alice", "a2")[0]);
    // bob reuses alice's id (and, by writing, has read a1 and a2).
    let b1 = stanza_id(&w.say("bob", "a1")[0]);
    assert_ne!(a1, b1);
    let carol = |state: &str| ("carol@localhost".to_owned(), state.to_owned());

    // Each asks about their own message by the id they gave it.
    let (summary, recipients) = w.summary("alice", "a1");
    assert_eq!(summary, "some-read");
    assert_eq!(
        recipients,
        vec![("bob@localhost".into(), "read".into()), carol("sent")]
    );
    let (summary, recipients) = w.summary("bob", "a1");
    assert_eq!(summary, "sent");
    assert_eq!(
        recipients,
        vec![("alice@localhost".into(), "sent".into()), carol("sent")]
    );
    // By stanza-id, someone else's message is still not theirs to ask about.
    assert_eq!(
        condition(&w.status("bob", &a1)).as_deref(),
        Some("forbidden")
    );
    assert_eq!(
        condition(&w.status("dave", "a1")).as_deref(),
        Some("forbidden")
    );
    assert_eq!(
        condition(&w.status("dave", "zz")).as_deref(),
        Some("item-not-found")
    );

    let notices = |out: Vec<Element>| -> Vec<String> {
        out.iter()
            .filter_map(|e| e.get_child("all-read", STATUS))
            .map(|n| n.attr("stanza-id").unwrap().to_owned())
            .collect()
    };
    // carol marks "a1" by the sender's id: the oldest she has not read,
    // alice's, not bob's later copy, which would also cover a2 she has not
    // read and tell alice "all read" for it.
    let out = w.display("carol", "a1");
    assert_eq!(notices(out), vec![a1.clone()]);
    assert_eq!(w.summary("alice", "a1").0, "all-read");
    let (summary, recipients) = w.summary("alice", "a2");
    assert_eq!(summary, "some-read");
    assert!(recipients.contains(&carol("sent")), "{recipients:?}");
    assert!(w.summary("bob", "a1").1.contains(&carol("sent")));

    // The next marker by that id names bob's message, the one she has not read.
    let out = w.display("carol", "a1");
    assert_eq!(notices(out), vec![a2], "a2 is read by all now");
    let (summary, recipients) = w.summary("bob", "a1");
    assert_eq!(summary, "some-read");
    assert!(recipients.contains(&carol("read")), "{recipients:?}");
}

#[test]
fn expired_room_messages_are_gone_from_status_and_history() {
    let mut w = World::new("retention_days = 1\n");
    w.join("alice");
    w.join("bob");
    w.say("alice", "old");
    let now = w.now;
    // Retention steps as the connection loop takes them, once a tick.
    let mut retention = Retention::default();
    let keep = w.tm.config().storage.retention;
    // Within the retention: kept.
    retention
        .step(&**w.tm.store(), keep, now + 3_600_000)
        .unwrap();
    assert_eq!(w.summary("alice", "old").0, "sent");
    w.now += 2 * 86_400_000;
    w.say("alice", "new");
    retention.step(&**w.tm.store(), keep, w.now).unwrap();
    assert_eq!(
        condition(&w.status("alice", "old")).as_deref(),
        Some("item-not-found")
    );
    assert_eq!(w.summary("alice", "new").0, "sent");
    let out = w.join("carol");
    let history: Vec<_> = out
        .iter()
        .filter(|e| e.has_child("body", NS))
        .filter_map(|e| e.attr("id"))
        .collect();
    assert_eq!(history, vec!["new"]);
}

// --- Issue 9: occupancy across restarts, sessions that are gone, the
// shutdown notice, bounds, and markers naming the stanza-id.

/// tidemark restarted over the same store (as after kill -9: what was
/// applied is there), at the same time.
fn restart(w: &mut World) {
    let (config, store) = (w.tm.config().clone(), w.tm.store().clone());
    w.tm = Tidemark::new(config, store, w.now).unwrap();
}

fn muc_status_codes(p: &Element) -> Vec<String> {
    p.get_child("x", "http://jabber.org/protocol/muc#user")
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn occupants_stay_in_their_rooms_across_a_restart_without_rejoining() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    restart(&mut w);
    assert_eq!(w.tm.rooms().live_count(), 1);
    // alice never rejoins: her next message is still reflected and recorded.
    let out = w.say("alice", "after");
    let mut to = to_of(&out);
    to.sort();
    assert_eq!(to, vec!["alice@localhost/res", "bob@localhost/res"]);
    let sid = stanza_id(&out[0]);
    let (_, m) =
        w.tm.store()
            .room_message_by_stanza_id(ROOM, &sid)
            .unwrap()
            .expect("recorded");
    assert_eq!(m.sender, "alice@localhost");
    // And her self-ping says she is still in.
    let out = w.send(&format!(
        "<iq type='get' id='p' from='alice@localhost/res' to='{ROOM}/alice'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    assert_eq!(out[0].attr("type"), Some("result"));
    // A later join of a third member shows both, restored presences included.
    let out = w.join("carol");
    let froms: Vec<_> = out
        .iter()
        .filter(|e| e.name() == "presence" && e.attr("to") == Some("carol@localhost/res"))
        .filter_map(|e| e.attr("from"))
        .collect();
    assert!(froms.contains(&"team@chat.localhost/alice"), "{froms:?}");
    assert!(froms.contains(&"team@chat.localhost/bob"), "{froms:?}");
}

#[test]
fn a_session_its_server_says_is_gone_is_dropped_and_the_others_see_it_leave() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    // bob's client does not do something: he stays.
    let out = w.send(&format!(
        "<message type='error' from='bob@localhost/res' to='{ROOM}'><error type='cancel'><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        w.tm.rooms()
            .nick_of(ROOM, &"bob@localhost/res".parse().unwrap())
            .as_deref(),
        Some("bob")
    );
    // His server says his session is gone.
    let out = w.send(&format!(
        "<message type='error' from='bob@localhost/res' to='{ROOM}'><body>x</body><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    let to_alice: Vec<_> = out
        .iter()
        .filter(|e| e.attr("to") == Some("alice@localhost/res"))
        .collect();
    assert_eq!(to_alice.len(), 1, "{out:?}");
    let p = to_alice[0];
    assert_eq!(
        (p.name(), p.attr("type"), p.attr("from")),
        (
            "presence",
            Some("unavailable"),
            Some("team@chat.localhost/bob")
        )
    );
    let item = p
        .get_child("x", "http://jabber.org/protocol/muc#user")
        .and_then(|x| x.get_child("item", "http://jabber.org/protocol/muc#user"))
        .unwrap();
    assert_eq!(item.attr("role"), Some("none"));
    assert!(
        !p.has_child("error", NS),
        "the bounce's error is not shown: {}",
        String::from(p)
    );
    // Gone for good: not after a restart either.
    restart(&mut w);
    assert!(
        w.tm.store()
            .occupants()
            .unwrap()
            .iter()
            .all(|(_, n, _)| n != "bob")
    );
    let out = w.say("alice", "m");
    assert_eq!(to_of(&out), vec!["alice@localhost/res"]);
    // A presence error bounced by a server that cannot reach him is the same.
    w.join("bob");
    let out = w.send(&format!(
        "<presence type='error' from='bob@localhost/res' to='{ROOM}/bob'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
    ));
    assert!(
        out.iter()
            .any(|e| e.attr("to") == Some("alice@localhost/res")
                && e.attr("type") == Some("unavailable")),
        "{out:?}"
    );
}

#[test]
fn a_graceful_stop_tells_every_session_332_and_clears_occupancy() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    let effects = w.tm.shutdown();
    // Occupancy is cleared by writes, which the shell makes durable before
    // it sends the notices.
    assert!(!effects.writes.is_empty());
    let out = effects.apply(&**w.tm.store()).unwrap();
    let mut to = to_of(&out);
    to.sort();
    assert_eq!(to, vec!["alice@localhost/res", "bob@localhost/res"]);
    for p in &out {
        assert_eq!(
            (p.name(), p.attr("type")),
            ("presence", Some("unavailable"))
        );
        let nick = p.attr("to").unwrap().split('@').next().unwrap();
        assert_eq!(p.attr("from"), Some(format!("{ROOM}/{nick}").as_str()));
        assert_eq!(muc_status_codes(p), vec!["110", "332"]);
    }
    assert!(w.tm.store().occupants().unwrap().is_empty());
    assert_eq!(w.tm.rooms().live_count(), 0);
    // Back up: they were told they are out, so they are; joining works as
    // a fresh join (history and subject, not a presence update).
    restart(&mut w);
    assert_eq!(w.tm.rooms().live_count(), 0);
    let out = w.join("alice");
    assert!(out.last().unwrap().has_child("subject", NS), "{out:?}");
    // Nobody in any room: nothing to say.
    let mut empty = World::new("");
    assert!(empty.tm.shutdown().is_empty());
    let _ = &mut empty;
}

#[test]
fn occupancy_is_bounded_per_room_and_per_user() {
    let mut w = World::new("[groups]\nmax_occupants_per_room = 2\nmax_joins_per_user = 2\n");
    w.join("alice");
    w.join("bob");
    let out = w.join("carol");
    assert_eq!(out.len(), 1, "{out:?}");
    let (type_, cond, text) = error_of(&out[0]);
    assert_eq!(
        (type_.as_str(), cond.as_str()),
        ("cancel", "service-unavailable")
    );
    assert!(text.contains("groups.max_occupants_per_room"), "{text}");
    // Nothing kept for the refused join: no membership, no occupancy.
    assert_eq!(
        w.tm.store().membership(ROOM, "carol@localhost").unwrap(),
        None
    );
    assert_eq!(w.tm.store().occupants().unwrap().len(), 2);

    // alice in a second room is her second session; a third is refused.
    assert!(
        join_as(&mut w, "alice@localhost", "r2@chat.localhost")
            .iter()
            .all(|e| e.attr("type") != Some("error"))
    );
    let out = join_as(&mut w, "alice@localhost", "r3@chat.localhost");
    let (_, cond, text) = error_of(&out[0]);
    assert_eq!(cond, "policy-violation");
    assert!(text.contains("groups.max_joins_per_user"), "{text}");
    assert_eq!(w.tm.store().room("r3@chat.localhost").unwrap(), None);
    // The count comes back after a restart, and leaving frees a place.
    restart(&mut w);
    let out = join_as(&mut w, "alice@localhost", "r3@chat.localhost");
    assert_eq!(error_of(&out[0]).1, "policy-violation");
    leave(&mut w, "alice");
    let out = join_as(&mut w, "alice@localhost", "r3@chat.localhost");
    assert!(
        out.iter().all(|e| e.attr("type") != Some("error")),
        "{out:?}"
    );
}

#[test]
fn a_reflected_marker_names_the_rooms_stanza_id_whatever_the_reader_named() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    let sid = stanza_id(&w.say("alice", "a1")[0]);
    // bob's client names alice's own id, as some do.
    let out = w.send(&format!(
        "<message type='groupchat' id='bm' from='bob@localhost/res' to='{ROOM}'><displayed xmlns='urn:xmpp:chat-markers:0' id='a1'/></message>"
    ));
    let to_alice = out
        .iter()
        .find(|e| e.attr("to") == Some("alice@localhost/res"))
        .expect("reflected to alice");
    let bob_occupant_id = w
        .join("carol")
        .iter()
        .find(|e| e.attr("from") == Some("team@chat.localhost/bob"))
        .and_then(|p| p.get_child("occupant-id", "urn:xmpp:occupant-id:0"))
        .and_then(|o| o.attr("id"))
        .unwrap()
        .to_owned();
    let expected: Element = format!(
        "<message xmlns='{NS}' type='groupchat' id='bm' from='{ROOM}/bob' to='alice@localhost/res'>\
         <displayed xmlns='urn:xmpp:chat-markers:0' id='{sid}'/>\
         <occupant-id xmlns='urn:xmpp:occupant-id:0' id='{bob_occupant_id}'/></message>"
    )
    .parse()
    .unwrap();
    assert_eq!(to_alice, &expected, "{}", String::from(to_alice));
}

#[test]
fn the_subject_nobody_set_is_empty_from_the_services_nick_since_the_room_was_made() {
    let mut w = World::new("");
    let made = w.now + 1000;
    let out = w.join("alice");
    let expected: Element = format!(
        "<message xmlns='{NS}' type='groupchat' from='{ROOM}/tidemark' to='alice@localhost/res'><subject/>\
         <delay xmlns='urn:xmpp:delay' stamp='{}' from='{ROOM}'/></message>",
        tidemark::stanza::xep0082(made)
    )
    .parse()
    .unwrap();
    // As it goes on the wire (0.23 keeps an empty text node in memory).
    let got: Element = String::from(out.last().unwrap()).parse().unwrap();
    assert_eq!(got, expected, "{}", String::from(&got));
    // Nobody may speak under the service's nickname.
    let out = w.send(&format!(
        "<presence from='bob@localhost/res' to='{ROOM}/tidemark'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    assert_eq!(error_of(&out[0]).1, "conflict");
    assert!(
        error_of(&out[0]).2.contains("tidemark"),
        "{:?}",
        error_of(&out[0])
    );
}

fn set_subject(w: &mut World, user: &str, room: &str, text: &str) -> Vec<Element> {
    w.send(&format!(
        "<message type='groupchat' id='s-{user}' from='{user}@localhost/res' to='{room}'><subject>{text}</subject></message>"
    ))
}

fn subject_of(out: &[Element]) -> (String, String, Option<String>) {
    let m = out.last().expect("a join ends with the subject");
    (
        m.attr("from").unwrap().to_owned(),
        m.get_child("subject", NS).expect("a subject").text(),
        m.get_child("delay", "urn:xmpp:delay")
            .and_then(|d| d.attr("stamp"))
            .map(str::to_owned),
    )
}

#[test]
fn in_an_open_room_only_its_creator_sets_the_subject_and_everyone_sees_it() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    // bob joined a room anyone may join: he may not rewrite its subject.
    let out = set_subject(&mut w, "bob", ROOM, "mine now");
    assert_eq!(out.len(), 1, "{out:?}");
    let (type_, cond, text) = error_of(&out[0]);
    assert_eq!((type_.as_str(), cond.as_str()), ("auth", "forbidden"));
    assert!(text.contains("created"), "{text}");
    assert_eq!(out[0].attr("from"), Some(ROOM));
    assert!(w.tm.store().room_subject(ROOM).unwrap().is_none());
    // alice made it: both sessions are shown the change from her nick.
    let out = set_subject(&mut w, "alice", ROOM, "Release on Friday");
    let set_at = w.now;
    let mut to = to_of(&out);
    to.sort();
    assert_eq!(to, vec!["alice@localhost/res", "bob@localhost/res"]);
    for m in &out {
        assert_eq!(m.attr("from"), Some("team@chat.localhost/alice"));
        assert_eq!(m.attr("id"), Some("s-alice"));
        assert_eq!(
            m.get_child("subject", NS).unwrap().text(),
            "Release on Friday"
        );
        assert!(m.get_child("body", NS).is_none());
        assert!(m.has_child("occupant-id", "urn:xmpp:occupant-id:0"));
    }
    // A later joiner gets it from her nick with when she set it; not a
    // message: no stanza-id, nothing in history or status.
    let out = w.join("carol");
    assert_eq!(
        subject_of(&out),
        (
            "team@chat.localhost/alice".to_owned(),
            "Release on Friday".to_owned(),
            Some(tidemark::stanza::xep0082(set_at))
        )
    );
    assert!(
        !out.iter()
            .any(|e| e.has_child("stanza-id", "urn:xmpp:sid:0"))
    );
    // An empty subject clears it, and is shown as cleared by her.
    set_subject(&mut w, "alice", ROOM, "");
    let out = w.send(&format!(
        "<presence from='carol@localhost/two' to='{ROOM}/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    let (from, text, _) = subject_of(&out);
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("team@chat.localhost/alice", "")
    );
}

#[test]
fn a_subject_with_a_body_is_a_message_and_outsiders_and_long_subjects_are_refused() {
    let mut w = World::new("");
    w.join("alice");
    // With a body it is an ordinary message (XEP-0045 §8.1).
    let out = w.send(&format!(
        "<message type='groupchat' id='m' from='alice@localhost/res' to='{ROOM}'><subject>x</subject><body>hi</body></message>"
    ));
    assert!(out[0].has_child("stanza-id", "urn:xmpp:sid:0"), "{out:?}");
    assert!(w.tm.store().room_subject(ROOM).unwrap().is_none());
    // Not in the room: not-acceptable.
    let out = set_subject(&mut w, "mallory", ROOM, "hello");
    assert_eq!(error_of(&out[0]).1, "not-acceptable");
    // Over the limit: policy-violation naming it, nothing kept.
    let long = "x".repeat(tidemark::config::MAX_SUBJECT_BYTES + 1);
    let out = set_subject(&mut w, "alice", ROOM, &long);
    let (type_, cond, text) = error_of(&out[0]);
    assert_eq!(
        (type_.as_str(), cond.as_str()),
        ("modify", "policy-violation")
    );
    assert!(
        text.contains("1025 bytes") && text.contains("1024"),
        "{text}"
    );
    assert!(w.tm.store().room_subject(ROOM).unwrap().is_none());
    let fits = "x".repeat(tidemark::config::MAX_SUBJECT_BYTES);
    assert_eq!(set_subject(&mut w, "alice", ROOM, &fits).len(), 1);
}

#[test]
fn in_a_config_room_any_member_sets_the_subject_and_the_files_subject_applies_when_it_changes() {
    let config = |subject: &str| {
        format!(
            "[[rooms]]\nname = \"team\"\nmembers = [\"alice@localhost\", \"bob@localhost\"]\nsubject = \"{subject}\"\n"
        )
    };
    let mut w = World::new(&config("Welcome"));
    let out = w.join("bob");
    let (from, text, _) = subject_of(&out);
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("team@chat.localhost/tidemark", "Welcome")
    );
    // bob did not make the room, but the administrator made him a member.
    let out = set_subject(&mut w, "bob", ROOM, "Bob's topic");
    assert_eq!(out[0].attr("from"), Some("team@chat.localhost/bob"));
    // A restart with the same file keeps bob's.
    restart(&mut w);
    let out = w.join("alice");
    assert_eq!(subject_of(&out).1, "Bob's topic");
    // A changed file wins once.
    let (c, store) = (w.tm.config().clone(), w.tm.store().clone());
    let text = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"{}\"\n[storage]\npath = \"unused\"\n{}",
        c.component.secret,
        config("New welcome")
    );
    let changed = Config::parse(&text, Path::new("test.toml")).unwrap();
    w.tm = Tidemark::new(changed, store, w.now + 1).unwrap();
    w.now += 1;
    let out = w.send(&format!(
        "<presence from='alice@localhost/two' to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    let (from, text, _) = subject_of(&out);
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("team@chat.localhost/tidemark", "New welcome")
    );
}

#[test]
fn the_subject_survives_a_restart_and_an_export_and_import() {
    let mut w = World::new("");
    w.join("alice");
    set_subject(&mut w, "alice", ROOM, "Kept");
    restart(&mut w);
    let out = w.join("bob");
    assert_eq!(subject_of(&out).1, "Kept");
    let mut exported = Vec::new();
    tidemark::store::export::export(&**w.tm.store(), &mut exported).unwrap();
    let text = String::from_utf8(exported).unwrap();
    assert!(text.contains("\"kind\":\"room_subject\""), "{text}");
    let fresh: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    tidemark::store::export::import(&*fresh, text.as_bytes()).unwrap();
    assert_eq!(
        fresh.room_subject(ROOM).unwrap(),
        w.tm.store().room_subject(ROOM).unwrap()
    );
}

#[test]
fn a_session_that_rejoins_after_a_restart_gets_the_whole_join_again() {
    let mut w = World::new("");
    w.join("alice");
    w.join("bob");
    w.say("alice", "a1");
    restart(&mut w);
    // Clients that do rejoin (XEP-0410 ones, or a reconnect that keeps the
    // resource) send a join presence for a session the room still has.
    let out = w.join("alice");
    let to_alice: Vec<_> = out
        .iter()
        .filter(|e| e.attr("to") == Some("alice@localhost/res"))
        .collect();
    let own = to_alice
        .iter()
        .find(|e| e.attr("from") == Some("team@chat.localhost/alice"))
        .expect("her own presence");
    assert_eq!(muc_status_codes(own), vec!["100", "110"]);
    assert!(
        to_alice
            .iter()
            .any(|e| e.attr("from") == Some("team@chat.localhost/bob"))
    );
    assert!(
        to_alice
            .iter()
            .any(|e| e.has_child("delay", "urn:xmpp:delay")),
        "history"
    );
    assert!(to_alice.last().unwrap().has_child("subject", NS));
    // bob sees an update of alice's presence, not a second alice.
    let to_bob: Vec<_> = out
        .iter()
        .filter(|e| e.attr("to") == Some("bob@localhost/res"))
        .collect();
    assert_eq!(to_bob.len(), 1, "{out:?}");
    assert!(muc_status_codes(to_bob[0]).is_empty());
    assert_eq!(w.tm.store().occupants().unwrap().len(), 2);
}
