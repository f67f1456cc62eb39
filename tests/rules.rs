//! The status and presence rules of DESIGN.md, driven through the router with
//! parsed stanzas and a real sled store, no socket: each test reads like a
//! transcript of what the server hands tidemark and what tidemark answers.

use std::path::Path;
use std::sync::Arc;

use minidom::Element;
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{ConversationKey, MessageRecord, SledStore, Store, Write};

mod common;
use common::{NS, XepDoc, caps_ver, millis, with_ns};
const ALICE_T: &str = "alice\\40localhost@chat.localhost";
const BOB_T: &str = "bob\\40localhost@chat.localhost";
const CAROL_T: &str = "carol\\40localhost@chat.localhost";

fn config(extra: &str) -> Config {
    let text = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"s\"\n[storage]\npath = \"unused\"\n{extra}"
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

struct World {
    tm: Tidemark,
    store: Arc<SledStore>,
    now: u64,
}

impl World {
    fn new() -> Self {
        Self::with_config("")
    }

    fn with_config(extra: &str) -> Self {
        let store = Arc::new(SledStore::temporary().unwrap());
        let dyn_store: Arc<dyn Store> = store.clone();
        Self {
            tm: Tidemark::new(config(extra), dyn_store, 1_795_000_000_000).unwrap(),
            store,
            now: 1_795_000_000_000,
        }
    }

    /// The server hands tidemark a stanza; returns what tidemark sends.
    fn server_sends(&mut self, xml: &str) -> Vec<Element> {
        let el: Element = with_ns(xml).parse().expect("test stanza parses");
        self.handle_at(self.now + 1000, &el)
    }

    /// The server hands tidemark `stanza` at `now`, which is never earlier
    /// than the stanza before.
    fn handle_at(&mut self, now: u64, stanza: &Element) -> Vec<Element> {
        assert!(now >= self.now, "the clock goes forward");
        self.now = now;
        let effects = self.tm.handle(stanza, now);
        effects.apply(&**self.tm.store()).unwrap()
    }

    /// The connection loop's tick at `now`: what it sends, its writes
    /// applied.
    fn tick_at(&mut self, now: u64) -> Vec<Element> {
        let effects = self.tm.tick(now).unwrap();
        effects.apply(&**self.tm.store()).unwrap()
    }

    /// What the connection loop does on a (re)connect at the current time.
    fn connected(&mut self) -> Vec<Element> {
        let effects = self.tm.on_connected(self.now).unwrap();
        effects.apply(&**self.tm.store()).unwrap()
    }

    /// [`World::server_sends`] at a time a document shows.
    fn server_sends_at(&mut self, xep0082: &str, xml: &str) -> Vec<Element> {
        let el: Element = with_ns(xml).parse().expect("test stanza parses");
        self.handle_at(millis(xep0082), &el)
    }

    /// `contact` lets `watcher` see their presence, and is online as
    /// `contact/res`.
    fn grant_and_online(&mut self, watcher: &str, contact: &str) {
        let tracked = format!("{}\\40localhost@chat.localhost", watcher);
        self.server_sends(&format!(
            "<presence type='subscribed' from='{contact}@localhost' to='{tracked}'/>"
        ));
        self.server_sends(&format!(
            "<presence from='{contact}@localhost/res' to='{tracked}'/>"
        ));
    }

    fn status(&mut self, asker: &str, conversation: &str, id: &str) -> Element {
        let out = self.server_sends(&format!(
            "<iq type='get' id='q' from='{asker}' to='chat.localhost'>\
             <status xmlns='urn:tidemark:status:0' conversation='{conversation}' id='{id}'/></iq>"
        ));
        assert_eq!(out.len(), 1, "one answer to a status query");
        out.into_iter().next().unwrap()
    }

    fn state(&mut self, asker: &str, conversation: &str, id: &str) -> String {
        let r = self.status(asker, conversation, id);
        assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
        recipient(&r).attr("state").unwrap().to_owned()
    }
}

/// The `<recipient/>` of a 1:1 status result.
fn recipient(result: &Element) -> &Element {
    result
        .get_child("status", "urn:tidemark:status:0")
        .and_then(|s| s.get_child("recipient", "urn:tidemark:status:0"))
        .unwrap_or_else(|| panic!("no recipient in {}", String::from(result)))
}

fn error_condition(el: &Element) -> Option<String> {
    let err = el.get_child("error", NS)?;
    err.children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
}

fn error_text(el: &Element) -> String {
    el.get_child("error", NS)
        .and_then(|e| e.children().find(|c| c.name() == "text"))
        .map(|t| t.text())
        .unwrap_or_default()
}

fn alice_says(w: &mut World, id: &str, extra: &str) -> Vec<Element> {
    w.server_sends(&format!(
        "<message type='chat' id='{id}' from='alice@localhost/phone' to='{BOB_T}'>\
         <body>hello {id}</body>{extra}</message>"
    ))
}

const ASK_BOTH: &str =
    "<request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/>";

fn bob_acks(w: &mut World, payload: &str) -> Vec<Element> {
    w.server_sends(&format!(
        "<message from='bob@localhost/res' to='{ALICE_T}/phone'>{payload}</message>"
    ))
}

#[test]
fn a_message_is_relayed_from_the_senders_tracked_address_with_its_id() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    let out = alice_says(&mut w, "m1", "");
    assert_eq!(out.len(), 1);
    let m = &out[0];
    assert_eq!(m.attr("to"), Some("bob@localhost"));
    assert_eq!(m.attr("from"), Some(&*format!("{ALICE_T}/phone")));
    assert_eq!(m.attr("id"), Some("m1"));
    // tidemark asks for what it needs to track, whatever the client asked.
    assert!(m.has_child("request", "urn:xmpp:receipts"));
    assert!(m.has_child("markable", "urn:xmpp:chat-markers:0"));
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "sent");
}

#[test]
fn receipt_then_displayed_reach_the_sender_in_the_forms_asked_for() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", ASK_BOTH);
    let out = bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='m1'/>");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(
        out[0].attr("from"),
        Some("bob\\40localhost@chat.localhost/res")
    );
    let r = out[0].get_child("received", "urn:xmpp:receipts").unwrap();
    assert_eq!(r.attr("id"), Some("m1"));
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "delivered");

    // A second resource's receipt changes nothing and is not relayed.
    assert!(bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='m1'/>").is_empty());

    let out = bob_acks(
        &mut w,
        "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].has_child("displayed", "urn:xmpp:chat-markers:0"));
    let r = w.status("alice@localhost/phone", BOB_T, "m1");
    let rec = recipient(&r);
    assert_eq!(rec.attr("state"), Some("read"));
    assert!(rec.attr("sent").unwrap() < rec.attr("delivered").unwrap());
    assert!(rec.attr("delivered").unwrap() < rec.attr("read").unwrap());
}

#[test]
fn markers_only_sender_gets_a_received_marker_for_a_receipt() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", "<markable xmlns='urn:xmpp:chat-markers:0'/>");
    let out = bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='m1'/>");
    assert!(out[0].has_child("received", "urn:xmpp:chat-markers:0"));
}

