"""Issue 11: team desks (xep/desk.md) through the real Prosody with real clients.

Three agents (alice, bob, carol) answer the desk support@chat.localhost from
their own clients; customers (dan, erin, ...) chat with the desk as with one
person. What is checked is what each side sees: the customer only ever the
desk's address, the agents one conversation address per customer
(support\\2fdan\\40localhost@chat.localhost); who gets a customer's message
(every available agent, or the assignee); receipts and markers going the right
way; assignment by IQ, by command and round-robin; done, pending, snooze and
their events; the counts of each view; predefined messages; refusals; and that
all of it survives kill -9. xep/desk.md is the contract; its section numbers
are cited beside the checks.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from conftest import Tidemark, tidemark_toml
from match import (MARKABLE, RECEIPT_REQUEST, desk_event, desk_event_of, marker_for, message, presence,
                   receipt_for)
from stanzas import (COMPONENT, NS_COMMANDS, NS_DATA, NS_DESK, NS_DISCO_INFO, NS_DISCO_ITEMS, chat,
                     command_execute, command_submit, desk_action, desk_assign, desk_conversation, desk_history,
                     desk_view, disco_info, disco_items, marker, receipt, subscribe, subscribed)
from test_groups import status_when

DESK = "support"
DESK_JID = f"{DESK}@{COMPONENT}"  # what customers write to (§3)
DESK_PRESENCE = f"{DESK_JID}/desk"  # where the desk's presence comes from (§4.1)
AGENTS = ("alice", "bob", "carol")
VIEWS = ("mine", "unassigned", "all", "done")

GREETING = ("Greeting", "Hello! Thanks for writing to us; an agent is looking at your message.")
CLOSING = ("Closing", "Glad we could help. Write again any time.")
NO_AGENT_TEXT = "No agent of support is available; the message was not delivered."  # §4.2

# Right after tidemark (re)connects, a message may wait for the answers to the
# desk's probes (presence.probe_wait_ms, 5 s by default) before it is routed.
AFTER_RESTART = 12.0


# --- configuration and the world -----------------------------------------------

def bare(world, name):
    """The bare JID of this test's user `name` (registered now if need be)."""
    return f"{world.account(name)[0]}@localhost"


def desk_toml(world, agents=AGENTS, assignment=None, predefined=(), name=DESK):
    """A [[desks]] section (§2) naming this test's users as agents."""
    listed = ", ".join(f'"{bare(world, a)}"' for a in agents)
    lines = ["", "[[desks]]", f'name = "{name}"', f"agents = [{listed}]"]
    if assignment:
        lines.append(f'assignment = "{assignment}"')
    for title, text in predefined:
        lines += ["", "[[desks.predefined]]", f'title = "{title}"', f'text = "{text}"']
    return "\n".join(lines) + "\n"


def start_desk(world, agents=AGENTS, offline="reject", **desk):
    """tidemark with a fresh database and the desk `support` of these agents."""
    world.use_tidemark(Tidemark(world, f"desk{world.test_no}", offline=offline,
                                extra=desk_toml(world, agents, **desk)))


async def settled(client):
    """One IQ round trip to tidemark: what this client sent before it (and what its
    server sent on its behalf, such as presence after `subscribed`) is handled."""
    qid = client.new_id("sync")
    reply = await client.request(disco_info(qid), qid)
    assert reply.type == "result", reply.xml


async def accept_desk(agent, desk_jid=DESK_JID):
    """§4.1: the desk asks each agent for their presence; the agent accepts."""
    await agent.expect(presence(frm=desk_jid, type="subscribe"),
                       what=f"the desk's subscription request from {desk_jid}")
    await agent.send(subscribed(desk_jid))
    await settled(agent)


async def desk_world(world, agents=AGENTS, customers=("dan",), **desk):
    """tidemark with the desk; each agent online and having accepted the desk's
    request; the customers online. Returns (agents, customers) as clients."""
    start_desk(world, agents, **desk)
    team = [await world.client(a) for a in agents]
    for a in team:
        await accept_desk(a)
    folk = [await world.client(c) for c in customers]
    return team, folk


async def gone(agent):
    """The agent closes their client (their only resource)."""
    await agent.disconnect()
    # Prosody routes the unavailable presence to the desk as it closes the
    # session; the margin covers the stream's last bytes, nothing is awaited.
    await asyncio.sleep(0.3)


async def back(world, name, resource="back"):
    """The agent logs in again (their subscription is kept: no new request)."""
    c = await world.client(name, resource=resource)
    await settled(c)
    return c


def conv_of(customer):
    """The agents' address of the desk's conversation with this customer (§3)."""
    return desk_conversation(DESK, customer.jid)


def stamp(dt):
    """XEP-0082, whole seconds."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now():
    return datetime.now(timezone.utc)


def assert_recent(text, what, slack=60):
    assert text, f"{what}: no time"
    t = parse_stamp(text)
    assert abs((now() - t).total_seconds()) < slack, f"{what}: {text} is not now ({stamp(now())})"


# --- what customers and agents write --------------------------------------------

async def customer_writes(customer, mid, reach, body=None, timeout=None):
    """The customer writes to the desk; each agent in `reach` gets it from the
    conversation's address under the same id, asking for a receipt and markable
    as the customer's client asked (§4.2). Returns what each got."""
    body = body or f"customer text {mid}"
    await customer.send(chat(DESK_JID, mid, body))
    got = []
    for agent in reach:
        st = await agent.expect(message(frm=conv_of(customer), id=mid, type="chat"), timeout=timeout,
                                what=f"{customer.name}'s {mid!r} from {conv_of(customer)}")
        assert st.body == body, st.xml
        assert st.has(*RECEIPT_REQUEST) and st.has(*MARKABLE), st.xml
        assert (st.to or "").split("/")[0] == agent.jid, st.xml
        got.append(st)
    return got


async def agent_writes(agent, customer, mid, body=None):
    """An agent answers on the conversation's address; the customer gets it from
    the desk's address under the same id (§4.3)."""
    return await agent_writes_to(agent, conv_of(customer), customer, DESK_JID, mid, body)


async def agent_writes_to(agent, conv, customer, desk_jid, mid, body=None):
    """As agent_writes, for any desk: on `conv`, out from `desk_jid`."""
    body = body or f"agent text {mid}"
    await agent.send(chat(conv, mid, body))
    got = await customer.expect(message(frm=desk_jid, id=mid, type="chat"),
                                what=f"{agent.name}'s {mid!r} from {desk_jid}")
    assert got.body == body, got.xml
    return got


async def none_of(clients, pred, what=None, within=1.0):
    """None of these clients gets (or has got and not taken) a stanza matching pred."""
    await asyncio.gather(*(c.expect_nothing(pred, within=within, what=what) for c in clients))


def forget(clients, pred):
    """Drop what these clients received and no test took, so that a later absence
    check looks only at what comes after this point."""
    for c in clients:
        c.received = [s for s in c.received if not pred(s)]


