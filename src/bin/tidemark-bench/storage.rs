//! Scenario 3: storage. A child process writes N statuses, is killed with
//! SIGKILL, and a second child times the reopen and the status queries.
//!
//! Three ways to write a status, chosen with `--path`:
//!
//! * `real` (the default): every status is produced by `Tidemark::handle`
//!   from the stanzas the server would deliver (the chat message, the
//!   recipient's XEP-0184 receipt, its XEP-0333 displayed marker), after each
//!   pair has granted presence and come online, flushed every `flush_batch`
//!   stanzas like the connection loop. Every write the router makes is in.
//! * `store`: the earlier benchmark, which calls the `Store` directly (record,
//!   record again when delivered, advance the mark) and so leaves out the
//!   router's other writes. Kept so old figures stay comparable.
//! * `all`: both, in the same run.
//!
//! The baseline is always run too: the least a status can cost in sled, one
//! insert of the final record under an 8-byte key, flushed on the same
//! schedule.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minidom::Element;
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{ConversationKey, MessageRecord, SledStore, Store};

use crate::util::{self, Args, TempDir, percentile};
use crate::wire::{self, DOMAIN};

const COMPONENT_NS: &str = "jabber:component:accept";

/// How statuses are written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Schema {
    /// Through `Tidemark::handle`, stanza by stanza.
    Real,
    /// Direct `Store` calls (the benchmark before issue 8).
    Store,
    /// One sled insert per status.
    Raw,
}

impl Schema {
    fn name(self) -> &'static str {
        match self {
            Schema::Real => "real",
            Schema::Store => "store",
            Schema::Raw => "raw",
        }
    }

    fn parse(s: &str) -> Result<Schema, String> {
        match s {
            "real" => Ok(Schema::Real),
            "store" | "tidemark" => Ok(Schema::Store),
            "raw" => Ok(Schema::Raw),
            other => Err(format!("unknown schema {other:?}")),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Schema::Real => "real path (Tidemark::handle)",
            Schema::Store => "store calls only (old bench)",
            Schema::Raw => "baseline (one sled insert per status)",
        }
    }
}

