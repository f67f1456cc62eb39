//! tidemark: message status (sent, delivered, read, failed) and a presence
//! gate for any XMPP server, as an XEP-0114 external component.
//!
//! The shell ([`component`]) owns the socket and the clock and only moves
//! stanzas. The core below it reads no socket and no clock: each stanza is
//! classified once ([`incoming`]), the router ([`service`]) hands the
//! classified value and the time to a service (presence, 1:1 conversations,
//! rooms, queries) that shares only the [`context`] with the others, and the
//! shell gets back [`effects::Effects`]: the store writes, as
//! [`store::Write`] values, and the stanzas to send. The services read the
//! store but never write it; the shell applies each stanza's writes before
//! the next stanza, flushes them once per batch in one transaction, and only
//! then sends. The modules depend on each other one way only;
//! `tests/layers.rs` holds the order and checks that no service writes.

pub mod address;
pub mod allocator;
pub mod capabilities;
pub mod component;
pub mod config;
pub mod contact_query;
pub mod context;
pub mod conversation;
pub mod desk;
pub mod effects;
pub mod inbox;
pub mod incoming;
pub mod metrics;
pub mod presence;
pub mod query;
pub mod rate_limit;
pub mod service;
pub mod stanza;
pub mod status;
pub mod store;
pub mod tls;
pub mod wire;