#[test]
fn an_older_clients_received_marker_counts_as_delivery() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", ASK_BOTH);
    let out = bob_acks(
        &mut w,
        "<received xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
    );
    assert!(out[0].has_child("received", "urn:xmpp:receipts"));
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "delivered");
}

#[test]
fn a_sender_who_asked_nothing_gets_nothing_but_status_is_kept() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", "");
    assert!(bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='m1'/>").is_empty());
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "delivered");
}

#[test]
fn displayed_covers_every_earlier_message_and_never_goes_back() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    for id in ["m1", "m2", "m3", "m4"] {
        alice_says(&mut w, id, ASK_BOTH);
    }
    bob_acks(
        &mut w,
        "<displayed xmlns='urn:xmpp:chat-markers:0' id='m3'/>",
    );
    for (id, state) in [
        ("m1", "read"),
        ("m2", "read"),
        ("m3", "read"),
        ("m4", "sent"),
    ] {
        assert_eq!(w.state("alice@localhost/phone", BOB_T, id), state, "{id}");
    }
    // An older marker arriving late is redundant (XEP-0333 §3.2) and ignored.
    assert!(
        bob_acks(
            &mut w,
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>"
        )
        .is_empty()
    );
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m3"), "read");
}

#[test]
fn only_the_recipient_can_mark_a_message() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    w.grant_and_online("carol", "alice");
    alice_says(&mut w, "m1", ASK_BOTH);
    // Carol names alice's message id in her own conversation with alice.
    let spoof = w.server_sends(&format!(
        "<message from='carol@localhost/x' to='{ALICE_T}'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>"
    ));
    assert!(spoof.is_empty());
    // Alice marking her own message does nothing either.
    let own = w.server_sends(&format!(
        "<message from='alice@localhost/phone' to='{BOB_T}'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>"
    ));
    assert!(own.is_empty());
    // An unknown id changes nothing.
    assert!(
        bob_acks(
            &mut w,
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='nope'/>"
        )
        .is_empty()
    );
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "sent");
    let _ = CAROL_T;
}

#[test]
fn offline_contact_gets_recipient_unavailable_and_status_failed() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    w.server_sends(&format!(
        "<presence type='unavailable' from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    let out = alice_says(&mut w, "m1", ASK_BOTH);
    assert_eq!(out.len(), 1, "nothing goes to bob");
    assert_eq!(out[0].attr("type"), Some("error"));
    assert_eq!(out[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(out[0].attr("from"), Some(BOB_T));
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("recipient-unavailable")
    );
    assert_eq!(
        error_text(&out[0]),
        "bob@localhost is offline; the message was not delivered."
    );
    let r = w.status("alice@localhost/phone", BOB_T, "m1");
    let rec = recipient(&r);
    assert_eq!(rec.attr("state"), Some("failed"));
    let reason = rec.get_child("reason", "urn:tidemark:status:0").unwrap();
    assert_eq!(reason.attr("condition"), Some("recipient-unavailable"));
    // A late receipt cannot revive a failed message.
    assert!(bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='m1'/>").is_empty());
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "failed");
}

#[test]
fn without_permission_chat_is_unavailable_and_presence_is_not_revealed() {
    let mut w = World::new();
    // Bob is online (he lets carol see him), but never granted alice.
    w.grant_and_online("carol", "bob");
    let out = alice_says(&mut w, "m1", "");
    assert_eq!(out.len(), 1);
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("service-unavailable")
    );
    let text = error_text(&out[0]);
    assert!(text.contains("unavailable"), "{text}");
    assert!(
        !text.contains("offline") && !text.contains("online"),
        "{text}"
    );
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "failed");
}

#[test]
fn queue_policy_holds_messages_until_the_contact_comes_online() {
    let mut w = World::with_config("[presence]\noffline = \"queue\"\n");
    w.server_sends(&format!(
        "<presence type='subscribed' from='bob@localhost' to='{ALICE_T}'/>"
    ));
    assert!(alice_says(&mut w, "m1", ASK_BOTH).is_empty());
    assert!(alice_says(&mut w, "m2", ASK_BOTH).is_empty());
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "sent");
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    let delivered: Vec<_> = out
        .iter()
        .filter(|e| e.name() == "message" && e.attr("type") != Some("headline"))
        .map(|e| e.attr("id").unwrap().to_owned())
        .collect();
    assert_eq!(delivered, vec!["m1", "m2"]);
    // Delivered once: coming online again releases nothing more.
    w.server_sends(&format!(
        "<presence type='unavailable' from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    let again = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    assert!(again.iter().all(|e| e.name() == "presence"));
}

#[test]
fn an_oversized_body_is_refused_and_nothing_is_recorded() {
    let mut w = World::with_config("[limits]\nmax_body_bytes = 1000\n");
    w.grant_and_online("alice", "bob");
    let big = "x".repeat(200 * 1024);
    let out = w.server_sends(&format!(
        "<message type='chat' id='big' from='alice@localhost/phone' to='{BOB_T}'><body>{big}</body></message>"
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("policy-violation")
    );
    let r = w.status("alice@localhost/phone", BOB_T, "big");
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
}

#[test]
fn an_error_from_the_contacts_side_fails_the_message_with_its_reason() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", ASK_BOTH);
    let out = w.server_sends(&format!(
        "<message type='error' id='m1' from='bob@localhost' to='{ALICE_T}/phone'>\
         <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no such user</text></error></message>"
    ));
    assert_eq!(out.len(), 1, "the error is relayed to the sender");
    assert_eq!(out[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(out[0].attr("from"), Some(BOB_T));
    let r = w.status("alice@localhost/phone", BOB_T, "m1");
    let reason = recipient(&r)
        .get_child("reason", "urn:tidemark:status:0")
        .unwrap();
    assert_eq!(reason.attr("condition"), Some("service-unavailable"));
    assert_eq!(reason.text(), "no such user");
}

#[test]
fn status_is_for_the_sender_only() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", "");
    let r = w.status("bob@localhost/res", ALICE_T, "m1");
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    let r = w.status("carol@localhost/x", BOB_T, "m1");
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    let out = w.server_sends(
        "<iq type='get' id='q' from='alice@localhost/phone' to='chat.localhost'><status xmlns='urn:tidemark:status:0' id='m1'/></iq>",
    );
    assert_eq!(error_condition(&out[0]).as_deref(), Some("bad-request"));
}

#[test]
fn attachment_only_messages_get_no_read_status() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    let out = w.server_sends(&format!(
        "<message type='chat' id='pic' from='alice@localhost/phone' to='{BOB_T}'>\
         <x xmlns='jabber:x:oob'><url>https://localhost/p.jpg</url></x></message>"
    ));
    assert!(!out[0].has_child("markable", "urn:xmpp:chat-markers:0"));
    alice_says(&mut w, "m2", ASK_BOTH);
    bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='pic'/>");
    bob_acks(
        &mut w,
        "<displayed xmlns='urn:xmpp:chat-markers:0' id='m2'/>",
    );
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "pic"), "delivered");
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m2"), "read");
}

