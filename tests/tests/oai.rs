//! OAI-PMH through a real node's gateway, harvested by a real harvester: the Python client
//! Sickle (the one FranceArchives uses) runs `tests/python/harvest.py` against a node started
//! with `--gateway-listen`, after records of every kind of communicability were ingested
//! (through the CLI and the admin API). Then HTTP-level checks of what a harvester cannot
//! see through Sickle: content type, POST forms, the request echo, escaping.
//!
//! The test installs nothing: `.ci/run` installs Sickle. Without python3 or Sickle it fails
//! and says so.
#![allow(clippy::unwrap_used)]

#[path = "support/http.rs"]
mod http;

use archipel_proto::v1::archive_client::ArchiveClient;
use archipel_proto::v1::{Commit, FileHeader, IngestRequest, RecordMetadata, ingest_request::Item};
use archipel_tests::TestNode;
use archipel_tests::cluster::free_port;
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// Records per page of the gateway's OAI-PMH lists (`archipel_node::gateway::oai`).
const PAGE_SIZE: usize = archipel_node::gateway::oai::DEFAULT_PAGE_SIZE;

/// A node with its gateway on a loopback port; returns it and the gateway's base URL.
fn gateway_node(root: &Path, territory: &str) -> (TestNode, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut node =
        TestNode::init_with(root, "node", territory, &["--gateway-listen", &listen]).unwrap();
    // This test reads many pages quickly: the per-client rate limit (tested in
    // gateway_abuse.rs) is switched off so that the machine's speed cannot make it fail.
    let config = node.data.join("archipel.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.insert_str(0, "gateway_rate_per_sec = 0\n");
    std::fs::write(&config, text).unwrap();
    node.start().unwrap();
    let status = node.cli_json(&["status"]);
    let url = status["gateway_url"]
        .as_str()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| panic!("status reports no gateway_url: {status}"))
        .to_string();
    (node, url)
}

/// Ingests one-file records over one admin connection; returns their IDs.
fn ingest_many(node: &TestNode, records: &[RecordMetadata]) -> Vec<String> {
    archipel_tests::runtime().block_on(async {
        let mut client = ArchiveClient::new(archipel_tests::admin_channel(&node.data).await);
        let mut ids = Vec::new();
        for (i, md) in records.iter().enumerate() {
            let bytes = format!("contenu {i} de {}\n", md.title).into_bytes();
            let items = [
                Item::Metadata(md.clone()),
                Item::File(FileHeader {
                    name: format!("piece-{i}.txt"),
                    size: bytes.len() as u64,
                    media_type: "text/plain".into(),
                }),
                Item::Chunk(bytes),
                Item::Commit(Commit {}),
            ];
            let stream = tokio_stream::iter(
                items
                    .into_iter()
                    .map(|item| IngestRequest { item: Some(item) }),
            );
            let id = client
                .ingest(stream)
                .await
                .unwrap_or_else(|e| panic!("ingest {:?}: {e}", md.title))
                .into_inner()
                .id;
            ids.push(id);
        }
        ids
    })
}

fn slug_set(kind: &str, name: &str) -> String {
    format!("{kind}:{}", archipel_node::gateway::oai::slug(name))
}

fn sets_of(md: &RecordMetadata) -> Vec<String> {
    let mut s = Vec::new();
    if !md.producer.is_empty() {
        s.push(slug_set("producer", &md.producer));
    }
    if !md.record_type.is_empty() {
        s.push(slug_set("type", &md.record_type));
    }
    s
}

