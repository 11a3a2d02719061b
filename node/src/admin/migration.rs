//! Admin RPCs of the online blob migration (`archipel-node migrate-blobs` against a running
//! node): start one, and follow it. The work is in `store::relocate`.

use crate::archive::Archive;
use crate::config::{BlobStoreKind, Config};
use crate::error::Error;
use crate::store::{BlobPlace, MigrationStatus};
use archipel_proto::v1::{BlobMigrationStatus, MigrateBlobsRequest};
use std::path::PathBuf;
use std::sync::Arc;

fn invalid(msg: String) -> Error {
    Error::Protocol(msg)
}

/// Starts (or retries) a migration to `request.to`, then copies in the background.
pub async fn start(
    archive: &Arc<Archive>,
    request: MigrateBlobsRequest,
) -> Result<BlobMigrationStatus, Error> {
    let a = archive.clone();
    tokio::task::spawn_blocking(move || {
        let kind = BlobStoreKind::from_name(&request.to)
            .ok_or_else(|| invalid(format!("to {:?}: give s3, sled or files", request.to)))?;
        let file = if request.config_file.is_empty() {
            a.data_dir().join("archipel.toml")
        } else {
            PathBuf::from(&request.config_file)
        };
        let target = target_config(&a.config, &file, kind)?;
        let place = crate::node::place_of_kind(&target, kind.name())?;
        if let BlobPlace::S3(conn) = &place {
            // Refuse before any write goes there: the target must take writes and reads.
            conn.probe()
                .map_err(|e| invalid(format!("the target store: {e}")))?;
        }
        a.store
            .placement
            .begin(place, &file, request.max_blobs_per_second)?;
        spawn_worker(&a);
        Ok(status_of(&a, a.store.placement.status()))
    })
    .await
    .map_err(|e| Error::Protocol(format!("worker thread: {e}")))?
}

pub fn status(archive: &Archive) -> BlobMigrationStatus {
    status_of(archive, archive.store.placement.status())
}

/// The running node's configuration with the target's settings from `file` (the operator
/// adds the `[s3]` table there before migrating; the node need not restart to see it).
fn target_config(
    running: &Config,
    file: &std::path::Path,
    kind: BlobStoreKind,
) -> Result<Config, Error> {
    let mut c = running.clone();
    if file.exists() {
        let from_file = Config::load(file)?;
        let credentials = c.s3.credentials_file.take();
        c.s3 = from_file.s3;
        // A path given to the node through its environment stays.
        if c.s3.credentials_file.is_none() {
            c.s3.credentials_file = credentials;
        }
    }
    c.blob_store = kind;
    c.validate()?;
    Ok(c)
}

/// Copies in a thread of its own (the copy is blocking I/O), unless one is copying already.
/// Also called at start-up, to resume a migration the node was stopped or killed during.
pub fn spawn_worker(archive: &Arc<Archive>) {
    if archive.store.placement.migrating_to().is_none() {
        return;
    }
    let a = archive.clone();
    let spawned = std::thread::Builder::new()
        .name("blob-migration".into())
        .spawn(move || {
            let held = match a.holding.origins() {
                Ok(o) => o.into_iter().map(|(origin, _)| origin).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::error!(error = %e, "blob migration: cannot list held namespaces");
                    return;
                }
            };
            let s = a.store.placement.run_worker(&held);
            tracing::info!(
                state = %s.state,
                copied = s.copied,
                already = s.already,
                failed = s.failed_count,
                "blob migration pass over"
            );
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the blob migration thread");
    }
}

fn status_of(a: &Archive, s: MigrationStatus) -> BlobMigrationStatus {
    BlobMigrationStatus {
        state: s.state,
        from: s.from,
        to: s.to,
        copied: s.copied,
        already: s.already,
        bytes: s.bytes,
        failed: s.failed,
        failed_count: s.failed_count,
        total: a.store.blob_count().unwrap_or(0),
        namespace: s.namespace,
        error: s.error,
    }
}
