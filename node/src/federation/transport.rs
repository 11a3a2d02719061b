//! The peer transport: gRPC over mutually authenticated TLS 1.3, peers pinned by node ID.
//!
//! There is no certificate authority. Each node presents a self-signed X.509 certificate
//! whose key *is* its Ed25519 node key ([`node_certificate`]); the other side recomputes the
//! node ID from the certificate's public key ([`node_id_of_certificate`]) and accepts the
//! connection only if that ID is pinned ([`PinnedPeers`]). The TLS handshake proves that the
//! peer holds the private key, so one ID names the node everywhere: admin, peers, log origin.
//!
//! - Server side: [`server_config`] + [`serve_peers`]. Client authentication is mandatory; an
//!   unpinned client fails the server's handshake. With TLS 1.3 the client only learns of it
//!   when its first RPC fails. Handlers get the authenticated peer with [`peer_node_id`].
//!   Pinning is checked at each handshake; to also refuse requests on connections opened
//!   before a peer was removed, add [`require_pinned`] as a server layer.
//! - Client side: [`client_config`] + [`connect_peer`]. The server must present the expected
//!   node ID, and that ID must be pinned.
//!
//! Details that matter for pinning:
//! - TLS 1.3 only, one crypto provider (aws-lc-rs), ALPN `h2`.
//! - Session resumption is disabled on both sides: a resumed session skips certificate
//!   verification, so a peer removed from [`PinnedPeers`] could otherwise come back in.
//! - On the client, the expected node ID travels to the verifier as the connection's server
//!   name; SNI is not sent, so the ID does not appear in clear on the wire.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::service::{Interceptor, InterceptorLayer, Routes};
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint};
use tower::Layer;

use crate::identity::node_id_of;

/// How long a peer may take to complete its TLS handshake before its connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections still in their TLS handshake beyond this number are closed at once, so that a
/// flood of stalled connections costs bounded memory.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// HTTP/2 flow-control windows between peers (both sides set them).
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 16 << 20;

/// How long [`connect_peer`] waits for TCP and TLS before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (no unused bits) }, followed by the 32-byte public key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot build the node's TLS certificate: {0}")]
    Certificate(String),
    #[error("peer certificate is malformed: {0}")]
    BadCertificate(String),
    #[error(
        "peer certificate does not hold an Ed25519 key: an Archipel peer's certificate key is its node key"
    )]
    NotEd25519,
    #[error("`{0}` is not a node ID (32 characters of lowercase base32: a-z, 2-7)")]
    InvalidNodeId(String),
    #[error("`{address}` is not a peer address (expected HOST:PORT): {reason}")]
    InvalidAddress { address: String, reason: String },
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot connect to peer {node_id} at {address}: {reason}")]
    Connect {
        address: String,
        node_id: String,
        reason: String,
    },
    #[error("the peer server failed: {0}")]
    Serve(String),
}

/// The text of an error and all its sources, `a: b: c` (tonic's own messages are terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Whether `s` has the shape of a node ID (see [`crate::identity::node_id_of`]).
pub fn is_node_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
}

fn check_node_id(s: &str) -> Result<(), TransportError> {
    if is_node_id(s) {
        Ok(())
    } else {
        Err(TransportError::InvalidNodeId(s.to_string()))
    }
}

/// The one crypto provider of the node (aws-lc-rs).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A self-signed certificate whose key is the node's Ed25519 key, with subject CN = node ID,
/// valid from 2000 to 9999 (validity dates are not checked: trust comes from pinning).
/// Deterministic for a given key, so it can be rebuilt at each start instead of stored.
pub fn node_certificate(
    signing_key: &SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TransportError> {
    let cert_err = |e: &dyn fmt::Display| TransportError::Certificate(e.to_string());
    let pkcs8 = signing_key.to_pkcs8_der().map_err(|e| cert_err(&e))?;
    let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| cert_err(&e))?;
    let node_id = node_id_of(&signing_key.verifying_key());
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node_id);
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    let cert = params.self_signed(&key_pair).map_err(|e| cert_err(&e))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The Ed25519 public key of a certificate; refuses any other kind of key.
pub fn verifying_key_of_certificate(
    cert: &CertificateDer<'_>,
) -> Result<VerifyingKey, TransportError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TransportError::BadCertificate(e.to_string()))?;
    let spki = parsed.subject_public_key_info();
    let key = spki
        .as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .ok_or(TransportError::NotEd25519)?;
    let key: &[u8; 32] = key.try_into().map_err(|_| TransportError::NotEd25519)?;
    VerifyingKey::from_bytes(key).map_err(|_| TransportError::NotEd25519)
}

