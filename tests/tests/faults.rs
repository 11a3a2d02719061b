//! Bad input and faults, through the real binaries: each test says what must happen and
//! checks that nothing is lost and nothing half-done stays behind.
//!
//! Some tests open the node's sled database directly (only while the node is stopped) to
//! alter it as an attacker or a failing disk would, or to look for leftovers.
//!
//! Tests that need root (the full disk: mounting a tmpfs; the unreadable file: dropping to
//! another user, since root reads any file) say when they are skipped and why.
#![allow(clippy::unwrap_used)]

use archipel_proto::v1::archive_client::ArchiveClient;
use archipel_proto::v1::{
    Commit, FileHeader, IngestRequest, IngestResponse, RecordMetadata, ingest_request,
};
use archipel_tests::{TestNode, bin, expect_code, p, random_file, stderr, stdout, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tonic::transport::Channel;

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn started(root: &Path) -> TestNode {
    let mut node = TestNode::init(root, "node", "Commune de Guingamp").unwrap();
    node.start().unwrap();
    node
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Nothing archived: no record listed, no record or blob counted.
fn assert_empty(node: &TestNode) {
    assert_eq!(ids(&node.cli_json(&["ls"])), Vec::<String>::new());
    let s = node.cli_json(&["status"]);
    assert_eq!(s["records"], 0, "{s}");
    assert_eq!(s["blobs"], 0, "{s}");
    assert_eq!(s["stored_bytes"], 0, "{s}");
}

fn good_file(root: &Path) -> PathBuf {
    let f = root.join("bon.pdf");
    random_file(&f, 20_000, 7).unwrap();
    f
}

/// Whether the tests run as root: a new file belongs to the effective user.
fn running_as_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join(".whoami");
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_file(&probe).unwrap();
    uid == 0
}

fn cmd_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

// --- sled, opened directly while the node is stopped -----------------------------------

fn open_db(node: &TestNode) -> sled::Db {
    sled::Config::new()
        .path(node.data.join("db"))
        .open()
        .unwrap()
}

fn blob_ids(node: &TestNode) -> BTreeSet<Vec<u8>> {
    archipel_tests::blob_ids(&node.data)
}

/// (blob IDs in the blob store, blob IDs listed in the staging tree)
fn blobs_and_staging(node: &TestNode) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
    let b = blob_ids(node);
    let db = open_db(node);
    let staging = db.open_tree("staging").unwrap();
    let s = staging
        .iter()
        .keys()
        .map(|k| k.unwrap()[16..].to_vec())
        .collect();
    (b, s)
}

/// The first blob of an age stream starts with the age header.
fn is_first_blob(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/v1")
}

/// Ingests `victim` alone and returns its blob IDs (read from sled), leaving the node
/// stopped. The node must be running and hold other records already.
fn ingest_and_find_blobs(
    node: &mut TestNode,
    victim: &Path,
    title: &str,
) -> (String, Vec<Vec<u8>>) {
    node.stop().unwrap();
    let before = blob_ids(node);
    node.start().unwrap();
    let id = node.ingest(&[victim], title, &[]);
    node.stop().unwrap();
    let after = blob_ids(node);
    assert!(before.is_subset(&after));
    (id, after.difference(&before).cloned().collect())
}

/// Rewrites one blob in place (same length, one byte flipped), or removes it.
fn alter_blob(node: &TestNode, id: &[u8], remove: bool) {
    archipel_tests::alter_blob(&node.data, id, remove);
}

// --- a raw gRPC client on the admin socket, as cli/src/connect.rs does ------------------

fn runtime() -> tokio::runtime::Runtime {
    archipel_tests::runtime()
}

async fn raw_client(node: &TestNode) -> ArchiveClient<Channel> {
    let channel = archipel_tests::admin_channel(&node.data).await;
    ArchiveClient::new(channel)
        .max_encoding_message_size(64 * MIB)
        .max_decoding_message_size(64 * MIB)
}

fn msg(item: ingest_request::Item) -> IngestRequest {
    IngestRequest { item: Some(item) }
}

fn metadata(title: &str) -> ingest_request::Item {
    ingest_request::Item::Metadata(RecordMetadata {
        title: title.into(),
        ..Default::default()
    })
}

fn header(name: &str, size: u64) -> ingest_request::Item {
    ingest_request::Item::File(FileHeader {
        name: name.into(),
        size,
        media_type: String::new(),
    })
}