#[test]
fn subscriptions_flow_through_tracked_addresses() {
    let mut w = World::new();
    let out = w.server_sends(&format!(
        "<presence type='subscribe' from='alice@localhost/phone' to='{BOB_T}'/>"
    ));
    assert_eq!(out[0].attr("from"), Some(ALICE_T));
    assert_eq!(out[0].attr("to"), Some("bob@localhost"));
    let out = w.server_sends(&format!(
        "<presence type='subscribed' from='bob@localhost' to='{ALICE_T}'/>"
    ));
    assert_eq!(out[0].attr("from"), Some(BOB_T));
    assert_eq!(out[0].attr("to"), Some("alice@localhost"));
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'><show>away</show></presence>"
    ));
    // (after bob's name, the first time)
    let p = out.iter().find(|e| e.name() == "presence").unwrap();
    assert_eq!(p.attr("from"), Some(&*format!("{BOB_T}/res")));
    assert!(p.has_child("show", NS));
    // Alice's server probes when she logs in: answered from what tidemark knows.
    let out = w.server_sends(&format!(
        "<presence type='probe' from='alice@localhost' to='{BOB_T}'/>"
    ));
    assert_eq!(out.len(), 2, "bob's name, then the presence: {out:?}");
    assert_eq!(out[1].attr("from"), Some(&*format!("{BOB_T}/res")));
    // Her client (Gajim, which takes names only from PEP) may have started
    // after bob's presence was first relayed: the name comes with every
    // probe answer, to her bare JID.
    assert_eq!(out[0].attr("type"), Some("headline"));
    assert_eq!(out[0].attr("to"), Some("alice@localhost"));
    assert_eq!(out[0].attr("from"), Some(BOB_T));
    let nick = out[0]
        .get_child("event", "http://jabber.org/protocol/pubsub#event")
        .and_then(|e| e.get_child("items", "http://jabber.org/protocol/pubsub#event"))
        .and_then(|i| i.get_child("item", "http://jabber.org/protocol/pubsub#event"))
        .and_then(|i| i.get_child("nick", "http://jabber.org/protocol/nick"))
        .map(Element::text);
    assert_eq!(nick.as_deref(), Some("bob"));
    // Offline, bob still has a name.
    w.server_sends(&format!(
        "<presence type='unavailable' from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    let out = w.server_sends(&format!(
        "<presence type='probe' from='alice@localhost' to='{BOB_T}'/>"
    ));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].attr("type"), Some("headline"));
    assert_eq!(out[1].attr("type"), Some("unavailable"));
    // Carol has no permission: her probe learns nothing.
    assert!(
        w.server_sends(&format!(
            "<presence type='probe' from='carol@localhost' to='{BOB_T}'/>"
        ))
        .is_empty()
    );
}

#[test]
fn after_a_reconnect_every_watched_contact_is_probed_once() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    w.grant_and_online("carol", "bob");
    w.grant_and_online("bob", "alice");
    let probes = w.tm.on_connected(w.now).unwrap();
    assert!(probes.writes.is_empty(), "a connect only asks");
    let probes = probes.send;
    let mut targets: Vec<_> = probes
        .iter()
        .map(|p| p.attr("to").unwrap().to_owned())
        .collect();
    targets.sort();
    assert_eq!(targets, vec!["alice@localhost", "bob@localhost"]);
    assert!(probes.iter().all(|p| p.attr("type") == Some("probe")));
    // Presence is unknown until the answers come: the message waits for
    // bob's, and is not refused as if he were offline.
    assert!(alice_says(&mut w, "m1", "").is_empty());
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    let delivered: Vec<_> = out
        .iter()
        .filter(|m| m.name() == "message" && m.attr("to") == Some("bob@localhost"))
        .collect();
    assert_eq!(delivered.len(), 1, "m1 delivered once bob answered");
    assert_eq!(delivered[0].attr("id"), Some("m1"));
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "sent");
}

#[test]
fn gateway_translates_a_plain_address() {
    let mut w = World::new();
    let out = w.server_sends(
        "<iq type='set' id='g' from='alice@localhost/phone' to='chat.localhost'><query xmlns='jabber:iq:gateway'><prompt>bob@localhost</prompt></query></iq>",
    );
    let jid = out[0]
        .get_child("query", "jabber:iq:gateway")
        .and_then(|q| q.get_child("jid", "jabber:iq:gateway"))
        .unwrap();
    assert_eq!(jid.text(), BOB_T);
    let out = w.server_sends(
        "<iq type='set' id='g' from='alice@localhost/phone' to='chat.localhost'><query xmlns='jabber:iq:gateway'><prompt>not a jid@@</prompt></query></iq>",
    );
    assert_eq!(error_condition(&out[0]).as_deref(), Some("bad-request"));
}

#[test]
fn malformed_input_gets_an_error_and_changes_nothing() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", "");
    for bad in [
        "<iq type='get' id='x' from='alice@localhost/phone' to='chat.localhost'/>".to_owned(),
        format!("<message id='x' from='alice@localhost/phone' to='{BOB_T}'><displayed xmlns='urn:xmpp:chat-markers:0'/></message>"),
        "<message id='x' from='alice@localhost/phone' to='nobody@chat.localhost'><body>x</body></message>".to_owned(),
        "<iq type='bogus' id='x' from='alice@localhost/phone' to='chat.localhost'><ping xmlns='urn:xmpp:ping'/></iq>".to_owned(),
    ] {
        let out = w.server_sends(&bad);
        assert_eq!(out.len(), 1, "{bad}");
        assert_eq!(out[0].attr("type"), Some("error"), "{bad}");
    }
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "sent");
}

