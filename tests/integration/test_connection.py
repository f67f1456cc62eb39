"""The connection to the server, as its users and admins see it: a stanza over a
size limit is refused with policy-violation while everyone else's messages keep
flowing; SIGTERM answers what has arrived and exits 0; the wrong port, a second
tidemark under the same name and a store in use each say what is wrong and what
to do; the metrics endpoint counts what happened."""

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import BINARY, C2S_PORT, COMPONENT, DEEP_NESTING, EJABBERD, POSTGRES, Tidemark, sled_only, tidemark_toml
from match import message
from stanzas import chat

ATTACK_ID = "x" * (9 * 1024)


def oversized_id_message(to):
    """The issue's attack: a message with a 9 KB id (Prosody passes it on)."""
    return chat(to, ATTACK_ID, body="big id")


def deep_message(to, depth=DEEP_NESTING):
    """The issue's other attack: a body nested 20,000 elements deep (~140 KB;
    500 under ejabberd, which dies of 20,000 itself: conftest.DEEP_NESTING)."""
    return (f"<message type='chat' to='{to}' id='deep'><body>x</body>"
            f"<x xmlns='urn:example:deep'>{'<a>' * depth}{'</a>' * depth}</x></message>")


def is_policy_violation(key):
    return lambda st: st.error_condition == "policy-violation" and key in (st.error_text or "")


async def test_oversized_stanzas_are_refused_and_everyone_else_keeps_going(tm, world):
    alice, bob, mallory = await world.clients("alice", "bob", "mallory")
    await world.befriend(alice, bob)
    # Only this test's part of the log: an earlier test may have restarted
    # the server under the same tidemark (test_resilience runs first when
    # scripts/test.sh picks suites by name).
    log_from = len(tm.log_text())

    await mallory.send(oversized_id_message(bob.tracked))
    err = await mallory.expect(message(type="error", frm=bob.tracked,
                                       where=is_policy_violation("limits.max_attribute_bytes")))
    assert err.error_type == "modify", err
    await alice.send(chat(bob.tracked, "between"))
    await bob.expect(message(frm=alice.tracked_full, id="between"))

    await mallory.send(deep_message(bob.tracked))
    err = await mallory.expect(message(type="error", id="deep",
                                       where=is_policy_violation("limits.max_depth")))
    assert err.error_type == "modify", err

    # Nothing of either reached bob, and the connection never dropped.
    await bob.expect_nothing(message(id="deep"))
    await alice.send(chat(bob.tracked, "after"))
    await bob.expect(message(frm=alice.tracked_full, id="after"))
    assert tm.alive()
    assert "reconnect" not in tm.log_text()[log_from:].lower(), tm.log_text()[-3000:]


async def test_sigterm_answers_what_has_arrived_and_exits_0(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    ids = [f"t{i}" for i in range(20)]
    for mid in ids:
        await alice.send(chat(bob.tracked, mid))
    # Give slixmpp's send queue a moment to reach the socket, not tidemark.
    await asyncio.sleep(0.05)
    world.note("tidemark SIGTERM right after the sends")
    tm.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    while tm.alive() and time.monotonic() - started < 5:
        await asyncio.sleep(0.05)
    assert not tm.alive(), "tidemark did not exit within 5 s of SIGTERM:\n" + tm.log_text()[-3000:]
    assert tm.proc.returncode == 0, tm.log_text()[-3000:]
    assert "stream closed" in tm.log_text(), tm.log_text()[-3000:]

    for mid in ids:
        await bob.expect(message(frm=alice.tracked_full, id=mid))

    tm.start()
    await world.wait_ready(alice, timeout=20)
    for mid in ids:
        assert (await alice.status(bob.tracked, mid)).summary == "sent", mid


def test_the_c2s_port_as_component_server_says_to_use_the_component_port(world):
    status, out = world.run_tidemark_once(
        tidemark_toml(server=f"127.0.0.1:{C2S_PORT}", secret=world.secret, storage="db"))
    assert status == 2, out
    assert "client (c2s) port" in out, out
    assert "component_ports" in out and "5347" in out, out
    assert "add `Component" not in out, out


@pytest.mark.skipif(EJABBERD, reason="ejabberd accepts a second connection under the same component"
                    " name and spreads the traffic over both (domain_balancing): there is no conflict")
async def test_a_second_tidemark_under_the_same_name_exits_3_quoting_the_server(tm, world):
    await world.wait_ready()
    status, out = world.run_tidemark_once(tidemark_toml(secret=world.secret, storage="db"))
    assert status == 3, out
    assert "Component already connected" in out, out
    assert f"another process is connected as {COMPONENT}" in out, out
    assert "component.jid" in out, out
    assert tm.alive()


@pytest.mark.skipif(not EJABBERD, reason="the test Prosody has no mod_privilege (XEP-0356)")
async def test_the_servers_privilege_offer_is_taken_quietly(world):
    # config/ejabberd.yml.in grants the component a privilege so that
    # ejabberd sends its offer as tidemark connects; tidemark uses none and
    # must neither answer it with an error nor log it as invalid.
    tm = world.use_tidemark(Tidemark(world, f"priv{world.test_no}", level="debug"))
    await world.wait_ready()
    deadline = time.monotonic() + 5
    while "XEP-0356 privileges offered" not in tm.log_text() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    log = tm.log_text()
    assert "XEP-0356 privileges offered by the server" in log, log[-3000:]
    assert "invalid stanza dropped" not in log, log[-3000:]


@sled_only("sled's directory lock; two tidemarks on one PostgreSQL database are the leader lock's to settle")
async def test_a_store_in_use_says_so_for_serve_export_and_import(tm, world):
    await world.wait_ready()
    in_use = "is in use by another tidemark process; stop it or set storage.path to another directory"
    cfg_text = tidemark_toml(secret=world.secret, storage=str(tm.dir / "db"))
    status, out = world.run_tidemark_once(cfg_text)
    assert status == 4, out
    assert in_use in out, out
    assert "WouldBlock" not in out, out

    cfg = world.dir / f"in-use-{world.test_no}.toml"
    cfg.write_text(cfg_text)
    for args in (["--export", "-"], ["--import", str(cfg)]):
        res = subprocess.run([str(BINARY), "--config", str(cfg), *args], capture_output=True,
                             text=True, timeout=15, env={**os.environ, "NO_COLOR": "1"})
        assert res.returncode == 4, (args, res.stderr)
        assert in_use in res.stderr, (args, res.stderr)


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL-only: on sled the directory lock refuses it "
                    "(test_a_store_in_use_says_so_for_serve_export_and_import)")
