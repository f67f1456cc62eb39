"""Presence through tracked addresses: subscriptions flow the way they do through
any gateway, and the contact's presence is mirrored on its tracked address."""

from match import message, presence
from stanzas import NS_CLIENT, chat, presence as presence_xml, subscribe, subscribed


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


async def test_a_repeated_presence_after_subscribed_changes_nothing_visible(tm, world):
    # Issue 12 says ejabberd hands over a contact's presence twice after
    # `subscribed`. In this flow ejabberd 23.01 sends it once (its component
    # stream log at debug level); Prosody 0.12 probes the contact's tracked
    # address when the subscription becomes mutual, and tidemark answers the
    # probe with the presence it knows (RFC 6121 §4.3.2), so the subscriber
    # gets bob's presence a second time there. Either way the repeat must be
    # the same presence (no flicker through unavailable, no changed show),
    # and bob is counted online once: a message reaches him once.
    alice, bob = await world.clients("alice", "bob")
    await bob.send(presence_xml(show="away", status="lunch"))
    await alice.send(subscribe(bob.tracked))
    await bob.expect(presence(frm=alice.tracked, type="subscribe"))
    await bob.send(subscribed(alice.tracked))
    await alice.expect(presence(frm=bob.tracked, type="subscribed"))
    first = await alice.expect(presence(frm=bob.tracked_full, type=False))
    # and the other way round, which makes the subscription mutual
    await bob.send(subscribe(alice.tracked))
    await alice.expect(presence(frm=bob.tracked, type="subscribe"))
    await alice.send(subscribed(bob.tracked))
    await bob.expect(presence(frm=alice.tracked, type="subscribed"))
    await bob.expect(presence(frm=alice.tracked_full, type=False))
    await alice.expect_nothing(presence(frm=bob.tracked + "/*", type="unavailable"),
                               what="bob flickering through unavailable")

    def shown(p):
        return (p.el.findtext(f"{{{NS_CLIENT}}}show"), p.el.findtext(f"{{{NS_CLIENT}}}status"))
    assert shown(first) == ("away", "lunch"), first
    for again in [st for st in alice.received if st.kind == "presence" and st.frm == bob.tracked_full]:
        assert shown(again) == shown(first), again
    await alice.send(chat(bob.tracked, "once"))
    await bob.expect(message(frm=alice.tracked_full, id="once"))
    await bob.expect_nothing(message(id="once"), what="the message a second time")
