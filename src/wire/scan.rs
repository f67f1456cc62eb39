//! The bounded pre-scan: finds where each top-level stanza ends, byte by
//! byte and resumable at any split, and measures it against the limits
//! before any XML parser builds anything from it. It keeps O(1) state (no
//! element stack: end tags are only counted; the parser checks that they
//! match for stanzas it is given), so a stanza it refuses costs nothing
//! however deep or long.

use super::WireError;
use super::limits::{Limit, Limits};
use super::refused::MAX_KEPT_VALUE;

/// Where the scanner is inside the markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data (or the space between stanzas).
    Text,
    /// After `<`.
    Lt,
    /// After `<!`, with this many bytes of `[CDATA[` matched.
    Bang(u8),
    /// Inside a CDATA section, after this many `]` in a row.
    Cdata(u8),
    /// Inside the XML declaration, after a `?` or not.
    Decl(bool),
    StartName,
    EndName,
    /// After an end tag's name, before its `>`.
    EndTail,
    /// Inside a start tag, between attributes.
    TagSpace,
    AttrName,
    /// After an attribute name, before `=`.
    AttrEq,
    /// After `=`, before the opening quote.
    AttrQuote,
    /// Inside an attribute value opened by this quote.
    AttrValue(u8),
    /// After `/` in a start tag.
    Slash,
}

/// What ended at the byte a scan stopped after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// The stream header's start tag.
    Header,
    /// A top-level stanza.
    Stanza,
    /// The stream's end tag.
    End,
}

/// The attributes of a stanza's own start tag worth keeping if it is
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    From,
    To,
    Id,
    Type,
}

pub(crate) const MAX_KEPT_NAME: usize = 64;
/// The XML declaration is the only markup before the header; a real one is
/// well under this.
const MAX_DECL: usize = 256;

/// The stanza's own start tag, as far as it is kept (each value at most
/// `MAX_KEPT_VALUE + 1` bytes, so an over-long one is recognisable). The
/// buffers are reused from stanza to stanza.
#[derive(Debug, Default)]
pub(crate) struct TopTag {
    pub name: Vec<u8>,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    pub id: Vec<u8>,
    pub type_: Vec<u8>,
    pub seen: [bool; 4],
    attr: [u8; 5],
    attr_len: usize,
}

impl TopTag {
    fn clear(&mut self) {
        self.name.clear();
        self.from.clear();
        self.to.clear();
        self.id.clear();
        self.type_.clear();
        self.seen = [false; 4];
    }

    fn field_mut(&mut self, f: Field) -> &mut Vec<u8> {
        match f {
            Field::From => &mut self.from,
            Field::To => &mut self.to,
            Field::Id => &mut self.id,
            Field::Type => &mut self.type_,
        }
    }

    pub fn get(&self, f: Field) -> Option<&[u8]> {
        let (i, v) = match f {
            Field::From => (0, &self.from),
            Field::To => (1, &self.to),
            Field::Id => (2, &self.id),
            Field::Type => (3, &self.type_),
        };
        (self.seen[i] && v.len() <= MAX_KEPT_VALUE).then_some(v.as_slice())
    }
}

#[derive(Debug)]
pub(crate) struct Scanner {
    lex: Lex,
    /// Before the end of the stream header.
    prolog: bool,
    /// Elements open in the current stanza (the header not counted).
    depth: usize,
    /// Bytes of the current name, value or declaration.
    len: usize,
    /// Inside a stanza (or the stream's end tag), from its `<`.
    in_stanza: bool,
    stanza_bytes: usize,
    /// In the stanza's own start tag.
    top_tag: bool,
    field: Option<Field>,
    pub top: TopTag,
    /// The first limit the current stanza went over.
    pub over: Option<Limit>,
    limits: Limits,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn bad(what: &str, b: u8) -> WireError {
    WireError::Xml(format!("unexpected {:?} {what}", b as char))
}

impl Scanner {
    pub fn new(limits: Limits) -> Self {
        Scanner {
            lex: Lex::Text,
            prolog: true,
            depth: 0,
            len: 0,
            in_stanza: false,
            stanza_bytes: 0,
            top_tag: false,
            field: None,
            top: TopTag::default(),
            over: None,
            limits,
        }
    }

    /// Between stanzas: bytes scanned so far belong to nothing.
    pub fn idle(&self) -> bool {
        !self.in_stanza && !self.prolog && self.lex == Lex::Text
    }

    pub fn in_prolog(&self) -> bool {
        self.prolog
    }

