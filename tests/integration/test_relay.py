"""1:1 chat through tracked addresses: alice -> bob\\40localhost@chat.localhost -> bob."""

from match import MARKABLE, RECEIPT_REQUEST, message
from stanzas import chat


async def test_chat_reaches_bob_from_alices_tracked_address_with_same_id(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1", body="hi bob"))
    got = await bob.expect(message(frm=alice.tracked_full, id="m1", type="chat"))
    assert got.to.split("/")[0] == bob.jid, got
    assert got.body == "hi bob"
    assert got.has(*RECEIPT_REQUEST) and got.has(*MARKABLE), got
    await bob.expect_nothing(message(id="m1"), within=0.5, what="m1 twice")


async def test_relay_adds_receipt_request_and_markable(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "plain1", body="no requests here", request=False, markable=False))
    got = await bob.expect(message(frm=alice.tracked_full, id="plain1"))
    assert got.has(*RECEIPT_REQUEST), got
    assert got.has(*MARKABLE), got


async def test_bob_replies_to_alices_tracked_address(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1", body="ping"))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))
    await bob.send(chat(alice.tracked, "r1", body="pong"))
    got = await alice.expect(message(frm=bob.tracked_full, id="r1", type="chat"))
    assert got.body == "pong"
    # ... and with alice's resource in the address too.
    await bob.send(chat(alice.tracked_full, "r2", body="pong again"))
    got = await alice.expect(message(frm=bob.tracked_full, id="r2"))
    assert got.body == "pong again"


async def test_conversation_both_ways_keeps_order(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    for i in range(5):
        await alice.send(chat(bob.tracked, f"o{i}", body=f"line {i}"))
    bodies = [(await bob.expect(message(frm=alice.tracked_full, type="chat"))).body for _ in range(5)]
    assert bodies == [f"line {i}" for i in range(5)]
