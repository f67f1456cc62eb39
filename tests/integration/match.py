"""What a test expects to receive: small predicates over received stanzas.

    await bob.expect(message(frm=alice_tm, id="m1", has=RECEIPT_REQUEST))
    await alice.expect(presence(frm=bob_tm, type="subscribed"))

Each predicate prints as what it looks for, so a timeout names what was missing.
"""

import xml.etree.ElementTree as ET

from stanzas import (NS_CLIENT, NS_DELAY, NS_DESK, NS_MARKERS, NS_MUC_USER, NS_OCCUPANT_ID, NS_RECEIPTS,
                      NS_SID, NS_STANZAS, NS_STATUS)

# (namespace, element) pairs for has=
RECEIPT_REQUEST = (NS_RECEIPTS, "request")
RECEIPT = (NS_RECEIPTS, "received")
MARKABLE = (NS_MARKERS, "markable")
MARKER_RECEIVED = (NS_MARKERS, "received")
MARKER_DISPLAYED = (NS_MARKERS, "displayed")
MARKER_ACKNOWLEDGED = (NS_MARKERS, "acknowledged")
STANZA_ID = (NS_SID, "stanza-id")
OCCUPANT_ID = (NS_OCCUPANT_ID, "occupant-id")
DELAY = (NS_DELAY, "delay")
MUC_USER = (NS_MUC_USER, "x")
ALL_READ = (NS_STATUS, "all-read")


class Stanza:
    """A received stanza: its element plus the questions tests ask of it."""

    def __init__(self, element: ET.Element, raw: str | None = None):
        self.el = element
        self.raw = raw  # as slixmpp printed it, with the stream's namespaces

    @property
    def kind(self):
        return self.el.tag.split("}")[-1]

    def get(self, attr, default=None):
        return self.el.get(attr, default)

    @property
    def frm(self):
        return self.el.get("from")

    @property
    def to(self):
        return self.el.get("to")

    @property
    def id(self):
        return self.el.get("id")

    @property
    def type(self):
        return self.el.get("type")

    def child(self, ns, name):
        return self.el.find(f"{{{ns}}}{name}")

    def has(self, ns, name):
        return self.child(ns, name) is not None

    @property
    def body(self):
        b = self.el.find(f"{{{NS_CLIENT}}}body")
        return None if b is None else (b.text or "")

    @property
    def error(self):
        return self.el.find(f"{{{NS_CLIENT}}}error")

    @property
    def error_type(self):
        return None if self.error is None else self.error.get("type")

    @property
    def error_condition(self):
        if self.error is None:
            return None
        for c in self.error:
            if c.tag.startswith(f"{{{NS_STANZAS}}}") and not c.tag.endswith("}text"):
                return c.tag.split("}")[-1]
        return None

    @property
    def error_text(self):
        if self.error is None:
            return None
        t = self.error.find(f"{{{NS_STANZAS}}}text")
        return None if t is None else (t.text or "")

    @property
    def xml(self):
        return self.raw or ET.tostring(self.el, encoding="unicode")

    def __repr__(self):
        return self.xml


class Pred:
    def __init__(self, fn, desc):
        self.fn, self.desc = fn, desc

    def __call__(self, st: Stanza) -> bool:
        try:
            return bool(self.fn(st))
        except Exception:  # a predicate that cannot decide does not match
            return False

    def __and__(self, other):
        return Pred(lambda s: self(s) and other(s), f"{self.desc} and {other.desc}")

    def __or__(self, other):
        return Pred(lambda s: self(s) or other(s), f"{self.desc} or {other.desc}")

    def __repr__(self):
        return self.desc


def _has_all(st, has):
    if has is None:
        return True
    if isinstance(has, tuple):
        has = [has]
    return all(st.has(ns, name) for ns, name in has)


def stanza(kind, frm=None, id=None, type=None, has=None, where=None, **attrs):
    """A stanza of this kind whose attributes are as given (None: any value).

    frm="x@y" matches exactly; frm="x@y/*" matches x@y with any resource.
    type=False matches a stanza without a type attribute.
    """
    def fn(st):
        if st.kind != kind:
            return False
        if frm is not None:
            if frm.endswith("/*"):
                if not (st.frm or "").startswith(frm[:-1]):
                    return False
            elif st.frm != frm:
                return False
        if id is not None and st.id != id:
            return False
        if type is False and st.type is not None:
            return False
        if type not in (None, False) and st.type != type:
            return False
        for k, v in attrs.items():
            if st.get(k.rstrip("_")) != v:
                return False
        if not _has_all(st, has):
            return False
        return where is None or where(st)

    shown = {"from": frm, "id": id, "type": type, "has": has, **attrs}
    desc = f"<{kind} " + " ".join(f"{k}={v!r}" for k, v in shown.items() if v is not None) + ">"
    if where is not None:
        desc += " where " + getattr(where, "__name__", "…")
    return Pred(fn, desc)


