//! Issue 11: what a team desk costs. "Counts are kept as conversations
//! change, never by scanning": so an assignment and a view with its counts
//! should cost the same at 1,000 conversations as at 10,000.
//!
//! Three sled stores on disk, each driven through `Tidemark::handle` with
//! its writes applied and flushed every 512 stanzas, as the shell does:
//!
//! * `desk-large`: one desk, `--agents` agents (all online: each grants the
//!   desk their presence and is available), `--conversations` customers
//!   who each wrote once (opening a conversation); the even-numbered
//!   conversations are assigned (through the assign IQ) to the first
//!   `--holders` agents, the odd ones are not;
//! * `desk-small`: the same with `--small` conversations;
//! * `plain`: the baseline, a world without the desk: the same customers
//!   each write their message 1:1 to an agent's tracked address (the agent
//!   granted them presence and is online).
//!
//! Then, for `--rounds` rounds, the two sides of each figure interleaved
//! 16 stanzas at a time (which goes first alternating), so that the other
//! work on a shared machine falls on both: customer messages on
//! `desk-large` against the same messages 1:1 on `plain`; and on
//! `desk-small` against `desk-large`, assignments, views, the `desk`
//! command, a search and a ping (the floor: any IQ through `handle`).
//! Each figure is the median over the rounds. Per request, the wall-clock
//! p50 and p99 of `handle` plus applying its writes, the p99 on the
//! thread's CPU clock (a wall-clock tail here is mostly another process
//! holding the core), and the mean with the flushes included.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{SledStore, Store};

use crate::util::{Args, TempDir, dir_allocated, percentile, thread_cpu_ns};
use crate::wire::DOMAIN;

const NS: &str = "jabber:component:accept";
const DESK_NS: &str = "urn:tidemark:desk:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";
const DESK: &str = "support";
/// Stanzas per flush under load (`storage.flush_batch`'s default).
const BATCH: usize = 512;
/// Rows per view page asked for.
const PAGE: usize = 50;
/// The stretches the large desk's conversations are opened in.
const STRETCHES: u64 = 10;

fn config(dir: &Path, desk: bool, agents: u64) -> Result<Config, String> {
    let mut text = format!(
        "[component]\njid = \"{DOMAIN}\"\nserver = \"127.0.0.1:1\"\nsecret = \"x\"\n\
         [storage]\npath = {:?}\ncache_mb = 64\n\
         [limits]\nrate_per_second = 1e9\nrate_burst = 4000000000\n",
        dir.display().to_string(),
    );
    if desk {
        let list: Vec<String> = (0..agents).map(|k| format!("\"{}\"", agent(k))).collect();
        text.push_str(&format!(
            "[[desks]]\nname = \"{DESK}\"\nagents = [{}]\n",
            list.join(", ")
        ));
    }
    Config::parse(&text, Path::new("bench.toml")).map_err(|e| e.to_string())
}

fn parse(xml: &str) -> Element {
    xml.parse().expect("bench stanza parses")
}

fn agent(k: u64) -> String {
    format!("a{k}@localhost")
}

fn customer(i: u64) -> String {
    format!("c{i}@example.org")
}

/// The agent a customer writes to in the world without the desk.
fn plain_agent(i: u64, agents: u64) -> u64 {
    i % agents
}

/// Who holds the even-numbered conversation `i` on the desk.
fn holder(i: u64, holders: u64) -> u64 {
    (i / 2) % holders
}

/// Customer `i`'s chat message, id `id`, to `to`.
fn customer_message(i: u64, to: &str, id: &str) -> Element {
    parse(&format!(
        "<message xmlns='{NS}' type='chat' id='{id}' from='{}/phone' to='{to}'><body>My order has not arrived.</body>\
         <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
        customer(i)
    ))
}

fn desk_address() -> String {
    format!("{DESK}@{DOMAIN}")
}

fn tracked(k: u64) -> String {
    format!("a{k}\\40localhost@{DOMAIN}")
}

