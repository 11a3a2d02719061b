//! Federation: territories replicate each other's encrypted records, keep copies alive
//! through crashes, stops and partitions, move them away from a holder that is removed, and
//! rebuild a wiped node from its peers.
//!
//! Real nodes on loopback, each link through a fault-injecting proxy (`TestCluster`).
//! Observed through the CLI's JSON contract: `archipel status RECORD --json` (`holders`,
//! one `{node_id, territory, since}` per receipted copy outside the origin; `copies_wanted`;
//! `pending`) and `archipel federation --json` (`peers`, one account per peer).
//! A node with a valid certificate that nobody pinned is refused: see peers.rs.

use archipel_tests::cluster::{
    ClusterOptions, SmallRecord, TestCluster, holder_ids, peer_entry, wait_for,
};
use archipel_tests::p;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: usize = 1 << 20;
const REPLICATED: Duration = Duration::from_secs(120);

/// Options with a grace period long enough that no holder is replaced during the test.
fn patient() -> ClusterOptions {
    ClusterOptions {
        holder_grace_secs: 3600,
        ..ClusterOptions::default()
    }
}

/// `pending` is empty (an array of node IDs, or a count).
fn nothing_pending(status: &Value) -> bool {
    match &status["pending"] {
        Value::Array(a) => a.is_empty(),
        Value::Number(n) => n.as_u64() == Some(0),
        _ => false,
    }
}

