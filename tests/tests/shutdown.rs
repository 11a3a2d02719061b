//! Graceful shutdown (issue 6, point 4): SIGTERM while ingests are in flight. Each ingest
//! either finishes (the CLI got its record ID: then the record is whole after a restart)
//! or is rolled back (the CLI got an error: then nothing of it remains, no record and no
//! blob). A client that stalls mid-stream cannot hold the node up past
//! `shutdown_grace_secs`.
//!
//! Real node process, real CLI processes, and one raw gRPC client that stops sending.

use archipel_proto::v1::archive_client::ArchiveClient;
use archipel_proto::v1::{Commit, FileHeader, IngestRequest, RecordMetadata, ingest_request::Item};
use archipel_tests::{TestNode, admin_channel, bin, blob_ids, p, random_file};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const GRACE_SECS: u64 = 3;

fn spawn_ingest(node: &TestNode, file: &Path, title: &str) -> Child {
    Command::new(bin("archipel"))
        .arg("--node")
        .arg(&node.data)
        .args(["ingest", p(file), "--title", title, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn archipel ingest")
}

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("ls is not an array: {list}"))
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn sigterm_during_ingests_finishes_or_rolls_back_each_and_corrupts_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(root.path(), "node", "Commune de Locmaria").unwrap();
    std::fs::write(
        node.data.join("archipel.toml"),
        format!("shutdown_grace_secs = {GRACE_SECS}\n"),
    )
    .unwrap();
    node.start().unwrap();
    // One record before: it must come through untouched.
    let first_path = root.path().join("avant.pdf");
    random_file(&first_path, 300_000, 1).unwrap();
    let first = node.ingest(&[&first_path], "Avant l'arrêt", &[]);

    // Two clients of our own, each having sent a header and the first MiB of a 3 MiB
    // file: one finishes after the signal, the other stalls.
    let finisher = RawIngest::start(&node, "Fini pendant l'arrêt", 3 * MIB);
    let stalled = RawIngest::start(&node, "Jamais fini", 3 * MIB);

    // Four real ingests, large enough to be in flight when the signal comes.
    let mut files = Vec::new();
    for k in 0..4u64 {
        let f = root.path().join(format!("registre-{k}.bin"));
        random_file(&f, 48 * MIB, 10 + k).unwrap();
        files.push(f);
    }
    let children: Vec<(PathBuf, Child)> = files
        .iter()
        .enumerate()
        .map(|(k, f)| (f.clone(), spawn_ingest(&node, f, &format!("Registre {k}"))))
        .collect();
    std::thread::sleep(Duration::from_millis(400));

    let sent = Instant::now();
    let pid = node.pid().expect("node running").to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(term.is_ok_and(|s| s.success()), "SIGTERM delivered");
    // The in-flight ingest completes during the grace period: it is committed.
    let finished = finisher
        .finish()
        .expect("an ingest finished during the grace period");
    // `stop` signals again (caught, harmless) and waits for the process.
    let status = node.stop().expect("wait for the node");
    let took = sent.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took < Duration::from_secs(GRACE_SECS + 20),
        "the stalled client held the node for {took:?}"
    );
    let log = node.log_text();
    assert!(
        log.contains("still open") && log.contains("admin requests"),
        "the stalled ingest was not cut at the grace period:\n{log}"
    );
    assert!(log.contains("stopped cleanly"), "{log}");

    // Each CLI ingest: acknowledged (then whole) or failed (then gone).
    let mut acked = BTreeSet::new();
    let mut outcomes = Vec::new();
    for (f, child) in children {
        let out = child.wait_with_output().expect("CLI exits");
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).expect("ingest --json");
            let id = v["id"].as_str().expect("id").to_string();
            outcomes.push(format!("{}: acknowledged", f.display()));
            acked.insert((id, f));
        } else {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!err.trim().is_empty(), "a failed ingest says why");
            outcomes.push(format!("{}: failed: {}", f.display(), err.trim()));
        }
    }
    let stalled = stalled.abandon();
    assert!(
        stalled.is_err(),
        "the stalled ingest cannot have committed: {stalled:?}"
    );
    eprintln!("outcomes: {outcomes:#?}");

    node.start().unwrap();
    let listed = ids(&node.cli_json(&["ls"]));
    let mut want: BTreeSet<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    want.insert(first.clone());
    want.insert(finished.clone());
    assert_eq!(
        listed, want,
        "records after restart vs acknowledged ({outcomes:#?})"
    );
    for (i, (id, f)) in acked.iter().enumerate() {
        let dest = root.path().join(format!("relu-{i}"));
        node.cli_ok(&["get", id, "-o", p(&dest)]);
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(f).unwrap(),
            "{id} differs from {}",
            f.display()
        );
    }
    let dest = root.path().join("avant-relu.pdf");
    node.cli_ok(&["get", &first, "-o", p(&dest)]);
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(&first_path).unwrap());
    let dest = root.path().join("fini-relu.bin");
    node.cli_ok(&["get", &finished, "-o", p(&dest)]);
    assert!(std::fs::read(&dest).unwrap() == vec![7u8; 3 * MIB]);
    node.cli_ok(&["verify"]);
    // No blob of a rolled-back ingest is left behind.
    let counted = node.cli_json(&["status"])["blobs"].as_u64().expect("blobs");
    node.stop().unwrap();
    assert_eq!(
        blob_ids(&node.data).len() as u64,
        counted,
        "blobs on disk vs blobs of records ({outcomes:#?})"
    );
}

/// An ingest driven by the test over the admin socket, one message at a time.
struct RawIngest {
    tx: tokio::sync::mpsc::Sender<IngestRequest>,
    done: std::thread::JoinHandle<Result<String, tonic::Status>>,
    rest: usize,
}

impl RawIngest {
    /// Connects and sends the metadata, a header for `size` bytes and the first MiB.
    fn start(node: &TestNode, title: &str, size: usize) -> RawIngest {
        let (tx, rx) = tokio::sync::mpsc::channel::<IngestRequest>(8);
        let data = node.data.clone();
        let done = std::thread::spawn(move || {
            archipel_tests::runtime().block_on(async {
                let mut client = ArchiveClient::new(admin_channel(&data).await);
                client
                    .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .map(|r| r.into_inner().id)
            })
        });
        let r = RawIngest {
            tx,
            done,
            rest: size - MIB,
        };
        r.send(Item::Metadata(RecordMetadata {
            title: title.into(),
            ..Default::default()
        }));
        r.send(Item::File(FileHeader {
            name: "piece.bin".into(),
            size: size as u64,
            media_type: String::new(),
        }));
        r.send(Item::Chunk(vec![7u8; MIB]));
        r
    }

    fn send(&self, item: Item) {
        self.tx
            .blocking_send(IngestRequest { item: Some(item) })
            .expect("the client's stream is open");
    }

    /// Sends the rest and commits; the node's answer.
    fn finish(self) -> Result<String, tonic::Status> {
        self.send(Item::Chunk(vec![7u8; self.rest]));
        self.send(Item::Commit(Commit {}));
        drop(self.tx);
        self.done.join().expect("client thread")
    }

    /// Stops sending without committing; the node's answer once it gives up.
    fn abandon(self) -> Result<String, tonic::Status> {
        let r = self.done.join().expect("client thread");
        drop(self.tx);
        r
    }
}
