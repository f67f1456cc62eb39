#!/usr/bin/env python3
"""Scenario 2 of tidemark-bench: end to end through a real Prosody.

N real XMPP clients (STARTTLS, SASL PLAIN, resource binding; a lean asyncio
client, so the client side spends as little CPU as it can) log in to the
Prosody that scripts/prosody-bench.sh started, in N/2 pairs. Each client sends
messages to its partner with a XEP-0184 receipt request and a XEP-0333
markable; the partner answers every message at once with a receipt and a
displayed marker. A send is complete when the sender gets the displayed marker
("read" status). Two paths, same clients, same Prosody, same run:

  direct    user0@localhost -> user1@localhost
  tidemark  user0@localhost -> user1\\40localhost@chat.localhost -> tidemark
            -> user1@localhost, and the receipt and marker back the same way

Every phase is bounded in time (--secs) and in messages per client (--max).
Prints messages per second and p50/p99 send-to-read latency for both paths
and the ratio, plus the CPU each process used, to show what bounds the figure.
"""
import argparse
import asyncio
import base64
import os
import ssl
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

STREAM = "{http://etherx.jabber.org/streams}"
CLIENT = "{jabber:client}"
RECEIPTS = "urn:xmpp:receipts"
MARKERS = "urn:xmpp:chat-markers:0"
DOMAIN = "localhost"
COMPONENT = "chat.localhost"
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


def tracked(bare):
    return bare.replace("@", "\\40") + "@" + COMPONENT


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, round(p / 100 * (len(sorted_vals) - 1)))]


class Client:
    def __init__(self, n, bench, host="127.0.0.1"):
        self.n = n
        # The server node this client logs in to (scripts/cluster_bench.py
        # spreads clients over an ejabberd cluster's two addresses).
        self.host = host
        self.bare = f"user{n}@{DOMAIN}"
        self.partner = f"user{n ^ 1}@{DOMAIN}"
        self.bench = bench
        self.queue = []
        self.waiter = None
        self.pending = {}  # id -> send time
        self.granted = asyncio.Event()
        self.done = None
        self.sent = 0
        self.errors = 0

    # --- stream plumbing -------------------------------------------------
    def new_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.root = None

    def feed(self, data):
        self.parser.feed(data)
        for ev, el in self.parser.read_events():
            if ev == "start":
                if self.depth == 0:
                    self.root = el
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.root.remove(el)
                    self.queue.append(el)
                elif self.depth == 0:
                    self.queue.append(None)  # stream closed

    async def next(self, timeout=20):
        while not self.queue:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError(f"{self.bare}: closed")
            self.feed(data)
        el = self.queue.pop(0)
        if el is None:
            raise ConnectionError(f"{self.bare}: stream closed")
        return el

    def send(self, text):
        self.writer.write(text.encode())

    async def login(self, ctx):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.bench.port)
        self.new_parser()
        self.send(HEADER)
        feats = await self.next()
        assert feats.tag == STREAM + "features", feats.tag
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        proceed = await self.next()
        assert proceed.tag.endswith("proceed"), proceed.tag
        await self.writer.start_tls(ctx, server_hostname=DOMAIN)
        self.new_parser()
        self.send(HEADER)
        await self.next()  # features with mechanisms
        cred = base64.b64encode(f"\0user{self.n}\0pw".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{cred}</auth>")
        ok = await self.next()
        assert ok.tag.endswith("success"), f"{self.bare}: {ok.tag}"
        self.new_parser()
        self.send(HEADER)
        await self.next()  # features with bind
        self.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  "<resource>r</resource></bind></iq>")
        res = await self.next()
        assert res.get("type") == "result", f"{self.bare}: bind {res.get('type')}"
        # Ask for the roster so Prosody counts this resource as interested
        # and passes subscription requests and approvals to it.
        self.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
        res = await self.next()
        assert res.get("type") == "result", f"{self.bare}: roster {res.get('type')}"
        self.check_roster(res)
        self.send("<presence/>")
        await self.writer.drain()
        self.task = asyncio.create_task(self.read_loop())

    async def read_loop(self):
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                self.feed(data)
                while self.queue:
                    el = self.queue.pop(0)
                    if el is None:
                        return
                    self.on_stanza(el)
        except (ConnectionError, asyncio.CancelledError):
            return

    # --- behaviour -------------------------------------------------------
    def on_stanza(self, el):
        if os.environ.get("E2E_DEBUG"):
            print(self.bare, "<-", ET.tostring(el, encoding="unicode")[:400], flush=True)
        tag = el.tag
        frm = el.get("from", "")
        if tag == CLIENT + "message":
            if el.get("type") == "error":
                self.errors += 1
                self.bench.errors.append(ET.tostring(el, encoding="unicode")[:300])
                return
            mid = el.get("id")
            if el.find(CLIENT + "body") is not None and el.find(f"{{{RECEIPTS}}}request") is not None:
                # The app is open on this chat: delivered and read at once.
                to = quoteattr(frm)
                qid = quoteattr(mid or "")
                self.send(f"<message to={to} id={quoteattr('r' + (mid or ''))} type='chat'>"
                          f"<received xmlns='{RECEIPTS}' id={qid}/></message>"
                          f"<message to={to} id={quoteattr('d' + (mid or ''))} type='chat'>"
                          f"<displayed xmlns='{MARKERS}' id={qid}/></message>")
                return
            d = el.find(f"{{{MARKERS}}}displayed")
            if d is not None:
                t0 = self.pending.pop(d.get("id"), None)
                if t0 is not None:
                    self.bench.latencies.append(time.perf_counter() - t0)
                    self.send_next()
        elif tag == CLIENT + "presence":
            typ = el.get("type")
            if typ == "subscribe":
                self.send(f"<presence type='subscribed' to={quoteattr(frm.split('/')[0])}/>")
            elif typ == "subscribed" and frm.split("/")[0] == tracked(self.partner):
                self.granted.set()
        elif tag == CLIENT + "iq" and el.get("type") in ("get", "set"):
            self.check_roster(el)
            self.send(f"<iq type='result' id={quoteattr(el.get('id', ''))} to={quoteattr(frm)}/>")

    def check_roster(self, iq):
        # The partner lets us see their presence: an approval came back, or
        # the roster already says so (Prosody does not pass on an approval
        # that changes nothing).
        for item in iq.iter("{jabber:iq:roster}item"):
            if item.get("jid") == tracked(self.partner) and item.get("subscription") in ("to", "both"):
                self.granted.set()

    def message_id(self):
        return f"{self.bench.path[0]}{self.n}-{self.sent}"

    def sending(self, mid):
        """Records `mid` as sent now (a subclass may record more)."""
        self.pending[mid] = time.perf_counter()

    def send_next(self):
        b = self.bench
        if b.stop or self.sent >= b.max_per_client:
            if not self.pending and self.done and not self.done.done():
                self.done.set_result(None)
            return
        self.sent += 1
        mid = self.message_id()
        to = self.partner if b.path == "direct" else tracked(self.partner)
        self.sending(mid)
        self.send(f"<message to={quoteattr(to)} id='{mid}' type='chat'><body>Bench message {self.sent} "
                  f"from {self.bare}: the tide is in.</body><request xmlns='{RECEIPTS}'/>"
                  f"<markable xmlns='{MARKERS}'/></message>")


