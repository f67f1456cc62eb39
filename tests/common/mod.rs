//! Shared by the socket-free test files: stanza parsing and the XML examples
//! of the documents in `xep/`.

use minidom::Element;

pub const NS: &str = "jabber:component:accept";

/// Puts the component namespace on the first stanza element of `xml`.
pub fn with_ns(xml: &str) -> String {
    let mut s = xml.to_owned();
    for name in ["message", "presence", "iq"] {
        s = s.replacen(&format!("<{name} "), &format!("<{name} xmlns='{NS}' "), 1);
    }
    s
}

/// Every ```xml block of a document in `xep/`, parsed.
pub fn xep_examples(file: &str) -> Vec<Element> {
    let path = format!("{}/xep/{file}", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&path).unwrap();
    doc.split("```xml")
        .skip(1)
        .map(|block| {
            let xml = block.split("```").next().unwrap();
            with_ns(xml.trim())
                .parse::<Element>()
                .unwrap_or_else(|e| panic!("{path}: {e}: {xml}"))
        })
        .collect()
}

/// The shape of a stanza: element names, namespaces and attribute names,
/// in document order, without the values that differ from run to run.
pub fn shape(el: &Element) -> Vec<String> {
    fn walk(el: &Element, out: &mut Vec<String>) {
        let mut attrs: Vec<String> = el
            .attrs()
            .iter()
            .map(|((_, k), _)| k.to_string())
            .filter(|k| k != "id" && k != "by" && k != "to")
            .collect();
        attrs.sort();
        out.push(format!("{}{{{}}}[{}]", el.name(), el.ns(), attrs.join(",")));
        for c in el.children() {
            walk(c, out);
        }
    }
    let mut out = vec![];
    walk(el, &mut out);
    out
}
