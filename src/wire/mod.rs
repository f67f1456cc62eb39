//! The reading side of the XEP-0114 stream, without any I/O: bytes go in
//! ([`Decoder::feed`]), frames come out ([`Decoder::next_frame`]).
//!
//! A bounded pre-scan ([`scan`]) finds where each top-level stanza ends and
//! measures it against [`Limits`] first. A stanza within the limits is then
//! parsed by rxml into a `minidom::Element` (built by [`tree`]); one over a
//! limit is skipped to its end without being buffered or parsed and reported
//! as [`Frame::Refused`], and the stream goes on. rxml's own token limit (which
//! ended the whole stream on one long attribute) is set above ours, so ours
//! are the ones that bite.

mod limits;
mod refused;
mod scan;
mod tree;
mod write;

use minidom::Element;
use rxml::{Parse, RawParser, WithOptions};

pub use limits::{Limit, Limits};
pub use refused::Refused;
use refused::unescape;
use scan::{Boundary, Field, Scanner};
use tree::TreeBuilder;
pub use write::write_plain;

/// The stream cannot go on: a stream error and a new connection. A server
/// only sends well-formed, unrestricted XML, so these mean a broken peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("restricted XML: XMPP streams carry no {0}")]
    Restricted(&'static str),
    #[error("the stream header is over {0}")]
    Header(Limit),
    #[error("the stream had already failed")]
    Failed,
}

/// One unit of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The server's stream header.
    Header {
        id: Option<String>,
        from: Option<String>,
        /// The header's default namespace: `jabber:component:accept` from a
        /// component port, `jabber:client` or `jabber:server` otherwise.
        ns: String,
    },
    /// A stanza within the limits, in the stream's namespace.
    Stanza(Element),
    /// A stanza over a limit, skipped.
    Refused(Refused),
    /// `</stream:stream>`.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    Ended,
    Failed,
}

pub struct Decoder {
    scanner: Scanner,
    limits: Limits,
    /// Received bytes; `buf[start..]` is not yet consumed, `buf[pos..]` not
    /// yet scanned.
    buf: Vec<u8>,
    start: usize,
    pos: usize,
    /// One parser and tree for the whole stream, as rxml keeps the header's
    /// namespace declarations; each stanza is taken off the tree whole.
    parser: RawParser,
    tree: TreeBuilder,
    phase: Phase,
}

/// Slack above our own limits for rxml's, which counts decoded bytes and
/// splits names in two: ours always trips first.
const RXML_SLACK: usize = 64;

