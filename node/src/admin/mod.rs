//! The gRPC admin API. Thin: it translates between the wire and the modules that do the work.

mod audit;
mod elimination;
mod federation;
mod keys;
pub mod migration;
mod peers;

pub use audit::AuditService;
pub use keys::KeysService;

use crate::archive::{Archive, ListFilter};
use crate::error::Error;
use crate::fixity::{FixityReport, check_record};
use crate::ingest::IngestSession;
use crate::read::read_range;
use crate::record::{self, to_proto};
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{FileEntry, Manifest};
use archipel_proto::v1::archive_server::Archive as ArchiveApi;
use archipel_proto::v1::{
    self as pb, CustodyResponse, FederationReportRequest, FederationReportResponse, GetRequest,
    GetResponse, IngestRequest, IngestResponse, ListRequest, ListResponse, LogKeyExportRequest,
    LogKeyExportResponse, NodeInfoRequest, NodeInfoResponse, PeerEntry, PeerListRequest,
    PeerListResponse, PeerRemoveRequest, PeerRemoveResponse, RecordInfo, ShowRequest,
    UpdateMetadataRequest, VerifyReport, VerifyRequest, get_response, ingest_request,
};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Plaintext is sent to clients in messages of this size.
const GET_CHUNK: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct AdminService {
    archive: Arc<Archive>,
}

impl AdminService {
    pub fn new(archive: Arc<Archive>) -> Self {
        AdminService { archive }
    }
}

fn file_info(f: &FileEntry) -> pb::FileInfo {
    pb::FileInfo {
        name: f.name.clone(),
        size: f.size,
        media_type: f.media_type.clone(),
        blake3: hex::encode(f.blake3),
        sha512: hex::encode(f.sha512),
        blobs: f.blobs.len() as u64,
    }
}

pub fn record_info(m: &Manifest, manifest_digest: String) -> RecordInfo {
    RecordInfo {
        id: m.record_id.clone(),
        metadata: Some(to_proto(&m.metadata)),
        files: m.files.iter().map(file_info).collect(),
        ingested_at: crate::clock::rfc3339(m.ingested_at),
        origin_node_id: m.origin.clone(),
        size: m.files.iter().map(|f| f.size).sum(),
        stored_bytes: m.files.iter().map(|f| f.cipher_len).sum(),
        manifest_digest,
    }
}

fn hold_info(h: crate::hold::Hold) -> pb::HoldInfo {
    pb::HoldInfo {
        record_id: h.record_id,
        reason: h.reason,
        set_at: h.set_at,
    }
}

/// A record as the API shows it, with the digest of the envelope as stored now.
fn stored_record_info(archive: &Archive, m: &Manifest) -> Result<RecordInfo, Error> {
    let digest = archive
        .store
        .envelope(&m.record_id)?
        .map(|e| blake3::hash(&e).to_hex().to_string())
        .unwrap_or_default();
    Ok(record_info(m, digest))
}

fn report_to_pb(r: FixityReport) -> VerifyReport {
    VerifyReport {
        ok: r.ok(),
        record_id: r.record_id,
        files: r.files,
        blobs: r.blobs,
        bytes: r.bytes,
        problems: r.problems,
        ..Default::default()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))
}

