//! The load generator's side of XEP-0114: it plays the server. A blocking
//! socket, a byte-level stanza splitter (no XML library, so the generator
//! spends little CPU of its own), and the stanzas a server would send.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

pub const DOMAIN: &str = "chat.localhost";
pub const SECRET: &str = "bench-secret";

/// Waits for the component to connect and does the server side of the
/// handshake. Returns the stream and any bytes that came after it.
pub fn accept_component(
    listener: &TcpListener,
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("the component did not connect in time".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).ok();
    sock.set_read_timeout(Some(timeout)).ok();
    let mut buf = Vec::new();
    let header_end = read_until(&mut sock, &mut buf, |b| {
        let s = find(b, b"<stream:stream")?;
        b[s..].iter().position(|c| *c == b'>').map(|p| s + p + 1)
    })?;
    buf.drain(..header_end);
    let id = format!("bench{}", std::process::id());
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='{id}' from='{DOMAIN}'>"
    );
    sock.write_all(header.as_bytes())
        .map_err(|e| e.to_string())?;
    let hs_end = read_until(&mut sock, &mut buf, |b| {
        find(b, b"</handshake>").map(|p| p + 12)
    })?;
    let hs = String::from_utf8_lossy(&buf[..hs_end]).to_string();
    buf.drain(..hs_end);
    let expected = hex::encode(Sha1::digest(format!("{id}{SECRET}").as_bytes()));
    if !hs.contains(&expected) {
        return Err(format!("bad handshake {hs:?}"));
    }
    sock.write_all(b"<handshake/>").map_err(|e| e.to_string())?;
    sock.set_read_timeout(None).ok();
    Ok((sock, buf))
}

fn read_until(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(n) = done(buf) {
            return Ok(n);
        }
        let n = sock
            .read(&mut chunk)
            .map_err(|e| format!("during handshake: {e}"))?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a byte stream (already inside `<stream:stream>`) into top-level
/// stanzas. Relies on what every XMPP serializer guarantees: `<` never
/// appears unescaped in text or attribute values.
pub struct Splitter {
    pending: Vec<u8>,
    pos: usize,
    depth: i32,
    start: usize,
    in_tag: bool,
    tag_first: bool,
    closing: bool,
    special: bool,
    quote: u8,
    last: u8,
    pub ended: bool,
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter {
            pending: Vec::with_capacity(1 << 16),
            pos: 0,
            depth: 1,
            start: 0,
            in_tag: false,
            tag_first: false,
            closing: false,
            special: false,
            quote: 0,
            last: 0,
            ended: false,
        }
    }

    /// Feeds bytes; calls `each` with every complete stanza.
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut i = self.pos;
        let buf = &self.pending;
        while i < buf.len() {
            let b = buf[i];
            if !self.in_tag {
                if b == b'<' {
                    self.in_tag = true;
                    self.tag_first = true;
                    self.closing = false;
                    self.special = false;
                    self.quote = 0;
                    if self.depth == 1 {
                        self.start = i;
                    }
                }
            } else if self.tag_first {
                self.tag_first = false;
                match b {
                    b'/' => self.closing = true,
                    b'?' | b'!' => self.special = true,
                    _ => {}
                }
                self.last = b;
            } else if self.quote != 0 {
                if b == self.quote {
                    self.quote = 0;
                }
            } else if b == b'"' || b == b'\'' {
                self.quote = b;
            } else if b == b'>' {
                self.in_tag = false;
                if self.special {
                } else if self.closing {
                    self.depth -= 1;
                    if self.depth == 1 {
                        each(&buf[self.start..=i]);
                    } else if self.depth <= 0 {
                        self.ended = true;
                    }
                } else if self.last == b'/' {
                    if self.depth == 1 {
                        each(&buf[self.start..=i]);
                    }
                } else {
                    self.depth += 1;
                }
            } else {
                self.last = b;
            }
            i += 1;
        }
        // Keep only the unfinished stanza.
        let keep = if self.depth > 1 || self.in_tag {
            self.start
        } else {
            i
        };
        self.pending.drain(..keep);
        self.pos = i - keep;
        self.start -= keep.min(self.start);
    }
}

