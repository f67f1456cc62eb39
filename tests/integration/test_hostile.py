"""Hostile input (issue 7): what any local user, or anyone across federation,
can send through a real Prosody must not crash, stall or get past tidemark.

One test per case of the issue: the panics of XEP-0106 escaping and of an
untrackable sender, a stanza nested 20,000 deep, an attribute over the XML
reader's limit, the presence gate's bypasses, false "offline" right after a
restart, refusals that grow the store, room creation and room message ids,
the rate limit, SIGTERM, and the admin's four confusing start-up messages.
Texts are matched loosely: the condition and the config key, not a sentence.
"""

import asyncio
import os
import re
import secrets
import subprocess
import time

import pytest

from conftest import BINARY, C2S_PORT, DEEP_NESTING, EJABBERD, Tidemark, sled_only, tidemark_toml
from match import any_all_read, any_mention_of, iq, message, presence
from stanzas import COMPONENT, NS_STANZAS, chat, disco_info, group_displayed, status_query
from xmpp_client import Client, room_stanza_id


# --- helpers -----------------------------------------------------------------

async def survived(tm, via, what):
    """tidemark is still running and answers disco#info, or the test fails with
    how it died."""
    qid = via.new_id("alive")
    await via.send(disco_info(qid))
    try:
        reply = await via.expect(iq(id=qid), timeout=4, what=f"a disco#info answer after {what}")
    except AssertionError:
        reply = None
    if not tm.alive():
        raise AssertionError(f"tidemark died after {what} (exit status {tm.proc.returncode});"
                             f" log tail:\n{tm.log_text()[-1500:]}")
    assert reply is not None and reply.type == "result", f"tidemark stopped answering after {what}: {reply}"


def odd_client(world, name, user):
    """A client for a user name of our choosing (not name + test number)."""
    password = "pw-" + secrets.token_hex(4)
    world.server("register", str(world.server_dir), user, password)
    c = Client(name, user, password, f"{name}res", port=C2S_PORT, note=world.note)
    world.clients_now.append(c)
    return c


async def connect(world, c):
    await c.connect()
    if world.ready_needed and world.tidemark.alive():
        await world.wait_ready(c, timeout=40)
    return c


def with_settings(world, name, limits="", extra=""):
    """A tidemark with a fresh database, extra [limits] keys and sections."""
    t = Tidemark(world, name, extra=extra)
    if limits:
        t.config_text = t.config_text.replace("[limits]\n", f"[limits]\n{limits}", 1)
        t.config.write_text(t.config_text)
    return world.use_tidemark(t)


def text_of(st):
    return "".join(st.el.itertext())


def connects_in(log):
    return log.count("connected to server")


def error_of(st):
    return st.error_condition, (st.error_text or "")


# --- 1. panics ---------------------------------------------------------------

async def test_message_to_backslash_before_multibyte_node_does_not_crash(tm, world):
    alice = await world.client("alice")
    await alice.send(chat("x\\\u20ac@" + COMPONENT, "esc1"))
    await survived(tm, alice, "a message to x\\\u20ac@" + COMPONENT)
    # no such contact or room: some error, whichever the service finds apt
    await alice.expect(message(id="esc1", type="error"), timeout=2)


async def test_sender_with_backslash_before_multibyte_does_not_crash(tm, world):
    bob = await world.client("bob")
    # Prosody accepts a backslash in a node: this user's own JID has one.
    z = await connect(world, odd_client(world, "z", f"z{world.test_no}\\\u20ac"))
    await z.send(f"<presence type='subscribe' to='{bob.tracked}'/>")
    await z.send(chat(bob.tracked, "esc2"))
    await survived(tm, z, f"a subscribe from {z.jid}")
    # the subscribe is either relayed under z's own tracked address, or refused
    # with an error; what it must not do is kill the process (checked above)
    await bob.expect_nothing(presence(type="subscribe", where=lambda s: "\u20ac" not in (s.frm or "")),
                             within=0.3, what="a subscribe under some other address")


