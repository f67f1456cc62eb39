//! Issue 10: each user's conversation list (the inbox): every conversation
//! they have through tidemark, latest first, with exact unread counts, the
//! state of their own latest message, and who tried to reach them while
//! they were away (xep/inbox.md).
//!
//! The list follows the core's writes ([`follow`]), is read from the store
//! ([`view`]), and is served as IQs ([`protocol`]) and ad-hoc commands
//! ([`commands`]). Sessions that subscribe get each change pushed
//! ([`Push`], rendered once the stanza's writes are in the store).

pub mod commands;
pub mod follow;
pub mod protocol;
pub mod push;
pub mod render;
pub mod view;

use std::collections::HashMap;

use xmpp_parsers::jid::Jid;

use crate::context::Context;
use crate::stanza::{DefinedCondition, ErrorType, StanzaError, stanza_error};
use crate::store::StoreError;
pub use follow::Touched;
pub use push::Push;

/// Sessions of one user that may subscribe at once; a further one
/// replaces the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 8;
/// Sessions subscribed at once, all users together.
pub const MAX_SUBSCRIBED: usize = 4_096;
/// Sessions of one other domain subscribed at once: anyone on the
/// federation may subscribe to their own (empty) list, and one domain
/// inventing sessions must not take every place from the server's users.
pub const MAX_SUBSCRIBED_PER_DOMAIN: usize = 256;

/// Why a session could not subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSubscribed {
    /// A bare JID: updates go to sessions.
    NoSession,
    /// [`MAX_SUBSCRIBED`] sessions subscribe already, or
    /// [`MAX_SUBSCRIBED_PER_DOMAIN`] of the session's domain.
    Full,
}

impl NotSubscribed {
    pub fn error(self) -> StanzaError {
        match self {
            NotSubscribed::NoSession => stanza_error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "subscribe from a session (a full JID): updates go to sessions",
            ),
            NotSubscribed::Full => stanza_error(
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                "too many sessions already get updates pushed; query the list instead",
            ),
        }
    }
}

/// The list's live state: who wants updates pushed. Kept in memory only;
/// a session subscribes again after tidemark restarts (its server tells it
/// nothing, so xep/inbox.md says to subscribe at each connect).
#[derive(Debug, Default)]
pub struct Inbox {
    subscribed: HashMap<String, Vec<Jid>>,
    sessions: usize,
    /// Subscribed sessions per domain.
    per_domain: HashMap<String, usize>,
}

impl Inbox {
    /// `own_domain` is the server's: its users are limited only by
    /// [`MAX_SUBSCRIBED`], other domains also by
    /// [`MAX_SUBSCRIBED_PER_DOMAIN`].
    pub fn subscribe(&mut self, session: &Jid, own_domain: &str) -> Result<(), NotSubscribed> {
        if session.resource().is_none() {
            return Err(NotSubscribed::NoSession);
        }
        let domain = session.domain().to_string();
        let user = session.to_bare().to_string();
        let list = self.subscribed.entry(user.clone()).or_default();
        if list.contains(session) {
            return Ok(());
        }
        let of_domain = self.per_domain.get(&domain).copied().unwrap_or(0);
        if list.len() >= MAX_SESSIONS_PER_USER {
            list.remove(0);
        } else if self.sessions >= MAX_SUBSCRIBED
            || (domain != own_domain && of_domain >= MAX_SUBSCRIBED_PER_DOMAIN)
        {
            if list.is_empty() {
                self.subscribed.remove(&user);
            }
            return Err(NotSubscribed::Full);
        } else {
            self.sessions += 1;
            *self.per_domain.entry(domain).or_default() += 1;
        }
        list.push(session.clone());
        Ok(())
    }

    pub fn unsubscribe(&mut self, session: &Jid) {
        let user = session.to_bare().to_string();
        if let Some(list) = self.subscribed.get_mut(&user) {
            let before = list.len();
            list.retain(|s| s != session);
            let gone = before - list.len();
            self.sessions -= gone;
            let domain = session.domain().to_string();
            if let Some(n) = self.per_domain.get_mut(&domain) {
                *n -= gone.min(*n);
                if *n == 0 {
                    self.per_domain.remove(&domain);
                }
            }
            if list.is_empty() {
                self.subscribed.remove(&user);
            }
        }
    }

    /// How many sessions get updates.
    pub fn subscribed_sessions(&self) -> usize {
        self.sessions
    }

    /// After a stanza's handling: the list's writes join the stanza's, and
    /// the sessions of the users whose list changed get pushes.
    pub fn after_stanza(&mut self, cx: &mut Context) -> Result<Vec<Push>, StoreError> {
        if !cx.config.inbox.enabled {
            return Ok(vec![]);
        }
        let (writes, touched) = follow::follow(cx.pending());
        for w in writes {
            cx.write(w);
        }
        if self.subscribed.is_empty() {
            return Ok(vec![]);
        }
        let settings = protocol::settings(cx);
        let mut pushes = Vec::new();
        for t in touched {
            match t {
                Touched::One { user, peer } => {
                    if let Some(to) = self.subscribed.get(&user) {
                        pushes.push(Push {
                            to: to.clone(),
                            user,
                            peer,
                            settings: settings.clone(),
                        });
                    }
                }
                Touched::Room(room) => {
                    for (member, m) in cx.store.memberships(&room)? {
                        if !m.is_current() {
                            continue;
                        }
                        if let Some(to) = self.subscribed.get(&member) {
                            pushes.push(Push {
                                to: to.clone(),
                                user: member,
                                peer: view::Peer::Room(room.clone()),
                                settings: settings.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(pushes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    #[test]
    fn one_user_holds_at_most_eight_sessions_the_newest_win() {
        let mut inbox = Inbox::default();
        for i in 0..10 {
            inbox
                .subscribe(&jid(&format!("a@localhost/r{i}")), "localhost")
                .unwrap();
        }
        assert_eq!(inbox.subscribed_sessions(), MAX_SESSIONS_PER_USER);
        let list = &inbox.subscribed["a@localhost"];
        assert_eq!(list.first(), Some(&jid("a@localhost/r2")));
        assert_eq!(
            inbox.subscribe(&jid("a@localhost"), "localhost"),
            Err(NotSubscribed::NoSession)
        );
        inbox.unsubscribe(&jid("a@localhost/r5"));
        assert_eq!(inbox.subscribed_sessions(), MAX_SESSIONS_PER_USER - 1);
    }

    #[test]
    fn another_domain_cannot_take_every_place() {
        let mut inbox = Inbox::default();
        for i in 0..MAX_SUBSCRIBED_PER_DOMAIN {
            inbox
                .subscribe(&jid(&format!("u{i}@evil.example/r")), "localhost")
                .unwrap();
        }
        assert_eq!(
            inbox.subscribe(&jid("more@evil.example/r"), "localhost"),
            Err(NotSubscribed::Full)
        );
        assert!(!inbox.subscribed.contains_key("more@evil.example"));
        // The server's own users still get in, up to the total.
        inbox
            .subscribe(&jid("alice@localhost/r"), "localhost")
            .unwrap();
        // One leaving frees a place for its domain.
        inbox.unsubscribe(&jid("u0@evil.example/r"));
        inbox
            .subscribe(&jid("more@evil.example/r"), "localhost")
            .unwrap();
    }
}
