//! `storage.retention_days` as the connection loop runs it, no socket: a 1:1
//! status older than the retention is gone (the status query through the
//! router says item-not-found), a newer one stays, and nothing happens while
//! retention is off. Times are explicit: each step gets the time, nothing
//! sleeps.

use std::path::Path;
use std::sync::Arc;

use minidom::Element;
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::retention::Retention;
use tidemark::store::{SledStore, Store};

const BOB_T: &str = "bob\\40localhost@chat.localhost";
const DAY: u64 = 86_400_000;

struct World {
    tm: Tidemark,
    retention: Retention,
    now: u64,
}

impl World {
    fn new(storage_extra: &str) -> Self {
        let text = format!(
            "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"s\"\n[storage]\npath = \"unused\"\n{storage_extra}"
        );
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
        let mut w = Self {
            tm: Tidemark::new(config, store, 1_795_000_000_000).unwrap(),
            retention: Retention::default(),
            now: 1_795_000_000_000,
        };
        // bob lets alice see him, and is online.
        w.send("<presence type='subscribed' from='bob@localhost' to='alice\\40localhost@chat.localhost'/>");
        w.send("<presence from='bob@localhost/res' to='alice\\40localhost@chat.localhost'/>");
        w
    }

    fn send(&mut self, xml: &str) -> Vec<Element> {
        self.now += 1000;
        let effects = self.tm.handle(&with_ns(xml).parse().unwrap(), self.now);
        effects.apply(&**self.tm.store()).unwrap()
    }

    fn alice_says(&mut self, id: &str) {
        let out = self.send(&format!(
            "<message type='chat' id='{id}' from='alice@localhost/phone' to='{BOB_T}'><body>{id}</body>\
             <request xmlns='urn:xmpp:receipts'/></message>"
        ));
        assert!(
            out.iter()
                .any(|e| e.attr("to").is_some_and(|t| t.starts_with("bob@localhost"))),
            "relayed: {out:?}"
        );
        self.send(&format!(
            "<message from='bob@localhost/res' to='alice\\40localhost@chat.localhost/phone'>\
             <received xmlns='urn:xmpp:receipts' id='{id}'/></message>"
        ));
    }

    /// The summary of alice's message, or the error condition.
    fn status(&mut self, id: &str) -> String {
        let out = self.send(&format!(
            "<iq type='get' id='q' from='alice@localhost/phone' to='chat.localhost'>\
             <status xmlns='urn:tidemark:status:0' conversation='{BOB_T}' id='{id}'/></iq>"
        ));
        let r = &out[0];
        if let Some(s) = r.get_child("status", "urn:tidemark:status:0") {
            return s.attr("summary").unwrap().to_owned();
        }
        r.get_child("error", NS)
            .and_then(|e| e.children().find(|c| c.name() != "text"))
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| String::from(r))
    }

    /// Ticks once a second, as the connection loop does (a retention step,
    /// then the service's tick), until a pass over the store has certainly
    /// ended.
    fn ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.now += 1000;
            let keep = self.tm.config().storage.retention;
            self.retention
                .step(&**self.tm.store(), keep, self.now)
                .unwrap();
            let effects = self.tm.tick(self.now).unwrap();
            effects.apply(&**self.tm.store()).unwrap();
        }
    }
}

#[test]
fn a_status_older_than_the_retention_is_gone() {
    let mut w = World::new("retention_days = 1\n");
    w.alice_says("old");
    assert_eq!(w.status("old"), "delivered");
    w.now += DAY / 2;
    w.ticks(3);
    assert_eq!(w.status("old"), "delivered", "within the retention");

    w.now += DAY;
    w.alice_says("new");
    w.ticks(3);
    assert_eq!(w.status("old"), "item-not-found");
    assert_eq!(w.status("new"), "delivered");
}

#[test]
fn without_retention_nothing_expires() {
    let mut w = World::new("");
    w.alice_says("old");
    w.now += 3650 * DAY;
    w.ticks(3);
    assert_eq!(w.status("old"), "delivered");
}

const NS: &str = "jabber:component:accept";

/// Puts the component namespace on the stanza, as the server's stream has it.
fn with_ns(xml: &str) -> String {
    xml.replacen(' ', &format!(" xmlns='{NS}' "), 1)
}
