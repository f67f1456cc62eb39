//! Small helpers over minidom elements: namespaces, attribute access, stanza
//! errors and XEP-0082 times. Feature modules build stanzas with these.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use crate::store::Millis;

pub mod ns {
    pub const COMPONENT: &str = "jabber:component:accept";
    pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    pub const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    pub const STREAM: &str = "http://etherx.jabber.org/streams";
    pub const RECEIPTS: &str = "urn:xmpp:receipts";
    pub const CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    pub const GATEWAY: &str = "jabber:iq:gateway";
    pub const PING: &str = "urn:xmpp:ping";
    pub const OOB: &str = "jabber:x:oob";
    pub const HINTS: &str = "urn:xmpp:hints";
    pub const STATUS: &str = "urn:tidemark:status:0";
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
}

/// Sets (or replaces) a plain attribute.
pub fn set_attr(el: &mut Element, name: &str, value: impl Into<String>) {
    let name = rxml::NcName::try_from(name).expect("attribute names here are static NCNames");
    el.attrs_mut()
        .insert(rxml::Namespace::NONE, name, value.into());
}

pub fn remove_attr(el: &mut Element, name: &str) {
    if let Ok(name) = rxml::NcName::try_from(name) {
        el.attrs_mut().remove(&rxml::Namespace::NONE, &name);
    }
}

/// An element with attributes, in one call.
pub fn element(name: &str, namespace: &str, attrs: &[(&str, &str)]) -> Element {
    let mut el = Element::bare(name, namespace);
    for (k, v) in attrs {
        set_attr(&mut el, k, *v);
    }
    el
}

pub fn with_text(mut el: Element, text: impl Into<String>) -> Element {
    el.append_text(text.into());
    el
}

/// The `from` and `to` of a stanza, parsed.
pub fn jid_attr(el: &Element, name: &str) -> Option<Result<Jid, String>> {
    el.attr(name)
        .map(|v| Jid::new(v).map_err(|e| format!("invalid {name} {v:?}: {e}")))
}

/// Error types of RFC 6120 §8.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Cancel,
    Modify,
    Auth,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Auth => "auth",
            ErrorType::Wait => "wait",
        }
    }
}

/// The `<error/>` child: a defined condition and a human-readable text.
pub fn error_element(type_: ErrorType, condition: &str, text: &str, by: Option<&str>) -> Element {
    let mut err = element("error", ns::COMPONENT, &[("type", type_.as_str())]);
    if let Some(by) = by {
        set_attr(&mut err, "by", by);
    }
    err.append_child(Element::bare(condition, ns::STANZAS));
    let mut t = with_text(Element::bare("text", ns::STANZAS), text);
    t.attrs_mut().insert(
        rxml::Namespace::from(ns::XML),
        rxml::NcName::try_from("lang").expect("static"),
        "en".into(),
    );
    err.append_child(t);
    err
}

/// An error reply to `original` (RFC 6120 §8.3.1): same kind and id, from and
/// to swapped, type "error".
pub fn error_reply(
    original: &Element,
    from: &str,
    type_: ErrorType,
    condition: &str,
    text: &str,
) -> Element {
    let mut reply = Element::bare(original.name(), ns::COMPONENT);
    set_attr(&mut reply, "type", "error");
    set_attr(&mut reply, "from", from);
    if let Some(to) = original.attr("from") {
        set_attr(&mut reply, "to", to);
    }
    if let Some(id) = original.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    reply.append_child(error_element(type_, condition, text, Some(from)));
    reply
}

/// The defined condition and text of an `<error/>` child, as received.
pub fn read_error(stanza: &Element) -> (String, String) {
    let Some(err) = stanza.children().find(|c| c.name() == "error") else {
        return ("undefined-condition".into(), String::new());
    };
    let condition = err
        .children()
        .find(|c| c.ns() == ns::STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into());
    let text = err
        .children()
        .find(|c| c.is("text", ns::STANZAS))
        .map(|c| c.text())
        .unwrap_or_default();
    (condition, text)
}

/// XEP-0082 date-time in UTC with milliseconds.
pub fn xep0082(ms: Millis) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Serialises an element to a string (for storage and size checks).
pub fn to_string(el: &Element) -> String {
    String::from(el)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_and_keeps_id() {
        let msg: Element = "<message xmlns='jabber:component:accept' from='alice@localhost/a' to='bob\\40localhost@chat.localhost' id='m1' type='chat'><body>hi</body></message>"
            .parse()
            .unwrap();
        let reply = error_reply(
            &msg,
            "bob\\40localhost@chat.localhost",
            ErrorType::Cancel,
            "recipient-unavailable",
            "bob@localhost is offline",
        );
        assert_eq!(reply.attr("to"), Some("alice@localhost/a"));
        assert_eq!(reply.attr("id"), Some("m1"));
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(
            read_error(&reply),
            (
                "recipient-unavailable".to_owned(),
                "bob@localhost is offline".to_owned()
            )
        );
    }

    #[test]
    fn times_are_xep0082_utc() {
        assert_eq!(xep0082(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
