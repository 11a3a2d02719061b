//! End to end through the real binaries: the five-minute tour of an archivist and the CLI's
//! contract (flags, JSON output, exit codes), from `archipel-node init` to reading back.
//!
//! Every test owns a temporary directory, starts its own node(s) and drives the real
//! `archipel` CLI; nothing depends on timing except generous start-up timeouts.
#![allow(clippy::unwrap_used)]

use archipel_tests::{TestNode, bin, expect_code, p, random_file, stderr, stdout};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn started(root: &Path, territory: &str) -> TestNode {
    let mut node = TestNode::init(root, "node", territory).unwrap();
    node.start().unwrap();
    node
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn status(node: &TestNode) -> Value {
    node.cli_json(&["status"])
}

/// A PDF-looking file: a real header and trailer around random bytes.
fn pdf_like(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    random_file(path, size, seed).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n";
    bytes[..head.len()].copy_from_slice(head);
    let tail = b"\n%%EOF\n";
    let n = bytes.len();
    bytes[n - tail.len()..].copy_from_slice(tail);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn write(path: &Path, bytes: &[u8]) -> Vec<u8> {
    std::fs::write(path, bytes).unwrap();
    bytes.to_vec()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every regular file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if ft.is_dir() {
            copy_dir(&e.path(), &dest);
        } else if ft.is_file() {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Kills a spawned process when dropped, even on panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The five-minute tour
// ---------------------------------------------------------------------------------------

#[test]
fn five_minute_tour() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let territory = "Commune de Saint-Malo";
    let node = started(root, territory);
    // init printed exactly one line: the node ID (base32, 32 characters).
    assert_eq!(node.node_id.len(), 32, "node id {:?}", node.node_id);
    assert!(
        node.node_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "node id {:?}",
        node.node_id
    );

    // A deliberation, with full metadata.
    let pdf = root.join("deliberation-1998-06-12.pdf");
    let pdf_bytes = pdf_like(&pdf, 300_000, 1);
    let ing = node.cli_json(&[
        "ingest",
        p(&pdf),
        "--title",
        "Délibération du conseil municipal du 12 juin 1998",
        "--description",
        "Vote du budget primitif.\nAnnexes jointes.",
        "--producer",
        "Secrétariat général",
        "--date",
        "1998-06-12",
        "--type",
        "délibération",
        "--keyword",
        "budget",
        "--keyword",
        "conseil municipal",
        "--communicability",
        "immediate",
        "--dua",
        "10",
        "--final",
        "C",
        "--language",
        "fr",
    ]);
    let pdf_id = ing["id"].as_str().unwrap().to_string();
    assert_eq!(ing["files"], 1, "{ing}");
    assert_eq!(ing["bytes"], pdf_bytes.len() as u64, "{ing}");
    assert_eq!(ing["deduplicated_files"], 0, "{ing}");
    let digest = ing["manifest_digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64, "{ing}");

    // A file of several documents, dated by a range.
    let annexe = root.join("annexe-budget.txt");
    let annexe_bytes = write(
        &annexe,
        "Annexe budgétaire\nSection de fonctionnement: 1 234 567,89 €\n"
            .repeat(50)
            .as_bytes(),
    );
    let csv = root.join("votes.csv");
    let csv_bytes = write(
        &csv,
        b"conseiller;vote\nDupont;pour\nMartin;contre\nBernard;abstention\n",
    );
    let plan = root.join("plan.png");
    random_file(&plan, 1_500_000, 2).unwrap(); // over 1 MiB: the streaming path
    let plan_bytes = std::fs::read(&plan).unwrap();
    let multi = node.cli_json(&[
        "ingest",
        p(&annexe),
        p(&csv),
        p(&plan),
        "--title",
        "Dossier budget 1998",
        "--producer",
        "Finances",
        "--date-from",
        "1997-09-01",
        "--date-to",
        "1998-06-30",
        "--type",
        "dossier",
        "--keyword",
        "budget",
    ]);
    let multi_id = multi["id"].as_str().unwrap().to_string();
    assert_eq!(multi["files"], 3, "{multi}");
    assert_eq!(
        multi["bytes"],
        (annexe_bytes.len() + csv_bytes.len() + plan_bytes.len()) as u64
    );
    assert_ne!(pdf_id, multi_id);

    // ls --json: both, oldest first, with their titles.
    let ls = node.cli_json(&["ls"]);
    assert_eq!(ids(&ls), vec![pdf_id.clone(), multi_id.clone()], "{ls}");
    assert_eq!(
        ls[0]["title"],
        "Délibération du conseil municipal du 12 juin 1998"
    );
    assert_eq!(ls[1]["title"], "Dossier budget 1998");

    // show --json: every field as given, defaults applied, digests of the real bytes.
    let show = node.cli_json(&["show", &pdf_id]);
    assert_eq!(show["id"], pdf_id.as_str());
    let m = &show["metadata"];
    assert_eq!(
        m["title"],
        "Délibération du conseil municipal du 12 juin 1998"
    );
    assert_eq!(
        m["description"],
        "Vote du budget primitif.\nAnnexes jointes."
    );
    assert_eq!(m["producer"], "Secrétariat général");
    assert_eq!(m["date"], "1998-06-12");
    assert_eq!(m["date_from"], "");
    assert_eq!(m["type"], "délibération");
    assert_eq!(
        m["keywords"],
        serde_json::json!(["budget", "conseil municipal"])
    );
    assert_eq!(m["communicability"], "immediate");
    assert_eq!(m["dua_years"], 10);
    assert_eq!(m["final"], "C");
    assert_eq!(m["language"], "fr");
    assert_eq!(m["licence"], "Licence Ouverte 2.0", "default licence");
    assert_eq!(show["origin_node_id"], node.node_id.as_str());
    assert_eq!(show["manifest_digest"], digest.as_str());
    assert_eq!(show["size"], pdf_bytes.len() as u64);
    let files = show["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["name"], "deliberation-1998-06-12.pdf");
    assert_eq!(files[0]["size"], pdf_bytes.len() as u64);
    assert_eq!(files[0]["media_type"], "application/pdf");
    assert_eq!(
        files[0]["blake3"],
        blake3::hash(&pdf_bytes).to_hex().as_str()
    );
    assert_eq!(files[0]["sha512"].as_str().unwrap().len(), 128);
    assert_eq!(files[0]["blobs"], 1);

    let show_multi = node.cli_json(&["show", &multi_id]);
    let mm = &show_multi["metadata"];
    assert_eq!(mm["date"], "");
    assert_eq!(mm["date_from"], "1997-09-01");
    assert_eq!(mm["date_to"], "1998-06-30");
    assert_eq!(mm["communicability"], "", "unset means not communicable");
    assert_eq!(mm["licence"], "", "no licence invented");
    let names: Vec<&str> = show_multi["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["annexe-budget.txt", "votes.csv", "plan.png"]);
    assert_eq!(show_multi["files"][1]["media_type"], "text/csv");

    // get of a one-file record: byte for byte.
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    node.assert_get_file(&pdf_id, &out.join("copy.pdf"), &pdf_bytes);

    // get of a multi-file record: a directory holding the files under their names.
    let dir = out.join("dossier");
    node.cli_ok(&["get", &multi_id, "-o", p(&dir)]);
    assert_eq!(
        entries(&dir),
        vec!["annexe-budget.txt", "plan.png", "votes.csv"],
        "only the record's files, no temporary leftovers"
    );
    assert!(std::fs::read(dir.join("annexe-budget.txt")).unwrap() == annexe_bytes);
    assert!(std::fs::read(dir.join("votes.csv")).unwrap() == csv_bytes);
    assert!(std::fs::read(dir.join("plan.png")).unwrap() == plan_bytes);

    // A byte range of one file of the record.
    let part = out.join("part.bin");
    node.cli_ok(&[
        "get",
        &multi_id,
        "--file",
        "plan.png",
        "--offset",
        "1048000",
        "--length",
        "70000",
        "-o",
        p(&part),
    ]);
    assert!(std::fs::read(&part).unwrap() == plan_bytes[1_048_000..1_118_000]);
    // To the end of the file when --length is 0 (the default).
    let tail = out.join("tail.csv");
    node.cli_ok(&[
        "get",
        &multi_id,
        "--file",
        "votes.csv",
        "--offset",
        "16",
        "-o",
        p(&tail),
    ]);
    assert!(std::fs::read(&tail).unwrap() == csv_bytes[16..]);
    // A one-file record takes a range without --file.
    let head = out.join("head.pdf");
    node.cli_ok(&[
        "get",
        &pdf_id,
        "--offset",
        "0",
        "--length",
        "9",
        "-o",
        p(&head),
    ]);
    assert_eq!(std::fs::read(&head).unwrap(), b"%PDF-1.7\n");
    // To stdout with -o -.
    let o = node.cli(&["get", &pdf_id, "--offset", "1", "--length", "7", "-o", "-"]);
    expect_code(&o, 0, "get -o -");
    assert_eq!(o.stdout, b"PDF-1.7");

    // Fixity check.
    let v = node.cli(&["verify"]);
    expect_code(&v, 0, "verify");
    assert!(
        stdout(&v).contains("2 record(s) checked, 0 failed"),
        "{}",
        stdout(&v)
    );
    let vj = node.cli_json(&["verify"]);
    assert_eq!(vj["ok"], true, "{vj}");
    assert_eq!(vj["records_checked"], 2, "{vj}");
    assert_eq!(vj["records_failed"], 0, "{vj}");
    let reports = vj["records"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r["ok"] == true), "{vj}");
    let one = node.cli_json(&["verify", &multi_id]);
    assert_eq!(one["records_checked"], 1, "{one}");
    assert_eq!(one["records"][0]["id"], multi_id.as_str());
    assert_eq!(one["records"][0]["files"], 3);
    assert_eq!(
        one["records"][0]["bytes"],
        (annexe_bytes.len() + csv_bytes.len() + plan_bytes.len()) as u64
    );

    // status: the identity printed by init, the territory given to it.
    let s = status(&node);
    assert_eq!(s["node_id"], node.node_id.as_str(), "{s}");
    assert_eq!(s["territory"], territory, "{s}");
    assert_eq!(s["records"], 2, "{s}");
    assert_eq!(s["blobs"], 4, "one blob per file here: {s}");
    assert!(
        s["territory_recipient"]
            .as_str()
            .unwrap()
            .starts_with("age1"),
        "{s}"
    );
}

#[test]
fn twenty_mib_file_round_trips_through_several_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root, "Commune de Dinan");
    let big = root.join("cadastre-scan.tif");
    random_file(&big, 20 * MIB, 20).unwrap();
    let want = std::fs::read(&big).unwrap();
    let id = node.ingest(&[&big], "Plan cadastral numérisé", &[]);
    let show = node.cli_json(&["show", &id]);
    // 20 MiB of plaintext plus age's overhead, cut into 4 MiB blobs: 5 full ones and a tail.
    assert_eq!(show["files"][0]["blobs"], 6, "{show}");
    assert_eq!(show["files"][0]["size"], (20 * MIB) as u64);
    assert_eq!(show["files"][0]["media_type"], "image/tiff");
    assert_eq!(
        show["files"][0]["blake3"],
        blake3::hash(&want).to_hex().as_str()
    );

    let dest = root.join("back.tif");
    node.assert_get_file(&id, &dest, &want);
    assert!(!root.join("back.tif.archipel-part").exists());

    // A range that straddles the boundary between the first two blobs.
    let range = root.join("range.bin");
    let (off, len) = (4 * MIB - 50_000, 300_000);
    node.cli_ok(&[
        "get",
        &id,
        "--offset",
        &off.to_string(),
        "--length",
        &len.to_string(),
        "-o",
        p(&range),
    ]);
    assert!(std::fs::read(&range).unwrap() == want[off..off + len]);
    // The last bytes of the file.
    let last = root.join("last.bin");
    node.cli_ok(&[
        "get",
        &id,
        "--offset",
        &(20 * MIB - 10).to_string(),
        "-o",
        p(&last),
    ]);
    assert!(std::fs::read(&last).unwrap() == want[20 * MIB - 10..]);
    // A range past the end is refused as invalid input, naming the sizes.
    let o = node.cli(&[
        "get",
        &id,
        "--offset",
        &(20 * MIB - 10).to_string(),
        "--length",
        "11",
        "-o",
        p(&root.join("beyond.bin")),
    ]);
    let e = expect_code(&o, 5, "range past the end");
    assert!(e.contains(&(20 * MIB).to_string()), "{e}");
    assert!(!root.join("beyond.bin").exists());

    let v = node.cli_json(&["verify", &id]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"][0]["blobs"], 6, "{v}");
    assert_eq!(v["records"][0]["bytes"], (20 * MIB) as u64, "{v}");
}

// ---------------------------------------------------------------------------------------
// Metadata files
// ---------------------------------------------------------------------------------------

const META_TOML: &str = r#"
title = "Registre des délibérations 2003"
description = "Registre relié, 212 feuillets."
producer = "Secrétariat général"
date = "2003-12-31"
type = "registre"
keywords = ["délibérations", "registre"]
communicability = "immediate"
dua = 50
final = "C"
"#;

const META_JSON: &str = r#"{
  "title": "Permis de construire PC 035 288 05 A0012",
  "description": "Maison individuelle, rue des Remparts.",
  "producer": "Urbanisme",
  "date": "2005-03-14",
  "type": "permis de construire",
  "keywords": ["urbanisme", "permis"],
  "communicability": "l213-2-3",
  "dua": 10,
  "final": "T"
}"#;

fn assert_metadata(show: &Value, want: &[(&str, Value)]) {
    for (k, v) in want {
        assert_eq!(&show["metadata"][*k], v, "field {k} of {show}");
    }
}

#[test]
fn metadata_from_a_toml_file_with_flags_overriding_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root, "Commune de Vitré");
    let meta = root.join("meta.toml");
    std::fs::write(&meta, META_TOML).unwrap();
    let doc = root.join("registre.pdf");
    pdf_like(&doc, 50_000, 3);

    let a = node.cli_json(&["ingest", p(&doc), "--metadata", p(&meta)]);
    let show = node.cli_json(&["show", a["id"].as_str().unwrap()]);
    use serde_json::json;
    assert_metadata(
        &show,
        &[
            ("title", json!("Registre des délibérations 2003")),
            ("description", json!("Registre relié, 212 feuillets.")),
            ("producer", json!("Secrétariat général")),
            ("date", json!("2003-12-31")),
            ("type", json!("registre")),
            ("keywords", json!(["délibérations", "registre"])),
            ("communicability", json!("immediate")),
            ("dua_years", json!(50)),
            ("final", json!("C")),
            ("language", json!("fr")),
        ],
    );

    // Flags win over the file, field by field; the rest still comes from the file.
    let b = node.cli_json(&[
        "ingest",
        p(&doc),
        "--metadata",
        p(&meta),
        "--title",
        "Registre (copie de travail)",
        "--producer",
        "Archives communales",
        "--keyword",
        "copie",
        "--dua",
        "5",
        "--final",
        "D",
        "--communicability",
        "never",
    ]);
    let show = node.cli_json(&["show", b["id"].as_str().unwrap()]);
    assert_metadata(
        &show,
        &[
            ("title", json!("Registre (copie de travail)")),
            ("description", json!("Registre relié, 212 feuillets.")),
            ("producer", json!("Archives communales")),
            ("date", json!("2003-12-31")),
            ("type", json!("registre")),
            ("keywords", json!(["copie"])),
            ("communicability", json!("never")),
            ("dua_years", json!(5)),
            ("final", json!("D")),
        ],
    );
    assert_eq!(b["deduplicated_files"], 1, "same content as the first: {b}");
}

#[test]
fn metadata_from_a_json_file_with_flags_overriding_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root, "Commune de Fougères");
    let meta = root.join("meta.json");
    std::fs::write(&meta, META_JSON).unwrap();
    let doc = root.join("pc.pdf");
    pdf_like(&doc, 40_000, 4);

    use serde_json::json;
    let a = node.cli_json(&["ingest", p(&doc), "--metadata", p(&meta)]);
    let show = node.cli_json(&["show", a["id"].as_str().unwrap()]);
    assert_metadata(
        &show,
        &[
            ("title", json!("Permis de construire PC 035 288 05 A0012")),
            (
                "description",
                json!("Maison individuelle, rue des Remparts."),
            ),
            ("producer", json!("Urbanisme")),
            ("date", json!("2005-03-14")),
            ("type", json!("permis de construire")),
            ("keywords", json!(["urbanisme", "permis"])),
            ("communicability", json!("l213-2-3")),
            ("dua_years", json!(10)),
            ("final", json!("T")),
        ],
    );

    // A range given by flags replaces nothing silently: with the file's date it is refused...
    let o = node.cli(&[
        "ingest",
        p(&doc),
        "--metadata",
        p(&meta),
        "--date-from",
        "2005-01-01",
        "--date-to",
        "2005-12-31",
    ]);
    let e = expect_code(&o, 5, "date from the file plus a range from flags");
    assert!(e.contains("date"), "{e}");
    // ...while a flag for the same field overrides it.
    let b = node.cli_json(&[
        "ingest",
        p(&doc),
        "--metadata",
        p(&meta),
        "--date",
        "2005-04-01",
        "--type",
        "arrêté",
        "--description",
        "Modifié.",
    ]);
    let show = node.cli_json(&["show", b["id"].as_str().unwrap()]);
    assert_metadata(
        &show,
        &[
            ("title", json!("Permis de construire PC 035 288 05 A0012")),
            ("date", json!("2005-04-01")),
            ("type", json!("arrêté")),
            ("description", json!("Modifié.")),
            ("producer", json!("Urbanisme")),
        ],
    );
    assert_eq!(ids(&node.cli_json(&["ls"])).len(), 2);
}

