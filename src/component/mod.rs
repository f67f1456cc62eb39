//! The XEP-0114 connection to the server, kept up for as long as tidemark
//! runs.
//!
//! Reading goes through our own bounded decoder ([`crate::wire`]): a stanza
//! over a `limits.*` size is skipped and answered with `policy-violation`,
//! and the stream stays up (tokio-xmpp's reader ended the whole connection
//! on one long attribute, and overflowed the stack on deep nesting).
//! Writing is serialized elements through one buffer per batch. Silence is
//! answered with a ping, and a lost connection is re-established with
//! backoff.
//!
//! Stanzas are handled in batches: everything that has arrived is processed,
//! the store is flushed once, and only then are the answers sent. Statuses
//! that arrive together share one flush (group commit), and nothing is
//! relayed before the write it depends on is durable. The flush runs off
//! this task ([`commit`]): while it does, the next batch is read and
//! handled, and its answers wait for a flush of their own.

pub mod clock;
mod commit;
mod conn;
mod guard;
mod handshake;
pub mod metrics_endpoint;

use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use minidom::Element;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::metrics::{METRICS, Refusal, StanzaKind};
use crate::service::Tidemark;
use crate::stanza::{element, ns};
use crate::store::StoreError;
use crate::store::retention::Retention;
use crate::wire::Frame;
use clock::now_millis;
use commit::GroupCommit;
use conn::{Frames, ReadError, Writer};

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(
        "the server at {server} refused {jid} (not-authorized): either the component secret is wrong (check component.secret against component_secret in Prosody, the ejabberd_service password in ejabberd) or the server serves no component named {jid} (ejabberd says not-authorized for that too: add it to the listener's hosts)"
    )]
    SecretRejected { server: String, jid: String },
    #[error(
        "the server at {server} does not serve a component named {jid} (host-unknown): add `Component \"{jid}\"` to the server's config"
    )]
    UnknownComponent { server: String, jid: String },
    #[error(
        "the server at {server} answered as a {} port (stream namespace {ns}), not a component port: set component.server to the server's component port (Prosody: component_ports, default 5347)",
        port_kind(ns)
    )]
    NotComponentPort { server: String, ns: String },
    #[error(
        "the server at {server} refused the connection (conflict: \"{text}\"): another process is connected as {jid}; stop it or pick another component.jid"
    )]
    AlreadyConnected {
        server: String,
        jid: String,
        text: String,
    },
    #[error("storage failed, stopping so nothing is acknowledged that is not kept: {0}")]
    Storage(#[from] StoreError),
}

fn port_kind(ns: &str) -> &'static str {
    match ns {
        "jabber:client" => "client (c2s)",
        "jabber:server" => "server-to-server (s2s)",
        _ => "non-component",
    }
}

/// A `<stream:error/>` as the server sent it: the condition and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamError {
    pub condition: String,
    pub text: String,
}

impl StreamError {
    pub fn of(el: &Element) -> Self {
        let condition = el
            .children()
            .find(|c| c.ns() == ns::STREAMS && c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| "undefined-condition".into());
        let text = el
            .children()
            .find(|c| c.is("text", ns::STREAMS))
            .map(|c| c.text())
            .unwrap_or_default();
        StreamError { condition, text }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str(&self.condition)
        } else {
            write!(f, "{} ({:?})", self.condition, self.text)
        }
    }
}

/// Why one connection attempt or session ended, when it is worth retrying.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Retry {
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, io::Error),
    /// rustls' reason, as `invalid peer certificate: UnknownIssuer`.
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, io::Error),
    #[error("stream error from server: {0}")]
    StreamError(StreamError),
    #[error("connection lost: {0}")]
    Lost(String),
}

pub(crate) enum Fatal {
    Stop(ComponentError),
    Retry(Retry),
}

impl From<Retry> for Fatal {
    fn from(r: Retry) -> Self {
        Fatal::Retry(r)
    }
}

fn storage(e: StoreError) -> Fatal {
    Fatal::Stop(ComponentError::Storage(e))
}

/// Connects, serves, and reconnects until a fatal error.
pub async fn run(config: &Config, tm: &mut Tidemark) -> Result<(), ComponentError> {
    let (_keep, stop) = watch::channel(false);
    run_until(config, tm, stop).await
}

