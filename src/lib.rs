//! tidemark: message status (sent, delivered, read, failed) and a presence
//! gate for any XMPP server, as an XEP-0114 external component.
//!
//! The socket layer ([`component`]) only moves stanzas; everything else is
//! plain functions over parsed stanzas and the [`store::Store`], testable
//! without a server.

pub mod address;
pub mod component;
pub mod config;
pub mod context;
pub mod conversation;
pub mod incoming;
pub mod metrics;
pub mod presence;
pub mod query;
pub mod rate_limit;
pub mod service;
pub mod stanza;
pub mod status;
pub mod store;
pub mod wire;
