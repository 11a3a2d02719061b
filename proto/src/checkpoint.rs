//! C2SP tlog-checkpoint: the signed tree head of a log.
//!
//! The note text is exactly: origin line, tree size in decimal, base64 root hash, then
//! optional extension lines, each newline-terminated. Parsing is strict, so that a parsed
//! checkpoint prints back to the very bytes that were signed (`to_text(parse_text(t)) == t`),
//! which is what a witness cosigns.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use crate::note::{self, Note, NoteError, Signer, Verifier};
use crate::rfc6962::Hash;

/// Why a checkpoint text was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint text is {len} bytes long, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("checkpoint text does not end with a newline")]
    NotNewlineTerminated,
    #[error("checkpoint text has {0} lines, but origin, size and root are needed")]
    TooFewLines(usize),
    #[error("checkpoint contains the control character U+{0:04X}")]
    ControlCharacter(u32),
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    #[error("invalid tree size {0:?}: decimal without leading zeros, at most 2^64 - 1")]
    InvalidSize(String),
    #[error("invalid root hash {0:?}: not the base64 of 32 bytes")]
    InvalidRoot(String),
    #[error("extension line {0} is empty")]
    EmptyExtension(usize),
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tree head: log origin, tree size, root hash, and opaque extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines without their newline; allowed but not recommended.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text. A checkpoint that fails [`validate`](Self::validate) gives a text that
    /// [`parse_text`](Self::parse_text) refuses or reads differently; [`sign`](Self::sign)
    /// validates first.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for ext in &self.extensions {
            text.push_str(ext);
            text.push('\n');
        }
        text
    }

    /// Checks that [`to_text`](Self::to_text) gives a text that parses back to `self`.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(&self.origin)?;
        for (i, ext) in self.extensions.iter().enumerate() {
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension(i + 1));
            }
            check_line(ext)?;
        }
        Ok(())
    }

    /// Parses a checkpoint note text (no signature lines), strictly.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        if text.len() > note::MAX_NOTE_SIZE {
            return Err(CheckpointError::TooLarge {
                len: text.len(),
                max: note::MAX_NOTE_SIZE,
            });
        }
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::NotNewlineTerminated)?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines(lines.len()));
        };
        for line in &lines {
            check_line(line)?;
        }
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size)?;
        // The STANDARD engine requires padding and zero trailing bits, so the encoding is
        // canonical and re-encodes to the same line.
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| CheckpointError::InvalidRoot((*root).to_owned()))?;
        if let Some(i) = extensions.iter().position(|e| e.is_empty()) {
            return Err(CheckpointError::EmptyExtension(i + 1));
        }
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }

    /// Signs the checkpoint and returns the signed note. The key name SHOULD be the origin;
    /// that is left to the caller.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        self.validate()?;
        Ok(note::sign_note(&self.to_text(), signer)?)
    }

    /// Verifies a signed checkpoint with the log's key and parses it.
    pub fn open(note_bytes: &[u8], verifier: &Verifier) -> Result<Self, CheckpointError> {
        Self::open_with_note(note_bytes, verifier).map(|(checkpoint, _)| checkpoint)
    }

    /// Like [`open`](Self::open), also returning the parsed note, whose other signature
    /// lines (cosignatures) the caller may want to check.
    pub fn open_with_note(
        note_bytes: &[u8],
        verifier: &Verifier,
    ) -> Result<(Self, Note), CheckpointError> {
        let note = note::open_note(note_bytes, verifier)?;
        let checkpoint = Self::parse_text(&note.text)?;
        Ok((checkpoint, note))
    }
}

/// Decimal, ASCII digits only, no leading zero (except "0" itself), fits in u64.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let invalid = || CheckpointError::InvalidSize(s.to_owned());
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(invalid());
    }
    s.parse().map_err(|_| invalid())
}

