"""Issue 10: the conversation list (xep/inbox.md) through the real Prosody with
real clients: what a user checks in their list (unread counts, missed
attempts, order, the state of their own latest message) after reading in
their clients, marking read, with messages held or refused while they were
away, after kill -9, and through the `inbox` command as a XEP-0050 client runs
it. tests/inbox.rs checks the protocol by value without a socket; these check
that the real traffic moves the counts."""

import asyncio
from dataclasses import dataclass, field

from conftest import Tidemark
from match import RECEIPT, any_all_read, any_marker, marker_for, message, presence, receipt_for
from stanzas import (COMPONENT, NS_COMMANDS, NS_DATA, NS_DISCO_ITEMS, NS_INBOX, NS_RSM, chat, command_execute,
                     command_submit, disco_items, group_displayed, inbox_list, inbox_mark_read, inbox_subscribe,
                     marker, receipt)
from test_groups import room_of, say_to_all

NS_OOB = "jabber:x:oob"  # XEP-0066: what an attachment-only message carries


# --- reading the list ---------------------------------------------------------

@dataclass
class Listing:
    """An answer to <inbox/>: its rows (attributes, unread and missed as ints), newest first."""
    reply: object
    total_unread: int
    complete: bool
    rows: list = field(default_factory=list)
    first: str | None = None
    last: str | None = None

    def __getitem__(self, jid):
        found = [r for r in self.rows if r["jid"] == jid]
        assert len(found) == 1, f"expected one conversation {jid!r} in the list: {self.reply.xml}"
        return found[0]

    def jids(self):
        return [r["jid"] for r in self.rows]

    def counts(self):
        """jid -> (unread, missed): what a user glances at."""
        return {r["jid"]: (r["unread"], r["missed"]) for r in self.rows}


def conversation(el):
    row = dict(el.attrib)
    row["unread"] = int(row["unread"])
    row["missed"] = int(row["missed"])
    return row


def parse_listing(reply) -> Listing:
    assert reply.type == "result", reply.xml
    el = reply.child(NS_INBOX, "inbox")
    assert el is not None, f"result without <inbox xmlns='{NS_INBOX}'/>: {reply.xml}"
    assert el.get("complete") in ("true", "false"), reply.xml
    rset = el.find(f"{{{NS_RSM}}}set")
    return Listing(reply, int(el.get("total-unread")), el.get("complete") == "true",
                   [conversation(c) for c in el.findall(f"{{{NS_INBOX}}}conversation")],
                   None if rset is None else rset.findtext(f"{{{NS_RSM}}}first"),
                   None if rset is None else rset.findtext(f"{{{NS_RSM}}}last"))


async def listing(client, **query) -> Listing:
    qid = client.new_id("inbox")
    return parse_listing(await client.request(inbox_list(qid, **query), qid))


async def listing_when(client, check, what, tries=30, **query) -> Listing:
    """The list once check(listing) holds: a reader's marker that tells nobody
    gives the test nothing to wait for, so it asks again for a while."""
    for _ in range(tries):
        got = await listing(client, **query)
        if check(got):
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"{client.name}'s list never showed {what}: {got.reply.xml}")


async def mark_read(client, jid=None):
    qid = client.new_id("mark")
    return await client.request(inbox_mark_read(qid, jid), qid)


def update_from_service(s):
    """A pushed update (§4): a headline from the service with <update/>."""
    return s.kind == "message" and s.frm == COMPONENT and s.type == "headline" and s.has(NS_INBOX, "update")


def pushed(st):
    """(total-unread, the conversation) of a pushed update."""
    up = st.child(NS_INBOX, "update")
    convs = up.findall(f"{{{NS_INBOX}}}conversation")
    assert len(convs) == 1, st.xml
    return int(up.get("total-unread")), conversation(convs[0])


def about_reads(s):
    """Anything that would tell someone a message was read or received."""
    return any_marker()(s) or any_all_read()(s) or (s.kind == "message" and s.has(*RECEIPT))


async def receive_all(client, frm, ids):
    for mid in ids:
        await client.expect(message(frm=frm, id=mid))


# --- commands -------------------------------------------------------------------

def _cmd(reply):
    cmd = reply.child(NS_COMMANDS, "command")
    assert reply.type == "result" and cmd is not None, reply.xml
    return cmd


def form_of(reply):
    return _cmd(reply).find(f"{{{NS_DATA}}}x")


def item_jids(reply):
    """The jid column of a command result's rows."""
    x = form_of(reply)
    assert x is not None and x.get("type") == "result", reply.xml
    return [f.findtext(f"{{{NS_DATA}}}value") for f in x.findall(f"{{{NS_DATA}}}item/{{{NS_DATA}}}field[@var='jid']")]