fn chunk(n: usize, seed: u8) -> ingest_request::Item {
    ingest_request::Item::Chunk((0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect())
}

type IngestCall = tokio::task::JoinHandle<Result<tonic::Response<IngestResponse>, tonic::Status>>;

/// Opens an ingest stream; returns its sender and the pending call.
async fn open_ingest(node: &TestNode) -> (tokio::sync::mpsc::Sender<IngestRequest>, IngestCall) {
    let mut c = raw_client(node).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let call = tokio::spawn(async move {
        c.ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    (tx, call)
}

// ---------------------------------------------------------------------------------------
// Bad files: refused before anything is sent, exit code 5, the file named
// ---------------------------------------------------------------------------------------

fn ingest_refused(node: &TestNode, files: &[&Path], needles: &[&str]) {
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(|f| p(f)));
    args.extend(["--title", "Refusé"]);
    let out = node.cli(&args);
    let e = expect_code(&out, 5, &format!("{args:?}"));
    for n in needles {
        assert!(e.contains(n), "message lacks {n:?}: {e}");
    }
    assert_empty(node);
}

#[test]
fn empty_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let good = good_file(tmp.path());
    let empty = tmp.path().join("vide.pdf");
    std::fs::write(&empty, b"").unwrap();
    ingest_refused(&node, &[&good, &empty], &[p(&empty), "empty"]);
}

#[test]
fn missing_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let good = good_file(tmp.path());
    let missing = tmp.path().join("absent.pdf");
    ingest_refused(&node, &[&good, &missing], &[p(&missing), "No such file"]);
}

#[test]
fn directory_given_as_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let good = good_file(tmp.path());
    let dir = tmp.path().join("dossier");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("inside.pdf"), b"x").unwrap();
    ingest_refused(&node, &[&good, &dir], &[p(&dir), "is a directory"]);
}

#[test]
fn fifo_is_refused_as_not_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let good = good_file(tmp.path());
    let fifo = tmp.path().join("tube.pdf");
    assert!(cmd_ok("mkfifo", &[p(&fifo)]), "mkfifo");
    ingest_refused(&node, &[&good, &fifo], &[p(&fifo), "not a regular file"]);
}

/// As root, chmod 000 does not stop reading, so the CLI runs as `nobody` (uid 65534): it
/// checks local files before connecting, so it needs no access to the node's socket.
/// Otherwise it runs as the current user.
#[test]
fn unreadable_file_is_refused() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root);
    let good = good_file(root);
    let secret = root.join("illisible.pdf");
    random_file(&secret, 1000, 8).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let as_root = running_as_root(root);
    let cli = if as_root {
        // `nobody` may not reach the build directory (under /root in CI): run a copy.
        let copy = root.join("archipel-cli");
        std::fs::copy(bin("archipel"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        bin("archipel")
    };
    let mut cmd = Command::new(&cli);
    cmd.args(["--node", p(&node.data), "ingest", p(&good), p(&secret)])
        .args(["--title", "Refusé"]);
    if as_root {
        // Let `nobody` reach the files (the temporary directory is 0700), not read them.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    let e = expect_code(&out, 5, "unreadable file");
    assert!(e.contains(p(&secret)), "{e}");
    assert!(e.contains("cannot be read"), "{e}");
    assert!(e.contains("Permission denied"), "{e}");
    assert_empty(&node);
}

#[test]
fn two_files_with_the_same_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    random_file(&a.join("pv.pdf"), 1000, 1).unwrap();
    random_file(&b.join("pv.pdf"), 1000, 2).unwrap();
    ingest_refused(
        &node,
        &[&a.join("pv.pdf"), &b.join("pv.pdf")],
        &["\"pv.pdf\"", "two files"],
    );
}

// ---------------------------------------------------------------------------------------
// Bad metadata: exit code 5, the field named, nothing archived
// ---------------------------------------------------------------------------------------

fn metadata_refused(node: &TestNode, file: &Path, args: &[&str], field: &str, rule: &str) {
    let mut a = vec!["ingest", p(file)];
    a.extend_from_slice(args);
    let out = node.cli(&a);
    let e = expect_code(&out, 5, &format!("{args:?}"));
    assert!(
        e.contains(&format!("{field}:")) || e.contains(&format!("{field} ")),
        "{args:?}: the message must name {field}: {e}"
    );
    assert!(e.contains(rule), "{args:?}: {e}");
    assert_empty(node);
}

#[test]
fn missing_title_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    metadata_refused(&node, &f, &["--producer", "Mairie"], "title", "required");
    metadata_refused(&node, &f, &["--title", "   "], "title", "required");
}