/// The most a stream header may take (Prosody's is about 200 bytes).
const MAX_HEADER: usize = 16 * 1024;

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        let token = limits
            .max_attribute_bytes
            .max(limits.max_name_bytes)
            .max(8192)
            + RXML_SLACK;
        let options = rxml::Options {
            max_token_length: token,
            ..rxml::Options::default()
        };
        Decoder {
            scanner: Scanner::new(limits),
            limits,
            buf: Vec::with_capacity(16 * 1024),
            start: 0,
            pos: 0,
            parser: RawParser::with_options(options),
            tree: TreeBuilder::new(),
            phase: Phase::Open,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Adds bytes as they came off the socket, split anywhere.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Open {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.pos -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for a stanza not complete yet (at most about the stanza
    /// limit, whatever was fed).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `None` until more bytes are fed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        match self.phase {
            Phase::Open => {}
            Phase::Ended => return Ok(None),
            Phase::Failed => return Err(WireError::Failed),
        }
        let r = self.advance();
        if r.is_err() {
            self.phase = Phase::Failed;
            self.buf = Vec::new();
            self.start = 0;
            self.pos = 0;
        }
        r
    }

    fn advance(&mut self) -> Result<Option<Frame>, WireError> {
        if self.scanner.idle() {
            // Whitespace between stanzas belongs to nothing.
            self.start = self.pos;
        }
        let (n, boundary) = self.scanner.scan(&self.buf[self.pos..])?;
        self.pos += n;
        let Some(boundary) = boundary else {
            if self.scanner.idle() {
                self.start = self.pos;
            }
            if self.scanner.in_prolog() && self.pos - self.start > MAX_HEADER {
                return Err(WireError::Header(Limit::StanzaBytes(MAX_HEADER)));
            }
            if self.scanner.over.is_some() {
                // A refused stanza is never parsed: drop what was
                // scanned of it so it costs no memory.
                self.start = self.pos;
            }
            return Ok(None);
        };
        let from = self.start;
        self.start = self.pos;
        match boundary {
            Boundary::Header => {
                // The server's header is not a user's stanza: only its
                // size is bounded (MAX_HEADER).
                self.scanner.over = None;
                let ns = self.parse(from)?.unwrap_or_default();
                let root = self
                    .tree
                    .top()
                    .ok_or_else(|| WireError::Xml("no stream header".into()))?;
                if !root.is("stream", crate::stanza::ns::STREAM) {
                    return Err(WireError::Xml(format!(
                        "the stream opens with <{}/>, not <stream:stream/>",
                        root.name()
                    )));
                }
                Ok(Some(Frame::Header {
                    id: root.attr("id").map(str::to_owned),
                    from: root.attr("from").map(str::to_owned),
                    ns,
                }))
            }
            Boundary::End => {
                self.phase = Phase::Ended;
                Ok(Some(Frame::End))
            }
            Boundary::Stanza => {
                if let Some(limit) = self.scanner.over.take() {
                    return Ok(Some(Frame::Refused(self.refused(limit))));
                }
                self.parse(from)?;
                let stanza = self
                    .tree
                    .unshift_child()
                    .ok_or_else(|| WireError::Xml("a stanza the parser did not end".into()))?;
                Ok(Some(Frame::Stanza(stanza)))
            }
        }
    }

    /// Gives rxml the scanned bytes `buf[from..pos]`, which end at a
    /// boundary; returns the default namespace they declared, if any.
    fn parse(&mut self, from: usize) -> Result<Option<String>, WireError> {
        let mut input = &self.buf[from..self.pos];
        let mut default_ns = None;
        loop {
            match self.parser.parse(&mut input, false) {
                Ok(Some(ev)) => {
                    if let rxml::RawEvent::Attribute(_, (None, name), value) = &ev
                        && name.as_str() == "xmlns"
                    {
                        default_ns = Some(value.as_str().to_owned());
                    }
                    // `xmlns:xml` may only restate the prefix's fixed
                    // binding, so dropping it changes nothing; kept,
                    // minidom's writer panics on it when the stanza is
                    // relayed.
                    if let rxml::RawEvent::Attribute(_, (Some(prefix), name), _) = &ev
                        && prefix.as_str() == "xmlns"
                        && name.as_str() == "xml"
                    {
                        continue;
                    }
                    self.tree
                        .process_event(ev)
                        .map_err(|e| WireError::Xml(e.to_string()))?
                }
                Ok(None) => return Err(WireError::Xml("the document ended".into())),
                Err(rxml::error::EndOrError::NeedMoreData) => return Ok(default_ns),
                Err(rxml::error::EndOrError::Error(e)) => {
                    return Err(WireError::Xml(e.to_string()));
                }
            }
        }
    }

    fn refused(&self, limit: Limit) -> Refused {
        let top = &self.scanner.top;
        let text = |f: Field| top.get(f).and_then(unescape);
        let name = (!top.name.is_empty() && top.name.len() <= scan::MAX_KEPT_NAME)
            .then(|| String::from_utf8(top.name.clone()).ok())
            .flatten();
        Refused {
            name,
            from: text(Field::From),
            to: text(Field::To),
            id: text(Field::Id),
            type_: text(Field::Type),
            limit,
        }
    }
}

#[cfg(test)]
mod tests;
