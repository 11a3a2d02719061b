//! The audit log through the real binaries: the events a node appends, deposit certificates
//! checked offline, signed checkpoints, tamper evidence when the stored log is altered behind
//! the node's back, bad requests on the gRPC audit API, and the PREMIS / JSON-lines exports.
//!
//! Tamper tests stop the node, alter its sled database directly (as an attacker with disk
//! access would), restart it and ask the CLI to verify the log.
#![allow(clippy::unwrap_used)]

use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::event::{Event, Outcome};
use archipel_proto::note::Verifier;
use archipel_proto::rfc6962::{
    Hash, leaf_hash, node_hash, root_from_leaf_hashes, verify_consistency, verify_inclusion,
};
use archipel_proto::v1::audit_log_client::AuditLogClient;
use archipel_proto::v1::{
    ConsistencyProofRequest, EntriesRequest, InclusionProofRequest, SignedCheckpointRequest,
    SubtreeHashRequest, inclusion_proof_request,
};
use archipel_tests::{TestNode, expect_code, p, random_file, stderr, stdout};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn started(root: &Path, name: &str, territory: &str) -> TestNode {
    let mut node = TestNode::init(root, name, territory).unwrap();
    node.start().unwrap();
    node
}

/// Asserts that `haystack` contains every needle.
fn assert_says(haystack: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(
            haystack.contains(n),
            "{what}: message lacks {n:?}:\n{haystack}"
        );
    }
}

fn status(node: &TestNode) -> Value {
    node.cli_json(&["status"])
}

/// Every event of the log, as `log tail --json` prints them.
fn events(node: &TestNode) -> Vec<Value> {
    let v = node.cli_json(&["log", "tail", "-n", "100000"]);
    v.as_array().unwrap().clone()
}

fn text_file(root: &Path, name: &str, content: &str) -> PathBuf {
    let path = root.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Ingests `n` small distinct files; returns the record IDs in ingestion order.
fn ingest_n(node: &TestNode, root: &Path, n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let f = text_file(
                root,
                &format!("{tag}-{i}.txt"),
                &format!("{tag} file {i}\n"),
            );
            node.ingest(&[&f], &format!("{tag} {i}"), &[])
        })
        .collect()
}

// --- base64 (the standard alphabet, padded), for editing proof files --------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// --- sled, opened directly while the node is stopped ------------------------------------

fn open_db(node: &TestNode) -> sled::Db {
    sled::Config::new()
        .path(node.data.join("db"))
        .open()
        .unwrap()
}