#[test]
fn unknown_communicability_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    metadata_refused(
        &node,
        &f,
        &["--title", "T", "--communicability", "public"],
        "communicability",
        "\"public\"",
    );
}

#[test]
fn impossible_and_future_dates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    metadata_refused(
        &node,
        &f,
        &["--title", "T", "--date", "2023-02-30"],
        "date",
        "2023-02-30",
    );
    metadata_refused(
        &node,
        &f,
        &[
            "--title",
            "T",
            "--date-from",
            "2023-02-29",
            "--date-to",
            "2023-03-01",
        ],
        "date_from",
        "2023-02-29",
    );
    // Next year, whatever today is.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let next_year = 1970 + now / 31_556_952 + 1;
    let future = format!("{next_year}-06-15");
    metadata_refused(
        &node,
        &f,
        &["--title", "T", "--date", &future],
        "date",
        "in the future",
    );
    metadata_refused(
        &node,
        &f,
        &[
            "--title",
            "T",
            "--date-from",
            "2000-01-01",
            "--date-to",
            &future,
        ],
        "date_to",
        "in the future",
    );
}

#[test]
fn date_and_range_together_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    metadata_refused(
        &node,
        &f,
        &[
            "--title",
            "T",
            "--date",
            "1998-06-12",
            "--date-from",
            "1998-01-01",
            "--date-to",
            "1998-12-31",
        ],
        "date",
        "not both",
    );
    metadata_refused(
        &node,
        &f,
        &[
            "--title",
            "T",
            "--date-from",
            "1999-01-01",
            "--date-to",
            "1998-01-01",
        ],
        "date_from",
        "after date_to",
    );
}

#[test]
fn dua_without_final_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    metadata_refused(
        &node,
        &f,
        &["--title", "T", "--dua", "10"],
        "dua",
        "--final",
    );
    metadata_refused(&node, &f, &["--title", "T", "--final", "D"], "dua", "--dua");
    metadata_refused(
        &node,
        &f,
        &["--title", "T", "--dua", "10", "--final", "X"],
        "final",
        "\"X\"",
    );
}

#[test]
fn title_of_600_characters_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    let long = "é".repeat(600);
    metadata_refused(&node, &f, &["--title", &long], "title", "at most 500");
    // 500 is the limit, counted in characters (this one is 1000 bytes).
    let ok = "é".repeat(500);
    node.ingest(&[&f], &ok, &[]);
    assert_eq!(ids(&node.cli_json(&["ls"])).len(), 1);
}

#[test]
fn malformed_toml_metadata_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    let meta = tmp.path().join("meta.toml");
    std::fs::write(
        &meta,
        "producer = \"Mairie\"\ntitle = \"Registre sans fin\n",
    )
    .unwrap();
    let out = node.cli(&["ingest", p(&f), "--metadata", p(&meta)]);
    let e = expect_code(&out, 5, "malformed TOML");
    assert!(e.contains(p(&meta)), "names the file: {e}");
    assert!(e.contains("not valid TOML"), "{e}");
    assert!(e.contains("title"), "shows the field's line: {e}");
    assert_empty(&node);

    // A field of the wrong type is named too.
    std::fs::write(
        &meta,
        "title = \"Registre\"\ndua = \"dix\"\nfinal = \"C\"\n",
    )
    .unwrap();
    let out = node.cli(&["ingest", p(&f), "--metadata", p(&meta)]);
    let e = expect_code(&out, 5, "dua as a string");
    assert!(e.contains("dua"), "{e}");
    // And an unknown one.
    std::fs::write(&meta, "title = \"Registre\"\ntitel = \"typo\"\n").unwrap();
    let out = node.cli(&["ingest", p(&f), "--metadata", p(&meta)]);
    let e = expect_code(&out, 5, "unknown field");
    assert!(e.contains("titel"), "{e}");
    // A malformed JSON file likewise.
    let json = tmp.path().join("meta.json");
    std::fs::write(&json, "{\"title\": \"Registre\", \"producer\": }").unwrap();
    let out = node.cli(&["ingest", p(&f), "--metadata", p(&json)]);
    let e = expect_code(&out, 5, "malformed JSON");
    assert!(e.contains(p(&json)) && e.contains("not valid JSON"), "{e}");
    // A missing metadata file.
    let out = node.cli(&[
        "ingest",
        p(&f),
        "--metadata",
        p(&tmp.path().join("nope.toml")),
    ]);
    let e = expect_code(&out, 5, "missing metadata file");
    assert!(e.contains("nope.toml"), "{e}");
    assert_empty(&node);
}

