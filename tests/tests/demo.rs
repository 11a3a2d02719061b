//! `archipel demo`: three real territories on loopback, sample records replicated, the
//! gateways answering, and everything stopped on SIGTERM.

#[path = "support/http.rs"]
mod http;

use archipel_tests::{bin, p};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_federates_three_territories_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut demo = Command::new(bin("archipel"))
        .args(["demo", "--dir", p(&dir)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let stdout = demo.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lines.iter().any(|l: &String| l.starts_with("Ctrl-C stops")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = demo.kill();
                panic!("the demo did not get ready:\n{}", lines.join("\n"));
            }
        }
    }
    let text = lines.join("\n");
    // Three sample records, each also held by the two other territories.
    let held: Vec<&String> = lines.iter().filter(|l| l.contains(": also at ")).collect();
    assert_eq!(held.len(), 3, "{text}");
    assert!(
        held.iter()
            .all(|l| l.contains("Archives départementales du Finistère")
                && l.contains("Région Bretagne"))
    );
    // The département's gateway answers for the commune's public record (JSON API line).
    let api = lines
        .iter()
        .find(|l| l.contains("/api/records/"))
        .expect("a JSON API example");
    let url = api
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL");
    let (base, path) = url.split_at(url.find("/api/").unwrap());
    let mut status = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        status = http::get(base, path).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status, 200, "the released record at the département: {url}");

    // SIGTERM stops the demo and its three nodes.
    Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    let st = demo.wait().unwrap();
    assert!(st.success(), "{st}");
    for t in ["commune", "departement", "region"] {
        // Its node is gone: the CLI cannot reach it (exit code 3: node unreachable).
        let out = Command::new(bin("archipel"))
            .args(["--node", p(&dir.join(t)), "status"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{t} still answers");
    }
}
