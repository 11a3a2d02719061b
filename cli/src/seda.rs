//! SEDA 2.2: `archipel ingest --seda TRANSFER.xml|TRANSFER.zip` and
//! `archipel export ID... --seda OUT|OUT.zip`.
//!
//! Ingest validates the message against the official SEDA 2.2 schemas (carried in
//! `cli/schemas/`, embedded in the binary, checked by `xmllint --nonet` with a catalog that
//! points the two W3C imports at local copies: no network), maps it with
//! `archipel_proto::seda`, checks every BinaryDataObject's digest against its file
//! (streaming), and only then sends one ordinary ingest stream per record, re-checking the
//! digests while sending. Whatever happens, the producer gets an `ArchiveTransferReply` (a
//! file, `--reply` or next to the input), and the node logs it (`TransferLog`: PREMIS
//! `transfer` events committing to the reply's bytes).

use crate::bag::Alg;
use crate::commands::{InvalidInput, Source};
use crate::metadata::MetadataArgs;
use anyhow::{Context, bail};
use archipel_proto::seda::{self, DigestAlg, Header, ObjectOut, ReplyEvent, UnitOut};
use archipel_proto::v1::archive_client::ArchiveClient;
use archipel_proto::v1::{self as pb, NodeInfoRequest, ShowRequest, TransferLogRequest};
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode};
use tonic::transport::Channel;

/// Largest message read (the XML itself, not its files).
const MAX_MESSAGE: u64 = 64 * 1024 * 1024;
/// Most reasons listed in a rejection.
const MAX_REASONS: usize = 50;

/// The schemas, as shipped in `cli/schemas/` (see `SOURCE.txt` there).
const SCHEMAS: [(&str, &str); 10] = [
    ("catalog.xml", include_str!("../schemas/catalog.xml")),
    ("w3c/xml.xsd", include_str!("../schemas/w3c/xml.xsd")),
    ("w3c/xlink.xsd", include_str!("../schemas/w3c/xlink.xsd")),
    (
        "seda-2.2/seda-2.2-main.xsd",
        include_str!("../schemas/seda-2.2/seda-2.2-main.xsd"),
    ),
    (
        "seda-2.2/seda-2.2-types.xsd",
        include_str!("../schemas/seda-2.2/seda-2.2-types.xsd"),
    ),
    (
        "seda-2.2/seda-2.2-technical.xsd",
        include_str!("../schemas/seda-2.2/seda-2.2-technical.xsd"),
    ),
    (
        "seda-2.2/seda-2.2-management.xsd",
        include_str!("../schemas/seda-2.2/seda-2.2-management.xsd"),
    ),
    (
        "seda-2.2/seda-2.2-descriptive.xsd",
        include_str!("../schemas/seda-2.2/seda-2.2-descriptive.xsd"),
    ),
    (
        "seda-2.2/seda-2.2-ontology.xsd",
        include_str!("../schemas/seda-2.2/seda-2.2-ontology.xsd"),
    ),
    (
        "seda-2.2/SOURCE.txt",
        include_str!("../schemas/seda-2.2/SOURCE.txt"),
    ),
];

/// The schemas written out to a temporary directory, for xmllint.
struct Schemas {
    dir: tempfile::TempDir,
}

impl Schemas {
    fn write() -> anyhow::Result<Schemas> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        for (name, text) in SCHEMAS {
            let p = dir.path().join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        }
        Ok(Schemas { dir })
    }

    /// Schema errors (empty: valid). xmllint is required; its absence is an error that says
    /// what to install.
    fn validate(&self, file: &Path) -> anyhow::Result<Vec<String>> {
        let out = Command::new("xmllint")
            .arg("--nonet")
            .arg("--noout")
            .arg("--schema")
            .arg(self.dir.path().join("seda-2.2/seda-2.2-main.xsd"))
            .arg(file)
            .env("XML_CATALOG_FILES", self.dir.path().join("catalog.xml"))
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "xmllint is needed to validate SEDA messages against the schema and was not found; install it (Debian: apt-get install libxml2-utils)"
            ),
            Err(e) => bail!("cannot run xmllint: {e}"),
        };
        if out.status.success() {
            return Ok(Vec::new());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = file.display().to_string();
        let mut errors: Vec<String> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.ends_with("fails to validate"))
            .map(|l| l.replace(&name, "message").trim().to_string())
            .collect();
        if errors.is_empty() {
            errors.push(format!(
                "the message does not validate against SEDA 2.2 (xmllint exit {})",
                out.status.code().unwrap_or(-1)
            ));
        }
        errors.truncate(MAX_REASONS);
        Ok(errors)
    }
}