fn iq(from_agent: u64, type_: &str, id: &str, payload: &str) -> Element {
    parse(&format!(
        "<iq xmlns='{NS}' type='{type_}' id='{id}' from='{}/pc' to='{DOMAIN}'>{payload}</iq>",
        agent(from_agent)
    ))
}

/// `by` assigns customer `i`'s conversation: to themselves (`to` None),
/// to another agent, or to nobody (`Some("")`).
fn assign(by: u64, i: u64, to: Option<&str>, id: &str) -> Element {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    iq(
        by,
        "set",
        id,
        &format!(
            "<assign xmlns='{DESK_NS}' desk='{DESK}' customer='{}'{to}/>",
            customer(i)
        ),
    )
}

/// What a stanza's answer must look like.
#[derive(Clone, Copy)]
enum Expect {
    /// Exactly this many stanzas out, none an error.
    Stanzas(usize),
    /// An IQ result first, with this many `<conversation/>` or form items
    /// (any number when None).
    Result(Option<usize>),
}

fn check(out: &[Element], expect: Expect) -> Result<(), String> {
    let dump = || {
        out.iter()
            .take(3)
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" ")
    };
    if out.iter().any(|el| el.attr("type") == Some("error")) {
        return Err(format!("an error came out: {}", dump()));
    }
    match expect {
        Expect::Stanzas(n) if out.len() != n => Err(format!(
            "{} stanzas out where {n} were expected: {}",
            out.len(),
            dump()
        )),
        Expect::Stanzas(_) => Ok(()),
        Expect::Result(rows) => {
            let first = out.first().ok_or("no answer")?;
            if first.name() != "iq" || first.attr("type") != Some("result") {
                return Err(format!("not a result: {}", dump()));
            }
            match rows {
                Some(n) if self::rows(first) != n => Err(format!(
                    "{} rows where {n} were expected: {}",
                    self::rows(first),
                    dump()
                )),
                _ => Ok(()),
            }
        }
    }
}

/// Conversations in a view answer, items in a command's form.
fn rows(answer: &Element) -> usize {
    if let Some(view) = answer.get_child("view", DESK_NS) {
        return view
            .children()
            .filter(|c| c.name() == "conversation")
            .count();
    }
    answer
        .get_child("command", COMMANDS)
        .and_then(|c| c.get_child("x", DATA))
        .map(|x| x.children().filter(|c| c.name() == "item").count())
        .unwrap_or(0)
}

/// Stanzas one side handles before the other side's turn in a paired run:
/// a burst of load from another process on this shared machine then falls
/// on both sides alike.
const CHUNK: usize = 16;

/// What one batch of stanzas cost.
struct Timed {
    /// Per stanza, `handle` plus applying its writes (no flush), ns.
    each: Vec<u64>,
    /// The same on this thread's CPU clock.
    cpu: Vec<u64>,
    /// The whole batch: handling, applying, the flushes every
    /// [`BATCH`] stanzas and the one at its end, ns per stanza.
    mean_with_flush: f64,
    /// Rows in the first answer.
    rows: usize,
}

/// A batch being run, a chunk at a time.
#[derive(Default)]
struct Tally {
    each: Vec<u64>,
    cpu: Vec<u64>,
    ns: u128,
    rows: Option<usize>,
}

impl Tally {
    fn done(self, n: usize) -> Timed {
        Timed {
            each: self.each,
            cpu: self.cpu,
            mean_with_flush: self.ns as f64 / n.max(1) as f64,
            rows: self.rows.unwrap_or(0),
        }
    }
}

struct Side {
    tm: Tidemark,
    store: Arc<SledStore>,
    now: u64,
    pending: usize,
}

impl Side {
    fn open(dir: &Path, desk: bool, agents: u64) -> Result<Side, String> {
        let store = Arc::new(SledStore::open(dir, 64 * 1024 * 1024).map_err(|e| e.to_string())?);
        let now = 1_795_000_000_000;
        let tm = Tidemark::new(
            config(dir, desk, agents)?,
            store.clone() as Arc<dyn Store>,
            now,
        )
        .map_err(|e| e.to_string())?;
        Ok(Side {
            tm,
            store,
            now,
            pending: 0,
        })
    }