/// The node ID named by a certificate: recomputed from its public key (the subject's CN is
/// informative only and never trusted).
pub fn node_id_of_certificate(cert: &CertificateDer<'_>) -> Result<String, TransportError> {
    Ok(node_id_of(&verifying_key_of_certificate(cert)?))
}

/// The node IDs this node talks to, shared by its TLS configurations and updatable while
/// they are in use: a change applies to the next handshake (and, with [`require_pinned`],
/// to the next request on an open connection).
#[derive(Clone, Default)]
pub struct PinnedPeers(Arc<RwLock<HashSet<String>>>);

impl fmt::Debug for PinnedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids = self.ids();
        ids.sort();
        f.debug_tuple("PinnedPeers").field(&ids).finish()
    }
}

impl PinnedPeers {
    /// An empty set: no peer is accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding `ids`; refuses anything that is not a node ID.
    pub fn with<I, S>(ids: I) -> Result<Self, TransportError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let pinned = Self::new();
        for id in ids {
            pinned.insert(id)?;
        }
        Ok(pinned)
    }

    /// Pins a peer; `Ok(false)` if it was pinned already.
    pub fn insert(&self, node_id: impl Into<String>) -> Result<bool, TransportError> {
        let node_id = node_id.into();
        check_node_id(&node_id)?;
        Ok(self
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node_id))
    }

    /// Unpins a peer; `false` if it was not pinned.
    pub fn remove(&self, node_id: &str) -> bool {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node_id)
    }

    pub fn contains(&self, node_id: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(node_id)
    }

    /// The pinned IDs, in no particular order.
    pub fn ids(&self) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Verifies peer certificates by pinning, for both sides of a connection: the certificate's
