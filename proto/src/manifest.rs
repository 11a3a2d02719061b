//! Record manifests and the signed envelopes that carry them.
//!
//! A [`Manifest`] is the plaintext description of a record: its metadata and, per file, the
//! plaintext digests (BLAKE3 and SHA-512), the file's age identity and the ciphertext blobs.
//! It never leaves the node in clear. An [`Envelope`] is what is stored and replicated: the
//! manifest sealed (age) to the record's key, the list of blob IDs a holder must keep, and
//! the origin node's Ed25519 signature over all of it.

use crate::canonical::{DecodeError, Reader, Writer};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// A blob's content address: BLAKE3 of its stored (encrypted) bytes.
pub type BlobId = [u8; 32];

pub const MAX_FILES: usize = 100_000;
pub const MAX_BLOBS_PER_FILE: usize = 1 << 22;
pub const MAX_TEXT: usize = 64 * 1024;
pub const MAX_SHORT: usize = 1024;
pub const MAX_KEYWORDS: usize = 256;
pub const MAX_SEALED_MANIFEST: usize = 256 * 1024 * 1024;
const MAX_BLOBS_PER_RECORD: usize = 1 << 24;

const METADATA_MAGIC: &[u8] = b"archipel/metadata\n";
const MANIFEST_MAGIC: &[u8] = b"archipel/manifest\n";
const ENVELOPE_MAGIC: &[u8] = b"archipel/envelope\n";
const VERSION: u8 = 1;

/// Descriptive and management metadata, as validated by the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    pub title: String,
    pub description: String,
    pub producer: String,
    /// YYYY-MM-DD; equal to `date_to` for a single date; both empty when undated.
    pub date_from: String,
    pub date_to: String,
    pub record_type: String,
    pub language: String,
    pub keywords: Vec<String>,
    pub licence: String,
    /// A communicability code; empty means not communicable.
    pub communicability: String,
    pub dua_years: Option<u32>,
    /// "C", "D", "T" or empty.
    pub final_disposition: String,
    pub metadata_public: bool,
    pub person_death_date: String,
    pub person_birth_date: String,
}

impl Metadata {
    fn write(&self, w: &mut Writer) {
        w.str(&self.title)
            .str(&self.description)
            .str(&self.producer)
            .str(&self.date_from)
            .str(&self.date_to)
            .str(&self.record_type)
            .str(&self.language)
            .len(self.keywords.len());
        for k in &self.keywords {
            w.str(k);
        }
        w.str(&self.licence)
            .str(&self.communicability)
            .opt_u32(self.dua_years)
            .str(&self.final_disposition)
            .u8(u8::from(self.metadata_public))
            .str(&self.person_death_date)
            .str(&self.person_birth_date);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // 500 characters of up to 4 bytes each (the validator counts characters).
        let title = r.str("title", 2048)?;
        let description = r.str("description", MAX_TEXT)?;
        let producer = r.str("producer", MAX_SHORT)?;
        let date_from = r.str("date_from", 32)?;
        let date_to = r.str("date_to", 32)?;
        let record_type = r.str("record_type", MAX_SHORT)?;
        let language = r.str("language", 64)?;
        let n = r.len("keywords", MAX_KEYWORDS)?;
        let mut keywords = Vec::with_capacity(n);
        for _ in 0..n {
            keywords.push(r.str("keyword", MAX_SHORT)?);
        }
        let licence = r.str("licence", MAX_SHORT)?;
        let communicability = r.str("communicability", 64)?;
        let dua_years = r.opt_u32("dua_years")?;
        let final_disposition = r.str("final_disposition", 4)?;
        let metadata_public = match r.u8("metadata_public")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("metadata_public")),
        };
        let person_death_date = r.str("person_death_date", 32)?;
        let person_birth_date = r.str("person_birth_date", 32)?;
        Ok(Metadata {
            title,
            description,
            producer,
            date_from,
            date_to,
            record_type,
            language,
            keywords,
            licence,
            communicability,
            dua_years,
            final_disposition,
            metadata_public,
            person_death_date,
            person_birth_date,
        })
    }

    /// Canonical bytes of the metadata alone (for the catalog).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(METADATA_MAGIC, VERSION);
        self.write(&mut w);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, v) = Reader::new(bytes, METADATA_MAGIC, "archipel metadata")?;
        if v != VERSION {
            return Err(DecodeError::Version(v));
        }
        let m = Self::read(&mut r)?;
        r.finish()?;
        Ok(m)
    }
}

