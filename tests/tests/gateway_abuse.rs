//! Abuse limits and privacy of the citizen gateway (issue 5, point 9), against a real node
//! process: clean 4xx for path traversal, NUL, bad encoding, malformed queries, absurd
//! ranges, bodies and long URIs; 429 with Retry-After from the per-client rate limit; the
//! header-read timeout; and no client address in the node's log or its audit log.
//!
//! Raw HTTP (support/http.rs) rather than curl: curl would normalise `..` away.

#[path = "support/http.rs"]
mod http;

use archipel_tests::{TestNode, random_file};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A reader's address as a local reverse proxy would forward it (TEST-NET-2, RFC 5737): the
/// node trusts `X-Forwarded-For` from loopback in this test, so this is "the client".
const CLIENT: &str = "198.51.100.23";
const OTHER_CLIENT: &str = "198.51.100.77";

fn get_as(base: &str, path: &str, client: &str, extra: &[(&str, &str)]) -> http::Reply {
    let mut headers = vec![("X-Forwarded-For", client)];
    headers.extend_from_slice(extra);
    http::request(base, "GET", path, &headers, &[])
}

/// A request sent as raw bytes; returns the status and the client's own port (to look for
/// it in the logs afterwards).
fn raw_status(base: &str, request: &str) -> (u16, u16) {
    let host = http::authority(base);
    let mut s = TcpStream::connect(&host).expect("connect");
    let port = s.local_addr().expect("local address").port();
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, port)
}

#[test]
fn the_gateway_refuses_abuse_cleanly_and_logs_no_client_address() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::init_with(
        root.path(),
        "node",
        "Commune de Morlaix",
        &["--gateway-listen", "127.0.0.1:0"],
    )
    .expect("init");
    let config = node.data.join("archipel.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(
        "gateway_rate_per_sec = 2\ngateway_burst = 60\ngateway_trust_forwarded_for = true\n",
    );
    std::fs::write(&config, text).expect("write config");
    node.start().expect("start");
    let base = node.cli_json(&["status"])["gateway_url"]
        .as_str()
        .expect("gateway_url")
        .to_string();
    let file = root.path().join("plan.pdf");
    random_file(&file, 10_000, 3).expect("file");
    let id = node.ingest(
        &[&file],
        "Plan cadastral",
        &["--communicability", "immediate"],
    );
    let mut ports = Vec::new();

    // ---- Path traversal, NUL, encoded slashes, bad encoding: 400 whatever the route.
    for path in [
        format!("/records/{id}/files/..%2F..%2Farchipel.toml"),
        format!("/records/{id}/files/../../archipel.toml"),
        format!("/records/{id}/files/%2e%2e"),
        format!("/records/{id}/files/a%5Cb"),
        format!("/records/{id}/files/plan.pdf%00.txt"),
        format!("/records/{id}%00"),
        "/records/%2e%2e/files/x".to_string(),
        format!("/records/{id}/files/%ff"),
        format!("/records/{id}/files/a%zz"),
        "/tile/0/..%2F000".to_string(),
    ] {
        let (status, port) = raw_status(
            &base,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {CLIENT}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(status, 400, "{path}");
        ports.push(port);
    }
    let api = get_as(&base, "/api/records/%00", CLIENT, &[]);
    assert_eq!(api.status, 400);
    assert!(api.text().contains("\"bad_request\""), "{}", api.text());
    let page = get_as(&base, "/records/x/files/..%2Fx", CLIENT, &[]);
    assert!(
        page.text().contains("lang=\"fr\""),
        "an error page in French"
    );
    // The real file is still served.
    assert_eq!(
        get_as(&base, &format!("/records/{id}/files/plan.pdf"), CLIENT, &[]).status,
        200
    );

    // ---- Malformed queries: 400 with a French message; far too long: 414.
    for path in [
        "/?page=abc".to_string(),
        "/?page=0".to_string(),
        "/?from=1998-13-45".to_string(),
        "/api/records?q=%FF".to_string(),
        format!("/?q={}", "a".repeat(5000)),
    ] {
        let r = get_as(&base, &path, CLIENT, &[]);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert_eq!(
        get_as(&base, &format!("/?q={}", "a".repeat(9000)), CLIENT, &[]).status,
        414
    );

    // ---- Absurd ranges: beyond the end 416 with the size; overflowing numbers too; several
    // ranges or nonsense are ignored (200, the whole file).
    let file_path = format!("/records/{id}/files/plan.pdf");
    for (range, want) in [
        ("bytes=10000-", 416),
        ("bytes=99999999999999999999999-", 416),
        ("bytes=0-0,5-9", 200),
        ("bytes=9-2", 200),
        ("octets=0-3", 200),
        ("bytes=0-99999999999999999999999", 206),
    ] {
        let r = get_as(&base, &file_path, CLIENT, &[("Range", range)]);
        assert_eq!(r.status, want, "{range}");
        if want == 416 {
            assert_eq!(r.header("content-range"), Some("bytes */10000"));
        }
    }

    // ---- Bodies: none but the OAI-PMH form, bounded.
    let h = [("X-Forwarded-For", CLIENT)];
    assert_eq!(http::request(&base, "GET", "/", &h, b"x=1").status, 413);
    assert_eq!(
        http::request(&base, "POST", "/api/records", &h, b"q=x").status,
        413
    );
    let form = [
        ("X-Forwarded-For", CLIENT),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let ok = http::request(&base, "POST", "/oai", &form, b"verb=Identify");
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("<Identify>"), "{}", ok.text());
    let big = vec![b'a'; 20 * 1024];
    assert_eq!(
        http::request(&base, "POST", "/oai", &form, &big).status,
        413
    );

    // ---- The rate limit: this client runs out (2 a second, burst 60), another does not.
    let mut limited = None;
    for _ in 0..200 {
        let r = get_as(&base, "/api/records", CLIENT, &[]);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let limited = limited.expect("no 429 after 200 requests");
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert!(limited.text().contains("\"too_many_requests\""));
    let page = get_as(&base, "/", CLIENT, &[]);
    assert_eq!(page.status, 429);
    assert!(page.text().contains("Trop de requêtes"), "{}", page.text());
    // OAI-PMH harvesters get the protocol's own flow control: 503 with Retry-After.
    let oai = get_as(&base, "/oai?verb=Identify", CLIENT, &[]);
    assert_eq!(oai.status, 503);
    assert!(oai.header("retry-after").is_some());
    assert_eq!(get_as(&base, "/", OTHER_CLIENT, &[]).status, 200);
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(get_as(&base, "/", CLIENT, &[]).status, 200);

    // ---- A client that never finishes its request head is cut off (header-read timeout).
    let mut slow = TcpStream::connect(http::authority(&base)).expect("connect");
    ports.push(slow.local_addr().expect("local address").port());
    slow.set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .expect("send");
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(35),
        "connection closed after {waited:?}"
    );

    // ---- Privacy: no client address or port in the node's log nor in the audit log.
    node.cli_ok(&["log", "checkpoint"]);
    let audit = node.cli_ok(&["log", "export", "--format", "jsonl"]);
    assert!(!audit.is_empty());
    node.stop().expect("stop");
    let log = node.log_text();
    assert!(log.contains("gateway serving"), "{log}");
    for text in [&log, &audit] {
        for address in [CLIENT, OTHER_CLIENT] {
            assert!(!text.contains(address), "{address} written: {text}");
        }
        for port in &ports {
            assert!(
                !text.contains(&format!("127.0.0.1:{port}")),
                "client port {port} written: {text}"
            );
        }
    }
}
