"""An XMPP client for tests and the demo: slixmpp underneath, raw XML on top.

send(xml) puts raw XML on the wire; expect(pred) takes the first received
stanza (not yet taken) that matches a predicate from match.py, waiting a
bounded time. Used by tests/integration/conftest.py and scripts/demo.py.
"""

import asyncio
import itertools
import os
import ssl
from dataclasses import dataclass, field

import slixmpp

from match import Stanza, iq, message, stanza_ids, subject
from stanzas import NS_STATUS, groupchat, muc_join, status_query, subscribe, tracked

TIMEOUT = float(os.environ.get("TIDEMARK_TEST_TIMEOUT", "5"))
ABSENCE = 1.0  # how long "nothing arrives" is watched for


@dataclass
class Joined:
    """What a room sent a joining client, in order (XEP-0045 §7.2): the other
    occupants' presences, the joiner's own presence, history, the subject."""
    room: str
    nick: str
    occupants: dict  # nick -> presence from room/nick, before the self-presence
    self_presence: Stanza
    history: list  # groupchat messages between the self-presence and the subject
    subject: Stanza
    sequence: list  # every stanza from the room, in arrival order


# --- clients ----------------------------------------------------------------

@dataclass
class Recipient:
    jid: str
    state: str
    sent: str | None = None
    delivered: str | None = None
    read: str | None = None
    failed: str | None = None
    reason_condition: str | None = None
    reason_text: str | None = None


@dataclass
class Status:
    """A reply to a urn:tidemark:status:0 query: a status, or .error set."""
    reply: Stanza
    error: str | None = None
    summary: str | None = None
    conversation: str | None = None
    id: str | None = None
    recipients: dict = field(default_factory=dict)
    read: int | None = None  # how many recipients have read it (groups)
    recipient_count: int | None = None  # how many it was sent to (groups)
    all_read: str | None = None  # when the last recipient read it (groups)

    def __getitem__(self, jid) -> Recipient:
        return self.recipients[jid]


