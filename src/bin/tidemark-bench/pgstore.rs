//! Issue 12: status writes on PostgreSQL against sled, in the same run.
//!
//! The same router path as scenario 3's `--path real` (`Tidemark::handle`
//! on the chat message, the recipient's receipt and displayed marker, after
//! each pair has granted presence and come online), flushed every
//! `--flush-batch` stanzas as the connection loop does, into a sled store
//! and into a PostgreSQL schema of its own, for each `--statuses` count.
//! Per backend: each flush's latency (sled's fsync, PostgreSQL's COMMIT)
//! and each batch's (its first stanza handled to its flush done: what the
//! last stanza of a batch waits before it is relayed), statuses/s, bytes per
//! status, the reopen (store opened, the service built, its on-connect
//! probes made, to the first answered status query) and status queries.
//!
//! PostgreSQL: `--url` (or TIDEMARK_PG_URL) without the password,
//! `--password-file` (or TIDEMARK_PG_PASSWORD_FILE), as `scripts/postgres.sh`
//! writes them. Each run gets a schema of its own (`search_path` set in the
//! connection's options), dropped at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tidemark::store::{PgOptions, PgStore, SledStore, Store};

use crate::storage::{RealPath, ask_read, config};
use crate::util::{self, Args, TempDir, percentile};

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sled,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// What one backend did with `n` statuses.
struct Run {
    n: u64,
    write_secs: f64,
    flush_p50_ms: f64,
    flush_p99_ms: f64,
    batch_p50_ms: f64,
    batch_p99_ms: f64,
    flushes: usize,
    bytes: f64,
    bytes_note: String,
    reopen_secs: f64,
    query_p50_us: f64,
    query_p99_us: f64,
    found: u64,
}

struct Pg {
    options: PgOptions,
    admin: postgres::Client,
}

impl Pg {
    fn connect(url: &str, password_file: Option<&std::path::Path>) -> Result<Pg, String> {
        let options = PgOptions::new(url, password_file).map_err(|e| e.to_string())?;
        let mut config: postgres::Config = url.parse().map_err(|e| format!("--url: {e}"))?;
        if let Some(p) = &options.password {
            config.password(p);
        }
        let admin = config
            .connect(postgres::NoTls)
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        Ok(Pg { options, admin })
    }

    /// Options whose connections see `schema` first (and only).
    fn in_schema(&self, schema: &str) -> PgOptions {
        let sep = if self.options.url.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut options = self.options.clone();
        options.url = format!(
            "{}{sep}options=-c%20search_path%3D{schema}",
            self.options.url
        );
        options
    }

    fn database_size(&mut self) -> Result<i64, String> {
        self.admin
            .query_one("SELECT pg_database_size(current_database())", &[])
            .map(|r| r.get(0))
            .map_err(|e| e.to_string())
    }

    /// Tables, their indexes and TOAST in `schema`, summed.
    fn schema_size(&mut self, schema: &str) -> Result<i64, String> {
        self.admin
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                &[&schema],
            )
            .map(|r| r.get(0))
            .map_err(|e| e.to_string())
    }
}

