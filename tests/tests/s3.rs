//! Blobs in S3-compatible object stores, against real servers on loopback: s3s-fs (quick)
//! and Garage (the store territories run). The blob store conformance suite, faults
//! injected by an HTTP proxy (5xx, a timeout, a cut body, a missing object, refused
//! credentials), a node serving from S3 end to end across a restart, `check-config`,
//! `migrate-blobs` there and back, and a federation of a sled node and an S3 node.
//!
//! A test whose server is not installed says so loudly and does not run (`.ci/run`
//! installs both).

use archipel_node::store::{BlobStore, S3Connection, conformance};
use archipel_tests::cluster::{ClusterOptions, TestCluster};
use archipel_tests::s3::{Fault, FaultProxy, S3Server};
use archipel_tests::{TestNode, expect_code, p, random_file};
use std::path::Path;
use std::time::{Duration, Instant};

fn conforms(server: &S3Server, dir: &Path) {
    let cfg = server
        .s3_config(&server.endpoint(), "conformance", dir)
        .expect("S3 test step");
    let conn = S3Connection::open(&cfg).expect("S3 test step");
    conformance::run(&conn.namespace("blobs")).unwrap_or_else(|e| panic!("{}: {e}", server.name));
    // Small listing batches, so that listing crosses many `start-after` boundaries.
    conformance::run_many(&conn.namespace("many").with_list_batch(7), 120)
        .unwrap_or_else(|e| panic!("{}: {e}", server.name));
    // Namespaces do not see each other's blobs.
    let a = conn.namespace("held/one");
    let b = conn.namespace("held/two");
    a.put(&[1; 32], b"x").expect("S3 test step");
    assert_eq!(b.list(&[]).count(), 0);
    assert_eq!(conn.namespace("held").list(&[]).count(), 0);
    a.delete(&[1; 32]).expect("S3 test step");
    conn.probe().expect("S3 test step");
}

#[test]
fn s3s_fs_conforms() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::s3s_fs(dir.path()).expect("S3 test step") else {
        return;
    };
    conforms(&server, dir.path());
}

#[test]
fn garage_conforms() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::garage(dir.path()).expect("S3 test step") else {
        return;
    };
    conforms(&server, dir.path());
}

#[test]
fn a_three_node_garage_with_three_copies_conforms() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(servers) = S3Server::garage_cluster(dir.path(), 3).expect("S3 test step") else {
        return;
    };
    conforms(&servers[0], dir.path());
    // Written through one node, read through another: the cluster holds the copies.
    let cfg0 = servers[0]
        .s3_config(&servers[0].endpoint(), "rf3", dir.path())
        .expect("S3 test step");
    let cfg2 = servers[2]
        .s3_config(&servers[2].endpoint(), "rf3", dir.path())
        .expect("S3 test step");
    let a = S3Connection::open(&cfg0)
        .expect("S3 test step")
        .namespace("blobs");
    let b = S3Connection::open(&cfg2)
        .expect("S3 test step")
        .namespace("blobs");
    let bytes = vec![42u8; 2_000_000];
    let id = *blake3::hash(&bytes).as_bytes();
    a.put(&id, &bytes).expect("S3 test step");
    // Uploads are write-behind: the blob is at the store once flushed (as before a commit).
    a.flush().expect("S3 test step");
    assert_eq!(
        b.get(&id).expect("S3 test step").expect("S3 test step"),
        bytes
    );
    let status = servers[0].garage_cli(&["status"]).expect("S3 test step");
    assert!(status.matches("dc").count() >= 3, "{status}");
}

