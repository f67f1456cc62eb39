//! Shared by the socket-free test files: stanza parsing, and the XML examples
//! of the documents in `xep/` compared by value with what tidemark answers.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

use minidom::{Element, Node};
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{SledStore, Store};

pub const NS: &str = "jabber:component:accept";

/// Puts the component namespace on the first stanza element of `xml`.
pub fn with_ns(xml: &str) -> String {
    let mut s = xml.to_owned();
    for name in ["message", "presence", "iq"] {
        s = s.replacen(&format!("<{name} "), &format!("<{name} xmlns='{NS}' "), 1);
    }
    s
}

/// A time as the documents write it (XEP-0082, UTC), in the milliseconds
/// tidemark is driven with: tests run at the times their documents show.
/// The XEP-0115 `ver` (SHA-1, base64) of a client whose disco#info answer
/// is `query` (a `<query xmlns='http://jabber.org/protocol/disco#info'/>`).
// Not every test crate that shares this module asks about clients.
#[allow(dead_code)]
pub fn caps_ver(query: &str) -> String {
    use xmpp_parsers::caps::{compute_disco, hash_caps};
    use xmpp_parsers::disco::DiscoInfoResult;
    use xmpp_parsers::hashes::Algo;
    let parsed = DiscoInfoResult::try_from(query.parse::<Element>().unwrap()).unwrap();
    hash_caps(&compute_disco(&parsed), Algo::Sha_1)
        .unwrap()
        .to_base64()
}

/// The router on a real sled store, driven without a socket at times the
/// test chooses: what every rule test of this kind stands on.
// Not every test crate that shares this module drives the router.
#[allow(dead_code)]
pub struct Router {
    pub tm: Tidemark,
    pub now: u64,
}

#[allow(dead_code)]
impl Router {
    /// The component `chat.localhost` with the config sections `extra`, on a
    /// temporary store, at `now`. The secret is the one the documents'
    /// examples were made with (XEP-0421 occupant-ids are a hash of it).
    pub fn new(extra: &str, now: u64) -> Self {
        Self::on(Arc::new(SledStore::temporary().unwrap()), extra, now)
    }

    /// [`Router::new`] on `store` (a store on disk, to reopen).
    pub fn on(store: Arc<dyn Store>, extra: &str, now: u64) -> Self {
        let text = format!(
            "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"s3cret\"\n[storage]\npath = \"unused\"\n{extra}"
        );
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        Self {
            tm: Tidemark::new(config, store, now).unwrap(),
            now,
        }
    }

    /// Hands tidemark `stanza` at `now`, never earlier than the stanza
    /// before; returns what it sends, its writes applied.
    pub fn handle_at(&mut self, now: u64, stanza: &Element) -> Vec<Element> {
        assert!(now >= self.now, "the clock goes forward");
        self.now = now;
        let effects = self.tm.handle(stanza, now);
        effects.apply(&**self.tm.store()).unwrap()
    }

    /// A stanza a second after the one before.
    pub fn send(&mut self, xml: &str) -> Vec<Element> {
        self.send_el(&with_ns(xml).parse().unwrap())
    }

    /// [`Router::send`] of a parsed stanza.
    pub fn send_el(&mut self, stanza: &Element) -> Vec<Element> {
        self.handle_at(self.now + 1000, stanza)
    }

    /// [`Router::send`] at a time a document shows.
    pub fn send_at(&mut self, xep0082: &str, xml: &str) -> Vec<Element> {
        self.handle_at(millis(xep0082), &with_ns(xml).parse().unwrap())
    }

    /// The connection loop's tick at `now`.
    pub fn tick_at(&mut self, now: u64) -> Vec<Element> {
        self.now = now;
        let effects = self.tm.tick(now).unwrap();
        effects.apply(&**self.tm.store()).unwrap()
    }
}

/// A test file's world: the router and what that file adds to it.
#[allow(dead_code)]
pub struct World(pub Router);

