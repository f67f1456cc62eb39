#!/usr/bin/env python3
"""What an agent of a team desk (xep/desk.md, issue 11) sees in Gajim 1.7:
Gajim runs as alice, an agent of the desk `support`; bob, the other agent,
and dan, a customer, are scripted clients. Run by
scripts/gajim-desk-screens.sh, which starts Prosody, tidemark (with the
desk), Xvfb and a session bus first and writes Gajim's account settings.
Reuses gajim_screens.py's helpers.

Screens (PNG, in --out):
  desk-0-request.png        the desk's presence subscription request on alice's account page
  desk-0-accepted.png       accepted (and added, as Gajim then offers): the desk in her contact list
  desk-1-list.png           dan writes: alice's chat list shows his conversation
  desk-2-chat.png           the conversation: the event line and dan's message
  desk-3-read.png           alice's answer typed in Gajim, its receipt tick, then dan's read line
  desk-4-commands.png       Execute Command on chat.localhost: the service's commands
  desk-4-desk-form.png      the `desk` command's form, view `all` chosen
  desk-4-desk-result.png    its result: counts and the conversation
  desk-5-contact-menu.png   the conversation added to the contact list: its menu
  desk-5-assign-form.png    Execute Command on the conversation: `assign`'s form
  desk-5-assign-done.png    its result
  desk-5-assigned.png       the chat with the event line of the assignment
"""

import asyncio
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gajim_screens import (  # noqa: E402
    Screen, arguments, gv, quiet, step, wait_for, wait_geometry, wait_ready)
from match import message, presence  # noqa: E402
from stanzas import NS_DESK, chat, desk_history, marker, receipt, subscribed  # noqa: E402
from xmpp_client import Client  # noqa: E402

DESK = "support@chat.localhost"
# dan@localhost's conversation, as agents see it (xep/desk.md §3).
CONVERSATION = "support\\2fdan\\40localhost@chat.localhost"
ACCOUNT = "alice"
DAN_WRITES = "Hello, my order 1234 has not arrived yet."
ALICE_ANSWERS = "Sorry to hear that, dan! Let me check order 1234."


class Stop(Exception):
    """--stop-after reached: leave everything running."""


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
            if st.kind != "message" or st.body is None or (st.frm or "").split("/")[0] != DESK:
                continue
            log.append(st.body)
            await dan.send(receipt(DESK, st.id, dan.new_id("r")))

            async def read_later(mid=st.id):
                await asyncio.sleep(2)
                await dan.send(marker("displayed", DESK, mid, dan.new_id("d")))
            asyncio.ensure_future(read_later())
        seen = len(dan.history)


async def expect_assigned(agent):
    """The conversation's history (xep/desk.md §6.3), as any agent reads
    it, has the assignment to alice."""
    qid = agent.new_id("h")
    reply = await agent.request(desk_history(qid, "support", "dan@localhost"), qid)
    kinds = [(e.get("kind"), e.get("to")) for e in reply.el.iter(f"{{{NS_DESK}}}event")]
    assert ("assigned", "alice@localhost") in kinds, reply.xml


def tidemark_log(run):
    return (Path(run) / "tidemark.log").read_text(errors="replace")


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
    await screen.start_gajim()
    await watch.expect(presence(frm=f"{a_user}@localhost/gajim", type=False), timeout=40)
    await watch.disconnect()
    await asyncio.sleep(3)
    screen.shot("desk-0-start", keep=False)
    try:
        if args.stop_after == "start":
            raise Stop
        dan = await Client("dan", d_user, d_pw, "phone", port=args.port, note=quiet).connect()
        await run_steps(args, screen, bob, dan)
        await dan.disconnect()
    except Stop:
        print(f"  stopped after {args.stop_after!r}: Gajim, Prosody and tidemark keep running", flush=True)
    except BaseException:
        screen.failure_shot()
        raise
    await bob.disconnect()


def click(screen, x, y, button="1"):
    screen.xdo("mousemove", str(x), str(y), "click", button)


def pointer_away(screen):
    """Off the chat list, whose hovered row shows a close button."""
    screen.xdo("mousemove", "900", "500")


async def close_window(screen, x, y):
    """Escape closes Gajim's assistants; with no window manager, keys go to
    the window under the pointer."""
    screen.xdo("mousemove", str(x), str(y))
    screen.xdo("key", "Escape")
    await asyncio.sleep(1)


async def add_contact(screen):
    """Gajim's Add Contact assistant, already filled in: Next, then Add
    Contact (buttons at its bottom right)."""
    x, y, w, h, _ = await wait_geometry(screen, "Add Contact")
    await asyncio.sleep(1)
    click(screen, x + w - 57, y + h - 42)  # Next
    await asyncio.sleep(2.5)
    click(screen, x + w - 159, y + h - 42)  # Add Contact
    await asyncio.sleep(2)


