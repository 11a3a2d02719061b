//! Streaming ingest: plaintext in, encrypted content-addressed blobs out, one atomic commit.
//!
//! A large file flows through three stages on blocking threads, connected by bounded
//! channels so that memory stays bounded whatever the file size:
//! hash (BLAKE3 + SHA-512 of the plaintext) → encrypt (age, to a fresh file key) and cut into
//! blobs → store (BLAKE3 address, staging mark, blob write). A small file is done in one
//! step. Up to [`FILES_IN_FLIGHT`] files of a record are processed at once.

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::keys::seal_to;
use crate::record::ValidationError;
use crate::store::{CommitPlan, StoreError};
use age::secrecy::ExposeSecret;
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{BlobId, Envelope, FileEntry, Manifest, Metadata};
use sha2::Digest;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Files up to this size are buffered and processed in one step.
const SMALL_FILE: usize = 1024 * 1024;
/// Twice the cores of the machines this runs on: small files are short of work each.
const FILES_IN_FLIGHT: usize = 4;
const CHANNEL_DEPTH: usize = 8;

/// The result of one file's pipeline.
struct FileDone {
    entry: FileEntry,
    new_blobs: Vec<BlobId>,
    blob_bytes: u64,
}

type FileJob = JoinHandle<Result<FileDone>>;

/// Where full blobs go: stored inline, or sent to a store stage.
enum BlobOut {
    Inline {
        archive: Arc<Archive>,
        session: [u8; 16],
        ids: Vec<BlobId>,
        bytes: u64,
    },
    Stage(SyncSender<Vec<u8>>),
}

/// An `io::Write` that cuts the age ciphertext into blobs of `blob_size`.
struct BlobSink {
    buf: Vec<u8>,
    blob_size: usize,
    cipher_len: u64,
    out: BlobOut,
}

fn store_io(e: StoreError) -> std::io::Error {
    std::io::Error::other(e)
}

impl BlobSink {
    fn emit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(self.blob_size));
        match &mut self.out {
            BlobOut::Inline {
                archive,
                session,
                ids,
                bytes,
            } => {
                let id = *blake3::hash(&blob).as_bytes();
                archive
                    .store
                    .put_blob(session, &id, &blob)
                    .map_err(store_io)?;
                ids.push(id);
                *bytes += blob.len() as u64;
            }
            BlobOut::Stage(tx) => tx
                .send(blob)
                .map_err(|_| std::io::Error::other("blob store stage stopped"))?,
        }
        Ok(())
    }
}

