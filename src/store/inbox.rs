//! Issue 10: what the store keeps of each user's conversation list (the
//! inbox). Only 1:1 conversations have stored entries: a room's entry is
//! derived when it is listed (its latest message, how many came after the
//! user's read position), so a message to a room of a thousand members
//! writes one index entry, not a thousand.

use serde::{Deserialize, Serialize};

use super::{Millis, Seq};

/// One user's entry for one contact: what the list shows of that
/// conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The contact's bare JID (the key; not stored twice).
    #[serde(skip)]
    pub contact: String,
    /// The newest message or missed attempt of the conversation.
    pub latest: Seq,
    pub latest_at: Millis,
    /// Whether the contact (not the user) made it.
    pub latest_by_contact: bool,
    /// The user's own newest message, 0 for none.
    pub own_latest: Seq,
    /// Messages from the contact after the user's read position.
    pub unread: u32,
    /// Attempts of the contact to reach the user that tidemark refused
    /// because the user was offline (`presence.offline = "reject"`), since
    /// the user last opened or marked the conversation.
    pub missed: Option<Missed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missed {
    pub count: u32,
    pub first_at: Millis,
    pub last_at: Millis,
}

impl InboxEntry {
    /// Whether the entry asks for the user's attention.
    pub fn wants_attention(&self) -> bool {
        self.unread > 0 || self.missed.is_some()
    }
}
