//! C2SP signed notes with Ed25519 keys, and C2SP tlog-cosignature/v1 (Ed25519 flavour).
//!
//! A signed note is UTF-8 text ending in a newline, one blank line, then signature lines
//! `— <key name> <base64(4-byte key ID || signature)>`. The formats must match the Go
//! implementations (golang.org/x/mod/sumdb/note, github.com/transparency-dev/formats) byte
//! for byte, so that standard verifiers and witnesses can check Archipel's notes.
//!
//! Parsing is strict and bounded ([`MAX_NOTE_SIZE`], [`MAX_SIGNATURES`]). Verification
//! follows the specification: lines from unknown keys (name and key ID not both matching)
//! are ignored, a line from the expected key that fails to verify rejects the whole note, and
//! a note without a valid signature from the expected key is rejected.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Largest note accepted, in bytes (text and signatures).
pub const MAX_NOTE_SIZE: usize = 1 << 20;
/// Largest number of signature lines accepted in one note (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// Signature type byte of plain Ed25519 note signatures.
pub const KEY_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of timestamped Ed25519 cosignatures (cosignature/v1).
pub const KEY_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// Em dash (U+2014) and a space: the start of every signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";
const ED25519_SIGNATURE_SIZE: usize = 64;
const TIMESTAMP_SIZE: usize = 8;

/// Why a note, key or signature was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NoteError {
    #[error("note is {len} bytes long, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("note is not valid UTF-8")]
    NotUtf8,
    #[error("note contains the control character U+{0:04X}; only newline is allowed")]
    ControlCharacter(u32),
    #[error("note text is empty")]
    EmptyText,
    #[error("note text does not end with a newline")]
    TextNotNewlineTerminated,
    #[error("no blank line separates the note text from its signatures")]
    MissingSeparator,
    #[error("note has no signature lines")]
    NoSignatures,
    #[error("note does not end with a newline")]
    NotNewlineTerminated,
    #[error("note has more than {0} signature lines")]
    TooManySignatures(usize),
    #[error("malformed signature line: {0}")]
    MalformedSignature(&'static str),
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    InvalidKeyName(String),
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    #[error("malformed private key: {0}")]
    MalformedPrivateKey(&'static str),
    #[error("unsupported key type 0x{0:02x}")]
    UnsupportedKeyType(u8),
    #[error("key ID {given:08x} does not match {computed:08x}, computed from the name and key")]
    KeyIdMismatch { given: u32, computed: u32 },
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    #[error("signature by {name} ({key_id:08x}) does not verify")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("note has no signature by {name} ({key_id:08x})")]
    NotSigned { name: String, key_id: u32 },
    #[error("cosignature timestamp {0} is above 2^63 - 1")]
    TimestampOutOfRange(u64),
    #[error("a cosigned text must be a checkpoint body of at least 3 lines")]
    NotACheckpointBody,
}

/// Key ID: the first 4 bytes, big-endian, of SHA-256(name || 0x0A || key type || public key).
pub fn key_id(name: &str, key_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', key_type]);
    h.update(public_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes, without the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in a note, final newline included.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// Parses one signature line, given without its final newline.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(NoteError::MalformedSignature(
                "missing the em dash and space",
            ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::MalformedSignature(
            "missing the space after the key name",
        ))?;
        check_key_name(name)?;
        if b64.is_empty() {
            return Err(NoteError::MalformedSignature("empty signature"));
        }
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| NoteError::MalformedSignature("signature is not valid base64"))?;
        // A key ID and at least one byte of signature.
        if raw.len() < 5 {
            return Err(NoteError::MalformedSignature("signature is too short"));
        }
        let (id, signature) = raw.split_at(4);
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
            signature: signature.to_vec(),
        })
    }
}

