//! Peers: territories pin each other by node ID and talk over mutual TLS; a node nobody
//! pinned is refused; changes apply without a restart and are in the audit log.

use archipel_tests::cluster::free_port;
use archipel_tests::{TestNode, expect_code};
use serde_json::Value;
use std::path::Path;

fn node(root: &Path, name: &str, territory: &str) -> (TestNode, String) {
    let address = format!("127.0.0.1:{}", free_port());
    let mut n =
        TestNode::init_with(root, name, territory, &["--peer-listen", &address]).expect("init");
    n.start().expect("start");
    (n, address)
}

fn add(of: &TestNode, peer: &TestNode, address: &str, territory: &str) {
    of.cli_ok(&[
        "peer",
        "add",
        "--id",
        &peer.node_id,
        "--address",
        address,
        "--territory",
        territory,
        "--zone",
        "29",
        "--offer",
        "500G",
    ]);
}

fn ls(n: &TestNode) -> Vec<Value> {
    n.cli_json(&["peer", "ls"])
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn territories_that_pin_each_other_talk_and_strangers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (commune, commune_addr) = node(tmp.path(), "commune", "Commune de Plougastel");
    let (ad, ad_addr) = node(tmp.path(), "ad", "Archives départementales du Finistère");
    let (stranger, _) = node(tmp.path(), "stranger", "Inconnue");

    let status = commune.cli_json(&["status"]);
    assert_eq!(status["peer_address"], commune_addr.as_str());

    // Pinned one way only: the AD refuses the commune's certificate.
    add(&commune, &ad, &ad_addr, "AD 29");
    let peers = ls(&commune);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["reachable"], false, "{peers:?}");

    // Both ways: they talk, and the AD announces its own territory.
    add(&ad, &commune, &commune_addr, "Plougastel");
    let peers = ls(&commune);
    assert_eq!(peers[0]["reachable"], true, "{peers:?}");
    assert_eq!(
        peers[0]["announced_territory"],
        "Archives départementales du Finistère"
    );
    assert_eq!(peers[0]["offer_bytes"], 500u64 << 30);
    assert_eq!(peers[0]["zone"], "29");

    // A stranger that pins the commune is still refused by the commune.
    add(&stranger, &commune, &commune_addr, "Plougastel");
    let seen = ls(&stranger);
    assert_eq!(seen[0]["reachable"], false, "{seen:?}");

    // A peer entry whose ID is not the node at that address is refused by TLS pinning.
    stranger.cli_ok(&["peer", "remove", &commune.node_id]);
    stranger.cli_ok(&[
        "peer",
        "add",
        "--id",
        &ad.node_id,
        "--address",
        &commune_addr,
        "--territory",
        "faux",
    ]);
    let seen = ls(&stranger);
    assert_eq!(seen[0]["reachable"], false, "{seen:?}");

    // Removing applies at once, without a restart.
    ad.cli_ok(&["peer", "remove", &commune.node_id]);
    let peers = ls(&commune);
    assert_eq!(peers[0]["reachable"], false, "{peers:?}");
    assert!(ls(&ad).is_empty());

    // Every change is in the audit log.
    let events = ad.cli_json(&["log", "tail", "-n", "100"]);
    let changes: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "archipel:peer change")
        .collect();
    assert_eq!(changes.len(), 2, "{events}");
    assert_eq!(changes[0]["object"], commune.node_id.as_str());
}

#[test]
fn peers_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, a_addr) = node(tmp.path(), "a", "A");
    let (mut b, b_addr) = node(tmp.path(), "b", "B");
    add(&a, &b, &b_addr, "B");
    add(&b, &a, &a_addr, "A");
    a.restart().unwrap();
    b.restart().unwrap();
    let peers = ls(&a);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["reachable"], true, "{peers:?}");
}

#[test]
fn bad_peer_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = node(tmp.path(), "a", "A");
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--id",
                "not-an-id",
                "--address",
                "127.0.0.1:1",
                "--territory",
                "X",
            ],
            "not a node ID",
        ),
        (
            &[
                "--id",
                &a.node_id,
                "--address",
                "127.0.0.1:1",
                "--territory",
                "X",
            ],
            "own peer",
        ),
        (
            &[
                "--id",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "--address",
                "nowhere",
                "--territory",
                "X",
            ],
            "HOST:PORT",
        ),
        (
            &[
                "--id",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "--address",
                "127.0.0.1:1",
                "--territory",
                " ",
            ],
            "territory",
        ),
    ];
    for (args, msg) in cases {
        let mut full = vec!["peer", "add"];
        full.extend_from_slice(args);
        let e = expect_code(&a.cli(&full), 5, msg);
        assert!(e.contains(msg), "{e}");
    }
    let e = expect_code(
        &a.cli(&["peer", "remove", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]),
        4,
        "unknown",
    );
    assert!(e.contains("no peer"), "{e}");
    assert!(ls(&a).is_empty());
}
