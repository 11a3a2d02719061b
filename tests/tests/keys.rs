//! Key management on a running federation (issue 6, point 5): the territory's age key is
//! rotated and retired, a recovery recipient is added and removed, and every step is in the
//! audit log. The proof that holders got the re-wrapped key envelopes: after the old key
//! is destroyed, the commune is wiped and restored from its peers with a kit exported
//! after the rotation, and every record reads back byte for byte.
//!
//! Observed through the CLI (`archipel keys ... --json`, `archipel log tail`) and, with the
//! node stopped, the key envelopes in its database opened with the test's own age identity.

use archipel_tests::cluster::{ClusterOptions, TestCluster, peer_entry, wait_for};
use archipel_tests::{expect_code, key_envelopes};
use serde_json::Value;
use std::io::Read;
use std::time::Duration;

const REPLICATED: Duration = Duration::from_secs(120);

fn keys_status(c: &TestCluster) -> Value {
    c.node(0).cli_json(&["keys", "status"])
}

fn copies_behind(c: &TestCluster) -> u64 {
    keys_status(c)["copies_behind"]
        .as_u64()
        .expect("copies_behind is a number")
}

fn wait_copies_behind(c: &TestCluster, want: u64, what: &str) {
    wait_for(REPLICATED, what, || match copies_behind(c) {
        n if n == want => Ok(()),
        n => Err(format!("{n} copies behind")),
    });
}

/// Whether `identity` opens a key envelope (and finds an age secret key inside).
fn opens(identity: &age::x25519::Identity, envelope: &[u8]) -> bool {
    let Ok(d) = age::Decryptor::new_buffered(envelope) else {
        return false;
    };
    let Ok(mut r) = d.decrypt(std::iter::once(identity as &dyn age::Identity)) else {
        return false;
    };
    let mut out = String::new();
    r.read_to_string(&mut out).is_ok() && out.starts_with("AGE-SECRET-KEY-1")
}

