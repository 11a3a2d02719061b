//! Real S3-compatible servers for the tests, on loopback: s3s-fs (quick, filesystem-backed,
//! checks SigV4 signatures) and Garage (the geo-distributed store, configured with its own
//! CLI), plus an HTTP-aware fault proxy to put in front of either.
//!
//! The binaries come from `cargo install` (see `.ci/run`); a test that cannot find them
//! says so loudly and passes without running, so that a developer machine without them
//! still runs the rest of the suite.

use crate::cluster::free_port;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fixed test key (Garage wants `GK` + 24 hex digits and a 64-hex secret).
pub const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const BUCKET: &str = "archipel-test";
pub const REGION: &str = "garage";

/// A binary installed by `cargo install`: on PATH or in ~/.cargo/bin.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The binary, or `None` after a loud message saying the test did not run.
pub fn require(name: &str, install: &str) -> Option<PathBuf> {
    let found = find_binary(name);
    if found.is_none() {
        eprintln!(
            "\n\n!!!!!!!! SKIPPED: `{name}` is not installed, so this S3 test did NOT run.\n\
             !!!!!!!! Install it with: {install}\n\
             !!!!!!!! (.ci/run installs it.)\n"
        );
    }
    found
}

fn wait_port(addr: SocketAddr, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited at start: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{what} did not listen on {addr} within 30 s")
}

/// One S3 server process, killed on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub name: &'static str,
    /// Garage's config file, for its CLI.
    garage_config: Option<PathBuf>,
    garage: Option<PathBuf>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// s3s-fs over `dir`, with the test bucket created; `None` if not installed.
    pub fn s3s_fs(dir: &Path) -> anyhow::Result<Option<S3Server>> {
        let Some(bin) = require(
            "s3s-fs",
            "cargo install s3s-fs --version 0.14.1 --features binary --locked",
        ) else {
            return Ok(None);
        };
        let data = dir.join("s3s-data");
        std::fs::create_dir_all(data.join(BUCKET))?;
        let port = free_port();
        let log = std::fs::File::create(dir.join("s3s-fs.log"))?;
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&data)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        wait_port(addr, &mut child, "s3s-fs")?;
        Ok(Some(S3Server {
            child,
            addr,
            dir: data,
            name: "s3s-fs",
            garage_config: None,
            garage: None,
        }))
    }

    /// A single-node Garage (replication factor 1) with the test bucket and key, configured
    /// through its own CLI; `None` if not installed.
    pub fn garage(dir: &Path) -> anyhow::Result<Option<S3Server>> {
        Ok(Self::garage_cluster(dir, 1)?.map(|mut v| v.remove(0)))
    }

    /// `n` Garage nodes on loopback with replication factor `n`, one per zone (dc1, dc2,
    /// ...), connected and laid out with the `garage` CLI, with the test bucket and key.
    /// Each answers the S3 API; the first is the one to use.
    pub fn garage_cluster(dir: &Path, n: usize) -> anyhow::Result<Option<Vec<S3Server>>> {
        let Some(bin) = require("garage", "cargo install garage --version 2.5.0 --locked") else {
            return Ok(None);
        };
        let mut servers = Vec::with_capacity(n);
        for i in 0..n {
            let root = dir.join(format!("garage{i}"));
            std::fs::create_dir_all(&root)?;
            let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
            let config = root.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{meta}\"\n\
                     data_dir = \"{data}\"\n\
                     db_engine = \"sqlite\"\n\
                     replication_factor = {n}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{secret}\"\n\
                     [s3_api]\n\
                     s3_region = \"{REGION}\"\n\
                     api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                     [admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                    meta = root.join("meta").display(),
                    data = root.join("data").display(),
                    secret = SECRET_KEY,
                ),
            )?;
            let log = std::fs::File::create(root.join("garage.log"))?;
            let mut child = Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .arg("server")
                .env("RUST_LOG", "garage=warn")
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            let addr: SocketAddr = format!("127.0.0.1:{s3_port}").parse()?;
            wait_port(addr, &mut child, "garage")?;
            servers.push(S3Server {
                child,
                addr,
                dir: root,
                name: "garage",
                garage_config: Some(config),
                garage: Some(bin.clone()),
            });
        }
        // Every node's full ID (`<hex>@<rpc address>`); the first connects to the others.
        let mut ids = Vec::with_capacity(n);
        for s in &servers {
            ids.push(s.garage_cli(&["node", "id", "-q"])?.trim().to_string());
        }
        for id in &ids[1..] {
            servers[0].garage_cli(&["node", "connect", id])?;
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or_default();
            let zone = format!("dc{}", i + 1);
            servers[0].garage_cli(&["layout", "assign", "-z", &zone, "-c", "1G", short])?;
        }
        servers[0].garage_cli(&["layout", "apply", "--version", "1"])?;
        let s = &servers[0];
        s.garage_cli(&["bucket", "create", BUCKET])?;
        s.garage_cli(&["key", "import", "--yes", ACCESS_KEY, SECRET_KEY])?;
        s.garage_cli(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", ACCESS_KEY,
        ])?;
        Ok(Some(servers))
    }

    /// Runs the `garage` CLI against this server; its stdout.
    pub fn garage_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let (Some(bin), Some(config)) = (&self.garage, &self.garage_config) else {
            anyhow::bail!("not a Garage server");
        };
        // Right after start the RPC layer may not answer yet: retry a few times.
        let mut last = String::new();
        for _ in 0..40 {
            let out = Command::new(bin)
                .arg("-c")
                .arg(config)
                .args(args)
                .stdin(Stdio::null())
                .output()?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        anyhow::bail!("garage {args:?} failed: {last}")
    }

    /// The `[s3]` table for a node using this server through `endpoint`.
    pub fn config_table(&self, endpoint: &str, prefix: &str) -> String {
        format!(
            "[s3]\nendpoint = \"{endpoint}\"\nbucket = \"{BUCKET}\"\nregion = \"{REGION}\"\n\
             key_prefix = \"{prefix}\"\nconcurrency = 8\n"
        )
    }

    /// Settings for the library's store, with these credentials in a file under `dir`.
    pub fn s3_config(
        &self,
        endpoint: &str,
        prefix: &str,
        dir: &Path,
    ) -> anyhow::Result<archipel_node::config::S3Config> {
        let creds = dir.join(format!("s3-credentials-{prefix}.toml"));
        std::fs::write(&creds, credentials_toml())?;
        Ok(archipel_node::config::S3Config {
            endpoint: endpoint.to_string(),
            bucket: BUCKET.into(),
            region: REGION.into(),
            key_prefix: prefix.into(),
            credentials_file: Some(creds),
            ..Default::default()
        })
    }
}

