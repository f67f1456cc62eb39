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

/// Connects to `server` (one of `component.server`) and authenticates.
/// `first` is true until this process has been connected once: a conflict
/// then means another process holds the name.
pub(crate) async fn connect(
    config: &Config,
    server: &str,
    first: bool,
) -> Result<(Reader, Writer), Fatal> {
    let server = server.to_owned();
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
            let handshake = connector.connect(tls.name_for(&server), tcp);
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

#[cfg(test)]
mod tests {
    //! The TLS link against a server of our own (rustls' server side), with
    //! the development certificates of `certs/`.

    use std::path::Path;
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::{self, ServerConfig};

    use super::*;

    fn cert(name: &str) -> String {
        format!("{}/certs/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// A TLS server presenting `pem` (certificate then key).
    fn acceptor(pem: &str) -> TlsAcceptor {
        let pem = cert(pem);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pem)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pem).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }

    fn config(port: u16, extra: &str) -> Config {
        let text = format!(
            "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:{port}\"\nsecret = \"s3cret\"\ntls = true\nca_file = {:?}\n{extra}\n[storage]\npath = \"unused\"\n",
            cert("component-ca.crt")
        );
        Config::parse(&text, Path::new("test.toml")).unwrap()
    }

    /// The server side of one connection: TLS with `pem`, then XEP-0114
    /// (the header, the digest checked, `<handshake/>`). Returns what came
    /// in over TLS, or the TLS error.
    async fn serve_once(listener: TcpListener, pem: &'static str) -> Result<String, io::Error> {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor(pem).accept(tcp).await?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("<stream:stream") {
            let n = tls.read(&mut buf).await?;
            assert!(n > 0, "closed before the stream header");
            got.extend_from_slice(&buf[..n]);
        }
        tls.write_all(b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='chat.localhost'>").await?;
        let digest = hex::encode(Sha1::digest(b"abcs3cret"));
        while !String::from_utf8_lossy(&got).contains("</handshake>") {
            let n = tls.read(&mut buf).await?;
            assert!(n > 0, "closed before the handshake");
            got.extend_from_slice(&buf[..n]);
        }
        let got = String::from_utf8_lossy(&got).into_owned();
        assert!(got.contains(&digest), "{got}");
        tls.write_all(b"<handshake/>").await?;
        tls.flush().await?;
        Ok(got)
    }

    async fn attempt(
        pem: &'static str,
        extra: &str,
    ) -> (Result<(), Fatal>, Result<String, io::Error>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve_once(listener, pem));
        let config = config(port, extra);
        let client = connect(&config, &config.component.servers[0], true)
            .await
            .map(drop);
        (client, server.await.unwrap())
    }

    #[tokio::test]
    async fn the_handshake_runs_inside_tls() {
        let (client, server) = attempt("component-server.pem", "").await;
        assert!(client.is_ok(), "{:?}", client.err().map(describe));
        assert!(server.unwrap().contains("to='chat.localhost'"));
    }

    #[tokio::test]
    async fn a_certificate_of_another_ca_is_refused_before_anything_is_sent() {
        let (client, server) = attempt("other-server.pem", "").await;
        let e = describe(client.expect_err("must be refused"));
        assert!(
            e.starts_with("TLS handshake with 127.0.0.1:")
                && e.ends_with(" failed: invalid peer certificate: UnknownIssuer"),
            "{e}"
        );
        // The server never completed TLS, so no byte of the stream (nor the
        // secret's digest) reached it.
        assert!(server.is_err(), "{server:?}");
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused() {
        let (client, server) = attempt(
            "component-server.pem",
            "tls_server_name = \"xmpp.example.org\"",
        )
        .await;
        let e = describe(client.expect_err("must be refused"));
        assert!(
            e.contains(
                "invalid peer certificate: certificate not valid for name \"xmpp.example.org\""
            ),
            "{e}"
        );
        assert!(server.is_err(), "{server:?}");
    }

    fn describe(f: Fatal) -> String {
        match f {
            Fatal::Retry(r) => r.to_string(),
            Fatal::Stop(s) => format!("stop: {s}"),
        }
    }
}
