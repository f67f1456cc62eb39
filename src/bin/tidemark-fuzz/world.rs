//! One tidemark over a real sled store, fed the fuzzer's inputs, and the
//! checks made on what it answers.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use minidom::Element;
use sha1::{Digest, Sha1};
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{SledStore, Store};

use crate::reader::{self, Frame};

/// A fresh store every so many inputs keeps it small, so comparing it
/// before and after a refusal stays cheap.
pub const RESET_EVERY: u64 = 2_000;
/// The store is compared around every refusal among one input in this many.
const DIGEST_EVERY: u64 = 4;
/// Answers that record a failed status by design (DESIGN.md: the sender can
/// ask why it failed): not refusals that must leave the store alone.
const RECORDED_FAILURES: [&str; 2] = ["service-unavailable", "recipient-unavailable"];
const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

#[derive(Default)]
pub struct Stats {
    pub reader_refused: u64,
    pub service_refused: u64,
    pub digests_checked: u64,
    pub outcomes: HashSet<String>,
}

pub struct World {
    tm: Tidemark,
    store: Arc<SledStore>,
    now: u64,
}

fn config(queue: bool) -> Config {
    // The rate limit is lifted: every input comes from a handful of senders,
    // and refusing most of them would leave the rest of the service untried.
    let text = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"fuzz\"\n\
         [storage]\npath = \"unused\"\n[presence]\noffline = \"{}\"\n\
         [limits]\nrate_per_second = 1000000.0\nrate_burst = 1000000\n",
        if queue { "queue" } else { "reject" }
    );
    Config::parse(&text, Path::new("fuzz.toml")).expect("the fuzzer's config is valid")
}

impl World {
    /// A fresh tidemark (offline policy alternating between resets) that
    /// has seen the corpus as is, so that grants, rooms and messages exist
    /// for the mutated inputs to hit.
    pub fn new(corpus: &[Vec<u8>], n: u64) -> Self {
        let store = Arc::new(SledStore::temporary().expect("a temporary sled store"));
        let shared: Arc<dyn Store> = store.clone();
        let queue = (n / RESET_EVERY) % 2 == 1;
        let tm = Tidemark::new(config(queue), shared, 1_795_000_000_000)
            .expect("tidemark over a fresh store");
        let mut w = Self {
            tm,
            store,
            now: 1_795_000_000_000,
        };
        for seed in corpus {
            for frame in reader::read(seed) {
                if let Frame::Stanza(el) = frame {
                    w.now += 100;
                    let effects = w.tm.handle(&el, w.now);
                    let _ = effects.apply(&*w.store);
                }
            }
        }
        w
    }

    /// One fuzz input; Err names a finding.
    pub fn run(&mut self, input: &[u8], n: u64, stats: &mut Stats) -> Result<(), String> {
        self.feed(input, n.is_multiple_of(DIGEST_EVERY), stats)
            .map(|_| ())
    }

    /// One input with the store compared around every refusal; the outcomes.
    pub fn run_checked(&mut self, input: &[u8], stats: &mut Stats) -> Result<Vec<String>, String> {
        self.feed(input, true, stats)
    }

    fn feed(
        &mut self,
        input: &[u8],
        compare: bool,
        stats: &mut Stats,
    ) -> Result<Vec<String>, String> {
        let mut outcomes = vec![];
        for frame in reader::read(input) {
            let el = match frame {
                Frame::Refused(why) => {
                    stats.reader_refused += 1;
                    let o = format!("reader refused: {}", generic(&why));
                    stats.outcomes.insert(o.clone());
                    outcomes.push(o);
                    continue;
                }
                Frame::Stanza(el) => el,
            };
            self.now += 50;
            let before = compare.then(|| self.digest());
            let effects = self.tm.handle(&el, self.now);
            let out = effects
                .apply(&*self.store)
                .map_err(|e| format!("the store refused the core's writes: {e}"))?;
            let o = outcome(&el, &out);
            stats.outcomes.insert(o.clone());
            outcomes.push(o);
            if is_refusal(&el, &out) {
                stats.service_refused += 1;
                if let Some(before) = before {
                    stats.digests_checked += 1;
                    if self.digest() != before {
                        return Err(format!(
                            "a refusal changed the store: {}",
                            out.iter().map(String::from).collect::<Vec<_>>().join(" ")
                        ));
                    }
                }
            }
            if self.now.is_multiple_of(1000)
                && let Ok(effects) = self.tm.tick(self.now)
            {
                effects
                    .apply(&*self.store)
                    .map_err(|e| format!("the store refused the tick's writes: {e}"))?;
            }
        }
        Ok(outcomes)
    }

