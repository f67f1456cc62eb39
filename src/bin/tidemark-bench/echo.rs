//! The baseline of scenario 1: a component with tokio-xmpp's xmlstream over
//! minidom and tidemark's batching, but no routing: no address parsing, no
//! presence gate, no lookups. Each stanza goes back with from and to
//! swapped. With `--no-store true` (the default of scenario 1) it neither
//! writes nor flushes: parsing and serialising only. Otherwise it makes sled
//! writes shaped like tidemark's schema 1 and flushes each batch.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{FutureExt, SinkExt, StreamExt};
use minidom::Element;
use sha1::{Digest, Sha1};
use tidemark::stanza::{ns, set_attr};
use tidemark::store::{ConversationKey, MessageRecord, SledStore, Store};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{ReadError, StreamHeader, Timeouts, XmlStream, initiate_stream};

use crate::util::Args;
use crate::wire::{DOMAIN, SECRET};

type Stream = XmlStream<BufStream<TcpStream>, Element>;

pub fn main(args: &Args) -> Result<(), String> {
    let server: String = args.get("server", String::new());
    let store: PathBuf = args.get("store", PathBuf::from("echo-store"));
    let flush_batch: usize = args.get("flush-batch", 512);
    let cache_mb: u64 = args.get("cache-mb", 64);
    let no_store: bool = args.get("no-store", false);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let store =
        Arc::new(SledStore::open(&store, cache_mb * 1024 * 1024).map_err(|e| e.to_string())?);
    rt.block_on(serve(&server, (!no_store).then_some(store), flush_batch))
}

async fn serve(
    server: &str,
    store: Option<Arc<SledStore>>,
    batch_limit: usize,
) -> Result<(), String> {
    let tcp = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    let header = StreamHeader {
        to: Some(Cow::Borrowed(DOMAIN)),
        from: None,
        id: None,
    };
    let timeouts = Timeouts {
        read_timeout: std::time::Duration::from_secs(30),
        response_timeout: std::time::Duration::from_secs(30),
    };
    let mut pending = initiate_stream(BufStream::new(tcp), ns::COMPONENT, header, timeouts)
        .await
        .map_err(|e| e.to_string())?;
    let id = pending.take_header().id.ok_or("no stream id")?.into_owned();
    let mut stream: Stream = pending.skip_features();
    let mut hs = Element::bare("handshake", ns::COMPONENT);
    hs.append_text(hex::encode(Sha1::digest(
        format!("{id}{SECRET}").as_bytes(),
    )));
    stream.send(&hs).await.map_err(|e| e.to_string())?;
    match stream.next().await {
        Some(Ok(el)) if el.is("handshake", ns::COMPONENT) => {}
        other => {
            return Err(format!(
                "handshake failed: {:?}",
                other.map(|r| r.map(|e| e.name().to_owned()))
            ));
        }
    }

    let mut batch: Vec<Element> = Vec::with_capacity(batch_limit);
    loop {
        match stream.next().await {
            Some(Ok(el)) => batch.push(el),
            Some(Err(ReadError::SoftTimeout)) | Some(Err(ReadError::ParseError(_))) => continue,
            _ => return Ok(()),
        }
        let mut ended = false;
        while batch.len() < batch_limit {
            let Some(item) = stream.next().now_or_never() else {
                break;
            };
            match item {
                Some(Ok(el)) => batch.push(el),
                Some(Err(ReadError::SoftTimeout)) | Some(Err(ReadError::ParseError(_))) => {}
                _ => {
                    ended = true;
                    break;
                }
            }
        }
        let now = tidemark::component::clock::now_millis();
        let mut out = Vec::with_capacity(batch.len());
        for el in batch.drain(..) {
            if let Some(store) = &store {
                write_like_tidemark(&**store, &el, now).map_err(|e| e.to_string())?;
            }
            let mut back = el;
            let from = back.attr("from").unwrap_or_default().to_owned();
            let to = back.attr("to").unwrap_or_default().to_owned();
            set_attr(&mut back, "from", to);
            set_attr(&mut back, "to", from);
            out.push(back);
        }
        if let Some(s) = store.clone() {
            tokio::task::block_in_place(|| s.flush()).map_err(|e| e.to_string())?;
        }
        for el in &out {
            stream.feed(el).await.map_err(|e| e.to_string())?;
        }
        SinkExt::<&Element>::flush(&mut stream)
            .await
            .map_err(|e| e.to_string())?;
        if ended {
            return Ok(());
        }
    }
}

/// The writes tidemark makes for each kind of stanza, with keys and values
/// of the same shape, but without the reads and checks that decide them.
fn write_like_tidemark(
    store: &dyn Store,
    el: &Element,
    now: u64,
) -> Result<(), tidemark::store::StoreError> {
    let from = el.attr("from").unwrap_or_default();
    let to = el.attr("to").unwrap_or_default();
    let from_bare = from.split('/').next().unwrap_or_default();
    let to_bare = to.split('/').next().unwrap_or_default();
    let conv = ConversationKey::direct(from_bare, to_bare);
    let record = |id: &str, delivered: Option<u64>| MessageRecord {
        id: id.to_owned(),
        sender: from_bare.to_owned(),
        recipient: to_bare.to_owned(),
        sent_at: now,
        delivered_at: delivered,
        failed: None,
        wants_receipt: true,
        wants_markers: true,
        readable: true,
        queued: false,
    };
    let unit_of = |id: &str| id.trim_start_matches('m').parse::<u64>().unwrap_or(0) + 1;
    if el.name() == "presence" {
        if el.attr("type") == Some("subscribed") {
            store.set_presence_allowed(from_bare, to_bare, true)?;
        }
        return Ok(());
    }
    if let Some(r) = el.get_child("received", ns::RECEIPTS) {
        let id = r.attr("id").unwrap_or_default();
        store.put_message(&conv, unit_of(id), &record(id, Some(now)))?;
    } else if let Some(d) = el.get_child("displayed", ns::CHAT_MARKERS) {
        let id = d.attr("id").unwrap_or_default();
        store.advance_mark(&conv, from_bare, unit_of(id), now)?;
    } else if el.has_child("body", ns::COMPONENT) {
        let id = el.attr("id").unwrap_or_default();
        let _ = store.next_seq()?;
        store.put_message(&conv, unit_of(id), &record(id, None))?;
    }
    Ok(())
}
