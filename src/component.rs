//! The XEP-0114 connection to the server, kept up for as long as tidemark
//! runs.
//!
//! tokio-xmpp's `Component` stream ends on the first stanza xmpp-parsers
//! rejects, after a read timeout, and never reconnects (DESIGN.md, known
//! traps). So this uses tokio-xmpp's lower-level `xmlstream` with raw
//! `minidom::Element`s: every well-formed stanza reaches the router, silence
//! is answered with a ping, and a lost connection is re-established with
//! backoff.
//!
//! Stanzas are handled in batches: everything that has arrived is processed,
//! the store is flushed once, and only then are the answers sent. Statuses
//! that arrive together share one flush (group commit), and nothing is
//! relayed before the write it depends on is durable.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{ReadError, StreamHeader, Timeouts, XmlStream, initiate_stream};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::service::Tidemark;
use crate::stanza::{element, now_millis, ns};
use crate::store::StoreError;

type Stream = XmlStream<BufStream<TcpStream>, Element>;

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(
        "the server at {server} rejected the component secret for {jid} (not-authorized): check component.secret against component_secret in the server's config"
    )]
    SecretRejected { server: String, jid: String },
    #[error(
        "the server at {server} does not serve a component named {jid} (host-unknown): add `Component \"{jid}\"` to the server's config"
    )]
    UnknownComponent { server: String, jid: String },
    #[error("storage failed, stopping so nothing is acknowledged that is not kept: {0}")]
    Storage(#[from] StoreError),
}

/// Why one connection attempt or session ended, when it is worth retrying.
#[derive(Debug, thiserror::Error)]
enum Retry {
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, io::Error),
    #[error("stream error from server: {0}")]
    StreamError(String),
    #[error("connection lost: {0}")]
    Lost(String),
}

enum Fatal {
    Stop(ComponentError),
    Retry(Retry),
}

impl From<Retry> for Fatal {
    fn from(r: Retry) -> Self {
        Fatal::Retry(r)
    }
}

/// Connects, serves, and reconnects until a fatal error.
pub async fn run(config: &Config, tm: &mut Tidemark) -> Result<(), ComponentError> {
    let mut backoff = Duration::from_secs(1);
    // Answers whose statuses are recorded but that the lost connection did not
    // take: sent again on the next connection rather than lost (a client may
    // see one twice; XEP-0184 and XEP-0333 answers are idempotent, and a
    // message keeps its id).
    let mut unsent: Vec<Element> = Vec::new();
    loop {
        match connect(config).await {
            Ok(mut stream) => {
                info!(server = %config.component.server, jid = %config.component.jid, "connected to server");
                backoff = Duration::from_secs(1);
                match serve(config, tm, &mut stream, &mut unsent).await {
                    Err(Fatal::Stop(e)) => return Err(e),
                    Err(Fatal::Retry(e)) => warn!(error = %e, "disconnected; reconnecting"),
                    Ok(()) => warn!("server closed the stream; reconnecting"),
                }
            }
            Err(Fatal::Stop(e)) => return Err(e),
            Err(Fatal::Retry(e)) => {
                warn!(error = %e, retry_in = ?backoff, "cannot connect to server");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.component.reconnect_max);
                continue;
            }
        }
        // A short pause so a server that accepts and drops at once is not
        // hammered.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn timeouts(config: &Config) -> Timeouts {
    Timeouts {
        read_timeout: config.component.keepalive,
        response_timeout: config.component.keepalive,
    }
}

/// XEP-0114 §3: open a stream to the component's domain, answer the stream id
/// with SHA-1(id + secret), and wait for the empty `<handshake/>`.
async fn connect(config: &Config) -> Result<Stream, Fatal> {
    let server = &config.component.server;
    let jid = config.component.jid.to_string();
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(server.as_str()))
        .await
        .map_err(|_| Retry::Unreachable(server.clone(), io::ErrorKind::TimedOut.into()))?
        .map_err(|e| Retry::Unreachable(server.clone(), e))?;
    tcp.set_nodelay(true).ok();
    let header = StreamHeader {
        to: Some(Cow::Owned(jid.clone())),
        from: None,
        id: None,
    };
    let mut pending = initiate_stream(BufStream::new(tcp), ns::COMPONENT, header, timeouts(config))
        .await
        .map_err(|e| Retry::Lost(format!("stream header: {e}")))?;
    let stream_id = pending
        .take_header()
        .id
        .ok_or_else(|| Retry::Lost("server sent no stream id".into()))?
        .into_owned();
    let mut stream: Stream = pending.skip_features();

    let digest = Sha1::digest(format!("{stream_id}{}", config.component.secret).as_bytes());
    let mut handshake = Element::bare("handshake", ns::COMPONENT);
    handshake.append_text(hex::encode(digest));
    stream
        .send(&handshake)
        .await
        .map_err(|e| Retry::Lost(format!("sending handshake: {e}")))?;

    loop {
        match stream.next().await {
            Some(Ok(el)) if el.is("handshake", ns::COMPONENT) => return Ok(stream),
            Some(Ok(el)) if el.is("error", ns::STREAM) => {
                let condition = stream_error_condition(&el);
                return Err(match condition.as_str() {
                    "not-authorized" => Fatal::Stop(ComponentError::SecretRejected {
                        server: server.clone(),
                        jid,
                    }),
                    "host-unknown" | "improper-addressing" => {
                        Fatal::Stop(ComponentError::UnknownComponent {
                            server: server.clone(),
                            jid,
                        })
                    }
                    _ => Fatal::Retry(Retry::StreamError(condition)),
                });
            }
            Some(Ok(el)) => {
                return Err(
                    Retry::Lost(format!("expected <handshake/>, got <{}/>", el.name())).into(),
                );
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(Retry::Lost(format!("during handshake: {e}")).into()),
            None => return Err(Retry::Lost("closed during handshake".into()).into()),
        }
    }
}

