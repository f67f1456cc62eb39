#!/usr/bin/env python3
"""tidemark demo: alice and bob chat through tidemark; alice watches m1 go
sent -> delivered -> read; in a group with carol, alice watches g1 go
sent -> some-read -> all-read; carol writes to the team desk
support@chat.localhost and bob answers as its agent; then bob goes offline
and alice's m2 fails.

Run by scripts/demo.sh, which starts Prosody and tidemark first:
    python3 scripts/demo.py --port 5222 --alice alice:PW --bob bob:PW --carol carol:PW

The demo accounts may have been used from a person's own client since the last
run: the demo turns read receipts back on (the ad-hoc command), logs in at the
highest priority so that it gets the messages, waits for each status to reach
at least the step it shows (another client may have answered first), and takes
receipts and markers from any of a user's clients.
"""

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from match import (Pred, all_read, desk_event, iq, marker_for, message, presence, receipt_for,  # noqa: E402
                   stanza_ids)
from stanzas import (NS_COMMANDS, NS_DATA, NS_DESK, NS_INBOX, chat, command_execute,  # noqa: E402
                     command_submit, desk_conversation, desk_view, disco_info, group_displayed, inbox_list,
                     marker, receipt, subscribe, subscribed)
from xmpp_client import Client  # noqa: E402


def quiet(_line):
    pass


def step(text):
    print(f"\n* {text}")


def show(mid, st):
    if st.error:
        return f"  {mid} -> (status query error: {st.error})"
    r = next(iter(st.recipients.values()))
    stamps = "  ".join(f"{k}={getattr(r, k)}" for k in ("sent", "delivered", "read", "failed") if getattr(r, k))
    line = f"  {mid} -> {r.state:<9} {stamps}"
    if r.reason_condition:
        line += f"\n       reason: {r.reason_condition}: {r.reason_text}"
    return line


# How far a status has come: another client of the recipient may answer
# before the demo's does, so a step waits for its state or a later one.
PROGRESS = {"sent": 1, "delivered": 2, "some-read": 2, "read": 3, "all-read": 3, "failed": 9}
PRIORITY = 127  # the highest: the demo's clients get messages to the bare JID


async def watch(alice, conversation, mid, want, seen, show=show):
    """Query until mid's status reaches `want` or beyond (a few seconds at
    most); print each change."""
    for _ in range(50):
        st = await alice.status(conversation, mid)
        state = st.summary or st.error
        if state != seen.get(mid):
            seen[mid] = state
            print(show(mid.split("-")[0], st))
        if state == want or (want != "failed" and PROGRESS.get(state, 0) >= PROGRESS[want]):
            return st
        await asyncio.sleep(0.1)
    raise SystemExit(f"demo: {mid} did not become {want} (last: {seen.get(mid)})")


async def read_receipts_on(client):
    """XEP-0050: a person may have turned read receipts off from their own
    client; the demo needs them on, and says when it turns them back on."""
    qid = client.new_id("rr")
    form = await client.request(command_execute(qid, "read-receipts"), qid)
    value = form.el.find(f".//{{{NS_DATA}}}field[@var='send-read-receipts']/{{{NS_DATA}}}value")
    if value is not None and value.text == "1":
        return
    sid = form.child(NS_COMMANDS, "command").get("sessionid") if form.type == "result" else f"demo-{qid}"
    qid = client.new_id("rr")
    reply = await client.request(command_submit(qid, "read-receipts", sid, {"send-read-receipts": "1"}), qid)
    if reply.type != "result":
        raise SystemExit(f"demo: could not turn read receipts on for {client.jid}: {reply.xml}")
    print(f"  (read receipts were off for {client.jid}, set from another client: the demo turned them on)")


def from_any(client):
    """From any of the client's user's resources (a person's client included)."""
    return lambda s: (s.frm or "").startswith(client.tracked + "/")


def taken(client, pred):
    """The first stanza already received that matches, taken; else None."""
    for i, st in enumerate(client.received):
        if pred(st):
            return client.received.pop(i)
    return None


def others_online(watcher, contact):
    """The contact's resources other than the demo's that `watcher` last saw available."""
    last = {}
    for st in watcher.history:
        if st.kind == "presence" and (st.frm or "").startswith(contact.tracked + "/"):
            last[st.frm] = st.type
    return [jid for jid, type_ in last.items() if type_ is None and jid != contact.tracked_full]


