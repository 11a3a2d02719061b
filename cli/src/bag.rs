//! BagIt (RFC 8493): a bag in as one record, records out as bags.
//!
//! Ingest checks the whole bag before anything is sent (bagit.txt, every payload and tag
//! manifest in SHA-256 or SHA-512, Payload-Oxum, no file missing or unlisted), then reads
//! each file again while sending it and commits only if the bytes still match: a file that
//! changed in between leaves nothing in the archive. Export streams each file from the node
//! into `data/`, checks it against the SHA-512 the node recorded at ingest, and writes
//! SHA-512 payload and tag manifests; a bag appears under its final name only once complete.

use crate::commands::InvalidInput;
use crate::metadata;
use crate::output::record_json;
use crate::premis;
use anyhow::{Context, bail};
use archipel_proto::event::Event;
use archipel_proto::v1::archive_client::ArchiveClient;
use archipel_proto::v1::audit_log_client::AuditLogClient;
use archipel_proto::v1::{
    self as pb, CheckpointRequest, EntriesRequest, GetRequest, ListRequest, NodeInfoRequest,
    ShowRequest, get_response,
};
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const BUF: usize = 1024 * 1024;

fn invalid(msg: impl Into<String>) -> anyhow::Error {
    InvalidInput(msg.into()).into()
}

/// Manifest algorithms checked here: the two RFC 8493 asks every implementation to support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Alg {
    Sha256,
    Sha512,
}

impl Alg {
    fn from_name(name: &str) -> Option<Alg> {
        match name {
            "sha256" => Some(Alg::Sha256),
            "sha512" => Some(Alg::Sha512),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Alg::Sha256 => "SHA-256",
            Alg::Sha512 => "SHA-512",
        }
    }
}

/// Digests of one stream in every algorithm asked for, in one pass.
#[derive(Default)]
pub struct Hashers {
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl Hashers {
    pub fn new(algs: impl IntoIterator<Item = Alg>) -> Self {
        let mut h = Hashers::default();
        for a in algs {
            match a {
                Alg::Sha256 => h.sha256 = Some(Sha256::new()),
                Alg::Sha512 => h.sha512 = Some(Sha512::new()),
            }
        }
        h
    }
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
    }
    pub fn finish(self) -> BTreeMap<Alg, String> {
        let mut out = BTreeMap::new();
        if let Some(h) = self.sha256 {
            out.insert(Alg::Sha256, hex::encode(h.finalize()));
        }
        if let Some(h) = self.sha512 {
            out.insert(Alg::Sha512, hex::encode(h.finalize()));
        }
        out
    }
}

/// Digests a file with bounded memory.
fn digest_file(path: &Path, algs: &BTreeSet<Alg>) -> anyhow::Result<(BTreeMap<Alg, String>, u64)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Hashers::new(algs.iter().copied());
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finish(), n))
}

/// A payload file that will become one file of the record.
pub struct PayloadFile {
    pub path: PathBuf,
    /// Its name in the record.
    pub name: String,
    pub size: u64,
    /// What the bag's manifests say, checked again while it is sent.
    pub digests: BTreeMap<Alg, String>,
}

pub struct Bag {
    pub info: Vec<(String, String)>,
    pub files: Vec<PayloadFile>,
    /// Manifests in algorithms not checked here (e.g. md5), named so the user knows.
    pub unchecked: Vec<String>,
}

use archipel_proto::bagit::encode_path;

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| invalid(format!("{what}: is not UTF-8 ({})", path.display())))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_string())
}

/// `Label: value` lines (the parser is `archipel_proto::bagit`, fuzzed).
pub fn parse_info(text: &str, what: &str) -> anyhow::Result<Vec<(String, String)>> {
    archipel_proto::bagit::parse_info(text, what).map_err(|e| invalid(e.to_string()))
}

/// `digest path` lines of a manifest, as (bag path, digest).
fn parse_manifest(text: &str, what: &str) -> anyhow::Result<Vec<(String, String)>> {
    archipel_proto::bagit::parse_manifest(text, what).map_err(|e| invalid(e.to_string()))
}

/// Every regular file under `dir`, as paths relative to `base`; anything else is refused.
fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
    for e in entries {
        let e = e.map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
        let path = e.path();
        let ft = e
            .file_type()
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let rel = path
            .strip_prefix(base)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| invalid(format!("{}: the path is not UTF-8", path.display())))?
            .to_string();
        if ft.is_dir() {
            walk(base, &path, out)?;
        } else if ft.is_file() {
            out.insert(rel);
        } else {
            return Err(invalid(format!(
                "{rel}: not a regular file (links and devices are refused in a bag)"
            )));
        }
    }
    Ok(())
}

