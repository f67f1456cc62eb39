//! Conversations tidemark carries.

pub mod direct;