/// Every XML example in xep/status.md is what tidemark says, by value: the
/// test plays the document's story (its JIDs, ids and times) and compares
/// each answer with the document's, element by element.
#[test]
fn xep_status_examples_are_what_tidemark_says() {
    let doc = XepDoc::load("status.md");
    let mut w = World::new();

    // §2 disco#info, asked as the document asks.
    let ask = doc.example("iq", "get", Some("disco1"));
    let got = w.handle_at(w.now + 1000, &ask.el);
    assert_eq!(got.len(), 1);
    doc.example("iq", "result", Some("disco1"))
        .assert_answer("§2 disco#info", &got[0], &[]);

    // §4 a message bob received, then read.
    w.grant_and_online("alice", "bob");
    let out = w.server_sends_at(
        "2026-11-24T21:10:06.953Z",
        &format!(
            "<message type='chat' id='m1' from='alice@localhost/phone' to='{BOB_T}'>\
             <body>hello</body>{ASK_BOTH}</message>"
        ),
    );
    assert_eq!(messages_to(&out, "bob@localhost").len(), 1);
    w.server_sends_at(
        "2026-11-24T21:10:06.954Z",
        &format!(
            "<message from='bob@localhost/res' to='{ALICE_T}/phone'><received xmlns='urn:xmpp:receipts' id='m1'/></message>"
        ),
    );
    w.server_sends_at(
        "2026-11-24T21:10:07.956Z",
        &format!(
            "<message from='bob@localhost/res' to='{ALICE_T}/phone'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>"
        ),
    );
    let ask = doc.example("iq", "get", Some("q1"));
    let got = w.handle_at(w.now + 1000, &ask.el);
    assert_eq!(got.len(), 1);
    doc.example("iq", "result", Some("q1"))
        .assert_answer("§4 a read message", &got[0], &[]);

    // §4 a message to bob while he is offline (offline policy reject).
    w.server_sends(&format!(
        "<presence type='unavailable' from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    let out = w.server_sends_at(
        "2026-11-24T21:12:00.001Z",
        &format!(
            "<message type='chat' id='m2' from='alice@localhost/phone' to='{BOB_T}'><body>later</body></message>"
        ),
    );
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("recipient-unavailable")
    );
    let got = w.server_sends(&format!(
        "<iq type='get' id='q2' from='alice@localhost/phone' to='chat.localhost'>\
         <status xmlns='urn:tidemark:status:0' conversation='{BOB_T}' id='m2'/></iq>"
    ));
    assert_eq!(got.len(), 1);
    doc.example("iq", "result", Some("q2"))
        .assert_answer("§4 a failed message", &got[0], &[]);

    // §5 bob asks about alice's message in his conversation with her.
    let got = w.server_sends(&format!(
        "<iq type='get' id='q3' from='bob@localhost/laptop' to='chat.localhost'>\
         <status xmlns='urn:tidemark:status:0' conversation='{ALICE_T}' id='m1'/></iq>"
    ));
    assert_eq!(got.len(), 1);
    doc.example("iq", "error", Some("q3"))
        .assert_answer("§5 forbidden", &got[0], &[]);

    // §4 bob on a client without read markers.
    bob_uses_a_client_without_read_markers(&mut w);
    w.server_sends_at(
        "2026-11-24T21:13:00.000Z",
        &format!(
            "<message type='chat' id='m3' from='alice@localhost/phone' to='{BOB_T}'>\
             <body>see you</body>{ASK_BOTH}</message>"
        ),
    );
    w.server_sends_at(
        "2026-11-24T21:13:00.500Z",
        &format!(
            "<message from='bob@localhost/res' to='{ALICE_T}/phone'><received xmlns='urn:xmpp:receipts' id='m3'/></message>"
        ),
    );
    let got = w.server_sends(&format!(
        "<iq type='get' id='q4' from='alice@localhost/phone' to='chat.localhost'>\
         <status xmlns='urn:tidemark:status:0' conversation='{BOB_T}' id='m3'/></iq>"
    ));
    doc.example("iq", "result", Some("q4")).assert_answer(
        "§4 a client without read markers",
        &got[0],
        &[],
    );

    doc.assert_all_checked();
}

/// The message elements of `out` going to `to`.
fn messages_to<'a>(out: &'a [Element], to: &str) -> Vec<&'a Element> {
    out.iter()
        .filter(|m| m.name() == "message" && m.attr("to").is_some_and(|t| t.starts_with(to)))
        .collect()
}

/// Records in the store's `messages` tree, counted from an export.
fn stored_messages(w: &World) -> usize {
    let mut dump = Vec::new();
    w.store.export(&mut dump).unwrap();
    String::from_utf8(dump)
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"] == "message")
        .count()
}

// --- The presence gate is total (issue 7) ---

#[test]
fn an_error_from_a_stranger_with_a_body_reaches_nobody() {
    let mut w = World::new();
    // Mallory is a stranger to alice; she never wrote to him.
    let out = w.server_sends(&format!(
        "<message type='error' id='x1' from='mallory@localhost/m' to='{ALICE_T}/phone'>\
         <body>click http://evil.example</body>\
         <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    assert!(
        out.is_empty(),
        "{:?}",
        out.iter().map(String::from).collect::<Vec<_>>()
    );
    // Nor with the id of a message alice sent to somebody else.
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", "");
    let out = w.server_sends(&format!(
        "<message type='error' id='m1' from='mallory@localhost/m' to='{ALICE_T}/phone'>\
         <body>spam</body><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    assert!(out.is_empty());
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "sent");
}

#[test]
fn an_error_for_a_message_really_sent_is_relayed_as_an_error_only() {
    let mut w = World::new();
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "m1", ASK_BOTH);
    let out = w.server_sends(&format!(
        "<message type='error' id='m1' from='bob@localhost/res' to='{ALICE_T}/phone'>\
         <body>hello m1</body><subject>s</subject><x xmlns='jabber:x:oob'><url>http://x</url></x>\
         <error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text></error></message>"
    ));
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("id"), Some("m1"));
    assert_eq!(e.attr("to"), Some("alice@localhost/phone"));
    assert_eq!(e.attr("from"), Some(&*format!("{BOB_T}/res")));
    let children: Vec<_> = e.children().map(|c| c.name().to_owned()).collect();
    assert_eq!(children, ["error"], "no body, subject or payloads relayed");
    assert_eq!(error_condition(e).as_deref(), Some("recipient-unavailable"));
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "failed");
}

#[test]
fn directed_presence_from_a_stranger_is_not_relayed_nor_kept() {
    let mut w = World::new();
    let out = w.server_sends(&format!(
        "<presence from='mallory@localhost/m' to='{ALICE_T}'><status>buy now at http://evil.example</status></presence>"
    ));
    assert!(out.is_empty());
    let out = w.server_sends(&format!(
        "<presence type='unavailable' from='mallory@localhost/m' to='{ALICE_T}'><status>bye, see http://evil.example</status></presence>"
    ));
    assert!(out.is_empty());
    assert_eq!(
        w.tm.presence().kept(),
        0,
        "no one may see mallory: nothing kept"
    );
    // Mallory granted carol, but not alice: kept for carol, still not relayed to alice.
    w.server_sends(&format!(
        "<presence type='subscribed' from='mallory@localhost' to='{CAROL_T}'/>"
    ));
    let out = w.server_sends(&format!(
        "<presence from='mallory@localhost/m' to='{ALICE_T}'><status>hi</status></presence>"
    ));
    assert!(out.is_empty());
    assert_eq!(w.tm.presence().kept(), 1);
}

