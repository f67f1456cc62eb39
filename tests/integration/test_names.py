"""Names (issue 9, point 5): a tracked address is shown by a name, not by its
escaped JID. Subscription requests and presence from tracked addresses carry
a XEP-0172 nickname: the contact's own in their presence if they give one,
else the local part of their JID."""

from match import presence

NS_NICK = "http://jabber.org/protocol/nick"


def nick_of(st):
    n = st.child(NS_NICK, "nick")
    return None if n is None else n.text


async def test_a_subscription_request_names_the_requester(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await alice.send(f"<presence type='subscribe' to='{bob.tracked}'/>")
    req = await bob.expect(presence(frm=alice.tracked, type="subscribe"))
    assert nick_of(req) == alice.user, req


async def test_presence_from_a_tracked_address_carries_a_name(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    seen = [s for s in alice.history if s.kind == "presence" and s.frm == bob.tracked_full and s.type is None]
    assert seen, "bob's presence reached alice"
    assert nick_of(seen[-1]) == bob.user, seen[-1]
    # bob names himself: his own name goes on.
    await bob.send(f"<presence><nick xmlns='{NS_NICK}'>Bob Builder</nick></presence>")
    own = await alice.expect(presence(frm=bob.tracked_full, where=lambda s: nick_of(s) == "Bob Builder"))
    assert [n.text for n in own.el.findall(f"{{{NS_NICK}}}nick")] == ["Bob Builder"], own
