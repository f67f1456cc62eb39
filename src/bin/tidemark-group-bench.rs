//! Group read-marker cost: a room of N members with M messages, then markers
//! from every member, driven through the router with a real sled store on
//! disk (flushed every 512 stanzas, as the connection loop does).
//!
//! Prints, side by side, the same load on a 10-member room (the baseline) and
//! on the large room, so the ratio shows how marker cost grows with members.
//!
//!   cargo run --release --bin tidemark-group-bench -- [--members 1000] [--messages 10000]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{SledStore, Store};

const NS: &str = "jabber:component:accept";
const ROOM: &str = "bench@chat.localhost";
const FLUSH_EVERY: usize = 512;
const TOTAL_MARKERS: usize = 10_000;

struct Figures {
    members: usize,
    messages: usize,
    markers: usize,
    setup_secs: f64,
    marker_us_mean: f64,
    marker_us_p99: f64,
    stanzas_out_per_marker: f64,
    rss_mib: f64,
    disk_mib: f64,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn parse(xml: String) -> Element {
    xml.parse().expect("bench stanza parses")
}

fn run(members: usize, messages: usize) -> Figures {
    let dir = tempfile_dir();
    let member_list: Vec<String> = (0..members)
        .map(|i| format!("\"u{i}@localhost\""))
        .collect();
    // A handful of senders write every message within simulated
    // milliseconds: the per-sender rate limit is lifted, since what is
    // measured is the read frontier, not refusals.
    let text = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"s\"\n\
         [storage]\npath = \"{}\"\n[limits]\nrate_per_second = 1e9\nrate_burst = 4000000000\n[groups]\nhistory = 0\n\
         [[rooms]]\nname = \"bench\"\nmembers = [{}]\n",
        dir.display(),
        member_list.join(", ")
    );
    let config = Config::parse(&text, Path::new("bench.toml")).expect("bench config");
    let sled = Arc::new(SledStore::open(&dir, config.storage.cache_bytes).expect("store"));
    let store: Arc<dyn Store> = sled.clone();
    let mut now = 1_795_000_000_000u64;
    let mut tm = Tidemark::new(config, store.clone(), now).expect("service");

    // Setup: every member joins; a handful of them write every message, so the
    // reflections (O(members) per message, by design) are not what is timed.
    let setup = Instant::now();
    for i in 0..members {
        now += 1;
        let joined = tm.handle(
            &parse(format!(
                "<presence xmlns='{NS}' from='u{i}@localhost/r' to='{ROOM}/u{i}'/>"
            )),
            now,
        );
        joined.apply(&*store).expect("join written");
    }
    let mut stanza_ids = Vec::with_capacity(messages);
    for m in 0..messages {
        now += 1;
        let sender = m % 5;
        let out = tm.handle(
            &parse(format!(
                "<message xmlns='{NS}' type='groupchat' id='m{m}' from='u{sender}@localhost/r' to='{ROOM}'><body>message {m}</body></message>"
            )),
            now,
        )
        .apply(&*store)
        .expect("message written");
        let sid = out
            .first()
            .and_then(|e| e.get_child("stanza-id", "urn:xmpp:sid:0"))
            .and_then(|e| e.attr("id"))
            .expect("reflected with a stanza-id")
            .to_owned();
        stanza_ids.push(sid);
        if m % FLUSH_EVERY == 0 {
            store.flush().expect("flush");
        }
    }
    store.flush().expect("flush");
    let setup_secs = setup.elapsed().as_secs_f64();

    // Markers: the same total for every room size. Every member reads, round
    // after round, a message further on each time; the last round reads the
    // newest message, so every message becomes all-read along the way.
    let rounds = (TOTAL_MARKERS / members).max(1);
    let mut latencies = Vec::with_capacity(members * rounds);
    let mut out_count = 0usize;
    for round in 1..=rounds {
        let upto = messages * round / rounds - 1;
        for i in 0..members {
            now += 1;
            let marker = parse(format!(
                "<message xmlns='{NS}' type='groupchat' from='u{i}@localhost/r' to='{ROOM}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{}'/></message>",
                stanza_ids[upto]
            ));
            let t = Instant::now();
            out_count += tm
                .handle(&marker, now)
                .apply(&*store)
                .expect("marker written")
                .len();
            latencies.push(t.elapsed().as_secs_f64() * 1e6);
            if latencies.len() % FLUSH_EVERY == 0 {
                let t = Instant::now();
                store.flush().expect("flush");
                // The flush is shared by the batch; charge each its part.
                let share = t.elapsed().as_secs_f64() * 1e6 / FLUSH_EVERY as f64;
                let n = latencies.len();
                for l in &mut latencies[n - FLUSH_EVERY..] {
                    *l += share;
                }
            }
        }
    }
    store.flush().expect("flush");
    let markers = latencies.len();
    let mean = latencies.iter().sum::<f64>() / markers as f64;
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[(markers * 99 / 100).min(markers - 1)];
    let figures = Figures {
        members,
        messages,
        markers,
        setup_secs,
        marker_us_mean: mean,
        marker_us_p99: p99,
        stanzas_out_per_marker: out_count as f64 / markers as f64,
        rss_mib: rss_mib(),
        disk_mib: sled.size_on_disk().unwrap_or(0) as f64 / (1024.0 * 1024.0),
    };
    drop(tm);
    drop(store);
    drop(sled);
    let _ = std::fs::remove_dir_all(&dir);
    figures
}

fn tempfile_dir() -> std::path::PathBuf {
    let base = std::env::temp_dir().join(format!(
        "tidemark-group-bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let mut dir = base.clone();
    let mut n = 0;
    while dir.exists() {
        n += 1;
        dir = base.with_extension(n.to_string());
    }
    dir
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: tidemark-group-bench [--members N] [--messages M]");
        std::process::exit(0);
    }
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let members = arg("--members", 1000);
    let messages = arg("--messages", 10_000);
    let baseline = run(10, messages);
    let large = run(members, messages);
    println!(
        "group read markers: room of N members, {messages} messages, {TOTAL_MARKERS} displayed markers spread over the members"
    );
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "",
        "baseline N=10",
        format!("N={members}"),
        "ratio"
    );
    let row = |name: &str, b: f64, l: f64| {
        println!("{name:<28} {b:>14.2} {l:>14.2} {:>8.2}", l / b);
    };
    row("markers", baseline.markers as f64, large.markers as f64);
    row(
        "time per marker, mean (us)",
        baseline.marker_us_mean,
        large.marker_us_mean,
    );
    row(
        "time per marker, p99 (us)",
        baseline.marker_us_p99,
        large.marker_us_p99,
    );
    row(
        "stanzas out per marker",
        baseline.stanzas_out_per_marker,
        large.stanzas_out_per_marker,
    );
    row(
        "setup: joins + messages (s)",
        baseline.setup_secs,
        large.setup_secs,
    );
    row("RSS after run (MiB)", baseline.rss_mib, large.rss_mib);
    row("store on disk (MiB)", baseline.disk_mib, large.disk_mib);
    let _ = (
        baseline.members,
        baseline.messages,
        large.members,
        large.messages,
    );
}
