//! Moving blobs from one store to another (`archipel-node migrate-blobs`), with the node
//! stopped: every blob is read from the source, checked against its BLAKE3 address, written
//! to the target and read back and checked there. Blobs already good in the target are
//! skipped, so an interrupted run simply starts again. The source keeps its copies; the
//! caller switches the node over only when no blob failed.

use super::blob::{BlobError, BlobStore, Verified, get_verified};

#[derive(Debug, Default, Clone)]
pub struct MigrateReport {
    /// Blobs written to the target and checked there.
    pub copied: u64,
    /// Blobs the target already held, intact (a resumed run).
    pub already: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Blobs not moved, with why (corrupt or missing in the source, wrong in the target).
    pub failed: Vec<String>,
}

/// Moves one namespace's blobs. `progress` is called after each blob.
pub fn migrate_namespace(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    report: &mut MigrateReport,
    progress: &mut dyn FnMut(&MigrateReport),
) -> Result<(), BlobError> {
    for id in from.list(&[]) {
        let id = id?;
        let hex_id = hex::encode(id);
        if let Verified::Ok(_) = get_verified(to, &id)? {
            report.already += 1;
            progress(report);
            continue;
        }
        match get_verified(from, &id)? {
            Verified::Ok(bytes) => {
                to.put(&id, &bytes)?;
                match get_verified(to, &id)? {
                    Verified::Ok(_) => {
                        report.copied += 1;
                        report.bytes += bytes.len() as u64;
                    }
                    Verified::Missing => report
                        .failed
                        .push(format!("blob {hex_id}: absent from the target just after writing it")),
                    Verified::Corrupt => report
                        .failed
                        .push(format!("blob {hex_id}: read back altered from the target")),
                }
            }
            Verified::Missing => report
                .failed
                .push(format!("blob {hex_id}: listed but absent in the source")),
            Verified::Corrupt => report.failed.push(format!(
                "blob {hex_id}: corrupt in the source (not copied); repair it from a peer, then run again"
            )),
        }
        progress(report);
    }
    to.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FileBlobStore, SledBlobStore};

    #[test]
    fn migration_copies_checks_and_resumes() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let from = SledBlobStore::open(&db).unwrap();
        let to = FileBlobStore::open(d.path(), &db).unwrap();
        let blobs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 2000 << (i % 4)]).collect();
        for b in &blobs {
            from.put(blake3::hash(b).as_bytes(), b).unwrap();
        }
        // A run interrupted after a few blobs: half of them are in the target already.
        for b in &blobs[..7] {
            to.put(blake3::hash(b).as_bytes(), b).unwrap();
        }
        // One blob damaged in the source: reported, not copied.
        let bad = [5u8; 32];
        from.put(&bad, b"not the bytes of this address").unwrap();
        let mut r = MigrateReport::default();
        migrate_namespace(&from, &to, &mut r, &mut |_| {}).unwrap();
        assert_eq!((r.copied, r.already), (13, 7), "{r:?}");
        assert_eq!(r.failed.len(), 1, "{r:?}");
        assert!(r.failed[0].contains(&hex::encode(bad)));
        assert!(!to.contains(&bad).unwrap());
        for b in &blobs {
            assert_eq!(to.get(blake3::hash(b).as_bytes()).unwrap().unwrap(), *b);
        }
        let mut again = MigrateReport::default();
        migrate_namespace(&from, &to, &mut again, &mut |_| {}).unwrap();
        assert_eq!((again.copied, again.already), (0, 20));
    }
}
