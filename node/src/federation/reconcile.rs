//! Anti-entropy by range fingerprints. (Being written: see the helper's brief. The
//! signatures below are what service.rs uses.)

use archipel_proto::v1::{
    RangeFingerprintsRequest, RangeFingerprintsResponse, RangeItemsRequest, RangeItemsResponse,
};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("anti-entropy storage: {0}")]
    Storage(String),
    #[error("not built yet")]
    NotBuilt,
}

impl ReconcileError {
    /// The gRPC code for this error (the one mapping in error.rs asks).
    pub fn code(&self) -> tonic::Code {
        match self {
            ReconcileError::Storage(_) => tonic::Code::Internal,
            ReconcileError::NotBuilt => tonic::Code::Unimplemented,
        }
    }
}

/// A set of (record ID, envelope digest) items kept in a sled tree under a key prefix:
/// key = prefix ‖ record ID (ASCII), value = the 32-byte BLAKE3 of the envelope.
#[derive(Debug, Clone)]
pub struct SledRangeSet {
    pub tree: sled::Tree,
    pub prefix: Vec<u8>,
}

pub fn serve_fingerprints(
    _set: &SledRangeSet,
    _request: &RangeFingerprintsRequest,
) -> Result<RangeFingerprintsResponse, ReconcileError> {
    Err(ReconcileError::NotBuilt)
}

pub fn serve_items(
    _set: &SledRangeSet,
    _request: &RangeItemsRequest,
) -> Result<RangeItemsResponse, ReconcileError> {
    Err(ReconcileError::NotBuilt)
}
