//! Serialising the elements tidemark sends, without minidom's writer for
//! the plain ones.
//!
//! minidom writes an element item by item through rxml's encoder (a
//! namespace tracker, a name check and a scratch buffer per item), which cost
//! a tenth of handling a stanza. [`write_plain`] writes the same bytes
//! directly for what tidemark sends (stanzas parsed from the stream or built
//! here, in ordinary namespaces, with plain and `xml:` attributes), and
//! declines anything else (prefixes, other namespaced attributes, names or
//! text it would have to check harder), which then goes through minidom as
//! before. The tests compare both writers byte for byte.

use minidom::{Element, Node};

use crate::stanza::ns;

/// Namespaces tidemark sends, so that the common ones are written without
/// minidom's `Element::ns` (which copies the namespace into a new `String`
/// at each call).
const KNOWN: &[&str] = &[
    ns::COMPONENT,
    ns::RECEIPTS,
    ns::CHAT_MARKERS,
    ns::HINTS,
    ns::STANZAS,
    ns::STATUS,
    ns::DELAY,
    ns::SID,
    ns::OCCUPANT_ID,
    ns::MUC_USER,
    ns::OOB,
    "jabber:client",
    "http://jabber.org/protocol/chatstates",
];

/// Appends `el` to `out` as minidom's `Element::write_to` would, if it is
/// plain enough (see the module's doc); returns false otherwise, with `out`
/// possibly holding part of it (the caller truncates).
pub fn write_plain(el: &Element, out: &mut Vec<u8>) -> bool {
    write_element(el, None, out)
}

