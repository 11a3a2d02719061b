//! Reading records back: blobs are checked against their BLAKE3 address as they are loaded,
//! age authenticates every 64 KiB of plaintext, and a whole-file read ends by comparing the
//! file's BLAKE3 with the manifest. Wrong bytes are an error, never data.

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::keys::parse_identity;
use crate::store::{BlobStore, StoreError, Verified, get_verified};
use archipel_proto::manifest::{BlobId, FileEntry};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;

/// The ciphertext of one file, read blob by blob, seekable.
pub struct BlobSource {
    blobs: Arc<dyn BlobStore>,
    ids: Vec<BlobId>,
    blob_size: u64,
    len: u64,
    pos: u64,
    current: Option<(usize, Vec<u8>)>,
    record: String,
}

impl BlobSource {
    pub fn new(blobs: Arc<dyn BlobStore>, file: &FileEntry, record: &str) -> Self {
        BlobSource {
            blobs,
            ids: file.blobs.clone(),
            blob_size: u64::from(file.blob_size.max(1)),
            len: file.cipher_len,
            pos: 0,
            current: None,
            record: record.to_string(),
        }
    }

    fn load(&mut self, index: usize) -> std::io::Result<&[u8]> {
        if self.current.as_ref().map(|(i, _)| *i) != Some(index) {
            let id = self.ids.get(index).ok_or_else(|| {
                std::io::Error::other(StoreError::Damaged {
                    record: self.record.clone(),
                    why: format!("ciphertext offset beyond its {} blobs", self.ids.len()),
                })
            })?;
            let blob = match get_verified(self.blobs.as_ref(), id) {
                Ok(Verified::Ok(b)) => b,
                Ok(Verified::Missing) => {
                    return Err(std::io::Error::other(StoreError::Missing {
                        record: self.record.clone(),
                        blob: hex::encode(id),
                    }));
                }
                Ok(Verified::Corrupt) => {
                    return Err(std::io::Error::other(StoreError::Corrupt {
                        record: self.record.clone(),
                        blob: hex::encode(id),
                    }));
                }
                Err(e) => return Err(std::io::Error::other(StoreError::from(e))),
            };
            self.current = Some((index, blob));
        }
        Ok(self
            .current
            .as_ref()
            .map(|(_, b)| b.as_slice())
            .unwrap_or(&[]))
    }
}

impl Read for BlobSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let index = (self.pos / self.blob_size) as usize;
        let offset = (self.pos % self.blob_size) as usize;
        let blob = self.load(index)?;
        if offset >= blob.len() {
            return Err(std::io::Error::other(StoreError::Damaged {
                record: self.record.clone(),
                why: "a blob is shorter than the manifest says".into(),
            }));
        }
        let n = (blob.len() - offset).min(buf.len());
        buf[..n].copy_from_slice(&blob[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobSource {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// Turns an I/O error from the read stack back into the store error it carries.
pub fn io_to_error(e: std::io::Error, record: &str, file: &str) -> Error {
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<StoreError>()) {
        Some(Ok(store)) => Error::Store(*store),
        Some(Err(other)) => Error::Store(StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.to_string(),
            why: format!("decryption failed: {other}"),
        }),
        None => Error::Store(StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.to_string(),
            why: format!("decryption failed: {kind}"),
        }),
    }
}

/// A decrypting, seekable reader of one file's plaintext.
pub fn open_file(
    archive: &Archive,
    file: &FileEntry,
    record: &str,
) -> Result<age::stream::StreamReader<BufReader<BlobSource>>> {
    open_file_from(archive.store.blobs.clone(), file, record)
}

/// [`open_file`] over any blob store (a holder reads a released record from the origin's
/// namespace).
pub fn open_file_from(
    blobs: std::sync::Arc<dyn crate::store::BlobStore>,
    file: &FileEntry,
    record: &str,
) -> Result<age::stream::StreamReader<BufReader<BlobSource>>> {
    let source = BlobSource::new(blobs, file, record);
    let key = parse_identity(&file.file_key, "file key")?;
    let dec = age::Decryptor::new_buffered(BufReader::with_capacity(256 * 1024, source)).map_err(
        |e| StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.name.clone(),
            why: format!("not a readable age stream: {e}"),
        },
    )?;
    dec.decrypt(std::iter::once(&key as &dyn age::Identity))
        .map_err(|e| {
            Error::Store(StoreError::DigestMismatch {
                record: record.to_string(),
                file: file.name.clone(),
                why: format!("cannot decrypt: {e}"),
            })
        })
}

/// Reads `[offset, offset+length)` of a file into `sink`, in chunks of `chunk` bytes. A read
/// of the whole file also checks the file's BLAKE3 at the end.
pub fn read_range(
    archive: &Archive,
    file: &FileEntry,
    record: &str,
    offset: u64,
    length: u64,
    chunk: usize,
    sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<()> {
    read_range_from(
        archive.store.blobs.clone(),
        file,
        record,
        offset,
        length,
        chunk,
        sink,
    )
}

/// [`read_range`] over any blob store.
pub fn read_range_from(
    blobs: std::sync::Arc<dyn crate::store::BlobStore>,
    file: &FileEntry,
    record: &str,
    offset: u64,
    length: u64,
    chunk: usize,
    mut sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<()> {
    if offset > file.size || length > file.size - offset {
        return Err(StoreError::Range {
            offset,
            length,
            size: file.size,
        }
        .into());
    }
    let whole = offset == 0 && length == file.size;
    let mut r = open_file_from(blobs, file, record)?;
    if offset > 0 {
        r.seek(SeekFrom::Start(offset))
            .map_err(|e| io_to_error(e, record, &file.name))?;
    }
    let mut hasher = whole.then(blake3::Hasher::new);
    let mut left = length;
    while left > 0 {
        let mut buf = vec![0u8; chunk.min(left as usize)];
        let mut filled = 0;
        while filled < buf.len() {
            let n = r
                .read(&mut buf[filled..])
                .map_err(|e| io_to_error(e, record, &file.name))?;
            if n == 0 {
                return Err(StoreError::DigestMismatch {
                    record: record.to_string(),
                    file: file.name.clone(),
                    why: format!("ended {left} bytes early"),
                }
                .into());
            }
            filled += n;
        }
        left -= buf.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&buf);
        }
        if !sink(buf) {
            return Ok(()); // the reader went away
        }
    }
    if let Some(h) = hasher
        && h.finalize().as_bytes() != &file.blake3
    {
        return Err(StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.name.clone(),
            why: "BLAKE3 of the content differs from the manifest".into(),
        }
        .into());
    }
    Ok(())
}