/// As [`run`], until `stop` turns true: then what has arrived is handled
/// and answered, the store flushed and the stream closed.
pub async fn run_until(
    config: &Config,
    tm: &mut Tidemark,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ComponentError> {
    let mut backoff = Duration::from_secs(1);
    // Answers whose statuses are recorded but that the lost connection did not
    // take: sent again on the next connection rather than lost (a client may
    // see one twice; XEP-0184 and XEP-0333 answers are idempotent, and a
    // message keeps its id).
    let mut unsent: Vec<Element> = Vec::new();
    // Retention is the store's housekeeping, not the service's: a pass goes
    // on across reconnects.
    let mut retention = Retention::default();
    let mut connected_before = false;
    // The servers of `component.server` in turn: one that cannot be reached
    // or ends the stream (a cluster node going down) is left for the next.
    let servers = &config.component.servers;
    let mut next = 0;
    let stopping = |unsent: &Vec<Element>| {
        if !unsent.is_empty() {
            warn!(
                count = unsent.len(),
                "stopping while disconnected: answers the last connection did not take are not sent (their statuses are kept)"
            );
        }
        Ok(())
    };
    loop {
        let server = &servers[next % servers.len()];
        next += 1;
        let attempt = tokio::select! {
            r = handshake::connect(config, server, !connected_before) => r,
            _ = stopped(&mut stop) => return stopping(&unsent),
        };
        match attempt {
            Ok((reader, writer)) => {
                if connected_before {
                    METRICS.reconnected();
                }
                connected_before = true;
                info!(
                    server = %server,
                    jid = %config.component.jid,
                    tls = config.component.tls.is_some(),
                    "connected to server"
                );
                // A stream that ends is retried on the same server first.
                next -= 1;
                backoff = Duration::from_secs(1);
                let mut session = Session {
                    config,
                    tm,
                    reader: reader.spawn(),
                    writer,
                    unsent: &mut unsent,
                    retention: &mut retention,
                    pings: 0,
                    pinged_at: None,
                    batch: Vec::new(),
                };
                match session.serve(&mut stop).await {
                    Ok(Ended::Stopped) => return Ok(()),
                    Ok(Ended::ServerClosed) => warn!("server closed the stream; reconnecting"),
                    Err(Fatal::Stop(e)) => return Err(e),
                    Err(Fatal::Retry(e)) => warn!(error = %e, "disconnected; reconnecting"),
                }
            }
            Err(Fatal::Stop(e)) => return Err(e),
            Err(Fatal::Retry(e)) if next % servers.len() != 0 => {
                warn!(error = %e, "cannot connect to server; trying the next");
                continue;
            }
            Err(Fatal::Retry(e)) => {
                // Every server tried: wait, longer each round.
                warn!(error = %e, retry_in = ?backoff, "cannot connect to server");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => return stopping(&unsent),
                }
                backoff = (backoff * 2).min(config.component.reconnect_max);
                continue;
            }
        }
        // A short pause so a server that accepts and drops at once is not
        // hammered.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stopped(&mut stop) => return stopping(&unsent),
        }
    }
}

/// Resolves once `stop` is true; never if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How a session ended without an error.
enum Ended {
    Stopped,
    ServerClosed,
}

/// One arrival, kept in order within a batch.
enum Item {
    Stanza(Element),
    /// An answer that needs no handling (a refusal of an oversized stanza).
    Answer(Element),
}

/// Batches of at least this many stanzas are freed by the reading task.
const RETIRE_FROM: usize = 64;

/// How long a stopping tidemark keeps taking stanzas the server already
/// routed to it: until the stream is quiet this long, at most `STOP_DRAIN`.
const STOP_QUIET: Duration = Duration::from_millis(150);
const STOP_DRAIN: Duration = Duration::from_secs(2);

struct Session<'a> {
    config: &'a Config,
    tm: &'a mut Tidemark,
    reader: Frames,
    writer: Writer,
    unsent: &'a mut Vec<Element>,
    retention: &'a mut Retention,
    pings: u64,
    pinged_at: Option<Instant>,
    /// The batch being read, kept from batch to batch: growing a vector of
    /// hundreds of stanzas each time made glibc's allocator consolidate its
    /// free lists, which showed in every profile.
    batch: Vec<Item>,
}

