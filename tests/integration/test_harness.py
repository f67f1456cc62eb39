"""The harness itself, with Prosody alone (no tidemark): logins over STARTTLS,
direct chat between two users, and a Prosody restart."""

from match import message
from stanzas import chat


async def test_two_users_chat_directly_over_starttls(world):
    alice, bob = await world.clients("alice", "bob")
    assert alice.xmpp.is_connected()
    await alice.send(chat(bob.jid, "direct1", body="hi bob"))
    got = await bob.expect(message(frm=alice.full, id="direct1", type="chat"))
    assert got.body == "hi bob"
    await bob.expect_nothing(message(id="direct1"), within=0.3)


async def test_users_are_fresh_per_test(world):
    alice = await world.client("alice")
    assert alice.user == f"alice{world.test_no}"


async def test_prosody_restart_and_login_again(world):
    alice = await world.client("alice")
    alice.abort()
    world.restart_server()
    alice2, bob = await world.clients("alice", "bob")
    await alice2.send(chat(bob.jid, "after-restart"))
    await bob.expect(message(frm=alice2.full, id="after-restart"))