// ---------------------------------------------------------------------------------------
// ls filters
// ---------------------------------------------------------------------------------------

#[test]
fn ls_filters_by_producer_type_communicability_and_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root, "Commune de Redon");
    let f = |name: &str, seed: u64| {
        let path = root.join(name);
        random_file(&path, 10_000, seed).unwrap();
        path
    };
    let (fa, fb, fc) = (f("a.pdf", 10), f("b.pdf", 11), f("c.pdf", 12));
    let a = node.ingest(
        &[&fa],
        "A",
        &[
            "--producer",
            "Secrétariat général",
            "--type",
            "délibération",
            "--communicability",
            "immediate",
            "--date",
            "1998-06-12",
        ],
    );
    let b = node.ingest(
        &[&fb],
        "B",
        &[
            "--producer",
            "Urbanisme",
            "--type",
            "permis de construire",
            "--communicability",
            "l213-2-3",
            "--date-from",
            "2001-01-01",
            "--date-to",
            "2005-12-31",
        ],
    );
    let c = node.ingest(
        &[&fc],
        "C",
        &["--producer", "Urbanisme", "--type", "délibération"],
    );
    let ls = |args: &[&str]| {
        let mut a = vec!["ls"];
        a.extend_from_slice(args);
        ids(&node.cli_json(&a))
    };
    assert_eq!(ls(&[]), vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(ls(&["--producer", "Urbanisme"]), vec![b.clone(), c.clone()]);
    assert_eq!(ls(&["--producer", "Secrétariat général"]), vec![a.clone()]);
    assert_eq!(
        ls(&["--producer", "Urbanism"]),
        Vec::<String>::new(),
        "exact match"
    );
    assert_eq!(ls(&["--type", "délibération"]), vec![a.clone(), c.clone()]);
    assert_eq!(ls(&["--type", "permis de construire"]), vec![b.clone()]);
    assert_eq!(ls(&["--communicability", "immediate"]), vec![a.clone()]);
    assert_eq!(ls(&["--communicability", "l213-2-3"]), vec![b.clone()]);
    assert_eq!(ls(&["--communicability", "never"]), Vec::<String>::new());
    // Dates: a record matches when its range meets the filter's; undated ones never do.
    assert_eq!(ls(&["--date-from", "2000-01-01"]), vec![b.clone()]);
    assert_eq!(ls(&["--date-to", "1999-12-31"]), vec![a.clone()]);
    assert_eq!(
        ls(&["--date-from", "1998-06-12", "--date-to", "2001-01-01"]),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        ls(&["--date-from", "2003-01-01", "--date-to", "2003-12-31"]),
        vec![b.clone()],
        "inside B's range"
    );
    assert_eq!(ls(&["--date-from", "2006-01-01"]), Vec::<String>::new());
    assert_eq!(ls(&["--date-to", "1998-06-11"]), Vec::<String>::new());
    // Filters combine.
    assert_eq!(
        ls(&["--producer", "Urbanisme", "--type", "délibération"]),
        vec![c.clone()]
    );
    assert_eq!(ls(&["--limit", "2"]), vec![a.clone(), b.clone()]);
    // The text form lists one line per record.
    let text = node.cli_ok(&["ls", "--producer", "Urbanisme"]);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().next().unwrap().starts_with(&b), "{text}");
}

