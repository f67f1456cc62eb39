//! Seeded mutations of corpus stanzas: byte flips, splices, attribute
//! duplication and lengthening, deep nesting, JID mutations (XEP-0106
//! escapes, odd Unicode, over-long parts), truncation.

/// SplitMix64: small, fast, and the same sequence for the same seed on
/// every machine, so a finding replays from its seed and index.
pub struct Rng(u64);

impl Rng {
    /// The generator for input number `n` of a run seeded with `seed`.
    pub fn for_input(seed: u64, n: u64) -> Self {
        let mut r = Self(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const BYTES: &[u8] = b"<>&'\"\\/=:@ \n\t\0\x7f\xff\xc3\xe2\x80";

const SNIPPETS: &[&str] = &[
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x10FFFF;",
    "&#xD800;",
    "&unknown;",
    "<![CDATA[<x>]]>",
    "<?pi x?>",
    "<!-- c -->",
    "<!DOCTYPE x>",
    "\u{202e}",
    "\u{fffd}",
    "\u{200b}",
    "\u{301}",
    "€",
    "𝄞",
    "\\",
    "\\5c",
    "\\40",
    "\\20",
    "\\€",
    " xmlns='urn:x'",
    " xmlns:p='urn:p'",
    " p:a='1'",
    " xml:lang='x'",
    "<body>b</body>",
    "<request xmlns='urn:xmpp:receipts'/>",
    "<markable xmlns='urn:xmpp:chat-markers:0'/>",
    "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
    "<received xmlns='urn:xmpp:receipts' id='m1'/>",
    "<x xmlns='http://jabber.org/protocol/muc'/>",
    "<status>s</status>",
    "<show>away</show>",
    "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
    "<stanza-id xmlns='urn:xmpp:sid:0' id='1-1' by='team@chat.localhost'/>",
    "</message>",
    "<message>",
];

const TYPES: &[&str] = &[
    "chat",
    "error",
    "groupchat",
    "headline",
    "normal",
    "get",
    "set",
    "result",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "unsubscribed",
    "probe",
    "unavailable",
    "",
    "CHAT",
    "bogus",
];

const NODE_PARTS: &[&str] = &[
    "alice", "bob", "carol", "\\40", "\\5c", "\\20", "\\2f", "\\3a", "\\", "\\€", "\\4", "\\zz",
    "\\4€", "€", "\u{301}", "\u{202e}", "\u{fffd}", "ß", "İ", "ﬀ", "😀", "\u{200b}", "Ω", "a.b",
    "x",
];
const DOMAINS: &[&str] = &[
    "localhost",
    "chat.localhost",
    "example.org",
    "xn--nxasmq6b",
    "ÉXAMPLE.org",
    "[::1]",
    "127.0.0.1",
    "a..b",
    "",
];

/// A JID as hostile senders write them: tracked-looking nodes with broken
/// escapes, odd Unicode, long parts, missing or extra separators.
fn jid(rng: &mut Rng) -> String {
    let mut node = String::new();
    for _ in 0..=rng.below(4) {
        let part: &&str = rng.pick(NODE_PARTS);
        node.push_str(part);
    }
    if rng.chance(8) {
        node = node.repeat(1 + rng.below(400));
    }
    let tracked = rng.chance(50);
    let mut out = if tracked {
        format!("{node}\\40{}@chat.localhost", rng.pick(DOMAINS))
    } else {
        format!("{node}@{}", rng.pick(DOMAINS))
    };
    if rng.chance(10) {
        out = out.replacen('@', "", 1);
    }
    if rng.chance(40) {
        out.push('/');
        let part: &&str = rng.pick(NODE_PARTS);
        out.push_str(part);
        if rng.chance(5) {
            out.push_str(&"r".repeat(1 + rng.below(3000)));
        }
    }
    escape_attr(&out)
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
}

/// The byte ranges of attribute values (`='...'` or `="..."`) in `b`.
fn attr_values(b: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = vec![];
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'=' && (b[i + 1] == b'\'' || b[i + 1] == b'"') {
            let q = b[i + 1];
            if let Some(len) = b[i + 2..].iter().position(|&c| c == q) {
                // name start: back to the space before the name
                let name = b[..i].iter().rposition(|&c| c == b' ').map_or(i, |p| p + 1);
                out.push((name, i + 2, i + 2 + len));
                i += 2 + len;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn attr_named<'a>(
    b: &[u8],
    vals: &'a [(usize, usize, usize)],
    names: &[&[u8]],
) -> Vec<&'a (usize, usize, usize)> {
    vals.iter()
        .filter(|(n, s, _)| names.iter().any(|want| &b[*n..*s - 2] == *want))
        .collect()
}

/// One mutated input made from the corpus.
pub fn input(corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = rng.pick(corpus).clone();
    for _ in 0..=rng.below(3) {
        mutate_once(&mut b, corpus, rng);
    }
    b.truncate(2 * 1024 * 1024);
    b
}

fn mutate_once(b: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) {
    let len = b.len().max(1);
    match rng.below(100) {
        0..=11 => {
            let i = rng.below(len).min(b.len().saturating_sub(1));
            if !b.is_empty() {
                b[i] = if rng.chance(70) {
                    *rng.pick(BYTES)
                } else {
                    rng.next() as u8
                };
            }
        }
        12..=21 => {
            let i = rng.below(b.len() + 1);
            let s = rng.pick(SNIPPETS).as_bytes().to_vec();
            b.splice(i..i, s);
        }
        22..=27 => {
            let i = rng.below(b.len() + 1);
            let j = (i + 1 + rng.below(16)).min(b.len());
            b.drain(i..j);
        }
        28..=35 => {
            let other = rng.pick(corpus);
            let (a, z) = (rng.below(other.len()), rng.below(other.len()));
            let piece = other[a.min(z)..a.max(z)].to_vec();
            let i = rng.below(b.len() + 1);
            let j = (i + rng.below(32)).min(b.len());
            b.splice(i..j, piece);
        }
        36..=43 => {
            let vals = attr_values(b);
            if let Some(&(n, _, e)) = (!vals.is_empty()).then(|| rng.pick(&vals)) {
                let attr = b[n..=e].to_vec();
                let mut copy = vec![b' '];
                copy.extend(attr);
                b.splice(e + 1..e + 1, copy);
            }
        }
        44..=51 => {
            let vals = attr_values(b);
            if let Some(&(_, s, _)) = (!vals.is_empty()).then(|| rng.pick(&vals)) {
                let n = *rng.pick(&[
                    64, 256, 257, 1023, 1024, 3071, 3072, 4095, 4096, 4097, 8191, 9216, 70_000,
                ]);
                let c = *rng.pick(b"a\\@/");
                b.splice(s..s, std::iter::repeat_n(c, n));
            }
        }
        52..=57 => {
            // deep nesting, inside the stanza's root element
            let depth = if rng.chance(20) {
                *rng.pick(&[1000, 20_000, 100_000])
            } else {
                *rng.pick(&[2, 16, 63, 64, 65, 200])
            };
            if let Some(close) = b.windows(2).rposition(|w| w == b"</") {
                let mut nest = b"<a>".repeat(depth);
                nest.extend(b"</a>".repeat(depth));
                b.splice(close..close, nest);
            } else if let Some(gt) = b.iter().position(|&c| c == b'>') {
                // an empty root: open it up
                let mut nest = b"<a>".repeat(depth);
                nest.extend(b"</a>".repeat(depth));
                if gt > 0 && b[gt - 1] == b'/' {
                    let name_end = b.iter().position(|&c| c == b' ' || c == b'/').unwrap_or(1);
                    let mut tail = nest;
                    tail.extend(b"</");
                    tail.extend(b[1..name_end].to_vec());
                    tail.push(b'>');
                    b.splice(gt - 1..=gt, std::iter::once(b'>').chain(tail));
                }
            }
        }
        58..=73 => {
            let vals = attr_values(b);
            let targets = attr_named(b, &vals, &[b"from", b"to", b"conversation", b"by", b"jid"]);
            if let Some(&&(_, s, e)) = (!targets.is_empty()).then(|| rng.pick(&targets)) {
                let j = jid(rng);
                b.splice(s..e, j.into_bytes());
            }
        }
        74..=79 => {
            let vals = attr_values(b);
            let targets = attr_named(b, &vals, &[b"type"]);
            if let Some(&&(_, s, e)) = (!targets.is_empty()).then(|| rng.pick(&targets)) {
                b.splice(s..e, rng.pick(TYPES).bytes());
            }
        }
        80..=85 => {
            let vals = attr_values(b);
            let targets = attr_named(b, &vals, &[b"id"]);
            if let Some(&&(_, s, e)) = (!targets.is_empty()).then(|| rng.pick(&targets)) {
                let id = *rng.pick(&["m1", "g1", "x1", "1-1", "", "tm-1-1", "\\", "€", "q"]);
                b.splice(s..e, id.bytes());
            }
        }
        86..=90 => {
            // a copy of a child element (or any tag) somewhere else
            let starts: Vec<usize> = b
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == b'<')
                .map(|(i, _)| i)
                .collect();
            if starts.len() > 1 {
                let a = *rng.pick(&starts[1..]);
                if let Some(z) = b[a..].iter().position(|&c| c == b'>') {
                    let piece = b[a..=a + z].to_vec();
                    let i = *rng.pick(&starts[1..]);
                    b.splice(i..i, piece);
                }
            }
        }
        91..=95 => {
            let cut = rng.below(b.len() + 1);
            b.truncate(cut);
        }
        _ => {
            // a huge body or text
            if let Some(close) = b.windows(2).rposition(|w| w == b"</") {
                let n = *rng.pick(&[65_536, 65_537, 200_000, 600_000]);
                let mut body = b"<body>".to_vec();
                body.extend(std::iter::repeat_n(b'y', n));
                body.extend(b"</body>");
                b.splice(close..close, body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<Vec<u8>> {
        vec![
            b"<message type='chat' id='m1' from='alice@localhost/res' to='bob\\40localhost@chat.localhost'><body>hi</body></message>".to_vec(),
            b"<presence type='subscribe' from='alice@localhost/res' to='bob\\40localhost@chat.localhost'/>".to_vec(),
        ]
    }

    #[test]
    fn an_input_depends_only_on_the_seed_and_its_number() {
        let c = corpus();
        for n in 0..200 {
            let a = input(&c, &mut Rng::for_input(7, n));
            let b = input(&c, &mut Rng::for_input(7, n));
            assert_eq!(a, b, "input {n} of seed 7 differs between two runs");
        }
        let differ = (0..50)
            .filter(|&n| {
                input(&c, &mut Rng::for_input(7, n)) != input(&c, &mut Rng::for_input(8, n))
            })
            .count();
        assert!(
            differ > 40,
            "seeds 7 and 8 gave the same inputs {} times in 50",
            50 - differ
        );
    }

    #[test]
    fn attribute_values_are_found_with_their_names() {
        let b = b"<iq type='get' to=\"chat.localhost\" id='q1'/>";
        let found: Vec<(String, String)> = attr_values(b)
            .into_iter()
            .map(|(n, s, e)| {
                (
                    String::from_utf8_lossy(&b[n..s - 2]).into_owned(),
                    String::from_utf8_lossy(&b[s..e]).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [("type", "get"), ("to", "chat.localhost"), ("id", "q1")]
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn jids_include_broken_escapes_before_multibyte_characters() {
        let mut rng = Rng::for_input(1, 0);
        let found = (0..5000)
            .map(|_| jid(&mut rng))
            .any(|j| j.contains("\\€") || j.contains("\\4€"));
        assert!(
            found,
            "no JID with a backslash before a multi-byte character in 5000"
        );
    }
}
