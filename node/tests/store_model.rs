#![allow(clippy::unwrap_used)]
//! Property test: the store against a simple in-memory model, across restarts.
//!
//! proptest generates sequences of operations (ingest, abandoned ingest, read, list, fixity
//! check, leftovers of a crashed ingest, restart, elimination, the pack compactor's pass)
//! and drives the node library directly, on
//! either blob store (files or sled), with 64 KiB blobs so that small files already span
//! several blobs. After every step the store must agree with the model:
//! - `list` (whole, and paged with small page sizes) returns exactly the model's records,
//!   each once, in ID order, with the model's titles, file names, sizes and digests;
//! - reads (whole files and byte ranges) return the model's bytes;
//! - `record_count` equals the model; `blob_count`/`blob_bytes` equal the distinct blobs the
//!   records reference; the blob store holds exactly those blobs (plus the staged leftovers of
//!   a simulated crash, which the next open removes); nothing is staged after a commit;
//! - identical contents share blobs (deduplication), different contents share none;
//! - an abandoned ingest, however it is abandoned, leaves nothing behind.

use archipel_node::archive::Archive;
use archipel_node::config::BlobStoreKind;
use archipel_node::ingest::{IngestSession, Ingested, media_type_for};
use archipel_node::{Config, ListFilter, Node};
use archipel_proto::manifest::{BlobId, Manifest};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BLOB_KIB: u32 = 64;
const SETTLE: Duration = Duration::from_secs(5);

/// Where a file's content comes from.
#[derive(Debug, Clone)]
enum Content {
    /// Fresh pseudo-random bytes.
    Fresh { seed: u64, size: usize },
    /// The same bytes as an earlier content of this run (index modulo the pool): exercises
    /// deduplication, within a record and across records.
    Reuse(usize),
}

#[derive(Debug, Clone)]
struct FileSpec {
    content: Content,
    /// Announce the size in the file header (otherwise 0: unknown).
    announce: bool,
    /// Size of the chunks written.
    chunk: usize,
}

#[derive(Debug, Clone, Copy)]
enum AbortKind {
    /// Dropped in the middle of the last file.
    MidFile,
    /// Dropped after every byte was written, without commit.
    AfterFiles,
    /// `commit` fails (an empty last file) and consumes the session.
    CommitFails,
    /// The last file gets more bytes than announced: `write` fails, then the session is dropped.
    Oversize,
}

#[derive(Debug, Clone)]
enum Op {
    Ingest {
        title: u8,
        files: Vec<FileSpec>,
    },
    Abort {
        kind: AbortKind,
        files: Vec<FileSpec>,
    },
    Get {
        record: usize,
        file: usize,
        /// (start, length) in thousandths of the file and of the rest.
        range: Option<(u64, u64)>,
        chunk: usize,
    },
    List {
        page: usize,
    },
    Verify {
        record: usize,
    },
    /// Blobs staged by an ingest that never finished (as after a crash): the next open
    /// must remove them.
    Leftover {
        seed: u64,
        blobs: u8,
    },
    Restart,
    /// Lawful destruction of a record (its DUA has run out): its blobs go unless another
    /// record shares its content; its deduplication entries go with the last reference.
    Eliminate {
        record: usize,
    },
    /// The pack compactor's pass: rewrites mostly dead packs; nothing a record references
    /// may change.
    Reclaim,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        5 => 1..2048usize,
        3 => 2048..200_000usize,
        // Above the 1 MiB "small file" threshold: the three-stage pipeline.
        1 => 1_048_577..1_300_000usize,
        // Edges: ciphertexts close to 1, 2 or 3 whole blobs (age adds a header of a few
        // hundred bytes, its length varies, and 16 bytes per 64 KiB chunk), and the small-file
        // threshold.
        1 => prop_oneof![
            (1..=3usize, 100..400usize).prop_map(|(k, d)| k * 65_536 - d),
            Just(65_536usize),
            Just(1 << 20),
            Just((1 << 20) + 1),
        ],
    ]
}