/// Manifests named `{prefix}{alg}.txt` in the bag's top directory, sorted.
fn manifests(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))? {
        let e = e.map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(alg) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".txt"))
        {
            out.push((alg.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Checks a bag completely (RFC 8493 section 3 "valid"), reading every file once.
pub fn validate(dir: &Path) -> anyhow::Result<Bag> {
    if !dir.is_dir() {
        return Err(invalid(format!("{}: not a directory", dir.display())));
    }
    let declaration = read_text(&dir.join("bagit.txt"), "bagit.txt")?;
    let decl = parse_info(&declaration, "bagit.txt")?;
    let get = |label: &str| {
        decl.iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    };
    match get("BagIt-Version") {
        Some("1.0" | "0.97") => {}
        Some(v) => {
            return Err(invalid(format!(
                "bagit.txt: BagIt-Version {v} is not supported (1.0 or 0.97)"
            )));
        }
        None => return Err(invalid("bagit.txt: no BagIt-Version line")),
    }
    match get("Tag-File-Character-Encoding") {
        Some(e) if e.eq_ignore_ascii_case("UTF-8") => {}
        Some(e) => {
            return Err(invalid(format!(
                "bagit.txt: tag files in {e} are not supported (UTF-8 only)"
            )));
        }
        None => return Err(invalid("bagit.txt: no Tag-File-Character-Encoding line")),
    }
    let fetch = dir.join("fetch.txt");
    if fetch.exists() && std::fs::metadata(&fetch).map(|m| m.len()).unwrap_or(0) > 0 {
        return Err(invalid(
            "fetch.txt: the bag lists payload to download; fetch it first (bags are ingested complete)",
        ));
    }
    let info = if dir.join("bag-info.txt").exists() {
        parse_info(
            &read_text(&dir.join("bag-info.txt"), "bag-info.txt")?,
            "bag-info.txt",
        )?
    } else {
        Vec::new()
    };
    if !dir.join("data").is_dir() {
        return Err(invalid("data/: the bag has no payload directory"));
    }
    let mut payload = BTreeSet::new();
    walk(dir, &dir.join("data"), &mut payload)?;

    // Every payload manifest lists exactly the payload (RFC 8493 3, items 3 and 4).
    let mut expected: BTreeMap<String, BTreeMap<Alg, String>> = payload
        .iter()
        .map(|p| (p.clone(), BTreeMap::new()))
        .collect();
    let mut checked = BTreeSet::new();
    let mut unchecked = Vec::new();
    let found = manifests(dir, "manifest-")?;
    if found.is_empty() {
        return Err(invalid(
            "the bag has no payload manifest (manifest-ALG.txt)",
        ));
    }
    for (alg_name, path) in &found {
        let what = format!("manifest-{alg_name}.txt");
        let entries = parse_manifest(&read_text(path, &what)?, &what)?;
        let alg = Alg::from_name(alg_name);
        let listed: BTreeSet<&String> = entries.iter().map(|(p, _)| p).collect();
        for (p, digest) in &entries {
            if !p.starts_with("data/") {
                return Err(invalid(format!("{what}: {p} is not under data/")));
            }
            let Some(slot) = expected.get_mut(p) else {
                return Err(invalid(format!(
                    "{p}: listed in {what} but missing from the bag"
                )));
            };
            if let Some(a) = alg {
                slot.insert(a, digest.clone());
            }
        }
        if let Some(p) = payload.iter().find(|p| !listed.contains(p)) {
            return Err(invalid(format!(
                "{p}: in the payload but not listed in {what}"
            )));
        }
        match alg {
            Some(a) => {
                checked.insert(a);
            }
            None => unchecked.push(what),
        }
    }
    if checked.is_empty() {
        return Err(invalid(format!(
            "{}: no payload manifest in SHA-256 or SHA-512, the algorithms checked here",
            found
                .iter()
                .map(|(a, _)| format!("manifest-{a}.txt"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }

    // Payload-Oxum is cheap: compare it before reading any content.
    let mut sizes = BTreeMap::new();
    for p in &payload {
        let len = std::fs::metadata(dir.join(p))
            .map_err(|e| invalid(format!("{p}: {e}")))?
            .len();
        sizes.insert(p.clone(), len);
    }
    if let Some((_, oxum)) = info.iter().find(|(l, _)| l == "Payload-Oxum") {
        let total: u64 = sizes.values().sum();
        let want = format!("{total}.{}", payload.len());
        if oxum != &want {
            return Err(invalid(format!(
                "bag-info.txt: Payload-Oxum is {oxum} but the payload is {want} (octets.files)"
            )));
        }
    }

    // What Archipel's records can hold, before the long part.
    let mut names = BTreeSet::new();
    for p in &payload {
        let name = &p["data/".len()..];
        if name.contains('/') {
            return Err(invalid(format!(
                "{p}: a record's files are flat; this bag has payload in subdirectories"
            )));
        }
        if sizes.get(p).copied().unwrap_or(0) == 0 {
            return Err(invalid(format!("{p}: is empty, nothing to archive")));
        }
        names.insert(name.to_string());
    }
    if payload.is_empty() {
        return Err(invalid("data/: the payload is empty, nothing to archive"));
    }

    let mut files = Vec::new();
    for (p, want) in expected {
        let path = dir.join(&p);
        let (got, _) = digest_file(&path, &checked)?;
        for (alg, digest) in &want {
            if got.get(alg) != Some(digest) {
                return Err(invalid(format!(
                    "{p}: its {} digest does not match the bag's manifest",
                    alg.label()
                )));
            }
        }
        files.push(PayloadFile {
            name: p["data/".len()..].to_string(),
            size: sizes.get(&p).copied().unwrap_or(0),
            path,
            digests: want,
        });
    }

    // Tag manifests: each listed tag file exists and matches.
    for (alg_name, path) in manifests(dir, "tagmanifest-")? {
        let what = format!("tagmanifest-{alg_name}.txt");
        let Some(alg) = Alg::from_name(&alg_name) else {
            unchecked.push(what);
            continue;
        };
        for (p, digest) in parse_manifest(&read_text(&path, &what)?, &what)? {
            if p.starts_with("data/") {
                return Err(invalid(format!("{what}: {p} is payload, not a tag file")));
            }
            let file = dir.join(&p);
            if !file.is_file() {
                return Err(invalid(format!(
                    "{p}: listed in {what} but missing from the bag"
                )));
            }
            let (got, _) = digest_file(&file, &BTreeSet::from([alg]))?;
            if got.get(&alg) != Some(&digest) {
                return Err(invalid(format!(
                    "{p}: its {} digest does not match {what}",
                    alg.label()
                )));
            }
        }
    }
    Ok(Bag {
        info,
        files,
        unchecked,
    })
}

/// Dublin Core labels written in `bag-info.txt` at export and read back at ingest.
const DC: &str = "DC-";
/// Archipel's management metadata, so that a bag re-ingests with the same rules.
const AR: &str = "Archipel-";

/// The record's metadata from `bag-info.txt`: the Dublin Core labels this exporter writes,
/// else the RFC 8493 reserved ones where they mean the same thing.
pub fn metadata_from_info(info: &[(String, String)]) -> metadata::MetadataArgs {
    let first = |labels: &[&str]| {
        labels.iter().find_map(|l| {
            info.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(l))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        })
    };
    let all = |label: &str| {
        info.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(label))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
    };
    let (mut date, mut date_from, mut date_to) = (None, None, None);
    if let Some(d) = first(&["DC-Date", "Date"]) {
        match d.split_once('/') {
            Some((a, b)) => {
                date_from = Some(a.trim().to_string());
                date_to = Some(b.trim().to_string());
            }
            None => date = Some(d),
        }
    }
    metadata::MetadataArgs {
        title: first(&["DC-Title", "Title"]),
        description: first(&["DC-Description", "External-Description"]),
        producer: first(&["DC-Creator", "Source-Organization"]),
        date,
        date_from,
        date_to,
        record_type: first(&["DC-Type"]),
        language: first(&["DC-Language"]),
        keywords: all("DC-Subject"),
        licence: first(&["DC-Rights"]),
        communicability: first(&["Archipel-Communicability"]),
        dua: first(&["Archipel-DUA-Years"]).and_then(|v| v.parse().ok()),
        final_disposition: first(&["Archipel-Sort-Final"]),
        metadata_public: first(&["Archipel-Metadata-Public"]).is_some_and(|v| v == "true"),
        person_death_date: first(&["Archipel-Person-Death-Date"]),
        person_birth_date: first(&["Archipel-Person-Birth-Date"]),
    }
}

// ---------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------

/// A value on one line: newlines become spaces (bag-info values may not contain them unless
/// continued, and a title does not need them).
fn one_line(v: &str) -> String {
    v.split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn bag_info(r: &pb::RecordInfo, node: &pb::NodeInfoResponse, today: &str, events: usize) -> String {
    let m = r.metadata.clone().unwrap_or_default();
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            lines.push((k.to_string(), one_line(v)));
        }
    };
    put("Source-Organization", &node.territory);
    put("External-Identifier", &r.id);
    put("External-Description", &m.title);
    put("Bagging-Date", today);
    put(
        "Payload-Oxum",
        &format!(
            "{}.{}",
            r.files.iter().map(|f| f.size).sum::<u64>(),
            r.files.len()
        ),
    );
    put(
        "Bag-Software-Agent",
        concat!("archipel ", env!("CARGO_PKG_VERSION")),
    );
    put(&format!("{DC}Title"), &m.title);
    put(&format!("{DC}Description"), &m.description);
    put(&format!("{DC}Creator"), &m.producer);
    let date = if m.date.is_empty() && !m.date_from.is_empty() {
        format!("{}/{}", m.date_from, m.date_to)
    } else {
        m.date.clone()
    };
    put(&format!("{DC}Date"), &date);
    put(&format!("{DC}Type"), &m.record_type);
    put(&format!("{DC}Language"), &m.language);
    for k in &m.keywords {
        put(&format!("{DC}Subject"), k);
    }
    put(&format!("{DC}Rights"), &m.licence);
    put(&format!("{DC}Identifier"), &r.id);
    put(
        &format!("{DC}Format"),
        &r.files
            .iter()
            .map(|f| f.media_type.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", "),
    );
    put(&format!("{AR}Communicability"), &m.communicability);
    if let Some(d) = m.dua_years {
        put(&format!("{AR}DUA-Years"), &d.to_string());
    }
    put(&format!("{AR}Sort-Final"), &m.final_disposition);
    if m.metadata_public {
        put(&format!("{AR}Metadata-Public"), "true");
    }
    put(&format!("{AR}Person-Death-Date"), &m.person_death_date);
    put(&format!("{AR}Person-Birth-Date"), &m.person_birth_date);
    put(&format!("{AR}Origin-Node"), &r.origin_node_id);
    put(&format!("{AR}Ingested-At"), &r.ingested_at);
    put(&format!("{AR}Manifest-Digest"), &r.manifest_digest);
    put(&format!("{AR}Events"), &events.to_string());
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out
}

fn events_jsonl(origin: &str, events: &[(u64, Event)]) -> String {
    let mut out = String::new();
    for (i, e) in events {
        out.push_str(
            &json!({"log": origin, "index": i, "time": e.time, "type": e.event_type, "object": e.object, "agent_node": e.agent_node, "agent_actor": e.agent_actor, "outcome": e.outcome.as_str(), "detail": hex::encode(e.detail)})
                .to_string(),
        );
        out.push('\n');
    }
    out
}

fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// Streams one file of a record into `dest`, returning its SHA-512; memory stays one chunk.
async fn fetch_to(
    c: &mut ArchiveClient<Channel>,
    record: &str,
    name: &str,
    dest: &Path,
) -> anyhow::Result<(String, u64)> {
    let mut stream = c
        .get(GetRequest {
            record_id: record.to_string(),
            file_name: name.to_string(),
            offset: 0,
            length: 0,
        })
        .await?
        .into_inner();
    let mut out = tokio::fs::File::create(dest)
        .await
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut h = Sha512::new();
    let mut n = 0u64;
    while let Some(msg) = stream.next().await {
        if let Some(get_response::Item::Chunk(c)) = msg?.item {
            h.update(&c);
            out.write_all(&c)
                .await
                .with_context(|| format!("cannot write {}", dest.display()))?;
            n += c.len() as u64;
        }
    }
    out.flush().await?;
    out.sync_all().await?;
    Ok((hex::encode(h.finalize()), n))
}

/// A fixity failure found while exporting: exit code 6, like `archipel verify`.
fn data_loss(msg: String) -> anyhow::Error {
    tonic::Status::data_loss(msg).into()
}

/// What one record's bag holds besides its payload.
struct Tags {
    record_json: String,
    events_jsonl: String,
    premis: String,
}

fn tags(origin: &str, r: &pb::RecordInfo, events: &[(u64, Event)]) -> Tags {
    Tags {
        record_json: format!(
            "{}\n",
            serde_json::to_string_pretty(&record_json(r)).unwrap_or_default()
        ),
        events_jsonl: events_jsonl(origin, events),
        premis: premis::document(origin, std::slice::from_ref(&r.id), events),
    }
}

/// A bag already exported with the same record description and events needs no new copy.
fn up_to_date(bag: &Path, t: &Tags) -> bool {
    let same =
        |p: &str, want: &str| std::fs::read_to_string(bag.join(p)).ok().as_deref() == Some(want);
    bag.join("tagmanifest-sha512.txt").is_file()
        && same("archipel/record.json", &t.record_json)
        && same("archipel/events.jsonl", &t.events_jsonl)
}

/// Writes one record's bag under `out/ID`, through `out/.ID.partial`.
async fn write_bag(
    c: &mut ArchiveClient<Channel>,
    node: &pb::NodeInfoResponse,
    r: &pb::RecordInfo,
    events: &[(u64, Event)],
    out: &Path,
) -> anyhow::Result<bool> {
    let t = tags(&node.log_origin, r, events);
    let fin = out.join(&r.id);
    if up_to_date(&fin, &t) {
        return Ok(false);
    }
    let tmp = out.join(format!(".{}.partial", r.id));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(tmp.join("data"))
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    std::fs::create_dir_all(tmp.join("archipel"))?;
    let mut manifest = String::new();
    for f in &r.files {
        let dest = tmp.join("data").join(&f.name);
        let (sha512, n) = fetch_to(c, &r.id, &f.name, &dest).await?;
        if n != f.size || (!f.sha512.is_empty() && sha512 != f.sha512) {
            return Err(data_loss(format!(
                "{}: file {:?} read back does not match the digests recorded at ingest",
                r.id, f.name
            )));
        }
        manifest.push_str(&format!("{sha512}  data/{}\n", encode_path(&f.name)));
    }
    let write = |p: &str, text: &str| {
        std::fs::write(tmp.join(p), text).with_context(|| format!("cannot write {p}"))
    };
    write(
        "bagit.txt",
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
    )?;
    write("bag-info.txt", &bag_info(r, node, &today(), events.len()))?;
    write("manifest-sha512.txt", &manifest)?;
    write("archipel/record.json", &t.record_json)?;
    write("archipel/events.jsonl", &t.events_jsonl)?;
    write("archipel/events.premis.xml", &t.premis)?;
    let mut tagmanifest = String::new();
    for p in [
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha512.txt",
        "archipel/record.json",
        "archipel/events.jsonl",
        "archipel/events.premis.xml",
    ] {
        let (d, _) = digest_file(&tmp.join(p), &BTreeSet::from([Alg::Sha512]))?;
        let d = d.get(&Alg::Sha512).cloned().unwrap_or_default();
        tagmanifest.push_str(&format!("{d}  {p}\n"));
    }
    write("tagmanifest-sha512.txt", &tagmanifest)?;
    // Swap in the finished bag; an older export of the record goes only once it is replaced.
    if fin.exists() {
        let old = out.join(format!(".{}.old", r.id));
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(&fin, &old)?;
        std::fs::rename(&tmp, &fin)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&tmp, &fin)
            .with_context(|| format!("cannot rename to {}", fin.display()))?;
    }
    Ok(true)
}

/// Reads the log's first `size` entries page by page, handing each event to `each`.
async fn each_event(
    log: &mut AuditLogClient<Channel>,
    size: u64,
    mut each: impl FnMut(u64, Event) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pos = 0;
    while pos < size {
        let page = log
            .entries(EntriesRequest {
                start: pos,
                end: size,
            })
            .await?
            .into_inner();
        if page.leaves.is_empty() {
            bail!("the node returned no log entries from index {pos}");
        }
        for leaf in page.leaves {
            let e = Event::decode(&leaf).map_err(|err| {
                crate::log::NotVerified(format!("log entry {pos} is not a valid event: {err}"))
            })?;
            each(pos, e)?;
            pos += 1;
        }
    }
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".partial");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `archipel export RECORD... --bag OUT` and `archipel export --all --bag OUT`.
pub async fn export(
    node: &str,
    json_out: bool,
    records: Vec<String>,
    all: bool,
    out: PathBuf,
) -> anyhow::Result<ExitCode> {
    let channel = crate::connect::channel(node).await?;
    let mut c = ArchiveClient::new(channel.clone()).max_decoding_message_size(8 * 1024 * 1024);
    let mut log = AuditLogClient::new(channel);
    let info = c.node_info(NodeInfoRequest {}).await?.into_inner();
    // Every record named must exist before anything is written.
    let mut wanted: Vec<pb::RecordInfo> = Vec::new();
    if all {
        let mut req = ListRequest {
            page_size: 500,
            ..Default::default()
        };
        loop {
            let page = c.list(req.clone()).await?.into_inner();
            wanted.extend(page.records);
            if page.next_page_token.is_empty() {
                break;
            }
            req.page_token = page.next_page_token;
        }
    } else {
        for id in &records {
            wanted.push(
                c.show(ShowRequest {
                    record_id: id.clone(),
                })
                .await?
                .into_inner(),
            );
        }
    }
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create directory {}", out.display()))?;
    // One signed checkpoint fixes the log's extent: the exported events are exactly the
    // entries it commits to, so they can be checked against it later.
    let cp = log.checkpoint(CheckpointRequest {}).await?.into_inner();
    let ids: BTreeSet<String> = wanted.iter().map(|r| r.id.clone()).collect();
    let mut by_record: HashMap<String, Vec<(u64, Event)>> = HashMap::new();
    let mut whole: Vec<(u64, Event)> = Vec::new();
    each_event(&mut log, cp.size, |i, e| {
        if ids.contains(&e.object) {
            by_record
                .entry(e.object.clone())
                .or_default()
                .push((i, e.clone()));
        }
        if all {
            whole.push((i, e));
        }
        Ok(())
    })
    .await?;
    let mut written = Vec::new();
    let mut kept = Vec::new();
    for r in &wanted {
        let events = by_record.remove(&r.id).unwrap_or_default();
        if write_bag(&mut c, &info, r, &events, &out).await? {
            written.push(r.id.clone());
        } else {
            kept.push(r.id.clone());
        }
        if !json_out {
            eprintln!(
                "{}  {}",
                r.id,
                if written.last() == Some(&r.id) {
                    "written"
                } else {
                    "already exported, unchanged"
                }
            );
        }
    }
    if all {
        // The whole log and what it is, so that the events stay checkable outside Archipel.
        std::fs::create_dir_all(out.join("log"))?;
        write_atomic(
            &out.join("log/events.jsonl"),
            &events_jsonl(&info.log_origin, &whole),
        )?;
        // "node" is the object of the node's own events; listing it keeps the document
        // valid (PREMIS wants one object at least) even for a log with no record yet.
        write_atomic(
            &out.join("log/events.premis.xml"),
            &premis::document(&info.log_origin, &["node".to_string()], &whole),
        )?;
        write_atomic(&out.join("log/checkpoint.txt"), &cp.checkpoint)?;
        // Lawful eliminations: the signed tombstones (with their visas) and each peer's
        // signed deletion receipt, one JSON document a line; the log's `deletion` events
        // commit to these texts.
        let eliminations = c
            .eliminations(ShowRequest {
                record_id: String::new(),
            })
            .await?
            .into_inner()
            .eliminations;
        let mut lines = String::new();
        for e in &eliminations {
            lines.push_str(&serde_json::to_string(
                &crate::eliminate::elimination_json(e),
            )?);
            lines.push('\n');
        }
        write_atomic(&out.join("log/eliminations.jsonl"), &lines)?;
        let inventory = json!({
            "node_id": info.node_id,
            "territory": info.territory,
            "log_origin": info.log_origin,
            "log_vkey": info.log_vkey,
            "log_size": cp.size,
            "exported_at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "records": wanted.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            "eliminated_records": eliminations.iter().map(|e| e.record_id.clone()).collect::<Vec<_>>(),
        });
        write_atomic(
            &out.join("archipel-export.json"),
            &format!("{}\n", serde_json::to_string_pretty(&inventory)?),
        )?;
    }
    if json_out {
        println!(
            "{}",
            json!({"out": out.display().to_string(), "written": written, "unchanged": kept, "log_size": cp.size})
        );
    } else {
        eprintln!(
            "{} bag(s) written, {} unchanged, in {}",
            written.len(),
            kept.len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