    /// Handles `el` and applies its writes, as the shell does; flushes
    /// when a batch is full. The time of handle and apply alone, on the
    /// wall clock and on this thread's CPU clock.
    fn step(&mut self, el: &Element) -> Result<(Vec<Element>, u64, u64), String> {
        self.now += 1;
        let cpu = thread_cpu_ns();
        let t = Instant::now();
        let effects = self.tm.handle(el, self.now);
        let out = effects
            .apply(&**self.tm.store())
            .map_err(|e| e.to_string())?;
        let took = t.elapsed().as_nanos() as u64;
        let cpu = thread_cpu_ns().saturating_sub(cpu);
        self.pending += 1;
        if self.pending >= BATCH {
            self.flush()?;
        }
        Ok((out, took, cpu))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.pending = 0;
        self.store.flush().map_err(|e| e.to_string())
    }

    /// `els` in turn, each answer checked, into `tally`: the time of each,
    /// and the whole time with the flushes that fall in it.
    fn chunk(&mut self, els: &[Element], expect: Expect, tally: &mut Tally) -> Result<(), String> {
        let t = Instant::now();
        for el in els {
            let (out, took, cpu) = self.step(el)?;
            check(&out, expect)?;
            tally.each.push(took);
            tally.cpu.push(cpu);
            tally
                .rows
                .get_or_insert_with(|| out.first().map(rows).unwrap_or(0));
        }
        tally.ns += t.elapsed().as_nanos();
        Ok(())
    }

    /// The last flush of a batch, counted in it.
    fn finish(&mut self, tally: &mut Tally) -> Result<(), String> {
        let t = Instant::now();
        self.flush()?;
        tally.ns += t.elapsed().as_nanos();
        Ok(())
    }

    /// Every stanza of `els` in turn, then a flush.
    fn run(&mut self, els: &[Element], expect: Expect) -> Result<Timed, String> {
        let mut tally = Tally::default();
        self.chunk(els, expect, &mut tally)?;
        self.finish(&mut tally)?;
        Ok(tally.done(els.len()))
    }
}

/// One side's part of a paired run: its stanzas and what each answer
/// must look like.
struct Part<'a> {
    side: &'a mut Side,
    els: Vec<Element>,
    expect: Expect,
}

/// Two sides' batches interleaved [`CHUNK`] stanzas at a time, which side
/// goes first alternating; each ends with its flush.
fn pair(a: Part, b: Part) -> Result<(Timed, Timed), String> {
    let (mut ta, mut tb) = (Tally::default(), Tally::default());
    let turns = a.els.len().max(b.els.len()).div_ceil(CHUNK);
    for turn in 0..turns {
        let part = |els: &'_ [Element]| -> std::ops::Range<usize> {
            (turn * CHUNK).min(els.len())..((turn + 1) * CHUNK).min(els.len())
        };
        let (ca, cb) = (&a.els[part(&a.els)], &b.els[part(&b.els)]);
        if turn % 2 == 0 {
            a.side.chunk(ca, a.expect, &mut ta)?;
            b.side.chunk(cb, b.expect, &mut tb)?;
        } else {
            b.side.chunk(cb, b.expect, &mut tb)?;
            a.side.chunk(ca, a.expect, &mut ta)?;
        }
    }
    a.side.finish(&mut ta)?;
    b.side.finish(&mut tb)?;
    Ok((ta.done(a.els.len()), tb.done(b.els.len())))
}