fn file_spec() -> impl Strategy<Value = FileSpec> {
    let content = prop_oneof![
        5 => (any::<u64>(), size()).prop_map(|(seed, size)| Content::Fresh { seed, size }),
        2 => (0..64usize).prop_map(Content::Reuse),
    ];
    let chunk = prop_oneof![512..8192usize, 8192..400_000usize];
    (content, any::<bool>(), chunk).prop_map(|(content, announce, chunk)| FileSpec {
        content,
        announce,
        chunk,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let files = || proptest::collection::vec(file_spec(), 1..=3);
    let kind = prop_oneof![
        Just(AbortKind::MidFile),
        Just(AbortKind::AfterFiles),
        Just(AbortKind::CommitFails),
        Just(AbortKind::Oversize),
    ];
    prop_oneof![
        5 => (0u8..4, files()).prop_map(|(title, files)| Op::Ingest { title, files }),
        2 => (kind, files()).prop_map(|(kind, files)| Op::Abort { kind, files }),
        3 => (any::<usize>(), any::<usize>(), proptest::option::of((0u64..=1000, 0u64..=1000)), 1..300_000usize)
            .prop_map(|(record, file, range, chunk)| Op::Get { record, file, range, chunk }),
        2 => (1usize..=5).prop_map(|page| Op::List { page }),
        2 => any::<usize>().prop_map(|record| Op::Verify { record }),
        1 => (any::<u64>(), 1u8..=3).prop_map(|(seed, blobs)| Op::Leftover { seed, blobs }),
        2 => Just(Op::Restart),
        2 => any::<usize>().prop_map(|record| Op::Eliminate { record }),
        3 => Just(Op::Reclaim),
    ]
}

fn bytes_from_seed(seed: u64, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    let mut h = blake3::Hasher::new();
    h.update(b"store model content");
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

const NAMES: [&str; 3] = ["rapport.pdf", "plan.tif", "notes.txt"];

#[derive(Debug, Clone)]
struct ModelRecord {
    title: String,
    /// (name, bytes), in ingestion order.
    files: Vec<(String, Vec<u8>)>,
}

struct Harness {
    data: std::path::PathBuf,
    backend: BlobStoreKind,
    rt: tokio::runtime::Runtime,
    node: Option<Node>,
    /// Record ID → record, and the order of ingestion.
    model: BTreeMap<String, ModelRecord>,
    order: Vec<String>,
    /// Every content seen so far (for `Content::Reuse`).
    pool: Vec<Vec<u8>>,
    /// Staged blobs of "crashed" ingests, removed by the next open.
    leftovers: BTreeSet<BlobId>,
    /// Last field: removed after the node is closed.
    _dir: tempfile::TempDir,
}

fn config(data: &Path, backend: BlobStoreKind) -> Config {
    Config {
        blob_size_kib: BLOB_KIB,
        cache_capacity_mib: 16,
        blob_store: backend,
        ..Config::with_data_dir(data)
    }
}

impl Harness {
    fn new(backend: BlobStoreKind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        archipel_node::init(&data, "T", &[]).unwrap();
        let node = Node::open(config(&data, backend)).unwrap();
        Harness {
            data,
            backend,
            rt: tokio::runtime::Runtime::new().unwrap(),
            node: Some(node),
            model: BTreeMap::new(),
            order: Vec::new(),
            pool: Vec::new(),
            leftovers: BTreeSet::new(),
            _dir: dir,
        }
    }

    fn archive(&self) -> &Arc<Archive> {
        &self.node.as_ref().unwrap().archive
    }

    fn resolve(&mut self, c: &Content) -> Vec<u8> {
        let bytes = match c {
            Content::Reuse(i) if !self.pool.is_empty() => self.pool[i % self.pool.len()].clone(),
            Content::Reuse(i) => bytes_from_seed(*i as u64, 1 + i % 5000),
            Content::Fresh { seed, size } => bytes_from_seed(*seed, *size),
        };
        self.pool.push(bytes.clone());
        bytes
    }

    /// Waits until background work of dropped sessions is over: nothing staged beyond the
    /// simulated leftovers, and no task holding the archive any more.
    fn settle(&self) {
        let archive = self.archive();
        let start = Instant::now();
        while (archive.store.staged_count() != self.leftovers.len()
            || Arc::strong_count(archive) > 1)
            && start.elapsed() < SETTLE
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            archive.store.staged_count(),
            self.leftovers.len(),
            "staged blobs remain after the ingest ended"
        );
        assert_eq!(
            Arc::strong_count(archive),
            1,
            "a task still holds the archive"
        );
    }

    fn ingest(&mut self, title: u8, specs: &[FileSpec]) {
        let files: Vec<(String, Vec<u8>, &FileSpec)> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (NAMES[i].to_string(), self.resolve(&s.content), s))
            .collect();
        // Expected deduplications: contents already archived, or earlier in this record.
        let mut known: BTreeSet<&[u8]> = self
            .model
            .values()
            .flat_map(|r| r.files.iter().map(|(_, b)| b.as_slice()))
            .collect();
        let mut expect_dedup = 0;
        for (_, b, _) in &files {
            if !known.insert(b.as_slice()) {
                expect_dedup += 1;
            }
        }
        let title = format!("record {title}");
        let archive = self.archive().clone();
        let meta = archipel_node::record::validate(&archipel_proto::v1::RecordMetadata {
            title: title.clone(),
            // Eliminable: a DUA that ran out long ago, sort final D.
            dua_years: Some(1),
            final_disposition: "D".into(),
            date: "2000-01-01".into(),
            ..Default::default()
        })
        .unwrap();
        let done: Ingested = self.rt.block_on(async {
            let mut s = IngestSession::new(archive, meta);
            for (name, data, spec) in &files {
                let announced = if spec.announce { data.len() as u64 } else { 0 };
                s.start_file(name.clone(), announced, String::new())
                    .await
                    .unwrap();
                for c in data.chunks(spec.chunk) {
                    s.write(c.to_vec()).await.unwrap();
                }
            }
            s.commit().await.unwrap()
        });
        assert_eq!(done.files, files.len() as u64);
        assert_eq!(
            done.bytes,
            files.iter().map(|f| f.1.len() as u64).sum::<u64>()
        );
        assert_eq!(done.deduplicated_files, expect_dedup, "deduplicated files");
        assert!(!self.model.contains_key(&done.record_id));
        self.model.insert(
            done.record_id.clone(),
            ModelRecord {
                title,
                files: files.into_iter().map(|(n, b, _)| (n, b)).collect(),
            },
        );
        self.order.push(done.record_id);
        // A commit is acknowledged only once nothing of it is staged any more.
        self.settle();
    }

    fn abort(&mut self, kind: AbortKind, specs: &[FileSpec]) {
        let files: Vec<(String, Vec<u8>, usize)> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (NAMES[i].to_string(), self.resolve(&s.content), s.chunk))
            .collect();
        let archive = self.archive().clone();
        let meta = archipel_node::record::validate(&archipel_proto::v1::RecordMetadata {
            title: "abandoned".into(),
            ..Default::default()
        })
        .unwrap();
        self.rt.block_on(async {
            let mut s = IngestSession::new(archive, meta);
            let last = files.len() - 1;
            for (i, (name, data, chunk)) in files.iter().enumerate() {
                s.start_file(name.clone(), data.len() as u64, String::new())
                    .await
                    .unwrap();
                let upto = match kind {
                    AbortKind::MidFile if i == last => data.len() / 2,
                    _ => data.len(),
                };
                for c in data[..upto].chunks(*chunk) {
                    s.write(c.to_vec()).await.unwrap();
                }
            }
            match kind {
                AbortKind::MidFile | AbortKind::AfterFiles => drop(s),
                AbortKind::CommitFails => {
                    s.start_file("empty.bin".into(), 0, String::new())
                        .await
                        .unwrap();
                    assert!(s.commit().await.is_err(), "an empty file must be refused");
                }
                AbortKind::Oversize => {
                    assert!(
                        s.write(vec![0u8]).await.is_err(),
                        "more bytes than announced must be refused"
                    );
                    drop(s);
                }
            }
        });
        self.settle();
    }

    fn eliminate(&mut self, record: usize) {
        let Some(id) = self.pick(record) else {
            return;
        };
        let archive = self.archive().clone();
        let done = self
            .rt
            .block_on(archive.eliminate(std::slice::from_ref(&id), "AD visa 2026-1"))
            .unwrap();
        assert_eq!(done.len(), 1);
        self.model.remove(&id);
        self.order.retain(|r| *r != id);
        assert!(archive.manifest(&id).is_err(), "{id} still readable");
        assert!(
            archive.elimination(&id).unwrap().is_some(),
            "{id}: no tombstone"
        );
        let again = self
            .rt
            .block_on(archive.eliminate(std::slice::from_ref(&id), "AD visa 2026-1"));
        assert!(again.is_err(), "{id} eliminated twice");
    }

    fn pick(&self, i: usize) -> Option<String> {
        (!self.order.is_empty()).then(|| self.order[i % self.order.len()].clone())
    }

    fn read(&self, id: &str, name: &str, offset: u64, length: u64, chunk: usize) -> Vec<u8> {
        let archive = self.archive();
        let m = archive.manifest(id).unwrap();
        let f = archive.find_file(&m, name).unwrap();
        let mut buf = Vec::new();
        archipel_node::read::read_range(archive, f, id, offset, length, chunk, |c| {
            assert!(c.len() <= chunk, "chunk larger than asked");
            buf.extend(c);
            true
        })
        .unwrap_or_else(|e| panic!("read {id}/{name} {offset}+{length}: {e}"));
        buf
    }

    fn get(&self, record: usize, file: usize, range: Option<(u64, u64)>, chunk: usize) {
        let Some(id) = self.pick(record) else {
            return;
        };
        let r = &self.model[&id];
        let (name, bytes) = &r.files[file % r.files.len()];
        let size = bytes.len() as u64;
        let (offset, length) = match range {
            None => (0, size),
            Some((a, b)) => {
                let offset = size * a / 1000;
                (offset, (size - offset) * b / 1000)
            }
        };
        let got = self.read(&id, name, offset, length, chunk);
        let want = &bytes[offset as usize..(offset + length) as usize];
        assert!(
            got == want,
            "{id}/{name} {offset}+{length}: {} bytes read, differ from the model",
            got.len()
        );
        // Beyond the end is an error, never data.
        let archive = self.archive();
        let m = archive.manifest(&id).unwrap();
        let f = archive.find_file(&m, name).unwrap();
        let past = archipel_node::read::read_range(
            archive,
            f,
            &id,
            offset,
            size - offset + 1,
            chunk,
            |_| true,
        );
        assert!(past.is_err(), "a range past the end must be refused");
    }

    fn list_paged(&self, page: usize) -> Vec<String> {
        let archive = self.archive();
        let mut ids = Vec::new();
        let mut token = String::new();
        for _ in 0..=self.model.len() + 1 {
            let (ms, next) = archive.list(&ListFilter::default(), page, &token).unwrap();
            assert!(
                ms.len() <= page,
                "page of {} for a page size of {page}",
                ms.len()
            );
            if !next.is_empty() {
                assert_eq!(ms.len(), page, "a page that is not the last must be full");
            }
            ids.extend(ms.into_iter().map(|m| m.record_id));
            if next.is_empty() {
                return ids;
            }
            token = next;
        }
        panic!("paging with page size {page} does not end: {ids:?}");
    }

    fn check_list(&self, page: usize) {
        let ids = self.list_paged(page);
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "a record listed twice (page size {page}): {ids:?}"
        );
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "list not in ID order: {ids:?}"
        );
        let want: Vec<&String> = self.model.keys().collect();
        assert_eq!(
            unique.into_iter().collect::<Vec<_>>(),
            want,
            "page size {page}"
        );
    }

    fn verify(&self, record: usize) {
        let Some(id) = self.pick(record) else {
            return;
        };
        let archive = self.archive();
        let report = archipel_node::fixity::check_record(archive, &id);
        assert!(report.ok(), "fixity of {id}: {:?}", report.problems);
        let r = &self.model[&id];
        let m = archive.manifest(&id).unwrap();
        assert_eq!(report.files, r.files.len() as u64);
        assert_eq!(
            report.bytes,
            r.files.iter().map(|f| f.1.len() as u64).sum::<u64>()
        );
        assert_eq!(report.blobs, m.blob_ids().len() as u64);
    }

    fn leftover(&mut self, seed: u64, blobs: u8) {
        let archive = self.archive().clone();
        let session: [u8; 16] = bytes_from_seed(seed, 16).try_into().unwrap();
        for i in 0..blobs {
            let data = bytes_from_seed(seed ^ (u64::from(i) + 1) << 32, 1000 + usize::from(i));
            let id = *blake3::hash(&data).as_bytes();
            archive.store.put_blob(&session, &id, &data).unwrap();
            self.leftovers.insert(id);
        }
    }

    fn restart(&mut self) {
        let node = self.node.take().unwrap();
        assert_eq!(
            Arc::strong_count(&node.archive),
            1,
            "a task still holds the archive"
        );
        drop(node);
        self.node = Some(Node::open(config(&self.data, self.backend)).unwrap());
        // Opening removes what crashed ingests left staged.
        self.leftovers.clear();
        assert_eq!(
            self.archive().store.staged_count(),
            0,
            "staged blobs after open"
        );
        // Everything reads back after a restart.
        for (id, r) in &self.model {
            for (name, bytes) in &r.files {
                let got = self.read(id, name, 0, bytes.len() as u64, 1 << 20);
                assert!(got == *bytes, "{id}/{name} differs after restart");
            }
        }
    }

    /// The full comparison with the model, after every step.
    fn check(&self) {
        let archive = self.archive();
        let store = &archive.store;
        self.check_list(1000);
        assert_eq!(
            store.record_count().unwrap(),
            self.model.len() as u64,
            "record_count"
        );
        assert_eq!(store.staged_count(), self.leftovers.len(), "staged_count");

        let mut referenced: BTreeSet<BlobId> = BTreeSet::new();
        // Content → the blobs that hold it; each content is stored once.
        let mut by_content: HashMap<&[u8], Vec<BlobId>> = HashMap::new();
        for (id, r) in &self.model {
            let m: Manifest = archive.manifest(id).unwrap();
            assert_eq!(m.record_id, *id);
            assert_eq!(m.metadata.title, r.title, "title of {id}");
            assert_eq!(m.files.len(), r.files.len(), "files of {id}");
            for (f, (name, bytes)) in m.files.iter().zip(&r.files) {
                assert_eq!(f.name, *name);
                assert_eq!(f.size, bytes.len() as u64, "{id}/{name} size");
                assert_eq!(
                    f.blake3,
                    *blake3::hash(bytes).as_bytes(),
                    "{id}/{name} blake3"
                );
                assert_eq!(f.media_type, media_type_for(name));
                assert_eq!(u64::from(f.blob_size), u64::from(BLOB_KIB) * 1024);
                let blobs = f.cipher_len.div_ceil(u64::from(f.blob_size));
                assert_eq!(
                    f.blobs.len() as u64,
                    blobs,
                    "{id}/{name}: blobs for {} ciphertext bytes",
                    f.cipher_len
                );
                referenced.extend(f.blobs.iter().copied());
                match by_content.get(bytes.as_slice()) {
                    Some(b) => {
                        assert_eq!(*b, f.blobs, "{id}/{name}: identical content stored twice")
                    }
                    None => {
                        by_content.insert(bytes, f.blobs.clone());
                    }
                }
            }
        }
        let distinct: usize = by_content.values().map(Vec::len).sum();
        assert_eq!(distinct, referenced.len(), "different contents share blobs");
        assert_eq!(
            store.blob_count().unwrap(),
            referenced.len() as u64,
            "blob_count"
        );

        let stored: BTreeSet<BlobId> = store.blobs.list(&[]).map(|r| r.unwrap()).collect();
        let mut want = referenced.clone();
        want.extend(self.leftovers.iter().copied());
        let orphans: Vec<String> = stored.difference(&want).map(hex::encode).collect();
        let missing: Vec<String> = want.difference(&stored).map(hex::encode).collect();
        assert!(
            orphans.is_empty(),
            "blobs no record references: {orphans:?}"
        );
        assert!(missing.is_empty(), "referenced blobs missing: {missing:?}");
        let bytes: u64 = referenced
            .iter()
            .map(|b| store.blobs.get(b).unwrap().unwrap().len() as u64)
            .sum();
        assert_eq!(store.blob_bytes().unwrap(), bytes, "blob_bytes");

        // ULIDs carry the ingestion time: never decreasing in ingestion order (records of the
        // same millisecond may sort either way, so only the time part is compared).
        let times: Vec<u64> = self
            .order
            .iter()
            .map(|id| ulid::Ulid::from_string(id).unwrap().timestamp_ms())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "record IDs go back in time"
        );
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Ingest { title, files } => self.ingest(*title, files),
            Op::Abort { kind, files } => self.abort(*kind, files),
            Op::Get {
                record,
                file,
                range,
                chunk,
            } => self.get(*record, *file, *range, *chunk),
            Op::List { page } => self.check_list(*page),
            Op::Verify { record } => self.verify(*record),
            Op::Leftover { seed, blobs } => self.leftover(*seed, *blobs),
            Op::Restart => self.restart(),
            Op::Eliminate { record } => self.eliminate(*record),
            Op::Reclaim => {
                self.archive().store.blobs.reclaim().unwrap();
            }
        }
        self.check();
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Keep failures out of the source tree; the failing input is printed.
        failure_persistence: None,
        max_shrink_iters: 200,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model(
        backend in prop_oneof![Just(BlobStoreKind::Files), Just(BlobStoreKind::Sled)],
        ops in proptest::collection::vec(op(), 1..=12),
    ) {
        eprintln!("blob store: {backend:?}");
        let mut h = Harness::new(backend);
        h.check();
        for (i, op) in ops.iter().enumerate() {
            eprintln!("step {i}: {}", describe(op));
            h.apply(op);
        }
        // End with a restart: everything acknowledged survives it.
        h.apply(&Op::Restart);
    }
}

/// A short description of a step (the generated contents are too long to print).
fn describe(op: &Op) -> String {
    let files = |fs: &[FileSpec]| {
        fs.iter()
            .map(|f| match &f.content {
                Content::Fresh { size, .. } => format!("{size}B"),
                Content::Reuse(i) => format!("reuse#{i}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    match op {
        Op::Ingest { title, files: fs } => format!("ingest title {title} [{}]", files(fs)),
        Op::Abort { kind, files: fs } => format!("abort {kind:?} [{}]", files(fs)),
        other => format!("{other:?}"),
    }
}
