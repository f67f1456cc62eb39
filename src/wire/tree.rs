//! minidom's `TreeBuilder`, moving what rxml hands over instead of copying
//! it.
//!
//! minidom's builder copies each element's name twice, each attribute value
//! and each text once, clones every element's namespace declarations onto a
//! stack of its own, and allocates a key for each prefix it looks up; that
//! was a third of building a stanza, on the reading thread of every stanza.
//! This one builds the same elements (names, namespaces, declarations,
//! attributes, text nodes), fails on the same input with the same error, and
//! resolves prefixes through the declarations of the elements being built.
//! The tests compare both builders on the same events.

use std::collections::BTreeMap;

use minidom::{Element, Error};
use rxml::{AttrMap, Namespace, NcName, RawEvent};

/// An element whose head is being read.
struct Head {
    prefix: Option<NcName>,
    name: NcName,
    /// `xmlns` and `xmlns:p` declarations.
    prefixes: BTreeMap<Option<String>, String>,
    attrs: AttrMap,
    /// Prefixed attributes, resolved once all declarations are read.
    prefixed: Vec<(NcName, NcName, String)>,
}

#[derive(Default)]
pub(crate) struct TreeBuilder {
    head: Option<Head>,
    /// The open elements, outermost first.
    stack: Vec<Element>,
}

