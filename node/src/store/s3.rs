//! Blobs in an S3-compatible object store (Garage, MinIO, a sovereign cloud's S3), through
//! the `object_store` crate; sled keeps everything else (indexes, envelopes, the log).
//!
//! What the object store sees: ciphertext named by its BLAKE3 (`<prefix>/<namespace>/<64
//! hex>`), blob sizes, and when each was written or read. Never keys or metadata.
//!
//! The [`BlobStore`] trait is synchronous and called from blocking threads (and, briefly,
//! from some async tasks), while `object_store` is async. Each connection owns a small
//! tokio runtime of its own; a call spawns its request there and waits on a std channel.
//! That never nests `block_on` in a caller's runtime (which panics) and works from any
//! thread. Requests in flight are bounded by a semaphore (`s3.concurrency`), and each
//! holds at most one blob (≤ the blob size, 4 MiB by default) in memory.
//!
//! Errors: `object_store` retries one request on timeouts, connection failures and 5xx with
//! exponential backoff (`s3.max_retries`); above it this store retries a whole operation a
//! few times more, which also covers a body cut short while it was read (a partial read).
//! What remains is reported with the operation and the blob ID.

use super::blob::{BlobError, BlobStore};
use crate::config::S3Config;
use archipel_proto::manifest::BlobId;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Whole-operation attempts above `object_store`'s own per-request retries.
const ATTEMPTS: u32 = 3;
/// Blob IDs fetched per listing request.
const LIST_BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("s3 configuration: {0}")]
    Config(String),
    #[error("s3 credentials: {0}")]
    Credentials(String),
    #[error("cannot start the object store's I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the object store's I/O runtime stopped during {op}")]
    RuntimeGone { op: &'static str },
    /// Refused for good (permissions, authentication, a bad request): retrying cannot help.
    #[error("s3 {op} of blob {blob} refused: {source}")]
    Permanent {
        op: &'static str,
        blob: String,
        source: object_store::Error,
    },
    /// Still failing after every retry (timeouts, 5xx, cut connections).
    #[error("s3 {op} of blob {blob} failed after {attempts} attempts: {source}")]
    Transient {
        op: &'static str,
        blob: String,
        attempts: u32,
        source: object_store::Error,
    },
    #[error("s3 get of blob {blob}: {got} bytes received, {expected} announced")]
    ShortRead {
        blob: String,
        expected: u64,
        got: u64,
    },
}

/// A failure of one attempt: retried or not.
#[derive(Debug)]
enum Attempt {
    Store(object_store::Error),
    Short { expected: u64, got: u64 },
}

impl From<object_store::Error> for Attempt {
    fn from(e: object_store::Error) -> Self {
        Attempt::Store(e)
    }
}

fn is_transient(e: &Attempt) -> bool {
    use object_store::Error as E;
    match e {
        Attempt::Short { .. } => true,
        // Everything `object_store` cannot name: timeouts, resets, 5xx it gave up on, a body
        // that failed half-way. The named cases are answers the server meant.
        Attempt::Store(E::Generic { .. } | E::JoinError { .. }) => true,
        Attempt::Store(_) => false,
    }
}

/// One object store, its runtime and its limits; shared by every namespace on it.
#[derive(Debug)]
pub struct S3Connection {
    store: Arc<AmazonS3>,
    prefix: String,
    permits: Arc<tokio::sync::Semaphore>,
    /// Uploads started and not finished (write-behind), each holding one blob: at most
    /// `s3.concurrency` of them, so their memory is bounded by concurrency × blob size.
    uploads: Arc<tokio::sync::Semaphore>,
    /// `s3.concurrency`.
    concurrency: usize,
    handle: tokio::runtime::Handle,
    /// `Option` so that `Drop` can shut it down without blocking (dropping a runtime from
    /// an async context panics).
    runtime: Option<tokio::runtime::Runtime>,
    backoff: Duration,
}