#[test]
fn metadata_file_over_256_kib_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    let meta = tmp.path().join("meta.toml");
    let text = format!(
        "title = \"Registre\"\ndescription = \"{}\"\n",
        "x".repeat(300 * 1024)
    );
    std::fs::write(&meta, &text).unwrap();
    let out = node.cli(&["ingest", p(&f), "--metadata", p(&meta)]);
    let e = expect_code(&out, 5, "metadata file over the limit");
    assert!(e.contains(p(&meta)), "names the file: {e}");
    assert!(e.contains(&text.len().to_string()), "{e}");
    assert!(e.contains("262144"), "gives the limit: {e}");
    assert_empty(&node);
    // Under the file limit but over the node's: the description is named.
    let text = format!(
        "title = \"Registre\"\ndescription = \"{}\"\n",
        "x".repeat(20_000)
    );
    std::fs::write(&meta, &text).unwrap();
    let out = node.cli(&["ingest", p(&f), "--metadata", p(&meta)]);
    let e = expect_code(&out, 5, "description too long");
    assert!(e.contains("description:"), "{e}");
    assert_empty(&node);
}

// ---------------------------------------------------------------------------------------
// Abandoned ingests
// ---------------------------------------------------------------------------------------

/// After an abandoned ingest: nothing listed, nothing counted, and once the node has been
/// stopped no blob is left that is neither a record's nor listed for removal; one restart
/// later, none at all.
fn assert_no_leftovers(node: &mut TestNode) {
    assert_empty(node);
    node.stop().unwrap();
    let (blobs, staging) = blobs_and_staging(node);
    assert!(
        blobs.is_subset(&staging),
        "{} blob(s) stored that no record owns and staging does not list",
        blobs.difference(&staging).count()
    );
    if !blobs.is_empty() {
        eprintln!(
            "note: {} staged blob(s) of the abandoned ingest were still there at shutdown",
            blobs.len()
        );
    }
    node.start().unwrap();
    assert_empty(node);
    node.stop().unwrap();
    let (blobs, staging) = blobs_and_staging(node);
    assert!(
        blobs.is_empty(),
        "{} blob(s) left after a restart",
        blobs.len()
    );
    assert!(staging.is_empty(), "{} staging entries left", staging.len());
    node.start().unwrap();
    // The node still works.
    let f = node.data.parent().unwrap().join("apres.pdf");
    random_file(&f, 3 * MIB, 99).unwrap();
    let id = node.ingest(&[&f], "Après", &[]);
    assert_eq!(ids(&node.cli_json(&["ls"])), vec![id.clone()]);
    node.assert_get_file(
        &id,
        &node.data.parent().unwrap().join("apres-back.pdf"),
        &std::fs::read(&f).unwrap(),
    );
}

#[test]
fn client_disconnecting_mid_ingest_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path());
    let rt = runtime();
    rt.block_on(async {
        let (tx, call) = open_ingest(&node).await;
        tx.send(msg(metadata("Interrompu"))).await.unwrap();
        tx.send(msg(header("gros.bin", 64 * MIB as u64)))
            .await
            .unwrap();
        // Enough to get past the node's buffers: blobs are being written when we go.
        for i in 0..48 {
            tx.send(msg(chunk(MIB, i as u8)))
                .await
                .expect("the node refused data mid-stream");
        }
        assert!(!call.is_finished(), "the node answered before the commit");
        // Gone: the call is dropped (stream reset) and the connection closed with the runtime.
        call.abort();
        let r = call.await;
        assert!(r.unwrap_err().is_cancelled());
    });
    drop(rt);
    // The node notices the reset stream; meanwhile nothing is visible.
    assert!(wait_until(Duration::from_secs(10), || {
        node.cli_json(&["status"])["records"] == 0
    }));
    assert_no_leftovers(&mut node);
}

