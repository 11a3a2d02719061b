//! The witness against in-memory peer logs: every tlog-witness answer, persistence, and log
//! replication.

use super::*;
use archipel_proto::note::{CosignatureVerifier, Signer};
use archipel_proto::rfc6962::{consistency_proof_between, leaf_hash};
use archipel_proto::witness::{parse_cosignature_lines, parse_size_body};
use ed25519_dalek::SigningKey;

/// A witness node (real archive in a temporary directory).
fn witness_node() -> (tempfile::TempDir, crate::Node) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("witness");
    crate::node::init(&data, "Archives de Bretagne", &[]).unwrap();
    let node = crate::Node::open(crate::Config::with_data_dir(&data)).unwrap();
    (dir, node)
}

/// A peer's log, in memory: its key, origin and leaves.
struct PeerLog {
    node_id: String,
    key: SigningKey,
    origin: String,
    leaves: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
    /// Varies the leaves' contents: two logs with the same key and different `flavour`
    /// are a fork.
    flavour: u8,
}

impl PeerLog {
    fn new(seed: u8, n: usize) -> Self {
        Self::forked(seed, n, 0)
    }

    fn forked(seed: u8, n: usize, flavour: u8) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let node_id = crate::identity::node_id_of(&key.verifying_key());
        let mut log = PeerLog {
            origin: origin_for("Commune de Plougastel", &node_id),
            node_id,
            key,
            leaves: vec![],
            hashes: vec![],
            flavour,
        };
        log.grow(n);
        log
    }

    fn event(&self, i: usize) -> Vec<u8> {
        Event {
            time: "2026-01-01T00:00:00Z".into(),
            event_type: "ingestion".into(),
            object: format!("record-{i}"),
            agent_node: self.node_id.clone(),
            agent_actor: "admin".into(),
            outcome: Outcome::Success,
            detail: [self.flavour; 32],
        }
        .encode()
        .unwrap()
    }

    fn grow(&mut self, n: usize) {
        for _ in 0..n {
            let leaf = self.event(self.leaves.len());
            self.hashes.push(leaf_hash(&leaf));
            self.leaves.push(leaf);
        }
    }

    fn caller(&self) -> Caller {
        Caller {
            node_id: self.node_id.clone(),
            key: self.key.verifying_key(),
        }
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint {
            origin: self.origin.clone(),
            size,
            root: tree_root(&self.hashes, size).unwrap(),
            extensions: vec![],
        }
    }

    fn note(&self, size: u64) -> String {
        let signer = Signer::new(&self.origin, self.key.clone()).unwrap();
        self.checkpoint(size).sign(&signer).unwrap()
    }

    fn body(&self, old: u64, size: u64) -> Vec<u8> {
        let proof = if old > 0 && old < size {
            consistency_proof_between(&self.hashes, old, size).unwrap()
        } else {
            vec![]
        };
        AddCheckpointBody {
            old_size: old,
            proof,
            checkpoint: self.note(size).into_bytes(),
        }
        .encode()
    }

    fn push(&self, start: u64, end: u64) -> PushLogEntriesRequest {
        PushLogEntriesRequest {
            start,
            leaves: self.leaves[start as usize..end as usize].to_vec(),
        }
    }
}

fn add(w: &Witness, a: &Archive, log: &PeerLog, body: &[u8]) -> AddCheckpointResponse {
    w.add_checkpoint(a, &log.caller(), body)
}

fn assert_status(r: &AddCheckpointResponse, status: u32, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// The witness's cosignature verifier.
fn witness_verifier(a: &Archive) -> CosignatureVerifier {
    let id = &a.identity;
    CosignatureVerifier::new(
        &cosigner_name(&id.territory, &id.node_id),
        id.verifying_key(),
    )
    .unwrap()
}

/// The `archipel:alert` events in the witness's own log, as (object, detail).
fn alerts(a: &Archive) -> Vec<(String, [u8; 32])> {
    let view = a.log.view().unwrap();
    (0..view.size())
        .map(|i| Event::decode(&view.leaf(i).unwrap()).unwrap())
        .filter(|e| e.event_type == "archipel:alert")
        .map(|e| (e.object, e.detail))
        .collect()
}

fn size_answer(r: &AddCheckpointResponse) -> u64 {
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type, "text/x.tlog.size");
    parse_size_body(&r.body).unwrap()
}

