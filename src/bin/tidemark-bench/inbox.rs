//! Issue 10: what the conversation list costs. Two stores with the same
//! population (`--users` users with `--conversations` 1:1 conversations
//! each, one message per conversation, and a room of `--members` members),
//! one with `inbox.enabled = true` and one with it false (the baseline).
//! Then, alternating between the two in the same run, `--messages` 1:1
//! messages and `--room-messages` room messages through `Tidemark::handle`,
//! flushed every 512 stanzas as the shell does; then, on the list's store,
//! the time to list a page of 50, to search and to list unread only, and
//! the bytes on disk per entry.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{ConversationKey, MessageRecord, SledStore, Store, Write};

use crate::util::{Args, TempDir, dir_allocated, percentile};
use crate::wire::DOMAIN;

const NS: &str = "jabber:component:accept";
const ROOM: &str = "hall";
const BATCH: usize = 512;

fn config(dir: &Path, enabled: bool, members: u64) -> Result<Config, String> {
    let list: Vec<String> = (0..members)
        .map(|m| format!("\"u{m}@localhost\""))
        .collect();
    let text = format!(
        "[component]\njid = \"{DOMAIN}\"\nserver = \"127.0.0.1:1\"\nsecret = \"x\"\n\
         [storage]\npath = {:?}\ncache_mb = 64\n\
         [limits]\nrate_per_second = 1e9\nrate_burst = 4000000000\n\
         [groups]\nmarker_reflection_limit = 1\nmax_occupants_per_room = 100000\nmax_joins_per_user = 100000\n\
         [inbox]\nenabled = {enabled}\n\
         [[rooms]]\nname = \"{ROOM}\"\nmembers = [{}]\n",
        dir.display().to_string(),
        list.join(", ")
    );
    Config::parse(&text, Path::new("bench.toml")).map_err(|e| e.to_string())
}

fn parse(xml: &str) -> Element {
    xml.parse().expect("bench stanza parses")
}

/// The `k`-th contact of user `u`: conversations are the pairs (u, u+1+k).
fn partner(u: u64, k: u64, users: u64) -> u64 {
    (u + 1 + k) % users
}

/// Writes the population straight into the store (the writes the router
/// would make for one message per conversation), and flushes.
fn populate(store: &SledStore, users: u64, convs: u64, enabled: bool) -> Result<u64, String> {
    let err = |e: tidemark::store::StoreError| e.to_string();
    let mut n = 0u64;
    let mut entries = 0u64;
    for u in 0..users {
        for k in 0..convs / 2 {
            let (a, b) = (
                format!("u{u}@localhost"),
                format!("u{}@localhost", partner(u, k, users)),
            );
            let conv = ConversationKey::direct(&a, &b);
            let seq = store.next_seq().map_err(err)?;
            let at = 1_790_000_000_000 + seq;
            let record = MessageRecord::sent(&a, &b, &format!("p{seq}"), at);
            store.put_message(&conv, seq, &record).map_err(err)?;
            if enabled {
                store
                    .apply(&[
                        Write::InboxMessage {
                            user: a.clone(),
                            contact: b.clone(),
                            seq,
                            at,
                            own: true,
                        },
                        Write::InboxMessage {
                            user: b,
                            contact: a,
                            seq,
                            at,
                            own: false,
                        },
                    ])
                    .map_err(err)?;
                entries += 2;
            }
            n += 1;
            if n.is_multiple_of(4096) {
                store.flush().map_err(err)?;
            }
        }
    }
    store.flush().map_err(err)?;
    Ok(entries)
}

struct Side {
    tm: Tidemark,
    store: Arc<SledStore>,
    now: u64,
    pending: usize,
}

impl Side {
    fn handle(&mut self, el: &Element) -> Result<Vec<Element>, String> {
        Ok(self.handle_timed(el)?.0)
    }

    /// Handles `el` and applies its writes; the time that took, without
    /// the group commit's flush that may follow.
    fn handle_timed(&mut self, el: &Element) -> Result<(Vec<Element>, u64), String> {
        self.now += 1;
        let t = Instant::now();
        let effects = self.tm.handle(el, self.now);
        let out = effects
            .apply(&**self.tm.store())
            .map_err(|e| e.to_string())?;
        let took = t.elapsed().as_nanos() as u64;
        self.pending += 1;
        if self.pending >= BATCH {
            self.store.flush().map_err(|e| e.to_string())?;
            self.pending = 0;
        }
        Ok((out, took))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.pending = 0;
        self.store.flush().map_err(|e| e.to_string())
    }
}

