//! BagIt (RFC 8493) in and out, and the reversibility export, through the real binaries.
//!
//! Exported bags are validated by bagit-python, the reference validator (`.ci/run` installs
//! it; without it these tests fail and say what to install). The PREMIS 3 event files are
//! checked structurally (see `check_premis`): no package ships the PREMIS 3 schema and none
//! could be obtained here, so the test checks what the schema requires of what we write.
#![allow(clippy::unwrap_used)]

use archipel_tests::{TestNode, expect_code, p, random_file};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn started(root: &Path) -> TestNode {
    let mut node = TestNode::init(root, "node", "Commune de Test").unwrap();
    node.start().unwrap();
    node
}

/// Runs a Python snippet with arguments; fails the test with its output unless it succeeds.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed by the BagIt tests: {e}"));
    assert!(
        out.status.success(),
        "python3 failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_bagit() {
    let out = Command::new("python3")
        .args(["-c", "import bagit"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed by the BagIt tests: {e}"));
    assert!(
        out.status.success(),
        "the BagIt tests need the reference validator bagit-python: python3 -m pip install bagit \
         (.ci/run installs it)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// bagit-python's full validation (every manifest, tag manifest and Payload-Oxum); returns
/// the bag's bag-info as JSON.
fn bagit_validate(bag: &Path) -> Value {
    let out = python(
        "import bagit, json, sys\n\
         b = bagit.Bag(sys.argv[1])\n\
         b.validate(fast=False, completeness_only=False)\n\
         assert b.is_valid()\n\
         print(json.dumps({'info': b.info, 'algorithms': b.algorithms, 'payload': sorted(b.payload_files()), 'tags': sorted(b.tagfile_entries().keys())}))",
        &[p(bag)],
    );
    serde_json::from_str(&out).unwrap()
}

/// What the PREMIS 3 schema (premis.xsd v3.0) requires of the elements we write, checked
/// with Python's XML parser: the root `premis` in namespace http://www.loc.gov/premis/v3
/// with version="3.0"; children in the schema's order (object+, event*, agent*); each object
/// with xsi:type intellectualEntity and an objectIdentifier (type, value); each event's
/// children in sequence eventIdentifier (type, value), eventType, eventDateTime (an
/// xs:dateTime), eventDetailInformation, eventOutcomeInformation, linkingAgentIdentifier,
/// linkingObjectIdentifier; every linked object and agent present in the document. Returns
/// the events as (type, outcome, linked object).
fn check_premis(path: &Path) -> Vec<(String, String, String)> {
    let out = python(
        r#"
import sys, json, re, xml.etree.ElementTree as ET
P = '{http://www.loc.gov/premis/v3}'
XSI = '{http://www.w3.org/2001/XMLSchema-instance}'
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == P + 'premis', root.tag
assert root.get('version') == '3.0'
kinds = [c.tag[len(P):] for c in root]
order = {'object': 0, 'event': 1, 'agent': 2, 'rights': 3}
assert all(k in order for k in kinds), kinds
assert [order[k] for k in kinds] == sorted(order[k] for k in kinds), 'children out of schema order'
assert kinds.count('object') >= 1, 'PREMIS 3 requires one object at least'
objects = set()
for o in root.findall(P + 'object'):
    assert o.get(XSI + 'type') == 'premis:intellectualEntity'
    oid = o.find(P + 'objectIdentifier')
    assert [c.tag[len(P):] for c in oid] == ['objectIdentifierType', 'objectIdentifierValue']
    objects.add(oid.find(P + 'objectIdentifierValue').text)
agents = set()
for a in root.findall(P + 'agent'):
    aid = a.find(P + 'agentIdentifier')
    assert [c.tag[len(P):] for c in aid] == ['agentIdentifierType', 'agentIdentifierValue']
    agents.add(aid.find(P + 'agentIdentifierValue').text)
events = []
seq = ['eventIdentifier', 'eventType', 'eventDateTime', 'eventDetailInformation',
       'eventOutcomeInformation', 'linkingAgentIdentifier', 'linkingObjectIdentifier']
for e in root.findall(P + 'event'):
    assert [c.tag[len(P):] for c in e] == seq, [c.tag for c in e]
    eid = e.find(P + 'eventIdentifier')
    assert [c.tag[len(P):] for c in eid] == ['eventIdentifierType', 'eventIdentifierValue']
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)', e.find(P + 'eventDateTime').text)
    outcome = e.find(P + 'eventOutcomeInformation/' + P + 'eventOutcome').text
    assert outcome in ('success', 'failure')
    la = e.find(P + 'linkingAgentIdentifier')
    assert [c.tag[len(P):] for c in la] == ['linkingAgentIdentifierType', 'linkingAgentIdentifierValue', 'linkingAgentRole']
    assert la.find(P + 'linkingAgentIdentifierValue').text in agents
    lo = e.find(P + 'linkingObjectIdentifier')
    assert [c.tag[len(P):] for c in lo] == ['linkingObjectIdentifierType', 'linkingObjectIdentifierValue']
    obj = lo.find(P + 'linkingObjectIdentifierValue').text
    assert obj in objects, obj
    events.append([e.find(P + 'eventType').text, outcome, obj])
print(json.dumps(events))
"#,
        &[p(path)],
    );
    serde_json::from_str::<Vec<(String, String, String)>>(&out).unwrap()
}

fn info<'a>(v: &'a Value, label: &str) -> &'a str {
    v["info"][label]
        .as_str()
        .unwrap_or_else(|| panic!("bag-info has no {label}: {v}"))
}

/// A record with two files (one over the CLI's 1 MiB chunk) and full metadata, edited once.
fn sample_record(node: &TestNode, dir: &Path) -> String {
    let a = dir.join("deliberation.pdf");
    let b = dir.join("annexe budget.csv");
    random_file(&a, 3 * 1024 * 1024 + 17, 7).unwrap();
    std::fs::write(&b, "ligne;montant\n1;100\n").unwrap();
    let id = node.ingest(
        &[&a, &b],
        "Délibération n°12: budget primitif",
        &[
            "--producer",
            "Secrétariat général",
            "--date",
            "2019-03-14",
            "--type",
            "délibération",
            "--keyword",
            "budget",
            "--keyword",
            "finances",
            "--communicability",
            "immediate",
            "--dua",
            "10",
            "--final",
            "C",
        ],
    );
    node.cli_ok(&["edit", &id, "--description", "Vote du budget 2019"]);
    id
}

#[test]
fn exported_bag_validates_with_bagit_python_and_carries_metadata_and_events() {
    require_bagit();
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let id = sample_record(&node, dir.path());
    let out = dir.path().join("bags");
    let v = node.cli_json(&["export", &id, "--bag", p(&out)]);
    assert_eq!(v["written"], serde_json::json!([id]));
    let bag = out.join(&id);
    let b = bagit_validate(&bag);
    assert_eq!(b["algorithms"], serde_json::json!(["sha512"]));
    assert_eq!(
        b["payload"],
        serde_json::json!(["data/annexe budget.csv", "data/deliberation.pdf"])
    );
    assert_eq!(info(&b, "DC-Title"), "Délibération n°12: budget primitif");
    assert_eq!(info(&b, "DC-Creator"), "Secrétariat général");
    assert_eq!(info(&b, "DC-Date"), "2019-03-14");
    assert_eq!(info(&b, "DC-Description"), "Vote du budget 2019");
    assert_eq!(info(&b, "External-Identifier"), id);
    assert_eq!(info(&b, "Archipel-Sort-Final"), "C");
    assert_eq!(info(&b, "Archipel-DUA-Years"), "10");
    assert_eq!(
        info(&b, "Payload-Oxum"),
        format!("{}.2", 3 * 1024 * 1024 + 17 + 20)
    );
    // Tag files are covered by the tag manifest (bagit-python checked their digests).
    let tags: Vec<&str> = b["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "bag-info.txt",
        "manifest-sha512.txt",
        "archipel/events.premis.xml",
        "archipel/events.jsonl",
        "archipel/record.json",
    ] {
        assert!(tags.contains(&t), "{t} not in the tag manifest: {tags:?}");
    }
    // The payload is the content, byte for byte.
    assert_eq!(
        std::fs::read(bag.join("data/deliberation.pdf")).unwrap(),
        std::fs::read(dir.path().join("deliberation.pdf")).unwrap()
    );
    // The record's events: its ingestion and its metadata change, and nothing else's.
    let events = check_premis(&bag.join("archipel/events.premis.xml"));
    let types: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert!(types.contains(&"ingestion"), "{types:?}");
    assert!(types.contains(&"metadata modification"), "{types:?}");
    assert!(events.iter().all(|e| e.2 == id && e.1 == "success"));
    let jsonl = std::fs::read_to_string(bag.join("archipel/events.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), events.len());
    assert_eq!(
        info(&b, "Archipel-Events"),
        events.len().to_string().as_str()
    );
}

#[test]
fn a_bag_round_trips_and_a_bag_made_by_bagit_python_is_ingested() {
    require_bagit();
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let id = sample_record(&node, dir.path());
    let out = dir.path().join("bags");
    node.cli_ok(&["export", &id, "--bag", p(&out)]);

    // Our own bag back in: same files, same metadata.
    let again = node.cli_json(&["ingest", "--bag", p(&out.join(&id))]);
    let again = again["id"].as_str().unwrap();
    assert_ne!(again, id);
    let (a, b) = (
        node.cli_json(&["show", &id]),
        node.cli_json(&["show", again]),
    );
    assert_eq!(a["metadata"], b["metadata"]);
    let digests = |v: &Value| {
        let mut d: Vec<(String, String)> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().into(),
                    f["sha512"].as_str().unwrap().into(),
                )
            })
            .collect();
        d.sort();
        d
    };
    assert_eq!(digests(&a), digests(&b));

    // A bag from the reference tool, SHA-256 and SHA-512 manifests, metadata from bag-info;
    // a flag wins over bag-info.
    let src = dir.path().join("versement");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("registre.txt"), "registre des arrêtés 1987\n").unwrap();
    random_file(&src.join("scan.tif"), 200_000, 3).unwrap();
    python(
        "import bagit, sys\n\
         bagit.make_bag(sys.argv[1], {'Source-Organization': 'Mairie de Test', \
         'DC-Title': 'Registre des arrêtés', 'DC-Date': '1987-01-01/1987-12-31', \
         'External-Description': 'Arrêtés du maire'}, checksums=['sha256', 'sha512'])",
        &[p(&src)],
    );
    let v = node.cli_json(&["ingest", "--bag", p(&src), "--communicability", "l213-2-3"]);
    let r = node.cli_json(&["show", v["id"].as_str().unwrap()]);
    let m = &r["metadata"];
    assert_eq!(m["title"], "Registre des arrêtés");
    assert_eq!(m["producer"], "Mairie de Test");
    assert_eq!(m["description"], "Arrêtés du maire");
    assert_eq!(m["date_from"], "1987-01-01");
    assert_eq!(m["date_to"], "1987-12-31");
    assert_eq!(m["communicability"], "l213-2-3");
    assert_eq!(r["files"].as_array().unwrap().len(), 2);
}

