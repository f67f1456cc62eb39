#!/usr/bin/env python3
"""Issue 12's figures: messages per second through a two-node ejabberd cluster,
with one, two and three tidemarks on PostgreSQL against one on sled, and the
failover after kill -9 of the serving one. All in the same run.

The clients are scripts/e2e_bench.py's (STARTTLS, SASL PLAIN, bind, roster,
presence; each message with a XEP-0184 request and a XEP-0333 markable,
answered at once with a receipt and a displayed marker; a send is done when
the sender has the marker). Pairs cross the cluster: user 2k logs in on node 1
(127.0.0.1), user 2k+1 on node 2 (127.0.0.2). Phases, one after the other on
the same cluster (scripts/bench.sh cluster N starts it, and PostgreSQL):

  direct   user to user through the cluster, no component (the baseline)
  sled     through one tidemark on sled, connected to node 1
  pg x1    through one tidemark on PostgreSQL, connected to node 1
  pg x2    the same with a second instance standing by (configured for node 2)
  pg x3    and a third (node 2): the figure is still one serving instance's,
           since the others wait for its advisory lock (README "Several
           instances"); what they cost is their polling and their memory

The sled and PostgreSQL tidemarks serve the same component name, so they take
turns; each keeps its own users (user0..N-1 for sled and the direct phase,
userN..2N-1 for PostgreSQL), subscribed through it once before the phases.

Then the failover, with three instances on PostgreSQL and the PostgreSQL
users sending as before: `--kills` times, kill -9 the serving instance, time
until the first displayed marker comes back for a message sent after the kill
("receipts flow again"; one client also sends a probe every `--probe` s
outside its closed loop, or the clients' own patience would be timed),
restart the killed one as a standby. Each message
pending at the kill or sent before that first marker is put in one class:
read (a marker came, maybe after the client gave up waiting, `--timeout`),
error (the server or tidemark answered it with an error; the client sends its
next message `--retry` s later, as an app would show a failure), or lost
silently (neither, by the end of the run plus `--grace` s).
"""
import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_bench as e2e  # noqa: E402
from e2e_bench import CLIENT, MARKERS, RECEIPTS, quoteattr, tracked  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = {1: "127.0.0.1", 2: "127.0.0.2"}


def proc_stat(pid):
    """(ppid, CPU seconds) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[1]), (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def postgres_cpu(postmaster):
    """CPU seconds of the postmaster and of each of its children, by pid."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and (st[0] == postmaster or int(name) == postmaster):
                out[int(name)] = st[1]
    return out


