//! The subcommands.

use crate::Command;
use crate::connect::{Unreachable, connect};
use crate::metadata;
use crate::output::{self, human_size, print_record, record_json};
use anyhow::{Context, bail};
use archipel_proto::v1::{
    self as pb, GetRequest, IngestRequest, ListRequest, NodeInfoRequest, ShowRequest,
    VerifyRequest, get_response, ingest_request,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

const CHUNK: usize = 1024 * 1024;

pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Unreachable>().is_some() {
        return 3;
    }
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return match s.code() {
            tonic::Code::NotFound => 4,
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => 5,
            tonic::Code::DataLoss => 6,
            tonic::Code::ResourceExhausted => 7,
            tonic::Code::Unavailable => 3,
            tonic::Code::FailedPrecondition => 9,
            _ => 1,
        };
    }
    if e.downcast_ref::<InvalidInput>().is_some() {
        return 5;
    }
    if e.downcast_ref::<crate::log::NotVerified>().is_some() {
        return 8;
    }
    1
}

/// Bad local input (files, metadata file), reported before anything is sent.
#[derive(Debug)]
pub struct InvalidInput(pub String);
impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InvalidInput {}

fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

fn show_record(json_out: bool, r: &pb::RecordInfo) {
    if json_out {
        println!("{}", record_json(r));
    } else {
        print_record(r);
    }
}

