//! `archipel log ...`: read the audit log, verify it against signed checkpoints, and make and
//! check offline deposit certificates (C2SP tlog-proof).

use anyhow::{Context, bail};
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::event::Event;
use archipel_proto::note::Verifier;
use archipel_proto::rfc6962::{
    Hash, leaf_hash, node_hash, root_from_leaf_hashes, verify_consistency,
};
use archipel_proto::tlog_proof::TlogProof;
use archipel_proto::v1::archive_client::ArchiveClient;
use archipel_proto::v1::audit_log_client::AuditLogClient;
use archipel_proto::v1::{
    CheckpointRequest, ConsistencyProofRequest, EntriesRequest, InclusionProofRequest,
    NodeInfoRequest, SignedCheckpointRequest, SubtreeHashRequest, inclusion_proof_request,
};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::transport::Channel;

#[derive(clap::Subcommand)]
pub enum LogCommand {
    /// Show the latest events in readable form.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: u64,
        /// Keep printing new events as they are appended.
        #[arg(long)]
        follow: bool,
    },
    /// Re-read every leaf, recompute the root and check it against the latest signed
    /// checkpoint; with --since, prove the log only grew since a saved checkpoint.
    Verify {
        /// A checkpoint saved earlier (e.g. by `archipel log checkpoint > cp.txt`).
        #[arg(long)]
        since: Option<PathBuf>,
        /// The log's verifier key, pinned (default: the key the node announces).
        #[arg(long)]
        key: Option<String>,
    },
    /// Print the latest signed checkpoint (save it to check the log later with --since).
    Checkpoint {
        /// Also write its RFC 3161 timestamp token (DER) here, if a TSA stamped it.
        #[arg(long)]
        timestamp_out: Option<PathBuf>,
    },
    /// Write the deposit certificate of a record (C2SP tlog-proof).
    Prove {
        record: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a deposit certificate offline, with no node and no network.
    CheckProof {
        file: PathBuf,
        /// The log's verifier key (signed-note vkey form, from `archipel status`).
        #[arg(long)]
        key: String,
    },
    /// Export every event as PREMIS 3 XML event elements or JSON lines.
    Export {
        #[arg(long, value_parser = ["premis", "jsonl"])]
        format: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A log, checkpoint or proof that does not verify; exit code 8.
#[derive(Debug)]
pub struct NotVerified(pub String);
impl std::fmt::Display for NotVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for NotVerified {}

fn fail(msg: impl Into<String>) -> anyhow::Error {
    NotVerified(msg.into()).into()
}

async fn client(node: &str) -> anyhow::Result<(AuditLogClient<Channel>, ArchiveClient<Channel>)> {
    // One connection, two services.
    let channel = crate::connect::channel(node).await?;
    Ok((
        AuditLogClient::new(channel.clone()),
        ArchiveClient::new(channel),
    ))
}

pub async fn run(node: &str, json_out: bool, cmd: LogCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCommand::CheckProof { file, key } => check_proof(json_out, file, &key),
        LogCommand::Tail { n, follow } => tail(node, json_out, n, follow).await,
        LogCommand::Verify { since, key } => verify(node, json_out, since, key).await,
        LogCommand::Checkpoint { timestamp_out } => {
            let (mut log, _) = client(node).await?;
            let cp = log.checkpoint(CheckpointRequest {}).await?.into_inner();
            if let Some(path) = timestamp_out {
                if cp.timestamp_token.is_empty() {
                    bail!(
                        "checkpoint {} has no RFC 3161 timestamp (is tsa_url configured? the checkpointer stamps within checkpoint_interval_secs)",
                        cp.size
                    );
                }
                std::fs::write(&path, &cp.timestamp_token)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            // Signature lines other than the log's own: witnesses' cosignatures (not checked
            // here; `log verify` checks the log key, and each witness's key checks its line).
            let cosigners: Vec<String> =
                archipel_proto::note::Note::parse(cp.checkpoint.as_bytes())
                    .map(|n| {
                        n.signatures
                            .into_iter()
                            .filter(|s| s.name != cp.origin)
                            .map(|s| s.name)
                            .collect()
                    })
                    .unwrap_or_default();
            if json_out {
                println!(
                    "{}",
                    json!({"checkpoint": cp.checkpoint, "size": cp.size, "origin": cp.origin, "vkey": cp.vkey, "timestamped": !cp.timestamp_token.is_empty(), "cosigners": cosigners})
                );
            } else {
                print!("{}", cp.checkpoint);
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Prove { record, out } => prove(node, json_out, record, out).await,
        LogCommand::Export { format, out } => export(node, &format, out).await,
    }
}

/// Fetches leaves [start, end) in pages.
async fn leaves(
    log: &mut AuditLogClient<Channel>,
    start: u64,
    end: u64,
) -> anyhow::Result<(Vec<Vec<u8>>, u64)> {
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut pos = start;
    let mut size = end;
    while pos < end {
        let page = log
            .entries(EntriesRequest { start: pos, end })
            .await?
            .into_inner();
        size = page.log_size;
        if page.leaves.is_empty() {
            bail!("the node returned no entries from index {pos}");
        }
        pos += page.leaves.len() as u64;
        out.extend(page.leaves);
    }
    Ok((out, size))
}

fn describe(index: u64, leaf: &[u8]) -> (String, serde_json::Value) {
    match Event::decode(leaf) {
        Ok(e) => (
            format!(
                "#{index:<6} {}  {:<28} {:<28} {:<7} {}",
                e.time,
                e.event_type,
                e.object,
                e.outcome.as_str(),
                e.agent_actor
            ),
            json!({"index": index, "time": e.time, "type": e.event_type, "object": e.object, "agent_node": e.agent_node, "agent_actor": e.agent_actor, "outcome": e.outcome.as_str(), "detail": hex::encode(e.detail)}),
        ),
        Err(err) => (
            format!("#{index:<6} (undecodable leaf: {err})"),
            json!({"index": index, "error": err.to_string()}),
        ),
    }
}

async fn tail(node: &str, json_out: bool, n: u64, follow: bool) -> anyhow::Result<ExitCode> {
    let (mut log, mut archive) = client(node).await?;
    let size = archive
        .node_info(NodeInfoRequest {})
        .await?
        .into_inner()
        .log_size;
    let mut pos = size.saturating_sub(n);
    let mut all = Vec::new();
    loop {
        let size = archive
            .node_info(NodeInfoRequest {})
            .await?
            .into_inner()
            .log_size;
        if size > pos {
            let (ls, _) = leaves(&mut log, pos, size).await?;
            for (i, l) in ls.iter().enumerate() {
                let (text, value) = describe(pos + i as u64, l);
                if json_out && follow {
                    println!("{value}");
                } else if json_out {
                    all.push(value);
                } else {
                    println!("{text}");
                }
            }
            pos = size;
        }
        if !follow {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    if json_out && !follow {
        println!("{}", serde_json::Value::Array(all));
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds the first leaf whose hash differs from what the signed root commits to, descending
/// with the node's stored subtree hashes, each checked against its trusted parent.
async fn first_bad_index(
    log: &mut AuditLogClient<Channel>,
    hashes: &[Hash],
    root: Hash,
) -> anyhow::Result<Result<u64, (u64, u64)>> {
    let (mut start, mut end, mut trusted) = (0u64, hashes.len() as u64, root);
    while end - start > 1 {
        let k = 1u64 << (63 - (end - start - 1).leading_zeros());
        let get = |s: u64, e: u64| SubtreeHashRequest { start: s, end: e };
        let left: Hash = log
            .subtree_hash(get(start, start + k))
            .await?
            .into_inner()
            .hash
            .try_into()
            .map_err(|_| anyhow::anyhow!("bad hash"))?;
        let right: Hash = log
            .subtree_hash(get(start + k, end))
            .await?
            .into_inner()
            .hash
            .try_into()
            .map_err(|_| anyhow::anyhow!("bad hash"))?;
        if node_hash(&left, &right) != trusted {
            // The stored tree itself was rewritten here: the bad entry is in this range.
            return Ok(Err((start, end)));
        }
        let mine = root_from_leaf_hashes(&hashes[start as usize..(start + k) as usize]);
        if mine != left {
            end = start + k;
            trusted = left;
        } else {
            start += k;
            trusted = right;
        }
    }
    Ok(Ok(start))
}

async fn verify(
    node: &str,
    json_out: bool,
    since: Option<PathBuf>,
    key: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (mut log, mut archive) = client(node).await?;
    let info = archive.node_info(NodeInfoRequest {}).await?.into_inner();
    let vkey = key.unwrap_or(info.log_vkey.clone());
    let verifier: Verifier = vkey
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid verifier key: {e}"))?;
    // The latest checkpoint: signed now if the log grew; if the node refuses to sign (its
    // log no longer extends what it signed), check against the last one it did sign.
    // The latest checkpoint: signed now if the log grew; if the node refuses to sign (its
    // log no longer extends what it signed), check against the last one it did sign. No
    // checkpoint at all: an empty log (which a saved checkpoint will expose if it was wiped).
    let note = match log.checkpoint(CheckpointRequest {}).await {
        Ok(r) => Some(r.into_inner().checkpoint),
        Err(status) => {
            if status.code() != tonic::Code::InvalidArgument {
                eprintln!(
                    "warning: the node refuses to sign a checkpoint: {}",
                    status.message()
                );
            }
            match log
                .signed_checkpoint(SignedCheckpointRequest { size: 0 })
                .await
            {
                Ok(r) => Some(r.into_inner().checkpoint),
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(s.into()),
            }
        }
    };
    let cp = match note {
        Some(note) => Checkpoint::open(note.as_bytes(), &verifier).map_err(|e| {
            fail(format!(
                "the latest checkpoint does not verify with {vkey}: {e}"
            ))
        })?,
        None => Checkpoint {
            origin: info.log_origin.clone(),
            size: 0,
            root: archipel_proto::rfc6962::empty_root(),
            extensions: vec![],
        },
    };
    // Read the size after the checkpoint: the log only grows, so fewer entries than the
    // checkpoint covers means entries were removed.
    let size_now = archive
        .node_info(NodeInfoRequest {})
        .await?
        .into_inner()
        .log_size;
    if size_now < cp.size {
        return Err(fail(format!(
            "the log was truncated: a checkpoint is signed at size {} but the log has {size_now} entries; first missing index {size_now}",
            cp.size
        )));
    }
    let (all, _) = leaves(&mut log, 0, cp.size).await?;
    let hashes: Vec<Hash> = all.iter().map(|l| leaf_hash(l)).collect();
    if root_from_leaf_hashes(&hashes) != cp.root {
        let msg = match first_bad_index(&mut log, &hashes, cp.root).await? {
            Ok(i) => format!(
                "entry {i} does not match the signed checkpoint of size {}: the log was altered; first bad index {i}",
                cp.size
            ),
            Err((a, b)) => format!(
                "entries [{a}, {b}) do not match the signed checkpoint of size {}: the stored log was rewritten; first bad index at or after {a}",
                cp.size
            ),
        };
        return Err(fail(msg));
    }
    let undecodable: Vec<u64> = all
        .iter()
        .enumerate()
        .filter(|(_, l)| Event::decode(l).is_err())
        .map(|(i, _)| i as u64)
        .collect();
    if let Some(i) = undecodable.first() {
        return Err(fail(format!("entry {i} is not a valid event leaf")));
    }
    let mut since_report = serde_json::Value::Null;
    if let Some(path) = since {
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let old = Checkpoint::open(&text, &verifier).map_err(|e| {
            fail(format!(
                "{} is not a checkpoint signed by {vkey}: {e}",
                path.display()
            ))
        })?;
        if old.origin != cp.origin {
            return Err(fail(format!(
                "{} is a checkpoint of another log ({})",
                path.display(),
                old.origin
            )));
        }
        if old.size > cp.size {
            return Err(fail(format!(
                "fork or truncation: the saved checkpoint has {} entries, the log now signs only {}",
                old.size, cp.size
            )));
        }
        let prefix = root_from_leaf_hashes(&hashes[..old.size as usize]);
        if prefix != old.root {
            return Err(fail(format!(
                "fork: the log no longer extends the checkpoint saved in {} (size {}): entries before index {} were rewritten since",
                path.display(),
                old.size,
                old.size
            )));
        }
        if old.size < cp.size && old.size > 0 {
            let p = log
                .consistency_proof(ConsistencyProofRequest {
                    old_size: old.size,
                    new_size: cp.size,
                })
                .await?
                .into_inner();
            verify_consistency(old.size, cp.size, &p.hashes, &old.root, &cp.root)
                .map_err(|e| fail(format!("fork: no valid consistency proof from the saved checkpoint (size {}) to size {}: {e}", old.size, cp.size)))?;
        }
        since_report = json!({"file": path.display().to_string(), "size": old.size});
    }
    if json_out {
        println!(
            "{}",
            json!({"ok": true, "origin": cp.origin, "size": cp.size, "root": hex::encode(cp.root), "since": since_report})
        );
    } else {
        println!(
            "log {} verified: {} entries, root {}",
            cp.origin,
            cp.size,
            hex::encode(cp.root)
        );
        if !since_report.is_null() {
            println!(
                "and it only grew since the saved checkpoint of size {}",
                since_report["size"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn prove(
    node: &str,
    json_out: bool,
    record: String,
    out: PathBuf,
) -> anyhow::Result<ExitCode> {
    let (mut log, mut archive) = client(node).await?;
    let info = archive.node_info(NodeInfoRequest {}).await?.into_inner();
    let req = InclusionProofRequest {
        target: Some(inclusion_proof_request::Target::RecordId(record.clone())),
        tree_size: 0,
    };
    let p = log.inclusion_proof(req).await?.into_inner();
    let proof = TlogProof {
        extra: Some(p.leaf.clone()),
        index: p.index,
        proof: p
            .hashes
            .iter()
            .map(|h| Hash::try_from(h.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("the node sent a hash that is not 32 bytes"))?,
        checkpoint: p.checkpoint,
    };
    let verifier: Verifier = info
        .log_vkey
        .parse()
        .map_err(|e| anyhow::anyhow!("node's verifier key: {e}"))?;
    // Never hand out a certificate that does not verify.
    proof
        .verify(&verifier, None)
        .map_err(|e| fail(format!("the node's proof does not verify: {e}")))?;
    std::fs::write(&out, proof.encode())
        .with_context(|| format!("cannot write {}", out.display()))?;
    if json_out {
        println!(
            "{}",
            json!({"record": record, "index": p.index, "tree_size": p.tree_size, "file": out.display().to_string(), "vkey": info.log_vkey})
        );
    } else {
        println!(
            "deposit certificate of {record} written to {} (entry {} of {})",
            out.display(),
            p.index,
            p.tree_size
        );
        println!(
            "check it anywhere with: archipel log check-proof {} --key {}",
            out.display(),
            info.log_vkey
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check_proof(json_out: bool, file: PathBuf, key: &str) -> anyhow::Result<ExitCode> {
    let verifier: Verifier = key
        .parse()
        .map_err(|e| fail(format!("invalid verifier key {key:?}: {e}")))?;
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let proof = TlogProof::parse(&bytes).map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let cp = proof
        .verify(&verifier, None)
        .map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let leaf = proof.extra.clone().unwrap_or_default();
    let event = Event::decode(&leaf).map_err(|e| {
        fail(format!(
            "{}: the certified entry is not an Archipel event: {e}",
            file.display()
        ))
    })?;
    if json_out {
        println!(
            "{}",
            json!({"ok": true, "origin": cp.origin, "index": proof.index, "tree_size": cp.size, "event": describe(proof.index, &leaf).1})
        );
    } else {
        println!(
            "valid: entry {} of log {} (size {})",
            proof.index, cp.origin, cp.size
        );
        println!(
            "  {} of {} at {} ({}), by node {}",
            event.event_type,
            event.object,
            event.time,
            event.outcome.as_str(),
            event.agent_node
        );
        println!("  detail digest {}", hex::encode(event.detail));
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(node: &str, format: &str, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (mut log, mut archive) = client(node).await?;
    let info = archive.node_info(NodeInfoRequest {}).await?.into_inner();
    let (all, _) = leaves(&mut log, 0, info.log_size).await?;
    let mut text = String::new();
    let mut events = Vec::new();
    for (i, leaf) in all.iter().enumerate() {
        let e = Event::decode(leaf)
            .map_err(|err| fail(format!("entry {i} is not a valid event: {err}")))?;
        if format == "premis" {
            events.push((i as u64, e));
        } else {
            text.push_str(&describe(i as u64, leaf).1.to_string());
            text.push('\n');
        }
    }
    if format == "premis" {
        text = crate::premis::document(&info.log_origin, &["node".to_string()], &events);
    }
    match out {
        Some(p) => {
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