    /// The store's content (its export without the header, whose sequence
    /// counter is not state anyone sees), hashed.
    fn digest(&self) -> [u8; 20] {
        let mut buf = Vec::new();
        self.store
            .export(&mut buf)
            .expect("export of a temporary store");
        let body = buf
            .iter()
            .position(|&c| c == b'\n')
            .map_or(&buf[..], |i| &buf[i + 1..]);
        Sha1::digest(body).into()
    }
}

/// An error message with its numbers taken out, so that outcomes group.
fn generic(why: &str) -> String {
    let s: String = why
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(60)
        .collect();
    s
}

fn condition(el: &Element) -> Option<String> {
    let err = el.children().find(|c| c.name() == "error")?;
    err.children()
        .find(|c| c.ns() == STANZAS_NS && c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// What came in and what went out, by kind, type and error condition.
fn outcome(input: &Element, out: &[Element]) -> String {
    let mut parts: Vec<String> = out
        .iter()
        .map(|o| {
            let mut s = format!("{}/{}", o.name(), o.attr("type").unwrap_or("-"));
            if let Some(c) = condition(o) {
                s.push('/');
                s.push_str(&c);
            }
            s
        })
        .collect();
    parts.sort();
    parts.dedup();
    format!(
        "{}/{} -> [{}]",
        input.name(),
        input.attr("type").unwrap_or("-"),
        parts.join(" ")
    )
}

/// Every answer is an error back to the sender, other than the gate's
/// recorded failures.
fn is_refusal(input: &Element, out: &[Element]) -> bool {
    !out.is_empty()
        && out.iter().all(|o| {
            o.attr("type") == Some("error")
                && o.attr("to") == input.attr("from")
                && condition(o).is_none_or(|c| !RECORDED_FAILURES.contains(&c.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    const IN: &str = "<message xmlns='jabber:component:accept' from='a@localhost/r' to='b\\40localhost@chat.localhost' id='m1'/>";

    #[test]
    fn an_error_back_to_the_sender_is_a_refusal() {
        let out = el(
            "<message xmlns='jabber:component:accept' type='error' to='a@localhost/r' id='m1'>\
             <error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        );
        assert!(is_refusal(&el(IN), &[out]));
    }

    #[test]
    fn a_recorded_failure_or_a_relay_is_not() {
        let failed = el(
            "<message xmlns='jabber:component:accept' type='error' to='a@localhost/r' id='m1'>\
             <error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        );
        let relayed = el(
            "<message xmlns='jabber:component:accept' type='error' to='b@localhost' id='m1'>\
             <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        );
        assert!(!is_refusal(&el(IN), &[failed]));
        assert!(!is_refusal(&el(IN), &[relayed]));
        assert!(!is_refusal(&el(IN), &[]));
    }

    #[test]
    fn a_refusal_leaves_the_store_as_it_was_and_the_digest_says_so() {
        let mut w = World::new(&[], 0);
        let before = w.digest();
        w.now += 50;
        let probe = el(
            "<iq xmlns='jabber:component:accept' type='get' id='q' from='a@localhost/r' to='chat.localhost'/>",
        );
        let out = w.tm.handle(&probe, w.now).apply(&*w.store).unwrap();
        assert!(
            is_refusal(&probe, &out),
            "an iq get without a child is refused"
        );
        assert_eq!(w.digest(), before);
        let grant = w.tm.handle(
            &el("<presence xmlns='jabber:component:accept' type='subscribed' from='b@localhost' to='a\\40localhost@chat.localhost'/>"),
            w.now + 50,
        );
        grant.apply(&*w.store).unwrap();
        assert_ne!(w.digest(), before, "a grant changes the digest");
    }
}
