//! The gRPC audit-log API: checkpoints, entries, proofs.

use crate::archive::Archive;
use crate::error::Error;
use crate::log::LogError;
use archipel_proto::rfc6962::{SubtreeHashes, consistency_proof_between, inclusion_proof_at};
use archipel_proto::v1::audit_log_server::AuditLog as AuditApi;
use archipel_proto::v1::{
    CheckpointRequest, CheckpointResponse, ConsistencyProofRequest, ConsistencyProofResponse,
    EntriesRequest, EntriesResponse, InclusionProofRequest, InclusionProofResponse,
    SignedCheckpointRequest, SubtreeHashRequest, SubtreeHashResponse, inclusion_proof_request,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

const MAX_ENTRIES: u64 = 1000;

#[derive(Debug, Clone)]
pub struct AuditService {
    archive: Arc<Archive>,
}

impl AuditService {
    pub fn new(archive: Arc<Archive>) -> Self {
        AuditService { archive }
    }

    /// `note` with the witnesses' cosignatures collected for it: one note that standard
    /// verifiers check with the log key, and witness-aware ones with the witnesses' keys.
    fn cosigned(&self, size: u64, note: String) -> String {
        match self.archive.log.with_cosignatures(size, &note) {
            Ok(n) => n,
            Err(e) => {
                // The bare note still proves the log; losing cosignatures is not worth an error.
                tracing::warn!(size, error = %e, "cannot read the cosignatures of a checkpoint");
                note
            }
        }
    }

    fn checkpoint_response(&self, note: String, size: u64) -> CheckpointResponse {
        let log = &self.archive.log;
        CheckpointResponse {
            checkpoint: self.cosigned(size, note),
            size,
            origin: log.origin().to_string(),
            vkey: log.vkey(),
            timestamp_token: log.timestamp_of(size).ok().flatten().unwrap_or_default(),
        }
    }

    /// The checkpoint to prove against: the latest (signed now if needed) or an older one.
    fn checkpoint_at(&self, size: u64) -> Result<(u64, String), Error> {
        let log = &self.archive.log;
        if size == 0 {
            let (cp, note) = log.checkpoint()?;
            return Ok((cp.size, note));
        }
        match log.signed_at(size)? {
            Some(note) => Ok((size, note)),
            None => Err(Error::Log(LogError::NotSigned(size))),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl AuditApi for AuditService {
    async fn checkpoint(
        &self,
        _request: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        let me = self.clone();
        let (cp, note) = blocking(move || Ok(me.archive.log.checkpoint()?)).await?;
        Ok(Response::new(self.checkpoint_response(note, cp.size)))
    }

    async fn signed_checkpoint(
        &self,
        request: Request<SignedCheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        let size = request.into_inner().size;
        let log = &self.archive.log;
        // 0: the latest checkpoint already signed, without signing a new one (what a
        // verifier wants when the node refuses to sign).
        let found = if size == 0 {
            log.latest_signed()
                .map_err(Error::from)?
                .map(|(cp, note)| (cp.size, note))
        } else {
            log.signed_at(size).map_err(Error::from)?.map(|n| (size, n))
        };
        let (size, note) = found
            .ok_or_else(|| Status::not_found(format!("no checkpoint signed at size {size}")))?;
        Ok(Response::new(self.checkpoint_response(note, size)))
    }

    async fn entries(
        &self,
        request: Request<EntriesRequest>,
    ) -> Result<Response<EntriesResponse>, Status> {
        let req = request.into_inner();
        let view = self.archive.log.view().map_err(Error::from)?;
        if req.start > req.end || req.end > view.size() {
            return Err(Status::out_of_range(format!(
                "entries [{}, {}) are outside the log of {} entries",
                req.start,
                req.end,
                view.size()
            )));
        }
        let end = req.end.min(req.start.saturating_add(MAX_ENTRIES));
        let leaves = (req.start..end)
            .map(|i| view.leaf(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::from)?;
        Ok(Response::new(EntriesResponse {
            leaves,
            log_size: view.size(),
        }))
    }

    async fn inclusion_proof(
        &self,
        request: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        let req = request.into_inner();
        let me = self.clone();
        let resp = blocking(move || {
            // The checkpoint first: signing it may cover entries appended since a view
            // taken earlier; the log only grows, so a later view covers it.
            let (size, checkpoint) = me.checkpoint_at(req.tree_size)?;
            let view = me.archive.log.view()?;
            let index = match req.target {
                Some(inclusion_proof_request::Target::Index(i)) => i,
                Some(inclusion_proof_request::Target::RecordId(r)) => view.record_event(&r)?,
                None => return Err(Error::Protocol("give an index or a record ID".into())),
            };
            if index >= view.size() {
                return Err(Error::Log(LogError::Proof(
                    archipel_proto::rfc6962::ProofError::IndexOutOfRange {
                        index,
                        size: view.size(),
                    },
                )));
            }
            if index >= size {
                return Err(Error::Log(LogError::Proof(
                    archipel_proto::rfc6962::ProofError::IndexOutOfRange { index, size },
                )));
            }
            let hashes = inclusion_proof_at(&view, index, size)?;
            Ok(InclusionProofResponse {
                index,
                tree_size: size,
                hashes: hashes.iter().map(|h| h.to_vec()).collect(),
                leaf: view.leaf(index)?,
                checkpoint: me.cosigned(size, checkpoint),
            })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn consistency_proof(
        &self,
        request: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProofResponse>, Status> {
        let req = request.into_inner();
        let me = self.clone();
        let resp = blocking(move || {
            let (new_size, checkpoint) = me.checkpoint_at(req.new_size)?;
            let view = me.archive.log.view()?;
            let hashes = consistency_proof_between(&view, req.old_size, new_size)?;
            Ok(ConsistencyProofResponse {
                old_size: req.old_size,
                new_size,
                hashes: hashes.iter().map(|h| h.to_vec()).collect(),
                checkpoint: me.cosigned(new_size, checkpoint),
            })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn subtree_hash(
        &self,
        request: Request<SubtreeHashRequest>,
    ) -> Result<Response<SubtreeHashResponse>, Status> {
        let req = request.into_inner();
        let view = self.archive.log.view().map_err(Error::from)?;
        let hash = view.range_hash(req.start, req.end).map_err(Error::from)?;
        Ok(Response::new(SubtreeHashResponse {
            hash: hash.to_vec(),
        }))
    }
}