impl Drop for S3Connection {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Access key ID and secret: from `s3.credentials_file` if set, else from the environment
/// (`ARCHIPEL_S3_ACCESS_KEY_ID` / `ARCHIPEL_S3_SECRET_ACCESS_KEY`, or the usual
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`). Never in the main configuration file,
/// which operators share when asking for help.
pub fn credentials(cfg: &S3Config) -> Result<(String, String), S3Error> {
    if let Some(path) = &cfg.credentials_file {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            access_key_id: String,
            secret_access_key: String,
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            S3Error::Credentials(format!(
                "s3.credentials_file = {:?}: cannot be read ({e})",
                path.display()
            ))
        })?;
        let f: File = toml::from_str(&text).map_err(|e| {
            S3Error::Credentials(format!(
                "s3.credentials_file = {:?}: expected `access_key_id = \"...\"` and \
                 `secret_access_key = \"...\"` ({e})",
                path.display()
            ))
        })?;
        return Ok((f.access_key_id, f.secret_access_key));
    }
    let var = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
    match (
        var("ARCHIPEL_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        var("ARCHIPEL_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(S3Error::Credentials(
            "none found: set s3.credentials_file, or ARCHIPEL_S3_ACCESS_KEY_ID and \
             ARCHIPEL_S3_SECRET_ACCESS_KEY in the environment"
                .into(),
        )),
    }
}

impl S3Connection {
    pub fn open(cfg: &S3Config) -> Result<Arc<Self>, S3Error> {
        let (key_id, secret) = credentials(cfg)?;
        let options = ClientOptions::new()
            .with_timeout(Duration::from_secs(cfg.timeout_secs))
            .with_connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .with_allow_http(cfg.endpoint.starts_with("http://"));
        let backoff = Duration::from_millis(cfg.retry_backoff_ms);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: backoff,
                max_backoff: backoff * 32,
                base: 2.0,
            },
            max_retries: cfg.max_retries as usize,
            retry_timeout: Duration::from_secs(cfg.timeout_secs * (u64::from(cfg.max_retries) + 1)),
        };
        let store = AmazonS3Builder::new()
            .with_endpoint(cfg.endpoint.trim_end_matches('/'))
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_allow_http(cfg.endpoint.starts_with("http://"))
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|e| S3Error::Config(e.to_string()))?;
        // Two workers: requests are I/O-bound, and the machine's cores belong to ingest.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("archipel-s3")
            .enable_all()
            .build()
            .map_err(S3Error::Runtime)?;
        Ok(Arc::new(S3Connection {
            store: Arc::new(store),
            prefix: cfg.key_prefix.trim_matches('/').to_string(),
            permits: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1) as usize)),
            uploads: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1) as usize)),
            concurrency: cfg.concurrency.max(1) as usize,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            backoff,
        }))
    }

    /// The blobs of one namespace (`blobs` for the node's own, `held/<origin>` for a peer's).
    pub fn namespace(self: &Arc<Self>, name: &str) -> S3BlobStore {
        let dir = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        };
        S3BlobStore {
            conn: self.clone(),
            dir,
            list_batch: LIST_BATCH,
            pending: Default::default(),
        }
    }

    /// Runs `fut` on this connection's runtime and waits for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, S3Error>> + Send + 'static,
    ) -> Result<T, S3Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| S3Error::RuntimeGone { op })?
    }

    /// Checks that the bucket answers and that the credentials may write, read, list and
    /// delete: writes, reads back and deletes a probe object. Errors name the setting.
    pub fn probe(self: &Arc<Self>) -> Result<(), String> {
        let ns = self.namespace("probe");
        let bytes: Vec<u8> = format!("archipel probe {}", std::process::id()).into_bytes();
        let id = *blake3::hash(&bytes).as_bytes();
        let explain = |step: &str, e: BlobError| -> String {
            let detail = e.to_string();
            const CREDENTIALS: &str = "the credentials were refused: check s3.credentials_file \
                (or ARCHIPEL_S3_ACCESS_KEY_ID / ARCHIPEL_S3_SECRET_ACCESS_KEY) and s3.region";
            const BUCKET: &str =
                "s3.bucket does not exist on s3.endpoint (or s3.path_style is wrong)";
            let source = match &e {
                BlobError::S3(S3Error::Permanent { source, .. }) => Some(source),
                _ => None,
            };
            let hint = if [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AuthorizationHeaderMalformed",
            ]
            .iter()
            .any(|code| detail.contains(code))
                || matches!(source, Some(object_store::Error::Unauthenticated { .. }))
            {
                CREDENTIALS
            } else if detail.contains("NoSuchBucket")
                || matches!(source, Some(object_store::Error::NotFound { .. }))
            {
                BUCKET
            } else if matches!(source, Some(object_store::Error::PermissionDenied { .. })) {
                "the key lacks a permission on s3.bucket (it needs read, write and delete), \
                 or the credentials are wrong"
            } else if source.is_some() {
                "check s3.endpoint, s3.bucket and s3.path_style"
            } else {
                "s3.endpoint cannot be reached or fails: check the URL, the network, the TLS"
            };
            format!("s3 {step} of a probe object failed: {hint} ({detail})")
        };
        ns.put_now(&id, &bytes).map_err(|e| explain("write", e))?;
        match ns.get(&id) {
            Ok(Some(b)) if b == bytes => {}
            Ok(Some(_)) => return Err("s3 read of a probe object returned other bytes".into()),
            Ok(None) => {
                return Err("s3 read of a probe object just written found nothing: \
                            the store is not read-after-write consistent"
                    .into());
            }
            Err(e) => return Err(explain("read", e)),
        }
        match ns.list(&id[..4]).next() {
            Some(Ok(found)) if found == id => {}
            Some(Err(e)) => return Err(explain("listing", e)),
            _ => return Err("s3 listing did not show a probe object just written".into()),
        }
        ns.delete(&id).map_err(|e| explain("delete", e))?;
        Ok(())
    }
}

