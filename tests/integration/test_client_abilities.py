"""What each client can say (issue 9, point 6): a contact whose client
announces XEP-0115 capabilities without XEP-0333 chat markers is named in
the sender's status query, "read status not available", instead of an
endless "delivered". Here bob's client is slixmpp with its caps plugin and
no markers plugin, which is what Profanity looks like to tidemark."""

import asyncio

from match import message
from stanzas import NS_STATUS, chat, receipt

READ_NOT_AVAILABLE = "read status not available: {jid}'s client does not send read markers"


def not_reported(status, jid):
    el = status.reply.child(NS_STATUS, "status")
    for r in el.findall(f"{{{NS_STATUS}}}recipient"):
        if r.get("jid") == jid:
            return [(n.get("state"), n.text) for n in r.findall(f"{{{NS_STATUS}}}not-reported")]
    return None


async def test_a_client_without_read_markers_is_named_in_the_status(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    # bob's client announces what it can do (XEP-0115), in a new presence.
    bob.xmpp.register_plugin("xep_0115")
    await bob.xmpp.plugin["xep_0115"].update_caps()
    bob.xmpp.send_presence()

    await alice.send(chat(bob.tracked, "m1", body="did you read this?"))
    await bob.expect(message(id="m1"))
    await bob.send(receipt(alice.tracked_full, "m1"))
    # tidemark asks bob's client once; its answer arrives soon after.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        st = await alice.status(bob.tracked, "m1")
        notes = not_reported(st, bob.jid)
        # Both come in their own time: bob's receipt and his client's
        # answer (through a cluster, in either order).
        if (notes and st.summary == "delivered") or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert st.summary == "delivered", st.reply
    assert notes == [("read", READ_NOT_AVAILABLE.format(jid=bob.jid))], st.reply


async def test_nothing_is_said_while_the_client_is_unknown(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    await bob.expect(message(id="m1"))
    await bob.send(receipt(alice.tracked_full, "m1"))
    await asyncio.sleep(0.5)
    st = await alice.status(bob.tracked, "m1")
    assert st.summary == "delivered", st.reply
    assert not_reported(st, bob.jid) == [], st.reply
