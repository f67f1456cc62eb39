#!/usr/bin/env python3
"""Drives Gajim 1.7 (running as another user under Xvfb) through tidemark and
takes screenshots; bob is a scripted client. Run by scripts/gajim-screens.sh,
which starts Prosody, tidemark, Xvfb and a session bus first and writes
Gajim's account settings.

Screens (PNG, in --out):
  1-roster.png         bob in alice's contact list (and Start Chat) under his name, not bob\\40localhost
  2-chat-read.png      a 1:1 chat: alice's message with its delivered tick, then bob's read line
  3-room-after-kill.png  the room after tidemark was killed (kill -9) and restarted:
                       alice's message typed in Gajim reached bob, who answered
  4-status-form.png    the `status` ad-hoc command's form, run from Gajim
  4-status-result.png  its result
  5-room-subject.png   the room's subject row, set by bob
  5-room-no-subject.png  a room nobody gave a subject: an empty one from the service's nick
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
from match import iq, message, presence  # noqa: E402
from stanzas import disco_info, marker, muc_join, receipt, subscribe, subscribed  # noqa: E402
from xmpp_client import Client  # noqa: E402

ROOM = "team@chat.localhost"
# An open room bob makes by joining it (Gajim's autojoin asks disco#info
# first, and a room that does not exist yet answers item-not-found); nobody
# gives it a subject.
LOBBY = "lobby@chat.localhost"
SUBJECT = "Release on Friday: read the checklist"


def gv(text):
    """`text` as a GVariant string literal (gdbus call's argument syntax)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quiet(_line):
    pass


def step(text):
    print(f"* {text}", flush=True)


class Screen:
    """Gajim's user, display and session bus, and the screenshots."""

    def __init__(self, args):
        self.args = args
        self.env = {"HOME": args.home, "DISPLAY": args.display, "DBUS_SESSION_BUS_ADDRESS": args.dbus,
                    "LANG": "C.UTF-8", "NO_AT_BRIDGE": "1", "GDK_BACKEND": "x11",
                    "PATH": "/usr/bin:/bin"}
        self.shots = Path(args.run) / "shots"
        self.out = Path(args.out)

    def as_user(self, *cmd, check=True, capture=False):
        env = [f"{k}={v}" for k, v in self.env.items()]
        return subprocess.run(["runuser", "-u", self.args.user, "--", "env", *env, *cmd],
                              check=check, capture_output=capture, text=True)

    def xdo(self, *cmd, check=True):
        r = subprocess.run(["xdotool", *cmd], env={**os.environ, "DISPLAY": self.args.display},
                           capture_output=True, text=True, check=False)
        if check and r.returncode != 0:
            raise RuntimeError(f"xdotool {' '.join(cmd)}: {r.stderr.strip()}")
        return r.stdout.strip()

    def windows(self, name):
        out = self.xdo("search", "--onlyvisible", "--name", name, check=False)
        return [w for w in out.split() if w]

    async def wait_window(self, name, timeout=30):
        for _ in range(int(timeout * 4)):
            ws = self.windows(name)
            if ws:
                return ws[-1]
            await asyncio.sleep(0.25)
        raise SystemExit(f"gajim-screens: no window named {name!r} appeared")

    def action(self, name, *params):
        """Activates a Gajim application action over D-Bus (org.gtk.Actions)."""
        variant = "[" + ", ".join(params) + "]"
        self.as_user("gdbus", "call", "--session", "--dest", "org.gajim.Gajim", "--object-path",
                     "/org/gajim/Gajim", "--method", "org.gtk.Actions.Activate", name, variant, "{}",
                     capture=True)

    def shot(self, name, window=None, crop=None, keep=True):
        raw = self.shots / f"{name}.png"
        subprocess.run(["import", "-window", window or "root", str(raw)],
                       env={**os.environ, "DISPLAY": self.args.display}, check=True)
        if not keep:  # only under run/gajim/shots
            return raw
        final = self.out / f"{name}.png"
        cmd = ["convert", str(raw)]
        if crop:
            cmd += ["-crop", crop, "+repage"]
        # Small enough for a repository: 8-bit palette, stripped.
        cmd += ["-strip", "-colors", "64", "PNG8:" + str(final)]
        subprocess.run(cmd, check=True)
        print(f"  saved {final.relative_to(REPO)}", flush=True)
        return final

    async def start_gajim(self):
        """Starts Gajim as the user, its main window filling the screen
        (there is no window manager); returns that window."""
        run = Path(self.args.run)
        gajim = subprocess.Popen(
            ["runuser", "-u", self.args.user, "--", "env", *[f"{k}={v}" for k, v in self.env.items()], "gajim"],
            stdout=open(run / "gajim.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        (run / "gajim.pid").write_text(str(gajim.pid))
        main_win = await self.wait_window("Gajim")
        self.xdo("windowmove", main_win, "0", "0", check=False)
        self.xdo("windowsize", main_win, "1280", "800", check=False)
        return main_win

    def failure_shot(self):
        """The whole screen, when a step failed, to see why."""
        path = self.shots / "failed.png"
        subprocess.run(["import", "-window", "root", str(path)],
                       env={**os.environ, "DISPLAY": self.args.display}, check=False)
        print(f"  the screen at the failure: {path}", flush=True)

    def type_text(self, text):
        # Into the message box: with no window manager, keys go to the
        # window under the pointer, and GTK ignores the synthetic events
        # `--window` would send.
        self.xdo("mousemove", "833", "776", "click", "1")
        self.xdo("type", "--delay", "30", text)
        self.xdo("key", "Return")


async def wait_ready(client):
    for attempt in range(60):  # tidemark may still be connecting to Prosody
        await client.send(disco_info(f"ready{attempt}"))
        try:
            if (await client.expect(iq(id=f"ready{attempt}"), timeout=1)).type == "result":
                return
        except AssertionError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit("gajim-screens: tidemark does not answer at chat.localhost")


async def subscribe_each_other(x, y):
    """Clients x and y subscribe to each other's tracked addresses."""
    for a, b in ((x, y), (y, x)):
        await a.send(subscribe(b.tracked))
        await b.expect(presence(frm=a.tracked, type="subscribe"))
        await b.send(subscribed(a.tracked))
        await a.expect(presence(frm=b.tracked, type="subscribed"))


async def open_first_chat(screen, account, jid):
    """Opens Gajim's chat with `jid`, a contact with no chat yet: Gajim opens
    its Start Chat dialog on his entry, which shows his name above his
    tracked address; returns once the chat is open."""
    screen.xdo("mousemove", "34", "768", "click", "1")  # the account button, bottom left
    await asyncio.sleep(1.5)
    screen.action("open-chat", f"<[{gv(account)}, {gv(jid)}]>")
    await asyncio.sleep(2)


async def chat_from_start_dialog(screen):
    """The Start Chat dialog's first entry, opened."""
    screen.xdo("mousemove", "640", "199", "click", "1")
    screen.xdo("key", "Return")
    await asyncio.sleep(1.5)


async def say_and_shoot(screen, log, kind, text, shot, settle=4):
    """alice types `text` in Gajim; once bob's client has it (`kind`: chat
    or room) and `settle` seconds passed (a receipt comes at once, a
    displayed marker two seconds later), the screen is saved as `shot`."""
    screen.type_text(text)
    await wait_for(lambda: (kind, text) in log, f"bob getting {text!r}")
    await asyncio.sleep(settle)
    screen.shot(shot, crop="1280x800+0+0")


async def status_command(screen, account, form_shot=None, result_shot="4-status-result"):
    """Runs the `status` command from Gajim (Execute Command on
    chat.localhost) and saves its form (if `form_shot`) and its result."""
    screen.action(f"{account}-execute-command", f"<{gv('chat.localhost')}>")
    x, y, w, h, win = await wait_geometry(screen, "Command List")
    await asyncio.sleep(1.5)
    # The commands are listed in disco order: read-receipts, then status.
    screen.xdo("mousemove", str(x + 144), str(y + 117), "click", "1")
    await asyncio.sleep(0.5)
    screen.xdo("mousemove", str(x + 533), str(y + h - 42), "click", "1")  # Execute
    await asyncio.sleep(2)
    if form_shot:
        screen.shot(form_shot, crop=f"{w}x{h}+{x}+{y}")
    screen.xdo("mousemove", str(x + 543), str(y + h - 42), "click", "1")  # Next
    await asyncio.sleep(2.5)
    # Taller, as a person would drag it, so that both messages show.
    screen.xdo("windowsize", win, str(w), "790", check=False)
    screen.xdo("windowmove", win, str(x), "5", check=False)
    await asyncio.sleep(1)
    screen.shot(result_shot, crop=f"{w}x790+{x}+5")


async def bob_answers(bob, alice_tracked, log):
    """bob's client: a receipt at once for each of alice's chat messages and,
    two seconds later, a displayed marker (he read it); in the room, an
    answer to each of alice's messages, so that the screen shows it arrived."""
    seen = 0
    while True:
        await asyncio.sleep(0.2)
        for st in bob.history[seen:]:
            if st.kind != "message" or st.body is None:
                continue
            if st.type == "chat" and (st.frm or "").startswith(alice_tracked + "/"):
                log.append(("chat", st.body))
                await bob.send(receipt(st.frm, st.id, bob.new_id("r")))

                async def read_later(frm=st.frm, mid=st.id):
                    await asyncio.sleep(2)
                    await bob.send(marker("displayed", frm, mid, bob.new_id("d")))
                asyncio.ensure_future(read_later())
            elif st.type == "groupchat" and st.frm == f"{ROOM}/alice" and not st.has("urn:xmpp:delay", "delay"):
                log.append(("room", st.body))
                await bob.send(f"<message type='groupchat' to='{ROOM}' id='{bob.new_id('g')}'>"
                               f"<body>bob got it: {st.body}</body></message>")
        seen = len(bob.history)


def kill9_and_restart(run):
    pidfile = Path(run) / "tidemark.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    cfg, log = Path(run) / "tidemark.toml", Path(run) / "tidemark.log"
    with open(log, "ab") as out:
        p = subprocess.Popen([str(REPO / "target/release/tidemark"), "--config", str(cfg)], stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(str(p.pid))
    return pid, p.pid


async def main(args):
    screen = Screen(args)
    (a_user, a_pw), (b_user, b_pw) = (x.split(":", 1) for x in (args.alice, args.bob))

    step("setting up: alice and bob subscribe to each other's tracked addresses; alice bookmarks the room")
    alice = await Client("alice", a_user, a_pw, "setup", port=args.port, note=quiet).connect()
    bob = await Client("bob", b_user, b_pw, "phone", port=args.port, note=quiet).connect(priority=10)
    await wait_ready(alice)
    await subscribe_each_other(alice, bob)
    # XEP-0048 bookmarks in private storage (XEP-0049), which Gajim 1.7 reads
    # and joins (autojoin) when the server has no PEP bookmarks.
    qid = alice.new_id("bm")
    reply = await alice.request(
        f"<iq type='set' id='{qid}'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
        f"<conference jid='{ROOM}' autojoin='true' name='team'><nick>alice</nick></conference>"
        f"<conference jid='{LOBBY}' autojoin='true' name='lobby'><nick>alice</nick></conference>"
        f"</storage></query></iq>", qid)
    assert reply.type == "result", reply.xml
    await alice.disconnect()

    step(f"bob joins {ROOM} and sets its subject; he makes {LOBBY} by joining it")
    await bob.send(muc_join(ROOM, "bob"))
    await bob.expect(message(frm=f"{ROOM}/tidemark", type="groupchat"))
    await bob.send(f"<message type='groupchat' to='{ROOM}' id='subj'><subject>{SUBJECT}</subject></message>")
    await bob.expect(message(frm=f"{ROOM}/bob", id="subj", type="groupchat"))
    await bob.send(muc_join(LOBBY, "bob"))
    await bob.expect(message(frm=f"{LOBBY}/tidemark", type="groupchat"))
    log = []
    answers = asyncio.ensure_future(bob_answers(bob, alice.tracked, log))

    step("starting Gajim as " + args.user)
    main_win = await screen.start_gajim()
    # Gajim is online once bob sees alice's tracked address come online.
    await bob.expect(presence(frm=f"{alice.tracked}/gajim", type=False), timeout=40)
    await asyncio.sleep(3)
    screen.shot("0-start", keep=False)

    if args.stop_after == "start":
        answers.cancel()
        return
    try:
        await run_steps(args, screen, main_win, alice, bob, log)
    except BaseException:
        screen.failure_shot()
        raise
    answers.cancel()
    await bob.disconnect()


def geometry(screen, name):
    """(x, y, w, h) of the visible window named `name` that is not a stub."""
    for w in screen.windows(name):
        out = screen.xdo("getwindowgeometry", "--shell", w, check=False)
        g = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if int(g.get("WIDTH", 0)) > 100:
            return int(g["X"]), int(g["Y"]), int(g["WIDTH"]), int(g["HEIGHT"]), w
    return None


async def wait_geometry(screen, name, timeout=20):
    for _ in range(int(timeout * 4)):
        g = geometry(screen, name)
        if g:
            return g
        await asyncio.sleep(0.25)
    raise SystemExit(f"gajim-screens: no window named {name!r}")


async def wait_for(pred, what, timeout=20):
    for _ in range(int(timeout * 10)):
        if pred():
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"gajim-screens: {what} did not happen within {timeout}s")


async def run_steps(args, screen, main_win, alice, bob, log):
    account = "alice"

    step("1. alice's contact list: bob under his name")
    await open_first_chat(screen, account, bob.tracked)
    screen.shot("1-roster", crop="900x320+0+0")

    step("2. a 1:1 chat: alice writes from Gajim; bob's client sends a receipt, then reads it")
    await chat_from_start_dialog(screen)
    await say_and_shoot(screen, log, "chat", "Lunch at noon?", "2-chat-read")

    step(f"5. the room {ROOM}: its subject row, set by bob")
    screen.action("open-chat", f"<[{gv(account)}, {gv(ROOM)}]>")
    await asyncio.sleep(2.5)
    screen.shot("5-room-subject", crop="1280x800+0+0")

    step(f"5. {LOBBY}, which nobody gave a subject")
    screen.action("open-chat", f"<[{gv(account)}, {gv(LOBBY)}]>")
    await asyncio.sleep(2.5)
    screen.shot("5-room-no-subject", crop="1280x400+0+0")
    screen.action("open-chat", f"<[{gv(account)}, {gv(ROOM)}]>")
    await asyncio.sleep(1.5)

    step("3. tidemark killed (kill -9) and restarted; alice writes in the room from Gajim")
    old, new = kill9_and_restart(args.run)
    print(f"  tidemark pid {old} killed, restarted as {new}", flush=True)
    await wait_ready(bob)
    await say_and_shoot(screen, log, "room", "Still here after the restart?", "3-room-after-kill", settle=2)

    step("4. the status command, run from Gajim (Execute Command on chat.localhost)")
    await status_command(screen, account, form_shot="4-status-form")


def arguments(doc, *users):
    """The command line of a driver: where Gajim runs, and USER:PASSWORD
    for each of `users` (--alice, --bob, ...)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    for user in users:
        p.add_argument(f"--{user}", required=True, help="USER:PASSWORD")
    p.add_argument("--display", required=True)
    p.add_argument("--dbus", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--home", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stop-after", default="", help="'start': leave everything running after Gajim is up")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__, "alice", "bob")))
