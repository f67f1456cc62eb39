#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus (tests/fuzz/corpus/*.xml), one stanza a file:
the XML examples of xep/*.md, the stanzas the socket-free tests hand the router
(tests/rules.rs, tests/groups.rs, their format! placeholders filled with the
tests' own addresses), and the stanzas the integration tests send, as Prosody
would hand them to the component (with from, to and the component namespace).

    python3 tests/fuzz/extract_corpus.py       # rewrites the corpus
"""

import hashlib
import re
import sys
import xml.etree.ElementTree as ET
from xml.parsers import expat
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fuzz" / "corpus"
sys.path.insert(0, str(REPO / "tests" / "integration"))

WRAP = ("<stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams'>{}</stream:stream>")

# What the Rust tests' format! placeholders stand for.
PLACEHOLDERS = {
    "ALICE_T": r"alice\40localhost@chat.localhost", "BOB_T": r"bob\40localhost@chat.localhost",
    "CAROL_T": r"carol\40localhost@chat.localhost", "NS": "jabber:component:accept",
    "tracked": r"alice\40localhost@chat.localhost", "contact": "bob", "watcher": "alice",
    "room": "team@chat.localhost", "ROOM": "team@chat.localhost", "asker": "alice@localhost/res",
    "conversation": r"bob\40localhost@chat.localhost", "id": "m1", "sid": "1-1", "who": "bob",
    "from": "bob@localhost/res", "to": r"alice\40localhost@chat.localhost", "nick": "bob",
}


def top_level(xml):
    """The top-level stanzas of an XML fragment as written, or [] when it is not
    well-formed."""
    doc = WRAP.format(xml).encode()
    try:
        ET.fromstring(doc)
    except ET.ParseError:
        return []
    spans, depth, start = [], 0, None
    p = expat.ParserCreate()

    def on_start(*_):
        nonlocal depth, start
        depth += 1
        if depth == 2:
            start = p.CurrentByteIndex

    def on_end(*_):
        nonlocal depth
        if depth == 2:
            # the end tag starts here; find its '>' (an empty element ends at once)
            end = doc.index(b">", p.CurrentByteIndex) + 1
            spans.append((start, end))
        depth -= 1

    p.StartElementHandler, p.EndElementHandler = on_start, on_end
    p.Parse(doc, True)
    return [doc[a:b].decode() for a, b in spans]


def from_xeps():
    for md in sorted((REPO / "xep").glob("*.md")):
        for block in md.read_text().split("```xml")[1:]:
            yield from top_level(block.split("```")[0].strip())


def rust_literals(path):
    src = path.read_text()
    for m in re.finditer(r'"((?:[^"\\]|\\.|\\\n)*)"', src):
        lit = m.group(1)
        if not re.search(r"<(message|presence|iq)\b", lit):
            continue
        lit = re.sub(r"\\\n\s*", "", lit).replace('\\"', '"').replace("\\\\", "\\")
        lit = re.sub(r"\{(\w+)\}", lambda k: PLACEHOLDERS.get(k.group(1), "x"), lit)
        lit = lit.replace("{{", "{").replace("}}", "}")
        yield from top_level(lit)


def from_integration():
    import stanzas as s
    alice, bob = "alice@localhost/res", "bob@localhost/res"
    bob_t, alice_t = s.tracked("bob@localhost"), s.tracked("alice@localhost")
    room = "team@chat.localhost"

    def frm(xml, who=alice):
        return re.sub(r"^<(\w+)", lambda m: f"<{m.group(1)} from='{who}'", xml, count=1)

    out = [s.chat(bob_t, "m1"), s.receipt(alice_t, "m1"), s.marker("displayed", alice_t, "m1"),
           s.marker("received", alice_t, "m1"), s.presence(to=bob_t, show="away", status="lunch"),
           s.subscribe(bob_t), s.subscribed(bob_t), s.presence("unavailable", bob_t), s.presence("probe", bob_t),
           s.muc_join(room, "alice"), s.muc_leave(room, "alice"), s.groupchat(room, "g1"),
           s.group_displayed(room, "1-1"), s.disco_info("q1"), s.disco_items("q2"),
           s.disco_items("q3", node="http://jabber.org/protocol/commands"),
           s.command_execute("q4", "urn:tidemark:read-receipts"),
           s.command_submit("q5", "urn:tidemark:read-receipts", "s1", {"enabled": "false"}),
           s.gateway_get("q6"), s.gateway_set("q7", "bob@localhost"), s.status_query("q8", bob_t, "m1"),
           s.status_query("q9", room, "g1")]
    out += list(s.malformed_examples(bob_t).values())
    for xml in out:
        yield from top_level(frm(xml, bob if "received" in xml or "displayed" in xml else alice))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.xml"):
        old.unlink()
    seen = set()
    sources = [("xep", from_xeps()), ("rules", rust_literals(REPO / "tests" / "rules.rs")),
               ("groups", rust_literals(REPO / "tests" / "groups.rs")), ("it", from_integration())]
    for name, items in sources:
        n = 0
        for xml in items:
            if xml in seen:
                continue
            seen.add(xml)
            digest = hashlib.sha1(xml.encode()).hexdigest()[:10]
            (OUT / f"{name}-{digest}.xml").write_text(xml)
            n += 1
        print(f"{name}: {n} stanzas")


if __name__ == "__main__":
    main()