// ---------------------------------------------------------------------------------------
// Deduplication
// ---------------------------------------------------------------------------------------

#[test]
fn the_same_file_in_two_records_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root, "Commune de Lamballe");
    let x = root.join("etat-civil-1902.pdf");
    random_file(&x, 6 * MIB, 30).unwrap(); // two blobs
    let x_bytes = std::fs::read(&x).unwrap();

    let first = node.cli_json(&["ingest", p(&x), "--title", "Naissances 1902"]);
    assert_eq!(first["deduplicated_files"], 0, "{first}");
    let s1 = status(&node);
    assert_eq!(s1["blobs"], 2, "{s1}");
    let stored1 = s1["stored_bytes"].as_u64().unwrap();
    assert!(stored1 > x_bytes.len() as u64, "ciphertext is larger: {s1}");

    // The same content again, under another name and with another file.
    let copy_dir = root.join("copie");
    std::fs::create_dir(&copy_dir).unwrap();
    let x2 = copy_dir.join("naissances-1902-copie.pdf");
    std::fs::copy(&x, &x2).unwrap();
    let y = root.join("bordereau.txt");
    let y_bytes = write(&y, "Bordereau de versement n° 12\n".repeat(300).as_bytes());
    let second = node.cli_json(&[
        "ingest",
        p(&x2),
        p(&y),
        "--title",
        "Versement 12 (avec copie)",
    ]);
    assert_eq!(second["deduplicated_files"], 1, "{second}");
    assert_eq!(second["files"], 2, "{second}");
    assert_eq!(second["bytes"], (x_bytes.len() + y_bytes.len()) as u64);
    let s2 = status(&node);
    let stored2 = s2["stored_bytes"].as_u64().unwrap();
    let grew = stored2 - stored1;
    // Only the new small file was stored (its age ciphertext: a header and 16 bytes a chunk).
    assert!(
        grew >= y_bytes.len() as u64 && grew < y_bytes.len() as u64 + 1024,
        "stored_bytes grew by {grew}, the new file is {} bytes and the duplicate {}",
        y_bytes.len(),
        x_bytes.len()
    );
    assert_eq!(s2["blobs"], 3, "one new blob: {s2}");

    // The very same file a third time: nothing new at all.
    let third = node.cli_json(&["ingest", p(&x), "--title", "Naissances 1902 (bis)"]);
    assert_eq!(third["deduplicated_files"], 1, "{third}");
    let s3 = status(&node);
    assert_eq!(s3["stored_bytes"].as_u64().unwrap(), stored2, "{s3}");
    assert_eq!(s3["blobs"], 3, "{s3}");
    assert_eq!(s3["records"], 3, "{s3}");

    // Every record reads back, under its own file names.
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    node.assert_get_file(first["id"].as_str().unwrap(), &out.join("1.pdf"), &x_bytes);
    node.assert_get_file(third["id"].as_str().unwrap(), &out.join("3.pdf"), &x_bytes);
    let d2 = out.join("2");
    node.cli_ok(&["get", second["id"].as_str().unwrap(), "-o", p(&d2)]);
    assert_eq!(
        entries(&d2),
        vec!["bordereau.txt", "naissances-1902-copie.pdf"]
    );
    assert!(std::fs::read(d2.join("naissances-1902-copie.pdf")).unwrap() == x_bytes);
    assert!(std::fs::read(d2.join("bordereau.txt")).unwrap() == y_bytes);
    let v = node.cli_json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records_checked"], 3, "{v}");
}