/// One file of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub media_type: String,
    /// BLAKE3 of the plaintext.
    pub blake3: [u8; 32],
    /// SHA-512 of the plaintext (what BagIt and SEDA tools check).
    pub sha512: [u8; 64],
    /// The age X25519 identity (`AGE-SECRET-KEY-1...`) that decrypts this file's stream.
    pub file_key: String,
    /// Length of the age ciphertext stream, split over `blobs`.
    pub cipher_len: u64,
    /// Size of every blob but the last (the ciphertext is cut at this size).
    pub blob_size: u32,
    pub blobs: Vec<BlobId>,
}

const FILE_MAGIC: &[u8] = b"archipel/file\n";

impl FileEntry {
    fn write(&self, w: &mut Writer) {
        w.str(&self.name)
            .u64(self.size)
            .str(&self.media_type)
            .fixed(&self.blake3)
            .fixed(&self.sha512)
            .str(&self.file_key)
            .u64(self.cipher_len)
            .u32(self.blob_size)
            .len(self.blobs.len());
        for b in &self.blobs {
            w.fixed(b);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let name = r.str("file name", MAX_SHORT)?;
        let size = r.u64("file size")?;
        let media_type = r.str("media type", 256)?;
        let blake3 = r.fixed::<32>("blake3")?;
        let sha512 = r.fixed::<64>("sha512")?;
        let file_key = r.str("file key", 256)?;
        let cipher_len = r.u64("cipher_len")?;
        let blob_size = r.u32("blob_size")?;
        let nb = r.len("blobs", MAX_BLOBS_PER_FILE)?;
        let mut blobs = Vec::with_capacity(nb.min(r.remaining() / 32));
        for _ in 0..nb {
            blobs.push(r.fixed::<32>("blob id")?);
        }
        Ok(FileEntry {
            name,
            size,
            media_type,
            blake3,
            sha512,
            file_key,
            cipher_len,
            blob_size,
            blobs,
        })
    }

    /// Canonical bytes of one file entry on its own (the node's deduplication index).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(FILE_MAGIC, VERSION);
        self.write(&mut w);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, v) = Reader::new(bytes, FILE_MAGIC, "archipel file entry")?;
        if v != VERSION {
            return Err(DecodeError::Version(v));
        }
        let f = Self::read(&mut r)?;
        r.finish()?;
        Ok(f)
    }

    /// Names the stored object independently of the file's name: SHA-256 over its blob IDs.
    pub fn object_id(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for b in &self.blobs {
            h.update(b);
        }
        h.finalize().into()
    }
}

/// The plaintext manifest of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub record_id: String,
    /// Node ID of the origin node.
    pub origin: String,
    /// Unix seconds, UTC.
    pub ingested_at: i64,
    pub metadata: Metadata,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(MANIFEST_MAGIC, VERSION);
        w.str(&self.record_id)
            .str(&self.origin)
            .i64(self.ingested_at);
        self.metadata.write(&mut w);
        w.len(self.files.len());
        for f in &self.files {
            f.write(&mut w);
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, v) = Reader::new(bytes, MANIFEST_MAGIC, "archipel manifest")?;
        if v != VERSION {
            return Err(DecodeError::Version(v));
        }
        let record_id = r.str("record_id", 64)?;
        let origin = r.str("origin", 128)?;
        let ingested_at = r.i64("ingested_at")?;
        let metadata = Metadata::read(&mut r)?;
        let n = r.len("files", MAX_FILES)?;
        // Allocation bounded by what the input can hold, not by what it claims.
        let mut files = Vec::with_capacity(n.min(r.remaining() / 128 + 1));
        for _ in 0..n {
            files.push(FileEntry::read(&mut r)?);
        }
        r.finish()?;
        Ok(Manifest {
            record_id,
            origin,
            ingested_at,
            metadata,
            files,
        })
    }

    /// All blob IDs of the record, in manifest order.
    pub fn blob_ids(&self) -> Vec<BlobId> {
        self.files
            .iter()
            .flat_map(|f| f.blobs.iter().copied())
            .collect()
    }
}

/// The signed, replicable form of a record: nothing in it is readable without the record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub record_id: String,
    pub origin: String,
    pub ingested_at: i64,
    /// The manifest, age-encrypted to the record's key.
    pub sealed_manifest: Vec<u8>,
    /// Every blob a holder must keep for this record.
    pub blobs: Vec<BlobId>,
    pub signature: [u8; 64],
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Decode(#[from] DecodeError),
    #[error("envelope of record {0} has a bad signature")]
    Signature(String),
}

impl Envelope {
    fn body(
        record_id: &str,
        origin: &str,
        ingested_at: i64,
        sealed: &[u8],
        blobs: &[BlobId],
    ) -> Writer {
        let mut w = Writer::new(ENVELOPE_MAGIC, VERSION);
        w.str(record_id)
            .str(origin)
            .i64(ingested_at)
            .bytes(sealed)
            .len(blobs.len());
        for b in blobs {
            w.fixed(b);
        }
        w
    }

