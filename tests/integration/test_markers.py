"""Read: a XEP-0333 displayed marker marks that message and every earlier one."""

from match import marker_for, message, receipt_for
from stanzas import chat, marker, receipt


async def test_displayed_marks_it_and_every_earlier_message_read(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    for mid in ("m1", "m2", "m3", "m4"):
        await alice.send(chat(bob.tracked, mid, body=f"text {mid}"))
        await bob.expect(message(frm=alice.tracked_full, id=mid))
    await bob.send(receipt(alice.tracked_full, "m1"))
    await alice.expect(receipt_for("m1", frm=bob.tracked_full))

    # XEP-0333 §3.2: displayed covers earlier messages of the conversation.
    await bob.send(marker("displayed", alice.tracked_full, "m3"))
    got = await alice.expect(marker_for("displayed", "m3", frm=bob.tracked_full))
    assert got.type in (None, "chat"), got

    for mid in ("m1", "m2", "m3"):
        st = await alice.status(bob.tracked, mid)
        assert st.summary == "read", (mid, st.reply)
        r = st[bob.jid]
        assert r.state == "read" and r.read, (mid, st.reply)
    m1 = (await alice.status(bob.tracked, "m1"))[bob.jid]
    assert m1.delivered, "m1 had a receipt: delivered must be kept"
    m2 = (await alice.status(bob.tracked, "m2"))[bob.jid]
    assert m2.delivered is None or m2.delivered <= m2.read, m2
    m4 = await alice.status(bob.tracked, "m4")
    assert m4[bob.jid].state == "sent", ("m4 came after the marker", m4.reply)
    # one marker relayed, not one per message covered
    await alice.expect_nothing(marker_for("displayed", "m1"), within=0.5)
    await alice.expect_nothing(marker_for("displayed", "m2"), within=0.1)


async def test_read_timestamps_are_ordered(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "t1"))
    await bob.expect(message(frm=alice.tracked_full, id="t1"))
    await bob.send(receipt(alice.tracked_full, "t1"))
    await alice.expect(receipt_for("t1", frm=bob.tracked_full))
    await bob.send(marker("displayed", alice.tracked_full, "t1"))
    await alice.expect(marker_for("displayed", "t1"))
    r = (await alice.status(bob.tracked, "t1"))[bob.jid]
    # XEP-0082 UTC timestamps compare as strings when formatted alike.
    assert r.sent <= r.delivered <= r.read, r


async def test_displayed_for_unmarkable_message_marks_read_without_relay(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "u1", request=False, markable=False))
    await bob.expect(message(frm=alice.tracked_full, id="u1"))
    await bob.send(marker("displayed", alice.tracked_full, "u1"))
    await alice.expect_nothing(marker_for("displayed", "u1"), what="a displayed marker alice did not ask for")
    assert (await alice.status(bob.tracked, "u1"))[bob.jid].state == "read"