#[test]
fn presence_along_a_grant_is_relayed_whole_and_kept_compact() {
    let mut w = World::new();
    w.server_sends(&format!(
        "<presence type='subscribed' from='bob@localhost' to='{ALICE_T}'/>"
    ));
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'><show>dnd</show><status>busy</status>\
         <priority>5</priority><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>"
    ));
    assert_eq!(
        out.len(),
        2,
        "bob's name for alice's client, then the presence (Gajim redraws its row on presence)"
    );
    // Clients that take names only from PEP (Gajim) get it as an event
    // from the tracked address, once.
    let expected: Element = with_ns(&format!(
        "<message type='headline' from='{BOB_T}' to='alice@localhost' id='{}'>\
         <event xmlns='http://jabber.org/protocol/pubsub#event'><items node='http://jabber.org/protocol/nick'>\
         <item id='current'><nick xmlns='http://jabber.org/protocol/nick'>bob</nick></item></items></event></message>",
        out[0].attr("id").unwrap()
    ))
    .parse()
    .unwrap();
    assert_eq!(out[0], expected);
    let again = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'><show>dnd</show><status>busy</status>\
         <priority>5</priority></presence>"
    ));
    assert_eq!(again.len(), 1, "the name goes once per run: {again:?}");
    // Alice is authorised: her client gets the avatar hash (and caps) too.
    let names: Vec<_> = out[1].children().map(|c| c.name().to_owned()).collect();
    assert_eq!(names, ["show", "status", "priority", "x", "nick"]);
    assert_eq!(nick(&out[1]).as_deref(), Some("bob"), "a name to show");
    assert_eq!(out[1].attr("from"), Some(format!("{BOB_T}/res").as_str()));
    assert_eq!(out[1].get_child("status", NS).unwrap().text(), "busy");
    // Probe answers come from what is kept: availability only.
    let out = w.server_sends(&format!(
        "<presence type='probe' from='alice@localhost' to='{BOB_T}'/>"
    ));
    assert_eq!(out[1].get_child("show", NS).unwrap().text(), "dnd");
    let names: Vec<_> = out[1].children().map(|c| c.name().to_owned()).collect();
    assert_eq!(names, ["show", "status", "priority", "nick"]);
    assert_eq!(nick(&out[1]).as_deref(), Some("bob"));
}

fn nick(presence: &Element) -> Option<String> {
    presence
        .get_child("nick", "http://jabber.org/protocol/nick")
        .map(Element::text)
}

/// A contact who names themselves in their presence keeps their own name.
#[test]
fn a_contacts_own_nickname_is_kept() {
    let mut w = World::new();
    w.server_sends(&format!(
        "<presence type='subscribed' from='bob@localhost' to='{ALICE_T}'/>"
    ));
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'><nick xmlns='http://jabber.org/protocol/nick'>Bob B.</nick></presence>"
    ));
    let nicks: Vec<_> = out
        .iter()
        .find(|e| e.name() == "presence")
        .unwrap()
        .children()
        .filter(|c| c.name() == "nick")
        .map(Element::text)
        .collect();
    assert_eq!(nicks, ["Bob B."]);
}

#[test]
fn a_contact_with_many_resources_is_kept_only_up_to_the_cap() {
    let mut w = World::new();
    w.server_sends(&format!(
        "<presence type='subscribed' from='bob@localhost' to='{ALICE_T}'/>"
    ));
    for i in 0..40 {
        w.server_sends(&format!(
            "<presence from='bob@localhost/r{i}' to='{ALICE_T}'/>"
        ));
    }
    assert_eq!(
        w.tm.presence().kept(),
        tidemark::presence::MAX_RESOURCES_PER_CONTACT
    );
}

#[test]
fn a_subscription_request_carries_no_content_from_the_stranger() {
    let mut w = World::new();
    let out = w.server_sends(&format!(
        "<presence type='subscribe' id='s1' from='mallory@localhost/m' to='{ALICE_T}'>\
         <status>let me in: http://evil.example</status><nick xmlns='http://jabber.org/protocol/nick'>Your Bank</nick></presence>"
    ));
    assert_eq!(out.len(), 1);
    let p = &out[0];
    // The one child is a name no stranger chooses: the local part of their
    // real JID, never their own "Your Bank".
    assert_eq!(p.children().count(), 1, "{}", String::from(p));
    assert_eq!(nick(p).as_deref(), Some("mallory"));
    let mut attrs: Vec<_> = p
        .attrs()
        .iter()
        .map(|((_, k), v)| format!("{k}={v}"))
        .collect();
    attrs.sort();
    assert_eq!(
        attrs,
        [
            "from=mallory\\40localhost@chat.localhost",
            "id=s1",
            "to=alice@localhost",
            "type=subscribe"
        ]
    );
}

#[test]
fn chat_states_from_a_stranger_are_dropped() {
    let mut w = World::new();
    let out = w.server_sends(&format!(
        "<message type='chat' from='mallory@localhost/m' to='{ALICE_T}'>\
         <composing xmlns='http://jabber.org/protocol/chatstates'/><subject>hello</subject></message>"
    ));
    assert!(out.is_empty());
}

// --- Addresses tidemark cannot track (issue 7) ---

