//! The citizen gateway through a real node process and a real HTTP client (curl): search,
//! record pages in French, communicability enforcement (403 with the opening date, 404),
//! downloads byte for byte with HEAD, ETag/If-None-Match, Range, Content-Disposition, the
//! JSON API against its OpenAPI document, deposit certificates checked by the CLI, HTTPS.
#![allow(clippy::unwrap_used)]

use archipel_tests::{TestNode, p, random_file};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// An HTTP answer as curl saw it.
struct Reply {
    status: u16,
    /// Header names in lower case, of the last response.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `curl` with `args` (before the URL); `-I` for HEAD.
fn curl(url: &str, args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = dir.path().join("h");
    let body = dir.path().join("b");
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "60", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let status = code
        .parse()
        .unwrap_or_else(|_| panic!("curl {url}: {}", String::from_utf8_lossy(&out.stderr)));
    let raw = std::fs::read_to_string(&head).unwrap_or_default();
    let last = raw
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

fn get(base: &str, path: &str) -> Reply {
    curl(&format!("{base}{path}"), &[])
}

fn ingest(node: &TestNode, file: &Path, title: &str, extra: &[&str]) -> String {
    node.ingest(&[file], title, extra)
}

#[test]
fn gateway_serves_communicable_records_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::init_with(
        root.path(),
        "node",
        "Commune de Plougastel",
        &["--gateway-listen", "127.0.0.1:0"],
    )
    .unwrap();
    // A NAAN, so that the ARK route of the OpenAPI document answers.
    let config = node.data.join("archipel.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("ark_naan = \"12345\"\n");
    // Many requests in a row: the rate limit (gateway_abuse.rs) must not depend on speed.
    text.insert_str(0, "gateway_rate_per_sec = 0\n");
    std::fs::write(&config, text).unwrap();
    node.start().unwrap();
    let status = node.cli_json(&["status"]);
    let base = status["gateway_url"].as_str().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let vkey = status["log_vkey"].as_str().unwrap().to_string();

    // An open record: 700 KiB, several chunks of the stream.
    let pdf = root.path().join("Délibération 1998.pdf");
    random_file(&pdf, 700 * 1024 + 17, 7).unwrap();
    let content = std::fs::read(&pdf).unwrap();
    let open = ingest(
        &node,
        &pdf,
        "Registre des délibérations 1998",
        &[
            "--producer",
            "Secrétariat général",
            "--type",
            "délibération",
            "--date-from",
            "1998-01-01",
            "--date-to",
            "1998-12-31",
            "--keyword",
            "voirie",
            "--communicability",
            "immediate",
        ],
    );
    // Not communicable before 2050-06-01 (50 years), metadata public.
    let closed_file = root.path().join("rapport.txt");
    std::fs::write(&closed_file, b"rapport de police").unwrap();
    let public_closed = ingest(
        &node,
        &closed_file,
        "Rapport sur la sécurité du port",
        &[
            "--date",
            "2000-06-01",
            "--communicability",
            "l213-2-3",
            "--metadata-public",
        ],
    );
    // Not communicable, metadata private.
    let secret_file = root.path().join("secret.txt");
    std::fs::write(&secret_file, b"vie privee").unwrap();
    let private = ingest(
        &node,
        &secret_file,
        "Dossier Dupont confidentiel",
        &["--date", "2001-01-01", "--communicability", "l213-2-3"],
    );
    // Markup in metadata must come out escaped.
    let x_file = root.path().join("x.txt");
    std::fs::write(&x_file, b"x").unwrap();
    let markup = ingest(
        &node,
        &x_file,
        "<script>alert(1)</script> Écoles",
        &["--communicability", "immediate"],
    );

    // ---- Home page and search
    let home = get(&base, "/");
    assert_eq!(home.status, 200);
    let html = home.text();
    assert!(html.contains(r#"<html lang="fr">"#), "{html}");
    assert!(html.contains(r#"<label for="q">"#));
    assert!(html.contains("Aller au contenu"));
    assert!(!html.contains("<script"), "no script on the home page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("Dossier Dupont"));

    let found = get(&base, "/?q=deliberations+1998").text();
    assert!(found.contains(&format!("/records/{open}")), "{found}");
    assert!(found.contains("1 document trouvé"), "{found}");
    let by_filter = get(
        &base,
        "/?producer=Secr%C3%A9tariat+g%C3%A9n%C3%A9ral&type=d%C3%A9lib%C3%A9ration&from=1998&to=1998-06-30",
    )
    .text();
    assert!(
        by_filter.contains(&format!("/records/{open}")),
        "{by_filter}"
    );
    assert!(
        !get(&base, "/?from=1999")
            .text()
            .contains(&format!("/records/{open}\""))
    );
    assert!(!get(&base, "/?q=dupont").text().contains(&private));
    let bad = get(&base, "/?page=0");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("numéro de page"), "{}", bad.text());

    // ---- JSON search
    let all = get(&base, "/api/records").json();
    let ids: Vec<&str> = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&open.as_str()) && ids.contains(&public_closed.as_str()));
    assert!(
        !ids.contains(&private.as_str()),
        "a private closed record is listed"
    );
    assert_eq!(all["total"], 3);
    let q = get(&base, "/api/records?q=voirie").json();
    assert_eq!(q["total"], 1);
    assert_eq!(q["records"][0]["id"], open.as_str());
    assert_eq!(q["records"][0]["communicable"], true);
    assert_eq!(get(&base, "/api/records?q=confidentiel").json()["total"], 0);
    let bad = get(&base, "/api/records?from=1998-02-30");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "bad_request");

    // ---- Record page
    let page = get(&base, &format!("/records/{open}"));
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains(r#"<html lang="fr">"#));
    assert!(
        html.contains("<h1>Registre des délibérations 1998</h1>"),
        "{html}"
    );
    assert!(html.contains("Communicable immédiatement"));
    assert!(html.contains("Vérifier"));
    assert!(html.contains(&format!("/records/{open}/certificate")));
    assert!(html.contains("/checkpoint"));
    assert!(
        html.contains(&vkey),
        "the page shows the log's verifier key"
    );
    assert!(html.contains(blake3::hash(&content).to_hex().as_str()));
    assert!(html.contains("du 1er janvier 1998 au 31 décembre 1998"));
    let link = format!("/records/{open}/files/D%C3%A9lib%C3%A9ration%201998.pdf");
    assert!(html.contains(&link), "{html}");
    assert!(html.contains(r#"<meta name="DC.title" content="Registre des délibérations 1998">"#));
    assert!(
        get(&base, &format!("/records/{markup}"))
            .text()
            .contains("&lt;script&gt;")
    );

    // ---- Communicability: 403 with the date when the metadata is public, 404 otherwise
    let pc = get(&base, &format!("/records/{public_closed}")).text();
    assert!(
        pc.contains("Non communicable avant le 1er juin 2050"),
        "{pc}"
    );
    assert!(
        !pc.contains("/files/"),
        "no download link for a closed record"
    );
    let denied = get(
        &base,
        &format!("/records/{public_closed}/files/rapport.txt"),
    );
    assert_eq!(denied.status, 403);
    assert!(denied.text().contains("1er juin 2050"), "{}", denied.text());
    assert!(!denied.text().contains("rapport de police"));
    let pcj = get(&base, &format!("/api/records/{public_closed}")).json();
    assert_eq!(pcj["communicable"], false);
    assert_eq!(pcj["communicable_from"], "2050-06-01");
    assert!(pcj["files"][0]["url"].is_null() && pcj["files"][0]["blake3"].is_null());
    for path in [
        format!("/records/{private}"),
        format!("/records/{private}/files/secret.txt"),
        format!("/records/{private}/certificate"),
        format!("/api/records/{private}"),
        "/records/NOT-A-RECORD".to_string(),
        format!("/records/{open}/files/absent.pdf"),
        "/nowhere".to_string(),
    ] {
        let r = get(&base, &path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("vie privee") && !r.text().contains("Dupont"));
    }
    assert_eq!(
        get(&base, &format!("/api/records/{private}")).json()["error"],
        "not_found"
    );

    // ---- Downloads
    let url = format!("{base}{link}");
    let whole = curl(&url, &[]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == content, "downloaded bytes differ");
    assert_eq!(
        whole.header("content-length"),
        Some(content.len().to_string().as_str())
    );
    assert_eq!(whole.header("content-type"), Some("application/pdf"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let disposition = whole.header("content-disposition").unwrap();
    assert!(
        disposition.contains("filename*=UTF-8''D%C3%A9lib%C3%A9ration%201998.pdf")
            && disposition.contains("filename=\"Deliberation 1998.pdf\""),
        "{disposition}"
    );
    let tag = whole.header("etag").unwrap().to_string();
    assert_eq!(tag, format!("\"b3-{}\"", blake3::hash(&content).to_hex()));
    let cache = whole.header("cache-control").unwrap();
    assert!(
        cache.contains("immutable") && cache.contains("max-age="),
        "{cache}"
    );

    let head = curl(&url, &["-I"]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(content.len().to_string().as_str())
    );
    // With -I, curl writes the headers where the body would go: nothing else came.
    assert!(head.text().starts_with("HTTP/1.1 200") && head.body.len() < 2048);

    let not_modified = curl(&url, &["-H", &format!("If-None-Match: {tag}")]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(tag.as_str()));

    let part = curl(&url, &["-H", "Range: bytes=100000-399999"]);
    assert_eq!(part.status, 206);
    assert!(part.body == content[100_000..400_000]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100000-399999/{}", content.len()).as_str())
    );
    let tail = curl(&url, &["-H", "Range: bytes=-10"]);
    assert_eq!(tail.status, 206);
    assert!(tail.body == content[content.len() - 10..]);
    let beyond = curl(&url, &["-H", &format!("Range: bytes={}-", content.len())]);
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{}", content.len()).as_str())
    );
    // Several ranges: the whole file (documented choice).
    let multi = curl(&url, &["-H", "Range: bytes=0-1,5-6"]);
    assert_eq!(multi.status, 200);
    assert!(multi.body == content);
    // If-Range with another validator: the whole file.
    let stale = curl(&url, &["-H", "Range: bytes=0-1", "-H", "If-Range: \"old\""]);
    assert_eq!(stale.status, 200);

    // ---- JSON record and the OpenAPI document
    let rec = get(&base, &format!("/api/records/{open}")).json();
    assert_eq!(rec["title"], "Registre des délibérations 1998");
    assert_eq!(rec["files"][0]["url"], link.as_str());
    assert_eq!(rec["files"][0]["size"], content.len());
    assert_eq!(
        rec["files"][0]["blake3"],
        blake3::hash(&content).to_hex().as_str()
    );
    assert_eq!(rec["log_vkey"], vkey.as_str());
    let api = get(&base, "/openapi.json");
    assert_eq!(api.status, 200);
    let doc = api.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for stable in [
        "/records/{id}",
        "/records/{id}/files/{name}",
        "/api/records",
        "/api/records/{id}",
    ] {
        assert!(paths.contains_key(stable), "{stable} not in /openapi.json");
    }
    assert_eq!(rec["ark"], format!("ark:/12345/{open}").as_str());
    // Every documented path answers (keeps the document true); the log's tiles need a
    // signed checkpoint, and the first tile is partial below 256 entries.
    node.cli_ok(&["log", "checkpoint"]);
    let size: u64 = get(&base, "/checkpoint")
        .text()
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap();
    let first_tile = if size >= 256 {
        "000".to_string()
    } else {
        format!("000.p/{size}")
    };
    for path in paths.keys() {
        let concrete = path
            .replace("{id}", &open)
            .replace("{name}", "D%C3%A9lib%C3%A9ration%201998.pdf")
            .replace("{naan}", "12345")
            .replace("{level}", "0")
            .replace("{index}", &first_tile);
        let r = curl(&format!("{base}{concrete}"), &["-I"]);
        assert!(
            r.status != 404 && r.status != 405,
            "{path} documented but answers {}",
            r.status
        );
    }

    // ---- Deposit certificate, checked offline by the CLI
    node.cli_ok(&["log", "checkpoint"]);
    let cert = get(&base, &format!("/records/{open}/certificate"));
    assert_eq!(cert.status, 200, "{}", cert.text());
    let cert_file = root.path().join("depot.tlog-proof");
    std::fs::write(&cert_file, &cert.body).unwrap();
    let checked = node.cli_json(&["log", "check-proof", p(&cert_file), "--key", &vkey]);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["event"]["object"], open.as_str(), "{checked}");

    node.stop().unwrap();
}

#[test]
fn gateway_serves_https_with_a_configured_certificate() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::init_with(
        root.path(),
        "node",
        "Commune de Brest",
        &["--gateway-listen", "127.0.0.1:0"],
    )
    .unwrap();
    let cert = root.path().join("gw.crt");
    let key = root.path().join("gw.key");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = node.data.join("archipel.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "gateway_tls_cert = {:?}\ngateway_tls_key = {:?}\n",
        p(&cert),
        p(&key)
    ));
    std::fs::write(&config, text).unwrap();
    node.start().unwrap();
    let base = node.cli_json(&["status"])["gateway_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let home = curl(&format!("{base}/"), &["--cacert", p(&cert)]);
    assert_eq!(home.status, 200);
    assert!(home.text().contains(r#"<html lang="fr">"#));
    node.stop().unwrap();
}

/// Small files are kept decrypted in a bounded cache (gateway/cache.rs): it serves the same
/// bytes and ranges, never outlives a change of communicability, and a damaged blob is a
/// 500, never wrong bytes.
#[test]
fn small_files_come_from_a_verified_cache_that_never_bypasses_access() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::init_with(
        root.path(),
        "node",
        "Commune de Plouguerneau",
        &["--gateway-listen", "127.0.0.1:0"],
    )
    .unwrap();
    let config = node.data.join("archipel.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("gateway_rate_per_sec = 0\n{text}")).unwrap();
    node.start().unwrap();
    let base = |node: &TestNode| {
        node.cli_json(&["status"])["gateway_url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let url = base(&node);

    let small = root.path().join("arrete.pdf");
    random_file(&small, 10 * 1024, 41).unwrap();
    let content = std::fs::read(&small).unwrap();
    let id = ingest(
        &node,
        &small,
        "Arrêté municipal",
        &["--date", "2000-06-01", "--communicability", "immediate"],
    );
    let path = format!("/records/{id}/files/arrete.pdf");
    for _ in 0..3 {
        let r = get(&url, &path);
        assert_eq!(r.status, 200);
        assert!(r.body == content, "cached bytes differ");
        assert_eq!(r.header("content-length"), Some("10240"));
    }
    let part = curl(&format!("{url}{path}"), &["-H", "Range: bytes=100-199"]);
    assert_eq!(part.status, 206);
    assert!(part.body == content[100..200]);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/10240"));
    let tail = curl(&format!("{url}{path}"), &["-H", "Range: bytes=-10"]);
    assert_eq!(tail.status, 206);
    assert!(tail.body == content[10240 - 10..]);

    // The producer withdraws it (a 50-year delay, metadata public): 403 at once, although
    // its bytes were in the cache.
    node.cli_ok(&[
        "edit",
        &id,
        "--communicability",
        "l213-2-3",
        "--metadata-public",
    ]);
    let r = get(&url, &path);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.body != content);

    // A damaged blob of a small file: 500, and not one byte of content.
    let other = root.path().join("plan.pdf");
    random_file(&other, 20 * 1024, 42).unwrap();
    node.stop().unwrap();
    let before_ids = archipel_tests::blob_ids(&node.data);
    node.start().unwrap();
    let id2 = ingest(
        &node,
        &other,
        "Plan cadastral",
        &["--communicability", "immediate"],
    );
    node.stop().unwrap();
    let added: Vec<_> = archipel_tests::blob_ids(&node.data)
        .difference(&before_ids)
        .cloned()
        .collect();
    assert_eq!(added.len(), 1, "one blob for a 20 KiB file");
    archipel_tests::alter_blob(&node.data, &added[0], false);
    node.start().unwrap();
    let r = get(&base(&node), &format!("/records/{id2}/files/plan.pdf"));
    assert_eq!(r.status, 500, "{}", r.text());
    let wanted = std::fs::read(&other).unwrap();
    assert!(
        !r.body.windows(64).any(|w| w == &wanted[..64]) && r.body.len() != wanted.len(),
        "damaged file's bytes were served"
    );
}