/// python3 with Sickle, or a failure that says what to install.
fn require_sickle() {
    let out = Command::new("python3")
        .args(["-c", "import sickle"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed by the OAI-PMH harvest test and cannot be run: {e}")
        });
    assert!(
        out.status.success(),
        "the OAI-PMH harvest test needs the Python client Sickle: python3 -m pip install sickle \
         (.ci/run installs it)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sickle_harvests_only_communicable_metadata() {
    require_sickle();
    let root = tempfile::tempdir().unwrap();
    let (node, base) = gateway_node(root.path(), "Commune de Plougastel-Daoulas");
    let oai = format!("{base}/oai");

    // A few records through the CLI, one per rule of what may be published.
    let file = root.path().join("piece.txt");
    std::fs::write(&file, "registre\n").unwrap();
    let cli = |title: &str, extra: &[&str]| node.ingest(&[&file], title, extra);
    let mut visible = serde_json::Map::new();
    let mut hidden_ids = Vec::new();
    let mut hidden_titles = Vec::new();

    let open_title = "Délibérations 1998 <budget> & \"voirie\"";
    let open = cli(
        open_title,
        &[
            "--communicability",
            "immediate",
            "--producer",
            "Secrétariat général",
            "--type",
            "délibération",
            "--date-from",
            "1998-01-01",
            "--date-to",
            "1998-12-31",
            "--keyword",
            "budget",
            "--description",
            "Registre <complet> d'une année & annexes",
        ],
    );
    visible.insert(
        open.clone(),
        json!({"title": open_title, "sets": ["producer:secretariat-general", "type:deliberation"], "open": true}),
    );
    // Opened long ago (25 years after 1990).
    let opened = cli(
        "Enquête fiscale 1990",
        &[
            "--communicability",
            "l213-2-1",
            "--date",
            "1990-06-01",
            "--type",
            "enquête",
        ],
    );
    visible.insert(
        opened.clone(),
        json!({"title": "Enquête fiscale 1990", "sets": ["type:enquete"], "open": true}),
    );
    // Closed until 2071, metadata public: listed with its opening date, content closed.
    let public_meta = cli(
        "Rapport de police 2021",
        &[
            "--communicability",
            "l213-2-3",
            "--date",
            "2021-03-04",
            "--metadata-public",
            "--producer",
            "Police municipale",
        ],
    );
    visible.insert(
        public_meta.clone(),
        json!({"title": "Rapport de police 2021", "sets": ["producer:police-municipale"], "open": false}),
    );
    // Never communicable but metadata public.
    let never_public = cli(
        "Inventaire des armes (notice)",
        &["--communicability", "never", "--metadata-public"],
    );
    visible.insert(
        never_public.clone(),
        json!({"title": "Inventaire des armes (notice)", "sets": [], "open": false}),
    );
    // Hidden: closed with private metadata, never, and no category at all.
    for (title, extra) in [
        (
            "SECRET-naissance-Dupont-2020",
            &[
                "--communicability",
                "l213-2-4",
                "--date",
                "2020-01-01",
                "--producer",
                "État civil",
            ][..],
        ),
        ("SECRET-armes", &["--communicability", "never"][..]),
        (
            "SECRET-sans-categorie",
            &["--producer", "Secrétariat général"][..],
        ),
    ] {
        hidden_ids.push(cli(title, extra));
        hidden_titles.push(title.to_string());
    }

    // Enough records for three pages, with hidden ones among them so that page boundaries
    // fall between them.
    let mut bulk = Vec::new();
    for i in 0..(2 * PAGE_SIZE + 30) {
        let hidden = i % 7 == 3;
        bulk.push(RecordMetadata {
            title: if hidden {
                format!("SECRET-bulk-{i}")
            } else {
                format!("Permis de construire n° {i}")
            },
            producer: "Service urbanisme".into(),
            record_type: if i % 2 == 0 {
                "permis de construire"
            } else {
                "plan"
            }
            .into(),
            communicability: if hidden { "" } else { "immediate" }.into(),
            date: "2001-05-06".into(),
            ..Default::default()
        });
    }
    let bulk_ids = ingest_many(&node, &bulk);
    for (id, md) in bulk_ids.iter().zip(&bulk) {
        if md.communicability.is_empty() {
            hidden_ids.push(id.clone());
            hidden_titles.push(md.title.clone());
        } else {
            visible.insert(
                id.clone(),
                json!({"title": md.title, "sets": sets_of(md), "open": true}),
            );
        }
    }
    assert!(visible.len() > 2 * PAGE_SIZE);

    let status = node.cli_json(&["status"]);
    let expectations = json!({
        "repo": status["node_id"],
        "visible": visible,
        "hidden_ids": hidden_ids,
        "hidden_titles": hidden_titles,
        "today": archipel_node::clock::format_date(archipel_node::clock::today()),
        "page_size": PAGE_SIZE,
    });
    let exp_path = root.path().join("expectations.json");
    std::fs::write(&exp_path, expectations.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/harvest.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&oai)
        .arg(&exp_path)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Sickle harvest failed ({}):\n{stdout}\n{stderr}\nnode log:\n{}",
        out.status,
        node.log_text()
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    eprintln!("{stdout}");

    // HTTP-level details.
    let r = http::get(&base, "/oai?verb=Identify");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    let r = http::get(&base, "/oai?verb=Bogus&x=%3Cscript%3E");
    assert_eq!(r.status, 200, "OAI errors are HTTP 200");
    let text = r.text();
    assert!(text.contains("<error code=\"badVerb\">"), "{text}");
    assert!(
        text.contains(&format!("<request>{oai}</request>")),
        "badVerb echoes no arguments: {text}"
    );
    assert!(!text.contains("<script"), "{text}");
    let r = http::get(
        &base,
        &format!(
            "/oai?verb=GetRecord&metadataPrefix=oai_dc&identifier=oai:{}:{open}",
            status["node_id"].as_str().unwrap()
        ),
    );
    let text = r.text();
    assert!(
        text.contains(
            "<dc:title>Délibérations 1998 &lt;budget&gt; &amp; &quot;voirie&quot;</dc:title>"
        ),
        "{text}"
    );
    assert!(
        text.contains("<dc:date>1998-01-01/1998-12-31</dc:date>"),
        "{text}"
    );
    assert!(text.contains("<dc:subject>budget</dc:subject>"), "{text}");
    assert!(
        text.contains("xsi:schemaLocation=\"http://www.openarchives.org/OAI/2.0/oai_dc/ http://www.openarchives.org/OAI/2.0/oai_dc.xsd\""),
        "{text}"
    );
    let r = http::get(
        &base,
        &format!(
            "/oai?verb=GetRecord&metadataPrefix=oai_dc&identifier=oai:{}:{public_meta}",
            status["node_id"].as_str().unwrap()
        ),
    );
    assert!(
        r.text().contains("Non communicable avant le 2071-03-04"),
        "{}",
        r.text()
    );
    // POST needs a form body.
    let r = http::request(
        &base,
        "POST",
        "/oai",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"verb=ListMetadataFormats",
    );
    assert!(
        r.text().contains("<metadataPrefix>oai_dc</metadataPrefix>"),
        "{}",
        r.text()
    );
    let r = http::request(
        &base,
        "POST",
        "/oai",
        &[("Content-Type", "text/plain")],
        b"verb=Identify",
    );
    assert!(r.text().contains("code=\"badArgument\""), "{}", r.text());
    // Nothing of the hidden records in any list, checked here too without Sickle.
    let r = http::get(&base, "/oai?verb=ListSets");
    let text = r.text();
    assert!(
        text.contains("<setSpec>producer:secretariat-general</setSpec>"),
        "{text}"
    );
    assert!(
        !text.contains("etat-civil"),
        "a hidden record's producer is not a set: {text}"
    );
}
