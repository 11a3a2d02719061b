//! Test fixtures: real `archipel-node` processes and the real `archipel` CLI.
//!
//! [`TestNode`] owns a data directory and the node process serving it; it can start, stop
//! (SIGTERM), kill (SIGKILL) and restart it. Every CLI call runs the real binary.

pub mod cluster;
pub mod proxy;
pub mod s3;

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Directory holding the built binaries (`target/debug` or `target/release`), building them
/// once if they are missing. `cargo test`/`nextest` keep them fresh: the packages
/// `archipel-node` and `archipel` have integration tests, which make cargo build their
/// binaries first.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/test-binary → target/<profile>
        let mut dir = exe.parent().expect("exe dir").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let want = ["archipel-node", "archipel"];
        if want.iter().any(|b| !dir.join(b).exists()) {
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args(["build", "--bins", "-p", "archipel-node", "-p", "archipel"]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "building the binaries failed");
        }
        dir
    })
    .clone()
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The standard error of a finished command, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A path as a CLI argument (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Asserts the exit code of a CLI run and returns its stderr.
pub fn expect_code(out: &Output, code: i32, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit code {code}, got {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stderr(out)
}

/// The file blob store of a stopped node (with its database, which indexes packed blobs).
fn blob_store(data: &Path) -> (sled::Db, archipel_node::store::FileBlobStore) {
    let db = sled::Config::new()
        .path(data.join("db"))
        .open()
        .expect("open the node's database (is the node stopped?)");
    let store = archipel_node::store::FileBlobStore::open(&data.join("blobs"), &db)
        .expect("open blob store");
    (db, store)
}

/// Blob IDs in a stopped node's blob store.
pub fn blob_ids(data: &Path) -> std::collections::BTreeSet<Vec<u8>> {
    use archipel_node::store::BlobStore;
    let (_db, store) = blob_store(data);
    store
        .list(&[])
        .map(|id| id.expect("list blobs").to_vec())
        .collect()
}

fn blob_id(id: &[u8]) -> [u8; 32] {
    id.try_into().expect("a blob ID is 32 bytes")
}

/// The stored bytes of a blob of a stopped node.
pub fn read_blob(data: &Path, id: &[u8]) -> Vec<u8> {
    use archipel_node::store::BlobStore;
    let (_db, store) = blob_store(data);
    store
        .get(&blob_id(id))
        .expect("read blob")
        .expect("blob exists")
}

/// Flips one byte in the middle of a stored blob (same length), or removes it: what a
/// failing disk or an intruder would do to a stopped node.
pub fn alter_blob(data: &Path, id: &[u8], remove: bool) {
    use archipel_node::store::BlobStore;
    let (db, store) = blob_store(data);
    if remove {
        store.delete(&blob_id(id)).expect("remove blob");
        db.flush().expect("flush");
        return;
    }
    let (path, offset, len) = store
        .location(&blob_id(id))
        .expect("locate blob")
        .expect("blob exists");
    let mut v = std::fs::read(&path).expect("read blob file");
    let i = (offset + len / 2) as usize;
    v[i] ^= 0x01;
    std::fs::write(&path, v).expect("write blob file");
}

/// Every record's key envelope in a stopped node's database, by record ID.
pub fn key_envelopes(data: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let db = sled::Config::new()
        .path(data.join("db"))
        .open()
        .expect("open the node's database (is the node stopped?)");
    let tree = db.open_tree("record_keys").expect("record_keys tree");
    tree.iter()
        .map(|kv| {
            let (k, v) = kv.expect("read record_keys");
            (String::from_utf8_lossy(&k).into_owned(), v.to_vec())
        })
        .collect()
}

/// A current-thread runtime for tests that speak gRPC themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A raw gRPC channel to a node's admin socket, as the CLI opens it.
pub async fn admin_channel(data: &Path) -> tonic::transport::Channel {
    archipel_node::admin_channel(&data.join("admin.sock"))
        .await
        .expect("connect to the admin socket")
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Writes `size` pseudo-random bytes (deterministic from `seed`) to `path`.
pub fn random_file(path: &Path, size: usize, seed: u64) -> anyhow::Result<()> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut left = size;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n;
    }
    f.flush()?;
    Ok(())
}

/// A node's data directory and, while it runs, its process.
pub struct TestNode {
    pub data: PathBuf,
    pub node_id: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl TestNode {
    /// `archipel-node init` in `root/name`.
    pub fn init(root: &Path, name: &str, territory: &str) -> anyhow::Result<Self> {
        Self::init_with(root, name, territory, &[])
    }

    pub fn init_with(
        root: &Path,
        name: &str,
        territory: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let data = root.join(name);
        let out = Command::new(bin("archipel-node"))
            .args(["init", "--data"])
            .arg(&data)
            .args(["--territory", territory])
            .args(extra)
            .output()?;
        if !out.status.success() {
            bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let node_id = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(TestNode {
            log: root.join(format!("{name}.log")),
            data,
            node_id,
            child: None,
        })
    }

    /// Starts the node and waits until it says it is ready.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("node already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(bin("archipel-node"))
            .args(["run", "--data"])
            .arg(&self.data)
            .env("ARCHIPEL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("archipel-node ready") => {
                self.child = Some(child);
                Ok(())
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "node did not start ({other:?}); log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            }
        }
    }

    /// Starts the node expecting it to refuse; returns its exit status and log.
    pub fn start_expect_failure(&self) -> anyhow::Result<Output> {
        Ok(Command::new(bin("archipel-node"))
            .args(["run", "--data"])
            .arg(&self.data)
            .output()?)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash or a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("node not running")
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        Ok(c.wait()?)
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.start()
    }

    /// Runs the real CLI against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("archipel"))
            .arg("--node")
            .arg(&self.data)
            .args(args)
            .output()
            .expect("run archipel")
    }

    /// Runs the CLI and fails the test with its stderr unless it succeeds.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "archipel {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli_ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("archipel {args:?}: not JSON ({e}): {out}"))
    }

    /// Ingests files with a title (and extra flags); returns the record ID.
    pub fn ingest(&self, files: &[&Path], title: &str, extra: &[&str]) -> String {
        let mut args: Vec<String> = vec!["ingest".into()];
        args.extend(files.iter().map(|p| p.display().to_string()));
        args.extend(["--title".to_string(), title.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let v = self.cli_json(&refs);
        v["id"].as_str().expect("id").to_string()
    }

    /// `get`s a one-file record into `dest` and compares it byte for byte with `want`.
    pub fn assert_get_file(&self, record: &str, dest: &Path, want: &[u8]) {
        self.cli_ok(&["get", record, "-o", p(dest)]);
        let got = std::fs::read(dest).expect("read the file written by get");
        assert_eq!(
            got.len(),
            want.len(),
            "size of {} read back",
            dest.display()
        );
        assert!(
            got == want,
            "{} differs from what was archived",
            dest.display()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}
