//! Lawful destruction through the real binaries: every refusal (no visa, DUA still running,
//! sort final C, no DUA, a legal hold, an unknown record, a list with one refusable record),
//! then the elimination itself at one node (content gone, deduplicated content another
//! record uses kept, events and tombstone kept, OAI-PMH reporting the record as deleted),
//! and across three nodes: a holder with no quarantine deletes and confirms with a signed
//! receipt, a holder in quarantine keeps its copy but no longer lists it, and a wiped origin
//! restored from both does not get the record back; a holder's archivist suspends a doubtful
//! deletion past the quarantine, then resumes it.
#![allow(clippy::unwrap_used)]

#[path = "support/http.rs"]
mod http;

use archipel_tests::cluster::{ClusterOptions, TestCluster, free_port};
use archipel_tests::{TestNode, expect_code, p};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const VISA: &str = "AD29 visa d'élimination n° 2026-145";

fn gateway_node(root: &Path) -> (TestNode, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut node = TestNode::init_with(
        root,
        "node",
        "Commune de Plougastel",
        &["--gateway-listen", &listen],
    )
    .unwrap();
    let config = node.data.join("archipel.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.insert_str(0, "gateway_rate_per_sec = 0\n");
    std::fs::write(&config, text).unwrap();
    node.start().unwrap();
    let url = node.cli_json(&["status"])["gateway_url"]
        .as_str()
        .unwrap()
        .to_string();
    (node, url)
}

fn file(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, content).unwrap();
    f
}

