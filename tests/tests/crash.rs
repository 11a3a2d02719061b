#![allow(clippy::unwrap_used)]
//! Crash safety with real processes: the node is SIGKILLed while ingests are in flight, then
//! restarted, and what it holds is checked against what clients were told (in the spirit of
//! sled's own crash tests).
//!
//! Two scenarios: several writer threads ingesting files of 1 B to 12 MiB through the CLI
//! while the node is killed at random moments (`acknowledged_ingests_survive_sigkill`); and
//! one 64 MiB ingest killed at random points of its progress, sometimes right after another
//! record's commit flushed the database, then two ingests whose *client* is killed
//! (`kill_during_large_ingest_leaves_no_partial_record`).
//!
//! After every restart:
//! - every acknowledged ingest (CLI exit 0 with an ID) is listed and reads back byte for byte;
//! - nothing is listed that was not acknowledged, except records whose ingest was in flight at
//!   the kill, and those are whole (same files, same digests, readable);
//! - `verify` passes for every record;
//! - `status` counts exactly the listed records and the blobs they reference;
//! - what the crash left staged (seen by opening the database directly before the restart)
//!   is removed by the restart, which logs it; no blob of a listed record is missing.
//!
//! At the end the node is stopped cleanly and opened as a library: nothing is staged (the
//! abandoned ingests of killed clients were cleaned by the node itself) and every referenced
//! blob is stored.
//!
//! Both also require that a crash leaves no blob that is neither staged nor referenced
//! (such a blob would never be removed): the staging mark of a blob written outside sled's
//! log is made durable before the blob file exists.
//!
//! The RNG seed (file sizes, kill delays, kill offsets) is printed; set ARCHIPEL_CRASH_SEED to
//! reproduce a run (thread timing still varies). The tests run the built `archipel-node` and
//! `archipel` binaries: `cargo build --bins` first after changing the node.

use archipel_tests::{TestNode, bin, random_file};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const DEFAULT_SEED: u64 = 0x00A2_C41B_E15E_ED01;
const LEFTOVERS_LOG: &str = "removed leftovers of unfinished ingests";

fn rng_for(test: &str) -> StdRng {
    let base = match std::env::var("ARCHIPEL_CRASH_SEED") {
        Ok(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            }
            .expect("ARCHIPEL_CRASH_SEED must be an integer")
        }
        Err(_) => DEFAULT_SEED,
    };
    eprintln!("{test}: seed {base} (reproduce with ARCHIPEL_CRASH_SEED={base})");
    let salt = u64::from_le_bytes(
        blake3::hash(test.as_bytes()).as_bytes()[..8]
            .try_into()
            .unwrap(),
    );
    StdRng::seed_from_u64(base ^ salt)
}

// ---------------------------------------------------------------------------------------------
// What clients were told.

#[derive(Debug, Clone)]
struct FileRec {
    path: PathBuf,
    name: String,
    size: u64,
    blake3: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The CLI exited 0 with this ID: the record must exist, whole.
    Acked(String),
    /// The node was killed while the CLI ran: the record may exist, but then whole.
    InFlight,
    /// The node was down from start to end: nothing can exist.
    NodeDown,
    /// The CLI failed while the node was up and not killed: a bug.
    Unexpected(String),
}

#[derive(Debug, Clone)]
struct Attempt {
    title: String,
    files: Vec<FileRec>,
    outcome: Outcome,
}

fn file_digest(path: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).unwrap()).unwrap();
    h.finalize().to_hex().to_string()
}

fn make_file(dir: &Path, name: &str, size: u64, seed: u64) -> FileRec {
    let path = dir.join(name);
    random_file(&path, size as usize, seed).unwrap();
    FileRec {
        blake3: file_digest(&path),
        path,
        name: name.to_string(),
        size,
    }
}

fn cli(data: &Path, args: &[String]) -> std::process::Output {
    Command::new(bin("archipel"))
        .arg("--node")
        .arg(data)
        .args(args)
        .output()
        .expect("run archipel")
}

fn ingest_args(files: &[FileRec], title: &str) -> Vec<String> {
    let mut args = vec!["ingest".to_string()];
    args.extend(files.iter().map(|f| f.path.display().to_string()));
    args.extend(["--title".into(), title.into(), "--json".into()]);
    args
}

