//! What each contact's clients can say: whether they send XEP-0184 receipts
//! and XEP-0333 read markers, learnt from XEP-0115 entity capabilities.
//!
//! A client announces a hash of its features in its presence. tidemark asks
//! the client once per hash it has not seen (disco#info with the caps node,
//! from the service's domain), checks the answer against the hash, and keeps
//! verified answers by hash, so one answer serves every user of the same
//! client. An answer that does not match its hash still says what that one
//! client can do, but is not kept for others (anyone can announce any hash).
//!
//! Per contact, what counts is what any of their clients can say: someone
//! who reads on a client that sends markers can be seen reading. When none
//! of the clients tidemark has seen them use sends read markers, a sender
//! learns that "read" will not come, rather than waiting on "delivered".
//!
//! Everything here is bounded, and forgotten at a restart (learnt again from
//! the next presence).

use std::collections::{HashMap, VecDeque};

use minidom::Element;
use xmpp_parsers::caps::{Caps, compute_disco, hash_caps, query_caps};
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::hashes::Algo;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use crate::stanza::ns;
use crate::store::Millis;

/// Verified capability hashes kept (distinct client versions seen).
pub const MAX_HASHES: usize = 4_096;
/// Contacts whose clients' abilities are kept.
pub const MAX_CONTACTS: usize = 65_536;
/// Questions to clients waiting for an answer.
pub const MAX_ASKING: usize = 1_024;
/// How long a question waits for its answer.
pub const ANSWER_WAIT: Millis = 60_000;
/// Clients kept per contact, as many as the presence book keeps resources.
pub const MAX_CLIENTS_PER_CONTACT: usize = 16;

/// What a client sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Abilities {
    /// XEP-0184 receipts.
    pub receipts: bool,
    /// XEP-0333 chat markers (`displayed`: read).
    pub markers: bool,
    /// The client stops on a XEP-0004 multi-item result (`<reported/>` and
    /// `<item/>`s) in an ad-hoc command: Gajim 1.7.3's command window stays
    /// at "Executing…" (its form grid has no case for them; seen under
    /// Xvfb, `gajim/gtk/dataform.py`).
    pub no_multi_item_forms: bool,
}

impl Abilities {
    fn of(features: &DiscoInfoResult) -> Self {
        Abilities {
            receipts: features.features.contains(ns::RECEIPTS),
            markers: features.features.contains(ns::CHAT_MARKERS),
            no_multi_item_forms: features
                .identities
                .iter()
                .any(|i| i.category == "client" && i.name.as_deref() == Some("Gajim")),
        }
    }

    fn union(self, other: Abilities) -> Abilities {
        Abilities {
            receipts: self.receipts || other.receipts,
            markers: self.markers || other.markers,
            no_multi_item_forms: self.no_multi_item_forms || other.no_multi_item_forms,
        }
    }
}

#[derive(Debug)]
struct Asked {
    client: Jid,
    caps: Caps,
    until: Millis,
}

#[derive(Debug, Default)]
pub struct Clients {
    by_hash: HashMap<(String, Vec<u8>), Abilities>,
    hash_order: VecDeque<(String, Vec<u8>)>,
    /// Per contact (bare JID): their clients seen, by resource.
    by_contact: HashMap<String, HashMap<String, Abilities>>,
    contact_order: VecDeque<String>,
    asking: HashMap<String, Asked>,
    asked_ids: u64,
}

impl Clients {
    /// What `contact`'s clients seen so far can say together; `None` when
    /// tidemark has not learnt it (no caps seen, or not answered yet).
    pub fn of(&self, contact: &str) -> Option<Abilities> {
        self.by_contact
            .get(contact)?
            .values()
            .copied()
            .reduce(Abilities::union)
    }

    /// What the client `client` (full JID) can do, if tidemark has seen its
    /// caps (its presence to a tracked address).
    pub fn client(&self, client: &Jid) -> Option<Abilities> {
        let resource = client.resource().map_or("", |r| r.as_str());
        self.by_contact
            .get(client.to_bare().as_str())?
            .get(resource)
            .copied()
    }

