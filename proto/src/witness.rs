//! C2SP tlog-witness wire formats: the `add-checkpoint` request body and the small answers.
//!
//! Request body: `old <size>\n`, zero or more consistency-proof lines (base64 of one 32-byte
//! hash each), an empty line, then the signed checkpoint note. A 409 answer carries the size
//! the witness last cosigned, `<size>\n` (content type `text/x.tlog.size`); a 200 answer
//! carries one or more note signature lines (the cosignatures).
//!
//! Parsing is strict and bounded, and canonical: what [`AddCheckpointBody::parse`] accepts
//! encodes back to the same bytes, so a witness keeps as evidence exactly what it was sent.
//! The checkpoint note itself is left as bytes here; the witness parses and verifies it with
//! [`crate::checkpoint::Checkpoint::open`] once it knows the origin's key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use crate::note::{self, NoteError, NoteSignature};
use crate::rfc6962::Hash;

/// A consistency proof never needs more hashes than this (2 · 64 − 1 bounds every proof
/// between two 64-bit tree sizes; tlog-witness and transparency-dev cap it at 63).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest body accepted: a note at its largest plus the header and proof lines.
pub const MAX_BODY: usize = note::MAX_NOTE_SIZE + 32 + MAX_PROOF_LINES * 45;
/// Content type of a 409 answer.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// Content type of a 200 answer (signature lines are UTF-8 text).
pub const COSIGNATURE_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Why an add-checkpoint body (or a witness answer) was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WitnessBodyError {
    #[error("body is {len} bytes long, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the first line must be `old <size>`")]
    MissingOldLine,
    #[error("invalid size {0:?}: decimal without leading zeros, at most 2^64 - 1")]
    InvalidSize(String),
    #[error("proof line {0} is not the base64 of a 32-byte hash")]
    BadProofLine(usize),
    #[error("more than {MAX_PROOF_LINES} consistency proof lines")]
    TooManyProofLines,
    #[error("no empty line ends the consistency proof")]
    MissingSeparator,
    #[error("no checkpoint follows the empty line")]
    MissingCheckpoint,
    #[error("no cosignature line")]
    NoCosignature,
    #[error("cosignature line: {0}")]
    Cosignature(#[from] NoteError),
}

/// A parsed add-checkpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointBody {
    /// The size of the checkpoint the client believes the witness last cosigned.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpointBody {
    /// Parses a body strictly; the checkpoint note is not checked here.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessBodyError> {
        if body.len() > MAX_BODY {
            return Err(WitnessBodyError::TooLarge {
                len: body.len(),
                max: MAX_BODY,
            });
        }
        let (first, mut rest) = split_line(body).ok_or(WitnessBodyError::MissingOldLine)?;
        let old = first
            .strip_prefix(b"old ")
            .ok_or(WitnessBodyError::MissingOldLine)?;
        let old_size = parse_size(old)?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = split_line(rest).ok_or(WitnessBodyError::MissingSeparator)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(WitnessBodyError::TooManyProofLines);
            }
            // STANDARD requires canonical padding and zero trailing bits, so a hash has one
            // spelling and the body re-encodes to the same bytes.
            let hash: Hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(WitnessBodyError::BadProofLine(proof.len() + 1))?;
            proof.push(hash);
        }
        if rest.is_empty() {
            return Err(WitnessBodyError::MissingCheckpoint);
        }
        Ok(AddCheckpointBody {
            old_size,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// The body as sent on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.proof.len() * 45 + self.checkpoint.len());
        out.extend_from_slice(format!("old {}\n", self.old_size).as_bytes());
        for h in &self.proof {
            out.extend_from_slice(STANDARD.encode(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

/// The body of a 409 answer: the size the witness last cosigned.
pub fn encode_size_body(size: u64) -> Vec<u8> {
    format!("{size}\n").into_bytes()
}

/// Reads the body of a 409 answer.
pub fn parse_size_body(body: &[u8]) -> Result<u64, WitnessBodyError> {
    let digits = body
        .strip_suffix(b"\n")
        .ok_or_else(|| WitnessBodyError::InvalidSize(String::from_utf8_lossy(body).into()))?;
    parse_size(digits)
}

/// Reads the body of a 200 answer: one or more note signature lines.
pub fn parse_cosignature_lines(body: &[u8]) -> Result<Vec<NoteSignature>, WitnessBodyError> {
    if body.len() > note::MAX_NOTE_SIZE {
        return Err(WitnessBodyError::TooLarge {
            len: body.len(),
            max: note::MAX_NOTE_SIZE,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| NoteError::NotUtf8)?;
    let text = text
        .strip_suffix('\n')
        .ok_or(NoteError::NotNewlineTerminated)?;
    let mut out = Vec::new();
    for line in text.split('\n') {
        if out.len() == note::MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures(note::MAX_SIGNATURES).into());
        }
        out.push(NoteSignature::parse_line(line)?);
    }
    if out.is_empty() {
        return Err(WitnessBodyError::NoCosignature);
    }
    Ok(out)
}

/// The first line (without its newline) and what follows; None without a newline.
fn split_line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b'\n')?;
    Some((&b[..i], &b[i + 1..]))
}

/// Decimal, ASCII digits only, no leading zero (except "0" itself), fits in u64.
fn parse_size(s: &[u8]) -> Result<u64, WitnessBodyError> {
    let invalid = || WitnessBodyError::InvalidSize(String::from_utf8_lossy(s).into_owned());
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) || (s.len() > 1 && s[0] == b'0') {
        return Err(invalid());
    }
    std::str::from_utf8(s)
        .map_err(|_| invalid())?
        .parse()
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::note::{CosignatureSigner, Signer};
    use ed25519_dalek::SigningKey;

    fn note() -> Vec<u8> {
        let signer = Signer::new("example.org/log", SigningKey::from_bytes(&[7; 32])).unwrap();
        Checkpoint {
            origin: "example.org/log".into(),
            size: 5,
            root: [3; 32],
            extensions: vec![],
        }
        .sign(&signer)
        .unwrap()
        .into_bytes()
    }

    #[test]
    fn a_body_round_trips() {
        let body = AddCheckpointBody {
            old_size: 3,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: note(),
        };
        let bytes = body.encode();
        assert!(bytes.starts_with(b"old 3\nAQEB"));
        assert_eq!(AddCheckpointBody::parse(&bytes).unwrap(), body);
        let empty = AddCheckpointBody {
            old_size: 0,
            proof: vec![],
            checkpoint: note(),
        };
        let bytes = empty.encode();
        assert!(bytes.starts_with(b"old 0\n\n"));
        assert_eq!(AddCheckpointBody::parse(&bytes).unwrap(), empty);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let n = String::from_utf8(note()).unwrap();
        let h = STANDARD.encode([1u8; 32]);
        let cases: Vec<(String, WitnessBodyError)> = vec![
            (String::new(), WitnessBodyError::MissingOldLine),
            (format!("new 3\n\n{n}"), WitnessBodyError::MissingOldLine),
            (
                format!("old  3\n\n{n}"),
                WitnessBodyError::InvalidSize(" 3".into()),
            ),
            (
                format!("old 03\n\n{n}"),
                WitnessBodyError::InvalidSize("03".into()),
            ),
            (
                format!("old -1\n\n{n}"),
                WitnessBodyError::InvalidSize("-1".into()),
            ),
            (
                format!("old 18446744073709551616\n\n{n}"),
                WitnessBodyError::InvalidSize("18446744073709551616".into()),
            ),
            (
                format!("old 3\n{h}\n\n"),
                WitnessBodyError::MissingCheckpoint,
            ),
            (format!("old 3\n{h}\n"), WitnessBodyError::MissingSeparator),
            (format!("old 3\n{h}"), WitnessBodyError::MissingSeparator),
            (
                format!("old 3\nAAAA\n\n{n}"),
                WitnessBodyError::BadProofLine(1),
            ),
            (
                format!("old 3\n{h}\n{h} \n\n{n}"),
                WitnessBodyError::BadProofLine(2),
            ),
            // A non-canonical base64 spelling (non-zero trailing bits) of a hash.
            (
                format!("old 3\n{}B=\n\n{n}", &h[..42]),
                WitnessBodyError::BadProofLine(1),
            ),
            (
                format!("old 3\n{}\n{n}", vec![h.as_str(); 64].join("\n")),
                WitnessBodyError::TooManyProofLines,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                AddCheckpointBody::parse(body.as_bytes()),
                Err(want),
                "{body:?}"
            );
        }
        let huge = vec![b'a'; MAX_BODY + 1];
        assert!(matches!(
            AddCheckpointBody::parse(&huge),
            Err(WitnessBodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn size_and_cosignature_answers() {
        assert_eq!(encode_size_body(42), b"42\n");
        assert_eq!(parse_size_body(b"42\n"), Ok(42));
        assert!(parse_size_body(b"42").is_err());
        assert!(parse_size_body(b"042\n").is_err());
        let w = CosignatureSigner::new("w.example", SigningKey::from_bytes(&[9; 32])).unwrap();
        let text = "example.org/log\n5\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n";
        let sig = w.sign(text, 1_700_000_000).unwrap();
        let body = sig.to_line();
        let got = parse_cosignature_lines(body.as_bytes()).unwrap();
        assert_eq!(got, vec![sig.clone()]);
        assert_eq!(
            w.verifier().verify(text, &got[0].signature),
            Ok(1_700_000_000)
        );
        assert!(parse_cosignature_lines(b"").is_err());
        assert!(parse_cosignature_lines(body.trim_end().as_bytes()).is_err());
        assert!(parse_cosignature_lines(b"- w.example AAAA\n").is_err());
    }
}
