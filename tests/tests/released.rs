//! Released records survive their origin: once a commune's record is communicable, its key
//! goes to the holders, and a peer territory's gateway serves it while the commune's node
//! is stopped. A record that is not communicable is never served there.

#[path = "support/http.rs"]
mod http;

use archipel_tests::cluster::{ClusterOptions, TestCluster};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

#[test]
fn a_peer_gateway_serves_released_public_records_while_the_origin_is_down() {
    let mut c = TestCluster::start(
        3,
        ClusterOptions {
            // Every node serves a gateway on a port of its own (status reports it).
            extra_config: "gateway_listen = \"127.0.0.1:0\"\n".into(),
            ..Default::default()
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let open_path = tmp.path().join("deliberation-1998.pdf");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&open_path, &content).unwrap();
    let closed_path = tmp.path().join("naissances-2020.pdf");
    std::fs::write(&closed_path, b"registre des naissances").unwrap();
    let open = c.node(0).ingest(
        &[&open_path],
        "Registre des délibérations 1998",
        &["--communicability", "immediate", "--producer", "Mairie"],
    );
    let closed = c.node(0).ingest(
        &[&closed_path],
        "Naissances 2020",
        &[
            "--communicability",
            "l213-2-4",
            "--date",
            "2020-03-01",
            "--metadata-public",
        ],
    );
    let holders = c.wait_replicated(0, &open, 3);
    c.wait_replicated(0, &closed, 3);
    let h = c.index_of(&holders[0]).unwrap();
    let to_h = format!("release-{}", c.id(h));
    c.wait_until(
        WAIT,
        "the commune to release its public record to the holder",
        |c| {
            c.node(0)
                .cli_ok(&["log", "export", "--format", "jsonl"])
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|e| {
                    e["type"] == "dissemination"
                        && e["object"] == open.as_str()
                        && e["agent_actor"] == to_h.as_str()
                })
        },
    );
    let gateway = c.node(h).cli_json(&["status"])["gateway_url"]
        .as_str()
        .expect("the holder reports its gateway")
        .to_string();

    // The commune goes down.
    c.stop(0);

    // The holder's gateway serves the commune's public record: metadata, search, content.
    let r = http::get(&gateway, &format!("/api/records/{open}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["title"], "Registre des délibérations 1998");
    assert_eq!(
        v["publisher"],
        c.territory(0),
        "the commune is named as publisher"
    );
    let r = http::get(&gateway, "/api/records?q=deliberations");
    assert!(r.text().contains(&open), "found by search: {}", r.text());
    let r = http::get(
        &gateway,
        &format!("/records/{open}/files/deliberation-1998.pdf"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, content, "byte for byte");
    let r = http::get(&gateway, &format!("/records/{open}"));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("lang=\"fr\""));

    // The record under a 75-year delay was never released: the holder cannot read it, and
    // says it does not know it.
    for path in [
        format!("/api/records/{closed}"),
        format!("/records/{closed}/files/naissances-2020.pdf"),
    ] {
        let r = http::get(&gateway, &path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
}