/// What came out: the unit number, which of its three stanzas this answers
/// (0 message, 1 receipt, 2 displayed), and whether it was an error.
pub fn classify_out(s: &[u8]) -> Option<(u64, u8, bool)> {
    let kind = if find(s, b"<received").is_some() {
        1
    } else if find(s, b"<displayed").is_some() {
        2
    } else {
        0
    };
    let error = find(s, b"type=\"error\"").is_some() || find(s, b"type='error'").is_some();
    // The first id whose value is m<digits>.
    let mut from = 0;
    while let Some(p) = find(&s[from..], b"id=") {
        let at = from + p + 3;
        if at + 2 < s.len() && (s[at] == b'"' || s[at] == b'\'') && s[at + 1] == b'm' {
            let digits = &s[at + 2..];
            let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
            if n > 0 && at + 2 + n < s.len() && digits[n] == s[at] {
                let v: u64 = std::str::from_utf8(&digits[..n]).ok()?.parse().ok()?;
                return Some((v, kind, error));
            }
        }
        from = at;
    }
    None
}

/// The users of the load: `pairs` conversations between users 2p and 2p+1.
/// Unit i is one message with its receipt and its displayed marker, in
/// alternating directions.
pub fn unit_users(i: u64, pairs: u64) -> (u64, u64) {
    let p = i % pairs;
    let (a, b) = (2 * p, 2 * p + 1);
    if (i / pairs).is_multiple_of(2) {
        (a, b)
    } else {
        (b, a)
    }
}

/// The three stanzas of unit `i`, as a server would pass them on.
pub fn write_unit(out: &mut Vec<u8>, i: u64, kind: u8, pairs: u64) {
    use std::io::Write as _;
    let (x, y) = unit_users(i, pairs);
    let _ = match kind {
        0 => write!(
            out,
            "<message from='u{x}@localhost/r' to='u{y}\\40localhost@{DOMAIN}' id='m{i}' type='chat'><body>Benchmark message {i} from u{x} to u{y}: the tide is in.</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        ),
        1 => write!(
            out,
            "<message from='u{y}@localhost/r' to='u{x}\\40localhost@{DOMAIN}/r' id='r{i}' type='chat'><received xmlns='urn:xmpp:receipts' id='m{i}'/></message>"
        ),
        _ => write!(
            out,
            "<message from='u{y}@localhost/r' to='u{x}\\40localhost@{DOMAIN}/r' id='d{i}' type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='m{i}'/></message>"
        ),
    };
}

/// One-time setup for pair p: both grant each other presence, both online.
pub fn write_setup(out: &mut Vec<u8>, p: u64) {
    use std::io::Write as _;
    let (a, b) = (2 * p, 2 * p + 1);
    for (x, y) in [(a, b), (b, a)] {
        let _ = write!(
            out,
            "<presence type='subscribed' from='u{x}@localhost' to='u{y}\\40localhost@{DOMAIN}'/>"
        );
    }
    for (x, y) in [(a, b), (b, a)] {
        let _ = write!(
            out,
            "<presence from='u{x}@localhost/r' to='u{y}\\40localhost@{DOMAIN}'/>"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_classifies() {
        let mut s = Splitter::new();
        let mut got = Vec::new();
        let data = b"<message id=\"m7\" to='a'><body>x &gt; y</body><x/></message><presence/><message id=\"tm-1\"><received xmlns='urn:xmpp:receipts' id=\"m7\"/></message>";
        for chunk in data.chunks(5) {
            s.feed(chunk, |st| got.push(st.to_vec()));
        }
        assert_eq!(got.len(), 3);
        assert_eq!(classify_out(&got[0]), Some((7, 0, false)));
        assert_eq!(classify_out(&got[1]), None);
        assert_eq!(classify_out(&got[2]), Some((7, 1, false)));
    }
}
