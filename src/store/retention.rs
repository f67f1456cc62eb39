//! Expiring old statuses (`storage.retention_days`): a pass over the store in
//! small steps, one per service tick, so that removing a year of messages
//! never holds up the stanzas waiting behind it.

use std::time::Duration;

use super::{Millis, Store, StoreResult};

/// How many entries one tick examines. Each costs a read and a decode, and
/// at most a handful of removals, so a tick stays well under a millisecond
/// per hundred entries whatever the store's size.
pub const ENTRIES_PER_TICK: usize = 512;

/// After a complete pass, the next one starts this much later: retention is
/// counted in days, and a store with nothing to expire should cost nothing.
pub const PAUSE_BETWEEN_PASSES: Millis = 60_000;

/// Where a pass over the store stands: which kind of entry, and the last key
/// examined. The default is the start of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryCursor {
    pub(crate) phase: u8,
    pub(crate) after: Option<Vec<u8>>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Entries examined (at most the budget).
    pub examined: usize,
    /// Statuses and log entries removed.
    pub removed: usize,
    /// Where the next step starts; `None` when the pass is complete.
    pub next: Option<ExpiryCursor>,
}

/// The pass in progress, kept by the service between ticks. A restart starts
/// a new pass, which only costs examining entries again.
#[derive(Debug, Default)]
pub struct Retention {
    cursor: ExpiryCursor,
    idle_until: Millis,
}

impl Retention {
    /// One step, if retention is on and the pause after the last pass is
    /// over. Returns how many entries were removed.
    pub fn step(
        &mut self,
        store: &dyn Store,
        keep: Option<Duration>,
        now: Millis,
    ) -> StoreResult<usize> {
        let Some(keep) = keep else {
            return Ok(0);
        };
        if now < self.idle_until {
            return Ok(0);
        }
        let keep = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now.saturating_sub(keep);
        let done = store.expire(cutoff, &self.cursor, ENTRIES_PER_TICK)?;
        match done.next {
            Some(next) => self.cursor = next,
            None => {
                self.cursor = ExpiryCursor::default();
                self.idle_until = now.saturating_add(PAUSE_BETWEEN_PASSES);
            }
        }
        if done.removed > 0 {
            tracing::info!(removed = done.removed, cutoff, "expired old statuses");
        }
        Ok(done.removed)
    }
}
