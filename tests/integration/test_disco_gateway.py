"""Service discovery (XEP-0030) and address translation (XEP-0100) at chat.localhost."""

from match import message
from stanzas import COMPONENT, NS_DISCO_INFO, NS_GATEWAY, disco_info, gateway_get, gateway_set

FEATURES = {"urn:xmpp:receipts", "urn:xmpp:chat-markers:0", "jabber:iq:gateway",
            "urn:tidemark:status:0", "http://jabber.org/protocol/disco#info"}


async def test_disco_info_lists_features_and_gateway_identity(tm, world):
    alice = await world.client("alice")
    reply = await alice.request(disco_info("d1"), "d1")
    assert reply.type == "result" and reply.frm == COMPONENT, reply
    q = reply.child(NS_DISCO_INFO, "query")
    features = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
    assert FEATURES <= features, f"missing {FEATURES - features} in {reply}"
    identities = q.findall(f"{{{NS_DISCO_INFO}}}identity")
    assert any(i.get("category") == "gateway" for i in identities), reply


async def test_gateway_get_gives_desc_and_prompt(tm, world):
    alice = await world.client("alice")
    reply = await alice.request(gateway_get("g1"), "g1")
    assert reply.type == "result", reply
    q = reply.child(NS_GATEWAY, "query")
    assert q is not None, reply
    assert q.find(f"{{{NS_GATEWAY}}}desc") is not None, reply
    assert q.find(f"{{{NS_GATEWAY}}}prompt") is not None, reply


async def test_gateway_set_turns_a_jid_into_its_tracked_address(tm, world):
    alice = await world.client("alice")
    reply = await alice.request(gateway_set("g2", "bob@localhost"), "g2")
    assert reply.type == "result", reply
    jid = reply.child(NS_GATEWAY, "query").find(f"{{{NS_GATEWAY}}}jid")
    assert jid is not None and jid.text == r"bob\40localhost@chat.localhost", reply


async def test_gateway_address_is_where_chat_works(tm, world):
    alice, bob = await world.clients("alice", "bob")
    reply = await alice.request(gateway_set("g3", bob.jid), "g3")
    addr = reply.child(NS_GATEWAY, "query").find(f"{{{NS_GATEWAY}}}jid").text
    assert addr == bob.tracked
    await world.befriend(alice, bob)
    from stanzas import chat
    await alice.send(chat(addr, "gw1"))
    await bob.expect(message(frm=alice.tracked_full, id="gw1"))
