//! `/metrics`: Prometheus text with the node's counters, what it holds, gateway answers and
//! latency histograms, measured on a real node.

#[path = "support/http.rs"]
mod http;

use archipel_tests::TestNode;
use archipel_tests::cluster::free_port;
use std::io::Write;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn metrics_count_records_reads_and_gateway_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = TestNode::init_with(
        tmp.path(),
        "n",
        "Commune de Morlaix",
        &["--gateway-listen", "127.0.0.1:0"],
    )
    .unwrap();
    let metrics = format!("http://127.0.0.1:{}", free_port());
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(n.data.join("archipel.toml"))
        .unwrap();
    writeln!(
        cfg,
        "metrics_listen = {:?}",
        metrics.trim_start_matches("http://")
    )
    .unwrap();
    n.start().unwrap();

    let before = http::get(&metrics, "/metrics");
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(value(&before.text(), "archipel_records "), 0.0);

    let f = tmp.path().join("arrete.pdf");
    std::fs::write(&f, vec![7u8; 50_000]).unwrap();
    let id = n.ingest(
        &[&f],
        "Arrêté municipal",
        &["--communicability", "immediate"],
    );
    n.cli_ok(&[
        "get",
        &id,
        "-o",
        tmp.path().join("out.pdf").to_str().unwrap(),
    ]);
    let gateway = n.cli_json(&["status"])["gateway_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http::get(&gateway, &format!("/api/records/{id}")).status,
        200
    );
    assert_eq!(http::get(&gateway, "/api/records/NOPE").status, 404);

    let t = http::get(&metrics, "/metrics").text();
    assert_eq!(value(&t, "archipel_records "), 1.0);
    assert!(value(&t, "archipel_stored_bytes ") >= 50_000.0);
    assert_eq!(value(&t, "archipel_ingest_seconds_count "), 1.0);
    assert_eq!(value(&t, "archipel_get_seconds_count "), 1.0);
    assert!(value(&t, "archipel_gateway_responses_total{class=\"2xx\"} ") >= 1.0);
    assert!(value(&t, "archipel_gateway_responses_total{class=\"4xx\"} ") >= 1.0);
    assert!(value(&t, "archipel_log_entries ") >= 3.0);
}