#[test]
fn stream_ending_without_commit_is_aborted_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path());
    let rt = runtime();
    let status = rt.block_on(async {
        let (tx, call) = open_ingest(&node).await;
        tx.send(msg(metadata("Sans commit"))).await.unwrap();
        tx.send(msg(header("petit.txt", 0))).await.unwrap();
        tx.send(msg(chunk(100_000, 1))).await.unwrap();
        tx.send(msg(header("gros.bin", 12 * MIB as u64)))
            .await
            .unwrap();
        for i in 0..12 {
            tx.send(msg(chunk(MIB, i))).await.unwrap();
        }
        drop(tx); // a clean end of stream, without Commit
        call.await.unwrap().unwrap_err()
    });
    drop(rt);
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("without a commit"),
        "{}",
        status.message()
    );
    assert_no_leftovers(&mut node);
}

#[test]
fn message_over_the_size_limit_is_refused_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path());
    let rt = runtime();
    let status = rt.block_on(async {
        let (tx, call) = open_ingest(&node).await;
        tx.send(msg(metadata("Trop gros"))).await.unwrap();
        tx.send(msg(header("bloc.bin", 16 * MIB as u64)))
            .await
            .unwrap();
        // One 16 MiB message; the node accepts 8 MiB at most.
        let _ = tx.send(msg(chunk(16 * MIB, 3))).await;
        let _ = tx.send(msg(ingest_request::Item::Commit(Commit {}))).await;
        drop(tx);
        call.await.unwrap().unwrap_err()
    });
    drop(rt);
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("8388608"), "{}", status.message());
    // The node keeps serving, and nothing of the refused record stays.
    assert_no_leftovers(&mut node);
}

// ---------------------------------------------------------------------------------------
// One data directory, one node
// ---------------------------------------------------------------------------------------

#[test]
fn second_node_on_the_same_data_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path());
    let f = good_file(tmp.path());
    let id = node.ingest(&[&f], "Avant", &[]);
    let out = node.start_expect_failure().unwrap();
    assert!(!out.status.success(), "a second node started");
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("ready"), "{}", stdout(&out));
    // The first one still serves, on its socket.
    assert_eq!(ids(&node.cli_json(&["ls"])), vec![id.clone()]);
    node.assert_get_file(
        &id,
        &tmp.path().join("back.pdf"),
        &std::fs::read(&f).unwrap(),
    );
}

// ---------------------------------------------------------------------------------------
// Altered and lost blobs
// ---------------------------------------------------------------------------------------

struct Damaged {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    node: TestNode,
    victim: String,
    other: String,
    other_bytes: Vec<u8>,
    blob: String,
}