fn leaf_key(index: u64) -> Vec<u8> {
    let mut k = vec![b'L'];
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn node_key(level: u32, index: u64) -> Vec<u8> {
    let mut k = vec![b'N', level as u8];
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn stored_size(t: &sled::Tree) -> u64 {
    u64::from_be_bytes(
        t.get(b"size")
            .unwrap()
            .unwrap()
            .as_ref()
            .try_into()
            .unwrap(),
    )
}

/// The raw leaves of the stored log, in order.
fn raw_leaves(db: &sled::Db) -> Vec<Vec<u8>> {
    let t = db.open_tree("log").unwrap();
    (0..stored_size(&t))
        .map(|i| t.get(leaf_key(i)).unwrap().unwrap().to_vec())
        .collect()
}

/// Every `N` entry of the stored log (perfect subtree hashes).
fn stored_nodes(db: &sled::Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    let t = db.open_tree("log").unwrap();
    t.scan_prefix(b"N")
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Rewrites the whole `log` tree from `leaves`, consistently: every leaf and every perfect
/// subtree hash, as node/src/log/tree.rs `append_tx` computes them; `R` keys are kept.
fn rebuild_log(db: &sled::Db, leaves: &[Vec<u8>]) {
    let t = db.open_tree("log").unwrap();
    let old: Vec<sled::IVec> = t
        .iter()
        .keys()
        .map(Result::unwrap)
        .filter(|k| k[0] == b'L' || k[0] == b'N')
        .collect();
    for k in old {
        t.remove(k).unwrap();
    }
    let mut nodes: HashMap<(u32, u64), Hash> = HashMap::new();
    for (index, leaf) in leaves.iter().enumerate() {
        let index = index as u64;
        t.insert(leaf_key(index), leaf.as_slice()).unwrap();
        let mut h = leaf_hash(leaf);
        nodes.insert((0, index), h);
        t.insert(node_key(0, index), &h[..]).unwrap();
        let (mut level, mut i) = (0u32, index);
        while i & 1 == 1 {
            h = node_hash(&nodes[&(level, i - 1)], &h);
            level += 1;
            i >>= 1;
            nodes.insert((level, i), h);
            t.insert(node_key(level, i), &h[..]).unwrap();
        }
    }
    t.insert(b"size", &(leaves.len() as u64).to_be_bytes())
        .unwrap();
    db.flush().unwrap();
}

/// Leaf `index` with its `outcome success` line turned into `outcome failure`.
fn flip_outcome(leaf: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(leaf.to_vec()).unwrap();
    assert!(text.contains("\noutcome success\n"), "{text}");
    let forged = text.replace("\noutcome success\n", "\noutcome failure\n");
    // Still a valid, canonical event: only the tree can tell.
    assert_eq!(
        Event::decode(forged.as_bytes()).unwrap().outcome,
        Outcome::Failure
    );
    forged.into_bytes()
}

fn blob_ids(node: &TestNode) -> BTreeSet<Vec<u8>> {
    archipel_tests::blob_ids(&node.data)
}

// --- a raw gRPC client on the admin socket, as cli/src/connect.rs does ------------------

fn runtime() -> tokio::runtime::Runtime {
    archipel_tests::runtime()
}

async fn audit_client(node: &TestNode) -> AuditLogClient<Channel> {
    let channel = archipel_tests::admin_channel(&node.data).await;
    AuditLogClient::new(channel)
}

fn python3() -> bool {
    Command::new("python3")
        .args(["-c", "import xml.dom.minidom"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A minimal well-formedness check: XML declaration, then tags that nest and balance.
fn assert_balanced_xml(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("XML declaration");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = body;
    let mut roots = 0;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        assert!(
            !text.contains('>') && (!stack.is_empty() || text.trim().is_empty()),
            "stray text {text:?}"
        );
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap();
            if stack.is_empty() {
                roots += 1;
            }
            stack.push(name);
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert!(rest.trim().is_empty());
    assert_eq!(roots, 1, "one root element");
}

// ---------------------------------------------------------------------------------------
// 1. Events
// ---------------------------------------------------------------------------------------

/// Two ingests and a fixity check of everything: exactly 3 + 3 + 2 events, in order, each
/// naming its record, then a corrupted blob gives a `fixity check` event with outcome
/// failure. No title, description, file content or plaintext digest is in any leaf.
#[test]
fn events_are_logged_in_order_and_leak_no_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    let title = "Délibération TITRE-DISTINCTIF-QX9";
    let description = "DESCRIPTION-DISTINCTIVE-KW4 du conseil";
    let content = "CONTENU-SECRET-ZEBRA-7731: the body of the first file\n";
    let a = text_file(tmp.path(), "a.txt", content);
    let b = tmp.path().join("b.bin");
    random_file(&b, 40_000, 7).unwrap();

    let r1 = node.ingest(&[&a], title, &["--description", description]);
    node.stop().unwrap();
    let before = blob_ids(&node);
    node.start().unwrap();
    let r2 = node.ingest(&[&b], "Second TITRE-DISTINCTIF-QX9", &[]);
    node.cli_ok(&["verify"]);

    // The node checks records in ID order (ULIDs: ingestion order).
    let mut sorted = vec![r1.clone(), r2.clone()];
    sorted.sort();
    let mut want: Vec<(&str, &str, &str)> = Vec::new();
    for r in [&r1, &r2] {
        for ty in ["validation", "message digest calculation", "ingestion"] {
            want.push((ty, r, "success"));
        }
    }
    for r in &sorted {
        want.push(("fixity check", r, "success"));
    }
    let node_id = node.node_id.clone();
    let check = |evs: &[Value], want: &[(&str, &str, &str)]| {
        let got: Vec<(&str, &str, &str)> = evs
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap(),
                    e["object"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want);
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["index"], i as u64, "{e}");
            assert_eq!(e["agent_node"], node_id.as_str(), "{e}");
            assert_eq!(e["agent_actor"], "admin", "{e}");
            let t = e["time"].as_str().unwrap();
            assert!(
                t.len() == 20 && t.starts_with("20") && t.ends_with('Z'),
                "{e}"
            );
            assert_eq!(e["detail"].as_str().unwrap().len(), 64, "{e}");
        }
    };
    let evs = events(&node);
    check(&evs, &want);
    assert_eq!(status(&node)["log_size"], 8);
    let times: Vec<&str> = evs.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Corrupt one blob of r2 (one byte flipped), then check r2 again.
    node.stop().unwrap();
    let after = blob_ids(&node);
    let r2_blobs: Vec<_> = after.difference(&before).cloned().collect();
    assert!(!r2_blobs.is_empty());
    archipel_tests::alter_blob(&node.data, &r2_blobs[0], false);
    node.start().unwrap();
    let out = node.cli(&["verify", &r2]);
    expect_code(&out, 6, "fixity check of a corrupted record");
    want.push(("fixity check", &r2, "failure"));
    let evs = events(&node);
    check(&evs, &want);

    // Nothing of the metadata or the content is in the log: not in the export...
    let out = node.cli_ok(&["log", "export", "--format", "jsonl"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9);
    let secrets = [
        "TITRE-DISTINCTIF-QX9".to_string(),
        "DESCRIPTION-DISTINCTIVE-KW4".to_string(),
        "CONTENU-SECRET-ZEBRA".to_string(),
        "Délibération".to_string(),
        // the plaintext digest of the file would identify it: leaves carry commitments
        blake3::hash(content.as_bytes()).to_hex().to_string(),
    ];
    for s in &secrets {
        assert!(!out.contains(s.as_str()), "{s} in the export:\n{out}");
    }
    // ... nor in the raw leaves.
    node.stop().unwrap();
    let db = open_db(&node);
    let leaves = raw_leaves(&db);
    assert_eq!(leaves.len(), 9);
    for (i, leaf) in leaves.iter().enumerate() {
        let e = Event::decode(leaf).unwrap_or_else(|err| panic!("leaf {i}: {err}"));
        assert_eq!(e.event_type, want[i].0);
        assert_eq!(e.object, want[i].1);
        let text = String::from_utf8_lossy(leaf);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{s} in leaf {i}:\n{text}");
        }
        assert!(
            !leaf
                .windows(32)
                .any(|w| w == blake3::hash(content.as_bytes()).as_bytes()),
            "raw plaintext digest in leaf {i}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Deposit certificate
// ---------------------------------------------------------------------------------------

fn check_proof(node: &TestNode, file: &Path, key: &str) -> Output {
    node.cli(&["log", "check-proof", p(file), "--key", key])
}

/// `log prove` writes a C2SP tlog-proof that `log check-proof` accepts with the node's key,
/// offline too; any other key and every alteration of the file is refused with exit code 8.
#[test]
fn deposit_certificate_verifies_offline_and_every_alteration_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    let ids = ingest_n(&node, tmp.path(), 3, "cert");
    let st = status(&node);
    let vkey = st["log_vkey"].as_str().unwrap().to_string();
    let origin = st["log_origin"].as_str().unwrap().to_string();
    let cert = tmp.path().join("cert.txt");

    let out = node.cli_ok(&["log", "prove", &ids[1], "--out", p(&cert)]);
    assert_says(&out, &[&ids[1], "entry 5 of 9"], "log prove");
    let ok = check_proof(&node, &cert, &vkey);
    expect_code(&ok, 0, "check-proof");
    assert_says(
        &stdout(&ok),
        &[
            "valid: entry 5",
            &origin,
            &format!("ingestion of {}", ids[1]),
        ],
        "check-proof",
    );

    // A record that is not in the log: not found, and no file.
    let missing = tmp.path().join("missing.txt");
    let out = node.cli(&[
        "log",
        "prove",
        "01KAX7M3S1H4T6Q9W2Z8B5C0DE",
        "--out",
        p(&missing),
    ]);
    let e = expect_code(&out, 4, "prove an unknown record");
    assert_says(
        &e,
        &["01KAX7M3S1H4T6Q9W2Z8B5C0DE"],
        "prove an unknown record",
    );
    assert!(!missing.exists());

    // Another node's key.
    let mut other = started(tmp.path(), "other", "Autre Commune");
    let other_vkey = status(&other)["log_vkey"].as_str().unwrap().to_string();
    other.stop().unwrap();
    node.stop().unwrap();

    // Offline: the node is stopped.
    let out = check_proof(&node, &cert, &vkey);
    expect_code(&out, 0, "offline check-proof");
    let v: Value = serde_json::from_slice(
        &node
            .cli(&["--json", "log", "check-proof", p(&cert), "--key", &vkey])
            .stdout,
    )
    .unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["index"], 5);
    assert_eq!(v["tree_size"], 9);
    assert_eq!(v["event"]["type"], "ingestion");
    assert_eq!(v["event"]["object"], ids[1].as_str());

    let e = expect_code(
        &check_proof(&node, &cert, &other_vkey),
        8,
        "another node's key",
    );
    assert_says(&e, &["checkpoint"], "another node's key");
    // The same key name (the origin) with another key: an impostor.
    let impostor = Verifier::new(
        &origin,
        *Verifier::from_vkey(&other_vkey).unwrap().public_key(),
    )
    .unwrap()
    .to_vkey();
    assert_ne!(impostor, vkey);
    let e = expect_code(&check_proof(&node, &cert, &impostor), 8, "impostor key");
    assert_says(&e, &["checkpoint"], "impostor key");
    expect_code(&check_proof(&node, &cert, "not-a-key"), 8, "malformed key");

    let text = std::fs::read_to_string(&cert).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "c2sp.org/tlog-proof@v1");
    assert!(lines[1].starts_with("extra "));
    assert_eq!(lines[2], "index 5");
    // 9 leaves: the path of leaf 5 has 4 siblings (leaf 4, [6, 8), [0, 4), leaf 8).
    for l in &lines[3..7] {
        assert_eq!(b64_decode(l).len(), 32, "{l}");
    }
    assert_eq!(lines[7], "");
    assert_eq!(lines[8], origin);

    let bad = tmp.path().join("bad.txt");
    let refused = |content: &[u8], what: &str, needles: &[&str]| {
        std::fs::write(&bad, content).unwrap();
        let out = check_proof(&node, &bad, &vkey);
        let e = expect_code(&out, 8, what);
        assert!(stdout(&out).is_empty(), "{what}: printed {}", stdout(&out));
        assert_says(&e, &["error:", "bad.txt"], what);
        assert_says(&e, needles, what);
    };

    // Truncated anywhere.
    for cut in (0..text.len()).step_by(11).chain([text.len() - 1]) {
        refused(&text.as_bytes()[..cut], &format!("truncated at {cut}"), &[]);
    }
    // Padded with garbage, after or before.
    refused(format!("{text}garbage\n").as_bytes(), "garbage after", &[]);
    refused(
        format!("{text}\0\u{1}\u{2}").as_bytes(),
        "binary garbage after",
        &[],
    );
    refused(
        format!("garbage\n{text}").as_bytes(),
        "garbage before",
        &["tlog-proof"],
    );
    // One proof line altered (still 32 bytes of valid base64).
    for line in 3..7 {
        let mut h = b64_decode(lines[line]);
        h[0] ^= 0x80;
        let mut l = lines.clone();
        let forged = b64_encode(&h);
        l[line] = &forged;
        refused(
            format!("{}\n", l.join("\n")).as_bytes(),
            &format!("proof line {line} altered"),
            &["does not verify"],
        );
    }
    // The index changed.
    for index in ["index 4", "index 6", "index 2", "index 9", "index 05"] {
        refused(text.replace("index 5", index).as_bytes(), index, &[]);
    }
    // The extra (the leaf) changed: another outcome, another record, one bit.
    let leaf = b64_decode(lines[1].strip_prefix("extra ").unwrap());
    let as_failure = flip_outcome(&leaf);
    let as_other = String::from_utf8(leaf.clone())
        .unwrap()
        .replace(&ids[1], &ids[2])
        .into_bytes();
    let mut bit = leaf.clone();
    bit[40] ^= 0x01;
    for (forged, what) in [
        (as_failure, "extra: outcome failure"),
        (as_other, "extra: another record"),
        (bit, "extra: one bit"),
    ] {
        let t = text.replacen(lines[1], &format!("extra {}", b64_encode(&forged)), 1);
        refused(t.as_bytes(), what, &["does not verify"]);
    }
    // No extra at all: nothing to check.
    refused(
        text.replacen(&format!("{}\n", lines[1]), "", 1).as_bytes(),
        "no extra",
        &[],
    );
    // The checkpoint altered: its signature no longer matches.
    refused(
        text.replacen(&format!("\n{origin}\n9\n"), &format!("\n{origin}\n10\n"), 1)
            .as_bytes(),
        "checkpoint size altered",
        &["checkpoint"],
    );
    // Malformed files.
    refused(b"", "empty file", &[]);
    refused(b"hello\n", "not a proof", &[]);
    refused(&[0xff, 0xfe, 0, 1, 2, 3], "binary file", &[]);
    refused(&vec![b'a'; 2 << 20], "huge file", &[]);

    // A proof line removed or duplicated.
    refused(
        text.replacen(&format!("{}\n", lines[4]), "", 1).as_bytes(),
        "proof line removed",
        &[],
    );
    refused(
        text.replacen(
            &format!("{}\n", lines[4]),
            &format!("{0}\n{0}\n", lines[4]),
            1,
        )
        .as_bytes(),
        "proof line duplicated",
        &[],
    );

    // The original is still good, and so is a copy carrying a cosignature from an unknown
    // witness (signed-note verifiers ignore signature lines from unknown keys).
    expect_code(&check_proof(&node, &cert, &vkey), 0, "original certificate");
    let cosigned = tmp.path().join("cosigned.txt");
    let sig: Vec<u8> = (0..68u8).collect();
    std::fs::write(
        &cosigned,
        format!("{text}\u{2014} witness.example/w1 {}\n", b64_encode(&sig)),
    )
    .unwrap();
    expect_code(
        &check_proof(&node, &cosigned, &vkey),
        0,
        "certificate with a cosignature",
    );
}

// ---------------------------------------------------------------------------------------
// 3. Checkpoints
// ---------------------------------------------------------------------------------------

/// `log checkpoint` prints a C2SP checkpoint (origin, size, base64 root) signed by the key
/// `status` announces, over the very leaves the log serves; a saved checkpoint proves later
/// that the log only grew.
#[test]
fn checkpoint_is_a_signed_c2sp_note_and_verify_since_passes_after_growth() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 1, "cp");
    let st = status(&node);
    let vkey = st["log_vkey"].as_str().unwrap();
    let origin = st["log_origin"].as_str().unwrap();
    assert_eq!(origin, format!("archipel/commune-de-test/{}", node.node_id));
    assert_eq!(st["log_size"], 3);

    let note = node.cli_ok(&["log", "checkpoint"]);
    let verifier = Verifier::from_vkey(vkey).unwrap();
    assert_eq!(vkey.parse::<Verifier>().unwrap(), verifier);
    let cp = Checkpoint::open(note.as_bytes(), &verifier).unwrap();
    assert_eq!(cp.origin, origin);
    assert_eq!(cp.size, 3);
    assert!(cp.extensions.is_empty());
    // The note: origin, size, base64 root, a blank line, one signature by the origin's key.
    let lines: Vec<&str> = note.split('\n').collect();
    assert_eq!(lines.len(), 6, "{note:?}");
    assert_eq!(lines[0], origin);
    assert_eq!(lines[1], "3");
    assert_eq!(b64_decode(lines[2]), cp.root);
    assert_eq!(lines[3], "");
    assert!(
        lines[4].starts_with(&format!("\u{2014} {origin} ")),
        "{note}"
    );
    assert_eq!(lines[5], "");
    assert_eq!(
        &b64_decode(lines[4].rsplit(' ').next().unwrap())[..4],
        &verifier.key_id().to_be_bytes()
    );
    assert!(note.starts_with(&cp.to_text()));
    // The root is that of the leaves the log serves.
    let rt = runtime();
    let leaves = rt.block_on(async {
        let mut c = audit_client(&node).await;
        c.entries(EntriesRequest { start: 0, end: 3 })
            .await
            .unwrap()
            .into_inner()
            .leaves
    });
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    assert_eq!(root_from_leaf_hashes(&hashes), cp.root);
    // Asking again without growth gives the same signed note.
    assert_eq!(node.cli_ok(&["log", "checkpoint"]), note);
    let j = node.cli_json(&["log", "checkpoint"]);
    assert_eq!(j["checkpoint"], note.as_str());
    assert_eq!(j["size"], 3);
    assert_eq!(j["vkey"], vkey);

    let saved = text_file(tmp.path(), "saved.txt", &note);
    ingest_n(&node, tmp.path(), 2, "more");
    let out = node.cli_ok(&["log", "verify", "--since", p(&saved)]);
    assert_says(
        &out,
        &["verified: 9 entries", "only grew", "size 3"],
        "verify --since",
    );
    let v = node.cli_json(&["log", "verify", "--since", p(&saved), "--key", vkey]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["size"], 9);
    assert_eq!(v["since"]["size"], 3);
    // --since the current checkpoint itself: nothing changed, it passes.
    let current = text_file(
        tmp.path(),
        "current.txt",
        &node.cli_ok(&["log", "checkpoint"]),
    );
    let v = node.cli_json(&["log", "verify", "--since", p(&current)]);
    assert_eq!(
        (v["ok"].clone(), v["since"]["size"].clone()),
        (Value::Bool(true), 9.into())
    );
    let newer =
        Checkpoint::open(node.cli_ok(&["log", "checkpoint"]).as_bytes(), &verifier).unwrap();
    assert_eq!(newer.size, 9);

    // Malformed or foreign checkpoint files are refused (exit 8).
    let bad = tmp.path().join("bad-cp.txt");
    let refused = |content: &str, what: &str, needles: &[&str]| {
        std::fs::write(&bad, content).unwrap();
        let out = node.cli(&["log", "verify", "--since", p(&bad)]);
        let e = expect_code(&out, 8, what);
        assert_says(&e, needles, what);
    };
    refused("garbage\n", "garbage", &["bad-cp.txt"]);
    refused("", "empty", &["bad-cp.txt"]);
    refused(&cp.to_text(), "unsigned", &["bad-cp.txt"]);
    refused(
        &note.replacen("\n3\n", "\n4\n", 1),
        "size altered",
        &["bad-cp.txt"],
    );
    refused(&note[..note.len() - 10], "truncated", &["bad-cp.txt"]);
    // Pinning another key: the node's checkpoints do not verify.
    let mut other = started(tmp.path(), "other", "Autre Commune");
    let other_vkey = status(&other)["log_vkey"].as_str().unwrap().to_string();
    // An empty log has nothing to sign.
    let out = other.cli(&["log", "checkpoint"]);
    assert!(!out.status.success());
    assert_says(&stderr(&out), &["empty"], "checkpoint of an empty log");
    ingest_n(&other, tmp.path(), 1, "other");
    let other_note = other.cli_ok(&["log", "checkpoint"]);
    other.stop().unwrap();
    refused(&other_note, "another log's checkpoint", &["bad-cp.txt"]);
    let out = node.cli(&["log", "verify", "--key", &other_vkey]);
    let e = expect_code(&out, 8, "verify with another key");
    assert_says(&e, &["does not verify"], "verify with another key");
}

// ---------------------------------------------------------------------------------------
// 4. Tamper evidence: the stored log altered behind the node's back
// ---------------------------------------------------------------------------------------

/// (a) One leaf altered in place (entry 4: `outcome success` → `outcome failure`): `log
/// verify` names index 4. The node's stored subtree hashes still commit to the original leaf,
/// so a checkpoint it signs afterwards is consistent with the earlier one and the altered
/// leaf stays detectable: the edit cannot be laundered by signing again.
#[test]
fn altered_leaf_is_detected_at_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 2, "leaf");
    let vkey = status(&node)["log_vkey"].as_str().unwrap().to_string();
    let verifier = Verifier::from_vkey(&vkey).unwrap();
    let saved_note = node.cli_ok(&["log", "checkpoint"]);
    let saved = Checkpoint::open(saved_note.as_bytes(), &verifier).unwrap();
    assert_eq!(saved.size, 6);
    let saved_path = text_file(tmp.path(), "saved.txt", &saved_note);
    node.cli_ok(&["log", "verify"]);

    node.stop().unwrap();
    {
        let db = open_db(&node);
        let t = db.open_tree("log").unwrap();
        let leaf = t.get(leaf_key(4)).unwrap().unwrap().to_vec();
        assert_eq!(
            Event::decode(&leaf).unwrap().event_type,
            "message digest calculation"
        );
        t.insert(leaf_key(4), flip_outcome(&leaf)).unwrap();
        db.flush().unwrap();
    }
    node.start().unwrap();
    let out = node.cli(&["log", "verify"]);
    let e = expect_code(&out, 8, "verify an altered leaf");
    assert_says(
        &e,
        &["entry 4", "altered", "first bad index 4"],
        "altered leaf",
    );
    assert!(!e.contains("index 5"), "{e}");

    // One more ingest: the node signs again, consistently with what it signed before...
    ingest_n(&node, tmp.path(), 1, "after");
    let note = node.cli_ok(&["log", "checkpoint"]);
    let cp = Checkpoint::open(note.as_bytes(), &verifier).unwrap();
    assert_eq!(cp.size, 9);
    let proof = runtime().block_on(async {
        let mut c = audit_client(&node).await;
        c.consistency_proof(ConsistencyProofRequest {
            old_size: 6,
            new_size: 9,
        })
        .await
        .unwrap()
        .into_inner()
    });
    assert_eq!(proof.checkpoint, note);
    verify_consistency(6, 9, &proof.hashes, &saved.root, &cp.root).unwrap();
    // ... and the altered leaf is still found, against the new checkpoint too.
    let out = node.cli(&["log", "verify"]);
    let e = expect_code(&out, 8, "verify an altered leaf after growth");
    assert_says(
        &e,
        &["first bad index 4", "size 9"],
        "altered leaf after growth",
    );
    let out = node.cli(&["log", "verify", "--since", p(&saved_path)]);
    let e = expect_code(&out, 8, "verify --since an altered leaf");
    assert_says(&e, &["first bad index 4"], "verify --since an altered leaf");
}