#[test]
fn a_sender_too_long_to_track_gets_jid_malformed_and_nothing_is_recorded() {
    let mut w = World::new();
    let long = format!("{}@localhost", "a".repeat(1015));
    let before = stored_messages(&w);
    let out = w.server_sends(&format!(
        "<message type='chat' id='m1' from='{long}/r' to='{BOB_T}'><body>hi</body></message>"
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("type"), Some("error"));
    assert_eq!(error_condition(&out[0]).as_deref(), Some("jid-malformed"));
    assert_eq!(
        out[0].get_child("error", NS).unwrap().attr("type"),
        Some("modify")
    );
    assert!(
        error_text(&out[0]).contains("cannot be tracked"),
        "{}",
        error_text(&out[0])
    );
    let out = w.server_sends(&format!(
        "<presence type='subscribe' from='{long}' to='{BOB_T}'/>"
    ));
    assert_eq!(error_condition(&out[0]).as_deref(), Some("jid-malformed"));
    assert!(!w.store.has_watchers(&long).unwrap());
    assert_eq!(stored_messages(&w), before);
}

#[test]
fn a_backslash_before_a_multibyte_character_crashes_nothing() {
    let mut w = World::new();
    let out = w.server_sends(
        "<message type='chat' id='m1' from='alice@localhost/a' to='x\\€@chat.localhost'><body>hi</body></message>",
    );
    assert_eq!(out[0].attr("type"), Some("error"));
    let out = w.server_sends(&format!(
        "<presence type='subscribe' from='z\\€@localhost' to='{BOB_T}'/>"
    ));
    assert_eq!(
        out[0].attr("from"),
        Some("z\\€\\40localhost@chat.localhost")
    );
    assert_eq!(out[0].attr("to"), Some("bob@localhost"));
}

// --- No false offline after a (re)connect (issue 7) ---

fn reconnected(extra: &str) -> World {
    let mut w = World::with_config(extra);
    w.grant_and_online("alice", "bob");
    let _ = w.connected();
    w
}

#[test]
fn messages_wait_for_the_probe_answer_and_keep_their_order() {
    let mut w = reconnected("[presence]\nprobe_wait_ms = 60000\n");
    for id in ["m1", "m2", "m3"] {
        assert!(alice_says(&mut w, id, "").is_empty(), "{id} waits");
    }
    assert_eq!(w.tm.waiting().len(), 3);
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    let ids: Vec<_> = messages_to(&out, "bob@localhost")
        .iter()
        .map(|m| m.attr("id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["m1", "m2", "m3"]);
    assert!(w.tm.waiting().is_empty());
    // Known now: the next one goes straight through.
    assert_eq!(
        messages_to(&alice_says(&mut w, "m4", ""), "bob@localhost").len(),
        1
    );
}

#[test]
fn without_an_answer_the_wait_ends_in_tick_as_offline() {
    let mut w = reconnected("[presence]\nprobe_wait_ms = 5000\n");
    let connected_at = w.now;
    assert!(alice_says(&mut w, "m1", "").is_empty());
    assert!(w.tick_at(connected_at + 4999).is_empty(), "still waiting");
    let out = w.tick_at(connected_at + 5000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("recipient-unavailable")
    );
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m1"), "failed");
}

#[test]
fn a_probe_answered_with_an_error_means_offline_at_once() {
    let mut w = reconnected("[presence]\nprobe_wait_ms = 60000\noffline = \"queue\"\n");
    assert!(alice_says(&mut w, "m1", "").is_empty());
    let out = w.server_sends(&format!(
        "<presence type='error' from='bob@localhost' to='{ALICE_T}'>\
         <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
    ));
    assert!(out.is_empty(), "queued, as for any offline contact");
    assert_eq!(w.tm.waiting().len(), 0);
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'/>"
    ));
    assert_eq!(messages_to(&out, "bob@localhost").len(), 1);
}

#[test]
fn waiting_is_bounded_and_a_stranger_never_waits() {
    let mut w =
        reconnected("[presence]\nprobe_wait_ms = 60000\n[limits]\nmax_waiting_for_presence = 2\n");
    assert!(alice_says(&mut w, "m1", "").is_empty());
    assert!(alice_says(&mut w, "m2", "").is_empty());
    let out = alice_says(&mut w, "m3", "");
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("resource-constraint")
    );
    assert_eq!(
        out[0].get_child("error", NS).unwrap().attr("type"),
        Some("wait")
    );
    assert!(error_text(&out[0]).contains("limits.max_waiting_for_presence"));
    // Carol was never granted: refused as ever, not held.
    let out = w.server_sends(&format!(
        "<message type='chat' id='c1' from='carol@localhost/c' to='{BOB_T}'><body>x</body></message>"
    ));
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("service-unavailable")
    );
    assert_eq!(w.tm.waiting().len(), 2);
}

// --- The per-sender rate limit (issue 7) ---

#[test]
fn over_the_rate_a_sender_is_refused_and_nothing_is_recorded() {
    // 0.001 a second: nothing refills during the test.
    let mut w = World::with_config("[limits]\nrate_per_second = 0.001\nrate_burst = 4\n");
    w.grant_and_online("alice", "bob"); // bob: 2 stanzas
    assert_eq!(
        messages_to(&alice_says(&mut w, "m1", ASK_BOTH), "bob@localhost").len(),
        1
    );
    for id in ["m2", "m3", "m4"] {
        alice_says(&mut w, id, "");
    }
    let before = stored_messages(&w);
    let out = alice_says(&mut w, "m5", "");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("resource-constraint")
    );
    assert_eq!(
        out[0].get_child("error", NS).unwrap().attr("type"),
        Some("wait")
    );
    assert!(error_text(&out[0]).contains("limits.rate_per_second"));
    assert_eq!(stored_messages(&w), before, "nothing recorded");
    let conv = tidemark::store::ConversationKey::direct("alice@localhost", "bob@localhost");
    assert!(
        w.store
            .find_message(&conv, "alice@localhost", "m5")
            .unwrap()
            .is_none()
    );
    // Presence and errors over the limit are dropped without a word.
    assert!(
        w.server_sends(&format!(
            "<presence from='alice@localhost/phone' to='{BOB_T}'/>"
        ))
        .is_empty()
    );
    assert!(
        w.server_sends(&format!(
            "<message type='error' id='z' from='alice@localhost/phone' to='{BOB_T}'/>"
        ))
        .is_empty()
    );
    // Others are not affected, nor the server itself.
    assert_eq!(
        bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='m1'/>").len(),
        1
    );
    for _ in 0..10 {
        let out = w.server_sends("<iq type='get' id='p' from='localhost' to='chat.localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        assert_eq!(out[0].attr("type"), Some("result"));
    }
}

// --- Refusals kept per sender, newest only (issue 7) ---

#[test]
fn refused_messages_do_not_grow_the_store_past_the_bound() {
    let mut w = World::with_config("[limits]\nmax_refusals_per_sender = 3\n");
    // Bob never granted alice: every message is refused and recorded failed.
    for i in 1..=50 {
        let out = alice_says(&mut w, &format!("m{i}"), "");
        assert_eq!(
            error_condition(&out[0]).as_deref(),
            Some("service-unavailable")
        );
    }
    assert_eq!(stored_messages(&w), 3);
    assert_eq!(w.store.refusal_count("alice@localhost").unwrap(), 3);
    for id in ["m48", "m49", "m50"] {
        assert_eq!(w.state("alice@localhost/phone", BOB_T, id), "failed");
    }
    let r = w.status("alice@localhost/phone", BOB_T, "m47");
    assert_eq!(r.attr("type"), Some("error"));
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    // Another sender's refusals are counted apart, and delivered messages
    // are not refusals.
    w.grant_and_online("alice", "bob");
    alice_says(&mut w, "ok1", "");
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "ok1"), "sent");
    assert_eq!(w.state("alice@localhost/phone", BOB_T, "m50"), "failed");
}