/// Appends the outcome of a fixity check to the audit log.
fn log_fixity(archive: &Archive, report: &FixityReport) -> crate::error::Result<()> {
    if !archive.log.enabled || report.record_id.is_empty() {
        return Ok(());
    }
    let outcome = if report.ok() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let detail = archive
        .keys
        .commitment(report.problems.join("\n").as_bytes());
    let event = archive
        .log
        .event("fixity check", &report.record_id, "admin", outcome, detail)?;
    archive.store.append_events_lazily(&[event])?;
    Ok(())
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ArchiveApi for AdminService {
    async fn ingest(
        &self,
        request: Request<Streaming<IngestRequest>>,
    ) -> Result<Response<IngestResponse>, Status> {
        let started = std::time::Instant::now();
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty ingest stream"))?;
        let Some(ingest_request::Item::Metadata(m)) = first.item else {
            return Err(Status::invalid_argument(
                "the first message of an ingest must be the record's metadata",
            ));
        };
        let metadata = record::validate(&m).map_err(Error::from)?;
        let mut session = IngestSession::new(self.archive.clone(), metadata);
        loop {
            // A client that disconnects ends here with an error; dropping the session then
            // removes everything it wrote.
            let Some(msg) = stream.message().await? else {
                return Err(Status::aborted(
                    "ingest stream ended without a commit: nothing was archived",
                ));
            };
            match msg.item {
                Some(ingest_request::Item::File(h)) => {
                    session.start_file(h.name, h.size, h.media_type).await?
                }
                Some(ingest_request::Item::Chunk(c)) => session.write(c).await?,
                Some(ingest_request::Item::Commit(_)) => {
                    let done = session.commit().await?;
                    tracing::info!(record = %done.record_id, files = done.files, bytes = done.bytes, "record ingested");
                    self.archive.replication.push(&done.record_id);
                    self.archive
                        .metrics
                        .ingest_seconds
                        .observe(started.elapsed());
                    return Ok(Response::new(IngestResponse {
                        id: done.record_id,
                        files: done.files,
                        bytes: done.bytes,
                        deduplicated_files: done.deduplicated_files,
                        manifest_digest: done.manifest_digest,
                    }));
                }
                Some(ingest_request::Item::Metadata(_)) => {
                    return Err(Status::invalid_argument("metadata sent twice"));
                }
                None => return Err(Status::invalid_argument("empty ingest message")),
            }
        }
    }

    type GetStream = BoxStream<GetResponse>;

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<Self::GetStream>, Status> {
        let started = std::time::Instant::now();
        let req = request.into_inner();
        let archive = self.archive.clone();
        let manifest = archive.manifest_shared(&req.record_id)?;
        let file = archive.find_file(&manifest, &req.file_name)?.clone();
        // Reading a record that is not yet communicable is a derogation: it is logged.
        let open =
            crate::record::communicability(&manifest.metadata, crate::clock::today()).is_open();
        if !open && archive.log.enabled {
            let detail = archive
                .keys
                .commitment(format!("{}\n{}\n{}", file.name, req.offset, req.length).as_bytes());
            let event = archive
                .log
                .event(
                    "dissemination",
                    &req.record_id,
                    "admin",
                    Outcome::Success,
                    detail,
                )
                .map_err(Error::from)?;
            archive
                .store
                .append_events_lazily(&[event])
                .map_err(Error::from)?;
        }
        if req.offset > file.size {
            return Err(Error::from(crate::store::StoreError::Range {
                offset: req.offset,
                length: req.length,
                size: file.size,
            })
            .into());
        }
        let length = if req.length == 0 {
            file.size - req.offset
        } else {
            req.length
        };
        let (tx, rx) = mpsc::channel(4);
        let first = GetResponse {
            item: Some(get_response::Item::File(file_info(&file))),
        };
        tx.send(Ok(first))
            .await
            .map_err(|_| Status::cancelled("client gone"))?;
        let record_id = req.record_id.clone();
        tokio::task::spawn_blocking(move || {
            let sink_tx = tx.clone();
            let res = read_range(
                &archive,
                &file,
                &record_id,
                req.offset,
                length,
                GET_CHUNK,
                |chunk| {
                    sink_tx
                        .blocking_send(Ok(GetResponse {
                            item: Some(get_response::Item::Chunk(chunk)),
                        }))
                        .is_ok()
                },
            );
            match res {
                Ok(()) => archive.metrics.get_seconds.observe(started.elapsed()),
                Err(e) => {
                    tracing::error!(record = %record_id, error = %e, "read failed");
                    let _ = tx.blocking_send(Err(e.into()));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let req = request.into_inner();
        let filter = ListFilter {
            producer: req.producer,
            record_type: req.record_type,
            date_from: req.date_from,
            date_to: req.date_to,
            communicability: req.communicability,
        };
        let archive = self.archive.clone();
        let page = if req.page_size == 0 {
            100
        } else {
            req.page_size as usize
        };
        let (records, next) = blocking(move || {
            let (ms, next) = archive.list(&filter, page, &req.page_token)?;
            let infos = ms
                .iter()
                .map(|m| stored_record_info(&archive, m))
                .collect::<Result<_, _>>()?;
            Ok::<_, Error>((infos, next))
        })
        .await??;
        Ok(Response::new(ListResponse {
            records,
            next_page_token: next,
        }))
    }

    async fn show(&self, request: Request<ShowRequest>) -> Result<Response<RecordInfo>, Status> {
        let id = request.into_inner().record_id;
        let m = self.archive.manifest(&id)?;
        Ok(Response::new(stored_record_info(&self.archive, &m)?))
    }

    type VerifyStream = BoxStream<VerifyReport>;

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<Self::VerifyStream>, Status> {
        let id = request.into_inner().record_id;
        let archive = self.archive.clone();
        if !id.is_empty()
            && archive
                .store
                .catalog_entry(&id)
                .map_err(Error::from)?
                .is_none()
        {
            return Err(Error::from(crate::store::StoreError::NotFound(id)).into());
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::task::spawn_blocking(move || {
            let ids: Box<dyn Iterator<Item = crate::error::Result<String>>> = if id.is_empty() {
                Box::new(archive.record_ids())
            } else {
                Box::new(std::iter::once(Ok(id)))
            };
            let (mut checked, mut failed) = (0u64, 0u64);
            for rid in ids {
                let report = match rid {
                    Ok(rid) => check_record(&archive, &rid),
                    Err(e) => FixityReport {
                        problems: vec![e.to_string()],
                        ..Default::default()
                    },
                };
                checked += 1;
                if let Err(e) = log_fixity(&archive, &report) {
                    tracing::error!(error = %e, "cannot log the fixity check");
                }
                if !report.ok() {
                    failed += 1;
                    tracing::warn!(record = %report.record_id, problems = ?report.problems, "fixity check failed");
                }
                if tx.blocking_send(Ok(report_to_pb(report))).is_err() {
                    return;
                }
            }
            let _ = tx.blocking_send(Ok(VerifyReport {
                ok: failed == 0,
                summary: true,
                records_checked: checked,
                records_failed: failed,
                ..Default::default()
            }));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_metadata(
        &self,
        request: Request<UpdateMetadataRequest>,
    ) -> Result<Response<RecordInfo>, Status> {
        let req = request.into_inner();
        let m = req
            .metadata
            .ok_or_else(|| Status::invalid_argument("metadata is required"))?;
        let metadata = record::validate(&m).map_err(Error::from)?;
        let updated = self
            .archive
            .update_metadata(&req.record_id, metadata)
            .await?;
        tracing::info!(record = %req.record_id, "metadata updated");
        // Holders keep the new envelope too (the old one stays with them).
        self.archive.replication.push(&req.record_id);
        Ok(Response::new(stored_record_info(&self.archive, &updated)?))
    }

    async fn hold_set(
        &self,
        request: Request<pb::HoldSetRequest>,
    ) -> Result<Response<pb::HoldInfo>, Status> {
        let req = request.into_inner();
        let h = self.archive.hold_set(&req.record_id, &req.reason).await?;
        tracing::info!(record = %req.record_id, "legal hold set");
        Ok(Response::new(hold_info(h)))
    }

    async fn hold_lift(
        &self,
        request: Request<ShowRequest>,
    ) -> Result<Response<pb::HoldInfo>, Status> {
        let id = request.into_inner().record_id;
        let h = self.archive.hold_lift(&id).await?;
        tracing::info!(record = %id, "legal hold lifted");
        Ok(Response::new(hold_info(h)))
    }

    async fn eliminate(
        &self,
        request: Request<pb::EliminateRequest>,
    ) -> Result<Response<pb::EliminateResponse>, Status> {
        let req = request.into_inner();
        let (eliminated, deleted_blobs) =
            elimination::eliminate(&self.archive, &req.record_ids, &req.visa).await?;
        Ok(Response::new(pb::EliminateResponse {
            eliminated,
            deleted_blobs,
        }))
    }

    async fn eliminations(
        &self,
        request: Request<ShowRequest>,
    ) -> Result<Response<pb::EliminationsResponse>, Status> {
        let id = request.into_inner().record_id;
        let a = self.archive.clone();
        let eliminations = blocking(move || elimination::eliminations(&a, &id)).await??;
        Ok(Response::new(pb::EliminationsResponse { eliminations }))
    }

    async fn received_tombstones(
        &self,
        request: Request<pb::ReceivedTombstonesRequest>,
    ) -> Result<Response<pb::ReceivedTombstonesResponse>, Status> {
        let origin = request.into_inner().origin;
        let a = self.archive.clone();
        let tombstones =
            blocking(move || crate::federation::suspension::received(&a, origin.trim())).await??;
        Ok(Response::new(pb::ReceivedTombstonesResponse { tombstones }))
    }

    async fn suspend_tombstone(
        &self,
        request: Request<pb::SuspendTombstoneRequest>,
    ) -> Result<Response<pb::ReceivedTombstone>, Status> {
        let r = request.into_inner();
        let a = self.archive.clone();
        let t = blocking(move || {
            crate::federation::suspension::suspend(
                &a,
                r.origin.trim(),
                r.record_id.trim(),
                &r.reason,
                r.resume,
            )
        })
        .await??;
        Ok(Response::new(t))
    }

    async fn hold_list(
        &self,
        _request: Request<pb::HoldListRequest>,
    ) -> Result<Response<pb::HoldListResponse>, Status> {
        let holds = self.archive.holds()?.into_iter().map(hold_info).collect();
        Ok(Response::new(pb::HoldListResponse { holds }))
    }

    async fn transfer_log(
        &self,
        request: Request<pb::TransferLogRequest>,
    ) -> Result<Response<pb::TransferLogResponse>, Status> {
        let req = request.into_inner();
        let events = self
            .archive
            .transfer_log(&req.record_ids, req.accepted, &req.reply)
            .await?;
        tracing::info!(
            records = req.record_ids.len(),
            accepted = req.accepted,
            "SEDA transfer reply logged"
        );
        Ok(Response::new(pb::TransferLogResponse { events }))
    }

    async fn log_key_export(
        &self,
        _request: Request<LogKeyExportRequest>,
    ) -> Result<Response<LogKeyExportResponse>, Status> {
        let a = &self.archive;
        let event = a
            .log
            .event(
                "archipel:key export",
                "node",
                "operator",
                Outcome::Success,
                [0; 32],
            )
            .map_err(Error::from)?;
        a.store.append_events(&[event]).await.map_err(Error::from)?;
        Ok(Response::new(LogKeyExportResponse {}))
    }

    async fn peer_add(&self, request: Request<PeerEntry>) -> Result<Response<PeerEntry>, Status> {
        Ok(Response::new(
            peers::add(&self.archive, request.into_inner()).await?,
        ))
    }

    async fn peer_remove(
        &self,
        request: Request<PeerRemoveRequest>,
    ) -> Result<Response<PeerRemoveResponse>, Status> {
        peers::remove(&self.archive, &request.into_inner().node_id).await?;
        Ok(Response::new(PeerRemoveResponse {}))
    }

    async fn peer_list(
        &self,
        _request: Request<PeerListRequest>,
    ) -> Result<Response<PeerListResponse>, Status> {
        Ok(Response::new(peers::list(&self.archive).await?))
    }

    async fn custody(
        &self,
        request: Request<ShowRequest>,
    ) -> Result<Response<CustodyResponse>, Status> {
        let a = self.archive.clone();
        let id = request.into_inner().record_id;
        Ok(Response::new(federation::custody(&a, &id).await?))
    }

    async fn federation_report(
        &self,
        _request: Request<FederationReportRequest>,
    ) -> Result<Response<FederationReportResponse>, Status> {
        let a = self.archive.clone();
        Ok(Response::new(federation::report(&a).await?))
    }

    async fn migrate_blobs(
        &self,
        request: Request<pb::MigrateBlobsRequest>,
    ) -> Result<Response<pb::BlobMigrationStatus>, Status> {
        let status = migration::start(&self.archive, request.into_inner()).await?;
        Ok(Response::new(status))
    }

    async fn blob_migration(
        &self,
        _request: Request<pb::BlobMigrationRequest>,
    ) -> Result<Response<pb::BlobMigrationStatus>, Status> {
        Ok(Response::new(migration::status(&self.archive)))
    }

    async fn node_info(
        &self,
        _request: Request<NodeInfoRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        let a = &self.archive;
        let s = &a.store;
        Ok(Response::new(NodeInfoResponse {
            node_id: a.identity.node_id.clone(),
            territory: a.identity.territory.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            records: s.record_count().map_err(Error::from)?,
            blobs: s.blob_count().map_err(Error::from)?,
            stored_bytes: s.blob_bytes().map_err(Error::from)?,
            public_key: hex::encode(a.identity.verifying_key().as_bytes()),
            territory_recipient: a.keys.territory_recipient(),
            recovery_recipients: a.keys.recovery_recipients(),
            data_dir: a.data_dir().display().to_string(),
            disk_bytes: s.disk_bytes(),
            log_origin: a.log.origin().to_string(),
            log_vkey: a.log.vkey(),
            log_size: a.log.view().map_err(Error::from)?.size(),
            peer_address: a.config.peer_listen.clone().unwrap_or_default(),
            gateway_url: a.gateway_url.get().cloned().unwrap_or_default(),
        }))
    }
}
