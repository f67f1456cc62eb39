#!/usr/bin/env python3
"""Which component connection gets which stanza: ejabberd's domain_balancing.

Several XEP-0114 connections under one component name (COMPONENT_JID) to the
nodes of an ejabberd cluster (scripts/ejabberd.sh cluster-start), users on
both nodes writing to many addresses at the component. Each connection is a
process of its own (so that kill -9 ends it as a crash would) that logs every
stanza it receives as a JSON line; the senders log every error they get back.
docs/ejabberd-balancing.md has the findings and the commands.

  balancing_probe.py spread  --components 127.0.0.1,127.0.0.2[,...] [--rounds 5]
  balancing_probe.py kill    --components 127.0.0.1,127.0.0.2 [--victim 0]
  balancing_probe.py none    (no component connected: what the senders get)
  balancing_probe.py component --host H --label L --out FILE   (one connection)

Senders: alice and bob (registered beforehand, password --password), each
logged in twice: resource n1 on node 1 (127.0.0.1), n2 on node 2 (127.0.0.2).
"""

import argparse
import asyncio
import collections
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time

import slixmpp
from slixmpp.componentxmpp import ComponentXMPP

NODE_IPS = {"n1": "127.0.0.1", "n2": "127.0.0.2"}


def env(name, default):
    return os.environ.get(name, default)


# --- one component connection ------------------------------------------------


def run_component(args):
    """Connects, prints READY, logs each incoming stanza until killed."""
    out = open(args.out, "a", buffering=1)
    xmpp = ComponentXMPP(args.jid, args.secret, args.host, args.port)

    def incoming(stanza):
        if stanza.name in ("message", "presence", "iq"):
            out.write(json.dumps({
                "t": time.time(), "conn": args.label, "kind": stanza.name,
                "type": stanza["type"], "from": str(stanza["from"]),
                "to": str(stanza["to"]), "id": stanza["id"],
            }) + "\n")
        return stanza

    xmpp.add_filter("in", incoming)
    xmpp.add_event_handler("session_start", lambda _: print("READY", flush=True))
    xmpp.add_event_handler("disconnected", lambda _: os._exit(2))
    xmpp.connect()
    asyncio.get_event_loop().run_forever()


class Components:
    """The component processes of one run, and what they logged."""

    def __init__(self, hosts, args, workdir):
        self.args, self.workdir = args, workdir
        self.procs, self.files, self.labels = [], [], []
        for host in hosts:
            self.add(host)

    def add(self, host):
        """One more connection to the node at host; returns once it is connected."""
        i = len(self.procs)
        label = f"c{i}@{'node1' if host == '127.0.0.1' else 'node2'}"
        path = os.path.join(self.workdir, f"c{i}.jsonl")
        a = self.args
        proc = subprocess.Popen(
            [sys.executable, __file__, "component", "--host", host, "--port", str(a.component_port),
             "--jid", a.jid, "--secret", a.secret, "--label", label, "--out", path],
            stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if line.strip() != "READY":
            proc.kill()
            raise SystemExit(f"component {label} did not connect (see the node's error.log)")
        self.procs.append(proc)
        self.files.append(path)
        self.labels.append(label)

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            p.wait()

    def received(self):
        rows = []
        for path in self.files:
            with open(path) as f:
                rows += [json.loads(line) for line in f if line.strip()]
        return rows


# --- senders -----------------------------------------------------------------


def no_verify():
    # certs/ holds a self-signed development certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Sender:
    def __init__(self, user, node, args):
        self.full = f"{user}@{args.domain}/{node}"
        self.node = node
        self.errors = []  # (time, kind, id, condition, text)
        self.x = slixmpp.ClientXMPP(self.full, args.password)
        self.x.ssl_context = no_verify()
        self.x.add_filter("in", self._incoming)
        self.ready = asyncio.Event()
        self.x.add_event_handler("session_start", self._start)
        self.host, self.port = NODE_IPS[node], args.c2s_port

    def _incoming(self, stanza):
        if stanza.name in ("message", "presence", "iq") and stanza["type"] == "error":
            err = stanza["error"]
            self.errors.append((time.time(), stanza.name, stanza["id"], err["condition"], err["text"]))
        return stanza

    async def _start(self, _):
        self.x.send_presence()
        await self.x.get_roster()
        self.ready.set()

    async def connect(self):
        self.x.connect(self.host, self.port)
        await asyncio.wait_for(self.ready.wait(), 20)

    def message(self, to, sid):
        m = self.x.make_message(mto=to, mbody="probe", mtype="chat")
        m["id"] = sid
        m.send()

    def presence(self, to, sid):
        p = self.x.make_presence(pto=to)
        p["id"] = sid
        p.send()

    def iq(self, to, sid):
        iq = self.x.make_iq_get(queryxmlns="jabber:iq:version", ito=to)
        iq["id"] = sid
        iq.send()

    async def close(self):
        self.x.disconnect()
        await asyncio.sleep(0.2)


async def senders(args):
    ss = [Sender(u, n, args) for u in ("alice", "bob") for n in ("n1", "n2")]
    await asyncio.gather(*(s.connect() for s in ss))
    return ss


def bare(jid):
    return jid.split("/", 1)[0]


# --- spread: who gets what ---------------------------------------------------


async def spread(args, comps):
    ss = await senders(args)
    targets = [f"x{i}@{args.jid}" for i in range(1, args.targets + 1)] + [args.jid]
    sent = []
    for r in range(args.rounds):
        for s in ss:
            for t in targets:
                sid = f"m|{s.full}|{t}|{r}"
                s.message(t, sid)
                sent.append(sid)
            for t in targets[:5]:
                sid = f"p|{s.full}|{t}|{r}"
                s.presence(t, sid)
                sent.append(sid)
                sid = f"i|{s.full}|{t}|{r}"
                s.iq(t, sid)
                sent.append(sid)
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)
    errors = [(s.full,) + e for s in ss for e in s.errors]
    for s in ss:
        await s.close()
    rows = [r for r in comps.received() if r["id"].startswith(("m|", "p|", "i|"))]
    report_spread(args, comps.labels, sent, rows, errors)


