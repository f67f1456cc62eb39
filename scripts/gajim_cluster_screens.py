#!/usr/bin/env python3
"""Drives Gajim 1.7 through tidemark on a two-node ejabberd cluster with two
tidemarks over one PostgreSQL, and kills the serving tidemark in the middle
of the conversation. Run by scripts/gajim-cluster-screens.sh, which starts
the cluster, PostgreSQL, both tidemarks, Xvfb and a session bus first.
alice is Gajim on node 1; bob is a scripted client on node 2 that sends a
receipt at once and a displayed marker two seconds later.

Screens (PNG, in --out):
  cluster-1-chat-read.png      alice's message with its delivered tick, then bob's read line
  cluster-2-refused.png        a trigger in the database refuses the next message's record:
                               the error alice's Gajim shows (the message is not relayed)
  cluster-3-after-failover.png the serving tidemark killed (kill -9), the standby serving:
                               a next message gets its statuses the same way
  cluster-4-status-result.png  the `status` command, run from Gajim after the failover:
                               the two relayed messages read, from what PostgreSQL kept
"""

import asyncio
import os
import signal
import time
from pathlib import Path

from gajim_screens import (Screen, arguments, bob_answers, chat_from_start_dialog, open_first_chat, quiet,
                           say_and_shoot, status_command, step, subscribe_each_other, wait_ready)
from match import presence
from sql import psql
from xmpp_client import Client

NODE2 = "127.0.0.2"


def lines(run, t, text):
    """The lines of tidemark `t`'s log holding `text`."""
    log = (Path(run) / f"tidemark-{t}.log").read_text(errors="replace")
    return [line for line in log.splitlines() if text in line]


def serving(run):
    """The tidemark ('a' or 'b') that took the lead last (its log's lines
    start with their time), with its pid."""
    last = {t: max(lines(run, t, "serving chat.localhost"), default="") for t in ("a", "b")}
    t = max(last, key=last.get)
    if not last[t]:
        raise SystemExit("gajim-cluster-screens: no tidemark serves chat.localhost")
    return t, int((Path(run) / f"tidemark-{t}.pid").read_text())


async def wait_lines(run, t, text, count, timeout=30):
    """Until tidemark `t`'s log holds `count` lines with `text`."""
    deadline = time.monotonic() + timeout
    while len(lines(run, t, text)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"gajim-cluster-screens: {text!r} not in tidemark-{t}.log {count} times")
        await asyncio.sleep(0.05)


def run_sql(run, sql):
    """`sql` in the tidemarks' database, as their role."""
    pg = Path(run) / "pg"
    psql((pg / "url").read_text().strip(), (pg / "password").read_text().splitlines()[0], sql)


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

    step("2. the database refuses the record of alice's next message (a trigger, as a constraint an admin "
         "added would): Gajim shows the error, bob gets nothing, tidemark starts over")
    run_sql(args.run, """
        CREATE FUNCTION refuse_next() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by gajim-cluster-screens'; END $$;
        CREATE TRIGGER refuse_next BEFORE INSERT ON messages
            FOR EACH ROW EXECUTE FUNCTION refuse_next();""")
    which, _ = serving(args.run)
    over = len(lines(args.run, which, "starting over"))
    screen.type_text("This one the database refuses")
    await wait_lines(args.run, which, "starting over", over + 1)
    run_sql(args.run, "DROP TRIGGER refuse_next ON messages; DROP FUNCTION refuse_next();")
    await wait_ready(bob)
    await asyncio.sleep(2)
    assert not any(text == "This one the database refuses" for _, text in log), log
    screen.shot("cluster-2-refused", crop="1280x800+0+0")

    which, pid = serving(args.run)
    other = "b" if which == "a" else "a"
    step(f"3. the serving tidemark ({which}, pid {pid}) killed with kill -9; {other} takes over")
    led = len(lines(args.run, other, "serving chat.localhost"))
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    await wait_lines(args.run, other, "serving chat.localhost", led + 1)
    print(f"  {other} serving {time.monotonic() - killed:.2f} s after the kill", flush=True)
    await wait_ready(bob)
    await say_and_shoot(screen, log, "chat", "Still there after the failover?", "cluster-3-after-failover")

    step("4. the status command, run from Gajim after the failover (Execute Command on chat.localhost)")
    await status_command(screen, account, result_shot="cluster-4-status-result")


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__, "alice", "bob")))
