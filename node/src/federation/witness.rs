//! Witnessing (C2SP tlog-witness) of peers' audit logs, and audit-log replication.
//! (Being written: see the helper's brief. The signatures below are what service.rs uses.)

use super::service::Caller;
use crate::archive::Archive;
use archipel_proto::v1::{
    AddCheckpointResponse, FetchLogRequest, FetchLogResponse, PushLogEntriesRequest,
    PushLogEntriesResponse,
};

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness storage: {0}")]
    Storage(String),
    #[error("not built yet")]
    NotBuilt,
}

impl WitnessError {
    /// The gRPC code for this error (the one mapping in error.rs asks).
    pub fn code(&self) -> tonic::Code {
        match self {
            WitnessError::Storage(_) => tonic::Code::Internal,
            WitnessError::NotBuilt => tonic::Code::Unimplemented,
        }
    }
}

impl From<sled::Error> for WitnessError {
    fn from(e: sled::Error) -> Self {
        WitnessError::Storage(e.to_string())
    }
}

#[derive(Debug)]
pub struct Witness {}

impl Witness {
    pub fn open(_db: &sled::Db) -> Result<Self, WitnessError> {
        Ok(Witness {})
    }

    pub fn add_checkpoint(
        &self,
        _archive: &Archive,
        _caller: &Caller,
        _body: &[u8],
    ) -> AddCheckpointResponse {
        AddCheckpointResponse {
            status: 404,
            body: b"not built yet\n".to_vec(),
            content_type: "text/plain".into(),
        }
    }

    pub fn push_log_entries(
        &self,
        _archive: &Archive,
        _caller: &Caller,
        _request: PushLogEntriesRequest,
    ) -> Result<PushLogEntriesResponse, WitnessError> {
        Err(WitnessError::NotBuilt)
    }

    pub fn fetch_log(
        &self,
        _caller: &Caller,
        _request: FetchLogRequest,
    ) -> Result<FetchLogResponse, WitnessError> {
        Err(WitnessError::NotBuilt)
    }
}