/// The blobs of one namespace in the object store.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    conn: Arc<S3Connection>,
    /// Key prefix of this namespace, without a trailing slash.
    dir: String,
    list_batch: usize,
    /// Uploads in flight (write-behind): `put` returns once its upload has a slot; `flush`
    /// / `flush_blobs` wait for them, and a read of a blob in flight waits for its upload.
    pending: Arc<std::sync::Mutex<HashMap<BlobId, Arc<PutSlot>>>>,
}

/// The outcome of one background upload, once known.
#[derive(Debug, Default)]
struct PutSlot {
    done: std::sync::Mutex<Option<Result<(), String>>>,
    ready: std::sync::Condvar,
}

impl PutSlot {
    fn set(&self, r: Result<(), String>) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.ready.notify_all();
    }
    fn wait(&self) -> Result<(), String> {
        let mut g = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = g.as_ref() {
                return r.clone();
            }
            g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl S3BlobStore {
    fn key(&self, id: &BlobId) -> ObjectPath {
        ObjectPath::from(format!("{}/{}", self.dir, hex::encode(id)))
    }

    /// Fetches per listing request (tests make it small to cross page boundaries).
    pub fn with_list_batch(mut self, n: usize) -> Self {
        self.list_batch = n.max(1);
        self
    }

    /// Runs one operation with whole-operation retries on transient failures.
    fn call<T, F, Fut>(&self, op: &'static str, id: &BlobId, f: F) -> Result<T, S3Error>
    where
        T: Send + 'static,
        F: Fn(Arc<AmazonS3>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Attempt>> + Send,
    {
        self.conn.run(op, self.call_fut(op, id, f))
    }

    /// The future of [`S3BlobStore::call`], to run several at once.
    fn call_fut<T, F, Fut>(
        &self,
        op: &'static str,
        id: &BlobId,
        f: F,
    ) -> impl Future<Output = Result<T, S3Error>> + Send + 'static
    where
        T: Send + 'static,
        F: Fn(Arc<AmazonS3>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Attempt>> + Send,
    {
        let conn = self.conn.clone();
        let blob = hex::encode(id);
        async move {
            let mut attempt = 1;
            loop {
                let outcome = {
                    let _permit = conn
                        .permits
                        .acquire()
                        .await
                        .map_err(|_| S3Error::RuntimeGone { op })?;
                    f(conn.store.clone()).await
                };
                let e = match outcome {
                    Ok(v) => return Ok(v),
                    Err(e) => e,
                };
                let transient = is_transient(&e);
                if transient && attempt < ATTEMPTS {
                    tracing::debug!(op, blob, attempt, error = ?e, "s3: retrying");
                    tokio::time::sleep(conn.backoff * 2u32.pow(attempt)).await;
                    attempt += 1;
                    continue;
                }
                return Err(match e {
                    Attempt::Short { expected, got } => S3Error::ShortRead {
                        blob,
                        expected,
                        got,
                    },
                    Attempt::Store(source) if transient => S3Error::Transient {
                        op,
                        blob,
                        attempts: attempt,
                        source,
                    },
                    Attempt::Store(source) => S3Error::Permanent { op, blob, source },
                });
            }
        }
    }

    /// Waits for the upload of `id` if one is in flight (a read must see the blob).
    fn settle(&self, id: &BlobId) -> Result<(), BlobError> {
        let slot = self.pending_map().get(id).cloned();
        match slot {
            Some(slot) => slot.wait().map_err(BlobError::Backend),
            None => Ok(()),
        }
    }

    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, Arc<PutSlot>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the uploads of `ids` (all when `None`) and forgets those that succeeded.
    /// A failure is returned, and forgotten only when asked for by ID (the caller that
    /// owns the blob): a global flush leaves it for that caller to see too.
    fn wait_uploads(&self, ids: Option<&[BlobId]>) -> Result<(), BlobError> {
        let slots: Vec<(BlobId, Arc<PutSlot>)> = {
            let map = self.pending_map();
            match ids {
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| map.get(id).map(|s| (*id, s.clone())))
                    .collect(),
                None => map.iter().map(|(id, s)| (*id, s.clone())).collect(),
            }
        };
        let mut first = Ok(());
        for (id, slot) in slots {
            let r = slot.wait();
            let forget = r.is_ok() || ids.is_some();
            if forget {
                let mut map = self.pending_map();
                if map.get(&id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    map.remove(&id);
                }
            }
            if let Err(e) = r
                && first.is_ok()
            {
                first = Err(BlobError::Backend(e));
            }
        }
        first
    }

    /// Waits for every upload in flight, forgetting none (before a listing).
    fn settle_all(&self) {
        let slots: Vec<Arc<PutSlot>> = self.pending_map().values().cloned().collect();
        for slot in slots {
            let _ = slot.wait();
        }
    }

    /// Writes one blob and waits for the object store's answer (no write-behind).
    pub fn put_now(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        let key = self.key(id);
        let payload = PutPayload::from(bytes.to_vec());
        self.call("put", id, move |s| {
            let key = key.clone();
            let payload = payload.clone();
            async move {
                s.put(&key, payload).await?;
                Ok(())
            }
        })?;
        Ok(())
    }

    fn get_fut(
        &self,
        id: &BlobId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, S3Error>> + Send + 'static {
        let key = self.key(id);
        self.call_fut("get", id, move |s| {
            let key = key.clone();
            async move {
                let found = match s.get(&key).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let expected = found.meta.size;
                let bytes = found.bytes().await?;
                if bytes.len() as u64 != expected {
                    return Err(Attempt::Short {
                        expected,
                        got: bytes.len() as u64,
                    });
                }
                Ok(Some(Vec::from(bytes)))
            }
        })
    }
}

impl BlobStore for S3BlobStore {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        // Content-addressed: writing the same ID twice writes the same bytes, so no check
        // first (a HEAD would cost a round trip on every blob). Write-behind: the upload
        // runs in the background once it has a slot (at most `s3.concurrency` at once,
        // which bounds the memory they hold), so one ingest's blobs go up in parallel;
        // `flush_blobs` waits for them before the commit.
        let earlier = self.pending_map().get(id).cloned();
        if let Some(slot) = earlier {
            // The same blob is already on its way (a duplicate): its outcome is ours,
            // unless it failed, and then this is a new attempt.
            if slot.wait().is_ok() {
                return Ok(());
            }
        }
        let permit = self.conn.run("put", {
            let uploads = self.conn.uploads.clone();
            async move {
                uploads
                    .acquire_owned()
                    .await
                    .map_err(|_| S3Error::RuntimeGone { op: "put" })
            }
        })?;
        let key = self.key(id);
        let payload = PutPayload::from(bytes.to_vec());
        let upload = self.call_fut("put", id, move |s| {
            let key = key.clone();
            let payload = payload.clone();
            async move {
                s.put(&key, payload).await?;
                Ok(())
            }
        });
        let slot = Arc::new(PutSlot::default());
        self.pending_map().insert(*id, slot.clone());
        self.conn.handle.spawn(async move {
            let r = upload.await.map_err(|e| e.to_string());
            drop(permit);
            slot.set(r);
        });
        Ok(())
    }

    fn flush_blobs(&self, ids: &[BlobId]) -> Result<(), BlobError> {
        self.wait_uploads(Some(ids))
    }

    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        self.settle(id)?;
        Ok(self.conn.run("get", self.get_fut(id))?)
    }

    fn get_many(&self, ids: &[BlobId]) -> Vec<Result<Option<Vec<u8>>, BlobError>> {
        for id in ids {
            if let Err(e) = self.settle(id) {
                return ids
                    .iter()
                    .map(|_| Err(BlobError::Backend(e.to_string())))
                    .collect();
            }
        }
        // In parallel, each request taking a permit of the connection's semaphore.
        let futs: Vec<_> = ids.iter().map(|id| self.get_fut(id)).collect();
        match self.conn.run(
            "get",
            async move { Ok(futures::future::join_all(futs).await) },
        ) {
            Ok(v) => v.into_iter().map(|r| r.map_err(BlobError::from)).collect(),
            Err(e) => {
                let e = e.to_string();
                ids.iter()
                    .map(|_| Err(BlobError::Backend(e.clone())))
                    .collect()
            }
        }
    }

    fn get_range(
        &self,
        id: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        self.settle(id)?;
        if range.is_empty() {
            return Ok(self.contains(id)?.then(Vec::new));
        }
        let key = self.key(id);
        Ok(self.call("get_range", id, move |s| {
            let key = key.clone();
            let range = range.clone();
            async move {
                let bytes = match s.get_range(&key, range.clone()).await {
                    Ok(b) => b,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let expected = range.end - range.start;
                // A range past the end is cut at the end of the blob, like the other stores.
                if bytes.len() as u64 > expected {
                    return Err(Attempt::Short {
                        expected,
                        got: bytes.len() as u64,
                    });
                }
                Ok(Some(Vec::from(bytes)))
            }
        })?)
    }

    fn contains(&self, id: &BlobId) -> Result<bool, BlobError> {
        Ok(self.size(id)?.is_some())
    }

    fn size(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        self.settle(id)?;
        let key = self.key(id);
        Ok(self.call("head", id, move |s| {
            let key = key.clone();
            async move {
                match s.head(&key).await {
                    Ok(meta) => Ok(Some(meta.size)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        })?)
    }

    fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        // An upload in flight must not land after the delete (a failed one is forgotten).
        let _ = self.wait_uploads(Some(std::slice::from_ref(id)));
        let key = self.key(id);
        self.call("delete", id, move |s| {
            let key = key.clone();
            async move {
                match s.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        })?;
        Ok(())
    }

    fn list(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<BlobId, BlobError>> + '_> {
        // A blob whose upload is in flight is listed once it is there.
        self.settle_all();
        Box::new(S3List {
            store: self,
            prefix: hex::encode(prefix),
            after: None,
            batch: Vec::new().into_iter(),
            done: false,
        })
    }

    fn flush(&self) -> Result<(), BlobError> {
        // An acknowledged PUT is durable at the object store (Garage answers once a quorum
        // of its nodes wrote it): only the uploads still in flight are waited for.
        self.wait_uploads(None)
    }

    fn list_after(
        &self,
        prefix: &[u8],
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobId>, BlobError> {
        self.settle_all();
        let prefix_hex = hex::encode(prefix);
        let list = S3List {
            store: self,
            after: after
                .map(hex::encode)
                .filter(|a| a.as_str() >= prefix_hex.as_str()),
            prefix: prefix_hex,
            batch: Vec::new().into_iter(),
            done: false,
        };
        list.take(limit).collect()
    }

    fn outside_log(&self, _len: usize) -> bool {
        // Every blob lands outside sled, so its staging mark must be durable first.
        true
    }

    fn on_local_disk(&self) -> bool {
        false
    }

    fn read_ahead(&self) -> usize {
        self.conn.concurrency
    }
}

/// Lists one namespace lazily, a batch at a time (memory stays bounded however many blobs
/// there are); each batch starts after the last ID seen (S3's `start-after`).
struct S3List<'a> {
    store: &'a S3BlobStore,
    prefix: String,
    after: Option<String>,
    batch: std::vec::IntoIter<BlobId>,
    done: bool,
}

impl S3List<'_> {
    fn fetch(&mut self) -> Result<Vec<BlobId>, BlobError> {
        use futures::StreamExt;
        let dir = ObjectPath::from(self.store.dir.as_str());
        // Start just before the first key that can match, or after the last one seen.
        let offset = match &self.after {
            Some(a) => Some(ObjectPath::from(format!("{}/{a}", self.store.dir))),
            None if !self.prefix.is_empty() => {
                // The largest string below `prefix`: keys starting with it all sort after.
                Some(ObjectPath::from(format!(
                    "{}/{}",
                    self.store.dir,
                    below(&self.prefix)
                )))
            }
            None => None,
        };
        let n = self.store.list_batch;
        let store = self.store.conn.store.clone();
        let child_of = format!("{}/", self.store.dir);
        let names: Vec<String> = self.store.conn.run("list", async move {
            let stream = match &offset {
                Some(o) => store.list_with_offset(Some(&dir), o),
                None => store.list(Some(&dir)),
            };
            let items: Vec<_> = stream.take(n).collect().await;
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                let meta = item.map_err(|source| S3Error::Transient {
                    op: "list",
                    blob: "(listing)".into(),
                    attempts: 1,
                    source,
                })?;
                // Only direct children: a namespace may have others nested below it.
                if let Some(name) = meta.location.as_ref().strip_prefix(&child_of)
                    && !name.contains('/')
                {
                    names.push(name.to_string());
                }
            }
            Ok(names)
        })?;
        if names.len() < n {
            self.done = true;
        }
        // A server that ignored `start-after` must not make the listing loop for ever.
        let mut names = names;
        if let Some(after) = &self.after {
            names.retain(|name| name > after);
            if names.is_empty() {
                self.done = true;
            }
        }
        if let Some(last) = names.last() {
            self.after = Some(last.clone());
        } else {
            self.done = true;
        }
        let mut ids: Vec<BlobId> = names
            .iter()
            .filter(|n| n.starts_with(&self.prefix))
            .filter_map(|n| parse_id(n))
            .collect();
        // Past the prefix in sorted order: nothing further can match.
        if names
            .last()
            .is_some_and(|l| l.as_str() > self.prefix.as_str() && !l.starts_with(&self.prefix))
        {
            self.done = true;
        }
        ids.sort();
        Ok(ids)
    }
}

/// A string that sorts after every hex string below `prefix` and before every string
/// starting with it (a `start-after` for a prefix listing).
fn below(prefix: &str) -> String {
    let mut s = prefix.to_string();
    match s.pop() {
        None | Some('0') => {}
        // '~' sorts after every hex digit: "aa~" is above "aaff..." and below "ab".
        Some('a') => s.push_str("9~"),
        Some(c) => {
            s.push(char::from(c as u8 - 1));
            s.push('~');
        }
    }
    s
}

impl Iterator for S3List<'_> {
    type Item = Result<BlobId, BlobError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(id) = self.batch.next() {
                return Some(Ok(id));
            }
            if self.done {
                return None;
            }
            match self.fetch() {
                Ok(ids) => self.batch = ids.into_iter(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn parse_id(name: &str) -> Option<BlobId> {
    if name.len() != 64 {
        return None;
    }
    hex::decode(name).ok()?.try_into().ok()
}
