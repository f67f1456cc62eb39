//! The store contract against a real PostgreSQL, when one is named:
//! `TIDEMARK_PG_URL` (say `$(cat DIR/url)` after `scripts/postgres.sh start
//! DIR`) and `TIDEMARK_PG_PASSWORD_FILE` (`DIR/password`). Each check runs
//! in a schema of its own, dropped after it. Without the URL each check
//! says it was skipped and passes: the sled contract runs everywhere, this
//! one where a cluster was started (scripts/test.sh starts one).

use super::{PgOptions, PgStore};

/// A fresh store, or `None` (with a note on stderr) when no database is
/// named.
fn fresh() -> Option<PgStore> {
    let Ok(url) = std::env::var("TIDEMARK_PG_URL") else {
        eprintln!("skipped: TIDEMARK_PG_URL is not set (scripts/postgres.sh start DIR prints one)");
        return None;
    };
    let password = std::env::var_os("TIDEMARK_PG_PASSWORD_FILE").map(std::path::PathBuf::from);
    let options = PgOptions::new(&url, password.as_deref()).expect("password file");
    Some(PgStore::temporary(&options).expect("connect to TIDEMARK_PG_URL"))
}

crate::store_contract_tests!(match fresh() {
    Some(store) => store,
    None => return,
});