/// A replicated record's copies: receipted, dated, on distinct territories other than the
/// origin's, one outside the origin's zone when a peer allows; nothing left pending.
fn check_placement(c: &TestCluster, origin: usize, record: &str) -> Vec<usize> {
    let status = c.record_status(origin, record);
    let rf = c.options.replication_factor as usize;
    assert_eq!(status["copies_wanted"], rf as u64, "{status}");
    assert!(nothing_pending(&status), "copies still pending: {status}");
    let ids = holder_ids(&status);
    assert_eq!(ids.len(), rf - 1, "holders of {record}: {status}");
    let mut seen = BTreeSet::new();
    let mut territories = BTreeSet::new();
    let holders: Vec<usize> = ids
        .iter()
        .map(|id| {
            let j = c
                .index_of(id)
                .unwrap_or_else(|| panic!("holder {id} is not a cluster node: {status}"));
            assert_ne!(j, origin, "the origin counted as a holder: {status}");
            assert!(seen.insert(j), "node {j} counted twice: {status}");
            j
        })
        .collect();
    for (h, j) in status["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .zip(&holders)
    {
        let t = h["territory"].as_str().unwrap_or_default();
        assert_eq!(t, c.territory(*j), "territory of holder {j}: {status}");
        assert_ne!(t, c.territory(origin), "{status}");
        assert!(
            territories.insert(t.to_string()),
            "two copies in {t}: {status}"
        );
        let since = h["since"].as_str().unwrap_or_default();
        assert!(
            since.len() >= 20 && since.contains('T'),
            "`since` is not an RFC 3339 time: {status}"
        );
    }
    let any_outside = (0..c.len()).any(|j| j != origin && c.zone(j) != c.zone(origin));
    if any_outside {
        assert!(
            holders.iter().any(|&j| c.zone(j) != c.zone(origin)),
            "no copy of {record} outside zone {} (holders {holders:?}): {status}",
            c.zone(origin)
        );
    }
    holders
}

fn u64_of(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a number: {v}"))
}

/// Waits until `f(account of peer at node)` holds, naming `what`.
fn wait_account(
    c: &TestCluster,
    node: usize,
    peer: usize,
    what: &str,
    timeout: Duration,
    f: impl Fn(&Value) -> bool,
) {
    wait_for(
        timeout,
        &format!("node {node}'s account of node {peer}: {what}"),
        || {
            let r = c.federation_report(node);
            match peer_entry(&r, c.id(peer)) {
                Some(a) if f(a) => Ok(()),
                Some(a) => Err(a.to_string()),
                None => Err(format!("no entry for node {peer} in {r}")),
            }
        },
    )
}

/// Reads a one-file record back at `node` and compares it with `want`.
fn assert_same(c: &TestCluster, node: usize, record: &str, want: &[u8], name: &str) {
    let dest = c.root().join(format!("read-{node}-{name}"));
    let _ = std::fs::remove_file(&dest);
    c.node(node).assert_get_file(record, &dest, want);
}

fn replication_events(c: &TestCluster, node: usize, record: &str) -> Vec<Value> {
    let events = c.node(node).cli_json(&["log", "tail", "-n", "1000"]);
    events
        .as_array()
        .unwrap_or_else(|| panic!("log tail is not an array: {events}"))
        .iter()
        .filter(|e| e["type"] == "replication" && e["object"] == record)
        .cloned()
        .collect()
}

#[test]
fn three_territories_each_receipt_a_copy_and_one_is_outside_the_zone() {
    let c = TestCluster::start(3, ClusterOptions::default());
    let (rec, bytes) = c.ingest_random(0, 300_000, 1, "Délibération du conseil municipal");

    c.wait_replicated(0, &rec, 3);
    let holders = check_placement(&c, 0, &rec);
    // Three nodes: both peers hold it, the Région outside the Finistère.
    assert_eq!(
        holders.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );

    // Each receipt is a replication event in the origin's audit log.
    let events = replication_events(&c, 0, &rec);
    for &j in &holders {
        assert!(
            events.iter().any(|e| e.to_string().contains(c.id(j))),
            "no replication event naming holder {j} for {rec}: {events:?}"
        );
    }

    // Accounting, on both sides: what each peer holds for the commune, and the reverse.
    for &j in &holders {
        wait_account(&c, 0, j, "holds 1 record for us", REPLICATED, |a| {
            a["records_held_for_us"] == 1
                && a["bytes_held_for_us"].as_u64().unwrap_or(0) >= bytes.len() as u64
                && a["pending_records"] == 0
                && a["records_we_hold"] == 0
        });
        wait_account(&c, j, 0, "we hold 1 record for it", REPLICATED, |a| {
            a["records_we_hold"] == 1
                && a["bytes_we_hold"].as_u64().unwrap_or(0) >= bytes.len() as u64
                && a["records_held_for_us"] == 0
        });
        let a = c.peer_account(0, j);
        assert_eq!(a["territory"], c.territory(j), "{a}");
        assert_eq!(a["zone"], c.zone(j), "{a}");
        assert_eq!(a["offer_bytes"], 500u64 << 30, "{a}");
        assert_eq!(a["gone"], false, "{a}");
        assert!(
            !a["last_seen"].as_str().unwrap_or_default().is_empty(),
            "{a}"
        );
        // A holder keeps the commune's copy in the commune's namespace, not as a record of
        // its own, and cannot read it.
        assert_eq!(c.node(j).cli_json(&["status"])["records"], 0);
        let out = c.node(j).cli(&["get", &rec, "-o", p(&c.root().join("x"))]);
        assert!(
            !out.status.success(),
            "a holder served the commune's record"
        );
    }

    // The origin still reads its record, unchanged.
    assert_same(&c, 0, &rec, &bytes, "deliberation");
}

#[test]
fn five_territories_place_every_record_on_exactly_two_holders() {
    let c = TestCluster::start(5, ClusterOptions::default());
    // Records from the commune (Finistère) and from the Côtes-d'Armor archives.
    let mut records = Vec::new();
    for k in 0..6u64 {
        let (id, _) = c.ingest_random(0, 20_000 + k as usize * 7_000, 100 + k, "Registre");
        records.push((0, id));
    }
    for k in 0..2u64 {
        let (id, _) = c.ingest_random(3, 50_000, 200 + k, "Fonds de l'AD 22");
        records.push((3, id));
    }

    for (origin, rec) in &records {
        c.wait_replicated(*origin, rec, 3);
    }
    for (origin, rec) in &records {
        check_placement(&c, *origin, rec);
        assert_eq!(replication_events(&c, *origin, rec).len(), 2);
    }

    // The holders account for exactly two copies per record: no stray extra copies.
    for origin in [0, 3] {
        let n = records.iter().filter(|(o, _)| *o == origin).count() as u64;
        wait_for(
            REPLICATED,
            &format!(
                "the holders to account for {} copies of node {origin}",
                2 * n
            ),
            || {
                let held: Vec<u64> = (0..c.len())
                    .filter(|&j| j != origin)
                    .map(|j| u64_of(&c.peer_account(j, origin), "records_we_hold"))
                    .collect();
                if held.iter().sum::<u64>() == 2 * n {
                    Ok(())
                } else {
                    Err(format!("records_we_hold per peer: {held:?}"))
                }
            },
        );
        let r = c.federation_report(origin);
        let for_us: u64 = r["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| u64_of(a, "records_held_for_us"))
            .sum();
        assert_eq!(for_us, 2 * n, "{r}");
    }
}

#[test]
fn a_holder_killed_mid_transfer_completes_after_restart() {
    let mut c = TestCluster::start(3, patient());
    // Slow the commune → AD link so that the transfer lasts long enough to be interrupted.
    c.link(0, 1).set_rate_limit(4 * MIB as u64);
    let start = c.link(0, 1).counts().to_target;
    let (rec, bytes) = c.ingest_random(0, 40 * MIB, 7, "Plan cadastral numérisé");

    // Half the record is through: several 4 MiB blobs are stored at the AD.
    let before_kill = wait_for(REPLICATED, "20 MiB of the record to reach node 1", || {
        let sent = c.link(0, 1).counts().to_target - start;
        if sent >= 20 * MIB as u64 {
            Ok(sent)
        } else {
            Err(format!("{sent} bytes sent"))
        }
    });
    let holders = c.holders(0, &rec);
    assert!(
        !holders.iter().any(|h| h == c.id(1)),
        "node 1 receipted the record before it was killed: {holders:?}"
    );
    c.kill(1);
    c.link(0, 1).set_rate_limit(0);
    c.start_node(1);

    let holders = c.wait_replicated(0, &rec, 3);
    assert!(holders.iter().any(|h| h == c.id(1)), "{holders:?}");
    check_placement(&c, 0, &rec);
    // Its accounts count the whole copy, blobs stored before the kill included.
    wait_account(
        &c,
        1,
        0,
        "records_we_hold 1, bytes_we_hold >= the record's size",
        REPLICATED,
        |a| {
            a["records_we_hold"] == 1
                && a["bytes_we_hold"].as_u64().unwrap_or(0) >= bytes.len() as u64
        },
    );
    // The transfer resumed: what the AD had stored was not sent again (sending it all
    // again would take 60 MiB or more).
    let total = c.link(0, 1).counts().to_target - start;
    eprintln!(
        "sent to node 1 for a {} MiB record: {before_kill} bytes before the kill, {total} in all",
        bytes.len() / MIB
    );
    assert!(
        total < 56 * MIB as u64,
        "{total} bytes sent to node 1 ({before_kill} before the kill): the transfer restarted \
         from scratch instead of resuming"
    );
    c.node(0).cli_ok(&["verify", &rec]);
}

#[test]
fn a_peer_stopped_during_a_thousand_ingests_catches_up() {
    let mut c = TestCluster::start(3, patient());
    let records: Vec<SmallRecord> = (0..1000u32)
        .map(|k| SmallRecord {
            title: format!("Acte d'état civil n° {k}"),
            file_name: format!("acte-{k:04}.txt"),
            bytes: format!("Acte n° {k}, registre de Plougastel-Daoulas. ")
                .repeat(1 + (k as usize % 50))
                .into_bytes(),
        })
        .collect();
    let mut ids = c.ingest_many(0, &records[..300]);
    c.stop(2);
    ids.extend(c.ingest_many(0, &records[300..]));
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 1000);

    // Meanwhile the AD, still up, keeps up.
    wait_account(
        &c,
        0,
        1,
        "holds all 1000 records",
        Duration::from_secs(300),
        |a| a["records_held_for_us"] == 1000,
    );

    c.start_node(2);
    wait_account(
        &c,
        0,
        2,
        "holds all 1000 records",
        Duration::from_secs(300),
        |a| a["records_held_for_us"] == 1000 && a["pending_records"] == 0,
    );

    // Every record has its two holders (the custody RPC behind `archipel status`)...
    let want = BTreeSet::from([c.id(1).to_string(), c.id(2).to_string()]);
    for (id, holders) in ids.iter().zip(c.holders_many(0, &ids)) {
        assert_eq!(
            holders.iter().cloned().collect::<BTreeSet<_>>(),
            want,
            "holders of {id}"
        );
        assert_eq!(holders.len(), 2, "holders of {id}: {holders:?}");
    }
    // ... and so says the CLI, on a sample.
    for id in ids.iter().step_by(97) {
        check_placement(&c, 0, id);
    }
    wait_account(&c, 2, 0, "holds all 1000 records", REPLICATED, |a| {
        a["records_we_hold"] == 1000
    });
}

#[test]
fn copies_move_away_from_a_removed_holder() {
    let c = TestCluster::start(5, ClusterOptions::default());
    let mut records = Vec::new();
    for k in 0..6u64 {
        records.push(c.ingest_random(0, 30_000, 300 + k, "Marché public").0);
    }
    let before: Vec<Vec<usize>> = records
        .iter()
        .map(|r| {
            c.wait_replicated(0, r, 3);
            check_placement(&c, 0, r)
        })
        .collect();

    // The commune removes one of the first record's holders for good.
    let gone = before[0][0];
    c.remove_peer(0, gone);
    let gone_id = c.id(gone).to_string();

    for (r, old) in records.iter().zip(&before) {
        wait_for(
            REPLICATED,
            &format!("{r} to have 2 holders, none of them node {gone}"),
            || {
                let s = c.record_status(0, r);
                let h = holder_ids(&s);
                if h.len() == 2 && !h.contains(&gone_id) && nothing_pending(&s) {
                    Ok(())
                } else {
                    Err(s.to_string())
                }
            },
        );
        let now = check_placement(&c, 0, r);
        let now_set: BTreeSet<usize> = now.iter().copied().collect();
        if old.contains(&gone) {
            // The copy that stayed did not move.
            let kept = old.iter().find(|&&j| j != gone).unwrap();
            assert!(now_set.contains(kept), "{r}: {old:?} → {now:?}");
        } else {
            assert_eq!(
                now_set,
                old.iter().copied().collect(),
                "{r} moved though its holders stayed"
            );
        }
    }

    // The removed node is no longer in the commune's accounts; the others hold 12 copies.
    let r = c.federation_report(0);
    assert!(peer_entry(&r, &gone_id).is_none(), "{r}");
    let for_us: u64 = r["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| u64_of(a, "records_held_for_us"))
        .sum();
    assert_eq!(for_us, 12, "{r}");
    c.wait_until(
        REPLICATED,
        "the remaining holders to account for 12 copies",
        |c| {
            (1..c.len())
                .filter(|&j| j != gone)
                .map(|j| u64_of(&c.peer_account(j, 0), "records_we_hold"))
                .sum::<u64>()
                == 12
        },
    );
}

#[test]
fn a_partition_between_origin_and_holder_heals_without_loss() {
    let c = TestCluster::start(3, patient());
    let mut originals = Vec::new();
    let (r1, b1) = c.ingest_random(0, 100_000, 11, "Avant la coupure");
    c.wait_replicated(0, &r1, 3);
    originals.push((r1, b1));

    // Cut commune ↔ AD: records made meanwhile reach the Région only.
    c.partition(0, 1);
    for k in 0..2u64 {
        let (r, b) = c.ingest_random(0, 150_000, 12 + k, "Pendant la coupure");
        originals.push((r, b));
    }
    for (r, _) in &originals[1..] {
        c.wait_until(REPLICATED, &format!("node 2 to hold {r}"), |c| {
            c.holders(0, r).iter().any(|h| h == c.id(2))
        });
    }
    c.heal(0, 1);
    for (r, _) in &originals {
        let h = c.wait_replicated(0, r, 3);
        assert!(h.iter().any(|h| h == c.id(1)), "{r}: {h:?}");
    }

    // Packets silently dropped between the commune and the Région, then restored.
    c.blackhole(0, 2);
    let (r4, b4) = c.ingest_random(0, 120_000, 14, "Pendant le trou noir");
    c.wait_until(REPLICATED, &format!("node 1 to hold {r4}"), |c| {
        c.holders(0, &r4).iter().any(|h| h == c.id(1))
    });
    c.heal(0, 2);
    c.wait_replicated(0, &r4, 3);
    originals.push((r4, b4));

    // Nothing lost: every record placed and receipted, accounts square, bytes intact.
    for (r, _) in &originals {
        check_placement(&c, 0, r);
    }
    for j in [1, 2] {
        wait_account(&c, 0, j, "holds all 4 records", REPLICATED, |a| {
            a["records_held_for_us"] == 4 && a["pending_records"] == 0 && a["gone"] == false
        });
        wait_account(&c, j, 0, "we hold all 4 records", REPLICATED, |a| {
            a["records_we_hold"] == 4
        });
    }
    for (k, (r, b)) in originals.iter().enumerate() {
        assert_same(&c, 0, r, b, &format!("p{k}"));
    }
    c.node(0).cli_ok(&["verify"]);
}

/// Files of a record as archived: (name, bytes).
struct Original {
    id: String,
    files: Vec<(String, Vec<u8>)>,
}

fn write_files(dir: &Path, files: &[(&str, usize, u64)]) -> (Vec<PathBuf>, Vec<(String, Vec<u8>)>) {
    std::fs::create_dir_all(dir).expect("create dir");
    let mut paths = Vec::new();
    let mut contents = Vec::new();
    for &(name, size, seed) in files {
        let path = dir.join(name);
        archipel_tests::random_file(&path, size, seed).expect("write file");
        contents.push((name.to_string(), std::fs::read(&path).expect("read file")));
        paths.push(path);
    }
    (paths, contents)
}

#[test]
fn a_wiped_origin_is_restored_from_its_peers_byte_for_byte() {
    let mut c = TestCluster::start(3, patient());
    let src = c.root().join("originaux");
    let mut originals = Vec::new();
    // One record of three files (one several blobs long), and single-file records.
    let (paths, files) = write_files(
        &src.join("dossier"),
        &[
            ("deliberation.pdf", 250_000, 21),
            ("annexe.txt", 3_000, 22),
            ("plans.tif", 9 * MIB, 23),
        ],
    );
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let id = c
        .node(0)
        .ingest(&refs, "Dossier de permis de construire", &[]);
    originals.push(Original { id, files });
    for (k, size) in [1usize, 70_000, 5 * MIB].into_iter().enumerate() {
        let name = format!("piece-{k}.bin");
        let (paths, files) =
            write_files(&src.join(format!("r{k}")), &[(&name, size, 30 + k as u64)]);
        let id = c.node(0).ingest(&[&paths[0]], &format!("Pièce {k}"), &[]);
        originals.push(Original { id, files });
    }

    // The recovery kit is made before the disaster (its export is itself logged).
    let kit = c.root().join("plougastel.kit");
    c.export_kit(0, &kit);
    let before = c.node(0).cli_json(&["status"]);

    for o in &originals {
        c.wait_replicated(0, &o.id, 3);
    }
    // Its whole log is witnessed by both peers, so they have it to give back.
    let log_size = u64_of(&c.node(0).cli_json(&["status"]), "log_size");
    for j in [1, 2] {
        wait_account(&c, 0, j, "cosigned our whole log", REPLICATED, |a| {
            a["cosigned_size"].as_u64().unwrap_or(0) >= log_size
        });
    }

    // Ransomware: the town hall's server is wiped.
    c.wipe(0);
    assert!(!c.node(0).data.exists());
    c.restore(0, &kit, &[1, 2]);
    c.start_node(0);

    let after = c.node(0).cli_json(&["status"]);
    assert_eq!(after["node_id"], before["node_id"], "{after}");
    assert_eq!(after["territory"], before["territory"], "{after}");
    assert_eq!(after["records"], originals.len() as u64, "{after}");
    assert!(u64_of(&after, "log_size") >= log_size, "{after}");

    // Every file, byte for byte.
    for (k, o) in originals.iter().enumerate() {
        if o.files.len() == 1 {
            assert_same(&c, 0, &o.id, &o.files[0].1, &format!("restored-{k}"));
        } else {
            let dir = c.root().join(format!("restored-dir-{k}"));
            c.node(0).cli_ok(&["get", &o.id, "-o", p(&dir)]);
            for (name, want) in &o.files {
                let got = std::fs::read(dir.join(name))
                    .unwrap_or_else(|e| panic!("{name} of {} not restored: {e}", o.id));
                assert!(got == *want, "{name} of {} differs after restore", o.id);
            }
            let names: BTreeSet<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), o.files.len(), "{names:?}");
        }
    }
    // Fixity of every record, and the audit log, verify.
    let v = c.node(0).cli_json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records_checked"], originals.len() as u64, "{v}");
    c.node(0).cli_ok(&["log", "verify"]);

    // The peers it was restored from are pinned again; the operator sets their zone and
    // offer, as the restore tells them to.
    let pinned = c.node(0).cli_json(&["peer", "ls"]);
    for j in [1, 2] {
        assert!(
            pinned
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["node_id"] == c.id(j) && e["address"] == c.peer_addr(0, j)),
            "node {j} not pinned again after the restore: {pinned}"
        );
        c.add_peer(0, j);
    }

    // The node serves as before and resumes replication.
    let (rec, bytes) = c.ingest_random(0, 40_000, 40, "Après la restauration");
    c.wait_replicated(0, &rec, 3);
    check_placement(&c, 0, &rec);
    assert_same(&c, 0, &rec, &bytes, "after-restore");
}