/// A parsed note: its text and signature lines, verified or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included, blank separator line excluded.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a note strictly, without checking any signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                len: bytes.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        check_control_characters(s)?;
        // The text may hold empty lines: the last blank line is the separator.
        let split = s.rfind("\n\n").ok_or(NoteError::MissingSeparator)?;
        let text = &s[..split + 1];
        let block = &s[split + 2..];
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(NoteError::NotNewlineTerminated)?;
        let mut signatures = Vec::new();
        for line in block.split('\n') {
            // Bounded before parsing, so a huge note costs little.
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures(MAX_SIGNATURES));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: text, blank line, signature lines. No validation is done here.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
        }
        out
    }
}

/// Signs `text` and returns the whole signed note.
pub fn sign_note(text: &str, signer: &Signer) -> Result<String, NoteError> {
    let note = Note {
        text: text.to_owned(),
        signatures: vec![signer.sign(text)?],
    };
    Ok(note.encode())
}

/// Parses a note and checks that `verifier` signed it; other keys' lines are ignored.
pub fn open_note(bytes: &[u8], verifier: &Verifier) -> Result<Note, NoteError> {
    let note = Note::parse(bytes)?;
    let mut verified = false;
    for sig in note.signatures.iter().filter(|s| verifier.matches(s)) {
        if !verifier.verify(&note.text, &sig.signature) {
            return Err(NoteError::InvalidSignature {
                name: verifier.name.clone(),
                key_id: verifier.key_id,
            });
        }
        verified = true;
    }
    if !verified {
        return Err(NoteError::NotSigned {
            name: verifier.name.clone(),
            key_id: verifier.key_id,
        });
    }
    Ok(note)
}

