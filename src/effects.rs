//! What the core asks of the shell after a stanza, a tick or a connect. The
//! core does no I/O of its own: the shell applies these.
//!
//! The shell applies a stanza's [`Effects::writes`] to the store before it
//! handles the next stanza (so each stanza sees what the ones before it
//! wrote), makes them durable at the batch's flush, and only then sends
//! [`Effects::send`]: nothing goes out ahead of the writes it depends on.

use minidom::Element;

use crate::inbox::push::Push;
use crate::store::{Store, StoreResult, Write};

#[derive(Debug, Default, Clone, PartialEq)]
#[must_use = "effects do nothing until the shell applies them"]
pub struct Effects {
    /// Store writes, in this order.
    pub writes: Vec<Write>,
    /// Stanzas to send, in this order, once the writes are durable.
    pub send: Vec<Element>,
    /// Issue 10: updates for the sessions that follow a conversation list,
    /// rendered from the store after the writes (sent after `send`).
    pub pushes: Vec<Push>,
}

impl Effects {
    /// Sending `stanzas`, in order, and writing nothing.
    pub fn sending(stanzas: Vec<Element>) -> Self {
        Effects {
            writes: Vec::new(),
            send: stanzas,
            pushes: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.send.is_empty() && self.pushes.is_empty()
    }

    /// Applies the writes to `store` and hands back the stanzas, which may
    /// go out once `store` has been flushed.
    pub fn apply(self, store: &dyn Store) -> StoreResult<Vec<Element>> {
        store.apply(&self.writes)?;
        let mut send = self.send;
        for push in &self.pushes {
            send.extend(push.render(store)?);
        }
        Ok(send)
    }
}
