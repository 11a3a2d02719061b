//! The node-to-node gRPC service, served only to pinned peers over mutual TLS. Thin: each
//! call names its caller (from the TLS certificate) and hands over to the module that owns
//! the concept (holding, reconcile, witness).

use super::transport::{peer_node_id, verifying_key_of_certificate};
use crate::archive::Archive;
use archipel_proto::v1::federation_server::Federation;
use archipel_proto::v1::*;
use ed25519_dalek::VerifyingKey;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// Who is calling: a pinned peer, known by the key of its TLS certificate.
#[derive(Debug, Clone)]
pub struct Caller {
    pub node_id: String,
    pub key: VerifyingKey,
}

impl Caller {
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        // The transport refuses unpinned certificates; a request without one cannot get here.
        let node_id =
            peer_node_id(request).ok_or_else(|| Status::unauthenticated("no peer certificate"))?;
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no peer certificate"))?;
        let cert = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no peer certificate"))?;
        let key = verifying_key_of_certificate(cert)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        Ok(Caller { node_id, key })
    }
}

#[derive(Debug, Clone)]
pub struct FederationService {
    archive: Arc<Archive>,
}

impl FederationService {
    pub fn new(archive: Arc<Archive>) -> Self {
        FederationService { archive }
    }
}

type Answer<T> = Result<Response<T>, Status>;

/// Blobs of one stream hashed and written at the same time at most.
const PARALLEL_BLOB_WRITES: usize = 4;

/// The one mapping to `Status` goes through the crate's `Error`.
fn status(e: impl Into<crate::error::Error>) -> Status {
    e.into().into()
}

/// Runs a blocking storage call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Answer<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker thread: {e}")))?
        .map(Response::new)
}

#[tonic::async_trait]
impl Federation for FederationService {
    async fn hello(&self, request: Request<HelloRequest>) -> Answer<HelloResponse> {
        let caller = Caller::of(&request)?;
        let id = &self.archive.identity;
        Ok(Response::new(HelloResponse {
            node_id: id.node_id.clone(),
            territory: id.territory.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            you_are: caller.node_id,
            public_key: id.verifying_key().to_bytes().to_vec(),
        }))
    }

    async fn offer(&self, request: Request<RecordBatch>) -> Answer<OfferResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            a.holding
                .offer(&a, &caller, request.into_inner())
                .map_err(status)
        })
        .await
    }

    async fn put_blobs(&self, request: Request<Streaming<BlobPut>>) -> Answer<PutBlobsResponse> {
        let caller = Caller::of(&request)?;
        let mut stream = request.into_inner();
        let mut total = PutBlobsResponse::default();
        // A few blobs are written at once (hashing and writing overlap with receiving the
        // next ones); memory stays bounded by this number of blobs.
        let mut writing = tokio::task::JoinSet::new();
        let mut add = |r: Result<Result<PutBlobsResponse, Status>, tokio::task::JoinError>| {
            let one = r.map_err(|e| Status::internal(format!("worker thread: {e}")))??;
            total.stored += one.stored;
            total.stored_bytes += one.stored_bytes;
            total.already_held += one.already_held;
            Ok::<_, Status>(())
        };
        while let Some(put) = stream.message().await? {
            if writing.len() >= PARALLEL_BLOB_WRITES
                && let Some(r) = writing.join_next().await
            {
                add(r)?;
            }
            let a = self.archive.clone();
            let c = caller.clone();
            writing.spawn_blocking(move || a.holding.put_blob(&a, &c, put).map_err(status));
        }
        while let Some(r) = writing.join_next().await {
            add(r)?;
        }
        Ok(Response::new(total))
    }

    async fn commit(&self, request: Request<RecordBatch>) -> Answer<CommitResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        let answer = blocking(move || {
            a.holding
                .commit(&a, &caller, request.into_inner())
                .map_err(status)
        })
        .await?;
        self.archive.store.flush().await.map_err(status)?;
        Ok(answer)
    }

    async fn list_held(&self, request: Request<ListHeldRequest>) -> Answer<ListHeldResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            a.holding
                .list(&a, &caller, request.into_inner())
                .map_err(status)
        })
        .await
    }

    async fn fetch_blob(&self, request: Request<FetchBlobRequest>) -> Answer<FetchBlobResponse> {
        let a = self.archive.clone();
        blocking(move || {
            a.holding
                .fetch_blob(&a, request.into_inner())
                .map_err(status)
        })
        .await
    }

    async fn range_fingerprints(
        &self,
        request: Request<RangeFingerprintsRequest>,
    ) -> Answer<RangeFingerprintsResponse> {
        let caller = Caller::of(&request)?;
        let set = self.archive.holding.index_of(&caller.node_id);
        blocking(move || {
            super::reconcile::serve_fingerprints(&set, &request.into_inner()).map_err(status)
        })
        .await
    }

    async fn range_items(&self, request: Request<RangeItemsRequest>) -> Answer<RangeItemsResponse> {
        let caller = Caller::of(&request)?;
        let set = self.archive.holding.index_of(&caller.node_id);
        blocking(move || super::reconcile::serve_items(&set, &request.into_inner()).map_err(status))
            .await
    }

    async fn challenge(&self, request: Request<ChallengeRequest>) -> Answer<ChallengeResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            a.holding
                .answer_challenge(&caller, request.into_inner())
                .map_err(status)
        })
        .await
    }

    async fn request_deletion(
        &self,
        request: Request<DeletionRequest>,
    ) -> Answer<DeletionResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            Err(status(a.holding.refuse_deletion(
                &a,
                &caller,
                request.into_inner(),
            )))
        })
        .await
    }

    async fn tombstones(&self, request: Request<TombstoneBatch>) -> Answer<TombstoneAnswers> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            super::tombstone::accept(&a, &caller, request.into_inner()).map_err(status)
        })
        .await
    }

    async fn held_tombstones(
        &self,
        request: Request<ListHeldRequest>,
    ) -> Answer<HeldTombstonesResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            super::tombstone::list_for(&a, &caller, request.into_inner()).map_err(status)
        })
        .await
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Answer<ReleaseResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || super::release::accept(&a, &caller, request.into_inner()).map_err(status))
            .await
    }

    async fn add_checkpoint(
        &self,
        request: Request<AddCheckpointRequest>,
    ) -> Answer<AddCheckpointResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            Ok(a.witness
                .add_checkpoint(&a, &caller, &request.into_inner().body))
        })
        .await
    }

    async fn push_log_entries(
        &self,
        request: Request<PushLogEntriesRequest>,
    ) -> Answer<PushLogEntriesResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            a.witness
                .push_log_entries(&a, &caller, request.into_inner())
                .map_err(status)
        })
        .await
    }

    async fn fetch_log(&self, request: Request<FetchLogRequest>) -> Answer<FetchLogResponse> {
        let caller = Caller::of(&request)?;
        let a = self.archive.clone();
        blocking(move || {
            a.witness
                .fetch_log(&caller, request.into_inner())
                .map_err(status)
        })
        .await
    }
}
