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


# --- the presence gate is total (issue 7): nothing with content reaches a
# contact through a tracked address from someone they have not authorised ---

from match import Pred, presence  # noqa: E402
from stanzas import NS_STANZAS  # noqa: E402

SPAM = "buy-now-at-evil.example"


def _mentions_spam():
    return Pred(lambda s: SPAM in s.xml, f"anything containing {SPAM!r}")


async def test_an_error_with_a_body_from_a_stranger_reaches_nobody(tm, world):
    alice, mallory = await world.clients("alice", "mallory")
    # The attack of issue 7: type='error' with a body, to alice's full tracked address.
    await mallory.send(
        f"<message type='error' id='x1' to='{alice.tracked_full}'><body>{SPAM}</body>"
        f"<error type='cancel'><service-unavailable xmlns='{NS_STANZAS}'/></error></message>")
    await mallory.send(
        f"<message type='error' id='x2' to='{alice.tracked}'><body>{SPAM}</body>"
        f"<error type='cancel'><service-unavailable xmlns='{NS_STANZAS}'/></error></message>")
    await alice.expect_nothing(_mentions_spam())
    await alice.expect_nothing(message(type="error"), within=0.1)


async def test_directed_presence_with_a_status_from_a_stranger_reaches_nobody(tm, world):
    alice, mallory = await world.clients("alice", "mallory")
    await mallory.send(f"<presence to='{alice.tracked}'><status>{SPAM}</status></presence>")
    await mallory.send(f"<presence to='{alice.tracked_full}'><show>chat</show><status>{SPAM}</status></presence>")
    await mallory.send(f"<presence type='unavailable' to='{alice.tracked}'><status>{SPAM}</status></presence>")
    await alice.expect_nothing(_mentions_spam())
    await alice.expect_nothing(presence(frm=mallory.tracked + "/*"), within=0.1)


async def test_a_subscription_request_carries_no_status_and_the_name_of_the_jid(tm, world):
    alice, mallory = await world.clients("alice", "mallory")
    await mallory.send(
        f"<presence type='subscribe' to='{alice.tracked}'><status>{SPAM}</status>"
        f"<nick xmlns='http://jabber.org/protocol/nick'>{SPAM}</nick></presence>")
    req = await alice.expect(presence(frm=mallory.tracked, type="subscribe"))
    assert SPAM not in req.xml, req
    # XEP-0172 §4.2: a name to show, taken from the JID, which mallory cannot
    # make into someone else's.
    nick = req.child("http://jabber.org/protocol/nick", "nick")
    assert nick is not None and nick.text == mallory.user, req
    await alice.expect_nothing(_mentions_spam())


async def test_an_error_for_a_message_really_sent_comes_back_without_content(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await _sent(alice, bob, "m1")
    await bob.send(
        f"<message type='error' id='m1' to='{alice.tracked_full}'><body>{SPAM}</body>"
        f"<error type='cancel'><not-acceptable xmlns='{NS_STANZAS}'/></error></message>")
    err = await alice.expect(message(frm=bob.tracked_full, id="m1", type="error"))
    assert err.error_condition == "not-acceptable", err
    assert err.body is None and SPAM not in err.xml, err
    st = await alice.status(bob.tracked, "m1")
    assert st[bob.jid].state == "failed", st.reply


async def test_a_backslash_before_a_multibyte_character_crashes_nothing(tm, world):
    """Issue 7: `x\\€` made tidemark slice inside a character and exit."""
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat("x\\€@chat.localhost", "bad1"))
    err = await alice.expect(message(id="bad1", type="error"))
    assert err.error_condition is not None, err
    assert tm.alive(), tm.log_text()[-2000:]
    await _sent(alice, bob, "after1")