pub async fn run(node: String, json_out: bool, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Ingest {
            files,
            bag,
            seda,
            reply,
            metadata: file,
            meta,
        } => {
            if let Some(path) = seda {
                crate::seda::refuse_metadata_flags(&meta, file.is_some())?;
                return crate::seda::ingest(&node, json_out, path, reply).await;
            }
            let file_meta = file
                .as_deref()
                .map(metadata::load_file)
                .transpose()
                .map_err(|e| InvalidInput(format!("{e:#}")))?;
            match bag {
                Some(dir) => {
                    // The whole bag is checked before the node is even contacted.
                    let bag = crate::bag::validate(&dir)?;
                    for m in &bag.unchecked {
                        eprintln!("note: {m} is in an algorithm not checked here; the others were");
                    }
                    let from_bag = crate::bag::metadata_from_info(&bag.info);
                    let meta = metadata::merge_over(meta, file_meta, from_bag);
                    let sources = bag
                        .files
                        .into_iter()
                        .map(|f| Source {
                            path: f.path,
                            name: f.name,
                            size: f.size,
                            expect: f.digests,
                        })
                        .collect();
                    ingest(&node, json_out, sources, meta).await
                }
                None => {
                    let sources = check_files(&files)?
                        .into_iter()
                        .map(|(path, name, size)| Source {
                            path,
                            name,
                            size,
                            expect: Default::default(),
                        })
                        .collect();
                    ingest(&node, json_out, sources, metadata::merge(meta, file_meta)).await
                }
            }
        }
        Command::Export {
            records,
            all,
            bag,
            seda,
        } => {
            if all != records.is_empty() {
                bail!(InvalidInput("give record IDs or --all (not both)".into()));
            }
            match (bag, seda) {
                (Some(bag), None) => crate::bag::export(&node, json_out, records, all, bag).await,
                (None, Some(out)) if !all => {
                    crate::seda::export(&node, json_out, records, out).await
                }
                (None, Some(_)) => bail!(InvalidInput(
                    "--seda exports the records named (IDs); --all is for --bag".into()
                )),
                _ => bail!(InvalidInput("give --bag OUT or --seda OUT".into())),
            }
        }
        Command::Get {
            record,
            output,
            file,
            offset,
            length,
        } => get(&node, json_out, record, output, file, offset, length).await,
        Command::Ls {
            producer,
            record_type,
            date_from,
            date_to,
            communicability,
            limit,
        } => {
            let req = ListRequest {
                page_size: 500,
                page_token: String::new(),
                producer: producer.unwrap_or_default(),
                record_type: record_type.unwrap_or_default(),
                date_from: date_from.unwrap_or_default(),
                date_to: date_to.unwrap_or_default(),
                communicability: communicability.unwrap_or_default(),
            };
            ls(&node, json_out, req, limit).await
        }
        Command::Show { record } => {
            let mut c = connect(&node).await?;
            let r = c
                .show(ShowRequest { record_id: record })
                .await?
                .into_inner();
            show_record(json_out, &r);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { record } => verify(&node, json_out, record).await,
        Command::Edit { record, meta } => {
            let mut c = connect(&node).await?;
            let current = c
                .show(ShowRequest {
                    record_id: record.clone(),
                })
                .await?
                .into_inner();
            let merged = metadata::overlay(meta, current.metadata.unwrap_or_default());
            let r = c
                .update_metadata(pb::UpdateMetadataRequest {
                    record_id: record,
                    metadata: Some(merged),
                })
                .await?
                .into_inner();
            show_record(json_out, &r);
            Ok(ExitCode::SUCCESS)
        }
        Command::Log(cmd) => crate::log::run(&node, json_out, cmd).await,
        Command::Hold(cmd) => crate::hold::run(&node, json_out, cmd).await,
        Command::Eliminate(args) => crate::eliminate::run(&node, json_out, args).await,
        Command::Tombstones(cmd) => crate::tombstones::run(&node, json_out, cmd).await,
        Command::Peer(cmd) => crate::peer::run(&node, json_out, cmd).await,
        Command::Keys(cmd) => crate::keys::run(&node, json_out, cmd).await,
        Command::Federation => crate::federation::report(&node, json_out).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Status { record: Some(r) } => {
            crate::federation::record_status(&node, json_out, &r).await
        }
        Command::Status { record: None } => {
            let mut c = connect(&node).await?;
            let s = c.node_info(NodeInfoRequest {}).await?.into_inner();
            if json_out {
                println!("{}", output::status_json(&s));
            } else {
                println!("node       {}", s.node_id);
                println!("territory  {}", s.territory);
                println!("version    {}", s.version);
                println!("records    {}", s.records);
                println!(
                    "blobs      {} ({} stored, {} on disk)",
                    s.blobs,
                    human_size(s.stored_bytes),
                    human_size(s.disk_bytes)
                );
                println!("data       {}", s.data_dir);
                println!("age key    {}", s.territory_recipient);
                println!("audit log  {} ({} entries)", s.log_origin, s.log_size);
                println!("log key    {}", s.log_vkey);
                if !s.gateway_url.is_empty() {
                    println!("gateway    {}", s.gateway_url);
                }
                for r in &s.recovery_recipients {
                    println!("recovery   {r}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Checks local files before anything is sent, so bad input costs nothing.
fn check_files(files: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, String, u64)>> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for p in files {
        let meta =
            std::fs::metadata(p).map_err(|e| InvalidInput(format!("{}: {e}", p.display())))?;
        if meta.is_dir() {
            return Err(InvalidInput(format!(
                "{} is a directory: give the files inside it",
                p.display()
            ))
            .into());
        }
        if !meta.is_file() {
            return Err(InvalidInput(format!("{} is not a regular file", p.display())).into());
        }
        if meta.len() == 0 {
            return Err(
                InvalidInput(format!("{} is empty: nothing to archive", p.display())).into(),
            );
        }
        std::fs::File::open(p)
            .map_err(|e| InvalidInput(format!("{}: cannot be read: {e}", p.display())))?;
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| InvalidInput(format!("{}: the file name is not UTF-8", p.display())))?
            .to_string();
        if !names.insert(name.clone()) {
            return Err(InvalidInput(format!(
                "two files are named {name:?}: a record's file names must differ"
            ))
            .into());
        }
        out.push((p.clone(), name, meta.len()));
    }
    Ok(out)
}

/// One file to send, and the digests it must still have when sent (a bag's manifests).
pub struct Source {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub expect: std::collections::BTreeMap<crate::bag::Alg, String>,
}

/// Sends one record (metadata, then each file, re-checking `expect` digests while sending)
/// and commits it; nothing is printed.
pub async fn send_record(
    node: &str,
    files: Vec<Source>,
    meta: pb::RecordMetadata,
) -> anyhow::Result<pb::IngestResponse> {
    if meta.title.trim().is_empty() {
        return Err(InvalidInput(
            "title: is required (--title, title in --metadata, or DC-Title in bag-info.txt)".into(),
        )
        .into());
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    let mut client = connect(node).await?;
    let bar = progress(total, "ingest");
    let (tx, rx) = tokio::sync::mpsc::channel::<IngestRequest>(4);
    let msg = |item| IngestRequest { item: Some(item) };
    let reader_bar = bar.clone();
    let reader = tokio::spawn(async move {
        if tx
            .send(msg(ingest_request::Item::Metadata(meta)))
            .await
            .is_err()
        {
            return Ok(());
        }
        for Source {
            path,
            name,
            size,
            expect,
        } in files
        {
            let mut hashers = crate::bag::Hashers::new(expect.keys().copied());
            let header = pb::FileHeader {
                name: name.clone(),
                size,
                media_type: String::new(),
            };
            if tx
                .send(msg(ingest_request::Item::File(header)))
                .await
                .is_err()
            {
                return Ok(());
            }
            let mut f = tokio::fs::File::open(&path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            loop {
                let mut buf = Vec::with_capacity(CHUNK);
                let n = (&mut f)
                    .take(CHUNK as u64)
                    .read_to_end(&mut buf)
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                reader_bar.inc(n as u64);
                hashers.update(&buf);
                if tx
                    .send(msg(ingest_request::Item::Chunk(buf)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            // Returning before Commit drops the stream: the node keeps nothing.
            if hashers.finish() != expect {
                return Err(InvalidInput(format!(
                    "{}: changed since the bag was checked; nothing was archived",
                    path.display()
                ))
                .into());
            }
        }
        let _ = tx
            .send(msg(ingest_request::Item::Commit(pb::Commit {})))
            .await;
        Ok::<_, anyhow::Error>(())
    });
    let answer = client
        .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    bar.finish_and_clear();
    // A local read error explains a refused stream better than the node can.
    reader.await??;
    Ok(answer?.into_inner())
}

async fn ingest(
    node: &str,
    json_out: bool,
    files: Vec<Source>,
    meta: pb::RecordMetadata,
) -> anyhow::Result<ExitCode> {
    let r = send_record(node, files, meta).await?;
    if json_out {
        println!(
            "{}",
            json!({"id": r.id, "files": r.files, "bytes": r.bytes, "deduplicated_files": r.deduplicated_files, "manifest_digest": r.manifest_digest})
        );
    } else {
        println!("{}", r.id);
        eprintln!(
            "archived {} file(s), {}{}",
            r.files,
            human_size(r.bytes),
            if r.deduplicated_files > 0 {
                format!(" ({} already archived, stored once)", r.deduplicated_files)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A `NAME.archipel-part` file, removed when dropped unless it was renamed to its final
/// name: a failed read, or one cancelled because another file of the record failed, leaves
/// nothing behind.
struct PartFile(Option<PathBuf>);

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Streams one file of a record to `dest`, through a temporary file renamed at the end, so
/// that a failed or corrupt read never leaves wrong bytes under the final name.
async fn fetch(
    client: &mut archipel_proto::v1::archive_client::ArchiveClient<tonic::transport::Channel>,
    req: GetRequest,
    dest: Option<&Path>,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let mut stream = client.get(req).await?.into_inner();
    let mut written = 0u64;
    let mut part = PartFile(dest.map(|d| {
        let mut name = d.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".archipel-part");
        d.with_file_name(name)
    }));
    // Created without an await point: a read cancelled (another file failed) can then not
    // leave a part file created after the guard's drop.
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match &part.0 {
        Some(t) => Box::new(tokio::fs::File::from_std(
            std::fs::File::create(t).with_context(|| format!("cannot create {}", t.display()))?,
        )),
        None => Box::new(tokio::io::stdout()),
    };
    while let Some(msg) = stream.next().await {
        match msg?.item {
            Some(get_response::Item::Chunk(c)) => {
                out.write_all(&c).await?;
                written += c.len() as u64;
                bar.inc(c.len() as u64);
            }
            Some(get_response::Item::File(_)) | None => {}
        }
    }
    out.flush().await?;
    drop(out);
    if let (Some(t), Some(d)) = (&part.0, dest) {
        tokio::fs::rename(t, d)
            .await
            .with_context(|| format!("cannot rename to {}", d.display()))?;
        part.0 = None;
    }
    Ok(written)
}

/// How many files of one record `archipel get` reads at once (small ones; a file spanning
/// N blobs takes N of these permits; see `get`).
const PARALLEL_FILES: usize = 8;

async fn get(
    node: &str,
    json_out: bool,
    record: String,
    output: Option<PathBuf>,
    file: Option<String>,
    offset: u64,
    length: u64,
) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    let info = c
        .show(ShowRequest {
            record_id: record.clone(),
        })
        .await?
        .into_inner();
    let wanted: Vec<&pb::FileInfo> = match &file {
        Some(name) => {
            let f = info.files.iter().find(|f| &f.name == name);
            vec![f.ok_or_else(|| {
                tonic::Status::not_found(format!("record {record} has no file named {name:?}"))
            })?]
        }
        None => info.files.iter().collect(),
    };
    if (offset > 0 || length > 0) && wanted.len() != 1 {
        bail!(InvalidInput(
            "--offset/--length need one file: add --file NAME".into()
        ));
    }
    // The bar counts the bytes asked for: a range of the one file, or every file whole.
    let total: u64 = match wanted.as_slice() {
        [f] if offset > 0 || length > 0 => {
            let rest = f.size.saturating_sub(offset);
            if length > 0 { length.min(rest) } else { rest }
        }
        _ => wanted.iter().map(|f| f.size).sum(),
    };
    let bar = progress(total, "get");
    let mut written = Vec::new();
    if wanted.len() == 1 {
        let f = wanted[0];
        // One file: to PATH, to stdout with "-", or by default under its own name.
        let dest = match &output {
            Some(p) if p.as_os_str() == "-" => None,
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from(&f.name)),
        };
        let req = GetRequest {
            record_id: record.clone(),
            file_name: f.name.clone(),
            offset,
            length,
        };
        let n = fetch(&mut c, req, dest.as_deref(), &bar).await?;
        written.push(json!({"name": f.name, "path": dest.map(|d| d.display().to_string()).unwrap_or("-".into()), "bytes": n}));
    } else {
        let dir = output.unwrap_or_else(|| PathBuf::from(&record));
        tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
        // A record of many small files costs one request per file; several in flight over the
        // one HTTP/2 connection keep an object-store backend busy (each file is at least one
        // GET there). Each file weighs a permit per blob it spans (at most all of them), so
        // large files are read one at a time and the node's read-ahead stays that of one
        // reader. The first failure ends the command; the report keeps the manifest's order.
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL_FILES));
        let fetches = wanted.into_iter().enumerate().map(|(i, f)| {
            let mut c = c.clone();
            let dest = dir.join(&f.name);
            let req = GetRequest {
                record_id: record.clone(),
                file_name: f.name.clone(),
                offset: 0,
                length: 0,
            };
            let bar = &bar;
            let permits = permits.clone();
            let weight = f.blobs.clamp(1, PARALLEL_FILES as u64) as u32;
            async move {
                let _slot = permits.acquire_many(weight).await?;
                let n = fetch(&mut c, req, Some(&dest), bar).await?;
                let report =
                    json!({"name": f.name, "path": dest.display().to_string(), "bytes": n});
                anyhow::Ok((i, report))
            }
        });
        let mut done =
            futures::StreamExt::buffer_unordered(futures::stream::iter(fetches), PARALLEL_FILES);
        let mut reports = Vec::new();
        while let Some(one) = futures::StreamExt::next(&mut done).await {
            reports.push(one?);
        }
        reports.sort_by_key(|(i, _)| *i);
        written.extend(reports.into_iter().map(|(_, r)| r));
    }
    bar.finish_and_clear();
    if json_out {
        println!("{}", json!({"id": record, "files": written}));
    }
    Ok(ExitCode::SUCCESS)
}

async fn ls(
    node: &str,
    json_out: bool,
    mut req: ListRequest,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    let mut all = Vec::new();
    loop {
        let page = c.list(req.clone()).await?.into_inner();
        all.extend(page.records);
        if page.next_page_token.is_empty() || (limit > 0 && all.len() >= limit) {
            break;
        }
        req.page_token = page.next_page_token;
    }
    if limit > 0 {
        all.truncate(limit);
    }
    output::print_list(json_out, &all, record_json, |r| {
        let m = r.metadata.clone().unwrap_or_default();
        println!(
            "{}  {:<10}  {:>10}  {:<18}  {}",
            r.id,
            output::dates(&m),
            human_size(r.size),
            if m.communicability.is_empty() {
                "-"
            } else {
                &m.communicability
            },
            m.title
        );
    });
    Ok(ExitCode::SUCCESS)
}

async fn verify(node: &str, json_out: bool, record: Option<String>) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    let mut stream = c
        .verify(VerifyRequest {
            record_id: record.unwrap_or_default(),
        })
        .await?
        .into_inner();
    let mut reports = Vec::new();
    let mut summary = None;
    while let Some(r) = stream.next().await {
        let r = r?;
        if r.summary {
            summary = Some(r);
            continue;
        }
        if !json_out {
            if r.ok {
                println!(
                    "ok      {}  {} file(s), {} blob(s), {}",
                    r.record_id,
                    r.files,
                    r.blobs,
                    human_size(r.bytes)
                );
            } else {
                println!("FAILED  {}", r.record_id);
                for p in &r.problems {
                    println!("        {p}");
                }
            }
        }
        reports.push(r);
    }
    let s = summary.ok_or_else(|| anyhow::anyhow!("the node ended the fixity check early"))?;
    if json_out {
        println!(
            "{}",
            json!({"ok": s.ok, "records_checked": s.records_checked, "records_failed": s.records_failed, "records": reports.iter().map(output::verify_json).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "{} record(s) checked, {} failed",
            s.records_checked, s.records_failed
        );
    }
    Ok(if s.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(6)
    })
}
