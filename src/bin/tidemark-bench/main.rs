//! `tidemark-bench SCENARIO [--option value ...]`: benchmarks that print
//! figures, each next to a baseline measured in the same run. See
//! BENCHMARKS.md for what each scenario does and the figures measured.

mod component;
mod desk;
mod echo;
mod inbox;
mod pgstore;
mod storage;
mod util;
mod wire;

use util::Args;

tidemark::global_allocator!();

const USAGE: &str = "usage: tidemark-bench SCENARIO [--option value ...]

scenarios:
  component        1. tidemark alone, driven over XEP-0114 by a load generator
                      that plays the server; baseline: echo-component;
                      --previous BIN [--rounds N]: this build against another
                      tidemark binary instead, alternating, medians
  storage          3. 1,000,000 statuses written through Tidemark::handle
                      (--path real, the default; store: Store calls only,
                      as before issue 8; all: both), queried, reopened
                      after kill -9; baseline: one sled insert per status;
                      --preview-chars N keeps status command previews
  echo-component   (internal) the baseline component of scenario 1
  sent-pages       issue 9: pages of the status command for one user with
                      many conversations (--conversations, --per, --rounds)
  inbox            issue 10: the conversation list's cost per message (on
                      against off, alternating), list/search times, bytes
                      per entry (--users, --conversations, --members,
                      --messages, --room-messages, --rounds)
  desk             issue 11: a team desk of 50 agents at 1,000 and 10,000
                      conversations: a customer message's cost against the
                      same 1:1 message without the desk (interleaved), and
                      assign, views with counts, the desk command, p50/p99
                      (--agents, --holders, --small, --conversations,
                      --messages, --ops, --queries, --alone, --rounds)
  pgstore          issue 12: statuses through Tidemark::handle into sled
                      (baseline) and PostgreSQL in the same run: per-flush
                      and per-batch latency p50/p99, statuses/s, bytes per
                      status, reopen to the first answered query
                      (--statuses 20000,100000, --users, --flush-batch,
                      --queries; --url / TIDEMARK_PG_URL and
                      --password-file / TIDEMARK_PG_PASSWORD_FILE)
  storage-child    (internal) the child process of scenario 3

Build first: cargo build --release --bins";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = argv.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tidemark-bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = match scenario.as_str() {
        "component" => component::main(&args),
        "storage" => storage::main(&args),
        "echo-component" => echo::main(&args),
        "storage-child" => storage::child(&args),
        "sent-pages" => storage::sent_pages(&args),
        "inbox" => inbox::main(&args),
        "desk" => desk::main(&args),
        "pgstore" => pgstore::main(&args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown scenario {other:?}\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("tidemark-bench {scenario}: {e}");
        std::process::exit(1);
    }
}
