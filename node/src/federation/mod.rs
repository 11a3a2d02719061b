//! Federation: nodes of different territories replicating to each other.
//!
//! Built so far: the transport (gRPC over mutually authenticated TLS 1.3, each node's
//! certificate bound to its Ed25519 node key, peers pinned by node ID, no certificate
//! authority), the peer list, and the node-to-node service (`Hello`). Replication,
//! receipts, anti-entropy, challenges, witnessing and restore are not built yet.

pub mod peers;
pub mod service;
pub mod transport;

pub use peers::{Peer, PeerError, Peers};