#[test]
fn transient_faults_are_retried_and_permanent_ones_name_the_blob() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::s3s_fs(dir.path()).expect("S3 test step") else {
        return;
    };
    let proxy = FaultProxy::start(server.addr).expect("S3 test step");
    let mut cfg = server
        .s3_config(&proxy.endpoint(), "faults", dir.path())
        .expect("S3 test step");
    cfg.timeout_secs = 1;
    cfg.max_retries = 2;
    cfg.retry_backoff_ms = 20;
    let conn = S3Connection::open(&cfg).expect("S3 test step");
    let store = conn.namespace("blobs");
    let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let id = *blake3::hash(&bytes).as_bytes();
    let hex_id = hex(&id);

    // 5xx answers: retried. Uploads are write-behind: `flush_blobs` waits for them.
    proxy.inject(Some("PUT"), Fault::ServerError, 2);
    store.put(&id, &bytes).expect("S3 test step");
    store.flush_blobs(&[id]).expect("S3 test step");
    assert_eq!(proxy.faults_done(), 2);
    proxy.inject(Some("GET"), Fault::ServerError, 3);
    assert_eq!(
        store.get(&id).expect("S3 test step").expect("S3 test step"),
        bytes
    );
    assert_eq!(proxy.faults_done(), 5);

    // A body cut in the middle (a partial read): retried, never returned short.
    proxy.inject(Some("GET"), Fault::Truncate, 2);
    assert_eq!(
        store.get(&id).expect("S3 test step").expect("S3 test step"),
        bytes
    );
    assert_eq!(proxy.faults_done(), 7);
    proxy.inject(Some("GET"), Fault::Truncate, 1);
    let r = store
        .get_range(&id, 1000..201_000)
        .expect("S3 test step")
        .expect("S3 test step");
    assert_eq!(r, bytes[1000..201_000]);
    assert_eq!(proxy.faults_done(), 8);

    // A server that does not answer: the request times out and is retried.
    proxy.inject(Some("HEAD"), Fault::Hang(Duration::from_secs(3)), 1);
    let t = Instant::now();
    assert!(store.contains(&id).expect("S3 test step"));
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(proxy.faults_done(), 9);

    // A missing object is an answer, not an error.
    let absent = [0xab; 32];
    assert!(store.get(&absent).expect("S3 test step").is_none());
    assert!(!store.contains(&absent).expect("S3 test step"));
    store.delete(&absent).expect("S3 test step");

    // A store that keeps failing: the error comes back, in bounded time, with the blob ID.
    proxy.always(Some("GET"), Fault::ServerError);
    let t = Instant::now();
    let e = store.get(&id).unwrap_err().to_string();
    assert!(e.contains(&hex_id) && e.contains("after 3 attempts"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    proxy.always(Some("PUT"), Fault::Hang(Duration::from_secs(5)));
    store.put(&[3; 32], b"never stored").expect("S3 test step");
    // The failure of a write-behind upload surfaces where it is waited for (before the
    // commit of the record that references it), with the blob ID.
    let e = store.flush_blobs(&[[3; 32]]).unwrap_err().to_string();
    assert!(e.contains(&hex(&[3; 32])), "{e}");
    // And a synchronous write fails itself, with the blob ID.
    let e = store
        .put_now(&[4; 32], b"never stored either")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&hex(&[4; 32])), "{e}");
    proxy.clear();
    assert_eq!(
        store.get(&id).expect("S3 test step").expect("S3 test step"),
        bytes
    );

    // Refused credentials are permanent: no retries, the blob ID in the error.
    let mut wrong = cfg.clone();
    let creds = dir.path().join("wrong.toml");
    std::fs::write(
        &creds,
        format!(
            "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            archipel_tests::s3::ACCESS_KEY,
            "f".repeat(64)
        ),
    )
    .expect("S3 test step");
    wrong.credentials_file = Some(creds);
    let bad = S3Connection::open(&wrong)
        .expect("S3 test step")
        .namespace("blobs");
    let before = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
    let e = bad.get(&id).unwrap_err().to_string();
    assert!(e.contains(&hex_id) && e.contains("refused"), "{e}");
    let sent = proxy.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(sent, 1, "a refused request is not retried");
    let probe = S3Connection::open(&wrong)
        .expect("S3 test step")
        .probe()
        .unwrap_err();
    assert!(probe.contains("credentials"), "{probe}");
}

