"""Crashes and restarts: kill -9 keeps every status; tidemark reconnects when
Prosody restarts or was not there yet."""

import asyncio
import re
import subprocess
import time

import pytest

from conftest import POSTGRES, Tidemark
from match import marker_for, message, presence, receipt_for
from sql import psql
from stanzas import chat, marker, receipt


def _view(st):
    return (st.summary, {j: vars(r) for j, r in st.recipients.items()})


async def test_kill_9_and_restart_keeps_every_status(tm, world):
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    await world.befriend(alice, bob)
    await world.befriend(alice, carol)
    for mid in ("m1", "m2", "m3"):
        await alice.send(chat(bob.tracked, mid))
        await bob.expect(message(frm=alice.tracked_full, id=mid))
    await bob.send(marker("displayed", alice.tracked_full, "m1"))  # m1 read
    await alice.expect(marker_for("displayed", "m1"))
    await bob.send(receipt(alice.tracked_full, "m2"))  # m2 delivered, m3 sent
    await alice.expect(receipt_for("m2"))
    await carol.disconnect()
    await asyncio.sleep(0.5)
    await alice.send(chat(carol.tracked, "f1"))  # f1 failed
    await alice.expect(message(id="f1", type="error"))

    convs = {"m1": bob.tracked, "m2": bob.tracked, "m3": bob.tracked, "f1": carol.tracked}
    before = {mid: _view(await alice.status(c, mid)) for mid, c in convs.items()}
    assert [before[m][0] for m in ("m1", "m2", "m3", "f1")] == ["read", "delivered", "sent", "failed"], before

    tm.kill9()
    tm.start()
    alice2 = await world.client("alice", resource="after")
    await world.wait_ready(alice2)
    after = {mid: _view(await alice2.status(c, mid)) for mid, c in convs.items()}
    assert after == before

    # the tidemark still moves on from where it was
    await bob.send(marker("displayed", alice.tracked_full, "m3"))
    for _ in range(30):
        st = await alice2.status(bob.tracked, "m3")
        if st.summary == "read":
            break
        await asyncio.sleep(0.1)
    assert st.summary == "read", st.reply
    assert (await alice2.status(bob.tracked, "m2")).summary == "read"


async def test_prosody_restart_is_survived(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))

    alice.abort()
    bob.abort()
    world.restart_server()
    alice, bob = await world.clients("alice", "bob")
    await world.wait_ready(alice, timeout=40)  # backoff is at most 30 s
    assert tm.alive()
    # bob's presence reaches tidemark again through the subscription
    await alice.expect(presence(frm=bob.tracked_full, type=False), timeout=10)
    await alice.send(chat(bob.tracked, "m2"))
    await bob.expect(message(frm=alice.tracked_full, id="m2"))
    assert (await alice.status(bob.tracked, "m1")).summary == "sent"


async def test_tidemark_waits_for_an_unreachable_server(tm, world):
    tm.stop()
    world.stop_server()
    tm.start()
    await asyncio.sleep(2)
    assert tm.alive(), "tidemark exited while the server was unreachable:\n" + tm.log_text()[-2000:]
    assert "warn" in tm.log_text().lower(), "no warning logged:\n" + tm.log_text()[-2000:]
    world.start_server()
    started = time.monotonic()
    await world.wait_ready(timeout=40)
    assert time.monotonic() - started < 40


