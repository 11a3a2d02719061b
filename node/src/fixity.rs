//! Fixity checks: every layer of a record is re-read and re-checked.
//!
//! For each record: the envelope's signature, the key envelope, the sealed manifest against
//! the catalog, every blob's BLAKE3 address, and every file's size, BLAKE3 and SHA-512 after
//! decryption. Problems are collected, not stopped at, so the report lists them all.

use crate::archive::Archive;
use crate::keys::open_with;
use crate::read::{io_to_error, open_file};
use crate::store::{Verified, get_verified};
use archipel_proto::manifest::{Envelope, Manifest};
use sha2::Digest;
use std::io::Read;

/// The outcome for one record.
#[derive(Debug, Default, Clone)]
pub struct FixityReport {
    pub record_id: String,
    pub files: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub problems: Vec<String>,
}

impl FixityReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks one record completely. Blocking: call from a blocking thread.
pub fn check_record(archive: &Archive, record_id: &str) -> FixityReport {
    let mut report = FixityReport {
        record_id: record_id.to_string(),
        ..Default::default()
    };
    let manifest = match archive.manifest(record_id) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(format!("catalog: {e}"));
            return report;
        }
    };
    check_envelope(archive, &manifest, &mut report);
    for file in &manifest.files {
        report.files += 1;
        report.blobs += file.blobs.len() as u64;
        let mut bad_blobs = Vec::new();
        for id in &file.blobs {
            match get_verified(archive.store.blobs.as_ref(), id) {
                Ok(Verified::Ok(_)) => {}
                Ok(Verified::Missing) => {
                    bad_blobs.push(format!("blob {} is missing", hex::encode(id)))
                }
                Ok(Verified::Corrupt) => bad_blobs.push(format!(
                    "blob {} is corrupt (its bytes do not match its BLAKE3 address)",
                    hex::encode(id)
                )),
                Err(e) => bad_blobs.push(format!("blob {}: {e}", hex::encode(id))),
            }
        }
        if !bad_blobs.is_empty() {
            report.problems.extend(
                bad_blobs
                    .into_iter()
                    .map(|p| format!("file {:?}: {p}", file.name)),
            );
            continue;
        }
        match digest_file(archive, file, record_id) {
            Ok((size, b3, sha)) => {
                report.bytes += size;
                if size != file.size {
                    report.problems.push(format!(
                        "file {:?}: {size} bytes, manifest says {}",
                        file.name, file.size
                    ));
                }
                if b3 != file.blake3 {
                    report.problems.push(format!(
                        "file {:?}: BLAKE3 differs from the manifest",
                        file.name
                    ));
                }
                if sha != file.sha512 {
                    report.problems.push(format!(
                        "file {:?}: SHA-512 differs from the manifest",
                        file.name
                    ));
                }
            }
            Err(e) => report.problems.push(format!("file {:?}: {e}", file.name)),
        }
    }
    report
}

fn digest_file(
    archive: &Archive,
    file: &archipel_proto::manifest::FileEntry,
    record_id: &str,
) -> crate::error::Result<(u64, [u8; 32], [u8; 64])> {
    let mut r = open_file(archive, file, record_id)?;
    let mut b3 = blake3::Hasher::new();
    let mut sha = sha2::Sha512::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| io_to_error(e, record_id, &file.name))?;
        if n == 0 {
            break;
        }
        b3.update(&buf[..n]);
        sha.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, *b3.finalize().as_bytes(), sha.finalize().into()))
}

/// The signed envelope and the key envelope must open to exactly the catalog's manifest.
fn check_envelope(archive: &Archive, manifest: &Manifest, report: &mut FixityReport) {
    let id = &manifest.record_id;
    let envelope = match archive.store.envelope(id) {
        Ok(Some(b)) => b,
        Ok(None) => return report.problems.push("envelope is missing".into()),
        Err(e) => return report.problems.push(format!("envelope: {e}")),
    };
    let envelope = match Envelope::decode(&envelope) {
        Ok(e) => e,
        Err(e) => return report.problems.push(format!("envelope is malformed: {e}")),
    };
    if envelope.verify(&archive.identity.verifying_key()).is_err() {
        report
            .problems
            .push("envelope signature does not verify with this node's key".into());
    }
    if envelope.blobs != manifest.blob_ids() {
        report
            .problems
            .push("envelope lists other blobs than the manifest".into());
    }
    let key = match archive.store.key_envelope(id) {
        Ok(Some(k)) => k,
        Ok(None) => return report.problems.push("key envelope is missing".into()),
        Err(e) => return report.problems.push(format!("key envelope: {e}")),
    };
    let record_key = match archive.keys.unwrap_record_key(&key, id) {
        Ok(k) => k,
        Err(e) => return report.problems.push(e.to_string()),
    };
    match open_with(&record_key, &envelope.sealed_manifest, "sealed manifest") {
        Ok(plain) if plain == manifest.encode() => {}
        Ok(_) => report
            .problems
            .push("sealed manifest differs from the catalog".into()),
        Err(e) => report.problems.push(e.to_string()),
    }
}
