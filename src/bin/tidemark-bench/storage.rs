//! Scenario 3: storage. A child process writes N statuses (each a 1:1
//! message taken through sent, delivered and read, with tidemark's Store and
//! the group-commit flush), is killed with SIGKILL, and a second child times
//! the reopen and the status queries. The baseline does the same with the
//! least a status can cost in sled: one insert of the final record under an
//! 8-byte key, flushed on the same schedule.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{ConversationKey, MessageRecord, SledStore, Store};

use crate::util::{self, Args, TempDir, percentile};

const USERS_PER_SIDE: u64 = 5_000;

fn user(n: u64) -> String {
    format!("u{n}@localhost")
}

/// The conversation and direction of status i.
fn parties(i: u64) -> (String, String) {
    let p = i % USERS_PER_SIDE;
    let (a, b) = (user(2 * p), user(2 * p + 1));
    if (i / USERS_PER_SIDE).is_multiple_of(2) {
        (a, b)
    } else {
        (b, a)
    }
}

fn record(i: u64, sender: &str, recipient: &str, now: u64) -> MessageRecord {
    MessageRecord::sent(sender, recipient, &format!("m{i}"), now)
}

fn kv(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Child: `storage-child --mode write|reopen --schema tidemark|raw --path P
/// --statuses N --cache-mb C --flush-batch B --queries Q`.
pub fn child(args: &Args) -> Result<(), String> {
    let mode: String = args.get("mode", "write".to_string());
    let schema: String = args.get("schema", "tidemark".to_string());
    let path: PathBuf = args.get("path", PathBuf::from("store"));
    let n: u64 = args.get("statuses", 1_000_000);
    let cache = args.get("cache-mb", 64u64) * 1024 * 1024;
    let batch: u64 = args.get("flush-batch", 512);
    let queries: u64 = args.get("queries", 100_000);
    let me = std::process::id();
    let now = tidemark::stanza::now_millis();
    let e = |e: tidemark::store::StoreError| e.to_string();

    if mode == "write" {
        let store = SledStore::open(&path, cache).map_err(e)?;
        let raw = sled::Config::new()
            .path(path.join("raw"))
            .cache_capacity(cache)
            .flush_every_ms(None);
        let raw = if schema == "raw" {
            Some(raw.open().map_err(|e| e.to_string())?)
        } else {
            None
        };
        let t = Instant::now();
        let mut ops = 0u64;
        for i in 0..n {
            let (s, r) = parties(i);
            if let Some(db) = &raw {
                // The least a status can cost: one record, final state.
                let mut rec = record(i, &s, &r, now);
                rec.delivered_at = Some(now + 1);
                let mut v = postcard::to_allocvec(&rec).unwrap();
                v.extend_from_slice(&(now + 2).to_be_bytes()); // read at
                db.insert((i + 1).to_be_bytes(), v)
                    .map_err(|e| e.to_string())?;
                ops += 3;
                if ops % batch < 3 {
                    db.flush().map_err(|e| e.to_string())?;
                }
                continue;
            }
            let conv = ConversationKey::direct(&s, &r);
            let seq = store.next_seq().map_err(e)?;
            let mut rec = record(i, &s, &r, now);
            store.put_message(&conv, seq, &rec).map_err(e)?;
            rec.delivered_at = Some(now + 1);
            store.put_message(&conv, seq, &rec).map_err(e)?;
            store.advance_mark(&conv, &r, seq, now + 2).map_err(e)?;
            // Three stanzas (message, receipt, displayed) per status; one
            // flush per flush_batch stanzas, as the component does.
            ops += 3;
            if ops % batch < 3 {
                store.flush().map_err(e)?;
            }
        }
        store.flush().map_err(e)?;
        if let Some(db) = &raw {
            db.flush().map_err(|e| e.to_string())?;
        }
        let secs = t.elapsed().as_secs_f64();
        let disk = match &raw {
            Some(db) => db.size_on_disk().map_err(|e| e.to_string())?,
            None => store.size_on_disk().map_err(e)?,
        };
        println!(
            "written secs={secs:.3} rss={:.1} peak={:.1} sled_size={disk}",
            util::rss_mib(me),
            util::peak_rss_mib(me)
        );
        // Wait to be killed (bounded: a minute).
        std::thread::sleep(Duration::from_secs(60));
        return Err("was not killed".into());
    }

    // Reopen after SIGKILL, then query.
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
    let (open_secs, first_secs, qsecs);
    if schema == "raw" {
        let db = sled::Config::new()
            .path(path.join("raw"))
            .cache_capacity(cache)
            .flush_every_ms(None)
            .open()
            .map_err(|e| e.to_string())?;
        open_secs = t.elapsed().as_secs_f64();
        let _ = db.get(1u64.to_be_bytes());
        first_secs = t.elapsed().as_secs_f64();
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
        let store = Arc::new(SledStore::open(&path, cache).map_err(e)?);
        open_secs = t.elapsed().as_secs_f64();
        let cfg = Config::parse(
            "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:1\"\nsecret = \"x\"\n[storage]\npath = \"unused\"\n",
            std::path::Path::new("bench.toml"),
        )
        .map_err(|e| e.to_string())?;
        let mut tm = Tidemark::new(cfg, store.clone()).expect("service over the reopened store");
        let ask = |tm: &mut Tidemark, i: u64| -> bool {
            let (s, r) = parties(i);
            let conv = r.replace('@', "\\40") + "@chat.localhost";
            let iq: minidom::Element = format!(
                "<iq xmlns='jabber:component:accept' type='get' from='{s}/r' to='chat.localhost' id='q{i}'><status xmlns='urn:tidemark:status:0' conversation='{conv}' id='m{i}'/></iq>"
            )
            .parse()
            .unwrap();
            let out = tm.handle(&iq, now);
            out.first().is_some_and(|el| {
                el.attr("type") == Some("result") && String::from(el).contains("read")
            })
        };
        ask(&mut tm, 0);
        first_secs = t.elapsed().as_secs_f64();
        let q = Instant::now();
        for _ in 0..queries {
            let i = rand() % n;
            let s = Instant::now();
            if ask(&mut tm, i) {
                found += 1;
            }
            lat.push(s.elapsed().as_nanos() as u64);
        }
        qsecs = q.elapsed().as_secs_f64();
    }
    lat.sort_unstable();
    println!(
        "reopened open_secs={open_secs:.3} first_query_secs={first_secs:.3} queries={queries} found={found} qps={:.0} p50_us={:.1} p99_us={:.1} rss={:.1} peak={:.1}",
        queries as f64 / qsecs,
        percentile(&lat, 50.0) as f64 / 1e3,
        percentile(&lat, 99.0) as f64 / 1e3,
        util::rss_mib(me),
        util::peak_rss_mib(me)
    );
    Ok(())
}

struct Run {
    write_secs: f64,
    write_peak: f64,
    sled_size: f64,
    allocated: f64,
    open_secs: f64,
    first_secs: f64,
    qps: f64,
    p50_us: f64,
    p99_us: f64,
    found: f64,
    query_rss: f64,
    query_peak: f64,
}

fn run(schema: &str, n: u64, cache_mb: u64, batch: u64, queries: u64) -> Result<Run, String> {
    let dir = TempDir::new(&format!("storage-{schema}"));
    let store = dir.path().join("store");
    let common = |mode: &str| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.arg("storage-child")
            .args(["--mode", mode, "--schema", schema])
            .args(["--path", &store.display().to_string()])
            .args(["--statuses", &n.to_string()])
            .args(["--cache-mb", &cache_mb.to_string()])
            .args(["--flush-batch", &batch.to_string()])
            .args(["--queries", &queries.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        c
    };
    let mut w = common("write").spawn().map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(w.stdout.take().unwrap())
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    // SIGKILL: no destructor, no final flush.
    let _ = w.kill();
    let _ = w.wait();
    if !line.starts_with("written") {
        return Err(format!("writer failed: {line:?}"));
    }
    let allocated = util::dir_allocated(dir.path()) as f64;
    let r = common("reopen").output().map_err(|e| e.to_string())?;
    let rl = String::from_utf8_lossy(&r.stdout).to_string();
    if !rl.starts_with("reopened") {
        return Err(format!("reopen failed: {rl:?}"));
    }
    Ok(Run {
        write_secs: kv(&line, "secs"),
        write_peak: kv(&line, "peak"),
        sled_size: kv(&line, "sled_size"),
        allocated,
        open_secs: kv(&rl, "open_secs"),
        first_secs: kv(&rl, "first_query_secs"),
        qps: kv(&rl, "qps"),
        p50_us: kv(&rl, "p50_us"),
        p99_us: kv(&rl, "p99_us"),
        found: kv(&rl, "found"),
        query_rss: kv(&rl, "rss"),
        query_peak: kv(&rl, "peak"),
    })
}

pub fn main(args: &Args) -> Result<(), String> {
    let n: u64 = args.get("statuses", 1_000_000);
    let batch: u64 = args.get("flush-batch", 512);
    let queries: u64 = args.get("queries", 100_000);
    let caches: Vec<u64> = args.list("cache-mb", &[64]);
    println!(
        "scenario 3: storage; {n} statuses (1:1 messages taken through sent, delivered, read) written with a flush every {batch} stanzas, SIGKILL, reopen, {queries} random status queries; cache_mb {caches:?}"
    );
    for cache in caches {
        let t = run("tidemark", n, cache, batch, queries)?;
        let b = run("raw", n, cache, batch, queries)?;
        let r = |a: f64, b: f64| format!("{:.2}x", a / b);
        println!();
        println!("cache_mb = {cache}");
        println!(
            "| figure | tidemark store | baseline (one sled insert per status) | tidemark / baseline |"
        );
        println!("|---|---|---|---|");
        println!(
            "| write {n} statuses, s (statuses/s) | {:.1} ({:.0}/s) | {:.1} ({:.0}/s) | {} |",
            t.write_secs,
            n as f64 / t.write_secs,
            b.write_secs,
            n as f64 / b.write_secs,
            r(t.write_secs, b.write_secs)
        );
        println!(
            "| bytes on disk per status (sled size_on_disk / allocated blocks) | {:.0} / {:.0} | {:.0} / {:.0} | {} |",
            t.sled_size / n as f64,
            t.allocated / n as f64,
            b.sled_size / n as f64,
            b.allocated / n as f64,
            r(t.allocated, b.allocated)
        );
        println!(
            "| reopen after kill -9, s (to first answered query) | {:.2} ({:.2}) | {:.2} ({:.2}) | {} |",
            t.open_secs,
            t.first_secs,
            b.open_secs,
            b.first_secs,
            r(t.first_secs, b.first_secs)
        );
        println!(
            "| status queries/s, p50 / p99 us ({} of {queries} found read) | {:.0}, {:.1} / {:.1} | {:.0}, {:.1} / {:.1} | {} |",
            t.found,
            t.qps,
            t.p50_us,
            t.p99_us,
            b.qps,
            b.p50_us,
            b.p99_us,
            r(t.qps, b.qps)
        );
        println!(
            "| peak RSS while writing, MiB | {:.1} | {:.1} | {} |",
            t.write_peak,
            b.write_peak,
            r(t.write_peak, b.write_peak)
        );
        println!(
            "| RSS after reopen + queries (peak), MiB | {:.1} ({:.1}) | {:.1} ({:.1}) | {} |",
            t.query_rss,
            t.query_peak,
            b.query_rss,
            b.query_peak,
            r(t.query_rss, b.query_rss)
        );
    }
    Ok(())
}
