"""The status query (urn:tidemark:status:0): per-recipient state and timestamps,
answered only to the message's sender."""

import re

from match import marker_for, message, receipt_for
from stanzas import COMPONENT, chat, marker, receipt

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")  # XEP-0082, UTC


async def test_status_goes_sent_delivered_read(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))

    st = await alice.status(bob.tracked, "m1")
    assert st.reply.type == "result" and st.reply.frm == COMPONENT, st.reply
    assert (st.conversation, st.id, st.summary) == (bob.tracked, "m1", "sent"), st.reply
    assert list(st.recipients) == [bob.jid], st.reply
    r = st[bob.jid]
    assert r.state == "sent" and STAMP.match(r.sent), st.reply
    assert r.delivered is None and r.read is None and r.failed is None, st.reply
    sent_at = r.sent

    await bob.send(receipt(alice.tracked_full, "m1"))
    await alice.expect(receipt_for("m1"))
    st = await alice.status(bob.tracked, "m1")
    r = st[bob.jid]
    assert st.summary == "delivered" and r.state == "delivered", st.reply
    assert r.sent == sent_at and STAMP.match(r.delivered) and r.read is None, st.reply

    await bob.send(marker("displayed", alice.tracked_full, "m1"))
    await alice.expect(marker_for("displayed", "m1"))
    st = await alice.status(bob.tracked, "m1")
    r = st[bob.jid]
    assert st.summary == "read" and r.state == "read", st.reply
    assert r.sent == sent_at and STAMP.match(r.delivered) and STAMP.match(r.read), st.reply


async def test_only_the_sender_may_ask(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))
    st = await bob.status(alice.tracked, "m1")
    assert st.error == "forbidden", st.reply
    assert st.reply.type == "error" and st.reply.frm == COMPONENT, st.reply
    # and alice, the sender, still may
    assert (await alice.status(bob.tracked, "m1")).summary == "sent"


async def test_unknown_id_or_conversation_is_item_not_found(tm, world):
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    await bob.expect(message(frm=alice.tracked_full, id="m1"))
    assert (await alice.status(bob.tracked, "no-such-id")).error == "item-not-found"
    assert (await alice.status(carol.tracked, "m1")).error == "item-not-found"
    assert (await alice.status(r"nobody\40localhost@chat.localhost", "m1")).error == "item-not-found"


async def test_missing_attributes_are_bad_request(tm, world):
    alice = await world.client("alice")
    assert (await alice.status(None, "m1")).error == "bad-request"
    assert (await alice.status(r"bob\40localhost@chat.localhost", None)).error == "bad-request"
    assert (await alice.status(None, None)).error == "bad-request"
