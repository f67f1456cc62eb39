//! What the core asks of the shell after a stanza, a tick or a connect. The
//! core does no I/O of its own: the connection loop applies these.
//!
//! Store writes are still made by the core through the [`crate::store::Store`]
//! calls, before it returns; the shell makes them durable before it sends
//! anything here, so nothing goes out ahead of the writes it depends on.

use minidom::Element;

#[derive(Debug, Default, Clone, PartialEq)]
#[must_use = "effects do nothing until the shell applies them"]
pub struct Effects {
    /// Stanzas to send, in this order, once every store write made so far
    /// is durable.
    pub send: Vec<Element>,
}

impl Effects {
    /// Sending `stanzas`, in order.
    pub fn sending(stanzas: Vec<Element>) -> Self {
        Effects { send: stanzas }
    }

    pub fn is_empty(&self) -> bool {
        self.send.is_empty()
    }
}
