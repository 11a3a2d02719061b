//! The Archipel archive node as a library.
//!
//! A territory's records are stored content-addressed (BLAKE3) and encrypted (age) in sled.
//! The binary `archipel-node` is a thin wrapper: `Node::open(config)`, then
//! `node.serve_admin(listener, shutdown)`. See ARCHITECTURE.md for the design.

pub mod admin;
pub mod archive;
pub mod clock;
pub mod config;
pub mod elimination;
pub mod error;
pub mod federation;
pub mod fixity;
pub mod gateway;
pub mod hold;
pub mod identity;
pub mod ingest;
pub mod key_management;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod node;
pub mod read;
pub mod record;
pub mod store;
pub mod transfer;
pub mod worker;

pub use archive::{Archive, ListFilter};
pub use config::Config;
pub use error::{Error, Result};
pub use keys::RecoveryKit;
pub use node::{Node, admin_channel, init, is_initialised};