/// Two records; one blob of the second (`first` picks the one with the age header, or
/// another one) is flipped or removed while the node is stopped; then the node restarts.
fn damage(first: bool, remove: bool) -> Damaged {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let mut node = started(&root);
    let of = root.join("autre.pdf");
    random_file(&of, 300_000, 70).unwrap();
    let other = node.ingest(&[&of], "Autre", &[]);
    let vf = root.join("victime.tif");
    random_file(&vf, 6 * MIB, 71).unwrap(); // two blobs
    let (victim, blobs) = ingest_and_find_blobs(&mut node, &vf, "Victime");
    assert_eq!(blobs.len(), 2, "a 6 MiB file takes two 4 MiB blobs");
    let target = blobs
        .iter()
        .find(|b| is_first_blob(&archipel_tests::read_blob(&node.data, b)) == first)
        .unwrap()
        .clone();
    alter_blob(&node, &target, remove);
    node.start().unwrap();
    Damaged {
        other_bytes: std::fs::read(&of).unwrap(),
        _tmp: tmp,
        root,
        node,
        victim,
        other,
        blob: target.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn assert_damage_detected(d: &Damaged) {
    let node = &d.node;
    // Reading fails with the fixity exit code, naming the record and the blob...
    let dest = d.root.join("lu.tif");
    let out = node.cli(&["get", &d.victim, "-o", p(&dest)]);
    let e = expect_code(&out, 6, "get of a damaged record");
    assert!(e.contains(&d.victim), "names the record: {e}");
    assert!(e.contains(&d.blob), "names the blob {}: {e}", d.blob);
    // ...and leaves no file, not even a partial one.
    assert!(
        !dest.exists(),
        "a damaged record was written to its final name"
    );
    assert!(
        !d.root.join("lu.tif.archipel-part").exists(),
        "a partial file was left behind"
    );
    // To stdout: the same failure.
    let out = node.cli(&["get", &d.victim, "-o", "-"]);
    expect_code(&out, 6, "get -o - of a damaged record");

    // The fixity check fails and its report names the blob.
    let out = node.cli(&["verify"]);
    expect_code(&out, 6, "verify");
    assert!(stdout(&out).contains(&d.blob), "{}", stdout(&out));
    let out = node.cli(&["verify", "--json"]);
    expect_code(&out, 6, "verify --json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["records_checked"], 2, "{v}");
    assert_eq!(v["records_failed"], 1, "{v}");
    let reports = v["records"].as_array().unwrap();
    let bad = reports
        .iter()
        .find(|r| r["id"] == d.victim.as_str())
        .unwrap();
    assert_eq!(bad["ok"], false, "{v}");
    let problems = bad["problems"].to_string();
    assert!(
        problems.contains(&d.blob),
        "the report names the blob: {problems}"
    );
    assert!(problems.contains("victime.tif"), "and the file: {problems}");
    let good = reports
        .iter()
        .find(|r| r["id"] == d.other.as_str())
        .unwrap();
    assert_eq!(good["ok"], true, "{v}");
    // The other record is intact and still reads back.
    let out = node.cli(&["verify", &d.other]);
    expect_code(&out, 0, "verify of the intact record");
    node.assert_get_file(&d.other, &d.root.join("autre-lu.pdf"), &d.other_bytes);
}

#[test]
fn altered_blob_is_detected_on_read_and_verify() {
    let d = damage(false, false);
    assert_damage_detected(&d);
    let out = d.node.cli(&["get", &d.victim, "-o", "-"]);
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
}

#[test]
fn altered_first_blob_is_detected_on_read_and_verify() {
    let d = damage(true, false);
    assert_damage_detected(&d);
}

#[test]
fn missing_blob_is_detected_on_read_and_verify() {
    let d = damage(false, true);
    assert_damage_detected(&d);
    let out = d.node.cli(&["get", &d.victim, "-o", "-"]);
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn missing_first_blob_is_detected_on_read_and_verify() {
    let d = damage(true, true);
    assert_damage_detected(&d);
}

/// `archipel get` reads a record's files several at a time: when one of them is damaged the
/// command fails with the fixity code, the others in flight are cancelled, and what is left
/// in the directory is only whole, correct files, never a partial one nor the damaged one.
#[test]
fn damaged_file_among_many_fails_the_parallel_get_and_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut node = started(root);
    let other = good_file(root);
    node.ingest(&[&other], "Autre", &[]);
    // 24 files of 1.5 MiB: more than are read at once.
    let dir = root.join("pieces");
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = (0..24)
        .map(|i| {
            let f = dir.join(format!("piece-{i:02}.bin"));
            random_file(&f, 3 * MIB / 2, 200 + i).unwrap();
            f
        })
        .collect();
    node.stop().unwrap();
    let before = blob_ids(&node);
    node.start().unwrap();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let id = node.ingest(&refs, "Pièces", &[]);
    node.stop().unwrap();
    // Each file is one blob (ciphertext, so which file a blob belongs to is not visible
    // here): damage one of the record's blobs.
    let after = blob_ids(&node);
    let new: Vec<&Vec<u8>> = after.difference(&before).collect();
    assert_eq!(new.len(), 24, "one blob per file");
    let blob = new[12].clone();
    let blob_hex = hex::encode(&blob);
    alter_blob(&node, &blob, false);
    node.start().unwrap();

    let out_dir = root.join("lus");
    let out = node.cli(&["get", &id, "-o", p(&out_dir)]);
    let e = expect_code(&out, 6, "get of a record with one damaged file");
    assert!(e.contains(&blob_hex), "names the blob {blob_hex}: {e}");
    // Which file is damaged: the one that fails when read alone.
    let alone = root.join("alone");
    let damaged: Vec<String> = (0..24)
        .map(|i| format!("piece-{i:02}.bin"))
        .filter(|name| {
            let out = node.cli(&["get", &id, "--file", name, "-o", p(&alone)]);
            out.status.code() == Some(6)
        })
        .collect();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            !name.ends_with(".archipel-part"),
            "partial file {name} left behind"
        );
        assert_ne!(name, damaged[0], "the damaged file was written");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(dir.join(&name)).unwrap(),
            "{name} differs"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Key files
// ---------------------------------------------------------------------------------------

#[test]
fn missing_territory_key_stops_the_node_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::init(tmp.path(), "node", "Commune").unwrap();
    let key = node.data.join("keys").join("territory.key");
    std::fs::remove_file(&key).unwrap();
    let out = node.start_expect_failure().unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains(p(&key)), "names the file: {e}");
    assert!(e.contains("is missing"), "{e}");
    assert!(!stdout(&out).contains("ready"));
}

#[test]
fn readable_node_key_stops_the_node_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(tmp.path(), "node", "Commune").unwrap();
    for name in ["node.key", "territory.key", "index.key"] {
        let key = node.data.join("keys").join(name);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = node.start_expect_failure().unwrap();
        assert!(!out.status.success(), "started with {name} mode 644");
        let e = stderr(&out);
        assert!(e.contains("chmod 600"), "{name}: {e}");
        assert!(e.contains(p(&key)), "{name}: names the file: {e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Fixed as told, it starts.
    node.start().unwrap();
}

/// A node whose key file is replaced by another node's: it must refuse to start, naming
/// the file, rather than serve (or write new records for) the archive under a wrong key.
fn swapped_key_is_refused(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path());
    let other = TestNode::init(tmp.path(), "other", "Commune voisine").unwrap();
    let f = good_file(tmp.path());
    let bytes = std::fs::read(&f).unwrap();
    let id = node.ingest(&[&f], "Avant l'échange de clé", &[]);
    node.stop().unwrap();
    let key = node.data.join("keys").join(name);
    let saved = tmp.path().join("saved.key");
    std::fs::rename(&key, &saved).unwrap();
    std::fs::copy(other.data.join("keys").join(name), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let out = node.start_expect_failure().unwrap();
    assert!(!out.status.success(), "started with another node's {name}");
    assert!(!stdout(&out).contains("ready"), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(e.contains(&format!("keys/{name}")), "names the file: {e}");
    assert!(e.contains("not this node's key"), "{e}");
    // No secret in the message.
    let secret = std::fs::read_to_string(&key).unwrap();
    assert!(!e.contains(secret.trim()), "the key itself is printed: {e}");

    // With its own key back, the node serves its records as before.
    std::fs::remove_file(&key).unwrap();
    std::fs::rename(&saved, &key).unwrap();
    node.start().unwrap();
    node.assert_get_file(&id, &tmp.path().join("lu.pdf"), &bytes);
    assert_eq!(node.cli_json(&["verify"])["ok"], true);
}

#[test]
fn another_nodes_territory_key_is_refused() {
    swapped_key_is_refused("territory.key");
}

#[test]
fn another_nodes_index_key_is_refused() {
    swapped_key_is_refused("index.key");
}

// ---------------------------------------------------------------------------------------
// Full disk
// ---------------------------------------------------------------------------------------

/// A tmpfs, unmounted when dropped (also on panic). Declare it before the node using it so
/// the node is killed first.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !cmd_ok("umount", &[p(&self.0)]) {
            let _ = cmd_ok("umount", &["-l", p(&self.0)]);
        }
    }
}

