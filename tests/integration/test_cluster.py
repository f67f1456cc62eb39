"""Several tidemarks for one component: an ejabberd cluster of two nodes over
one PostgreSQL (issue 12, README "Several instances").

Node 1 listens on 127.0.0.1, node 2 on 127.0.0.2 (scripts/ejabberd.sh
cluster-start); tidemark A connects to node 1, tidemark B to node 2, both to
one private PostgreSQL (scripts/postgres.sh). One serves the component, the
other stands by; alice is logged in on node 1, bob on node 2, so every status
crosses the cluster. Ports: TIDEMARK_IT_CLUSTER_C2S (19222),
TIDEMARK_IT_CLUSTER_COMPONENT (19347, distribution on + 1),
TIDEMARK_IT_CLUSTER_PG_PORT (15462).
"""

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CLUSTER, EJABBERD, REPO, Tidemark
from match import iq, message, receipt_for
from stanzas import COMPONENT, chat, receipt
from xmpp_client import Client

pytestmark = pytest.mark.skipif(
    not EJABBERD or CLUSTER,
    reason="starts an ejabberd cluster of its own: run by the test command's ejabberd pass")

C2S = os.environ.get("TIDEMARK_IT_CLUSTER_C2S", "19222")
COMPONENT_PORT = os.environ.get("TIDEMARK_IT_CLUSTER_COMPONENT", "19347")
PG_PORT = os.environ.get("TIDEMARK_IT_CLUSTER_PG_PORT", "15462")
NODES = {1: "127.0.0.1", 2: "127.0.0.2"}


def _run(script, *args, env=None):
    res = subprocess.run(["bash", str(REPO / "scripts" / script), *args], capture_output=True,
                         text=True, timeout=180, env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed ({res.returncode}):\n"
                           f"{res.stdout}\n{res.stderr}")
    return res


