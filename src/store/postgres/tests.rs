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

fn sorted_body(dump: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(dump)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The move issue 12 asks for: a sled store exported and imported here
/// comes out record for record, and goes back into sled the same way.
#[test]
fn sled_exports_import_here_and_back() {
    use crate::store::export::{export, import};
    use crate::store::{SledStore, Store};
    let Some(pg) = fresh() else { return };
    let sled = SledStore::temporary().unwrap();
    crate::store::sled_store::tests::everything(&sled);
    let mut from_sled = Vec::new();
    let n = export(&sled, &mut from_sled).unwrap();
    assert_eq!(import(&pg, &from_sled[..]).unwrap(), n);
    let mut from_pg = Vec::new();
    assert_eq!(export(&pg, &mut from_pg).unwrap(), n);
    assert_eq!(sorted_body(&from_pg), sorted_body(&from_sled));
    assert!(pg.next_seq().unwrap() > sled.next_seq().unwrap() - 1);
    assert!(!pg.is_empty().unwrap());

    let back = SledStore::temporary().unwrap();
    assert_eq!(import(&back, &from_pg[..]).unwrap(), n);
    let mut again = Vec::new();
    export(&back, &mut again).unwrap();
    assert_eq!(sorted_body(&again), sorted_body(&from_sled));
}