/// Every way a bag can fail to validate is refused before anything is archived, with exit
/// code 5 and the offending file named.
#[test]
fn an_invalid_bag_is_refused_naming_the_file() {
    require_bagit();
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let make = |name: &str| {
        let src = dir.path().join(name);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.txt"), "premier fichier\n").unwrap();
        std::fs::write(src.join("b.txt"), "second fichier\n").unwrap();
        python(
            "import bagit, sys\nbagit.make_bag(sys.argv[1], {'DC-Title': 'Essai'}, checksums=['sha512'])",
            &[p(&src)],
        );
        src
    };
    let refused = |bag: &Path, names: &str, what: &str| {
        let out = node.cli(&["ingest", "--bag", p(bag)]);
        let err = expect_code(&out, 5, what);
        assert!(err.contains(names), "{what}: {err:?} should name {names}");
    };

    // A change of size is caught by Payload-Oxum before any content is read.
    let bag = make("altered");
    std::fs::write(bag.join("data/a.txt"), "premier fichier, modifié\n").unwrap();
    refused(&bag, "Payload-Oxum", "a payload file changed size");

    let bag = make("same-size");
    std::fs::write(bag.join("data/b.txt"), "SECOND fichier\n").unwrap();
    refused(&bag, "data/b.txt", "a payload file changed, same size");

    let bag = make("missing");
    std::fs::remove_file(bag.join("data/b.txt")).unwrap();
    refused(&bag, "data/b.txt", "a payload file missing");

    let bag = make("extra");
    std::fs::write(bag.join("data/c.txt"), "ajouté après coup\n").unwrap();
    refused(&bag, "data/c.txt", "a payload file not in the manifest");

    let bag = make("oxum");
    let info = std::fs::read_to_string(bag.join("bag-info.txt")).unwrap();
    let info: String = info
        .lines()
        .map(|l| {
            if l.starts_with("Payload-Oxum") {
                "Payload-Oxum: 1.2\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(bag.join("bag-info.txt"), info).unwrap();
    refused(&bag, "Payload-Oxum", "a wrong Payload-Oxum");

    let bag = make("tag");
    let mut info = std::fs::read_to_string(bag.join("bag-info.txt")).unwrap();
    info.push_str("DC-Creator: ajouté sans mettre à jour le tagmanifest\n");
    std::fs::write(bag.join("bag-info.txt"), info).unwrap();
    refused(&bag, "bag-info.txt", "a tag file changed");

    let bag = make("declaration");
    std::fs::remove_file(bag.join("bagit.txt")).unwrap();
    refused(&bag, "bagit.txt", "no bagit.txt");

    let bag = make("no-manifest");
    std::fs::remove_file(bag.join("manifest-sha512.txt")).unwrap();
    std::fs::remove_file(bag.join("tagmanifest-sha512.txt")).unwrap();
    refused(&bag, "manifest", "no payload manifest");

    // Only MD5 manifests: nothing this CLI can check (RFC 8493 asks for SHA-256/512).
    let src = dir.path().join("md5");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "premier fichier\n").unwrap();
    python(
        "import bagit, sys\nbagit.make_bag(sys.argv[1], {'DC-Title': 'Essai'}, checksums=['md5'])",
        &[p(&src)],
    );
    refused(&src, "manifest-md5.txt", "an MD5-only bag");

    // Valid for BagIt, but a record's files are flat: refused, naming the file.
    let src = dir.path().join("nested");
    std::fs::create_dir_all(src.join("sous-dossier")).unwrap();
    std::fs::write(src.join("sous-dossier/a.txt"), "premier fichier\n").unwrap();
    python(
        "import bagit, sys\nbagit.make_bag(sys.argv[1], {'DC-Title': 'Essai'}, checksums=['sha512'])",
        &[p(&src)],
    );
    refused(&src, "data/sous-dossier/a.txt", "payload in a subdirectory");

    // Nothing was archived by any of them.
    let ls = node.cli_json(&["ls"]);
    assert_eq!(ls.as_array().unwrap().len(), 0, "{ls}");
}

/// `export --all`: every record as a valid bag, the whole log with the checkpoint it matches,
/// an inventory; a second run keeps what is unchanged, rewrites what changed, and finishes
/// what an interrupted run left.
#[test]
fn export_all_is_complete_and_safe_to_re_run() {
    require_bagit();
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let mut ids = Vec::new();
    for i in 0..3 {
        let f = dir.path().join(format!("acte-{i}.txt"));
        std::fs::write(&f, format!("acte numéro {i}\n")).unwrap();
        ids.push(node.ingest(
            &[&f],
            &format!("Acte {i}"),
            &["--communicability", "immediate"],
        ));
    }
    let out = dir.path().join("reversibilite");
    let v = node.cli_json(&["export", "--all", "--bag", p(&out)]);
    assert_eq!(v["written"].as_array().unwrap().len(), 3);
    for id in &ids {
        let b = bagit_validate(&out.join(id));
        assert_eq!(info(&b, "External-Identifier"), id);
    }
    let inventory: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("archipel-export.json")).unwrap())
            .unwrap();
    let mut listed: Vec<String> = inventory["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
    // The whole log: as many events as the exported checkpoint commits to.
    let size = inventory["log_size"].as_u64().unwrap();
    let jsonl = std::fs::read_to_string(out.join("log/events.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count() as u64, size);
    let cp = std::fs::read_to_string(out.join("log/checkpoint.txt")).unwrap();
    assert_eq!(cp.lines().nth(1).unwrap(), size.to_string());
    let events = check_premis(&out.join("log/events.premis.xml"));
    assert_eq!(events.len() as u64, size);

    // Re-run: nothing changed, nothing rewritten.
    let v = node.cli_json(&["export", "--all", "--bag", p(&out)]);
    assert_eq!(v["written"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["unchanged"].as_array().unwrap().len(), 3, "{v}");

    // A record edited since, a bag lost, a run interrupted mid-bag: the next run mends all.
    node.cli_ok(&["edit", &ids[0], "--description", "corrigé"]);
    std::fs::remove_dir_all(out.join(&ids[1])).unwrap();
    std::fs::create_dir_all(out.join(format!(".{}.partial/data", ids[1]))).unwrap();
    let v = node.cli_json(&["export", "--all", "--bag", p(&out)]);
    let mut written: Vec<String> = v["written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    written.sort();
    let mut want = vec![ids[0].clone(), ids[1].clone()];
    want.sort();
    assert_eq!(written, want, "{v}");
    assert!(!out.join(format!(".{}.partial", ids[1])).exists());
    let b = bagit_validate(&out.join(&ids[0]));
    assert_eq!(info(&b, "DC-Description"), "corrigé");
    bagit_validate(&out.join(&ids[1]));
}

#[test]
fn export_needs_records_or_all_and_refuses_an_unknown_record() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let out = dir.path().join("bags");
    expect_code(&node.cli(&["export", "--bag", p(&out)]), 5, "no record");
    expect_code(
        &node.cli(&["export", "01KAX7M3S1H4T6Q9W2Z8B5C0DE", "--bag", p(&out)]),
        4,
        "unknown record",
    );
    assert!(!out.exists(), "nothing is created for a refused export");
}