async def test_address_whose_tracked_form_is_too_long_gets_jid_malformed(tm, world):
    # Prosody stores an account in a file named after the user, so it cannot
    # register a node long enough (over ~250 bytes) for the escaped bare JID to
    # pass 1023 bytes. The gateway (XEP-0100) turns any bare JID a user types
    # into a tracked address: a 1020-byte node at example.org is a valid JID
    # whose tracked node (node + \40 + domain) is over 1023 bytes.
    alice = await world.client("alice")
    long_jid = "n" * 1020 + "@example.org"
    qid = alice.new_id("gw")
    await alice.send(f"<iq type='set' to='{COMPONENT}' id='{qid}'><query xmlns='jabber:iq:gateway'>"
                     f"<prompt>{long_jid}</prompt></query></iq>")
    await survived(tm, alice, "a gateway prompt whose tracked address is over 1023 bytes")
    reply = await alice.expect(iq(id=qid))
    assert reply.type == "error" and reply.error_type == "modify", reply.xml[:500]
    # jid-malformed is the contract for an untrackable address; the gateway
    # answers every prompt it cannot translate with bad-request (XEP-0100)
    assert reply.error_condition in ("jid-malformed", "bad-request"), reply.xml[:500]
    assert "1023" in (reply.error_text or "") or "invalid" in (reply.error_text or ""), reply.error_text


# --- 2./3. oversized XML -----------------------------------------------------

