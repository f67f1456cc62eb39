//! What the serving tidemark already knows of the rows its stanzas read
//! most, so that reading it costs no round trip.
//!
//! Sound because one tidemark serves a database and writes through this
//! one session (`leader.rs`): every change to these rows passes here. A
//! standby learns nothing until it serves, and a batch rolled back forgets
//! everything (its writes are known here before they commit). Bounded:
//! emptied when full, as the status log's cache is.

use std::collections::HashMap;

const LIMIT: usize = 65_536;

#[derive(Default)]
pub(super) struct Known {
    /// (contact, watcher) -> whether the watcher may see the contact's
    /// presence.
    grants: HashMap<(String, String), bool>,
    /// A user's read-receipts choice, `None` for none made.
    receipts: HashMap<String, Option<bool>>,
}

impl Known {
    pub fn grant(&self, contact: &str, watcher: &str) -> Option<bool> {
        self.grants
            .get(&(contact.to_owned(), watcher.to_owned()))
            .copied()
    }

    pub fn set_grant(&mut self, contact: &str, watcher: &str, allowed: bool) {
        if self.grants.len() >= LIMIT {
            self.grants.clear();
        }
        self.grants
            .insert((contact.to_owned(), watcher.to_owned()), allowed);
    }

    pub fn receipts(&self, user: &str) -> Option<Option<bool>> {
        self.receipts.get(user).copied()
    }

    pub fn set_receipts(&mut self, user: &str, enabled: Option<bool>) {
        if self.receipts.len() >= LIMIT {
            self.receipts.clear();
        }
        self.receipts.insert(user.to_owned(), enabled);
    }

    pub fn forget(&mut self) {
        self.grants.clear();
        self.receipts.clear();
    }
}
