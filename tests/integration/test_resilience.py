"""Crashes and restarts: kill -9 keeps every status; tidemark reconnects when
Prosody restarts or was not there yet."""

import asyncio
import time

from match import marker_for, message, presence, receipt_for
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
    world.restart_prosody()
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
    world.stop_prosody()
    tm.start()
    await asyncio.sleep(2)
    assert tm.alive(), "tidemark exited while the server was unreachable:\n" + tm.log_text()[-2000:]
    assert "warn" in tm.log_text().lower(), "no warning logged:\n" + tm.log_text()[-2000:]
    world.start_prosody()
    started = time.monotonic()
    await world.wait_ready(timeout=40)
    assert time.monotonic() - started < 40
