//! Federation: territories keep encrypted copies of each other's records.
//!
//! One module a concept:
//! - `transport`: peer gRPC over TLS 1.3 with mutual authentication, certificates made from
//!   the node's Ed25519 key, peers pinned by node ID (no certificate authority);
//! - `peers`: the peer list (sled tree `peers`) loaded into the pinned set;
//! - `service`: the node-to-node gRPC service (thin);
//! - `holding`: the holder's side: what this node keeps for other territories, one
//!   namespace per origin, never deleted on the origin's request;
//! - `placement`: which peers hold a record's copies (weighted rendezvous hashing);
//! - `custody`: the origin's side: custody receipts, who holds what, peer health;
//! - `replicator`: the origin's background job sending records to their holders;
//! - `reconcile`: anti-entropy by range fingerprints;
//! - `challenge`: proofs of storage;
//! - `scrub`: re-reading what is held, and repair from the other copies;
//! - `witness`: C2SP tlog-witness for peers' logs, and log replication;
//! - `release`: keys of communicable records sent to their holders, for peer gateways;
//! - `tombstone`: lawful destruction: tombstones to holders, quarantine, deletion receipts;
//! - `restore`: rebuilding a wiped node from its peers with its recovery kit.

pub mod challenge;
pub mod custody;
pub mod holding;
pub mod peers;
pub mod placement;
pub mod reconcile;
pub mod release;
pub mod replicator;
pub mod restore;
pub mod scrub;
pub mod service;
pub mod suspension;
pub mod tombstone;
pub mod transport;
pub mod upkeep;
pub mod witness;

pub use peers::{Peer, PeerError, Peers};

/// What goes wrong between territories, in the federation's terms.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("federation storage: {0}")]
    Storage(String),
    /// The caller sent something this node refuses to keep (bad signature, blob whose bytes
    /// do not match its address, a record of another origin, ...).
    #[error("refused: {0}")]
    Refused(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Holders never delete what they keep for an origin on its request alone.
    #[error(
        "refused: a holder never deletes or overwrites an origin's records on the origin's \
         request; only lawful destruction can, after a quarantine of {quarantine_days} days"
    )]
    DeletionRefused { quarantine_days: u32 },
    #[error("holder is full: {0}")]
    Full(String),
    #[error("peer {node_id}: {reason}")]
    Peer { node_id: String, reason: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

impl From<sled::Error> for FederationError {
    fn from(e: sled::Error) -> Self {
        FederationError::Storage(e.to_string())
    }
}

impl From<crate::store::BlobError> for FederationError {
    fn from(e: crate::store::BlobError) -> Self {
        FederationError::Store(e.into())
    }
}

impl From<FederationError> for tonic::Status {
    fn from(e: FederationError) -> Self {
        crate::error::Error::from(e).into()
    }
}