/// The core reads no clock: what it answers, ids and times included, follows
/// from the stanzas and the times it is handed, so the same transcript at
/// the same times gives the same answers, byte for byte.
#[test]
fn the_same_stanzas_at_the_same_times_give_the_same_answers() {
    let transcript = |w: &mut World| -> Vec<String> {
        let mut seen = Vec::new();
        w.grant_and_online("alice", "bob");
        seen.extend(w.connected().iter().map(String::from));
        seen.extend(
            w.server_sends(&format!(
                "<presence from='bob@localhost/res' to='{ALICE_T}'/>"
            ))
            .iter()
            .map(String::from),
        );
        seen.extend(
            alice_says(w, "m1", "<markable xmlns='urn:xmpp:chat-markers:0'/>")
                .iter()
                .map(String::from),
        );
        seen.extend(
            w.server_sends(&format!(
                "<message from='bob@localhost/res' to='{ALICE_T}'>\
                 <displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>"
            ))
            .iter()
            .map(String::from),
        );
        seen
    };
    let first = transcript(&mut World::new());
    let second = transcript(&mut World::new());
    assert_eq!(first, second);
    // Ids tidemark makes carry the time it was handed (here: the probe at
    // connect, and the marker sent on to alice).
    let handed = format!("tm-{}-", 1_795_000_000_000u64 + 2000);
    assert!(
        first.iter().any(|s| s.contains(&handed)),
        "no id made at the time handed in: {first:#?}"
    );
    assert!(
        first
            .iter()
            .any(|s| s.contains("displayed") && s.contains("tm-1795000005000-")),
        "the marker's id is not from the time it came: {first:#?}"
    );
}

/// The core writes nothing itself: a stanza's writes come back as values,
/// and the store holds them only once the shell applies them. A stanza it
/// refuses asks for no write at all.
#[test]
fn the_core_returns_its_writes_and_the_shell_applies_them() {
    let mut w = World::with_config("");
    w.grant_and_online("alice", "bob");
    w.now += 1000;
    let message: Element = with_ns(&format!(
        "<message type='chat' id='m1' from='alice@localhost/phone' to='{BOB_T}'><body>hi</body>{ASK_BOTH}</message>"
    ))
    .parse()
    .unwrap();
    let effects = w.tm.handle(&message, w.now);
    let conv = ConversationKey::direct("alice@localhost", "bob@localhost");
    let store = w.tm.store().clone();
    assert!(
        store
            .find_message(&conv, "alice@localhost", "m1")
            .unwrap()
            .is_none(),
        "nothing is written before the shell applies the effects"
    );
    let recorded: Vec<&MessageRecord> = effects
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::Message {
                conv: c, record, ..
            } if *c == conv => Some(record),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.len(), 1, "{:?}", effects.writes);
    assert_eq!(recorded[0].id, "m1");
    assert_eq!(recorded[0].sent_at, w.now);
    let sent = effects.apply(&*store).unwrap();
    assert_eq!(sent.len(), 1, "relayed to bob");
    let (_, stored) = store
        .find_message(&conv, "alice@localhost", "m1")
        .unwrap()
        .expect("written once applied");
    assert_eq!(stored.recipient, "bob@localhost");

    // A marker for a message bob never got: refused, and asks for nothing.
    w.now += 1000;
    let bogus: Element = with_ns(&format!(
        "<message from='bob@localhost/res' to='{ALICE_T}/phone'><displayed xmlns='urn:xmpp:chat-markers:0' id='nope'/></message>"
    ))
    .parse()
    .unwrap();
    assert!(w.tm.handle(&bogus, w.now).writes.is_empty());
}

/// A message to one's own tracked address has no other party: refused with
/// a reason, and nothing is written.
#[test]
fn a_message_to_ones_own_tracked_address_is_refused() {
    let mut w = World::with_config("");
    w.grant_and_online("alice", "bob");
    w.now += 1000;
    let to_self: Element = with_ns(
        "<message type='chat' id='s1' from='bob@localhost/res' to='bob\\40localhost@chat.localhost'><body>me</body></message>",
    )
    .parse()
    .unwrap();
    let effects = w.tm.handle(&to_self, w.now);
    assert!(effects.writes.is_empty(), "{:?}", effects.writes);
    assert_eq!(effects.send.len(), 1);
    assert_eq!(
        error_condition(&effects.send[0]).as_deref(),
        Some("bad-request")
    );
    assert_eq!(effects.send[0].attr("to"), Some("bob@localhost/res"));
}

// --- Queries to a tracked address (issue 9, point 4) ---

fn disco_to(asker: &str, to: &str, id: &str) -> String {
    format!(
        "<iq type='get' id='{id}' from='{asker}' to='{to}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
}

/// alice may see bob: her query goes to bob under tidemark's id, from her
/// tracked address; bob's answer comes back to her under her id, from the
/// address she asked. A second answer with the same id is nobody's.
#[test]
fn a_query_to_a_tracked_address_is_answered_by_the_contact() {
    let mut w = World::with_config("");
    w.grant_and_online("alice", "bob");
    let out = w.server_sends(&disco_to(
        "alice@localhost/phone",
        &format!("{BOB_T}/res"),
        "a1",
    ));
    assert_eq!(out.len(), 1, "{out:?}");
    let relayed = &out[0];
    assert_eq!(relayed.attr("to"), Some("bob@localhost/res"));
    assert_eq!(relayed.attr("from"), Some(&*format!("{ALICE_T}/phone")));
    assert_eq!(relayed.attr("type"), Some("get"));
    let id = relayed.attr("id").unwrap().to_owned();
    assert_ne!(id, "a1", "the contact never sees the asker's own id");
    assert!(relayed.has_child("query", "http://jabber.org/protocol/disco#info"));

    let answer = format!(
        "<iq type='result' id='{id}' from='bob@localhost/res' to='{ALICE_T}/phone'>\
         <query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:receipts'/></query></iq>"
    );
    let back = w.server_sends(&answer);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(back[0].attr("from"), Some(&*format!("{BOB_T}/res")));
    assert_eq!(back[0].attr("id"), Some("a1"));
    assert_eq!(back[0].attr("type"), Some("result"));
    let feature = back[0]
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("feature", "http://jabber.org/protocol/disco#info"))
        .and_then(|f| f.attr("var"));
    assert_eq!(feature, Some("urn:xmpp:receipts"));
    assert!(w.server_sends(&answer).is_empty(), "answered once only");
}

/// An answer from anyone but the contact asked, or to another session, is
/// dropped, and the real answer still gets through afterwards.
#[test]
fn only_the_contact_asked_can_answer_a_relayed_query() {
    let mut w = World::with_config("");
    w.grant_and_online("alice", "bob");
    let out = w.server_sends(&disco_to("alice@localhost/phone", BOB_T, "a2"));
    assert_eq!(out[0].attr("to"), Some("bob@localhost"));
    let id = out[0].attr("id").unwrap().to_owned();
    for (from, to) in [
        ("mallory@localhost/x", format!("{ALICE_T}/phone")),
        ("bob@localhost/res", format!("{ALICE_T}/phone")),
        ("bob@localhost", format!("{ALICE_T}/laptop")),
    ] {
        let forged = format!("<iq type='result' id='{id}' from='{from}' to='{to}'/>");
        assert!(
            w.server_sends(&forged).is_empty(),
            "{from} -> {to} was taken"
        );
    }
    let real = format!("<iq type='result' id='{id}' from='bob@localhost' to='{ALICE_T}/phone'/>");
    let back = w.server_sends(&real);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].attr("from"), Some(BOB_T));
    assert_eq!(back[0].attr("id"), Some("a2"));
}

