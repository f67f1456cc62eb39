"""Queries to a tracked address are answered by the contact (issue 9, point 4):
disco to a tracked full JID reaches the contact's client, disco to the tracked
bare JID reaches the contact's server, and the answer comes back under the
asker's id from the address asked. Whoever the contact does not let see them
gets the same refusal whether the contact exists or not; iq set is refused."""

from match import iq
from stanzas import NS_DISCO_INFO, disco_info

NS_VCARD = "vcard-temp"


def features(reply):
    q = reply.child(NS_DISCO_INFO, "query")
    return {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}


def identities(reply):
    q = reply.child(NS_DISCO_INFO, "query")
    return {(i.get("category"), i.get("type")) for i in q.findall(f"{{{NS_DISCO_INFO}}}identity")}


async def test_disco_to_a_tracked_full_jid_is_answered_by_the_contacts_client(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    qid = alice.new_id("disco")
    await alice.send(disco_info(qid, to=bob.tracked_full))
    reply = await alice.expect(iq(id=qid), timeout=10)
    assert reply.type == "result", reply
    assert reply.frm == bob.tracked_full, reply
    # slixmpp's disco plugin answers for bob's client: its own features.
    assert NS_DISCO_INFO in features(reply), reply


async def test_disco_to_a_tracked_bare_jid_is_answered_by_the_contacts_server(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    qid = alice.new_id("disco")
    await alice.send(disco_info(qid, to=bob.tracked))
    reply = await alice.expect(iq(id=qid), timeout=10)
    assert reply.type == "result", reply
    assert reply.frm == bob.tracked, reply
    # RFC 6120 §10.5.4: the account's server answers for the bare JID.
    assert ("account", "registered") in identities(reply), reply


async def test_a_stranger_gets_the_same_refusal_for_a_real_and_a_made_up_contact(tm, world):
    stranger, bob = await world.clients("stranger", "bob")
    answers = []
    for to in (bob.tracked_full, bob.tracked, "nobody\\40localhost@chat.localhost/x"):
        qid = stranger.new_id("disco")
        await stranger.send(disco_info(qid, to=to))
        reply = await stranger.expect(iq(id=qid), timeout=10)
        assert reply.type == "error", reply
        answers.append((reply.error_type, reply.error_condition, reply.error_text))
    assert answers[0][1] == "service-unavailable", answers
    assert len(set(answers)) == 1, f"the refusal tells who exists: {answers}"
    # Nothing reached bob's client.
    await bob.expect_nothing(iq(type="get", frm=stranger.tracked_full))


async def test_an_iq_set_to_a_tracked_address_is_refused(tm, world):
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    qid = alice.new_id("set")
    await alice.send(f"<iq type='set' to='{bob.tracked}' id='{qid}'><vCard xmlns='{NS_VCARD}'/></iq>")
    reply = await alice.expect(iq(id=qid), timeout=10)
    assert reply.type == "error" and reply.error_condition == "service-unavailable", reply
    await bob.expect_nothing(iq(type="set", frm=alice.tracked_full))
