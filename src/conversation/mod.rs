//! Conversations tidemark carries: 1:1 through tracked addresses, and rooms.

pub mod direct;
pub mod room;