/// (b) The log truncated after a checkpoint was signed at the larger size: `log verify`
/// reports the truncation and the node refuses to sign the shorter log. If the attacker also
/// wipes the node's checkpoints, the node signs the short log, but a checkpoint saved
/// elsewhere still exposes the truncation.
#[test]
fn truncated_log_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 3, "trunc");
    let saved_note = node.cli_ok(&["log", "checkpoint"]);
    assert!(saved_note.contains("\n9\n"), "{saved_note}");
    let saved = text_file(tmp.path(), "saved.txt", &saved_note);

    node.stop().unwrap();
    {
        let db = open_db(&node);
        let t = db.open_tree("log").unwrap();
        t.insert(b"size", &6u64.to_be_bytes()).unwrap();
        for i in 6..9 {
            assert!(t.remove(leaf_key(i)).unwrap().is_some());
        }
        db.flush().unwrap();
    }
    node.start().unwrap();
    assert_eq!(status(&node)["log_size"], 6);
    let out = node.cli(&["log", "verify"]);
    let e = expect_code(&out, 8, "verify a truncated log");
    assert_says(
        &e,
        &["truncated", "size 9", "6 entries", "first missing index 6"],
        "truncated log",
    );
    let out = node.cli(&["log", "checkpoint"]);
    assert!(
        !out.status.success(),
        "signed a truncated log: {}",
        stdout(&out)
    );
    assert_says(
        &stderr(&out),
        &["refusing to sign", "size 6", "size 9"],
        "checkpoint of a truncated log",
    );

    // The attacker also removes the node's own checkpoints: the node signs the short log...
    node.stop().unwrap();
    {
        let db = open_db(&node);
        db.open_tree("log_checkpoints").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    node.start().unwrap();
    node.cli_ok(&["log", "verify"]);
    // ... but the checkpoint saved elsewhere proves the truncation.
    let out = node.cli(&["log", "verify", "--since", p(&saved)]);
    let e = expect_code(&out, 8, "verify --since a truncated log");
    assert_says(&e, &["truncation", "9 entries", "only 6"], "verify --since");
}