// ---------------------------------------------------------------------------------------
// Confidentiality at rest
// ---------------------------------------------------------------------------------------

#[test]
fn nothing_readable_in_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut node = started(root, "Commune de Quimperlé");
    let marker = "REGISTRE-DES-DELIBERATIONS-MARKER";
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 200 * 1024 {
        text.push_str(&format!(
            "Séance n° {i}. {marker} Le conseil municipal, après en avoir délibéré, adopte.\n"
        ));
        i += 1;
    }
    let file = root.join("registre-quimperle-confidentiel.txt");
    std::fs::write(&file, &text).unwrap();
    let title = "TITRE-TRES-DISTINCTIF-7f3a9c Délibérations secrètes";
    let description = "DESCRIPTION-TRES-DISTINCTIVE-b41e02 relative au contentieux";
    let producer = "PRODUCTEUR-DISTINCTIF-55d1";
    let id = node.ingest(
        &[&file],
        title,
        &[
            "--description",
            description,
            "--producer",
            producer,
            "--keyword",
            "MOTCLE-DISTINCTIF-90ab",
        ],
    );
    // It is archived and readable through the node...
    let back = root.join("back.txt");
    node.assert_get_file(&id, &back, text.as_bytes());
    node.stop().unwrap();

    // ...but not from the disk.
    let needles: [(&str, &[u8]); 6] = [
        ("content marker", marker.as_bytes()),
        ("title", title.as_bytes()),
        ("description", description.as_bytes()),
        ("producer", producer.as_bytes()),
        ("keyword", b"MOTCLE-DISTINCTIF-90ab"),
        ("file name", b"registre-quimperle-confidentiel"),
    ];
    let files = all_files(&node.data);
    assert!(
        files.iter().any(|f| f.starts_with(node.data.join("db"))),
        "the scan must cover the sled files: {files:?}"
    );
    let mut scanned = 0u64;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        scanned += bytes.len() as u64;
        for (what, needle) in &needles {
            assert!(
                !contains(&bytes, needle),
                "the {what} is readable in {}",
                f.display()
            );
        }
    }
    assert!(
        scanned > text.len() as u64,
        "scanned {scanned} bytes: the ciphertext must be in there"
    );
}

