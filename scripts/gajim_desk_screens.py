#!/usr/bin/env python3
"""What an agent of a team desk (xep/desk.md, issue 11) sees in Gajim 1.7:
Gajim runs as alice, an agent of the desk `support`; bob, the other agent,
and dan, a customer, are scripted clients. Run by
scripts/gajim-desk-screens.sh, which starts Prosody, tidemark (with the
desk), Xvfb and a session bus first and writes Gajim's account settings.
Reuses gajim_screens.py's helpers.

Screens (PNG, in --out):
  desk-0-request.png       the desk's presence subscription request on alice's account page
  desk-1-list.png          alice's chat list: dan's conversation
  desk-2-chat.png          the conversation: the event line and dan's message
  desk-3-read.png          alice's answer typed in Gajim, then dan's read marker
  desk-4-desk-form.png     Execute Command on chat.localhost: the `desk` command's form
  desk-4-desk-result.png   its result: counts and the conversation
  desk-5-assign-form.png   Execute Command on the conversation's address: `assign`
  desk-5-assigned.png      the chat with the event line of the assignment
"""

import asyncio
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gajim_screens import (  # noqa: E402
    REPO, Screen, arguments, gv, quiet, step, wait_for, wait_geometry, wait_ready)
from match import message, presence  # noqa: E402
from stanzas import chat, marker, receipt, subscribed  # noqa: E402
from xmpp_client import Client  # noqa: E402

DESK = "support@chat.localhost"
# dan@localhost's conversation, as agents see it (xep/desk.md §3).
CONVERSATION = "support\\2fdan\\40localhost@chat.localhost"
ACCOUNT = "alice"
DAN_WRITES = "Hello, my order 1234 has not arrived yet."
ALICE_ANSWERS = "Sorry to hear that, dan! Let me check order 1234."


async def accept_desk_request(client):
    """A scripted agent accepts the desk's presence subscription request,
    as their client would ask them to."""
    await client.expect(presence(frm=DESK, type="subscribe"), timeout=20)
    await client.send(subscribed(DESK))


async def dan_reads(dan, log):
    """dan's client: for each message from the desk, a receipt at once and,
    two seconds later, a displayed marker (he read it)."""
    seen = 0
    while True:
        await asyncio.sleep(0.2)
        for st in dan.history[seen:]:
            if st.kind != "message" or st.body is None or not (st.frm or "").startswith(DESK):
                continue
            log.append(st.body)
            await dan.send(receipt(DESK, st.id, dan.new_id("r")))

            async def read_later(mid=st.id):
                await asyncio.sleep(2)
                await dan.send(marker("displayed", DESK, mid, dan.new_id("d")))
            asyncio.ensure_future(read_later())
        seen = len(dan.history)


def tidemark_log(run):
    return (Path(run) / "tidemark.log").read_text(errors="replace")


def alice_available_at_desk(run):
    """tidemark's log says the desk counts alice as available."""
    return re.search(r"desk agent availability changed.*agent=alice@localhost available=true",
                     tidemark_log(run)) is not None


async def main(args):
    screen = Screen(args)
    (a_user, a_pw), (b_user, b_pw), (d_user, d_pw) = (x.split(":", 1) for x in (args.alice, args.bob, args.dan))

    step("bob, the scripted agent, comes online and accepts the desk's request")
    bob = await Client("bob", b_user, b_pw, "desk", port=args.port, note=quiet).connect()
    await wait_ready(bob)
    await accept_desk_request(bob)
    # Who sees alice come online: another session of hers, with a negative
    # priority so that nothing sent to her bare address reaches it.
    watch = await Client("alice", a_user, a_pw, "watch", port=args.port, note=quiet).connect(priority=-1)

    step("starting Gajim as " + args.user)
    main_win = await screen.start_gajim()
    await watch.expect(presence(frm=f"{a_user}@localhost/gajim", type=False), timeout=40)
    await watch.disconnect()
    await asyncio.sleep(3)
    screen.shot("desk-0-start", keep=False)
    if args.stop_after == "start":
        return
    try:
        await run_steps(args, screen, main_win, bob, d_user, d_pw)
    except BaseException:
        screen.failure_shot()
        raise
    await bob.disconnect()


async def run_steps(args, screen, main_win, bob, d_user, d_pw):
    step("0. the desk's subscription request on alice's account page; she accepts it")
    screen.xdo("mousemove", "34", "768", "click", "1")  # the account button, bottom left
    await asyncio.sleep(1.5)
    screen.shot("desk-0-request", crop="1280x400+0+0")
    if args.stop_after == "request":
        return


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__, "alice", "bob", "dan")))