async def run_command(client, node, fields=None):
    """Both stages as a XEP-0050 client runs them: execute, then submit the form
    with its fields as shown (their default values) overridden by `fields`."""
    qid = client.new_id("cmd")
    first = await client.request(command_execute(qid, node), qid)
    cmd = _cmd(first)
    assert cmd.get("status") == "executing", first.xml
    form = form_of(first)
    assert form is not None and form.get("type") == "form", first.xml
    values = {f.get("var"): f.findtext(f"{{{NS_DATA}}}value") or "" for f in form.findall(f"{{{NS_DATA}}}field")}
    values.update(fields or {})
    qid = client.new_id("cmd")
    return first, await client.request(command_submit(qid, node, cmd.get("sessionid"), values), qid)


async def read_receipts_off(client):
    _, done = await run_command(client, "read-receipts", {"send-read-receipts": "0"})
    assert _cmd(done).get("status") == "completed", done.xml


# --- 1. partial reads ------------------------------------------------------------

async def test_reading_the_third_of_five_leaves_two_unread(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    ids = [f"b{i}" for i in range(1, 6)]
    for mid in ids:
        await bob.send(chat(alice.tracked, mid, body=f"text {mid}"))
    await receive_all(alice, bob.tracked_full, ids)

    mine = await listing(alice)
    assert mine.total_unread == 5 and mine.complete and mine.jids() == [bob.tracked], mine.reply.xml
    row = mine[bob.tracked]
    assert (row["unread"], row["missed"], row["type"]) == (5, 0, "chat"), mine.reply.xml
    assert (row["contact"], row["name"], row["last-from"]) == (bob.jid, bob.user, bob.jid), mine.reply.xml
    assert "state" not in row, "alice wrote nothing: no state of her own message"

    # alice's client shows b3: b1..b3 are read, b4 and b5 are not
    await alice.send(marker("displayed", bob.tracked_full, "b3"))
    await bob.expect(marker_for("displayed", "b3", frm=alice.tracked_full))
    mine = await listing(alice)
    assert mine.counts() == {bob.tracked: (2, 0)} and mine.total_unread == 2, mine.reply.xml

    # bob's list: his latest message (b5) is not read yet
    his = await listing(bob)
    row = his[alice.tracked]
    assert (row["unread"], row["last-from"], row["state"]) == (0, bob.jid, "sent"), his.reply.xml
    assert his.total_unread == 0, his.reply.xml

    await alice.send(marker("displayed", bob.tracked_full, "b5"))
    await bob.expect(marker_for("displayed", "b5", frm=alice.tracked_full))
    assert (await listing(bob))[alice.tracked]["state"] == "read"
    mine = await listing(alice)
    assert mine.counts() == {bob.tracked: (0, 0)} and mine.total_unread == 0, mine.reply.xml

    # alice answers: her own message is the latest, bob has one unread
    await alice.send(chat(bob.tracked, "a1"))
    await bob.expect(message(frm=alice.tracked_full, id="a1"))
    row = (await listing(alice))[bob.tracked]
    assert (row["unread"], row["last-from"], row["state"]) == (0, alice.jid, "sent"), row
    his = await listing(bob)
    assert his.counts() == {alice.tracked: (1, 0)} and his.total_unread == 1, his.reply.xml


# --- 2. private reads --------------------------------------------------------------

async def test_a_reader_who_hides_her_reads_still_clears_her_count(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await read_receipts_off(alice)
    ids = ["b1", "b2", "b3"]
    for mid in ids:
        await bob.send(chat(alice.tracked, mid))
    await receive_all(alice, bob.tracked_full, ids)
    assert (await listing(alice)).counts() == {bob.tracked: (3, 0)}

    await alice.send(marker("displayed", bob.tracked_full, "b2"))
    mine = await listing_when(alice, lambda x: x[bob.tracked]["unread"] == 1, "1 unread from bob")
    assert mine.total_unread == 1, mine.reply.xml

    await alice.send(marker("displayed", bob.tracked_full, "b3"))
    mine = await listing_when(alice, lambda x: x.total_unread == 0, "nothing unread")
    assert mine.counts() == {bob.tracked: (0, 0)}, mine.reply.xml

    # bob is told nothing: no marker, and his messages do not read as read
    await bob.expect_nothing(about_reads, what="a sign that alice read his messages")
    assert (await listing(bob))[alice.tracked]["state"] == "sent"
    assert (await bob.status(alice.tracked, "b2")).summary == "sent"


async def test_an_attachment_only_message_counts_as_unread(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    oob = f"<x xmlns='{NS_OOB}'><url>https://example.org/cat.jpg</url></x>"
    await bob.send(chat(alice.tracked, "b1"))
    await bob.send(chat(alice.tracked, "f1", body=None, extra=oob))
    await receive_all(alice, bob.tracked_full, ("b1", "f1"))
    mine = await listing(alice)
    assert mine.counts() == {bob.tracked: (2, 0)} and mine.total_unread == 2, mine.reply.xml
    await alice.send(marker("displayed", bob.tracked_full, "b1"))
    await bob.expect(marker_for("displayed", "b1"))
    assert (await listing(alice)).counts() == {bob.tracked: (1, 0)}
    await alice.send(marker("displayed", bob.tracked_full, "f1"))
    await listing_when(alice, lambda x: x.total_unread == 0, "the attachment read")


# --- 3. rooms ------------------------------------------------------------------------

async def test_room_messages_from_others_are_unread_until_read_or_answered(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    sids = {}
    for sender, mid in ((bob, "r1"), (carol, "r2"), (bob, "r3")):
        sids[mid] = await say_to_all(room, sender, clients, mid)

    mine = await listing(alice)
    row = mine[room]
    assert (row["unread"], row["missed"], row["type"], row["last-from"]) == (3, 0, "groupchat", bob.jid), \
        mine.reply.xml
    assert row["name"] == room.split("@")[0] and "contact" not in row and "state" not in row, mine.reply.xml
    assert mine.total_unread == 3, mine.reply.xml
    # bob's own r3 is the latest: what came before it is read for him
    assert (await listing(bob)).counts() == {room: (0, 0)}
    assert (await listing(carol)).counts() == {room: (1, 0)}

    # alice's client shows r2: r3 is left
    await alice.send(group_displayed(room, sids["r2"]))
    await bob.expect(marker_for("displayed", sids["r2"], frm=f"{room}/alice"))
    mine = await listing(alice)
    assert mine.counts() == {room: (1, 0)} and mine.total_unread == 1, mine.reply.xml

    # writing in the room clears what came before
    a4 = await say_to_all(room, alice, clients, "a4")
    mine = await listing(alice)
    row = mine[room]
    assert (row["unread"], row["last-from"], row["state"]) == (0, alice.jid, "sent"), mine.reply.xml
    assert mine.total_unread == 0, mine.reply.xml
    assert (await listing(bob)).counts() == {room: (1, 0)}
    assert (await listing(carol)).counts() == {room: (2, 0)}
    for reader, state in ((bob, "some-read"), (carol, "all-read")):
        await reader.send(group_displayed(room, a4))
        await alice.expect(marker_for("displayed", a4, frm=f"{room}/{reader.name}"))
        mine = await listing(alice)
        assert mine[room]["state"] == state and mine.total_unread == 0, mine.reply.xml
    assert (await listing(carol)).counts() == {room: (0, 0)}, "her marker read the room up to a4"

    # nothing before a member joined is unread for them
    dave = await world.client("dave")
    await dave.join(room, "dave")
    theirs = await listing(dave)
    assert theirs.counts() == {room: (0, 0)} and theirs.total_unread == 0, theirs.reply.xml
    await say_to_all(room, carol, clients + [dave], "c5")
    assert (await listing(dave)).counts() == {room: (1, 0)}
    assert (await listing(alice)).counts() == {room: (1, 0)}


async def test_a_room_member_who_hides_her_reads_clears_her_count(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    await read_receipts_off(alice)
    s1 = await say_to_all(room, bob, clients, "r1")
    await say_to_all(room, bob, clients, "r2")
    assert (await listing(alice)).counts() == {room: (2, 0)}
    await alice.send(group_displayed(room, s1))
    await listing_when(alice, lambda x: x.counts() == {room: (1, 0)}, "1 unread in the room")
    for c in (bob, carol):
        await c.expect_nothing(any_marker(room), within=0.3, what="the marker of alice, who hides her reads")


# --- 4. mark-read ------------------------------------------------------------------------

async def test_mark_read_one_or_all_by_iq_and_by_command_tells_nobody(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    await world.befriend(alice, bob)
    await world.befriend(alice, carol)

    async def write_alice(n):
        """bob writes alice 2, carol 1, bob 1 in the room: n is a round number."""
        for mid in (f"b{n}a", f"b{n}b"):
            await bob.send(chat(alice.tracked, mid))
            await alice.expect(message(frm=bob.tracked_full, id=mid))
        await carol.send(chat(alice.tracked, f"c{n}"))
        await alice.expect(message(frm=carol.tracked_full, id=f"c{n}"))
        await say_to_all(room, bob, clients, f"r{n}")

    await write_alice(1)
    mine = await listing(alice)
    assert mine.counts() == {room: (1, 0), carol.tracked: (1, 0), bob.tracked: (2, 0)}, mine.reply.xml
    assert mine.jids() == [room, carol.tracked, bob.tracked], "newest activity first"
    assert mine.total_unread == 4

    # one conversation by IQ, named by its tracked address
    reply = await mark_read(alice, bob.tracked)
    assert reply.type == "result" and len(reply.el) == 0, reply.xml
    mine = await listing(alice)
    assert mine.counts() == {room: (1, 0), carol.tracked: (1, 0), bob.tracked: (0, 0)}, mine.reply.xml
    assert mine.total_unread == 2

    # one conversation by the command: the room, then carol by her own JID
    _, done = await run_command(alice, "mark-read", {"jid": room})
    assert _cmd(done).get("status") == "completed", done.xml
    _, done = await run_command(alice, "mark-read", {"jid": carol.jid})
    assert _cmd(done).get("status") == "completed", done.xml
    mine = await listing(alice)
    assert set(mine.counts().values()) == {(0, 0)} and mine.total_unread == 0, mine.reply.xml

    # all by IQ
    await write_alice(2)
    assert (await listing(alice)).total_unread == 4
    reply = await mark_read(alice)
    assert reply.type == "result", reply.xml
    mine = await listing(alice)
    assert set(mine.counts().values()) == {(0, 0)} and mine.total_unread == 0, mine.reply.xml

    # all by the command (the field left empty)
    await write_alice(3)
    assert (await listing(alice)).total_unread == 4
    _, done = await run_command(alice, "mark-read", {"jid": ""})
    assert _cmd(done).get("status") == "completed", done.xml
    mine = await listing(alice)
    assert set(mine.counts().values()) == {(0, 0)} and mine.total_unread == 0, mine.reply.xml

    # a conversation alice does not have
    dave = await world.client("dave")
    reply = await mark_read(alice, dave.tracked)
    assert reply.type == "error" and reply.error_condition == "item-not-found", reply.xml

    # nobody was told anything, and their own messages do not read as read
    for c in (bob, carol):
        await c.expect_nothing(about_reads, within=0.5, what="a sign that alice read something")
    assert (await listing(bob))[alice.tracked]["state"] == "sent"
    assert (await bob.status(room, "r3")).summary == "sent"
    assert (await listing(bob)).counts() == {room: (0, 0), alice.tracked: (0, 0)}, "bob's list is his own"


# --- 5. while away ----------------------------------------------------------------------

async def _goes_offline(leaving, watcher):
    await leaving.disconnect()
    await watcher.expect(presence(frm=leaving.tracked + "/*", type="unavailable"))


async def test_held_messages_count_as_unread_before_and_after_coming_online(world):
    world.use_tidemark(Tidemark(world, f"inboxq{world.test_no}", offline="queue"))
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await _goes_offline(alice, bob)
    ids = ["q1", "q2", "q3"]
    for mid in ids:
        await bob.send(chat(alice.tracked, mid))
    await bob.expect_nothing(message(type="error"), within=0.5, what="an error for a held message")
    world.tidemark.kill9()
    world.tidemark.start()
    await world.wait_ready(bob, timeout=30)

    # alice logs in without being available: still away, her list shows them
    away = await world.client("alice", available=False, resource="away")
    mine = await listing(away)
    assert mine.counts() == {bob.tracked: (3, 0)} and mine.total_unread == 3, mine.reply.xml
    assert mine[bob.tracked]["last-from"] == bob.jid, mine.reply.xml

    # available: the held messages arrive, and count once
    await away.send("<presence/>")
    await receive_all(away, bob.tracked_full, ids)
    await bob.expect(presence(frm=alice.tracked + "/*", type=False))
    mine = await listing(away)
    assert mine.counts() == {bob.tracked: (3, 0)} and mine.total_unread == 3, mine.reply.xml
    assert (await listing(bob)).counts() == {alice.tracked: (0, 0)}

    await away.send(marker("displayed", bob.tracked_full, "q2"))
    await bob.expect(marker_for("displayed", "q2"))
    assert (await listing(away)).counts() == {bob.tracked: (1, 0)}


async def test_refused_attempts_are_listed_as_missed_until_opened_or_marked(tm, world):
    alice, bob, carol, dave = await world.clients("alice", "bob", "carol", "dave")
    await world.befriend(alice, bob)
    await world.befriend(alice, carol)
    await alice.disconnect()
    for c in (bob, carol):
        await c.expect(presence(frm=alice.tracked + "/*", type="unavailable"))
    # a dashboard of alice's that is not available (she is still away) watches
    board = await world.client("alice", available=False, resource="board")
    qid = board.new_id("sub")
    assert (await board.request(inbox_subscribe(qid), qid)).type == "result"
    for sender, mid in ((bob, "x1"), (bob, "x2"), (carol, "y1")):
        await sender.send(chat(alice.tracked, mid))
        err = await sender.expect(message(id=mid, type="error"))
        assert err.error_condition == "recipient-unavailable", err.xml
        up = await board.expect(update_from_service, what=f"an update for the attempt {mid}")
        total, row = pushed(up)
        assert (total, row["jid"], row["unread"]) == (0, sender.tracked, 0), up.xml
        assert row["missed"] == (2 if mid == "x2" else 1), up.xml
    # dave, whom alice never authorised, learns nothing and is not listed
    await dave.send(chat(alice.tracked, "z1"))
    err = await dave.expect(message(id="z1", type="error"))
    assert err.error_condition == "service-unavailable", err.xml
    # each refusal was answered: kill -9 loses none of them
    tm.kill9()
    tm.start()
    await world.wait_ready(bob, timeout=30)

    alice = await world.client("alice", resource="back")
    mine = await listing(alice)
    assert mine.jids() == [carol.tracked, bob.tracked], "newest attempt first: " + mine.reply.xml
    assert mine.counts() == {carol.tracked: (0, 1), bob.tracked: (0, 2)} and mine.total_unread == 0, \
        mine.reply.xml
    b = mine[bob.tracked]
    assert b["last-from"] == bob.jid and b["missed-first"] < b["missed-last"] == b["last-activity"], b
    c = mine[carol.tracked]
    assert c["missed-first"] == c["missed-last"] == c["last-activity"], c
    assert (await listing(alice, unread_only="true")).jids() == [carol.tracked, bob.tracked]
    # the senders' own lists show their failed messages, nothing missed
    theirs = await listing(bob)
    assert theirs.counts() == {alice.tracked: (0, 0)} and theirs[alice.tracked]["state"] == "failed", \
        theirs.reply.xml

    # opening the conversation (writing in it) clears bob's
    await alice.send(chat(bob.tracked, "a1"))
    await bob.expect(message(frm=alice.tracked_full, id="a1"))
    mine = await listing(alice)
    assert mine.counts() == {carol.tracked: (0, 1), bob.tracked: (0, 0)}, mine.reply.xml
    assert "missed-first" not in mine[bob.tracked], mine.reply.xml

    # marking carol's read clears hers
    reply = await mark_read(alice, carol.tracked)
    assert reply.type == "result", reply.xml
    mine = await listing(alice)
    assert mine.counts() == {carol.tracked: (0, 0), bob.tracked: (0, 0)}, mine.reply.xml
    assert (await listing(alice, unread_only="true")).rows == []


# --- 6. search and pages ---------------------------------------------------------------

async def test_search_any_script_and_pages(tm, world):
    alice = await world.client("alice")
    names = ["zoë", "ωmega", "bob", "carol", "dave"]
    contacts = [await world.client(n) for n in names]
    for i, c in enumerate(contacts):
        await world.befriend(c, alice, mutual=False)  # alice lets c reach her
        await c.send(chat(alice.tracked, f"m{i}"))
        await alice.expect(message(frm=c.tracked_full, id=f"m{i}"))
    zoe, omega, bob, carol, dave = contacts

    full = await listing(alice)
    newest_first = [c.tracked for c in reversed(contacts)]
    assert full.jids() == newest_first and full.total_unread == 5, full.reply.xml
    assert full[zoe.tracked]["name"] == zoe.user and zoe.user.startswith("zoë"), full.reply.xml

    async def found(search, **kw):
        got = await listing(alice, search=search, **kw)
        assert got.total_unread == 5, "the total counts every conversation, whatever is shown"
        return got.jids()

    assert await found("ZOË") == [zoe.tracked]
    assert await found("ΩMEGA") == [omega.tracked]
    assert await found("Ωmeg") == [omega.tracked]
    assert await found("BoB") == [bob.tracked]
    assert await found(f"CAROL{world.test_no}@LOCALHOST") == [carol.tracked]  # the contact's JID
    assert await found(dave.tracked.upper()) == [dave.tracked]  # the tracked address
    assert await found("@localhost") == newest_first
    assert await found("nobody here") == []
    # read one: the unread-only search leaves it out
    await alice.send(marker("displayed", bob.tracked_full, "m2"))
    await bob.expect(marker_for("displayed", "m2"))
    got = await listing(alice, search="O", unread_only="true")
    assert got.jids() == [c.tracked for c in (dave, carol, omega, zoe)] and got.total_unread == 4, got.reply.xml

    # XEP-0059 pages of two, each `after` the previous page's `last`
    pages, after = [], None
    for _ in range(5):
        page = await listing(alice, max=2, after=after)
        pages.append(page)
        if page.complete:
            break
        assert page.last, page.reply.xml
        after = page.last
    assert [p.jids() for p in pages] == [newest_first[0:2], newest_first[2:4], newest_first[4:]], \
        [p.reply.xml for p in pages]
    assert [p.complete for p in pages] == [False, False, True]
    assert all(p.total_unread == 4 for p in pages)
    # a search is paged the same way
    page = await listing(alice, search="o", max=3)
    assert page.jids() == [c.tracked for c in (dave, carol, bob)] and not page.complete, page.reply.xml
    page = await listing(alice, search="o", max=3, after=page.last)
    assert page.jids() == [omega.tracked, zoe.tracked] and page.complete, page.reply.xml


async def test_rooms_without_messages_are_listed_and_paged_too(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await bob.send(chat(alice.tracked, "b1"))
    await alice.expect(message(frm=bob.tracked_full, id="b1"))
    rooms = [world.room(n) for n in ("quiet", "calm", "still")]
    for r in rooms:
        await alice.join(r, "alice")

    full = await listing(alice)
    # a room nobody wrote in stands where alice joined it
    assert full.jids() == rooms[::-1] + [bob.tracked], full.reply.xml
    assert all(full[r]["unread"] == 0 and "last-activity" not in full[r] for r in rooms), full.reply.xml
    seen, after = [], None
    for _ in range(6):
        page = await listing(alice, max=1, after=after)
        seen += page.jids()
        if page.complete:
            break
        after = page.last
    assert seen == full.jids(), f"pages of one showed {seen}, the list is {full.jids()}"


async def test_search_folds_case_as_addresses_are_folded(tm, world):
    """Prosody folds a registered name (RFC 3454 B.2): a final sigma becomes σ,
    ß becomes ss. A search typed as the name is written still finds it."""
    alice = await world.client("alice")
    contacts = [await world.client(n) for n in ("οδυσσευσ", "strasse")]
    for i, c in enumerate(contacts):
        await world.befriend(c, alice, mutual=False)
        await c.send(chat(alice.tracked, f"m{i}"))
        await alice.expect(message(frm=c.tracked_full, id=f"m{i}"))
    odysseus, strasse = contacts
    for search, found in (("ΟΔΥΣΣΕΥΣ", odysseus), ("Οδυσσευς", odysseus), ("Straße", strasse),
                          ("STRASSE", strasse)):
        got = await listing(alice, search=search)
        assert got.jids() == [found.tracked], f"{search!r}: {got.reply.xml}"


# --- 7. pushed updates ---------------------------------------------------------------------

async def test_a_subscribed_session_gets_updates_until_it_unsubscribes(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    other = await world.client("alice", resource="other")  # alice's second client, not subscribed
    for c in (alice, bob):
        qid = c.new_id("sub")
        reply = await c.request(inbox_subscribe(qid), qid)
        assert reply.type == "result", reply.xml

    await bob.send(chat(alice.tracked, "b1"))
    await alice.expect(message(frm=bob.tracked_full, id="b1"))
    up = await alice.expect(update_from_service, what="an update for b1")
    total, row = pushed(up)
    assert up.to == alice.full and total == 1, up.xml
    assert (row["jid"], row["contact"], row["unread"], row["last-from"]) == (bob.tracked, bob.jid, 1, bob.jid), \
        up.xml
    # bob's update is his own list: his message, nothing of alice's counts
    up = await bob.expect(update_from_service, what="bob's update for his own b1")
    total, row = pushed(up)
    assert up.to == bob.full and total == 0, up.xml
    assert (row["jid"], row["unread"], row["last-from"], row["state"]) == (alice.tracked, 0, bob.jid, "sent"), \
        up.xml

    # her reading, from her other client, is pushed to her, and to bob as his message's state
    await other.send(marker("displayed", bob.tracked_full, "b1"))
    up = await alice.expect(update_from_service, what="an update for her read")
    total, row = pushed(up)
    assert total == 0 and (row["jid"], row["unread"]) == (bob.tracked, 0), up.xml
    assert (await listing(alice)).counts() == {bob.tracked: (0, 0)}
    up = await bob.expect(update_from_service, what="bob's update: b1 is read")
    total, row = pushed(up)
    assert (row["jid"], row["state"]) == (alice.tracked, "read"), up.xml

    qid = alice.new_id("unsub")
    reply = await alice.request(inbox_subscribe(qid, on=False), qid)
    assert reply.type == "result", reply.xml
    await bob.send(chat(alice.tracked, "b2"))
    await alice.expect(message(frm=bob.tracked_full, id="b2"))
    await alice.expect_nothing(update_from_service, what="an update after unsubscribing")
    await other.expect_nothing(update_from_service, within=0, what="an update it never asked for")
    assert (await listing(alice)).counts() == {bob.tracked: (1, 0)}
    # bob still gets his own (b2 is his latest message now)
    up = await bob.expect(update_from_service, what="bob's update for b2")
    assert pushed(up)[1]["state"] == "sent", up.xml


async def test_a_session_that_left_gets_no_more_updates(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    # a chat client (its going offline reaches bob's tracked address), and a
    # dashboard that is never available but sends its presence to the service
    chat_client = await world.client("alice", resource="phone")
    board = await world.client("alice", available=False, resource="board")
    await board.send(f"<presence to='{COMPONENT}'/>")
    for c in (chat_client, board):
        qid = c.new_id("sub")
        assert (await c.request(inbox_subscribe(qid), qid)).type == "result"
    await bob.send(chat(alice.tracked, "b1"))
    for c in (chat_client, board):
        await c.expect(update_from_service, what="an update for b1")
    await chat_client.disconnect()
    await bob.expect(presence(frm=f"{alice.tracked}/phone", type="unavailable"))
    await board.disconnect()

    # the same resources, back without subscribing: nothing they did not ask for
    phone, board = await world.client("alice", resource="phone"), await world.client("alice", resource="board")
    await bob.send(chat(alice.tracked, "b2"))
    await phone.expect(message(frm=bob.tracked_full, id="b2"))
    for c in (alice, phone, board):
        await c.expect_nothing(update_from_service, within=0.5 if c is alice else 0,
                               what="an update asked for by a session that left")
    assert (await listing(phone)).counts() == {bob.tracked: (2, 0)}


# --- 8. privacy ------------------------------------------------------------------------------

async def test_another_users_list_is_refused_alike_whether_or_not_they_exist(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await bob.send(chat(alice.tracked, "b1"))
    await alice.expect(message(frm=bob.tracked_full, id="b1"))

    def error_of(reply):
        assert reply.type == "error", reply.xml
        assert reply.child(NS_INBOX, "inbox") is None and bob.tracked not in reply.xml, reply.xml
        return reply.error_type, reply.error_condition, reply.error_text

    answers = []
    for user in (alice.jid, f"nobody{world.test_no}@localhost", "alice@elsewhere.example", f"{alice.jid}/res"):
        qid = bob.new_id("peek")
        answers.append(error_of(await bob.request(inbox_list(qid, user=user), qid)))
    assert answers[0][:2] == ("auth", "forbidden"), answers
    assert all(a == answers[0] for a in answers), answers

    # one's own is answered, with or without naming oneself
    qid = alice.new_id("own")
    own = parse_listing(await alice.request(inbox_list(qid, user=alice.jid), qid))
    assert own.counts() == {bob.tracked: (1, 0)}, own.reply.xml
    assert (await listing(alice)).counts() == own.counts()


# --- 9. kill -9 -------------------------------------------------------------------------------

async def test_kill_9_keeps_every_count_and_every_acknowledged_message(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    await world.befriend(alice, bob)
    await world.befriend(alice, carol)
    for mid in ("b1", "b2", "b3", "b4"):
        await bob.send(chat(alice.tracked, mid))
    await receive_all(alice, bob.tracked_full, ("b1", "b2", "b3", "b4"))
    await alice.send(marker("displayed", bob.tracked_full, "b2"))
    await bob.expect(marker_for("displayed", "b2"))
    await carol.send(chat(alice.tracked, "c1"))
    await alice.expect(message(frm=carol.tracked_full, id="c1"))
    await alice.send(chat(carol.tracked, "a1"))
    await carol.expect(message(frm=alice.tracked_full, id="a1"))
    await carol.send(receipt(alice.tracked_full, "a1"))
    await alice.expect(receipt_for("a1"))
    r1 = await say_to_all(room, bob, clients, "r1")
    await say_to_all(room, carol, clients, "r2")
    await alice.send(group_displayed(room, r1))
    await bob.expect(marker_for("displayed", r1, frm=f"{room}/alice"))

    before = {c.name: await listing(c) for c in clients}
    assert before["alice"].counts() == {room: (1, 0), carol.tracked: (0, 0), bob.tracked: (2, 0)}, \
        before["alice"].reply.xml
    assert before["alice"][carol.tracked]["state"] == "delivered"

    # a burst, each message relayed to alice (acknowledged), then kill -9 at once
    burst = [f"k{i}" for i in range(20)]
    for mid in burst:
        await bob.send(chat(alice.tracked, mid, request=False, markable=False))
    await receive_all(alice, bob.tracked_full, burst)
    tm.kill9()
    tm.start()
    await world.wait_ready(alice, timeout=30)

    after = {c.name: await listing(c) for c in clients}
    assert after["carol"].rows == before["carol"].rows and after["carol"].total_unread == before["carol"].total_unread
    a_before, a_after = before["alice"], after["alice"]
    assert a_after.total_unread == a_before.total_unread + 20, a_after.reply.xml
    assert a_after.jids() == [bob.tracked, room, carol.tracked], a_after.reply.xml
    assert a_after[bob.tracked]["unread"] == 22, a_after.reply.xml
    assert [r for r in a_after.rows if r["jid"] != bob.tracked] == \
        [r for r in a_before.rows if r["jid"] != bob.tracked]
    b_after = after["bob"]
    assert b_after.counts() == before["bob"].counts() and b_after.total_unread == before["bob"].total_unread
    assert b_after[alice.tracked]["last-from"] == bob.jid and b_after[alice.tracked]["state"] == "sent"

    # and it moves on from there
    await alice.send(marker("displayed", bob.tracked_full, "k19"))
    await listing_when(alice, lambda x: x[bob.tracked]["unread"] == 0, "bob's burst read")


# --- 10. the inbox command ---------------------------------------------------------------------

async def test_the_inbox_command_as_a_standard_client_runs_it(tm, world):
    room, clients = await room_of(world, "alice", "bob", "carol")
    alice, bob, carol = clients
    await world.befriend(alice, bob)
    await bob.send(chat(alice.tracked, "b1"))
    await alice.expect(message(frm=bob.tracked_full, id="b1"))
    await alice.send(chat(bob.tracked, "a1"))
    await bob.expect(message(frm=alice.tracked_full, id="a1"))
    await bob.send(chat(alice.tracked, "b2"))
    await alice.expect(message(frm=bob.tracked_full, id="b2"))
    await say_to_all(room, carol, clients, "r1")
    await say_to_all(room, alice, clients, "r2")  # the room is read for alice

    qid = alice.new_id("items")
    items = await alice.request(disco_items(qid, node=NS_COMMANDS), qid)
    nodes = {i.get("node"): i.get("jid") for i in items.child(NS_DISCO_ITEMS, "query")}
    assert nodes.get("inbox") == COMPONENT and nodes.get("mark-read") == COMPONENT, items.xml

    first, done = await run_command(alice, "inbox")
    fields = {f.get("var"): f.get("type") for f in form_of(first).findall(f"{{{NS_DATA}}}field")}
    assert fields == {"search": "text-single", "unread-only": "boolean"}, first.xml

    cmd = _cmd(done)
    assert cmd.get("status") == "completed", done.xml
    x = form_of(done)
    assert x is not None and x.get("type") == "result", done.xml
    reported = [f.get("var") for f in x.findall(f"{{{NS_DATA}}}reported/{{{NS_DATA}}}field")]
    assert reported == ["jid", "name", "unread", "missed", "last-activity", "state"], done.xml
    total = x.find(f"{{{NS_DATA}}}field[@var='total-unread']")
    assert total is not None and total.findtext(f"{{{NS_DATA}}}value") == "1", done.xml
    rows = [{f.get("var"): f.findtext(f"{{{NS_DATA}}}value") or "" for f in item}
            for item in x.findall(f"{{{NS_DATA}}}item")]
    assert [(r["jid"], r["name"], r["unread"], r["missed"], r["state"]) for r in rows] == [
        (room, room.split("@")[0], "0", "0", "sent"),
        (bob.tracked, bob.user, "1", "0", "sent"),
    ], done.xml
    assert all(r["last-activity"].endswith("Z") for r in rows), done.xml
    the_list = await listing(alice)
    assert [r["last-activity"] for r in rows] == [r["last-activity"] for r in the_list.rows]
    note = cmd.findtext(f"{{{NS_COMMANDS}}}note") or ""
    assert note.startswith("1 unread in all") and bob.tracked in note and room in note, done.xml

    # the filters, as a user fills them in
    _, done = await run_command(alice, "inbox", {"unread-only": "1"})
    assert item_jids(done) == [bob.tracked], done.xml
    _, done = await run_command(alice, "inbox", {"search": room.split("@")[0].upper()})
    assert item_jids(done) == [room], done.xml


async def test_the_inbox_command_pages_twenty_at_a_time(world):
    world.use_config("[groups]\nmax_rooms_per_creator = 30\n")
    alice = await world.client("alice")
    rooms = [world.room(f"r{i:02d}x") for i in range(23)]
    for r in rooms:
        await alice.join(r, "alice")
    newest_first = rooms[::-1]

    _, page1 = await run_command(alice, "inbox")
    cmd = _cmd(page1)
    actions = cmd.find(f"{{{NS_COMMANDS}}}actions")
    assert cmd.get("status") == "executing" and actions is not None, page1.xml
    assert actions.find(f"{{{NS_COMMANDS}}}next") is not None, page1.xml
    assert item_jids(page1) == newest_first[:20], page1.xml
    qid = alice.new_id("cmd")
    page2 = await alice.request(
        f"<iq type='set' to='{COMPONENT}' id='{qid}'><command xmlns='{NS_COMMANDS}' node='inbox'"
        f" sessionid='{cmd.get('sessionid')}' action='next'/></iq>", qid)
    assert _cmd(page2).get("status") == "completed", page2.xml
    assert item_jids(page2) == newest_first[20:], page2.xml

