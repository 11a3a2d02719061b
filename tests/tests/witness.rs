//! Witnessing between real nodes: each node cosigns its peer's checkpoints (C2SP
//! tlog-witness, cosignature/v1), and the owner's checkpoints carry those cosignatures; a
//! node re-created from its recovery kit with another history is a fork, which its witness
//! refuses to cosign and records as an alert.

use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::note::{CosignatureVerifier, Note, Verifier};
use archipel_tests::bin;
use archipel_tests::cluster::{ClusterOptions, KIT_PASSPHRASE, TestCluster, wait_for};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Two nodes witnessing each other every second. The other periodic jobs are slow, so that
/// the logs stop growing once replication is done and the latest checkpoint gets cosigned.
fn cluster() -> TestCluster {
    TestCluster::start(
        2,
        ClusterOptions {
            replication_factor: 2,
            anti_entropy_interval_secs: 3600,
            challenge_interval_secs: 3600,
            scrub_interval_secs: 3600,
            holder_grace_secs: 3600,
            witness_interval_secs: 1,
            ..ClusterOptions::default()
        },
    )
}

/// Node `i`'s log key, from `archipel status`.
fn log_verifier(c: &TestCluster, i: usize) -> Verifier {
    let s = c.node(i).cli_json(&["status"]);
    s["log_vkey"]
        .as_str()
        .expect("log_vkey")
        .parse()
        .expect("a valid vkey")
}

/// The cosignature line of `witness` (a node ID) in `note`, checked with its key; returns
/// the cosignature's timestamp.
fn cosigned_by(note: &str, witness: &str, key: &Verifier) -> Result<u64, String> {
    let parsed = Note::parse(note.as_bytes()).map_err(|e| e.to_string())?;
    let sig = parsed
        .signatures
        .iter()
        .find(|s| {
            s.name.starts_with("archipel-witness/") && s.name.ends_with(&format!("/{witness}"))
        })
        .ok_or_else(|| format!("no cosignature line of {witness} in\n{note}"))?;
    let v = CosignatureVerifier::new(&sig.name, *key.public_key()).map_err(|e| e.to_string())?;
    if v.key_id() != sig.key_id {
        return Err("the key ID does not match the witness key".into());
    }
    v.verify(&parsed.text, &sig.signature)
        .map_err(|e| format!("cosignature of {witness} does not verify: {e}"))
}

fn alerts_about(c: &TestCluster, at: usize, object: &str) -> Vec<Value> {
    c.node(at)
        .cli_json(&["log", "tail", "-n", "100000"])
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "archipel:alert" && e["object"] == object)
        .cloned()
        .collect()
}

#[test]
fn checkpoints_carry_the_peers_verified_cosignature() {
    let c = cluster();
    for seed in 0..3 {
        c.ingest_random(0, 2000, seed, &format!("Délibération {seed}"));
    }
    let witness_key = log_verifier(&c, 1);
    let own_key = log_verifier(&c, 0);
    let (note, size) = wait_for(
        Duration::from_secs(90),
        "node 0's latest checkpoint to carry node 1's cosignature",
        || {
            let cp = c.node(0).cli_json(&["log", "checkpoint"]);
            let note = cp["checkpoint"].as_str().unwrap_or_default().to_string();
            cosigned_by(&note, c.id(1), &witness_key)?;
            Ok((note, cp["size"].as_u64().unwrap_or(0)))
        },
    );
    // Still the log's own checkpoint, of the whole log.
    let cp = Checkpoint::open(note.as_bytes(), &own_key).expect("verifies with the log key");
    assert_eq!(cp.size, size);
    assert!(size > 3, "the ingests are in the log");
    // A cosignature is not transferable to another checkpoint text.
    let parsed = Note::parse(note.as_bytes()).unwrap();
    let other = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    assert!(cosigned_by(&other, c.id(1), &witness_key).is_err());
    // The CLI names the cosigner, and the log still verifies with the extra lines.
    let json = c.node(0).cli_json(&["log", "checkpoint"]);
    let cosigners: Vec<&str> = json["cosigners"]
        .as_array()
        .expect("cosigners")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(cosigners.iter().any(|n| n.ends_with(c.id(1))), "{json}");
    assert!(parsed.signatures.len() >= 2);
    let verified = c.node(0).cli_json(&["log", "verify"]);
    assert_eq!(verified["ok"], true, "{verified}");
    // The owner remembers what its witness cosigned.
    let account = c.peer_account(0, 1);
    assert!(
        account["cosigned_size"].as_u64().unwrap_or(0) >= size,
        "{account}"
    );
    // Witnessing goes both ways: node 1's log is cosigned by node 0.
    wait_for(
        Duration::from_secs(60),
        "node 1's checkpoint to carry node 0's cosignature",
        || {
            let cp = c.node(1).cli_json(&["log", "checkpoint"]);
            cosigned_by(
                cp["checkpoint"].as_str().unwrap_or_default(),
                c.id(0),
                &own_key,
            )
        },
    );
    assert!(alerts_about(&c, 1, c.id(0)).is_empty());
}

