//! `tidemark-fuzz`: mutated stanzas through the XML reader and the service,
//! on stable Rust (no cargo-fuzz, no nightly).
//!
//! ```text
//! tidemark-fuzz [--stanzas N] [--seed S] [--corpus DIR] [--out DIR] [--keep-going]
//! tidemark-fuzz --replay FILE
//! ```
//!
//! Inputs are corpus stanzas (tests/fuzz/corpus/) mutated by a seeded PRNG;
//! input `n` depends only on the seed and `n`, so any finding replays. Each
//! goes through the reader and, if it makes a stanza, through
//! `Tidemark::handle` over a real sled store. Findings: a panic (even one the
//! service would catch), an abort (say, a stack overflow), a stanza that
//! takes over 2 s, and a refusal that changed the store. The work runs in a
//! child process so that an abort is reported with the input that caused it.

mod mutate;
mod reader;
mod world;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: tidemark-fuzz [--stanzas N] [--seed S] [--corpus DIR] [--out DIR] [--keep-going]
       tidemark-fuzz --replay FILE";
const CHILD_ENV: &str = "TIDEMARK_FUZZ_CHILD";
/// A stanza that takes longer than this is a hang.
const HANG: Duration = Duration::from_secs(2);
const EXIT_HANG: i32 = 70;
const EXIT_STATE: i32 = 71;
const EXIT_PANIC: i32 = 72;

struct Args {
    stanzas: u64,
    seed: u64,
    start: u64,
    corpus: PathBuf,
    out: PathBuf,
    keep_going: bool,
    replay: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        stanzas: 100_000,
        seed: 1,
        start: 0,
        corpus: root.join("tests/fuzz/corpus"),
        out: root.join("target/fuzz"),
        keep_going: false,
        replay: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--stanzas" => {
                a.stanzas = value()?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--stanzas: {e}"))?
            }
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--start" => a.start = value()?.parse().map_err(|e| format!("--start: {e}"))?,
            "--corpus" => a.corpus = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--replay" => a.replay = Some(value()?.into()),
            "--keep-going" => a.keep_going = true,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(file) = &args.replay {
        return replay(file, &args);
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        return worker(&args);
    }
    supervise(&args)
}

fn current_file(out: &Path) -> PathBuf {
    out.join("current.bin")
}

/// Runs the worker, and on a finding prints the input that caused it.
fn supervise(args: &Args) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("tidemark-fuzz: cannot create {}: {e}", args.out.display());
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tidemark-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let mut start = args.start;
    let mut findings = 0u64;
    // signature -> (count, first input's file)
    let mut distinct: std::collections::BTreeMap<String, (u64, PathBuf)> = Default::default();
    let t0 = Instant::now();
    let summary = |distinct: &std::collections::BTreeMap<String, (u64, PathBuf)>, findings: u64| {
        if findings > 0 {
            eprintln!(
                "\ntidemark-fuzz: {findings} findings in {:.0} s, {} distinct:",
                t0.elapsed().as_secs_f64(),
                distinct.len()
            );
            for (sig, (count, file)) in distinct {
                eprintln!("  {count:>6} x {sig}  (first: {})", file.display());
            }
        }
    };
    loop {
        let _ = std::fs::remove_file(args.out.join("panic.txt"));
        let status = Command::new(&exe)
            .args(std::env::args().skip(1).filter(|a| a != "--keep-going"))
            .args(["--start", &start.to_string()])
            .env(CHILD_ENV, "1")
            .status();
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tidemark-fuzz: cannot run the worker: {e}");
                return ExitCode::from(2);
            }
        };
        if status.success() {
            summary(&distinct, findings);
            return if findings == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        findings += 1;
        let what = match status.code() {
            Some(EXIT_HANG) => "a hang (one stanza over 2 s)".to_owned(),
            Some(EXIT_STATE) => "a refusal that changed the store".to_owned(),
            Some(EXIT_PANIC) | Some(101) => "a panic".to_owned(),
            Some(c) => format!("exit status {c}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!(
                    "death by signal {} (an abort: stack overflow?)",
                    status.signal().unwrap_or(0)
                )
            }
        };
        let (n, input) = read_current(&args.out).unwrap_or((u64::MAX, vec![]));
        let saved = args.out.join(format!("finding-seed{}-n{n}.xml", args.seed));
        let site = std::fs::read_to_string(args.out.join("panic.txt")).unwrap_or_default();
        let sig = if site.is_empty() {
            what.clone()
        } else {
            format!("{what} at {site}")
        };
        let first = !distinct.contains_key(&sig);
        distinct.entry(sig).or_insert((0, saved.clone())).0 += 1;
        if first {
            let _ = std::fs::write(&saved, &input);
        }
        if !first {
            eprintln!("tidemark-fuzz: finding at input {n}: {what} again");
        } else {
            eprintln!(
                "\ntidemark-fuzz: FINDING: {what} at input {n} (seed {}), {} bytes, saved as {}\n  replay: tidemark-fuzz --replay {}\n  input: {}",
                args.seed,
                input.len(),
                saved.display(),
                saved.display(),
                shown(&input)
            );
        }
        if !args.keep_going || n == u64::MAX || n + 1 >= args.stanzas {
            summary(&distinct, findings);
            return ExitCode::FAILURE;
        }
        start = n + 1;
    }
}

