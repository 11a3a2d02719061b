//! Human and JSON renderings of what the node answers.

use archipel_proto::v1::{FileInfo, NodeInfoResponse, RecordInfo, RecordMetadata, VerifyReport};
use serde_json::{Value, json};

fn metadata_json(m: &RecordMetadata) -> Value {
    json!({
        "title": m.title,
        "description": m.description,
        "producer": m.producer,
        "date": m.date,
        "date_from": m.date_from,
        "date_to": m.date_to,
        "type": m.record_type,
        "language": m.language,
        "keywords": m.keywords,
        "licence": m.licence,
        "communicability": m.communicability,
        "dua_years": m.dua_years,
        "final": m.final_disposition,
        "metadata_public": m.metadata_public,
        "person_death_date": m.person_death_date,
        "person_birth_date": m.person_birth_date,
    })
}

fn file_json(f: &FileInfo) -> Value {
    json!({
        "name": f.name,
        "size": f.size,
        "media_type": f.media_type,
        "blake3": f.blake3,
        "sha512": f.sha512,
        "blobs": f.blobs,
    })
}

pub fn record_json(r: &RecordInfo) -> Value {
    let m = r.metadata.clone().unwrap_or_default();
    json!({
        "id": r.id,
        "title": m.title,
        "metadata": metadata_json(&m),
        "files": r.files.iter().map(file_json).collect::<Vec<_>>(),
        "ingested_at": r.ingested_at,
        "origin_node_id": r.origin_node_id,
        "size": r.size,
        "stored_bytes": r.stored_bytes,
        "manifest_digest": r.manifest_digest,
    })
}

pub fn dates(m: &RecordMetadata) -> String {
    if !m.date.is_empty() {
        m.date.clone()
    } else if !m.date_from.is_empty() {
        format!("{}..{}", m.date_from, m.date_to)
    } else {
        "-".into()
    }
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn print_record(r: &RecordInfo) {
    let m = r.metadata.clone().unwrap_or_default();
    println!("{}  {}", r.id, m.title);
    let field = |k: &str, v: &str| {
        if !v.is_empty() {
            println!("  {k:<16} {v}");
        }
    };
    field("description", &m.description);
    field("producer", &m.producer);
    field("date", &dates(&m));
    field("type", &m.record_type);
    field("language", &m.language);
    field("keywords", &m.keywords.join(", "));
    field("licence", &m.licence);
    field(
        "communicability",
        if m.communicability.is_empty() {
            "(not set: not communicable)"
        } else {
            &m.communicability
        },
    );
    if let Some(d) = m.dua_years {
        field(
            "DUA / final",
            &format!("{d} years / {}", m.final_disposition),
        );
    }
    field("ingested", &r.ingested_at);
    field("origin node", &r.origin_node_id);
    field("manifest", &r.manifest_digest);
    println!("  files ({}, {}):", r.files.len(), human_size(r.size));
    for f in &r.files {
        println!("    {}  {}  {}", f.name, human_size(f.size), f.media_type);
        println!("      blake3 {}", f.blake3);
        println!("      sha512 {}", f.sha512);
    }
}

pub fn status_json(s: &NodeInfoResponse) -> Value {
    json!({
        "node_id": s.node_id,
        "territory": s.territory,
        "version": s.version,
        "records": s.records,
        "blobs": s.blobs,
        "stored_bytes": s.stored_bytes,
        "disk_bytes": s.disk_bytes,
        "public_key": s.public_key,
        "territory_recipient": s.territory_recipient,
        "recovery_recipients": s.recovery_recipients,
        "data_dir": s.data_dir,
        "log_origin": s.log_origin,
        "log_vkey": s.log_vkey,
        "log_size": s.log_size,
        "peer_address": s.peer_address,
        "gateway_url": s.gateway_url,
    })
}

pub fn verify_json(r: &VerifyReport) -> Value {
    json!({
        "id": r.record_id,
        "ok": r.ok,
        "files": r.files,
        "blobs": r.blobs,
        "bytes": r.bytes,
        "problems": r.problems,
    })
}

/// A list on stdout: one JSON array with `--json`, else each item as `line` prints it.
pub fn print_list<T>(json_out: bool, items: &[T], json: impl Fn(&T) -> Value, line: impl Fn(&T)) {
    if json_out {
        println!("{}", Value::Array(items.iter().map(json).collect()));
    } else {
        items.iter().for_each(line);
    }
}
