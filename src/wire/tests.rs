use super::*;
use crate::stanza::ns;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
                      xmlns='jabber:component:accept' id='abc123' from='chat.localhost'>";

/// Everything the decoder gives for `input` fed in these pieces, up to the
/// first error.
fn frames_of(pieces: &[&[u8]], limits: Limits) -> Result<Vec<Frame>, WireError> {
    let mut d = Decoder::new(limits);
    let mut out = Vec::new();
    for p in pieces {
        d.feed(p);
        while let Some(f) = d.next_frame()? {
            out.push(f);
        }
    }
    Ok(out)
}

fn frames(input: &str) -> Result<Vec<Frame>, WireError> {
    frames_of(&[input.as_bytes()], Limits::default())
}

fn stanza(f: &Frame) -> &Element {
    match f {
        Frame::Stanza(el) => el,
        other => panic!("expected a stanza, got {other:?}"),
    }
}

fn refused(f: &Frame) -> &Refused {
    match f {
        Frame::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_header_and_stanzas_come_out_in_the_stream_namespace() {
    let input = format!(
        "{HEADER}\n  <message to='a@b' id='1'><body>hi</body></message> \
         <stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
    );
    let f = frames(&input).unwrap();
    assert_eq!(f.len(), 4, "{f:?}");
    assert_eq!(
        f[0],
        Frame::Header {
            id: Some("abc123".into()),
            from: Some("chat.localhost".into()),
            ns: ns::COMPONENT.into()
        }
    );
    let msg = stanza(&f[1]);
    assert!(msg.is("message", ns::COMPONENT));
    assert_eq!(msg.get_child("body", ns::COMPONENT).unwrap().text(), "hi");
    assert!(stanza(&f[2]).is("error", ns::STREAM));
    assert_eq!(f[3], Frame::End);
}

/// Markup that tempts a naive scanner: `>` and `/` in attribute values, both
/// quote kinds, CDATA with tags in it, references, self-closing tags,
/// multi-byte characters, whitespace inside tags.
const TRICKY: &str = "<message from='a@b/x' to=\"c@d\" id='q&apos;&gt;/&lt;' >\
    <body>€ 😀 &amp; &#x263A; a&lt;b &gt; <![CDATA[</message> ]] ]> <x/>]]></body>\
    <thread parent=\"a'/>\"/><x xmlns='urn:x' a = 'v' /></message\n>\
    <iq type='get' id='2'/>";

#[test]
fn every_split_point_gives_the_same_frames() {
    let input = format!("{HEADER}{TRICKY}</stream:stream>");
    let whole = frames(&input).unwrap();
    assert_eq!(whole.len(), 4, "{whole:?}");
    let msg = stanza(&whole[1]);
    assert_eq!(msg.attr("id"), Some("q'>/<"));
    assert_eq!(
        msg.get_child("body", ns::COMPONENT).unwrap().text(),
        "€ 😀 & \u{263A} a<b > </message> ]] ]> <x/>"
    );
    assert_eq!(
        msg.get_child("thread", ns::COMPONENT)
            .unwrap()
            .attr("parent"),
        Some("a'/>")
    );
    assert!(stanza(&whole[2]).is("iq", ns::COMPONENT));

    let bytes = input.as_bytes();
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(
            frames_of(&[a, b], Limits::default()).unwrap(),
            whole,
            "split at {at}"
        );
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(frames_of(&singles, Limits::default()).unwrap(), whole);
}

#[test]
fn every_split_point_of_a_refused_stanza_gives_the_same_refusal() {
    let limits = Limits {
        max_attribute_bytes: 16,
        ..Limits::default()
    };
    let input = format!(
        "{HEADER}<message from='m@x/r' id='{}' to='c@d' type='chat'><body>x</body></message><iq id='ok'/>",
        "i".repeat(40)
    );
    let whole = frames_of(&[input.as_bytes()], limits).unwrap();
    assert_eq!(whole.len(), 3, "{whole:?}");
    let r = refused(&whole[1]);
    assert_eq!(r.limit, Limit::AttributeBytes(16));
    assert_eq!(r.from.as_deref(), Some("m@x/r"));
    assert_eq!(r.to.as_deref(), Some("c@d"));
    assert_eq!(r.type_.as_deref(), Some("chat"));
    assert_eq!(stanza(&whole[2]).attr("id"), Some("ok"));
    let bytes = input.as_bytes();
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(frames_of(&[a, b], limits).unwrap(), whole, "split at {at}");
    }
}

/// Feeds `attack` then a normal stanza in 4 KB pieces, as a socket would:
/// returns the frames and the most the decoder ever held.
fn through(attack: &str) -> (Vec<Frame>, usize) {
    let input = format!(
        "{HEADER}{attack}<message from='b@localhost/r' id='after'><body>fine</body></message>"
    );
    let mut d = Decoder::new(Limits::default());
    let mut out = Vec::new();
    let mut held = 0;
    for piece in input.as_bytes().chunks(4096) {
        d.feed(piece);
        held = held.max(d.buffered());
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f);
        }
    }
    (out, held)
}

