//! The two halves of one TCP connection to the server: frames in through
//! the [`Decoder`], serialized elements out through one buffer.

use std::io;

use minidom::Element;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tracing::warn;

use crate::metrics::{METRICS, StanzaKind};
use crate::wire::{Decoder, Frame, Limits, WireError};

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

pub(crate) struct Reader {
    half: OwnedReadHalf,
    decoder: Decoder,
    chunk: Box<[u8]>,
    /// When bytes last arrived: the keepalive measures silence from here.
    pub last_read: Instant,
}

impl Reader {
    pub fn new(half: OwnedReadHalf, limits: Limits) -> Self {
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
            if let Some(frame) = self.decoder.next_frame()? {
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

    /// A frame that is already here (decoded, or in the socket's buffer),
    /// without waiting.
    pub fn try_next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            match self.half.try_read(&mut self.chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.last_read = Instant::now();
                    self.decoder.feed(&self.chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

pub(crate) struct Writer {
    half: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(half: OwnedWriteHalf) -> Self {
        Writer {
            half,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Serializes `el` into the buffer; nothing is sent before [`flush`].
    pub fn queue(&mut self, el: &Element) {
        let mark = self.buf.len();
        if let Err(e) = el.write_to(&mut self.buf) {
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
        let r = self.half.write_all(&self.buf).await;
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