async def test_message_nested_20000_deep_is_refused_naming_max_depth(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    depth = DEEP_NESTING  # 20,000; 500 under ejabberd, which dies of 20,000 itself
    deep = (f"<message type='chat' to='{bob.tracked}' id='deep1'><body>deep</body>"
            + "<a>" * depth + "</a>" * depth + "</message>")
    if depth == 20_000:
        assert 120_000 < len(deep) < 200_000, len(deep)  # inside Prosody's c2s stanza limit
    await alice.send(deep)
    await survived(tm, alice, f"a message nested {depth} deep")
    err = await alice.expect(message(id="deep1", type="error"))
    assert err.error_condition == "policy-violation", err.xml[:500]
    assert "max_depth" in (err.error_text or ""), err.error_text
    await bob.expect_nothing(any_mention_of("deep1"), within=0.3)
    await alice.send(chat(bob.tracked, "after-deep"))
    await bob.expect(message(frm=alice.tracked_full, id="after-deep"))


async def test_9kb_id_is_refused_and_others_keep_talking_without_a_reconnect(tm, world):
    alice, bob, carol, dave = await world.clients("alice", "bob", "carol", "dave")
    await world.befriend(alice, bob)
    await world.befriend(carol, dave)
    log_before = tm.log_text()
    connects_before = connects_in(log_before)
    big = "i" * 9 * 1024
    talk = []
    for k in range(6):
        await alice.send(chat(bob.tracked, big + str(k)))
        for j in range(3):
            mid = f"c{k}-{j}"
            talk.append(mid)
            await carol.send(chat(dave.tracked, mid))
        await asyncio.sleep(0.2)
    for mid in talk:
        await dave.expect(message(frm=carol.tracked_full, id=mid), what=f"carol's {mid} (sent meanwhile)")
    assert not [s for s in carol.received if s.kind == "message" and s.type == "error"], carol.received
    # The refused stanza's id is the oversized attribute: the error may carry
    # it or not, and come from bob's tracked address or the service's domain.
    for k in range(6):
        err = await alice.expect(message(type="error", where=lambda s: s.frm in (bob.tracked, COMPONENT)),
                                 what=f"an error for 9 KB id #{k}")
        assert err.error_condition == "policy-violation", err.xml[:300]
        assert "max_attribute_bytes" in (err.error_text or ""), err.error_text
    await survived(tm, alice, "six 9 KB ids")
    log = tm.log_text()
    assert connects_in(log) == connects_before, "tidemark reconnected:\n" + log[-2000:]
    # Only this test's part of the log: the file's tidemark may have been
    # restarted by an earlier test.
    assert "reconnecting" not in log[len(log_before):], log[-2000:]


# --- 4. the presence gate ----------------------------------------------------

async def test_error_message_with_body_from_a_stranger_is_not_relayed(tm, world):
    alice, mallory = await world.clients("alice", "mallory")
    await mallory.send(f"<message type='error' to='{alice.tracked_full}' id='gate1'>"
                       f"<body>click http://evil.example/</body>"
                       f"<error type='cancel'><item-not-found xmlns='{NS_STANZAS}'/></error></message>")
    await alice.expect_nothing(message(where=lambda s: "evil.example" in (s.body or "") or s.id == "gate1"),
                               what="mallory's error message with a body")
    await survived(tm, mallory, "an error message with a body")


async def test_directed_presence_with_status_from_a_stranger_is_not_relayed(tm, world):
    alice, mallory = await world.clients("alice", "mallory")
    await mallory.send(f"<presence to='{alice.tracked}'><status>buy at evil.example</status></presence>")
    await mallory.send(f"<presence to='{alice.tracked_full}'><status>buy at evil.example</status></presence>")
    await alice.expect_nothing(
        presence(where=lambda s: "evil.example" in text_of(s) or (s.frm or "").startswith(mallory.tracked)),
        what="mallory's directed presence")


# --- 5. no false offline -----------------------------------------------------

async def test_no_false_offline_right_after_restart(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    for round_ in range(5):
        tm.stop()
        tm.start()
        # Keep writing to bob while tidemark comes up: the first messages it
        # handles arrive before the answers to its presence probes.
        sent, deadline = 0, time.monotonic() + 15
        while time.monotonic() < deadline:
            await alice.send(chat(bob.tracked, f"r{round_}-{sent}"))
            sent += 1
            await asyncio.sleep(0.002)
            false = [s for s in alice.received if s.type == "error" and s.error_condition == "recipient-unavailable"]
            assert not false, f"round {round_}: bob is online, yet: {false[0].xml}"
            got = [s for s in bob.received if (s.id or "").startswith(f"r{round_}-")]
            if len(got) >= 5:
                break
        else:
            raise AssertionError(f"round {round_}: bob got nothing within 15 s of the restart")
        await asyncio.sleep(0.3)
        false = [s for s in alice.received if s.type == "error" and s.error_condition == "recipient-unavailable"]
        assert not false, f"round {round_}: bob is online, yet: {false[0].xml}"
        alice.received.clear()
        bob.received.clear()
    world.ready_needed = False


# --- 6. bounded refusals, rooms, rate ----------------------------------------

async def test_refusals_kept_per_sender_are_bounded(world):
    with_settings(world, f"refusals{world.test_no}", limits="max_refusals_per_sender = 5\n")
    stranger, bob = await world.clients("stranger", "bob")
    ids = [f"ref{k}" for k in range(12)]
    for mid in ids:
        await stranger.send(chat(bob.tracked, mid))
        err = await stranger.expect(message(id=mid, type="error"))
        assert err.error_condition == "service-unavailable", err
    latest = await stranger.status(bob.tracked, ids[-1])
    assert latest.summary == "failed", f"the latest refusal is answered: {latest.reply}"
    oldest = await stranger.status(bob.tracked, ids[0])
    assert oldest.error == "item-not-found", \
        f"12 refusals with limits.max_refusals_per_sender = 5, yet the oldest is kept: {oldest.reply}"


async def test_room_creation_by_a_user_of_another_domain_is_not_allowed(world):
    world.use_config('[groups]\nroom_creators = ["example.org"]\n')
    alice = await world.client("alice")
    room = world.room("nope")
    err = await alice.join_refused(room, "alice")
    assert err.kind == "presence" and err.type == "error", f"the room was created: {err.xml}"
    assert err.error_condition == "not-allowed" and err.error_type == "cancel", err.xml
    assert "example.org" in (err.error_text or ""), err.error_text


async def test_rooms_per_creator_are_capped(world):
    world.use_config("[groups]\nmax_rooms_per_creator = 2\n")
    alice = await world.client("alice")
    await alice.join(world.room("one"), "alice")
    await alice.join(world.room("two"), "alice")
    err = await alice.join_refused(world.room("three"), "alice")
    assert err.kind == "presence" and err.type == "error", f"a third room was created: {err.xml}"
    assert err.error_condition == "policy-violation" and err.error_type == "cancel", err.xml
    assert "groups.max_rooms_per_creator" in (err.error_text or ""), err.error_text


async def test_rate_limit_refuses_the_excess_and_records_nothing(world):
    with_settings(world, f"rate{world.test_no}", limits="rate_per_second = 2\nrate_burst = 5\n")
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await asyncio.sleep(3)  # the handshake spent tokens: let the bucket fill
    ids = [f"burst{k}" for k in range(20)]
    for mid in ids:
        await alice.send(chat(bob.tracked, mid))
    limited = []
    await bob.expect(message(id=ids[0]), what="the first message of the burst")
    await asyncio.sleep(1.5)  # the rest: delivered or refused by now
    errors = {s.id: s for s in alice.received if s.kind == "message" and s.type == "error" and s.id in ids}
    delivered = {s.id for s in bob.received if s.kind == "message" and s.id in ids}
    for mid in ids:
        if mid in errors:
            e = errors[mid]
            assert e.error_condition == "resource-constraint" and e.error_type == "wait", e.xml
            assert "limits.rate_per_second" in (e.error_text or ""), e.error_text
            limited.append(mid)
    assert len(limited) >= 10, f"a burst of 20 with rate_burst = 5: only {len(limited)} refused, {len(delivered)} delivered"
    assert not (set(limited) & delivered), "a refused message was delivered"
    await asyncio.sleep(2)  # tokens for the status queries
    for mid in limited[-2:]:
        st = await alice.status(bob.tracked, mid)
        assert st.error == "item-not-found", f"{mid} was over the rate, yet recorded: {st.reply}"


# --- 7. room message ids per sender ------------------------------------------

async def test_another_member_cannot_take_over_a_room_message_id(tm, world):
    room = world.room()
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    for c in (alice, bob, carol):
        await c.join(room, c.name)
    mine = await alice.say(room, "alice", "x1", body="alice's x1")
    sid = room_stanza_id(mine, room)
    bobs = await bob.say(room, "bob", "x1", body="bob's x1, same id")

    st = await alice.status(room, "x1")
    assert st.error is None, f"alice's status query for her own x1: {st.reply.xml}"
    # hers: to bob and carol (bob's writing may count as having read it)
    assert st.recipient_count == 2 and set(st.recipients) == {bob.jid, carol.jid}, st.reply.xml

    # alice reads bob's x1 and bob reads alice's (by the room's stanza-ids);
    # carol names "x1" by the sender's id, meaning alice's: whatever tidemark
    # makes of that, it must not complete bob's x1.
    sid_b = room_stanza_id(bobs, room)
    await alice.send(group_displayed(room, sid_b))
    await carol.send(group_displayed(room, "x1"))
    await bob.send(group_displayed(room, sid))
    await bob.expect_nothing(any_all_read(room), within=1.0, what="an all-read notice for bob's x1 carol never read")
    st = await alice.status(room, "x1")
    assert st.error is None and bob.jid in {j for j, r in st.recipients.items() if r.read}, st.reply.xml


# --- 8. SIGTERM --------------------------------------------------------------

async def test_sigterm_sends_every_handled_answer_and_exits_0(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    big = "b" * 60_000  # answers big enough that sending them takes a while (max_body_bytes is 64 KiB)
    # The window (handled, not yet sent) is short: try a few times.
    for round_ in range(8):
        ids = [f"term{round_}-{k}" for k in range(80)]  # within the default rate burst

        async def stream():
            for k in range(0, len(ids), 10):
                alice.xmpp.send_raw("".join(chat(bob.tracked, mid, body=big) for mid in ids[k:k + 10]))
                await asyncio.sleep(0.01)

        # SIGTERM while answers are being sent and messages keep arriving
        writer = asyncio.ensure_future(stream())
        await bob.expect(message(id=ids[0]), what="the first of the messages")
        t0 = time.monotonic()
        tm.proc.send_signal(15)
        await writer
        while tm.proc.poll() is None and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        status = tm.proc.poll()
        assert status == 0, f"tidemark exit status {status} {time.monotonic() - t0:.1f}s after SIGTERM"
        await asyncio.sleep(0.5)
        # Every message tidemark kept as sent was sent: ask the restarted
        # tidemark which it recorded; each of those must have reached bob.
        tm.start()
        await world.wait_ready(alice, timeout=20)
        got = {s.id for s in bob.received if s.kind == "message"} | {ids[0]}
        lost = []
        for mid in ids:
            if mid not in got and (await alice.status(bob.tracked, mid)).summary == "sent":
                lost.append(mid)
        assert not lost, f"round {round_}: {len(lost)} messages recorded as sent never reached bob: {lost[:5]}"
        bob.received.clear()
        alice.received.clear()


# --- admin: four start-up mistakes ---------------------------------------------

def run_once(world, config_text, *args, timeout=15):
    d = world.dir / f"once-{secrets.token_hex(3)}"
    d.mkdir()
    cfg = d / "tidemark.toml"
    cfg.write_text(config_text)
    try:
        res = subprocess.run([str(BINARY), "--config", str(cfg), *args], cwd=d, capture_output=True, text=True,
                             timeout=timeout, env={**os.environ, "NO_COLOR": "1"})
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return None, out + err
    return res.returncode, res.stdout + res.stderr


def test_client_port_as_component_server_says_it_is_a_client_port(world):
    # it may exit or keep retrying (run_once stops it after 15 s): either way it says why
    _, out = run_once(world, tidemark_toml(storage="db", server=f"127.0.0.1:{C2S_PORT}",
                                           secret=world.secret))
    assert re.search(r"client", out, re.I) and str(C2S_PORT) in out, out
    assert "add component" not in out.lower(), f"the advice points at the wrong mistake:\n{out}"


@pytest.mark.skipif(EJABBERD, reason="ejabberd accepts a second connection under the same component"
                    " name and spreads the traffic over both (domain_balancing): there is no conflict")
async def test_second_tidemark_under_the_same_name_says_another_is_connected(tm, world):
    alice = await world.client("alice")
    d = world.dir / f"second-{world.test_no}"
    d.mkdir()
    cfg = d / "tidemark.toml"
    cfg.write_text(tidemark_toml(storage=str(d / "db"), secret=world.secret))
    log = d / "out.log"
    with open(log, "wb") as f:
        p = subprocess.Popen([str(BINARY), "--config", str(cfg)], cwd=d, stdout=f, stderr=subprocess.STDOUT,
                             env={**os.environ, "NO_COLOR": "1"})
    try:
        deadline = time.monotonic() + 8
        out = ""
        while time.monotonic() < deadline:
            out = log.read_text(errors="replace")
            if re.search(r"already connected|another", out, re.I) or p.poll() is not None:
                break
            await asyncio.sleep(0.2)
        out = log.read_text(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    assert re.search(r"already connected|another", out, re.I), \
        f"a second tidemark as {COMPONENT} does not say another one is connected:\n{out[-2000:]}"
    await survived(tm, alice, "a second tidemark under the same name")


@sled_only("sled's directory lock: a second tidemark on one PostgreSQL database stands by (test_cluster.py)")
def test_store_in_use_says_so_not_wouldblock(tm, world):
    status, out = run_once(world, tidemark_toml(storage=str(tm.dir / "db"), secret=world.secret))
    assert status not in (None, 0), out
    assert "WouldBlock" not in out, f"sled's raw error reaches the admin:\n{out}"
    assert re.search(r"in use|locked|another tidemark|already running", out, re.I), out


def test_example_secret_is_refused_by_check_config(world):
    status, out = run_once(world, tidemark_toml(storage="db", secret="change-me"), "--check-config")
    assert status == 2, out
    assert "component.secret" in out, out