/// Metadata flags do not apply to a transfer: every unit brings its own.
pub fn refuse_metadata_flags(m: &MetadataArgs, file: bool) -> anyhow::Result<()> {
    let any = file
        || m.title.is_some()
        || m.description.is_some()
        || m.producer.is_some()
        || m.date.is_some()
        || m.date_from.is_some()
        || m.date_to.is_some()
        || m.record_type.is_some()
        || m.language.is_some()
        || !m.keywords.is_empty()
        || m.licence.is_some()
        || m.communicability.is_some()
        || m.dua.is_some()
        || m.final_disposition.is_some()
        || m.metadata_public
        || m.person_death_date.is_some()
        || m.person_birth_date.is_some();
    if any {
        bail!(InvalidInput(
            "--seda: metadata comes from the message's ArchiveUnits; metadata flags and --metadata do not apply".into()
        ));
    }
    Ok(())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Where a transfer's files are: the message's directory, or a zip extracted to a temporary
/// directory.
struct Input {
    message: PathBuf,
    base: PathBuf,
    _extracted: Option<tempfile::TempDir>,
}

fn open_input(path: &Path) -> anyhow::Result<Input> {
    let is_zip = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if !is_zip {
        if !path.is_file() {
            bail!(InvalidInput(format!("{}: no such file", path.display())));
        }
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        return Ok(Input {
            message: path.to_path_buf(),
            base,
            _extracted: None,
        });
    }
    let f =
        std::fs::File::open(path).map_err(|e| InvalidInput(format!("{}: {e}", path.display())))?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| InvalidInput(format!("{}: not a readable zip: {e}", path.display())))?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut root_xml = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| InvalidInput(format!("{}: entry {i}: {e}", path.display())))?;
        let Some(rel) = entry.enclosed_name() else {
            bail!(InvalidInput(format!(
                "{}: entry {:?} would be written outside the transfer",
                path.display(),
                entry.name()
            )));
        };
        let dest = tmp.path().join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest)?;
            continue;
        }
        if !entry.is_file() {
            bail!(InvalidInput(format!(
                "{}: entry {:?} is not a regular file",
                path.display(),
                entry.name()
            )));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let declared = entry.size();
        let mut out = std::fs::File::create(&dest)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        let n = std::io::copy(&mut (&mut entry).take(declared.saturating_add(1)), &mut out)
            .map_err(|e| InvalidInput(format!("{}: entry {:?}: {e}", path.display(), rel)))?;
        if n != declared {
            bail!(InvalidInput(format!(
                "{}: entry {:?} is not the size the zip declares",
                path.display(),
                rel
            )));
        }
        if rel.components().count() == 1
            && rel
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
        {
            root_xml.push(rel);
        }
    }
    let message = if root_xml.iter().any(|p| p == Path::new("manifest.xml")) {
        PathBuf::from("manifest.xml")
    } else if root_xml.len() == 1 {
        root_xml.remove(0)
    } else {
        bail!(InvalidInput(format!(
            "{}: the zip must hold the message as manifest.xml, or one .xml file at its top (found {})",
            path.display(),
            root_xml.len()
        )));
    };
    Ok(Input {
        message: tmp.path().join(message),
        base: tmp.path().to_path_buf(),
        _extracted: Some(tmp),
    })
}

/// A `Uri` as a path under `base`; `None` if it could leave it or is not a relative path.
fn resolve(base: &Path, uri: &str) -> Option<PathBuf> {
    let u = uri.strip_prefix("file:").unwrap_or(uri);
    if u.contains("://") || u.contains('\\') || u.contains('%') {
        return None;
    }
    let rel = Path::new(u);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    Some(base.join(rel))
}

