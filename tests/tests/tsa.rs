#![allow(clippy::unwrap_used)]
//! RFC 3161 time-stamping against a real TSA: `openssl ts -reply` behind a tiny HTTP server
//! run by the test itself (CA and TSA keys and certificates generated in a temporary
//! directory), then the token checked by `openssl ts -verify`. Also the failures: HTTP error
//! status, garbage, a reply for another message, a rejection, a closed port, a silent server,
//! an oversized answer.
//!
//! Needs the `openssl` command line tool (OpenSSL 3).

use archipel_node::log::timestamp::{self, TimestampError, TimestampToken};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MESSAGE: &[u8] = b"some checkpoint text\n";
const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// A local TSA made with openssl
// ---------------------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("cannot run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A CA, a TSA certificate it issued (extendedKeyUsage critical timeStamping) and an
/// `openssl ts` configuration, in a temporary directory.
struct Tsa {
    dir: tempfile::TempDir,
    replies: AtomicUsize,
}

impl Tsa {
    fn new() -> Arc<Tsa> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "\
[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ tsa_cert ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ tsa ]
default_tsa = archipel_test_tsa

[ archipel_test_tsa ]
serial = {d}/tsaserial
crypto_device = builtin
signer_cert = {d}/tsa.pem
certs = {d}/ca.pem
signer_key = {d}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500, microsecs:100
clock_precision_digits = 0
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"
        );
        let p = dir.path();
        std::fs::write(p.join("tsa.cnf"), conf).unwrap();
        std::fs::write(p.join("tsaserial"), "01\n").unwrap();
        let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
        openssl(p, &[&["genpkey"][..], &ec, &["-out", "ca.key"]].concat());
        openssl(
            p,
            &[
                "req",
                "-config",
                "tsa.cnf",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=Archipel Test CA",
                "-days",
                "2",
                "-extensions",
                "v3_ca",
                "-out",
                "ca.pem",
            ],
        );
        openssl(p, &[&["genpkey"][..], &ec, &["-out", "tsa.key"]].concat());
        openssl(
            p,
            &[
                "req",
                "-config",
                "tsa.cnf",
                "-new",
                "-key",
                "tsa.key",
                "-subj",
                "/CN=Archipel Test TSA",
                "-out",
                "tsa.csr",
            ],
        );
        openssl(
            p,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "2",
                "-days",
                "2",
                "-extfile",
                "tsa.cnf",
                "-extensions",
                "tsa_cert",
                "-out",
                "tsa.pem",
            ],
        );
        Arc::new(Tsa {
            dir,
            replies: AtomicUsize::new(0),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `openssl ts -reply` for a DER TimeStampReq.
    fn reply(&self, query: &[u8]) -> Vec<u8> {
        let n = self.replies.fetch_add(1, Ordering::SeqCst);
        let (q, r) = (format!("query-{n}.tsq"), format!("reply-{n}.tsr"));
        std::fs::write(self.path(&q), query).unwrap();
        openssl(
            self.dir.path(),
            &[
                "ts",
                "-reply",
                "-config",
                "tsa.cnf",
                "-queryfile",
                &q,
                "-out",
                &r,
            ],
        );
        std::fs::read(self.path(&r)).unwrap()
    }

    /// `openssl ts -query` for `message` (with openssl's own random nonce).
    fn query(&self, message: &[u8], digest: &str) -> Vec<u8> {
        let n = self.replies.fetch_add(1, Ordering::SeqCst);
        let (m, q) = (format!("other-{n}.txt"), format!("other-{n}.tsq"));
        std::fs::write(self.path(&m), message).unwrap();
        openssl(
            self.dir.path(),
            &["ts", "-query", "-data", &m, digest, "-cert", "-out", &q],
        );
        std::fs::read(self.path(&q)).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// A tiny HTTP server
// ---------------------------------------------------------------------------------------

enum Behaviour {
    /// Answers every query with the TSA's reply.
    Tsa(Arc<Tsa>),
    /// Answers `500 Internal Server Error`.
    Status500,
    /// Answers 200 with bytes that are not DER.
    Garbage,
    /// Answers 200 with a valid, signed reply to a query for another message.
    OtherMessage(Arc<Tsa>),
    /// Answers 200 with the TSA's rejection of a SHA-1 query (not in its `digests`).
    Rejection(Arc<Tsa>),
    /// Reads the request and never answers, until the client gives up.
    Silent,
    /// Answers 200 with no length and more than 64 KiB.
    Endless,
}

fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/timestamp-reply\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads one HTTP request; returns its head (as text) and its body.
fn read_request(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "the client closed the connection before its request was complete"
        );
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("no Content-Length in the request");
        if buf.len() >= end + 4 + length {
            return (head, buf[end + 4..end + 4 + length].to_vec());
        }
    }
}

/// Serves one connection on 127.0.0.1 as `behaviour` says; returns the URL and the thread
/// (which returns the request's head).
fn serve(behaviour: Behaviour) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/tsa", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let (head, query) = read_request(&mut stream);
        let reply = match &behaviour {
            Behaviour::Tsa(tsa) => http_response("200 OK", &tsa.reply(&query)),
            Behaviour::Status500 => {
                http_response("500 Internal Server Error", b"the TSA is out of order")
            }
            Behaviour::Garbage => http_response("200 OK", b"<html>this is not DER</html>"),
            Behaviour::OtherMessage(tsa) => http_response(
                "200 OK",
                &tsa.reply(&tsa.query(b"a different checkpoint\n", "-sha256")),
            ),
            Behaviour::Rejection(tsa) => {
                http_response("200 OK", &tsa.reply(&tsa.query(MESSAGE, "-sha1")))
            }
            Behaviour::Silent => {
                // Until the client closes its end.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                return head;
            }
            Behaviour::Endless => {
                let mut out = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                out.extend(std::iter::repeat_n(0x30u8, 1024 * 1024));
                out
            }
        };
        // The client may hang up early (Endless): not the server's problem.
        let _ = stream.write_all(&reply);
        head
    });
    (url, server)
}

