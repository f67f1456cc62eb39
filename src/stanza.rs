//! Small helpers over minidom elements: namespaces, attribute access, stanza
//! errors and XEP-0082 times. Feature modules build stanzas with these.

use minidom::Element;
use xmpp_parsers::date::DateTime;
use xmpp_parsers::disco::DiscoItemsResult;
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
    /// Issue 10: the conversation list (xep/inbox.md).
    pub const INBOX: &str = "urn:tidemark:inbox:0";
    /// Issue 11: team desks (xep/desk.md).
    pub const DESK: &str = "urn:tidemark:desk:0";
    pub const RSM: &str = "http://jabber.org/protocol/rsm";
    /// XEP-0356 privileged entity: ejabberd (mod_privilege) offers its
    /// permissions in this namespace; newer servers and the XEP's latest
    /// version use `urn:xmpp:privilege:2`.
    pub const PRIVILEGE_1: &str = "urn:xmpp:privilege:1";
    pub const PRIVILEGE_2: &str = "urn:xmpp:privilege:2";
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    pub const NICK: &str = "http://jabber.org/protocol/nick";
    pub const CAPS: &str = "http://jabber.org/protocol/caps";
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    pub const SID: &str = "urn:xmpp:sid:0";
    pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
    pub const DELAY: &str = "urn:xmpp:delay";
    /// XEP-0050 ad-hoc commands: the namespace, and the disco node that
    /// lists them.
    pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
    pub const DATA: &str = "jabber:x:data";
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

/// A XEP-0004 field with a label and one value, as result forms show it.
/// Hand-built: a `text-single` of xmpp-parsers' `Field` needs its whole
/// struct for what is three attributes and a value here.
pub fn form_field(var: &str, type_: &str, label: &str, value: impl Into<String>) -> Element {
    let mut field = element(
        "field",
        ns::DATA,
        &[("var", var), ("type", type_), ("label", label)],
    );
    field.append_child(with_text(Element::bare("value", ns::DATA), value));
    field
}

/// A XEP-0050 `<command/>` answer of `node` in `session` with `status`
/// (`executing`, `completed`, `canceled`).
// Hand-built: xmpp-parsers 0.23 has no XEP-0050 ad-hoc commands.
pub fn command_element(node: &str, session: &str, status: &str) -> Element {
    element(
        "command",
        ns::COMMANDS,
        &[("node", node), ("sessionid", session), ("status", status)],
    )
}

/// A XEP-0050 `<note type='info'/>`.
pub fn command_note(text: impl Into<String>) -> Element {
    with_text(element("note", ns::COMMANDS, &[("type", "info")]), text)
}

/// A XEP-0004 `fixed` field: a line of text in a form, such as a row's
/// header in the plain forms given to clients that stop on multi-item
/// ones.
pub fn fixed_field(var: &str, value: impl Into<String>) -> Element {
    let mut field = element("field", ns::DATA, &[("var", var), ("type", "fixed")]);
    field.append_child(with_text(Element::bare("value", ns::DATA), value));
    field
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
    jid_value(name, el.attr(name))
}

/// [`jid_attr`] for a value already read (`name` is for the error).
pub fn jid_value(name: &str, value: Option<&str>) -> Option<Result<Jid, String>> {
    value.map(|v| Jid::new(v).map_err(|e| format!("invalid {name} {v:?}: {e}")))
}

/// The plain attributes that handling reads from every stanza, read in one
/// pass. minidom's `Element::attr` searches two nested B-trees, comparing
/// namespace and name strings through `memcmp` at every step; handling one
/// stanza asked for these a dozen times, and those searches were a tenth of
/// the connection thread's time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub id: Option<&'a str>,
    pub type_: Option<&'a str>,
}

impl<'a> Head<'a> {
    /// What `el.attr("from")`, `el.attr("to")`, `el.attr("id")` and
    /// `el.attr("type")` give.
    pub fn of(el: &'a Element) -> Self {
        let mut head = Head::default();
        for ((namespace, name), value) in el.attrs() {
            if namespace.is_some() {
                continue;
            }
            let slot = match name.as_str() {
                "from" => &mut head.from,
                "to" => &mut head.to,
                "id" => &mut head.id,
                "type" => &mut head.type_,
                _ => continue,
            };
            *slot = Some(value.as_str());
        }
        head
    }
}

pub use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// The element name of a defined condition (`item-not-found`, ...), as
/// recorded with a failed message.
pub fn condition_name(condition: &DefinedCondition) -> String {
    Element::from(condition.clone()).name().to_owned()
}

/// A stanza error with an English text (RFC 6120 §8.3).
pub fn stanza_error(
    type_: ErrorType,
    condition: DefinedCondition,
    text: impl Into<String>,
) -> StanzaError {
    StanzaError::new(type_, condition, "en", text)
}

/// The `<error/>` child: a defined condition and a human-readable text.
pub fn error_element(
    type_: ErrorType,
    condition: DefinedCondition,
    text: &str,
    by: Option<&str>,
) -> Element {
    error_child(stanza_error(type_, condition, text), by)
}

/// `error` as the child of a reply sent from `by`.
fn error_child(mut error: StanzaError, by: Option<&str>) -> Element {
    // `by` must read exactly as the reply's `from`; a value stringprep would
    // rewrite (or no JID at all) is kept as given.
    let typed_by = by.and_then(|b| Jid::new(b).ok().filter(|j| j.as_str() == b));
    let raw_by = by.filter(|_| typed_by.is_none());
    error.by = typed_by;
    let mut el = Element::from(error);
    if let Some(by) = raw_by {
        set_attr(&mut el, "by", by);
    }
    el
}