/// Two sides' stanzas alternating one by one, each committed by its own
/// flush (a quiet desk: an agent's click is a batch of one); each time
/// includes its flush.
fn pair_alone(a: Part, b: Part) -> Result<(Timed, Timed), String> {
    let (mut ta, mut tb) = (Tally::default(), Tally::default());
    for (i, (ea, eb)) in a.els.iter().zip(&b.els).enumerate() {
        let one = |side: &mut Side, el: &Element, expect, tally: &mut Tally| {
            let cpu = thread_cpu_ns();
            let t = Instant::now();
            let (out, _, _) = side.step(el)?;
            side.flush()?;
            let took = t.elapsed().as_nanos();
            tally.each.push(took as u64);
            tally.cpu.push(thread_cpu_ns().saturating_sub(cpu));
            tally.ns += took;
            check(&out, expect)
        };
        if i % 2 == 0 {
            one(a.side, ea, a.expect, &mut ta)?;
            one(b.side, eb, b.expect, &mut tb)?;
        } else {
            one(b.side, eb, b.expect, &mut tb)?;
            one(a.side, ea, a.expect, &mut ta)?;
        }
    }
    Ok((ta.done(a.els.len()), tb.done(b.els.len())))
}

struct Setup {
    agents: u64,
    holders: u64,
    small: u64,
    large: u64,
    messages: u64,
    ops: u64,
    queries: u64,
    alone: u64,
    rounds: u64,
}

/// A desk side: every agent grants the desk their presence and comes
/// online.
fn desk_side(dir: &Path, s: &Setup) -> Result<Side, String> {
    let mut side = Side::open(dir, true, s.agents)?;
    let desk = desk_address();
    for k in 0..s.agents {
        side.step(&parse(&format!(
            "<presence xmlns='{NS}' type='subscribed' from='{}' to='{desk}'/>",
            agent(k)
        )))?;
        side.step(&parse(&format!(
            "<presence xmlns='{NS}' from='{}/pc' to='{desk}'/>",
            agent(k)
        )))?;
    }
    side.flush()?;
    Ok(side)
}

/// The world without the desk: the agent each customer will write to
/// grants them presence and is online.
fn plain_side(dir: &Path, s: &Setup) -> Result<Side, String> {
    let mut side = Side::open(dir, false, s.agents)?;
    for i in 0..s.large {
        let k = plain_agent(i, s.agents);
        let watcher = format!("c{i}\\40example.org@{DOMAIN}");
        side.step(&parse(&format!(
            "<presence xmlns='{NS}' type='subscribed' from='{}' to='{watcher}'/>",
            agent(k)
        )))?;
        side.step(&parse(&format!(
            "<presence xmlns='{NS}' from='{}/pc' to='{watcher}'/>",
            agent(k)
        )))?;
    }
    side.flush()?;
    Ok(side)
}

/// Customers `range` write their first message: to the desk, or 1:1 to
/// their agent's tracked address.
fn openings(s: &Setup, range: std::ops::Range<u64>, desk: bool) -> Vec<Element> {
    let desk_jid = desk_address();
    range
        .map(|i| {
            let to = if desk {
                desk_jid.clone()
            } else {
                tracked(plain_agent(i, s.agents))
            };
            customer_message(i, &to, &format!("o{i}"))
        })
        .collect()
}

/// A new, unassigned conversation: a copy to every available agent and
/// the event `opened` to each of them.
fn opening_on_desk(s: &Setup) -> Expect {
    Expect::Stanzas(2 * s.agents as usize)
}

/// The even-numbered conversations of `0..n` go to the holders, each
/// taking it themselves.
fn assign_half(side: &mut Side, s: &Setup, n: u64) -> Result<(), String> {
    let els: Vec<Element> = (0..n)
        .step_by(2)
        .map(|i| assign(holder(i, s.holders), i, None, &format!("h{i}")))
        .collect();
    // The result and the event to the holder.
    side.run(&els, Expect::Stanzas(2))?;
    Ok(())
}

/// The `j`-th customer of a round's sample among `n`: even (assigned) or
/// odd (unassigned), a different stretch each round.
fn sample(j: u64, round: u64, per_round: u64, n: u64, odd: bool) -> u64 {
    2 * ((round * per_round + j) % (n / 2)) + u64::from(odd)
}