async fn stamp_with(behaviour: Behaviour) -> Result<TimestampToken, TimestampError> {
    let (url, server) = serve(behaviour);
    let result = timestamp::stamp(&url, MESSAGE, TIMEOUT).await;
    let head = server.join().expect("the test server failed");
    assert!(head.starts_with("POST /tsa HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("\r\ncontent-type: application/timestamp-query"),
        "{head}"
    );
    result
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn openssl_understands_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let nonce = 0x8000_0000_0000_002a_u64;
    std::fs::write(
        dir.path().join("req.tsq"),
        timestamp::request_der(MESSAGE, nonce),
    )
    .unwrap();
    let out = openssl(dir.path(), &["ts", "-query", "-in", "req.tsq", "-text"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "Version: 1",
        "Hash Algorithm: sha256",
        "Policy OID: unspecified",
        "Nonce: 0x800000000000002A",
        "Certificate required: yes",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of `YYYYMMDDHHMMSS[.fff]Z`, checking its shape.
fn generalized_time_to_unix(t: &str) -> i64 {
    assert!(t.ends_with('Z'), "{t}");
    let digits = &t[..14];
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{t}");
    let frac = &t[14..t.len() - 1];
    assert!(
        frac.is_empty()
            || (frac.len() > 1
                && frac.starts_with('.')
                && frac[1..].bytes().all(|b| b.is_ascii_digit())),
        "{t}"
    );
    let n = |r: std::ops::Range<usize>| digits[r].parse::<i64>().unwrap();
    let (mo, d, h, mi, s) = (n(4..6), n(6..8), n(8..10), n(10..12), n(12..14));
    assert!((1..=12).contains(&mo) && (1..=31).contains(&d), "{t}");
    assert!(h < 24 && mi < 60 && s <= 60, "{t}");
    days_from_civil(n(0..4), mo, d) * 86_400 + h * 3600 + mi * 60 + s
}

#[tokio::test]
async fn a_real_tsa_time_stamps_a_checkpoint_and_openssl_verifies_the_token() {
    let tsa = Tsa::new();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = stamp_with(Behaviour::Tsa(tsa.clone())).await.unwrap();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // genTime is a GeneralizedTime, and now (the TSA runs on this machine).
    let gen_time = generalized_time_to_unix(&token.gen_time);
    assert!(
        before - 2 <= gen_time && gen_time <= after + 2,
        "genTime {} is not between {before} and {after}",
        token.gen_time
    );

    // The token verifies with openssl against the test CA.
    std::fs::write(tsa.path("token.der"), &token.der).unwrap();
    std::fs::write(tsa.path("checkpoint.txt"), MESSAGE).unwrap();
    let verify = |data: &str| {
        Command::new("openssl")
            .current_dir(tsa.dir.path())
            .args([
                "ts",
                "-verify",
                "-data",
                data,
                "-in",
                "token.der",
                "-token_in",
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "tsa.pem",
            ])
            .output()
            .unwrap()
    };
    let out = verify("checkpoint.txt");
    assert!(
        out.status.success(),
        "openssl ts -verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verification: OK"));
    // ... and only for the message it was made for.
    std::fs::write(tsa.path("other.txt"), b"some other text\n").unwrap();
    assert!(!verify("other.txt").status.success());

    // The stored token reads back.
    let again = TimestampToken::from_der(token.der.clone(), MESSAGE).unwrap();
    assert_eq!(again, token);
    assert!(TimestampToken::from_der(token.der.clone(), b"some other text\n").is_err());

    // Every call uses a fresh nonce: a second stamp succeeds too, with its own token.
    let second = stamp_with(Behaviour::Tsa(tsa.clone())).await.unwrap();
    assert_ne!(second.der, token.der);
}

#[tokio::test]
async fn an_http_error_status_is_reported() {
    let err = stamp_with(Behaviour::Status500).await.unwrap_err();
    assert!(
        matches!(err, TimestampError::HttpStatus { status: 500, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("500"), "{err}");
}

#[tokio::test]
async fn garbage_is_malformed() {
    let err = stamp_with(Behaviour::Garbage).await.unwrap_err();
    assert!(matches!(err, TimestampError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("malformed"), "{err}");
}

#[tokio::test]
async fn a_reply_for_another_message_is_an_imprint_mismatch() {
    let tsa = Tsa::new();
    let err = stamp_with(Behaviour::OtherMessage(tsa)).await.unwrap_err();
    assert!(
        matches!(err, TimestampError::ImprintMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("another message"), "{err}");
}

#[tokio::test]
async fn a_rejection_is_reported_with_its_status() {
    let tsa = Tsa::new();
    let err = stamp_with(Behaviour::Rejection(tsa)).await.unwrap_err();
    assert!(
        matches!(err, TimestampError::Rejected { status: 2, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("status 2") && text.contains("badAlg"),
        "{text}"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connection_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/tsa");
    let err = timestamp::stamp(&url, MESSAGE, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, TimestampError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("connect"), "{err}");
}

#[tokio::test]
async fn a_silent_tsa_times_out() {
    let (url, server) = serve(Behaviour::Silent);
    let timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = timestamp::stamp(&url, MESSAGE, timeout).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, TimestampError::Timeout(t) if t == timeout),
        "{err}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    server.join().unwrap();
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let err = stamp_with(Behaviour::Endless).await.unwrap_err();
    assert!(matches!(err, TimestampError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
}

#[tokio::test]
async fn https_urls_are_refused() {
    let err = timestamp::stamp("https://127.0.0.1:1/tsa", MESSAGE, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, TimestampError::InvalidUrl { .. }), "{err}");
}

/// Answers every connection as a TSA, for as long as the test runs.
fn serve_forever(tsa: Arc<Tsa>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/tsa", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
            let (_, query) = read_request(&mut stream);
            let _ = stream.write_all(&http_response("200 OK", &tsa.reply(&query)));
        }
    });
    url
}

/// End to end: a node configured with `tsa_url` gets its checkpoints stamped by a real
/// `openssl ts` authority, and the token verifies against the checkpoint note it serves.
#[test]
fn a_node_timestamps_its_checkpoints() {
    use archipel_tests::{TestNode, wait_until};
    let tsa = Tsa::new();
    let url = serve_forever(tsa.clone());
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(root.path(), "n", "Commune de Test").unwrap();
    std::fs::write(
        node.data.join("archipel.toml"),
        format!("tsa_url = \"{url}\"\ncheckpoint_interval_secs = 1\n"),
    )
    .unwrap();
    node.start().unwrap();
    let f = root.path().join("d.txt");
    std::fs::write(&f, "délibération").unwrap();
    node.ingest(&[&f], "D", &[]);
    let token = root.path().join("token.der");
    let note_path = root.path().join("checkpoint.txt");
    let stamped = wait_until(Duration::from_secs(30), || {
        let out = node.cli(&[
            "log",
            "checkpoint",
            "--timestamp-out",
            token.to_str().unwrap(),
        ]);
        if out.status.success() {
            std::fs::write(&note_path, &out.stdout).unwrap();
        }
        out.status.success()
    });
    assert!(
        stamped,
        "no timestamp within 30 s; node log:\n{}",
        node.log_text()
    );
    let out = Command::new("openssl")
        .current_dir(tsa.dir.path())
        .args(["ts", "-verify", "-data"])
        .arg(&note_path)
        .arg("-in")
        .arg(&token)
        .args(["-token_in", "-CAfile", "ca.pem", "-untrusted", "tsa.pem"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(node.log_text().contains("checkpoint timestamped"));
}