fn both(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Objects under a key prefix in s3s-fs's directory (a bucket is a directory there).
fn objects_under(server: &S3Server, prefix: &str) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.len() == 64)
                {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(
        &server.dir.join(archipel_tests::s3::BUCKET).join(prefix),
        &mut n,
    );
    n
}

fn write_s3_config(node: &TestNode, server: &S3Server, kind: &str, prefix: &str) {
    let creds = node
        .data
        .parent()
        .expect("S3 test step")
        .join(format!("{prefix}-creds.toml"));
    std::fs::write(&creds, archipel_tests::s3::credentials_toml()).expect("S3 test step");
    let text = format!(
        "blob_store = \"{kind}\"\n{}credentials_file = \"{}\"\n",
        server.config_table(&server.endpoint(), prefix),
        creds.display()
    );
    std::fs::write(node.data.join("archipel.toml"), text).expect("S3 test step");
}

fn node_on_s3_end_to_end(server: &S3Server, root: &Path) {
    let mut node = TestNode::init(root, "s3node", "Région Bretagne").expect("S3 test step");
    write_s3_config(&node, server, "s3", "bretagne");
    let out = std::process::Command::new(archipel_tests::bin("archipel-node"))
        .args(["check-config", "--data", p(&node.data)])
        .output()
        .expect("S3 test step");
    expect_code(&out, 0, "check-config");
    let text = both(&out);
    assert!(text.contains("write, read, list and delete work"), "{text}");
    node.start().expect("S3 test step");
    // Several blobs (4 MiB each) and a small file in one record.
    let big = root.join("cadastre.bin");
    random_file(&big, 9 * 1024 * 1024 + 123, 5).expect("S3 test step");
    let small = root.join("deliberation.txt");
    std::fs::write(&small, "Délibération n° 2026-42 du conseil régional").expect("S3 test step");
    let rec_big = node.ingest(&[&big], "Plan cadastral", &[]);
    let rec_small = node.ingest(&[&small], "Délibération", &[]);
    let want_big = std::fs::read(&big).expect("S3 test step");
    let want_small = std::fs::read(&small).expect("S3 test step");
    node.assert_get_file(&rec_big, &root.join("out-big"), &want_big);
    node.assert_get_file(&rec_small, &root.join("out-small"), &want_small);
    if server.name == "s3s-fs" {
        assert!(objects_under(server, "bretagne/blobs") >= 4);
    }
    assert!(
        !node.data.join("blobs").join("packs").exists()
            || std::fs::read_dir(node.data.join("blobs").join("packs"))
                .expect("S3 test step")
                .next()
                .is_none(),
        "no blob on the node's disk"
    );
    // Fixity reads every blob back from the object store and checks it.
    node.cli_ok(&["verify", &rec_big]);
    node.restart().expect("S3 test step");
    node.assert_get_file(&rec_big, &root.join("out-big2"), &want_big);
    node.assert_get_file(&rec_small, &root.join("out-small2"), &want_small);
    node.stop().expect("S3 test step");
    // The configuration alone cannot move blobs: the node refuses rather than look empty.
    write_s3_config(&node, server, "files", "bretagne");
    let out = node.start_expect_failure().expect("S3 test step");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("migrate-blobs"),
        "{err}"
    );
    // check-config names the wrong setting: refused credentials...
    let conf = node.data.join("archipel.toml");
    let text = std::fs::read_to_string(&conf)
        .expect("S3 test step")
        .replace("blob_store = \"files\"", "blob_store = \"s3\"");
    std::fs::write(&conf, &text).expect("S3 test step");
    let creds = root.join("wrong-secret.toml");
    std::fs::write(
        &creds,
        format!(
            "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            archipel_tests::s3::ACCESS_KEY,
            "e".repeat(64)
        ),
    )
    .expect("S3 test step");
    let check = |env_creds: Option<&Path>| {
        let mut cmd = std::process::Command::new(archipel_tests::bin("archipel-node"));
        cmd.args(["check-config", "--data", p(&node.data)]);
        if let Some(c) = env_creds {
            cmd.env("ARCHIPEL_S3_CREDENTIALS_FILE", c);
        }
        cmd.output().expect("S3 test step")
    };
    let out = check(Some(&creds));
    expect_code(&out, 1, "check-config with a wrong secret");
    let said = both(&out);
    assert!(said.contains("credentials"), "{said}");
    // ... and, on Garage (s3s-fs makes any bucket it is asked for), a missing bucket.
    if server.name == "garage" {
        std::fs::write(
            &conf,
            text.replace(archipel_tests::s3::BUCKET, "no-such-bucket"),
        )
        .expect("S3 test step");
        let out = check(None);
        expect_code(&out, 1, "check-config with a wrong bucket");
        let said = both(&out);
        assert!(said.contains("s3.bucket"), "{said}");
    }
}