async def join(client, room, run):
    """Join as the client's name, or, when a person's client holds that nick, another."""
    for nick in (client.name, f"{client.name}-{run}"):
        await client.send(f"<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        got = await client.expect(presence(frm=f"{room}/{nick}", where=lambda s: s.type in (None, "error"))
                                  | subject_of(room), what=f"{room}'s answer to {client.name}'s join")
        if got.kind == "presence" and got.type == "error":
            continue
        await client.expect(subject_of(room), what=f"the subject of {room}")
        return nick
    raise SystemExit(f"demo: {client.name} could not join {room}")


def subject_of(room):
    from match import subject
    return subject(room)


def show_group(mid, st):
    if st.error:
        return f"  {mid} -> (status query error: {st.error})"
    who = ", ".join(f"{j} at {r.read}" for j, r in st.recipients.items() if r.read) or "nobody yet"
    line = f"  {mid} -> {st.summary:<9} read by {st.read} of {st.recipient_count}: {who}"
    if st.all_read:
        line += f"\n       all read at {st.all_read}"
    return line


async def show_inbox(client):
    """The client's conversation list (xep/inbox.md), one line per conversation."""
    step(f"{client.name}'s conversation list (urn:tidemark:inbox:0)")
    qid = client.new_id("inbox")
    reply = await client.request(inbox_list(qid), qid)
    el = reply.child(NS_INBOX, "inbox")
    if el is None:
        print(f"  no list: {reply.xml}")
        return
    print(f"  {el.get('total-unread')} unread in all")
    for c in el.findall(f"{{{NS_INBOX}}}conversation"):
        mine = f", your last message: {c.get('state')}" if c.get("state") else ""
        print(f"  {c.get('name'):8} {c.get('jid')}: {c.get('unread')} unread, last from "
              f"{c.get('last-from')}{mine}")


DESK = "support@chat.localhost"


async def desk_scene(bob, carol, run):
    """carol writes to the desk; bob, its agent, answers; both see statuses."""
    step(f"carol writes to the team desk {DESK}; bob is its agent")
    if bob.roster_subscription(DESK) not in ("from", "both"):
        await bob.expect(presence(frm=DESK, type="subscribe"), timeout=10,
                         what="the desk's request to see bob's presence")
        await bob.send(subscribed(DESK))
        print("  bob accepted the desk's request to see when he is available")
        await asyncio.sleep(0.5)
    conv = desk_conversation("support", carol.jid)
    d1, r1 = f"d1-{run}", f"r1-{run}"
    await carol.send(chat(DESK, d1, body="My order has not arrived."))
    got = await bob.expect(message(frm=conv, id=d1))
    print(f"  bob got {got.body!r} from {got.frm}")
    opened = taken(bob, desk_event("opened", frm=conv))
    if opened:
        print(f"  ...after the event {opened.body!r}")
    await bob.send(receipt(conv, d1))
    await carol.expect(receipt_for(d1) & Pred(lambda st: st.frm == DESK, "from the desk"))
    print(f"  carol got the receipt from {DESK} (never from bob's own address)")
    await bob.send(chat(conv, r1, body="Sorry about that; it ships today."))
    answer = await carol.expect(message(frm=DESK, id=r1))
    print(f"  carol got {answer.body!r} from {answer.frm}")
    await carol.send(marker("displayed", DESK, r1))
    await bob.expect(marker_for("displayed", r1) & Pred(lambda st: st.frm == conv, "from the conversation"))
    print("  bob got carol's displayed marker in her conversation")
    await bob.send(desk_view(f"view-{run}", "support", "all"))
    view = (await bob.expect(iq(id=f"view-{run}"))).child(NS_DESK, "view")
    counts = {c.get("view"): f"{c.get('conversations')}/{c.get('unread')}" for c in view.findall(f"{{{NS_DESK}}}count")}
    print(f"  bob's desk view, conversations/unread: {counts}")