    fn exceed(&mut self, limit: Limit) {
        // The server's own header is bounded by the decoder, not by the
        // limits on users' stanzas.
        if self.over.is_none() && !self.prolog {
            self.over = Some(limit);
        }
    }

    fn count(&mut self, n: usize) {
        if self.in_stanza {
            self.stanza_bytes += n;
            if self.stanza_bytes > self.limits.max_stanza_bytes {
                self.exceed(Limit::StanzaBytes(self.limits.max_stanza_bytes));
            }
        }
    }

    fn name_byte(&mut self) {
        self.len += 1;
        if self.len > self.limits.max_name_bytes {
            self.exceed(Limit::NameBytes(self.limits.max_name_bytes));
        }
    }

    /// Scans `input` until a boundary or its end: how many bytes were
    /// consumed, and the boundary that ends with the last of them.
    pub fn scan(&mut self, input: &[u8]) -> Result<(usize, Option<Boundary>), WireError> {
        let mut i = 0;
        while i < input.len() {
            // Fast paths for the long runs: text and attribute values.
            match self.lex {
                Lex::Text if self.in_stanza => {
                    let rest = &input[i..];
                    let n = rest.iter().position(|&b| b == b'<').unwrap_or(rest.len());
                    self.count(n);
                    i += n;
                    if i == input.len() {
                        break;
                    }
                }
                Lex::AttrValue(q) => {
                    let rest = &input[i..];
                    let n = rest.iter().position(|&b| b == q).unwrap_or(rest.len());
                    self.count(n);
                    self.len += n;
                    if self.len > self.limits.max_attribute_bytes {
                        self.exceed(Limit::AttributeBytes(self.limits.max_attribute_bytes));
                    }
                    if let Some(f) = self.field {
                        let v = self.top.field_mut(f);
                        let room = (MAX_KEPT_VALUE + 1).saturating_sub(v.len());
                        v.extend_from_slice(&rest[..n.min(room)]);
                    }
                    i += n;
                    if i == input.len() {
                        break;
                    }
                }
                _ => {}
            }
            let b = input[i];
            i += 1;
            if let Some(boundary) = self.byte(b)? {
                return Ok((i, Some(boundary)));
            }
        }
        Ok((i, None))
    }

