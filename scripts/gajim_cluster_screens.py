#!/usr/bin/env python3
"""Drives Gajim 1.7 through tidemark on a two-node ejabberd cluster with two
tidemarks over one PostgreSQL, and kills the serving tidemark in the middle
of the conversation. Run by scripts/gajim-cluster-screens.sh, which starts
the cluster, PostgreSQL, both tidemarks, Xvfb and a session bus first.
alice is Gajim on node 1; bob is a scripted client on node 2 that sends a
receipt at once and a displayed marker two seconds later.

Screens (PNG, in --out):
  cluster-1-chat-read.png      alice's message with its delivered tick, then bob's read line
  cluster-2-after-failover.png the serving tidemark killed (kill -9), the standby serving:
                               a second message gets its statuses the same way
  cluster-3-status-result.png  the `status` command, run from Gajim after the failover:
                               both messages read, from what PostgreSQL kept
"""

import asyncio
import os
import re
import signal
import time
from pathlib import Path

from gajim_screens import (Screen, arguments, bob_answers, chat_from_start_dialog, open_first_chat, quiet,
                           say_and_shoot, status_command, step, subscribe_each_other, wait_ready)
from match import presence
from xmpp_client import Client

NODE2 = "127.0.0.2"


def serving(run):
    """The tidemark ('a' or 'b') whose log says it serves, with its pid."""
    for t in ("a", "b"):
        log = (Path(run) / f"tidemark-{t}.log").read_text(errors="replace")
        if "serving chat.localhost" in log:
            return t, int((Path(run) / f"tidemark-{t}.pid").read_text())
    raise SystemExit("gajim-cluster-screens: no tidemark serves chat.localhost")


async def wait_log(path, pattern, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, Path(path).read_text(errors="replace")):
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"gajim-cluster-screens: {pattern!r} not in {path} within {timeout}s")


async def main(args):
    screen = Screen(args)
    (a_user, a_pw), (b_user, b_pw) = (x.split(":", 1) for x in (args.alice, args.bob))

    step("setting up: alice (node 1) and bob (node 2) subscribe to each other's tracked addresses")
    alice = await Client("alice", a_user, a_pw, "setup", port=args.port, note=quiet).connect()
    bob = await Client("bob", b_user, b_pw, "phone", port=args.port, note=quiet,
                       host=NODE2).connect(priority=10)
    await wait_ready(alice)
    await subscribe_each_other(alice, bob)
    await alice.disconnect()
    log = []
    answers = asyncio.ensure_future(bob_answers(bob, alice.tracked, log))

    step("starting Gajim as " + args.user)
    await screen.start_gajim()
    await bob.expect(presence(frm=f"{alice.tracked}/gajim", type=False), timeout=40)
    await asyncio.sleep(3)
    try:
        await run_steps(args, screen, bob, log)
    except BaseException:
        screen.failure_shot()
        raise
    answers.cancel()
    await bob.disconnect()


async def run_steps(args, screen, bob, log):
    account = "alice"
    step("1. alice writes to bob from Gajim; bob's client on the other node sends a receipt, then reads it")
    await open_first_chat(screen, account, bob.tracked)
    await chat_from_start_dialog(screen)
    await say_and_shoot(screen, log, "chat", "Lunch at noon?", "cluster-1-chat-read")

    which, pid = serving(args.run)
    other = "b" if which == "a" else "a"
    step(f"2. the serving tidemark ({which}, pid {pid}) killed with kill -9; {other} takes over")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    await wait_log(Path(args.run) / f"tidemark-{other}.log", r"serving chat\.localhost")
    print(f"  {other} serving {time.monotonic() - killed:.2f} s after the kill", flush=True)
    await wait_ready(bob)
    await say_and_shoot(screen, log, "chat", "Still there after the failover?", "cluster-2-after-failover")

    step("3. the status command, run from Gajim after the failover (Execute Command on chat.localhost)")
    await status_command(screen, account, result_shot="cluster-3-status-result")


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__, "alice", "bob")))
