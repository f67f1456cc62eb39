"""Group conversations at room@chat.localhost: a members-only, non-anonymous
subset of XEP-0045 with per-member read status (XEP-0359 stanza-ids, XEP-0421
occupant-ids, XEP-0333 displayed markers, "some read" / "all read").

Three or more real clients on the real Prosody in every room; tests/groups.rs
checks the same rules without a socket, these check them on the wire.
"""

import asyncio

from match import (DELAY, MARKABLE, OCCUPANT_ID, RECEIPT_REQUEST, STANZA_ID, all_read, any_all_read,
                   any_marker, any_mention_of, iq, marker_for, message, muc_item, occupant_id, presence,
                   stanza_ids, status_codes, subject)
from stanzas import (COMPONENT, NS_COMMANDS, NS_DATA, NS_DELAY, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC,
                     NS_OCCUPANT_ID, NS_SID, NS_STATUS, command_execute, command_submit, disco_info,
                     disco_items, group_displayed, groupchat, muc_leave)
from xmpp_client import room_stanza_id


async def room_of(world, *names, room=None):
    """Clients named `names`, each joined (in order) to a fresh room under its own name."""
    room = room or world.room()
    clients = await world.clients(*names)
    for c in clients:
        await c.join(room, c.name)
    # each joiner's presence reaches those already in: take them
    for i, c in enumerate(clients):
        for later in clients[i + 1:]:
            await c.expect(presence(frm=f"{room}/{later.name}", type=False))
    return room, clients


async def say_to_all(room, sender, occupants, id, body=None, extra=""):
    """sender writes; every occupant (sender included) gets the reflection. Returns the stanza-id."""
    mine = await sender.say(room, sender.name, id, body, extra)
    sid = room_stanza_id(mine, room)
    for c in occupants:
        if c is not sender:
            got = await c.expect(message(frm=f"{room}/{sender.name}", id=id, type="groupchat"))
            assert stanza_ids(got, by=room) == [sid], (c.name, got.xml)
    return sid


async def status_when(client, room, id, summary, tries=30):
    """The status, once its summary is `summary` (markers are applied asynchronously)."""
    for _ in range(tries):
        st = await client.status(room, id)
        if st.summary == summary:
            return st
        await asyncio.sleep(0.1)
    raise AssertionError(f"status of {id!r} stayed {st.summary!r}, not {summary!r}: {st.reply.xml}")


def view(st):
    return (st.summary, st.read, st.recipient_count, st.all_read,
            {j: (r.state, r.sent, r.read) for j, r in st.recipients.items()})


# --- joining ------------------------------------------------------------------

async def test_join_shows_real_jids_occupant_ids_and_status_codes(tm, world):
    room = world.room()
    alice, bob, carol, dave = await world.clients("alice", "bob", "carol", "dave")

    a = await alice.join(room, "alice")
    assert a.occupants == {}, a.sequence
    assert {"110", "100", "201"} <= status_codes(a.self_presence), a.self_presence.xml
    assert muc_item(a.self_presence) == {"jid": alice.full, "affiliation": "member", "role": "participant"}
    assert a.history == [] and (a.subject.child("jabber:client", "subject").text or "") == ""

    b = await bob.join(room, "bob")
    assert set(b.occupants) == {"alice"}, b.sequence
    assert muc_item(b.occupants["alice"]) == {"jid": alice.full, "affiliation": "member", "role": "participant"}
    assert occupant_id(b.occupants["alice"]), b.occupants["alice"].xml
    assert "201" not in status_codes(b.self_presence) and "110" in status_codes(b.self_presence)
    bob_seen_by_alice = await alice.expect(presence(frm=f"{room}/bob", type=False))
    assert muc_item(bob_seen_by_alice)["jid"] == bob.full
    assert "110" not in status_codes(bob_seen_by_alice)

    c = await carol.join(room, "carol")
    assert set(c.occupants) == {"alice", "bob"}, c.sequence
    assert [s.kind for s in c.sequence] == ["presence", "presence", "presence", "message"], \
        "occupants, then the self-presence, then the subject"
    assert {n: muc_item(p)["jid"] for n, p in c.occupants.items()} == {"alice": alice.full, "bob": bob.full}
    # XEP-0421: one stable id per occupant, whoever looks
    assert occupant_id(c.occupants["alice"]) == occupant_id(b.occupants["alice"]) == occupant_id(a.self_presence)
    assert occupant_id(c.occupants["bob"]) == occupant_id(b.self_presence) != occupant_id(a.self_presence)
    for x in (alice, bob):
        p = await x.expect(presence(frm=f"{room}/carol", type=False))
        assert muc_item(p) == {"jid": carol.full, "affiliation": "member", "role": "participant"}
        assert p.has(*OCCUPANT_ID)

    # XEP-0045 §7.2.9: someone else's nick
    err = await dave.join_refused(room, "bob")
    assert err.type == "error" and err.error_condition == "conflict", err.xml
    for x in (alice, bob, carol):
        await x.expect_nothing(presence(frm=f"{room}/bob", where=lambda s: muc_item(s)["jid"] == dave.full),
                               within=0.3, what="dave's presence as bob")