    fn byte(&mut self, b: u8) -> Result<Option<Boundary>, WireError> {
        self.count(1);
        match self.lex {
            Lex::Text => {
                if b == b'<' {
                    if self.depth == 0 && !self.prolog && !self.in_stanza {
                        self.in_stanza = true;
                        self.stanza_bytes = 0;
                        self.over = None;
                        self.count(1);
                    }
                    self.lex = Lex::Lt;
                } else if !self.in_stanza && !is_space(b) {
                    return Err(WireError::Xml("text outside any stanza".into()));
                }
            }
            Lex::Lt => match b {
                b'/' => {
                    self.lex = Lex::EndName;
                    self.len = 0;
                }
                b'?' if self.prolog => {
                    self.lex = Lex::Decl(false);
                    self.len = 0;
                }
                b'?' => return Err(WireError::Restricted("processing instructions")),
                b'!' if self.depth > 0 => self.lex = Lex::Bang(0),
                b'!' => return Err(WireError::Restricted("comments and DTDs")),
                b'>' | b'<' | b'=' | b'"' | b'\'' => return Err(bad("after <", b)),
                _ if is_space(b) => return Err(bad("after <", b)),
                _ => {
                    self.depth += 1;
                    if self.depth > self.limits.max_depth && !self.prolog {
                        self.exceed(Limit::Depth(self.limits.max_depth));
                    }
                    self.top_tag = self.depth == 1 && !self.prolog;
                    if self.top_tag {
                        self.top.clear();
                    }
                    self.lex = Lex::StartName;
                    self.len = 0;
                    self.start_name_byte(b);
                }
            },
            Lex::Bang(n) => {
                const CDATA: &[u8] = b"[CDATA[";
                if CDATA[n as usize] != b {
                    return Err(WireError::Restricted("comments and DTDs"));
                }
                self.lex = if n as usize + 1 == CDATA.len() {
                    Lex::Cdata(0)
                } else {
                    Lex::Bang(n + 1)
                };
            }
            Lex::Cdata(k) => {
                self.lex = match b {
                    b']' => Lex::Cdata((k + 1).min(2)),
                    b'>' if k == 2 => Lex::Text,
                    _ => Lex::Cdata(0),
                }
            }
            Lex::Decl(q) => {
                self.len += 1;
                if self.len > MAX_DECL {
                    return Err(WireError::Xml("XML declaration too long".into()));
                }
                self.lex = match b {
                    b'>' if q => Lex::Text,
                    b'?' => Lex::Decl(true),
                    _ => Lex::Decl(false),
                }
            }
            Lex::StartName => match b {
                b'>' => return Ok(self.start_tag_end()),
                b'/' => self.lex = Lex::Slash,
                _ if is_space(b) => self.lex = Lex::TagSpace,
                b'<' | b'=' | b'"' | b'\'' => return Err(bad("in a name", b)),
                _ => self.start_name_byte(b),
            },
            Lex::TagSpace => match b {
                b'>' => return Ok(self.start_tag_end()),
                b'/' => self.lex = Lex::Slash,
                _ if is_space(b) => {}
                b'<' | b'=' | b'"' | b'\'' => return Err(bad("in a start tag", b)),
                _ => {
                    self.lex = Lex::AttrName;
                    self.len = 0;
                    self.top.attr_len = 0;
                    self.attr_name_byte(b);
                }
            },
            Lex::AttrName => match b {
                b'=' => self.lex = Lex::AttrQuote,
                _ if is_space(b) => self.lex = Lex::AttrEq,
                b'>' | b'/' | b'<' | b'"' | b'\'' => return Err(bad("in an attribute name", b)),
                _ => self.attr_name_byte(b),
            },
            Lex::AttrEq => match b {
                b'=' => self.lex = Lex::AttrQuote,
                _ if is_space(b) => {}
                _ => return Err(bad("instead of =", b)),
            },
            Lex::AttrQuote => match b {
                b'"' | b'\'' => {
                    self.lex = Lex::AttrValue(b);
                    self.len = 0;
                    self.field = self.top_field();
                    if let Some(f) = self.field {
                        let i = f as usize;
                        self.top.seen[i] = true;
                        self.top.field_mut(f).clear();
                    }
                }
                _ if is_space(b) => {}
                _ => return Err(bad("instead of a quote", b)),
            },
            // Reached only at the closing quote: the fast path took the rest.
            Lex::AttrValue(_) => {
                self.lex = Lex::TagSpace;
                self.field = None;
            }
            Lex::Slash => {
                if b != b'>' {
                    return Err(bad("after / in a tag", b));
                }
                self.top_tag = false;
                self.lex = Lex::Text;
                self.depth -= 1;
                if self.prolog {
                    return Err(WireError::Xml("the stream header closes itself".into()));
                }
                if self.depth == 0 {
                    return Ok(Some(self.finish(Boundary::Stanza)));
                }
            }
            Lex::EndName => match b {
                b'>' => return Ok(self.end_tag_end()),
                _ if is_space(b) => self.lex = Lex::EndTail,
                b'<' | b'=' | b'"' | b'\'' | b'/' => return Err(bad("in an end tag", b)),
                _ => self.name_byte(),
            },
            Lex::EndTail => match b {
                b'>' => return Ok(self.end_tag_end()),
                _ if is_space(b) => {}
                _ => return Err(bad("in an end tag", b)),
            },
        }
        Ok(None)
    }

    fn start_name_byte(&mut self, b: u8) {
        self.name_byte();
        if self.top_tag && self.top.name.len() <= MAX_KEPT_NAME {
            self.top.name.push(b);
        }
    }

    fn attr_name_byte(&mut self, b: u8) {
        self.name_byte();
        if self.top_tag {
            if self.top.attr_len < self.top.attr.len() {
                self.top.attr[self.top.attr_len] = b;
            }
            self.top.attr_len += 1;
        }
    }

    fn top_field(&self) -> Option<Field> {
        if !self.top_tag {
            return None;
        }
        match &self.top.attr[..self.top.attr_len.min(self.top.attr.len())] {
            _ if self.top.attr_len > 4 => None,
            b"from" => Some(Field::From),
            b"to" => Some(Field::To),
            b"id" => Some(Field::Id),
            b"type" => Some(Field::Type),
            _ => None,
        }
    }

    fn start_tag_end(&mut self) -> Option<Boundary> {
        self.lex = Lex::Text;
        self.top_tag = false;
        if self.prolog {
            self.prolog = false;
            self.depth = 0;
            return Some(Boundary::Header);
        }
        None
    }

    fn end_tag_end(&mut self) -> Option<Boundary> {
        self.lex = Lex::Text;
        if self.depth == 0 {
            self.in_stanza = false;
            return Some(Boundary::End);
        }
        self.depth -= 1;
        (self.depth == 0).then(|| self.finish(Boundary::Stanza))
    }

    fn finish(&mut self, b: Boundary) -> Boundary {
        self.in_stanza = false;
        b
    }
}