/// Runs a command, killing it and returning `None` if it has not finished in `secs`
/// seconds: a hung node must fail a test, not hang it.
fn output_within(cmd: &mut Command, secs: u64) -> Option<Output> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut status = None;
    wait_until(Duration::from_secs(secs), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    Some(Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    })
}

/// The CLI against `node`, failing the test if it hangs.
fn cli_within(node: &TestNode, args: &[&str], secs: u64) -> Output {
    let mut cmd = Command::new(bin("archipel"));
    cmd.arg("--node").arg(&node.data).args(args);
    output_within(&mut cmd, secs).unwrap_or_else(|| {
        panic!(
            "archipel {args:?} did not answer within {secs} s: the node hangs\n{}",
            node.log_text()
        )
    })
}

/// SIGTERM, failing the test if the node has not exited within `secs` seconds.
fn stop_within(node: &mut TestNode, secs: u64) {
    let pid = node.pid().unwrap();
    assert!(cmd_ok("kill", &["-TERM", &pid.to_string()]));
    // Exited: gone, or a zombie waiting for the fixture to reap it.
    let exited = wait_until(
        Duration::from_secs(secs),
        || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        },
    );
    if !exited {
        node.kill();
        panic!(
            "the node did not stop within {secs} s of SIGTERM\n{}",
            node.log_text()
        );
    }
    let st = node.stop().unwrap();
    assert!(st.success(), "node exit status {st}\n{}", node.log_text());
}

