//! Holders keep what they hold: scrub repairs a corrupted copy, a holder whose copy is bad
//! fails its proof-of-storage challenge (caught, logged, repaired), and an origin taken over
//! by ransomware cannot make its holders delete or overwrite anything.

use archipel_node::federation::transport::{PinnedPeers, client_config, connect_peer};
use archipel_node::store::{BlobStore, FileBlobStore};
use archipel_proto::manifest::Envelope;
use archipel_proto::v1::federation_client::FederationClient;
use archipel_proto::v1::{DeletionRequest, ListHeldRequest, RecordBatch, RecordCopy};
use archipel_tests::cluster::{ClusterOptions, TestCluster};
use archipel_tests::{TestNode, runtime};

/// A file of `size` random bytes named `name` in `dir`.
fn random_file(dir: &Path, name: &str, size: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    archipel_tests::random_file(&path, size, rand::random()).expect("write a test file");
    path
}
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// Every event of a node's audit log.
fn events(n: &TestNode) -> Vec<Value> {
    n.cli_ok(&["log", "export", "--format", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect()
}

fn has_event(n: &TestNode, kind: &str, object: &str, outcome: &str) -> bool {
    events(n)
        .iter()
        .any(|e| e["type"] == kind && e["object"] == object && e["outcome"] == outcome)
}

/// The store of what a stopped holder keeps for `origin`.
fn held_store(holder: &Path, origin: &str) -> (sled::Db, FileBlobStore) {
    let db = sled::Config::new()
        .path(holder.join("db"))
        .open()
        .expect("open the holder's database (is it stopped?)");
    let store = FileBlobStore::open_named(
        &holder.join("blobs").join("held").join(origin),
        &db,
        &format!("held/{origin}/packed"),
    )
    .expect("held blob store");
    (db, store)
}

/// Flips a byte of every blob a stopped holder keeps for `origin`; returns the originals.
fn corrupt_held(holder: &Path, origin: &str) -> Vec<([u8; 32], Vec<u8>)> {
    let (db, store) = held_store(holder, origin);
    let ids: Vec<[u8; 32]> = store.list(&[]).map(|b| b.expect("blob id")).collect();
    assert!(!ids.is_empty(), "the holder keeps blobs for {origin}");
    let mut originals = Vec::new();
    for id in ids {
        let bytes = store.get(&id).expect("test setup").expect("test setup");
        let (path, offset, len) = store
            .location(&id)
            .expect("test setup")
            .expect("test setup");
        let mut all = std::fs::read(&path).expect("test setup");
        all[(offset + len / 2) as usize] ^= 0x55;
        std::fs::write(&path, all).expect("test setup");
        assert_ne!(
            store.get(&id).expect("test setup").expect("test setup"),
            bytes,
            "blob altered"
        );
        originals.push((id, bytes));
    }
    db.flush().expect("test setup");
    originals
}

fn held_blobs_intact(holder: &Path, origin: &str, originals: &[([u8; 32], Vec<u8>)]) -> bool {
    let (_db, store) = held_store(holder, origin);
    originals
        .iter()
        .all(|(id, bytes)| store.get(id).ok().flatten().as_deref() == Some(bytes.as_slice()))
}

#[test]
fn scrub_at_a_holder_detects_a_corrupted_copy_and_repairs_it_from_the_origin() {
    let mut c = TestCluster::start(
        3,
        ClusterOptions {
            // Scrub finds the damage; challenges stay out of the way.
            challenge_interval_secs: 3600,
            anti_entropy_interval_secs: 3600,
            scrub_interval_secs: 2,
            ..Default::default()
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "plan.pdf", 6 << 20);
    let record = c.node(0).ingest(&[&file], "Plan cadastral", &[]);
    let holders = c.wait_replicated(0, &record, 3);
    let h = c.index_of(&holders[0]).unwrap();
    let origin = c.id(0).to_string();

    c.stop(h);
    let originals = corrupt_held(&c.node(h).data, &origin);
    c.start_node(h);
    c.wait_until(WAIT, "scrub to log the damaged copy", |c| {
        has_event(c.node(h), "fixity check", &record, "failure")
    });
    // The holder's first `replication` event is its taking custody; the repair is scrub's.
    c.wait_until(WAIT, "scrub to log the repair", |c| {
        events(c.node(h)).iter().any(|e| {
            e["type"] == "replication"
                && e["object"] == record.as_str()
                && e["agent_actor"] == "scrub"
        })
    });
    c.stop(h);
    assert!(
        held_blobs_intact(&c.node(h).data, &origin, &originals),
        "the held copy is byte for byte the origin's again"
    );
}

#[test]
fn a_holder_with_a_bad_copy_fails_its_challenge_is_logged_and_gets_the_record_again() {
    let mut c = TestCluster::start(
        3,
        ClusterOptions {
            // The holder does not scrub itself: only the origin's challenge can catch it.
            scrub_interval_secs: 3600,
            anti_entropy_interval_secs: 3600,
            challenge_interval_secs: 2,
            ..Default::default()
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "deliberation.pdf", 300 << 10);
    let record = c.node(0).ingest(&[&file], "Délibération", &[]);
    let holders = c.wait_replicated(0, &record, 3);
    let h = c.index_of(&holders[0]).unwrap();
    let holder_id = c.id(h).to_string();
    let origin = c.id(0).to_string();
    c.wait_until(WAIT, "a first challenge to pass", |c| {
        c.peer_account(0, h)["last_challenge_outcome"] == "passed"
    });

    c.stop(h);
    let originals = corrupt_held(&c.node(h).data, &origin);
    c.start_node(h);
    c.wait_until(WAIT, "the origin to log the failed challenge", |c| {
        has_event(c.node(0), "fixity check", &holder_id, "failure")
    });
    // The receipt was forgotten, the record sent again with the holder's copy re-checked,
    // and the next challenges pass.
    c.wait_until(WAIT, "the copy to be receipted again", |c| {
        c.holders(0, &record).contains(&holder_id)
    });
    c.wait_until(WAIT, "a challenge to pass again", |c| {
        c.peer_account(0, h)["last_challenge_outcome"] == "passed"
            && events(c.node(0)).iter().rev().any(|e| {
                e["type"] == "fixity check"
                    && e["object"] == holder_id.as_str()
                    && e["outcome"] == "success"
            })
    });
    c.stop(h);
    assert!(held_blobs_intact(&c.node(h).data, &origin, &originals));
}

/// What the holder keeps for the client's node (its own records), first page.
fn held_for(
    rt: &tokio::runtime::Runtime,
    client: &mut FederationClient<tonic::transport::Channel>,
) -> Vec<archipel_proto::v1::HeldRecord> {
    rt.block_on(client.list_held(ListHeldRequest {
        after: String::new(),
        limit: 1000,
    }))
    .expect("list what the holder keeps")
    .into_inner()
    .records
}

/// A gRPC client that speaks as `node` (with its own key), as ransomware controlling that
/// node could.
async fn as_node(
    node: &TestNode,
    holder_id: &str,
    address: &str,
) -> FederationClient<tonic::transport::Channel> {
    let seed = std::fs::read_to_string(node.data.join("keys").join("node.key"))
        .expect("connect as the origin");
    let key =
        archipel_node::identity::decode_seed(&seed, "node.key").expect("connect as the origin");
    let pinned = PinnedPeers::with([holder_id]).expect("connect as the origin");
    let tls = client_config(&key, pinned).expect("connect as the origin");
    let channel = connect_peer(address, holder_id, tls)
        .await
        .expect("connect as the origin");
    FederationClient::new(channel)
}

#[test]
fn an_origin_that_asks_its_holders_to_delete_or_overwrite_everything_gets_nothing_deleted() {
    let c = TestCluster::start(
        3,
        ClusterOptions {
            extra_federation: "mass_change_alert = 5\n".into(),
            ..Default::default()
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    for i in 0..6 {
        let f = random_file(tmp.path(), &format!("acte-{i}.pdf"), 50_000 + i * 1000);
        records.push(c.node(0).ingest(&[&f], &format!("Acte {i}"), &[]));
    }
    for r in &records {
        c.wait_replicated(0, r, 3);
    }
    let rt = runtime();
    for h in 1..3 {
        let holder_id = c.id(h).to_string();
        let mut client = rt.block_on(as_node(c.node(0), &holder_id, &c.peer_addr(0, h)));
        let before = held_for(&rt, &mut client);
        assert_eq!(before.len(), records.len());

        // 1. Delete everything: refused, with the reason.
        let err = rt
            .block_on(client.request_deletion(DeletionRequest {
                record_ids: records.clone(),
                reason: "cleanup".into(),
            }))
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("never deletes"), "{}", err.message());

        // 2. Overwrite every record with other content under the same ID, correctly
        // signed by the origin's own key: refused too.
        let seed = std::fs::read_to_string(c.node(0).data.join("keys").join("node.key")).unwrap();
        let key = archipel_node::identity::decode_seed(&seed, "node.key").unwrap();
        let forged: Vec<RecordCopy> = before
            .iter()
            .map(|h| {
                let copy = h.copy.clone().unwrap();
                let env = Envelope::decode(&copy.envelope).unwrap();
                let bogus = Envelope::sign(
                    env.record_id.clone(),
                    env.origin.clone(),
                    env.ingested_at,
                    b"encrypted garbage".to_vec(),
                    vec![*blake3::hash(b"ransom note").as_bytes()],
                    &key,
                );
                RecordCopy {
                    envelope: bogus.encode(),
                    key_envelope: copy.key_envelope,
                }
            })
            .collect();
        let batch = RecordBatch {
            records: forged,
            verify_existing: false,
        };
        let offer = rt
            .block_on(client.offer(batch.clone()))
            .unwrap()
            .into_inner();
        assert_eq!(offer.refused.len(), records.len(), "{offer:?}");
        assert!(offer.missing_blobs.is_empty());
        let commit = rt.block_on(client.commit(batch)).unwrap().into_inner();
        assert!(commit.receipts.is_empty());
        assert_eq!(commit.refused.len(), records.len());

        // Nothing changed at the holder.
        assert_eq!(held_for(&rt, &mut client), before);
        // The holder logged each refusal and raised an alert about this origin.
        let origin = c.id(0).to_string();
        let ev = events(c.node(h));
        assert!(ev.iter().any(|e| e["type"] == "deletion"
            && e["object"] == origin.as_str()
            && e["outcome"] == "failure"));
        assert!(
            ev.iter()
                .any(|e| e["type"] == "archipel:alert" && e["object"] == origin.as_str())
        );
    }
    // And the records still read back from the holders' copies: the origin's data is safe.
    for r in &records {
        assert_eq!(c.holders(0, r).len(), 2);
    }
}

#[test]
fn a_peer_sending_forged_envelopes_or_altered_blobs_is_refused_and_logged() {
    use archipel_proto::v1::BlobPut;
    let c = TestCluster::start(3, ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let f = random_file(tmp.path(), "arrete.pdf", 70_000);
    let record = c.node(0).ingest(&[&f], "Arrêté", &[]);
    let holders = c.wait_replicated(0, &record, 3);
    let h = c.index_of(&holders[0]).unwrap();
    let holder_id = c.id(h).to_string();
    let rt = runtime();
    let mut origin = rt.block_on(as_node(c.node(0), &holder_id, &c.peer_addr(0, h)));
    let held = held_for(&rt, &mut origin);
    let copy = held[0].copy.clone().unwrap();
    let refusals_before = events(c.node(h))
        .iter()
        .filter(|e| e["type"] == "validation" && e["outcome"] == "failure")
        .count();

    // 1. An envelope whose signature does not verify.
    let mut bad_sig = copy.clone();
    let n = bad_sig.envelope.len();
    bad_sig.envelope[n - 1] ^= 1;
    let offer = rt
        .block_on(origin.offer(RecordBatch {
            records: vec![bad_sig],
            verify_existing: false,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(offer.refused.len(), 1);
    assert!(
        offer.refused[0].reason.contains("signature"),
        "{:?}",
        offer.refused
    );

    // 2. Another territory's record, sent by a node that is not its origin.
    let mut other = rt.block_on(as_node(c.node(3 - h), &holder_id, &c.peer_addr(3 - h, h)));
    let offer = rt
        .block_on(other.offer(RecordBatch {
            records: vec![copy.clone()],
            verify_existing: false,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(offer.refused.len(), 1);
    assert!(
        offer.refused[0].reason.contains("only its own records"),
        "{:?}",
        offer.refused
    );

    // 3. A new record, correctly signed, whose blob arrives altered.
    let seed = std::fs::read_to_string(c.node(0).data.join("keys").join("node.key")).unwrap();
    let key = archipel_node::identity::decode_seed(&seed, "node.key").unwrap();
    let blob = b"ciphertext of a new record".to_vec();
    let blob_id = *blake3::hash(&blob).as_bytes();
    let env = Envelope::sign(
        "01KAX7M3S1H4T6Q9W2Z8B5C0DE".into(),
        c.id(0).to_string(),
        1_700_000_000,
        b"sealed manifest".to_vec(),
        vec![blob_id],
        &key,
    );
    let fresh = RecordCopy {
        envelope: env.encode(),
        key_envelope: copy.key_envelope.clone(),
    };
    let offer = rt
        .block_on(origin.offer(RecordBatch {
            records: vec![fresh.clone()],
            verify_existing: false,
        }))
        .unwrap()
        .into_inner();
    assert!(offer.refused.is_empty(), "{offer:?}");
    assert_eq!(offer.missing_blobs, vec![blob_id.to_vec()]);
    let mut altered = blob.clone();
    altered[0] ^= 0xff;
    let put = |data: Vec<u8>, id: [u8; 32]| {
        let mut origin = origin.clone();
        rt.block_on(async move {
            origin
                .put_blobs(tokio_stream::iter(vec![BlobPut {
                    blob_id: id.to_vec(),
                    data: data.into(),
                }]))
                .await
        })
    };
    let err = put(altered, blob_id).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("BLAKE3"), "{}", err.message());
    // A blob no offer asked for is refused too, even with matching bytes.
    let stray = b"unrequested".to_vec();
    let err = put(stray.clone(), *blake3::hash(&stray).as_bytes()).unwrap_err();
    assert!(err.message().contains("not asked for"), "{}", err.message());
    // Nothing was committed: the record's blob never arrived intact.
    let commit = rt
        .block_on(origin.commit(RecordBatch {
            records: vec![fresh],
            verify_existing: false,
        }))
        .unwrap()
        .into_inner();
    assert!(commit.receipts.is_empty());
    assert!(commit.refused[0].reason.contains("not been received"));

    // Every refusal is in the holder's audit log.
    let refusals = events(c.node(h))
        .iter()
        .filter(|e| e["type"] == "validation" && e["outcome"] == "failure")
        .count();
    assert!(
        refusals >= refusals_before + 4,
        "{refusals_before} -> {refusals}"
    );
}

#[test]
fn only_communicable_records_have_their_keys_released_to_holders() {
    let mut c = TestCluster::start(3, ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let open = random_file(tmp.path(), "deliberation-1998.pdf", 40_000);
    let closed = random_file(tmp.path(), "etat-civil-2020.pdf", 40_000);
    let open_id = c.node(0).ingest(
        &[&open],
        "Registre des délibérations 1998",
        &["--communicability", "immediate"],
    );
    let closed_id = c.node(0).ingest(
        &[&closed],
        "Actes de naissance 2020",
        &["--communicability", "l213-2-4", "--date", "2020-03-01"],
    );
    c.wait_replicated(0, &open_id, 3);
    let holders = c.wait_replicated(0, &closed_id, 3);
    let h = c.index_of(&holders[0]).unwrap();
    let to_h = format!("release-{}", c.id(h));
    c.wait_until(WAIT, "the origin to log the release to the holder", |c| {
        events(c.node(0)).iter().any(|e| {
            e["type"] == "dissemination"
                && e["object"] == open_id.as_str()
                && e["agent_actor"] == to_h.as_str()
        })
    });
    assert!(
        !events(c.node(0))
            .iter()
            .any(|e| e["type"] == "dissemination" && e["object"] == closed_id.as_str()),
        "a record under a 75-year delay is never released"
    );
    // At a holder: exactly the communicable record's key, and it opens the held copy.
    c.stop(h);
    let db = sled::Config::new()
        .path(c.node(h).data.join("db"))
        .open()
        .unwrap();
    let released = db.open_tree("held_releases").unwrap();
    let keys: Vec<String> = released
        .iter()
        .keys()
        .map(|k| String::from_utf8_lossy(&k.unwrap()[32..]).into_owned())
        .collect();
    assert_eq!(keys, vec![open_id.clone()]);
}

#[test]
fn a_replaced_key_envelope_never_erases_the_one_a_holder_kept() {
    use prost::Message;
    let mut c = TestCluster::start(3, ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let f = random_file(tmp.path(), "cadastre.pdf", 30_000);
    let record = c.node(0).ingest(&[&f], "Cadastre", &[]);
    let holders = c.wait_replicated(0, &record, 3);
    let h = c.index_of(&holders[0]).unwrap();
    let holder_id = c.id(h).to_string();
    let rt = runtime();
    let mut origin = rt.block_on(as_node(c.node(0), &holder_id, &c.peer_addr(0, h)));
    let held = held_for(&rt, &mut origin);
    let original = held[0].copy.clone().unwrap();
    // Ransomware at the origin sends the same envelope with a key envelope nobody can open.
    let mut garbage = original.clone();
    garbage.key_envelope = b"age-encryption.org/v1\n-> X25519 garbage\n".to_vec();
    let batch = RecordBatch {
        records: vec![garbage],
        verify_existing: false,
    };
    rt.block_on(origin.offer(batch.clone())).unwrap();
    rt.block_on(origin.commit(batch)).unwrap();
    // The client's connection stays open (its runtime is not driven any more): the holder
    // must still stop, once the peer drain time has passed.
    drop(origin);
    c.stop(h);
    let db = sled::Config::new()
        .path(c.node(h).data.join("db"))
        .open()
        .unwrap();
    let kept: Vec<RecordCopy> = db
        .open_tree("held_versions")
        .unwrap()
        .iter()
        .values()
        .map(|v| RecordCopy::decode(v.unwrap().as_ref()).unwrap())
        .collect();
    assert!(
        kept.iter().any(|k| k.key_envelope == original.key_envelope),
        "the key envelope the territory can open is still at the holder"
    );
}
