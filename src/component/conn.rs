//! The two halves of one connection to the server: frames in through the
//! [`Decoder`], serialized elements out through one buffer. The connection
//! is plain TCP or TLS over TCP (`component.tls`, issue 12).

use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::metrics::{METRICS, Refusal, StanzaKind};
use crate::wire::{Decoder, Frame, Limits, WireError, write_plain};

/// What ended reading.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("read: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("{0}")]
    Wire(#[from] WireError),
}

const READ_CHUNK: usize = 32 * 1024;

pub(crate) type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The reading half of the link. An enum rather than a boxed trait object:
/// the plain path stays TCP's own owned halves (no lock between them, no
/// copy), and TLS, whose one session both directions share, goes through
/// `tokio::io::split`.
pub(crate) enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// The writing half; see [`ReadHalf`].
pub(crate) enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
}

/// Splits a plain connection.
pub(crate) fn split_plain(tcp: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = tcp.into_split();
    (ReadHalf::Plain(r), WriteHalf::Plain(w))
}

/// Splits a TLS connection whose handshake is done.
pub(crate) fn split_tls(tls: TlsStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(tls);
    (ReadHalf::Tls(r), WriteHalf::Tls(w))
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

pub(crate) struct Reader {
    half: ReadHalf,
    decoder: Decoder,
    chunk: Box<[u8]>,
    /// When bytes last arrived: the keepalive measures silence from here.
    pub last_read: Instant,
}

impl Reader {
    pub fn new(half: ReadHalf, limits: Limits) -> Self {
        Reader {
            half,
            decoder: Decoder::new(limits),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            last_read: Instant::now(),
        }
    }

    /// The next frame, reading as needed. Cancel-safe: a cancelled read
    /// took no bytes, and the decoder keeps its state.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(frame);
            }
            let n = self.half.read(&mut self.chunk).await?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.last_read = Instant::now();
            self.decoder.feed(&self.chunk[..n]);
        }
    }

    /// The decoder is meant never to panic (the fuzzer drives it); if it
    /// does, that ends this connection, not the process.
    fn decode(&mut self) -> Result<Option<Frame>, ReadError> {
        let decoder = &mut self.decoder;
        match catch_unwind(AssertUnwindSafe(|| decoder.next_frame())) {
            Ok(r) => Ok(r?),
            Err(_) => {
                self.decoder = Decoder::new(self.decoder.limits());
                Err(WireError::Xml("the decoder panicked".into()).into())
            }
        }
    }
}

/// How many decoded chunks may wait for the connection's task: with the
/// chunk being decoded and the one being taken, at most four socket reads'
/// worth of stanzas are held (each read is at most `READ_CHUNK` bytes plus
/// the rest of one stanza within `limits.max_stanza_bytes`), and past that
/// the server's writes wait in TCP, as they did before.
const CHUNKS_AHEAD: usize = 2;

type Chunk = Vec<Result<Frame, ReadError>>;

/// A [`Reader`] running on a task of its own: it reads and decodes the next
/// stanzas while the connection's task handles the ones before them, so that
/// the two run on both cores. Frames come out in order, as from the
/// [`Reader`]; nothing is decoded more than [`CHUNKS_AHEAD`] chunks ahead.
pub(crate) struct Frames {
    rx: mpsc::Receiver<Chunk>,
    /// Stanzas handled, back to the reading task to be freed there
    /// ([`Frames::retire`]).
    spent: mpsc::UnboundedSender<Vec<Element>>,
    pending: VecDeque<Result<Frame, ReadError>>,
    /// When bytes last arrived, as nanoseconds after `base`: the reading
    /// task keeps it current.
    last_read: Arc<AtomicU64>,
    base: Instant,
    task: JoinHandle<()>,
}

impl Drop for Frames {
    fn drop(&mut self) {
        // The connection is over: stop reading it.
        self.task.abort();
    }
}

impl Reader {
    /// Moves reading and decoding to a task of its own.
    pub fn spawn(self) -> Frames {
        let base = self.last_read;
        let last_read = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        let (spent, spent_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(self.run(tx, spent_rx, base, last_read.clone()));
        Frames {
            rx,
            spent,
            pending: VecDeque::new(),
            last_read,
            base,
            task,
        }
    }

    async fn run(
        mut self,
        tx: mpsc::Sender<Chunk>,
        mut spent: mpsc::UnboundedReceiver<Vec<Element>>,
        base: Instant,
        last_read: Arc<AtomicU64>,
    ) {
        use tokio::io::AsyncReadExt;
        loop {
            // Everything the bytes so far hold, as one chunk.
            let mut chunk = Vec::new();
            let failed = loop {
                match self.decode() {
                    Ok(Some(frame)) => chunk.push(Ok(frame)),
                    Ok(None) => break false,
                    Err(e) => {
                        chunk.push(Err(e));
                        break true;
                    }
                }
            };
            if !chunk.is_empty() && tx.send(chunk).await.is_err() {
                return;
            }
            if failed {
                return;
            }
            // Handled stanzas are freed between reads and while waiting for
            // bytes, never ahead of bytes that are there.
            while let Ok(handled) = spent.try_recv() {
                drop(handled);
            }
            let read = loop {
                tokio::select! {
                    biased;
                    r = self.half.read(&mut self.chunk) => break r,
                    Some(handled) = spent.recv() => drop(handled),
                }
            };
            let n = match read {
                Ok(0) => {
                    let _ = tx.send(vec![Err(ReadError::Closed)]).await;
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(vec![Err(e.into())]).await;
                    return;
                }
            };
            let since = Instant::now().saturating_duration_since(base);
            last_read.store(
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            self.decoder.feed(&self.chunk[..n]);
        }
    }
}

impl Frames {
    /// The next frame, waiting for it. Cancel-safe: a frame is only taken
    /// when it is returned.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        match self.rx.recv().await {
            Some(chunk) => {
                self.pending.extend(chunk);
                self.pending.pop_front().unwrap_or(Err(ReadError::Closed))
            }
            // The reading task ended after its last error.
            None => Err(ReadError::Closed),
        }
    }