#[test]
fn a_node_serves_from_s3s_fs_across_a_restart() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::s3s_fs(dir.path()).expect("S3 test step") else {
        return;
    };
    node_on_s3_end_to_end(&server, dir.path());
}

#[test]
fn a_node_serves_from_garage_across_a_restart() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::garage(dir.path()).expect("S3 test step") else {
        return;
    };
    node_on_s3_end_to_end(&server, dir.path());
}

#[test]
fn migrate_blobs_to_s3_and_back_to_sled() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::s3s_fs(dir.path()).expect("S3 test step") else {
        return;
    };
    let root = dir.path();
    let mut node = TestNode::init(root, "n", "Commune de Quimper").expect("S3 test step");
    // Starts on files, with the [s3] table ready for later.
    write_s3_config(&node, &server, "files", "quimper");
    node.start().expect("S3 test step");
    let f = root.join("registre.bin");
    random_file(&f, 6 * 1024 * 1024, 9).expect("S3 test step");
    let want = std::fs::read(&f).expect("S3 test step");
    let rec = node.ingest(&[&f], "Registre d'état civil", &[]);
    let g = root.join("petit.txt");
    std::fs::write(&g, "acte de naissance").expect("S3 test step");
    let rec2 = node.ingest(&[&g], "Acte", &[]);
    let data = node.data.clone();
    let migrate = |to: &str| {
        std::process::Command::new(archipel_tests::bin("archipel-node"))
            .args(["migrate-blobs", "--data", p(&data), "--to", to])
            .output()
            .expect("S3 test step")
    };
    // With the node stopped, the copy runs in the command itself.
    node.stop().expect("S3 test step");
    let out = migrate("s3");
    expect_code(&out, 0, "migrate-blobs --to s3");
    let text = both(&out);
    assert!(text.contains("done files -> s3: 3 copied"), "{text}");
    assert_eq!(objects_under(&server, "quimper/blobs"), 3);
    // Run again: everything is there already (a resumed run does no work twice).
    let out = migrate("s3");
    assert!(!out.status.success(), "already on s3");
    let conf = std::fs::read_to_string(node.data.join("archipel.toml")).expect("S3 test step");
    assert!(conf.contains("blob_store = \"s3\""), "{conf}");
    // The old copies are left; remove them to prove the node reads from S3.
    std::fs::remove_dir_all(node.data.join("blobs")).expect("S3 test step");
    node.start().expect("S3 test step");
    node.assert_get_file(&rec, &root.join("o1"), &want);
    node.assert_get_file(&rec2, &root.join("o2"), b"acte de naissance");
    node.stop().expect("S3 test step");
    let out = migrate("sled");
    expect_code(&out, 0, "migrate-blobs --to sled");
    let text = both(&out);
    assert!(text.contains("done s3 -> sled: 3 copied"), "{text}");
    // Gone from S3 now: the node reads them from sled.
    std::fs::remove_dir_all(server.dir.join(archipel_tests::s3::BUCKET).join("quimper"))
        .expect("S3 test step");
    node.start().expect("S3 test step");
    node.assert_get_file(&rec, &root.join("o3"), &want);
    node.assert_get_file(&rec2, &root.join("o4"), b"acte de naissance");
}

