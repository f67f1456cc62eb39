"""Stanzas the integration tests send, written out as XML.

Each function returns the XML a client puts on the wire, so a test reads like a
protocol transcript. The examples follow DESIGN.md and the XEPs cited beside
them; the component answers at COMPONENT (chat.localhost in tests).
"""

from xml.sax.saxutils import escape, quoteattr

COMPONENT = "chat.localhost"

NS_CLIENT = "jabber:client"
NS_RECEIPTS = "urn:xmpp:receipts"  # XEP-0184
NS_MARKERS = "urn:xmpp:chat-markers:0"  # XEP-0333
NS_STATUS = "urn:tidemark:status:0"  # xep/status.md
NS_GATEWAY = "jabber:iq:gateway"  # XEP-0100
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"  # XEP-0030
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"  # RFC 6120 §8.3


def tracked(bare_jid: str, component: str = COMPONENT) -> str:
    """A user's tracked address: the XEP-0106-escaped bare JID as the node.

    bob@localhost -> bob\\40localhost@chat.localhost
    """
    escapes = {" ": r"\20", '"': r"\22", "&": r"\26", "'": r"\27", "/": r"\2f",
               ":": r"\3a", "<": r"\3c", ">": r"\3e", "@": r"\40", "\\": r"\5c"}
    node = "".join(escapes.get(c, c) for c in bare_jid)
    return f"{node}@{component}"


def _attrs(**attrs) -> str:
    return "".join(f" {k.rstrip('_')}={quoteattr(str(v))}" for k, v in attrs.items() if v is not None)


# --- messages -------------------------------------------------------------

def chat(to, id, body="hello", request=True, markable=True, extra=""):
    """A 1:1 chat message asking for a XEP-0184 receipt and XEP-0333 markers."""
    req = f"<request xmlns='{NS_RECEIPTS}'/>" if request else ""
    mark = f"<markable xmlns='{NS_MARKERS}'/>" if markable else ""
    body_xml = f"<body>{escape(body)}</body>" if body is not None else ""
    return f"<message type='chat'{_attrs(to=to, id=id)}>{body_xml}{req}{mark}{extra}</message>"


def receipt(to, id, msg_id=None):
    """XEP-0184 §4: <received/> naming the acknowledged message's id."""
    return (f"<message{_attrs(to=to, id=msg_id)}>"
            f"<received xmlns='{NS_RECEIPTS}'{_attrs(id=id)}/></message>")


def marker(kind, to, id, msg_id=None):
    """XEP-0333 marker: displayed (1.0), or received/acknowledged (older clients)."""
    return (f"<message type='chat'{_attrs(to=to, id=msg_id)}>"
            f"<{kind} xmlns='{NS_MARKERS}'{_attrs(id=id)}/></message>")


# --- presence -------------------------------------------------------------

def presence(type=None, to=None, show=None, status=None):
    inner = ""
    if show:
        inner += f"<show>{escape(show)}</show>"
    if status:
        inner += f"<status>{escape(status)}</status>"
    return f"<presence{_attrs(type=type, to=to)}>{inner}</presence>" if inner \
        else f"<presence{_attrs(type=type, to=to)}/>"


def subscribe(to):
    return presence("subscribe", to)


def subscribed(to):
    return presence("subscribed", to)


# --- iqs ------------------------------------------------------------------

def disco_info(id, to=COMPONENT):
    return f"<iq type='get'{_attrs(to=to, id=id)}><query xmlns='{NS_DISCO_INFO}'/></iq>"


def gateway_get(id, to=COMPONENT):
    """XEP-0100 §6.3.1: ask the gateway how to form an address."""
    return f"<iq type='get'{_attrs(to=to, id=id)}><query xmlns='{NS_GATEWAY}'/></iq>"


def gateway_set(id, prompt, to=COMPONENT):
    """XEP-0100 §6.3.2: turn a legacy address (a bare JID) into a tracked address."""
    return (f"<iq type='set'{_attrs(to=to, id=id)}><query xmlns='{NS_GATEWAY}'>"
            f"<prompt>{escape(prompt)}</prompt></query></iq>")


def status_query(id, conversation=None, msg_id=None, to=COMPONENT):
    """urn:tidemark:status:0: a message's per-recipient status."""
    return (f"<iq type='get'{_attrs(to=to, id=id)}>"
            f"<status xmlns='{NS_STATUS}'{_attrs(conversation=conversation, id=msg_id)}/></iq>")


# Raw input that a component must survive (DESIGN.md, known traps): tidemark
# answers with an error where the protocol wants one, or drops it, and keeps going.
def malformed_examples(to_tracked):
    return {
        "iq get without a child": f"<iq type='get' to='{COMPONENT}' id='bad-nochild-get'/>",
        "iq set without a child": f"<iq type='set' to='{COMPONENT}' id='bad-nochild-set'/>",
        "iq get with an unknown namespace":
            f"<iq type='get' to='{COMPONENT}' id='bad-unknown-ns'><query xmlns='urn:example:nothing'/></iq>",
        "iq to a tracked address without a child": f"<iq type='get' to='{to_tracked}' id='bad-tracked'/>",
        "iq result nobody asked for": f"<iq type='result' to='{COMPONENT}' id='bad-unsolicited'/>",
        "presence with an invalid show": f"<presence to='{to_tracked}'><show>dancing</show></presence>",
        "presence with an unknown type": f"<presence to='{to_tracked}' type='sideways'/>",
        "message with an unknown type": f"<message to='{to_tracked}' type='shouting' id='bad-type'><body>x</body></message>",
        "message to the component domain": f"<message to='{COMPONENT}' type='chat' id='bad-domain'><body>x</body></message>",
        "message error nobody expected":
            f"<message to='{to_tracked}' type='error' id='bad-error'><error type='cancel'>"
            f"<item-not-found xmlns='{NS_STANZAS}'/></error></message>",
        "receipt without an id": f"<message to='{to_tracked}'><received xmlns='{NS_RECEIPTS}'/></message>",
        "displayed without an id": f"<message to='{to_tracked}'><displayed xmlns='{NS_MARKERS}'/></message>",
        "status query with an empty id":
            f"<iq type='get' to='{COMPONENT}' id='bad-empty'><status xmlns='{NS_STATUS}' conversation='' id=''/></iq>",
        "status query naming an invalid JID":
            f"<iq type='get' to='{COMPONENT}' id='bad-jid'><status xmlns='{NS_STATUS}' conversation='@@@' id='m1'/></iq>",
        "gateway set with an empty prompt":
            f"<iq type='set' to='{COMPONENT}' id='bad-prompt'><query xmlns='{NS_GATEWAY}'><prompt/></query></iq>",
    }