    /// A frame that is already decoded, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Frame>, ReadError> {
        if self.pending.is_empty() {
            match self.rx.try_recv() {
                Ok(chunk) => self.pending.extend(chunk),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(ReadError::Closed),
            }
        }
        self.pending.pop_front().transpose()
    }

    /// Gives handled stanzas back to be freed by the reading task, which
    /// allocated them: glibc frees a block fastest in the thread that
    /// allocated it, and the connection's task has the most to do.
    pub fn retire(&self, handled: Vec<Element>) {
        if !handled.is_empty() {
            // Once reading has ended they are simply freed here.
            let _ = self.spent.send(handled);
        }
    }

    /// When bytes last arrived: the keepalive measures silence from here.
    pub fn last_read(&self) -> Instant {
        self.base + std::time::Duration::from_nanos(self.last_read.load(Ordering::Relaxed))
    }
}

pub(crate) struct Writer {
    half: WriteHalf,
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(half: WriteHalf) -> Self {
        Writer {
            half,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Serializes `el` into the buffer; nothing is sent before [`flush`].
    pub fn queue(&mut self, el: &Element) {
        let mark = self.buf.len();
        // The plain elements tidemark sends are written directly, byte for
        // byte as minidom writes them ([`write_plain`]); others through
        // minidom.
        if write_plain(el, &mut self.buf) {
            METRICS.stanza_out(StanzaKind::of(el.name()));
            return;
        }
        self.buf.truncate(mark);
        // minidom's serializer asserts on some namespace declarations a
        // relayed element could carry (a reserved prefix rebound): a panic
        // here would end the connection for everyone, so it costs only this
        // element.
        let buf = &mut self.buf;
        let written = catch_unwind(AssertUnwindSafe(|| el.write_to(buf)));
        let written = match written {
            Ok(r) => r,
            Err(_) => {
                self.buf.truncate(mark);
                METRICS.refused(Refusal::Panic);
                warn!(
                    name = el.name(),
                    id = el.attr("id"),
                    "serializing an answer panicked; dropped"
                );
                return;
            }
        };
        if let Err(e) = written {
            // Only an element we built wrongly gets here: drop it, never a
            // half-written one.
            self.buf.truncate(mark);
            warn!(error = %e, name = el.name(), id = el.attr("id"), "an answer could not be serialized; dropped");
            return;
        }
        METRICS.stanza_out(StanzaKind::of(el.name()));
    }

    pub fn queue_raw(&mut self, xml: &str) {
        self.buf.extend_from_slice(xml.as_bytes());
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut r = self.half.write_all(&self.buf).await;
        if r.is_ok() && matches!(self.half, WriteHalf::Tls(_)) {
            // rustls may hold the last records when the socket was full:
            // without a flush they would wait for the next write, and the
            // server for them. (TCP's flush does nothing; it is skipped.)
            r = self.half.flush().await;
        }
        self.buf.clear();
        if self.buf.capacity() > 1024 * 1024 {
            // One huge batch should not pin its buffer for good.
            self.buf.shrink_to(64 * 1024);
        }
        r
    }

    pub async fn shutdown(&mut self) {
        let _ = self.half.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_element_the_serializer_panics_on_is_dropped_not_fatal() {
        // The reader drops `xmlns:xml` declarations (minidom's writer
        // asserts on them); built by hand, such an element still reaches
        // the writer, which must survive it.
        let bad = Element::builder("message", "jabber:component:accept")
            .append(
                Element::builder("x", "urn:x")
                    .prefix(
                        Some("xml".to_owned()),
                        "http://www.w3.org/XML/1998/namespace",
                    )
                    .unwrap()
                    .build(),
            )
            .build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (_r, w) = split_plain(client);
        let mut writer = Writer::new(w);
        writer.queue(&bad);
        writer.queue(&Element::bare("iq", "jabber:component:accept"));
        writer.flush().await.unwrap();
        writer.shutdown().await;
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut server, &mut got)
            .await
            .unwrap();
        assert!(got.starts_with("<iq"), "{got}");
        assert!(!got.contains("message"), "{got}");
    }
}
