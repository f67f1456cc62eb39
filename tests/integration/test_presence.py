"""Presence through tracked addresses: subscriptions flow the way they do through
any gateway, and the contact's presence is mirrored on its tracked address."""

from match import presence
from stanzas import NS_CLIENT, presence as presence_xml, subscribe, subscribed


async def test_subscription_flow_and_mirrored_presence(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await alice.send(subscribe(bob.tracked))
    await bob.expect(presence(frm=alice.tracked, type="subscribe"))
    await bob.send(subscribed(alice.tracked))
    await alice.expect(presence(frm=bob.tracked, type="subscribed"))
    # bob is online: alice sees his presence on his tracked address, with his resource
    await alice.expect(presence(frm=bob.tracked_full, type=False))


async def test_presence_changes_are_mirrored(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob, mutual=False)
    await bob.send(presence_xml(show="away", status="lunch"))
    got = await alice.expect(presence(frm=bob.tracked_full, type=False,
                                      where=lambda s: s.el.findtext(f"{{{NS_CLIENT}}}show") == "away"))
    assert got.el.findtext(f"{{{NS_CLIENT}}}status") == "lunch", got
    await bob.disconnect()
    await alice.expect(presence(frm=bob.tracked + "/*", type="unavailable"))


async def test_subscription_request_from_bob_reaches_alice(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await bob.send(subscribe(alice.tracked))
    await alice.expect(presence(frm=bob.tracked, type="subscribe"))


async def test_no_presence_without_approval(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await alice.send(subscribe(bob.tracked))
    await bob.expect(presence(frm=alice.tracked, type="subscribe"))
    await bob.send(presence_xml(show="dnd"))
    await alice.expect_nothing(presence(frm=bob.tracked + "/*"), what="bob's presence before he approved")


async def test_a_contacts_presence_is_mirrored_once_after_subscribed(tm, world):
    # ejabberd was seen to send a contact's presence twice after `subscribed`
    # (issue 12); 23.01 with this config sends it once in both directions here
    # (its component stream log, EJABBERD_LOG_LEVEL=debug). Either way the
    # subscriber must see it once: a second copy would be a visible flicker.
    alice, bob = await world.clients("alice", "bob")
    await alice.send(subscribe(bob.tracked))
    await bob.expect(presence(frm=alice.tracked, type="subscribe"))
    await bob.send(subscribed(alice.tracked))
    await alice.expect(presence(frm=bob.tracked, type="subscribed"))
    await alice.expect(presence(frm=bob.tracked_full, type=False))
    # and the other way round, which makes the subscription mutual
    await bob.send(subscribe(alice.tracked))
    await alice.expect(presence(frm=bob.tracked, type="subscribe"))
    await alice.send(subscribed(bob.tracked))
    await bob.expect(presence(frm=alice.tracked, type="subscribed"))
    await bob.expect(presence(frm=alice.tracked_full, type=False))
    await alice.expect_nothing(presence(frm=bob.tracked_full, type=False),
                               what="bob's presence a second time")
    await bob.expect_nothing(presence(frm=alice.tracked_full, type=False),
                             what="alice's presence a second time")