/// The service's config for the bench: the store at `dir`, the cache and
/// the flush batch under test.
/// `status.preview_chars` of the run (`--preview-chars`, 0 by default):
/// what keeping the start of each 1:1 message's text costs.
static PREVIEW_CHARS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn preview_chars() -> usize {
    PREVIEW_CHARS.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn config(dir: &Path, cache_mb: u64, batch: u64) -> Result<Config, String> {
    // The bench drives each sender far faster than a person types (a status
    // every few hundred microseconds per pair): without lifting the
    // per-sender rate limit most stanzas would be refused and nothing
    // stored. What is measured here is storage, not refusals.
    let text = format!(
        "[component]\njid = \"{DOMAIN}\"\nserver = \"127.0.0.1:1\"\nsecret = \"x\"\n\
         [storage]\npath = {:?}\ncache_mb = {cache_mb}\nflush_batch = {batch}\n\
         [limits]\nrate_per_second = 1e9\nrate_burst = 4000000000\n\
         [status]\npreview_chars = {}\n",
        dir.display().to_string(),
        preview_chars()
    );
    Config::parse(&text, Path::new("bench.toml")).map_err(|e| e.to_string())
}

/// A stanza as the server delivers it on the component stream: the bytes
/// scenario 1 sends, with the stream's default namespace made explicit so
/// it parses on its own.
fn delivered(bytes: &[u8]) -> Element {
    let s = std::str::from_utf8(bytes).expect("bench stanzas are UTF-8");
    let name_end = s.find([' ', '>', '/']).expect("a start tag");
    format!(
        "{} xmlns='{COMPONENT_NS}'{}",
        &s[..name_end],
        &s[name_end..]
    )
    .parse()
    .expect("bench stanza parses")
}

/// A status query from the sender of status `i` through the IQ path;
/// whether it answered "read".
pub(crate) fn ask_read(tm: &mut Tidemark, i: u64, pairs: u64, now: u64) -> bool {
    let (s, r) = wire::unit_users(i, pairs);
    let iq: Element = format!(
        "<iq xmlns='{COMPONENT_NS}' type='get' from='u{s}@localhost/r' to='{DOMAIN}' id='q{i}'><status xmlns='urn:tidemark:status:0' conversation='u{r}\\40localhost@{DOMAIN}' id='m{i}'/></iq>"
    )
    .parse()
    .expect("query parses");
    let effects = tm.handle(&iq, now);
    let out = effects.apply(&**tm.store()).unwrap_or_default();
    out.first()
        .is_some_and(|el| el.attr("type") == Some("result") && String::from(el).contains("read"))
}

/// The router over a sled store, fed stanza by stanza and flushed every
/// `batch` stanzas, like the connection loop's group commit.
pub(crate) struct RealPath {
    pub(crate) tm: Tidemark,
    store: Arc<dyn Store>,
    /// The same store when it is sled, for its size.
    sled: Option<Arc<SledStore>>,
    pairs: u64,
    batch: u64,
    unflushed: u64,
    now: u64,
    next_tick: u64,
    /// Stanzas handled, stanzas sent back, and how many of those were
    /// errors (a refusal would mean the bench measured the wrong thing).
    pub(crate) handled: u64,
    pub(crate) out: u64,
    pub(crate) errors: u64,
    /// Per flush, when `timed`: the store's flush alone (sled's fsync,
    /// PostgreSQL's COMMIT), and the whole batch from its first stanza's
    /// handling to the end of that flush, in ns (scenario pgstore).
    timed: bool,
    batch_start: Option<Instant>,
    pub(crate) flush_ns: Vec<u64>,
    pub(crate) batch_ns: Vec<u64>,
}

impl RealPath {
    fn open(dir: &Path, cache_mb: u64, batch: u64, pairs: u64) -> Result<RealPath, String> {
        let cfg = config(dir, cache_mb, batch)?;
        let store = Arc::new(
            SledStore::open(&cfg.storage.path, cfg.storage.cache_bytes)
                .map_err(|e| e.to_string())?,
        );
        let mut real = RealPath::over(cfg, store.clone(), batch, pairs)?;
        real.sled = Some(store);
        Ok(real)
    }

    /// The router over any store (`cfg`'s storage section is not read
    /// again: `store` is already open).
    pub(crate) fn over(
        cfg: Config,
        store: Arc<dyn Store>,
        batch: u64,
        pairs: u64,
    ) -> Result<RealPath, String> {
        let now = tidemark::component::clock::now_millis();
        let mut tm = Tidemark::new(cfg, store.clone(), now).map_err(|e| e.to_string())?;
        // What the connection loop does first on every connection.
        let hello = tm.on_connected(now).map_err(|e| e.to_string())?;
        hello.apply(&*store).map_err(|e| e.to_string())?;
        store.flush().map_err(|e| e.to_string())?;
        Ok(RealPath {
            tm,
            store,
            sled: None,
            pairs,
            batch: batch.max(1),
            unflushed: 0,
            now,
            next_tick: now + 1000,
            handled: 0,
            out: 0,
            errors: 0,
            timed: false,
            batch_start: None,
            flush_ns: Vec::new(),
            batch_ns: Vec::new(),
        })
    }

    /// Time each flush and each batch from here on.
    pub(crate) fn time_flushes(&mut self) {
        self.timed = true;
    }

    /// Every pair grants each other presence and comes online, so the
    /// presence gate lets their messages through.
    pub(crate) fn setup(&mut self) -> Result<(), String> {
        let mut buf = Vec::new();
        for p in 0..self.pairs {
            buf.clear();
            wire::write_setup(&mut buf, p);
            let mut split = wire::Splitter::new();
            let mut stanzas = Vec::new();
            split.feed(&buf, |st| stanzas.push(delivered(st)));
            for st in &stanzas {
                self.handle(st)?;
            }
        }
        self.flush()
    }

    /// Status `i`: the three stanzas, parsed before the clock starts (the
    /// reader parses in the real loop; the parse is not storage). Returns
    /// the time spent handling and flushing.
    pub(crate) fn status(&mut self, i: u64) -> Result<Duration, String> {
        let mut stanzas = Vec::with_capacity(3);
        let mut buf = Vec::with_capacity(256);
        for kind in 0..3 {
            buf.clear();
            wire::write_unit(&mut buf, i, kind, self.pairs);
            stanzas.push(delivered(&buf));
        }
        let t = Instant::now();
        for st in &stanzas {
            self.handle(st)?;
        }
        Ok(t.elapsed())
    }

    fn handle(&mut self, st: &Element) -> Result<(), String> {
        if self.timed && self.batch_start.is_none() {
            self.batch_start = Some(Instant::now());
        }
        let effects = self.tm.handle(st, self.now);
        let out = effects.apply(&*self.store).map_err(|e| e.to_string())?;
        self.handled += 1;
        self.out += out.len() as u64;
        self.errors += out
            .iter()
            .filter(|el| el.attr("type") == Some("error"))
            .count() as u64;
        self.unflushed += 1;
        if self.unflushed >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    /// The group commit; the clock is read once per batch and the service
    /// ticked about once a second, as the connection loop does.
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        let t = Instant::now();
        self.store.flush().map_err(|e| e.to_string())?;
        if let Some(start) = self.batch_start.take() {
            self.flush_ns.push(t.elapsed().as_nanos() as u64);
            self.batch_ns.push(start.elapsed().as_nanos() as u64);
        }
        self.unflushed = 0;
        self.now = tidemark::component::clock::now_millis();
        if self.now >= self.next_tick {
            self.next_tick = self.now + 1000;
            let effects = self.tm.tick(self.now).map_err(|e| e.to_string())?;
            if !effects.is_empty() {
                effects.apply(&*self.store).map_err(|e| e.to_string())?;
                self.store.flush().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// The earlier benchmark's writes: the `Store` called directly.
struct StoreCalls {
    store: SledStore,
    pairs: u64,
    batch: u64,
    ops: u64,
    now: u64,
}

impl StoreCalls {
    fn status(&mut self, i: u64) -> Result<Duration, String> {
        let e = |e: tidemark::store::StoreError| e.to_string();
        let t = Instant::now();
        let (s, r) = parties(i, self.pairs);
        let conv = ConversationKey::direct(&s, &r);
        let seq = self.store.next_seq().map_err(e)?;
        let mut rec = MessageRecord::sent(&s, &r, &format!("m{i}"), self.now);
        self.store.put_message(&conv, seq, &rec).map_err(e)?;
        rec.delivered_at = Some(self.now + 1);
        self.store.put_message(&conv, seq, &rec).map_err(e)?;
        self.store
            .advance_mark(&conv, &r, seq, self.now + 2)
            .map_err(e)?;
        // Three stanzas (message, receipt, displayed) per status; one flush
        // per flush_batch stanzas, as the component does.
        self.ops += 3;
        if self.ops % self.batch < 3 {
            self.store.flush().map_err(e)?;
        }
        Ok(t.elapsed())
    }
}

/// The baseline: one insert of the final record per status.
struct RawInserts {
    db: sled::Db,
    pairs: u64,
    batch: u64,
    ops: u64,
    now: u64,
}

impl RawInserts {
    fn open(dir: &Path, cache: u64) -> Result<sled::Db, String> {
        sled::Config::new()
            .path(dir)
            .cache_capacity(cache)
            .flush_every_ms(None)
            .open()
            .map_err(|e| e.to_string())
    }

    fn status(&mut self, i: u64) -> Result<Duration, String> {
        let t = Instant::now();
        let (s, r) = parties(i, self.pairs);
        let mut rec = MessageRecord::sent(&s, &r, &format!("m{i}"), self.now);
        rec.delivered_at = Some(self.now + 1);
        let mut v = postcard::to_allocvec(&rec).map_err(|e| e.to_string())?;
        v.extend_from_slice(&(self.now + 2).to_be_bytes()); // read at
        self.db
            .insert((i + 1).to_be_bytes(), v)
            .map_err(|e| e.to_string())?;
        self.ops += 3;
        if self.ops % self.batch < 3 {
            self.db.flush().map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed())
    }
}

enum Writer {
    Real(Box<RealPath>),
    Store(Box<StoreCalls>),
    Raw(RawInserts),
}

impl Writer {
    fn status(&mut self, i: u64) -> Result<Duration, String> {
        match self {
            Writer::Real(w) => w.status(i),
            Writer::Store(w) => w.status(i),
            Writer::Raw(w) => w.status(i),
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        match self {
            Writer::Real(w) => w.flush(),
            Writer::Store(w) => w.store.flush().map_err(|e| e.to_string()),
            Writer::Raw(w) => w.db.flush().map(|_| ()).map_err(|e| e.to_string()),
        }
    }

    fn size_on_disk(&self) -> u64 {
        match self {
            Writer::Real(w) => w
                .sled
                .as_ref()
                .and_then(|s| s.size_on_disk().ok())
                .unwrap_or(0),
            Writer::Store(w) => w.store.size_on_disk().unwrap_or(0),
            Writer::Raw(w) => w.db.size_on_disk().unwrap_or(0),
        }
    }
}

/// The users of status `i`, as addresses: the same pairs and directions as
/// the stanzas of scenario 1.
fn parties(i: u64, pairs: u64) -> (String, String) {
    let (s, r) = wire::unit_users(i, pairs);
    (format!("u{s}@localhost"), format!("u{r}@localhost"))
}

fn kv(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Child: `storage-child --mode write|reopen --schema real|store|raw --dir D
/// --statuses N --users U --cache-mb C --flush-batch B --queries Q
/// --checkpoints 10,50,100`.
pub fn child(args: &Args) -> Result<(), String> {
    let mode: String = args.get("mode", "write".to_string());
    let schema = Schema::parse(&args.get("schema", "real".to_string()))?;
    let dir: PathBuf = args.get("dir", PathBuf::from("store"));
    let n: u64 = args.get("statuses", 1_000_000);
    let pairs: u64 = (args.get("users", 10_000u64) / 2).max(1);
    let cache_mb = args.get("cache-mb", 64u64);
    let batch: u64 = args.get("flush-batch", 512u64).max(1);
    let queries: u64 = args.get("queries", 100_000);
    let checkpoints: Vec<u64> = args.list("checkpoints", &[10, 50, 100]);
    PREVIEW_CHARS.store(
        args.get("preview-chars", 0usize),
        std::sync::atomic::Ordering::Relaxed,
    );
    if mode == "write" {
        write(schema, &dir, n, pairs, cache_mb, batch, &checkpoints)
    } else {
        reopen(schema, &dir, n, pairs, cache_mb, batch, queries)
    }
}

fn write(
    schema: Schema,
    dir: &Path,
    n: u64,
    pairs: u64,
    cache_mb: u64,
    batch: u64,
    checkpoints: &[u64],
) -> Result<(), String> {
    let me = std::process::id();
    let now = tidemark::component::clock::now_millis();
    let cache = cache_mb * 1024 * 1024;
    let setup = Instant::now();
    let mut w = match schema {
        Schema::Real => {
            let mut real = RealPath::open(dir, cache_mb, batch, pairs)?;
            real.setup()?;
            println!(
                "setup_stanzas handled={} out={} errors={}",
                real.handled, real.out, real.errors
            );
            // From here on the counts are the statuses' own; errors stay
            // cumulative so a refused setup stanza still fails the run.
            real.handled = 0;
            real.out = 0;
            Writer::Real(Box::new(real))
        }
        Schema::Store => Writer::Store(Box::new(StoreCalls {
            store: SledStore::open(dir, cache).map_err(|e| e.to_string())?,
            pairs,
            batch,
            ops: 0,
            now,
        })),
        Schema::Raw => Writer::Raw(RawInserts {
            db: RawInserts::open(dir, cache)?,
            pairs,
            batch,
            ops: 0,
            now,
        }),
    };
    println!(
        "setup secs={:.3} sled_size={} allocated={} rss={:.1}",
        setup.elapsed().as_secs_f64(),
        w.size_on_disk(),
        util::dir_allocated(dir),
        util::rss_mib(me)
    );
    let mut at: Vec<u64> = checkpoints
        .iter()
        .map(|pct| (n * pct).div_ceil(100).clamp(1, n))
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut next = at.iter().copied().peekable();
    let mut busy = Duration::ZERO;
    let wall = Instant::now();
    for i in 0..n {
        busy += w.status(i)?;
        if next.peek() == Some(&(i + 1)) {
            next.next();
            // Flush so du sees what a kill -9 here would leave; the extra
            // flush is timed (it is a write), the du and /proc reads are not.
            let t = Instant::now();
            w.flush()?;
            busy += t.elapsed();
            println!(
                "checkpoint statuses={} secs={:.3} sled_size={} allocated={} rss={:.1}",
                i + 1,
                busy.as_secs_f64(),
                w.size_on_disk(),
                util::dir_allocated(dir),
                util::rss_mib(me)
            );
        }
    }
    let t = Instant::now();
    w.flush()?;
    busy += t.elapsed();
    let (handled, out, errors) = match &w {
        Writer::Real(r) => (r.handled, r.out, r.errors),
        _ => (3 * n, 0, 0),
    };
    println!(
        "written secs={:.3} wall_secs={:.3} rss={:.1} peak={:.1} sled_size={} allocated={} handled={handled} out={out} errors={errors}",
        busy.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        util::rss_mib(me),
        util::peak_rss_mib(me),
        w.size_on_disk(),
        util::dir_allocated(dir),
    );
    // Wait to be killed (bounded: a minute).
    std::thread::sleep(Duration::from_secs(60));
    Err("was not killed".into())
}

/// After SIGKILL: reopen, first answered query, then random queries.
fn reopen(
    schema: Schema,
    dir: &Path,
    n: u64,
    pairs: u64,
    cache_mb: u64,
    batch: u64,
    queries: u64,
) -> Result<(), String> {
    let me = std::process::id();
    let now = tidemark::component::clock::now_millis();
    let cache = cache_mb * 1024 * 1024;
    let t = Instant::now();
    let mut lat = Vec::with_capacity(queries as usize);
    let mut found = 0u64;
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (open_secs, first_secs, first_rss, qsecs);
    if schema == Schema::Raw {
        let db = RawInserts::open(dir, cache)?;
        open_secs = t.elapsed().as_secs_f64();
        let _ = db.get(1u64.to_be_bytes());
        first_secs = t.elapsed().as_secs_f64();
        first_rss = util::rss_mib(me);
        let q = Instant::now();
        for _ in 0..queries {
            let i = rand() % n;
            let s = Instant::now();
            if let Some(v) = db.get((i + 1).to_be_bytes()).map_err(|e| e.to_string())? {
                let rec: MessageRecord = postcard::from_bytes(&v).map_err(|e| e.to_string())?;
                if rec.id.len() > 1 {
                    found += 1;
                }
            }
            lat.push(s.elapsed().as_nanos() as u64);
        }
        qsecs = q.elapsed().as_secs_f64();
    } else {
        let cfg = config(dir, cache_mb, batch)?;
        let store = Arc::new(SledStore::open(dir, cache).map_err(|e| e.to_string())?);
        open_secs = t.elapsed().as_secs_f64();
        let mut tm = Tidemark::new(cfg, store.clone(), now).map_err(|e| e.to_string())?;
        if schema == Schema::Real {
            // The binary probes every known contact before it reads the
            // first stanza; that is part of the way to the first answer.
            let hello = tm.on_connected(now).map_err(|e| e.to_string())?;
            hello.apply(&*store).map_err(|e| e.to_string())?;
        }
        ask_read(&mut tm, 0, pairs, now);
        first_secs = t.elapsed().as_secs_f64();
        first_rss = util::rss_mib(me);
        let q = Instant::now();
        for _ in 0..queries {
            let i = rand() % n;
            let s = Instant::now();
            if ask_read(&mut tm, i, pairs, now) {
                found += 1;
            }
            lat.push(s.elapsed().as_nanos() as u64);
        }
        qsecs = q.elapsed().as_secs_f64();
        if schema == Schema::Real {
            status_pages(&mut tm, pairs, now, queries.min(5_000), &mut rand)?;
        }
    }
    lat.sort_unstable();
    println!(
        "reopened open_secs={open_secs:.3} first_query_secs={first_secs:.3} first_rss={first_rss:.1} queries={queries} found={found} qps={:.0} p50_us={:.1} p99_us={:.1} rss={:.1} peak={:.1}",
        queries as f64 / qsecs,
        percentile(&lat, 50.0) as f64 / 1e3,
        percentile(&lat, 99.0) as f64 / 1e3,
        util::rss_mib(me),
        util::peak_rss_mib(me)
    );
    Ok(())
}

/// Issue 9: pages of the `status` ad-hoc command through the IQ path, for
/// random users: the first page (their newest 20 sent messages) and the
/// next one, each timed alone. Printed as a `pages` line.
fn status_pages(
    tm: &mut Tidemark,
    pairs: u64,
    now: u64,
    n: u64,
    rand: &mut impl FnMut() -> u64,
) -> Result<(), String> {
    let command = |user: u64, attrs: &str, payload: &str| -> Element {
        format!(
            "<iq xmlns='{COMPONENT_NS}' type='set' id='p' from='u{user}@localhost/r' to='{DOMAIN}'><command xmlns='http://jabber.org/protocol/commands' node='status' {attrs}>{payload}</command></iq>"
        )
        .parse()
        .expect("command parses")
    };
    let rows = |out: &[Element]| -> usize {
        out.first()
            .map(|el| String::from(el).matches("<item").count())
            .unwrap_or(0)
    };
    let (mut first, mut next) = (Vec::new(), Vec::new());
    let (mut first_rows, mut next_rows) = (0usize, 0usize);
    for _ in 0..n {
        let user = rand() % (2 * pairs);
        let iq = command(
            user,
            "sessionid='bench' action='next'",
            "<x xmlns='jabber:x:data' type='submit'><field var='with'/></x>",
        );
        let s = Instant::now();
        let effects = tm.handle(&iq, now);
        let out = effects.apply(&**tm.store()).map_err(|e| e.to_string())?;
        first.push(s.elapsed().as_nanos() as u64);
        first_rows += rows(&out);
        let session = out
            .first()
            .and_then(|el| el.children().find(|c| c.name() == "command"))
            .and_then(|c| c.attr("sessionid"))
            .map(str::to_owned);
        let Some(session) = session else {
            return Err(format!("no page: {:?}", out.first().map(String::from)));
        };
        let iq = command(user, &format!("sessionid='{session}' action='next'"), "");
        let s = Instant::now();
        let effects = tm.handle(&iq, now);
        let out = effects.apply(&**tm.store()).map_err(|e| e.to_string())?;
        next.push(s.elapsed().as_nanos() as u64);
        next_rows += rows(&out);
    }
    first.sort_unstable();
    next.sort_unstable();
    println!(
        "pages n={n} first_rows={:.1} first_p50_us={:.1} first_p99_us={:.1} next_rows={:.1} next_p50_us={:.1} next_p99_us={:.1}",
        first_rows as f64 / n as f64,
        percentile(&first, 50.0) as f64 / 1e3,
        percentile(&first, 99.0) as f64 / 1e3,
        next_rows as f64 / n as f64,
        percentile(&next, 50.0) as f64 / 1e3,
        percentile(&next, 99.0) as f64 / 1e3,
    );
    Ok(())
}

/// One disk and memory sample while writing.
struct Checkpoint {
    statuses: f64,
    allocated: f64,
    rss: f64,
}

struct Run {
    schema: Schema,
    write_secs: f64,
    wall_secs: f64,
    write_peak: f64,
    write_rss: f64,
    sled_size: f64,
    allocated: f64,
    setup_secs: f64,
    setup_allocated: f64,
    checkpoints: Vec<Checkpoint>,
    out: f64,
    open_secs: f64,
    first_secs: f64,
    first_rss: f64,
    qps: f64,
    p50_us: f64,
    p99_us: f64,
    found: f64,
    query_rss: f64,
    query_peak: f64,
}

#[derive(Clone)]
struct Params {
    n: u64,
    users: u64,
    cache_mb: u64,
    batch: u64,
    queries: u64,
    checkpoints: Vec<u64>,
}

fn run(schema: Schema, p: &Params) -> Result<Run, String> {
    let tmp = TempDir::new(&format!("storage-{}", schema.name()));
    let dir = tmp.path().join("store");
    let common = |mode: &str| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.arg("storage-child")
            .args(["--mode", mode, "--schema", schema.name()])
            .args(["--dir", &dir.display().to_string()])
            .args(["--statuses", &p.n.to_string()])
            .args(["--users", &p.users.to_string()])
            .args(["--cache-mb", &p.cache_mb.to_string()])
            .args(["--flush-batch", &p.batch.to_string()])
            .args(["--queries", &p.queries.to_string()])
            .args(["--preview-chars", &preview_chars().to_string()])
            .args([
                "--checkpoints",
                &p.checkpoints
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        c
    };
    let mut w = common("write").spawn().map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    let mut reader = BufReader::new(w.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        let got = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if got == 0 {
            break;
        }
        print!("  {} {line}", schema.name());
        let done = line.starts_with("written");
        lines.push(line);
        if done {
            break;
        }
    }
    // SIGKILL: no destructor, no final flush.
    let _ = w.kill();
    let _ = w.wait();
    let find = |prefix: &str| lines.iter().find(|l| l.starts_with(prefix)).cloned();
    let (Some(setup), Some(written)) = (find("setup "), find("written")) else {
        return Err(format!("{} writer failed: {lines:?}", schema.name()));
    };
    if kv(&written, "errors") > 0.0 {
        return Err(format!(
            "{}: the service refused stanzas, so this would not measure storage: {written}",
            schema.name()
        ));
    }
    let allocated = util::dir_allocated(&dir) as f64;
    let r = common("reopen").output().map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    for l in out.lines().filter(|l| l.starts_with("pages")) {
        println!("  {} {l}", schema.name());
    }
    let rl = out
        .lines()
        .find(|l| l.starts_with("reopened"))
        .unwrap_or_default()
        .to_owned();
    println!("  {} {rl}", schema.name());
    if !rl.starts_with("reopened") {
        return Err(format!("reopen failed: {rl:?}"));
    }
    Ok(Run {
        schema,
        write_secs: kv(&written, "secs"),
        wall_secs: kv(&written, "wall_secs"),
        write_peak: kv(&written, "peak"),
        write_rss: kv(&written, "rss"),
        sled_size: kv(&written, "sled_size"),
        allocated,
        setup_secs: kv(&setup, "secs"),
        setup_allocated: kv(&setup, "allocated"),
        checkpoints: lines
            .iter()
            .filter(|l| l.starts_with("checkpoint"))
            .map(|l| Checkpoint {
                statuses: kv(l, "statuses"),
                allocated: kv(l, "allocated"),
                rss: kv(l, "rss"),
            })
            .collect(),
        out: kv(&written, "out"),
        open_secs: kv(&rl, "open_secs"),
        first_secs: kv(&rl, "first_query_secs"),
        first_rss: kv(&rl, "first_rss"),
        qps: kv(&rl, "qps"),
        p50_us: kv(&rl, "p50_us"),
        p99_us: kv(&rl, "p99_us"),
        found: kv(&rl, "found"),
        query_rss: kv(&rl, "rss"),
        query_peak: kv(&rl, "peak"),
    })
}

pub fn main(args: &Args) -> Result<(), String> {
    let p = Params {
        n: args.get("statuses", 1_000_000u64).max(1),
        users: args.get("users", 10_000u64).max(2),
        cache_mb: 0,
        batch: args.get("flush-batch", 512u64).max(1),
        queries: args.get("queries", 100_000u64),
        checkpoints: args.list("checkpoints", &[10, 50, 100]),
    };
    let schemas = match args.get("path", "real".to_string()).as_str() {
        "real" => vec![Schema::Real, Schema::Raw],
        "store" => vec![Schema::Store, Schema::Raw],
        "all" => vec![Schema::Real, Schema::Store, Schema::Raw],
        other => return Err(format!("--path {other:?}: expected real, store or all")),
    };
    let caches: Vec<u64> = args.list("cache-mb", &[64]);
    PREVIEW_CHARS.store(
        args.get("preview-chars", 0usize),
        std::sync::atomic::Ordering::Relaxed,
    );
    let (n, batch, queries) = (p.n, p.batch, p.queries);
    println!(
        "scenario 3: storage; {n} statuses (1:1 messages taken through sent, delivered, read) between {} users, written with a flush every {batch} stanzas, SIGKILL, reopen, {queries} random status queries; cache_mb {caches:?}; paths {:?}",
        p.users,
        schemas.iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    for cache_mb in caches {
        let p = Params {
            cache_mb,
            ..p.clone()
        };
        let mut runs = Vec::new();
        for &schema in &schemas {
            runs.push(run(schema, &p)?);
        }
        print_tables(&p, &runs);
    }
    Ok(())
}

fn print_tables(p: &Params, runs: &[Run]) {
    let n = p.n as f64;
    let base = runs.last().expect("the baseline always runs");
    let others = &runs[..runs.len() - 1];
    println!();
    println!("cache_mb = {}", p.cache_mb);
    let mut head = String::from("| figure |");
    let mut rule = String::from("|---|");
    for r in runs {
        head += &format!(" {} |", r.schema.title());
        rule += "---|";
    }
    for r in others {
        head += &format!(" {} / baseline |", r.schema.name());
        rule += "---|";
    }
    println!("{head}");
    println!("{rule}");
    let row = |label: &str, cell: &dyn Fn(&Run) -> String, ratio: &dyn Fn(&Run) -> f64| {
        let mut line = format!("| {label} |");
        for r in runs {
            line += &format!(" {} |", cell(r));
        }
        for r in others {
            line += &format!(" {:.2}x |", ratio(r));
        }
        println!("{line}");
    };
    row(
        &format!("write {} statuses, s (statuses/s)", p.n),
        &|r| format!("{:.1} ({:.0}/s)", r.write_secs, n / r.write_secs),
        &|r| (n / r.write_secs) / (n / base.write_secs),
    );
    row(
        "bytes on disk per status, du after kill -9 (sled size_on_disk)",
        &|r| format!("{:.0} ({:.0})", r.allocated / n, r.sled_size / n),
        &|r| r.allocated / base.allocated,
    );
    row(
        "reopen after kill -9, s: open (to first answered query)",
        &|r| format!("{:.2} ({:.2})", r.open_secs, r.first_secs),
        &|r| r.first_secs / base.first_secs,
    );
    row(
        &format!(
            "status queries/s; p50 / p99 us (found read of {})",
            p.queries
        ),
        &|r| {
            format!(
                "{:.0}; {:.1} / {:.1} ({:.0})",
                r.qps, r.p50_us, r.p99_us, r.found
            )
        },
        &|r| r.qps / base.qps,
    );
    row(
        "RSS at the end of writing (peak), MiB",
        &|r| format!("{:.1} ({:.1})", r.write_rss, r.write_peak),
        &|r| r.write_peak / base.write_peak,
    );
    row(
        "RSS after reopen, at the first answer / after the queries (peak), MiB",
        &|r| {
            format!(
                "{:.1} / {:.1} ({:.1})",
                r.first_rss, r.query_rss, r.query_peak
            )
        },
        &|r| r.query_rss / base.query_rss,
    );
    for r in runs.iter().filter(|r| r.schema == Schema::Real) {
        println!(
            "\nreal path: setup of {} users (presence grants, online) took {:.1} s and {:.1} MiB on disk (included in bytes per status); {:.2} stanzas out per status, no errors; writing took {:.1} s of wall time with the stanzas' parsing, which the figure above leaves out",
            p.users,
            r.setup_secs,
            r.setup_allocated / (1024.0 * 1024.0),
            r.out / n,
            r.wall_secs
        );
    }
    println!(
        "\nas the store grows (du of the store directory after a flush, while the writer runs):"
    );
    let mut head = String::from("| statuses |");
    let mut rule = String::from("|---|");
    for r in runs {
        head += &format!(" {}: bytes/status, RSS MiB |", r.schema.name());
        rule += "---|";
    }
    println!("{head}");
    println!("{rule}");
    for (k, c) in base.checkpoints.iter().enumerate() {
        let mut line = format!("| {:.0} |", c.statuses);
        for r in runs {
            match r.checkpoints.get(k) {
                Some(c) => line += &format!(" {:.0}, {:.1} |", c.allocated / c.statuses, c.rss),
                None => line += " – |",
            }
        }
        println!("{line}");
    }
}

/// Issue 9: `sent-pages`: what a page of the `status` command costs for one
/// user with many conversations. `--conversations C` contacts, `--per K`
/// messages each way with each, interleaved across conversations as a busy
/// user's would be (so every step of a walk lands on another page of the
/// status log), written through the store, flushed, the store reopened
/// cold; then `--rounds R` times each: the first page, the next page, and
/// for scale a status query for one of the user's messages, all through
/// `Tidemark::handle`.
pub fn sent_pages(args: &Args) -> Result<(), String> {
    let convs: u64 = args.get("conversations", 2_000u64).max(1);
    let per: u64 = args.get("per", 10u64).max(1);
    let rounds: u64 = args.get("rounds", 200u64).max(1);
    let tmp = TempDir::new("sent-pages");
    let dir = tmp.path().join("store");
    let cache = 64 * 1024 * 1024;
    let alice = "alice@localhost";
    let t = Instant::now();
    let mut last = (String::new(), String::new());
    {
        let store = SledStore::open(&dir, cache).map_err(|e| e.to_string())?;
        let mut ops = 0u64;
        for k in 0..per {
            for c in 0..convs {
                let contact = format!("c{c}@localhost");
                let conv = ConversationKey::direct(alice, &contact);
                for (from, to) in [(alice, contact.as_str()), (contact.as_str(), alice)] {
                    let seq = store.next_seq().map_err(|e| e.to_string())?;
                    let id = format!("m{k}-{c}-{}", from.len());
                    store
                        .put_message(&conv, seq, &MessageRecord::sent(from, to, &id, 1_000 + seq))
                        .map_err(|e| e.to_string())?;
                    if from == alice {
                        last = (contact.clone(), id);
                    }
                    ops += 1;
                    if ops.is_multiple_of(512) {
                        store.flush().map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        store.flush().map_err(|e| e.to_string())?;
    }
    let written = t.elapsed().as_secs_f64();
    let cfg = config(&dir, 64, 512)?;
    let store = Arc::new(SledStore::open(&dir, cache).map_err(|e| e.to_string())?);
    let now = tidemark::component::clock::now_millis();
    let mut tm = Tidemark::new(cfg, store.clone(), now).map_err(|e| e.to_string())?;
    let mut send = |xml: String| -> Result<(Duration, Element), String> {
        let iq: Element = xml.parse().map_err(|e| format!("{e}"))?;
        let s = Instant::now();
        let effects = tm.handle(&iq, now);
        let out = effects.apply(&**tm.store()).map_err(|e| e.to_string())?;
        let d = s.elapsed();
        out.into_iter()
            .next()
            .map(|el| (d, el))
            .ok_or_else(|| "no answer".to_owned())
    };
    let command = |attrs: &str, payload: &str| {
        format!(
            "<iq xmlns='{COMPONENT_NS}' type='set' id='p' from='{alice}/r' to='{DOMAIN}'><command xmlns='http://jabber.org/protocol/commands' node='status' {attrs}>{payload}</command></iq>"
        )
    };
    let escaped = last.0.replace('@', "\\40");
    let query = format!(
        "<iq xmlns='{COMPONENT_NS}' type='get' from='{alice}/r' to='{DOMAIN}' id='q'><status xmlns='urn:tidemark:status:0' conversation='{escaped}@{DOMAIN}' id='{}'/></iq>",
        last.1
    );
    let (mut first, mut next, mut status) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = (0usize, 0usize);
    for round in 0..rounds {
        let (d, page) = send(command(
            "sessionid='bench' action='next'",
            "<x xmlns='jabber:x:data' type='submit'><field var='with'/></x>",
        ))?;
        first.push(d.as_nanos() as u64);
        let text = String::from(&page);
        rows.0 += text.matches("<item").count();
        let session = page
            .children()
            .find(|c| c.name() == "command")
            .and_then(|c| c.attr("sessionid"))
            .ok_or_else(|| format!("no page: {text}"))?
            .to_owned();
        let (d, page) = send(command(&format!("sessionid='{session}' action='next'"), ""))?;
        next.push(d.as_nanos() as u64);
        rows.1 += String::from(&page).matches("<item").count();
        let (d, answer) = send(query.clone())?;
        status.push(d.as_nanos() as u64);
        if round == 0 && answer.attr("type") != Some("result") {
            return Err(format!("status query failed: {}", String::from(&answer)));
        }
    }
    for v in [&mut first, &mut next, &mut status] {
        v.sort_unstable();
    }
    let us = |v: &[u64], p: f64| percentile(v, p) as f64 / 1e3;
    println!(
        "sent-pages: one user with {convs} conversations, {per} messages each way in each ({} messages), written through the store in {written:.1} s, reopened; {rounds} rounds through Tidemark::handle",
        2 * convs * per
    );
    println!("| request | rows | p50 us | p99 us |");
    println!("|---|---|---|---|");
    println!(
        "| status command, first page | {:.1} | {:.0} | {:.0} |",
        rows.0 as f64 / rounds as f64,
        us(&first, 50.0),
        us(&first, 99.0)
    );
    println!(
        "| status command, next page | {:.1} | {:.0} | {:.0} |",
        rows.1 as f64 / rounds as f64,
        us(&next, 50.0),
        us(&next, 99.0)
    );
    println!(
        "| status query, one message (for scale) | 1 | {:.0} | {:.0} |",
        us(&status, 50.0),
        us(&status, 99.0)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real path stores what a user would see: every stanza passes the
    /// gate and the rate limit (one stanza out each, no errors), and after
    /// a kill-free reopen the sender's status query answers "read".
    #[test]
    fn real_path_statuses_are_read_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (n, pairs) = (300u64, 50u64);
        {
            let mut real = RealPath::open(&store, 16, 64, pairs).unwrap();
            real.setup().unwrap();
            let before = real.out;
            for i in 0..n {
                real.status(i).unwrap();
            }
            real.flush().unwrap();
            assert_eq!(real.errors, 0, "no stanza was refused");
            assert_eq!(real.out - before, 3 * n, "each stanza was relayed once");
        }
        let cfg = config(&store, 16, 64).unwrap();
        let sled = Arc::new(SledStore::open(&store, 16 << 20).unwrap());
        let now = tidemark::component::clock::now_millis();
        let mut tm = Tidemark::new(cfg, sled, now).unwrap();
        let read = (0..n).filter(|&i| ask_read(&mut tm, i, pairs, now)).count();
        assert_eq!(read as u64, n);
        assert!(
            !ask_read(&mut tm, n + 7, pairs, now),
            "an unknown id is not read"
        );
    }
}