/// The whole log wiped, the node's checkpoints too: the node has nothing to sign, but a
/// checkpoint saved elsewhere must still expose the truncation as tampering (exit 8), as it
/// does when a single entry is left.
#[test]
fn wiped_log_is_a_truncation_against_a_saved_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 1, "wipe");
    let saved = text_file(
        tmp.path(),
        "saved.txt",
        &node.cli_ok(&["log", "checkpoint"]),
    );
    node.stop().unwrap();
    {
        let db = open_db(&node);
        db.open_tree("log").unwrap().clear().unwrap();
        db.open_tree("log_checkpoints").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    node.start().unwrap();
    assert_eq!(status(&node)["log_size"], 0);
    let out = node.cli(&["log", "verify", "--since", p(&saved)]);
    let e = expect_code(&out, 8, "verify --since a wiped log");
    assert_says(&e, &["truncat"], "wiped log");
}

/// (c) Two entries swapped (keys L+1 and L+2): `log verify` names index 1.
#[test]
fn reordered_entries_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 2, "swap");
    node.cli_ok(&["log", "checkpoint"]);
    node.stop().unwrap();
    {
        let db = open_db(&node);
        let t = db.open_tree("log").unwrap();
        let one = t.get(leaf_key(1)).unwrap().unwrap();
        let two = t.get(leaf_key(2)).unwrap().unwrap();
        assert_ne!(one, two);
        t.insert(leaf_key(1), two).unwrap();
        t.insert(leaf_key(2), one).unwrap();
        db.flush().unwrap();
    }
    node.start().unwrap();
    let out = node.cli(&["log", "verify"]);
    let e = expect_code(&out, 8, "verify a reordered log");
    assert_says(&e, &["entry 1", "first bad index 1"], "reordered log");
}