fn events_of(node: &TestNode, record: &str) -> Vec<Value> {
    node.cli_ok(&["log", "export", "--format", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["object"] == record)
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn elimination_refuses_what_the_law_forbids_and_destroys_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (node, gateway) = gateway_node(dir.path());
    let d = dir.path();
    let public = ["--communicability", "immediate"];
    let expired = |n: &str, extra: &[&str]| {
        let mut args = vec!["--dua", "10", "--final", "D", "--date", "2001-03-15"];
        args.extend_from_slice(extra);
        node.ingest(
            &[&file(d, &format!("{n}.txt"), &format!("contenu {n}\n"))],
            n,
            &args,
        )
    };
    let gone = expired("Registre des arrêtés 2001", &public);
    let held = expired("Dossier de contentieux", &[]);
    let sampled = node.ingest(
        &[&file(d, "t.txt", "échantillon\n")],
        "Dossiers de personnel (tri)",
        &["--dua", "5", "--final", "T", "--date", "1990-01-01"],
    );
    let kept = node.ingest(
        &[&file(d, "c.txt", "délibération\n")],
        "Délibérations 2001",
        &["--dua", "10", "--final", "C", "--date", "2001-01-01"],
    );
    let running = node.ingest(
        &[&file(d, "r.txt", "permis\n")],
        "Permis de construire 2020",
        &["--dua", "30", "--final", "D", "--date", "2020-06-01"],
    );
    let no_dua = node.ingest(&[&file(d, "n.txt", "note\n")], "Note", &[]);
    // The same content as `gone`'s file, in a record that is kept: deduplicated.
    let twin = node.ingest(
        &[&file(d, "twin.txt", "contenu Registre des arrêtés 2001\n")],
        "Copie du registre",
        &["--dua", "10", "--final", "C", "--date", "2001-01-01"],
    );
    node.cli_ok(&["hold", "set", &held, "--reason", "Contentieux TA Rennes"]);
    let blobs_before = node.cli_json(&["status"])["blobs"].as_u64();

    // Refusals: nothing changes.
    expect_code(&node.cli(&["eliminate", &gone]), 2, "no --visa");
    expect_code(
        &node.cli(&["eliminate", &gone, "--visa", "  "]),
        5,
        "blank visa",
    );
    for (id, why) in [
        (&kept, "conserver"),
        (&running, "runs until 2050-06-01"),
        (&no_dua, "no DUA"),
        (&held, "legal hold"),
    ] {
        let err = expect_code(&node.cli(&["eliminate", id, "--visa", VISA]), 9, why);
        assert!(err.contains(why), "{why}: {err}");
    }
    let err = expect_code(
        &node.cli(&["eliminate", "01KAX7M3S1H4T6Q9W2Z8B5C0DE", "--visa", VISA]),
        9,
        "unknown",
    );
    assert!(err.contains("no record"), "{err}");
    // A bordereau is destroyed whole or not at all: every reason is given.
    let err = expect_code(
        &node.cli(&["eliminate", &gone, &kept, &held, "--visa", VISA]),
        9,
        "mixed list",
    );
    assert!(
        err.contains("conserver") && err.contains("legal hold"),
        "{err}"
    );
    node.assert_get_file(
        &gone,
        &d.join("gone-before"),
        b"contenu Registre des arr\xc3\xaat\xc3\xa9s 2001\n",
    );
    assert_eq!(node.cli_json(&["status"])["blobs"].as_u64(), blobs_before);
    assert!(
        types(&events_of(&node, &gone))
            .iter()
            .all(|t| *t != "deletion")
    );

    // Lifting the hold allows it; sort final T is accepted (the part not kept).
    node.cli_ok(&["hold", "lift", &held]);
    let out = node.cli_json(&["eliminate", &gone, &held, &sampled, "--visa", VISA]);
    let list = out.as_array().unwrap();
    assert_eq!(list.len(), 3, "{out}");
    let mine = list.iter().find(|e| e["record"] == gone.as_str()).unwrap();
    assert_eq!(mine["visa"], VISA);
    let tombstone = mine["tombstone"].as_str().unwrap();
    assert!(
        tombstone.starts_with("archipel-tombstone/v1\n"),
        "{tombstone}"
    );
    assert!(tombstone.contains(&format!("visa {VISA}\n")), "{tombstone}");

    // Gone: reading it, showing it, eliminating it again.
    for args in [
        vec!["get", gone.as_str(), "-o", p(&d.join("out"))],
        vec!["show", &gone],
    ] {
        let err = expect_code(&node.cli(&args), 4, "eliminated record");
        assert!(err.contains(&gone), "{err}");
    }
    let err = expect_code(&node.cli(&["eliminate", &gone, "--visa", VISA]), 9, "twice");
    assert!(
        err.contains("already eliminated") && err.contains(VISA),
        "{err}"
    );
    // The deduplicated twin is intact, byte for byte.
    node.assert_get_file(
        &twin,
        &d.join("twin-out"),
        b"contenu Registre des arr\xc3\xaat\xc3\xa9s 2001\n",
    );
    let listed: Vec<String> = node
        .cli_json(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !listed.contains(&gone) && listed.contains(&twin),
        "{listed:?}"
    );

    // The deletion is in the log for ever, committing to the signed tombstone.
    let ev = events_of(&node, &gone);
    let deletion = ev.iter().find(|e| e["type"] == "deletion").unwrap();
    assert_eq!(
        deletion["detail"].as_str().unwrap(),
        blake3::hash(tombstone.as_bytes()).to_hex().as_str()
    );
    node.cli_ok(&["log", "verify"]);
    let status = node.cli_json(&["eliminate", "--status", &gone]);
    assert_eq!(status[0]["tombstone"].as_str().unwrap(), tombstone);

    // OAI-PMH: the public record is reported deleted; the closed one was never listed.
    let id = |r: &str| format!("oai:{}:{r}", node.node_id);
    let r = http::get(
        &gateway,
        &format!(
            "/oai?verb=GetRecord&metadataPrefix=oai_dc&identifier={}",
            id(&gone)
        ),
    );
    let body = r.text();
    assert!(body.contains(r#"<header status="deleted">"#), "{body}");
    let r = http::get(&gateway, "/oai?verb=ListIdentifiers&metadataPrefix=oai_dc");
    let body = r.text();
    assert!(
        body.contains(&id(&gone)) && body.contains(r#"status="deleted""#),
        "{body}"
    );
    assert!(!body.contains(&id(&held)), "{body}");
    let r = http::get(
        &gateway,
        &format!(
            "/oai?verb=GetRecord&metadataPrefix=oai_dc&identifier={}",
            id(&held)
        ),
    );
    assert!(r.text().contains("idDoesNotExist"), "{}", r.text());
}

/// The held blobs of `origin` at a stopped holder.
fn held_blob_count(data: &Path, origin: &str) -> usize {
    use archipel_node::store::BlobStore;
    let db = sled::Config::new().path(data.join("db")).open().unwrap();
    let store = archipel_node::store::FileBlobStore::open_named(
        &data.join("blobs").join("held").join(origin),
        &db,
        &format!("held/{origin}/packed"),
    )
    .unwrap();
    store.list(&[]).count()
}

fn held_record_exists(data: &Path, origin: &str, record: &str) -> bool {
    let db = sled::Config::new().path(data.join("db")).open().unwrap();
    let mut k = origin.as_bytes().to_vec();
    k.extend_from_slice(record.as_bytes());
    db.open_tree("held_records")
        .unwrap()
        .contains_key(&k)
        .unwrap()
        || db
            .open_tree("held_versions")
            .unwrap()
            .scan_prefix(&k)
            .next()
            .is_some()
}

/// Restarts node `i` with `deletion_quarantine_days = 0`.
fn without_quarantine(cluster: &mut TestCluster, i: usize) {
    let cfg = cluster.node(i).data.join("archipel.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[federation]\n",
        "[federation]\ndeletion_quarantine_days = 0\n",
    );
    std::fs::write(&cfg, text).unwrap();
    cluster.restart(i);
}

#[test]
fn elimination_reaches_every_holder_after_its_quarantine_and_is_never_restored() {
    // Node 1 deletes at once; node 2 keeps a 30-day quarantine (the default).
    let mut cluster = TestCluster::start(
        3,
        ClusterOptions {
            node_extra: vec![
                (String::new(), String::new()),
                (String::new(), String::new()),
                (String::new(), String::new()),
            ],
            extra_federation: String::new(),
            ..Default::default()
        },
    );
    // Per-node quarantine: node 1 has none.
    cluster.options.node_extra[1].0.clear();
    without_quarantine(&mut cluster, 1);

    let d = cluster.root().join("files");
    std::fs::create_dir_all(&d).unwrap();
    let gone = cluster.node(0).ingest(
        &[&file(
            &d,
            "a.bin",
            &"registre d'état civil 1901\n".repeat(50_000),
        )],
        "Registre 1901 (copie de travail)",
        &["--dua", "1", "--final", "D", "--date", "2000-01-01"],
    );
    let stays = cluster.node(0).ingest(
        &[&file(&d, "b.txt", "délibération du conseil\n")],
        "Délibération",
        &[],
    );
    for r in [&gone, &stays] {
        cluster.wait_replicated(0, r, 3);
    }
    let origin = cluster.id(0).to_string();
    let kit = cluster.root().join("kit.age");
    cluster.export_kit(0, &kit);

    cluster
        .node(0)
        .cli_ok(&["eliminate", &gone, "--visa", VISA]);
    let (n1, n2) = (cluster.id(1).to_string(), cluster.id(2).to_string());
    let status = archipel_tests::cluster::wait_for(
        Duration::from_secs(60),
        "node 1's deletion receipt and node 2's quarantine",
        || {
            let s = cluster.node(0).cli_json(&["eliminate", "--status", &gone]);
            let state = |n: &str| {
                s[0]["holders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|h| h["node_id"] == n)
                    .map(|h| h["state"].as_str().unwrap().to_string())
            };
            if state(&n1).as_deref() == Some("deleted")
                && state(&n2).as_deref() == Some("quarantined")
            {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    );
    let holders = status[0]["holders"].as_array().unwrap();
    let h1 = holders
        .iter()
        .find(|h| h["node_id"] == n1.as_str())
        .unwrap();
    let receipt = h1["receipt"].as_str().unwrap();
    assert!(
        receipt.starts_with("archipel-deletion-receipt/v1\n")
            && receipt.contains(&format!("holder {n1}\n"))
            && receipt.contains(&format!("record {gone}\n")),
        "{receipt}"
    );
    let h2 = holders
        .iter()
        .find(|h| h["node_id"] == n2.as_str())
        .unwrap();
    let until = h2["quarantined_until"].as_str().unwrap();
    let year: i32 = until[..4].parse().unwrap();
    assert!(until > "2026" && year >= 2026, "{until}");

    // Each holder logged the tombstone; node 1 also the deletion.
    let t1 = types(&events_of(cluster.node(1), &gone)).join(",");
    assert!(
        t1.contains("deaccession") && t1.contains("deletion"),
        "{t1}"
    );
    let t2 = types(&events_of(cluster.node(2), &gone)).join(",");
    assert!(
        t2.contains("deaccession") && !t2.contains("deletion"),
        "{t2}"
    );
    // The origin logged each receipt.
    let t0: Vec<Value> = events_of(cluster.node(0), &gone);
    assert!(
        t0.iter().any(|e| e["type"] == "deletion"
            && e["agent_actor"] == format!("holder-{n1}").as_str()),
        "{t0:?}"
    );

    // The witnesses have the origin's log up to its deletion event (a restore gets it back).
    let deleted_at = t0.iter().find(|e| e["type"] == "deletion").unwrap()["index"]
        .as_u64()
        .unwrap();
    archipel_tests::cluster::wait_for(
        Duration::from_secs(60),
        "a checkpoint past the deletion event, cosigned by both witnesses",
        || {
            let cp = cluster.node(0).cli_json(&["log", "checkpoint"]);
            let cosigners = cp["cosigners"].as_array().map_or(0, Vec::len);
            if cp["size"].as_u64().unwrap_or(0) > deleted_at && cosigners >= 2 {
                Ok(())
            } else {
                Err(cp.to_string())
            }
        },
    );

    // On disk: node 1 has nothing left of it (no envelope, no key envelope, no blob),
    // node 2 still has everything (the quarantine), the origin has no key envelope.
    cluster.stop(1);
    cluster.stop(2);
    cluster.stop(0);
    assert!(!held_record_exists(&cluster.node(1).data, &origin, &gone));
    assert!(held_record_exists(&cluster.node(2).data, &origin, &gone));
    let (b1, b2) = (
        held_blob_count(&cluster.node(1).data, &origin),
        held_blob_count(&cluster.node(2).data, &origin),
    );
    assert!(b2 > b1 && b1 >= 1, "node 1 holds {b1} blobs, node 2 {b2}");
    assert!(!archipel_tests::key_envelopes(&cluster.node(0).data).contains_key(&gone));
    cluster.start_node(1);
    cluster.start_node(2);

    // Ransomware at the origin: restored from both holders with its kit, it gets back the
    // record that stays and its log, never the eliminated one (node 2 still has it).
    cluster.wipe(0);
    let out = cluster.restore(0, &kit, &[1, 2]);
    assert!(
        archipel_tests::stdout(&out).contains("1 lawful elimination(s) came back"),
        "{}",
        archipel_tests::stdout(&out)
    );
    cluster.start_node(0);
    // The proof of the elimination came back: the same signed tombstone, node 1's receipt.
    let back = cluster.node(0).cli_json(&["eliminate", "--status", &gone]);
    assert_eq!(back[0]["tombstone"], status[0]["tombstone"], "{back}");
    let h1 = back[0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["node_id"] == n1.as_str())
        .unwrap();
    assert_eq!(h1["state"], "deleted", "{back}");
    let ids: Vec<String> = cluster
        .node(0)
        .cli_json(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![stays.clone()]);
    expect_code(
        &cluster.node(0).cli(&["get", &gone, "-o", p(&d.join("x"))]),
        4,
        "eliminated record after restore",
    );
    assert!(types(&events_of(cluster.node(0), &gone)).contains(&"deletion"));
}

/// The node stopped cleanly and opened as a library: nothing staged, the blob store holds
/// exactly the blobs its records reference, and the counters agree.
fn check_no_orphan_blob(data: &Path, records: &[String]) {
    let node = archipel_node::Node::open(archipel_node::Config::with_data_dir(data)).unwrap();
    let a = &node.archive;
    assert_eq!(a.store.staged_count(), 0, "staged blobs after a clean stop");
    let mut referenced = std::collections::BTreeSet::new();
    let mut listed = Vec::new();
    for id in a.record_ids() {
        let id = id.unwrap();
        referenced.extend(a.manifest(&id).unwrap().blob_ids());
        listed.push(id);
    }
    listed.sort();
    let mut want = records.to_vec();
    want.sort();
    assert_eq!(listed, want, "records left");
    let stored: std::collections::BTreeSet<[u8; 32]> =
        a.store.blobs.list(&[]).map(|b| b.unwrap()).collect();
    assert_eq!(stored, referenced, "stored blobs against referenced blobs");
    assert_eq!(a.store.blob_count().unwrap(), referenced.len() as u64);
    assert_eq!(a.store.record_count().unwrap(), records.len() as u64);
}

#[test]
fn acknowledged_eliminations_survive_sigkill_and_leave_no_orphan_blob() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("ARCHIPEL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0E11_0A7E);
    eprintln!("seed {seed} (reproduce with ARCHIPEL_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(dir.path(), "node", "Commune de Plougastel").unwrap();
    node.start().unwrap();
    let d = dir.path().join("files");
    std::fs::create_dir_all(&d).unwrap();
    // 20 eliminable records of 1 KiB to 6 MiB (full-size and packed blobs); every fourth
    // has a twin with the same content that is kept (sort final C): its blobs must stay.
    let mut content: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut doomed = Vec::new();
    for i in 0..20u64 {
        let size = if i % 3 == 0 {
            rng.gen_range(1_048_576..6_291_456)
        } else {
            rng.gen_range(1_024..200_000)
        };
        let path = d.join(format!("piece-{i}.bin"));
        archipel_tests::random_file(&path, size, seed ^ i).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let id = node.ingest(
            &[&path],
            &format!("Pièce {i}"),
            &["--dua", "1", "--final", "D", "--date", "2000-01-01"],
        );
        content.insert(id.clone(), bytes.clone());
        doomed.push(id);
        if i % 4 == 0 {
            let twin = node.ingest(
                &[&path],
                &format!("Copie {i}"),
                &["--dua", "1", "--final", "C", "--date", "2000-01-01"],
            );
            content.insert(twin, bytes);
        }
    }
    let mut eliminated: std::collections::BTreeSet<String> = Default::default();
    let mut round = 0;
    while eliminated.len() < doomed.len() && round < 8 {
        round += 1;
        let todo: Vec<String> = doomed
            .iter()
            .filter(|id| !eliminated.contains(*id))
            .cloned()
            .collect();
        let acked = std::sync::Mutex::new(Vec::<String>::new());
        let kill_after = Duration::from_millis(rng.gen_range(20..400));
        std::thread::scope(|s| {
            s.spawn(|| {
                for id in &todo {
                    let out = node.cli(&["eliminate", id, "--visa", VISA]);
                    if out.status.success() {
                        acked.lock().unwrap().push(id.clone());
                    } else {
                        break;
                    }
                }
            });
            std::thread::sleep(kill_after);
            // SIGKILL while eliminations are in flight; the writer's next call fails.
            let pid = node.pid().unwrap();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        });
        node.kill();
        node.start().unwrap();
        let acked = acked.into_inner().unwrap();
        // Every acknowledged elimination holds; every other record is whole or eliminated.
        for id in content.keys() {
            let out = node.cli(&["get", id, "-o", p(&dir.path().join("out"))]);
            let _ = std::fs::remove_file(dir.path().join("out"));
            if out.status.success() {
                assert!(
                    !acked.contains(id),
                    "round {round}: acknowledged elimination of {id} undone"
                );
                node.assert_get_file(id, &dir.path().join("check"), &content[id]);
                let _ = std::fs::remove_file(dir.path().join("check"));
            } else {
                expect_code(&out, 4, "an eliminated record");
                assert!(doomed.contains(id), "round {round}: kept record {id} lost");
                eliminated.insert(id.clone());
            }
        }
        for id in &acked {
            assert!(
                eliminated.contains(id),
                "round {round}: {id} acknowledged, still there"
            );
        }
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} eliminated so far",
            eliminated.len()
        );
    }
    node.stop().unwrap();
    let left: Vec<String> = content
        .keys()
        .filter(|id| !eliminated.contains(*id))
        .cloned()
        .collect();
    check_no_orphan_blob(&node.data, &left);
}

/// Waits until node `i` lists the tombstone of `record` in `state`; returns the entry.
fn wait_held_tombstone(cluster: &TestCluster, i: usize, record: &str, state: &str) -> Value {
    archipel_tests::cluster::wait_for(
        Duration::from_secs(60),
        &format!("the tombstone of {record} {state} at node {i}"),
        || {
            let l = cluster.node(i).cli_json(&["tombstones", "ls"]);
            l.as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|t| t["record"] == record && t["state"] == state)
                })
                .cloned()
                .ok_or_else(|| l.to_string())
        },
    )
}

/// A holder's archivist doubts an elimination (a compromised origin could order many):
/// they suspend the deletion, the copy outlives the quarantine, then they resume it and the
/// copy goes, with its receipt. Every step is logged at the holder; bad requests are refused
/// with the matching exit code and change nothing.
#[test]
fn a_holder_suspends_a_doubtful_deletion_past_its_quarantine_then_resumes_it() {
    let mut cluster = TestCluster::start(
        2,
        ClusterOptions {
            replication_factor: 2,
            ..Default::default()
        },
    );
    let d = cluster.root().join("files");
    std::fs::create_dir_all(&d).unwrap();
    let dua = ["--dua", "1", "--final", "D", "--date", "2000-01-01"];
    let doubt = cluster.node(0).ingest(
        &[&file(
            &d,
            "a.txt",
            &"liste électorale 1990\n".repeat(20_000),
        )],
        "Liste électorale 1990",
        &dua,
    );
    let fine = cluster.node(0).ingest(
        &[&file(
            &d,
            "b.txt",
            &"bons de commande 1995\n".repeat(20_000),
        )],
        "Bons de commande 1995",
        &dua,
    );
    for r in [&doubt, &fine] {
        cluster.wait_replicated(0, r, 2);
    }
    let origin = cluster.id(0).to_string();
    let before = archipel_node::clock::now_unix();
    cluster
        .node(0)
        .cli_ok(&["eliminate", &doubt, &fine, "--visa", VISA]);

    // The holder lists both tombstones, in its 30-day quarantine (the default).
    let listed = |cluster: &TestCluster| cluster.node(1).cli_json(&["tombstones", "ls"]);
    let state_of = |list: &Value, record: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["record"] == record)
            .cloned()
    };
    let list = archipel_tests::cluster::wait_for(
        Duration::from_secs(60),
        "both tombstones at the holder",
        || {
            let l = listed(&cluster);
            if l.as_array().map_or(0, Vec::len) == 2 {
                Ok(l)
            } else {
                Err(l.to_string())
            }
        },
    );
    let t = state_of(&list, &doubt).unwrap();
    assert_eq!(t["state"], "quarantined", "{t}");
    assert_eq!(t["origin"], origin.as_str(), "{t}");
    assert_eq!(t["visa"], VISA, "{t}");
    // 30 days after its arrival, which came between the elimination and now (RFC 3339
    // UTC of one format compares as text).
    let month = 30 * 86_400;
    let after = archipel_node::clock::now_unix();
    let delete_after = t["delete_after"].as_str().unwrap();
    assert!(
        delete_after >= archipel_node::clock::rfc3339(before + month).as_str()
            && delete_after <= archipel_node::clock::rfc3339(after + month).as_str(),
        "{t}"
    );

    // Bad requests: no reason, an unknown record, resuming what is not suspended.
    let n1 = cluster.node(1);
    let out = n1.cli(&["tombstones", "suspend", &origin, &doubt, "--reason", " "]);
    expect_code(&out, 5, "suspension without a reason");
    let out = n1.cli(&[
        "tombstones",
        "suspend",
        &origin,
        "01KAX7M3S1H4T6Q9W2Z8B5C0DE",
        "--reason",
        "x",
    ]);
    expect_code(&out, 4, "suspension of an unknown tombstone");
    let out = n1.cli(&["tombstones", "resume", &origin, &doubt]);
    expect_code(&out, 9, "resuming a deletion that is not suspended");

    let reason = "visa inconnu des archives départementales (appel du 26/11)";
    let s = n1.cli_json(&["tombstones", "suspend", &origin, &doubt, "--reason", reason]);
    assert_eq!(s[0]["state"], "suspended", "{s}");
    assert_eq!(s[0]["suspended"], reason, "{s}");
    let out = n1.cli(&["tombstones", "suspend", &origin, &doubt, "--reason", reason]);
    expect_code(&out, 9, "suspending twice");
    let t = types(&events_of(n1, &doubt)).join(",");
    assert!(
        t.contains("deaccession") && t.contains("archipel:tombstone suspension"),
        "{t}"
    );

    // The quarantine ends (the holder restarts with none): the other copy is deleted at
    // the next pass, the suspended one stays.
    without_quarantine(&mut cluster, 1);
    wait_held_tombstone(&cluster, 1, &fine, "deleted");
    let l = listed(&cluster);
    assert_eq!(state_of(&l, &doubt).unwrap()["state"], "suspended", "{l}");
    cluster.stop(1);
    assert!(held_record_exists(&cluster.node(1).data, &origin, &doubt));
    assert!(!held_record_exists(&cluster.node(1).data, &origin, &fine));
    cluster.start_node(1);

    // Resumed: the quarantine is over, so the copy goes at the next pass, with a receipt.
    let n1 = cluster.node(1);
    let r = n1.cli_json(&["tombstones", "resume", &origin, &doubt]);
    assert_eq!(r[0]["state"], "quarantined", "{r}");
    let t = wait_held_tombstone(&cluster, 1, &doubt, "deleted");
    assert!(
        t["receipt"]
            .as_str()
            .unwrap()
            .starts_with("archipel-deletion-receipt/v1\n"),
        "{t}"
    );
    let n1 = cluster.node(1);
    let out = n1.cli(&["tombstones", "resume", &origin, &doubt]);
    expect_code(&out, 9, "resuming a deletion already done");
    let ev = types(&events_of(n1, &doubt)).join(",");
    assert!(
        ev.contains("archipel:tombstone resumption") && ev.ends_with("deletion"),
        "{ev}"
    );
    cluster.stop(1);
    assert!(!held_record_exists(&cluster.node(1).data, &origin, &doubt));
}
