//! A stanza the reader skipped for being over a limit: what is left of it
//! (its start tag's addressing, bounded) and the error its sender gets.

use minidom::Element;
use xmpp_parsers::jid::Jid;

use super::limits::Limit;
use crate::stanza::{DefinedCondition, ErrorType, element, error_element, ns};

/// The longest attribute value kept from a refused stanza's start tag: a JID
/// is at most 3071 bytes (RFC 7622 §3.1), and a longer value is no address
/// an answer could go to.
pub(crate) const MAX_KEPT_VALUE: usize = 3071;

/// A stanza over a limit, skipped without being parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The element name (`message`, `iq`, ...), `None` if it was over the
    /// name limit.
    pub name: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub id: Option<String>,
    pub type_: Option<String>,
    pub limit: Limit,
}

impl Refused {
    /// The `policy-violation` error its sender gets (RFC 6120 §8.3.3.12),
    /// from the stanza's `to` (or the service domain). None where no error
    /// may be sent back: errors, results, presence, and stanzas without a
    /// usable sender.
    pub fn reply(&self, service_domain: &str) -> Option<Element> {
        let name = self.name.as_deref()?;
        if name != "message" && name != "iq" {
            return None;
        }
        if matches!(self.type_.as_deref(), Some("error" | "result")) {
            return None;
        }
        let sender = self.from.as_deref().filter(|f| Jid::new(f).is_ok())?;
        let from = self
            .to
            .as_deref()
            .filter(|t| Jid::new(t).is_ok())
            .unwrap_or(service_domain);
        let mut reply = element(
            name,
            ns::COMPONENT,
            &[("type", "error"), ("from", from), ("to", sender)],
        );
        if let Some(id) = &self.id {
            crate::stanza::set_attr(&mut reply, "id", id.as_str());
        }
        let text = format!("the stanza is over {}; it was not processed", self.limit);
        reply.append_child(error_element(
            ErrorType::Modify,
            DefinedCondition::PolicyViolation,
            &text,
            Some(from),
        ));
        Some(reply)
    }
}

/// Decodes an attribute value as it was on the wire (the five predefined
/// entities and character references); None if it is not valid.
pub(crate) fn unescape(raw: &[u8]) -> Option<String> {
    let raw = std::str::from_utf8(raw).ok()?;
    if !raw.contains('&') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let semi = rest[amp..].find(';')? + amp;
        let entity = &rest[amp + 1..semi];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    entity.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str, type_: Option<&str>) -> Refused {
        Refused {
            name: Some(name.into()),
            from: Some("mallory@localhost/x".into()),
            to: Some("alice\\40localhost@chat.localhost".into()),
            id: Some("m1".into()),
            type_: type_.map(Into::into),
            limit: Limit::AttributeBytes(4096),
        }
    }

    #[test]
    fn a_message_over_a_limit_gets_a_policy_violation_naming_the_key() {
        let reply = refused("message", Some("chat"))
            .reply("chat.localhost")
            .unwrap();
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("to"), Some("mallory@localhost/x"));
        assert_eq!(
            reply.attr("from"),
            Some("alice\\40localhost@chat.localhost")
        );
        assert_eq!(reply.attr("id"), Some("m1"));
        let err = reply.get_child("error", ns::COMPONENT).unwrap();
        assert_eq!(err.attr("type"), Some("modify"));
        assert!(err.has_child("policy-violation", ns::STANZAS));
        assert_eq!(
            err.get_child("text", ns::STANZAS).unwrap().text(),
            "the stanza is over limits.max_attribute_bytes (4096 bytes); it was not processed"
        );
    }

    #[test]
    fn errors_results_presence_and_senderless_stanzas_get_no_answer() {
        assert!(refused("message", Some("error")).reply("c").is_none());
        assert!(refused("iq", Some("result")).reply("c").is_none());
        assert!(refused("presence", None).reply("c").is_none());
        let mut r = refused("message", None);
        r.from = None;
        assert!(r.reply("c").is_none());
        assert!(refused("iq", Some("get")).reply("c").is_some());
    }

    #[test]
    fn without_a_to_the_answer_comes_from_the_service() {
        let mut r = refused("message", None);
        r.to = None;
        assert_eq!(
            r.reply("chat.localhost").unwrap().attr("from"),
            Some("chat.localhost")
        );
    }

    #[test]
    fn attribute_values_are_decoded_as_xml_would() {
        assert_eq!(
            unescape(b"a&amp;b&apos;&#x41;&#66;").as_deref(),
            Some("a&b'AB")
        );
        assert_eq!(unescape(b"a&bogus;"), None);
        assert_eq!(unescape(b"a&amp"), None);
        assert_eq!(unescape(&[0xff]), None);
    }
}