impl Write for BlobSink {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let room = self.blob_size - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.cipher_len += take as u64;
            if self.buf.len() == self.blob_size {
                self.emit()?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Plaintext digests.
struct Digests {
    blake3: blake3::Hasher,
    sha512: sha2::Sha512,
    size: u64,
}

impl Digests {
    fn new() -> Self {
        Digests {
            blake3: blake3::Hasher::new(),
            sha512: sha2::Sha512::new(),
            size: 0,
        }
    }
    fn update(&mut self, data: &[u8]) {
        self.blake3.update(data);
        self.sha512.update(data);
        self.size += data.len() as u64;
    }
    fn finish(self) -> ([u8; 32], [u8; 64], u64) {
        (
            *self.blake3.finalize().as_bytes(),
            self.sha512.finalize().into(),
            self.size,
        )
    }
}

fn io_to_error(e: std::io::Error) -> Error {
    match e.into_inner().map(|inner| inner.downcast::<StoreError>()) {
        Some(Ok(store)) => Error::Store(*store),
        Some(Err(other)) => Error::Store(StoreError::Backend(other.to_string())),
        None => Error::Store(StoreError::Backend("I/O error".into())),
    }
}

fn encryptor(sink: BlobSink) -> Result<(age::stream::StreamWriter<BlobSink>, String)> {
    let key = age::x25519::Identity::generate();
    let recipient = key.to_public();
    let w = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .map_err(|e| Error::Keys(crate::keys::KeyError::Encrypt(e.to_string())))?
        .wrap_output(sink)
        .map_err(io_to_error)?;
    Ok((w, key.to_string().expose_secret().to_string()))
}

fn entry(
    name: String,
    media_type: String,
    digests: ([u8; 32], [u8; 64], u64),
    file_key: String,
    cipher_len: u64,
    blob_size: usize,
    blobs: Vec<BlobId>,
) -> FileEntry {
    FileEntry {
        name,
        size: digests.2,
        media_type,
        blake3: digests.0,
        sha512: digests.1,
        file_key,
        cipher_len,
        blob_size: u32::try_from(blob_size).unwrap_or(u32::MAX),
        blobs,
    }
}

/// One step: a small file already in memory.
fn process_small(
    archive: Arc<Archive>,
    session: [u8; 16],
    name: String,
    media_type: String,
    data: Vec<u8>,
) -> Result<FileDone> {
    let blob_size = archive.config.blob_size();
    let mut d = Digests::new();
    d.update(&data);
    let sink = BlobSink {
        buf: Vec::with_capacity(blob_size.min(data.len() + 1024)),
        blob_size,
        cipher_len: 0,
        out: BlobOut::Inline {
            archive,
            session,
            ids: Vec::new(),
            bytes: 0,
        },
    };
    let (mut w, file_key) = encryptor(sink)?;
    w.write_all(&data).map_err(io_to_error)?;
    let mut sink = w.finish().map_err(io_to_error)?;
    sink.emit().map_err(io_to_error)?;
    let BlobOut::Inline { ids, bytes, .. } = sink.out else {
        return Err(Error::Protocol("internal: inline sink expected".into()));
    };
    Ok(FileDone {
        entry: entry(
            name,
            media_type,
            d.finish(),
            file_key,
            sink.cipher_len,
            blob_size,
            ids.clone(),
        ),
        new_blobs: ids,
        blob_bytes: bytes,
    })
}

/// Three stages for a large file; returns the sender for its plaintext and the job.
fn start_pipeline(
    archive: Arc<Archive>,
    session: [u8; 16],
    name: String,
    media_type: String,
) -> (mpsc::Sender<Vec<u8>>, FileJob) {
    let (plain_tx, mut plain_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let (enc_tx, enc_rx) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH);
    let (blob_tx, blob_rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(1);
    let blob_size = archive.config.blob_size();

    let hasher = tokio::task::spawn_blocking(move || {
        let mut d = Digests::new();
        while let Some(chunk) = plain_rx.blocking_recv() {
            d.update(&chunk);
            if enc_tx.send(chunk).is_err() {
                break; // the encrypt stage failed; its error is reported
            }
        }
        d.finish()
    });
    let encrypt = tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
        let sink = BlobSink {
            buf: Vec::with_capacity(blob_size),
            blob_size,
            cipher_len: 0,
            out: BlobOut::Stage(blob_tx),
        };
        let (mut w, file_key) = encryptor(sink)?;
        for chunk in enc_rx {
            w.write_all(&chunk).map_err(io_to_error)?;
        }
        let mut sink = w.finish().map_err(io_to_error)?;
        sink.emit().map_err(io_to_error)?;
        Ok((file_key, sink.cipher_len))
    });
    let store_archive = archive.clone();
    let store = tokio::task::spawn_blocking(move || -> Result<(Vec<BlobId>, u64)> {
        let mut ids = Vec::new();
        let mut bytes = 0u64;
        for blob in blob_rx {
            let id = *blake3::hash(&blob).as_bytes();
            store_archive.store.put_blob(&session, &id, &blob)?;
            ids.push(id);
            bytes += blob.len() as u64;
        }
        Ok((ids, bytes))
    });
    let job = tokio::spawn(async move {
        let joined =
            |e: tokio::task::JoinError| Error::Protocol(format!("ingest stage failed: {e}"));
        let stored = store.await.map_err(joined)?;
        let encrypted = encrypt.await.map_err(joined)?;
        let digests = hasher.await.map_err(joined)?;
        // Report the deepest failure first: a full disk shows as a store error.
        let (ids, bytes) = stored?;
        let (file_key, cipher_len) = encrypted?;
        Ok(FileDone {
            entry: entry(
                name,
                media_type,
                digests,
                file_key,
                cipher_len,
                blob_size,
                ids.clone(),
            ),
            new_blobs: ids,
            blob_bytes: bytes,
        })
    });
    (plain_tx, job)
}

/// A file being received.
struct OpenFile {
    name: String,
    media_type: String,
    expected: u64,
    received: u64,
    small: Vec<u8>,
    pipeline: Option<(mpsc::Sender<Vec<u8>>, FileJob)>,
}

/// Guesses a media type from the file name when the client gives none.
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        "jp2" => "image/jp2",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "zip" => "application/zip",
        "geojson" => "application/geo+json",
        "shp" => "application/x-shapefile",
        _ => "application/octet-stream",
    }
}

