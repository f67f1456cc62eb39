//! One serving tidemark per component and database (issue 12: several
//! instances). Others started on the same database wait as standbys and
//! take over when the one serving stops or dies.
//!
//! The lock is a session-level advisory lock held by the very session the
//! store writes through. A tidemark relays nothing before its writes have
//! committed on that session, so while it commits it holds the lock: a
//! tidemark whose session was lost (kill -9, a network failure the server
//! noticed, a server restart) can commit nothing more and relay nothing
//! more, and the lock is free for a standby at the moment the server ends
//! the session. The one that lost it starts over as a standby
//! ([`StoreError::ConnectionLost`]).
//!
//! One component per set of tables: the one serving also holds a lock
//! named after the schema its tables are in, so that a second component
//! pointed at the same tables (a copied config) is refused with a clear
//! error instead of writing beside the first, whose known rows
//! (`known.rs`) would then be wrong and whose users' data would mix.
//! Components sharing a database server, or one database in schemas of
//! their own, are not held up.

use sha1::{Digest, Sha1};

use super::{PgStore, StoreError, StoreResult, pg_err};

/// The advisory lock's key for `component`: the same in every tidemark, and
/// different per component so that two components may share a database
/// server (each in a database of its own).
pub fn lock_key(component: &str) -> i64 {
    let digest = Sha1::new_with_prefix(b"tidemark serves ")
        .chain_update(component.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl PgStore {
    /// Becomes the one tidemark serving `component` from this database, if
    /// no other session holds that role; `false` if one does. Held until
    /// this store's session ends.
    pub fn try_lead(&self, component: &str) -> StoreResult<bool> {
        let key = lock_key(component);
        self.read(|c| {
            let leads: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .map_err(pg_err)?
                .get(0);
            if !leads {
                return Ok(false);
            }
            let tables = c
                .query_one(
                    // No schema (a search_path naming none) is one name too.
                    "SELECT pg_try_advisory_lock(hashtextextended('tidemark tables ' || \
                     coalesce(current_schema(), ''), 0)), coalesce(current_schema(), '')::text",
                    &[],
                )
                .map_err(pg_err)?;
            let (alone, schema): (bool, String) = (tables.get(0), tables.get(1));
            if !alone {
                c.query_one("SELECT pg_advisory_unlock($1)", &[&key])
                    .map_err(pg_err)?;
                return Err(StoreError::Backend(format!(
                    "another component is served from these tables (schema {schema} of this PostgreSQL database); give {component} a database, or a schema, of its own"
                )));
            }
            // Another tidemark wrote until now: nothing it changed is known
            // here (`known.rs`).
            c.known().forget();
            Ok(true)
        })
    }

    /// The PostgreSQL process serving the session that would hold the
    /// lock: what an admin finds in `pg_locks` and `pg_stat_activity`.
    pub fn session_pid(&self) -> StoreResult<i64> {
        self.read(|c| {
            c.query_one("SELECT pg_backend_pid()", &[])
                .map(|row| i64::from(row.get::<_, i32>(0)))
                .map_err(pg_err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_component_and_stay_put() {
        assert_eq!(lock_key("chat.localhost"), lock_key("chat.localhost"));
        assert_ne!(lock_key("chat.localhost"), lock_key("chat.example.org"));
        // The migration's lock (schema.rs) is another key.
        assert_ne!(lock_key("chat.localhost"), 7405126);
    }
}
