//! Opening a node and serving it: `Node::open(config)` then `node.serve_admin(listener,
//! shutdown)`. Servers take an already bound listener and a shutdown future, so tests can
//! bind what they like.

use crate::admin::{AdminService, AuditService};
use crate::archive::Archive;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::{self, DataLock, NodeFile};
use crate::keys::Keyring;
use crate::log::AuditLog;
use crate::store::Store;
use archipel_proto::v1::archive_server::ArchiveServer;
use archipel_proto::v1::audit_log_server::AuditLogServer;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::net::UnixListener;

/// Largest gRPC message accepted (ingest chunks are 1 MiB; metadata is bounded at 64 KiB).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// A gRPC channel to a node's admin socket (for tools on the node's machine: `export-kit`
/// while the node runs, tests).
pub async fn admin_channel(socket: &Path) -> std::io::Result<tonic::transport::Channel> {
    let socket = socket.to_path_buf();
    tonic::transport::Endpoint::from_static("http://archipel.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(std::io::Error::other)
}

#[derive(Debug)]
pub struct Node {
    pub archive: Arc<Archive>,
    _lock: DataLock,
}

/// Creates a node's identity and keys in `data`. Returns the node ID.
pub fn init(data: &Path, territory: &str, recovery: &[String]) -> Result<String> {
    let territory = territory.trim();
    if territory.is_empty() || territory.chars().count() > 200 {
        return Err(crate::record::ValidationError::new("territory", "1 to 200 characters").into());
    }
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let node_id = identity::create_layout(data, &key)?;
    let ring = Keyring::create(data, recovery)?;
    identity::write_node_file(
        data,
        &NodeFile {
            territory: territory.to_string(),
            node_id: node_id.clone(),
            created_at: crate::clock::now_rfc3339(),
            territory_recipient: ring.territory_recipient(),
            index_key_check: ring.index_key_check(),
        },
    )?;
    Ok(node_id)
}

pub fn is_initialised(data: &Path) -> bool {
    data.join("node.toml").exists()
}

/// Where the configuration puts blobs; for S3, one connection for the node's own blobs and
/// the ones it holds for peers.
pub fn blob_place(config: &Config) -> Result<crate::store::BlobPlace> {
    use crate::config::BlobStoreKind;
    use crate::store::BlobPlace;
    Ok(match config.blob_store {
        BlobStoreKind::Files => BlobPlace::Files(config.data_dir.join("blobs")),
        BlobStoreKind::Sled => BlobPlace::Sled,
        BlobStoreKind::S3 => BlobPlace::S3(
            crate::store::S3Connection::open(&config.s3)
                .map_err(|e| crate::store::StoreError::from(crate::store::BlobError::from(e)))?,
        ),
    })
}

/// The place a kind of store (`files`, `sled`, `s3`) names with this configuration's
/// settings.
pub fn place_of_kind(config: &Config, kind: &str) -> Result<crate::store::BlobPlace> {
    let mut c = config.clone();
    c.blob_store = crate::config::BlobStoreKind::from_name(kind).ok_or_else(|| {
        Error::Store(crate::store::StoreError::Backend(format!(
            "unknown blob store {kind:?}"
        )))
    })?;
    blob_place(&c)
}

fn store_error(e: Error) -> crate::store::StoreError {
    match e {
        Error::Store(s) => s,
        other => crate::store::StoreError::Backend(other.to_string()),
    }
}

impl Node {
    /// Locks the data directory, checks the keys and opens the store.
    pub fn open(config: Config) -> Result<Node> {
        config.validate()?;
        let data = &config.data_dir;
        let lock = identity::lock(data)?;
        let identity = identity::load(data)?;
        let keys = Keyring::load(data)?;
        keys.check_against(&identity)?;
        let store = Store::open(
            &data.join("db"),
            config.cache_capacity_mib << 20,
            config.disk_reserve_mib << 20,
            config.blob_store.name(),
            &|kind| place_of_kind(&config, kind).map_err(store_error),
        )?;
        let place = crate::store::BlobPlace::Layered(store.placement.clone());
        let log = AuditLog::open(store.db(), &identity)?;
        let peers = crate::federation::Peers::open(store.db(), &identity)?;
        let holding = crate::federation::holding::Holding::open(store.db(), data, &place)?;
        let custody = crate::federation::custody::Custody::open(store.db())?;
        let witness = crate::federation::witness::Witness::open(store.db())?;
        Ok(Node {
            archive: Arc::new(Archive {
                config,
                identity,
                keys,
                store,
                log,
                peers,
                holding,
                custody,
                witness,
                replication: Default::default(),
                metrics: Default::default(),
                recent: std::sync::Mutex::new(None),
                gateway_url: std::sync::OnceLock::new(),
            }),
            _lock: lock,
        })
    }

    /// Binds the admin socket (mode 0600), replacing a stale one: we hold the lock, so no
    /// other node can be using it.
    pub fn bind_admin(&self) -> Result<UnixListener> {
        let path = self.archive.config.admin_socket_path();
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = UnixListener::bind(&path).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(listener)
    }

    /// Binds the federation listener when `peer_listen` is configured.
    pub async fn bind_peers(&self) -> Result<Option<tokio::net::TcpListener>> {
        let Some(address) = &self.archive.config.peer_listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| Error::Io {
                path: format!("peer_listen {address}"),
                source,
            })?;
        Ok(Some(listener))
    }

    /// Serves the node-to-node API to pinned peers over mutual TLS until `shutdown`.
    pub async fn serve_peers(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        use crate::federation::{service::FederationService, transport};
        use archipel_proto::v1::federation_server::FederationServer;
        let a = &self.archive;
        let pinned = a.peers.pinned.clone();
        let tls = transport::server_config(&a.identity.signing_key, pinned.clone())
            .map_err(crate::federation::PeerError::from)?;
        let router = tonic::transport::Server::builder()
            .initial_stream_window_size(transport::STREAM_WINDOW)
            .initial_connection_window_size(transport::CONNECTION_WINDOW)
            // A peer removed at run time is refused on connections it already has open.
            .layer(transport::require_pinned(pinned))
            .add_service(
                FederationServer::new(FederationService::new(a.clone()))
                    .max_decoding_message_size(crate::federation::peers::PEER_MESSAGE)
                    .max_encoding_message_size(crate::federation::peers::PEER_MESSAGE),
            );
        transport::serve_peers(listener, tls, router, shutdown)
            .await
            .map_err(|e| Error::Peer(e.into()))
    }

    /// Binds the citizen gateway's listener when `gateway_listen` is configured, and loads
    /// its TLS certificate when one is configured (so a bad certificate stops the start).
    pub async fn bind_gateway(&self) -> Result<Option<crate::gateway::server::Bound>> {
        let cfg = &self.archive.config;
        let Some(address) = cfg.gateway_bind_address() else {
            return Ok(None);
        };
        let bound = crate::gateway::server::bind(
            &address,
            cfg.gateway_tls_cert.as_deref(),
            cfg.gateway_tls_key.as_deref(),
        )
        .await?;
        let _ = self.archive.gateway_url.set(bound.url.clone());
        Ok(Some(bound))
    }

    /// Serves the citizen gateway (read-only HTTP or HTTPS) until `shutdown`; downloads
    /// still running then get a few seconds to finish.
    pub async fn serve_gateway(
        &self,
        bound: crate::gateway::server::Bound,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let router = crate::gateway::router(self.archive.clone());
        crate::gateway::server::serve(bound, router, shutdown).await
    }

    /// Serves the admin API until `shutdown` completes; in-flight calls finish first.
    pub async fn serve_admin(
        &self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<ArchiveServer<AdminService>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(archipel_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| Error::Protocol(format!("reflection: {e}")))?;
        let audit = AuditLogServer::new(AuditService::new(self.archive.clone()));
        let keys = archipel_proto::v1::keys_server::KeysServer::new(
            crate::admin::KeysService::new(self.archive.clone()),
        );
        let service = ArchiveServer::new(AdminService::new(self.archive.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let checkpointer = crate::worker::spawn(
            crate::worker::Checkpointer {
                archive: self.archive.clone(),
                every: std::time::Duration::from_secs(self.archive.config.checkpoint_interval_secs),
            },
            workers_stopped,
        );
        // Hourly: dead bytes only come from abandoned ingests and eliminations.
        let compactor = crate::worker::spawn(
            crate::worker::PackCompactor {
                archive: self.archive.clone(),
                every: std::time::Duration::from_secs(3600),
            },
            stop_workers.subscribe(),
        );
        let replicator = tokio::spawn(crate::federation::replicator::run(
            self.archive.clone(),
            stop_workers.subscribe(),
        ));
        let upkeep = tokio::spawn(crate::federation::upkeep::run(
            self.archive.clone(),
            stop_workers.subscribe(),
        ));
        let served = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(service)
            .add_service(audit)
            .add_service(keys)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| Error::Protocol(format!("admin server: {e}")));
        let _ = stop_workers.send(true);
        let _ = checkpointer.await;
        let _ = compactor.await;
        let _ = replicator.await;
        let _ = upkeep.await;
        served?;
        self.archive.store.flush().await?;
        Ok(())
    }
}