fn stream_error_condition(el: &Element) -> String {
    el.children()
        .find(|c| c.ns() == ns::STREAMS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into())
}

/// What one read from the stream means for the session.
enum Step {
    Stanza(Element),
    Keepalive,
    Skip,
    End(Result<(), Fatal>),
}

fn step(item: Option<Result<Element, ReadError>>) -> Step {
    match item {
        Some(Ok(el)) if el.is("error", ns::STREAM) => {
            Step::End(Err(Retry::StreamError(stream_error_condition(&el)).into()))
        }
        Some(Ok(el)) => Step::Stanza(el),
        Some(Err(ReadError::SoftTimeout)) => Step::Keepalive,
        Some(Err(ReadError::ParseError(e))) => {
            // Well-formed XML that does not make an element we can hold; the
            // stream itself is fine.
            warn!(error = %e, "unparseable element dropped");
            Step::Skip
        }
        Some(Err(ReadError::HardError(e))) => Step::End(Err(Retry::Lost(e.to_string()).into())),
        Some(Err(ReadError::StreamFooterReceived)) | None => Step::End(Ok(())),
    }
}

async fn send_all(stream: &mut Stream, out: &[Element]) -> Result<(), Fatal> {
    for el in out {
        stream
            .feed(el)
            .await
            .map_err(|e| Retry::Lost(format!("write: {e}")))?;
    }
    SinkExt::<&Element>::flush(stream)
        .await
        .map_err(|e| Retry::Lost(format!("write: {e}")))?;
    Ok(())
}

fn flush_store(tm: &Tidemark) -> Result<(), Fatal> {
    let store = tm.store.clone();
    tokio::task::block_in_place(|| store.flush())
        .map_err(|e| Fatal::Stop(ComponentError::Storage(e)))
}

async fn serve(
    config: &Config,
    tm: &mut Tidemark,
    stream: &mut Stream,
    unsent: &mut Vec<Element>,
) -> Result<(), Fatal> {
    let hello = tm
        .on_connected()
        .map_err(|e| Fatal::Stop(ComponentError::Storage(e)))?;
    send_all(stream, &hello).await?;
    if !unsent.is_empty() {
        info!(
            count = unsent.len(),
            "sending answers the last connection did not take"
        );
        send_all(stream, unsent).await?;
        unsent.clear();
    }

    let batch_limit = config.storage.flush_batch;
    let mut batch: Vec<Element> = Vec::with_capacity(batch_limit);
    let mut pings = 0u64;
    // Deadlines inside the service (presence probes, expiry) need a clock
    // even when nothing arrives.
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = ticker.tick() => {
                let out = tm
                    .tick(now_millis())
                    .map_err(|e| Fatal::Stop(ComponentError::Storage(e)))?;
                if !out.is_empty() {
                    flush_store(tm)?;
                    send_all(stream, &out).await?;
                }
                continue;
            }
        };
        match step(item) {
            Step::Stanza(el) => batch.push(el),
            Step::Keepalive => {
                pings += 1;
                let own = config.component.jid.as_str();
                let ping = element(
                    "iq",
                    ns::COMPONENT,
                    &[
                        ("type", "get"),
                        ("from", own),
                        ("to", own),
                        ("id", &format!("keepalive-{pings}")),
                    ],
                );
                let mut ping = ping;
                ping.append_child(Element::bare("ping", ns::PING));
                debug!("silence; pinging");
                send_all(stream, &[ping]).await?;
                continue;
            }
            Step::Skip => continue,
            Step::End(r) => return r,
        }
        // Take whatever else has already arrived, so it shares the flush.
        let mut ended = None;
        while batch.len() < batch_limit {
            let Some(item) = stream.next().now_or_never() else {
                break;
            };
            match step(item) {
                Step::Stanza(el) => batch.push(el),
                Step::Keepalive | Step::Skip => {}
                Step::End(r) => {
                    ended = Some(r);
                    break;
                }
            }
        }

        let now = now_millis();
        let mut out = Vec::with_capacity(batch.len());
        for el in batch.drain(..) {
            out.extend(tm.handle(&el, now));
        }
        flush_store(tm)?;
        if let Some(r) = ended {
            // The server closed its side: it will not route these any more.
            *unsent = out;
            return r;
        }
        if let Err(e) = send_all(stream, &out).await {
            error!(
                pending = out.len(),
                "connection lost before answers were sent; they go out on the next connection"
            );
            *unsent = out;
            return Err(e);
        }
    }
}
