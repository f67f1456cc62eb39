"""Federation: tidemark on one server, a contact on another, over real s2s.

Two servers on loopback, each with its own s2s address (one.test on
127.0.0.2, two.test on 127.0.0.3), resolving each other through a hosts file
only, dialback between them. tidemark is chat.one.test on one.test's server.
alice@one.test is local to tidemark; bob@two.test reaches it over s2s, as a
user of another server would.

two.test is always a Prosody. one.test is the server the suite runs against:
a Prosody, an ejabberd (TIDEMARK_IT_SERVER=ejabberd), or a two-node ejabberd
cluster (ejabberd-cluster: s2s on each node's own address, the hosts file
naming node 1, alice on node 1 and tidemark on node 2: two.test's stanzas
come in at node 1 and cross the cluster to tidemark, tidemark's go out to
two.test from node 2, and two.test checks node 2's dialback keys by asking
node 1).
"""

import os
import secrets
import subprocess

import pytest

from conftest import CLUSTER, CLUSTER_NODES, EJABBERD, PROSODY_SH, REPO, Tidemark
from match import message, presence, receipt_for, marker_for
from stanzas import chat, marker, receipt, status_query, subscribe, subscribed, tracked
from xmpp_client import Client, parse_status

EJABBERD_SH = REPO / "scripts" / "ejabberd.sh"

ONE, TWO = "one.test", "two.test"
COMPONENT = "chat.one.test"
# TIDEMARK_IT_FED_{ONE,TWO}_{C2S,COMPONENT,ADDR} move a copy of the suite
# out of another's way (s2s always listens on port 5269 of ADDR).
def _fed(server, key, default):
    return os.environ.get(f"TIDEMARK_IT_FED_{server}_{key}", default)


SERVERS = {
    # A cluster's nodes each listen for s2s on their own address; the hosts
    # file names node 1's.
    ONE: {"C2S_PORT": _fed("ONE", "C2S", "16222"), "COMPONENT_PORT": _fed("ONE", "COMPONENT", "16347"),
          "S2S_ADDR": CLUSTER_NODES[0] if CLUSTER else _fed("ONE", "ADDR", "127.0.0.2"),
          "COMPONENT_JID": COMPONENT},
    TWO: {"C2S_PORT": _fed("TWO", "C2S", "17222"), "COMPONENT_PORT": _fed("TWO", "COMPONENT", "17347"),
          "S2S_ADDR": _fed("TWO", "ADDR", "127.0.0.3"), "COMPONENT_JID": "chat.two.test"},
}


