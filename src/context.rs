//! What every service of the core shares: the addresses, the config, the
//! store to read, the writes made so far for the stanza in hand, and the ids
//! of stanzas tidemark originates. It sits below the services so that they
//! can share it without importing each other or the router.

use std::sync::Arc;

use minidom::Element;

use crate::address::Addresses;
use crate::capabilities::Clients;
use crate::config::Config;
use crate::incoming::Route;
use crate::stanza::set_attr;
use crate::store::{Millis, Store, StoreError, Write};

pub struct Context {
    pub addrs: Addresses,
    pub config: Config,
    /// Read only: the core's writes go to [`Context::write`].
    pub store: Arc<dyn Store>,
    /// What the contacts' clients can say (receipts, read markers).
    pub clients: Clients,
    /// The writes of the stanza in hand, for its effects.
    writes: Vec<Write>,
    local_ids: u64,
}

impl Context {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        Context {
            addrs: Addresses::with_desks(
                config.component.jid.clone(),
                config.desks.iter().map(|d| d.name.clone()).collect(),
            ),
            config,
            store,
            clients: Clients::default(),
            writes: Vec::new(),
            local_ids: 0,
        }
    }

    /// Asks for `write` as part of the effects of the stanza in hand.
    pub fn write(&mut self, write: Write) {
        self.writes.push(write);
    }

    /// The writes asked for so far for the stanza in hand, which reads of
    /// the store do not see yet.
    pub fn pending(&self) -> &[Write] {
        &self.writes
    }

    /// The writes asked for since the last call: the router's to return.
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    /// How many stanzas are held for `recipient`, counting those held by the
    /// stanza in hand (a reconnect releases many messages in one go).
    pub fn queued_count(&self, recipient: &str) -> Result<usize, StoreError> {
        let pending = self
            .writes
            .iter()
            .filter(|w| matches!(w, Write::Enqueue { recipient: r, .. } if r == recipient))
            .count();
        Ok(self.store.queued_count(recipient)? + pending)
    }

    /// A fresh id for a stanza tidemark originates at `now`: the time keeps
    /// ids apart across restarts, the counter within one run.
    pub fn local_id(&mut self, now: Millis) -> String {
        self.local_ids += 1;
        format!("tm-{now}-{}", self.local_ids)
    }

    /// Whether `user` lets others see that they read something: their own
    /// choice (ad-hoc command), else the config default.
    pub fn sends_read_receipts(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .read_receipts_pref(user)?
            .unwrap_or(self.config.status.send_read_receipts))
    }

    /// `stanza` re-addressed along `route`: from the sender's tracked address
    /// (resource kept) to the real contact.
    pub fn relay(&self, stanza: &Element, route: &Route) -> Element {
        let mut out = stanza.clone();
        set_attr(&mut out, "from", route.tracked_from.as_str());
        set_attr(&mut out, "to", route.to.as_str());
        out
    }
}