fn check_file_name(name: &str) -> Result<(), ValidationError> {
    let bad = |rule: &str| ValidationError::new("file name", format!("{name:?}: {rule}"));
    if name.is_empty() {
        return Err(bad("must not be empty"));
    }
    if name.len() > 255 {
        return Err(bad("at most 255 bytes"));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\\') {
        return Err(bad("must be a plain file name, without / or \\"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    Ok(())
}

/// Record IDs are ULIDs, strictly increasing within this process even within a millisecond,
/// so that listing in ID order is ingestion order and paging never skips a record.
fn next_record_id() -> String {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut guard = match GENERATOR.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // Overflow of the 80 random bits within one millisecond: fall back to a fresh ULID.
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// Outcome of a committed ingest.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub record_id: String,
    pub files: u64,
    pub bytes: u64,
    pub deduplicated_files: u64,
    pub manifest_digest: String,
}

/// One record being ingested. Dropping it without [`IngestSession::commit`] removes every
/// blob it wrote.
pub struct IngestSession {
    archive: Arc<Archive>,
    session: [u8; 16],
    metadata: Metadata,
    open: Option<OpenFile>,
    in_flight: VecDeque<FileJob>,
    names: HashSet<String>,
    files: Vec<FileEntry>,
    plan: CommitPlan,
    local_dedup: HashMap<[u8; 32], FileEntry>,
    deduplicated: u64,
    total: u64,
    finished: bool,
}

impl IngestSession {
    pub fn new(archive: Arc<Archive>, metadata: Metadata) -> Self {
        let session = ulid::Ulid::new().to_bytes();
        IngestSession {
            archive,
            session,
            metadata,
            open: None,
            in_flight: VecDeque::new(),
            names: HashSet::new(),
            files: Vec::new(),
            plan: CommitPlan::default(),
            local_dedup: HashMap::new(),
            deduplicated: 0,
            total: 0,
            finished: false,
        }
    }

    pub async fn start_file(
        &mut self,
        name: String,
        expected: u64,
        media_type: String,
    ) -> Result<()> {
        self.close_file().await?;
        check_file_name(&name)?;
        if !self.names.insert(name.clone()) {
            return Err(ValidationError::new(
                "file name",
                format!("{name:?} appears twice in the record"),
            )
            .into());
        }
        if self.names.len() > archipel_proto::manifest::MAX_FILES {
            return Err(ValidationError::new("files", "too many files in one record").into());
        }
        // Refuse up front what cannot fit (sled needs about twice the ciphertext while it
        // writes); the per-blob check catches files whose size was not announced.
        let store = &self.archive.store;
        store.ensure_room(
            expected.saturating_mul(2),
            store.reserve,
            &format!("file {name:?}"),
        )?;
        let media_type = if media_type.trim().is_empty() {
            media_type_for(&name).to_string()
        } else {
            media_type.trim().to_string()
        };
        self.open = Some(OpenFile {
            name,
            media_type,
            expected,
            received: 0,
            small: Vec::new(),
            pipeline: None,
        });
        Ok(())
    }

    pub async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        let max = self.archive.config.max_record_gib.saturating_mul(1 << 30);
        let Some(f) = self.open.as_mut() else {
            return Err(Error::Protocol("file data before any file header".into()));
        };
        f.received += chunk.len() as u64;
        self.total += chunk.len() as u64;
        if self.total > max {
            return Err(StoreError::TooLarge(format!(
                "record exceeds max_record_gib ({} GiB)",
                self.archive.config.max_record_gib
            ))
            .into());
        }
        if f.expected > 0 && f.received > f.expected {
            return Err(ValidationError::new(
                "file size",
                format!("{:?}: more bytes than the announced {}", f.name, f.expected),
            )
            .into());
        }
        if let Some((tx, _)) = &f.pipeline {
            if tx.send(chunk).await.is_err() {
                return Err(self.pipeline_failure().await);
            }
            return Ok(());
        }
        if f.small.len() + chunk.len() <= SMALL_FILE {
            f.small.extend_from_slice(&chunk);
            return Ok(());
        }
        // Too big for one step: start the stages and feed them what was buffered.
        let (tx, job) = start_pipeline(
            self.archive.clone(),
            self.session,
            f.name.clone(),
            f.media_type.clone(),
        );
        let buffered = std::mem::take(&mut f.small);
        f.pipeline = Some((tx.clone(), job));
        for part in [buffered, chunk] {
            if !part.is_empty() && tx.send(part).await.is_err() {
                return Err(self.pipeline_failure().await);
            }
        }
        Ok(())
    }

    /// The stages stopped taking data: their own error says why (a full disk, say).
    async fn pipeline_failure(&mut self) -> Error {
        let job = self.open.as_mut().and_then(|f| f.pipeline.take());
        match job {
            Some((tx, job)) => {
                drop(tx);
                match job.await {
                    Ok(Err(e)) => e,
                    Ok(Ok(_)) => Error::Protocol("ingest pipeline stopped early".into()),
                    Err(e) => Error::Protocol(format!("ingest task failed: {e}")),
                }
            }
            None => Error::Protocol("ingest pipeline stopped early".into()),
        }
    }

    async fn close_file(&mut self) -> Result<()> {
        let Some(f) = self.open.take() else {
            return Ok(());
        };
        if f.received == 0 {
            return Err(ValidationError::new(
                "file",
                format!("{:?} is empty: nothing to archive", f.name),
            )
            .into());
        }
        if f.expected > 0 && f.received != f.expected {
            return Err(ValidationError::new(
                "file size",
                format!(
                    "{:?}: received {} bytes of the announced {}",
                    f.name, f.received, f.expected
                ),
            )
            .into());
        }
        let job = match f.pipeline {
            Some((tx, job)) => {
                drop(tx); // end of the plaintext
                job
            }
            None => {
                let (archive, session) = (self.archive.clone(), self.session);
                let (name, media_type, data) = (f.name, f.media_type, f.small);
                tokio::task::spawn_blocking(move || {
                    process_small(archive, session, name, media_type, data)
                })
            }
        };
        self.in_flight.push_back(job);
        while self.in_flight.len() > FILES_IN_FLIGHT {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Waits for the oldest file in flight and deduplicates it.
    async fn settle_one(&mut self) -> Result<()> {
        let Some(job) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let done = job
            .await
            .map_err(|e| Error::Protocol(format!("ingest task failed: {e}")))??;
        let keys = &self.archive.keys;
        let dkey = keys.dedup_key(&done.entry.blake3, done.entry.size);
        let existing =
            match self.local_dedup.get(&dkey) {
                Some(e) => Some(e.clone()),
                None => match self.archive.store.dedup_lookup(&dkey)? {
                    Some(sealed) => {
                        self.plan.reused_dedup.push(dkey);
                        let plain = keys.open_index(&sealed, &dkey, "deduplication entry")?;
                        Some(FileEntry::decode(&plain).map_err(|e| {
                            StoreError::Backend(format!("deduplication entry: {e}"))
                        })?)
                    }
                    None => None,
                },
            };
        let entry = match existing {
            Some(old) => {
                // Same content archived already: keep the old blobs, drop the new ones.
                self.archive
                    .store
                    .discard_staged(&self.session, &done.new_blobs)?;
                self.deduplicated += 1;
                FileEntry {
                    name: done.entry.name,
                    media_type: done.entry.media_type,
                    ..old
                }
            }
            None => {
                let mut anonymous = done.entry.clone();
                anonymous.name.clear();
                anonymous.media_type.clear();
                let sealed = keys.seal_index(&anonymous.encode(), &dkey)?;
                self.plan.dedup_entries.push((dkey, sealed));
                self.plan.staged.extend_from_slice(&done.new_blobs);
                self.plan.new_blob_bytes += done.blob_bytes;
                self.local_dedup.insert(dkey, anonymous);
                done.entry
            }
        };
        self.plan.file_objects.push(entry.object_id());
        self.files.push(entry);
        Ok(())
    }

    /// Seals, signs and commits the record; returns once it is durable.
    pub async fn commit(mut self) -> Result<Ingested> {
        self.close_file().await?;
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        if self.files.is_empty() {
            return Err(ValidationError::new("files", "a record needs at least one file").into());
        }
        let archive = self.archive.clone();
        let record_id = next_record_id();
        let manifest = Manifest {
            record_id: record_id.clone(),
            origin: archive.identity.node_id.clone(),
            ingested_at: crate::clock::now_unix(),
            metadata: self.metadata.clone(),
            files: std::mem::take(&mut self.files),
        };
        let plain = manifest.encode();
        let record_key = age::x25519::Identity::generate();
        let record_recipient = record_key.to_public();
        let sealed = seal_to(
            std::iter::once(&record_recipient as &dyn age::Recipient),
            &plain,
        )?;
        let envelope = Envelope::sign(
            record_id.clone(),
            manifest.origin.clone(),
            manifest.ingested_at,
            sealed,
            manifest.blob_ids(),
            &archive.identity.signing_key,
        )
        .encode();
        let envelope_digest = *blake3::hash(&envelope).as_bytes();
        let manifest_digest = hex::encode(envelope_digest);
        let mut plan = std::mem::take(&mut self.plan);
        let log = &archive.log;
        if log.enabled {
            // Leaves carry commitments, never the metadata or plaintext digests themselves.
            let digests: Vec<u8> = manifest
                .files
                .iter()
                .flat_map(|f| f.blake3.iter().chain(f.sha512.iter()).copied())
                .collect();
            let keys = &archive.keys;
            let ok = Outcome::Success;
            plan.events.push(log.event(
                "validation",
                &record_id,
                "admin",
                ok,
                keys.commitment(&manifest.metadata.encode()),
            )?);
            plan.events.push(log.event(
                "message digest calculation",
                &record_id,
                "admin",
                ok,
                keys.commitment(&digests),
            )?);
            let mut ingestion = log.event("ingestion", &record_id, "admin", ok, envelope_digest)?;
            ingestion.ingestion_of = Some(record_id.clone());
            plan.events.push(ingestion);
        }
        plan.record_id = record_id.clone();
        plan.key_envelope = archive.keys.wrap_record_key(&record_key)?;
        plan.catalog_entry = archive.keys.seal_index(&plain, record_id.as_bytes())?;
        plan.envelope = envelope;
        archive.store.commit(&self.session, plan).await?;
        self.finished = true;
        Ok(Ingested {
            record_id,
            files: manifest.files.len() as u64,
            bytes: manifest.files.iter().map(|f| f.size).sum(),
            deduplicated_files: self.deduplicated,
            manifest_digest,
        })
    }
}

impl Drop for IngestSession {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Abandoned (error or client gone): nothing partial may stay.
        let archive = self.archive.clone();
        let session = self.session;
        let jobs: Vec<_> = self.in_flight.drain(..).collect();
        let open = self.open.take();
        let cleanup = async move {
            // Let running stages stop before their blobs are removed.
            if let Some((tx, job)) = open.and_then(|f| f.pipeline) {
                drop(tx);
                let _ = job.await;
            }
            for j in jobs {
                let _ = j.await;
            }
            let _ =
                tokio::task::spawn_blocking(move || archive.store.clean_staging(Some(&session)))
                    .await;
        };
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(cleanup);
        }
    }
}