/// `s.messages` customer messages into assigned (or unassigned)
/// conversations, on the desk and the same 1:1 on the plain side;
/// nanoseconds per message on each.
fn message_round(
    desk: &mut Side,
    plain: &mut Side,
    s: &Setup,
    assigned: bool,
    round: u64,
) -> Result<(f64, f64), String> {
    let desk_jid = desk_address();
    let build = |on_desk: bool| -> Vec<Element> {
        (0..s.messages)
            .map(|j| {
                let i = sample(j, round, s.messages, s.large, !assigned);
                let id = format!("m{round}-{}-{j}", u8::from(assigned));
                let to = if on_desk {
                    desk_jid.clone()
                } else {
                    tracked(plain_agent(i, s.agents))
                };
                customer_message(i, &to, &id)
            })
            .collect()
    };
    // The assignee alone, or every available agent.
    let copies = if assigned { 1 } else { s.agents as usize };
    let (d, p) = pair(
        Part {
            side: desk,
            els: build(true),
            expect: Expect::Stanzas(copies),
        },
        Part {
            side: plain,
            els: build(false),
            expect: Expect::Stanzas(1),
        },
    )?;
    Ok((d.mean_with_flush, p.mean_with_flush))
}

/// The figures of one kind of request on one side in one round.
#[derive(Default, Clone, Copy)]
struct Figures {
    p50: f64,
    p99: f64,
    /// p99 on this thread's CPU clock.
    p99_cpu: f64,
    mean_with_flush: f64,
    rows: usize,
}

fn figures(t: Timed) -> Figures {
    let (mut each, mut cpu) = (t.each, t.cpu);
    each.sort_unstable();
    cpu.sort_unstable();
    Figures {
        p50: percentile(&each, 50.0) as f64 / 1e3,
        p99: percentile(&each, 99.0) as f64 / 1e3,
        p99_cpu: percentile(&cpu, 99.0) as f64 / 1e3,
        mean_with_flush: t.mean_with_flush / 1e3,
        rows: t.rows,
    }
}

/// The kinds of desk request measured at both sizes, in table order.
const KINDS: [&str; 11] = [
    "ping (the floor: any IQ through handle)",
    "assign an unassigned conversation to oneself",
    "reassign to another agent",
    "unassign (to='')",
    "assign alone, committed by its own flush",
    "view mine, page of 50, with counts",
    "view unassigned, page of 50, with counts",
    "view all, page of 50, with counts",
    "desk command, first stage (the form)",
    "desk command, view unassigned submitted",
    "search the view all for one customer",
];

fn view_iq(by: u64, name: &str, id: &str, search: &str) -> Element {
    iq(
        by,
        "get",
        id,
        &format!(
            "<view xmlns='{DESK_NS}' desk='{DESK}' name='{name}'{search}><set xmlns='{RSM}'><max>{PAGE}</max></set></view>"
        ),
    )
}

/// The small and the large desk, and how many conversations each holds.
struct Desks<'a> {
    small: &'a mut Side,
    large: &'a mut Side,
    n_small: u64,
    n_large: u64,
}

impl Desks<'_> {
    /// `build(n)` on each desk (`n` its conversations), interleaved.
    fn pair(
        &mut self,
        build: impl Fn(u64) -> Vec<Element>,
        expect: Expect,
    ) -> Result<(Timed, Timed), String> {
        pair(
            Part {
                side: self.small,
                els: build(self.n_small),
                expect,
            },
            Part {
                side: self.large,
                els: build(self.n_large),
                expect,
            },
        )
    }

    fn pair_figures(
        &mut self,
        build: impl Fn(u64) -> Vec<Element>,
        expect: Expect,
    ) -> Result<(Figures, Figures), String> {
        let (a, b) = self.pair(build, expect)?;
        Ok((figures(a), figures(b)))
    }
}