class Federation:
    def __init__(self, world):
        self.world = world
        self.dir = world.dir / "federation"
        self.dir.mkdir(exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.hosts = self.dir / "hosts"
        self.hosts.write_text(f"{SERVERS[ONE]['S2S_ADDR']} {ONE} {COMPONENT}\n"
                              f"{SERVERS[TWO]['S2S_ADDR']} {TWO} chat.two.test\n")
        os.chmod(self.hosts, 0o644)
        self.secret = "fed-" + secrets.token_hex(8)
        self.n = 0

    def server(self, domain, command, *args):
        """scripts/prosody.sh for two.test; for one.test, the script of the
        server the suite runs against (a cluster's commands for a cluster)."""
        script = EJABBERD_SH if domain == ONE and EJABBERD else PROSODY_SH
        if domain == ONE and CLUSTER and command in ("start", "stop"):
            command = f"cluster-{command}"
        env = {**os.environ, **SERVERS[domain], "XMPP_DOMAIN": domain,
               "HOSTS_FILE": str(self.hosts), "COMPONENT_SECRET": self.secret}
        res = subprocess.run(["bash", str(script), command, str(self.dir / domain), *args],
                             env=env, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{script.name} {command}: {res.stdout}\n{res.stderr}")

    def start(self):
        for domain in (ONE, TWO):
            self.server(domain, "start")
        node = CLUSTER_NODES[1] if CLUSTER else "127.0.0.1"
        self.tidemark = Tidemark(self.world, "federation", jid=COMPONENT,
                                 server=f"{node}:{SERVERS[ONE]['COMPONENT_PORT']}",
                                 secret=self.secret)
        self.tidemark.start()

    def stop(self):
        self.tidemark.stop()
        for domain in (ONE, TWO):
            self.server(domain, "stop")

    async def client(self, name, domain) -> Client:
        self.n += 1
        user, password = f"{name}{self.n}", "pw-" + secrets.token_hex(4)
        self.server(domain, "register", user, password)
        c = Client(name, user, password, f"{name}res", port=int(SERVERS[domain]["C2S_PORT"]),
                   note=self.world.note, domain=domain)
        c.tracked = tracked(c.jid, COMPONENT)
        c.tracked_full = f"{c.tracked}/{c.resource}"
        self.world.clients_now.append(c)
        await c.connect()
        return c

    async def befriend(self, a: Client, b: Client):
        """Each subscribes to the other's tracked address and the other approves."""
        for x, y in ((a, b), (b, a)):
            await x.send(subscribe(y.tracked))
            await y.expect(presence(frm=x.tracked, type="subscribe"), timeout=15)
            await y.send(subscribed(x.tracked))
            await x.expect(presence(frm=y.tracked, type="subscribed"), timeout=15)
        await a.expect(presence(frm=b.tracked_full, type=False), timeout=15)
        await b.expect(presence(frm=a.tracked_full, type=False), timeout=15)

    async def status(self, client: Client, conversation, msg_id):
        qid = client.new_id("status")
        reply = await client.request(status_query(qid, conversation, msg_id, to=COMPONENT), qid,
                                     timeout=15)
        return parse_status(reply)


@pytest.fixture(scope="module")
def federation(world_session):
    fed = Federation(world_session)
    fed.start()
    yield fed
    fed.stop()


async def test_a_contact_on_another_server_gets_the_message_and_its_status_comes_back(federation, world):
    alice = await federation.client("alice", ONE)
    bob = await federation.client("bob", TWO)
    await federation.befriend(alice, bob)

    await alice.send(chat(bob.tracked, "f1", request=True, markable=True))
    got = await bob.expect(message(frm=alice.tracked_full, id="f1"), timeout=15)
    assert got.child("jabber:client", "body").text == "hello"

    await bob.send(receipt(alice.tracked_full, "f1"))
    await alice.expect(receipt_for("f1", frm=bob.tracked_full), timeout=15)
    await bob.send(marker("displayed", alice.tracked_full, "f1"))
    await alice.expect(marker_for("displayed", "f1", frm=bob.tracked_full), timeout=15)

    st = await federation.status(alice, bob.tracked, "f1")
    assert st.summary == "read", st.reply
    assert st[bob.jid].delivered and st[bob.jid].read, st.reply


async def test_a_user_of_another_server_writes_through_tidemark_and_asks_for_status(federation, world):
    alice = await federation.client("alice", ONE)
    bob = await federation.client("bob", TWO)
    await federation.befriend(alice, bob)

    # bob's message crosses s2s to the component, then goes to alice.
    await bob.send(chat(alice.tracked, "r1", request=True, markable=False))
    await alice.expect(message(frm=bob.tracked_full, id="r1"), timeout=15)
    await alice.send(receipt(bob.tracked_full, "r1"))
    await bob.expect(receipt_for("r1", frm=alice.tracked_full), timeout=15)

    # The status query is an iq from two.test to chat.one.test, over s2s.
    st = await federation.status(bob, alice.tracked, "r1")
    assert st.summary == "delivered", st.reply
    # alice is not the sender: the same query from her is refused.
    st = await federation.status(alice, bob.tracked, "r1")
    assert st.error == "forbidden", st.reply


async def test_a_remote_contact_who_went_offline_is_refused_with_a_reason(federation, world):
    alice = await federation.client("alice", ONE)
    bob = await federation.client("bob", TWO)
    await federation.befriend(alice, bob)

    await bob.disconnect()
    await alice.expect(presence(frm=bob.tracked_full, type="unavailable"), timeout=15)
    await alice.send(chat(bob.tracked, "f2"))
    err = await alice.expect(message(frm=bob.tracked, id="f2", type="error"), timeout=15)
    assert err.error_condition == "recipient-unavailable", err
    assert err.error_text == f"{bob.jid} is offline; the message was not delivered.", err
    st = await federation.status(alice, bob.tracked, "f2")
    assert st[bob.jid].state == "failed", st.reply