# --- the IQ protocol (§6) --------------------------------------------------------

async def ask(client, build, *args, **kw):
    """Send the IQ `build(id, *args, **kw)` and return its result or error."""
    qid = client.new_id("desk")
    return await client.request(build(qid, *args, **kw), qid)


def assert_error(reply, condition):
    assert reply.type == "error" and reply.error_condition == condition, \
        f"expected an error {condition!r}, got: {reply.xml}"


async def assign(agent, customer, to=None):
    """§6.2: to None: to the agent asking; to '': to nobody."""
    reply = await ask(agent, desk_assign, DESK, customer.jid, to)
    assert reply.type == "result", reply.xml
    return reply


async def act(agent, action, customer, until=None):
    """§6.2: done, pending or snooze."""
    reply = await ask(agent, desk_action, action, DESK, customer.jid, until)
    assert reply.type == "result", reply.xml
    return reply


@dataclass
class View:
    """An answer to <view/>: every view's (conversations, with-unread), and the rows."""
    reply: object
    counts: dict
    rows: list = field(default_factory=list)

    def row(self, customer):
        found = [r for r in self.rows if r.get("customer") == customer.jid]
        assert len(found) == 1, f"expected one row for {customer.jid}: {self.reply.xml}"
        return found[0]

    def customers(self):
        return [r.get("customer") for r in self.rows]


def parse_view(reply) -> View:
    assert reply.type == "result", reply.xml
    el = reply.child(NS_DESK, "view")
    assert el is not None, f"result without <view xmlns='{NS_DESK}'/>: {reply.xml}"
    counts = {c.get("view"): (int(c.get("conversations")), int(c.get("unread")))
              for c in el.findall(f"{{{NS_DESK}}}count")}
    assert set(counts) == set(VIEWS), f"expected a count for each of {VIEWS}: {reply.xml}"
    rows = []
    for c in el.findall(f"{{{NS_DESK}}}conversation"):
        row = dict(c.attrib)
        row["unread"] = int(row["unread"])
        rows.append(row)
    return View(reply, counts, rows)


async def view(agent, name=None, search=None, max=None, after=None):
    return parse_view(await ask(agent, desk_view, DESK, name, search, max, after))


async def view_when(agent, check, what, name=None, tries=30):
    """The view once check(view) holds: an agent's marker is relayed to the
    customer and counted; the test waits for the count a little."""
    for _ in range(tries):
        got = await view(agent, name)
        if check(got):
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"{agent.name}'s view never showed {what}: {got.reply.xml}")


async def history(agent, customer, max=None):
    """§6.3: the events, oldest first, as attribute dicts."""
    reply = await ask(agent, desk_history, DESK, customer.jid, max)
    assert reply.type == "result", reply.xml
    el = reply.child(NS_DESK, "history")
    assert el is not None, reply.xml
    return [dict(e.attrib) for e in el.findall(f"{{{NS_DESK}}}event")]


# --- the commands (§5, XEP-0050) --------------------------------------------------

def command_of(reply):
    cmd = reply.child(NS_COMMANDS, "command")
    assert reply.type == "result" and cmd is not None, reply.xml
    return cmd


def completed(reply):
    return command_of(reply).get("status") == "completed"


def fields_of(reply):
    """var -> <field/> of the command's form (none if it has no form)."""
    x = command_of(reply).find(f"{{{NS_DATA}}}x")
    if x is None:
        return {}
    return {f.get("var"): f for f in x.findall(f"{{{NS_DATA}}}field") if f.get("var")}


def value_of(f):
    return f.findtext(f"{{{NS_DATA}}}value") or ""


def options_of(f):
    """(label, value) of each option of a list field."""
    return [(o.get("label"), o.findtext(f"{{{NS_DATA}}}value")) for o in f.findall(f"{{{NS_DATA}}}option")]


def choose(title):
    """A field value: the option of a list field whose label (or value) is `title`."""
    def pick(f):
        for label, value in options_of(f):
            if (label or value) == title:
                return value
        raise AssertionError(f"no option {title!r} among {options_of(f)}")
    return pick


async def run_command(client, node, fields=None, to=COMPONENT):
    """Run a command as a XEP-0050 client does: execute, then submit each form
    with its shown values, those named in `fields` replaced (by the value, or
    by what a callable makes of the shown field), until it is no longer
    executing. Returns every reply in order (the last may be an error). Every
    field given must have been asked for."""
    fields = dict(fields or {})
    asked = set()
    qid = client.new_id("cmd")
    reply = await client.request(command_execute(qid, node, to=to), qid)
    replies = [reply]
    for _ in range(5):
        if reply.type != "result" or command_of(reply).get("status") != "executing":
            break
        shown = fields_of(reply)
        assert shown, f"an executing stage without a form: {reply.xml}"
        values = {var: value_of(f) for var, f in shown.items() if f.get("type") != "fixed"}
        for var in values:
            if var in fields:
                given = fields[var]
                values[var] = given(shown[var]) if callable(given) else given
                asked.add(var)
        qid = client.new_id("cmd")
        reply = await client.request(command_submit(qid, node, command_of(reply).get("sessionid"), values, to=to),
                                     qid)
        replies.append(reply)
    if reply.type == "result" and completed(reply):
        assert set(fields) <= asked, f"{node} never asked for {set(fields) - asked}: {[r.xml for r in replies]}"
    return replies


def asked_fields(replies):
    """Every field var any stage's form asked for."""
    return {var for r in replies if r.type == "result" for var in fields_of(r)}


def field_in(replies, var):
    for r in replies:
        if r.type == "result" and var in fields_of(r):
            return fields_of(r)[var]
    raise AssertionError(f"no stage asked for {var!r}: {[r.xml for r in replies]}")


def desk_counts(reply):
    """count-mine etc. of the `desk` command's answer: view -> 'conversations/with-unread'."""
    shown = fields_of(reply)
    missing = [v for v in VIEWS if f"count-{v}" not in shown]
    assert not missing, f"no count field for {missing}: {reply.xml}"
    return {v: value_of(shown[f"count-{v}"]) for v in VIEWS}


