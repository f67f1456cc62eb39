//! Tracked addresses: `bob\40example.org@chat.example.org` stands for
//! `bob@example.org`, the way XEP-0100 gateways name legacy contacts, with the
//! contact's bare JID escaped into the node by XEP-0106.

use xmpp_parsers::jid::{BareJid, FullJid, Jid};

/// XEP-0106 §3.2: the characters that may not appear in a node and their
/// escape sequences.
const ESCAPES: [(char, &str); 10] = [
    (' ', "\\20"),
    ('"', "\\22"),
    ('&', "\\26"),
    ('\'', "\\27"),
    ('/', "\\2f"),
    (':', "\\3a"),
    ('<', "\\3c"),
    ('>', "\\3e"),
    ('@', "\\40"),
    ('\\', "\\5c"),
];

/// Escapes a string for use as a JID node (XEP-0106 §4.2).
///
/// A backslash is escaped only where it would otherwise be read as the start
/// of an escape sequence, as the XEP requires, so `a\b` stays `a\b`.
pub fn escape_node(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    for (i, c) in raw.char_indices() {
        if c == '\\' {
            if starts_with_escape(&raw[i..]) {
                out.push_str("\\5c");
            } else {
                out.push('\\');
            }
            continue;
        }
        match ESCAPES.iter().find(|(plain, _)| *plain == c) {
            Some((_, seq)) => out.push_str(seq),
            None => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_node`] (XEP-0106 §4.3); sequences that are not escapes
/// stay as they are.
pub fn unescape_node(node: &str) -> String {
    let mut out = String::with_capacity(node.len());
    let mut rest = node;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match ESCAPES
            .iter()
            .find(|(_, seq)| tail.len() >= 3 && tail[..3].eq_ignore_ascii_case(seq))
        {
            Some((plain, _)) => {
                out.push(*plain);
                rest = &tail[3..];
            }
            None => {
                out.push('\\');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn starts_with_escape(s: &str) -> bool {
    s.len() >= 3
        && ESCAPES
            .iter()
            .any(|(_, seq)| s[..3].eq_ignore_ascii_case(seq))
}

/// The component's view of addresses: which JIDs are tracked addresses and
/// what they stand for.
#[derive(Clone, Debug)]
pub struct Addresses {
    domain: BareJid,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AddressError {
    #[error("{0} is not an address at this service")]
    NotOurs(String),
    #[error("{0} does not name a contact (expected user\\40domain@service)")]
    NoContact(String),
    #[error("{0} does not stand for a valid XMPP address: {1}")]
    Malformed(String, String),
    #[error("{0} would route back to this service")]
    Loop(String),
}

impl Addresses {
    pub fn new(domain: BareJid) -> Self {
        Self { domain }
    }

    pub fn domain(&self) -> &BareJid {
        &self.domain
    }

    /// True for the component's own domain (no node), where its services live.
    pub fn is_service(&self, jid: &Jid) -> bool {
        jid.node().is_none() && jid.domain() == self.domain.domain()
    }

    pub fn is_ours(&self, jid: &Jid) -> bool {
        jid.domain() == self.domain.domain()
    }

    /// The tracked address that stands for `user` (any resource dropped).
    pub fn tracked(&self, user: &BareJid) -> BareJid {
        let node = escape_node(user.as_str());
        BareJid::new(&format!("{}@{}", node, self.domain.domain()))
            .expect("an escaped bare JID is a valid node")
    }

    /// The tracked address of `user`, keeping `user`'s resource so that
    /// replies reach the same client.
    pub fn tracked_full(&self, user: &Jid) -> Jid {
        let bare = self.tracked(&user.to_bare());
        match user.resource() {
            Some(res) => Jid::from(bare.with_resource(res)),
            None => Jid::from(bare),
        }
    }

    /// The real contact a tracked address stands for, keeping the resource.
    pub fn contact_of(&self, tracked: &Jid) -> Result<Jid, AddressError> {
        if !self.is_ours(tracked) {
            return Err(AddressError::NotOurs(tracked.to_string()));
        }
        let node = tracked
            .node()
            .ok_or_else(|| AddressError::NoContact(tracked.to_string()))?;
        let real = unescape_node(node.as_str());
        let bare = BareJid::new(&real)
            .map_err(|e| AddressError::Malformed(tracked.to_string(), e.to_string()))?;
        if bare.domain() == self.domain.domain() {
            return Err(AddressError::Loop(tracked.to_string()));
        }
        if bare.node().is_none() {
            return Err(AddressError::NoContact(tracked.to_string()));
        }
        Ok(match tracked.resource() {
            Some(res) => Jid::from(FullJid::from_parts(bare.node(), bare.domain(), res)),
            None => Jid::from(bare),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Addresses {
        Addresses::new(BareJid::new("chat.localhost").unwrap())
    }

    #[test]
    fn xep0106_examples_round_trip() {
        // XEP-0106 §5, table 3 (the node parts of its examples).
        let cases = [
            ("space cadet", "space\\20cadet"),
            ("call me \"ishmael\"", "call\\20me\\20\\22ishmael\\22"),
            ("at&t guy", "at\\26t\\20guy"),
            ("d'artagnan", "d\\27artagnan"),
            ("/.fanboy", "\\2f.fanboy"),
            ("::foo::", "\\3a\\3afoo\\3a\\3a"),
            ("<foo>", "\\3cfoo\\3e"),
            ("user@host", "user\\40host"),
            ("c:\\net", "c\\3a\\net"),
            ("c:\\\\net", "c\\3a\\\\net"),
            ("c:\\cool stuff", "c\\3a\\cool\\20stuff"),
            ("c:\\5commas", "c\\3a\\5c5commas"),
        ];
        for (plain, escaped) in cases {
            assert_eq!(escape_node(plain), escaped, "escaping {plain}");
            assert_eq!(unescape_node(escaped), plain, "unescaping {escaped}");
        }
    }

    #[test]
    fn tracked_address_stands_for_the_contact() {
        let a = addrs();
        let bob = BareJid::new("bob@localhost").unwrap();
        let tracked = a.tracked(&bob);
        assert_eq!(tracked.as_str(), "bob\\40localhost@chat.localhost");
        assert_eq!(
            a.contact_of(&Jid::from(tracked)).unwrap().as_str(),
            "bob@localhost"
        );
    }

    #[test]
    fn resources_carry_across() {
        let a = addrs();
        let alice = Jid::new("alice@localhost/phone").unwrap();
        let tracked = a.tracked_full(&alice);
        assert_eq!(tracked.as_str(), "alice\\40localhost@chat.localhost/phone");
        assert_eq!(a.contact_of(&tracked).unwrap(), alice);
    }

    #[test]
    fn service_domain_and_loops_are_not_contacts() {
        let a = addrs();
        let service = Jid::new("chat.localhost").unwrap();
        assert!(a.is_service(&service));
        assert!(matches!(
            a.contact_of(&service),
            Err(AddressError::NoContact(_))
        ));
        let looped = Jid::new("x\\40chat.localhost@chat.localhost").unwrap();
        assert!(matches!(a.contact_of(&looped), Err(AddressError::Loop(_))));
        let domain_only = Jid::new("nobody@chat.localhost").unwrap();
        assert!(matches!(
            a.contact_of(&domain_only),
            Err(AddressError::NoContact(_))
        ));
        let elsewhere = Jid::new("bob\\40localhost@other.example").unwrap();
        assert!(matches!(
            a.contact_of(&elsewhere),
            Err(AddressError::NotOurs(_))
        ));
    }
}