/// No line may hold a control character (a newline would split it).
fn check_line(line: &str) -> Result<(), CheckpointError> {
    match line.chars().find(|&c| c < ' ') {
        Some(c) => Err(CheckpointError::ControlCharacter(u32::from(c))),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Panicking is how a test fails.
mod tests {
    use super::*;
    use crate::note::{CosignatureSigner, verify_cosignature};
    use crate::rfc6962::{leaf_hash, root_from_leaf_hashes};
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    // The example of the C2SP tlog-checkpoint specification.
    const EXAMPLE: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn signer() -> Signer {
        Signer::new("archipel.example/node-1", SigningKey::from_bytes(&[3; 32])).unwrap()
    }

    fn sample() -> Checkpoint {
        let leaves: Vec<_> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
        Checkpoint {
            origin: "archipel.example/node-1".into(),
            size: 5,
            root: root_from_leaf_hashes(&leaves),
            extensions: Vec::new(),
        }
    }

    #[test]
    fn parses_the_specification_example() {
        let cp = Checkpoint::parse_text(EXAMPLE).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20_852_163);
        assert_eq!(
            hex::encode(cp.root),
            "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
        );
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.to_text(), EXAMPLE);
    }

    #[test]
    fn text_layout() {
        let mut cp = sample();
        cp.extensions = vec!["ext one".into(), "— two".into()];
        let text = cp.to_text();
        assert_eq!(
            text,
            format!(
                "archipel.example/node-1\n5\n{}\next one\n— two\n",
                STANDARD.encode(cp.root)
            )
        );
        assert_eq!(Checkpoint::parse_text(&text).unwrap(), cp);
        let empty = Checkpoint {
            size: 0,
            ..sample()
        };
        assert!(empty.to_text().contains("\n0\n"));
        assert_eq!(Checkpoint::parse_text(&empty.to_text()).unwrap(), empty);
    }

    #[test]
    fn strict_parsing() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let bad: Vec<(String, CheckpointError)> = vec![
            (
                EXAMPLE.trim_end().to_owned(),
                CheckpointError::NotNewlineTerminated,
            ),
            ("o\n1\n".into(), CheckpointError::TooFewLines(2)),
            ("\n".into(), CheckpointError::TooFewLines(1)),
            (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
            (
                format!("o\n01\n{root}\n"),
                CheckpointError::InvalidSize("01".into()),
            ),
            (
                format!("o\n+1\n{root}\n"),
                CheckpointError::InvalidSize("+1".into()),
            ),
            (
                format!("o\n 1\n{root}\n"),
                CheckpointError::InvalidSize(" 1".into()),
            ),
            (
                format!("o\n\n{root}\n"),
                CheckpointError::InvalidSize("".into()),
            ),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                CheckpointError::InvalidSize("18446744073709551616".into()),
            ),
            (
                "o\n1\nAAAA\n".into(),
                CheckpointError::InvalidRoot("AAAA".into()),
            ),
            (
                // Non-zero trailing bits: not the canonical encoding of any 32 bytes.
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".into(),
                CheckpointError::InvalidRoot("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=".into()),
            ),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".into(),
                CheckpointError::InvalidRoot("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I".into()),
            ),
            (
                format!("o\n1\n{root}\n\n"),
                CheckpointError::EmptyExtension(1),
            ),
            (
                format!("o\n1\n{root}\next\n\n"),
                CheckpointError::EmptyExtension(2),
            ),
            (
                EXAMPLE.replace('\n', "\r\n"),
                CheckpointError::ControlCharacter(13),
            ),
        ];
        for (text, want) in bad {
            assert_eq!(Checkpoint::parse_text(&text), Err(want), "{text:?}");
        }
        assert_eq!(
            Checkpoint::parse_text(&format!("o\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size,
            u64::MAX
        );
    }

    #[test]
    fn sign_and_open() {
        let signer = signer();
        let mut cp = sample();
        cp.extensions.push("extension".into());
        let signed = cp.sign(&signer).unwrap();
        assert!(signed.starts_with(&format!("{}\n", cp.to_text())));
        assert_eq!(
            Checkpoint::open(signed.as_bytes(), &signer.verifier()),
            Ok(cp.clone())
        );

        // Size, root and extension lines are all covered by the signature.
        for (from, to) in [("\n5\n", "\n6\n"), ("extension", "extensioN")] {
            let forged = signed.replacen(from, to, 1);
            assert!(matches!(
                Checkpoint::open(forged.as_bytes(), &signer.verifier()),
                Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
            ));
        }
        let stranger = Signer::new("archipel.example/node-1", SigningKey::from_bytes(&[4; 32]))
            .unwrap()
            .verifier();
        assert!(matches!(
            Checkpoint::open(signed.as_bytes(), &stranger),
            Err(CheckpointError::Note(NoteError::NotSigned { .. }))
        ));

        // A validly signed note whose text is not a checkpoint.
        let not_cp = note::sign_note("hello\n", &signer).unwrap();
        assert_eq!(
            Checkpoint::open(not_cp.as_bytes(), &signer.verifier()),
            Err(CheckpointError::TooFewLines(1))
        );
    }

    #[test]
    fn signing_refuses_invalid_checkpoints() {
        let signer = signer();
        let cases = [
            (
                Checkpoint {
                    origin: String::new(),
                    ..sample()
                },
                CheckpointError::EmptyOrigin,
            ),
            (
                Checkpoint {
                    origin: "a\n7".into(),
                    ..sample()
                },
                CheckpointError::ControlCharacter(10),
            ),
            (
                Checkpoint {
                    extensions: vec!["x".into(), String::new()],
                    ..sample()
                },
                CheckpointError::EmptyExtension(2),
            ),
        ];
        for (cp, want) in cases {
            assert_eq!(cp.sign(&signer), Err(want));
        }
    }

    #[test]
    fn cosigned_checkpoint() {
        let signer = signer();
        let witness =
            CosignatureSigner::new("witness.example/w1", SigningKey::from_bytes(&[5; 32])).unwrap();
        let signed = sample().sign(&signer).unwrap();
        let (cp, mut note) =
            Checkpoint::open_with_note(signed.as_bytes(), &signer.verifier()).unwrap();
        // The witness signs the text it parsed, which is byte for byte what the log signed.
        note.signatures
            .push(witness.sign(&cp.to_text(), 1_764_000_000).unwrap());
        let cosigned = note.encode();
        let (again, note) =
            Checkpoint::open_with_note(cosigned.as_bytes(), &signer.verifier()).unwrap();
        assert_eq!(again, cp);
        assert_eq!(
            verify_cosignature(&note, &witness.verifier()),
            Ok(1_764_000_000)
        );
    }

    proptest! {
        #[test]
        fn text_round_trips(
            origin in "[a-z0-9./-]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in proptest::collection::vec("[ -~é—]{1,30}", 0..4),
        ) {
            let cp = Checkpoint { origin, size, root, extensions };
            prop_assert!(cp.validate().is_ok());
            let text = cp.to_text();
            prop_assert_eq!(Checkpoint::parse_text(&text), Ok(cp.clone()));
            prop_assert_eq!(Checkpoint::parse_text(&text).map(|c| c.to_text()), Ok(text));
        }
    }
}