#[test]
fn cosigns_a_first_checkpoint_then_each_consistent_growth() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let mut log = PeerLog::new(1, 3);
    let r = add(w, a, &log, &log.body(0, 3));
    assert_status(&r, 200, "first checkpoint");
    let lines = parse_cosignature_lines(&r.body).unwrap();
    assert_eq!(lines.len(), 1);
    assert!(is_cosigner_of(&lines[0].name, &a.identity.node_id));
    let v = witness_verifier(a);
    assert_eq!(lines[0].key_id, v.key_id());
    let t = v
        .verify(&log.checkpoint(3).to_text(), &lines[0].signature)
        .expect("the cosignature verifies with the witness key");
    let now = crate::clock::now_unix() as u64;
    assert!(t <= now && now - t < 60, "timestamp {t} is now ({now})");
    // Not a cosignature of another checkpoint.
    assert!(
        v.verify(&log.checkpoint(2).to_text(), &lines[0].signature)
            .is_err()
    );

    log.grow(4);
    assert_status(&add(w, a, &log, &log.body(3, 7)), 200, "growth 3 -> 7");
    // The same checkpoint again is cosigned again.
    assert_status(&add(w, a, &log, &log.body(7, 7)), 200, "same checkpoint");
    log.grow(1);
    assert_status(&add(w, a, &log, &log.body(7, 8)), 200, "growth 7 -> 8");
    assert!(alerts(a).is_empty());
}

#[test]
fn malformed_requests_and_a_shrinking_checkpoint_get_400() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let log = PeerLog::new(1, 5);
    assert_status(&add(w, a, &log, b"garbage"), 400, "garbage");
    assert_status(&add(w, a, &log, b"old 0\n\nnot a note\n"), 400, "bad note");
    let unsigned = format!("old 0\n\n{}", log.checkpoint(5).to_text());
    assert_status(&add(w, a, &log, unsigned.as_bytes()), 400, "no signature");
    // A proof from size 0 makes no sense.
    let from_zero = AddCheckpointBody {
        old_size: 0,
        proof: vec![[1; 32]],
        checkpoint: log.note(5).into_bytes(),
    }
    .encode();
    assert_status(&add(w, a, &log, &from_zero), 400, "proof from 0");
    assert_status(&add(w, a, &log, &log.body(0, 5)), 200, "valid");
    // Old size larger than the checkpoint's.
    assert_status(&add(w, a, &log, &log.body(5, 3)), 400, "old > new");
    // Equal sizes with a proof.
    let equal = AddCheckpointBody {
        old_size: 5,
        proof: vec![[1; 32]],
        checkpoint: log.note(5).into_bytes(),
    }
    .encode();
    assert_status(&add(w, a, &log, &equal), 400, "proof between equal sizes");
    assert!(alerts(a).is_empty(), "no alert for malformed requests");
}

#[test]
fn a_checkpoint_without_the_callers_signature_gets_403() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let log = PeerLog::new(1, 3);
    // The caller's origin, signed by another key (same name).
    let other = Signer::new(&log.origin, SigningKey::from_bytes(&[9; 32])).unwrap();
    let note = log.checkpoint(3).sign(&other).unwrap();
    let body = AddCheckpointBody {
        old_size: 0,
        proof: vec![],
        checkpoint: note.into_bytes(),
    }
    .encode();
    assert_status(&add(w, a, &log, &body), 403, "other key");
    // The right key under another name is not the log's signature either.
    let renamed = Signer::new("someone-else", log.key.clone()).unwrap();
    let note = log.checkpoint(3).sign(&renamed).unwrap();
    let body = AddCheckpointBody {
        old_size: 0,
        proof: vec![],
        checkpoint: note.into_bytes(),
    }
    .encode();
    assert_status(&add(w, a, &log, &body), 403, "other name");
    // Nothing was stored: a valid first checkpoint is still expected from 0.
    assert_status(&add(w, a, &log, &log.body(0, 3)), 200, "valid");
}