fn event_types(c: &TestCluster) -> Vec<String> {
    let events = c.node(0).cli_json(&["log", "tail", "-n", "1000"]);
    events
        .as_array()
        .unwrap_or_else(|| panic!("log tail is not an array: {events}"))
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn rotation_and_recovery_changes_reach_the_holders_and_a_restore_after_retirement_reads_all() {
    let mut c = TestCluster::start(
        3,
        ClusterOptions {
            holder_grace_secs: 3600,
            ..ClusterOptions::default()
        },
    );
    let mut records = Vec::new();
    for seed in 0..2u64 {
        let (id, bytes) =
            c.ingest_random(0, 40_000 + seed as usize * 300_000, seed, "Délibération");
        records.push((id, bytes));
    }
    for (id, _) in &records {
        c.wait_replicated(0, id, 3);
    }
    let before = keys_status(&c);
    let old_key = before["territory_recipient"]
        .as_str()
        .expect("recipient")
        .to_string();
    assert_eq!(
        before["previous_recipients"],
        serde_json::json!([]),
        "{before}"
    );
    assert_eq!(before["copies_behind"], 0, "{before}");

    // The archives départementales become a recovery recipient: every record key is
    // re-wrapped to them too.
    let archivist = age::x25519::Identity::generate();
    let recipient = archivist.to_public().to_string();
    let r = c.node(0).cli_json(&["keys", "recovery", "add", &recipient]);
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["rewrapped"], 2, "{r}");
    let again = c.node(0).cli_json(&["keys", "recovery", "add", &recipient]);
    assert_eq!(again["changed"], false, "adding twice is a no-op: {again}");
    let bad = c
        .node(0)
        .cli(&["keys", "recovery", "add", "age1notarecipient"]);
    let err = expect_code(&bad, 5, "a malformed recipient");
    assert!(err.contains("age1notarecipient"), "{err}");
    wait_copies_behind(&c, 0, "holders to get the envelopes with the new recipient");

    // One holder is down while the key rotates: it cannot get the new envelopes yet.
    c.stop(2);
    let rot = c.node(0).cli_json(&["keys", "rotate"]);
    assert_eq!(rot["changed"], true, "{rot}");
    assert_eq!(rot["rewrapped"], 2, "{rot}");
    assert_eq!(rot["previous_recipient"], old_key.as_str(), "{rot}");
    let new_key = rot["territory_recipient"]
        .as_str()
        .expect("new key")
        .to_string();
    assert_ne!(new_key, old_key);
    let after = keys_status(&c);
    assert_eq!(
        after["previous_recipients"],
        serde_json::json!([old_key]),
        "{after}"
    );
    // A record made after the rotation is wrapped to the new key from the start.
    let (id, bytes) = c.ingest_random(0, 2_000_000, 7, "Registre");
    records.push((id, bytes));
    for (i, (id, bytes)) in records.iter().enumerate() {
        let dest = c.root().join(format!("rotated-{i}"));
        c.node(0).assert_get_file(id, &dest, bytes);
    }

    // The stopped holder keeps envelopes that need the old key: retiring is refused.
    wait_copies_behind(&c, 2, "the running holder to get the re-wrapped envelopes");
    let refused = c.node(0).cli(&["keys", "retire"]);
    let err = expect_code(&refused, 9, "retire while a holder is behind");
    assert!(err.contains("2 copies at holders"), "{err}");
    assert_eq!(
        keys_status(&c)["previous_recipients"],
        serde_json::json!([old_key])
    );

    // Back up, it catches up; then the old key can go.
    c.start_node(2);
    wait_copies_behind(
        &c,
        0,
        "the restarted holder to get the re-wrapped envelopes",
    );
    let (new_id, _) = &records[2];
    c.wait_replicated(0, new_id, 3);
    let retired = c.node(0).cli_json(&["keys", "retire"]);
    assert_eq!(
        retired["retired"],
        serde_json::json!([old_key]),
        "{retired}"
    );
    let st = keys_status(&c);
    assert_eq!(st["previous_recipients"], serde_json::json!([]), "{st}");
    assert_eq!(st["territory_recipient"], new_key.as_str(), "{st}");
    let nothing = c.node(0).cli(&["keys", "retire"]);
    let err = expect_code(&nothing, 9, "retire with nothing to retire");
    assert!(err.contains("no previous territory key"), "{err}");

    // On disk: every envelope opens with the recovery recipient's key.
    c.stop(0);
    let envelopes = key_envelopes(&c.node(0).data);
    assert_eq!(envelopes.len(), 3);
    for (id, e) in &envelopes {
        assert!(
            opens(&archivist, e),
            "{id} does not open with the recovery key"
        );
    }
    assert!(
        !c.node(0).data.join("keys/previous-territory.keys").exists(),
        "the retired key is still on disk"
    );
    c.start_node(0);

    // Removing the recipient re-wraps without it.
    let r = c
        .node(0)
        .cli_json(&["keys", "recovery", "remove", &recipient]);
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["rewrapped"], 3, "{r}");
    c.stop(0);
    for (id, e) in &key_envelopes(&c.node(0).data) {
        assert!(
            !opens(&archivist, e),
            "{id} still opens with the removed recipient"
        );
    }
    c.start_node(0);

    // Every step is in the audit log.
    // (Details are committed to, not shown: the log is public.)
    let types = event_types(&c);
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count("archipel:recipients change"), 2, "{types:?}");
    assert_eq!(count("archipel:key rotation"), 1, "{types:?}");
    assert_eq!(count("archipel:key retirement"), 1, "{types:?}");
    // One re-wrapping pass per change: add, rotate, remove.
    assert_eq!(count("encryption"), 3, "{types:?}");

    // The proof that holders have envelopes for the new key: the old one is destroyed, so
    // a restore with a kit exported now can only open what they send if it is re-wrapped.
    wait_copies_behind(&c, 0, "holders to get the envelopes without the recipient");
    let kit = c.root().join("commune-after-rotation.kit");
    c.export_kit(0, &kit);
    let log_size = c.node(0).cli_json(&["status"])["log_size"]
        .as_u64()
        .expect("log_size");
    for j in [1, 2] {
        wait_for(
            REPLICATED,
            &format!("node {j} to cosign the whole log"),
            || {
                let r = c.federation_report(0);
                match peer_entry(&r, c.id(j)) {
                    Some(a) if a["cosigned_size"].as_u64().unwrap_or(0) >= log_size => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        );
    }
    c.wipe(0);
    c.restore(0, &kit, &[1, 2]);
    c.start_node(0);
    assert_eq!(keys_status(&c)["territory_recipient"], new_key.as_str());
    for (i, (id, bytes)) in records.iter().enumerate() {
        let dest = c.root().join(format!("restored-{i}"));
        c.node(0).assert_get_file(id, &dest, bytes);
    }
}