def message(frm=None, id=None, type=None, has=None, where=None, **attrs):
    return stanza("message", frm, id, type, has, where, **attrs)


def presence(frm=None, type=None, where=None, **attrs):
    return stanza("presence", frm, None, type, None, where, **attrs)


def iq(id=None, type=None, frm=None, where=None):
    return stanza("iq", frm, id, type, None, where)


def receipt_for(msg_id, frm=None):
    """XEP-0184 <received id=msg_id/>."""
    return Pred(lambda s: s.kind == "message" and s.has(*RECEIPT) and s.child(*RECEIPT).get("id") == msg_id
                and (frm is None or s.frm == frm),
                f"XEP-0184 receipt for {msg_id!r}" + (f" from {frm!r}" if frm else ""))


def marker_for(kind, msg_id, frm=None):
    """XEP-0333 <kind id=msg_id/> (kind: received, displayed, acknowledged)."""
    return Pred(lambda s: s.kind == "message" and s.has(NS_MARKERS, kind)
                and s.child(NS_MARKERS, kind).get("id") == msg_id and (frm is None or s.frm == frm),
                f"XEP-0333 {kind} marker for {msg_id!r}" + (f" from {frm!r}" if frm else ""))


def any_mention_of(msg_id):
    """Any message that relays, acknowledges or marks msg_id."""
    def fn(s):
        if s.kind != "message":
            return False
        if s.id == msg_id:
            return True
        return any(c.get("id") == msg_id for c in s.el
                   if c.tag.startswith(f"{{{NS_RECEIPTS}}}") or c.tag.startswith(f"{{{NS_MARKERS}}}"))
    return Pred(fn, f"any message about {msg_id!r}")


# --- group conversations ------------------------------------------------------

def stanza_ids(st: Stanza, by=None):
    """The XEP-0359 stanza-ids of a message (those `by` a given JID, if given)."""
    return [e.get("id") for e in st.el.findall(f"{{{NS_SID}}}stanza-id") if by is None or e.get("by") == by]


def occupant_id(st: Stanza):
    e = st.child(*OCCUPANT_ID)
    return None if e is None else e.get("id")


def muc_item(st: Stanza):
    """The attributes of <x xmlns='muc#user'><item/></x> in an occupant presence."""
    x = st.child(*MUC_USER)
    item = None if x is None else x.find(f"{{{NS_MUC_USER}}}item")
    return None if item is None else dict(item.attrib)


def status_codes(st: Stanza):
    x = st.child(*MUC_USER)
    return set() if x is None else {s.get("code") for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def subject(room):
    """XEP-0045 §7.2.15 and §8.1: a subject message (it ends a join), from an
    occupant JID of the room (tidemark never sends one from the bare room)."""
    return Pred(lambda s: s.kind == "message" and (s.frm or "").startswith(f"{room}/")
                and s.type == "groupchat" and s.body is None
                and s.child(NS_CLIENT, "subject") is not None, f"the subject of {room}")


def all_read(msg_id, room=None):
    """tidemark's all-read notice for the sender's message msg_id."""
    return Pred(lambda s: s.kind == "message" and s.type == "headline" and s.has(*ALL_READ)
                and s.child(*ALL_READ).get("id") == msg_id and (room is None or s.frm == room),
                f"all-read notice for {msg_id!r}" + (f" from {room!r}" if room else ""))


def any_all_read(room=None):
    return Pred(lambda s: s.kind == "message" and s.has(*ALL_READ) and (room is None or s.frm == room),
                "any all-read notice" + (f" from {room!r}" if room else ""))


def any_marker(room=None):
    """Any XEP-0333 marker (from the room, if given)."""
    return Pred(lambda s: s.kind == "message" and any(c.tag.startswith(f"{{{NS_MARKERS}}}") and
                                                       not c.tag.endswith("}markable") for c in s.el)
                and (room is None or (s.frm or "").startswith(room)),
                "any XEP-0333 marker" + (f" from {room!r}" if room else ""))


# --- team desks (xep/desk.md) -----------------------------------------------------

def desk_event(kind=None, frm=None, **attrs):
    """xep/desk.md §4.4: an event message (a chat message with <event/>) of this
    kind, from this conversation address, whose event attributes are as given
    (by_='...' for `by`)."""

    def fn(s):
        if s.kind != "message" or (frm is not None and s.frm != frm):
            return False
        ev = s.child(NS_DESK, "event")
        if ev is None or (kind is not None and ev.get("kind") != kind):
            return False
        return all(ev.get(k.rstrip("_")) == v for k, v in attrs.items())

    shown = " ".join(f"{k.rstrip('_')}={v!r}" for k, v in attrs.items())
    return Pred(fn, f"desk event {kind or 'of any kind'}" + (f" from {frm!r}" if frm else "")
                + (f" with {shown}" if shown else ""))


def desk_event_of(st: Stanza):
    """The attributes of a desk event message's <event/>, or None."""
    ev = st.child(NS_DESK, "event")
    return None if ev is None else dict(ev.attrib)
