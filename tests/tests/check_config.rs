//! `archipel-node check-config` reports every problem of a configuration and its data
//! directory at once, each naming the field and the fix, and secret paths may come from
//! the environment.

use archipel_tests::{bin, p};
use std::process::Command;

fn check(data: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin("archipel-node"))
        .args(["check-config", "--data", p(data)])
        .envs(env.iter().copied())
        .output()
        .expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn every_problem_is_reported_at_once_with_its_field_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let st = Command::new(bin("archipel-node"))
        .args([
            "init",
            "--data",
            p(&data),
            "--territory",
            "Commune de Brest",
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no problem found"), "{out}");

    std::fs::write(
        data.join("archipel.toml"),
        "cache_capacity_mib = 1\npeer_listen = \"nope\"\n\
         gateway_tls_cert = \"/nonexistent/cert.pem\"\ngateway_tls_key = \"/nonexistent/key.pem\"\n\
         [federation]\nreplication_factor = 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let key = data.join("keys").join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "cache_capacity_mib = 1",
        "peer_listen = \"nope\"",
        "gateway_tls_cert",
        "gateway_tls_key",
        "federation.replication_factor = 0",
        "chmod 600",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(
        out.lines().filter(|l| l.starts_with("problem:")).count() >= 6,
        "{out}"
    );

    // A secret's path from the environment wins over the file.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(data.join("archipel.toml"), "").unwrap();
    let (code, out) = check(
        &data,
        &[
            ("ARCHIPEL_GATEWAY_TLS_CERT", "/run/secrets/absent-cert.pem"),
            ("ARCHIPEL_GATEWAY_TLS_KEY", "/run/secrets/absent-key.pem"),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/run/secrets/absent-key.pem"), "{out}");
}