class Instance:
    """One tidemark process with its own config and log."""

    def __init__(self, name, config_text, args):
        self.name = name
        self.args = args
        self.config = os.path.join(args.workdir, f"{name}.toml")
        self.log_path = os.path.join(args.workdir, f"{name}.log")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.proc = None
        self.offset = 0

    def start(self):
        self.offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.args.tidemark, "--config", self.config],
                                     stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        """What it logged since its last start."""
        with open(self.log_path, errors="replace") as f:
            f.seek(self.offset)
            return f.read()

    async def wait_log(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log_text()):
                return
            if not self.alive():
                sys.exit(f"tidemark[{self.name}] exited:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)
        sys.exit(f"tidemark[{self.name}] never logged {pattern!r}:\n{self.log_text()[-3000:]}")

    def serving(self):
        return self.alive() and "serving chat.localhost" in self.log_text()

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


class BenchClient(e2e.Client):
    """e2e_bench's client, with ids unique over the run, errors and give-ups
    counted (a message answered by an error, or never, does not stall the
    client), and each message's fate kept for the failover."""

    def on_stanza(self, el):
        b = self.bench
        if el.tag == CLIENT + "message":
            mid = el.get("id", "")
            if el.get("type") == "error":
                if self.pending.pop(mid, None) is not None:
                    b.fate[mid] = ("error", time.perf_counter())
                    b.errors.append(e2e.ET.tostring(el, encoding="unicode")[:300])
                    # An app shows the failure; the person sends the next one.
                    asyncio.get_running_loop().call_later(b.retry, self.send_next)
                else:
                    # One of our receipts or markers bounced.
                    b.peer_errors.append(time.perf_counter())
                return
            d = el.find(f"{{{MARKERS}}}displayed")
            if d is not None:
                did = d.get("id")
                now = time.perf_counter()
                t0 = self.pending.pop(did, None)
                if t0 is not None:
                    b.latencies.append(now - t0)
                    b.fate[did] = ("read", now)
                    if not did.startswith("probe"):
                        self.send_next()
                elif did in b.gave_up:
                    b.fate[did] = ("read", now)
                return
        super().on_stanza(el)

    def message_id(self):
        return f"{self.bench.tag}-{self.n}-{self.sent}"

    def sending(self, mid):
        now = time.perf_counter()
        self.pending[mid] = now
        self.bench.sent_at[mid] = now

    def send_probe(self):
        """One message outside the closed loop (the failover's clock)."""
        self.probes = getattr(self, "probes", 0) + 1
        mid = f"probe-{self.n}-{self.probes}"
        self.sending(mid)
        self.send(f"<message to={quoteattr(tracked(self.partner))} id='{mid}' type='chat'><body>Probe "
                  f"{self.probes}</body><request xmlns='{RECEIPTS}'/><markable xmlns='{MARKERS}'/></message>")

    def give_up_older_than(self, limit):
        now = time.perf_counter()
        for mid, t0 in list(self.pending.items()):
            if now - t0 > limit:
                del self.pending[mid]
                self.bench.gave_up.add(mid)
                if not mid.startswith("probe"):
                    self.send_next()


class Bench:
    def __init__(self, args):
        self.port = args.c2s_port
        self.max_per_client = args.max
        self.retry = args.retry
        self.latencies = []
        self.errors = []
        self.peer_errors = []
        self.sent_at = {}
        self.fate = {}
        self.gave_up = set()
        self.stop = False
        self.path = "direct"
        self.tag = "x"


def make_clients(bench, first, n):
    # Pairs (2k, 2k+1) cross the cluster: even users on node 1, odd on node 2.
    return [BenchClient(first + i, bench, host=NODES[1 + (first + i) % 2]) for i in range(n)]


async def login_and_subscribe(clients, ctx, what):
    await e2e.login_and_subscribe(clients, ctx, what, where=", half on each node")


class Meter:
    """CPU of the processes that matter, over a phase."""

    def __init__(self, args, instances):
        self.ejabberd = {}
        for n in (1, 2):
            with open(os.path.join(args.ejabberd_dir, f"node{n}", "ejabberd.pid")) as f:
                self.ejabberd[n] = int(f.read().strip())
        with open(os.path.join(args.pg_dir, "data", "postmaster.pid")) as f:
            self.postmaster = int(f.readline().strip())
        self.instances = instances

    def sample(self):
        tm = {i.name: e2e.cpu_seconds(i.proc.pid) for i in self.instances if i.alive()}
        return {"ejabberd1": e2e.cpu_seconds(self.ejabberd[1]), "ejabberd2": e2e.cpu_seconds(self.ejabberd[2]),
                "tidemark": tm, "postgres": postgres_cpu(self.postmaster), "clients": e2e.cpu_seconds(os.getpid())}

    @staticmethod
    def spent(a, b):
        return {
            "ejabberd": (b["ejabberd1"] - a["ejabberd1"]) + (b["ejabberd2"] - a["ejabberd2"]),
            "tidemark": sum(v - a["tidemark"].get(k, 0.0) for k, v in b["tidemark"].items()),
            "postgres": sum(v - a["postgres"].get(k, 0.0) for k, v in b["postgres"].items()),
            "clients": b["clients"] - a["clients"],
        }


async def run_phase(bench, clients, label, path, args, meter):
    bench.path = path
    bench.tag = label.replace(" ", "")
    bench.stop = False
    bench.latencies = []
    bench.errors = []
    loop = asyncio.get_running_loop()
    for c in clients:
        c.sent = 0
        c.pending.clear()
        c.done = loop.create_future()
    cpu0 = meter.sample()
    t0 = time.perf_counter()
    for c in clients:
        for _ in range(args.window):
            c.send_next()
    await asyncio.sleep(args.secs)
    bench.stop = True
    elapsed = time.perf_counter() - t0
    lat = sorted(bench.latencies)
    n_done = len(lat)
    cpu = Meter.spent(cpu0, meter.sample())
    await asyncio.wait([c.done for c in clients], timeout=10)
    r = {"label": label, "done": n_done, "secs": elapsed, "rate": n_done / elapsed,
         "p50": e2e.pct(lat, 50) * 1e3, "p99": e2e.pct(lat, 99) * 1e3, "errors": len(bench.errors),
         "unanswered": sum(len(c.pending) for c in clients), "cpu": cpu}
    cpus = ", ".join(f"{k} {v:.1f}s" for k, v in cpu.items())
    print(f"{label}: {n_done} read in {elapsed:.1f}s = {r['rate']:.0f} msg/s, p50 {r['p50']:.1f} ms, "
          f"p99 {r['p99']:.1f} ms, errors {r['errors']}, unanswered {r['unanswered']}; CPU {cpus}", flush=True)
    for e in bench.errors[:2]:
        print("  error:", e)
    return r


async def failover(bench, clients, pg, args):
    """Kill -9 the serving instance `args.kills` times under load."""
    bench.path = "tidemark"
    bench.tag = "fo"
    bench.stop = False
    bench.sent_at.clear()
    bench.fate.clear()
    bench.gave_up.clear()
    bench.peer_errors = []
    loop = asyncio.get_running_loop()
    for c in clients:
        c.sent = 0
        c.pending.clear()
        c.done = loop.create_future()

    async def sweeper():
        while not bench.stop:
            for c in clients:
                c.give_up_older_than(args.timeout)
            await asyncio.sleep(0.1)

    # The closed loop alone would time the clients' patience: every client
    # waits for its message in flight at the kill until --timeout. One
    # client also sends a probe every --probe s whatever comes back, so
    # the first marker after the kill shows when the service is back.
    async def prober():
        while not bench.stop:
            clients[0].send_probe()
            await asyncio.sleep(args.probe)
    sweep = asyncio.create_task(sweeper())
    probe = asyncio.create_task(prober())
    for c in clients:
        for _ in range(args.window):
            c.send_next()
    kills = []
    for k in range(args.kills):
        await asyncio.sleep(args.settle)
        serving = [i for i in pg if i.serving()]
        if len(serving) != 1:
            sys.exit(f"failover: {len(serving)} instances serving: {[i.name for i in serving]}")
        victim = serving[0]
        pending_at_kill = {mid for c in clients for mid in c.pending}
        t_kill = time.perf_counter()
        victim.kill9()
        deadline = t_kill + 30
        first = None
        while time.perf_counter() < deadline:
            after = [t for mid, (what, t) in list(bench.fate.items())
                     if what == "read" and bench.sent_at[mid] > t_kill]
            if after:
                first = min(after)
                break
            await asyncio.sleep(0.01)
        if first is None:
            sys.exit("failover: no marker within 30 s of the kill")
        taker = [i.name for i in pg if i.serving()]
        kills.append({"victim": victim.name, "taker": ",".join(taker), "t_kill": t_kill, "first": first,
                      "gap": first - t_kill, "pending": pending_at_kill})
        print(f"kill {k + 1}: kill -9 {victim.name}; {','.join(taker)} serves; first marker for a message "
              f"sent after the kill {first - t_kill:.2f} s after it", flush=True)
        victim.start()
        await victim.wait_log(r"standing by")
    await asyncio.sleep(args.settle)
    bench.stop = True
    sweep.cancel()
    probe.cancel()
    # Late answers, bounded.
    await asyncio.sleep(args.grace)
    rows = []
    for k in kills:
        at_risk = set(k["pending"]) | {mid for mid, t in bench.sent_at.items() if k["t_kill"] <= t <= k["first"]}
        read = sum(1 for m in at_risk if bench.fate.get(m, ("",))[0] == "read")
        err = sum(1 for m in at_risk if bench.fate.get(m, ("",))[0] == "error")
        silent = len(at_risk) - read - err
        peer = sum(1 for t in bench.peer_errors if k["t_kill"] <= t <= k["first"] + 1)
        rows.append({**k, "at_risk": len(at_risk), "in_flight": len(k["pending"]), "read": read,
                     "error": err, "silent": silent, "peer": peer})
    return rows


def config(name, node, args, backend):
    if backend == "sled":
        storage = f'path = "{os.path.join(args.workdir, "sled-store")}"\ncache_mb = 64\n'
    else:
        url = open(os.path.join(args.pg_dir, "url")).read().strip()
        storage = (f'backend = "postgres"\nurl = "{url}"\n'
                   f'password_file = "{os.path.join(args.pg_dir, "password")}"\n')
    return (f'[component]\njid = "chat.localhost"\nserver = "{NODES[node]}:{args.component_port}"\n'
            f'secret = "{args.secret}"\nreconnect_max_secs = 2\n\n[storage]\n{storage}'
            f'flush_batch = {args.flush_batch}\n\n'
            # Each client sends as fast as it is answered: the per-sender
            # limit would measure refusals, not throughput.
            '[limits]\nrate_per_second = 1e9\nrate_burst = 1000000\n\n[log]\nlevel = "info"\n')


async def register(args, first, n):
    sem = asyncio.Semaphore(4)

    async def one(i):
        async with sem:
            p = await asyncio.create_subprocess_exec(
                "bash", os.path.join(REPO, "scripts", "ejabberd.sh"), "register", args.ejabberd_dir,
                f"user{i}", "pw", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out = (await p.communicate())[0].decode()
            if p.returncode != 0 and "already" not in out:
                sys.exit(f"register user{i}: {out}")
    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(first, first + n)))
    print(f"registered user{first}..user{first + n - 1} in {time.perf_counter() - t:.1f}s", flush=True)


