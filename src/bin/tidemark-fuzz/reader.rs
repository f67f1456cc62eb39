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

/// The connection's own reader (`tidemark::wire::Decoder`, with the default
/// limits) over the stanza inside a stream header, as the server sends it.
pub fn read(bytes: &[u8]) -> Vec<Frame> {
    use tidemark::wire::{Decoder, Frame as Wire, Limits};
    let mut d = Decoder::new(Limits::default());
    d.feed(STREAM_HEAD);
    d.feed(bytes);
    d.feed(b"</stream:stream>");
    let mut out = vec![];
    loop {
        match d.next_frame() {
            Ok(Some(Wire::Stanza(el))) => out.push(Frame::Stanza(el)),
            Ok(Some(Wire::Refused(r))) => out.push(Frame::Refused(format!("over {}", r.limit))),
            Ok(Some(Wire::Header { .. })) => {}
            Ok(Some(Wire::End)) | Ok(None) => return out,
            Err(e) => {
                out.push(Frame::Refused(e.to_string()));
                return out;
            }
        }
    }
}