impl Deref for World {
    type Target = Router;
    fn deref(&self) -> &Router {
        &self.0
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut Router {
        &mut self.0
    }
}

pub fn millis(xep0082: &str) -> u64 {
    let t = chrono::DateTime::parse_from_rfc3339(xep0082)
        .unwrap_or_else(|e| panic!("{xep0082:?} is not an XEP-0082 time: {e}"));
    u64::try_from(t.timestamp_millis()).expect("a time after 1970")
}

/// One ```xml block of a document in `xep/`.
#[derive(Clone)]
pub struct Example {
    /// Where it is, `xep/status.md:63`, for failure messages.
    pub place: String,
    pub el: Element,
}

/// An attribute tidemark makes up when it answers (an id from the wall clock,
/// a session id), so no document can show the value a test run gets: only
/// its presence is compared. Every use names why, and must match an attribute
/// of the example, so the list stays small and true.
pub struct Varies {
    /// Element names from the stanza down, `message/all-read`.
    pub path: &'static str,
    pub attr: &'static str,
    pub why: &'static str,
}

/// The examples of one document in `xep/`. A test takes each one it checks;
/// [`XepDoc::assert_all_checked`] fails if the document gained an example no
/// test looks at.
pub struct XepDoc {
    file: String,
    examples: Vec<Example>,
    taken: RefCell<Vec<bool>>,
}

impl XepDoc {
    pub fn load(file: &str) -> Self {
        let path = format!("{}/xep/{file}", env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(&path).unwrap();
        let mut examples = vec![];
        let mut offset = 0;
        while let Some(start) = doc[offset..].find("```xml") {
            let body_start = offset + start + "```xml".len();
            let len = doc[body_start..]
                .find("```")
                .unwrap_or_else(|| panic!("xep/{file}: unclosed ```xml block"));
            let xml = &doc[body_start..body_start + len];
            let line = doc[..body_start].lines().count() + 1;
            let place = format!("xep/{file}:{line}");
            let el = with_ns(xml.trim())
                .parse::<Element>()
                .unwrap_or_else(|e| panic!("{place}: {e}: {xml}"));
            examples.push(Example { place, el });
            offset = body_start + len + 3;
        }
        let taken = RefCell::new(vec![false; examples.len()]);
        Self {
            file: format!("xep/{file}"),
            examples,
            taken,
        }
    }

    /// The example that is a `<name type=type>` stanza with this `id` (or,
    /// with `None`, without one).
    pub fn example(&self, name: &str, type_: &str, id: Option<&str>) -> Example {
        self.take(&format!("<{name} type='{type_}' id={id:?}>"), |el| {
            el.name() == name && el.attr("type") == Some(type_) && el.attr("id") == id
        })
    }

    /// The example that is a `<name type=type>` stanza, whatever its id: for
    /// a stanza whose id tidemark makes up.
    // xep/status.md shows no stanza with a made-up id.
    #[allow(dead_code)]
    pub fn only(&self, name: &str, type_: &str) -> Example {
        self.take(&format!("<{name} type='{type_}'>"), |el| {
            el.name() == name && el.attr("type") == Some(type_)
        })
    }

    /// The one example `matches` picks, described as `what`: for examples
    /// that differ only in where they go.
    #[allow(dead_code)]
    pub fn example_where(&self, what: &str, matches: impl Fn(&Element) -> bool) -> Example {
        self.take(what, matches)
    }

    /// The one example `matches` picks; a document with two (or none) is
    /// ambiguous to its reader too.
    fn take(&self, what: &str, matches: impl Fn(&Element) -> bool) -> Example {
        let found: Vec<usize> = (0..self.examples.len())
            .filter(|&i| matches(&self.examples[i].el))
            .collect();
        let [i] = found[..] else {
            panic!(
                "{}: {} examples are {what}, not one",
                self.file,
                found.len()
            )
        };
        self.taken.borrow_mut()[i] = true;
        self.examples[i].clone()
    }

    /// Every example of the document was taken by the test.
    pub fn assert_all_checked(&self) {
        let unchecked: Vec<&str> = self
            .examples
            .iter()
            .zip(self.taken.borrow().iter())
            .filter(|(_, taken)| !**taken)
            .map(|(e, _)| e.place.as_str())
            .collect();
        assert!(
            unchecked.is_empty(),
            "{}: examples no test checks: {unchecked:?}",
            self.file
        );
    }
}

impl Example {
    /// The example with every attribute value `placeholder` replaced by
    /// `actual`: for a value tidemark generated earlier in the story (a
    /// room's stanza-id), which later examples must then repeat exactly.
    // tests/rules.rs has no generated value to carry along.
    #[allow(dead_code)]
    pub fn with(&self, placeholder: &str, actual: &str) -> Example {
        fn walk(el: &mut Element, placeholder: &str, actual: &str) -> usize {
            let mut n = 0;
            for (_, v) in el.attrs_mut().iter_mut() {
                if v.as_str() == placeholder {
                    *v = actual.to_owned();
                    n += 1;
                }
            }
            for c in el.children_mut() {
                n += walk(c, placeholder, actual);
            }
            n
        }
        let mut el = self.el.clone();
        let n = walk(&mut el, placeholder, actual);
        assert!(
            n > 0,
            "{}: the example names no {placeholder:?}, which stands for {actual:?}, made by tidemark earlier in the story",
            self.place
        );
        Example {
            place: self.place.clone(),
            el,
        }
    }