// ---------------------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------------------

#[test]
fn records_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut node = started(root, "Commune de Concarneau");
    let small = root.join("arrete.pdf");
    let small_bytes = pdf_like(&small, 70_000, 40);
    let big = root.join("film.mp4");
    random_file(&big, 9 * MIB, 41).unwrap();
    let big_bytes = std::fs::read(&big).unwrap();
    let a = node.ingest(&[&small], "Arrêté", &["--date", "2010-02-03"]);
    let b = node.ingest(&[&big], "Film de la fête", &[]);
    let before = status(&node);

    let st = node.stop().unwrap();
    assert!(st.success(), "SIGTERM must stop the node cleanly: {st}");
    assert!(node.log_text().contains("stopped cleanly"));
    // Stopped: the CLI says the node is unreachable (exit 3).
    let o = node.cli(&["ls"]);
    expect_code(&o, 3, "ls against a stopped node");

    node.start().unwrap();
    let ls = node.cli_json(&["ls"]);
    assert_eq!(ids(&ls), vec![a.clone(), b.clone()]);
    assert_eq!(ls[0]["title"], "Arrêté");
    assert_eq!(ls[1]["title"], "Film de la fête");
    let after = status(&node);
    for k in ["node_id", "records", "blobs", "stored_bytes"] {
        assert_eq!(before[k], after[k], "{k}: {before} vs {after}");
    }
    node.assert_get_file(&a, &root.join("a.pdf"), &small_bytes);
    node.assert_get_file(&b, &root.join("b.mp4"), &big_bytes);
    assert_eq!(node.cli_json(&["verify"])["ok"], true);
    // And a new record after the restart joins the old ones.
    let c = node.ingest(&[&small], "Arrêté (bis)", &[]);
    assert_eq!(ids(&node.cli_json(&["ls"])), vec![a, b, c]);
}

