//! The CLI's contract as printed by `--help`. (Its presence also makes `cargo test` build the
//! `archipel` binary that the workspace's end-to-end tests run.)

use std::process::Command;

#[test]
fn help_documents_every_exit_code_and_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_archipel"))
        .arg("--help")
        .output()
        .expect("run archipel --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for code in 0..=8 {
        assert!(
            text.contains(&format!("\n  {code}  ")),
            "exit code {code} is not documented:\n{text}"
        );
    }
    for cmd in [
        "ingest", "get", "ls", "show", "verify", "status", "edit", "log",
    ] {
        assert!(text.contains(&format!("  {cmd}")), "{cmd} missing:\n{text}");
    }
}

#[test]
fn a_node_that_is_not_running_is_exit_code_3() {
    let dir = std::env::temp_dir().join(format!("archipel-no-node-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_archipel"))
        .args(["--node", dir.to_str().expect("utf-8"), "status"])
        .output()
        .expect("run archipel");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is archipel-node running?"));
}
