//! The private tidemark of a reader who hides their reads: it clears their
//! own unread state and tells nobody. Both 1:1 conversations and rooms keep
//! one, under the same name.

use crate::store::{ConversationKey, Seq, Store, StoreError};

/// The reader name of `user`'s private tidemark. `<` cannot appear in a JID,
/// so this never collides with a real reader. It moves only while the user
/// hides their reads; see [`own_mark`].
pub fn private_reader(user: &str) -> String {
    format!("<private>{user}")
}

/// How far `reader` has read, as far as their own unread state goes: the
/// further of the shared and the private tidemark (either may lead, as the
/// user turns read receipts off and on).
pub fn own_mark(
    store: &dyn Store,
    conv: &ConversationKey,
    reader: &str,
) -> Result<Seq, StoreError> {
    Ok(store
        .mark(conv, reader)?
        .max(store.mark(conv, &private_reader(reader))?))
}