/// Someone bob does not let see him gets the one refusal, whether bob exists
/// or not; nothing goes to bob. A set is never relayed.
#[test]
fn a_query_from_someone_not_allowed_learns_nothing() {
    let mut w = World::with_config("");
    w.grant_and_online("alice", "bob");
    let refusal = |w: &mut World, to: &str| {
        let out = w.server_sends(&disco_to("carol@localhost/r", to, "c1"));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].attr("to"), Some("carol@localhost/r"));
        // Everything but `by`, which names the address asked.
        let error = out[0].get_child("error", NS).unwrap();
        let text = error
            .get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas")
            .map(Element::text);
        (
            error_condition(&out[0]),
            error.attr("type").map(str::to_owned),
            text,
        )
    };
    let bob = refusal(&mut w, &format!("{BOB_T}/res"));
    let nobody = refusal(&mut w, "nobody\\40localhost@chat.localhost/res");
    assert_eq!(bob.0.as_deref(), Some("service-unavailable"));
    assert_eq!(bob, nobody, "the refusal says nothing about who exists");
    let set = w.server_sends(&format!(
        "<iq type='set' id='s1' from='alice@localhost/phone' to='{BOB_T}'><vCard xmlns='vcard-temp'/></iq>"
    ));
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(
        error_condition(&set[0]).as_deref(),
        Some("service-unavailable")
    );
}

/// What waits for answers is bounded per asker: past it, the asker is told
/// to wait, and the queries waiting are forgotten after their time.
#[test]
fn relayed_queries_waiting_are_bounded_per_asker() {
    let mut w = World::with_config("[limits]\nrate_per_second = 100000\nrate_burst = 100000\n");
    w.grant_and_online("alice", "bob");
    let limit = tidemark::contact_query::MAX_WAITING_PER_ASKER;
    for i in 0..limit {
        let out = w.server_sends(&disco_to("alice@localhost/phone", BOB_T, &format!("f{i}")));
        assert_eq!(out[0].attr("to"), Some("bob@localhost"), "query {i}");
    }
    let over = w.server_sends(&disco_to("alice@localhost/phone", BOB_T, "over"));
    assert_eq!(
        error_condition(&over[0]).as_deref(),
        Some("resource-constraint")
    );
    let later = w.now + tidemark::contact_query::ANSWER_WAIT + 1;
    let _ = w.tick_at(later);
    let again = w.server_sends(&disco_to("alice@localhost/phone", BOB_T, "again"));
    assert_eq!(again[0].attr("to"), Some("bob@localhost"), "{again:?}");
}

// --- What each client can say (issue 9, point 6) ---

/// bob comes online (again) with a client that announces caps without chat
/// markers, and answers tidemark's question about them.
fn bob_uses_a_client_without_read_markers(w: &mut World) {
    let info = "<query xmlns='http://jabber.org/protocol/disco#info'>\
        <identity category='client' type='console' name='Profanity'/>\
        <feature var='http://jabber.org/protocol/disco#info'/><feature var='urn:xmpp:receipts'/></query>";
    let ver = caps_ver(info);
    let out = w.server_sends(&format!(
        "<presence from='bob@localhost/res' to='{ALICE_T}'>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://profanity-im.github.io' ver='{ver}'/></presence>"
    ));
    let question = out
        .iter()
        .find(|e| e.name() == "iq")
        .expect("tidemark asks bob's client what it can say");
    assert_eq!(question.attr("from"), Some("chat.localhost"));
    assert_eq!(question.attr("to"), Some("bob@localhost/res"));
    let id = question.attr("id").unwrap().to_owned();
    let answer = info.replace(
        "<query xmlns='http://jabber.org/protocol/disco#info'>",
        &format!(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='https://profanity-im.github.io#{ver}'>"
        ),
    );
    assert!(
        w.server_sends(&format!(
            "<iq type='result' id='{id}' from='bob@localhost/res' to='chat.localhost'>{answer}</iq>"
        ))
        .is_empty()
    );
}

/// bob's client announces caps without chat markers: tidemark asks it once,
/// checks the answer against the hash, and alice's status query says that
/// "read" will not come, rather than leaving her waiting on "delivered".
#[test]
fn a_client_without_read_markers_is_named_in_the_status() {
    let mut w = World::with_config("");
    w.server_sends(&format!(
        "<presence type='subscribed' from='bob@localhost' to='{ALICE_T}'/>"
    ));
    bob_uses_a_client_without_read_markers(&mut w);
    alice_says(&mut w, "m1", ASK_BOTH);
    bob_acks(&mut w, "<received xmlns='urn:xmpp:receipts' id='m1'/>");
    let status = w.status("alice@localhost/phone", BOB_T, "m1");
    let recipient = status
        .get_child("status", "urn:tidemark:status:0")
        .and_then(|s| s.get_child("recipient", "urn:tidemark:status:0"))
        .unwrap();
    assert_eq!(recipient.attr("state"), Some("delivered"));
    let notes: Vec<(String, String)> = recipient
        .children()
        .filter(|c| c.name() == "not-reported")
        .map(|c| (c.attr("state").unwrap_or("").to_owned(), c.text()))
        .collect();
    assert_eq!(
        notes,
        [(
            "read".to_owned(),
            "read status not available: bob@localhost's client does not send read markers"
                .to_owned()
        )]
    );
}

/// ejabberd with mod_privilege (XEP-0356) offers the component its
/// permissions in a message from the server's domain as it connects. tidemark
/// uses none: the offer is taken quietly, never answered with an error (the
/// server would log it, and an admin would wonder). The same message from a
/// user is what any message to the service is: refused.
#[test]
fn a_privilege_offer_from_the_server_is_taken_quietly() {
    let mut w = World::new();
    for ns in ["urn:xmpp:privilege:1", "urn:xmpp:privilege:2"] {
        // As ejabberd 23.01 sends it (its component stream log): no id.
        let offer = format!(
            "<message to='chat.localhost' from='localhost'><privilege xmlns='{ns}'>\
             <perm type='none' access='message'/><perm type='get' access='roster'/>\
             <perm type='none' access='presence'/></privilege></message>"
        );
        assert!(w.server_sends(&offer).is_empty(), "{ns}");
    }
    let from_user = "<message from='mallory@localhost/x' to='chat.localhost' id='p2'>\
        <privilege xmlns='urn:xmpp:privilege:1'><perm access='roster' type='both'/></privilege></message>";
    let out = w.server_sends(from_user);
    assert_eq!(out.len(), 1);
    assert_eq!(
        error_condition(&out[0]).as_deref(),
        Some("service-unavailable")
    );
}