/// The status of a running node's blob migration, over its admin socket.
fn migration_status(data: &Path) -> Option<archipel_proto::v1::BlobMigrationStatus> {
    archipel_tests::runtime().block_on(async {
        let channel = archipel_node::admin_channel(&data.join("admin.sock"))
            .await
            .ok()?;
        archipel_proto::v1::archive_client::ArchiveClient::new(channel)
            .blob_migration(archipel_proto::v1::BlobMigrationRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    })
}

#[test]
fn online_migration_while_serving_survives_a_kill_and_goes_back() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::s3s_fs(dir.path()).expect("S3 test step") else {
        return;
    };
    let root = dir.path();
    let mut node = TestNode::init(root, "n", "Brest Métropole").expect("S3 test step");
    write_s3_config(&node, &server, "files", "brest");
    node.start().expect("S3 test step");
    // Every acknowledged record, with its bytes.
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let add = |node: &TestNode, name: &str, size: usize, seed: u64| {
        let f = root.join(name);
        random_file(&f, size, seed).expect("S3 test step");
        let id = node.ingest(&[&f], name, &[]);
        (id, std::fs::read(&f).expect("S3 test step"))
    };
    // 6 + 3 blobs of 4 MiB, and two small ones.
    acked.push(add(&node, "plans.bin", 22 * 1024 * 1024, 1));
    acked.push(add(&node, "registre.bin", 9 * 1024 * 1024, 2));
    acked.push(add(&node, "acte.txt", 3000, 3));
    acked.push(add(&node, "arrete.txt", 70_000, 4));
    let data = node.data.clone();
    let migrate = |to: &str, rate: &str| {
        std::process::Command::new(archipel_tests::bin("archipel-node"))
            .args([
                "migrate-blobs",
                "--data",
                p(&data),
                "--to",
                to,
                "--rate",
                rate,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("S3 test step")
    };
    // Online (the node holds its lock), paced at one blob a second so that it can be
    // killed half-way.
    let follower = migrate("s3", "1");
    assert!(
        archipel_tests::wait_until(Duration::from_secs(20), || migration_status(&data)
            .is_some_and(|s| s.state == "copying")),
        "the migration did not start"
    );
    // Served meanwhile: ingests (their blobs go to S3 now) and reads (from either store).
    let during = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut got = Vec::new();
            for (i, size) in [5 * 1024 * 1024 + 17, 1234].into_iter().enumerate() {
                let f = root.join(format!("during-{i}.bin"));
                random_file(&f, size, 10 + i as u64).expect("S3 test step");
                let id = node.ingest(&[&f], "pendant", &[]);
                got.push((id, std::fs::read(&f).expect("S3 test step")));
            }
            got
        });
        for (i, (id, want)) in acked.iter().enumerate() {
            node.assert_get_file(id, &root.join(format!("read-during-{i}")), want);
        }
        h.join().expect("ingest thread")
    });
    acked.extend(during);
    let s = migration_status(&data).expect("status");
    assert_eq!(s.state, "copying", "{s:?}");
    assert!(
        objects_under(&server, "brest/blobs") >= 2,
        "new blobs in S3"
    );
    assert!(
        archipel_tests::wait_until(Duration::from_secs(30), || migration_status(&data)
            .is_some_and(|s| s.copied >= 3)),
        "the migration copies"
    );
    // The worker saves its cursor and counters at least once a second: let it save past
    // the three blobs before the crash, so that kept progress can be asserted.
    std::thread::sleep(Duration::from_millis(1500));
    // A crash half-way.
    node.kill();
    let out = follower.wait_with_output().expect("S3 test step");
    assert!(!out.status.success(), "the follower saw the node go");
    node.start().expect("S3 test step");
    let s = migration_status(&data).expect("status after the restart");
    assert_eq!(s.state, "copying", "resumed: {s:?}");
    assert!(s.copied + s.already >= 3, "progress kept: {s:?}");
    let f = root.join("after-restart.bin");
    random_file(&f, 4 * 1024 * 1024 + 5, 20).expect("S3 test step");
    acked.push((
        node.ingest(&[&f], "après", &[]),
        std::fs::read(&f).expect("S3 test step"),
    ));
    assert!(
        archipel_tests::wait_until(Duration::from_secs(120), || migration_status(&data)
            .is_some_and(|s| s.state == "done")),
        "the resumed migration finishes: {:?}",
        migration_status(&data)
    );
    let conf = std::fs::read_to_string(data.join("archipel.toml")).expect("S3 test step");
    assert!(conf.contains("blob_store = \"s3\""), "{conf}");
    // Without the old copies, from S3 alone, after a restart: every acknowledged record.
    node.stop().expect("S3 test step");
    std::fs::remove_dir_all(data.join("blobs")).expect("S3 test step");
    node.start().expect("S3 test step");
    for (i, (id, want)) in acked.iter().enumerate() {
        node.assert_get_file(id, &root.join(format!("from-s3-{i}")), want);
    }
    // And back to sled, online, with an ingest meanwhile; the command follows it to the end.
    let back = migrate("sled", "0");
    let f = root.join("during-back.bin");
    random_file(&f, 6 * 1024 * 1024, 30).expect("S3 test step");
    acked.push((
        node.ingest(&[&f], "retour", &[]),
        std::fs::read(&f).expect("S3 test step"),
    ));
    let out = back.wait_with_output().expect("S3 test step");
    let text = both(&out);
    assert!(out.status.success(), "migrate-blobs --to sled: {text}");
    assert!(text.contains("done s3 -> sled"), "{text}");
    node.stop().expect("S3 test step");
    std::fs::remove_dir_all(server.dir.join(archipel_tests::s3::BUCKET).join("brest"))
        .expect("S3 test step");
    node.start().expect("S3 test step");
    for (i, (id, want)) in acked.iter().enumerate() {
        node.assert_get_file(id, &root.join(format!("from-sled-{i}")), want);
    }
    node.cli_ok(&["verify", &acked[0].0]);
}