// ---------------------------------------------------------------------------------------
// The CLI contract
// ---------------------------------------------------------------------------------------

#[test]
fn help_lists_the_exit_codes() {
    let out = Command::new(bin("archipel"))
        .arg("--help")
        .output()
        .unwrap();
    expect_code(&out, 0, "archipel --help");
    let help = stdout(&out);
    assert!(help.contains("Exit codes:"), "{help}");
    for line in [
        "0  success",
        "1  other error",
        "2  usage error",
        "3  node unreachable",
        "4  record or file not found",
        "5  invalid input",
        "6  fixity failure",
        "7  resource exhausted",
    ] {
        assert!(help.contains(line), "missing {line:?} in:\n{help}");
    }
    for cmd in ["ingest", "get", "ls", "show", "verify", "status"] {
        assert!(help.contains(cmd), "subcommand {cmd} not listed:\n{help}");
    }
}

#[test]
fn exit_codes_follow_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root, "Commune de Morlaix");
    let f = root.join("doc.pdf");
    random_file(&f, 1000, 50).unwrap();
    let id = node.ingest(&[&f], "Doc", &[]);

    // 2: usage error.
    let o = node.cli(&["ls", "--no-such-flag"]);
    let e = expect_code(&o, 2, "unknown flag");
    assert!(e.contains("--no-such-flag"), "{e}");
    let o = node.cli(&["ingest", "--title", "x"]);
    expect_code(&o, 2, "ingest without files");

    // 3: node unreachable.
    let o = Command::new(bin("archipel"))
        .args(["--node", p(&root.join("nowhere")), "status"])
        .output()
        .unwrap();
    let e = expect_code(&o, 3, "no node there");
    assert!(e.contains("nowhere"), "names the path: {e}");
    let o = Command::new(bin("archipel"))
        .args([
            "--node",
            p(&root.join("nowhere")),
            "ingest",
            p(&f),
            "--title",
            "x",
        ])
        .output()
        .unwrap();
    expect_code(&o, 3, "ingest to no node");

    // 4: not found, naming what.
    let missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for args in [
        vec!["show", missing],
        vec!["get", missing, "-o", "-"],
        vec!["verify", missing],
    ] {
        let o = node.cli(&args);
        let e = expect_code(&o, 4, &format!("{args:?}"));
        assert!(e.contains(missing), "{args:?}: {e}");
    }
    let o = node.cli(&["get", &id, "--file", "other.pdf", "-o", "-"]);
    let e = expect_code(&o, 4, "no such file in the record");
    assert!(e.contains("other.pdf"), "{e}");

    // 5: invalid input.
    let o = node.cli(&["ingest", p(&f), "--title", "x", "--date", "12/06/1998"]);
    let e = expect_code(&o, 5, "bad date");
    assert!(e.contains("date"), "{e}");

    // Nothing above archived anything.
    assert_eq!(ids(&node.cli_json(&["ls"])), vec![id]);
}