/// An error reply to `original` (RFC 6120 §8.3.1): same kind and id, from and
/// to swapped, type "error".
pub fn error_reply(
    original: &Element,
    from: &str,
    type_: ErrorType,
    condition: DefinedCondition,
    text: &str,
) -> Element {
    reply_with_error(original, from, stanza_error(type_, condition, text))
}

/// [`error_reply`] for an error built elsewhere.
pub fn reply_with_error(original: &Element, from: &str, error: StanzaError) -> Element {
    error_reply_to(
        original.name(),
        original.attr("from"),
        original.attr("id"),
        from,
        error,
    )
}

/// An error reply from `from` to a `name` stanza sent from `to` with `id`
/// (the attributes as they were written).
pub fn error_reply_to(
    name: &str,
    to: Option<&str>,
    id: Option<&str>,
    from: &str,
    error: StanzaError,
) -> Element {
    let mut reply = Element::bare(name, ns::COMPONENT);
    set_attr(&mut reply, "type", "error");
    set_attr(&mut reply, "from", from);
    if let Some(to) = to {
        set_attr(&mut reply, "to", to);
    }
    if let Some(id) = id {
        set_attr(&mut reply, "id", id);
    }
    reply.append_child(error_child(error, Some(from)));
    reply
}

/// The defined condition name and text of an `<error/>` child, as received;
/// `undefined-condition` for an error that is no valid RFC 6120 error.
pub fn read_error(stanza: &Element) -> (String, String) {
    let error = stanza
        .get_child("error", ns::COMPONENT)
        .and_then(|e| StanzaError::try_from(e.clone()).ok());
    let Some(error) = error else {
        return ("undefined-condition".into(), String::new());
    };
    let text = error
        .texts
        .get("en")
        .or_else(|| error.texts.values().next())
        .cloned()
        .unwrap_or_default();
    (condition_name(&error.defined_condition), text)
}

/// The XEP-0082 date-time of a store time.
pub fn date_time(ms: Millis) -> DateTime {
    let utc = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
    DateTime(utc.fixed_offset())
}

/// XEP-0082 date-time in UTC with milliseconds. Not `DateTime`'s own text,
/// which is RFC 3339 with `+00:00` and only the fraction digits needed:
/// every time tidemark has sent reads `...T11:06:40.123Z`.
pub fn xep0082(ms: Millis) -> String {
    date_time(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ")
}

/// An empty disco#items answer (XEP-0030 §4.2): nothing listed here.
pub fn no_disco_items() -> Element {
    DiscoItemsResult {
        node: None,
        items: vec![],
        rsm: None,
    }
    .into()
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
            DefinedCondition::RecipientUnavailable,
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
    fn error_reply_is_the_rfc6120_error_we_always_sent() {
        let msg: Element = "<message xmlns='jabber:component:accept' from='alice@localhost/a' to='Bob\\40localhost@chat.localhost' id='m1'/>"
            .parse()
            .unwrap();
        for by in [
            "bob\\40localhost@chat.localhost",
            "Bob\\40localhost@chat.localhost",
        ] {
            let reply = error_reply(
                &msg,
                by,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                "later",
            );
            let expected: Element = format!(
                "<message xmlns='jabber:component:accept' type='error' from='{by}' to='alice@localhost/a' id='m1'>\
                 <error type='wait' by='{by}'>\
                 <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                 <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>later</text>\
                 </error></message>"
            )
            .parse()
            .unwrap();
            assert_eq!(reply, expected, "{}", String::from(&reply));
        }
    }

    #[test]
    fn a_condition_is_recorded_by_its_element_name() {
        assert_eq!(
            condition_name(&DefinedCondition::InternalServerError),
            "internal-server-error"
        );
    }

    #[test]
    fn an_error_that_is_no_rfc6120_error_reads_as_undefined() {
        let bounce: Element = "<message xmlns='jabber:component:accept' type='error'><error><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            .parse()
            .unwrap();
        assert_eq!(
            read_error(&bounce),
            ("undefined-condition".into(), String::new())
        );
    }

    #[test]
    fn the_head_is_what_attr_reads() {
        for xml in [
            "<message xmlns='jabber:component:accept' from='a@b/c' to='d@e' id='m1' type='chat'/>",
            "<iq xmlns='jabber:component:accept' type='get' id='' x='y'/>",
            "<presence xmlns='jabber:component:accept'/>",
            // Namespaced attributes of the same names are not the plain ones.
            "<message xmlns='jabber:component:accept' xmlns:p='urn:p' p:from='x' p:to='y' p:id='z' p:type='w' to='t'/>",
            "<message xmlns='jabber:component:accept' xml:lang='en' from='a&amp;b'/>",
        ] {
            let el: Element = xml.parse().unwrap();
            let head = Head::of(&el);
            assert_eq!(
                head,
                Head {
                    from: el.attr("from"),
                    to: el.attr("to"),
                    id: el.attr("id"),
                    type_: el.attr("type"),
                },
                "{xml}"
            );
        }
    }

    #[test]
    fn times_are_xep0082_utc() {
        assert_eq!(xep0082(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(xep0082(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
        assert_eq!(
            "2026-11-18T11:06:40.123Z".parse::<DateTime>().unwrap(),
            date_time(1_795_000_000_123)
        );
    }
}