/// A private Ed25519 note key with its name.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl Signer {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(name, KEY_TYPE_ED25519, key.verifying_key().as_bytes());
        Ok(Signer {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 || 32-byte seed)>`.
    pub fn from_private_key(skey: &str) -> Result<Self, NoteError> {
        let parts = parse_private_key(skey)?;
        if parts.key_type != KEY_TYPE_ED25519 {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let signer = Signer::new(&parts.name, signing_key_from_seed(&parts.key)?)?;
        check_key_id(parts.key_id, signer.key_id)?;
        Ok(signer)
    }

    /// The private key string form; it holds the secret seed.
    pub fn to_private_key(&self) -> String {
        let mut raw = vec![KEY_TYPE_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(raw)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs a note text (final newline included) and returns the signature line's content.
    pub fn sign(&self, text: &str) -> Result<NoteSignature, NoteError> {
        check_text(text)?;
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        })
    }
}

impl fmt::Debug for Signer {
    // Never print the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// A public Ed25519 note key with its name, as in a vkey string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Verifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Verifier {
            name: name.to_owned(),
            key_id: key_id(name, KEY_TYPE_ED25519, key.as_bytes()),
            key,
        })
    }

    /// Parses `<name>+<key ID hex>+<base64(0x01 || 32-byte public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let parts = parse_key_parts(vkey, NoteError::MalformedVerifierKey)?;
        if parts.key_type != KEY_TYPE_ED25519 {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let verifier = Verifier::new(&parts.name, verifying_key(&parts.key)?)?;
        check_key_id(parts.key_id, verifier.key_id)?;
        Ok(verifier)
    }

    pub fn to_vkey(&self) -> String {
        format_vkey(&self.name, self.key_id, KEY_TYPE_ED25519, &self.key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `signature` (without key ID) is this key's signature of `text`.
    pub fn verify(&self, text: &str, signature: &[u8]) -> bool {
        Signature::from_slice(signature)
            .is_ok_and(|sig| self.key.verify_strict(text.as_bytes(), &sig).is_ok())
    }

    fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }
}

impl FromStr for Verifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, NoteError> {
        Verifier::from_vkey(s)
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

/// The message an Ed25519 cosignature/v1 signs:
/// `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint text.
pub fn cosignature_message(checkpoint_text: &str, timestamp: u64) -> Result<String, NoteError> {
    check_text(checkpoint_text)?;
    if checkpoint_text.matches('\n').count() < 3 {
        return Err(NoteError::NotACheckpointBody);
    }
    Ok(format!(
        "cosignature/v1\ntime {timestamp}\n{checkpoint_text}"
    ))
}

/// A witness (cosigner) private key producing cosignature/v1 signatures.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl CosignatureSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(
            name,
            KEY_TYPE_COSIGNATURE_V1,
            key.verifying_key().as_bytes(),
        );
        Ok(CosignatureSigner {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Parses a private key string of type 0x01 (a plain note key, as transparency-dev
    /// witnesses use) or 0x04; the key ID given must match that type.
    pub fn from_private_key(skey: &str) -> Result<Self, NoteError> {
        let parts = parse_private_key(skey)?;
        if parts.key_type != KEY_TYPE_ED25519 && parts.key_type != KEY_TYPE_COSIGNATURE_V1 {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let key = signing_key_from_seed(&parts.key)?;
        check_key_id(
            parts.key_id,
            key_id(&parts.name, parts.key_type, key.verifying_key().as_bytes()),
        )?;
        CosignatureSigner::new(&parts.name, key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns a checkpoint text at `timestamp` (POSIX seconds).
    pub fn sign(&self, checkpoint_text: &str, timestamp: u64) -> Result<NoteSignature, NoteError> {
        if i64::try_from(timestamp).is_err() {
            return Err(NoteError::TimestampOutOfRange(timestamp));
        }
        let message = cosignature_message(checkpoint_text, timestamp)?;
        let mut signature = Vec::with_capacity(TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE);
        signature.extend_from_slice(&timestamp.to_be_bytes());
        signature.extend_from_slice(&self.key.sign(message.as_bytes()).to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature,
        })
    }
}

impl fmt::Debug for CosignatureSigner {
    // Never print the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignatureSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// A witness (cosigner) public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(CosignatureVerifier {
            name: name.to_owned(),
            key_id: key_id(name, KEY_TYPE_COSIGNATURE_V1, key.as_bytes()),
            key,
        })
    }

    /// Parses a vkey of type 0x04, or of type 0x01 (a plain note key of the witness, as
    /// transparency-dev accepts); the key ID given must match that type.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let parts = parse_key_parts(vkey, NoteError::MalformedVerifierKey)?;
        if parts.key_type != KEY_TYPE_ED25519 && parts.key_type != KEY_TYPE_COSIGNATURE_V1 {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let key = verifying_key(&parts.key)?;
        check_key_id(
            parts.key_id,
            key_id(&parts.name, parts.key_type, key.as_bytes()),
        )?;
        CosignatureVerifier::new(&parts.name, key)
    }

    /// The vkey string, in its type 0x04 form.
    pub fn to_vkey(&self) -> String {
        format_vkey(&self.name, self.key_id, KEY_TYPE_COSIGNATURE_V1, &self.key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks one cosignature (signature bytes without key ID) of `checkpoint_text` and
    /// returns its timestamp.
    pub fn verify(&self, checkpoint_text: &str, signature: &[u8]) -> Result<u64, NoteError> {
        let invalid = || NoteError::InvalidSignature {
            name: self.name.clone(),
            key_id: self.key_id,
        };
        if signature.len() != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE {
            return Err(invalid());
        }
        let (ts, sig) = signature.split_at(TIMESTAMP_SIZE);
        let mut ts_bytes = [0u8; TIMESTAMP_SIZE];
        ts_bytes.copy_from_slice(ts);
        let timestamp = u64::from_be_bytes(ts_bytes);
        if i64::try_from(timestamp).is_err() {
            return Err(NoteError::TimestampOutOfRange(timestamp));
        }
        let message = cosignature_message(checkpoint_text, timestamp)?;
        let sig = Signature::from_slice(sig).map_err(|_| invalid())?;
        self.key
            .verify_strict(message.as_bytes(), &sig)
            .map_err(|_| invalid())?;
        Ok(timestamp)
    }

    fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }
}

impl FromStr for CosignatureVerifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, NoteError> {
        CosignatureVerifier::from_vkey(s)
    }
}

impl fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

/// Checks `verifier`'s cosignature on a parsed note and returns its timestamp (the latest,
/// should the line appear more than once). Other lines are ignored; a line from this
/// cosigner that does not verify is an error.
pub fn verify_cosignature(note: &Note, verifier: &CosignatureVerifier) -> Result<u64, NoteError> {
    let mut latest = None;
    for sig in note.signatures.iter().filter(|s| verifier.matches(s)) {
        let t = verifier.verify(&note.text, &sig.signature)?;
        latest = latest.max(Some(t));
    }
    latest.ok_or_else(|| NoteError::NotSigned {
        name: verifier.name.clone(),
        key_id: verifier.key_id,
    })
}

/// The fields of a vkey or private key string.
struct KeyParts {
    name: String,
    key_id: u32,
    key_type: u8,
    key: Vec<u8>,
}

/// Parses `<name>+<8 hex digits>+<base64(type || key)>`. The key's base64 may itself hold
/// '+', so only the first two are separators.
fn parse_key_parts(s: &str, err: fn(&'static str) -> NoteError) -> Result<KeyParts, NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(err("expected <name>+<key ID>+<key>"));
    };
    check_key_name(name)?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err("key ID is not 8 hex digits"));
    }
    let key_id = u32::from_str_radix(id_hex, 16).map_err(|_| err("key ID is not 8 hex digits"))?;
    let raw = STANDARD
        .decode(key64)
        .map_err(|_| err("key is not valid base64"))?;
    let (&key_type, key) = raw.split_first().ok_or(err("key is empty"))?;
    Ok(KeyParts {
        name: name.to_owned(),
        key_id,
        key_type,
        key: key.to_vec(),
    })
}

fn parse_private_key(skey: &str) -> Result<KeyParts, NoteError> {
    let rest = skey
        .strip_prefix(PRIVATE_KEY_PREFIX)
        .ok_or(NoteError::MalformedPrivateKey(
            "missing PRIVATE+KEY+ prefix",
        ))?;
    parse_key_parts(rest, NoteError::MalformedPrivateKey)
}

fn format_vkey(name: &str, key_id: u32, key_type: u8, key: &VerifyingKey) -> String {
    let mut raw = vec![key_type];
    raw.extend_from_slice(key.as_bytes());
    format!("{name}+{key_id:08x}+{}", STANDARD.encode(raw))
}

fn signing_key_from_seed(seed: &[u8]) -> Result<SigningKey, NoteError> {
    let seed: &[u8; 32] = seed
        .try_into()
        .map_err(|_| NoteError::MalformedPrivateKey("Ed25519 seed is not 32 bytes"))?;
    Ok(SigningKey::from_bytes(seed))
}

fn verifying_key(key: &[u8]) -> Result<VerifyingKey, NoteError> {
    let key: &[u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::MalformedVerifierKey("Ed25519 public key is not 32 bytes"))?;
    VerifyingKey::from_bytes(key).map_err(|_| NoteError::InvalidPublicKey)
}

fn check_key_id(given: u32, computed: u32) -> Result<(), NoteError> {
    if given != computed {
        return Err(NoteError::KeyIdMismatch { given, computed });
    }
    Ok(())
}

/// Key names: non-empty, no Unicode white space, no '+'.
fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
        return Err(NoteError::InvalidKeyName(name.to_owned()));
    }
    Ok(())
}