async def test_room_disco_lists_muc_stanza_ids_and_occupant_ids(tm, world):
    room, (alice, bob, carol) = await room_of(world, "alice", "bob", "carol")
    qid = carol.new_id("disco")
    reply = await carol.request(disco_info(qid, to=room), qid)
    assert reply.type == "result", reply.xml
    q = reply.child(NS_DISCO_INFO, "query")
    features = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
    assert {NS_MUC, NS_SID, NS_OCCUPANT_ID} <= features, features
    identity = q.find(f"{{{NS_DISCO_INFO}}}identity")
    assert identity is not None and identity.get("category") == "conference", reply.xml


async def test_later_joiner_gets_history_with_delay_through_slixmpps_muc_plugin(tm, world):
    room, (alice, bob) = await room_of(world, "alice", "bob")
    sids = {}
    for sender, mid in ((alice, "h1"), (bob, "h2"), (alice, "h3")):
        sids[mid] = await say_to_all(room, sender, (alice, bob), mid, body=f"history {mid}")

    # carol joins the way a slixmpp bot does (XEP-0045 plugin), and sees the room's past
    carol = await world.client("carol")
    carol.xmpp.register_plugin("xep_0045")
    await carol.xmpp.plugin["xep_0045"].join_muc_wait(room, "carol", timeout=5)
    roster = carol.xmpp.plugin["xep_0045"].get_roster(room)
    assert set(roster) >= {"alice", "bob", "carol"}, roster
    # (the subject that ends the join has a delay too: when it was set)
    history = [s for s in carol.history if s.kind == "message" and s.has(*DELAY) and not subject(room)(s)]
    assert [s.id for s in history] == ["h1", "h2", "h3"], [s.xml for s in history]
    for s in history:
        assert s.frm == f"{room}/{'bob' if s.id == 'h2' else 'alice'}" and s.type == "groupchat", s.xml
        assert s.body == f"history {s.id}", s.xml
        delay = s.child(NS_DELAY, "delay")
        assert delay.get("from") == room and delay.get("stamp", "").endswith("Z"), s.xml
        assert stanza_ids(s, by=room) == [sids[s.id]], s.xml
    stamps = [s.child(NS_DELAY, "delay").get("stamp") for s in history]
    assert stamps == sorted(stamps), stamps
    # the subject came after the history
    i_subject = next(i for i, s in enumerate(carol.history) if subject(room)(s))
    assert i_subject > carol.history.index(history[-1])

    # a message after the join is live, not history
    await say_to_all(room, alice, (alice, bob, carol), "h4")
    live = [s for s in carol.history if s.id == "h4"]
    assert len(live) == 1 and not live[0].has(*DELAY), live


async def test_history_is_limited_to_the_configured_length(world):
    world.use_config("[groups]\nhistory = 2\n")
    room, (alice, bob) = await room_of(world, "alice", "bob")
    for mid in ("x1", "x2", "x3"):
        await say_to_all(room, alice, (alice, bob), mid)
    carol = await world.client("carol")
    c = await carol.join(room, "carol")
    assert [s.id for s in c.history] == ["x2", "x3"], [s.xml for s in c.history]


# --- messages -----------------------------------------------------------------