/// A node on a fresh 40 MiB tmpfs holding one 200 kB record, and a 100 MiB file to ingest;
/// `None` (after saying why) when not root or mounting fails.
struct FullDisk {
    node: TestNode,
    _mount: Tmpfs,
    tmp: tempfile::TempDir,
    first: String,
    first_bytes: Vec<u8>,
}

fn full_disk(test: &str) -> Option<FullDisk> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    if !running_as_root(&root) {
        eprintln!("SKIPPED {test}: needs root to mount a tmpfs");
        return None;
    }
    let mnt = root.join("disk");
    std::fs::create_dir(&mnt).unwrap();
    if !cmd_ok(
        "mount",
        &["-t", "tmpfs", "-o", "size=40m", "tmpfs", p(&mnt)],
    ) {
        eprintln!("SKIPPED {test}: mount -t tmpfs failed");
        return None;
    }
    let mount = Tmpfs(mnt.clone());
    let mut node = TestNode::init(&mnt, "node", "Commune").unwrap();
    node.log = root.join("node.log"); // not on the full disk
    // A reserve that fits the small disk: the node must refuse what would eat into it.
    std::fs::write(node.data.join("archipel.toml"), "disk_reserve_mib = 4\n").unwrap();
    node.start().unwrap();
    let small = root.join("petit.pdf");
    random_file(&small, 200_000, 80).unwrap();
    let first = node.ingest(&[&small], "Avant le disque plein", &[]);

    let big = root.join("enorme.bin");
    random_file(&big, 100 * MIB, 81).unwrap();
    let out = cli_within(&node, &["ingest", p(&big), "--title", "Trop gros"], 120);
    let e = expect_code(&out, 7, "ingest onto a full disk");
    assert!(e.contains("not enough disk space"), "{e}");
    assert!(e.contains("enorme.bin"), "the message names the file: {e}");
    Some(FullDisk {
        node,
        _mount: mount,
        first,
        first_bytes: std::fs::read(&small).unwrap(),
        tmp,
    })
}

/// Needs root (a tmpfs); skipped, saying so, otherwise. What works today: the ingest that
/// fills the disk fails with exit code 7 and a message about space, and the node answers.
#[test]
fn full_disk_refuses_the_ingest_with_exit_code_7() {
    let Some(d) = full_disk("full_disk_refuses_the_ingest_with_exit_code_7") else {
        return;
    };
    let out = cli_within(&d.node, &["status", "--json"], 30);
    expect_code(&out, 0, "status after a full disk");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["records"], 1, "{s}");
}

/// Needs root (a tmpfs); skipped, saying so, otherwise. After the failed ingest, the first
/// record must still read back and verify, the node must stop on SIGTERM, and a restart
/// (with nothing removed by hand) must find it whole and able to archive again.
#[test]
fn full_disk_loses_nothing_and_the_node_recovers() {
    let Some(mut d) = full_disk("full_disk_loses_nothing_and_the_node_recovers") else {
        return;
    };
    let root = d.tmp.path().to_path_buf();
    let check = |node: &TestNode, when: &str| {
        let out = cli_within(node, &["status", "--json"], 30);
        expect_code(&out, 0, &format!("status {when}"));
        let out = cli_within(node, &["ls", "--json"], 30);
        expect_code(&out, 0, &format!("ls {when}"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ids(&v), vec![d.first.clone()], "{when}");
        let dest = root.join(format!("lu-{when}.pdf"));
        let out = cli_within(node, &["get", &d.first, "-o", p(&dest)], 30);
        expect_code(&out, 0, &format!("get {when}"));
        assert!(std::fs::read(&dest).unwrap() == d.first_bytes, "{when}");
        let out = cli_within(node, &["verify"], 30);
        expect_code(&out, 0, &format!("verify {when}"));
    };
    check(&d.node, "after-failure");
    // No hand cleaning: a restart must find the node whole.
    stop_within(&mut d.node, 30);
    d.node.start().unwrap();
    check(&d.node, "after-restart");
    // The space of the refused record was given back: a 12 MiB record fits again.
    let medium = root.join("moyen.bin");
    random_file(&medium, 12 * MIB, 82).unwrap();
    let out = cli_within(&d.node, &["ingest", p(&medium), "--title", "Après"], 60);
    expect_code(&out, 0, "ingest after the failed one and a restart");
    stop_within(&mut d.node, 30);
}
