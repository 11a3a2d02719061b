//! SEDA 2.2 in and out, through the real binaries: `archipel ingest --seda`, its
//! ArchiveTransferReply (which must validate against the schema and be in the node's audit
//! log), each refusal, and `archipel export --seda` re-ingested with the same metadata.
//!
//! Schema checks run `xmllint --nonet` (Debian `libxml2-utils`, installed by `.ci/run`)
//! against the schemas the repository carries in `cli/schemas/`; without it these tests
//! fail and say what to install.
#![allow(clippy::unwrap_used)]

use archipel_tests::{TestNode, expect_code, p, random_file};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use std::path::{Path, PathBuf};
use std::process::Command;

const NS: &str = "fr:gouv:culture:archivesdefrance:seda:v2.2";

fn started(root: &Path) -> TestNode {
    let mut node = TestNode::init(root, "node", "Commune de Test").unwrap();
    node.start().unwrap();
    node
}

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/schemas")
}

/// Validates a SEDA 2.2 message against the official schema (no network); returns
/// xmllint's complaints (empty: valid).
fn xmllint(file: &Path) -> String {
    let s = schemas();
    let out = Command::new("xmllint")
        .arg("--nonet")
        .arg("--noout")
        .arg("--schema")
        .arg(s.join("seda-2.2/seda-2.2-main.xsd"))
        .arg(file)
        .env("XML_CATALOG_FILES", s.join("catalog.xml"))
        .output()
        .unwrap_or_else(|e| {
            panic!("the SEDA tests need xmllint: apt-get install libxml2-utils ({e})")
        });
    if out.status.success() {
        String::new()
    } else {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

fn assert_valid(file: &Path) {
    let errors = xmllint(file);
    assert!(
        errors.is_empty(),
        "{} does not validate against SEDA 2.2:\n{errors}\n{}",
        file.display(),
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

fn sha512(path: &Path) -> String {
    hex::encode(Sha512::digest(std::fs::read(path).unwrap()))
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A transfer of three files in `dir`: a series (no object of its own) holding two units;
/// the series' access rule (AR055: 75 years) is inherited by both, the second overrides the
/// appraisal rule. The third file is referenced through a DataObjectGroup, with SHA-256.
/// `digest_of_a` replaces the first file's digest when given.
fn write_transfer(dir: &Path, digest_of_a: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir.join("content")).unwrap();
    let a = dir.join("content/deliberation.pdf");
    let b = dir.join("content/annexe.csv");
    let c = dir.join("content/registre.pdf");
    random_file(&a, 2 * 1024 * 1024 + 5, 11).unwrap();
    std::fs::write(&b, "ligne;montant\n1;100\n").unwrap();
    random_file(&c, 4096, 12).unwrap();
    let da = digest_of_a.map(String::from).unwrap_or_else(|| sha512(&a));
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ArchiveTransfer xmlns="{NS}">
  <Comment>Versement de test</Comment>
  <Date>2024-03-01T10:00:00</Date>
  <MessageIdentifier>VERS-2024-001</MessageIdentifier>
  <CodeListVersions/>
  <DataObjectPackage>
    <BinaryDataObject id="BDO1">
      <Uri>content/deliberation.pdf</Uri>
      <MessageDigest algorithm="SHA-512">{da}</MessageDigest>
      <Size>{sa}</Size>
      <FileInfo><Filename>deliberation.pdf</Filename></FileInfo>
    </BinaryDataObject>
    <BinaryDataObject id="BDO2">
      <Uri>content/annexe.csv</Uri>
      <MessageDigest algorithm="SHA-512">{db}</MessageDigest>
    </BinaryDataObject>
    <DataObjectGroup id="GRP1">
      <BinaryDataObject id="BDO3">
        <Uri>content/registre.pdf</Uri>
        <MessageDigest algorithm="SHA-256">{dc}</MessageDigest>
      </BinaryDataObject>
    </DataObjectGroup>
    <DescriptiveMetadata>
      <ArchiveUnit id="SERIE">
        <Management>
          <AppraisalRule><Rule>P10Y</Rule><FinalAction>Destroy</FinalAction></AppraisalRule>
          <AccessRule><Rule>AR055</Rule></AccessRule>
        </Management>
        <Content>
          <DescriptionLevel>Series</DescriptionLevel>
          <Title>Conseil municipal</Title>
        </Content>
        <ArchiveUnit id="AU1">
          <Management>
            <AppraisalRule><Rule>P50Y</Rule><FinalAction>Keep</FinalAction></AppraisalRule>
          </Management>
          <Content>
            <Title>Délibération n°12 &amp; annexe</Title>
            <Description>Vote du budget 2019</Description>
            <DocumentType>délibération</DocumentType>
            <Language>fr</Language>
            <Keyword><KeywordContent>budget</KeywordContent></Keyword>
            <Keyword><KeywordContent>finances</KeywordContent></Keyword>
            <OriginatingAgency><Identifier>Secrétariat général</Identifier></OriginatingAgency>
            <StartDate>2019-03-14</StartDate>
            <EndDate>2019-03-14</EndDate>
          </Content>
          <DataObjectReference><DataObjectReferenceId>BDO1</DataObjectReferenceId></DataObjectReference>
          <DataObjectReference><DataObjectReferenceId>BDO2</DataObjectReferenceId></DataObjectReference>
        </ArchiveUnit>
        <ArchiveUnit id="AU2">
          <Content>
            <Title>Registre 1990-1999</Title>
            <StartDate>1990-01-01</StartDate>
            <EndDate>1999-12-31T00:00:00</EndDate>
          </Content>
          <DataObjectReference><DataObjectGroupReferenceId>GRP1</DataObjectGroupReferenceId></DataObjectReference>
        </ArchiveUnit>
      </ArchiveUnit>
    </DescriptiveMetadata>
    <ManagementMetadata/>
  </DataObjectPackage>
  <ArchivalAgency><Identifier>Commune de Test</Identifier></ArchivalAgency>
  <TransferringAgency><Identifier>Secrétariat général</Identifier></TransferringAgency>
</ArchiveTransfer>
"#,
        sa = std::fs::metadata(&a).unwrap().len(),
        db = sha512(&b),
        dc = sha256(&c),
    );
    let path = dir.join("transfer.xml");
    std::fs::write(&path, xml).unwrap();
    path
}

/// Zips a directory with Python's zipfile (deflated), the way producers' tools do.
fn zip_dir(dir: &Path, out: &Path) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, os, zipfile\n\
             src, out = sys.argv[1], sys.argv[2]\n\
             with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   for root, _, files in os.walk(src):\n\
             \x20       for f in files:\n\
             \x20           full = os.path.join(root, f)\n\
             \x20           name = os.path.relpath(full, src)\n\
             \x20           if name == 'transfer.xml': name = 'manifest.xml'\n\
             \x20           z.write(full, name)\n",
        )
        .arg(dir)
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("python3 is needed to build test zips: {e}"));
    assert!(status.success());
}

