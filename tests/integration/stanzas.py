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
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"  # XEP-0030
NS_MUC = "http://jabber.org/protocol/muc"  # XEP-0045
NS_MUC_USER = "http://jabber.org/protocol/muc#user"  # XEP-0045
NS_SID = "urn:xmpp:sid:0"  # XEP-0359
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"  # XEP-0421
NS_DELAY = "urn:xmpp:delay"  # XEP-0203
NS_COMMANDS = "http://jabber.org/protocol/commands"  # XEP-0050
NS_DATA = "jabber:x:data"  # XEP-0004
NS_INBOX = "urn:tidemark:inbox:0"  # xep/inbox.md
NS_RSM = "http://jabber.org/protocol/rsm"  # XEP-0059


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


# --- group conversations (XEP-0045 subset, at room@chat.localhost) --------

def muc_join(room, nick):
    """XEP-0045 §7.2.1: enter a room (the first join creates it)."""
    return f"<presence{_attrs(to=f'{room}/{nick}')}><x xmlns='{NS_MUC}'/></presence>"


def muc_leave(room, nick):
    """XEP-0045 §7.14: exit a room."""
    return f"<presence type='unavailable'{_attrs(to=f'{room}/{nick}')}/>"


def groupchat(room, id, body="hello", extra=""):
    """XEP-0045 §7.4: a message to all occupants."""
    body_xml = f"<body>{escape(body)}</body>" if body is not None else ""
    return f"<message type='groupchat'{_attrs(to=room, id=id)}>{body_xml}{extra}</message>"


def group_displayed(room, id, msg_id=None):
    """XEP-0333 in a group: displayed naming the room's stanza-id (or the sender's id)."""
    return (f"<message type='groupchat'{_attrs(to=room, id=msg_id)}>"
            f"<displayed xmlns='{NS_MARKERS}'{_attrs(id=id)}/></message>")


# --- iqs ------------------------------------------------------------------

def disco_info(id, to=COMPONENT):
    return f"<iq type='get'{_attrs(to=to, id=id)}><query xmlns='{NS_DISCO_INFO}'/></iq>"


def disco_items(id, to=COMPONENT, node=None):
    return f"<iq type='get'{_attrs(to=to, id=id)}><query xmlns='{NS_DISCO_ITEMS}'{_attrs(node=node)}/></iq>"


def command_execute(id, node, to=COMPONENT):
    """XEP-0050 §3.3: run an ad-hoc command."""
    return (f"<iq type='set'{_attrs(to=to, id=id)}>"
            f"<command xmlns='{NS_COMMANDS}'{_attrs(node=node)} action='execute'/></iq>")


def command_submit(id, node, sessionid, fields: dict, to=COMPONENT):
    """XEP-0050 §3.3 + XEP-0004: submit the command's form."""
    xml_fields = "".join(f"<field{_attrs(var=k)}><value>{escape(str(v))}</value></field>"
                         for k, v in fields.items())
    return (f"<iq type='set'{_attrs(to=to, id=id)}>"
            f"<command xmlns='{NS_COMMANDS}'{_attrs(node=node, sessionid=sessionid)}>"
            f"<x xmlns='{NS_DATA}' type='submit'>{xml_fields}</x></command></iq>")


def inbox_list(id, search=None, unread_only=None, max=None, after=None, user=None, to=COMPONENT):
    """urn:tidemark:inbox:0 §2.1: the conversation list, a XEP-0059 page of it."""
    rsm = ""
    if max is not None or after is not None:
        rsm = (f"<set xmlns='{NS_RSM}'>" + (f"<max>{max}</max>" if max is not None else "")
               + (f"<after>{escape(after)}</after>" if after is not None else "") + "</set>")
    return (f"<iq type='get'{_attrs(to=to, id=id)}>"
            f"<inbox xmlns='{NS_INBOX}'{_attrs(search=search, user=user)}"
            f"{_attrs(**{'unread-only': unread_only})}>{rsm}</inbox></iq>")


def inbox_mark_read(id, jid=None, to=COMPONENT):
    """urn:tidemark:inbox:0 §3: mark one conversation (or, without jid, all) read."""
    return f"<iq type='set'{_attrs(to=to, id=id)}><mark-read xmlns='{NS_INBOX}'{_attrs(jid=jid)}/></iq>"


def inbox_subscribe(id, on=True, to=COMPONENT):
    """urn:tidemark:inbox:0 §4: have updates pushed to this session (or stop them)."""
    name = "subscribe" if on else "unsubscribe"
    return f"<iq type='set'{_attrs(to=to, id=id)}><{name} xmlns='{NS_INBOX}'/></iq>"


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


# --- team desks (xep/desk.md) ---------------------------------------------

NS_DESK = "urn:tidemark:desk:0"  # xep/desk.md


def desk_conversation(desk, customer_bare_jid, component=COMPONENT):
    """xep/desk.md §3: the agents' address of a desk's conversation with a customer,
    the desk's name, an escaped '/' and the customer's escaped bare JID:
    support, dan@localhost -> support\\2fdan\\40localhost@chat.localhost"""
    return tracked(f"{desk}/{customer_bare_jid}", component)


def _rsm(max=None, after=None):
    if max is None and after is None:
        return ""
    return (f"<set xmlns='{NS_RSM}'>" + (f"<max>{max}</max>" if max is not None else "")
            + (f"<after>{escape(after)}</after>" if after is not None else "") + "</set>")


def desk_view(id, desk, name=None, search=None, max=None, after=None, to=COMPONENT):
    """xep/desk.md §6.1: one view of a desk (mine, unassigned, all, done) and every view's counts."""
    return (f"<iq type='get'{_attrs(to=to, id=id)}>"
            f"<view xmlns='{NS_DESK}'{_attrs(desk=desk, name=name, search=search)}>{_rsm(max, after)}</view></iq>")


def desk_assign(id, desk, customer, assignee=None, to=COMPONENT):
    """xep/desk.md §6.2: assign a conversation; assignee None: to the sender, '': to nobody."""
    return (f"<iq type='set'{_attrs(to=to, id=id)}>"
            f"<assign xmlns='{NS_DESK}'{_attrs(desk=desk, customer=customer)}{_attrs(to=assignee)}/></iq>")


def desk_action(id, action, desk, customer, until=None, to=COMPONENT):
    """xep/desk.md §6.2: <done/>, <pending/> or <snooze until=.../> on a conversation."""
    return (f"<iq type='set'{_attrs(to=to, id=id)}>"
            f"<{action} xmlns='{NS_DESK}'{_attrs(desk=desk, customer=customer, until=until)}/></iq>")


def desk_history(id, desk, customer, max=None, to=COMPONENT):
    """xep/desk.md §6.3: a conversation's events, oldest first."""
    return (f"<iq type='get'{_attrs(to=to, id=id)}>"
            f"<history xmlns='{NS_DESK}'{_attrs(desk=desk, customer=customer)}>{_rsm(max)}</history></iq>")
