//! Archipel's wire types and the pure code that any verifier needs.
//!
//! This crate does no I/O, so the CLI, the node, tests and fuzz targets can all use it.

pub mod bagit;
pub mod canonical;
pub mod checkpoint;
pub mod custody;
pub mod event;
pub mod manifest;
pub mod note;
pub mod rfc6962;
pub mod seda;
pub mod tlog_proof;
pub mod tombstone;
pub mod witness;

/// Generated gRPC types and services (package `archipel.v1`).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("archipel.v1");
}

/// Encoded file descriptor set, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("archipel_descriptor");