/// key must be Ed25519, its node ID pinned, and on the client side equal to the node ID the
/// connection expects. Signatures are checked by rustls with the provider's algorithms
/// (this is the peer's proof that it holds the key). TLS 1.3 only.
#[derive(Debug)]
pub struct PinnedPeerVerifier {
    pinned: PinnedPeers,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedPeerVerifier {
    pub fn new(pinned: PinnedPeers) -> Self {
        Self {
            pinned,
            algorithms: provider().signature_verification_algorithms,
        }
    }

    /// The node ID of a pinned certificate, or the rustls refusal.
    fn pinned_id(&self, end_entity: &CertificateDer<'_>) -> Result<String, rustls::Error> {
        let id = node_id_of_certificate(end_entity).map_err(|e| {
            tracing::debug!("peer certificate refused: {e}");
            match e {
                TransportError::BadCertificate(_) => {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                }
                _ => refused(),
            }
        })?;
        if self.pinned.contains(&id) {
            Ok(id)
        } else {
            tracing::debug!(peer = %id, "peer refused: node ID not pinned");
            Err(refused())
        }
    }

    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

fn refused() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not accepted between peers".to_string())
}

impl ClientCertVerifier for PinnedPeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.pinned_id(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for PinnedPeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self.pinned_id(end_entity)?;
        match server_name {
            ServerName::DnsName(expected) if expected.as_ref() == id => {
                Ok(ServerCertVerified::assertion())
            }
            _ => {
                tracing::debug!(
                    peer = %id,
                    expected = ?server_name,
                    "peer refused: not the node this connection expects"
                );
                Err(refused())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

const ALPN_H2: &[u8] = b"h2";

/// The TLS configuration of the node's peer server: TLS 1.3, the node certificate, client
/// certificates mandatory and pinned, no session resumption, ALPN `h2`.
pub fn server_config(
    signing_key: &SigningKey,
    pinned: PinnedPeers,
) -> Result<Arc<ServerConfig>, TransportError> {
    let (cert, key) = node_certificate(signing_key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PinnedPeerVerifier::new(pinned)))
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The TLS configuration for connecting to peers: TLS 1.3, the node certificate as client
/// certificate, servers pinned, no session resumption, no SNI, ALPN `h2`.
pub fn client_config(
    signing_key: &SigningKey,
    pinned: PinnedPeers,
) -> Result<Arc<ClientConfig>, TransportError> {
    client_config_with(signing_key, Arc::new(PinnedPeerVerifier::new(pinned))).map(Arc::new)
}

/// The client configuration every peer connection uses, around a given server verifier.
fn client_config_with(
    signing_key: &SigningKey,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, TransportError> {
    let (cert, key) = node_certificate(signing_key)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_sni = false;
    Ok(config)
}

/// Serves `router` to pinned peers on `listener` until `shutdown` completes, then drains the
/// open connections.
///
/// Each TLS handshake runs in its own task with [`HANDSHAKE_TIMEOUT`], so a slow or silent
/// peer does not hold up the others; at most [`MAX_PENDING_HANDSHAKES`] run at once. The
/// streams reach tonic as `tokio_rustls::server::TlsStream<TcpStream>`, which is what makes
/// [`peer_node_id`] work in handlers.
pub async fn serve_peers<L, ResBody>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router<L>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TransportError>
where
    L: Layer<Routes>,
    L::Service: tower::Service<http::Request<Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<Body>>>::Future: Send,
    <L::Service as tower::Service<http::Request<Body>>>::Error:
        Into<tonic::codegen::StdError> + Send,
    ResBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    let (tx, rx) = mpsc::channel(16);
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    let serve = router.serve_with_incoming_shutdown(incoming, shutdown);
    let ((), served) = tokio::join!(accept_peers(listener, TlsAcceptor::from(tls), tx), serve);
    served.map_err(|e| TransportError::Serve(error_chain(&e)))
}

type Accepted = Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>;

/// Accepts TCP connections and hands the ones that complete the TLS handshake to `tx`, until
/// the server drops the receiving end (at shutdown). Pending handshakes are aborted then.
async fn accept_peers(listener: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<Accepted>) {
    let mut handshakes = JoinSet::new();
    loop {
        while handshakes.try_join_next().is_some() {}
        let (tcp, address) = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Typically out of file descriptors: wait rather than spin.
                    tracing::warn!("peer listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if handshakes.len() >= MAX_PENDING_HANDSHAKES {
            tracing::warn!(%address, "too many pending TLS handshakes: connection closed");
            continue;
        }
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%address, "set_nodelay: {e}");
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // Fails only when the server is shutting down.
                    let _ = tx.send(Ok(stream)).await;
                }
                Ok(Err(e)) => tracing::info!(%address, "peer TLS handshake failed: {e}"),
                Err(_) => tracing::info!(%address, "peer TLS handshake timed out"),
            }
        });
    }
}

/// The node ID of the authenticated peer that sent `req`, on a server run by [`serve_peers`];
/// `None` elsewhere.
pub fn peer_node_id<T>(req: &tonic::Request<T>) -> Option<String> {
    let certs = req.peer_certs()?;
    node_id_of_certificate(certs.first()?).ok()
}

/// An interceptor refusing (`PERMISSION_DENIED`) requests from peers that are not pinned now:
/// pinning is checked at the TLS handshake, and this extends it to connections that were
/// opened before their peer was removed. Use it through [`require_pinned`].
#[derive(Clone, Debug)]
pub struct RequirePinned(PinnedPeers);

