//! Queries to a tracked address, answered by the contact it stands for.
//!
//! A client learns a contact's name, avatar and features by asking the
//! contact (disco, vCard, ping, version, time, PEP reads). Through a tracked
//! address those questions go to tidemark, so it relays them: an `iq get`
//! from a watcher the contact lets see them goes on to the contact from the
//! watcher's tracked address under an id of tidemark's, and the contact's
//! answer comes back to the watcher under the watcher's id, from the
//! address they asked. Anyone else gets the one refusal tidemark always
//! gave, whether the contact exists, is online or not. `iq set` is never
//! relayed: a tracked address only lets people read.
//!
//! What waits for an answer is bounded (in all and per asker) and forgotten
//! after [`ANSWER_WAIT`]; an answer nobody waits for is dropped.

use std::collections::{HashMap, VecDeque};

use minidom::Element;
use tracing::debug;
use xmpp_parsers::jid::Jid;

use crate::context::Context;
use crate::incoming::{Origin, Route};
use crate::metrics::{METRICS, Refusal};
use crate::stanza::{DefinedCondition, ErrorType, set_attr};
use crate::store::{Millis, StoreError};

/// How long a relayed query waits for its answer: longer than any server's
/// own IQ timeout (Prosody's is 60 s for s2s), so a slow answer still lands.
pub const ANSWER_WAIT: Millis = 90_000;

/// Relayed queries waiting for an answer, in all.
pub const MAX_WAITING: usize = 4_096;

/// Relayed queries waiting for an answer, per asking user: a client asks a
/// few things per contact it shows; a flood stops here, not at the total.
pub const MAX_WAITING_PER_ASKER: usize = 64;

/// The refusal anyone not allowed gets: the same words whatever the contact.
const NOT_ANSWERED: &str =
    "tracked addresses answer queries only for people the contact lets see their presence";

#[derive(Debug)]
struct Waiting {
    /// Who asked (full JID), and their id for the query.
    asker: Jid,
    asker_id: Option<String>,
    /// The address they asked, which the answer comes from.
    asked: Jid,
    /// The real contact the query went to, who alone may answer it.
    contact: Jid,
    until: Millis,
}

/// The queries relayed and not answered yet.
#[derive(Debug, Default)]
pub struct Relayed {
    by_id: HashMap<String, Waiting>,
    /// Ids in the order they expire (all wait the same time).
    order: VecDeque<String>,
    per_asker: HashMap<String, usize>,
}

impl Relayed {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn forget(&mut self, id: &str) -> Option<Waiting> {
        let w = self.by_id.remove(id)?;
        let asker = w.asker.to_bare().to_string();
        if let Some(n) = self.per_asker.get_mut(&asker) {
            *n -= 1;
            if *n == 0 {
                self.per_asker.remove(&asker);
            }
        }
        Some(w)
    }

    /// Forgets what waited past its time.
    pub fn expire(&mut self, now: Millis) {
        while let Some(id) = self.order.front() {
            match self.by_id.get(id) {
                Some(w) if w.until > now => break,
                Some(_) => {
                    let id = self.order.pop_front().unwrap_or_default();
                    debug!(%id, "relayed query unanswered; forgotten");
                    self.forget(&id);
                }
                // Answered already.
                None => {
                    self.order.pop_front();
                }
            }
        }
    }
}

type Out = Result<Vec<Element>, StoreError>;