#[test]
fn json_output_on_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = started(root, "Commune de Lannion");
    let f = root.join("note.txt");
    let bytes = write(&f, "Note de service\n".repeat(100).as_bytes());

    // Each command prints exactly one JSON document on stdout.
    let one_doc = |args: &[&str]| -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = node.cli(&a);
        expect_code(&out, 0, &format!("{a:?}"));
        let text = stdout(&out);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{a:?}: not one JSON doc: {e}: {text}"))
    };

    let ing = one_doc(&["ingest", p(&f), "--title", "Note"]);
    let id = ing["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 26, "a ULID: {ing}");
    for k in ["files", "bytes", "deduplicated_files", "manifest_digest"] {
        assert!(!ing[k].is_null(), "ingest --json lacks {k}: {ing}");
    }

    let dest = root.join("note-back.txt");
    let get = one_doc(&["get", &id, "-o", p(&dest)]);
    assert_eq!(get["id"], id.as_str(), "{get}");
    assert_eq!(get["files"][0]["name"], "note.txt", "{get}");
    assert_eq!(get["files"][0]["path"], p(&dest), "{get}");
    assert_eq!(get["files"][0]["bytes"], bytes.len() as u64, "{get}");
    assert!(std::fs::read(&dest).unwrap() == bytes);

    let ls = one_doc(&["ls"]);
    assert_eq!(ids(&ls), vec![id.clone()]);
    assert_eq!(ls[0]["files"][0]["name"], "note.txt");

    let show = one_doc(&["show", &id]);
    assert_eq!(show["id"], id.as_str());
    assert_eq!(show["metadata"]["title"], "Note");
    assert_eq!(show["files"][0]["media_type"], "text/plain");

    let verify = one_doc(&["verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["records"][0]["id"], id.as_str());

    let st = one_doc(&["status"]);
    assert_eq!(st["node_id"], node.node_id.as_str());
    assert_eq!(st["records"], 1);
    for k in [
        "territory",
        "version",
        "blobs",
        "stored_bytes",
        "disk_bytes",
        "public_key",
        "territory_recipient",
        "recovery_recipients",
        "data_dir",
    ] {
        assert!(!st[k].is_null(), "status --json lacks {k}: {st}");
    }
    // The global flag may also come before the subcommand.
    let out = Command::new(bin("archipel"))
        .args(["--json", "--node", p(&node.data), "status"])
        .output()
        .unwrap();
    expect_code(&out, 0, "--json before the subcommand");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node_id"], node.node_id.as_str());
}

// ---------------------------------------------------------------------------------------
// archipel-node run with no arguments
// ---------------------------------------------------------------------------------------

#[test]
fn node_run_without_arguments_initialises_and_serves_the_current_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().join("mairie");
    std::fs::create_dir(&cwd).unwrap();
    let log = std::fs::File::create(tmp.path().join("node.log")).unwrap();
    let mut child = Command::new(bin("archipel-node"))
        .current_dir(&cwd)
        .env_remove("ARCHIPEL_NODE")
        .env("ARCHIPEL_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| {
            panic!(
                "no ready line ({e}); log:\n{}",
                std::fs::read_to_string(tmp.path().join("node.log")).unwrap_or_default()
            )
        });
    assert!(ready.starts_with("archipel-node ready"), "{ready}");
    let data = cwd.join("archipel-data");
    assert!(
        data.join("node.toml").is_file(),
        "initialised ./archipel-data"
    );
    assert!(data.join("keys").join("territory.key").is_file());
    assert!(data.join("admin.sock").exists());

    // The CLI's default node is ./archipel-data too.
    let st = Command::new(bin("archipel"))
        .current_dir(&cwd)
        .env_remove("ARCHIPEL_NODE")
        .args(["status", "--json"])
        .output()
        .unwrap();
    expect_code(&st, 0, "archipel status in the same directory");
    let v: Value = serde_json::from_slice(&st.stdout).unwrap();
    let node_id = v["node_id"].as_str().unwrap();
    assert!(ready.contains(node_id), "{ready} vs {v}");
    let toml = std::fs::read_to_string(data.join("node.toml")).unwrap();
    assert!(toml.contains(node_id), "{toml}");
    assert_eq!(v["records"], 0);
    assert!(
        v["territory"].as_str().unwrap().starts_with("Territoire"),
        "default territory: {v}"
    );
    drop(child);
}