async def test_an_import_into_a_database_a_tidemark_serves_is_refused(tm, world):
    """The serving tidemark answers from the rows it wrote and read itself:
    an import under it would go unseen, so it is refused, and says why."""
    await world.wait_ready()
    dump = world.dir / f"served-{world.test_no}.txt"
    run = dict(capture_output=True, text=True, timeout=30, env={**os.environ, "NO_COLOR": "1"})
    exported = subprocess.run([str(BINARY), "--config", str(tm.config), "--export", str(dump)], **run)
    assert exported.returncode == 0, exported.stderr
    imported = subprocess.run([str(BINARY), "--config", str(tm.config), "--import", str(dump)], **run)
    assert imported.returncode == 4, imported.stderr
    assert f"another tidemark serves {COMPONENT} from this PostgreSQL database" in imported.stderr, \
        imported.stderr
    assert tm.alive(), "the serving tidemark was not disturbed"


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL-only: sled's directory lock refuses any second "
                    "process (test_a_store_in_use_says_so_for_serve_export_and_import)")
async def test_a_second_component_on_the_tables_a_tidemark_serves_from_is_refused(tm, world):
    """A config copied for another component but left on the same database
    would mix two services' data under one tidemark's known rows: the
    second is refused at start, says why, and the first goes on serving."""
    await world.wait_ready()
    other = world.dir / f"other-component-{world.test_no}.toml"
    text = tm.config.read_text()
    assert f'jid = "{COMPONENT}"' in text
    other.write_text(text.replace(f'jid = "{COMPONENT}"', 'jid = "desk.localhost"', 1))
    res = subprocess.run([str(BINARY), "--config", str(other)], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "NO_COLOR": "1"})
    assert res.returncode == 4, res.stderr
    assert "another component is served from these tables" in res.stderr, res.stderr
    assert "give desk.localhost a database, or a schema, of its own" in res.stderr, res.stderr
    assert tm.alive(), "the serving tidemark was not disturbed"
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "after", "still served"))
    await bob.expect(message(frm=alice.tracked_full, id="after"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in:\n{text}")


async def test_metrics_count_stanzas_and_size_refusals(world):
    port = free_port()
    world.use_config(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    alice, bob, mallory = await world.clients("alice", "bob", "mallory")
    url = f"http://127.0.0.1:{port}/metrics"
    _, _, before = await asyncio.to_thread(scrape, url)

    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))
    await mallory.send(oversized_id_message(bob.tracked))
    await mallory.expect(message(type="error", where=is_policy_violation("limits.max_attribute_bytes")))

    status, ctype, after = await asyncio.to_thread(scrape, url)
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    for name in ('tidemark_stanzas_in_total{kind="message"}', 'tidemark_stanzas_out_total{kind="message"}',
                 'tidemark_refusals_total{reason="size"}', "tidemark_flush_seconds_count",
                 "tidemark_statuses_recorded_total", "tidemark_tracked_presences"):
        assert metric(after, name) > metric(before, name), name
    assert metric(after, 'tidemark_refusals_total{reason="size"}') - \
        metric(before, 'tidemark_refusals_total{reason="size"}') == 1

    try:
        await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/other")
        raise AssertionError("/other answered")
    except urllib.error.HTTPError as e:
        assert e.code == 404