/// An `iq get` to a tracked address.
pub fn on_query(
    cx: &mut Context,
    relayed: &mut Relayed,
    route: &Route,
    origin: &Origin,
    iq: &Element,
    now: Millis,
) -> Out {
    let asked = match cx.addrs.tracked_full(&route.to) {
        Ok(a) => a,
        // Classification made sure the contact has a tracked address.
        Err(_) => return Ok(vec![]),
    };
    let contact = route.to.to_bare();
    let watcher = route.from.to_bare();
    if !cx
        .store
        .presence_allowed(contact.as_str(), watcher.as_str())?
    {
        METRICS.refused(Refusal::Gate);
        return Ok(vec![origin.error(
            asked.as_str(),
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            NOT_ANSWERED,
        )]);
    }
    relayed.expire(now);
    let asker_key = watcher.to_string();
    let mine = relayed.per_asker.get(&asker_key).copied().unwrap_or(0);
    if relayed.len() >= MAX_WAITING || mine >= MAX_WAITING_PER_ASKER {
        METRICS.refused(Refusal::RateLimit);
        return Ok(vec![origin.error(
            asked.as_str(),
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            "too many of your queries to contacts are waiting for an answer; ask again in a minute",
        )]);
    }
    let id = cx.local_id(now);
    let mut out = cx.relay(iq, route);
    set_attr(&mut out, "id", id.as_str());
    relayed.by_id.insert(
        id.clone(),
        Waiting {
            asker: route.from.clone(),
            asker_id: origin.id.clone(),
            asked,
            contact: route.to.clone(),
            until: now.saturating_add(ANSWER_WAIT),
        },
    );
    relayed.order.push_back(id);
    *relayed.per_asker.entry(asker_key).or_default() += 1;
    debug!("query relayed to the contact");
    Ok(vec![out])
}

/// A result or error from a contact to a watcher's tracked address: the
/// answer to a relayed query goes back to whoever asked, under their id.
pub fn on_answer(relayed: &mut Relayed, route: &Route, iq: &Element) -> Vec<Element> {
    let Some(id) = iq.attr("id") else {
        return vec![];
    };
    // The answer comes from the contact to the asker's tracked address, so
    // `route` runs from the contact to the asker. Only the contact asked
    // answers, to the session that asked: a guessed id from anyone else
    // changes nothing.
    let matches = relayed
        .by_id
        .get(id)
        .is_some_and(|w| answered_by(&w.contact, &route.from) && w.asker == route.to);
    if !matches {
        METRICS.refused(Refusal::Gate);
        debug!(id, "answer to no query of ours dropped");
        return vec![];
    }
    let Some(w) = relayed.forget(id) else {
        return vec![];
    };
    let mut out = iq.clone();
    set_attr(&mut out, "from", w.asked.to_string());
    set_attr(&mut out, "to", w.asker.to_string());
    match &w.asker_id {
        Some(asker_id) => set_attr(&mut out, "id", asker_id.as_str()),
        None => crate::stanza::remove_attr(&mut out, "id"),
    }
    vec![out]
}

/// A query to a bare JID is answered by the account's server from the bare
/// JID; one to a full JID by that resource.
fn answered_by(asked: &Jid, from: &Jid) -> bool {
    match asked.resource() {
        Some(_) => asked == from,
        None => from.to_bare() == asked.to_bare() && from.resource().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    #[test]
    fn only_the_address_asked_answers() {
        assert!(answered_by(&jid("bob@x/phone"), &jid("bob@x/phone")));
        assert!(!answered_by(&jid("bob@x/phone"), &jid("bob@x/laptop")));
        assert!(!answered_by(&jid("bob@x/phone"), &jid("bob@x")));
        assert!(answered_by(&jid("bob@x"), &jid("bob@x")));
        assert!(!answered_by(&jid("bob@x"), &jid("bob@x/phone")));
        assert!(!answered_by(&jid("bob@x"), &jid("mallory@x")));
    }

    #[test]
    fn waiting_queries_expire_in_order() {
        let mut r = Relayed::default();
        for (id, until) in [("a", 10), ("b", 20)] {
            r.by_id.insert(
                id.into(),
                Waiting {
                    asker: jid("alice@x/r"),
                    asker_id: None,
                    asked: jid("bob\\40x@t"),
                    contact: jid("bob@x"),
                    until,
                },
            );
            r.order.push_back(id.into());
            *r.per_asker.entry("alice@x".into()).or_default() += 1;
        }
        r.expire(15);
        assert_eq!(r.len(), 1);
        assert_eq!(r.per_asker["alice@x"], 1);
        r.expire(20);
        assert!(r.is_empty());
        assert!(r.per_asker.is_empty());
    }
}
