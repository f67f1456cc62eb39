"""Issue 9: a room's subject (XEP-0045 §8.1) on the wire, through the real
Prosody: who may set it, what every occupant sees, what a joiner gets (always
from an occupant JID with a XEP-0203 delay, so that no client shows "Changed
by Unknown"), and that it survives kill -9. tests/groups.rs checks the same
rules without a socket."""

from match import message, presence, subject
from stanzas import NS_DELAY

NS_CLIENT = "jabber:client"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"


def set_subject(room, id, text):
    return f"<message type='groupchat' to='{room}' id='{id}'><subject>{text}</subject></message>"


def shown(st):
    """(from, subject text, delay from, whether a delay stamp is there) of a subject message."""
    delay = st.child(NS_DELAY, "delay")
    return (st.frm, st.child(NS_CLIENT, "subject").text or "",
            None if delay is None else delay.get("from"), delay is not None and bool(delay.get("stamp")))


async def test_a_room_nobody_gave_a_subject_sends_an_empty_one_from_the_services_nick(tm, world):
    room = world.room()
    alice, bob = await world.clients("alice", "bob")
    a = await alice.join(room, "alice")
    assert shown(a.subject) == (f"{room}/tidemark", "", room, True), a.subject.xml
    # nobody may join under the service's nickname
    err = await bob.join_refused(room, "tidemark")
    assert err.error_condition == "conflict", err.xml


async def test_the_creator_sets_the_subject_others_may_not_and_kill_9_keeps_it(tm, world):
    room = world.room()
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    await alice.join(room, "alice")
    await bob.join(room, "bob")
    await alice.expect(presence(frm=f"{room}/bob", type=False))

    # bob joined an open room: he may not rewrite its subject
    await bob.send(set_subject(room, "s-bob", "mine now"))
    err = await bob.expect(message(id="s-bob", type="error"))
    assert (err.error_type, err.error_condition) == ("auth", "forbidden"), err.xml
    assert "created" in err.error_text, err.xml
    await alice.expect_nothing(subject(room), within=0.3, what="a refused subject change")

    # too long: policy-violation naming the limit
    await alice.send(set_subject(room, "s-long", "x" * 1025))
    err = await alice.expect(message(id="s-long", type="error"))
    assert err.error_condition == "policy-violation" and "1024" in err.error_text, err.xml

    # alice made the room: everyone sees her change, from her nick
    await alice.send(set_subject(room, "s-alice", "Release on Friday"))
    for c in (alice, bob):
        got = await c.expect(subject(room))
        assert shown(got) == (f"{room}/alice", "Release on Friday", None, False), got.xml
        assert got.id == "s-alice" and got.has(NS_OCCUPANT_ID, "occupant-id"), got.xml

    tm.kill9()
    tm.start()
    await world.wait_ready(alice)
    c = await carol.join(room, "carol")
    assert shown(c.subject) == (f"{room}/alice", "Release on Friday", room, True), c.subject.xml
    assert c.subject.has(NS_OCCUPANT_ID, "occupant-id"), c.subject.xml


async def test_in_a_config_room_members_set_the_subject_the_file_gives(world):
    room = world.room()
    node = room.split("@")[0]
    members = [f"{world.account(n)[0]}@localhost" for n in ("alice", "bob")]
    listed = ", ".join(f'"{m}"' for m in members)
    world.use_config(f'[[rooms]]\nname = "{node}"\nmembers = [{listed}]\nsubject = "Welcome"\n')
    alice, bob = await world.clients("alice", "bob")
    b = await bob.join(room, "bob")
    assert shown(b.subject) == (f"{room}/tidemark", "Welcome", room, True), b.subject.xml
    # bob did not make the room, but the administrator made him a member
    await bob.send(set_subject(room, "s-bob", "Bob's topic"))
    got = await bob.expect(subject(room))
    assert shown(got)[:2] == (f"{room}/bob", "Bob's topic"), got.xml
    a = await alice.join(room, "alice")
    assert shown(a.subject)[:2] == (f"{room}/bob", "Bob's topic"), a.subject.xml