#[test]
fn another_nodes_log_gets_404() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let mine = PeerLog::new(1, 3);
    let theirs = PeerLog::new(2, 3);
    // Node 1 submitting node 2's (validly signed) checkpoint.
    let r = w.add_checkpoint(a, &mine.caller(), &theirs.body(0, 3));
    assert_status(&r, 404, "another node's origin");
    // An origin not of the archipel form, even ending in the caller's ID.
    let mut odd = PeerLog::new(1, 3);
    odd.origin = format!("example.org/{}", odd.node_id);
    assert_status(
        &add(w, a, &odd, &odd.body(0, 3)),
        404,
        "foreign origin form",
    );
    odd.origin = format!("archipel/Bad_Slug/{}", odd.node_id);
    assert_status(&add(w, a, &odd, &odd.body(0, 3)), 404, "bad slug");
    assert!(w.cosigned_of(&mine.node_id).unwrap().is_none());
}

#[test]
fn a_wrong_old_size_gets_409_with_the_cosigned_size() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let mut log = PeerLog::new(1, 3);
    // Nothing cosigned yet: the size is 0.
    assert_eq!(size_answer(&add(w, a, &log, &log.body(2, 3))), 0);
    assert_status(&add(w, a, &log, &log.body(0, 3)), 200, "first");
    log.grow(2);
    assert_eq!(size_answer(&add(w, a, &log, &log.body(0, 5))), 3);
    assert_eq!(size_answer(&add(w, a, &log, &log.body(4, 5))), 3);
    // Retrying with the size given works.
    assert_status(&add(w, a, &log, &log.body(3, 5)), 200, "retry");
    assert!(alerts(a).is_empty());
}

#[test]
fn a_bad_consistency_proof_gets_422_an_alert_and_is_never_cosigned() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let mut log = PeerLog::new(1, 3);
    assert_status(&add(w, a, &log, &log.body(0, 3)), 200, "first");
    log.grow(4);
    let mut req = AddCheckpointBody::parse(&log.body(3, 7)).unwrap();
    req.proof[0][0] ^= 1;
    let bad = req.encode();
    let r = add(w, a, &log, &bad);
    assert_status(&r, 422, "altered proof");
    assert!(String::from_utf8_lossy(&r.body).contains("consistency proof"));
    let found = alerts(a);
    assert_eq!(found.len(), 1, "one alert");
    assert_eq!(found[0].0, log.node_id);
    let evidence = w.evidence().unwrap();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].0, found[0].1, "the alert names the evidence");
    assert_eq!(*blake3::hash(&evidence[0].1).as_bytes(), evidence[0].0);
    assert!(
        evidence[0].1.ends_with(&bad),
        "the request is kept verbatim"
    );
    // Not stored: the witness still stands at 3.
    assert_eq!(size_answer(&add(w, a, &log, &log.body(0, 7))), 3);
    // The same request again: refused again, no second alert.
    assert_status(&add(w, a, &log, &bad), 422, "again");
    assert_eq!(alerts(a).len(), 1);
    // A log rewritten before 3: its own, well-built proof does not verify against the
    // root cosigned at 3.
    let fork = PeerLog::forked(1, 7, 7);
    assert_status(
        &add(w, a, &fork, &fork.body(3, 7)),
        422,
        "rewritten history",
    );
    assert_eq!(alerts(a).len(), 2);
    // The honest growth is still accepted.
    assert_status(&add(w, a, &log, &log.body(3, 7)), 200, "honest");
}

#[test]
fn the_same_size_with_another_root_gets_422_and_an_alert() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let log = PeerLog::new(1, 3);
    assert_status(&add(w, a, &log, &log.body(0, 3)), 200, "first");
    let fork = PeerLog::forked(1, 3, 9);
    assert_ne!(fork.checkpoint(3).root, log.checkpoint(3).root);
    assert_status(&add(w, a, &fork, &fork.body(3, 3)), 422, "same size");
    // Whatever old size it claims (a wiped node sends 0).
    assert_status(&add(w, a, &fork, &fork.body(0, 3)), 422, "from 0");
    assert_eq!(alerts(a).len(), 2);
    assert_eq!(
        w.cosigned_of(&log.node_id).unwrap().unwrap().1.root,
        log.checkpoint(3).root
    );
}