/// SHA-256 or SHA-512 of a file, streaming, and its size.
fn digest(path: &Path, alg: DigestAlg) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut n = 0u64;
    let mut h256 = Sha256::new();
    let mut h512 = Sha512::new();
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        match alg {
            DigestAlg::Sha256 => h256.update(&buf[..k]),
            DigestAlg::Sha512 => h512.update(&buf[..k]),
        }
    }
    Ok(match alg {
        DigestAlg::Sha256 => (hex::encode(h256.finalize()), n),
        DigestAlg::Sha512 => (hex::encode(h512.finalize()), n),
    })
}

fn reason(code: &str, detail: impl Into<String>) -> ReplyEvent {
    ReplyEvent {
        type_code: code.into(),
        detail: detail.into(),
        outcome: "KO".into(),
    }
}

/// `archipel ingest --seda PATH [--reply OUT]`.
pub async fn ingest(
    node: &str,
    json_out: bool,
    path: PathBuf,
    reply_path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let reply_path = reply_path.unwrap_or_else(|| {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "transfer".into());
        path.with_file_name(format!("{stem}.reply.xml"))
    });
    let schemas = Schemas::write()?;
    // The node must answer before anything is judged: a reply that cannot be logged would
    // not be a reply the archive stands by.
    let mut client = crate::connect::connect(node).await?;
    let info = client.node_info(NodeInfoRequest {}).await?.into_inner();
    let input = open_input(&path)?;
    let size = std::fs::metadata(&input.message)
        .map_err(|e| InvalidInput(format!("{}: {e}", input.message.display())))?
        .len();

    let mut reasons: Vec<ReplyEvent> = Vec::new();
    let mut request_id = String::from("unknown");
    let mut agencies = (info.territory.clone(), String::from("unknown"));
    let mut transfer = None;
    if size > MAX_MESSAGE {
        reasons.push(reason(
            "UNSUPPORTED",
            format!("the message is {size} bytes; the limit is {MAX_MESSAGE}"),
        ));
    } else {
        let errors = schemas.validate(&input.message)?;
        for e in errors {
            reasons.push(reason("SCHEMA", e));
        }
        let text = std::fs::read(&input.message)
            .with_context(|| format!("cannot read {}", input.message.display()))?;
        match String::from_utf8(text) {
            Err(_) => reasons.push(reason("SCHEMA", "the message is not UTF-8")),
            Ok(text) => match seda::parse_transfer(&text) {
                Ok(t) => {
                    request_id = t.message_identifier.clone();
                    agencies = (t.archival_agency.clone(), t.transferring_agency.clone());
                    transfer = Some(t);
                }
                Err(e) if reasons.is_empty() => {
                    let code = match e {
                        seda::SedaError::Unsupported(_) => "UNSUPPORTED",
                        _ => "SCHEMA",
                    };
                    reasons.push(reason(code, e.to_string()));
                }
                // Schema errors already say why.
                Err(_) => {}
            },
        }
    }

    // Every file, digest and size, before anything is sent.
    let mut located: BTreeMap<String, PathBuf> = BTreeMap::new();
    if let (Some(t), true) = (&transfer, reasons.is_empty()) {
        for o in &t.objects {
            let Some(p) = resolve(&input.base, &o.uri) else {
                reasons.push(reason(
                    "UNSUPPORTED",
                    format!(
                        "BinaryDataObject {}: Uri {:?} is not a relative path inside the transfer",
                        o.id, o.uri
                    ),
                ));
                continue;
            };
            if !p.is_file() {
                reasons.push(reason(
                    "MISSING_FILE",
                    format!("BinaryDataObject {}: file {} is missing", o.id, o.uri),
                ));
                continue;
            }
            match digest(&p, o.algorithm) {
                Err(e) => reasons.push(reason(
                    "MISSING_FILE",
                    format!(
                        "BinaryDataObject {}: file {} cannot be read: {e}",
                        o.id, o.uri
                    ),
                )),
                Ok((d, n)) => {
                    if d != o.digest {
                        reasons.push(reason(
                            "DIGEST",
                            format!(
                                "BinaryDataObject {}: file {} does not match its {} MessageDigest",
                                o.id,
                                o.uri,
                                o.algorithm.code()
                            ),
                        ));
                    } else if o.size.is_some_and(|s| s != n) {
                        reasons.push(reason(
                            "DIGEST",
                            format!(
                                "BinaryDataObject {}: file {} is {n} bytes, not its Size",
                                o.id, o.uri
                            ),
                        ));
                    } else if n == 0 {
                        reasons.push(reason(
                            "UNSUPPORTED",
                            format!("BinaryDataObject {}: file {} is empty", o.id, o.uri),
                        ));
                    } else {
                        located.insert(o.id.clone(), p);
                    }
                }
            }
        }
    }
    reasons.truncate(MAX_REASONS);

    let header = |comment: String| Header {
        message_identifier: format!("archipel-reply-{}", ulid_like()),
        date: now(),
        archival_agency: agencies.0.clone(),
        transferring_agency: agencies.1.clone(),
        comment,
    };

    // Refused before anything was archived.
    let Some(t) = transfer.filter(|_| reasons.is_empty()) else {
        let n = reasons.len();
        let xml = seda::write_reply(
            &header(format!(
                "Transfer refused: {n} reason(s); nothing was archived."
            )),
            &request_id,
            false,
            &reasons,
        );
        return finish(
            &mut client,
            json_out,
            &reply_path,
            &xml,
            false,
            &[],
            &reasons,
        )
        .await;
    };

    let mut created: Vec<(String, String)> = Vec::new();
    let mut events = Vec::new();
    let mut failure = None;
    for u in &t.units {
        let mut sources = Vec::new();
        for oid in &u.objects {
            let (Some(o), Some(p)) = (t.object(oid), located.get(oid)) else {
                continue;
            };
            let alg = match o.algorithm {
                DigestAlg::Sha256 => Alg::Sha256,
                DigestAlg::Sha512 => Alg::Sha512,
            };
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            sources.push(Source {
                path: p.clone(),
                name: o.filename.clone(),
                size,
                expect: BTreeMap::from([(alg, o.digest.clone())]),
            });
        }
        let meta = pb::RecordMetadata {
            title: u.title.clone(),
            description: u.description.clone(),
            producer: u.producer.clone(),
            date: u.date.clone(),
            date_from: u.date_from.clone(),
            date_to: u.date_to.clone(),
            record_type: u.record_type.clone(),
            language: u.language.clone(),
            keywords: u.keywords.clone(),
            communicability: u.communicability.clone().unwrap_or_default(),
            dua_years: u.appraisal.as_ref().map(|a| a.dua_years),
            final_disposition: u
                .appraisal
                .as_ref()
                .map(|a| a.final_disposition.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        match crate::commands::send_record(node, sources, meta).await {
            Ok(r) => {
                events.push(ReplyEvent {
                    type_code: "INGEST".into(),
                    detail: format!("ArchiveUnit {}: archived as record {}", u.id, r.id),
                    outcome: "OK".into(),
                });
                created.push((u.id.clone(), r.id));
            }
            Err(e) => {
                let msg = match e.downcast_ref::<tonic::Status>() {
                    Some(s) => s.message().to_string(),
                    None => format!("{e:#}"),
                };
                failure = Some(e);
                events.push(reason(
                    "INGEST",
                    format!("ArchiveUnit {}: refused by the archive: {msg}", u.id),
                ));
                break;
            }
        }
    }
    let accepted = failure.is_none();
    let comment = if accepted {
        format!("Transfer accepted: {} record(s) archived.", created.len())
    } else {
        format!(
            "Transfer refused at unit {} of {}; the {} record(s) listed as archived stay in the archive.",
            created.len() + 1,
            t.units.len(),
            created.len()
        )
    };
    let xml = seda::write_reply(&header(comment), &t.message_identifier, accepted, &events);
    let code = finish(
        &mut client,
        json_out,
        &reply_path,
        &xml,
        accepted,
        &created,
        &events,
    )
    .await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

/// A unique enough message identifier: time and process.
fn ulid_like() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{}-{}", t.unix_timestamp_nanos(), std::process::id())
}

/// Writes the reply, logs it at the node, reports.
async fn finish(
    client: &mut ArchiveClient<Channel>,
    json_out: bool,
    reply_path: &Path,
    xml: &str,
    accepted: bool,
    created: &[(String, String)],
    events: &[ReplyEvent],
) -> anyhow::Result<ExitCode> {
    let mut tmp = reply_path.as_os_str().to_os_string();
    tmp.push(".partial");
    std::fs::write(&tmp, xml)
        .with_context(|| format!("cannot write the reply {}", reply_path.display()))?;
    std::fs::rename(&tmp, reply_path)
        .with_context(|| format!("cannot write the reply {}", reply_path.display()))?;
    client
        .transfer_log(TransferLogRequest {
            record_ids: created.iter().map(|(_, r)| r.clone()).collect(),
            accepted,
            reply: xml.as_bytes().to_vec(),
        })
        .await?;
    if json_out {
        println!(
            "{}",
            json!({
                "accepted": accepted,
                "reply": reply_path.display().to_string(),
                "records": created.iter().map(|(u, r)| json!({"unit": u, "id": r})).collect::<Vec<_>>(),
                "reasons": events.iter().filter(|e| e.outcome == "KO").map(|e| json!({"code": e.type_code, "detail": e.detail})).collect::<Vec<_>>(),
            })
        );
    } else {
        for (u, r) in created {
            println!("{r}  {u}");
        }
        for e in events.iter().filter(|e| e.outcome == "KO") {
            eprintln!("refused ({}): {}", e.type_code, e.detail);
        }
        println!("reply: {}", reply_path.display());
    }
    if accepted {
        Ok(ExitCode::SUCCESS)
    } else {
        // The reasons are in the reply and on stderr; exit 5 like any invalid input.
        Ok(ExitCode::from(5))
    }
}

// ---------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------

/// Where exported files go: a directory, or a zip being written.
enum Sink {
    Dir(PathBuf),
    Zip(Box<zip::ZipWriter<std::fs::File>>),
}

/// `archipel export ID... --seda OUT` (OUT a directory, or OUT.zip).
pub async fn export(
    node: &str,
    json_out: bool,
    records: Vec<String>,
    out: PathBuf,
) -> anyhow::Result<ExitCode> {
    let schemas = Schemas::write()?;
    let channel = crate::connect::channel(node).await?;
    let mut c = ArchiveClient::new(channel).max_decoding_message_size(8 * 1024 * 1024);
    let info = c.node_info(NodeInfoRequest {}).await?.into_inner();
    let mut wanted = Vec::new();
    for id in &records {
        wanted.push(
            c.show(ShowRequest {
                record_id: id.clone(),
            })
            .await?
            .into_inner(),
        );
    }
    let is_zip = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    // Built under a temporary name, renamed when complete.
    let mut partial = out.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.is_dir() {
        std::fs::remove_dir_all(&partial)?;
    } else if partial.exists() {
        std::fs::remove_file(&partial)?;
    }
    let mut sink = if is_zip {
        let f = std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Sink::Zip(Box::new(zip::ZipWriter::new(f)))
    } else {
        std::fs::create_dir_all(partial.join("content"))
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Sink::Dir(partial.clone())
    };
    let mut objects = Vec::new();
    let mut units = Vec::new();
    for (i, r) in wanted.iter().enumerate() {
        let m = r.metadata.clone().unwrap_or_default();
        let mut refs = Vec::new();
        for (j, f) in r.files.iter().enumerate() {
            let id = format!("O{}_{}", i + 1, j + 1);
            let uri = format!("content/{}/{}", r.id, f.name);
            let sha512 = fetch_into(&mut c, &mut sink, r, f, &uri).await?;
            objects.push(ObjectOut {
                id: id.clone(),
                uri,
                filename: f.name.clone(),
                sha512,
                size: f.size,
                media_type: f.media_type.clone(),
            });
            refs.push(id);
        }
        units.push(UnitOut {
            id: format!("U{}", i + 1),
            system_id: r.id.clone(),
            title: m.title,
            description: m.description,
            producer: m.producer,
            record_type: m.record_type,
            language: m.language,
            keywords: m.keywords,
            date: m.date,
            date_from: m.date_from,
            date_to: m.date_to,
            dua_years: m.dua_years,
            final_disposition: m.final_disposition,
            communicability: m.communicability,
            objects: refs,
        });
    }
    let header = Header {
        message_identifier: format!("archipel-export-{}", ulid_like()),
        date: now(),
        archival_agency: info.territory.clone(),
        transferring_agency: info.territory.clone(),
        comment: format!(
            "Exported by Archipel from node {} ({} record(s)).",
            info.node_id,
            wanted.len()
        ),
    };
    let xml = seda::write_transfer(&header, &objects, &units);
    // What is written must validate: checked before it is published.
    let check = tempfile::NamedTempFile::new()?;
    std::fs::write(check.path(), &xml)?;
    let errors = schemas.validate(check.path())?;
    if !errors.is_empty() {
        bail!(
            "the exported ArchiveTransfer does not validate (a bug, please report): {}",
            errors.join("; ")
        );
    }
    match sink {
        Sink::Dir(dir) => {
            std::fs::write(dir.join("manifest.xml"), &xml)?;
        }
        Sink::Zip(mut z) => {
            z.start_file("manifest.xml", zip_options())?;
            z.write_all(xml.as_bytes())?;
            let f = (*z).finish()?;
            f.sync_all()?;
        }
    }
    if out.is_dir() {
        std::fs::remove_dir_all(&out)?;
    } else if out.exists() {
        std::fs::remove_file(&out)?;
    }
    std::fs::rename(&partial, &out)
        .with_context(|| format!("cannot rename to {}", out.display()))?;
    let manifest = if is_zip {
        out.display().to_string()
    } else {
        out.join("manifest.xml").display().to_string()
    };
    if json_out {
        println!(
            "{}",
            json!({"out": out.display().to_string(), "message": manifest, "records": records, "objects": objects.len()})
        );
    } else {
        eprintln!(
            "{} record(s), {} file(s) written as a SEDA 2.2 ArchiveTransfer in {}",
            wanted.len(),
            objects.len(),
            out.display()
        );
        println!("{manifest}");
    }
    Ok(ExitCode::SUCCESS)
}

fn zip_options() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true)
}