def desk_rows(reply):
    """The items of the `desk` command's answer: var -> value ('' for none)."""
    x = command_of(reply).find(f"{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "result", reply.xml
    return [{f.get("var"): value_of(f) for f in item.findall(f"{{{NS_DATA}}}field")}
            for item in x.findall(f"{{{NS_DATA}}}item")]


def reported_vars(reply):
    x = command_of(reply).find(f"{{{NS_DATA}}}x")
    return [f.get("var") for f in x.findall(f"{{{NS_DATA}}}reported/{{{NS_DATA}}}field")]


def fractions(counts):
    """An IQ view's counts as the command shows them: view -> 'n/m'."""
    return {v: f"{n}/{m}" for v, (n, m) in counts.items()}


async def desk_command(agent, view_name="mine", search=None):
    """The `desk` command's completed answer for one view."""
    fields = {"view": view_name}
    if search is not None:
        fields["search"] = search
    replies = await run_command(agent, "desk", fields)
    assert completed(replies[-1]), replies[-1].xml
    return replies[-1]


# --- events (§4.4) ------------------------------------------------------------------

def event_body(kind, by=None, to=None, until=None, customer=None):
    """The body the table of §4.4 gives each kind."""
    return {
        "opened": f"New conversation from {customer}",
        "assigned": f"Assigned to {to} by {by}",
        "unassigned": f"Unassigned by {by}",
        "done": f"Marked done by {by}",
        "pending": f"Marked pending by {by}",
        "snoozed": f"Snoozed until {until} by {by}",
        "unsnoozed": f"Back from snooze ({'automation' if by == 'automation' else 'customer wrote'})",
        "reopened": "Reopened: the customer wrote",
    }[kind]


async def expect_event(agent, customer, kind, timeout=None, **attrs):
    """The agent gets the event as a chat message from the conversation's address,
    with the table's body, a time, and no receipt request or markable (§4.4).
    Returns the <event/>'s attributes (plus 'id' and 'body' of the message)."""
    st = await agent.expect(desk_event(kind, frm=conv_of(customer), **attrs), timeout=timeout)
    ev = desk_event_of(st)
    assert st.type == "chat", st.xml
    assert_recent(ev.get("at"), f"the time of {st.xml}")
    assert st.body == event_body(kind, ev.get("by"), ev.get("to"), ev.get("until"), customer.jid), st.xml
    assert not st.has(*RECEIPT_REQUEST) and not st.has(*MARKABLE), f"an event asks for no receipt: {st.xml}"
    return {**ev, "id": st.id, "body": st.body}


# --- 0. discovery ----------------------------------------------------------------------

async def test_the_service_announces_desks_and_offers_the_commands(world):
    (alice, bob, carol), (dan,) = await desk_world(world)
    qid = alice.new_id("disco")
    info = await alice.request(disco_info(qid), qid)
    features = {f.get("var") for f in info.child(NS_DISCO_INFO, "query").findall(f"{{{NS_DISCO_INFO}}}feature")}
    assert NS_DESK in features, info.xml

    # §5: the commands on the service's address, for an agent
    qid = alice.new_id("items")
    items = await alice.request(disco_items(qid, node=NS_COMMANDS), qid)
    nodes = {i.get("node") for i in items.child(NS_DISCO_ITEMS, "query")}
    assert {"desk", "assign", "done", "pending", "snooze", "predefined"} <= nodes, items.xml

    # ... and the actions on a conversation's address
    await customer_writes(dan, "d1", (alice, bob, carol))
    qid = bob.new_id("items")
    items = await bob.request(disco_items(qid, to=conv_of(dan), node=NS_COMMANDS), qid)
    assert items.type == "result", items.xml
    nodes = {i.get("node") for i in items.child(NS_DISCO_ITEMS, "query")}
    assert {"assign", "done", "pending", "snooze", "predefined"} <= nodes, items.xml
    assert all(i.get("jid") == conv_of(dan) for i in items.child(NS_DISCO_ITEMS, "query")), items.xml


# --- 1. the customer sees only the desk --------------------------------------------------

async def test_a_customer_only_ever_sees_the_desk_address(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    conv = conv_of(dan)

    # §4.1: dan adds the desk as a contact: accepted at once, available while an agent is
    await dan.send(subscribe(DESK_JID))
    await dan.expect(presence(frm=DESK_JID, type="subscribed"))
    # (from a resource: Gajim 1.7.3 drops a presence from a bare JID)
    await dan.expect(presence(frm=DESK_PRESENCE, type=False), what=f"the desk's available presence from {DESK_PRESENCE}")

    # his question; carol's client acknowledges it, alice reads it
    await customer_writes(dan, "d1", team, body="My order has not arrived.")
    await carol.send(receipt(conv, "d1"))
    await dan.expect(receipt_for("d1", frm=DESK_JID))
    await alice.send(marker("displayed", conv, "d1"))
    await dan.expect(marker_for("displayed", "d1", frm=DESK_JID))

    # bob answers; dan's client acknowledges and shows it
    await agent_writes(bob, dan, "b1", "Could you give me the order number?")
    await dan.send(receipt(DESK_JID, "b1"))
    await bob.expect(receipt_for("b1", frm=conv))
    await dan.send(marker("displayed", DESK_JID, "b1"))
    await bob.expect(marker_for("displayed", "b1", frm=conv))

    # dan asks about his message the way he names the conversation
    st = await status_when(dan, DESK_JID, "d1", "read")
    assert st.conversation == DESK_JID, st.reply.xml

    # every agent leaves: the desk goes away, and a message is refused by the desk
    for a in team:
        await a.disconnect()
    await dan.expect(presence(frm=DESK_PRESENCE, type="unavailable"))
    await dan.send(chat(DESK_JID, "d2"))
    err = await dan.expect(message(id="d2", type="error"))
    assert err.frm == DESK_JID and err.error_condition == "recipient-unavailable", err.xml
    # one comes back: so does the desk
    await back(world, "carol")
    await dan.expect(presence(frm=DESK_PRESENCE, type=False), what="the desk available again")

    # all of it came from the desk (or, for his query, the service), and nothing
    # dan ever got names an agent
    from_tidemark = [s for s in dan.history if (s.frm or "").split("/")[0].endswith(COMPONENT)]
    assert {s.frm for s in from_tidemark} <= {DESK_JID, DESK_PRESENCE, COMPONENT}, [s.xml for s in from_tidemark]
    assert {s.frm for s in from_tidemark if s.kind != "iq"} == {DESK_JID, DESK_PRESENCE}, [s.xml for s in from_tidemark]
    for s in dan.history:
        for a in team:
            assert a.user not in s.xml, f"{a.jid} shows in what dan got: {s.xml}"


# --- 2. an unassigned conversation --------------------------------------------------------

async def test_an_unassigned_conversation_reaches_every_available_agent(world):
    (alice, bob, carol), (dan,) = await desk_world(world)
    conv = conv_of(dan)
    assert conv == "support\\2f" + dan.user + "\\40localhost@" + COMPONENT  # XEP-0106, §3
    await gone(carol)

    relayed = await customer_writes(dan, "d1", (alice, bob), body="My order has not arrived.")
    for st in relayed:
        assert st.frm == conv, st.xml
    # §4.4: the conversation's first event, to every available agent
    for a in (alice, bob):
        await expect_event(a, dan, "opened")

    # carol was away: when she is back, nothing of it reaches her (no offline copy)
    carol = await back(world, "carol")
    await carol.expect_nothing(message(id="d1"), what="d1, sent while she was away")

    # she is available again: the next message reaches all three
    await customer_writes(dan, "d2", (alice, bob, carol))


async def test_an_agent_sees_the_conversation_named_after_customer_and_desk(world):
    (alice, bob, carol), (dan,) = await desk_world(world)
    await customer_writes(dan, "d1", (alice, bob, carol))
    # §3: the name `dan (support)`, as XEP-0172 nicks go with tracked addresses
    # (in a PEP headline or with the stanza itself)
    want = f"{dan.user} (support)"
    nick_tag = "{http://jabber.org/protocol/nick}nick"

    def named(s):
        return s.frm and s.frm.split("/")[0] == conv_of(dan) and \
            any(n.text == want for n in s.el.iter(nick_tag))
    for _ in range(10):
        if any(named(s) for s in alice.history):
            break
        await asyncio.sleep(0.1)
    nicks = [n.text for s in alice.history if (s.frm or "").startswith(conv_of(dan)) for n in s.el.iter(nick_tag)]
    assert any(named(s) for s in alice.history), f"no nick {want!r} from {conv_of(dan)}; nicks seen: {nicks}"


# --- 3. answers, receipts, markers, status ----------------------------------------------

async def test_an_answer_goes_out_from_the_desk_and_its_receipts_come_back_to_its_writer(world):
    (alice, bob, carol), (dan,) = await desk_world(world)
    conv = conv_of(dan)
    await customer_writes(dan, "d1", (alice, bob, carol))

    got = await agent_writes(bob, dan, "b1", "Could you give me the order number?")
    assert got.to.split("/")[0] == dan.jid and got.has(*RECEIPT_REQUEST) and got.has(*MARKABLE), got.xml
    st = await bob.status(conv, "b1")
    assert st.summary == "sent" and dan.jid in st.recipients, st.reply.xml

    await dan.send(receipt(DESK_JID, "b1"))
    await bob.expect(receipt_for("b1", frm=conv))
    st = await status_when(bob, conv, "b1", "delivered")
    assert st[dan.jid].delivered, st.reply.xml

    await dan.send(marker("displayed", DESK_JID, "b1"))
    await bob.expect(marker_for("displayed", "b1", frm=conv))
    st = await status_when(bob, conv, "b1", "read")
    assert st[dan.jid].read, st.reply.xml
    # the receipt and the marker went to bob, who wrote b1, alone
    await none_of((alice, carol), receipt_for("b1") | marker_for("displayed", "b1"),
                  what="dan's receipt or marker for bob's message")
    # §4.3: any agent may ask about any message of the desk's side
    st = await alice.status(conv, "b1")
    assert st.summary == "read", st.reply.xml


async def test_an_agents_receipt_then_marker_reach_the_customer_from_the_desk(world):
    (alice, bob, carol), (dan,) = await desk_world(world)
    conv = conv_of(dan)
    await customer_writes(dan, "d1", (alice, bob, carol))
    await customer_writes(dan, "d2", (alice, bob, carol))
    assert (await dan.status(DESK_JID, "d1")).summary == "sent"

    await carol.send(receipt(conv, "d1"))
    await dan.expect(receipt_for("d1", frm=DESK_JID))
    await status_when(dan, DESK_JID, "d1", "delivered")

    await alice.send(marker("displayed", conv, "d2"))
    await dan.expect(marker_for("displayed", "d2", frm=DESK_JID))
    await status_when(dan, DESK_JID, "d2", "read")
    # a displayed marker covers the earlier messages (xep/status.md §4)
    await status_when(dan, DESK_JID, "d1", "read")


# --- 4. assignment -------------------------------------------------------------------

async def test_assigning_by_iq_sends_the_customers_next_message_to_the_assignee_only(world):
    team, (dan, erin) = await desk_world(world, customers=("dan", "erin"))
    alice, bob, carol = team
    conv = conv_of(dan)
    await customer_writes(dan, "d1", team)

    await assign(alice, dan, bob.jid)
    for a in (alice, bob):  # the agent who acted, the assignee after
        await expect_event(a, dan, "assigned", by=alice.jid, to=bob.jid)
    await customer_writes(dan, "d2", (bob,))
    await none_of((alice, carol), message(frm=conv, id="d2"), what="d2, for bob alone")

    # §6.2: assigning to the assignee changes nothing: a result, no event
    forget(team, desk_event())
    await assign(alice, dan, bob.jid)
    await none_of(team, desk_event(frm=conv), what="an event for a change that changed nothing")

    # bob gives it back: every agent again
    await assign(bob, dan, "")
    await expect_event(bob, dan, "unassigned", by=bob.jid)
    await customer_writes(dan, "d3", team)

    # carol takes it (no `to`: herself)
    await assign(carol, dan)
    await expect_event(carol, dan, "assigned", by=carol.jid, to=carol.jid)
    await customer_writes(dan, "d4", (carol,))
    await none_of((alice, bob), message(frm=conv, id="d4"), what="d4, for carol alone")

    # §6, §7: erin never wrote; erin is no agent
    assert_error(await ask(alice, desk_assign, DESK, erin.jid, alice.jid), "item-not-found")
    assert_error(await ask(alice, desk_assign, DESK, dan.jid, erin.jid), "bad-request")
    row = (await view(carol, "mine")).row(dan)
    assert row.get("assignee") == carol.jid, row


async def test_while_the_assignee_is_away_every_available_agent_gets_the_message(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    await customer_writes(dan, "d1", team)
    await assign(alice, dan, bob.jid)
    await expect_event(bob, dan, "assigned", by=alice.jid, to=bob.jid)
    await gone(bob)
    # §4.2: to the assignee if they are available, otherwise every available agent
    await customer_writes(dan, "d2", (alice, carol))
    row = (await view(alice, "all")).row(dan)
    assert row.get("assignee") == bob.jid, "the conversation is still bob's"
    bob = await back(world, "bob")
    await customer_writes(dan, "d3", (bob,))
    await none_of((alice, carol), message(frm=conv_of(dan), id="d3"), what="d3, for bob alone")


async def test_assigning_by_command_on_the_service_and_on_the_conversation(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    conv = conv_of(dan)
    await customer_writes(dan, "d1", team)

    # on the service's address: the conversation is asked for (§5)
    replies = await run_command(alice, "assign", {"conversation": conv, "assignee": carol.jid})
    assert completed(replies[-1]), replies[-1].xml
    assert fields_of(replies[0])["conversation"].get("type") == "jid-single", replies[0].xml
    assignee = field_in(replies, "assignee")
    assert assignee.get("type") == "list-single", assignee
    choices = {v for _, v in options_of(assignee)}
    # the agent asking is `me`; the list need not name them again
    assert {bob.jid, carol.jid, "me", "nobody"} <= choices, replies[-2].xml
    assert value_of(assignee) == "me", replies[-2].xml
    for a in (alice, carol):
        await expect_event(a, dan, "assigned", by=alice.jid, to=carol.jid)
    await customer_writes(dan, "d2", (carol,))
    await none_of((alice, bob), message(frm=conv, id="d2"), what="d2, for carol alone")

    # on the conversation's address: nothing asks which; the default is `me`
    replies = await run_command(bob, "assign", to=conv)
    assert completed(replies[-1]), replies[-1].xml
    assert "conversation" not in asked_fields(replies), [r.xml for r in replies]
    for a in (bob, carol):  # the one who acted and the assignee before
        await expect_event(a, dan, "assigned", by=bob.jid, to=bob.jid)
    await customer_writes(dan, "d3", (bob,))
    await none_of((alice, carol), message(frm=conv, id="d3"), what="d3, for bob alone")

    replies = await run_command(bob, "assign", {"assignee": "nobody"}, to=conv)
    assert completed(replies[-1]), replies[-1].xml
    await expect_event(bob, dan, "unassigned", by=bob.jid)
    await customer_writes(dan, "d4", team)


async def test_round_robin_assigns_new_conversations_in_config_order(world):
    customers = ("dan", "erin", "frank", "gina")
    team, folk = await desk_world(world, customers=customers, assignment="round-robin")
    alice, bob, carol = team
    expected = dict(zip(customers, (alice, bob, carol, alice)))
    for c in folk:
        agent = expected[c.name]
        await c.send(chat(DESK_JID, f"{c.name}-1"))
        await agent.expect(message(frm=conv_of(c), id=f"{c.name}-1"))
        await expect_event(agent, c, "assigned", by="automation", to=agent.jid)
    # each customer's next message goes to their agent alone
    for c in folk:
        agent = expected[c.name]
        await customer_writes(c, f"{c.name}-2", (agent,))
        others = [a for a in team if a is not agent]
        await none_of(others, message(frm=conv_of(c), id=f"{c.name}-2"), what=f"{c.name}'s message",
                      within=0.3)
    mine = {a.name: (await view(a, "mine")).customers() for a in team}
    assert sorted(mine["alice"]) == sorted([folk[0].jid, folk[3].jid]), mine
    assert (mine["bob"], mine["carol"]) == ([folk[1].jid], [folk[2].jid]), mine


async def test_round_robin_skips_an_agent_who_is_away(world):
    team, folk = await desk_world(world, customers=("dan", "erin", "frank"), assignment="round-robin")
    alice, bob, carol = team
    await gone(bob)
    for c, agent in zip(folk, (alice, carol, alice)):
        await c.send(chat(DESK_JID, f"{c.name}-1"))
        await agent.expect(message(frm=conv_of(c), id=f"{c.name}-1"))
        await expect_event(agent, c, "assigned", by="automation", to=agent.jid)
    v = await view(alice, "all")
    assert {r["customer"]: r.get("assignee") for r in v.rows} == \
        {folk[0].jid: alice.jid, folk[1].jid: carol.jid, folk[2].jid: alice.jid}, v.reply.xml


# --- 5. done, pending, snooze -------------------------------------------------------

async def test_done_by_iq_and_a_customer_message_reopens_it(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    conv = conv_of(dan)
    await customer_writes(dan, "d1", team)
    await assign(alice, dan)
    await expect_event(alice, dan, "assigned", by=alice.jid, to=alice.jid)

    await act(alice, "done", dan)
    await expect_event(alice, dan, "done", by=alice.jid)
    v = await view(alice, "done")
    assert v.customers() == [dan.jid] and v.row(dan)["state"] == "done", v.reply.xml
    assert v.counts["done"][0] == 1 and v.counts["all"][0] == 0, v.reply.xml

    # marking a done conversation done changes nothing (§6.2)
    forget(team, desk_event())
    await act(alice, "done", dan)
    await none_of(team, desk_event(frm=conv), what="an event for a change that changed nothing")
    assert [e.get("kind") for e in await history(alice, dan)].count("done") == 1

    # §4.2: dan writes again: reopened, and still alice's
    await customer_writes(dan, "d2", (alice,))
    ev = await expect_event(alice, dan, "reopened")
    assert ev.get("by") == "customer", ev
    v = await view(alice, "mine")
    row = v.row(dan)
    assert (row["state"], row.get("assignee")) == ("open", alice.jid), v.reply.xml
    assert v.counts["done"][0] == 0, v.reply.xml


async def test_pending_and_done_by_command(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    conv = conv_of(dan)
    await customer_writes(dan, "d1", team)
    await assign(alice, dan, bob.jid)
    await expect_event(bob, dan, "assigned", by=alice.jid, to=bob.jid)

    # on the service's address, naming the conversation
    replies = await run_command(alice, "pending", {"conversation": conv})
    assert completed(replies[-1]), replies[-1].xml
    for a in (alice, bob):  # the one who acted and the assignee
        await expect_event(a, dan, "pending", by=alice.jid)
    await none_of((carol,), desk_event("pending", frm=conv), what="an event of a conversation not hers")
    assert (await view(bob, "mine")).row(dan)["state"] == "pending"

    # on the conversation's address
    replies = await run_command(bob, "done", to=conv)
    assert completed(replies[-1]), replies[-1].xml
    assert "conversation" not in asked_fields(replies), [r.xml for r in replies]
    await expect_event(bob, dan, "done", by=bob.jid)
    assert (await view(bob, "done")).row(dan)["state"] == "done"

    # the IQ's pending too, on a conversation that is not done
    await customer_writes(dan, "d2", (bob,))
    await expect_event(bob, dan, "reopened")
    await act(carol, "pending", dan)
    for a in (carol, bob):
        await expect_event(a, dan, "pending", by=carol.jid)
    assert (await view(carol, "all")).row(dan)["state"] == "pending"


async def test_a_snooze_ends_by_itself_when_its_time_comes(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    await customer_writes(dan, "d1", team)
    await assign(alice, dan)
    await expect_event(alice, dan, "assigned", by=alice.jid, to=alice.jid)

    until = stamp(now() + timedelta(seconds=4))
    await act(alice, "snooze", dan, until=until)
    ev = await expect_event(alice, dan, "snoozed", by=alice.jid)
    assert parse_stamp(ev["until"]) == parse_stamp(until), ev
    assert (await view(alice, "mine")).row(dan)["state"] == "snoozed"

    ev = await expect_event(alice, dan, "unsnoozed", timeout=15, by="automation")
    assert parse_stamp(ev["at"]) >= parse_stamp(until), f"back at {ev['at']}, before {until}"
    assert (await view(alice, "mine")).row(dan)["state"] == "open"

    # §6.2, §7: a time in the past, or more than 30 days ahead
    for bad in (stamp(now() - timedelta(minutes=1)), stamp(now() + timedelta(days=31)), "tomorrow"):
        assert_error(await ask(alice, desk_action, "snooze", DESK, dan.jid, bad), "bad-request")
    assert_error(await ask(alice, desk_action, "snooze", DESK, dan.jid), "bad-request")


async def test_a_snooze_ends_when_the_customer_writes(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    conv = conv_of(dan)
    await customer_writes(dan, "d1", team)
    await assign(alice, dan, bob.jid)
    await expect_event(bob, dan, "assigned", by=alice.jid, to=bob.jid)

    # the command on the conversation's address: minutes, 60 unless told
    replies = await run_command(bob, "snooze", {"minutes": "90"}, to=conv)
    assert completed(replies[-1]), replies[-1].xml
    minutes = field_in(replies, "minutes")
    assert value_of(minutes) == "60", minutes
    ev = await expect_event(bob, dan, "snoozed", by=bob.jid)
    ahead = (parse_stamp(ev["until"]) - now()).total_seconds()
    assert 89 * 60 < ahead < 91 * 60, f"snoozed until {ev['until']}, not 90 minutes from now"
    assert (await view(bob, "mine")).row(dan)["state"] == "snoozed"

    await customer_writes(dan, "d2", (bob,))
    ev = await expect_event(bob, dan, "unsnoozed")
    assert ev.get("by") == "customer", ev
    assert (await view(bob, "mine")).row(dan)["state"] == "open"

    # §5.2: 1 to 43200 minutes
    for bad in ("0", "43201", "soon"):
        replies = await run_command(bob, "snooze", {"minutes": bad}, to=conv)
        assert replies[-1].type == "error" and replies[-1].error_condition == "bad-request", (bad, replies[-1].xml)
    assert (await view(bob, "mine")).row(dan)["state"] == "open"


# --- 6. views and counts -----------------------------------------------------------

async def test_views_count_conversations_and_unread_after_each_action(world):
    team, (dan, erin) = await desk_world(world, customers=("dan", "erin"))
    alice, bob, carol = team

    async def both(agent, view_name, counts, customers, ordered=True):
        """The <view/> IQ and the `desk` command agree and show these counts and
        rows (latest activity first, unless a read may have counted as activity)."""
        arrange = (lambda x: x) if ordered else sorted
        v = await view(agent, view_name)
        assert v.counts == counts, f"{agent.name} {view_name}: {v.reply.xml}"
        assert arrange(v.customers()) == arrange([c.jid for c in customers]), f"{agent.name} {view_name}: {v.reply.xml}"
        done = await desk_command(agent, view_name)
        assert desk_counts(done) == fractions(counts), done.xml
        assert arrange([r.get("jid") for r in desk_rows(done)]) == arrange([conv_of(c) for c in customers]), done.xml
        return v, done

    await customer_writes(dan, "d1", team)
    await customer_writes(dan, "d2", team)
    await customer_writes(erin, "e1", team)
    v, done = await both(alice, "unassigned", {"mine": (0, 0), "unassigned": (2, 2), "all": (2, 2), "done": (0, 0)},
                         [erin, dan])
    row = v.row(dan)
    assert (row["jid"], row["name"], row["state"], row["unread"]) == (conv_of(dan), dan.user, "open", 2), v.reply.xml
    assert "assignee" not in row, v.reply.xml
    assert_recent(row["last-activity"], "last-activity")
    assert reported_vars(done) == ["jid", "name", "assignee", "state", "unread", "last-activity"], done.xml
    cmd_row = desk_rows(done)[1]
    assert (cmd_row.get("name"), cmd_row.get("assignee", ""), cmd_row.get("state"), cmd_row.get("unread")) == \
        (dan.user, "", "open", "2"), done.xml
    lag = parse_stamp(cmd_row["last-activity"]) - parse_stamp(row["last-activity"])
    assert abs(lag.total_seconds()) < 1, done.xml

    # alice reads dan's two (displayed on d2 covers d1)
    await alice.send(marker("displayed", conv_of(dan), "d2"))
    await dan.expect(marker_for("displayed", "d2", frm=DESK_JID))
    await view_when(alice, lambda v: v.row(dan)["unread"] == 0, "dan's messages read", "all")
    await both(alice, "all", {"mine": (0, 0), "unassigned": (2, 1), "all": (2, 1), "done": (0, 0)}, [erin, dan],
               ordered=False)

    # alice takes dan: hers, no longer unassigned; bob's `mine` stays empty
    await assign(alice, dan)
    await both(alice, "mine", {"mine": (1, 0), "unassigned": (1, 1), "all": (2, 1), "done": (0, 0)}, [dan])
    v, _ = await both(bob, "unassigned", {"mine": (0, 0), "unassigned": (1, 1), "all": (2, 1), "done": (0, 0)},
                      [erin])
    row = (await view(bob, "all")).row(dan)
    assert row.get("assignee") == alice.jid, row

    # bob gives erin to carol by command
    replies = await run_command(bob, "assign", {"conversation": conv_of(erin), "assignee": carol.jid})
    assert completed(replies[-1]), replies[-1].xml
    _, done = await both(carol, "mine", {"mine": (1, 1), "unassigned": (0, 0), "all": (2, 1), "done": (0, 0)},
                         [erin])
    assert desk_rows(done)[0].get("assignee") == carol.jid, done.xml

    # alice is done with dan
    await act(alice, "done", dan)
    await both(alice, "done", {"mine": (0, 0), "unassigned": (0, 0), "all": (1, 1), "done": (1, 0)}, [dan])
    await both(alice, "all", {"mine": (0, 0), "unassigned": (0, 0), "all": (1, 1), "done": (1, 0)}, [erin])

    # search: the customer's JID, case-folded (§5.1, §6.1)
    v = await view(alice, "all", search=erin.user.upper())
    assert v.customers() == [erin.jid], v.reply.xml
    assert [r["jid"] for r in desk_rows(await desk_command(alice, "all", search=erin.user.upper()))] == \
        [conv_of(erin)]
    assert (await view(alice, "all", search="nobody-by-this-name")).customers() == []

    # dan writes again: reopened, alice's, unread, and the latest
    await customer_writes(dan, "d3", (alice,))
    await both(alice, "all", {"mine": (1, 1), "unassigned": (0, 0), "all": (2, 2), "done": (0, 0)}, [dan, erin])
    # pages of one (XEP-0059), `after` naming a customer (§6.1)
    assert (await view(alice, "all", max=1)).customers() == [dan.jid]
    assert (await view(alice, "all", max=1, after=dan.jid)).customers() == [erin.jid]


async def test_the_desk_command_first_asks_for_a_view(world):
    (alice, bob, carol), (dan,) = await desk_world(world)
    qid = alice.new_id("cmd")
    first = await alice.request(command_execute(qid, "desk"), qid)
    assert command_of(first).get("status") == "executing", first.xml
    shown = fields_of(first)
    assert "view" in shown, first.xml
    assert shown["view"].get("type") == "list-single" and value_of(shown["view"]) == "mine", first.xml
    assert {v for _, v in options_of(shown["view"])} == set(VIEWS), first.xml
    assert "search" in shown and shown["search"].get("type") == "text-single", first.xml
    # one desk: no desk to choose
    assert "desk" not in shown, first.xml


# --- 7. events and history ---------------------------------------------------------

async def test_every_action_is_an_event_and_the_history_keeps_them_in_order(world):
    team, (dan,) = await desk_world(world)
    alice, bob, carol = team
    conv = conv_of(dan)
    live = []  # the events as they reached someone, in order

    await customer_writes(dan, "d1", team)
    for a in team:
        ev = await expect_event(a, dan, "opened")
    live.append(ev)
    await assign(alice, dan, bob.jid)
    live.append(await expect_event(bob, dan, "assigned", by=alice.jid, to=bob.jid))
    await act(bob, "pending", dan)
    live.append(await expect_event(bob, dan, "pending", by=bob.jid))
    await act(alice, "done", dan)
    live.append(await expect_event(bob, dan, "done", by=alice.jid))
    await expect_event(alice, dan, "done", by=alice.jid)
    # carol is neither the assignee nor the one who acted
    await none_of((carol,), desk_event("pending", frm=conv) | desk_event("done", frm=conv),
                  what="events of bob's conversation")
    await customer_writes(dan, "d2", (bob,))
    live.append(await expect_event(bob, dan, "reopened", by="customer"))
    await assign(bob, dan, "")
    live.append(await expect_event(bob, dan, "unassigned", by=bob.jid))
    until = stamp(now() + timedelta(seconds=3))
    await act(bob, "snooze", dan, until=until)
    live.append(await expect_event(bob, dan, "snoozed", by=bob.jid))
    assert parse_stamp(live[-1]["until"]) == parse_stamp(until), live[-1]
    live.append(await expect_event(bob, dan, "unsnoozed", timeout=15, by="automation"))
    await act(carol, "snooze", dan, until=stamp(now() + timedelta(hours=1)))
    live.append(await expect_event(carol, dan, "snoozed", by=carol.jid))
    await customer_writes(dan, "d3", team)
    live.append(await expect_event(carol, dan, "unsnoozed", by="customer"))

    events = await history(carol, dan)
    assert [e.get("kind") for e in events] == [e["kind"] for e in live], events
    # §6.3's example: the opening is by the customer (the live event need not say)
    assert [e.get("by") for e in events] == ["customer"] + [e["by"] for e in live[1:]], events
    for got, seen in zip(events, live):
        for attr in ("to", "until", "at"):
            assert got.get(attr) == seen.get(attr), f"history {got} vs live {seen}"
    stamps = [parse_stamp(e["at"]) for e in events]
    assert stamps == sorted(stamps), events
    # <set/> max: the newest ones, still oldest first
    assert await history(carol, dan, max=3) == events[-3:]

    # events are no messages of the conversation: they have no status
    assert live[1]["id"], live[1]
    st = await alice.status(conv, live[1]["id"])
    assert st.error == "item-not-found", st.reply.xml


# --- 8. predefined messages ---------------------------------------------------------

async def test_a_predefined_message_goes_to_the_customer_from_the_desk(world):
    team, (dan,) = await desk_world(world, predefined=(GREETING, CLOSING))
    alice, bob, carol = team
    conv = conv_of(dan)
    await customer_writes(dan, "d1", team)

    # on the conversation's address: the titles to choose from
    replies = await run_command(carol, "predefined", {"message": choose(CLOSING[0])}, to=conv)
    assert completed(replies[-1]), replies[-1].xml
    assert "conversation" not in asked_fields(replies), [r.xml for r in replies]
    offered = field_in(replies, "message")
    assert offered.get("type") == "list-single", offered
    assert [label or value for label, value in options_of(offered)] == [GREETING[0], CLOSING[0]], replies[0].xml

    got = await dan.expect(message(frm=DESK_JID, type="chat", where=lambda s: s.body == CLOSING[1]),
                           what="the Closing text from the desk")
    assert got.id, got.xml
    # as any agent message: recorded, and its receipt goes to carol, who chose it
    await dan.send(receipt(DESK_JID, got.id))
    await carol.expect(receipt_for(got.id, frm=conv))
    await status_when(carol, conv, got.id, "delivered")

    # on the service's address: the conversation, then the message
    replies = await run_command(alice, "predefined", {"conversation": conv, "message": choose(GREETING[0])})
    assert completed(replies[-1]), replies[-1].xml
    await dan.expect(message(frm=DESK_JID, type="chat", where=lambda s: s.body == GREETING[1]),
                     what="the Greeting text from the desk")


# --- 9. nobody there ----------------------------------------------------------------

async def test_no_available_agent_refuses_the_customer_from_the_desk(world):
    start_desk(world, agents=("alice", "bob"))
    dan = await world.client("dan")

    async def refused(mid):
        await dan.send(chat(DESK_JID, mid))
        err = await dan.expect(message(id=mid, type="error"), timeout=AFTER_RESTART)
        assert err.frm == DESK_JID and err.error_type == "cancel", err.xml
        assert err.error_condition == "recipient-unavailable" and err.error_text == NO_AGENT_TEXT, err.xml
        st = await dan.status(DESK_JID, mid)
        assert st.summary == "failed", st.reply.xml
        (r,) = st.recipients.values()
        assert (r.reason_condition, r.reason_text) == ("recipient-unavailable", NO_AGENT_TEXT), st.reply.xml

    # no agent ever came
    await refused("d1")
    # alice comes, accepts, and leaves again
    alice = await world.client("alice")
    await accept_desk(alice)
    await gone(alice)
    await refused("d2")
    # she is back: the desk is answered again
    alice = await back(world, "alice")
    await customer_writes(dan, "d3", (alice,))
    await alice.expect_nothing(message(id="d1") | message(id="d2"), what="the refused messages")


async def test_with_offline_queue_the_message_waits_for_an_agent(world):
    start_desk(world, agents=("alice",), offline="queue")
    alice = await world.client("alice")
    await accept_desk(alice)
    await gone(alice)
    dan = await world.client("dan")
    await dan.send(chat(DESK_JID, "d1", "anyone there?"))
    await dan.expect_nothing(message(id="d1", type="error"), what="an error for a held message")
    alice = await back(world, "alice")
    got = await alice.expect(message(frm=conv_of(dan), id="d1", type="chat"))
    assert got.body == "anyone there?", got.xml


# --- 10. who may ---------------------------------------------------------------------

async def test_someone_who_is_no_agent_is_forbidden(world):
    team, (dan, erin) = await desk_world(world, customers=("dan", "erin"))
    alice, bob, carol = team
    conv = conv_of(dan)
    await customer_writes(dan, "d1", team)

    # writing into a conversation: erin, another customer; dan, its own customer
    for who, mid in ((erin, "x1"), (dan, "x2")):
        await who.send(chat(conv, mid, "let me in"))
        err = await who.expect(message(id=mid, type="error"))
        assert err.frm == conv and err.error_condition == "forbidden", err.xml
    await dan.expect_nothing(message(id="x1"), what="erin's message")
    await none_of(team, message(id="x1") | message(id="x2"), what="a non-agent's message")

    # the commands and the IQs
    qid = erin.new_id("cmd")
    assert_error(await erin.request(command_execute(qid, "desk"), qid), "forbidden")
    qid = erin.new_id("cmd")
    assert_error(await erin.request(command_execute(qid, "done", to=conv), qid), "forbidden")
    assert_error(await ask(erin, desk_view, DESK, "all"), "forbidden")
    assert_error(await ask(erin, desk_assign, DESK, dan.jid, erin.jid), "forbidden")
    assert_error(await ask(dan, desk_action, "done", DESK, dan.jid), "forbidden")
    assert_error(await ask(erin, desk_history, DESK, dan.jid), "forbidden")
    assert (await view(alice, "all")).row(dan)["state"] == "open"

    # an agent writing where no customer ever wrote (§4.3)
    await alice.send(chat(conv_of(erin), "a1", "hello?"))
    err = await alice.expect(message(id="a1", type="error"))
    assert err.frm == conv_of(erin) and err.error_condition == "item-not-found", err.xml
    await erin.expect_nothing(message(id="a1"), what="a message into a conversation that does not exist")


async def test_two_desks_keep_their_customers_and_agents_apart(world):
    sales = "sales"
    sales_jid = f"{sales}@{COMPONENT}"
    world.use_tidemark(Tidemark(world, f"desks{world.test_no}",
                                extra=desk_toml(world, ("alice", "bob")) + desk_toml(world, ("alice", "carol"),
                                                                                     name=sales)))
    alice, bob, carol = await world.clients("alice", "bob", "carol")
    await accept_desk(alice)
    await accept_desk(alice, sales_jid)
    await accept_desk(bob)
    await accept_desk(carol, sales_jid)
    dan = await world.client("dan")
    conv = desk_conversation(sales, dan.jid)

    # dan writes to sales: its agents get it from sales' own conversation address
    await dan.send(chat(sales_jid, "s1", "a quote, please"))
    for a in (alice, carol):
        got = await a.expect(message(frm=conv, id="s1", type="chat"))
        assert got.body == "a quote, please", got.xml
    await bob.expect_nothing(message(id="s1"), what="a message to a desk he is no agent of")
    await agent_writes_to(carol, conv, dan, sales_jid, "c1")

    # bob, an agent of support only, may not write into it nor list it
    await bob.send(chat(conv, "x1", "me too"))
    err = await bob.expect(message(id="x1", type="error"))
    assert err.error_condition == "forbidden", err.xml
    qid = bob.new_id("desk")
    assert_error(await bob.request(desk_view(qid, sales, "all"), qid), "forbidden")

    # §5.1: an agent of several desks chooses one; an agent of one is not asked
    qid = alice.new_id("cmd")
    first = await alice.request(command_execute(qid, "desk"), qid)
    assert {v for _, v in options_of(fields_of(first)["desk"])} == {DESK, sales}, first.xml
    qid = bob.new_id("cmd")
    assert "desk" not in fields_of(await bob.request(command_execute(qid, "desk"), qid))
    replies = await run_command(alice, "desk", {"desk": sales, "view": "all"})
    assert [r.get("jid") for r in desk_rows(replies[-1])] == [conv], replies[-1].xml
    assert (await view(alice, "all")).rows == [], "support has no conversation"


# --- 11. kill -9 --------------------------------------------------------------------

async def test_assignment_state_events_and_counts_survive_kill_9(world):
    team, (dan, erin) = await desk_world(world, customers=("dan", "erin"))
    alice, bob, carol = team
    await customer_writes(dan, "d1", team)
    await customer_writes(erin, "e1", team)
    await assign(alice, dan, bob.jid)
    await expect_event(bob, dan, "assigned", by=alice.jid, to=bob.jid)
    await act(bob, "pending", dan)
    await expect_event(bob, dan, "pending", by=bob.jid)
    await assign(carol, erin)
    await act(carol, "done", erin)
    await expect_event(carol, erin, "done", by=carol.jid)

    async def snapshot():
        views = {(a.name, v): await view(a, v) for a in team for v in VIEWS}
        return ({k: (v.counts, v.rows) for k, v in views.items()},
                await history(alice, dan), await history(alice, erin))

    before = await snapshot()
    world.tidemark.kill9()
    world.tidemark.start()
    await world.wait_ready(alice, timeout=30)
    after = await snapshot()
    assert after[0] == before[0], f"views before {before[0]}\nafter {after[0]}"
    assert after[1:] == before[1:], f"history before {before[1:]}\nafter {after[1:]}"
    assert before[0][("bob", "mine")][0]["mine"] == (1, 1), before[0][("bob", "mine")]
    assert [e.get("kind") for e in before[1]] == ["opened", "assigned", "pending"], before[1]

    # dan's conversation is still bob's: his next message goes to bob alone
    await customer_writes(dan, "d2", (bob,), timeout=AFTER_RESTART)
    await none_of((alice, carol), message(frm=conv_of(dan), id="d2"), what="d2, for bob alone")
    # erin's is still done: her message reopens it, to carol
    await customer_writes(erin, "e2", (carol,), timeout=AFTER_RESTART)
    await expect_event(carol, erin, "reopened", by="customer")
    # the desk asked each agent once, not again after the restart (§4.1)
    await none_of(team, presence(frm=DESK_JID, type="subscribe"), what="a second subscription request")


# --- 12. the config check ---------------------------------------------------------------

DESK_SECTION = '[[desks]]\nname = "support"\nagents = ["alice@localhost"]\n'


def test_a_desk_config_passes_the_check(world):
    # tidemark gets past the config check and connects; the wrong secret stops it (3)
    cfg = tidemark_toml(storage="db", secret="not-the-secret",
                        extra=DESK_SECTION + '\n[[desks.predefined]]\ntitle = "Hi"\ntext = "Hello"\n')
    status, out = world.run_tidemark_once(cfg, timeout=20)
    assert status == 3, out


def test_the_config_check_refuses_a_desk_and_a_room_of_one_name(world):
    room = '\n[[rooms]]\nname = "support"\nmembers = ["alice@localhost"]\n'
    status, out = world.run_tidemark_once(tidemark_toml(storage="db", extra=DESK_SECTION + room))
    assert status == 2, out
    assert "support" in out and "room" in out.lower(), out


def test_the_config_check_says_which_desk_rule_is_broken(world):
    broken = {
        "agents": '[[desks]]\nname = "support"\nagents = []\n',
        "name": '[[desks]]\nname = "sup port"\nagents = ["alice@localhost"]\n',
        "text": DESK_SECTION + '\n[[desks.predefined]]\ntitle = "Hi"\n',
        "title": DESK_SECTION + '\n[[desks.predefined]]\ntext = "Hello"\n',
    }
    for key, extra in broken.items():
        status, out = world.run_tidemark_once(tidemark_toml(storage="db", extra=extra))
        assert status == 2, f"{key}: {out}"
        assert key in out, f"the error does not name {key!r}: {out}"