impl Interceptor for RequirePinned {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match peer_node_id(&request) {
            Some(id) if self.0.contains(&id) => Ok(request),
            Some(id) => Err(tonic::Status::permission_denied(format!(
                "node {id} is not a pinned peer of this node"
            ))),
            None => Err(tonic::Status::unauthenticated(
                "no authenticated peer certificate on this connection",
            )),
        }
    }
}

/// A server layer applying [`RequirePinned`] to every service:
/// `Server::builder().layer(require_pinned(pinned.clone())).add_service(...)`.
pub fn require_pinned(pinned: PinnedPeers) -> InterceptorLayer<RequirePinned> {
    InterceptorLayer::new(RequirePinned(pinned))
}

/// A gRPC channel to the peer `expected_node_id` at `address` (`HOST:PORT`) over mutual TLS
/// with `tls` (from [`client_config`]). The server must present the certificate of
/// `expected_node_id`, and that ID must be pinned. The connection is opened before this
/// returns, and reopened on demand if it drops.
///
/// With TLS 1.3 a server that refuses this node's certificate is only noticed at the first
/// RPC, which then fails.
pub async fn connect_peer(
    address: &str,
    expected_node_id: &str,
    tls: Arc<ClientConfig>,
) -> Result<Channel, TransportError> {
    check_node_id(expected_node_id)?;
    let invalid_address = |reason: String| TransportError::InvalidAddress {
        address: address.to_string(),
        reason,
    };
    // The server name only carries the expected ID to the verifier (SNI is off).
    let server_name = ServerName::try_from(expected_node_id.to_string())
        .map_err(|_| TransportError::InvalidNodeId(expected_node_id.to_string()))?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| invalid_address(error_chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        // Blobs are up to 4 MiB a message: HTTP/2's default 64 KiB window would make every
        // blob wait for several window updates.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    match endpoint.uri().port_u16() {
        Some(_) if endpoint.uri().path() == "/" && endpoint.uri().query().is_none() => {}
        _ => return Err(invalid_address("expected HOST:PORT".to_string())),
    }
    let connector = TlsConnector::from(tls);
    let target = address.to_string();
    let connect = tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(target.as_str()).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(connect)
        .await
        .map_err(|e| TransportError::Connect {
            address: address.to_string(),
            node_id: expected_node_id.to_string(),
            reason: error_chain(&e),
        })
}

/// Accepts any Ed25519 server certificate whose handshake signature is valid, and notes
/// its node ID: used only by `restore`, which knows its peers' addresses but not their IDs
/// (they were in the wiped peer list). Trusting the answer is safe there: everything the
/// restore fetches is checked against the node's own signatures.
#[derive(Debug)]
struct DiscoveringVerifier {
    inner: PinnedPeerVerifier,
    seen: std::sync::Mutex<Option<String>>,
}

impl ServerCertVerifier for DiscoveringVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = node_id_of_certificate(end_entity).map_err(|_| refused())?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(id);
        }
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are checked exactly as for pinned peers.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(&self.inner, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(&self.inner, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(&self.inner)
    }
}

/// The node ID of whoever listens at `address` (TLS 1.3 handshake with our certificate).
pub async fn discover_node_id(
    address: &str,
    signing_key: &SigningKey,
) -> Result<String, TransportError> {
    let verifier = Arc::new(DiscoveringVerifier {
        inner: PinnedPeerVerifier::new(PinnedPeers::new()),
        seen: std::sync::Mutex::new(None),
    });
    let config = client_config_with(signing_key, verifier.clone())?;
    let unreachable = |reason: String| TransportError::InvalidAddress {
        address: address.to_string(),
        reason,
    };
    let handshake = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let name = ServerName::try_from("archipel.invalid".to_string())
            .map_err(|e| unreachable(e.to_string()))?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(e.to_string()))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| unreachable("no TLS answer".to_string()))??;
    let seen = verifier.seen.lock().ok().and_then(|s| s.clone());
    seen.ok_or_else(|| unreachable("no certificate".to_string()))
}