// ---------------------------------------------------------------------------------------
// Recovery kit
// ---------------------------------------------------------------------------------------

#[test]
fn recovery_kit_recreates_the_node_and_reads_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let territory = "Commune de Paimpol";
    let mut node = started(root, territory);
    let a = root.join("cadastre.pdf");
    let a_bytes = pdf_like(&a, 200_000, 60);
    let b = root.join("plan.tif");
    random_file(&b, 5 * MIB, 61).unwrap();
    let b_bytes = std::fs::read(&b).unwrap();
    let ra = node.ingest(&[&a], "Cadastre", &[]);
    let rb = node.ingest(&[&b], "Plan", &[]);
    node.stop().unwrap();

    let pass = "un passphrase long et difficile à deviner";
    let kit = root.join("kit.age");
    let out = Command::new(bin("archipel-node"))
        .args(["export-kit", "--data", p(&node.data), "--out", p(&kit)])
        .env("ARCHIPEL_PASSPHRASE", pass)
        .output()
        .unwrap();
    expect_code(&out, 0, "export-kit");
    assert!(stdout(&out).contains(&node.node_id), "{}", stdout(&out));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kit).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the kit is a secret");
    }
    let sealed = std::fs::read(&kit).unwrap();
    let keys = node.data.join("keys");
    let territory_key = std::fs::read_to_string(keys.join("territory.key")).unwrap();
    let territory_key = territory_key.trim();
    assert!(territory_key.starts_with("AGE-SECRET-KEY-1"));
    let index_key = std::fs::read_to_string(keys.join("index.key")).unwrap();
    let node_key = std::fs::read_to_string(keys.join("node.key")).unwrap();
    let node_seed = node_key.trim().rsplit(' ').next().unwrap().to_string();
    for (what, secret) in [
        ("territory key", territory_key),
        (
            "territory key (any case)",
            &territory_key.to_ascii_lowercase(),
        ),
        ("index key", index_key.trim()),
        ("node key", node_seed.as_str()),
        ("territory name", territory),
    ] {
        assert!(
            !contains(&sealed, secret.as_bytes()),
            "the kit holds the {what} in clear"
        );
    }
    // Wrong passphrase: refused, saying so, and nothing created.
    let bad = root.join("bad");
    let out = Command::new(bin("archipel-node"))
        .args([
            "init",
            "--data",
            p(&bad),
            "--kit",
            p(&kit),
            "--territory",
            "x",
        ])
        .env("ARCHIPEL_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "init with a wrong passphrase succeeded"
    );
    assert!(stderr(&out).contains("passphrase"), "{}", stderr(&out));
    assert!(!bad.join("node.toml").exists());

    // Right passphrase: the same node.
    let new = root.join("rebuilt");
    let out = Command::new(bin("archipel-node"))
        .args([
            "init",
            "--data",
            p(&new),
            "--kit",
            p(&kit),
            "--territory",
            "x",
        ])
        .env("ARCHIPEL_PASSPHRASE", pass)
        .output()
        .unwrap();
    expect_code(&out, 0, "init --kit");
    assert_eq!(stdout(&out).trim(), node.node_id);
    let new_key = std::fs::read_to_string(new.join("keys").join("territory.key")).unwrap();
    assert_eq!(new_key.trim(), territory_key);
    // Its database is the original's, copied while the original is stopped.
    copy_dir(&node.data.join("db"), &new.join("db"));
    copy_dir(&node.data.join("blobs"), &new.join("blobs"));
    // TestNode has no constructor for an existing directory: take a fresh one and point it
    // at the rebuilt data directory.
    let mut rebuilt = TestNode::init(root, "placeholder", "placeholder").unwrap();
    rebuilt.data = new.clone();
    rebuilt.node_id = node.node_id.clone();
    rebuilt.log = root.join("rebuilt.log");
    rebuilt.start().unwrap();
    let s = status(&rebuilt);
    assert_eq!(s["node_id"], node.node_id.as_str(), "{s}");
    assert_eq!(s["territory"], territory, "the kit's territory: {s}");
    assert_eq!(
        ids(&rebuilt.cli_json(&["ls"])),
        vec![ra.clone(), rb.clone()]
    );
    rebuilt.assert_get_file(&ra, &root.join("a.pdf"), &a_bytes);
    rebuilt.assert_get_file(&rb, &root.join("b.tif"), &b_bytes);
    let v = rebuilt.cli_json(&["verify"]);
    assert_eq!(v["ok"], true, "signatures and key envelopes check out: {v}");
    // And it keeps archiving.
    let rc = rebuilt.ingest(&[&a], "Cadastre (après reconstruction)", &[]);
    assert_eq!(ids(&rebuilt.cli_json(&["ls"])), vec![ra, rb, rc]);
}