#[test]
fn a_forked_log_is_never_cosigned_and_the_witness_raises_an_alert() {
    let mut c = cluster();
    for seed in 0..2 {
        c.ingest_random(0, 1000, seed, &format!("Arrêté {seed}"));
    }
    let witness_key = log_verifier(&c, 1);
    // The witness cosigned node 0's history and keeps its leaves.
    let cosigned = wait_for(Duration::from_secs(90), "a first cosignature", || {
        let cp = c.node(0).cli_json(&["log", "checkpoint"]);
        cosigned_by(
            cp["checkpoint"].as_str().unwrap_or_default(),
            c.id(1),
            &witness_key,
        )?;
        Ok(cp["size"].as_u64().unwrap_or(0))
    });

    // Node 0 is wiped and re-created from its recovery kit: same key, same origin, a new
    // (different) history.
    let kit = c.root().join("node0.kit");
    c.export_kit(0, &kit);
    let old_origin = c.node(0).cli_json(&["status"])["log_origin"].clone();
    c.wipe(0);
    let data = c.node(0).data.clone();
    let out = Command::new(bin("archipel-node"))
        .args(["init", "--kit"])
        .arg(&kit)
        .arg("--data")
        .arg(&data)
        .args(["--territory", c.territory(0)])
        .env("ARCHIPEL_PASSPHRASE", KIT_PASSPHRASE)
        .output()
        .expect("run archipel-node init --kit");
    assert!(
        out.status.success(),
        "init --kit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.write_config(0);
    c.start_node(0);
    assert_eq!(c.node(0).cli_json(&["status"])["log_origin"], old_origin);
    c.add_peer(0, 1);
    // A new history, longer than the one cosigned (so the owner sends a real consistency
    // proof from the cosigned size, which cannot verify).
    let mut seed = 100;
    while c.node(0).cli_json(&["status"])["log_size"]
        .as_u64()
        .unwrap_or(0)
        <= cosigned
    {
        c.ingest_random(0, 500, seed, "Nouvelle pièce");
        seed += 1;
    }

    let alerts = wait_for(
        Duration::from_secs(90),
        "the witness's alert about node 0's fork",
        || {
            let a = alerts_about(&c, 1, c.id(0));
            if a.is_empty() {
                Err("no alert yet".to_string())
            } else {
                Ok(a)
            }
        },
    );
    assert_eq!(alerts[0]["outcome"], "failure");
    assert_eq!(alerts[0]["agent_actor"], "witness");
    assert_eq!(alerts[0]["agent_node"], c.id(1));
    // The owner was told why.
    assert!(
        c.node(0).log_text().contains("refuses our checkpoint"),
        "node 0's log:\n{}",
        c.node(0).log_text()
    );
    // Never cosigned, however long it asks.
    std::thread::sleep(Duration::from_secs(3));
    let cp = c.node(0).cli_json(&["log", "checkpoint"]);
    let note = cp["checkpoint"].as_str().unwrap_or_default();
    assert!(
        cosigned_by(note, c.id(1), &witness_key).is_err(),
        "the fork got cosigned:\n{note}"
    );
    assert_eq!(cp["cosigners"].as_array().map(Vec::len), Some(0), "{cp}");
    assert_eq!(c.peer_account(0, 1)["cosigned_size"].as_u64(), Some(0));
}