    /// An available presence from `client` (full JID) with its caps, if
    /// any: the question to ask it, if its hash is new.
    pub fn on_presence(
        &mut self,
        client: &Jid,
        presence: &Element,
        service: &str,
        now: Millis,
    ) -> Option<Element> {
        let caps = presence
            .get_child("c", ns::CAPS)
            .and_then(|c| Caps::try_from(c.clone()).ok())?;
        if caps.hash != Algo::Sha_1 || caps.ver.is_empty() {
            return None;
        }
        let key = (caps.node.clone(), caps.ver.clone());
        if let Some(known) = self.by_hash.get(&key).copied() {
            self.learn(client, known);
            return None;
        }
        self.expire(now);
        let already = self.asking.values().any(|a| a.caps.ver == caps.ver);
        if already || self.asking.len() >= MAX_ASKING {
            return None;
        }
        self.asked_ids += 1;
        let id = format!("caps-{now}-{}", self.asked_ids);
        let question = Iq::from_get(id.clone(), query_caps(caps.clone()))
            .with_from(Jid::new(service).ok()?)
            .with_to(client.clone());
        self.asking.insert(
            id,
            Asked {
                client: client.clone(),
                caps,
                until: now.saturating_add(ANSWER_WAIT),
            },
        );
        Some(question.into())
    }

    /// An answer to the service from `from`: true if it was one of our
    /// questions (and is taken here).
    pub fn on_answer(&mut self, from: &Jid, iq: &Element) -> bool {
        let Some(id) = iq.attr("id") else {
            return false;
        };
        match self.asking.get(id) {
            // Only the client asked answers its question.
            Some(asked) if asked.client == *from => {}
            _ => return false,
        }
        let Some(asked) = self.asking.remove(id) else {
            return false;
        };
        let Some(result) = iq
            .get_child("query", ns::DISCO_INFO)
            .filter(|_| iq.attr("type") == Some("result"))
            .and_then(|q| DiscoInfoResult::try_from(q.clone()).ok())
        else {
            return true;
        };
        let abilities = Abilities::of(&result);
        let verified =
            hash_caps(&compute_disco(&result), Algo::Sha_1).is_ok_and(|h| h.hash == asked.caps.ver);
        if verified {
            let key = (asked.caps.node, asked.caps.ver);
            if self.by_hash.len() >= MAX_HASHES
                && let Some(old) = self.hash_order.pop_front()
            {
                self.by_hash.remove(&old);
            }
            if self.by_hash.insert(key.clone(), abilities).is_none() {
                self.hash_order.push_back(key);
            }
        }
        self.learn(&asked.client, abilities);
        true
    }

    fn learn(&mut self, client: &Jid, abilities: Abilities) {
        let contact = client.to_bare().to_string();
        let resource = client.resource().map_or("", |r| r.as_str()).to_owned();
        if !self.by_contact.contains_key(&contact) {
            if self.by_contact.len() >= MAX_CONTACTS
                && let Some(old) = self.contact_order.pop_front()
            {
                self.by_contact.remove(&old);
            }
            self.contact_order.push_back(contact.clone());
        }
        let clients = self.by_contact.entry(contact).or_default();
        if clients.len() < MAX_CLIENTS_PER_CONTACT || clients.contains_key(&resource) {
            clients.insert(resource, abilities);
        }
    }