def groups_on_one_conn(rows, key):
    """How many groups (by key) reached exactly one connection, of how many."""
    conns = collections.defaultdict(set)
    for r in rows:
        conns[key(r)].add(r["conn"])
    return sum(1 for c in conns.values() if len(c) == 1), len(conns)


def report_spread(args, labels, sent, rows, errors):
    got = {r["id"] for r in rows}
    lost = [s for s in sent if s not in got]
    print(f"## {args.title}: {len(sent)} stanzas sent, {len(rows)} received, "
          f"{len(lost)} not received, {len(errors)} errors back to the senders")
    # Per sender node and kind: which connection.
    print("\n| sender on | kind | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    table = collections.Counter()
    for r in rows:
        node = r["from"].rsplit("/", 1)[-1]
        table[(node, r["kind"], r["conn"])] += 1
    for node in ("n1", "n2"):
        for kind in ("message", "presence", "iq"):
            cells = [str(table[(node, kind, c)]) for c in labels]
            print(f"| node {node[1]} | {kind} | " + " | ".join(cells) + " |")
    msgs = [r for r in rows if r["kind"] == "message"]
    print()
    for name, key in (
        ("bare destination (to, bare)", lambda r: bare(r["to"])),
        ("destination (to, full)", lambda r: r["to"]),
        ("bare source (from, bare)", lambda r: bare(r["from"])),
        ("source (from, full)", lambda r: r["from"]),
        ("sender node x bare destination", lambda r: (r["from"].rsplit("/", 1)[-1], bare(r["to"]))),
        ("(from, to) pair", lambda r: (r["from"], r["to"])),
    ):
        one, n = groups_on_one_conn(msgs, key)
        print(f"- messages grouped by {name}: {one} of {n} groups always on one connection")
    if lost:
        kinds = collections.Counter(s.split("|")[0] for s in lost)
        print(f"- not received, by kind: {dict(kinds)}; e.g. {lost[:3]}")
    if errors:
        conds = collections.Counter((e[2], e[4]) for e in errors)
        print(f"- errors back: {dict(conds)}")
    print()


# --- kill: one connection dies under a steady stream -------------------------


async def kill(args, comps):
    ss = await senders(args)
    sent = {}  # id -> time
    period = 1.0 / args.rate
    start = time.time()
    killed_at = respawned = None
    ready = []  # when the replacement connected
    seq = 0
    while time.time() - start < args.seconds:
        if killed_at is None and time.time() - start >= args.kill_after:
            comps.kill(args.victim)
            killed_at = time.time()
        if (killed_at is not None and args.respawn is not None and respawned is None
                and time.time() - killed_at >= args.respawn):
            # A replacement on the victim's node (as a supervisor would start).
            victim_host = args.components.split(",")[args.victim]
            respawned = time.time()
            # In the background: the stream goes on while it connects.
            fut = asyncio.get_running_loop().run_in_executor(None, comps.add, victim_host)
            fut.add_done_callback(lambda _: ready.append(time.time()))
        s = ss[seq % len(ss)]
        sid = f"m|{s.full}|{seq}"
        s.message(f"x{seq % args.targets + 1}@{args.jid}", sid)
        sent[sid] = time.time()
        seq += 1
        await asyncio.sleep(period)
    await asyncio.sleep(2)
    errors = [(s.full,) + e for s in ss for e in s.errors]
    for s in ss:
        await s.close()
    rows = {r["id"]: r for r in comps.received() if r["id"].startswith("m|")}
    victim = comps.labels[args.victim]
    err_ids = {e[3]: e for e in errors}
    print(f"## {args.title}: kill -9 of {victim} at +{args.kill_after:.1f} s, "
          f"{args.rate}/s messages from 4 senders to {args.targets} addresses")
    after = sorted((t, sid) for sid, t in sent.items() if t >= killed_at)
    to_victim_after = [sid for t, sid in after if sid in rows and rows[sid]["conn"] == victim]
    lost = [(t - killed_at, sid) for sid, t in sent.items() if sid not in rows and sid not in err_ids]
    bounced = [(sent[sid] - killed_at, e[4], e[5]) for sid, e in err_ids.items() if sid in sent]
    # When did the survivors take over: the first sent time from which every
    # message reached a live connection.
    first_ok = None
    for t, sid in after:
        ok = sid in rows and rows[sid]["conn"] != victim
        if ok and first_ok is None:
            first_ok = t - killed_at
        elif not ok:
            first_ok = None
    print(f"- sent {len(sent)}, {len(sent) - len(after)} before the kill, {len(after)} after")
    print(f"- received by the victim after the kill: {len(to_victim_after)}")
    print(f"- neither received nor bounced: {len(lost)}; sent at (s after kill): "
          f"{[round(x, 3) for x, _ in sorted(lost)][:20]}")
    print(f"- bounced to the sender: {len(bounced)}: {collections.Counter((b[1], b[2]) for b in bounced)}; "
          f"sent at (s after kill): {[round(b[0], 3) for b in sorted(bounced)][:20]}")
    print(f"- from {first_ok if first_ok is None else round(first_ok, 3)} s after the kill on, "
          f"every message reached a live connection")
    per = collections.Counter(rows[sid]["conn"] for _, sid in after if sid in rows)
    print(f"- after the kill, by connection: {dict(per)}")
    if respawned is not None:
        respawned_ready = ready[0]
        new_label = comps.labels[-1]
        firsts = [sent[sid] - killed_at for _, sid in after if sid in rows and rows[sid]["conn"] == new_label]
        late_lost = [x for x, _ in lost if x >= respawned_ready - killed_at]
        print(f"- replacement {new_label} started {respawned - killed_at:.3f} s after the kill, connected at "
              f"{respawned_ready - killed_at:.3f} s; got {len(firsts)} messages, the first sent at "
              f"{min(firsts) if firsts else float('nan'):.3f} s; lost after it connected: {len(late_lost)}")
    print()


# --- none: no component connected --------------------------------------------


async def none(args, _comps):
    ss = await senders(args)
    for s in ss[:2]:  # one sender per node
        for t in (f"x1@{args.jid}", args.jid):
            s.message(t, f"m|{s.full}|{t}")
            s.presence(t, f"p|{s.full}|{t}")
            s.iq(t, f"i|{s.full}|{t}")
    await asyncio.sleep(3)
    print(f"## {args.title}: no component connected")
    print("\n| sender | stanza | to | error back |")
    print("|---|---|---|---|")
    seen = set()
    for s in ss[:2]:
        errs = {e[2]: e for e in s.errors}
        for t in (f"x1@{args.jid}", args.jid):
            for k, kind in (("m", "message"), ("p", "presence"), ("i", "iq")):
                sid = f"{k}|{s.full}|{t}"
                e = errs.get(sid)
                seen.add(sid)
                what = f"{e[3]} ({e[4]!r})" if e else "none within 3 s"
                print(f"| {s.full} | {kind} | {t} | {what} |")
    for s in ss:
        await s.close()
    print()


# --- main ----------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["spread", "kill", "none", "component"])
    p.add_argument("--components", default="127.0.0.1,127.0.0.2",
                   help="one node address per component connection")
    p.add_argument("--title", default="run")
    p.add_argument("--jid", default=env("COMPONENT_JID", "chat.localhost"))
    p.add_argument("--secret", default=env("COMPONENT_SECRET", "s3cret"))
    p.add_argument("--domain", default=env("XMPP_DOMAIN", "localhost"))
    p.add_argument("--c2s-port", type=int, default=int(env("C2S_PORT", "18222")))
    p.add_argument("--component-port", type=int, default=int(env("COMPONENT_PORT", "18347")))
    p.add_argument("--password", default="probe")
    p.add_argument("--targets", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rate", type=int, default=200, help="kill: messages per second")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--kill-after", type=float, default=2.0)
    p.add_argument("--victim", type=int, default=0)
    p.add_argument("--respawn", type=float, help="kill: seconds after the kill to connect a replacement")
    # component mode
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--label")
    p.add_argument("--out")
    args = p.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    if args.mode == "component":
        return run_component(args)
    hosts = [h for h in args.components.split(",") if h] if args.mode != "none" else []
    with tempfile.TemporaryDirectory() as workdir:
        comps = Components(hosts, args, workdir)
        try:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete({"spread": spread, "kill": kill, "none": none}[args.mode](args, comps))
        finally:
            comps.stop()


if __name__ == "__main__":
    main()