/// `parent_ns` is the default namespace in scope (None at the root, where
/// minidom's writer has none).
fn write_element(el: &Element, parent_ns: Option<&str>, out: &mut Vec<u8>) -> bool {
    let name = el.name();
    if !plain_name(name) {
        return false;
    }
    // Declared prefixes (a parsed element keeps its `xmlns`): only the
    // default one, for the element's own namespace, is taken; minidom
    // writes it again even where the parent has the same one.
    let mut declared = false;
    for (prefix, namespace) in el.prefixes.declared_prefixes() {
        if prefix.is_some() || !el.has_ns(namespace.as_str()) {
            return false;
        }
        declared = true;
    }
    let owned;
    let namespace = match parent_ns {
        Some(p) if !declared && el.has_ns(p) => None,
        _ => Some(match KNOWN.iter().find(|k| el.has_ns(**k)) {
            Some(k) => *k,
            None => {
                owned = el.ns();
                owned.as_str()
            }
        }),
    };
    if let Some(namespace) = namespace
        && namespace.is_empty()
    {
        // The empty namespace (undeclaring a default): left to minidom.
        return false;
    }
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    if let Some(namespace) = namespace {
        out.extend_from_slice(b" xmlns='");
        if !escape(namespace, true, out) {
            return false;
        }
        out.push(b'\'');
    }
    for ((attr_ns, attr), value) in el.attrs().iter() {
        out.push(b' ');
        if attr_ns == rxml::Namespace::xml() {
            out.extend_from_slice(b"xml:");
        } else if !attr_ns.is_none() {
            return false;
        }
        out.extend_from_slice(attr.as_str().as_bytes());
        out.extend_from_slice(b"='");
        if !escape(value, true, out) {
            return false;
        }
        out.push(b'\'');
    }
    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return true;
    }
    out.push(b'>');
    let scope = match namespace {
        Some(n) => n,
        None => parent_ns.unwrap_or_default(),
    };
    for node in nodes {
        let ok = match node {
            Node::Element(child) => write_element(child, Some(scope), out),
            Node::Text(text) => escape(text, false, out),
        };
        if !ok {
            return false;
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    true
}

/// An ASCII name that is an NCName (a letter or `_`, then letters, digits,
/// `.`, `-`, `_`); any other is left to minidom, which checks it fully.
fn plain_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// rxml's escaping: the same entities in the same places. Characters XML
/// does not allow (controls, U+FFFE, U+FFFF) make it decline: minidom then
/// refuses the element as it always did.
fn escape(text: &str, attribute: bool, out: &mut Vec<u8>) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let entity: &[u8] = match b {
            b'\x00'..=b'\x08' | b'\x0b' | b'\x0c' | b'\x0e'..=b'\x1f' => return false,
            b'"' if attribute => b"&#34;",
            b'\'' if attribute => b"&#39;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\r' => b"&#xd;",
            b'\n' if attribute => b"&#xa;",
            b'\t' if attribute => b"&#x9;",
            // U+FFFE and U+FFFF (EF BF BE, EF BF BF).
            b'\xbe' | b'\xbf' if i >= 2 && bytes[i - 2] == b'\xef' && bytes[i - 1] == b'\xbf' => {
                return false;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(entity);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What minidom writes, if it writes it at all.
    fn minidom(el: &Element) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| el.write_to(&mut out)));
        matches!(r, Ok(Ok(()))).then_some(out)
    }

    /// Whatever `write_plain` writes is what minidom writes.
    fn same(el: &Element) -> bool {
        let mut fast = Vec::new();
        if !write_plain(el, &mut fast) {
            return false;
        }
        assert_eq!(
            Some(String::from_utf8_lossy(&fast).into_owned()),
            minidom(el).map(|m| String::from_utf8_lossy(&m).into_owned()),
            "{el:?}"
        );
        true
    }

    fn parsed(xml: &str) -> Element {
        xml.parse().unwrap_or_else(|e| panic!("{xml}: {e}"))
    }

    #[test]
    fn parsed_stanzas_are_written_as_minidom_writes_them() {
        let plain = [
            "<message xmlns='jabber:component:accept' from='a@b/c' to='d\\40e@f' id='m1' type='chat'><body>hi &amp; &lt;bye&gt; \"q\" 'a'</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
            "<message xmlns='jabber:component:accept'><body xmlns='jabber:component:accept'>same ns again</body></message>",
            "<message xmlns='jabber:component:accept' xml:lang='en'><body xml:lang='de'>t</body></message>",
            "<iq xmlns='jabber:component:accept' type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            "<message xmlns='jabber:component:accept'><x xmlns='urn:x'><y><z xmlns='jabber:component:accept'/></y></x></message>",
            "<message xmlns='jabber:component:accept' a='tab&#9;here' b='line&#10;break' c='cr&#13;x' d='&quot;&apos;'><body>cr&#13;&#10;lf&#9;tab\n</body></message>",
            "<message xmlns='jabber:component:accept'><body><![CDATA[<not markup> & stuff]]></body></message>",
            "<presence xmlns='jabber:component:accept'>mixed<show>away</show>text<status>\u{e9}\u{1f600}</status></presence>",
            "<message xmlns='urn:odd&amp;ns&apos;'/>",
            "<message xmlns='jabber:component:accept'><empty></empty><a-b.c_d/></message>",
        ];
        for xml in plain {
            assert!(same(&parsed(xml)), "declined {xml}");
        }
        let declined = [
            "<message xmlns='jabber:component:accept' xmlns:p='urn:p'><p:x/></message>",
            "<message xmlns='jabber:component:accept' xmlns:p='urn:p' p:a='1'/>",
            "<message xmlns='jabber:component:accept'><x xmlns=''/></message>",
            "<m\u{e9}ssage xmlns='jabber:component:accept'/>",
        ];
        for xml in declined {
            let el = parsed(xml);
            assert!(!same(&el), "took {xml}");
        }
    }

    #[test]
    fn built_elements_are_written_as_minidom_writes_them() {
        use crate::stanza::{element, with_text};
        let mut msg = element(
            "message",
            ns::COMPONENT,
            &[("from", "x\\40y@z/r"), ("to", "a@b"), ("id", "<&'\">")],
        );
        msg.append_child(element("displayed", ns::CHAT_MARKERS, &[("id", "m1")]));
        msg.append_child(Element::bare("store", ns::HINTS));
        msg.append_child(with_text(Element::bare("body", ns::COMPONENT), "x > y"));
        msg.append_child(with_text(Element::bare("t", "urn:unknown"), ""));
        assert!(same(&msg));
        let err = crate::stanza::error_reply(
            &parsed("<message xmlns='jabber:component:accept' from='a@b/c' to='d@e' id='1'/>"),
            "d@e",
            crate::stanza::ErrorType::Cancel,
            crate::stanza::DefinedCondition::ServiceUnavailable,
            "text with 'quotes' & <brackets>",
        );
        assert!(same(&err), "{err:?}");
    }

    #[test]
    fn what_minidom_refuses_is_declined() {
        use crate::stanza::{element, with_text};
        for bad in ["\u{1}", "a\u{b}b", "\u{fffe}", "x\u{ffff}"] {
            let attr = element("message", ns::COMPONENT, &[("id", bad)]);
            let text = with_text(Element::bare("message", ns::COMPONENT), bad);
            for el in [attr, text] {
                let mut out = Vec::new();
                assert!(!write_plain(&el, &mut out), "{bad:?}");
                assert!(minidom(&el).is_none(), "{bad:?}");
            }
        }
        // Allowed neighbours of the refused characters.
        for ok in ["\u{fffd}", "\u{effe}", "\u{10000}", "\t\n"] {
            assert!(same(&with_text(Element::bare("m", ns::COMPONENT), ok)));
            assert!(same(&element("m", ns::COMPONENT, &[("id", ok)])));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop_oneof![
                    Just('a'),
                    Just(' '),
                    Just('<'),
                    Just('>'),
                    Just('&'),
                    Just('\''),
                    Just('"'),
                    Just('\t'),
                    Just('\n'),
                    Just('\r'),
                    Just('\u{e9}'),
                    Just('\u{fffe}'),
                    Just('\u{1}'),
                    Just('\u{1f600}'),
                ],
                0..8,
            )
            .prop_map(|v| v.into_iter().collect())
        }

        fn tree() -> impl Strategy<Value = Element> {
            let names = prop::sample::select(vec!["a", "b-c", "d.e", "_f", "g1"]);
            let nss =
                prop::sample::select(vec![ns::COMPONENT, ns::RECEIPTS, "urn:other", "urn:x&y"]);
            let leaf = (names.clone(), nss.clone(), text(), text()).prop_map(|(n, ns, a, t)| {
                let mut el = crate::stanza::element(n, ns, &[("k", a.as_str())]);
                if !t.is_empty() {
                    el.append_text(t);
                }
                el
            });
            leaf.prop_recursive(3, 16, 4, move |inner| {
                (
                    names.clone(),
                    nss.clone(),
                    prop::collection::vec(inner, 0..4),
                    text(),
                )
                    .prop_map(|(n, ns, children, t)| {
                        let mut el = Element::bare(n, ns);
                        for c in children {
                            el.append_child(c);
                            el.append_text(t.clone());
                        }
                        el
                    })
            })
        }

        proptest! {
            /// Built trees, and the same trees parsed back (which carries
            /// their namespace declarations), are written as minidom writes
            /// them, or declined where minidom refuses them.
            #[test]
            fn any_tree_is_written_as_minidom_writes_it(el in tree()) {
                let mut fast = Vec::new();
                let took = write_plain(&el, &mut fast);
                match minidom(&el) {
                    Some(m) => {
                        prop_assert!(took);
                        prop_assert_eq!(&fast, &m);
                        let back: Element = String::from_utf8(m).unwrap().parse().unwrap();
                        prop_assert!(same(&back));
                    }
                    None => prop_assert!(!took),
                }
            }
        }
    }
}