class Bench:
    def __init__(self, args):
        self.port = args.port
        self.max_per_client = args.max
        self.latencies = []
        self.errors = []
        self.stop = False
        self.path = "direct"


async def login_and_subscribe(clients, ctx, what, where=""):
    """Logs `clients` in, then subscribes each to its partner's tracked
    address (setup, not timed); `where` is said after the login count."""
    t = time.perf_counter()
    sem = asyncio.Semaphore(25)

    async def login(c):
        async with sem:
            await c.login(ctx)
    await asyncio.gather(*(login(c) for c in clients))
    print(f"{what}: {len(clients)} clients logged in over STARTTLS in "
          f"{time.perf_counter() - t:.1f}s{where}", flush=True)
    t = time.perf_counter()
    for c in clients:
        c.send(f"<presence type='subscribe' to={quoteattr(tracked(c.partner))}/>")
    try:
        await asyncio.wait_for(asyncio.gather(*(c.granted.wait() for c in clients)), 60)
    except asyncio.TimeoutError:
        sys.exit(f"{what}: only {sum(c.granted.is_set() for c in clients)} of {len(clients)} grants arrived")
    # Come online again now that the grants exist, so tidemark sees every
    # partner's presence after the grant that lets it count.
    for c in clients:
        c.send("<presence/>")
    await asyncio.sleep(1.0)
    print(f"{what}: subscriptions through tidemark in {time.perf_counter() - t:.1f}s", flush=True)


