"""A smoke test through a real third-party client: Debian's Profanity 0.13 in
tmux, logged in as alice, against the test Prosody and tidemark (issue 9).

Profanity sends XEP-0184 receipts but no XEP-0333 read markers. Through
tidemark, bob (a slixmpp client) sees his message to alice delivered, and his
status query says that read status will not come because alice's client does
not send read markers (learnt from Profanity's own entity capabilities). What
Profanity shows is read from its screen (tmux capture-pane), as a person
would read it.

scripts/test.sh installs profanity and tmux (Debian packages)."""

import asyncio
import shutil
import subprocess
import uuid

from conftest import C2S_PORT
from match import message, presence
from stanzas import chat, receipt, subscribe

READ_NOT_AVAILABLE = "read status not available: {jid}'s client does not send read markers"


class Profanity:
    """Profanity in a detached tmux session, with a HOME of its own."""

    def __init__(self, world, home):
        for tool in ("profanity", "tmux"):
            assert shutil.which(tool), f"{tool} is not installed: run the suite through bash scripts/test.sh"
        self.session = f"tm-prof-{uuid.uuid4().hex[:8]}"
        self.world = world
        home.mkdir(parents=True, exist_ok=True)
        env = (f"HOME={home} XDG_CONFIG_HOME={home}/.config XDG_DATA_HOME={home}/.local/share "
               f"TERM=xterm-256color")
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50",
                        f"env {env} profanity"], check=True)

    def type(self, text):
        self.world.note(f"profanity <- {text}")
        subprocess.run(["tmux", "send-keys", "-t", self.session, "-l", text], check=True)
        subprocess.run(["tmux", "send-keys", "-t", self.session, "Enter"], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-t", self.session, "-p"], check=True,
                              capture_output=True, text=True).stdout

    async def wait_for(self, text, timeout=15):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"Profanity did not show {text!r} within {timeout}s; its screen:\n{shown}")
            await asyncio.sleep(0.2)

    async def log_in(self, jid, password):
        await self.wait_for("/connect")
        self.type(f"/connect {jid} server 127.0.0.1 port {C2S_PORT} tls trust")
        await asyncio.sleep(1)  # the password prompt
        self.type(password)
        await self.wait_for("logged in successfully")

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


async def test_profanity_through_tidemark(tm, world):
    user, password = world.account("alice")
    bob = await world.client("bob")
    alice_jid = f"{user}@localhost"
    alice_tracked = alice_jid.replace("@", "\\40") + "@chat.localhost"
    prof = Profanity(world, world.dir / f"profanity-{world.test_no}")
    try:
        await prof.log_in(alice_jid, password)

        # bob asks to see alice; she allows it in Profanity.
        await bob.send(subscribe(alice_tracked))
        await prof.wait_for(f"Received authorization request from {bob.tracked}")
        prof.type(f"/sub allow {bob.tracked}")
        await bob.expect(presence(frm=alice_tracked, type="subscribed"))
        # Her presence, with Profanity's entity capabilities, reaches bob.
        await bob.expect(presence(frm=alice_tracked + "/*", type=False))

        await bob.send(chat(alice_tracked, "b1", body="hello from bob"))
        # The console announces it; the chat window shows it.
        await prof.wait_for(f"chat message: {bob.tracked}")
        prof.type("/win 2")
        await prof.wait_for(f"{bob.tracked}/{bob.resource}: hello from bob")
        # Profanity's receipt comes back through tidemark.
        await bob.expect(message(frm=alice_tracked + "/*", where=lambda s: s.has("urn:xmpp:receipts", "received")))

        deadline = asyncio.get_running_loop().time() + 10
        while True:
            st = await bob.status(alice_tracked, "b1")
            r = st.reply.child("urn:tidemark:status:0", "status").find(
                "{urn:tidemark:status:0}recipient")
            notes = [(n.get("state"), n.text) for n in r.findall("{urn:tidemark:status:0}not-reported")]
            if notes or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.3)
        assert st.summary == "delivered", st.reply
        assert notes == [("read", READ_NOT_AVAILABLE.format(jid=alice_jid))], st.reply
    finally:
        world.note("profanity screen at the end:\n" + prof.screen())
        prof.close()


async def test_profanity_runs_the_status_command(tm, world):
    """alice, on Profanity, asks for bob's presence, writes to him, and reads
    her message's status through the `status` ad-hoc command: Profanity shows
    the page as the command's note, one line per message."""
    user, password = world.account("alice")
    bob = await world.client("bob")
    alice_jid = f"{user}@localhost"
    alice_tracked = alice_jid.replace("@", "\\40") + "@chat.localhost"
    prof = Profanity(world, world.dir / f"profanity-{world.test_no}")
    try:
        await prof.log_in(alice_jid, password)

        prof.type(f"/sub request {bob.tracked}")
        await bob.expect(presence(frm=alice_tracked, type="subscribe"))
        await bob.send(f"<presence type='subscribed' to='{alice_tracked}'/>")
        await prof.wait_for(f"{bob.tracked} ({bob.resource}) is online")

        prof.type(f"/msg {bob.tracked} lunch at noon?")
        got = await bob.expect(message(frm=alice_tracked + "/*", where=lambda s: s.body == "lunch at noon?"))
        await bob.send(receipt(alice_tracked, got.id))
        await asyncio.sleep(0.5)

        prof.type("/win 1")
        prof.type("/cmd exec status chat.localhost")
        # The filter form opens in a window of its own.
        await prof.wait_for("Form title: Sent messages")
        prof.type("/form submit")
        await prof.wait_for("Form title: Sent messages, page 1")
        prof.type("/win 1")
        shown = await prof.wait_for(f"{bob.jid}: delivered")
        # The line ends with the message's id, which Profanity's console
        # wraps onto the next row: its start, after the line, is enough.
        after = shown[shown.index(f"{bob.jid}: delivered"):]
        assert "[id" in after and got.id[:8] in after, shown
    finally:
        world.note("profanity screen at the end:\n" + prof.screen())
        prof.close()