impl TreeBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The outermost open element (the stream's header, once read).
    pub fn top(&self) -> Option<&Element> {
        self.stack.last()
    }

    /// Takes the first element child of the innermost open element, and
    /// any text before it, as minidom's `TreeBuilder::unshift_child` does.
    pub fn unshift_child(&mut self) -> Option<Element> {
        self.stack.last_mut()?.unshift_child()
    }

    /// The namespace `prefix` is bound to, in `own` declarations first and
    /// then in those of the open elements, innermost first.
    fn lookup<'a>(
        stack: &'a [Element],
        own: &'a BTreeMap<Option<String>, String>,
        prefix: Option<&str>,
    ) -> Option<&'a str> {
        let find = |declared: &'a BTreeMap<Option<String>, String>| {
            declared
                .iter()
                .find(|(p, _)| p.as_deref() == prefix)
                .map(|(_, ns)| ns.as_str())
        };
        find(own).or_else(|| {
            stack
                .iter()
                .rev()
                .find_map(|el| find(el.prefixes.declared_prefixes()))
        })
    }

    pub fn process_event(&mut self, event: RawEvent) -> Result<(), Error> {
        match event {
            RawEvent::XmlDeclaration(..) => {}
            RawEvent::ElementHeadOpen(_, (prefix, name)) => {
                self.head = Some(Head {
                    prefix,
                    name,
                    prefixes: BTreeMap::new(),
                    attrs: AttrMap::new(),
                    prefixed: Vec::new(),
                });
            }
            RawEvent::Attribute(_, (prefix, name), value) => {
                if let Some(head) = self.head.as_mut() {
                    match prefix {
                        None if name == "xmlns" => {
                            head.prefixes.insert(None, value);
                        }
                        Some(p) if p == "xmlns" => {
                            head.prefixes.insert(Some(name.into()), value);
                        }
                        Some(p) => head.prefixed.push((p, name, value)),
                        None => {
                            head.attrs.insert(Namespace::NONE, name, value);
                        }
                    }
                }
            }
            RawEvent::ElementHeadClose(_) => {
                if let Some(head) = self.head.take() {
                    let Head {
                        prefix,
                        name,
                        prefixes,
                        mut attrs,
                        prefixed,
                    } = head;
                    let namespace =
                        Self::lookup(&self.stack, &prefixes, prefix.as_ref().map(|p| p.as_str()))
                            .ok_or(Error::MissingNamespace)?
                            .to_owned();
                    for (p, attr, value) in prefixed {
                        let ns = if p == "xml" {
                            Namespace::xml().clone()
                        } else {
                            Self::lookup(&self.stack, &prefixes, Some(p.as_str()))
                                .map(|ns| Namespace::from(ns.to_owned()))
                                .ok_or(Error::MissingNamespace)?
                        };
                        attrs.insert(ns, attr, value);
                    }
                    let mut el = Element::bare(String::from(name), namespace);
                    el.prefixes = prefixes.into();
                    *el.attrs_mut() = attrs;
                    self.stack.push(el);
                }
            }
            RawEvent::ElementFoot(_) => {
                // A closed element goes to its parent; the stream's own end
                // (the root closing) keeps nothing.
                if let Some(el) = self.stack.pop()
                    && let Some(parent) = self.stack.last_mut()
                {
                    parent.append_child(el);
                }
            }
            RawEvent::Text(_, text) => {
                if let Some(top) = self.stack.last_mut() {
                    top.append_text(text);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxml::{Parse, RawParser};

    /// Runs `xml` through rxml's raw parser into both builders, event by
    /// event, as the decoder does; each builder's outcome: its open root
    /// element with its children, or the error it ended on.
    type Built = Result<Option<Element>, String>;

    fn both(xml: &str) -> (Built, Built) {
        try_both(xml).unwrap_or_else(|e| panic!("{xml}: {e}"))
    }

    /// [`both`], or rxml's error if the input is not well-formed.
    fn try_both(xml: &str) -> Result<(Built, Built), String> {
        let mut parser = RawParser::new();
        let mut ours = TreeBuilder::new();
        let mut theirs = minidom::tree_builder::TreeBuilder::new();
        let (mut ours_err, mut theirs_err) = (None, None);
        let mut input = xml.as_bytes();
        loop {
            match parser.parse(&mut input, false) {
                Ok(Some(ev)) => {
                    if ours_err.is_none()
                        && let Err(e) = ours.process_event(ev.clone())
                    {
                        ours_err = Some(e.to_string());
                    }
                    if theirs_err.is_none()
                        && let Err(e) = theirs.process_event(ev)
                    {
                        theirs_err = Some(e.to_string());
                    }
                }
                Ok(None) => break,
                Err(rxml::error::EndOrError::NeedMoreData) => break,
                Err(rxml::error::EndOrError::Error(e)) => return Err(e.to_string()),
            }
        }
        let ours = match ours_err {
            Some(e) => Err(e),
            None => Ok(ours.top().cloned()),
        };
        let theirs = match theirs_err {
            Some(e) => Err(e),
            None => Ok(theirs.top().cloned()),
        };
        Ok((ours, theirs))
    }

    /// Equal as elements, and in the namespace declarations, which
    /// `Element`'s `PartialEq` leaves out.
    fn same(a: &Element, b: &Element) -> bool {
        a == b
            && a.prefixes == b.prefixes
            && a.children().count() == b.children().count()
            && a.children().zip(b.children()).all(|(x, y)| same(x, y))
    }

    #[test]
    fn builds_what_minidom_builds() {
        let stream = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1'>";
        let stanzas = [
            "<message from='alice@localhost/a' to='bob\\40localhost@chat.localhost' id='m1' type='chat'><body>hi &amp; bye</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
            "<message xmlns='jabber:component:accept' to='x'><received xmlns='urn:xmpp:receipts' id='m1'/></message>",
            "<presence from='a@b/c'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/><show>away</show><status>text<![CDATA[ <b> ]]>more</status></presence>",
            "<iq type='get' id='1' xmlns:p='urn:p' p:attr='1' xml:lang='en'><p:query><p:item p:x='y' z='w'/></p:query></iq>",
            "<message><x xmlns='urn:x' xmlns:q='urn:q'><q:y q:a='1'><z/></q:y>mixed<w xmlns=''/></x></message>",
            "<message>\n  <body xml:lang='de'>\u{e9}\u{1f600}</body>\n</message>",
            "<message a='&lt;&#9;&#10;&quot;' b=\"'\"/>",
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
            "<message><p:unbound xmlns:r='urn:r'/></message>",
            "<message q:a='1'/>",
            "<message><body>one</body></message> <presence/>",
        ];
        for stanza in stanzas {
            let xml = format!("{stream}{stanza}");
            match both(&xml) {
                (Ok(Some(ours)), Ok(Some(theirs))) => {
                    assert!(same(&ours, &theirs), "{xml}\n{ours:?}\n{theirs:?}");
                }
                (Err(ours), Err(theirs)) => assert_eq!(ours, theirs, "{xml}"),
                other => panic!("{xml}: {other:?}"),
            }
        }
        // The error cases above are still errors.
        assert!(both(&format!("{stream}<message q:a='1'/>")).0.is_err());
        assert!(
            both(&format!("{stream}<message><p:unbound/></message>"))
                .0
                .is_err()
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Small elements dense in what the builders resolve: prefixed
        /// and plain names, declarations (some missing, some undeclaring),
        /// prefixed and `xml:` attributes, text and CDATA.
        fn element() -> impl Strategy<Value = String> {
            // `p` is bound by the stream header too, `q` only where
            // declared, `xml` never (an error, as an unbound one is).
            let prefix =
                prop_oneof![6 => Just(""), 3 => Just("p:"), 2 => Just("q:"), 1 => Just("xml:")];
            let decl = prop_oneof![
                Just(""),
                Just(" xmlns='urn:a'"),
                Just(" xmlns=''"),
                Just(" xmlns:p='urn:p'"),
                Just(" xmlns:q='urn:q' xmlns='urn:b'"),
            ];
            let attr = prop_oneof![
                Just(""),
                Just(" id='1'"),
                Just(" p:id='2'"),
                Just(" xml:lang='en' to='a&amp;b'"),
                Just(" q:x='3' y='&#9;'"),
            ];
            let text = prop_oneof![Just(""), Just("t"), Just(" &lt; "), Just("<![CDATA[c]]>")];
            let leaf = (prefix.clone(), decl.clone(), attr.clone(), text.clone())
                .prop_map(|(p, d, a, t)| format!("<{p}e{d}{a}>{t}</{p}e>"));
            leaf.prop_recursive(3, 24, 4, move |inner| {
                (
                    prefix.clone(),
                    decl.clone(),
                    attr.clone(),
                    proptest::collection::vec(inner, 0..4),
                    text.clone(),
                )
                    .prop_map(|(p, d, a, kids, t)| {
                        format!("<{p}n{d}{a}>{t}{}</{p}n>", kids.concat())
                    })
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_tree_is_built_as_minidom_builds_it(stanzas in proptest::collection::vec(element(), 1..3)) {
                let xml = format!(
                    "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' xmlns:p='urn:p0'>{}",
                    stanzas.concat()
                );
                // Input rxml refuses never reaches a builder.
                let Ok(built) = try_both(&xml) else { return Ok(()) };
                match built {
                    (Ok(Some(ours)), Ok(Some(theirs))) => {
                        prop_assert!(same(&ours, &theirs), "{}\n{:?}\n{:?}", xml, ours, theirs);
                    }
                    (Err(ours), Err(theirs)) => prop_assert_eq!(ours, theirs),
                    other => prop_assert!(false, "{}: {:?}", xml, other),
                }
            }
        }
    }

    #[test]
    fn a_closed_stanza_is_taken_with_the_text_before_it() {
        let mut parser = RawParser::new();
        let mut tree = TreeBuilder::new();
        let mut input: &[u8] = b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'> <a/> <b/>";
        while let Ok(Some(ev)) = parser.parse(&mut input, false) {
            tree.process_event(ev).unwrap();
        }
        assert_eq!(
            tree.unshift_child().map(|e| e.name().to_owned()),
            Some("a".into())
        );
        assert_eq!(
            tree.unshift_child().map(|e| e.name().to_owned()),
            Some("b".into())
        );
        assert!(tree.unshift_child().is_none());
        assert!(tree.top().unwrap().is("stream", crate::stanza::ns::STREAM));
    }
}