fn side(dir: &Path, enabled: bool, a: &Setup) -> Result<(Side, u64, f64), String> {
    let store = Arc::new(SledStore::open(dir, 64 * 1024 * 1024).map_err(|e| e.to_string())?);
    let t = Instant::now();
    let entries = populate(&store, a.users, a.convs, enabled)?;
    let populated = t.elapsed().as_secs_f64();
    let cfg = config(dir, enabled, a.members)?;
    let now = 1_795_000_000_000;
    let tm = Tidemark::new(cfg, store.clone() as Arc<dyn Store>, now).map_err(|e| e.to_string())?;
    let mut s = Side {
        tm,
        store,
        now,
        pending: 0,
    };
    // The measured pairs (u, u+1) let each other see their presence and
    // are online; the room's members are in it.
    for u in 0..a.pairs {
        let (x, y) = (2 * u, 2 * u + 1);
        for (contact, watcher) in [(x, y), (y, x)] {
            s.handle(&parse(&format!(
                "<presence xmlns='{NS}' type='subscribed' from='u{contact}@localhost' to='u{watcher}\\40localhost@{DOMAIN}'/>"
            )))?;
            s.handle(&parse(&format!(
                "<presence xmlns='{NS}' from='u{contact}@localhost/r' to='u{watcher}\\40localhost@{DOMAIN}'/>"
            )))?;
        }
    }
    for m in 0..a.members {
        s.handle(&parse(&format!(
            "<presence xmlns='{NS}' from='u{m}@localhost/r' to='{ROOM}@{DOMAIN}/u{m}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))?;
    }
    s.flush()?;
    Ok((s, entries, populated))
}

struct Setup {
    users: u64,
    convs: u64,
    members: u64,
    pairs: u64,
}

/// `n` 1:1 messages among the measured pairs; nanoseconds per message.
fn direct_round(s: &mut Side, n: u64, pairs: u64, round: u64) -> Result<f64, String> {
    let t = Instant::now();
    for i in 0..n {
        let u = i % pairs;
        let (from, to) = if i % 2 == 0 {
            (2 * u, 2 * u + 1)
        } else {
            (2 * u + 1, 2 * u)
        };
        s.handle(&parse(&format!(
            "<message xmlns='{NS}' type='chat' id='r{round}-{i}' from='u{from}@localhost/r' to='u{to}\\40localhost@{DOMAIN}'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        )))?;
    }
    s.flush()?;
    Ok(t.elapsed().as_nanos() as f64 / n as f64)
}

/// `n` room messages from the first members; nanoseconds per message.
fn room_round(s: &mut Side, n: u64, members: u64, round: u64) -> Result<f64, String> {
    let t = Instant::now();
    for i in 0..n {
        let m = i % members.min(16);
        s.handle(&parse(&format!(
            "<message xmlns='{NS}' type='groupchat' id='g{round}-{i}' from='u{m}@localhost/r' to='{ROOM}@{DOMAIN}'><body>hi</body></message>"
        )))?;
    }
    s.flush()?;
    Ok(t.elapsed().as_nanos() as f64 / n as f64)
}

/// Microseconds per answer (p50, p99) of `n` list queries, each by
/// another user with `payload(user)` in the iq; and the rows per answer.
fn time_queries(
    s: &mut Side,
    n: u64,
    users: u64,
    payload: impl Fn(u64) -> String,
) -> Result<(f64, f64, usize), String> {
    let mut times = Vec::with_capacity(n as usize);
    let mut rows = 0;
    for i in 0..n {
        let u = (i * 7919) % users;
        let iq = parse(&format!(
            "<iq xmlns='{NS}' type='get' id='l{i}' from='u{u}@localhost/r' to='{DOMAIN}'>{}</iq>",
            payload(u)
        ));
        let (out, took) = s.handle_timed(&iq)?;
        times.push(took);
        let answer = out.first().ok_or("no answer")?;
        if answer.attr("type") != Some("result") {
            return Err(format!("list failed: {}", String::from(answer)));
        }
        rows += String::from(answer).matches("<conversation ").count();
    }
    times.sort_unstable();
    Ok((
        percentile(&times, 50.0) as f64 / 1e3,
        percentile(&times, 99.0) as f64 / 1e3,
        rows / n as usize,
    ))
}

pub fn main(args: &Args) -> Result<(), String> {
    let setup = Setup {
        users: args.get("users", 10_000u64).max(4),
        convs: args.get("conversations", 100u64).max(2),
        members: args.get("members", 1_000u64).max(1),
        pairs: args.get("pairs", 500u64).max(1),
    };
    let messages: u64 = args.get("messages", 20_000u64).max(1);
    let room_messages: u64 = args.get("room-messages", 500u64).max(1);
    let rounds: u64 = args.get("rounds", 3u64).max(1);
    let tmp = TempDir::new("inbox-bench");
    println!(
        "inbox: {} users x {} conversations, a room of {} members; {} 1:1 and {} room messages per round, {} rounds alternating",
        setup.users, setup.convs, setup.members, messages, room_messages, rounds
    );
    let on_dir = tmp.path().join("on");
    let off_dir = tmp.path().join("off");
    let (mut on, entries, populated_on) = side(&on_dir, true, &setup)?;
    let (mut off, _, populated_off) = side(&off_dir, false, &setup)?;
    println!(
        "population written in {populated_on:.1} s (list on) and {populated_off:.1} s (off): {entries} entries"
    );
    let (mut d_on, mut d_off, mut r_on, mut r_off) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        d_on.push(direct_round(&mut on, messages, setup.pairs, round)?);
        d_off.push(direct_round(&mut off, messages, setup.pairs, round)?);
        r_off.push(room_round(&mut off, room_messages, setup.members, round)?);
        r_on.push(room_round(&mut on, room_messages, setup.members, round)?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d_on, d_off, r_on, r_off) = (
        median(&mut d_on),
        median(&mut d_off),
        median(&mut r_on),
        median(&mut r_off),
    );
    println!();
    println!("| per message, median of {rounds} rounds | list on | list off (baseline) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| 1:1 message through Tidemark::handle, µs | {:.1} | {:.1} | {:.2} |",
        d_on / 1e3,
        d_off / 1e3,
        d_on / d_off
    );
    println!(
        "| room message ({} members), µs | {:.1} | {:.1} | {:.2} |",
        setup.members,
        r_on / 1e3,
        r_off / 1e3,
        r_on / r_off
    );
    let page = time_queries(&mut on, 1_000, setup.users, |_| {
        "<inbox xmlns='urn:tidemark:inbox:0'><set xmlns='http://jabber.org/protocol/rsm'><max>50</max></set></inbox>".to_owned()
    })?;
    // One of the asker's own contacts, in capitals: a real hit.
    let users = setup.users;
    let search = time_queries(&mut on, 1_000, setup.users, |u| {
        format!(
            "<inbox xmlns='urn:tidemark:inbox:0' search='U{}@'/>",
            partner(u, 7, users)
        )
    })?;
    let unread = time_queries(&mut on, 1_000, setup.users, |_| {
        "<inbox xmlns='urn:tidemark:inbox:0' unread-only='true'><set xmlns='http://jabber.org/protocol/rsm'><max>50</max></set></inbox>".to_owned()
    })?;
    println!();
    println!("| list query (1,000 users asking) | p50 µs | p99 µs | rows |");
    println!("|---|---|---|---|");
    println!(
        "| a page of 50 | {:.0} | {:.0} | {} |",
        page.0, page.1, page.2
    );
    println!(
        "| search for one of the asker's contacts | {:.0} | {:.0} | {} |",
        search.0, search.1, search.2
    );
    println!(
        "| unread only, 50 | {:.0} | {:.0} | {} |",
        unread.0, unread.1, unread.2
    );
    on.flush()?;
    off.flush()?;
    drop((on, off));
    let (size_on, size_off) = (dir_allocated(&on_dir), dir_allocated(&off_dir));
    println!();
    println!(
        "on disk: {:.1} MiB with the list, {:.1} MiB without: {:.0} bytes per entry ({entries} entries)",
        size_on as f64 / 1048576.0,
        size_off as f64 / 1048576.0,
        size_on.saturating_sub(size_off) as f64 / entries.max(1) as f64
    );
    Ok(())
}