    /// `got` is this example exactly: element names, namespaces, every
    /// attribute and text, children in order; only the `varies` attributes
    /// are compared for presence alone. Fails with a line diff.
    pub fn assert_answer(&self, what: &str, got: &Element, varies: &[Varies]) {
        for v in varies {
            assert!(
                attr_at(&self.el, v.path, v.attr),
                "{}: {what}: no {}@{} to vary",
                self.place,
                v.path,
                v.attr
            );
        }
        let expected = canonical(&self.el, varies);
        let actual = canonical(got, varies);
        if expected != actual {
            panic!(
                "{}: {what}: tidemark's answer is not the document's\n\
                 (- document, + tidemark)\n{}\ntidemark said:\n{}\n",
                self.place,
                line_diff(&expected, &actual),
                String::from(got)
            );
        }
    }
}

fn attr_at(el: &Element, path: &str, attr: &str) -> bool {
    let (head, rest) = path
        .split_once('/')
        .map_or((path, None), |(h, r)| (h, Some(r)));
    head == el.name()
        && match rest {
            None => el.attr(attr).is_some(),
            Some(rest) => el.children().any(|c| attr_at(c, rest, attr)),
        }
}

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// One line per element, attribute and text, attributes sorted (their order
/// means nothing in XML), children in document order: equal renderings are
/// equal stanzas, and a line diff shows where two differ.
fn canonical(el: &Element, varies: &[Varies]) -> Vec<String> {
    fn walk(el: &Element, parent_ns: &str, path: &str, varies: &[Varies], out: &mut Vec<String>) {
        let depth = path.matches('/').count();
        let indent = "  ".repeat(depth);
        let ns = el.ns();
        if ns == parent_ns {
            out.push(format!("{indent}<{}>", el.name()));
        } else {
            out.push(format!("{indent}<{} xmlns='{ns}'>", el.name()));
        }
        let mut attrs: Vec<String> = el
            .attrs()
            .iter()
            .map(|((attr_ns, name), value)| {
                let name = match attr_ns.as_str() {
                    "" => name.to_string(),
                    XML_NS => format!("xml:{name}"),
                    other => format!("{{{other}}}{name}"),
                };
                let value = match varies.iter().find(|v| v.path == path && v.attr == name) {
                    Some(v) => format!("(varies: {})", v.why),
                    None => quoted(value),
                };
                format!("{indent}    {name}={value}")
            })
            .collect();
        attrs.sort();
        out.extend(attrs);
        let text: String = el
            .nodes()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect();
        // Between child elements, text is the document's indentation.
        let text = if el.children().next().is_some() {
            text.trim()
        } else {
            &text
        };
        if !text.is_empty() {
            out.push(format!("{indent}    text {}", quoted(text)));
        }
        for c in el.children() {
            walk(c, &ns, &format!("{path}/{}", c.name()), varies, out);
        }
    }
    let mut out = vec![];
    walk(el, "", el.name(), varies, &mut out);
    out
}

/// `value` between quotes, with what a reader could not see escaped.
fn quoted(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        match c {
            '\n' => out += "\\n",
            '\t' => out += "\\t",
            '\r' => out += "\\r",
            c => out.push(c),
        }
    }
    out + "'"
}

/// A line diff by longest common subsequence: stanzas are a few dozen lines.
fn line_diff(a: &[String], b: &[String]) -> String {
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}