async def run_phase(bench, clients, path, secs, window, pids):
    bench.path = path
    bench.stop = False
    bench.latencies = []
    bench.errors = []
    loop = asyncio.get_running_loop()
    for c in clients:
        c.sent = 0
        c.pending.clear()
        c.done = loop.create_future()
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    for c in clients:
        for _ in range(window):
            c.send_next()
    await asyncio.sleep(secs)
    bench.stop = True
    elapsed = time.perf_counter() - t0
    n_done = len(bench.latencies)
    lat = sorted(bench.latencies)
    # Let the in-flight ones finish (bounded) so the next phase starts clean.
    await asyncio.wait([c.done for c in clients], timeout=10)
    cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
    lost = sum(len(c.pending) for c in clients)
    return {
        "path": path, "done": n_done, "secs": elapsed, "rate": n_done / elapsed,
        "p50": pct(lat, 50) * 1e3, "p99": pct(lat, 99) * 1e3, "errors": len(bench.errors),
        "lost": lost, "cpu": cpu, "error_sample": bench.errors[:2],
    }


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--secs", type=float, default=15.0)
    ap.add_argument("--window", type=int, default=1, help="messages in flight per client")
    ap.add_argument("--max", type=int, default=100000, help="messages per client per phase, at most")
    ap.add_argument("--port", type=int, default=35222)
    ap.add_argument("--component-port", type=int, default=35347)
    ap.add_argument("--secret", default="bench-secret")
    ap.add_argument("--tidemark", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "tidemark"))
    ap.add_argument("--workdir", default="/tmp/tidemark-bench-e2e")
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--flush-batch", type=int, default=512)
    ap.add_argument("--rate", type=float, default=1e9,
                    help="limits.rate_per_second for tidemark (default: lifted)")
    args = ap.parse_args()
    n = args.clients - args.clients % 2

    prosody_pid = int(open("/tmp/tidemark-bench-prosody/prosody.pid").read().strip())
    os.makedirs(args.workdir, exist_ok=True)
    store = os.path.join(args.workdir, f"store-{os.getpid()}")
    cfg = os.path.join(args.workdir, "tidemark.toml")
    tm_log = os.environ.get("TM_LOG", "warn")
    with open(cfg, "w") as f:
        f.write(f'[component]\njid = "{COMPONENT}"\nserver = "127.0.0.1:{args.component_port}"\n'
                f'secret = "{args.secret}"\n\n[storage]\npath = "{store}"\ncache_mb = {args.cache_mb}\n'
                f'flush_batch = {args.flush_batch}\n\n'
                # Each client sends as fast as it is answered, far above a
                # person's pace: the per-sender rate limit would measure
                # refusals, not throughput (--rate to try it).
                f'[limits]\nrate_per_second = {args.rate}\nrate_burst = 1000000\n\n'
                f'[log]\nlevel = "{tm_log}"\n')
    log = open(os.path.join(args.workdir, "tidemark.log"), "w")
    tm = subprocess.Popen([args.tidemark, "--config", cfg], stdout=subprocess.DEVNULL, stderr=log)
    try:
        await asyncio.sleep(1.0)
        if tm.poll() is not None:
            sys.exit(f"tidemark exited: {open(os.path.join(args.workdir, 'tidemark.log')).read()}")
        bench = Bench(args)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        clients = [Client(i, bench) for i in range(n)]
        await login_and_subscribe(clients, ctx, "setup")

        pids = {"prosody": prosody_pid, "tidemark": tm.pid, "clients": os.getpid()}
        results = []
        for path in ("direct", "tidemark"):
            r = await run_phase(bench, clients, path, args.secs, args.window, pids)
            results.append(r)
            cpu = ", ".join(f"{k} {v:.1f}s" for k, v in r["cpu"].items())
            print(f"{path}: {r['done']} read in {r['secs']:.1f}s = {r['rate']:.0f} msg/s, p50 {r['p50']:.1f} ms, "
                  f"p99 {r['p99']:.1f} ms, errors {r['errors']}, unanswered {r['lost']}; CPU {cpu}", flush=True)
            for e in r["error_sample"]:
                print("  error:", e)
        d, t_ = results
        print()
        print(f"| N = {n}, window {args.window}/client, {args.secs:.0f} s per path | direct (baseline) | through tidemark | tidemark / direct |")
        print("|---|---|---|---|")
        print(f"| messages/s (to read status) | {d['rate']:.0f} | {t_['rate']:.0f} | {t_['rate'] / d['rate']:.2f}x |")
        print(f"| p50 send-to-read, ms | {d['p50']:.1f} | {t_['p50']:.1f} | {t_['p50'] / d['p50']:.2f}x |")
        print(f"| p99 send-to-read, ms | {d['p99']:.1f} | {t_['p99']:.1f} | {t_['p99'] / d['p99']:.2f}x |")
        for k in pids:
            print(f"| CPU s of {k} per 1000 messages | {d['cpu'][k] / d['done'] * 1000:.2f} | "
                  f"{t_['cpu'][k] / t_['done'] * 1000:.2f} | |")
        print(f"| tidemark peak RSS, MiB | | {peak_rss_mib(tm.pid):.1f} | |")
    finally:
        tm.kill()
        tm.wait()


if __name__ == "__main__":
    asyncio.run(main())