/// Rewrites the stopped node's log with entry 4's outcome flipped, consistently (every
/// subtree hash recomputed), after checking that the rebuild reproduces the node's own tree.
fn rewrite_log_consistently(node: &TestNode, clear_checkpoints: bool) -> Hash {
    let db = open_db(node);
    let mut leaves = raw_leaves(&db);
    let nodes = stored_nodes(&db);
    rebuild_log(&db, &leaves);
    assert_eq!(
        stored_nodes(&db),
        nodes,
        "the rebuild must follow the node's scheme"
    );
    leaves[4] = flip_outcome(&leaves[4]);
    rebuild_log(&db, &leaves);
    assert_ne!(stored_nodes(&db), nodes);
    if clear_checkpoints {
        db.open_tree("log_checkpoints").unwrap().clear().unwrap();
    }
    db.flush().unwrap();
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    root_from_leaf_hashes(&hashes)
}

/// (d) The whole log rewritten consistently and the node's checkpoints wiped: the node signs
/// its rewritten log, so `log verify` alone passes, but a checkpoint saved elsewhere exposes
/// the fork, and the two signed notes together prove it.
#[test]
fn rewritten_and_resigned_log_is_a_fork_against_a_saved_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 2, "fork");
    let vkey = status(&node)["log_vkey"].as_str().unwrap().to_string();
    let verifier = Verifier::from_vkey(&vkey).unwrap();
    let saved_note = node.cli_ok(&["log", "checkpoint"]);
    let saved = text_file(tmp.path(), "saved.txt", &saved_note);
    node.stop().unwrap();
    let forged_root = rewrite_log_consistently(&node, true);
    node.start().unwrap();

    let v = node.cli_json(&["log", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["size"], 6);
    let out = node.cli(&["log", "verify", "--since", p(&saved)]);
    let e = expect_code(&out, 8, "verify --since a rewritten log");
    assert_says(&e, &["fork", "saved.txt", "size 6"], "rewritten log");

    // Two notes signed by the same key, same size, different roots: evidence of the fork.
    let old = Checkpoint::open(saved_note.as_bytes(), &verifier).unwrap();
    let new = Checkpoint::open(node.cli_ok(&["log", "checkpoint"]).as_bytes(), &verifier).unwrap();
    assert_eq!((old.size, new.size), (6, 6));
    assert_eq!(new.root, forged_root);
    assert_ne!(old.root, new.root);
}

