"""Only a message's recipient can mark it: markers and receipts from anyone else,
for unknown ids, for another conversation, or that move nothing, change nothing
and are not relayed."""

from match import any_mention_of, marker_for, message, receipt_for
from stanzas import chat, marker, receipt


async def _sent(alice, bob, mid):
    await alice.send(chat(bob.tracked, mid))
    await bob.expect(message(frm=alice.tracked_full, id=mid))


async def test_marker_from_someone_else_changes_nothing(tm, world):
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    await world.befriend(alice, bob)
    await world.befriend(alice, carol)
    await _sent(alice, bob, "m1")
    before = (await alice.status(bob.tracked, "m1"))[bob.jid]

    # carol is not m1's recipient
    await carol.send(receipt(alice.tracked_full, "m1"))
    await carol.send(marker("displayed", alice.tracked_full, "m1"))
    await alice.expect_nothing(any_mention_of("m1"))
    after = (await alice.status(bob.tracked, "m1"))[bob.jid]
    assert after == before and after.state == "sent"


async def test_sender_cannot_mark_her_own_message(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await _sent(alice, bob, "m1")
    await alice.send(marker("displayed", bob.tracked_full, "m1"))
    await alice.send(receipt(bob.tracked_full, "m1"))
    await bob.expect_nothing(any_mention_of("m1"))
    assert (await alice.status(bob.tracked, "m1"))[bob.jid].state == "sent"


async def test_unknown_ids_change_nothing(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await _sent(alice, bob, "m1")
    await bob.send(receipt(alice.tracked_full, "no-such-id"))
    await bob.send(marker("displayed", alice.tracked_full, "no-such-id"))
    await alice.expect_nothing(any_mention_of("no-such-id"))
    assert (await alice.status(bob.tracked, "m1"))[bob.jid].state == "sent"


async def test_marker_for_another_conversation_changes_nothing(tm, world):
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    await world.befriend(alice, bob)
    await world.befriend(alice, carol)
    await _sent(alice, carol, "x1")
    await _sent(alice, bob, "m1")
    # bob names carol's message x1 in his conversation with alice
    await bob.send(marker("displayed", alice.tracked_full, "x1"))
    await bob.send(receipt(alice.tracked_full, "x1"))
    await alice.expect_nothing(any_mention_of("x1"))
    assert (await alice.status(carol.tracked, "x1"))[carol.jid].state == "sent"
    assert (await alice.status(bob.tracked, "m1"))[bob.jid].state == "sent"


async def test_markers_that_move_nothing_are_not_relayed(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await _sent(alice, bob, "m1")
    await _sent(alice, bob, "m2")
    await bob.send(receipt(alice.tracked_full, "m2"))
    await alice.expect(receipt_for("m2"))
    await bob.send(marker("displayed", alice.tracked_full, "m2"))
    await alice.expect(marker_for("displayed", "m2"))
    read_before = (await alice.status(bob.tracked, "m1"))[bob.jid]

    await bob.send(receipt(alice.tracked_full, "m2"))  # delivered already
    await bob.send(marker("displayed", alice.tracked_full, "m2"))  # read already
    await bob.send(marker("displayed", alice.tracked_full, "m1"))  # behind the tidemark
    await alice.expect_nothing(any_mention_of("m2"))
    await alice.expect_nothing(any_mention_of("m1"), within=0.1)
    assert (await alice.status(bob.tracked, "m1"))[bob.jid] == read_before
