#!/usr/bin/env python3
"""Drives Dino 0.4 (Debian 12's dino-im, running as another user under Xvfb)
through tidemark and takes screenshots; bob is a scripted client. Run by
scripts/dino-screens.sh, which starts Prosody, tidemark, a forwarder on
localhost:5222, Xvfb and a session bus first.

Screens (PNG, in --out):
  dino-1-list.png   bob's conversation in alice's list, under his name (XEP-0172 nick)
  dino-2-delivered.png  alice's message after bob's receipt, before he read it
  dino-2-chat.png   a 1:1 chat: alice's message typed in Dino, after bob's receipt and read marker
  dino-4-renamed.png  the list once bob has a roster name (set from another client of alice's)
  dino-3-room.png   the members-only room (autojoin bookmark): alice's message, bob's answer and
                    read marker
"""

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "scripts"))
from gajim_screens import Screen, bob_answers, quiet, step, subscribe_each_other, wait_for, wait_ready  # noqa: E402
from gajim_screens import ROOM  # noqa: E402
from match import message, presence  # noqa: E402
from stanzas import group_displayed, muc_join  # noqa: E402
from xmpp_client import Client, room_stanza_id  # noqa: E402


class DinoScreen(Screen):
    def shot(self, name, window=None, crop=None, keep=True):
        raw = self.shots / f"{name}.png"
        subprocess.run(["import", "-window", window or "root", str(raw)],
                       env={**os.environ, "DISPLAY": self.args.display}, check=True)
        if not keep:
            return raw
        final = self.out / f"{name}.png"
        cmd = ["convert", str(raw)] + (["-crop", crop, "+repage"] if crop else [])
        # Dino's flat white screens: an undithered 64-colour palette keeps them ~10 kB.
        subprocess.run(cmd + ["-strip", "+dither", "-colors", "64", "PNG8:" + str(final)], check=True)
        print(f"  saved {final.relative_to(REPO)}", flush=True)
        return final