/// (e) The log rewritten consistently but the node's checkpoints kept: the node refuses to
/// sign, at the same size and after more ingests, and `log verify` reports the rewrite
/// against the last checkpoint it did sign.
#[test]
fn node_refuses_to_sign_a_log_inconsistent_with_its_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 2, "refuse");
    node.cli_ok(&["log", "checkpoint"]);
    node.stop().unwrap();
    rewrite_log_consistently(&node, false);
    node.start().unwrap();

    let out = node.cli(&["log", "checkpoint"]);
    assert!(!out.status.success(), "signed: {}", stdout(&out));
    assert_says(
        &stderr(&out),
        &["refusing to sign", "not consistent", "size 6"],
        "checkpoint at the same size",
    );
    ingest_n(&node, tmp.path(), 1, "more");
    assert_eq!(status(&node)["log_size"], 9);
    let out = node.cli(&["log", "checkpoint"]);
    assert!(!out.status.success(), "signed: {}", stdout(&out));
    assert_says(
        &stderr(&out),
        &["refusing to sign", "not consistent", "size 9", "size 6"],
        "checkpoint after growth",
    );
    let out = node.cli(&["log", "verify"]);
    let e = expect_code(&out, 8, "verify a rewritten log");
    assert_says(
        &e,
        &["refuses to sign", "rewritten", "size 6"],
        "rewritten log",
    );
    // Nothing new was signed.
    let signed = runtime().block_on(async {
        let mut c = audit_client(&node).await;
        c.signed_checkpoint(SignedCheckpointRequest { size: 0 })
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(signed.size, 6);
}

// ---------------------------------------------------------------------------------------
// 5. Bad requests on the gRPC audit API
// ---------------------------------------------------------------------------------------

fn index(i: u64, tree_size: u64) -> InclusionProofRequest {
    InclusionProofRequest {
        target: Some(inclusion_proof_request::Target::Index(i)),
        tree_size,
    }
}

/// Out-of-range and malformed requests get an error status with a clear message, not a
/// crash, and the node keeps serving.
#[test]
fn bad_audit_requests_get_clear_errors_and_the_node_keeps_serving() {
    use tonic::Code;
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path(), "node", "Commune de Test");
    let ids = ingest_n(&node, tmp.path(), 2, "grpc");
    let rt = runtime();
    rt.block_on(async {
        let mut c = audit_client(&node).await;
        let expect = |r: Result<(), tonic::Status>, code: Code, needles: &[&str], what: &str| {
            let s = r.expect_err(what);
            assert_eq!(s.code(), code, "{what}: {s:?}");
            assert_says(s.message(), needles, what);
        };
        // Inclusion proofs.
        expect(
            c.inclusion_proof(index(6, 0)).await.map(drop),
            Code::InvalidArgument,
            &["leaf index 6", "size 6"],
            "inclusion index = size",
        );
        expect(
            c.inclusion_proof(index(u64::MAX, 0)).await.map(drop),
            Code::InvalidArgument,
            &["out of range"],
            "inclusion index u64::MAX",
        );
        expect(
            c.inclusion_proof(InclusionProofRequest {
                target: Some(inclusion_proof_request::Target::RecordId("nope".into())),
                tree_size: 0,
            })
            .await
            .map(drop),
            Code::NotFound,
            &["nope"],
            "inclusion of an unknown record",
        );
        expect(
            c.inclusion_proof(InclusionProofRequest {
                target: None,
                tree_size: 0,
            })
            .await
            .map(drop),
            Code::InvalidArgument,
            &["index or a record ID"],
            "inclusion without a target",
        );
        let s = c.inclusion_proof(index(0, 100)).await.unwrap_err();
        assert_says(s.message(), &["100"], "inclusion in a tree beyond the log");
        // Consistency proofs.
        expect(
            c.consistency_proof(ConsistencyProofRequest {
                old_size: 7,
                new_size: 0,
            })
            .await
            .map(drop),
            Code::InvalidArgument,
            &["old tree size 7", "larger than new tree size 6"],
            "consistency old > new",
        );
        expect(
            c.consistency_proof(ConsistencyProofRequest {
                old_size: u64::MAX,
                new_size: 6,
            })
            .await
            .map(drop),
            Code::InvalidArgument,
            &["larger"],
            "consistency old u64::MAX",
        );
        expect(
            c.consistency_proof(ConsistencyProofRequest {
                old_size: 0,
                new_size: 6,
            })
            .await
            .map(drop),
            Code::InvalidArgument,
            &["empty tree"],
            "consistency from 0",
        );
        let s = c
            .consistency_proof(ConsistencyProofRequest {
                old_size: 2,
                new_size: 100,
            })
            .await
            .unwrap_err();
        assert_says(
            s.message(),
            &["100"],
            "consistency to a size beyond the log",
        );
        // Entries.
        for (start, end) in [(0, 7), (5, 2), (7, 7), (u64::MAX, u64::MAX), (0, u64::MAX)] {
            expect(
                c.entries(EntriesRequest { start, end }).await.map(drop),
                Code::OutOfRange,
                &[&format!("[{start}, {end})"), "6 entries"],
                &format!("entries [{start}, {end})"),
            );
        }
        // Subtree hashes.
        expect(
            c.subtree_hash(SubtreeHashRequest { start: 1, end: 3 })
                .await
                .map(drop),
            Code::InvalidArgument,
            &["[1, 3)", "subtree boundary"],
            "unaligned subtree",
        );
        expect(
            c.subtree_hash(SubtreeHashRequest { start: 2, end: 6 })
                .await
                .map(drop),
            Code::InvalidArgument,
            &["[2, 6)", "subtree boundary"],
            "unaligned subtree of 4",
        );
        for (start, end) in [(3, 3), (4, 2), (0, 7), (u64::MAX - 1, u64::MAX)] {
            expect(
                c.subtree_hash(SubtreeHashRequest { start, end })
                    .await
                    .map(drop),
                Code::InvalidArgument,
                &[&format!("[{start}, {end})"), "6 leaves"],
                &format!("subtree [{start}, {end})"),
            );
        }
        expect(
            c.signed_checkpoint(SignedCheckpointRequest { size: 5 })
                .await
                .map(drop),
            Code::NotFound,
            &["size 5"],
            "signed checkpoint never signed",
        );

        // Still serving, and right: a valid proof verifies against the signed checkpoint.
        let leaves = c
            .entries(EntriesRequest { start: 0, end: 6 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((leaves.leaves.len(), leaves.log_size), (6, 6));
        let p = c.inclusion_proof(index(3, 0)).await.unwrap().into_inner();
        let vkey = status(&node)["log_vkey"].as_str().unwrap().to_string();
        let cp = Checkpoint::open(
            p.checkpoint.as_bytes(),
            &Verifier::from_vkey(&vkey).unwrap(),
        )
        .unwrap();
        verify_inclusion(3, cp.size, &leaf_hash(&p.leaf), &p.hashes, &cp.root).unwrap();
        let h = c
            .subtree_hash(SubtreeHashRequest { start: 4, end: 6 })
            .await
            .unwrap()
            .into_inner();
        let want =
            root_from_leaf_hashes(&[leaf_hash(&leaves.leaves[4]), leaf_hash(&leaves.leaves[5])]);
        assert_eq!(h.hash, want.to_vec());
    });
    assert_eq!(status(&node)["records"], 2);
    ingest_n(&node, tmp.path(), 1, "still");
    node.cli_ok(&["log", "verify"]);
    node.cli_ok(&["show", &ids[0]]);
}

/// Asking for a proof against a tree size the node never signed is the client's mistake, not
/// the server's: it must not be reported as an internal error (exit code 1 in the CLI).
#[test]
fn proof_against_an_unsigned_size_is_a_client_error() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 1, "size");
    runtime().block_on(async {
        let mut c = audit_client(&node).await;
        let s = c.inclusion_proof(index(0, 100)).await.unwrap_err();
        assert_ne!(s.code(), tonic::Code::Internal, "{s:?}");
        let s = c
            .consistency_proof(ConsistencyProofRequest {
                old_size: 1,
                new_size: 100,
            })
            .await
            .unwrap_err();
        assert_ne!(s.code(), tonic::Code::Internal, "{s:?}");
    });
}