#[test]
fn a_smaller_fork_is_caught_from_the_leaves_kept() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let log = PeerLog::new(1, 6);
    assert_status(&add(w, a, &log, &log.body(0, 6)), 200, "first");
    w.push_log_entries(a, &log.caller(), log.push(0, 6))
        .unwrap();
    // A node re-created with the same key and a shorter, different history.
    let fork = PeerLog::forked(1, 4, 5);
    let r = add(w, a, &fork, &fork.body(0, 4));
    assert_status(&r, 422, "shorter fork");
    assert_status(
        &add(w, a, &fork, &fork.body(6, 4)),
        422,
        "shorter fork, old 6",
    );
    assert_eq!(alerts(a).len(), 2);
    // An old checkpoint of the honest log is no evidence: just a stale request.
    assert_status(&add(w, a, &log, &log.body(6, 4)), 400, "stale");
    assert_eq!(size_answer(&add(w, a, &log, &log.body(0, 4))), 6);
    assert_eq!(alerts(a).len(), 2);
}

#[test]
fn the_state_survives_a_reopen() {
    let (dir, node) = witness_node();
    let a = &node.archive;
    let path = dir.path().join("witness-db");
    let mut log = PeerLog::new(1, 3);
    {
        let db = sled::open(&path).unwrap();
        let w = Witness::open(&db).unwrap();
        assert_status(&add(&w, a, &log, &log.body(0, 3)), 200, "first");
        w.push_log_entries(a, &log.caller(), log.push(0, 3))
            .unwrap();
    }
    let db = sled::open(&path).unwrap();
    let w = Witness::open(&db).unwrap();
    log.grow(2);
    assert_eq!(size_answer(&add(&w, a, &log, &log.body(0, 5))), 3);
    let kept = w
        .fetch_log(
            &log.caller(),
            FetchLogRequest {
                start: 0,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(kept.size, 3);
    assert_eq!(kept.leaves, log.leaves[..3].to_vec());
    assert_status(
        &add(&w, a, &log, &log.body(3, 5)),
        200,
        "growth after reopen",
    );
}

#[test]
fn replication_keeps_consistent_leaves_and_hands_them_back() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let mut log = PeerLog::new(1, 5);
    let caller = log.caller();
    let empty = || PushLogEntriesRequest {
        start: 0,
        leaves: vec![],
    };
    assert!(matches!(
        w.push_log_entries(a, &caller, log.push(0, 2)),
        Err(WitnessError::NotWitnessed(_))
    ));
    assert_eq!(
        w.fetch_log(
            &caller,
            FetchLogRequest {
                start: 0,
                limit: 10
            }
        )
        .unwrap(),
        FetchLogResponse::default()
    );
    assert_status(&add(w, a, &log, &log.body(0, 5)), 200, "cosign 5");
    assert_eq!(w.push_log_entries(a, &caller, empty()).unwrap().size, 0);
    assert_eq!(
        w.push_log_entries(a, &caller, log.push(0, 3)).unwrap().size,
        3
    );
    // Not yet checked against the checkpoint: nothing handed back yet.
    let f = w
        .fetch_log(
            &caller,
            FetchLogRequest {
                start: 0,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!((f.size, f.leaves.len()), (0, 0));
    assert_eq!(w.push_log_entries(a, &caller, empty()).unwrap().size, 3);
    assert_eq!(
        w.push_log_entries(a, &caller, log.push(3, 5)).unwrap().size,
        5
    );
    let f = w
        .fetch_log(
            &caller,
            FetchLogRequest {
                start: 0,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(f.size, 5);
    assert_eq!(f.leaves, log.leaves);
    // The checkpoint handed back is the caller's, cosigned by this witness, of that size.
    let verifier = Verifier::new(&log.origin, log.key.verifying_key()).unwrap();
    let (cp, note) = Checkpoint::open_with_note(f.checkpoint.as_bytes(), &verifier).unwrap();
    assert_eq!(cp, log.checkpoint(5));
    archipel_proto::note::verify_cosignature(&note, &witness_verifier(a)).unwrap();

    // Growth: cosign, then push the rest; fetch pages.
    log.grow(4);
    assert_status(&add(w, a, &log, &log.body(5, 9)), 200, "cosign 9");
    assert_eq!(
        w.push_log_entries(a, &caller, log.push(5, 9)).unwrap().size,
        9
    );
    let f = w
        .fetch_log(&caller, FetchLogRequest { start: 6, limit: 2 })
        .unwrap();
    assert_eq!(f.size, 9);
    assert_eq!(f.leaves, log.leaves[6..8].to_vec());
    let f = w
        .fetch_log(
            &caller,
            FetchLogRequest {
                start: 7,
                limit: 5000,
            },
        )
        .unwrap();
    assert_eq!(f.leaves, log.leaves[7..9].to_vec());
    assert!(alerts(a).is_empty());
}

#[test]
fn replication_refuses_gaps_foreign_and_altered_leaves() {
    let (_d, node) = witness_node();
    let a = &node.archive;
    let w = &a.witness;
    let mut log = PeerLog::new(1, 5);
    let caller = log.caller();
    assert_status(&add(w, a, &log, &log.body(0, 5)), 200, "cosign 5");
    // A gap.
    let e = w.push_log_entries(a, &caller, log.push(1, 3)).unwrap_err();
    assert!(
        matches!(
            e,
            WitnessError::Gap {
                expected: 0,
                got: 1
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    // Beyond what was cosigned.
    log.grow(1);
    assert!(matches!(
        w.push_log_entries(a, &caller, log.push(0, 6)),
        Err(WitnessError::BeyondCheckpoint {
            end: 6,
            cosigned: 5
        })
    ));
    // Not an event, or another node's event.
    let mut junk = log.push(0, 2);
    junk.leaves[1] = b"not an event".to_vec();
    assert!(matches!(
        w.push_log_entries(a, &caller, junk),
        Err(WitnessError::BadLeaf { index: 1, .. })
    ));
    let other = PeerLog::new(2, 2);
    let mut foreign = log.push(0, 2);
    foreign.leaves[0] = other.leaves[0].clone();
    assert!(matches!(
        w.push_log_entries(a, &caller, foreign),
        Err(WitnessError::BadLeaf { index: 0, .. })
    ));
    let too_many = PushLogEntriesRequest {
        start: 0,
        leaves: vec![log.leaves[0].clone(); MAX_PUSH + 1],
    };
    assert!(matches!(
        w.push_log_entries(a, &caller, too_many),
        Err(WitnessError::TooMany(_))
    ));
    assert_eq!(
        w.push_log_entries(
            a,
            &caller,
            PushLogEntriesRequest {
                start: 0,
                leaves: vec![]
            }
        )
        .unwrap()
        .size,
        0,
        "nothing refused was kept"
    );
    // Altered leaves: valid events, but not the ones the checkpoint signs.
    assert_eq!(
        w.push_log_entries(a, &caller, log.push(0, 3)).unwrap().size,
        3
    );
    let altered_log = PeerLog::forked(1, 5, 3);
    let e = w
        .push_log_entries(a, &caller, altered_log.push(3, 5))
        .unwrap_err();
    assert!(matches!(e, WitnessError::Mismatch { size: 5 }), "{e}");
    assert_eq!(alerts(a).len(), 1, "altered leaves raise an alert");
    // Dropped back to what was verified (nothing), so the honest log can be pushed.
    let empty = PushLogEntriesRequest {
        start: 0,
        leaves: vec![],
    };
    assert_eq!(w.push_log_entries(a, &caller, empty).unwrap().size, 0);
    assert_eq!(
        w.push_log_entries(a, &caller, log.push(0, 5)).unwrap().size,
        5
    );
    let f = w
        .fetch_log(
            &caller,
            FetchLogRequest {
                start: 0,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(f.leaves, log.leaves[..5].to_vec());
    // After a verified size, a mismatch drops back to it, not further.
    log.grow(2);
    assert_status(&add(w, a, &log, &log.body(5, 8)), 200, "cosign 8");
    let mut altered = log.push(5, 8);
    altered.leaves[2] = PeerLog::forked(1, 8, 4).leaves[7].clone();
    assert!(w.push_log_entries(a, &caller, altered).is_err());
    let f = w
        .fetch_log(
            &caller,
            FetchLogRequest {
                start: 0,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!((f.size, f.leaves.len()), (5, 5));
    assert_eq!(
        w.push_log_entries(a, &caller, log.push(5, 8)).unwrap().size,
        8
    );
}

#[test]
fn names_and_origins() {
    let id = "abcdefghijklmnopqrstuvwxyz234567";
    assert_eq!(
        cosigner_name("Commune de Plougastel", id),
        format!("archipel-witness/commune-de-plougastel/{id}")
    );
    assert!(is_cosigner_of(&cosigner_name("X", id), id));
    assert!(!is_cosigner_of(&cosigner_name("X", id), "other"));
    assert!(origin_is_of(&origin_for("Région", id), id));
    assert!(!origin_is_of(&format!("archipel//{id}"), id));
    assert!(!origin_is_of(&format!("archipel/a/b/{id}x"), id));
}