#[test]
fn a_9_kb_id_is_refused_and_the_next_stanza_parses() {
    let attack = format!(
        "<message from='mallory@localhost/x' to='alice\\40localhost@chat.localhost' type='chat' id='{}'><body>x</body></message>",
        "a".repeat(9 * 1024)
    );
    let (f, _) = through(&attack);
    assert_eq!(f.len(), 3, "{f:?}");
    let r = refused(&f[1]);
    assert_eq!(r.limit, Limit::AttributeBytes(4096));
    assert_eq!(r.id, None, "an over-long id is not kept");
    let reply = r.reply("chat.localhost").unwrap();
    assert_eq!(reply.attr("to"), Some("mallory@localhost/x"));
    assert!(crate::stanza::to_string(&reply).contains("limits.max_attribute_bytes"));
    assert_eq!(stanza(&f[2]).attr("id"), Some("after"));
}

#[test]
fn nesting_20000_deep_is_refused_without_holding_it() {
    let attack = format!(
        "<message from='mallory@localhost/x' id='deep'>{}{}</message>",
        "<a>".repeat(20_000),
        "</a>".repeat(20_000)
    );
    assert!(attack.len() > 130_000);
    let (f, held) = through(&attack);
    assert_eq!(f.len(), 3, "{f:?}");
    let r = refused(&f[1]);
    assert_eq!(r.limit, Limit::Depth(64));
    assert_eq!(r.id.as_deref(), Some("deep"));
    assert!(held < 16 * 1024, "held {held} bytes of a refused stanza");
    assert_eq!(stanza(&f[2]).attr("id"), Some("after"));
}

#[test]
fn a_600_kb_body_is_refused_holding_at_most_the_limit() {
    let attack = format!(
        "<message from='mallory@localhost/x' id='big' type='chat'><body>{}</body></message>",
        "b".repeat(600 * 1024)
    );
    let (f, held) = through(&attack);
    assert_eq!(f.len(), 3, "{f:?}");
    assert_eq!(refused(&f[1]).limit, Limit::StanzaBytes(512 * 1024));
    assert!(held <= 512 * 1024 + 8192, "held {held} bytes");
    assert_eq!(stanza(&f[2]).attr("id"), Some("after"));
}

#[test]
fn long_names_are_refused() {
    let name = "n".repeat(300);
    let f = frames(&format!(
        "{HEADER}<message from='m@x' id='1'><{name}/></message><iq id='2'/>"
    ))
    .unwrap();
    assert_eq!(refused(&f[1]).limit, Limit::NameBytes(256));
    assert_eq!(refused(&f[1]).name.as_deref(), Some("message"));
    let f = frames(&format!("{HEADER}<message {name}='x'/><iq id='2'/>")).unwrap();
    assert_eq!(refused(&f[1]).limit, Limit::NameBytes(256));
    assert_eq!(stanza(&f[2]).attr("id"), Some("2"));
}