def _no_verify_context():
    # certs/ holds a self-signed development certificate: do not verify it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client:
    """A slixmpp client that keeps every stanza it receives in order.

    send(xml) puts raw XML on the wire; expect(pred) takes the first received
    stanza (not yet taken) that matches, waiting up to TIMEOUT.
    """

    _ids = itertools.count(1)

    def __init__(self, name, user, password, resource, port=5222, note=print, domain="localhost",
                 host="127.0.0.1"):
        self.note = note  # where the transcript goes
        self.host = host  # another loopback address reaches a cluster's second node
        self.port = port
        self.name = name
        self.user = user
        self.jid = f"{user}@{domain}"
        self.resource = resource
        self.full = f"{self.jid}/{resource}"
        self.tracked = tracked(self.jid)  # user\40localhost@chat.localhost
        self.tracked_full = f"{self.tracked}/{resource}"
        self.received: list[Stanza] = []  # not yet taken by expect()
        self.history: list[Stanza] = []  # everything, for failure reports
        self._arrived = asyncio.Event()
        self.xmpp = slixmpp.ClientXMPP(self.full, password)
        self.xmpp.ssl_context = _no_verify_context()
        # Prosody offers STARTTLS on the c2s port (no direct TLS port here).
        self.xmpp.enable_direct_tls = False
        self.xmpp.enable_starttls = True
        self.xmpp.enable_plaintext = False
        self.xmpp.register_plugin("xep_0030")  # answer disco like any client
        # Subscriptions are the tests' business: neither approve nor refuse.
        self.xmpp.roster.auto_authorize = None
        self.xmpp.roster.auto_subscribe = False
        self.xmpp.add_filter("in", self._incoming)
        self._session = asyncio.get_running_loop().create_future()
        self.xmpp.add_event_handler("session_start", self._started)
        self.xmpp.add_event_handler("failed_auth", self._failed)
        self.xmpp.add_event_handler("connection_failed", self._failed)

    def __repr__(self):
        return f"<{self.name} {self.full}>"

    def _started(self, _):
        if not self._session.done():
            self._session.set_result(True)

    def _failed(self, what):
        if not self._session.done():
            self._session.set_exception(RuntimeError(f"{self.full}: login failed: {what}"))

    def _incoming(self, stanza):
        st = Stanza(stanza.xml, str(stanza))
        if st.kind not in ("message", "presence", "iq"):
            return stanza  # stream features, SASL, TLS: slixmpp's business
        self.note(f"{self.name} <- {st.xml}")
        self.received.append(st)
        self.history.append(st)
        self._arrived.set()
        return stanza

    async def connect(self, available=True, priority=None):
        self.xmpp.connect(self.host, self.port)
        try:
            await asyncio.wait_for(self._session, TIMEOUT * 2)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.full} could not log in within {TIMEOUT * 2}s") from None
        await self.xmpp.get_roster(timeout=TIMEOUT)
        if available:
            await self.send("<presence/>" if priority is None else
                            f"<presence><priority>{priority}</priority></presence>")
        return self

    async def send(self, xml: str):
        self.note(f"{self.name} -> {xml}")
        self.xmpp.send_raw(xml)
        await asyncio.sleep(0)

    async def expect(self, pred, timeout=None, what=None) -> Stanza:
        timeout = TIMEOUT if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for i, st in enumerate(self.received):
                if pred(st):
                    del self.received[i]
                    return st
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                seen = "\n    ".join(s.xml for s in self.received[-15:]) or "(nothing)"
                raise AssertionError(
                    f"{self.name} ({self.full}) did not receive {what or pred} within {timeout}s;"
                    f" received and not yet taken:\n    {seen}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def expect_nothing(self, pred, within=ABSENCE, what=None):
        """Assert no stanza matching pred arrives (or has arrived) within `within` seconds."""
        await asyncio.sleep(within)
        bad = [s for s in self.received if pred(s)]
        assert not bad, f"{self.name} ({self.full}) received {what or pred}, which it must not:\n    " + \
            "\n    ".join(s.xml for s in bad)

    def roster_subscription(self, jid):
        """The subscription state of jid in the roster fetched at login, or None."""
        for st in self.history:
            if st.kind == "iq" and st.type == "result":
                q = st.el.find("{jabber:iq:roster}query")
                if q is not None:
                    for item in q.findall("{jabber:iq:roster}item"):
                        if item.get("jid") == jid:
                            return item.get("subscription")
        return None

    def new_id(self, prefix="q"):
        return f"{prefix}{next(self._ids)}"

    async def request(self, xml: str, id: str, timeout=None) -> Stanza:
        """Send an iq whose id is `id` and return its result or error."""
        await self.send(xml)
        return await self.expect(iq(id=id, where=lambda s: s.type in ("result", "error")), timeout,
                                 what=f"an iq result or error with id {id!r}")

    async def status(self, conversation, msg_id, timeout=None) -> Status:
        qid = self.new_id("status")
        reply = await self.request(status_query(qid, conversation, msg_id), qid, timeout)
        return parse_status(reply)

    async def join(self, room, nick, timeout=None) -> Joined:
        """Enter a room and take everything the room sends up to its subject."""
        start = len(self.history)
        await self.send(muc_join(room, nick))
        subj = await self.expect(subject(room) | _presence_error(f"{room}/{nick}"), timeout,
                                 what=f"the subject of {room} (end of the join) or a presence error")
        if subj.kind == "presence":
            raise AssertionError(f"{self.name} could not join {room} as {nick}: {subj.xml}")
        end = next(i for i in range(len(self.history) - 1, start - 1, -1) if self.history[i] is subj)
        seq = [s for s in self.history[start:end] if (s.frm or "").startswith(f"{room}/")]
        own = f"{room}/{nick}"
        selfp = [s for s in seq if s.kind == "presence" and s.frm == own]
        assert len(selfp) == 1, f"{self.name}: expected one self-presence from {own}, got {selfp}"
        i_self = seq.index(selfp[0])
        occupants = {s.frm.split("/", 1)[1]: s for s in seq[:i_self] if s.kind == "presence"}
        history = [s for s in seq[i_self + 1:] if s.kind == "message"]
        taken = {id(s) for s in seq}
        self.received = [s for s in self.received if id(s) not in taken]
        return Joined(room, nick, occupants, selfp[0], history, subj, seq + [subj])

    async def join_refused(self, room, nick, timeout=None) -> Stanza:
        """Try to enter a room and return the presence error it answers with."""
        await self.send(muc_join(room, nick))
        return await self.expect(_presence_error(f"{room}/{nick}") | subject(room), timeout,
                                 what=f"a presence error from {room}/{nick}")

    async def say(self, room, nick, id, body=None, extra="") -> Stanza:
        """Send a groupchat message and return the room's reflection of it to us."""
        await self.send(groupchat(room, id, body or f"text {id}", extra))
        return await self.expect(message(frm=f"{room}/{nick}", id=id, type="groupchat"),
                                 what=f"the reflection of {id!r} from {room}/{nick}")

    async def subscribe_to(self, other: "Client"):
        await self.send(subscribe(other.tracked))

    async def disconnect(self):
        """Close the stream cleanly (Prosody then sends unavailable presence)."""
        if not self.xmpp.transport:
            return
        self.note(f"{self.name} disconnects")
        try:
            await asyncio.wait_for(self.xmpp.disconnect(wait=1), TIMEOUT)
        except (asyncio.TimeoutError, Exception):
            self.xmpp.abort()

    def abort(self):
        try:
            self.xmpp.abort()
        except Exception:
            pass


def parse_status(reply: Stanza) -> Status:
    if reply.type == "error":
        return Status(reply=reply, error=reply.error_condition or "(no condition)")
    el = reply.child(NS_STATUS, "status")
    assert el is not None, f"status result without <status xmlns='{NS_STATUS}'/>: {reply.xml}"
    st = Status(reply=reply, summary=el.get("summary"), conversation=el.get("conversation"), id=el.get("id"),
                read=None if el.get("read") is None else int(el.get("read")),
                recipient_count=None if el.get("recipients") is None else int(el.get("recipients")),
                all_read=el.get("all-read"))
    for r in el.findall(f"{{{NS_STATUS}}}recipient"):
        reason = r.find(f"{{{NS_STATUS}}}reason")
        st.recipients[r.get("jid")] = Recipient(
            jid=r.get("jid"), state=r.get("state"), sent=r.get("sent"), delivered=r.get("delivered"),
            read=r.get("read"), failed=r.get("failed"),
            reason_condition=None if reason is None else reason.get("condition"),
            reason_text=None if reason is None else (reason.text or ""))
    return st




def _presence_error(frm):
    from match import presence
    return presence(frm=frm, type="error")


def room_stanza_id(st: Stanza, room: str) -> str:
    ids = stanza_ids(st, by=room)
    assert len(ids) == 1, f"expected one stanza-id by {room}: {st.xml}"
    return ids[0]