def med(rs, key):
    return statistics.median(r[key] for r in rs)


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50, help="clients per store (2x are registered)")
    ap.add_argument("--secs", type=float, default=15.0, help="seconds per phase")
    ap.add_argument("--rounds", type=int, default=1, help="the five phases this many times; medians")
    ap.add_argument("--window", type=int, default=1, help="messages in flight per client")
    ap.add_argument("--max", type=int, default=100000, help="messages per client per phase, at most")
    ap.add_argument("--kills", type=int, default=3, help="kill -9 of the serving instance, one after another")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds of load before each kill")
    ap.add_argument("--timeout", type=float, default=3.0, help="a client gives up waiting after this")
    ap.add_argument("--probe", type=float, default=0.02, help="seconds between the failover's probes")
    ap.add_argument("--retry", type=float, default=0.2, help="seconds before the next send after an error")
    ap.add_argument("--grace", type=float, default=10.0, help="seconds for late answers after the failover")
    ap.add_argument("--c2s-port", type=int, default=21222)
    ap.add_argument("--component-port", type=int, default=21347)
    ap.add_argument("--secret", default="bench-secret")
    ap.add_argument("--flush-batch", type=int, default=512)
    ap.add_argument("--ejabberd-dir", default="/tmp/tidemark-bench-cluster/ejabberd")
    ap.add_argument("--pg-dir", default="/tmp/tidemark-bench-cluster/pg")
    ap.add_argument("--workdir", default="/tmp/tidemark-bench-cluster/run")
    ap.add_argument("--tidemark", default=os.path.join(REPO, "target", "release", "tidemark"))
    args = ap.parse_args()
    n = args.clients - args.clients % 2
    os.makedirs(args.workdir, exist_ok=True)

    await register(args, 0, 2 * n)
    sled = Instance("sled", config("sled", 1, args, "sled"), args)
    pg = [Instance("pg-a", config("pg-a", 1, args, "postgres"), args),
          Instance("pg-b", config("pg-b", 2, args, "postgres"), args),
          Instance("pg-c", config("pg-c", 2, args, "postgres"), args)]
    meter = Meter(args, [sled, *pg])
    bench = Bench(args)
    ctx = e2e.ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = e2e.ssl.CERT_NONE
    sled_users = make_clients(bench, 0, n)
    pg_users = make_clients(bench, n, n)
    results = {}
    fo = []
    try:
        for rnd in range(args.rounds):
            sled.start()
            await sled.wait_log(r"connected to server")
            if rnd == 0:
                await login_and_subscribe(sled_users, ctx, "sled")
            else:
                await asyncio.sleep(1.0)  # its probes answered
            results.setdefault("direct", []).append(
                await run_phase(bench, sled_users, "direct", "direct", args, meter))
            results.setdefault("sled", []).append(
                await run_phase(bench, sled_users, "sled", "tidemark", args, meter))
            sled.stop()
            pg[0].start()
            await pg[0].wait_log(r"connected to server")
            if rnd == 0:
                await login_and_subscribe(pg_users, ctx, "postgres")
            else:
                await asyncio.sleep(1.0)
            results.setdefault("pg x1", []).append(
                await run_phase(bench, pg_users, "pg x1", "tidemark", args, meter))
            for k, inst in ((2, pg[1]), (3, pg[2])):
                inst.start()
                await inst.wait_log(r"standing by")
                results.setdefault(f"pg x{k}", []).append(
                    await run_phase(bench, pg_users, f"pg x{k}", "tidemark", args, meter))
            if rnd + 1 < args.rounds:
                for inst in reversed(pg):
                    inst.stop()
        if args.kills:
            fo = await failover(bench, pg_users, pg, args)
        rss = {i.name: e2e.peak_rss_mib(i.proc.pid) for i in pg if i.alive()}
    finally:
        for inst in [sled, *pg]:
            inst.stop()

    base = results["direct"]
    print()
    print(f"| {n} clients (half on each node), window {args.window}, {args.secs:.0f} s per phase, "
          f"{args.rounds} round(s), medians | messages/s to read | ratio to direct | p50 ms | p99 ms | "
          "CPU s per 1000 msgs: ejabberd (2 nodes) / tidemark (all) / PostgreSQL / clients |")
    print("|---|---|---|---|---|---|")
    names = {"direct": "direct, user to user through the cluster (baseline)",
             "sled": "through tidemark on sled, 1 instance",
             "pg x1": "through tidemark on PostgreSQL, 1 instance",
             "pg x2": "PostgreSQL, 2 instances (1 serving, 1 standing by)",
             "pg x3": "PostgreSQL, 3 instances (1 serving, 2 standing by)"}
    for key, label in names.items():
        rs = results[key]
        cpu = " / ".join(f"{statistics.median(r['cpu'][k] / max(r['done'], 1) * 1000 for r in rs):.2f}"
                         for k in ("ejabberd", "tidemark", "postgres", "clients"))
        print(f"| {label} | {med(rs, 'rate'):.0f} | {med(rs, 'rate') / med(base, 'rate'):.2f}x | "
              f"{med(rs, 'p50'):.1f} | {med(rs, 'p99'):.1f} | {cpu} |")
    for key in ("sled", "pg x1", "pg x2", "pg x3"):
        errs = sum(r["errors"] for r in results[key])
        if errs:
            print(f"({key}: {errs} errors)")
    if rss:
        print("peak RSS, MiB: " + ", ".join(f"{k} {v:.1f}" for k, v in rss.items()))
    if fo:
        print()
        print(f"failover: kill -9 of the serving instance under the same load (3 instances, PostgreSQL); "
              f"clients give up after {args.timeout:.0f} s, send again {args.retry} s after an error")
        print("| kill | killed -> serving | receipts flow again after, s | at risk (in flight at the kill + "
              "sent before the first marker) | read | error | lost silently | receipts/markers bounced |")
        print("|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(fo, 1):
            print(f"| {i} | {r['victim']} -> {r['taker']} | {r['gap']:.2f} | {r['at_risk']} ({r['in_flight']} + "
                  f"{r['at_risk'] - r['in_flight']}) | {r['read']} | {r['error']} | {r['silent']} | {r['peer']} |")
        print(f"| median | | {statistics.median(r['gap'] for r in fo):.2f} | "
              f"{statistics.median(r['at_risk'] for r in fo):.0f} | {statistics.median(r['read'] for r in fo):.0f} | "
              f"{statistics.median(r['error'] for r in fo):.0f} | {statistics.median(r['silent'] for r in fo):.0f} | "
              f"{statistics.median(r['peer'] for r in fo):.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
