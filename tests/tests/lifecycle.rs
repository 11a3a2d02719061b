//! Record lifecycle through the real binaries: legal holds (set, lift, refusals, logged,
//! kept across a restart, reason kept off the public log).
#![allow(clippy::unwrap_used)]

use archipel_tests::{TestNode, expect_code};
use serde_json::Value;
use std::path::Path;

fn started(root: &Path) -> TestNode {
    let mut node = TestNode::init(root, "node", "Commune de Test").unwrap();
    node.start().unwrap();
    node
}

fn record(node: &TestNode, dir: &Path, n: u32) -> String {
    let f = dir.join(format!("dossier-{n}.txt"));
    std::fs::write(&f, format!("dossier de contentieux {n}\n")).unwrap();
    node.ingest(
        &[&f],
        &format!("Dossier {n}"),
        &["--dua", "5", "--final", "D"],
    )
}

/// The record's log events, as (type, object), from `log export --format jsonl`.
fn events_of(node: &TestNode, record: &str) -> Vec<String> {
    node.cli_ok(&["log", "export", "--format", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["object"] == record)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_legal_hold_is_set_listed_lifted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = started(dir.path());
    let a = record(&node, dir.path(), 1);
    let b = record(&node, dir.path(), 2);
    let reason = "Contentieux TA Lyon n°2301234, Mme Durand";

    let h = node.cli_json(&["hold", "set", &a, "--reason", reason]);
    assert_eq!(h["record"], a.as_str());
    assert_eq!(h["reason"], reason);
    assert!(h["set_at"].as_str().unwrap().ends_with('Z'));

    // Refusals: held twice (9), no reason (5), unknown record (4), lifting what is not held (9).
    let err = expect_code(
        &node.cli(&["hold", "set", &a, "--reason", "autre"]),
        9,
        "held twice",
    );
    assert!(err.contains("already under a legal hold"), "{err}");
    expect_code(
        &node.cli(&["hold", "set", &b, "--reason", "  "]),
        5,
        "empty reason",
    );
    expect_code(
        &node.cli(&["hold", "set", "01KAX7M3S1H4T6Q9W2Z8B5C0DE", "--reason", "x"]),
        4,
        "unknown record",
    );
    let err = expect_code(&node.cli(&["hold", "lift", &b]), 9, "not held");
    assert!(err.contains("not under a legal hold"), "{err}");

    // Kept across a restart, listed with its reason.
    node.restart().unwrap();
    let ls = node.cli_json(&["hold", "ls"]);
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(ls[0]["record"], a.as_str());
    assert_eq!(ls[0]["reason"], reason);

    let lifted = node.cli_json(&["hold", "lift", &a]);
    assert_eq!(lifted["reason"], reason);
    assert_eq!(node.cli_json(&["hold", "ls"]), serde_json::json!([]));
    expect_code(&node.cli(&["hold", "lift", &a]), 9, "lifted twice");

    // Both changes are in the log, in order; the reason is not (the log is public).
    let events = events_of(&node, &a);
    assert_eq!(
        events[events.len() - 3..],
        ["ingestion", "archipel:hold", "archipel:hold lift"],
        "{events:?}"
    );
    assert!(
        !events_of(&node, &b)
            .iter()
            .any(|e| e.starts_with("archipel:hold"))
    );
    let log = node.cli_ok(&["log", "export", "--format", "jsonl"]);
    assert!(!log.contains("Durand"), "the reason leaked into the log");
    node.cli_ok(&["log", "verify"]);
}
