//! Writes the seed corpora of the fuzz targets: valid inputs (signed with the fixed keys of
//! `archipel_fuzz`) from which libFuzzer mutates its way into the deep branches of each
//! decoder: a random input never carries a valid Ed25519 signature or age header.
//!
//! Run from anywhere, on stable, after a format change:
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds -- fuzz/seeds
//! and commit fuzz/seeds/. The output is deterministic except `recovery_kit` (age salts).

use archipel_fuzz::*;
use archipel_node::keys::RecoveryKit;
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::manifest::{Envelope, FileEntry, Manifest, Metadata};
use archipel_proto::note::{Note, sign_note};
use archipel_proto::rfc6962::{
    Hash, consistency_proof_between, inclusion_proof_at, leaf_hash, tree_root,
};
use archipel_proto::v1::RecordMetadata;
use prost::Message as _;
use std::path::{Path, PathBuf};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create seed directory");
    std::fs::write(d.join(name), bytes).expect("write seed");
}

fn metadata() -> Metadata {
    Metadata {
        title: "Délibérations du conseil municipal".into(),
        description: "Registre.\nVolume 2".into(),
        producer: "Mairie".into(),
        date_from: "1998-01-01".into(),
        date_to: "1998-12-31".into(),
        record_type: "registre".into(),
        language: "fr".into(),
        keywords: vec!["budget".into(), "voirie".into()],
        licence: "Licence Ouverte 2.0".into(),
        communicability: "immediate".into(),
        dua_years: Some(10),
        final_disposition: "C".into(),
        metadata_public: true,
        person_death_date: String::new(),
        person_birth_date: String::new(),
    }
}

fn file_entry(n: u8, blobs: usize) -> FileEntry {
    FileEntry {
        name: format!("pièce-{n}.pdf"),
        size: 1234,
        media_type: "application/pdf".into(),
        blake3: [n; 32],
        sha512: [n.wrapping_add(1); 64],
        file_key: "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
            .into(),
        cipher_len: 1290,
        blob_size: 1 << 20,
        blobs: (0..blobs).map(|i| [n ^ i as u8; 32]).collect(),
    }
}

fn manifest(files: Vec<FileEntry>, metadata: Metadata) -> Manifest {
    Manifest {
        record_id: "01JB0000000000000000000000".into(),
        origin: "node-1".into(),
        ingested_at: 1_700_000_000,
        metadata,
        files,
    }
}

fn record_metadata() -> Vec<(&'static str, RecordMetadata)> {
    let base = RecordMetadata {
        title: "Délibérations du conseil municipal 1998".into(),
        date: "1998-06-12".into(),
        ..Default::default()
    };
    vec![
        ("minimal", base.clone()),
        (
            "range-dua",
            RecordMetadata {
                date: String::new(),
                date_from: "1990-01-01".into(),
                date_to: "1999-12-31".into(),
                dua_years: Some(10),
                final_disposition: "d".into(),
                communicability: "l213-2-3".into(),
                keywords: vec!["état civil".into(), "voirie".into()],
                language: "fr-FR".into(),
                ..base.clone()
            },
        ),
        (
            "full",
            RecordMetadata {
                description: "Registre des délibérations.\n\tAnnexes.".into(),
                producer: "Mairie de Saint-Martin".into(),
                record_type: "registre".into(),
                licence: "Licence Ouverte 2.0".into(),
                communicability: "immediate".into(),
                metadata_public: true,
                ..base.clone()
            },
        ),
        (
            "medical",
            RecordMetadata {
                communicability: "l213-2-2-medical".into(),
                person_birth_date: "1950-02-28".into(),
                person_death_date: "2001-03-01".into(),
                ..base.clone()
            },
        ),
        (
            "undated-never",
            RecordMetadata {
                date: String::new(),
                communicability: "never".into(),
                language: "oc".into(),
                ..base
            },
        ),
    ]
}

fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));

    // Canonical encodings.
    let m1 = manifest(vec![file_entry(1, 2)], metadata());
    let m2 = manifest(
        vec![file_entry(2, 0), file_entry(3, 1), file_entry(4, 3)],
        Metadata::default(),
    );
    write(&dir, "manifest_decode", "one-file", &m1.encode());
    write(&dir, "manifest_decode", "three-files", &m2.encode());
    write(
        &dir,
        "manifest_decode",
        "empty",
        &manifest(vec![], Metadata::default()).encode(),
    );
    write(&dir, "metadata_decode", "full", &metadata().encode());
    write(
        &dir,
        "metadata_decode",
        "default",
        &Metadata::default().encode(),
    );
    write(
        &dir,
        "file_entry_decode",
        "two-blobs",
        &file_entry(1, 2).encode(),
    );
    write(
        &dir,
        "file_entry_decode",
        "no-blob",
        &file_entry(9, 0).encode(),
    );

    let key = envelope_key();
    let e1 = Envelope::sign(
        "01JB0000000000000000000000".into(),
        "node-1".into(),
        1_700_000_000,
        b"age-encryption.org/v1\n(sealed manifest)".to_vec(),
        m1.blob_ids(),
        &key,
    );
    let e2 = Envelope::sign("r".into(), "o".into(), -1, Vec::new(), Vec::new(), &key);
    write(&dir, "envelope_decode", "signed", &e1.encode());
    write(&dir, "envelope_decode", "signed-empty", &e2.encode());

    for (name, m) in record_metadata() {
        write(&dir, "record_metadata", name, &m.encode_to_vec());
    }

    // A kit sealed with the passphrase the target tries, at a cheap work factor, and one
    // sealed with another passphrase.
    let kit = RecoveryKit {
        format: "archipel-recovery-kit-v1".into(),
        territory: "Commune de Saint-Martin".into(),
        node_id: "node-1".into(),
        node_key: "seed".into(),
        territory_key: "AGE-SECRET-KEY-1".into(),
        index_key: "00".repeat(32),
        recovery_recipients: vec!["age1recipient".into()],
    };
    let sealed = kit.seal(KIT_PASSPHRASE, Some(2)).expect("seal kit");
    write(&dir, "recovery_kit", "kit", &sealed);
    let other = kit.seal("another passphrase", Some(2)).expect("seal kit");
    write(&dir, "recovery_kit", "kit-other-passphrase", &other);

    // Notes and checkpoints, signed by the log key and cosigned by the witness key.
    let leaves: Vec<Hash> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
    let checkpoint = Checkpoint {
        origin: LOG_NAME.into(),
        size: 7,
        root: tree_root(&leaves, 7).expect("7 leaves"),
        extensions: Vec::new(),
    };
    let with_ext = Checkpoint {
        extensions: vec!["ext one".into(), "— ext two".into()],
        ..checkpoint.clone()
    };
    let signer = log_signer();
    let witness = witness_signer();
    for (name, cp) in [("plain", &checkpoint), ("extensions", &with_ext)] {
        let text = cp.to_text();
        let signed = cp.sign(&signer).expect("sign checkpoint");
        let mut note = Note::parse(signed.as_bytes()).expect("parse own note");
        note.signatures
            .push(witness.sign(&text, 1_700_000_000).expect("cosign"));
        let cosigned = note.encode();
        write(
            &dir,
            "checkpoint_parse",
            &format!("{name}-text"),
            text.as_bytes(),
        );
        write(
            &dir,
            "checkpoint_parse",
            &format!("{name}-signed"),
            signed.as_bytes(),
        );
        write(
            &dir,
            "checkpoint_parse",
            &format!("{name}-cosigned"),
            cosigned.as_bytes(),
        );
        write(
            &dir,
            "signed_note",
            &format!("{name}-signed"),
            signed.as_bytes(),
        );
        write(
            &dir,
            "signed_note",
            &format!("{name}-cosigned"),
            cosigned.as_bytes(),
        );
    }
    let other_text = "Hello, transparency.\n\nA text with an empty line.\n";
    let other = sign_note(other_text, &signer).expect("sign note");
    write(&dir, "signed_note", "text", other.as_bytes());

    // Key strings.
    write(
        &dir,
        "vkey_parse",
        "log-vkey",
        signer.verifier().to_vkey().as_bytes(),
    );
    write(
        &dir,
        "vkey_parse",
        "witness-vkey",
        witness.verifier().to_vkey().as_bytes(),
    );
    write(
        &dir,
        "vkey_parse",
        "log-private-key",
        signer.to_private_key().as_bytes(),
    );

    // Merkle proofs: mode 1 (built proofs) and mode 0 (given proofs, here valid ones).
    write(
        &dir,
        "merkle_proof",
        "built",
        &[1, 200, 7, 150, 90, 33, 1, 2],
    );
    let tree: Vec<Hash> = (0u64..21).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let given = |a: u64, b: u64, leaf: &Hash, root1: &Hash, root2: &Hash, proof: &[Hash]| {
        let mut out = vec![0u8];
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
        for h in [leaf, root1, root2].into_iter().chain(proof) {
            out.push(0);
            out.extend_from_slice(h);
        }
        out
    };
    let root13 = tree_root(&tree, 13).expect("13 leaves");
    let root21 = tree_root(&tree, 21).expect("21 leaves");
    let inclusion = inclusion_proof_at(&tree, 5, 21).expect("proof");
    write(
        &dir,
        "merkle_proof",
        "inclusion-5-in-21",
        &given(5, 21, &tree[5], &root13, &root21, &inclusion),
    );
    let consistency = consistency_proof_between(&tree, 13, 21).expect("proof");
    write(
        &dir,
        "merkle_proof",
        "consistency-13-21",
        &given(13, 21, &tree[0], &root13, &root21, &consistency),
    );
    eprintln!("seeds written under {}", dir.display());
}