pub fn credentials_toml() -> String {
    format!("access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n")
}

/// What the fault proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503 without asking the server.
    ServerError,
    /// Read the request and answer nothing for this long (the client times out), then close.
    Hang(Duration),
    /// Forward, but pass on only the headers and the first half of the body, then close.
    Truncate,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Faults for the next matching requests, in order.
    queue: VecDeque<(Option<&'static str>, Fault)>,
    /// A fault for every request (matching the method, if given) until cleared.
    always: Option<(Option<&'static str>, Fault)>,
}

/// An HTTP/1.1 proxy in front of an S3 server that injects faults request by request. Each
/// client connection carries one request (the answer says `Connection: close`), so that a
/// fault never leaves a half-read connection in the client's pool.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<FaultState>>,
    stopping: Arc<AtomicBool>,
    pub requests: Arc<AtomicU64>,
    pub faults_done: Arc<AtomicU64>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

impl FaultProxy {
    pub fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(FaultState::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let faults_done = Arc::new(AtomicU64::new(0));
        let (st, stop, req, done) = (
            state.clone(),
            stopping.clone(),
            requests.clone(),
            faults_done.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, req, done) = (st.clone(), req.clone(), done.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, target, &st, &req, &done);
                });
            }
        });
        Ok(FaultProxy {
            addr,
            state,
            stopping,
            requests,
            faults_done,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` requests with this method (any method if `None`) meet `fault`.
    pub fn inject(&self, method: Option<&'static str>, fault: Fault, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..n {
            s.queue.push_back((method, fault));
        }
    }

    /// Every request with this method meets `fault` until [`FaultProxy::clear`].
    pub fn always(&self, method: Option<&'static str>, fault: Fault) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).always = Some((method, fault));
    }

    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.queue.clear();
        s.always = None;
    }

    pub fn faults_done(&self) -> u64 {
        self.faults_done.load(Ordering::SeqCst)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Reads one HTTP message head (through the blank line) and `Content-Length` body bytes.
fn read_request(conn: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let body_len = content_length(&buf[..head_end]);
    while buf.len() < head_end + body_len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.split_off(head_end);
    Ok(Some((buf, body)))
}

/// Adds a header to a message head (before its blank line).
fn with_header(head: &[u8], header: &str) -> Vec<u8> {
    let mut out = head[..head.len() - 2].to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

fn serve(
    mut conn: TcpStream,
    target: SocketAddr,
    state: &Mutex<FaultState>,
    requests: &AtomicU64,
    faults_done: &AtomicU64,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut conn)? else {
        return Ok(());
    };
    requests.fetch_add(1, Ordering::SeqCst);
    let method = String::from_utf8_lossy(&head)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    let fault = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let matches = |m: &Option<&str>| m.is_none_or(|m| m == method);
        if let Some(i) = s.queue.iter().position(|(m, _)| matches(m)) {
            s.queue.remove(i).map(|(_, f)| f)
        } else {
            s.always.filter(|(m, _)| matches(m)).map(|(_, f)| f)
        }
    };
    if fault.is_some() {
        faults_done.fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Some(Fault::ServerError) => {
            let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>";
            write!(
                conn,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            conn.write_all(body)?;
            let _ = conn.shutdown(Shutdown::Both);
            return Ok(());
        }
        Some(Fault::Hang(d)) => {
            std::thread::sleep(d);
            let _ = conn.shutdown(Shutdown::Both);
            return Ok(());
        }
        _ => {}
    }
    // Forward on a fresh connection that the server closes after answering, so the end of
    // the answer is the end of the stream.
    let mut up = TcpStream::connect(target)?;
    up.write_all(&with_header(&head, "Connection: close"))?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let head_end = find(&answer, b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
    let (ahead, abody) = answer.split_at(head_end);
    // The server's own Connection header (if any) is kept; ours makes sure the client
    // does not reuse this connection.
    conn.write_all(&with_header(ahead, "Connection: close"))?;
    if fault == Some(Fault::Truncate) {
        conn.write_all(&abody[..abody.len() / 2])?;
    } else {
        conn.write_all(abody)?;
    }
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}