    /// Forgets questions past their time.
    pub fn expire(&mut self, now: Millis) {
        self.asking.retain(|_, a| a.until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "chat.localhost";

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    fn disco(features: &[&str]) -> DiscoInfoResult {
        let mut xml = String::from(
            "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='t'/>",
        );
        for f in features {
            xml.push_str(&format!("<feature var='{f}'/>"));
        }
        xml.push_str("</query>");
        DiscoInfoResult::try_from(xml.parse::<Element>().unwrap()).unwrap()
    }

    fn ver(d: &DiscoInfoResult) -> String {
        hash_caps(&compute_disco(d), Algo::Sha_1)
            .unwrap()
            .to_base64()
    }

    fn presence(ver: &str) -> Element {
        format!(
            "<presence xmlns='jabber:component:accept'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://client.example' ver='{ver}'/></presence>"
        )
        .parse()
        .unwrap()
    }

    fn answer(id: &str, d: &DiscoInfoResult) -> Element {
        let mut iq: Element =
            format!("<iq xmlns='jabber:component:accept' type='result' id='{id}'/>")
                .parse()
                .unwrap();
        iq.append_child(d.clone().into());
        iq
    }

    /// XEP-0115 §5.2's example: the verification string and its hash.
    #[test]
    fn the_xep_example_verifies() {
        let d = disco(&[
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ]);
        let d = DiscoInfoResult {
            identities: vec![xmpp_parsers::disco::Identity::new(
                "client",
                "pc",
                "",
                "Exodus 0.9.1",
            )],
            ..d
        };
        assert_eq!(ver(&d), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn a_verified_answer_serves_every_client_with_its_hash() {
        let d = disco(&[ns::RECEIPTS]);
        let v = ver(&d);
        let mut c = Clients::default();
        let q = c
            .on_presence(&jid("bob@x/a"), &presence(&v), SERVICE, 0)
            .expect("a new hash is asked about");
        assert_eq!(q.attr("to"), Some("bob@x/a"));
        assert_eq!(q.attr("from"), Some(SERVICE));
        let node = q
            .get_child("query", ns::DISCO_INFO)
            .and_then(|q| q.attr("node"));
        assert_eq!(node, Some(&*format!("https://client.example#{v}")));
        // The same hash from another client while the question waits: not
        // asked twice.
        assert!(
            c.on_presence(&jid("carol@x/b"), &presence(&v), SERVICE, 1)
                .is_none()
        );
        let id = q.attr("id").unwrap().to_owned();
        // Nobody but the client asked answers.
        assert!(!c.on_answer(&jid("mallory@x/m"), &answer(&id, &disco(&[]))));
        assert!(c.on_answer(&jid("bob@x/a"), &answer(&id, &d)));
        let bob = c.of("bob@x").unwrap();
        assert!(bob.receipts && !bob.markers);
        // Verified: dave's client with the same hash is known at once.
        assert!(
            c.on_presence(&jid("dave@x/d"), &presence(&v), SERVICE, 2)
                .is_none()
        );
        assert_eq!(c.of("dave@x"), Some(bob));
    }

    #[test]
    fn an_answer_that_does_not_match_its_hash_speaks_for_its_client_only() {
        let honest = disco(&[ns::RECEIPTS, ns::CHAT_MARKERS]);
        let v = ver(&honest);
        let mut c = Clients::default();
        let q = c
            .on_presence(&jid("mallory@x/m"), &presence(&v), SERVICE, 0)
            .unwrap();
        let id = q.attr("id").unwrap().to_owned();
        // mallory claims the popular hash but answers "no markers".
        assert!(c.on_answer(&jid("mallory@x/m"), &answer(&id, &disco(&[]))));
        assert_eq!(c.of("mallory@x"), Some(Abilities::default()));
        // bob's client with that hash is asked itself, not judged by mallory.
        let asked = c.on_presence(&jid("bob@x/a"), &presence(&v), SERVICE, 1);
        assert!(asked.is_some());
        assert_eq!(c.of("bob@x"), None);
    }

    #[test]
    fn any_client_of_a_contact_that_sends_markers_counts() {
        let mut c = Clients::default();
        c.learn(
            &jid("bob@x/phone"),
            Abilities {
                receipts: true,
                markers: false,
                ..Abilities::default()
            },
        );
        c.learn(
            &jid("bob@x/laptop"),
            Abilities {
                receipts: true,
                markers: true,
                ..Abilities::default()
            },
        );
        assert_eq!(
            c.of("bob@x"),
            Some(Abilities {
                receipts: true,
                markers: true,
                ..Abilities::default()
            })
        );
        assert_eq!(c.of("carol@x"), None);
    }
}
