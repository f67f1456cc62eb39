//! Scenario 1: the component alone. The load generator plays the XMPP
//! server over XEP-0114 on loopback, first against tidemark, then against a
//! baseline component (the `echo-component` subcommand: the same XML stack,
//! the same sled writes and batched flush, no routing), with the same bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{self, Args, TempDir, percentile};
use crate::wire::{self, DOMAIN, SECRET, Splitter};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Tidemark,
    /// Another tidemark binary (`--previous PATH`), say the last release,
    /// run with the same bytes and config for a same-run comparison.
    Previous,
    Baseline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tidemark => "tidemark",
            Kind::Previous => "previous",
            Kind::Baseline => "baseline",
        }
    }
}

pub struct Params {
    pub pairs: u64,
    pub units: u64,
    pub paced_units: u64,
    pub window: u64,
    pub flush_batch: usize,
    pub cache_mb: u64,
    pub max_secs: f64,
    pub paced_fraction: f64,
    /// `--previous PATH`: a tidemark binary to compare with.
    pub previous: Option<std::path::PathBuf>,
    /// `--rounds N`: with `--previous`, alternate the two binaries N times.
    pub rounds: usize,
    /// `--rounds N` without `--previous`: tidemark and the baseline
    /// alternate N times (default once).
    pub baseline_rounds: usize,
    /// `--paced-rate R`: pace at R stanzas/s instead of a fraction of the
    /// first run's saturated rate (to compare builds at one load).
    pub paced_rate: Option<f64>,
    /// `--baseline-store`: the baseline also makes sled writes shaped like
    /// tidemark's; by default it only parses and serialises (issue 8's
    /// baseline: what the XML stack alone allows).
    pub baseline_store: bool,
    /// Issue 10: whether tidemark keeps the conversation list (`--inbox false`: not).
    pub inbox: bool,
}

impl Params {
    pub fn from(args: &Args) -> Params {
        Params {
            pairs: args.get("users", 10_000u64) / 2,
            units: args.get("messages", 100_000u64),
            paced_units: args.get("paced-messages", 30_000u64),
            window: args.get("window", 3_000u64),
            flush_batch: args.get("flush-batch", 512usize),
            cache_mb: args.get("cache-mb", 64u64),
            max_secs: args.get("max-secs", 60.0f64),
            paced_fraction: args.get("paced-fraction", 0.5f64),
            previous: Some(args.get("previous", String::new()))
                .filter(|s| !s.is_empty())
                .map(Into::into),
            rounds: args.get("rounds", 3usize).max(1),
            baseline_rounds: args.get("rounds", 1usize).max(1),
            paced_rate: Some(args.get("paced-rate", 0.0f64)).filter(|r| *r > 0.0),
            baseline_store: args.get("baseline-store", false),
            inbox: args.get("inbox", true),
        }
    }
}

/// What one timed phase measured.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    pub errors: u64,
    pub wall: f64,
    pub rate: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub cpu: f64,
    /// CPU of the target's main thread, where its connection runs.
    pub main_cpu: f64,
    pub gen_cpu: f64,
}

pub struct Outcome {
    pub kind: Kind,
    pub saturated: Phase,
    pub paced: Phase,
    pub paced_rate: f64,
    pub peak_rss_mib: f64,
    pub setup_secs: f64,
}

struct Shared {
    epoch: Instant,
    /// Send time (ns since epoch, +1 so 0 means unsent) per stanza key.
    sent_at: Vec<AtomicU64>,
    /// Receive time per stanza key.
    recv_at: Vec<AtomicU64>,
    matched: AtomicU64,
    errors: AtomicU64,
    total_out: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }
}