#[test]
fn a_sled_node_and_an_s3_node_federate() {
    let dir = tempfile::tempdir().expect("S3 test step");
    let Some(server) = S3Server::s3s_fs(dir.path()).expect("S3 test step") else {
        return;
    };
    let creds = dir.path().join("fed-creds.toml");
    std::fs::write(&creds, archipel_tests::s3::credentials_toml()).expect("S3 test step");
    let table = format!(
        "{}credentials_file = \"{}\"\n",
        server.config_table(&server.endpoint(), "fed"),
        creds.display()
    );
    let c = TestCluster::start(
        2,
        ClusterOptions {
            replication_factor: 2,
            node_extra: vec![
                ("blob_store = \"sled\"".into(), String::new()),
                ("blob_store = \"s3\"".into(), table),
            ],
            ..Default::default()
        },
    );
    // The sled node's record is held in S3 by the other; the S3 node's by the sled one.
    let (rec0, bytes0) = c.ingest_random(0, 5_000_000, 11, "Archives de la commune");
    let (rec1, bytes1) = c.ingest_random(1, 700_000, 12, "Archives de la région");
    assert_eq!(c.wait_replicated(0, &rec0, 2), vec![c.id(1).to_string()]);
    assert_eq!(c.wait_replicated(1, &rec1, 2), vec![c.id(0).to_string()]);
    let held = objects_under(&server, &format!("fed/held/{}", c.id(0)));
    assert!(held >= 2, "the S3 node keeps node 0's blobs in S3: {held}");
    assert!(objects_under(&server, "fed/blobs") >= 1);
    c.node(0)
        .assert_get_file(&rec0, &c.root().join("back0"), &bytes0);
    c.node(1)
        .assert_get_file(&rec1, &c.root().join("back1"), &bytes1);
}
