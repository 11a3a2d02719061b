//! The citizen gateway in a real browser (issue 5): headless Chromium, driven by Python
//! Selenium (`tests/python/browser.py`), against a real node. A reader searches from the
//! home page with the keyboard, opens the record, reads its Dublin Core description and
//! downloads its file, which must be byte for byte the archived one.
//!
//! The test installs nothing: `.ci/run` installs Chromium, its driver (Debian packages
//! `chromium`, `chromium-driver`) and Selenium. Without them it fails saying what to install;
//! it is never skipped.

use archipel_tests::{TestNode, random_file};
use std::path::Path;
use std::process::Command;

/// Chromium, its driver and Selenium, or a failure that says what to install.
fn require_browser() {
    for (bin, package) in [
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
    ] {
        assert!(
            Path::new(bin).exists(),
            "the browser test needs {bin}: apt-get install {package} (.ci/run installs it)"
        );
    }
    let out = Command::new("python3")
        .args(["-c", "import selenium"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed by the browser test and cannot be run: {e}"));
    assert!(
        out.status.success(),
        "the browser test needs Python Selenium: python3 -m pip install selenium \
         (.ci/run installs it)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_reader_searches_opens_a_record_and_downloads_its_file_in_chromium() {
    require_browser();
    let root = tempfile::tempdir().expect("tempdir");
    let territory = "Commune de Plougastel";
    let mut node = TestNode::init_with(
        root.path(),
        "node",
        territory,
        &["--gateway-listen", "127.0.0.1:0"],
    )
    .expect("init");
    node.start().expect("start");
    let base = node.cli_json(&["status"])["gateway_url"]
        .as_str()
        .expect("gateway_url")
        .to_string();

    let name = "Délibération 1998.pdf";
    let original = root.path().join(name);
    random_file(&original, 300 * 1024 + 11, 42).expect("file");
    let title = "Registre des délibérations 1998";
    node.ingest(
        &[&original],
        title,
        &[
            "--producer",
            "Secrétariat général",
            "--type",
            "délibération",
            "--date-from",
            "1998-01-01",
            "--date-to",
            "1998-12-31",
            "--communicability",
            "immediate",
        ],
    );
    // Another record, which the search must leave out.
    let other = root.path().join("budget.txt");
    std::fs::write(&other, b"budget").expect("file");
    node.ingest(
        &[&other],
        "Budget primitif 2003",
        &["--communicability", "immediate"],
    );

    let downloads = root.path().join("downloads");
    std::fs::create_dir(&downloads).expect("download dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/browser.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&base, territory, "registre délibérations 1998", title, name])
        .arg(&original)
        .arg(&downloads)
        .output()
        .expect("run python3");
    node.stop().expect("stop");
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