impl Session<'_> {
    async fn serve(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Ended, Fatal> {
        let hello = self.tm.on_connected(now_millis()).map_err(storage)?;
        let wrote = !hello.writes.is_empty();
        let hello = hello.apply(&**self.tm.store()).map_err(storage)?;
        if wrote {
            self.flush_store().await?;
        }
        self.send(hello).await?;
        if !self.unsent.is_empty() {
            info!(
                count = self.unsent.len(),
                "sending answers the last connection did not take"
            );
            let pending = std::mem::take(self.unsent);
            self.send(pending).await?;
        }
        let mut commit = GroupCommit::new(self.tm.store().clone(), self.config.storage.flush_batch);
        let ended = self.pipelined(&mut commit, stop).await;
        if let Err(Fatal::Stop(_)) = ended {
            return ended;
        }
        // Handled but not sent (this connection is over): kept for the next
        // one, once durable, after any answers a failed write left there.
        let rest = self.settled(&mut commit).await?;
        self.unsent.extend(rest);
        ended
    }

    /// Reads and handles the next batch while the previous one is flushed;
    /// each batch's answers go out, in order, once its flush is done.
    async fn pipelined(
        &mut self,
        commit: &mut GroupCommit,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Ended, Fatal> {
        // Deadlines inside the service (presence probes, expiry) need a clock
        // even when nothing arrives.
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let silence = self.keepalive_deadline();
            let room = commit.room();
            // Reading comes last: under load it is always ready, and the
            // rest must not wait behind it. While reading waits for a flush
            // (room 0) silence says nothing about the server.
            tokio::select! {
                biased;
                out = commit.durable() => {
                    let out = match out {
                        Ok(out) => out,
                        Err(e) => return Err(self.lost(commit, e).await),
                    };
                    self.free(commit.take_spent());
                    let emptied = self.send(out).await?;
                    commit.recycle(emptied);
                }
                _ = stopped(stop) => return self.finish(commit).await,
                _ = ticker.tick() => self.tick(commit)?,
                _ = tokio::time::sleep_until(silence), if room > 0 => self.keepalive().await?,
                first = self.reader.next(), if room > 0 => {
                    let ended = self.collect(first, room);
                    self.handle(commit);
                    if let Some(end) = ended {
                        return end;
                    }
                }
            }
        }
    }

    /// Takes `first` and whatever else has already arrived, up to `limit`,
    /// into the batch, so they share one flush. Returns how the stream
    /// ended, if it did.
    fn collect(
        &mut self,
        first: Result<Frame, ReadError>,
        limit: usize,
    ) -> Option<Result<Ended, Fatal>> {
        let batch = &mut self.batch;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Ok(Frame::Stanza(el)) if el.is("error", ns::STREAM) => {
                    return Some(Err(Retry::StreamError(StreamError::of(&el)).into()));
                }
                Ok(Frame::Stanza(el)) => {
                    METRICS.stanza_in(StanzaKind::of(el.name()));
                    batch.push(Item::Stanza(el));
                }
                Ok(Frame::Refused(r)) => {
                    METRICS.stanza_in(StanzaKind::of(r.name.as_deref().unwrap_or("")));
                    METRICS.refused(Refusal::Size);
                    warn!(
                        limit = r.limit.key(),
                        kind = r.name.as_deref(),
                        id = r.id.as_deref(),
                        from = r.from.as_deref(),
                        to = r.to.as_deref(),
                        "stanza over a size limit refused"
                    );
                    if let Some(reply) = r.reply(self.config.component.jid.as_str()) {
                        batch.push(Item::Answer(reply));
                    }
                }
                Ok(Frame::End) | Err(ReadError::Closed) => return Some(Ok(Ended::ServerClosed)),
                Ok(Frame::Header { .. }) => {
                    return Some(Err(Retry::Lost("a second stream header".into()).into()));
                }
                Err(e) => return Some(Err(Retry::Lost(e.to_string()).into())),
            }
            if batch.len() >= limit {
                break;
            }
            next = self.reader.try_next().transpose();
        }
        None
    }

    /// Handles the batch; its answers wait in `commit` for a flush that
    /// covers its writes.
    fn handle(&mut self, commit: &mut GroupCommit) {
        if self.batch.is_empty() {
            return;
        }
        let now = now_millis();
        let service = self.config.component.jid.as_str();
        let stanzas = self.batch.len();
        let out = commit.answers();
        let mut handled = Vec::with_capacity(stanzas);
        let store = self.tm.store().clone();
        for item in self.batch.drain(..) {
            match item {
                Item::Stanza(el) => {
                    let tm = &mut *self.tm;
                    let effects = guard::guarded(&el, service, || tm.handle(&el, now));
                    out.extend(guard::applied(&el, service, &*store, effects));
                    handled.push(el);
                }
                Item::Answer(el) => out.push(el),
            }
        }
        commit.hold(handled);
        commit.gather(stanzas, vec![]);
    }

    /// Frees the stanzas of batches whose answers went out. A large batch
    /// is freed by the reading task (see `retire`); a small one here, where
    /// waking that task would cost more than it saves and add a hop to a
    /// lightly loaded stanza's path.
    fn free(&self, spent: Vec<Element>) {
        if spent.len() >= RETIRE_FROM {
            self.reader.retire(spent);
        }
    }

    /// Every answer `commit` holds, once durable ([`GroupCommit::settle`]).
    /// If a flush fails, the senders of the stanzas it leaves unanswered
    /// are told, and the failure ends the session.
    async fn settled(&mut self, commit: &mut GroupCommit) -> Result<Vec<Element>, Fatal> {
        let settled = commit.settle().await;
        self.free(commit.take_spent());
        match settled {
            Ok(out) => Ok(out),
            Err(e) => Err(self.lost(commit, e).await),
        }
    }

    /// A flush failed: nothing of its batch, nor of the one behind it, goes
    /// out; each sender of a message or request in them gets an error that
    /// says so (best effort: the connection may be gone too).
    async fn lost(&mut self, commit: &mut GroupCommit, e: StoreError) -> Fatal {
        let service = self.config.component.jid.as_str();
        let unanswered = commit.unanswered();
        let bounces: Vec<Element> = unanswered
            .iter()
            .filter_map(|stanza| {
                guard::not_processed(
                    stanza,
                    service,
                    "the message status store failed; this was not processed, try again",
                )
            })
            .collect();
        error!(
            stanzas = unanswered.len(),
            told = bounces.len(),
            error = %e,
            "the store's flush failed; nothing of its batch was sent, and its senders are told"
        );
        for el in &bounces {
            self.writer.queue(el);
        }
        let _ = self.writer.flush().await;
        storage(e)
    }

    /// Sends `out`; if the connection is lost, keeps them for the next one.
    /// Returns `out` emptied, for its room to be used again.
    async fn send(&mut self, mut out: Vec<Element>) -> Result<Vec<Element>, Fatal> {
        if out.is_empty() {
            return Ok(out);
        }
        for el in &out {
            self.writer.queue(el);
        }
        if let Err(e) = self.writer.flush().await {
            error!(
                pending = out.len(),
                "connection lost before answers were sent; they go out on the next connection"
            );
            self.unsent.extend(out);
            return Err(Retry::Lost(format!("write: {e}")).into());
        }
        out.clear();
        Ok(out)
    }

    async fn flush_store(&self) -> Result<(), Fatal> {
        let store = self.tm.store().clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| storage(StoreError::Backend(format!("the flush failed: {e}"))))?
            .map_err(storage)?;
        METRICS.flushed(started.elapsed());
        Ok(())
    }

    /// The service's clock; what it answers takes the same path as the
    /// answers to stanzas.
    fn tick(&mut self, commit: &mut GroupCommit) -> Result<(), Fatal> {
        let now = now_millis();
        self.tm.store().check().map_err(storage)?;
        // A failed step is tried again at a later tick rather than ending the
        // connection; stanzas meet any real storage fault.
        let keep = self.config.storage.retention;
        if let Err(e) = self.retention.step(&**self.tm.store(), keep, now) {
            warn!(error = %e, "expiring old statuses failed; trying again later");
        }
        let tm = &mut *self.tm;
        let out = match catch_unwind(AssertUnwindSafe(|| tm.tick(now))) {
            Ok(r) => r.map_err(storage)?,
            Err(payload) => {
                error!(
                    panic = guard::panic_text(payload.as_ref()),
                    "the service tick panicked; skipped"
                );
                METRICS.refused(Refusal::Panic);
                return Ok(());
            }
        };
        let send = out.apply(&**self.tm.store()).map_err(storage)?;
        commit.gather(0, send);
        Ok(())
    }

    /// When silence calls for a ping, or (with a ping unanswered) ends the
    /// connection.
    fn keepalive_deadline(&mut self) -> Instant {
        let keep = self.config.component.keepalive;
        match self.pinged_at {
            Some(p) if self.reader.last_read() < p => p + keep,
            _ => {
                self.pinged_at = None;
                self.reader.last_read() + keep
            }
        }
    }

    async fn keepalive(&mut self) -> Result<(), Fatal> {
        let keep = self.config.component.keepalive;
        let now = Instant::now();
        if let Some(p) = self.pinged_at
            && self.reader.last_read() < p
        {
            return Err(Retry::Lost(format!(
                "nothing from the server for {:?} after a keepalive ping",
                now - p
            ))
            .into());
        }
        if self.reader.last_read() + keep > now {
            // Bytes came in since the deadline was set.
            return Ok(());
        }
        self.pings += 1;
        let own = self.config.component.jid.as_str();
        let mut ping = element(
            "iq",
            ns::COMPONENT,
            &[
                ("type", "get"),
                ("from", own),
                ("to", own),
                ("id", &format!("keepalive-{}", self.pings)),
            ],
        );
        ping.append_child(Element::bare("ping", ns::PING));
        debug!("silence; pinging");
        self.pinged_at = Some(now);
        self.send(vec![ping]).await.map(drop)
    }

    /// A graceful stop: handle and answer what the server has already
    /// routed here (until the stream is quiet), flush, close the stream.
    async fn finish(&mut self, commit: &mut GroupCommit) -> Result<Ended, Fatal> {
        info!("stopping: answering what has arrived, then closing the stream");
        let give_up = Instant::now() + STOP_DRAIN;
        loop {
            // No overlap while stopping: each batch is answered before the
            // next is read, so nothing is left held when the stream closes.
            let out = self.settled(commit).await?;
            self.send(out).await?;
            let quiet = (Instant::now() + STOP_QUIET).min(give_up);
            let Ok(first) = tokio::time::timeout_at(quiet, self.reader.next()).await else {
                break;
            };
            let ended = self.collect(first, commit.room());
            self.handle(commit);
            if ended.is_some() {
                let rest = self.settled(commit).await?;
                self.unsent.extend(rest);
                if !self.unsent.is_empty() {
                    warn!(
                        count = self.unsent.len(),
                        "the server closed the stream while tidemark was stopping; these answers are not sent (their statuses are kept)"
                    );
                }
                return Ok(Ended::Stopped);
            }
        }
        // Room occupants learn the service is going (XEP-0045 status 332):
        // occupancy is cleared and flushed first, then the notices go out,
        // before the stream closes. Writes that had no answer (housekeeping
        // at a tick) are made durable by the same flush.
        let bye = self.tm.shutdown();
        let bye = bye.apply(&**self.tm.store()).map_err(storage)?;
        self.flush_store().await?;
        self.send(bye).await?;
        self.writer.queue_raw("</stream:stream>");
        if let Err(e) = self.writer.flush().await {
            warn!(error = %e, "could not close the stream");
            return Ok(Ended::Stopped);
        }
        // The server answers with its own end tag; anything it routed here
        // before that can no longer be answered.
        let mut late = 0usize;
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(frame)) = tokio::time::timeout_at(until, self.reader.next()).await {
            match frame {
                Frame::End => break,
                _ => late += 1,
            }
        }
        if late > 0 {
            warn!(
                count = late,
                "stanzas arrived after tidemark closed its stream; they were not handled"
            );
        }
        self.writer.shutdown().await;
        info!("stream closed");
        Ok(Ended::Stopped)
    }
}