// ---------------------------------------------------------------------------------------
// 6. Exports
// ---------------------------------------------------------------------------------------

/// `log export --format premis` is well-formed XML with one premis:event per entry and the
/// right eventType; `--format jsonl` is one JSON object per entry and line.
#[test]
fn premis_and_jsonl_exports_have_one_event_per_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path(), "node", "Commune <de> Test & Co");
    let ids = ingest_n(&node, tmp.path(), 1, "export");
    node.cli_ok(&["verify"]);
    let types = [
        "validation",
        "message digest calculation",
        "ingestion",
        "fixity check",
    ];
    let origin = status(&node)["log_origin"].as_str().unwrap().to_string();

    let xml_path = tmp.path().join("log.xml");
    node.cli_ok(&["log", "export", "--format", "premis", "--out", p(&xml_path)]);
    let xml = std::fs::read_to_string(&xml_path).unwrap();
    assert_eq!(xml, node.cli_ok(&["log", "export", "--format", "premis"]));
    assert_balanced_xml(&xml);
    assert!(xml.contains("xmlns:premis=\"http://www.loc.gov/premis/v3\""));
    assert_eq!(xml.matches("<premis:event>").count(), 4);
    let got: Vec<&str> = xml
        .split("<premis:eventType>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap())
        .collect();
    assert_eq!(got, types);
    assert_eq!(xml.matches("<premis:eventOutcome>success<").count(), 4);
    assert_eq!(
        xml.matches(&format!("<premis:linkingObjectIdentifierValue>{}<", ids[0]))
            .count(),
        4
    );
    for i in 0..4 {
        assert!(xml.contains(&format!("<premis:eventIdentifierValue>{origin}#{i}<")));
    }
    if python3() {
        let script = "import sys, xml.dom.minidom as m\n\
             d = m.parse(sys.argv[1])\n\
             for e in d.getElementsByTagName('premis:event'):\n\
             \x20   print(e.getElementsByTagName('premis:eventType')[0].firstChild.data)\n";
        let out = Command::new("python3")
            .args(["-c", script, p(&xml_path)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "not well-formed XML: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), types);
    } else {
        eprintln!("python3 not available: only the built-in XML check ran");
    }

    let jsonl = node.cli_ok(&["log", "export", "--format", "jsonl"]);
    assert!(jsonl.ends_with('\n'));
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len(), 4);
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v.is_object(), "{line}");
        assert_eq!(v["index"], i as u64);
        assert_eq!(v["type"], types[i]);
        assert_eq!(v["object"], ids[0].as_str());
        assert_eq!(v["outcome"], "success");
    }
    // The same events as `log tail`.
    let tail: Vec<Value> = events(&node);
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tail, parsed);
}

// ---------------------------------------------------------------------------------------
// 7. Periodic checkpoints and concurrent appends
// ---------------------------------------------------------------------------------------

/// A node process started with a config file (the fixture starts nodes without one).
struct ConfiguredNode(std::process::Child);

