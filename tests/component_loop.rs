//! The XEP-0114 connection loop against a scripted server on loopback: the
//! parts a real Prosody cannot be made to do on cue (closing right after a
//! stanza, staying silent, refusing the handshake in a given way).
//! Everything else about the connection is tested against Prosody in
//! tests/integration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha1::{Digest, Sha1};
use tidemark::component::clock::now_millis;
use tidemark::component::{self, ComponentError};
use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{SledStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const SECRET: &str = "s3cret";
const STREAM_ID: &str = "abc123";

fn config(port: u16) -> Config {
    let text = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:{port}\"\nsecret = \"{SECRET}\"\n\
         keepalive_secs = 1\nreconnect_max_secs = 1\n[storage]\npath = \"unused\"\n"
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

/// tidemark's connection loop, running until it ends or the test aborts it.
fn spawn_tidemark(config: Config) -> tokio::task::JoinHandle<Result<(), ComponentError>> {
    tokio::spawn(async move {
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
        let mut tm = Tidemark::new(config.clone(), store, now_millis()).unwrap();
        component::run(&config, &mut tm).await
    })
}

/// The server side of one component connection, speaking raw XML.
struct Peer {
    sock: TcpStream,
    seen: String,
}

impl Peer {
    /// Accepts a connection and answers the stream header; returns the peer
    /// and the handshake digest tidemark sent.
    async fn accept(listener: &TcpListener) -> (Peer, String) {
        let (sock, _) = timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("tidemark connects")
            .unwrap();
        let mut peer = Peer {
            sock,
            seen: String::new(),
        };
        peer.wait_for("jabber:component:accept").await;
        peer.wait_for(">").await;
        peer.write(&format!(
            "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
             xmlns='jabber:component:accept' id='{STREAM_ID}' from='chat.localhost'>"
        ))
        .await;
        peer.wait_for("</handshake>").await;
        let open = peer.seen.find("<handshake").expect("a handshake");
        let start = open + peer.seen[open..].find('>').unwrap() + 1;
        let end = peer.seen.find("</handshake>").unwrap();
        let digest = peer.seen[start..end].to_owned();
        peer.seen.clear();
        (peer, digest)
    }

    async fn accept_and_login(listener: &TcpListener) -> Peer {
        let (mut peer, digest) = Self::accept(listener).await;
        let expected = hex::encode(Sha1::digest(format!("{STREAM_ID}{SECRET}").as_bytes()));
        assert_eq!(
            digest, expected,
            "XEP-0114 §3: SHA-1 of stream id and secret"
        );
        peer.write("<handshake/>").await;
        peer
    }

    async fn write(&mut self, xml: &str) {
        self.sock.write_all(xml.as_bytes()).await.unwrap();
    }

    /// Reads until `needle` has been seen; panics after 5 s.
    async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            let n = tokio::time::timeout_at(deadline, self.sock.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} within 5 s; seen: {}", self.seen))
                .unwrap();
            assert!(
                n > 0,
                "connection closed while waiting for {needle:?}; seen: {}",
                self.seen
            );
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        self.seen.clone()
    }
}

const DISCO: &str = "<iq type='get' id='d1' from='alice@localhost/a' to='chat.localhost'>\
                     <query xmlns='http://jabber.org/protocol/disco#info'/></iq>";

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_queries_pings_when_silent_and_survives_bad_stanzas() {
    let (l, port) = listener().await;
    let task = spawn_tidemark(config(port));
    let mut peer = Peer::accept_and_login(&l).await;
    peer.write(DISCO).await;
    peer.wait_for("urn:tidemark:status:0").await;

    // A stanza xmpp-parsers would reject (a bad JID): an error, and the
    // connection goes on.
    peer.write("<iq type='get' id='bad' from='alice@localhost/a' to='bad@@jid'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let seen = peer.wait_for("jid-malformed").await;
    assert!(seen.contains("from='chat.localhost' id='bad'"), "{seen}");
    peer.write(&DISCO.replace("d1", "d2")).await;
    peer.wait_for("id='d2'").await;

    // Silence: tidemark pings within its keepalive (1 s here).
    peer.seen.clear();
    peer.wait_for("urn:xmpp:ping").await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_lost_connection_did_not_take_go_out_on_the_next() {
    let (l, port) = listener().await;
    let task = spawn_tidemark(config(port));
    let mut peer = Peer::accept_and_login(&l).await;
    // The query and the end of the stream arrive together: tidemark handles
    // the query but cannot answer on a closed stream.
    peer.write(&format!("{DISCO}</stream:stream>")).await;
    let _ = peer.sock.shutdown().await;
    drop(peer);

    let mut again = Peer::accept_and_login(&l).await;
    let seen = again.wait_for("id='d1'").await;
    assert!(seen.contains("disco#info"), "{seen}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_stops_with_a_message_that_says_so() {
    let (l, port) = listener().await;
    let task = spawn_tidemark(config(port));
    let (mut peer, _) = Peer::accept(&l).await;
    peer.write(
        "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
    )
    .await;
    let result = timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let err = result.expect_err("a refused secret is fatal");
    assert!(matches!(err, ComponentError::SecretRejected { .. }));
    assert!(err.to_string().contains("secret"), "{err}");
    // ejabberd answers not-authorized for an unknown component name too:
    // the message names both causes.
    assert!(
        err.to_string()
            .contains("serves no component named chat.localhost"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_retried_until_it_comes() {
    let (l, port) = listener().await;
    drop(l);
    let task = spawn_tidemark(config(port));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!task.is_finished(), "still trying");
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut peer = Peer::accept_and_login(&l).await;
    peer.write(DISCO).await;
    peer.wait_for("id='d1'").await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_stanza_is_answered_and_the_stream_stays_up() {
    let (l, port) = listener().await;
    let task = spawn_tidemark(config(port));
    let mut peer = Peer::accept_and_login(&l).await;
    let id = "i".repeat(9 * 1024);
    peer.write(&format!(
        "<message type='chat' from='mallory@localhost/x' to='bob\\40localhost@chat.localhost' id='{id}'><body>x</body></message>"
    ))
    .await;
    let deep = format!(
        "<message from='mallory@localhost/x' to='chat.localhost' id='deep'>{}{}</message>",
        "<a>".repeat(20_000),
        "</a>".repeat(20_000)
    );
    peer.write(&deep).await;
    peer.write(DISCO).await;
    let seen = peer.wait_for("id='d1'").await;
    assert!(
        seen.contains("limits.max_attribute_bytes (4096 bytes)"),
        "{seen}"
    );
    assert!(
        seen.contains("limits.max_depth (64 elements deep)"),
        "{seen}"
    );
    assert_eq!(seen.matches("policy-violation").count(), 2, "{seen}");
    assert!(!task.is_finished());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_port_is_named_as_such() {
    let (l, port) = listener().await;
    let task = spawn_tidemark(config(port));
    let (mut sock, _) = timeout(Duration::from_secs(10), l.accept())
        .await
        .unwrap()
        .unwrap();
    sock.write_all(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='c' from='chat.localhost'>\
          <stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
    )
    .await
    .unwrap();
    let err = timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .expect_err("a client port is fatal");
    assert!(
        matches!(err, ComponentError::NotComponentPort { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("component_ports"), "{err}");
}

const CONFLICT: &str = "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
    <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Component already connected</text></stream:error></stream:stream>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_the_first_connection_stops_quoting_the_server() {
    let (l, port) = listener().await;
    let task = spawn_tidemark(config(port));
    let (mut peer, _) = Peer::accept(&l).await;
    peer.write(CONFLICT).await;
    let err = timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .expect_err("another instance is fatal at start");
    let text = err.to_string();
    assert!(text.contains("Component already connected"), "{text}");
    assert!(
        text.contains("another process is connected as chat.localhost"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_a_reconnect_is_retried() {
    let (l, port) = listener().await;
    let task = spawn_tidemark(config(port));
    let first = Peer::accept_and_login(&l).await;
    drop(first);
    let (mut second, _) = Peer::accept(&l).await;
    second.write(CONFLICT).await;
    let mut third = Peer::accept_and_login(&l).await;
    assert!(!task.is_finished());
    third.write(DISCO).await;
    third.wait_for("id='d1'").await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_answers_what_arrived_and_closes_the_stream() {
    let (l, port) = listener().await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let cfg = config(port);
    let task = tokio::spawn(async move {
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
        let mut tm = Tidemark::new(cfg.clone(), store, now_millis()).unwrap();
        component::run_until(&cfg, &mut tm, stop).await
    });
    let mut peer = Peer::accept_and_login(&l).await;
    peer.write(DISCO).await;
    peer.wait_for("id='d1'").await;
    peer.seen.clear();
    peer.write(&DISCO.replace("d1", "d2")).await;
    stop_tx.send(true).unwrap();
    // Arrives after the stop, while the stream is not yet quiet: answered.
    peer.write(&DISCO.replace("d1", "d3")).await;
    let seen = peer.wait_for("</stream:stream>").await;
    let d2 = seen.find("id='d2'").expect("d2 answered");
    let d3 = seen.find("id='d3'").expect("d3 answered");
    assert!(
        d2.max(d3) < seen.find("</stream:stream>").unwrap(),
        "{seen}"
    );
    peer.write("</stream:stream>").await;
    let r = timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
}

mod held_store;
use held_store::HeldStore;

/// As [`config`], with `[storage]` and `[limits]` lines of the test's own
/// (the rate limit is lifted: these tests send one user's messages fast).
fn config_with(port: u16, storage: &str) -> Config {
    let text = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:{port}\"\nsecret = \"{SECRET}\"\n\
         keepalive_secs = 30\nreconnect_max_secs = 1\n[storage]\npath = \"unused\"\n{storage}\n\
         [limits]\nrate_per_second = 100000.0\nrate_burst = 100000\n"
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

fn spawn_tidemark_on(
    config: Config,
    store: Arc<HeldStore>,
) -> tokio::task::JoinHandle<Result<(), ComponentError>> {
    tokio::spawn(async move {
        let store: Arc<dyn Store> = store;
        let mut tm = Tidemark::new(config.clone(), store, now_millis()).unwrap();
        component::run(&config, &mut tm).await
    })
}

/// A chat message from alice to bob's tracked address, asking for a receipt:
/// tidemark records it, then relays it to bob.
fn chat(id: &str) -> String {
    format!(
        "<message type='chat' from='alice@localhost/a' to='bob\\40localhost@chat.localhost' id='{id}'>\
         <body>hi</body><request xmlns='urn:xmpp:receipts'/></message>"
    )
}

/// Alice and bob grant each other presence and are online, so alice's
/// messages pass the presence gate; returns once one has been relayed.
async fn befriend(peer: &mut Peer) {
    for (x, y) in [("alice", "bob"), ("bob", "alice")] {
        peer.write(&format!(
            "<presence type='subscribed' from='{x}@localhost' to='{y}\\40localhost@chat.localhost'/>"
        ))
        .await;
    }
    for (x, y) in [("alice", "bob"), ("bob", "alice")] {
        peer.write(&format!(
            "<presence from='{x}@localhost/a' to='{y}\\40localhost@chat.localhost'/>"
        ))
        .await;
    }
    peer.write(&chat("warm")).await;
    let seen = peer.wait_for("id='warm'").await;
    assert_eq!(relayed(&seen), ["warm"], "{seen}");
    peer.seen.clear();
}

/// The ids of the messages relayed to bob, in the order they arrived.
/// The ids of the chat messages relayed to bob, in order (not the headline
/// telling him alice's name).
fn relayed(seen: &str) -> Vec<String> {
    seen.split("<message")
        .skip(1)
        .filter(|m| m.contains("to='bob@localhost'") || m.contains("to=\"bob@localhost\""))
        .filter(|m| !m.contains("type='headline'"))
        .filter_map(|m| {
            let at = m.find(" id='").map(|i| i + 5)?;
            Some(m[at..at + m[at..].find('\'')?].to_owned())
        })
        .collect()
}

/// Whatever tidemark sends within `wait`.
async fn read_for(peer: &mut Peer, wait: Duration) -> String {
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, peer.sock.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        peer.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    peer.seen.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_relayed_only_after_its_flush_and_reading_goes_on_meanwhile() {
    let (l, port) = listener().await;
    let store = Arc::new(HeldStore::new());
    let task = spawn_tidemark_on(config_with(port, ""), store.clone());
    let mut peer = Peer::accept_and_login(&l).await;
    befriend(&mut peer).await;

    store.hold();
    peer.write(&chat("m1")).await;
    store.wait_for_messages(2).await;
    // Recorded but not durable: not relayed.
    assert_eq!(
        relayed(&read_for(&mut peer, Duration::from_millis(300)).await),
        Vec::<String>::new()
    );
    // The flush of m1 is still held, and tidemark reads and records m2.
    peer.write(&chat("m2")).await;
    store.wait_for_messages(3).await;
    assert_eq!(
        relayed(&read_for(&mut peer, Duration::from_millis(300)).await),
        Vec::<String>::new()
    );

    store.release();
    peer.wait_for("id='m2'").await;
    assert_eq!(relayed(&peer.seen), ["m1", "m2"], "{}", peer.seen);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_out_in_the_order_their_stanzas_came() {
    let (l, port) = listener().await;
    let store = Arc::new(HeldStore::new());
    let task = spawn_tidemark_on(config_with(port, "flush_batch = 7"), store.clone());
    let mut peer = Peer::accept_and_login(&l).await;
    befriend(&mut peer).await;
    // Written one by one and with flushes held now and then, so they fall
    // into many batches, some gathered behind a held flush.
    let ids: Vec<String> = (0..300).map(|i| format!("o{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        if i % 50 == 10 {
            store.hold();
        }
        if i % 50 == 30 {
            store.release();
        }
        peer.write(&chat(id)).await;
        if i % 3 == 0 {
            tokio::task::yield_now().await;
        }
    }
    store.release();
    peer.wait_for("id='o299'").await;
    assert_eq!(
        relayed(&peer.seen),
        ids,
        "{}",
        &peer.seen[..peer.seen.len().min(1500)]
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_stops_while_a_full_batch_waits_behind_a_flush() {
    let (l, port) = listener().await;
    let store = Arc::new(HeldStore::new());
    let task = spawn_tidemark_on(config_with(port, "flush_batch = 2"), store.clone());
    let mut peer = Peer::accept_and_login(&l).await;
    befriend(&mut peer).await;
    store.hold();
    peer.write(&chat("first")).await;
    store.wait_for_messages(2).await;
    let rest: String = (0..6).map(|i| chat(&format!("r{i}"))).collect();
    peer.write(&rest).await;
    // One batch flushing, one of flush_batch (2) gathered: the rest waits
    // in the socket.
    store.wait_for_messages(4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.messages(), 4);

    store.release();
    peer.wait_for("id='r5'").await;
    assert_eq!(
        relayed(&peer.seen),
        ["first", "r0", "r1", "r2", "r3", "r4", "r5"]
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_held_at_a_disconnect_go_out_on_the_next_connection_in_order() {
    let (l, port) = listener().await;
    let store = Arc::new(HeldStore::new());
    let task = spawn_tidemark_on(config_with(port, ""), store.clone());
    let mut peer = Peer::accept_and_login(&l).await;
    befriend(&mut peer).await;
    store.hold();
    // m1's flush is held; m2 is gathered behind it; then the stream ends.
    peer.write(&chat("m1")).await;
    store.wait_for_messages(2).await;
    peer.write(&chat("m2")).await;
    store.wait_for_messages(3).await;
    peer.write("</stream:stream>").await;
    let _ = peer.sock.shutdown().await;
    drop(peer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.release();

    let mut again = Peer::accept_and_login(&l).await;
    again.wait_for("id='m2'").await;
    assert_eq!(relayed(&again.seen), ["m1", "m2"], "{}", again.seen);
    task.abort();
}
