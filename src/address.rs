//! Tracked addresses: `bob\40example.org@chat.example.org` stands for
//! `bob@example.org`, the way XEP-0100 gateways name legacy contacts, with the
//! contact's bare JID escaped into the node by XEP-0106.

use xmpp_parsers::jid::{BareJid, DomainRef, FullJid, Jid, NodePart, NodeRef};

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
    escape_node_into(raw, &mut out);
    out
}

/// [`escape_node`], appending to `out`. An escape sequence is a backslash
/// and two hex digits, so escaping `a@b` is escaping `a`, then `@`, then
/// `b`: no look-ahead from a backslash in `a` can take in the `@`.
fn escape_node_into(raw: &str, out: &mut String) {
    for (i, c) in raw.char_indices() {
        if c == '\\' {
            if starts_with_escape(&raw.as_bytes()[i..]) {
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
}

/// Reverses [`escape_node`] (XEP-0106 §4.3); sequences that are not escapes
/// stay as they are.
pub fn unescape_node(node: &str) -> String {
    let mut out = String::with_capacity(node.len());
    let mut rest = node;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        // `pos` is the backslash, one byte; every escape sequence is ASCII,
        // so comparing bytes never cuts into a multi-byte character, and a
        // match of three ASCII bytes ends on a character boundary.
        let tail = &rest[pos..];
        match escape_at(tail.as_bytes()) {
            Some(plain) => {
                out.push(plain);
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

/// The character whose escape sequence `s` starts with, if any.
fn escape_at(s: &[u8]) -> Option<char> {
    let head = s.get(..3)?;
    ESCAPES
        .iter()
        .find(|(_, seq)| head.eq_ignore_ascii_case(seq.as_bytes()))
        .map(|(plain, _)| *plain)
}

fn starts_with_escape(s: &[u8]) -> bool {
    escape_at(s).is_some()
}

/// The component's view of addresses: which JIDs are tracked addresses and
/// what they stand for.
#[derive(Clone, Debug, PartialEq)]
pub struct Addresses {
    domain: BareJid,
    /// Issue 11: the desks' names, lower case: their addresses are neither
    /// rooms nor tracked addresses.
    desks: Vec<String>,
}

/// Issue 11: what an address at a desk names (xep/desk.md §3).
#[derive(Debug, Clone, PartialEq)]
pub struct DeskTarget {
    pub desk: String,
    /// The customer of a conversation's address; `None` for the desk's own.
    pub customer: Option<BareJid>,
}

/// Between a desk's name and the customer in a conversation's address: an
/// escaped `/`, so the node unescapes to no bare JID and can never be read
/// as a tracked address.
pub const DESK_SEPARATOR: &str = "\\2f";

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
    /// RFC 7622 §3.3: a node is at most 1023 bytes, and escaping a bare JID
    /// into one makes it longer, so a long enough address has no tracked
    /// address.
    #[error("{0} cannot be tracked: its address at this service would be invalid ({1})")]
    Untrackable(String, String),
}

impl Addresses {
    pub fn new(domain: BareJid) -> Self {
        Self {
            domain,
            desks: Vec::new(),
        }
    }

    /// Issue 11: with the desks `names` (lower case).
    pub fn with_desks(domain: BareJid, names: Vec<String>) -> Self {
        Self {
            domain,
            desks: names,
        }
    }

    /// The desk, and the customer if any, that `jid` (at this service) names.
    pub fn desk_of(&self, jid: &Jid) -> Option<DeskTarget> {
        if self.desks.is_empty() || !self.is_ours(jid) {
            return None;
        }
        let node = jid.node()?.as_str();
        if let Some(desk) = self.desks.iter().find(|d| d.as_str() == node) {
            return Some(DeskTarget {
                desk: desk.clone(),
                customer: None,
            });
        }
        let (desk, escaped) = node.split_once(DESK_SEPARATOR)?;
        let desk = self.desks.iter().find(|d| d.as_str() == desk)?;
        let customer = BareJid::new(&unescape_node(escaped)).ok()?;
        if customer.node().is_none() || customer.domain() == self.domain.domain() {
            return None;
        }
        Some(DeskTarget {
            desk: desk.clone(),
            customer: Some(customer),
        })
    }

    /// The desk's own address (`support@chat.localhost`).
    pub fn desk_address(&self, desk: &str) -> Result<BareJid, AddressError> {
        let node = NodePart::new(desk)
            .map_err(|e| AddressError::Malformed(desk.to_owned(), e.to_string()))?;
        Ok(BareJid::from_parts(Some(&node), self.domain.domain()))
    }

    /// The address agents see `customer`'s conversation with `desk` at.
    pub fn desk_conversation(
        &self,
        desk: &str,
        customer: &BareJid,
    ) -> Result<BareJid, AddressError> {
        let mut node = String::with_capacity(desk.len() + 3 + customer.as_str().len() + 8);
        node.push_str(desk);
        node.push_str(DESK_SEPARATOR);
        if let Some(n) = customer.node() {
            escape_node_into(n.as_str(), &mut node);
            node.push_str("\\40");
        }
        escape_node_into(customer.domain().as_str(), &mut node);
        let part = NodePart::new(&node)
            .map_err(|e| AddressError::Untrackable(customer.to_string(), e.to_string()))?;
        Ok(BareJid::from_parts(Some(&part), self.domain.domain()))
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
    pub fn tracked(&self, user: &BareJid) -> Result<BareJid, AddressError> {
        let node = tracked_node(user.node(), user.domain())?;
        Ok(BareJid::from_parts(Some(&node), self.domain.domain()))
    }

    /// The tracked address of `user`, keeping `user`'s resource so that
    /// replies reach the same client.
    pub fn tracked_full(&self, user: &Jid) -> Result<Jid, AddressError> {
        // Every stanza's sender goes through here: the address is built
        // from its parts, only the new node being checked (our domain and
        // the sender's resource are valid already), rather than written
        // out and parsed whole.
        let node = tracked_node(user.node(), user.domain())?;
        let domain = self.domain.domain();
        Ok(match user.resource() {
            Some(res) => Jid::from(FullJid::from_parts(Some(&node), domain, res)),
            None => Jid::from(BareJid::from_parts(Some(&node), domain)),
        })
    }

    /// The room a JID at this service names, and the nickname if it has a
    /// resource. Tracked addresses (nodes holding an escaped `@`) are not
    /// rooms.
    pub fn room_of(&self, jid: &Jid) -> Option<(BareJid, Option<String>)> {
        if !self.is_ours(jid) {
            return None;
        }
        let node = jid.node()?.as_str();
        if !crate::config::is_room_name(node) {
            return None;
        }
        Some((jid.to_bare(), jid.resource().map(|r| r.as_str().to_owned())))
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

/// The node of the tracked address for the bare JID `node@domain`: that JID
/// escaped, checked (nodeprep, length) as any JID's node is.
fn tracked_node(node: Option<&NodeRef>, domain: &DomainRef) -> Result<NodePart, AddressError> {
    let mut escaped = String::with_capacity(node.map_or(0, |n| n.len() + 3) + domain.len() + 8);
    if let Some(node) = node {
        escape_node_into(node.as_str(), &mut escaped);
        escaped.push_str("\\40");
    }
    escape_node_into(domain.as_str(), &mut escaped);
    NodePart::new(&escaped)
        .map(|part| part.into_owned())
        .map_err(|e| {
            let bare = BareJid::from_parts(node, domain);
            AddressError::Untrackable(bare.to_string(), e.to_string())
        })
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
        let tracked = a.tracked(&bob).unwrap();
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
        let tracked = a.tracked_full(&alice).unwrap();
        assert_eq!(tracked.as_str(), "alice\\40localhost@chat.localhost/phone");
        assert_eq!(a.contact_of(&tracked).unwrap(), alice);
    }

    #[test]
    fn rooms_and_tracked_addresses_do_not_overlap() {
        let a = addrs();
        let room = Jid::new("team@chat.localhost/alice").unwrap();
        let (bare, nick) = a.room_of(&room).unwrap();
        assert_eq!(
            (bare.as_str(), nick.as_deref()),
            ("team@chat.localhost", Some("alice"))
        );
        let tracked = Jid::new("bob\\40localhost@chat.localhost").unwrap();
        assert!(a.room_of(&tracked).is_none());
        assert!(a.room_of(&Jid::new("team@elsewhere").unwrap()).is_none());
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

    #[test]
    fn a_backslash_before_a_multibyte_character_is_plain() {
        // The inputs that crashed tidemark (issue 7): byte slicing inside `€`.
        for raw in ["x\\€", "z\\€@localhost", "\\€", "\\2€", "a\\"] {
            assert_eq!(unescape_node(&escape_node(raw)), raw);
            assert_eq!(unescape_node(raw), raw, "no escape in {raw:?}");
        }
        assert_eq!(escape_node("x\\€"), "x\\€");
    }

    #[test]
    fn a_sender_too_long_to_track_is_an_error_not_a_panic() {
        let a = addrs();
        // A node of 1015 bytes is valid; escaped with `\40localhost` it is
        // 1027, over RFC 7622's 1023.
        let user = BareJid::new(&format!("{}@localhost", "a".repeat(1015))).unwrap();
        assert!(matches!(
            a.tracked(&user),
            Err(AddressError::Untrackable(..))
        ));
        let full = Jid::new(&format!("{}@localhost/r", "a".repeat(1015))).unwrap();
        assert!(matches!(
            a.tracked_full(&full),
            Err(AddressError::Untrackable(..))
        ));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Strings dense in the characters that matter: backslashes, hex
        /// digits, the escaped set and multi-byte characters.
        fn tricky() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just('\\'),
                    Just('5'),
                    Just('c'),
                    Just('C'),
                    Just('2'),
                    Just('0'),
                    Just('4'),
                    Just('€'),
                    Just('é'),
                    Just('😀'),
                    proptest::sample::select(ESCAPES.iter().map(|(c, _)| *c).collect::<Vec<_>>()),
                    any::<char>(),
                ],
                0..24,
            )
            .prop_map(|cs| cs.into_iter().collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn unescape_reverses_escape(raw in tricky()) {
                prop_assert_eq!(unescape_node(&escape_node(&raw)), raw);
            }

            #[test]
            fn unescape_reverses_escape_for_any_string(raw in any::<String>()) {
                prop_assert_eq!(unescape_node(&escape_node(&raw)), raw);
            }

            #[test]
            fn escaped_nodes_hold_no_forbidden_character(raw in tricky()) {
                let escaped = escape_node(&raw);
                for (plain, _) in ESCAPES.iter().filter(|(c, _)| *c != '\\') {
                    prop_assert!(!escaped.contains(*plain), "{:?} in {:?}", plain, escaped);
                }
            }

            #[test]
            fn tracked_addresses_are_the_jids_their_text_parses_to(raw in tricky(), any_raw in any::<String>()) {
                let a = Addresses::new(BareJid::new("chat.localhost").unwrap());
                for s in [&raw, &any_raw] {
                    for user in [format!("{s}@localhost/r{s}"), format!("{s}@localhost"), format!("x@{s}/r")] {
                        let Ok(user) = Jid::new(&user) else { continue };
                        // What `tracked_full` built before: the text of
                        // the address, parsed as any JID is.
                        let parsed = BareJid::new(&format!(
                            "{}@chat.localhost",
                            escape_node(user.to_bare().as_str())
                        ))
                        .map(|bare| match user.resource() {
                            Some(res) => Jid::from(bare.with_resource(res)),
                            None => Jid::from(bare),
                        });
                        match (a.tracked_full(&user), parsed) {
                            (Ok(built), Ok(parsed)) => {
                                prop_assert_eq!(&built, &parsed);
                                prop_assert_eq!(built.as_str(), parsed.as_str());
                                prop_assert_eq!(built.node(), parsed.node());
                                prop_assert_eq!(built.resource(), parsed.resource());
                            }
                            (Err(AddressError::Untrackable(who, why)), Err(e)) => {
                                prop_assert_eq!(who, user.to_bare().to_string());
                                prop_assert_eq!(why, e.to_string());
                            }
                            (built, parsed) => prop_assert!(false, "{:?} against {:?}", built, parsed),
                        }
                    }
                }
            }

            #[test]
            fn nothing_panics_on_any_node_or_address(raw in tricky(), any_raw in any::<String>()) {
                let a = Addresses::new(BareJid::new("chat.localhost").unwrap());
                for s in [&raw, &any_raw] {
                    let _ = unescape_node(s);
                    let _ = escape_node(s);
                    if let Ok(jid) = Jid::new(&format!("{s}@chat.localhost/r"))
                        && let Ok(contact) = a.contact_of(&jid)
                    {
                        let _ = a.tracked_full(&contact);
                    }
                    if let Ok(user) = BareJid::new(&format!("{s}@localhost")) {
                        let _ = a.tracked(&user);
                    }
                }
            }
        }
    }
}