/// Opens the run's store: the first time to write, again to time the reopen.
type Opener = Box<dyn Fn() -> Result<Arc<dyn Store>, String>>;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn run(
    backend: Backend,
    n: u64,
    pairs: u64,
    batch: u64,
    queries: u64,
    pg: Option<&mut Pg>,
) -> Result<Run, String> {
    let tmp = TempDir::new("pgstore");
    let dir = tmp.path().join("store");
    let cfg = || config(&dir, 64, batch);
    let schema = format!("bench_{}_{n}", std::process::id());
    let mut pg = pg;
    let (open, db_before): (Opener, i64) =
        match backend {
            Backend::Sled => {
                let dir = dir.clone();
                (
                    Box::new(move || {
                        Ok(Arc::new(
                            SledStore::open(&dir, 64 * 1024 * 1024).map_err(|e| e.to_string())?,
                        ) as Arc<dyn Store>)
                    }),
                    0,
                )
            }
            Backend::Postgres => {
                let pg = pg.as_deref_mut().ok_or("no PostgreSQL")?;
                pg.admin
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .map_err(|e| e.to_string())?;
                let options = pg.in_schema(&schema);
                let before = pg.database_size()?;
                (
                    Box::new(move || {
                        Ok(
                            Arc::new(PgStore::open(&options).map_err(|e| e.to_string())?)
                                as Arc<dyn Store>,
                        )
                    }),
                    before,
                )
            }
        };
    let mut w = RealPath::over(cfg()?, open()?, batch, pairs)?;
    w.setup()?;
    w.time_flushes();
    let t = Instant::now();
    for i in 0..n {
        w.status(i)?;
    }
    w.flush()?;
    let write_secs = t.elapsed().as_secs_f64();
    if w.errors > 0 {
        return Err(format!(
            "{}: {} stanzas refused, so this would not measure storage",
            backend.name(),
            w.errors
        ));
    }
    let mut flush_ns = std::mem::take(&mut w.flush_ns);
    let mut batch_ns = std::mem::take(&mut w.batch_ns);
    flush_ns.sort_unstable();
    batch_ns.sort_unstable();
    drop(w);

    let (bytes, bytes_note) = match backend {
        Backend::Sled => (
            util::dir_allocated(&dir) as f64,
            "du of the directory".to_owned(),
        ),
        Backend::Postgres => {
            let pg = pg.as_deref_mut().ok_or("no PostgreSQL")?;
            let tables = pg.schema_size(&schema)?;
            let db = pg.database_size()? - db_before;
            (
                tables as f64,
                format!(
                    "pg_total_relation_size summed; pg_database_size grew {:.0} B/status",
                    db as f64 / n as f64
                ),
            )
        }
    };

    // Reopen: what a restarted (or newly serving) tidemark does before it
    // can answer.
    let now = tidemark::component::clock::now_millis();
    let t = Instant::now();
    let store = open()?;
    let mut tm =
        tidemark::service::Tidemark::new(cfg()?, store.clone(), now).map_err(|e| e.to_string())?;
    let hello = tm.on_connected(now).map_err(|e| e.to_string())?;
    hello.apply(&*store).map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    if !ask_read(&mut tm, 0, pairs, now) {
        return Err(format!(
            "{}: status 0 is not read after reopen",
            backend.name()
        ));
    }
    let reopen_secs = t.elapsed().as_secs_f64();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut lat = Vec::with_capacity(queries as usize);
    let mut found = 0;
    for _ in 0..queries {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let s = Instant::now();
        if ask_read(&mut tm, state % n, pairs, now) {
            found += 1;
        }
        lat.push(s.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    drop(tm);
    drop(store);
    if backend == Backend::Postgres {
        let pg = pg.ok_or("no PostgreSQL")?;
        pg.admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .map_err(|e| e.to_string())?;
    }
    let r = Run {
        n,
        write_secs,
        flush_p50_ms: ms(percentile(&flush_ns, 50.0)),
        flush_p99_ms: ms(percentile(&flush_ns, 99.0)),
        batch_p50_ms: ms(percentile(&batch_ns, 50.0)),
        batch_p99_ms: ms(percentile(&batch_ns, 99.0)),
        flushes: flush_ns.len(),
        bytes,
        bytes_note,
        reopen_secs,
        query_p50_us: percentile(&lat, 50.0) as f64 / 1e3,
        query_p99_us: percentile(&lat, 99.0) as f64 / 1e3,
        found,
    };
    println!(
        "  {} n={n} write_secs={:.2} statuses_per_s={:.0} flushes={} flush_p50_ms={:.2} flush_p99_ms={:.2} batch_p50_ms={:.2} batch_p99_ms={:.2} bytes_per_status={:.0} ({}) reopen_secs={:.3} query_p50_us={:.0} query_p99_us={:.0} found={}/{queries}",
        backend.name(),
        r.write_secs,
        n as f64 / r.write_secs,
        r.flushes,
        r.flush_p50_ms,
        r.flush_p99_ms,
        r.batch_p50_ms,
        r.batch_p99_ms,
        r.bytes / n as f64,
        r.bytes_note,
        r.reopen_secs,
        r.query_p50_us,
        r.query_p99_us,
        r.found
    );
    Ok(r)
}

pub fn main(args: &Args) -> Result<(), String> {
    let counts: Vec<u64> = args.list("statuses", &[20_000, 100_000]);
    let pairs = (args.get("users", 2_000u64) / 2).max(1);
    let batch = args.get("flush-batch", 512u64).max(1);
    let queries = args.get("queries", 2_000u64);
    let url = args.get("url", std::env::var("TIDEMARK_PG_URL").unwrap_or_default());
    if url.is_empty() {
        return Err("--url or TIDEMARK_PG_URL: the PostgreSQL database (scripts/postgres.sh start DIR writes DIR/url)".into());
    }
    let password_file: Option<PathBuf> = Some(args.get(
        "password-file",
        PathBuf::from(std::env::var("TIDEMARK_PG_PASSWORD_FILE").unwrap_or_default()),
    ))
    .filter(|p| !p.as_os_str().is_empty());
    let mut pg = Pg::connect(&url, password_file.as_deref())?;
    println!(
        "scenario pgstore: statuses {counts:?} between {} users through Tidemark::handle (message, receipt, displayed marker), a flush every {batch} stanzas; sled (baseline) against PostgreSQL at {url}, same run; then reopen and {queries} status queries",
        pairs * 2
    );
    let mut rows = Vec::new();
    for &n in &counts {
        let sled = run(Backend::Sled, n, pairs, batch, queries, None)?;
        let postgres = run(Backend::Postgres, n, pairs, batch, queries, Some(&mut pg))?;
        rows.push((sled, postgres));
    }
    println!();
    println!("| statuses | figure | sled (baseline) | PostgreSQL | PostgreSQL / sled |");
    println!("|---|---|---|---|---|");
    for (s, p) in &rows {
        let n = s.n as f64;
        let line = |what: &str, a: String, b: String, ratio: f64| {
            println!("| {} | {what} | {a} | {b} | {ratio:.2}x |", s.n);
        };
        line(
            "statuses/s",
            format!("{:.0}", n / s.write_secs),
            format!("{:.0}", n / p.write_secs),
            s.write_secs / p.write_secs,
        );
        line(
            "flush (fsync / COMMIT), p50 / p99 ms",
            format!("{:.2} / {:.2}", s.flush_p50_ms, s.flush_p99_ms),
            format!("{:.2} / {:.2}", p.flush_p50_ms, p.flush_p99_ms),
            p.flush_p99_ms / s.flush_p99_ms,
        );
        line(
            &format!("batch of {batch} stanzas handled + flushed, p50 / p99 ms"),
            format!("{:.1} / {:.1}", s.batch_p50_ms, s.batch_p99_ms),
            format!("{:.1} / {:.1}", p.batch_p50_ms, p.batch_p99_ms),
            p.batch_p99_ms / s.batch_p99_ms,
        );
        line(
            "bytes per status",
            format!("{:.0}", s.bytes / n),
            format!("{:.0}", p.bytes / n),
            p.bytes / s.bytes,
        );
        line(
            "reopen to the first answered query, s",
            format!("{:.3}", s.reopen_secs),
            format!("{:.3}", p.reopen_secs),
            p.reopen_secs / s.reopen_secs,
        );
        line(
            "status query p50 / p99 us",
            format!("{:.0} / {:.0}", s.query_p50_us, s.query_p99_us),
            format!("{:.0} / {:.0}", p.query_p50_us, p.query_p99_us),
            p.query_p99_us / s.query_p99_us,
        );
    }
    Ok(())
}