async def run_steps(args, screen, bob, dan):
    def stop_after(name):
        if args.stop_after == name:
            raise Stop

    step("0. the desk's subscription request on alice's account page; she accepts it")
    click(screen, 34, 768)  # the account button, bottom left
    await asyncio.sleep(1.5)
    screen.shot("desk-0-request", crop="1280x480+0+0")
    click(screen, 970, 430)  # Accept
    await wait_for(lambda: re.search(r"desk agent availability changed.*agent=alice@localhost available=true",
                                     tidemark_log(args.run)), "the desk seeing alice available")
    # Gajim then offers to add the desk to her contact list, as for anyone
    # not in it yet; she does (the desk accepts at once).
    await add_contact(screen)
    await asyncio.sleep(1)
    screen.shot("desk-0-accepted", crop="1280x480+0+0")
    stop_after("request")

    step("1. dan writes to the desk: alice's chat list")
    await dan.send(chat(DESK, "d1", DAN_WRITES))
    await bob.expect(message(frm=CONVERSATION, id="d1"), timeout=10)
    log = []
    reads = asyncio.ensure_future(dan_reads(dan, log))
    await asyncio.sleep(1.5)
    click(screen, 34, 117)  # the workspace, top left: its chat list
    await asyncio.sleep(1.5)
    screen.shot("desk-1-list", crop="1280x300+0+0")
    stop_after("list")

    step("2. the conversation: the event line and dan's message")
    click(screen, 240, 166)  # the chat list's first row
    pointer_away(screen)
    await asyncio.sleep(2)
    screen.shot("desk-2-chat", crop="1280x800+0+0")
    stop_after("chat")

    step("3. alice answers from Gajim; dan's client acknowledges, then reads it")
    screen.type_text(ALICE_ANSWERS)
    await wait_for(lambda: ALICE_ANSWERS in log, "dan getting alice's answer")
    pointer_away(screen)
    await asyncio.sleep(4)  # the receipt at once, the displayed marker two seconds later
    screen.shot("desk-3-read", crop="1280x800+0+0")
    # What dan's own message came to (xep/status.md): Gajim sends no
    # receipt to an address it has no subscription with, only the
    # displayed marker of the open chat.
    st = await dan.status(DESK, "d1")
    for r in st.recipients.values():
        print(f"  dan's d1, by the status query: {r.state} (sent {r.sent}, delivered {r.delivered},"
              f" read {r.read})", flush=True)
    if st.error:
        print(f"  dan's d1, by the status query: {st.error}", flush=True)
    stop_after("read")

    step("4. the desk command, run from Gajim (Execute Command on chat.localhost)")
    screen.action(f"{ACCOUNT}-execute-command", f"<{gv('chat.localhost')}>")
    x, y, w, h, win = await wait_geometry(screen, "Command List")
    await asyncio.sleep(2.5)
    screen.shot("desk-4-commands", crop=f"{w}x{h}+{x}+{y}")
    # Listed in disco order: read-receipts, status, inbox, mark-read, then desk.
    click(screen, x + 155, y + 216)
    await asyncio.sleep(0.5)
    click(screen, x + w - 67, y + h - 42)  # Execute
    await asyncio.sleep(2)
    stop_after("desk-form")
    # View: `all` (the default, `mine`, is empty: nobody took dan yet),
    # the third of the list that drops down over the form.
    click(screen, x + 369, y + 150)
    await asyncio.sleep(1)
    screen.shot("desk-4-view-menu", keep=False)
    click(screen, x + 260, y + 211)
    await asyncio.sleep(1)
    screen.shot("desk-4-desk-form", crop=f"{w}x{h}+{x}+{y}")
    click(screen, x + w - 73, y + h - 42)  # Complete
    await asyncio.sleep(2.5)
    screen.shot("desk-4-desk-result", crop=f"{w}x{h}+{x}+{y}")
    stop_after("desk-result")
    await close_window(screen, x + w // 2, y + h - 100)

    step("5. assign, run on the conversation: added to the contact list, whose menu has Execute Command")
    # Gajim 1.7.3's chat menu has no Execute Command; it offers "Add to
    # Contact List…", and the contact list's menu has it.
    click(screen, 34, 117)
    await asyncio.sleep(1)
    click(screen, 240, 166)
    await asyncio.sleep(1.5)
    click(screen, 1253, 776)  # the chat's menu, bottom right
    await asyncio.sleep(1)
    click(screen, 1180, 722)  # Add to Contact List…
    await add_contact(screen)
    # Gajim shows the contact list: the desk (available) sorts first, the
    # conversation (no presence) second. A right click there, away from
    # the name so that the menu does not cover it.
    click(screen, 300, 220, "3")
    await asyncio.sleep(0.3)
    screen.xdo("mousemove", "398", "180")  # onto the menu: no tooltip over it
    await asyncio.sleep(0.7)
    screen.shot("desk-5-contact-menu", crop="640x300+0+0")
    click(screen, 398, 206)  # Execute Command…
    x, y, w, h, win = await wait_geometry(screen, "Command List")
    await asyncio.sleep(2.5)
    click(screen, x + 73, y + 84)  # assign, the first
    await asyncio.sleep(0.5)
    click(screen, x + w - 67, y + h - 42)  # Execute
    await asyncio.sleep(2)
    screen.shot("desk-5-assign-form", crop=f"{w}x{h}+{x}+{y}")
    click(screen, x + w - 73, y + h - 42)  # Complete (Assign to: Me)
    await asyncio.sleep(2)
    screen.shot("desk-5-assign-done", crop=f"{w}x{h}+{x}+{y}")
    await close_window(screen, x + w // 2, y + h - 100)
    await expect_assigned(bob)
    click(screen, 34, 117)
    await asyncio.sleep(1)
    click(screen, 240, 166)
    pointer_away(screen)
    await asyncio.sleep(2)
    screen.shot("desk-5-assigned", crop="1280x800+0+0")
    reads.cancel()


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__, "alice", "bob", "dan")))