/// One round of every kind of desk request on both desks, interleaved;
/// figures in [`KINDS`]' order for each. The assignments leave the desks
/// as they found them (every sampled conversation unassigned again).
fn request_round(
    d: &mut Desks,
    s: &Setup,
    round: u64,
) -> Result<(Vec<Figures>, Vec<Figures>), String> {
    let agents = s.agents;
    let q = s.queries;
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut push = |(a, b): (Figures, Figures)| {
        small.push(a);
        large.push(b);
    };

    push(d.pair_figures(
        |_| {
            (0..q)
                .map(|j| {
                    iq(
                        j % agents,
                        "get",
                        &format!("p{round}-{j}"),
                        "<ping xmlns='urn:xmpp:ping'/>",
                    )
                })
                .collect()
        },
        Expect::Result(None),
    )?);

    // Odd conversations are unassigned: agent `by` takes one, gives it to
    // the next agent, who gives it back to nobody.
    let pick = |j: u64, n: u64| {
        let by = (j * 7) % agents;
        (sample(j, round, s.ops, n, true), by, (by + 1) % agents)
    };
    // The result; the event to the new assignee, who acted.
    push(d.pair_figures(
        |n| {
            (0..s.ops)
                .map(|j| {
                    let (i, by, _) = pick(j, n);
                    assign(by, i, None, &format!("t{round}-{i}"))
                })
                .collect()
        },
        Expect::Stanzas(2),
    )?);
    // The result; the event to the one before (who acted) and the one after.
    push(d.pair_figures(
        |n| {
            (0..s.ops)
                .map(|j| {
                    let (i, by, next) = pick(j, n);
                    assign(by, i, Some(&agent(next)), &format!("g{round}-{i}"))
                })
                .collect()
        },
        Expect::Stanzas(3),
    )?);
    // The result; the event to every available agent (unassigned again).
    push(d.pair_figures(
        |n| {
            (0..s.ops)
                .map(|j| {
                    let (i, _, next) = pick(j, n);
                    assign(next, i, Some(""), &format!("d{round}-{i}"))
                })
                .collect()
        },
        Expect::Stanzas(1 + agents as usize),
    )?);

    // A few assignments on a quiet desk, and back (untimed).
    let quiet = |j: u64, n: u64| (sample(j, round + 7, s.alone, n, true), j % agents);
    let take = |n: u64| -> Vec<Element> {
        (0..s.alone)
            .map(|j| {
                let (i, by) = quiet(j, n);
                assign(by, i, None, &format!("q{round}-{i}"))
            })
            .collect()
    };
    let (a, b) = pair_alone(
        Part {
            side: d.small,
            els: take(d.n_small),
            expect: Expect::Stanzas(2),
        },
        Part {
            side: d.large,
            els: take(d.n_large),
            expect: Expect::Stanzas(2),
        },
    )?;
    push((figures(a), figures(b)));
    d.pair(
        |n| {
            (0..s.alone)
                .map(|j| {
                    let (i, by) = quiet(j, n);
                    assign(by, i, Some(""), &format!("b{round}-{i}"))
                })
                .collect()
        },
        Expect::Stanzas(1 + agents as usize),
    )?;

    // Views: `mine` asked by the agents who hold conversations.
    for (name, askers) in [("mine", s.holders), ("unassigned", agents), ("all", agents)] {
        push(d.pair_figures(
            |_| {
                (0..q)
                    .map(|j| view_iq(j % askers, name, &format!("v{round}-{j}"), ""))
                    .collect()
            },
            Expect::Result(None),
        )?);
    }

    push(d.pair_figures(
        |_| {
            (0..q)
                .map(|j| {
                    iq(
                        j % agents,
                        "set",
                        &format!("c{round}-{j}"),
                        &format!("<command xmlns='{COMMANDS}' node='desk' action='execute'/>"),
                    )
                })
                .collect()
        },
        Expect::Result(Some(0)),
    )?);
    push(d.pair_figures(
        |_| {
            (0..q)
                .map(|j| {
                    iq(
                        j % agents,
                        "set",
                        &format!("s{round}-{j}"),
                        &format!(
                            "<command xmlns='{COMMANDS}' node='desk' action='execute'>\
                             <x xmlns='{DATA}' type='submit'><field var='view'><value>unassigned</value></field></x></command>"
                        ),
                    )
                })
                .collect()
        },
        Expect::Result(Some(PAGE)),
    )?);

    // A search reads the view until it has a page or has looked at
    // SEARCH_SCAN conversations: one customer's address is the worst case.
    push(d.pair_figures(
        |n| {
            (0..q)
                .map(|j| {
                    let i = (j * 7919 + round * 31) % n;
                    view_iq(
                        j % agents,
                        "all",
                        &format!("f{round}-{j}"),
                        &format!(" search='c{i}@example'"),
                    )
                })
                .collect()
        },
        Expect::Result(Some(1)),
    )?);
    Ok((small, large))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median over rounds of each figure of kind `k`.
fn median_figures(rounds: &[Vec<Figures>], k: usize) -> Figures {
    Figures {
        p50: median(rounds.iter().map(|r| r[k].p50).collect()),
        p99: median(rounds.iter().map(|r| r[k].p99).collect()),
        p99_cpu: median(rounds.iter().map(|r| r[k].p99_cpu).collect()),
        mean_with_flush: median(rounds.iter().map(|r| r[k].mean_with_flush).collect()),
        rows: rounds[0][k].rows,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

pub fn main(args: &Args) -> Result<(), String> {
    let s = Setup {
        agents: args.get("agents", 50u64).max(2),
        holders: args.get("holders", 10u64).max(1),
        small: args.get("small", 1_000u64).max(4),
        large: args.get("conversations", 10_000u64).max(4),
        messages: args.get("messages", 2_000u64).max(1),
        ops: args.get("ops", 400u64).max(1),
        queries: args.get("queries", 500u64).max(1),
        alone: args.get("alone", 100u64).max(1),
        rounds: args.get("rounds", 3u64).max(1),
    };
    if s.holders > s.agents {
        return Err("--holders cannot exceed --agents".into());
    }
    // Each round's samples are distinct conversations of their half, and
    // every `unassigned` page is full.
    if s.ops.max(s.alone) > s.small / 2
        || s.messages > s.large / 2
        || s.small / 2 < PAGE as u64
        || s.small > s.large
    {
        return Err(
            "--ops and --alone are at most --small / 2, --messages at most --conversations / 2, --small at least 100 and at most --conversations"
                .into(),
        );
    }
    let command = format!(
        "target/release/tidemark-bench desk --agents {} --holders {} --small {} --conversations {} --messages {} --ops {} --queries {} --alone {} --rounds {}",
        s.agents, s.holders, s.small, s.large, s.messages, s.ops, s.queries, s.alone, s.rounds
    );
    println!(
        "desk: 1 desk, {} agents all online; {} and {} conversations (one message from each customer), the even-numbered half assigned to the first {} agents; baseline: the same customers writing 1:1 to an agent's tracked address, no desk; {} rounds, the two sides of each figure interleaved {CHUNK} stanzas at a time",
        s.agents, s.small, s.large, s.holders, s.rounds
    );
    println!("reproduce: cargo build --release --bins && {command}");

    let tmp = TempDir::new("desk-bench");
    let (small_dir, large_dir, plain_dir) = (
        tmp.path().join("desk-small"),
        tmp.path().join("desk-large"),
        tmp.path().join("plain"),
    );
    let t = Instant::now();
    let mut small = desk_side(&small_dir, &s)?;
    small.run(&openings(&s, 0..s.small, true), opening_on_desk(&s))?;
    assign_half(&mut small, &s, s.small)?;
    let mut large = desk_side(&large_dir, &s)?;
    let mut plain = plain_side(&plain_dir, &s)?;
    // The large desk's conversations open interleaved with the plain
    // side's, in stretches: the cost of a customer's first message, from
    // none to all.
    let (mut open_desk, mut open_plain) = (vec![], vec![]);
    for k in 0..STRETCHES {
        let range = k * s.large / STRETCHES..(k + 1) * s.large / STRETCHES;
        let (d, p) = pair(
            Part {
                side: &mut large,
                els: openings(&s, range.clone(), true),
                expect: opening_on_desk(&s),
            },
            Part {
                side: &mut plain,
                els: openings(&s, range, false),
                expect: Expect::Stanzas(1),
            },
        )?;
        open_desk.push(d.mean_with_flush);
        open_plain.push(p.mean_with_flush);
    }
    assign_half(&mut large, &s, s.large)?;
    let (size_large, size_plain) = (dir_allocated(&large_dir), dir_allocated(&plain_dir));
    println!(
        "population written in {:.1} s; on disk after it: desk {:.1} MiB, plain {:.1} MiB",
        t.elapsed().as_secs_f64(),
        mib(size_large),
        mib(size_plain)
    );

    // [assigned, unassigned] x [desk, plain].
    let mut msgs: [[Vec<f64>; 2]; 2] = Default::default();
    let (mut at_small, mut at_large) = (vec![], vec![]);
    for round in 0..s.rounds {
        for (k, assigned) in [true, false].into_iter().enumerate() {
            let (d, p) = message_round(&mut large, &mut plain, &s, assigned, round)?;
            msgs[k][0].push(d);
            msgs[k][1].push(p);
        }
        let mut desks = Desks {
            small: &mut small,
            large: &mut large,
            n_small: s.small,
            n_large: s.large,
        };
        let (a, b) = request_round(&mut desks, &s, round)?;
        at_small.push(a);
        at_large.push(b);
    }

    println!();
    println!(
        "| per customer message, µs (handle + apply + flush every {BATCH}) | desk | 1:1, no desk (baseline) | ratio |"
    );
    println!("|---|---|---|---|");
    let row = |what: String, desk: f64, plain: f64| {
        println!(
            "| {what} | {:.1} | {:.1} | {:.2} |",
            desk / 1e3,
            plain / 1e3,
            desk / plain
        );
    };
    row(
        format!(
            "first message, opening a conversation ({} copies + {} events; median of {STRETCHES} stretches from 0 to {})",
            s.agents, s.agents, s.large
        ),
        median(open_desk),
        median(open_plain),
    );
    let [into_assigned, into_unassigned] = msgs;
    let [d, p] = into_assigned;
    row(
        format!(
            "into an assigned conversation (1 copy; median of {} rounds)",
            s.rounds
        ),
        median(d),
        median(p),
    );
    let [d, p] = into_unassigned;
    row(
        format!(
            "into an unassigned conversation ({} copies; median of {} rounds)",
            s.agents, s.rounds
        ),
        median(d),
        median(p),
    );

    println!();
    println!(
        "| desk request, µs, median of {} rounds | {n} p50 | {n} p99 | {n} p99 CPU | {n} mean with flushes | {N} p50 | {N} p99 | {N} p99 CPU | {N} mean with flushes | p50 {N}/{n} | rows |",
        s.rounds,
        n = s.small,
        N = s.large,
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, what) in KINDS.iter().enumerate() {
        let a = median_figures(&at_small, k);
        let b = median_figures(&at_large, k);
        let rows = if a.rows == b.rows {
            a.rows.to_string()
        } else {
            format!("{} / {}", a.rows, b.rows)
        };
        println!(
            "| {what} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {rows} |",
            a.p50,
            a.p99,
            a.p99_cpu,
            a.mean_with_flush,
            b.p50,
            b.p99,
            b.p99_cpu,
            b.mean_with_flush,
            b.p50 / a.p50
        );
    }
    println!();
    println!(
        "per round and desk: {} pings, views, commands and searches of each kind; {} conversations assigned, reassigned and unassigned; {} assigned alone; {} customer messages of each kind",
        s.queries, s.ops, s.alone, s.messages
    );
    let per = |bytes: u64| bytes as f64 / s.large as f64;
    println!(
        "on disk after the population ({} conversations, half assigned): desk {:.1} MiB ({:.0} bytes per conversation), plain {:.1} MiB ({:.0}): {:.0} bytes more per desk conversation",
        s.large,
        mib(size_large),
        per(size_large),
        mib(size_plain),
        per(size_plain),
        per(size_large.saturating_sub(size_plain))
    );
    Ok(())
}