/// An input as printable text, shortened in the middle when long.
fn shown(input: &[u8]) -> String {
    let s = String::from_utf8_lossy(input);
    if s.len() <= 1200 {
        return s.into_owned();
    }
    let head: String = s.chars().take(600).collect();
    let tail: String = s
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head} [... {} bytes ...] {tail}", input.len())
}

fn read_current(out: &Path) -> Option<(u64, Vec<u8>)> {
    let bytes = std::fs::read(current_file(out)).ok()?;
    let n = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let len = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?) as usize;
    Some((n, bytes.get(16..16 + len)?.to_vec()))
}

/// Where the worker notes the input it is on, so that the supervisor can
/// report it whatever kills the worker.
struct Current {
    file: std::fs::File,
}

impl Current {
    fn note(&self, n: u64, input: &[u8]) {
        let mut buf = Vec::with_capacity(16 + input.len());
        buf.extend(n.to_le_bytes());
        buf.extend((input.len() as u64).to_le_bytes());
        buf.extend(input);
        if let Err(e) = self.file.write_all_at(&buf, 0) {
            eprintln!("tidemark-fuzz: cannot note the current input: {e}");
        }
    }
}

fn load_corpus(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort(); // the same inputs for the same seed, whatever the directory order
    let corpus: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    if corpus.is_empty() {
        return Err(format!("{}: no *.xml stanzas", dir.display()));
    }
    Ok(corpus)
}

/// A panic is a finding even where the service would catch it: the hook
/// runs first and ends the worker.
fn panics_are_findings(out: &Path) {
    let default = std::panic::take_hook();
    let site = out.join("panic.txt");
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        if let Some(loc) = info.location() {
            let _ = std::fs::write(&site, format!("{}:{}", loc.file(), loc.line()));
        }
        std::process::exit(EXIT_PANIC);
    }));
}

/// Ends the worker when one stanza runs over [`HANG`].
fn watchdog(started_ms: Arc<AtomicU64>, epoch: Instant) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let s = started_ms.load(Ordering::Relaxed);
            let now = epoch.elapsed().as_millis() as u64;
            if s != 0 && now.saturating_sub(s) > HANG.as_millis() as u64 {
                eprintln!("tidemark-fuzz: one stanza has run for over {HANG:?}");
                std::process::exit(EXIT_HANG);
            }
        }
    });
}

fn worker(args: &Args) -> ExitCode {
    let corpus = match load_corpus(&args.corpus) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tidemark-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let current = match std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(current_file(&args.out))
    {
        Ok(file) => Current { file },
        Err(e) => {
            eprintln!("tidemark-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    panics_are_findings(&args.out);
    let epoch = Instant::now();
    let started_ms = Arc::new(AtomicU64::new(0));
    watchdog(started_ms.clone(), epoch);

    let mut stats = world::Stats::default();
    let mut w: Option<world::World> = None;
    let t0 = Instant::now();
    let mut last_report = Instant::now();
    for n in args.start..args.stanzas {
        if n.is_multiple_of(world::RESET_EVERY) || w.is_none() {
            w = Some(world::World::new(&corpus, n));
        }
        let world = w.as_mut().expect("made above");
        let mut rng = mutate::Rng::for_input(args.seed, n);
        let input = mutate::input(&corpus, &mut rng);
        current.note(n, &input);
        started_ms.store(epoch.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
        if let Err(finding) = world.run(&input, n, &mut stats) {
            eprintln!("tidemark-fuzz: {finding}");
            return ExitCode::from(EXIT_STATE as u8);
        }
        started_ms.store(0, Ordering::Relaxed);
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "tidemark-fuzz: {} stanzas so far, {:.0}/s",
                n + 1 - args.start,
                (n + 1 - args.start) as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let ran = args.stanzas.saturating_sub(args.start);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "tidemark-fuzz: {ran} stanzas (seed {}, inputs {}..{}) in {secs:.1} s, {:.0} stanzas/s: \
         {} refused by the reader, {} refused by the service ({} with the store compared before and after: unchanged), \
         {} distinct outcomes; no panic, abort, hang or state change",
        args.seed,
        args.start,
        args.stanzas,
        ran as f64 / secs.max(1e-9),
        stats.reader_refused,
        stats.service_refused,
        stats.digests_checked,
        stats.outcomes.len(),
    );
    ExitCode::SUCCESS
}

/// Feeds one saved input through a fresh world, without a child process.
fn replay(file: &Path, args: &Args) -> ExitCode {
    let input = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tidemark-fuzz: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let corpus = load_corpus(&args.corpus).unwrap_or_default();
    let mut stats = world::Stats::default();
    let mut w = world::World::new(&corpus, 0);
    match w.run_checked(&input, &mut stats) {
        Ok(outcomes) => {
            for o in outcomes {
                println!("{o}");
            }
            ExitCode::SUCCESS
        }
        Err(finding) => {
            eprintln!("tidemark-fuzz: {finding}");
            ExitCode::FAILURE
        }
    }
}
