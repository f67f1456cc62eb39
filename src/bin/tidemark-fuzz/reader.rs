//! The XML reader the fuzzer feeds: bytes in, stanzas or refusals out, the
//! way the connection reads the server's stream.

use minidom::Element;

/// What the reader makes of the bytes of one stanza.
pub enum Frame {
    Stanza(Element),
    /// Not a stanza tidemark can hold; the reason, as the reader gives it.
    Refused(String),
}

const STREAM_HEAD: &[u8] = b"<stream:stream xmlns='jabber:component:accept' \
xmlns:stream='http://etherx.jabber.org/streams'>";

/// A stand-in for `tidemark::wire::Decoder` until it lands: the stanza inside
/// a stream header, parsed by minidom. Switching means replacing this body
/// with the decoder (feed the head and the bytes, collect `next_frame()`).
pub fn read(bytes: &[u8]) -> Vec<Frame> {
    let mut doc = Vec::with_capacity(STREAM_HEAD.len() + bytes.len() + 16);
    doc.extend_from_slice(STREAM_HEAD);
    doc.extend_from_slice(bytes);
    doc.extend_from_slice(b"</stream:stream>");
    match Element::from_reader(&doc[..]) {
        Ok(mut stream) => stream
            .take_nodes()
            .into_iter()
            .filter_map(|n| n.as_element().cloned())
            .map(Frame::Stanza)
            .collect(),
        Err(e) => vec![Frame::Refused(e.to_string())],
    }
}
