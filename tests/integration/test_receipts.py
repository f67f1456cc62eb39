"""Delivery: XEP-0184 receipts and XEP-0333 received markers, translated to what
the sender asked for."""

from match import MARKER_RECEIVED, RECEIPT, marker_for, message, receipt_for
from stanzas import chat, marker, receipt


async def test_xep0184_receipt_reaches_alice_and_marks_delivered(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1", request=True, markable=True))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))

    await bob.send(receipt(alice.tracked_full, "m1"))
    got = await alice.expect(receipt_for("m1", frm=bob.tracked_full))
    assert not got.has(*MARKER_RECEIVED), got

    st = await alice.status(bob.tracked, "m1")
    assert st.summary == "delivered", st.reply
    assert st[bob.jid].state == "delivered" and st[bob.jid].delivered, st.reply


async def test_markable_only_message_gets_a_received_marker_instead(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m2", request=False, markable=True))
    await bob.expect(message(frm=alice.tracked_full, id="m2"))

    await bob.send(receipt(alice.tracked_full, "m2"))
    got = await alice.expect(marker_for("received", "m2", frm=bob.tracked_full))
    assert not got.has(*RECEIPT), got
    assert (await alice.status(bob.tracked, "m2"))[bob.jid].state == "delivered"


async def test_older_clients_received_marker_counts_as_delivery(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m3", request=True, markable=True))
    await bob.expect(message(frm=alice.tracked_full, id="m3"))

    await bob.send(marker("received", alice.tracked_full, "m3"))
    # alice asked with <request/>, so she gets a XEP-0184 receipt.
    await alice.expect(receipt_for("m3", frm=bob.tracked_full))
    st = await alice.status(bob.tracked, "m3")
    assert st[bob.jid].state == "delivered" and st[bob.jid].delivered, st.reply


async def test_receipt_to_bare_tracked_address_works_too(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m4"))
    await bob.expect(message(frm=alice.tracked_full, id="m4"))
    await bob.send(receipt(alice.tracked, "m4"))
    await alice.expect(receipt_for("m4", frm=bob.tracked_full))
    assert (await alice.status(bob.tracked, "m4"))[bob.jid].state == "delivered"


async def test_receipt_for_a_message_that_asked_nothing_still_marks_delivered(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m5", request=False, markable=False))
    await bob.expect(message(frm=alice.tracked_full, id="m5"))
    await bob.send(receipt(alice.tracked_full, "m5"))
    # nothing waits on it (Sparkcentral): poll the status a few times.
    import asyncio
    for _ in range(20):
        st = await alice.status(bob.tracked, "m5")
        if st.recipients and st[bob.jid].state == "delivered":
            break
        await asyncio.sleep(0.1)
    assert st[bob.jid].state == "delivered", st.reply
