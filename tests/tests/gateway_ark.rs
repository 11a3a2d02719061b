//! Permanent links (issue 5, point 10) through a real node: `ark:/NAAN/<record id>` with the
//! NAAN of the configuration, resolved by the gateway, shown on the record page and in the
//! JSON API.

#[path = "support/http.rs"]
mod http;

use archipel_tests::TestNode;

#[test]
fn ark_identifiers_resolve_to_the_record_page() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::init_with(
        root.path(),
        "node",
        "Commune de Quimper",
        &["--gateway-listen", "127.0.0.1:0"],
    )
    .expect("init");
    let config = node.data.join("archipel.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("ark_naan = \"12345\"\n");
    std::fs::write(&config, text).expect("write config");
    node.start().expect("start");
    let base = node.cli_json(&["status"])["gateway_url"]
        .as_str()
        .expect("gateway_url")
        .to_string();
    let file = root.path().join("plan.txt");
    std::fs::write(&file, b"plan").expect("file");
    let id = node.ingest(
        &[&file],
        "Plan d'alignement",
        &["--communicability", "immediate"],
    );
    let ark = format!("ark:/12345/{id}");

    let r = http::get(&base, &format!("/{ark}"));
    assert_eq!(r.status, 301, "{}", r.text());
    let location = format!("/records/{id}");
    assert_eq!(r.header("location"), Some(location.as_str()));
    let page = http::get(&base, &location).text();
    assert!(page.contains(&format!("href=\"/{ark}\"")), "{page}");
    assert!(page.contains("Lien permanent"), "{page}");
    let json: serde_json::Value =
        serde_json::from_slice(&http::get(&base, &format!("/api/records/{id}")).body)
            .expect("JSON");
    assert_eq!(json["ark"], ark.as_str());

    // Another authority's NAAN, or not a record ID: 404.
    assert_eq!(http::get(&base, &format!("/ark:/54321/{id}")).status, 404);
    assert_eq!(http::get(&base, "/ark:/12345/not-a-record").status, 404);
    node.stop().expect("stop");
}