async def main(args):
    (a_user, a_pw), (b_user, b_pw), (c_user, c_pw) = (
        x.split(":", 1) for x in (args.alice, args.bob, args.carol))
    alice = await Client("alice", a_user, a_pw, "demo", port=args.port, note=quiet).connect(priority=PRIORITY)
    bob = await Client("bob", b_user, b_pw, "demo", port=args.port, note=quiet).connect(priority=PRIORITY)
    carol = await Client("carol", c_user, c_pw, "demo", port=args.port, note=quiet).connect(priority=PRIORITY)
    for attempt in range(60):  # tidemark may still be connecting to Prosody
        await alice.send(disco_info(f"ready{attempt}"))
        try:
            if (await alice.expect(iq(id=f"ready{attempt}"), timeout=1)).type == "result":
                break
        except AssertionError:
            pass
        await asyncio.sleep(0.5)
    else:
        raise SystemExit("demo: tidemark does not answer at chat.localhost; see run/demo/tidemark.log")
    # Message ids are unique per run (tidemark keeps what earlier runs sent);
    # the demo calls them m1 and m2.
    run = secrets.token_hex(3)
    m1, m2, g1 = f"m1-{run}", f"m2-{run}", f"g1-{run}"
    for c in (alice, bob, carol):
        await read_receipts_on(c)
    print(f"alice is {alice.full}; she writes to bob at his tracked address {bob.tracked}")
    print(f"bob   is {bob.full}; alice reaches him from {alice.tracked_full}")

    step("alice and bob subscribe to each other through their tracked addresses")
    for x, y in ((alice, bob), (bob, alice)):
        if x.roster_subscription(y.tracked) in ("to", "both"):
            print(f"  {x.jid} is already subscribed to {y.tracked} (an earlier run)")
            continue
        await x.send(subscribe(y.tracked))
        await y.expect(presence(frm=x.tracked, type="subscribe"))
        await y.send(subscribed(x.tracked))
        await x.expect(presence(frm=y.tracked, type="subscribed"))
        print(f"  {y.jid} approved {x.jid}")
    await alice.expect(presence(frm=bob.tracked_full, type=False))
    print(f"  alice sees bob online at {bob.tracked_full}")

    seen = {}
    step('alice -> bob: "Lunch at noon?" (id m1)')
    await alice.send(chat(bob.tracked, m1, body="Lunch at noon?"))
    got = await bob.expect(message(frm=alice.tracked_full, id=m1))
    print(f"  bob got {got.body!r} from {got.frm}")
    await watch(alice, bob.tracked, m1, "sent", seen)

    step("bob's client sends a XEP-0184 receipt")
    await bob.send(receipt(alice.tracked_full, m1))
    await watch(alice, bob.tracked, m1, "delivered", seen)
    if taken(alice, receipt_for(m1) & Pred(from_any(bob), "")):
        print("  alice got the receipt")

    step("bob reads it: his client sends a XEP-0333 displayed marker")
    await bob.send(marker("displayed", alice.tracked_full, m1))
    await watch(alice, bob.tracked, m1, "read", seen)
    if taken(alice, marker_for("displayed", m1) & Pred(from_any(bob), "")):
        print("  alice got the displayed marker")

    room = "team@chat.localhost"
    step(f"alice, bob and carol meet in the group {room}")
    nicks = {c.name: await join(c, room, run) for c in (alice, bob, carol)}
    print("  all three joined" + "".join(f" ({n} as {k})" for n, k in nicks.items() if n != k))

    step('alice -> team: "Stand-up in five minutes" (id g1)')
    reflected = await alice.say(room, nicks["alice"], g1, body="Stand-up in five minutes")
    sid = stanza_ids(reflected, by=room)[0]
    print(f"  the room gave it stanza-id {sid}; bob and carol see it")
    await watch(alice, room, g1, "sent", seen, show_group)

    step("bob reads it (a XEP-0333 displayed marker naming the stanza-id)")
    await bob.send(group_displayed(room, sid))
    await watch(alice, room, g1, "some-read", seen, show_group)

    step("carol reads it")
    await carol.send(group_displayed(room, sid))
    await watch(alice, room, g1, "all-read", seen, show_group)
    try:
        notice = await alice.expect(all_read(g1, room), timeout=2)
        print(f"  alice got the all-read notice from {notice.frm}")
    except AssertionError:
        print("  (the all-read notice went to another of alice's clients)")
    await desk_scene(bob, carol, run)
    await carol.disconnect()

    step("bob goes offline")
    await bob.disconnect()
    await alice.expect(presence(frm=bob.tracked_full, type="unavailable"))
    others = others_online(alice, bob)
    if others:
        print(f"  bob is still online from another client ({', '.join(others)}): a message to him would be"
              " delivered, so the demo skips the offline step; close that client to see it")
        await alice.disconnect()
        print("\ndemo finished.")
        return
    print("  alice sees bob go offline")

    step('alice -> bob: "Are you still there?" (id m2)')
    await alice.send(chat(bob.tracked, m2, body="Are you still there?"))
    err = await alice.expect(message(frm=bob.tracked, id=m2, type="error"))
    print(f"  alice's client shows: {err.error_text}  ({err.error_type}/{err.error_condition})")
    await watch(alice, bob.tracked, m2, "failed", seen)

    await show_inbox(alice)
    await alice.disconnect()
    print("\ndemo finished.")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--alice", required=True, help="USER:PASSWORD")
    p.add_argument("--bob", required=True, help="USER:PASSWORD")
    p.add_argument("--carol", required=True, help="USER:PASSWORD")
    asyncio.run(main(p.parse_args()))
