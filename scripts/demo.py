#!/usr/bin/env python3
"""tidemark demo: alice and bob chat through tidemark; alice watches m1 go
sent -> delivered -> read; in a group with carol, alice watches g1 go
sent -> some-read -> all-read; then bob goes offline and alice's m2 fails.

Run by scripts/demo.sh, which starts Prosody and tidemark first:
    python3 scripts/demo.py --port 5222 --alice alice:PW --bob bob:PW --carol carol:PW
"""

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from match import all_read, iq, marker_for, message, presence, receipt_for, stanza_ids  # noqa: E402
from stanzas import (chat, disco_info, group_displayed, marker, receipt, subscribe,  # noqa: E402
                     subscribed)
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


async def watch(alice, conversation, mid, want, seen, show=show):
    """Query until mid's status reaches `want` (a few seconds at most); print the change."""
    for _ in range(50):
        st = await alice.status(conversation, mid)
        state = st.summary or st.error
        if state != seen.get(mid):
            seen[mid] = state
            print(show(mid.split("-")[0], st))
        if state == want:
            return st
        await asyncio.sleep(0.1)
    raise SystemExit(f"demo: {mid} did not become {want} (last: {seen.get(mid)})")


def show_group(mid, st):
    if st.error:
        return f"  {mid} -> (status query error: {st.error})"
    who = ", ".join(f"{j} at {r.read}" for j, r in st.recipients.items() if r.read) or "nobody yet"
    line = f"  {mid} -> {st.summary:<9} read by {st.read} of {st.recipient_count}: {who}"
    if st.all_read:
        line += f"\n       all read at {st.all_read}"
    return line


async def main(args):
    (a_user, a_pw), (b_user, b_pw), (c_user, c_pw) = (
        x.split(":", 1) for x in (args.alice, args.bob, args.carol))
    alice = await Client("alice", a_user, a_pw, "demo", port=args.port, note=quiet).connect()
    bob = await Client("bob", b_user, b_pw, "demo", port=args.port, note=quiet).connect()
    carol = await Client("carol", c_user, c_pw, "demo", port=args.port, note=quiet).connect()
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
    await alice.expect(receipt_for(m1, frm=bob.tracked_full))
    print("  alice got the receipt")
    await watch(alice, bob.tracked, m1, "delivered", seen)

    step("bob reads it: his client sends a XEP-0333 displayed marker")
    await bob.send(marker("displayed", alice.tracked_full, m1))
    await alice.expect(marker_for("displayed", m1, frm=bob.tracked_full))
    print("  alice got the displayed marker")
    await watch(alice, bob.tracked, m1, "read", seen)

    room = "team@chat.localhost"
    step(f"alice, bob and carol meet in the group {room}")
    for c in (alice, bob, carol):
        await c.join(room, c.name)
    print("  all three joined")

    step('alice -> team: "Stand-up in five minutes" (id g1)')
    reflected = await alice.say(room, "alice", g1, body="Stand-up in five minutes")
    sid = stanza_ids(reflected, by=room)[0]
    print(f"  the room gave it stanza-id {sid}; bob and carol see it")
    await watch(alice, room, g1, "sent", seen, show_group)

    step("bob reads it (a XEP-0333 displayed marker naming the stanza-id)")
    await bob.send(group_displayed(room, sid))
    await watch(alice, room, g1, "some-read", seen, show_group)

    step("carol reads it")
    await carol.send(group_displayed(room, sid))
    notice = await alice.expect(all_read(g1, room))
    print(f"  alice got the all-read notice from {notice.frm}")
    await watch(alice, room, g1, "all-read", seen, show_group)
    await carol.disconnect()

    step("bob goes offline")
    await bob.disconnect()
    await alice.expect(presence(frm=bob.tracked + "/*", type="unavailable"))
    print("  alice sees bob go offline")

    step('alice -> bob: "Are you still there?" (id m2)')
    await alice.send(chat(bob.tracked, m2, body="Are you still there?"))
    err = await alice.expect(message(frm=bob.tracked, id=m2, type="error"))
    print(f"  alice's client shows: {err.error_text}  ({err.error_type}/{err.error_condition})")
    await watch(alice, bob.tracked, m2, "failed", seen)

    await alice.disconnect()
    print("\ndemo finished.")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--alice", required=True, help="USER:PASSWORD")
    p.add_argument("--bob", required=True, help="USER:PASSWORD")
    p.add_argument("--carol", required=True, help="USER:PASSWORD")
    asyncio.run(main(p.parse_args()))
