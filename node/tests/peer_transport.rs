#![allow(clippy::unwrap_used)]
//! The peer transport over real TCP on 127.0.0.1 and real TLS 1.3: mutual authentication by
//! pinned node IDs, run-time pin changes, and a stalled handshake not blocking others. The
//! gRPC service under test is the standard health service, behind an interceptor that
//! records the node ID each request came from.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archipel_node::federation::transport::{
    PinnedPeers, TransportError, client_config, connect_peer, node_certificate,
    node_id_of_certificate, peer_node_id, require_pinned, serve_peers, server_config,
};
use archipel_node::identity::node_id_of;
use ed25519_dalek::SigningKey;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Bounds every network wait, so that a regression fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(5);

struct Node {
    key: SigningKey,
    id: String,
    pinned: PinnedPeers,
}

fn node() -> Node {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let id = node_id_of(&key.verifying_key());
    Node {
        key,
        id,
        pinned: PinnedPeers::new(),
    }
}

fn pin_each_other(a: &Node, b: &Node) {
    assert!(a.pinned.insert(b.id.clone()).unwrap());
    assert!(b.pinned.insert(a.id.clone()).unwrap());
}

struct PeerServer {
    addr: SocketAddr,
    /// The peer node ID seen by the handler, one entry per request that reached it.
    seen: Arc<Mutex<Vec<Option<String>>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), TransportError>>>,
}

impl PeerServer {
    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let task = self.task.take().unwrap();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the server stops after its shutdown signal")
            .unwrap()
            .unwrap();
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn start_server(node: &Node) -> PeerServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = server_config(&node.key, node.pinned.clone()).unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let health = InterceptedService::new(health, move |req: Request<()>| {
        record.lock().unwrap().push(peer_node_id(&req));
        Ok(req)
    });
    let router = Server::builder()
        .layer(require_pinned(node.pinned.clone()))
        .add_service(health);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_peers(listener, tls, router, async {
        let _ = stopped.await;
    }));
    PeerServer {
        addr,
        seen,
        stop: Some(stop),
        task: Some(task),
    }
}

async fn connect(
    client: &Node,
    server: &PeerServer,
    expected: &str,
) -> Result<Channel, TransportError> {
    let tls = client_config(&client.key, client.pinned.clone()).unwrap();
    tokio::time::timeout(WAIT, connect_peer(&server.addr.to_string(), expected, tls))
        .await
        .expect("connect_peer does not hang")
}

async fn check(channel: Channel) -> Result<ServingStatus, Status> {
    let mut client = HealthClient::new(channel);
    let call = client.check(HealthCheckRequest {
        service: String::new(),
    });
    let response = tokio::time::timeout(WAIT, call)
        .await
        .expect("the health check does not hang")?;
    Ok(response.into_inner().status())
}

/// Connects and makes one call; the error says where the refusal happened.
async fn connect_and_check(
    client: &Node,
    server: &PeerServer,
    expected: &str,
) -> Result<ServingStatus, String> {
    let channel = connect(client, server, expected)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    check(channel).await.map_err(|s| format!("rpc: {s}"))
}

#[tokio::test]
async fn pinned_peers_talk_and_the_handler_sees_the_client_node_id() {
    let (server_node, client_node) = (node(), node());
    pin_each_other(&server_node, &client_node);
    let server = start_server(&server_node).await;

    let channel = connect(&client_node, &server, &server_node.id)
        .await
        .unwrap();
    assert_eq!(
        check(channel.clone()).await.unwrap(),
        ServingStatus::Serving
    );
    // A second call on the same connection.
    assert_eq!(check(channel).await.unwrap(), ServingStatus::Serving);

    assert_eq!(
        server.seen(),
        vec![Some(client_node.id.clone()), Some(client_node.id.clone())]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_the_server_has_not_pinned_is_refused() {
    let (server_node, stranger) = (node(), node());
    // The stranger trusts the server, but the server does not know the stranger.
    stranger.pinned.insert(server_node.id.clone()).unwrap();
    let server = start_server(&server_node).await;

    // With TLS 1.3 the client's handshake may complete before the server refuses its
    // certificate: the refusal shows at the first RPC.
    match connect(&stranger, &server, &server_node.id).await {
        Err(e) => eprintln!("refused at connect: {e}"),
        Ok(channel) => {
            let status = check(channel).await.unwrap_err();
            eprintln!("refused at the first RPC: {status}");
            assert_ne!(status.code(), Code::Ok);
        }
    }
    assert!(server.seen().is_empty(), "no request reached the handler");
    server.stop().await;
}

#[tokio::test]
async fn a_client_reaching_another_node_than_expected_is_refused() {
    let (server_node, client_node, expected) = (node(), node(), node());
    pin_each_other(&server_node, &client_node);
    // The client pins both nodes, expects `expected` at the address, and reaches the server.
    client_node.pinned.insert(expected.id.clone()).unwrap();
    let server = start_server(&server_node).await;

    let e = connect(&client_node, &server, &expected.id)
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Connect { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(&expected.id), "{text}");
    assert!(text.contains("ApplicationVerificationFailure"), "{text}");

    // Expecting the right node that the client has not pinned is refused too.
    client_node.pinned.remove(&server_node.id);
    let e = connect(&client_node, &server, &server_node.id)
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Connect { .. }), "{e}");

    // And the same client, pinning the server and expecting it, gets through.
    client_node.pinned.insert(server_node.id.clone()).unwrap();
    connect_and_check(&client_node, &server, &server_node.id)
        .await
        .unwrap();
    assert_eq!(server.seen(), vec![Some(client_node.id.clone())]);
    server.stop().await;
}