    /// Builds and signs an envelope.
    pub fn sign(
        record_id: String,
        origin: String,
        ingested_at: i64,
        sealed_manifest: Vec<u8>,
        blobs: Vec<BlobId>,
        key: &SigningKey,
    ) -> Self {
        let body = Self::body(&record_id, &origin, ingested_at, &sealed_manifest, &blobs).finish();
        let signature = key.sign(&body).to_bytes();
        Envelope {
            record_id,
            origin,
            ingested_at,
            sealed_manifest,
            blobs,
            signature,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Self::body(
            &self.record_id,
            &self.origin,
            self.ingested_at,
            &self.sealed_manifest,
            &self.blobs,
        );
        w.fixed(&self.signature);
        w.finish()
    }

    /// Decodes without checking the signature; see [`Envelope::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, v) = Reader::new(bytes, ENVELOPE_MAGIC, "archipel envelope")?;
        if v != VERSION {
            return Err(DecodeError::Version(v));
        }
        let record_id = r.str("record_id", 64)?;
        let origin = r.str("origin", 128)?;
        let ingested_at = r.i64("ingested_at")?;
        let sealed_manifest = r.bytes("sealed manifest", MAX_SEALED_MANIFEST)?.to_vec();
        let n = r.len("blobs", MAX_BLOBS_PER_RECORD)?;
        let mut blobs = Vec::with_capacity(n.min(r.remaining() / 32));
        for _ in 0..n {
            blobs.push(r.fixed::<32>("blob id")?);
        }
        let signature = r.fixed::<64>("signature")?;
        r.finish()?;
        Ok(Envelope {
            record_id,
            origin,
            ingested_at,
            sealed_manifest,
            blobs,
            signature,
        })
    }

    /// Checks the origin's signature.
    pub fn verify(&self, origin_key: &VerifyingKey) -> Result<(), EnvelopeError> {
        let body = Self::body(
            &self.record_id,
            &self.origin,
            self.ingested_at,
            &self.sealed_manifest,
            &self.blobs,
        )
        .finish();
        origin_key
            .verify(&body, &Signature::from_bytes(&self.signature))
            .map_err(|_| EnvelopeError::Signature(self.record_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        Manifest {
            record_id: "01JB0000000000000000000000".into(),
            origin: "node".into(),
            ingested_at: 1_700_000_000,
            metadata: Metadata {
                title: "Délibération n°12".into(),
                keywords: vec!["budget".into(), "voirie".into()],
                dua_years: Some(10),
                final_disposition: "C".into(),
                ..Default::default()
            },
            files: vec![FileEntry {
                name: "d.pdf".into(),
                size: 3,
                media_type: "application/pdf".into(),
                blake3: [1; 32],
                sha512: [2; 64],
                file_key: "AGE-SECRET-KEY-1X".into(),
                cipher_len: 200,
                blob_size: 100,
                blobs: vec![[3; 32], [4; 32]],
            }],
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = sample();
        let b = m.encode();
        assert_eq!(Manifest::decode(&b).unwrap(), m);
    }

    #[test]
    fn manifest_rejects_trailing_and_truncated() {
        let mut b = sample().encode();
        b.push(0);
        assert_eq!(Manifest::decode(&b), Err(DecodeError::Trailing(1)));
        let b = sample().encode();
        for cut in 0..b.len() {
            assert!(Manifest::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn envelope_signature_covers_every_field() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let e = Envelope::sign(
            "r".into(),
            "o".into(),
            5,
            vec![1, 2, 3],
            vec![[9; 32]],
            &key,
        );
        e.verify(&key.verifying_key()).unwrap();
        let decoded = Envelope::decode(&e.encode()).unwrap();
        decoded.verify(&key.verifying_key()).unwrap();
        let mut bad = decoded.clone();
        bad.blobs[0][0] ^= 1;
        assert!(bad.verify(&key.verifying_key()).is_err());
        let mut bad = decoded;
        bad.sealed_manifest.push(0);
        assert!(bad.verify(&key.verifying_key()).is_err());
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(e.verify(&other.verifying_key()).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::decode(&bytes);
            let _ = Envelope::decode(&bytes);
            let _ = Metadata::decode(&bytes);
        }

        #[test]
        fn metadata_round_trips(title in ".{0,40}", kws in proptest::collection::vec(".{0,10}", 0..5), dua in proptest::option::of(0u32..200)) {
            let m = Metadata { title, keywords: kws, dua_years: dua, ..Default::default() };
            prop_assert_eq!(Metadata::decode(&m.encode()).unwrap(), m);
        }
    }
}
