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

/// Two tidemarks on one database: the first to ask serves, the second
/// stands by until the first's session ends, then takes over. Another
/// component on the same database is not held up.
#[test]
fn one_serves_the_others_stand_by() {
    let (Some(first), Some(second)) = (fresh(), fresh()) else {
        return;
    };
    // A name of this run's own: other checks run at the same time.
    let component = format!("leader-{}.localhost", std::process::id());
    assert!(first.try_lead(&component).unwrap());
    assert!(!second.try_lead(&component).unwrap());
    assert!(
        second.try_lead(&format!("other.{component}")).unwrap(),
        "another component's lock is another key"
    );
    drop(first);
    // The server ends the session a moment after the client closes it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !second.try_lead(&component).unwrap() {
        assert!(std::time::Instant::now() < deadline, "never took over");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A session the server ends (as on a restart or a failover) makes every
/// later call say the connection is lost, not a generic failure: the
/// service starts over on that, as a standby if another took over.
#[test]
fn a_lost_session_says_so() {
    use crate::store::{Store, StoreError};
    let (Some(store), Some(admin)) = (fresh(), fresh()) else {
        return;
    };
    let pid = store.session_pid().unwrap();
    admin
        .read(|c| {
            c.execute("SELECT pg_terminate_backend($1::int)", &[&(pid as i32)])
                .map_err(super::pg_err)
        })
        .unwrap();
    let err = (0..50)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            store.next_seq().err()
        })
        .expect("the store noticed");
    assert!(matches!(err, StoreError::ConnectionLost(_)), "{err}");
    assert!(matches!(
        store.flush().and_then(|_| store.next_seq()),
        Err(StoreError::ConnectionLost(_))
    ));
}
