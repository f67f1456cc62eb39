//! XEP-0114 §3: open a stream to the component's domain, answer the stream
//! id with SHA-1(id + secret), and wait for the empty `<handshake/>`.

use std::io;
use std::time::Duration;

use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

use super::conn::{Reader, Writer, split_plain, split_tls};
use super::{ComponentError, Fatal, Retry, StreamError};
use crate::config::Config;
use crate::stanza::ns;
use crate::wire::{Frame, Limits};

/// Connects and authenticates. `first` is true until this process has been
/// connected once: a conflict then means another process holds the name.
pub(crate) async fn connect(config: &Config, first: bool) -> Result<(Reader, Writer), Fatal> {
    let server = &config.component.server;
    let jid = config.component.jid.to_string();
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(server.as_str()))
        .await
        .map_err(|_| Retry::Unreachable(server.clone(), io::ErrorKind::TimedOut.into()))?
        .map_err(|e| Retry::Unreachable(server.clone(), e))?;
    tcp.set_nodelay(true).ok();
    // With TLS nothing of XEP-0114 (the secret's digest least of all) is
    // written before the server's certificate has been verified for its
    // name: the handshake below is the first thing on the socket.
    let (r, w) = match &config.component.tls {
        None => split_plain(tcp),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
            let handshake = connector.connect(tls.server_name.clone(), tcp);
            let stream = tokio::time::timeout(Duration::from_secs(10), handshake)
                .await
                .map_err(|_| Retry::Tls(server.clone(), io::ErrorKind::TimedOut.into()))?
                .map_err(|e| Retry::Tls(server.clone(), e))?;
            split_tls(stream)
        }
    };
    let mut reader = Reader::new(r, Limits::from(&config.limits));
    let mut writer = Writer::new(w);

    // The server has as long as the keepalive to answer each step.
    let wait = config.component.keepalive.max(Duration::from_secs(5));

    writer.queue_raw(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}'>",
        ns::COMPONENT,
        ns::STREAM,
        escape_attr(&jid)
    ));
    writer
        .flush()
        .await
        .map_err(|e| Retry::Lost(format!("sending the stream header: {e}")))?;

    let frame = tokio::time::timeout(wait, reader.next())
        .await
        .map_err(|_| Retry::Lost("no stream header from the server".into()))?
        .map_err(|e| Retry::Lost(format!("stream header: {e}")))?;
    let stream_id = match frame {
        Frame::Header {
            id, ns: header_ns, ..
        } => {
            if header_ns != ns::COMPONENT {
                return Err(Fatal::Stop(ComponentError::NotComponentPort {
                    server: server.clone(),
                    ns: header_ns,
                }));
            }
            id.ok_or_else(|| Retry::Lost("server sent no stream id".into()))?
        }
        other => {
            return Err(Retry::Lost(format!("expected a stream header, got {other:?}")).into());
        }
    };

    let digest = Sha1::digest(format!("{stream_id}{}", config.component.secret).as_bytes());
    let mut handshake = Element::bare("handshake", ns::COMPONENT);
    handshake.append_text(hex::encode(digest));
    writer.queue(&handshake);
    writer
        .flush()
        .await
        .map_err(|e| Retry::Lost(format!("sending handshake: {e}")))?;

    let frame = tokio::time::timeout(wait, reader.next())
        .await
        .map_err(|_| Retry::Lost("no answer to the handshake".into()))?
        .map_err(|e| Retry::Lost(format!("during handshake: {e}")))?;
    match frame {
        Frame::Stanza(el) if el.is("handshake", ns::COMPONENT) => Ok((reader, writer)),
        Frame::Stanza(el) if el.is("error", ns::STREAM) => {
            let err = StreamError::of(&el);
            Err(match err.condition.as_str() {
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
                "conflict" if first => Fatal::Stop(ComponentError::AlreadyConnected {
                    server: server.clone(),
                    jid,
                    text: err.text,
                }),
                _ => Fatal::Retry(Retry::StreamError(err)),
            })
        }
        Frame::Stanza(el) => {
            Err(Retry::Lost(format!("expected <handshake/>, got <{}/>", el.name())).into())
        }
        Frame::Refused(_) | Frame::Header { .. } => {
            Err(Retry::Lost("unexpected data during handshake".into()).into())
        }
        Frame::End => Err(Retry::Lost("closed during handshake".into()).into()),
    }
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
}