def start_dino(screen, args, name):
    log = open(Path(args.run) / f"dino-{name}.log", "wb")
    p = subprocess.Popen(
        ["runuser", "-u", args.user, "--", "env", *[f"{k}={v}" for k, v in screen.env.items()], "dino-im"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (Path(args.run) / "dino.pid").write_text(str(p.pid))
    return p


def stop_dino(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


async def main(args):
    screen = DinoScreen(args)
    screen.env["DBUS_SESSION_BUS_ADDRESS"] = args.dbus
    (a_user, a_pw), (b_user, b_pw) = (x.split(":", 1) for x in (args.alice, args.bob))

    step("a first start of Dino makes its database; alice's account goes into its `account` table")
    db = Path(args.home) / ".local/share/dino/dino.db"
    p = start_dino(screen, args, "first")
    await wait_for(db.exists, "Dino making its database", timeout=30)
    await asyncio.sleep(3)
    stop_dino(p)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO account (bare_jid, resourcepart, password, alias, enabled) VALUES (?, ?, ?, ?, 1)",
                (f"{a_user}@localhost", "dino", a_pw, "alice"))
    con.commit()
    con.close()

    step("setting up: alice and bob subscribe to each other's tracked addresses")
    alice = await Client("alice", a_user, a_pw, "setup", port=args.port, note=quiet).connect()
    bob = await Client("bob", b_user, b_pw, "phone", port=args.port, note=quiet).connect(priority=10)
    await wait_ready(alice)
    await subscribe_each_other(alice, bob)
    qid = alice.new_id("bm")
    reply = await alice.request(
        f"<iq type='set' id='{qid}'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
        f"<conference jid='{ROOM}' autojoin='true' name='team'><nick>alice</nick></conference>"
        f"</storage></query></iq>", qid)
    assert reply.type == "result", reply.xml
    await alice.disconnect()
    step(f"bob joins {ROOM}")
    await bob.send(muc_join(ROOM, "bob"))
    await bob.expect(message(frm=f"{ROOM}/tidemark", type="groupchat"))
    log = []
    answers = asyncio.ensure_future(bob_answers(bob, alice.tracked, log))

    step("starting Dino as " + args.user)
    start_dino(screen, args, "run")
    win = await screen.wait_window("Dino", timeout=40)
    screen.xdo("windowmove", win, "0", "0", check=False)
    screen.xdo("windowsize", win, "1280", "800", check=False)
    try:
        await bob.expect(presence(frm=f"{alice.tracked}/dino", type=False), timeout=40)
    except BaseException:
        screen.shot("dino-0-noconnect", keep=False)
        raise
    await asyncio.sleep(3)
    screen.shot("dino-0-start", keep=False)
    if args.stop_after == "start":
        answers.cancel()
        return

    step("1. bob writes first: his conversation appears in alice's list")
    await bob.send(f"<message type='chat' to='{alice.tracked}' id='hi1'><body>Hi alice, are you there?</body>"
                   f"<markable xmlns='urn:xmpp:chat-markers:0'/><request xmlns='urn:xmpp:receipts'/></message>")
    await asyncio.sleep(4)
    screen.shot("dino-1-list", crop="640x180+0+0")
    try:
        await run_steps(args, screen, bob, log)
    except BaseException:
        screen.shot("failed", keep=False)
        print(f"  the screen at the failure: {screen.shots / 'failed.png'}", flush=True)
        raise
    step("4. another client of alice's gives bob a roster name (what renaming him would do)")
    other = await Client("alice", a_user, a_pw, "other", port=args.port, note=quiet).connect(available=False)
    qid = other.new_id("rn")
    reply = await other.request(f"<iq type='set' id='{qid}'><query xmlns='jabber:iq:roster'>"
                                f"<item jid='{bob.tracked}' name='bob'/></query></iq>", qid)
    assert reply.type == "result", reply.xml
    await other.disconnect()
    await asyncio.sleep(3)
    screen.shot("dino-4-renamed", crop="640x180+0+0")
    answers.cancel()
    await bob.disconnect()


def type_text(screen, text):
    screen.xdo("mousemove", "790", "765", "click", "1")  # the message box
    screen.xdo("type", "--delay", "30", text)
    screen.xdo("key", "Return")


async def run_steps(args, screen, bob, log):
    step("2. alice opens bob's conversation and writes; bob's client sends a receipt, then reads it")
    screen.xdo("mousemove", "150", "85", "click", "1")
    await asyncio.sleep(2)
    screen.shot("dino-2-open", keep=False)
    type_text(screen, "Lunch at noon?")
    await wait_for(lambda: ("chat", "Lunch at noon?") in log, "bob getting alice's message")
    await asyncio.sleep(1)
    screen.shot("dino-2-delivered", crop="640x100+305+635")
    await asyncio.sleep(4)
    screen.shot("dino-2-chat")

    # What Dino sent bob for his first message (he asked for a receipt and it was markable).
    for st in bob.history:
        if st.kind == "message" and st.body is None:
            print(f"  bob got from alice's side: {st.xml[:300]}", flush=True)

    step(f"3. the room {ROOM} (autojoin bookmark), alice writes there, bob answers")
    screen.xdo("mousemove", "150", "140", "click", "1")
    await asyncio.sleep(2)
    screen.shot("dino-3-open", keep=False)
    type_text(screen, "Standup in five")
    await wait_for(lambda: ("room", "Standup in five") in log, "bob getting alice's room message")
    await asyncio.sleep(1)
    screen.shot("dino-3-delivered", keep=False)
    # bob reads it: a displayed marker naming the room's stanza-id (XEP-0333 in groups).
    mine = next(st for st in bob.history if st.kind == "message" and st.body == "Standup in five")
    await bob.send(group_displayed(ROOM, room_stanza_id(mine, ROOM), bob.new_id("gd")))
    await asyncio.sleep(4)
    screen.shot("dino-3-room")
    for st in bob.history:
        if st.kind == "message" and st.type == "groupchat" and st.body is None:
            print(f"  bob got in the room: {st.xml[:300]}", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("port", "alice", "bob", "display", "dbus", "user", "home", "run", "out", "tidemark"):
        p.add_argument("--" + a, required=True, type=int if a == "port" else str)
    p.add_argument("--stop-after", default="", help="'start': leave everything running after Dino is up")
    asyncio.run(main(p.parse_args()))
