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


NS_EVENT = "http://jabber.org/protocol/pubsub#event"


def pep_nick(st):
    """The XEP-0172 nickname of a PEP notification (a headline), if it is one."""
    if st.kind != "message" or st.type != "headline":
        return None
    n = st.el.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items[@node='{NS_NICK}']/{{{NS_EVENT}}}item/{{{NS_NICK}}}nick")
    return None if n is None else n.text


async def test_a_client_that_logs_in_later_is_told_the_name_before_the_presence(tm, world):
    # Gajim takes names from PEP only, and redraws a contact's row on
    # presence: a client started after bob's presence was first relayed
    # (alice logs in in the morning) must get the name, and before the
    # presence, or it shows bob\40localhost.
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.disconnect()
    later = await world.client("alice", resource="morning")
    got = await later.expect(presence(frm=bob.tracked_full, type=False))
    before = later.history[:later.history.index(got)]
    assert [pep_nick(s) for s in before if pep_nick(s)] == [bob.user], [s.xml for s in later.history]
    named = next(s for s in before if pep_nick(s))
    assert named.frm == bob.tracked, named.xml