class Cluster:
    """The two ejabberd nodes and PostgreSQL, for the whole module."""

    def __init__(self, world):
        self.world = world
        self.dir = world.dir / "cluster"
        self.dir.mkdir(exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ejabberd_env = {"C2S_PORT": C2S, "COMPONENT_PORT": COMPONENT_PORT,
                             "COMPONENT_JID": COMPONENT, "COMPONENT_SECRET": world.secret}
        # Under /tmp: the postgres user must reach it (not so a clone in /root).
        self.pg_dir = Path(tempfile.mkdtemp(prefix="tidemark-cluster-pg.", dir="/tmp"))
        os.chmod(self.pg_dir, 0o755)
        self.users = {}

    def start(self):
        _run("postgres.sh", "start", str(self.pg_dir), env={"PG_PORT": PG_PORT})
        _run("ejabberd.sh", "cluster-start", str(self.dir / "ejabberd"), env=self.ejabberd_env)

    def stop(self):
        for args in (("ejabberd.sh", "cluster-stop", str(self.dir / "ejabberd")),
                     ("postgres.sh", "stop", str(self.pg_dir))):
            try:
                _run(*args, env=self.ejabberd_env)
            except RuntimeError as e:
                print(e)
        shutil.rmtree(self.pg_dir, ignore_errors=True)

    def instance(self, name, nodes):
        """A tidemark on PostgreSQL, connecting to the nodes' component ports in this order."""
        t = Tidemark(self.world, name)
        url = (self.pg_dir / "url").read_text().strip()
        servers = ", ".join(f'"{NODES[n]}:{COMPONENT_PORT}"' for n in nodes)
        t.config.write_text(f"""\
[component]
jid = "{COMPONENT}"
server = [{servers}]
secret = "{self.world.secret}"
reconnect_max_secs = 2

[storage]
backend = "postgres"
url = "{url}"
password_file = "{self.pg_dir / 'password'}"

[log]
level = "info"
""")
        return t

    async def client(self, name, node):
        """`name` of this test (alice -> alice7), registered on the cluster, logged in on `node`."""
        user = f"{name}{self.world.test_no}"
        if user not in self.users:
            self.users[user] = "pw-" + user
            _run("ejabberd.sh", "register", str(self.dir / "ejabberd"), user, self.users[user],
                 env=self.ejabberd_env)
        c = Client(name, user, self.users[user], f"{name}-n{node}", port=int(C2S), note=self.world.note,
                   host=NODES[node])
        self.world.clients_now.append(c)
        await c.connect()
        return c


@pytest.fixture(scope="module")
def cluster(world_session):
    c = Cluster(world_session)
    c.start()
    yield c
    c.stop()


@pytest.fixture
def instances(cluster, world):
    made = []

    def make(name, nodes):
        # A name of this test's own: the log of another test's "b" would
        # say that it served.
        t = cluster.instance(f"{name}{world.test_no}", nodes)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


async def _wait_log(t, pattern, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, t.log_text()):
            return
        assert t.alive(), f"tidemark[{t.name}] exited:\n{t.log_text()[-3000:]}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"tidemark[{t.name}] never logged {pattern!r}:\n{t.log_text()[-3000:]}")


async def _serving_and_standby(instances, first, second):
    """Two tidemarks: ("a", [nodes]) starts and serves, then the second
    starts and stands by."""
    a, b = instances(*first), instances(*second)
    a.start()
    await _wait_log(a, r"serving chat\.localhost")
    b.start()
    await _wait_log(b, r"another tidemark serves chat\.localhost .*standing by")
    return a, b


def _receipts(c: Client, seen: set):
    """Take the receipts `c` has received; their message ids go into `seen`."""
    kept = []
    for st in c.received:
        got = st.child("urn:xmpp:receipts", "received") if st.kind == "message" else None
        if got is not None:
            seen.add(got.get("id"))
        else:
            kept.append(st)
    c.received = kept


async def test_a_standby_takes_over_after_kill_9_under_load(cluster, instances, world):
    a, b = await _serving_and_standby(instances, ("a", [1]), ("b", [2]))
    alice = await cluster.client("alice", node=1)
    bob = await cluster.client("bob", node=2)
    await world.wait_ready(alice)
    await world.befriend(alice, bob)

    # bob's client acknowledges every message it gets, as a real one would.
    async def acknowledge():
        while True:
            for st in list(bob.received):
                if st.kind == "message" and st.frm == alice.tracked_full and st.id:
                    bob.received.remove(st)
                    await bob.send(receipt(alice.tracked_full, st.id))
            await asyncio.sleep(0.01)

    acker = asyncio.create_task(acknowledge())
    acked, sent_at = set(), {}
    killed_at = None
    first_after = None
    try:
        n = 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            n += 1
            mid = f"m{n}"
            sent_at[mid] = time.monotonic()
            await alice.send(chat(bob.tracked, mid))
            await asyncio.sleep(0.02)
            _receipts(alice, acked)
            if killed_at is None and len(acked) >= 30:
                killed_at = time.monotonic()
                a.kill9()
            if killed_at is not None:
                after = [m for m in acked if sent_at[m] > killed_at]
                if after and first_after is None:
                    first_after = time.monotonic()
                if len(after) >= 30:
                    break
        await asyncio.sleep(1)
        _receipts(alice, acked)
    finally:
        acker.cancel()

    assert killed_at is not None, f"only {len(acked)} receipts before the kill"
    assert first_after is not None, f"no receipt after the kill:\n{b.log_text()[-3000:]}"
    takeover = first_after - killed_at
    # The others: bounced while no tidemark was connected, or lost with A
    # (taken from its socket, not yet answered: the one in flight).
    bounced = {st.id for st in alice.received if st.kind == "message" and st.type == "error"}
    unanswered = set(sent_at) - acked - bounced
    figure = (f"sent {n}, acknowledged {len(acked)}, bounced {len(bounced)}, unanswered "
              f"{sorted(unanswered)}, first receipt {takeover:.2f} s after the kill")
    world.note(figure)
    print(f"\nfailover: {figure}")
    assert "serving chat.localhost" in b.log_text()
    assert takeover < 10, f"B served again only {takeover:.1f} s after A was killed"
    assert len(unanswered) <= 2, f"more than A can have had in flight: {figure}"

    # Nothing acknowledged is lost: every message alice had a receipt for is
    # delivered in the store B serves from, asked through the other node.
    for mid in sorted(acked, key=lambda m: int(m[1:])):
        st = await alice.status(bob.tracked, mid)
        assert st.summary in ("delivered", "read"), (mid, st.reply)

    # And B goes on serving both nodes' users.
    await alice.send(chat(bob.tracked, "last"))
    await asyncio.sleep(0.5)
    _receipts(alice, acked)
    for st in list(bob.received):
        if st.kind == "message" and st.id == "last":
            await bob.send(receipt(alice.tracked_full, "last"))
    got = await alice.expect(message(frm=bob.tracked_full,
                                     where=lambda s: s.has("urn:xmpp:receipts", "received")))
    assert got.child("urn:xmpp:receipts", "received").get("id") == "last"


async def test_a_second_instance_on_the_same_database_stands_by(cluster, instances, world):
    a, b = await _serving_and_standby(instances, ("one", [1]), ("two", [1]))
    alice = await cluster.client("alice", node=2)
    await world.wait_ready(alice)
    # Only A is connected: ejabberd would otherwise split the traffic between
    # two stores' worth of state (docs/ejabberd-balancing.md).
    assert "connected to server" in a.log_text()
    assert "connected to server" not in b.log_text()
    # A stops cleanly (SIGTERM): B takes over as well.
    a.stop()
    await _wait_log(b, r"serving chat\.localhost")
    qid = alice.new_id("disco")
    deadline = time.monotonic() + 10
    while True:
        await alice.send(f"<iq type='get' to='{COMPONENT}' id='{qid}'>"
                         "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        reply = await alice.expect(iq(id=qid))
        if reply.type == "result" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert reply.type == "result", reply.raw


async def test_the_serving_tidemark_moves_to_the_next_node_when_its_node_goes_down(
        cluster, instances, world):
    a, b = await _serving_and_standby(instances, ("a", [1, 2]), ("b", [2, 1]))
    await _wait_log(a, r"connected to server server=127\.0\.0\.1")
    alice = await cluster.client("alice", node=2)
    bob = await cluster.client("bob", node=2)
    await world.wait_ready(alice)
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))

    node1 = str(cluster.dir / "ejabberd" / "node1")
    _run("ejabberd.sh", "stop", node1, env=cluster.ejabberd_env)
    try:
        await _wait_log(a, r"connected to server server=127\.0\.0\.2")
        # Still A: it kept its session with the store, so B stays a standby.
        assert "serving chat.localhost" not in b.log_text()
        await world.wait_ready(alice)
        await bob.send(receipt(alice.tracked_full, "m1"))
        await alice.expect(receipt_for("m1"))
        await alice.send(chat(bob.tracked, "m2"))
        await bob.expect(message(frm=alice.tracked_full, id="m2"))
        assert (await alice.status(bob.tracked, "m1")).summary == "delivered"
        assert (await alice.status(bob.tracked, "m2")).summary == "sent"
    finally:
        _run("ejabberd.sh", "cluster-start", str(cluster.dir / "ejabberd"), env=cluster.ejabberd_env)
