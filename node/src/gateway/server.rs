//! The gateway's listener: plain HTTP, or HTTPS with rustls (aws-lc-rs, the node's one
//! crypto provider; TLS 1.3) when a certificate is configured. HTTP/1.1 (axum's server).
//!
//! TLS handshakes run in their own tasks with a timeout, as on the federation listener, so a
//! silent client holds up no one. Request heads must arrive within [`HEADER_READ_TIMEOUT`]
//! and connections are bounded in number ([`MAX_CONNECTIONS`]). Client addresses are never
//! logged.

use super::GatewayError;
use crate::error::{Error, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once; more connections are closed at once.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// After shutdown, requests still running (slow downloads) get this long to finish.
const DRAIN: Duration = Duration::from_secs(5);
/// A client must send a request's head within this time, from the moment the connection
/// waits for one: it bounds slow headers (slowloris) and idle keep-alive connections alike.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// Request header fields, and bytes of request head (431 beyond either).
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A bound gateway listener, with its TLS configuration when it serves HTTPS.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub tls: Option<Arc<ServerConfig>>,
    /// `http://HOST:PORT` or `https://HOST:PORT`, with the port actually bound.
    pub url: String,
}

/// Loads a PEM certificate chain and private key into a TLS 1.3 server configuration.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        Error::from(GatewayError::Tls(format!("{}: {e}", what.display())))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no certificate in this PEM file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let mut config = ServerConfig::builder_with_provider(crate::federation::transport::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(cert, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds `address` (HOST:PORT) and loads the TLS files when both are given.
pub async fn bind(address: &str, cert: Option<&Path>, key: Option<&Path>) -> Result<Bound> {
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some(tls_config(c, k)?),
        _ => None,
    };
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Io {
            path: format!("gateway_listen {address}"),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        path: format!("gateway_listen {address}"),
        source,
    })?;
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "the gateway serves plain HTTP on a non-loopback address: set gateway_tls_cert and gateway_tls_key, or put an HTTPS proxy in front"
        );
    }
    // A wildcard address is reachable from this machine on loopback.
    let host = if local.ip().is_unspecified() {
        match local {
            SocketAddr::V4(_) => "127.0.0.1".to_string(),
            SocketAddr::V6(_) => "[::1]".to_string(),
        }
    } else {
        match local {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Bound {
        url: format!("{scheme}://{host}:{}", local.port()),
        listener,
        tls,
    })
}

/// Serves `router` until `shutdown`, then lets running requests finish for [`DRAIN`].
pub async fn serve(
    bound: Bound,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    tracing::info!(url = %bound.url, "gateway serving");
    match bound.tls {
        // Without TCP_NODELAY a small download's body waits for the client's delayed ACK
        // (about 40 ms) after the headers: measured, 900 against 7,000 requests/s.
        None => {
            use axum::serve::ListenerExt;
            let listener = bound.listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            run(listener, router, shutdown).await
        }
        Some(tls) => run(TlsListener::spawn(bound.listener, tls), router, shutdown).await,
    }
    Ok(())
}

/// The accept loop. Each connection gets hyper's HTTP/1.1 server with a timer, so that
/// [`HEADER_READ_TIMEOUT`] applies (axum::serve sets no timer, which leaves a slow or idle
/// client holding its connection forever); the peer's address is passed to the handlers as
/// `ConnectInfo` for the rate limit only (`limits.rs`), and logged nowhere.
async fn run<L>(mut listener: L, router: axum::Router, shutdown: impl Future<Output = ()>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES);
    tokio::pin!(shutdown);
    loop {
        let (io, address) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Beyond the bound, a connection is closed at once: it costs a socket, no task.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(io);
            continue;
        };
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(address));
                req.map(axum::body::Body::new)
            },
        );
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Failed connections are the client's business, not logged (no addresses).
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::info!("gateway: stopped with downloads still running");
        }
    }
}

type Accepted = (tokio_rustls::server::TlsStream<TcpStream>, SocketAddr);

/// Connections that completed their TLS handshake, as an axum listener.
struct TlsListener {
    rx: mpsc::Receiver<Accepted>,
    local: SocketAddr,
}

impl TlsListener {
    fn spawn(listener: TcpListener, tls: Arc<ServerConfig>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept(listener, TlsAcceptor::from(tls), tx));
        TlsListener { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(a) => a,
            // The accept task ended (its listener failed for good): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections and passes on those that complete the TLS handshake, until the
/// server drops the receiving end.
async fn accept(listener: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<Accepted>) {
    let mut handshakes = JoinSet::new();
    loop {
        while handshakes.try_join_next().is_some() {}
        let (tcp, address) = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically out of file descriptors: wait rather than spin.
                    tracing::warn!("gateway listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if handshakes.len() >= MAX_PENDING_HANDSHAKES {
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        handshakes.spawn(async move {
            // Failed handshakes are the client's business and are not logged (no addresses).
            if let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                let _ = tx.send((stream, address)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_pem_certificate_and_refuses_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        let pem = |label: &str, der: &[u8]| {
            let b64 = data_encoding::BASE64.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        std::fs::write(&cert, pem("CERTIFICATE", ck.cert.der())).unwrap();
        std::fs::write(&key, pem("PRIVATE KEY", &ck.signing_key.serialize_der())).unwrap();
        tls_config(&cert, &key).unwrap();
        let e = tls_config(&dir.path().join("none.pem"), &key).unwrap_err();
        assert!(e.to_string().contains("none.pem"), "{e}");
    }
}