/// Streams one file of a record into the sink, checking it against the SHA-512 the node
/// recorded at ingest; returns that SHA-512.
async fn fetch_into(
    c: &mut ArchiveClient<Channel>,
    sink: &mut Sink,
    r: &pb::RecordInfo,
    f: &pb::FileInfo,
    uri: &str,
) -> anyhow::Result<String> {
    use tokio_stream::StreamExt;
    let mut stream = c
        .get(pb::GetRequest {
            record_id: r.id.clone(),
            file_name: f.name.clone(),
            offset: 0,
            length: 0,
        })
        .await?
        .into_inner();
    let mut w: Box<dyn Write + '_> = match sink {
        Sink::Dir(dir) => {
            let p = dir.join(uri);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(&p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            ))
        }
        Sink::Zip(z) => {
            z.start_file(uri, zip_options())?;
            Box::new(z.as_mut())
        }
    };
    let mut h = Sha512::new();
    let mut n = 0u64;
    while let Some(msg) = stream.next().await {
        if let Some(pb::get_response::Item::Chunk(chunk)) = msg?.item {
            h.update(&chunk);
            w.write_all(&chunk)?;
            n += chunk.len() as u64;
        }
    }
    w.flush()?;
    drop(w);
    let sha512 = hex::encode(h.finalize());
    if n != f.size || (!f.sha512.is_empty() && sha512 != f.sha512) {
        return Err(tonic::Status::data_loss(format!(
            "{}: file {:?} read back does not match the digests recorded at ingest",
            r.id, f.name
        ))
        .into());
    }
    Ok(sha512)
}
