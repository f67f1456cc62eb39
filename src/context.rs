//! What every service of the core reads: the addresses, the config, the
//! store, and the ids of stanzas tidemark originates. It sits below the
//! services so that they can share it without importing each other or the
//! router.

use std::sync::Arc;

use minidom::Element;

use crate::address::Addresses;
use crate::config::Config;
use crate::incoming::Route;
use crate::stanza::set_attr;
use crate::store::{Millis, Store, StoreError};

pub struct Context {
    pub addrs: Addresses,
    pub config: Config,
    pub store: Arc<dyn Store>,
    local_ids: u64,
}

impl Context {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        Context {
            addrs: Addresses::new(config.component.jid.clone()),
            config,
            store,
            local_ids: 0,
        }
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
        set_attr(&mut out, "from", route.tracked_from.to_string());
        set_attr(&mut out, "to", route.to.to_string());
        out
    }
}