async def test_reflection_carries_the_rooms_stanza_id_and_occupant_id(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    spoof = (f"<request xmlns='urn:xmpp:receipts'/>"
             f"<stanza-id xmlns='{NS_SID}' id='spoofed' by='{room}'/>")
    await alice.send(groupchat(room, "g1", "first", extra=spoof))
    got = {c.name: await c.expect(message(frm=f"{room}/alice", id="g1", type="groupchat")) for c in clients}
    sids = set()
    for name, g in got.items():
        assert g.body == "first", g.xml
        ids = stanza_ids(g, by=room)
        assert len(ids) == 1 and ids[0] != "spoofed", (name, g.xml)
        sids.add(ids[0])
        assert g.has(*MARKABLE) and g.has(*OCCUPANT_ID), (name, g.xml)
        assert not g.has(*RECEIPT_REQUEST), ("receipt request must be removed", name, g.xml)
    assert len(sids) == 1, f"every occupant sees the same stanza-id: {sids}"
    assert occupant_id(got["bob"]) == occupant_id(got["carol"])

    sid2 = await say_to_all(room, bob, clients, "g2")
    assert sid2 not in sids

    # XEP-0045 §7.4: only occupants may write
    dave = await world.client("dave")
    await dave.send(groupchat(room, "g3", "let me in"))
    err = await dave.expect(message(id="g3", type="error"))
    assert err.error_condition == "not-acceptable", err.xml
    for c in clients:
        await c.expect_nothing(any_mention_of("g3"), within=0.3, what="dave's message")


# --- read status --------------------------------------------------------------

async def test_some_read_then_all_read_with_counts_and_a_notice(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    s1 = await say_to_all(room, alice, clients, "a1")
    s2 = await say_to_all(room, alice, clients, "a2")

    st = await alice.status(room, "a1")
    assert (st.summary, st.read, st.recipient_count) == ("sent", 0, 2), st.reply.xml
    assert set(st.recipients) == {bob.jid, carol.jid}, "the sender is not a recipient"
    assert all(r.state == "sent" and r.sent and r.read is None for r in st.recipients.values()), st.reply.xml

    # bob reads up to a2: covers a1 too
    await bob.send(group_displayed(room, s2))
    for c in clients:
        await c.expect(marker_for("displayed", s2, frm=f"{room}/bob"))
    for mid in ("a1", "a2"):
        st = await status_when(alice, room, mid, "some-read")
        assert (st.read, st.recipient_count) == (1, 2), st.reply.xml
        assert st[bob.jid].state == "read" and st[bob.jid].read >= st[bob.jid].sent, st.reply.xml
        assert st[carol.jid].state == "sent" and st[carol.jid].read is None, st.reply.xml
        assert st.all_read is None
    await alice.expect_nothing(any_all_read(), within=0.3, what="all-read while carol has not read")

    # carol reads a1 by the sender's id: a1 is read by all, a2 is not
    await carol.send(group_displayed(room, "a1"))
    notice = await alice.expect(all_read("a1", room=room))
    n = notice.child(NS_STATUS, "all-read")
    assert n.get("stanza-id") == s1 and n.get("at", "").endswith("Z"), notice.xml
    assert notice.to in (alice.jid, alice.full), notice.xml
    st = await status_when(alice, room, "a1", "all-read")
    assert (st.read, st.recipient_count) == (2, 2), st.reply.xml
    assert st.all_read == max(r.read for r in st.recipients.values()), st.reply.xml
    st = await alice.status(room, s2)  # by stanza-id
    assert (st.summary, st.read) == ("some-read", 1), st.reply.xml
    assert st[carol.jid].state == "sent"

    await carol.send(group_displayed(room, s2))
    await alice.expect(all_read("a2", room=room))
    st = await status_when(alice, room, "a2", "all-read")
    assert st.read == 2 and st[carol.jid].read >= st[bob.jid].read, st.reply.xml
    for c in (bob, carol):
        await c.expect_nothing(any_all_read(), within=0.3, what="an all-read notice for alice's message")

    # only the sender may ask
    for c in (bob, carol):
        st = await c.status(room, "a1")
        assert st.error == "forbidden", st.reply.xml


async def test_markers_are_reflected_to_every_occupant_from_the_readers_nick(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    sid = await say_to_all(room, alice, clients, "r1")
    await carol.send(group_displayed(room, sid, msg_id="mk1"))
    for c in clients:
        got = await c.expect(marker_for("displayed", sid, frm=f"{room}/carol"))
        assert got.type == "groupchat" and got.has(*OCCUPANT_ID), got.xml
    # a second, older-or-equal marker changes nothing and is not reflected again
    await carol.send(group_displayed(room, sid, msg_id="mk2"))
    for c in clients:
        await c.expect_nothing(any_marker(room), within=0.4, what="a repeated marker")


async def test_above_the_reflection_limit_only_the_sender_sees_markers(world):
    world.use_config("[groups]\nmarker_reflection_limit = 2\n")
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    sid = await say_to_all(room, alice, clients, "l1")
    await bob.send(group_displayed(room, sid))
    await alice.expect(marker_for("displayed", sid, frm=f"{room}/bob"))
    for c in (bob, carol):
        await c.expect_nothing(any_marker(room), within=0.5, what="a marker above the reflection limit")
    st = await status_when(alice, room, "l1", "some-read")
    assert st[bob.jid].state == "read" and st[carol.jid].state == "sent", st.reply.xml
    await carol.send(group_displayed(room, sid))
    await alice.expect(marker_for("displayed", sid, frm=f"{room}/carol"))
    await alice.expect(all_read("l1", room=room))
    await bob.expect_nothing(any_marker(room), within=0.3, what="carol's marker")


async def test_opting_out_of_read_receipts_with_the_ad_hoc_command(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients

    # XEP-0050 §2.2: the command is listed
    qid = carol.new_id("items")
    items = await carol.request(disco_items(qid, node=NS_COMMANDS), qid)
    nodes = {i.get("node"): i.get("jid") for i in items.child(NS_DISCO_ITEMS, "query")}
    assert nodes.get("read-receipts") == COMPONENT, items.xml

    qid = carol.new_id("cmd")
    reply = await carol.request(command_execute(qid, "read-receipts"), qid)
    cmd = reply.child(NS_COMMANDS, "command")
    assert reply.type == "result" and cmd.get("status") == "executing", reply.xml
    field = cmd.find(f"{{{NS_DATA}}}x/{{{NS_DATA}}}field[@var='send-read-receipts']")
    assert field is not None and field.get("type") == "boolean", reply.xml
    assert field.findtext(f"{{{NS_DATA}}}value") in ("1", "true"), "on by default"

    qid = carol.new_id("cmd")
    reply = await carol.request(command_submit(qid, "read-receipts", cmd.get("sessionid"),
                                               {"send-read-receipts": "0"}), qid)
    assert reply.child(NS_COMMANDS, "command").get("status") == "completed", reply.xml

    sid = await say_to_all(room, alice, clients, "o1")
    await carol.send(group_displayed(room, sid))
    for c in clients:
        await c.expect_nothing(any_marker(room), within=0.6, what="the marker of someone who opted out")
    st = await alice.status(room, "o1")
    assert st.summary == "sent" and st[carol.jid].state == "sent" and st[carol.jid].read is None, st.reply.xml

    # bob's read completes the group: carol, who hides her reads, is not waited for
    await bob.send(group_displayed(room, sid))
    await alice.expect(marker_for("displayed", sid, frm=f"{room}/bob"))
    await alice.expect(all_read("o1", room=room))
    st = await alice.status(room, "o1")
    assert st[carol.jid].state == "sent" and st[carol.jid].read is None, st.reply.xml
    assert st[bob.jid].state == "read", st.reply.xml
    assert st.summary == "all-read", \
        f"alice was told o1 is read by all; the status must say so too: {st.reply.xml}"


async def test_a_member_who_left_is_still_a_recipient(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients

    await carol.send(muc_leave(room, "carol"))
    own = await carol.expect(presence(frm=f"{room}/carol", type="unavailable"))
    assert "110" in status_codes(own), own.xml
    for c in (alice, bob):
        p = await c.expect(presence(frm=f"{room}/carol", type="unavailable"))
        assert "110" not in status_codes(p), p.xml

    sid = await say_to_all(room, alice, (alice, bob), "m1")
    await carol.expect_nothing(any_mention_of("m1"), within=0.5, what="a message sent after she left")
    st = await alice.status(room, "m1")
    assert (st.summary, st.read, st.recipient_count) == ("sent", 0, 2), st.reply.xml
    assert st[carol.jid].state == "sent", st.reply.xml

    await bob.send(group_displayed(room, sid))
    await alice.expect(marker_for("displayed", sid, frm=f"{room}/bob"))
    st = await status_when(alice, room, "m1", "some-read")
    assert st.read == 1, st.reply.xml
    await alice.expect_nothing(any_all_read(), within=0.3, what="all-read while carol (away) has not read")

    # carol comes back, finds m1 in the history, reads it: now it is read by all
    c = await carol.join(room, "carol")
    assert "m1" in [s.id for s in c.history], [s.xml for s in c.history]
    await carol.send(group_displayed(room, sid))
    await alice.expect(all_read("m1", room=room))
    st = await status_when(alice, room, "m1", "all-read")
    assert (st.read, st.recipient_count) == (2, 2), st.reply.xml


async def test_markers_from_non_recipients_change_nothing(tm, world):
    room, (alice, bob) = await room_of(world, "alice", "bob")
    s1 = await say_to_all(room, alice, (alice, bob), "n1")
    s2 = await say_to_all(room, alice, (alice, bob), "n2")

    # carol joins after n1 and n2: she sees them in the history but was not sent them
    carol = await world.client("carol")
    c = await carol.join(room, "carol")
    assert [s.id for s in c.history] == ["n1", "n2"]
    for x in (alice, bob):
        await x.expect(presence(frm=f"{room}/carol", type=False))
    dave = await world.client("dave")  # never a member
    before = view(await alice.status(room, "n2"))
    assert before[:3] == ("sent", 0, 1) and set(before[4]) == {bob.jid}, before

    await carol.send(group_displayed(room, s2))  # late joiner
    await alice.send(group_displayed(room, s2))  # the sender itself
    await dave.send(group_displayed(room, s2))  # not even in the room
    await bob.send(group_displayed(room, "no-such-id"))  # unknown id
    for x in (alice, bob, carol):
        await x.expect_nothing(any_marker(room) | any_all_read(), within=0.8,
                               what="a marker or notice caused by a non-recipient")
    assert view(await alice.status(room, "n2")) == before
    assert view(await alice.status(room, "n1"))[0] == "sent"

    # bob reads n2; then a marker for the older n1 is not reflected and moves nothing back
    await bob.send(group_displayed(room, s2))
    await alice.expect(marker_for("displayed", s2, frm=f"{room}/bob"))
    await status_when(alice, room, "n2", "all-read")
    read_n1 = (await alice.status(room, "n1"))[bob.jid].read
    await bob.send(group_displayed(room, s1))
    for x in (alice, bob, carol):
        await x.expect_nothing(marker_for("displayed", s1), within=0.5, what="a marker older than bob's mark")
    st = await alice.status(room, "n1")
    assert st.summary == "all-read" and st[bob.jid].read == read_n1, st.reply.xml
    # no delivered state in groups: an old-style received marker changes nothing either
    await bob.send(f"<message type='groupchat' to='{room}'><received xmlns='urn:xmpp:chat-markers:0' id='{s2}'/></message>")
    await alice.expect_nothing(marker_for("received", s2), within=0.3)
    assert (await alice.status(room, "n2"))[bob.jid].delivered is None


async def test_all_read_notice_comes_even_when_someone_joined_after_the_message(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    sid = await say_to_all(room, alice, clients, "j1")
    await bob.send(group_displayed(room, sid))
    await alice.expect(marker_for("displayed", sid, frm=f"{room}/bob"))
    # dave joins: he becomes a member, but j1 was not sent to him
    dave = await world.client("dave")
    await dave.join(room, "dave")
    for c in clients:
        await c.expect(presence(frm=f"{room}/dave", type=False))
    # carol, the last recipient, reads j1
    await carol.send(group_displayed(room, sid))
    for c in clients + [dave]:
        await c.expect(marker_for("displayed", sid, frm=f"{room}/carol"))
    st = await status_when(alice, room, "j1", "all-read")
    assert (st.read, st.recipient_count) == (2, 2) and dave.jid not in st.recipients, st.reply.xml
    await alice.expect(all_read("j1", room=room))


async def test_a_fixed_member_list_refuses_an_outsider(world):
    room = world.room()
    node = room.split("@")[0]
    members = [f"{world.account(n)[0]}@localhost" for n in ("alice", "bob", "carol")]
    listed = ", ".join(f'"{m}"' for m in members)
    world.use_config(f'[[rooms]]\nname = "{node}"\nmembers = [{listed}]\n')
    alice, bob, carol, dave = await world.clients("alice", "bob", "carol", "dave")
    await alice.join(room, "alice")
    await bob.join(room, "bob")
    await alice.expect(presence(frm=f"{room}/bob", type=False))

    err = await dave.join_refused(room, "dave")
    assert err.error_condition == "registration-required" and err.error_type == "auth", err.xml
    for x in (alice, bob):
        await x.expect_nothing(presence(frm=f"{room}/dave"), within=0.5, what="the outsider's presence")
    await dave.expect_nothing(presence(frm=f"{room}/alice"), within=0.1, what="the occupants' presences")

    await dave.send(groupchat(room, "d1", "hello?"))
    refused = await dave.expect(message(id="d1", type="error"))
    assert refused.error_condition == "not-acceptable", refused.xml

    # carol is a member from the config before she ever joined: she is a recipient
    await say_to_all(room, alice, (alice, bob), "f1")
    st = await alice.status(room, "f1")
    assert set(st.recipients) == {bob.jid, carol.jid} and st.recipient_count == 2, st.reply.xml
    c = await carol.join(room, "carol")
    assert "f1" in [s.id for s in c.history]


# --- crashes --------------------------------------------------------------------

async def test_kill_9_and_restart_keeps_every_rooms_marks(tm, world):
    team, plan = world.room("team"), world.room("plan")
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    for c in (alice, bob, carol):
        await c.join(team, c.name)
    for c in (alice, bob):
        await c.join(plan, c.name)
    await asyncio.sleep(0.3)
    for c in (alice, bob, carol):  # presences of later joiners: not this test's subject
        c.received.clear()

    k1 = await say_to_all(team, alice, (alice, bob, carol), "k1")
    k2 = await say_to_all(team, alice, (alice, bob, carol), "k2")
    p1 = await say_to_all(plan, bob, (alice, bob), "p1")
    await bob.send(group_displayed(team, k2))  # bob read k1 and k2
    await alice.expect(marker_for("displayed", k2, frm=f"{team}/bob"))
    await carol.send(group_displayed(team, k1))  # carol read k1 only
    await alice.expect(all_read("k1", room=team))
    await alice.send(group_displayed(plan, p1))
    await bob.expect(all_read("p1", room=plan))

    before = {("team", "k1"): view(await alice.status(team, "k1")),
              ("team", "k2"): view(await alice.status(team, "k2")),
              ("plan", "p1"): view(await bob.status(plan, "p1"))}
    assert [v[0] for v in before.values()] == ["all-read", "some-read", "all-read"], before

    tm.kill9()
    tm.start()
    await world.wait_ready(alice)
    after = {("team", "k1"): view(await alice.status(team, "k1")),
             ("team", "k2"): view(await alice.status(team, "k2")),
             ("plan", "p1"): view(await bob.status(plan, "p1"))}
    assert after == before

    # the clients rejoin; the room remembers its history and moves on from the marks it had
    for c in (alice, bob, carol):
        c.received.clear()
        j = await c.join(team, c.name)
        assert "201" not in status_codes(j.self_presence), "the room existed before the restart"
        assert [s.id for s in j.history][-2:] == ["k1", "k2"], [s.xml for s in j.history]
        assert stanza_ids(j.history[-1], by=team) == [k2]
    await asyncio.sleep(0.3)
    for c in (alice, bob, carol):
        c.received.clear()
    await carol.send(group_displayed(team, k2))
    for c in (alice, bob, carol):
        await c.expect(marker_for("displayed", k2, frm=f"{team}/carol"))
    st = await status_when(alice, team, "k2", "all-read")
    assert st[bob.jid].read == before[("team", "k2")][4][bob.jid][2], "bob's read time survived"
    await alice.expect(all_read("k2", room=team))

    k3 = await say_to_all(team, alice, (alice, bob, carol), "k3")
    assert k3 not in (k1, k2, p1), "stanza-ids are not reused after a restart"
    # bob is the only one back in plan: the marks of plan hold too
    await bob.join(plan, "bob")
    st = await bob.status(plan, "p1")
    assert view(st) == before[("plan", "p1")]


# --- who may create rooms (issue 7) -------------------------------------------

async def test_a_user_of_a_domain_not_in_room_creators_creates_nothing(world):
    plan = world.room("plan")
    alice_node = world.account("alice")[0]
    world.use_config('[groups]\nroom_creators = ["example.org"]\n'
                     f'[[rooms]]\nname = "{plan.split("@")[0]}"\nmembers = ["{alice_node}@localhost"]\n')
    room = world.room()
    alice, bob = await world.clients("alice", "bob")

    err = await alice.join_refused(room, "alice")
    assert (err.type, err.error_condition, err.error_type) == ("error", "not-allowed", "cancel"), err.xml
    assert COMPONENT in err.error_text and "example.org" in err.error_text, err.xml
    # nothing was created: the room does not exist for anyone
    qid = bob.new_id("disco")
    reply = await bob.request(disco_info(qid, to=room), qid)
    assert reply.type == "error" and reply.error_condition == "item-not-found", reply.xml
    err = await bob.join_refused(room, "bob")
    assert err.error_condition == "not-allowed", "still no room: bob's join would create it"

    # the config file's rooms exist whatever room_creators says
    j = await alice.join(plan, "alice")
    assert "110" in status_codes(j.self_presence), j.sequence


async def test_a_creator_over_max_rooms_per_creator_is_refused_across_a_restart(world):
    tm = world.use_config("[groups]\nmax_rooms_per_creator = 2\n")
    r1, r2, r3, r4 = (world.room(n) for n in ("one", "two", "three", "four"))
    alice, bob = await world.clients("alice", "bob")
    for r in (r1, r2):
        j = await alice.join(r, "alice")
        assert "201" in status_codes(j.self_presence), "alice created it"

    err = await alice.join_refused(r3, "alice")
    assert (err.error_condition, err.error_type) == ("policy-violation", "cancel"), err.xml
    assert "groups.max_rooms_per_creator" in err.error_text, err.xml
    # bob may still create it, and alice may then join it: joining is not creating
    j = await bob.join(r3, "bob")
    assert "201" in status_codes(j.self_presence)
    j = await alice.join(r3, "alice")
    assert "201" not in status_codes(j.self_presence)

    # the count is kept on disk
    tm.restart()
    await world.wait_ready(alice)
    err = await alice.join_refused(r4, "alice")
    assert err.error_condition == "policy-violation", err.xml


# --- senders' ids (issue 7) -----------------------------------------------------

async def test_a_member_reusing_another_members_id_takes_over_nothing(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    s1 = await say_to_all(room, alice, clients, "a1")
    s2 = await say_to_all(room, alice, clients, "a2")
    b1 = await say_to_all(room, bob, clients, "a1")  # bob copies alice's id
    assert b1 not in (s1, s2)

    # alice still gets her own message's status (bob read it by writing after it)
    st = await alice.status(room, "a1")
    assert st.error is None, st.reply.xml
    assert (st.summary, st.read, st.recipient_count) == ("some-read", 1, 2), st.reply.xml
    assert st[bob.jid].state == "read" and st[carol.jid].state == "sent", st.reply.xml
    st = await bob.status(room, "a1")
    assert set(st.recipients) == {alice.jid, carol.jid} and st.summary == "sent", st.reply.xml

    # carol marks "a1" by the sender's id: alice's a1, not bob's later copy
    # (which would also cover a2, which carol has not read)
    await carol.send(group_displayed(room, "a1"))
    notice = await alice.expect(all_read("a1", room=room))
    assert notice.child(NS_STATUS, "all-read").get("stanza-id") == s1, notice.xml
    await alice.expect_nothing(all_read("a2", room=room), within=0.5, what="a false all-read for a2")
    await bob.expect_nothing(any_all_read(), within=0.3, what="an all-read notice for bob's a1")
    st = await alice.status(room, "a2")
    assert st.summary == "some-read" and st[carol.jid].state == "sent", st.reply.xml
    st = await bob.status(room, "a1")
    assert st[carol.jid].state == "sent", st.reply.xml