impl ConfiguredNode {
    fn start(node: &TestNode, config: &str) -> Self {
        use std::io::BufRead;
        let cfg = node.data.with_extension("toml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(&node.log).unwrap();
        let mut child = Command::new(archipel_tests::bin("archipel-node"))
            .args(["run", "--data", p(&node.data), "--config", p(&cfg)])
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let me = ConfiguredNode(child);
        assert!(
            first.starts_with("archipel-node ready"),
            "node did not start: {first:?}\n{}",
            node.log_text()
        );
        me
    }
}

impl Drop for ConfiguredNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn latest_signed_size(c: &mut AuditLogClient<Channel>) -> Option<u64> {
    c.signed_checkpoint(SignedCheckpointRequest { size: 0 })
        .await
        .ok()
        .map(|r| r.into_inner().size)
}

/// With `checkpoint_interval_secs = 1`, the node signs a checkpoint by itself once the log
/// grew, and never for an empty log.
#[test]
fn checkpoints_are_signed_periodically_when_the_log_grew() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::init(tmp.path(), "node", "Commune de Test").unwrap();
    let _running = ConfiguredNode::start(&node, "checkpoint_interval_secs = 1\n");
    let rt = runtime();
    let mut c = rt.block_on(audit_client(&node));
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(
        rt.block_on(latest_signed_size(&mut c)),
        None,
        "signed an empty log"
    );
    for (n, want) in [(1, 3), (2, 9)] {
        ingest_n(&node, tmp.path(), n, &format!("tick{want}"));
        assert!(
            archipel_tests::wait_until(std::time::Duration::from_secs(5), || {
                rt.block_on(latest_signed_size(&mut c)) == Some(want)
            }),
            "no checkpoint of size {want} signed by the node itself; log:\n{}",
            node.log_text()
        );
    }
}

/// Runs `probe` again and again for up to `secs` seconds while another thread keeps
/// appending events (`archipel verify` of every record: one fixity event per record);
/// returns how many probes ran and the first failures.
fn under_concurrent_appends(
    node: &TestNode,
    secs: u64,
    mut probe: impl FnMut() -> Result<(), String>,
) -> (u32, Vec<String>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (stop, data) = (stop.clone(), node.data.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new(archipel_tests::bin("archipel"))
                    .args(["--node", p(&data), "verify"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", stderr(&out));
            }
        })
    };
    let start = std::time::Instant::now();
    let (mut runs, mut failures) = (0, Vec::new());
    while start.elapsed() < std::time::Duration::from_secs(secs) && failures.len() < 5 {
        runs += 1;
        if let Err(e) = probe() {
            failures.push(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    (runs, failures)
}

/// `log verify` on an honest node that is busy appending must pass: a log that grows between
/// the CLI's status call and its checkpoint call is not a truncated log.
#[test]
fn log_verify_is_not_fooled_by_concurrent_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path(), "node", "Commune de Test");
    ingest_n(&node, tmp.path(), 10, "busy");
    let (runs, failures) = under_concurrent_appends(&node, 5, || {
        let out = node.cli(&["log", "verify"]);
        match out.status.code() {
            Some(0) => Ok(()),
            code => Err(format!("exit {code:?}: {}", stderr(&out))),
        }
    });
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed: {failures:#?}",
        failures.len()
    );
}

/// Proofs against the latest checkpoint must be served while the log grows: the node must
/// not sign a checkpoint larger than the view it builds the proof from.
#[test]
fn proofs_are_served_under_concurrent_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let node = started(tmp.path(), "node", "Commune de Test");
    let ids = ingest_n(&node, tmp.path(), 10, "busy");
    let rt = runtime();
    let cert = tmp.path().join("cert.txt");
    let (runs, failures) = under_concurrent_appends(&node, 5, || {
        let out = node.cli(&["log", "prove", &ids[0], "--out", p(&cert)]);
        if !out.status.success() {
            return Err(format!("log prove: {}", stderr(&out)));
        }
        rt.block_on(async {
            let c = audit_client(&node).await;
            // Concurrent calls: each may sign the tree another one's view predates.
            let calls: Vec<_> = (0..4)
                .map(|i| {
                    let mut c = c.clone();
                    let record = ids[i].clone();
                    tokio::spawn(async move {
                        if i % 2 == 0 {
                            let req = ConsistencyProofRequest {
                                old_size: 1,
                                new_size: 0,
                            };
                            c.consistency_proof(req).await.map(drop)
                        } else {
                            let req = InclusionProofRequest {
                                target: Some(inclusion_proof_request::Target::RecordId(record)),
                                tree_size: 0,
                            };
                            c.inclusion_proof(req).await.map(drop)
                        }
                    })
                })
                .collect();
            let mut errors = Vec::new();
            for (i, call) in calls.into_iter().enumerate() {
                if let Err(s) = call.await.unwrap() {
                    let what = ["consistency", "inclusion"][i % 2];
                    errors.push(format!("{what} proof: {}", s.message()));
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    });
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed: {failures:#?}",
        failures.len()
    );
}

/// A log longer than one page of entries (the API serves at most 1000 per call): tail,
/// export and verify read every page, and an altered entry on the second page is found.
#[test]
fn log_longer_than_one_page_is_read_and_verified_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = started(tmp.path(), "node", "Commune de Test");
    let ids = ingest_n(&node, tmp.path(), 30, "page");
    for _ in 0..31 {
        node.cli_ok(&["verify"]);
    }
    let size = 30 * 3 + 31 * 30;
    assert_eq!(status(&node)["log_size"], size);
    let evs = events(&node);
    assert_eq!(evs.len(), size);
    assert!(evs.iter().enumerate().all(|(i, e)| e["index"] == i as u64));
    let jsonl = node.cli_ok(&["log", "export", "--format", "jsonl"]);
    assert_eq!(jsonl.lines().count(), size);
    let v = node.cli_json(&["log", "verify"]);
    assert_eq!(v["size"], size);
    let cert = tmp.path().join("cert.txt");
    node.cli_ok(&["log", "prove", &ids[29], "--out", p(&cert)]);
    let vkey = status(&node)["log_vkey"].as_str().unwrap().to_string();
    expect_code(
        &check_proof(&node, &cert, &vkey),
        0,
        "certificate in a long log",
    );

    node.stop().unwrap();
    {
        let db = open_db(&node);
        let t = db.open_tree("log").unwrap();
        let leaf = t.get(leaf_key(1010)).unwrap().unwrap().to_vec();
        t.insert(leaf_key(1010), flip_outcome(&leaf)).unwrap();
        db.flush().unwrap();
    }
    node.start().unwrap();
    let out = node.cli(&["log", "verify"]);
    let e = expect_code(&out, 8, "verify a long altered log");
    assert_says(&e, &["first bad index 1010"], "long altered log");
}