#[tokio::test]
async fn pins_change_at_run_time_without_restarting_the_server() {
    let (server_node, client_node) = (node(), node());
    pin_each_other(&server_node, &client_node);
    let server = start_server(&server_node).await;

    let open = connect(&client_node, &server, &server_node.id)
        .await
        .unwrap();
    assert_eq!(check(open.clone()).await.unwrap(), ServingStatus::Serving);

    // Removed: a new connection is refused, and so is a request on the open one.
    assert!(server_node.pinned.remove(&client_node.id));
    let e = connect_and_check(&client_node, &server, &server_node.id)
        .await
        .unwrap_err();
    eprintln!("after removal, new connection: {e}");
    let status = check(open.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");

    // Added back: both work again.
    assert!(server_node.pinned.insert(client_node.id.clone()).unwrap());
    assert_eq!(
        connect_and_check(&client_node, &server, &server_node.id)
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(check(open).await.unwrap(), ServingStatus::Serving);

    // The client side changes at run time too: unpinning the server stops new connections.
    assert!(client_node.pinned.remove(&server_node.id));
    connect(&client_node, &server, &server_node.id)
        .await
        .unwrap_err();
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_handshake_does_not_block_a_legitimate_peer() {
    let (server_node, client_node) = (node(), node());
    pin_each_other(&server_node, &client_node);
    let server = start_server(&server_node).await;

    // Connections that never send a ClientHello, and one that stops in the middle of it.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let partial = TcpStream::connect(server.addr).await.unwrap();
    partial.writable().await.unwrap();
    partial
        .try_write(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    stalled.push(partial);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Well within the handshake timeout, the legitimate peer is served.
    let started = std::time::Instant::now();
    assert_eq!(
        connect_and_check(&client_node, &server, &server_node.id)
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The stalled connections are still open (not dropped to make room).
    for s in &stalled {
        let mut buf = [0u8; 1];
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("stalled connection was closed or answered: {other:?}"),
        }
    }
    server.stop().await;
}

#[test]
fn node_certificate_round_trips_to_the_node_id() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let (cert, _key) = node_certificate(&key).unwrap();
    assert_eq!(
        node_id_of_certificate(&cert).unwrap(),
        node_id_of(&key.verifying_key())
    );
    // Deterministic: the certificate can be rebuilt at each start.
    assert_eq!(node_certificate(&key).unwrap().0, cert);
    // Another key, another ID.
    let other = SigningKey::generate(&mut rand::rngs::OsRng);
    let (other_cert, _) = node_certificate(&other).unwrap();
    assert_ne!(
        node_id_of_certificate(&other_cert).unwrap(),
        node_id_of(&key.verifying_key())
    );
}

#[test]
fn certificates_without_an_ed25519_key_or_malformed_are_refused() {
    let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["peer".to_string()]).unwrap();
    let cert = params.self_signed(&ecdsa).unwrap();
    let e = node_id_of_certificate(cert.der()).unwrap_err();
    assert!(matches!(e, TransportError::NotEd25519), "{e}");

    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    let e = node_id_of_certificate(&garbage).unwrap_err();
    assert!(matches!(e, TransportError::BadCertificate(_)), "{e}");
}

#[test]
fn pinned_peers_accept_only_node_ids() {
    let pinned = PinnedPeers::new();
    let id = node_id_of(&SigningKey::from_bytes(&[7; 32]).verifying_key());
    assert!(pinned.insert(id.clone()).unwrap());
    assert!(!pinned.insert(id.clone()).unwrap());
    assert!(pinned.contains(&id));
    for bad in ["", "not-a-node-id", &id.to_uppercase(), &id[1..]] {
        let e = pinned.insert(bad).unwrap_err();
        assert!(matches!(e, TransportError::InvalidNodeId(_)), "{e}");
    }
    assert_eq!(pinned.ids(), vec![id.clone()]);
    assert!(pinned.remove(&id));
    assert!(!pinned.contains(&id));
}