async def test_a_backup_restored_into_a_new_store_keeps_every_status(tm, world):
    """--export of a stopped tidemark, --import into a new storage.path: the
    statuses are all there, and new messages carry on after them."""
    import subprocess
    from conftest import BINARY, Tidemark

    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    for mid in ("b1", "b2"):
        await alice.send(chat(bob.tracked, mid))
        await bob.expect(message(frm=alice.tracked_full, id=mid))
    await bob.send(marker("displayed", alice.tracked_full, "b1"))
    await alice.expect(marker_for("displayed", "b1"))
    before = {mid: _view(await alice.status(bob.tracked, mid)) for mid in ("b1", "b2")}

    tm.stop()
    dump = tm.dir / "backup.txt"
    out = subprocess.run([str(BINARY), "--config", str(tm.config), "--export", str(dump)],
                         cwd=tm.dir, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    restored = Tidemark(world, f"restored{world.test_no}")
    out = subprocess.run([str(BINARY), "--config", str(restored.config), "--import", str(dump)],
                         cwd=restored.dir, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # Importing twice would mix two stores: refused, with a reason.
    again = subprocess.run([str(BINARY), "--config", str(restored.config), "--import", str(dump)],
                           cwd=restored.dir, capture_output=True, text=True, timeout=30)
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr

    world.use_tidemark(restored)
    alice2 = await world.client("alice", resource="restored")
    await world.wait_ready(alice2)
    after = {mid: _view(await alice2.status(bob.tracked, mid)) for mid in ("b1", "b2")}
    assert after == before
    # Presence grants came back too: bob's probe answer makes him online
    # again, and a new message is tracked after the restored ones.
    await alice2.send(chat(bob.tracked, "b3"))
    await bob.expect(message(frm=alice2.tracked_full, id="b3"))
    await bob.send(marker("displayed", alice2.tracked_full, "b3"))
    await alice2.expect(marker_for("displayed", "b3"))
    assert (await alice2.status(bob.tracked, "b2")).summary == "read"


def _psql(tm, world, sql):
    """Runs `sql` in `tm`'s own database, as tidemark's role."""
    url = re.search(r'^url = "([^"]+)"', tm.config_text, re.M).group(1)
    psql(url, world.postgres.password_file.read_text().splitlines()[0], sql)


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL-only: a trigger in the database refuses the write")
async def test_a_batch_postgresql_refuses_is_not_relayed_and_the_service_starts_over(world):
    """A write PostgreSQL refuses after it was sent (here a trigger, as a
    constraint an admin added would) loses its whole batch: nothing of it
    is relayed (it would be relayed without its status), its sender is told
    to try again, tidemark says so and starts over from what the database
    holds, and serves again."""
    tm = world.use_tidemark(Tidemark(world, f"refusing{world.test_no}"))
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "before"))
    await bob.expect(message(frm=alice.tracked_full, id="before"))
    _psql(tm, world, """
        CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 'boom' THEN RAISE EXCEPTION 'refused by the test'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_boom BEFORE INSERT ON messages
            FOR EACH ROW EXECUTE FUNCTION refuse_boom();""")

    await alice.send(chat(bob.tracked, "boom", "the database refuses this one"))
    deadline = time.monotonic() + 15
    while "starting over" not in tm.log_text():
        assert time.monotonic() < deadline, tm.log_text()[-3000:]
        await asyncio.sleep(0.1)
    # The write was not waited for: what tidemark sees is the transaction
    # it aborted; PostgreSQL's own log names the statement and the reason.
    assert "the store rolled back the writes since the last flush" in tm.log_text(), \
        tm.log_text()[-3000:]
    err = await alice.expect(message(id="boom", type="error"))
    assert err.error_type == "wait" and err.error_condition == "internal-server-error", err.xml
    assert "try again" in (err.error_text or ""), err.xml
    await bob.expect_nothing(message(id="boom"), what="the message whose record was refused")
    assert tm.alive(), "started over in the same process"

    await world.wait_ready(alice)
    await alice.send(chat(bob.tracked, "after"))
    await bob.expect(message(frm=alice.tracked_full, id="after"))
    await bob.send(receipt(alice.tracked_full, "after"))
    await alice.expect(receipt_for("after"))
    assert (await alice.status(bob.tracked, "after")).summary == "delivered"
    assert (await alice.status(bob.tracked, "before")).summary == "sent"
    assert (await alice.status(bob.tracked, "boom")).error == "item-not-found"

    # A receipt in a batch PostgreSQL refuses: nothing is relayed, and its
    # sender is not told (bob's client sent it on its own and cannot send it
    # again; an error would show bob a failure of something he never did).
    await alice.send(chat(bob.tracked, "ack-me"))
    await bob.expect(message(frm=alice.tracked_full, id="ack-me"))
    _psql(tm, world, """
        CREATE FUNCTION refuse_ack() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 'ack-me' AND NEW.delivered_at IS NOT NULL THEN
                RAISE EXCEPTION 'refused by the test';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_ack BEFORE UPDATE ON messages
            FOR EACH ROW EXECUTE FUNCTION refuse_ack();""")
    started_over = tm.log_text().count("starting over")
    await bob.send(receipt(alice.tracked_full, "ack-me", msg_id="r-ack-me"))
    deadline = time.monotonic() + 15
    while tm.log_text().count("starting over") == started_over:
        assert time.monotonic() < deadline, tm.log_text()[-3000:]
        await asyncio.sleep(0.1)
    await bob.expect_nothing(message(id="r-ack-me", type="error"), what="an error for his receipt")
    await alice.expect_nothing(receipt_for("ack-me"), what="the receipt whose record was refused")
