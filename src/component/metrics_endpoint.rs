//! `GET /metrics` in Prometheus' text format, when `[metrics] listen` is
//! set. A deliberately small HTTP/1.x responder: one request per
//! connection, bounded in size, time and concurrency, so a scraper (or
//! anyone who can reach the port) cannot hold the process's memory or
//! tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::metrics::METRICS;

/// The most a request's head may take.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request and take the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "metrics: too many connections; closed");
            continue;
        };
        tokio::spawn(async move {
            if tokio::time::timeout(REQUEST_TIMEOUT, answer(sock))
                .await
                .is_err()
            {
                debug!(%peer, "metrics: request timed out");
            }
            drop(permit);
        });
    }
}

async fn answer(mut sock: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() >= MAX_HEAD {
            break false;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n.min(MAX_HEAD + 4 - head.len())]),
        }
    };
    let response = if complete {
        respond(&head)
    } else {
        reply(
            431,
            "Request Header Fields Too Large",
            "text/plain",
            "request too large\n",
        )
    };
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// The response to a request head.
fn respond(head: &[u8]) -> String {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => reply(
            200,
            "OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &METRICS.render(),
        ),
        (_, "/metrics") => reply(405, "Method Not Allowed", "text/plain", "GET only\n"),
        _ => reply(404, "Not Found", "text/plain", "not found; try /metrics\n"),
    }
}

fn reply(code: u16, reason: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_metrics_is_prometheus_text_and_anything_else_is_not_found() {
        let ok = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(ok.contains("# TYPE tidemark_stanzas_in_total counter"));
        assert!(respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(respond(b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(respond(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(respond(b"\xff\xfe\r\n\r\n").starts_with("HTTP/1.1 404"));
    }

    #[tokio::test]
    async fn an_endless_request_head_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let junk = vec![b'a'; 3 * MAX_HEAD];
        let _ = sock.write_all(&junk).await;
        let mut got = String::new();
        let _ = sock.read_to_string(&mut got).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    }
}
