"""Issue 9: rooms survive restarts for every client, say what they are, and
name the room's stanza-id in reflected markers. Real Prosody, real slixmpp
clients; tests/groups.rs checks the same rules without a socket."""

from match import marker_for, message, presence, stanza_ids, status_codes
from stanzas import NS_DISCO_INFO, disco_info, group_displayed, groupchat
from xmpp_client import room_stanza_id

NS_MARKERS = "urn:xmpp:chat-markers:0"


async def joined(world, *names, room=None):
    room = room or world.room()
    clients = await world.clients(*names)
    for c in clients:
        await c.join(room, c.name)
    for i, c in enumerate(clients):
        for later in clients[i + 1:]:
            await c.expect(presence(frm=f"{room}/{later.name}", type=False))
    return room, clients


async def features_of(client, room):
    qid = client.new_id("disco")
    reply = await client.request(disco_info(qid, to=room), qid)
    assert reply.type == "result", reply.xml
    q = reply.child(NS_DISCO_INFO, "query")
    return {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}


async def test_a_client_that_never_rejoins_keeps_chatting_after_kill_9(tm, world):
    room, (alice, bob) = await joined(world, "alice", "bob")
    tm.kill9()
    tm.start()
    await world.wait_ready(alice)
    # alice does not rejoin (as Gajim 1.7, no self-ping): her message still goes out.
    mine = await alice.say(room, "alice", "after-restart")
    sid = room_stanza_id(mine, room)
    got = await bob.expect(message(frm=f"{room}/alice", id="after-restart", type="groupchat"))
    assert stanza_ids(got, by=room) == [sid], got.xml
    st = await alice.status(room, "after-restart")
    assert bob.jid in st.recipients, st.reply.xml


async def test_a_graceful_stop_tells_occupants_332(tm, world):
    room, (alice, bob) = await joined(world, "alice", "bob")
    assert tm.stop() == 0
    for c in (alice, bob):
        p = await c.expect(presence(frm=f"{room}/{c.name}", type="unavailable"))
        assert {"110", "332"} <= status_codes(p), p.xml
    tm.start()
    await world.wait_ready(alice)
    # they were told they are out: a message now is refused until they rejoin
    await alice.send(groupchat(room, "g-out", "still there?"))
    err = await alice.expect(message(id="g-out", type="error"))
    assert err.error_condition == "not-acceptable", err.xml
    await alice.join(room, "alice")


async def test_a_session_its_server_says_is_gone_is_dropped(tm, world):
    room, (alice, bob) = await joined(world, "alice", "bob")
    tm.kill9()
    # bob goes offline while tidemark is down: Prosody's unavailable presence
    # to the room is lost, so only the bounce of what the room sends him
    # tells tidemark his session is gone.
    await bob.disconnect()
    tm.start()
    await world.wait_ready(alice)
    await alice.say(room, "alice", "to-a-gone-bob")
    left = await alice.expect(presence(frm=f"{room}/bob", type="unavailable"), timeout=10)
    assert "110" not in status_codes(left), left.xml
    await alice.say(room, "alice", "after-bob")
    await alice.expect_nothing(presence(frm=f"{room}/bob"), within=0.5, what="bob again")


async def test_disco_says_what_each_room_is(world):
    fixed = world.room("plan")
    node = fixed.split("@")[0]
    members = [f"{world.account(n)[0]}@localhost" for n in ("alice", "bob")]
    listed = ", ".join(f'"{m}"' for m in members)
    world.use_config(f'[[rooms]]\nname = "{node}"\nmembers = [{listed}]\n')
    open_room, (alice, bob) = await joined(world, "alice", "bob", room=world.room("open"))
    features = await features_of(alice, open_room)
    assert {"muc_open", "muc_hidden", "muc_unsecured", "muc_nonanonymous"} <= features, features
    assert "muc_membersonly" not in features, features
    features = await features_of(alice, fixed)
    assert {"muc_membersonly", "muc_hidden", "muc_unsecured"} <= features, features
    assert "muc_open" not in features, features
    # and the joins do what disco says
    carol = await world.client("carol")
    await carol.join(open_room, "carol")
    err = await carol.join_refused(fixed, "carol")
    assert err.error_condition == "registration-required", err.xml


async def test_the_reflected_marker_names_the_stanza_id(tm, world):
    room, (alice, bob) = await joined(world, "alice", "bob")
    mine = await alice.say(room, "alice", "m1")
    sid = room_stanza_id(mine, room)
    await bob.expect(message(frm=f"{room}/alice", id="m1", type="groupchat"))
    # bob's client names alice's own id; the reflection names the stanza-id
    await bob.send(group_displayed(room, "m1"))
    got = await alice.expect(marker_for("displayed", sid, frm=f"{room}/bob"))
    assert got.has("urn:xmpp:occupant-id:0", "occupant-id"), got.xml