fn acked_id(out: &std::process::Output) -> Option<String> {
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["id"].as_str().map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Looking at the database of a dead node directly, before the restart cleans it.

#[derive(Debug, Default)]
struct Raw {
    blobs: BTreeSet<Vec<u8>>,
    /// Blob IDs listed in `staging` (an ID may be staged by one session only).
    staged: BTreeSet<Vec<u8>>,
    staging_keys: usize,
}

impl Raw {
    /// The blobs on disk, as the node's own blob stores list them (sled's `blobs` tree and
    /// the files store under `<data>/blobs`), and the staging entries.
    fn read(data: &Path) -> Raw {
        use archipel_node::store::{BlobStore, FileBlobStore, SledBlobStore};
        let db = sled::Config::new().path(data.join("db")).open().unwrap();
        let mut raw = Raw::default();
        let sled_blobs = SledBlobStore::open(&db).unwrap();
        let mut add = |store: &dyn BlobStore| {
            for id in store.list(&[]) {
                raw.blobs.insert(id.unwrap().to_vec());
            }
        };
        add(&sled_blobs);
        let dir = data.join("blobs");
        if dir.exists() {
            add(&FileBlobStore::open(&dir, &db).unwrap());
        }
        for k in db.open_tree("staging").unwrap().iter().keys() {
            let k = k.unwrap();
            raw.staging_keys += 1;
            raw.staged.insert(k[16..].to_vec());
        }
        raw
    }

    /// Blobs that are not staged: they must all belong to committed records.
    fn unstaged(&self) -> usize {
        self.blobs.difference(&self.staged).count()
    }
}

/// The node's log without terminal colours.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// After a restart: the staged leftovers were removed and logged, and every other blob the
/// crash left is referenced by a listed record (no orphan: such a blob would never be removed).
fn check_cleanup(node: &TestNode, log_before: usize, raw: &Raw, listed_blobs: u64, when: &str) {
    let log = node.log_text();
    let new_log = strip_ansi(&log[log_before.min(log.len())..]);
    if raw.staging_keys > 0 {
        let line = new_log
            .lines()
            .find(|l| l.contains(LEFTOVERS_LOG))
            .unwrap_or_else(|| {
                panic!(
                    "{when}: {} staging entries after the crash but no {LEFTOVERS_LOG:?} in the log:\n{new_log}",
                    raw.staging_keys
                )
            });
        assert!(
            line.contains(&format!("blobs={}", raw.staging_keys)),
            "{when}: {} staging entries, log says: {line}",
            raw.staging_keys
        );
    } else {
        assert!(
            !new_log.contains(LEFTOVERS_LOG),
            "{when}: nothing was staged but: {new_log}"
        );
    }
    let unstaged = raw.unstaged() as u64;
    let detail = format!(
        "{} blobs on disk, {} staged of which {} on disk, {listed_blobs} referenced by the \
         listed records",
        raw.blobs.len(),
        raw.staged.len(),
        raw.blobs.intersection(&raw.staged).count()
    );
    assert!(
        unstaged >= listed_blobs,
        "{when}: blobs of listed records are missing ({detail})"
    );
    assert_eq!(
        unstaged - listed_blobs,
        0,
        "{when}: blobs neither staged nor referenced by a record survive the crash: \
         leaked for good, no restart removes them ({detail})"
    );
}

// ---------------------------------------------------------------------------------------------
// Checking the live node against what clients were told.

#[derive(Debug, Default)]
struct Seen {
    records: usize,
    blobs: u64,
    in_flight_committed: usize,
}

fn read_back(node: &TestNode, scratch: &Path, id: &str, f: &FileRec) {
    let out = scratch.join(format!("{id}-{}", f.name));
    let o = out.display().to_string();
    node.cli_ok(&["get", id, "--file", &f.name, "-o", &o]);
    let len = std::fs::metadata(&out).unwrap().len();
    assert_eq!(
        len, f.size,
        "record {id} file {}: {len} bytes read back",
        f.name
    );
    assert_eq!(
        file_digest(&out),
        f.blake3,
        "record {id} file {}: other bytes read back",
        f.name
    );
    std::fs::remove_file(&out).unwrap();
}

/// Compares the node with the attempts; reads back the records not in `read` (all if `all`).
fn check_node(
    node: &TestNode,
    attempts: &[Attempt],
    read: &mut HashSet<String>,
    all: bool,
    scratch: &Path,
    when: &str,
) -> Seen {
    for a in attempts {
        if let Outcome::Unexpected(why) = &a.outcome {
            panic!(
                "{when}: ingest {:?} failed while the node was up: {why}",
                a.title
            );
        }
    }
    let by_title: HashMap<&str, &Attempt> =
        attempts.iter().map(|a| (a.title.as_str(), a)).collect();
    let listed = node.cli_json(&["ls"]);
    let listed = listed.as_array().expect("ls --json: an array");
    let mut seen = Seen::default();
    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    for r in listed {
        let id = r["id"].as_str().unwrap();
        let title = r["title"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "{when}: {id} listed twice");
        assert!(
            titles.insert(title.to_string()),
            "{when}: two records titled {title:?}"
        );
        let a = by_title
            .get(title)
            .unwrap_or_else(|| panic!("{when}: listed record {id} {title:?} was never ingested"));
        match &a.outcome {
            Outcome::Acked(acked) => {
                assert_eq!(acked, id, "{when}: {title:?} listed under another ID")
            }
            Outcome::InFlight => seen.in_flight_committed += 1,
            other => {
                panic!("{when}: record {id} {title:?} exists although its ingest was {other:?}")
            }
        }
        let files = r["files"].as_array().unwrap();
        let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
        let want: Vec<&str> = a.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, want, "{when}: record {id} {title:?} is not whole");
        for (f, w) in files.iter().zip(&a.files) {
            assert_eq!(f["size"].as_u64(), Some(w.size), "{when}: {id}/{}", w.name);
            assert_eq!(
                f["blake3"].as_str(),
                Some(w.blake3.as_str()),
                "{when}: {id}/{}",
                w.name
            );
            seen.blobs += f["blobs"].as_u64().unwrap();
        }
        if all || !read.contains(id) {
            for f in &a.files {
                read_back(node, scratch, id, f);
            }
            read.insert(id.to_string());
        }
    }
    seen.records = listed.len();
    for a in attempts {
        if let Outcome::Acked(id) = &a.outcome {
            assert!(
                ids.contains(id),
                "{when}: acknowledged record {id} {:?} is lost",
                a.title
            );
        }
    }
    let status = node.cli_json(&["status"]);
    assert_eq!(
        status["records"].as_u64(),
        Some(seen.records as u64),
        "{when}: status records"
    );
    assert_eq!(
        status["blobs"].as_u64(),
        Some(seen.blobs),
        "{when}: status blobs differ from the blobs of the listed records"
    );
    let out = node.cli(&["verify", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{when}: verify failed ({}): {text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ok"], Value::Bool(true), "{when}: {text}");
    assert_eq!(
        v["records_checked"].as_u64(),
        Some(seen.records as u64),
        "{when}: {text}"
    );
    seen
}

/// The node stopped cleanly and opened as a library: nothing staged, and the blob store holds
/// exactly the blobs its records reference.
fn check_library(data: &Path, records: usize) {
    let raw = Raw::read(data);
    assert_eq!(raw.staging_keys, 0, "staging entries after a clean stop");
    let node = archipel_node::Node::open(archipel_node::Config::with_data_dir(data)).unwrap();
    let a = &node.archive;
    assert_eq!(a.store.staged_count(), 0);
    let mut referenced = BTreeSet::new();
    let mut n = 0;
    for id in a.record_ids() {
        let m = a.manifest(&id.unwrap()).unwrap();
        referenced.extend(m.blob_ids());
        n += 1;
    }
    assert_eq!(n, records);
    assert_eq!(a.store.record_count().unwrap(), records as u64);
    let stored: BTreeSet<[u8; 32]> = a.store.blobs.list(&[]).map(|b| b.unwrap()).collect();
    let orphans = stored.difference(&referenced).count();
    let missing = referenced.difference(&stored).count();
    assert_eq!(missing, 0, "blobs referenced by records are missing");
    assert_eq!(orphans, 0, "blobs that no record references are stored");
    assert_eq!(a.store.blob_count().unwrap(), referenced.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// Test 1: concurrent writers, random kills.

#[derive(Debug, Default)]
struct Ctl {
    paused: bool,
    stop: bool,
    active: usize,
}

/// Writers ingest while not paused; the killer pauses them to look at a quiet node.
#[derive(Debug, Default)]
struct Shared {
    ctl: Mutex<Ctl>,
    cv: Condvar,
    /// Odd while the node is (being) killed and restarted.
    epoch: AtomicU64,
    attempts: Mutex<Vec<Attempt>>,
}

impl Shared {
    fn enter(&self) -> bool {
        let mut c = self.ctl.lock().unwrap();
        loop {
            if c.stop {
                return false;
            }
            if !c.paused {
                c.active += 1;
                return true;
            }
            c = self.cv.wait(c).unwrap();
        }
    }
    fn leave(&self) {
        self.ctl.lock().unwrap().active -= 1;
        self.cv.notify_all();
    }
    /// Stops new attempts and waits for the running ones.
    fn pause(&self) {
        let mut c = self.ctl.lock().unwrap();
        c.paused = true;
        while c.active > 0 {
            c = self.cv.wait(c).unwrap();
        }
    }
    fn resume(&self) {
        self.ctl.lock().unwrap().paused = false;
        self.cv.notify_all();
    }
    fn stop(&self) {
        self.ctl.lock().unwrap().stop = true;
        self.cv.notify_all();
    }
}

/// Stops the writers when the killer leaves, even by a failed assertion (the scope would
/// otherwise wait for paused writers forever).
struct StopOnDrop<'a>(&'a Shared);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn file_size(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..100) {
        0..35 => rng.gen_range(1..=4096),
        35..60 => rng.gen_range(4097..=1 << 20),
        _ => rng.gen_range((1 << 20) + 1..=12 << 20),
    }
}

fn writer(w: usize, seed: u64, data: &Path, files: &Path, shared: &Shared) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0;
    while shared.enter() {
        n += 1;
        let count = match rng.gen_range(0..10) {
            0..7 => 1,
            7..9 => 2,
            _ => 3,
        };
        let recs: Vec<FileRec> = (0..count)
            .map(|k| {
                let size = file_size(&mut rng);
                make_file(files, &format!("w{w}-{n}-{k}.bin"), size, rng.next_u64())
            })
            .collect();
        let title = format!("crash w{w} n{n}");
        let e0 = shared.epoch.load(SeqCst);
        let out = cli(data, &ingest_args(&recs, &title));
        let e1 = shared.epoch.load(SeqCst);
        let outcome = match acked_id(&out) {
            Some(id) => Outcome::Acked(id),
            None if e0 != e1 => Outcome::InFlight,
            None if e0 % 2 == 1 => Outcome::NodeDown,
            None => Outcome::Unexpected(format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )),
        };
        shared.attempts.lock().unwrap().push(Attempt {
            title,
            files: recs,
            outcome,
        });
        shared.leave();
    }
}

#[test]
fn acknowledged_ingests_survive_sigkill() {
    concurrent_kills();
}

fn concurrent_kills() {
    let started = Instant::now();
    let mut rng = rng_for("acknowledged_ingests_survive_sigkill");
    let root = tempfile::tempdir().unwrap();
    let files = root.path().join("files");
    let scratch = root.path().join("readback");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let mut node = TestNode::init(root.path(), "node", "Commune de Crash").unwrap();
    node.start().unwrap();
    let data = node.data.clone();
    let shared = Shared::default();
    shared.pause(); // writers start with the first round
    let writers = 2;
    let rounds = rng.gen_range(6..=8);
    let seeds: Vec<u64> = (0..writers).map(|_| rng.next_u64()).collect();
    let mut read = HashSet::new();
    let mut with_leftovers = 0;

    std::thread::scope(|s| {
        let _stop = StopOnDrop(&shared);
        for (w, seed) in seeds.iter().enumerate() {
            let (data, files, shared) = (&data, &files, &shared);
            s.spawn(move || writer(w, *seed, data, files, shared));
        }
        for round in 1..=rounds {
            let when = format!("after kill {round}/{rounds}");
            shared.resume();
            std::thread::sleep(Duration::from_millis(rng.gen_range(300..1800)));
            shared.epoch.fetch_add(1, SeqCst);
            node.kill();
            // The clients of the dead node fail; no new ingest starts until the checks.
            shared.pause();
            let raw = Raw::read(&data);
            if raw.staging_keys > 0 {
                with_leftovers += 1;
            }
            let log_before = node.log_text().len();
            node.start().unwrap();
            shared.epoch.fetch_add(1, SeqCst);
            let attempts = shared.attempts.lock().unwrap().clone();
            let seen = check_node(&node, &attempts, &mut read, false, &scratch, &when);
            check_cleanup(&node, log_before, &raw, seen.blobs, &when);
            eprintln!(
                "{when}: {} attempts, {} records, {} blobs, {} staging entries cleaned ({:?})",
                attempts.len(),
                seen.records,
                seen.blobs,
                raw.staging_keys,
                started.elapsed()
            );
        }
    });

    let attempts = shared.attempts.lock().unwrap().clone();
    let seen = check_node(&node, &attempts, &mut read, true, &scratch, "at the end");
    let count = |f: fn(&Outcome) -> bool| attempts.iter().filter(|a| f(&a.outcome)).count();
    let acked = count(|o| matches!(o, Outcome::Acked(_)));
    let in_flight = count(|o| matches!(o, Outcome::InFlight));
    eprintln!(
        "{rounds} kills: {} attempts, {acked} acknowledged, {in_flight} in flight at a kill \
         ({} of which committed anyway), {with_leftovers} restarts cleaned leftovers, {:?}",
        attempts.len(),
        seen.in_flight_committed,
        started.elapsed()
    );
    assert!(acked > 0, "no ingest was acknowledged");
    assert!(
        in_flight > 0,
        "no kill hit an ingest in flight: the test tested nothing"
    );
    let status = node.stop().unwrap();
    assert!(status.success(), "clean stop: {status}");
    check_library(&data, seen.records);
}

// ---------------------------------------------------------------------------------------------
// Test 2: kills during one large ingest, at random points of its progress.

/// Bytes under `p`, recursively (files may vanish while we look).
fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[test]
fn kill_during_large_ingest_leaves_no_partial_record() {
    large_ingest_kills();
}

fn large_ingest_kills() {
    let large: u64 = std::env::var("ARCHIPEL_CRASH_LARGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
        << 20;
    let started = Instant::now();
    let mut rng = rng_for("kill_during_large_ingest_leaves_no_partial_record");
    let root = tempfile::tempdir().unwrap();
    let files = root.path().join("files");
    let scratch = root.path().join("readback");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let mut node = TestNode::init(root.path(), "node", "Commune de Crash").unwrap();
    node.start().unwrap();
    let data = node.data.clone();
    let mut attempts = Vec::new();
    let mut read = HashSet::new();

    // Two committed records to start with, one of several blobs.
    for (i, size) in [(0, 3000u64), (1, 9 << 20)] {
        let f = make_file(&files, &format!("before-{i}.bin"), size, rng.next_u64());
        let title = format!("before {i}");
        let out = cli(&data, &ingest_args(std::slice::from_ref(&f), &title));
        let id = acked_id(&out)
            .unwrap_or_else(|| panic!("ingest: {}", String::from_utf8_lossy(&out.stderr)));
        attempts.push(Attempt {
            title,
            files: vec![f],
            outcome: Outcome::Acked(id),
        });
    }
    check_node(
        &node,
        &attempts,
        &mut read,
        false,
        &scratch,
        "before the kills",
    );

    let rounds = std::env::var("ARCHIPEL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut killed_mid_ingest = 0;
    for round in 1..=rounds {
        let when = format!("large ingest, kill {round}/{rounds}");
        let f = make_file(&files, &format!("large-{round}.bin"), large, rng.next_u64());
        let title = format!("large {round}");
        // Kill once the data directory has grown by this much (the ciphertext is ~64 MiB).
        let mib = large >> 20;
        // Every other round, a small ingest commits while the large one runs: its commit
        // flushes the database, so what the large ingest staged so far is on disk at the kill
        // (otherwise sled may lose it all, which is also correct but tests less).
        let mut flush_at = (round % 2 == 0).then(|| rng.gen_range(3..=mib / 3) << 20);
        let grow = (rng.gen_range(1..=mib * 7 / 8) << 20).max(flush_at.unwrap_or(0) + (4 << 20));
        let base = dir_size(&data);
        let mut child = Command::new(bin("archipel"))
            .arg("--node")
            .arg(&data)
            .args(ingest_args(std::slice::from_ref(&f), &title))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let spawned = Instant::now();
        let deadline = spawned + Duration::from_secs(60);
        let mut grown = 0;
        let finished_first = loop {
            grown = dir_size(&data).saturating_sub(base).max(grown);
            if flush_at.is_some_and(|at| grown >= at) {
                flush_at = None;
                let small = make_file(&files, &format!("small-{round}.bin"), 2000, rng.next_u64());
                let title = format!("small {round}");
                let out = cli(&data, &ingest_args(std::slice::from_ref(&small), &title));
                let id = acked_id(&out).unwrap_or_else(|| {
                    panic!(
                        "{when}: small ingest: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
                attempts.push(Attempt {
                    title,
                    files: vec![small],
                    outcome: Outcome::Acked(id),
                });
                continue;
            }
            if grown >= grow {
                break false;
            }
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            assert!(
                Instant::now() < deadline,
                "{when}: the ingest neither grew the store nor ended"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        let ran = spawned.elapsed();
        node.kill();
        let out = child.wait_with_output().unwrap();
        let outcome = match acked_id(&out) {
            Some(id) => Outcome::Acked(id),
            None => Outcome::InFlight,
        };
        eprintln!(
            "{when}: target +{} MiB, killed at +{} MiB after {ran:?}{}, ingest {outcome:?}",
            grow >> 20,
            grown >> 20,
            if finished_first {
                " (after the ingest ended)"
            } else {
                ""
            },
        );
        let raw = Raw::read(&data);
        if outcome == Outcome::InFlight && raw.staging_keys > 0 {
            killed_mid_ingest += 1;
        }
        attempts.push(Attempt {
            title,
            files: vec![f],
            outcome,
        });
        let log_before = node.log_text().len();
        node.start().unwrap();
        let seen = check_node(&node, &attempts, &mut read, false, &scratch, &when);
        check_cleanup(&node, log_before, &raw, seen.blobs, &when);
        eprintln!(
            "{when}: {} staging entries cleaned ({} blobs were on disk), {} records, {} blobs ({:?})",
            raw.staging_keys,
            raw.blobs.len(),
            seen.records,
            seen.blobs,
            started.elapsed()
        );
    }
    assert!(
        killed_mid_ingest > 0,
        "no kill hit the large ingest in the middle"
    );

    // The client dies instead (the node stays up): the node must drop what the abandoned
    // ingest staged by itself, without a restart. Checked after the clean stop below, when
    // nothing may be staged any more.
    for round in 1..=2 {
        let when = format!("client killed {round}/2");
        let f = make_file(
            &files,
            &format!("client-{round}.bin"),
            large,
            rng.next_u64(),
        );
        let title = format!("client {round}");
        let grow = rng.gen_range(4..=(large >> 20) / 2) << 20;
        let base = dir_size(&data);
        let mut child = Command::new(bin("archipel"))
            .arg("--node")
            .arg(&data)
            .args(ingest_args(std::slice::from_ref(&f), &title))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while dir_size(&data).saturating_sub(base) < grow && child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{when}: the ingest did not progress"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let outcome = match acked_id(&out) {
            Some(id) => Outcome::Acked(id),
            None => Outcome::InFlight,
        };
        eprintln!("{when}: at +{} MiB, ingest {outcome:?}", grow >> 20);
        attempts.push(Attempt {
            title,
            files: vec![f],
            outcome,
        });
    }

    // The node still ingests after all this, and everything reads back.
    let f = make_file(&files, "after.bin", 5 << 20, rng.next_u64());
    let out = cli(&data, &ingest_args(std::slice::from_ref(&f), "after"));
    let id = acked_id(&out)
        .unwrap_or_else(|| panic!("ingest: {}", String::from_utf8_lossy(&out.stderr)));
    attempts.push(Attempt {
        title: "after".into(),
        files: vec![f],
        outcome: Outcome::Acked(id),
    });
    let seen = check_node(&node, &attempts, &mut read, true, &scratch, "at the end");
    let status = node.stop().unwrap();
    assert!(status.success(), "clean stop: {status}");
    check_library(&data, seen.records);
    eprintln!("done in {:?}", started.elapsed());
}