fn events(node: &TestNode) -> Vec<Value> {
    node.cli_json(&["log", "tail", "-n", "100000"])
        .as_array()
        .unwrap()
        .clone()
}

fn transfer_events(node: &TestNode) -> Vec<(String, String)> {
    events(node)
        .iter()
        .filter(|e| e["type"] == "transfer")
        .map(|e| {
            (
                e["object"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn record_count(node: &TestNode) -> usize {
    node.cli_json(&["ls"]).as_array().map_or(0, Vec::len)
}

/// Runs a refused transfer: exit 5, a KO reply that validates, one failure event, nothing
/// archived. Returns (stderr, reply text).
fn refused(node: &TestNode, input: &Path, reply: &Path) -> (String, String) {
    let before = transfer_events(node).len();
    let out = node.cli(&["ingest", "--seda", p(input), "--reply", p(reply)]);
    let err = expect_code(&out, 5, "a refused transfer");
    assert_valid(reply);
    let text = std::fs::read_to_string(reply).unwrap();
    assert!(text.contains("<ReplyCode>KO</ReplyCode>"), "{text}");
    assert!(
        text.contains("<MessageRequestIdentifier>"),
        "the reply names the request: {text}"
    );
    let ev = transfer_events(node);
    assert_eq!(ev.len(), before + 1, "{ev:?}");
    assert_eq!(
        ev.last().unwrap(),
        &("node".to_string(), "failure".to_string())
    );
    assert_eq!(record_count(node), 0, "a refused transfer archives nothing");
    (err, text)
}

#[test]
fn a_valid_transfer_is_archived_acknowledged_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let src = dir.path().join("versement");
    let xml = write_transfer(&src, None);
    assert_valid(&xml);
    let v = node.cli_json(&["ingest", "--seda", p(&xml)]);
    assert_eq!(v["accepted"], true, "{v}");
    let reply = PathBuf::from(v["reply"].as_str().unwrap());
    assert_eq!(
        reply,
        src.join("transfer.reply.xml"),
        "default: next to the input"
    );
    assert_valid(&reply);
    let text = std::fs::read_to_string(&reply).unwrap();
    assert!(text.contains("<ReplyCode>OK</ReplyCode>"), "{text}");
    assert!(
        text.contains("<MessageRequestIdentifier>VERS-2024-001</MessageRequestIdentifier>"),
        "{text}"
    );
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "one record per unit with objects: {v}");
    assert_eq!(records[0]["unit"], "AU1");
    assert_eq!(records[1]["unit"], "AU2");
    let (r1, r2) = (
        records[0]["id"].as_str().unwrap(),
        records[1]["id"].as_str().unwrap(),
    );
    assert!(text.contains(r1) && text.contains(r2), "{text}");

    let a = node.cli_json(&["show", r1]);
    let m = &a["metadata"];
    assert_eq!(m["title"], "Délibération n°12 & annexe");
    assert_eq!(m["description"], "Vote du budget 2019");
    assert_eq!(m["producer"], "Secrétariat général");
    assert_eq!(m["type"], "délibération");
    assert_eq!(m["language"], "fr");
    assert_eq!(m["keywords"], serde_json::json!(["budget", "finances"]));
    assert_eq!(m["date"], "2019-03-14");
    assert_eq!(m["communicability"], "l213-2-4", "AR055, inherited");
    assert_eq!(m["dua_years"], 50);
    assert_eq!(m["final"], "C", "Keep");
    let mut names: Vec<&str> = a["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["annexe.csv", "deliberation.pdf"]);
    let pdf = a["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "deliberation.pdf")
        .unwrap();
    assert_eq!(pdf["sha512"], sha512(&src.join("content/deliberation.pdf")));

    let b = node.cli_json(&["show", r2]);
    let m = &b["metadata"];
    assert_eq!(m["title"], "Registre 1990-1999");
    assert_eq!(m["date_from"], "1990-01-01");
    assert_eq!(m["date_to"], "1999-12-31");
    assert_eq!(m["communicability"], "l213-2-4");
    assert_eq!(m["dua_years"], 10, "the series' appraisal rule, inherited");
    assert_eq!(m["final"], "D", "Destroy");
    assert_eq!(b["files"][0]["name"], "registre.pdf");

    // The reply is in the log: one transfer event per record, success.
    let mut ev = transfer_events(&node);
    ev.sort();
    let mut want = vec![
        (r1.to_string(), "success".to_string()),
        (r2.to_string(), "success".to_string()),
    ];
    want.sort();
    assert_eq!(ev, want);

    // Text mode prints each record and the reply's path.
    let src2 = dir.path().join("versement2");
    let xml2 = write_transfer(&src2, None);
    let out = node.cli_ok(&[
        "ingest",
        "--seda",
        p(&xml2),
        "--reply",
        p(&dir.path().join("r.xml")),
    ]);
    assert!(
        out.contains(&format!("reply: {}", p(&dir.path().join("r.xml")))),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn a_zip_transfer_is_archived_and_a_bad_zip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let src = dir.path().join("versement");
    write_transfer(&src, None);
    let zip = dir.path().join("versement.zip");
    zip_dir(&src, &zip);
    let v = node.cli_json(&["ingest", "--seda", p(&zip)]);
    assert_eq!(v["accepted"], true, "{v}");
    assert_eq!(
        PathBuf::from(v["reply"].as_str().unwrap()),
        dir.path().join("versement.reply.xml")
    );
    assert_valid(&dir.path().join("versement.reply.xml"));
    let id = v["records"][0]["id"].as_str().unwrap();
    assert_eq!(
        node.cli_json(&["show", id])["metadata"]["title"],
        "Délibération n°12 & annexe"
    );
    assert_eq!(record_count(&node), 2);

    // A zip whose file does not match its digest.
    let dir2 = tempfile::tempdir().unwrap();
    let node2 = started(dir2.path());
    let bad = dir2.path().join("bad");
    write_transfer(&bad, Some(&"0".repeat(128)));
    let zip = dir2.path().join("bad.zip");
    zip_dir(&bad, &zip);
    let (err, reply) = refused(&node2, &zip, &dir2.path().join("bad.reply.xml"));
    assert!(err.contains("BDO1"), "{err}");
    assert!(reply.contains("DIGEST"), "{reply}");
}

#[test]
fn schema_invalid_transfer_is_refused_with_a_reply() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let src = dir.path().join("versement");
    let xml = write_transfer(&src, None);
    // MessageIdentifier is required by the schema; an unknown element is not allowed.
    let text = std::fs::read_to_string(&xml).unwrap().replace(
        "<MessageIdentifier>VERS-2024-001</MessageIdentifier>",
        "<Surprise>1</Surprise>",
    );
    std::fs::write(&xml, text).unwrap();
    assert!(!xmllint(&xml).is_empty());
    let (err, reply) = refused(&node, &xml, &dir.path().join("reply.xml"));
    assert!(err.contains("SCHEMA"), "{err}");
    assert!(
        reply.contains("<EventTypeCode>SCHEMA</EventTypeCode>"),
        "{reply}"
    );
    assert!(
        reply.contains("Surprise"),
        "the reason names the element: {reply}"
    );

    // Not XML at all.
    std::fs::write(&xml, "this is not a SEDA message").unwrap();
    let (_, reply) = refused(&node, &xml, &dir.path().join("reply2.xml"));
    assert!(reply.contains("SCHEMA"), "{reply}");
}

#[test]
fn digest_mismatch_and_missing_file_are_refused_naming_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let src = dir.path().join("versement");
    let xml = write_transfer(&src, Some(&"ab".repeat(64)));
    let (err, reply) = refused(&node, &xml, &dir.path().join("digest.reply.xml"));
    assert!(err.contains("BinaryDataObject BDO1"), "{err}");
    assert!(
        reply.contains("<EventTypeCode>DIGEST</EventTypeCode>"),
        "{reply}"
    );
    assert!(reply.contains("BDO1"), "{reply}");

    // Right digests, one file gone.
    let src = dir.path().join("versement2");
    let xml = write_transfer(&src, None);
    std::fs::remove_file(src.join("content/registre.pdf")).unwrap();
    let (err, reply) = refused(&node, &xml, &dir.path().join("missing.reply.xml"));
    assert!(err.contains("BDO3"), "{err}");
    assert!(
        reply.contains("<EventTypeCode>MISSING_FILE</EventTypeCode>"),
        "{reply}"
    );
    assert!(reply.contains("content/registre.pdf"), "{reply}");

    // A file changed after being listed: the size check catches it too.
    let src = dir.path().join("versement3");
    let xml = write_transfer(&src, None);
    std::fs::write(src.join("content/annexe.csv"), "changed\n").unwrap();
    let (err, _) = refused(&node, &xml, &dir.path().join("changed.reply.xml"));
    assert!(err.contains("BDO2"), "{err}");

    // A Uri that leaves the transfer is an unsupported structure, not a file read.
    let src = dir.path().join("versement4");
    let xml = write_transfer(&src, None);
    let text = std::fs::read_to_string(&xml).unwrap().replace(
        "<Uri>content/annexe.csv</Uri>",
        "<Uri>../../etc/passwd</Uri>",
    );
    std::fs::write(&xml, text).unwrap();
    let (err, _) = refused(&node, &xml, &dir.path().join("escape.reply.xml"));
    assert!(err.contains("UNSUPPORTED") && err.contains("BDO2"), "{err}");
}

#[test]
fn export_validates_and_re_ingests_with_the_same_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path());
    let a = dir.path().join("deliberation.pdf");
    let b = dir.path().join("annexe budget.csv");
    random_file(&a, 3 * 1024 * 1024 + 17, 7).unwrap();
    std::fs::write(&b, "ligne;montant\n1;100\n").unwrap();
    let id1 = node.ingest(
        &[&a, &b],
        "Délibération n°12: budget <primitif> & annexes",
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
            "--description",
            "Vote du budget",
            "--communicability",
            "immediate",
            "--dua",
            "10",
            "--final",
            "C",
        ],
    );
    let c = dir.path().join("registre.pdf");
    random_file(&c, 1000, 8).unwrap();
    let id2 = node.ingest(
        &[&c],
        "Naissances 1960",
        &[
            "--date-from",
            "1960-01-01",
            "--date-to",
            "1960-12-31",
            "--communicability",
            "l213-2-4",
            "--dua",
            "5",
            "--final",
            "D",
        ],
    );
    for out in [dir.path().join("export"), dir.path().join("export.zip")] {
        let v = node.cli_json(&["export", &id1, &id2, "--seda", p(&out)]);
        assert_eq!(v["objects"], 3, "{v}");
        let input = if out.extension().is_some() {
            // The message inside the zip validates too.
            let x = dir.path().join("unzipped");
            let _ = std::fs::remove_dir_all(&x);
            let status = Command::new("python3")
                .args([
                    "-c",
                    "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
                    p(&out),
                    p(&x),
                ])
                .status()
                .unwrap();
            assert!(status.success());
            assert_valid(&x.join("manifest.xml"));
            out.clone()
        } else {
            assert_valid(&out.join("manifest.xml"));
            let text = std::fs::read_to_string(out.join("manifest.xml")).unwrap();
            assert!(text.contains(&sha512(&a)), "SHA-512 digests of the files");
            assert!(text.contains("algorithm=\"SHA-512\""));
            out.join("manifest.xml")
        };
        let back = node.cli_json(&["ingest", "--seda", p(&input)]);
        assert_eq!(back["accepted"], true, "{back}");
        let recs = back["records"].as_array().unwrap();
        assert_eq!(recs.len(), 2);
        for (orig, again) in [(&id1, &recs[0]["id"]), (&id2, &recs[1]["id"])] {
            let (x, y) = (
                node.cli_json(&["show", orig]),
                node.cli_json(&["show", again.as_str().unwrap()]),
            );
            assert_eq!(
                x["metadata"], y["metadata"],
                "metadata of {orig} after a round trip"
            );
            let files = |v: &Value| {
                let mut f: Vec<(String, String)> = v["files"]
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
                f.sort();
                f
            };
            assert_eq!(files(&x), files(&y));
        }
    }
}