fn check_control_characters(s: &str) -> Result<(), NoteError> {
    match s.chars().find(|&c| c < ' ' && c != '\n') {
        Some(c) => Err(NoteError::ControlCharacter(u32::from(c))),
        None => Ok(()),
    }
}

/// A text that can be signed: non-empty, newline-terminated, no control characters.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            len: text.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    if text.is_empty() {
        return Err(NoteError::EmptyText);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotNewlineTerminated);
    }
    check_control_characters(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Panicking is how a test fails.
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTOR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/signed-note.json"
    );

    struct Vector {
        signer_key: String,
        verifier_key: String,
        text: String,
        signed_note: String,
    }

    fn vector() -> Vector {
        let v: Value = serde_json::from_slice(&std::fs::read(VECTOR).unwrap()).unwrap();
        let field = |k: &str| v[k].as_str().unwrap().to_owned();
        Vector {
            signer_key: field("signer_key"),
            verifier_key: field("verifier_key"),
            text: field("text"),
            signed_note: field("signed_note"),
        }
    }

    const CHECKPOINT: &str = "example.com/log\n42\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n";

    fn other_signer(name: &str) -> Signer {
        Signer::new(name, SigningKey::from_bytes(&[7u8; 32])).unwrap()
    }

    #[test]
    fn reproduces_the_shared_vector() {
        let v = vector();
        let signer = Signer::from_private_key(&v.signer_key).unwrap();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.key_id(), 0xc74f20a3);
        assert_eq!(sign_note(&v.text, &signer).unwrap(), v.signed_note);
        assert_eq!(signer.to_private_key(), v.signer_key);
        assert_eq!(signer.verifier().to_vkey(), v.verifier_key);

        let verifier = Verifier::from_vkey(&v.verifier_key).unwrap();
        assert_eq!(verifier, signer.verifier());
        assert_eq!(verifier.to_string(), v.verifier_key);
        let note = open_note(v.signed_note.as_bytes(), &verifier).unwrap();
        assert_eq!(note.text, v.text);
        assert_eq!(note.encode(), v.signed_note);
    }

    #[test]
    fn tampering_is_detected() {
        let v = vector();
        let verifier = Verifier::from_vkey(&v.verifier_key).unwrap();

        let changed_text = v.signed_note.replacen("answer", "Answer", 1);
        assert!(matches!(
            open_note(changed_text.as_bytes(), &verifier),
            Err(NoteError::InvalidSignature { .. })
        ));

        let mut note = Note::parse(v.signed_note.as_bytes()).unwrap();
        note.signatures[0].signature[10] ^= 1;
        assert!(matches!(
            open_note(note.encode().as_bytes(), &verifier),
            Err(NoteError::InvalidSignature { .. })
        ));

        // An extra blank line moves the separator: the signed text no longer matches.
        let extra_blank = v.signed_note.replacen("\n\n", "\n\n\n", 1);
        assert!(open_note(extra_blank.as_bytes(), &verifier).is_err());
    }

    #[test]
    fn unknown_keys_are_ignored_but_one_valid_signature_is_required() {
        let v = vector();
        let verifier = Verifier::from_vkey(&v.verifier_key).unwrap();
        let stranger = other_signer("stranger.example/key");
        // Same name, other key: a different key ID, so ignored as well.
        let namesake = other_signer("PeterNeumann");
        let mut note = Note::parse(v.signed_note.as_bytes()).unwrap();
        note.signatures.insert(0, stranger.sign(&v.text).unwrap());
        note.signatures.push(namesake.sign("other text\n").unwrap());
        assert!(open_note(note.encode().as_bytes(), &verifier).is_ok());

        let only_others = sign_note(&v.text, &stranger).unwrap();
        assert_eq!(
            open_note(only_others.as_bytes(), &verifier),
            Err(NoteError::NotSigned {
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3
            })
        );
        let namesake_note = sign_note(&v.text, &namesake).unwrap();
        assert!(matches!(
            open_note(namesake_note.as_bytes(), &verifier),
            Err(NoteError::NotSigned { .. })
        ));
    }

    #[test]
    fn strict_parsing() {
        let v = vector();
        let verifier = Verifier::from_vkey(&v.verifier_key).unwrap();
        let good = v.signed_note.clone();
        let sig_line = good.rsplit("\n\n").next().unwrap().to_owned();
        let cases: Vec<(String, NoteError)> = vec![
            (good.trim_end().to_owned(), NoteError::NotNewlineTerminated),
            (good.replacen("\n\n", "\n", 1), NoteError::MissingSeparator),
            (format!("{}\n\n", v.text), NoteError::NoSignatures),
            (good.replace('\n', "\r\n"), NoteError::ControlCharacter(13)),
            (
                good.replacen("problem,", "problem,\t", 1),
                NoteError::ControlCharacter(9),
            ),
            (
                good.replace('\u{2014}', "-"),
                NoteError::MalformedSignature("missing the em dash and space"),
            ),
            (
                good.replace("\u{2014} ", "\u{2014}"),
                NoteError::MalformedSignature("missing the em dash and space"),
            ),
            (
                format!("{}\n\u{2014} PeterNeumann\n", v.text),
                NoteError::MalformedSignature("missing the space after the key name"),
            ),
            (
                format!("{}\n\u{2014} Peter+Neumann AAAAAAA=\n", v.text),
                NoteError::InvalidKeyName("Peter+Neumann".into()),
            ),
            (
                format!("{}\n\u{2014} PeterNeumann \n", v.text),
                NoteError::MalformedSignature("empty signature"),
            ),
            (
                format!("{}\n\u{2014} PeterNeumann AAAA\n", v.text),
                NoteError::MalformedSignature("signature is too short"),
            ),
            (
                format!("{}\n\u{2014} PeterNeumann not*base64\n", v.text),
                NoteError::MalformedSignature("signature is not valid base64"),
            ),
            (
                format!("{}\n{sig_line}", v.text).replacen(" x08go", "  x08go", 1),
                NoteError::MalformedSignature("signature is not valid base64"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Note::parse(input.as_bytes()),
                Err(want.clone()),
                "{input:?}"
            );
            assert_eq!(open_note(input.as_bytes(), &verifier), Err(want));
        }
        assert_eq!(Note::parse(b"text\n\n\xff\n"), Err(NoteError::NotUtf8));

        let big = format!("{}\n{sig_line}", "a".repeat(MAX_NOTE_SIZE));
        assert!(matches!(
            Note::parse(big.as_bytes()),
            Err(NoteError::TooLarge { .. })
        ));

        let stranger = other_signer("stranger");
        let line = stranger.sign(&v.text).unwrap().to_line();
        let many = format!("{}\n{}{}", v.text, line.repeat(MAX_SIGNATURES), sig_line);
        assert_eq!(
            Note::parse(many.as_bytes()),
            Err(NoteError::TooManySignatures(MAX_SIGNATURES))
        );
        let most = format!(
            "{}\n{}{}",
            v.text,
            line.repeat(MAX_SIGNATURES - 1),
            sig_line
        );
        assert!(open_note(most.as_bytes(), &verifier).is_ok());
    }

    #[test]
    fn texts_with_empty_lines_round_trip() {
        let signer = other_signer("example.com/poet");
        let text = "Ognuno sta solo\n\ned è subito sera.\n";
        let signed = sign_note(text, &signer).unwrap();
        let note = open_note(signed.as_bytes(), &signer.verifier()).unwrap();
        assert_eq!(note.text, text);
    }

    #[test]
    fn signing_refuses_bad_texts_and_names() {
        let signer = other_signer("example.com/log");
        assert_eq!(signer.sign(""), Err(NoteError::EmptyText));
        assert_eq!(
            signer.sign("no newline"),
            Err(NoteError::TextNotNewlineTerminated)
        );
        assert_eq!(
            signer.sign("bell\x07\n"),
            Err(NoteError::ControlCharacter(7))
        );
        for name in ["", "a b", "a+b", "a\u{a0}b"] {
            assert_eq!(
                Signer::new(name, SigningKey::from_bytes(&[1; 32])).unwrap_err(),
                NoteError::InvalidKeyName(name.into())
            );
        }
    }

    #[test]
    fn key_string_errors() {
        let v = vector();
        let vk = &v.verifier_key;
        assert!(matches!(
            Verifier::from_vkey(&vk.replace("c74f20a3", "c74f20a4")),
            Err(NoteError::KeyIdMismatch {
                given: 0xc74f20a4,
                computed: 0xc74f20a3
            })
        ));
        assert!(matches!(
            Verifier::from_vkey(&vk.replace("c74f20a3", "c74f20a")),
            Err(NoteError::MalformedVerifierKey(_))
        ));
        assert!(matches!(
            Verifier::from_vkey(&vk.replace("c74f20a3", "+c74f20a")),
            Err(NoteError::MalformedVerifierKey(_))
        ));
        assert!(matches!(
            Verifier::from_vkey("PeterNeumann+c74f20a3"),
            Err(NoteError::MalformedVerifierKey(_))
        ));
        assert!(matches!(
            Verifier::from_vkey("PeterNeumann+c74f20a3+AQ=="),
            Err(NoteError::MalformedVerifierKey(_))
        ));
        assert!(matches!(
            Verifier::from_vkey("PeterNeumann+c74f20a3+THIS_IS_NOT_BASE64!"),
            Err(NoteError::MalformedVerifierKey(_))
        ));
        // Type byte 0x02 instead of 0x01.
        assert_eq!(
            Verifier::from_vkey(&vk.replace("+ARpc", "+Ahpc")),
            Err(NoteError::UnsupportedKeyType(2))
        );
        assert_eq!(
            vk.parse::<Verifier>().unwrap(),
            Verifier::from_vkey(vk).unwrap()
        );

        let sk = &v.signer_key;
        assert!(matches!(
            Signer::from_private_key(&sk.replacen("PRIVATE+KEY+", "PRIVATE+", 1)),
            Err(NoteError::MalformedPrivateKey(_))
        ));
        assert!(matches!(
            Signer::from_private_key(&sk.replace("c74f20a3", "00000000")),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        assert!(matches!(
            Signer::from_private_key("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK"),
            Err(NoteError::MalformedPrivateKey(_))
        ));
        // A public key is not a private key.
        assert!(Signer::from_private_key(vk).is_err());
        // The Debug form never shows the secret.
        let signer = Signer::from_private_key(sk).unwrap();
        let debug = format!("{signer:?}");
        assert!(debug.contains("c74f20a3") && !debug.contains("AYEK"));
    }

    #[test]
    fn cosignature_key_ids_match_transparency_dev() {
        // Public keys from github.com/transparency-dev/formats note tests.
        let native = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
        let v = CosignatureVerifier::from_vkey(native).unwrap();
        assert_eq!(v.key_id(), 0xda77ade7);
        assert_eq!(v.to_vkey(), native);

        let plain = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6";
        let note_key = Verifier::from_vkey(plain).unwrap();
        let cosig_key = CosignatureVerifier::from_vkey(plain).unwrap();
        assert_eq!(note_key.public_key(), cosig_key.public_key());
        assert_eq!(
            cosig_key.key_id(),
            key_id(
                "TEST",
                KEY_TYPE_COSIGNATURE_V1,
                cosig_key.public_key().as_bytes()
            )
        );
        assert_ne!(cosig_key.key_id(), note_key.key_id());
        assert!(matches!(
            CosignatureVerifier::from_vkey(&native.replace("da77ade7", "da77ade8")),
            Err(NoteError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn cosignature_layout_matches_published_examples() {
        // From the C2SP tlog-cosignature example and transparency-dev tests: key ID, then the
        // 8-byte big-endian timestamp, then the 64-byte signature.
        for (line, time) in [
            (
                "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
                1_679_315_147u64,
            ),
            (
                "\u{2014} w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==",
                1_727_964_367,
            ),
        ] {
            let sig = NoteSignature::parse_line(line).unwrap();
            assert_eq!(sig.signature.len(), TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE);
            let ts: [u8; 8] = sig.signature[..8].try_into().unwrap();
            assert_eq!(u64::from_be_bytes(ts), time);
        }
        assert_eq!(
            cosignature_message(CHECKPOINT, 1_679_315_147).unwrap(),
            format!("cosignature/v1\ntime 1679315147\n{CHECKPOINT}")
        );
        assert_eq!(
            cosignature_message("two\nlines\n", 1),
            Err(NoteError::NotACheckpointBody)
        );
    }

    #[test]
    fn cosign_and_verify() {
        let v = vector();
        let log = Signer::from_private_key(&v.signer_key).unwrap();
        let witness = CosignatureSigner::from_private_key(&v.signer_key).unwrap();
        assert_ne!(witness.key_id(), log.key_id());
        assert_eq!(
            witness.key_id(),
            key_id(
                "PeterNeumann",
                KEY_TYPE_COSIGNATURE_V1,
                log.verifier().public_key().as_bytes()
            )
        );
        let wv = witness.verifier();
        assert_eq!(CosignatureVerifier::from_vkey(&wv.to_vkey()).unwrap(), wv);
        assert_eq!(wv.to_string().parse::<CosignatureVerifier>().unwrap(), wv);

        let signed = sign_note(CHECKPOINT, &log).unwrap();
        let mut note = open_note(signed.as_bytes(), &log.verifier()).unwrap();
        let cosig = witness.sign(&note.text, 1_700_000_000).unwrap();
        note.signatures.push(cosig.clone());
        let bytes = note.encode();

        // Both the log key and the witness key verify; each ignores the other's line.
        let reopened = open_note(bytes.as_bytes(), &log.verifier()).unwrap();
        assert_eq!(verify_cosignature(&reopened, &wv), Ok(1_700_000_000));
        // The signature is exactly Ed25519 over the cosignature/v1 message.
        let message = cosignature_message(CHECKPOINT, 1_700_000_000).unwrap();
        let sig = Signature::from_slice(&cosig.signature[8..]).unwrap();
        assert!(
            wv.public_key()
                .verify_strict(message.as_bytes(), &sig)
                .is_ok()
        );
        // A plain note verifier with the same key does not accept a cosignature.
        let only_cosig = Note {
            text: CHECKPOINT.into(),
            signatures: vec![cosig.clone()],
        };
        assert!(matches!(
            open_note(only_cosig.encode().as_bytes(), &log.verifier()),
            Err(NoteError::NotSigned { .. })
        ));

        // Tampered timestamp, signature or text: rejected.
        let mut bad_time = cosig.clone();
        bad_time.signature[7] ^= 1;
        let mut bad_sig = cosig.clone();
        bad_sig.signature[40] ^= 1;
        for bad in [bad_time, bad_sig] {
            let n = Note {
                text: CHECKPOINT.into(),
                signatures: vec![bad],
            };
            assert!(matches!(
                verify_cosignature(&n, &wv),
                Err(NoteError::InvalidSignature { .. })
            ));
        }
        let other_text = Note {
            text: CHECKPOINT.replace("42", "43"),
            signatures: vec![cosig],
        };
        assert!(verify_cosignature(&other_text, &wv).is_err());
        assert!(matches!(
            verify_cosignature(&reopened, &other_cosigner()),
            Err(NoteError::NotSigned { .. })
        ));
        assert_eq!(
            witness.sign(CHECKPOINT, 1 << 63),
            Err(NoteError::TimestampOutOfRange(1 << 63))
        );
    }

    fn other_cosigner() -> CosignatureVerifier {
        CosignatureSigner::new("witness.example/w2", SigningKey::from_bytes(&[9; 32]))
            .unwrap()
            .verifier()
    }
}