fn spawn_target(kind: Kind, dir: &TempDir, port: u16, p: &Params) -> Child {
    let log = std::fs::File::create(dir.path().join(format!("{}.log", kind.name()))).unwrap();
    let store = dir.path().join("store");
    match kind {
        Kind::Tidemark | Kind::Previous => {
            let cfg = dir.path().join("tidemark.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[component]\njid = \"{DOMAIN}\"\nserver = \"127.0.0.1:{port}\"\nsecret = \"{SECRET}\"\n\n[storage]\npath = {:?}\ncache_mb = {}\nflush_batch = {}\n\n[log]\nlevel = \"info\"\n{}",
                    store.display().to_string(),
                    p.cache_mb,
                    p.flush_batch,
                    // Only when off: a --previous build from before issue 10
                    // knows no [inbox] section.
                    if p.inbox { "" } else { "\n[inbox]\nenabled = false\n" }
                ),
            )
            .unwrap();
            let binary = match (kind, &p.previous) {
                (Kind::Previous, Some(path)) => path.clone(),
                _ => util::sibling_binary("tidemark"),
            };
            Command::new(binary)
                .arg("--config")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start target/release/tidemark (build it with cargo build --release)")
        }
        Kind::Baseline => Command::new(std::env::current_exe().unwrap())
            .arg("echo-component")
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--store", &store.display().to_string()])
            .args(["--flush-batch", &p.flush_batch.to_string()])
            .args(["--cache-mb", &p.cache_mb.to_string()])
            .args(["--no-store", &(!p.baseline_store).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start echo-component"),
    }
}

fn reader(mut sock: TcpStream, leftover: Vec<u8>, sh: Arc<Shared>) {
    let mut split = Splitter::new();
    let mut on = |st: &[u8]| {
        sh.total_out.fetch_add(1, Ordering::Relaxed);
        if let Some((unit, kind, error)) = wire::classify_out(st) {
            let key = (unit * 3 + kind as u64) as usize;
            if key < sh.recv_at.len() {
                sh.recv_at[key].store(sh.now(), Ordering::Relaxed);
            }
            if error {
                sh.errors.fetch_add(1, Ordering::Relaxed);
            }
            sh.matched.fetch_add(1, Ordering::Release);
        }
    };
    split.feed(&leftover, &mut on);
    let mut buf = vec![0u8; 1 << 16];
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    while !sh.stop.load(Ordering::Relaxed) && !split.ended {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => split.feed(&buf[..n], &mut on),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

fn wait_for(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Sends units [first, first+count) either as fast as the window allows
/// (`rate` None) or paced at `rate` stanzas per second, and measures.
fn phase(
    sock: &mut TcpStream,
    sh: &Shared,
    pid: u32,
    p: &Params,
    first: u64,
    count: u64,
    rate: Option<f64>,
) -> Phase {
    let stanzas = count * 3;
    let matched0 = sh.matched.load(Ordering::Acquire);
    let errors0 = sh.errors.load(Ordering::Relaxed);
    let cpu0 = util::cpu_seconds(pid);
    let main0 = util::main_thread_cpu_seconds(pid);
    let gen0 = util::cpu_seconds(std::process::id());
    let start = Instant::now();
    let start_ns = sh.now();
    let deadline = start + Duration::from_secs_f64(p.max_secs);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut sent = 0u64;
    let mut timed_out = false;
    while sent < stanzas {
        let now = Instant::now();
        if now > deadline {
            timed_out = true;
            break;
        }
        // How many may go now.
        let allowed = match rate {
            None => {
                let done = sh.matched.load(Ordering::Acquire) - matched0;
                let in_flight = sent - done.min(sent);
                if in_flight >= p.window {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                (p.window - in_flight).min(256)
            }
            Some(r) => {
                let due = ((now - start).as_secs_f64() * r) as u64 + 1;
                if due <= sent {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                due - sent
            }
        };
        let n = allowed.min(stanzas - sent);
        buf.clear();
        let t = sh.now();
        for k in sent..sent + n {
            let unit = first + k / 3;
            let kind = (k % 3) as u8;
            wire::write_unit(&mut buf, unit, kind, p.pairs);
            let key = (unit * 3 + kind as u64) as usize;
            // Paced: the stanza was due at its scheduled time, whether or
            // not the generator kept up (no coordinated omission).
            let at = match rate {
                Some(r) => start_ns + (k as f64 / r * 1e9) as u64,
                None => t,
            };
            sh.sent_at[key].store(at, Ordering::Relaxed);
        }
        if sock.write_all(&buf).is_err() {
            timed_out = true;
            break;
        }
        sent += n;
    }
    let all = wait_for(
        deadline.max(Instant::now() + Duration::from_secs(5)),
        || sh.matched.load(Ordering::Acquire) - matched0 >= sent,
    );
    let cpu = util::cpu_seconds(pid) - cpu0;
    let main_cpu = util::main_thread_cpu_seconds(pid) - main0;
    let gen_cpu = util::cpu_seconds(std::process::id()) - gen0;
    if timed_out || !all {
        eprintln!(
            "  warning: phase stopped early (sent {sent} of {stanzas}; answered {})",
            sh.matched.load(Ordering::Acquire) - matched0
        );
    }

    let mut lat = Vec::with_capacity(sent as usize);
    let mut first_in = u64::MAX;
    let mut last_out = 0u64;
    for k in 0..sent {
        let key = ((first + k / 3) * 3 + k % 3) as usize;
        let s = sh.sent_at[key].load(Ordering::Relaxed);
        let r = sh.recv_at[key].load(Ordering::Relaxed);
        if s == 0 || r == 0 {
            continue;
        }
        first_in = first_in.min(s);
        last_out = last_out.max(r);
        lat.push(r.saturating_sub(s) / 1000);
    }
    lat.sort_unstable();
    let out = sh.matched.load(Ordering::Acquire) - matched0;
    let wall = (last_out.saturating_sub(first_in)) as f64 / 1e9;
    Phase {
        stanzas_in: sent,
        stanzas_out: out,
        errors: sh.errors.load(Ordering::Relaxed) - errors0,
        wall,
        rate: lat.len() as f64 / wall,
        p50_us: percentile(&lat, 50.0),
        p99_us: percentile(&lat, 99.0),
        max_us: lat.last().copied().unwrap_or(0),
        cpu,
        main_cpu,
        gen_cpu,
    }
}

pub fn run_one(kind: Kind, p: &Params, fixed_rate: Option<f64>) -> Result<Outcome, String> {
    let dir = TempDir::new(kind.name());
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().unwrap().port();
    let mut child = spawn_target(kind, &dir, port, p);
    let pid = child.id();
    let result = (|| {
        let (mut sock, leftover) = wire::accept_component(&listener, Duration::from_secs(20))?;
        let keys = ((p.units + p.paced_units) * 3) as usize;
        let sh = Arc::new(Shared {
            epoch: Instant::now(),
            sent_at: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            recv_at: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            matched: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            total_out: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let rsock = sock.try_clone().map_err(|e| e.to_string())?;
        let rsh = sh.clone();
        let rthread = std::thread::spawn(move || reader(rsock, leftover, rsh));

        // Setup, not timed: grants and presences for every pair.
        let t0 = Instant::now();
        let mut buf = Vec::new();
        for pair in 0..p.pairs {
            wire::write_setup(&mut buf, pair);
            if buf.len() > 1 << 16 {
                sock.write_all(&buf).map_err(|e| e.to_string())?;
                buf.clear();
            }
        }
        sock.write_all(&buf).map_err(|e| e.to_string())?;
        let expect = p.pairs * 4;
        if !wait_for(Instant::now() + Duration::from_secs_f64(p.max_secs), || {
            sh.total_out.load(Ordering::Relaxed) >= expect
        }) {
            return Err(format!(
                "setup: {} of {expect} answers",
                sh.total_out.load(Ordering::Relaxed)
            ));
        }
        let setup_secs = t0.elapsed().as_secs_f64();

        let saturated = phase(&mut sock, &sh, pid, p, 0, p.units, None);
        let paced_rate = fixed_rate.unwrap_or(saturated.rate * p.paced_fraction);
        let paced = phase(
            &mut sock,
            &sh,
            pid,
            p,
            p.units,
            p.paced_units,
            Some(paced_rate),
        );
        let peak = util::peak_rss_mib(pid);
        sh.stop.store(true, Ordering::Relaxed);
        let _ = sock.shutdown(std::net::Shutdown::Both);
        let _ = rthread.join();
        Ok(Outcome {
            kind,
            saturated,
            paced,
            paced_rate,
            peak_rss_mib: peak,
            setup_secs,
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        let log = std::fs::read_to_string(dir.path().join(format!("{}.log", kind.name())))
            .unwrap_or_default();
        eprintln!("--- {} log tail ---\n{}", kind.name(), tail(&log, 20));
    }
    result
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        "-".into()
    } else {
        format!("{:.2}x", a / b)
    }
}

pub fn main(args: &Args) -> Result<(), String> {
    let p = Params::from(args);
    if p.previous.is_some() {
        return compare_with_previous(&p);
    }
    println!(
        "scenario 1: component alone over XEP-0114 on loopback; {} users ({} pairs), {} messages x 3 stanzas (message, receipt, displayed) saturated with a window of {} stanzas, then {} messages paced at {:.0}% of the saturated rate; flush_batch {}, cache_mb {}",
        p.pairs * 2,
        p.pairs,
        p.units,
        p.window,
        p.paced_units,
        p.paced_fraction * 100.0,
        p.flush_batch,
        p.cache_mb
    );
    // With `--rounds N`, tidemark and the baseline alternate N times, so
    // that a busy moment of a shared machine hits both; the table gives the
    // median of each figure.
    let mut pairs = Vec::new();
    let mut paced_rate = p.paced_rate;
    for _ in 0..p.baseline_rounds {
        let tm = run_one(Kind::Tidemark, &p, paced_rate)?;
        report(&tm);
        paced_rate.get_or_insert(tm.paced_rate);
        // The baseline is paced at the same absolute rate as tidemark, so
        // its latency is read at the same load.
        let base = run_one(Kind::Baseline, &p, paced_rate)?;
        report(&base);
        pairs.push((tm, base));
    }
    if pairs.len() > 1 {
        let ratios: Vec<String> = pairs
            .iter()
            .map(|(t, b)| ratio(t.saturated.rate, b.saturated.rate))
            .collect();
        println!(
            "throughput ratio per round: {}; the table gives the median of each figure over {} rounds",
            ratios.join(", "),
            pairs.len()
        );
    }
    let tm = median_outcome(pairs.iter().map(|(t, _)| t).collect());
    let base = median_outcome(pairs.iter().map(|(_, b)| b).collect());

    let per100k = |ph: &Phase| ph.cpu / ph.stanzas_out as f64 * 100_000.0;
    println!();
    println!(
        "| figure | tidemark | baseline ({}) | tidemark / baseline |",
        if p.baseline_store {
            "parse+serialise+sled, no routing"
        } else {
            "parse+serialise only, no store"
        }
    );
    println!("|---|---|---|---|");
    println!(
        "| throughput, stanzas in/s (saturated) | {:.0} | {:.0} | {} |",
        tm.saturated.rate,
        base.saturated.rate,
        ratio(tm.saturated.rate, base.saturated.rate)
    );
    println!(
        "| p50 / p99 latency in->out at saturation, ms | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} |",
        tm.saturated.p50_us as f64 / 1e3,
        tm.saturated.p99_us as f64 / 1e3,
        base.saturated.p50_us as f64 / 1e3,
        base.saturated.p99_us as f64 / 1e3,
        ratio(tm.saturated.p50_us as f64, base.saturated.p50_us as f64),
        ratio(tm.saturated.p99_us as f64, base.saturated.p99_us as f64)
    );
    println!(
        "| p50 / p99 latency in->out paced at {:.0} stanzas/s, ms | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} |",
        tm.paced_rate,
        tm.paced.p50_us as f64 / 1e3,
        tm.paced.p99_us as f64 / 1e3,
        base.paced.p50_us as f64 / 1e3,
        base.paced.p99_us as f64 / 1e3,
        ratio(tm.paced.p50_us as f64, base.paced.p50_us as f64),
        ratio(tm.paced.p99_us as f64, base.paced.p99_us as f64)
    );
    println!(
        "| CPU seconds per 100k stanzas (saturated) | {:.2} | {:.2} | {} |",
        per100k(&tm.saturated),
        per100k(&base.saturated),
        ratio(per100k(&tm.saturated), per100k(&base.saturated))
    );
    let main100k = |ph: &Phase| ph.main_cpu / ph.stanzas_out as f64 * 100_000.0;
    println!(
        "| of which the connection's thread (main) | {:.2} | {:.2} | {} |",
        main100k(&tm.saturated),
        main100k(&base.saturated),
        ratio(main100k(&tm.saturated), main100k(&base.saturated))
    );
    println!(
        "| peak RSS, MiB | {:.1} | {:.1} | {} |",
        tm.peak_rss_mib,
        base.peak_rss_mib,
        ratio(tm.peak_rss_mib, base.peak_rss_mib)
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Each figure's median over the rounds (one round: that round).
fn median_outcome(runs: Vec<&Outcome>) -> Outcome {
    fn phase(ps: Vec<&Phase>) -> Phase {
        let f = |get: fn(&Phase) -> f64| median(ps.iter().map(|p| get(p)).collect());
        let u = |get: fn(&Phase) -> u64| median(ps.iter().map(|p| get(p) as f64).collect()) as u64;
        Phase {
            stanzas_in: u(|p| p.stanzas_in),
            stanzas_out: u(|p| p.stanzas_out),
            errors: u(|p| p.errors),
            wall: f(|p| p.wall),
            rate: f(|p| p.rate),
            p50_us: u(|p| p.p50_us),
            p99_us: u(|p| p.p99_us),
            max_us: u(|p| p.max_us),
            cpu: f(|p| p.cpu),
            main_cpu: f(|p| p.main_cpu),
            gen_cpu: f(|p| p.gen_cpu),
        }
    }
    let m = |get: fn(&Outcome) -> f64| median(runs.iter().map(|o| get(o)).collect());
    Outcome {
        kind: runs[0].kind,
        saturated: phase(runs.iter().map(|o| &o.saturated).collect()),
        paced: phase(runs.iter().map(|o| &o.paced).collect()),
        paced_rate: runs[0].paced_rate,
        peak_rss_mib: m(|o| o.peak_rss_mib),
        setup_secs: m(|o| o.setup_secs),
    }
}

/// This build against `--previous`, alternating so that a busy moment of
/// the machine hits both: medians over the rounds, and their ratio.
fn compare_with_previous(p: &Params) -> Result<(), String> {
    let previous = p.previous.as_ref().map(|b| b.display().to_string());
    println!(
        "scenario 1, this build against {}: {} rounds alternating, {} users, {} messages x 3 stanzas saturated, then {} paced at a fixed rate",
        previous.unwrap_or_default(),
        p.rounds,
        p.pairs * 2,
        p.units,
        p.paced_units
    );
    let (mut new, mut old) = (Vec::new(), Vec::new());
    let mut paced_rate = p.paced_rate;
    for _ in 0..p.rounds {
        let n = run_one(Kind::Tidemark, p, paced_rate)?;
        report(&n);
        // Both are paced at the rate of the first run, so their latencies
        // are read at the same load.
        paced_rate.get_or_insert(n.paced_rate);
        let o = run_one(Kind::Previous, p, paced_rate)?;
        report(&o);
        new.push(n);
        old.push(o);
    }
    type Figure = (&'static str, fn(&Outcome) -> f64);
    let figures: [Figure; 5] = [
        ("throughput, stanzas in/s (saturated)", |o| o.saturated.rate),
        ("p99 latency in->out, paced, ms", |o| {
            o.paced.p99_us as f64 / 1e3
        }),
        ("CPU seconds per 100k stanzas (saturated)", |o| {
            o.saturated.cpu / o.saturated.stanzas_out as f64 * 100_000.0
        }),
        ("of which the connection's thread (main)", |o| {
            o.saturated.main_cpu / o.saturated.stanzas_out as f64 * 100_000.0
        }),
        ("peak RSS, MiB", |o| o.peak_rss_mib),
    ];
    println!();
    println!(
        "| figure (median of {} rounds) | this build | previous | this / previous |",
        p.rounds
    );
    println!("|---|---|---|---|");
    for (name, get) in figures {
        let n = median(new.iter().map(get).collect());
        let o = median(old.iter().map(get).collect());
        println!("| {name} | {n:.2} | {o:.2} | {} |", ratio(n, o));
    }
    Ok(())
}

fn report(o: &Outcome) {
    let s = &o.saturated;
    let q = &o.paced;
    println!(
        "{}: setup {:.1}s; saturated: {} in, {} out ({} errors) in {:.2}s = {:.0} stanzas/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, cpu {:.2}s (main thread {:.2}s, generator {:.2}s); paced at {:.0}/s: {} in, {} out, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, cpu {:.2}s; peak RSS {:.1} MiB",
        o.kind.name(),
        o.setup_secs,
        s.stanzas_in,
        s.stanzas_out,
        s.errors,
        s.wall,
        s.rate,
        s.p50_us as f64 / 1e3,
        s.p99_us as f64 / 1e3,
        s.max_us as f64 / 1e3,
        s.cpu,
        s.main_cpu,
        s.gen_cpu,
        o.paced_rate,
        q.stanzas_in,
        q.stanzas_out,
        q.p50_us as f64 / 1e3,
        q.p99_us as f64 / 1e3,
        q.max_us as f64 / 1e3,
        q.cpu,
        o.peak_rss_mib
    );
}
