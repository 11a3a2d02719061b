//! Blobs as files: the default blob store.
//!
//! Why not sled: measured here, sled keeps every inserted value in memory whatever its
//! `cache_capacity` (about 1 GiB of RSS after writing 1 GiB of 4 MiB, 1 MiB or 64 KiB values;
//! `tests/src/bin/sled_probe.rs`), which breaks the node's bounded-memory promise for large
//! records. sled still holds everything else (indexes, envelopes, keys, catalog, the log).
//!
//! Layout: `<dir>/<2 hex>/<2 hex>/<64 hex>`. A blob is written to `<dir>/tmp/` and renamed
//! into place, so a blob file is whole or absent; `flush` syncs the file system (`syncfs`),
//! which the store calls before it commits a record that references new blobs. `tmp/` is
//! emptied at start-up: its files belong to writes a crash interrupted.

use super::blob::{BlobError, BlobStore};
use archipel_proto::manifest::BlobId;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct FileBlobStore {
    dir: PathBuf,
    tmp_seq: AtomicU64,
}

impl FileBlobStore {
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        fs::create_dir_all(dir.join("tmp"))?;
        for e in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        Ok(FileBlobStore {
            dir: dir.to_path_buf(),
            tmp_seq: AtomicU64::new(0),
        })
    }

    /// Where a blob lives (tests use it to damage blobs on purpose).
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        let h = hex::encode(id);
        self.dir.join(&h[..2]).join(&h[2..4]).join(h)
    }
}

fn parse_id(name: &str) -> Option<BlobId> {
    if name.len() != 64 {
        return None;
    }
    hex::decode(name).ok()?.try_into().ok()
}

impl BlobStore for FileBlobStore {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path_of(id);
        if path.exists() {
            return Ok(()); // content-addressed: same ID, same bytes
        }
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp =
            self.dir
                .join("tmp")
                .join(format!("{}.{}.{seq}", hex::encode(id), std::process::id()));
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(written?)
    }

    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        match fs::read(self.path_of(id)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn contains(&self, id: &BlobId) -> Result<bool, BlobError> {
        Ok(self.path_of(id).exists())
    }

    fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        match fs::remove_file(self.path_of(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<BlobId, BlobError>> + '_> {
        let prefix = hex::encode(prefix);
        let mut out = Vec::new();
        let mut walk = || -> Result<(), BlobError> {
            let mut tops: Vec<_> = fs::read_dir(&self.dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 2)
                .collect();
            tops.sort();
            for a in tops {
                if !(a.starts_with(&prefix[..prefix.len().min(2)])) {
                    continue;
                }
                let mut mids: Vec<_> = fs::read_dir(self.dir.join(&a))?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                mids.sort();
                for b in mids {
                    let mut names: Vec<_> = fs::read_dir(self.dir.join(&a).join(&b))?
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(&prefix))
                        .collect();
                    names.sort();
                    out.extend(names.iter().filter_map(|n| parse_id(n)));
                }
            }
            Ok(())
        };
        match walk() {
            Ok(()) => Box::new(out.into_iter().map(Ok)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn flush(&self) -> Result<(), BlobError> {
        // One syscall makes every blob written so far durable, however many there are.
        let dir = fs::File::open(&self.dir)?;
        rustix::fs::syncfs(&dir).map_err(std::io::Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_blob_store_conforms() {
        let d = tempfile::tempdir().unwrap();
        super::super::blob::conformance::run(&FileBlobStore::open(d.path()).unwrap());
    }

    #[test]
    fn interrupted_writes_are_swept_at_open() {
        let d = tempfile::tempdir().unwrap();
        let s = FileBlobStore::open(d.path()).unwrap();
        fs::write(d.path().join("tmp").join("half-written"), b"x").unwrap();
        drop(s);
        FileBlobStore::open(d.path()).unwrap();
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }
}
