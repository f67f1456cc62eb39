"""Issue 9: the `status` ad-hoc command (xep/status-command.md) through the real
Prosody: a client runs it as any XEP-0050 client would and reads its recent sent
messages, 1:1 and in rooms, newest first, a page at a time."""

from match import message
from stanzas import COMPONENT, NS_COMMANDS, NS_DATA, NS_DISCO_ITEMS, chat, command_execute, disco_items
from test_groups import room_of, say_to_all

PAGE = 20


def _cmd(reply):
    cmd = reply.child(NS_COMMANDS, "command")
    assert reply.type == "result" and cmd is not None, reply.xml
    return cmd


def rows(reply):
    """Each item's fields as a dict var -> value ('' for none)."""
    x = _cmd(reply).find(f"{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "result", reply.xml
    return [{f.get("var"): (f.findtext(f"{{{NS_DATA}}}value") or "") for f in item}
            for item in x.findall(f"{{{NS_DATA}}}item")]


def actions(reply):
    a = _cmd(reply).find(f"{{{NS_COMMANDS}}}actions")
    return [] if a is None else [c.tag.split("}")[1] for c in a]


async def run(client, sessionid=None, action="next", form=None):
    """One stage: `form` is a dict of fields to submit (None: no form)."""
    qid = client.new_id("st")
    if sessionid is None and form is None:
        return await client.request(command_execute(qid, "status"), qid)
    x = ""
    if form is not None:
        fields = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in form.items())
        x = f"<x xmlns='{NS_DATA}' type='submit'>{fields}</x>"
    sid = f" sessionid='{sessionid}'" if sessionid else ""
    xml = (f"<iq type='set' to='{COMPONENT}' id='{qid}'><command xmlns='{NS_COMMANDS}' node='status'"
           f"{sid} action='{action}'>{x}</command></iq>")
    return await client.request(xml, qid)


async def first_page(client, with_=""):
    form = await run(client)
    cmd = _cmd(form)
    assert cmd.get("status") == "executing", form.xml
    assert cmd.find(f"{{{NS_DATA}}}x/{{{NS_DATA}}}field[@var='with']") is not None, form.xml
    return await run(client, cmd.get("sessionid"), form={"with": with_} if with_ else {})


async def test_sent_messages_newest_first_with_paging_and_filter(tm, world):
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    await world.befriend(alice, bob)
    await world.befriend(alice, carol)

    qid = alice.new_id("items")
    items = await alice.request(disco_items(qid, node=NS_COMMANDS), qid)
    nodes = {i.get("node") for i in items.child(NS_DISCO_ITEMS, "query")}
    assert {"status", "read-receipts"} <= nodes, items.xml

    sent = []
    for i in range(25):
        to = carol if i % 5 == 0 else bob
        await alice.send(chat(to.tracked, f"s{i}", body=f"secret text {i}"))
        await to.expect(message(frm=alice.tracked_full, id=f"s{i}"))
        sent.append((f"s{i}", to.jid))
    await bob.send(f"<message to='{alice.tracked_full}'><received xmlns='urn:xmpp:receipts' id='s24'/></message>")
    await alice.expect(message(frm=bob.tracked_full))

    p1 = await first_page(alice)
    r1 = rows(p1)
    assert [r["id"] for r in r1] == [f"s{i}" for i in range(24, 4, -1)], p1.xml
    assert [r["to"] for r in r1] == [to for _, to in reversed(sent)][:PAGE], p1.xml
    assert r1[0]["state"] == "delivered" and r1[0]["delivered"], p1.xml
    assert r1[1]["state"] == "sent" and r1[1]["read-by"] == "0/1", p1.xml
    assert _cmd(p1).get("status") == "executing" and actions(p1) == ["next", "complete"], p1.xml
    # preview_chars = 0 (the default): no text at all, no preview column
    assert "secret text" not in p1.xml and all("preview" not in r for r in r1), p1.xml

    p2 = await run(alice, _cmd(p1).get("sessionid"), action="next")
    assert [r["id"] for r in rows(p2)] == [f"s{i}" for i in range(4, -1, -1)], p2.xml
    assert actions(p2) == ["prev", "complete"], p2.xml
    back = await run(alice, _cmd(p2).get("sessionid"), action="prev")
    assert rows(back) == r1, back.xml

    only_carol = await first_page(alice, carol.tracked)
    assert [r["id"] for r in rows(only_carol)] == ["s20", "s15", "s10", "s5", "s0"], only_carol.xml
    assert _cmd(only_carol).get("status") == "completed", only_carol.xml

    # bob sent nothing through tidemark: his list is empty, alice's never shows
    empty = await first_page(bob)
    assert rows(empty) == [] and "s24" not in empty.xml, empty.xml
    assert _cmd(empty).get("status") == "completed", empty.xml


async def test_room_rows_count_readers_and_previews_when_allowed(tm, world):
    world.use_config("[status]\npreview_chars = 12\n")
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    sid = await say_to_all(room, alice, clients, "g1", body="Release notes are up")
    await bob.send(f"<message type='groupchat' to='{room}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{sid}'/></message>")
    await alice.expect(message(frm=f"{room}/bob"))
    page = await first_page(alice, room)
    (row,) = rows(page)
    assert row["to"] == room and row["id"] == "g1", page.xml
    assert (row["state"], row["read-by"]) == ("some-read", "1/2"), page.xml
    assert row["preview"] == "Release note", page.xml