#[test]
fn a_stanza_exactly_at_the_limits_is_parsed() {
    let limits = Limits {
        max_stanza_bytes: 64,
        max_depth: 2,
        max_attribute_bytes: 4,
        max_name_bytes: 4,
    };
    let s = "<iq id='abcd'><a><b/></a></iq>";
    let f = frames_of(&[format!("{HEADER}{s}").as_bytes()], limits).unwrap();
    assert!(
        matches!(
            f[1],
            Frame::Refused(Refused {
                limit: Limit::Depth(2),
                ..
            })
        ),
        "{f:?}"
    );
    let s = "<iq id='abcd'><a>b</a></iq>";
    let f = frames_of(&[format!("{HEADER}{s}").as_bytes()], limits).unwrap();
    assert!(stanza(&f[1]).is("iq", ns::COMPONENT));
    let s = "<iq id='abcde'/>";
    let f = frames_of(&[format!("{HEADER}{s}").as_bytes()], limits).unwrap();
    assert_eq!(refused(&f[1]).limit, Limit::AttributeBytes(4));
    let s = format!("<iq>{}</iq>", "x".repeat(60));
    let f = frames_of(&[format!("{HEADER}{s}").as_bytes()], limits).unwrap();
    assert_eq!(refused(&f[1]).limit, Limit::StanzaBytes(64));
}

#[test]
fn restricted_and_broken_xml_end_the_stream() {
    for bad in [
        "<message><!-- hi --></message>",
        "<!DOCTYPE x><message/>",
        "<message><?pi x?></message>",
        "<message></mesage>",
        "<message a='1' a='<'/>",
        "text<message/>",
        "<message><body>&bogus;</body></message>",
        "<message xmlns:p='urn:p'><q:x/></message>",
    ] {
        let r = frames(&format!("{HEADER}{bad}"));
        assert!(r.is_err(), "{bad}: {r:?}");
    }
    let mut d = Decoder::new(Limits::default());
    d.feed(format!("{HEADER}<message><!-- --></message><iq/>").as_bytes());
    assert!(matches!(d.next_frame(), Ok(Some(Frame::Header { .. }))));
    assert!(d.next_frame().is_err());
    assert_eq!(d.next_frame(), Err(WireError::Failed));
}

#[test]
fn a_client_port_header_is_reported_with_its_namespace() {
    let f = frames(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>",
    )
    .unwrap();
    assert!(matches!(&f[0], Frame::Header { ns, .. } if ns == "jabber:client"));
}

#[test]
fn garbage_never_panics() {
    // A cheap deterministic sweep: every byte value at every position of a
    // small stream, and truncations.
    let base = format!("{HEADER}{TRICKY}</stream:stream>");
    let bytes = base.as_bytes();
    for at in (0..bytes.len()).step_by(7) {
        for v in [
            0u8, b'<', b'>', b'/', b'\'', b'"', b'&', b'!', b'?', b']', 0xff, 0xc3,
        ] {
            let mut m = bytes.to_vec();
            m[at] = v;
            let _ = frames_of(&[&m], Limits::default());
            let _ = frames_of(&[&m[..at]], Limits::default());
        }
    }
}

#[test]
fn random_mutations_and_splits_never_panic_and_never_hold_more_than_the_limit() {
    let limits = Limits {
        max_stanza_bytes: 300,
        max_depth: 4,
        max_attribute_bytes: 24,
        max_name_bytes: 12,
    };
    let base = format!("{HEADER}{TRICKY}<a><b><c><d><e/></d></c></b></a></stream:stream>");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const BYTES: &[u8] = b"<>/'\"&;![]?= ax\xc3\xa9\xff";
    for _ in 0..3000 {
        let mut m = base.as_bytes().to_vec();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[at] = BYTES[(next() as usize) % BYTES.len()],
                1 => m.insert(at, BYTES[(next() as usize) % BYTES.len()]),
                _ => {
                    m.remove(at);
                }
            }
        }
        let mut d = Decoder::new(limits);
        let mut rest = &m[..];
        while !rest.is_empty() {
            let n = 1 + (next() as usize) % 64;
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            d.feed(piece);
            assert!(d.buffered() <= 16 * 1024 + 64);
            while let Ok(Some(_)) = d.next_frame() {}
        }
    }
}

#[test]
fn a_declared_xml_prefix_is_dropped_so_the_stanza_can_be_relayed() {
    let input = format!(
        "{HEADER}<message id='m'><x xmlns='urn:x' xmlns:xml='http://www.w3.org/XML/1998/namespace' \
         xml:lang='en'>t</x></message>"
    );
    let f = frames(&input).unwrap();
    let msg = stanza(&f[1]);
    let x = msg.get_child("x", "urn:x").unwrap();
    assert_eq!(x.text(), "t");
    // The serializer asserted on the declaration before it was dropped.
    let mut out = Vec::new();
    msg.write_to(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("<x xmlns='urn:x' xml:lang='en'>t</x>"),
        "{text}"
    );
}
