//! The node's peers: other territories' nodes, pinned by node ID, kept in the sled tree
//! `peers` and loaded into the TLS verifier's pinned set, so that adding or removing one
//! applies at once, without a restart.

use super::transport::{self, PinnedPeers, TransportError};
use archipel_proto::v1::federation_client::FederationClient;
use archipel_proto::v1::{HelloRequest, HelloResponse};
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer storage: {0}")]
    Storage(String),
    #[error("{0:?} is not a node ID (32 characters a-z, 2-7, as `archipel status` prints it)")]
    BadNodeId(String),
    #[error("{0:?} is not HOST:PORT")]
    BadAddress(String),
    #[error("territory: 1 to 200 characters")]
    BadTerritory,
    #[error("a node cannot be its own peer")]
    Itself,
    #[error("no peer {0}")]
    Unknown(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("peer {node_id} at {address}: {reason}")]
    Unreachable {
        node_id: String,
        address: String,
        reason: String,
    },
}

impl From<sled::Error> for PeerError {
    fn from(e: sled::Error) -> Self {
        PeerError::Storage(e.to_string())
    }
}

/// One peer, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub node_id: String,
    pub address: String,
    pub territory: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub offer_bytes: u64,
    pub added_at: String,
}

impl Peer {
    pub fn validate(&self, own_id: &str) -> Result<(), PeerError> {
        if !transport::is_node_id(&self.node_id) {
            return Err(PeerError::BadNodeId(self.node_id.clone()));
        }
        if self.node_id == own_id {
            return Err(PeerError::Itself);
        }
        let ok_address = self.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok_address || self.address.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(PeerError::BadAddress(self.address.clone()));
        }
        let t = self.territory.trim();
        if t.is_empty() || t.chars().count() > 200 {
            return Err(PeerError::BadTerritory);
        }
        Ok(())
    }
}

/// The peers of this node and what it needs to reach them.
#[derive(Debug)]
pub struct Peers {
    tree: sled::Tree,
    pub pinned: PinnedPeers,
    pub client_tls: Arc<ClientConfig>,
    own_id: String,
}

/// Largest node-to-node message: one blob (at most 16 MiB plus age overhead) and its ID.
pub const PEER_MESSAGE: usize = 20 << 20;

/// How long a reachability check may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

impl Peers {
    pub fn open(
        db: &sled::Db,
        identity: &crate::identity::NodeIdentity,
    ) -> Result<Self, PeerError> {
        let tree = db.open_tree("peers")?;
        let pinned = PinnedPeers::new();
        let peers = Peers {
            client_tls: transport::client_config(&identity.signing_key, pinned.clone())?,
            pinned,
            tree,
            own_id: identity.node_id.clone(),
        };
        for p in peers.list()? {
            peers.pinned.insert(p.node_id)?;
        }
        Ok(peers)
    }

    pub fn list(&self) -> Result<Vec<Peer>, PeerError> {
        self.tree
            .iter()
            .values()
            .map(|v| {
                let v = v?;
                toml::from_str(&String::from_utf8_lossy(&v))
                    .map_err(|e| PeerError::Storage(format!("peer entry: {e}")))
            })
            .collect()
    }

    /// Adds or updates a peer; it is pinned at once.
    pub fn add(&self, peer: &Peer) -> Result<(), PeerError> {
        peer.validate(&self.own_id)?;
        let text = toml::to_string(peer).map_err(|e| PeerError::Storage(e.to_string()))?;
        self.tree.insert(peer.node_id.as_bytes(), text.as_bytes())?;
        self.tree.flush()?;
        self.pinned.insert(peer.node_id.clone())?;
        Ok(())
    }

    /// Removes a peer; it is unpinned at once (its open connections are refused too).
    pub fn remove(&self, node_id: &str) -> Result<Peer, PeerError> {
        let old = self
            .tree
            .remove(node_id.as_bytes())?
            .ok_or_else(|| PeerError::Unknown(node_id.to_string()))?;
        self.tree.flush()?;
        self.pinned.remove(node_id);
        toml::from_str(&String::from_utf8_lossy(&old))
            .map_err(|e| PeerError::Storage(format!("peer entry: {e}")))
    }

    /// A federation client for `peer` over mutual TLS (connects at once).
    pub async fn client(
        &self,
        peer: &Peer,
    ) -> Result<FederationClient<tonic::transport::Channel>, PeerError> {
        let channel =
            transport::connect_peer(&peer.address, &peer.node_id, self.client_tls.clone())
                .await
                .map_err(|e| PeerError::Unreachable {
                    node_id: peer.node_id.clone(),
                    address: peer.address.clone(),
                    reason: e.to_string(),
                })?;
        Ok(FederationClient::new(channel)
            .max_decoding_message_size(PEER_MESSAGE)
            .max_encoding_message_size(PEER_MESSAGE))
    }

    /// [`Peers::client`] for the federation's workers, whose errors name the peer.
    pub async fn connect(
        &self,
        peer: &Peer,
    ) -> Result<FederationClient<tonic::transport::Channel>, super::FederationError> {
        self.client(peer)
            .await
            .map_err(|e| super::FederationError::Peer {
                node_id: peer.node_id.clone(),
                reason: e.to_string(),
            })
    }

    pub fn get(&self, node_id: &str) -> Result<Option<Peer>, PeerError> {
        match self.tree.get(node_id.as_bytes())? {
            Some(v) => Ok(Some(
                toml::from_str(&String::from_utf8_lossy(&v))
                    .map_err(|e| PeerError::Storage(format!("peer entry: {e}")))?,
            )),
            None => Ok(None),
        }
    }

    /// Connects to a peer over mutual TLS and asks who it is.
    pub async fn hello(&self, peer: &Peer) -> Result<HelloResponse, PeerError> {
        let unreachable = |reason: String| PeerError::Unreachable {
            node_id: peer.node_id.clone(),
            address: peer.address.clone(),
            reason,
        };
        let call = async {
            let channel =
                transport::connect_peer(&peer.address, &peer.node_id, self.client_tls.clone())
                    .await?;
            FederationClient::new(channel)
                .hello(HelloRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| unreachable(s.message().to_string()))
        };
        tokio::time::timeout(HELLO_TIMEOUT, call)
            .await
            .map_err(|_| unreachable(format!("no answer within {HELLO_TIMEOUT:?}")))?
    }
}
