//! Federation: nodes of different territories replicating to each other.
//!
//! Only the transport exists so far: gRPC over mutually authenticated TLS 1.3 where each
//! node's certificate is bound to its Ed25519 node key and peers are pinned by node ID
//! (no certificate authority). See [`transport`].

pub mod transport;
