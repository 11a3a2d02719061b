//! [`TestCluster`]: n real nodes federated over loopback, each link through its own
//! fault-injecting [`Proxy`].
//!
//! Node `i` reaches node `j` at `link(i, j).addr()`, a proxy forwarding to `j`'s federation
//! listener; so [`TestCluster::partition`] cuts the two directions between two nodes and
//! leaves every other link alone, and each link's traffic is counted on its own. Every node
//! pins every other (`archipel peer add` with the proxy's address, territory, zone, offer),
//! and the configuration (`<data>/archipel.toml`) is written before the first start, with
//! fast federation schedules (see [`ClusterOptions`]).
//!
//! Queries go through the real CLI and its JSON contract:
//! - `archipel status RECORD --json`: `holders` (`{node_id, territory, since}`, one per
//!   receipted copy outside the origin), `copies_wanted`, `pending`;
//! - `archipel federation --json`: `peers`, one per peer, with `node_id, territory, zone,
//!   offer_bytes, records_held_for_us, bytes_held_for_us, records_we_hold, bytes_we_hold,
//!   pending_records, last_challenge, last_challenge_outcome, cosigned_size, last_seen, gone`.

use crate::proxy::Proxy;
use crate::{TestNode, bin, p};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Territories and zones (département or région), in the order nodes get them.
pub const TERRITORIES: [(&str, &str); 7] = [
    ("Commune de Plougastel", "29"),
    ("Archives départementales du Finistère", "29"),
    ("Région Bretagne", "R53"),
    ("Archives départementales des Côtes-d'Armor", "22"),
    ("Commune de Quimper", "29"),
    ("Archives départementales du Morbihan", "56"),
    ("Rennes Métropole", "35"),
];

/// The passphrase of recovery kits exported by the cluster.
pub const KIT_PASSPHRASE: &str = "correct horse battery staple, Plougastel";

/// How a cluster is built. [`Default`] gives fast schedules for tests.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `[federation] replication_factor`: copies, the origin's included.
    pub replication_factor: u32,
    pub replication_interval_secs: u64,
    pub anti_entropy_interval_secs: u64,
    pub challenge_interval_secs: u64,
    pub scrub_interval_secs: u64,
    pub holder_grace_secs: u64,
    pub witness_interval_secs: u64,
    /// Top-level `checkpoint_interval_secs`.
    pub checkpoint_interval_secs: u64,
    /// `--offer` of every peer entry (e.g. "500G").
    pub offer: String,
    /// (territory, zone) of each node; [`TERRITORIES`] by default.
    pub territories: Vec<(String, String)>,
    /// More top-level TOML lines (before the `[federation]` table).
    pub extra_config: String,
    /// More lines inside the `[federation]` table (e.g. `bandwidth_limit_mib_s = 8`).
    pub extra_federation: String,
    /// Per node (by index; missing: nothing): more top-level lines, and more tables after
    /// `[federation]` (e.g. `blob_store = "s3"` and its `[s3]` table).
    pub node_extra: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replication_factor: 3,
            replication_interval_secs: 1,
            anti_entropy_interval_secs: 2,
            challenge_interval_secs: 2,
            scrub_interval_secs: 2,
            holder_grace_secs: 5,
            witness_interval_secs: 1,
            checkpoint_interval_secs: 1,
            offer: "500G".to_string(),
            territories: TERRITORIES
                .iter()
                .map(|(t, z)| (t.to_string(), z.to_string()))
                .collect(),
            extra_config: String::new(),
            extra_federation: String::new(),
            node_extra: Vec::new(),
        }
    }
}

/// One small record for [`TestCluster::ingest_many`].
#[derive(Debug, Clone)]
pub struct SmallRecord {
    pub title: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// n federated nodes on loopback, each link through its own proxy.
pub struct TestCluster {
    // Dropped in this order: processes first, then the proxies, then the directory.
    nodes: Vec<TestNode>,
    /// `links[a][b]`: the proxy node `a` uses to reach node `b` (None on the diagonal).
    links: Vec<Vec<Option<Proxy>>>,
    /// Each node's federation listener.
    listen: Vec<SocketAddr>,
    pub options: ClusterOptions,
    root: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("root", &self.root.path())
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.node_id).collect::<Vec<_>>(),
            )
            .field("listen", &self.listen)
            .finish()
    }
}

/// A free loopback port (bound then released; the node binds it right after).
/// A free loopback port for a node to bind right after. Picked at random below the
/// kernel's ephemeral range, which bind(0) and outgoing connections draw from: a port the
/// kernel handed out would be released here and could be handed to another test's
/// connection before the node binds it (seen as "Address already in use" under CI load).
pub fn free_port() -> u16 {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut rng = rand::thread_rng();
    if low > 12_000 {
        for _ in 0..100 {
            let port = rng.gen_range(10_000..low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` every 250 ms until it returns true; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    wait_for(
        timeout,
        what,
        || if f() { Ok(()) } else { Err(String::new()) },
    )
}

/// Polls `f` every 250 ms until it returns `Ok`; panics after `timeout` naming `what` and
/// the last state `f` described in its `Err`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() >= timeout {
                    panic!(
                        "timed out after {:.0?} waiting for {what}{}{last}",
                        timeout,
                        if last.is_empty() { "" } else { "; last seen: " }
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs a command with its output in files, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration, scratch: &Path) -> Output {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out_path = scratch.join(format!("cmd-{n}.out"));
    let err_path = scratch.join(format!("cmd-{n}.err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    let status: ExitStatus = loop {
        if let Some(s) = child.try_wait().expect("wait for the command") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl TestCluster {
    /// Creates, configures and starts `n` nodes, wires every pair through proxies, and
    /// waits until every node reaches every other.
    pub fn start(n: usize, options: ClusterOptions) -> TestCluster {
        assert!(n >= 1, "a cluster needs a node");
        assert!(
            n <= options.territories.len(),
            "{n} nodes but {} territories in the options",
            options.territories.len()
        );
        let root = tempfile::tempdir().expect("temporary directory");
        let mut nodes = Vec::with_capacity(n);
        let mut listen = Vec::with_capacity(n);
        for i in 0..n {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("socket address");
            let node = TestNode::init_with(
                root.path(),
                &format!("node{i}"),
                &options.territories[i].0,
                &["--peer-listen", &addr.to_string()],
            )
            .unwrap_or_else(|e| panic!("init node {i}: {e:#}"));
            nodes.push(node);
            listen.push(addr);
        }
        let mut c = TestCluster {
            nodes,
            links: Vec::new(),
            listen,
            options,
            root,
        };
        for i in 0..n {
            // A port free when picked may be taken before the node binds it (tests run in
            // parallel): then the node is started again on another one.
            let mut attempts = 0;
            loop {
                c.write_config(i);
                match c.nodes[i].start() {
                    Ok(()) => break,
                    Err(e)
                        if attempts < 5 && format!("{e:#}").contains("Address already in use") =>
                    {
                        attempts += 1;
                        c.listen[i] = format!("127.0.0.1:{}", free_port())
                            .parse()
                            .expect("socket address");
                    }
                    Err(e) => panic!("start node {i}: {e:#}"),
                }
            }
        }
        // Proxies after the nodes bound their listeners, so no proxy takes a node's port.
        c.links = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| {
                        (a != b).then(|| {
                            Proxy::start(c.listen[b])
                                .unwrap_or_else(|e| panic!("proxy {a}->{b}: {e}"))
                        })
                    })
                    .collect()
            })
            .collect();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    c.add_peer(a, b);
                }
            }
        }
        c.wait_until(
            Duration::from_secs(60),
            "every node to reach every peer",
            |c| (0..n).all(|i| c.unreachable_peers(i).is_empty()),
        );
        c
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The cluster's scratch directory (files to ingest, kits, restored data...).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn node(&self, i: usize) -> &TestNode {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut TestNode {
        &mut self.nodes[i]
    }

    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].node_id
    }

    /// The index of the node with this ID.
    pub fn index_of(&self, node_id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.node_id == node_id)
    }

    pub fn territory(&self, i: usize) -> &str {
        &self.options.territories[i].0
    }

    pub fn zone(&self, i: usize) -> &str {
        &self.options.territories[i].1
    }

    /// Node `i`'s own federation listener (not through a proxy).
    pub fn listen_addr(&self, i: usize) -> SocketAddr {
        self.listen[i]
    }

    /// The proxy node `a` goes through to reach node `b`.
    pub fn link(&self, a: usize, b: usize) -> &Proxy {
        self.links[a][b]
            .as_ref()
            .unwrap_or_else(|| panic!("no link from node {a} to itself"))
    }

    /// The address node `a` uses for node `b` (its proxy).
    pub fn peer_addr(&self, a: usize, b: usize) -> String {
        self.link(a, b).addr().to_string()
    }

    /// `<data>/archipel.toml` of node `i`, rewritten whole: its listener and the options.
    pub fn write_config(&self, i: usize) {
        let o = &self.options;
        let text = format!(
            "peer_listen = {listen:?}\n\
             checkpoint_interval_secs = {checkpoint}\n\
             {extra}\n\
             {node_top}\n\
             [federation]\n\
             replication_factor = {rf}\n\
             zone = {zone:?}\n\
             replication_interval_secs = {repl}\n\
             anti_entropy_interval_secs = {ae}\n\
             challenge_interval_secs = {chal}\n\
             scrub_interval_secs = {scrub}\n\
             holder_grace_secs = {grace}\n\
             witness_interval_secs = {witness}\n\
             {extra_fed}\n\
             {node_tables}\n",
            listen = self.listen[i].to_string(),
            checkpoint = o.checkpoint_interval_secs,
            extra = o.extra_config,
            node_top = o.node_extra.get(i).map_or("", |e| e.0.as_str()),
            rf = o.replication_factor,
            zone = self.zone(i),
            repl = o.replication_interval_secs,
            ae = o.anti_entropy_interval_secs,
            chal = o.challenge_interval_secs,
            scrub = o.scrub_interval_secs,
            grace = o.holder_grace_secs,
            witness = o.witness_interval_secs,
            extra_fed = o.extra_federation,
            node_tables = o.node_extra.get(i).map_or("", |e| e.1.as_str()),
        );
        let path = self.nodes[i].data.join("archipel.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    // --- processes ---------------------------------------------------------------------

    /// SIGKILL, as a crash or a power cut would.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// SIGTERM; the node must exit cleanly.
    pub fn stop(&mut self, i: usize) {
        let status = self.nodes[i]
            .stop()
            .unwrap_or_else(|e| panic!("stop node {i}: {e:#}"));
        assert!(status.success(), "node {i} exited with {status}");
    }

    pub fn start_node(&mut self, i: usize) {
        self.nodes[i]
            .start()
            .unwrap_or_else(|e| panic!("start node {i}: {e:#}"));
    }

    /// Stops (if running) and starts node `i`.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].pid().is_some() {
            self.stop(i);
        }
        self.start_node(i);
    }

    // --- peers and links ---------------------------------------------------------------

    /// `archipel peer add` at `of` for `peer`, through their proxy.
    pub fn add_peer(&self, of: usize, peer: usize) {
        self.nodes[of].cli_ok(&[
            "peer",
            "add",
            "--id",
            self.id(peer),
            "--address",
            &self.peer_addr(of, peer),
            "--territory",
            self.territory(peer),
            "--zone",
            self.zone(peer),
            "--offer",
            &self.options.offer,
        ]);
    }

    /// `archipel peer remove` at `of`: `peer` is unpinned for good.
    pub fn remove_peer(&self, of: usize, peer: usize) {
        self.nodes[of].cli_ok(&["peer", "remove", self.id(peer)]);
    }

    /// Indexes of the pinned peers that node `i` cannot reach now (`peer ls`).
    pub fn unreachable_peers(&self, i: usize) -> Vec<String> {
        let v = self.nodes[i].cli_json(&["peer", "ls"]);
        v.as_array()
            .unwrap_or_else(|| panic!("peer ls of node {i}: not an array: {v}"))
            .iter()
            .filter(|p| p["reachable"] != true)
            .map(|p| format!("{} ({})", p["node_id"], p["error"]))
            .collect()
    }

    /// Cuts both directions between `a` and `b`: connections reset, new ones refused.
    pub fn partition(&self, a: usize, b: usize) {
        self.link(a, b).partition();
        self.link(b, a).partition();
    }

    /// Silently drops every byte between `a` and `b`, closing nothing.
    pub fn blackhole(&self, a: usize, b: usize) {
        self.link(a, b).blackhole();
        self.link(b, a).blackhole();
    }

    /// Undoes [`Self::partition`] or [`Self::blackhole`] between `a` and `b`.
    pub fn heal(&self, a: usize, b: usize) {
        self.link(a, b).heal();
        self.link(b, a).heal();
    }

    /// Bytes that went between `a` and `b`, both directions, both links.
    pub fn bytes_between(&self, a: usize, b: usize) -> u64 {
        self.link(a, b).counts().total() + self.link(b, a).counts().total()
    }

    // --- waiting -----------------------------------------------------------------------

    /// Polls `f` until true; panics naming `what` after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut f: impl FnMut(&Self) -> bool) {
        wait_until(timeout, what, || f(self))
    }

    // --- the federation, through the CLI -------------------------------------------------

    /// `archipel status RECORD --json` at node `i`.
    pub fn record_status(&self, i: usize, record: &str) -> Value {
        self.nodes[i].cli_json(&["status", record])
    }

    /// Node IDs of the receipted holders of `record` outside node `i` (its origin).
    pub fn holders(&self, i: usize, record: &str) -> Vec<String> {
        holder_ids(&self.record_status(i, record))
    }

    /// Node indexes of the holders of `record` (panics on a holder outside the cluster).
    pub fn holder_indexes(&self, i: usize, record: &str) -> Vec<usize> {
        self.holders(i, record)
            .iter()
            .map(|h| {
                self.index_of(h)
                    .unwrap_or_else(|| panic!("holder {h} of {record} is not a cluster node"))
            })
            .collect()
    }

    /// `archipel federation --json` at node `i`.
    pub fn federation_report(&self, i: usize) -> Value {
        self.nodes[i].cli_json(&["federation"])
    }

    /// The entry for `peer` in node `i`'s federation report.
    pub fn peer_account(&self, i: usize, peer: usize) -> Value {
        let r = self.federation_report(i);
        peer_entry(&r, self.id(peer))
            .unwrap_or_else(|| panic!("node {i}'s federation report lacks node {peer}: {r}"))
            .clone()
    }

    /// Waits until `record`, ingested at `origin`, has `copies - 1` receipted holders;
    /// returns their node IDs.
    pub fn wait_replicated(&self, origin: usize, record: &str, copies: usize) -> Vec<String> {
        self.wait_replicated_within(origin, record, copies, Duration::from_secs(120))
    }

    pub fn wait_replicated_within(
        &self,
        origin: usize,
        record: &str,
        copies: usize,
        timeout: Duration,
    ) -> Vec<String> {
        wait_for(
            timeout,
            &format!(
                "record {record} of node {origin} to have {} receipted holders",
                copies - 1
            ),
            || {
                let s = self.record_status(origin, record);
                let h = holder_ids(&s);
                if h.len() == copies - 1 {
                    Ok(h)
                } else {
                    Err(s.to_string())
                }
            },
        )
    }

    // --- ingest ------------------------------------------------------------------------

    /// Writes a pseudo-random file of `size` bytes under the cluster's directory and
    /// ingests it at node `i`; returns the record ID and the bytes.
    pub fn ingest_random(
        &self,
        i: usize,
        size: usize,
        seed: u64,
        title: &str,
    ) -> (String, Vec<u8>) {
        let dir = self.root().join("files");
        std::fs::create_dir_all(&dir).expect("files directory");
        let path = dir.join(format!("piece-{seed}.bin"));
        crate::random_file(&path, size, seed).expect("write random file");
        let bytes = std::fs::read(&path).expect("read back the random file");
        let id = self.nodes[i].ingest(&[&path], title, &[]);
        (id, bytes)
    }

    /// Ingests many small one-file records at node `i` over one admin connection (the
    /// CLI's own gRPC calls, without a process per record); returns their IDs in order.
    pub fn ingest_many(&self, i: usize, records: &[SmallRecord]) -> Vec<String> {
        use archipel_proto::v1::archive_client::ArchiveClient;
        use archipel_proto::v1::{
            Commit, FileHeader, IngestRequest, RecordMetadata, ingest_request::Item,
        };
        let data = self.nodes[i].data.clone();
        crate::runtime().block_on(async {
            let channel = crate::admin_channel(&data).await;
            let mut client = ArchiveClient::new(channel);
            let mut ids = Vec::with_capacity(records.len());
            for r in records {
                let items = [
                    Item::Metadata(RecordMetadata {
                        title: r.title.clone(),
                        ..Default::default()
                    }),
                    Item::File(FileHeader {
                        name: r.file_name.clone(),
                        size: r.bytes.len() as u64,
                        media_type: String::new(),
                    }),
                    Item::Chunk(r.bytes.clone()),
                    Item::Commit(Commit {}),
                ];
                let stream = tokio_stream::iter(
                    items
                        .into_iter()
                        .map(|item| IngestRequest { item: Some(item) }),
                );
                let resp = client
                    .ingest(stream)
                    .await
                    .unwrap_or_else(|e| panic!("ingest {:?} at node {i}: {e}", r.title));
                ids.push(resp.into_inner().id);
            }
            ids
        })
    }

    /// Custody of many records at node `i` over one admin connection (the RPC behind
    /// `archipel status RECORD`): for each record, the holders' node IDs.
    pub fn holders_many(&self, i: usize, records: &[String]) -> Vec<Vec<String>> {
        use archipel_proto::v1::ShowRequest;
        use archipel_proto::v1::archive_client::ArchiveClient;
        let data = self.nodes[i].data.clone();
        crate::runtime().block_on(async {
            let channel = crate::admin_channel(&data).await;
            let mut client = ArchiveClient::new(channel);
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                let c = client
                    .custody(ShowRequest {
                        record_id: r.clone(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("custody of {r} at node {i}: {e}"))
                    .into_inner();
                out.push(c.holders.into_iter().map(|h| h.node_id).collect());
            }
            out
        })
    }

    // --- recovery ----------------------------------------------------------------------

    /// `archipel-node export-kit` of node `i` (running or not) to `out`, with
    /// [`KIT_PASSPHRASE`].
    pub fn export_kit(&self, i: usize, out: &Path) {
        let mut cmd = Command::new(bin("archipel-node"));
        cmd.args([
            "export-kit",
            "--data",
            p(&self.nodes[i].data),
            "--out",
            p(out),
        ])
        .env("ARCHIPEL_PASSPHRASE", KIT_PASSPHRASE);
        let o = run_with_timeout(cmd, Duration::from_secs(60), self.root());
        assert!(
            o.status.success(),
            "export-kit of node {i} failed ({}):\n{}",
            o.status,
            crate::stderr(&o)
        );
    }

    /// Kills node `i` and deletes its data directory, as ransomware would.
    pub fn wipe(&mut self, i: usize) {
        self.kill(i);
        let data = self.nodes[i].data.clone();
        std::fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("delete {}: {e}", data.display()));
    }

    /// `archipel-node restore --kit KIT --data <node i's data> --peer ADDR...` from the
    /// given peers (through node `i`'s proxies), then the config file is written again.
    /// Does not start the node. Returns the restore command's output (checked: success).
    pub fn restore(&mut self, i: usize, kit: &Path, from: &[usize]) -> Output {
        let data = self.nodes[i].data.clone();
        let mut cmd = Command::new(bin("archipel-node"));
        cmd.args(["restore", "--kit", p(kit), "--data", p(&data)])
            .env("ARCHIPEL_PASSPHRASE", KIT_PASSPHRASE)
            .env("ARCHIPEL_LOG", "info");
        for &j in from {
            cmd.args(["--peer", &self.peer_addr(i, j)]);
        }
        let o = run_with_timeout(cmd, Duration::from_secs(300), self.root());
        assert!(
            o.status.success(),
            "restore of node {i} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            crate::stdout(&o),
            crate::stderr(&o)
        );
        self.write_config(i);
        o
    }

    fn dump_logs(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            eprintln!(
                "----- node {i} ({}, {}) log, last lines -----\n{}",
                self.territory(i),
                n.node_id,
                tail(&n.log_text(), 60)
            );
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// The holders' node IDs in a `status RECORD --json` document (panics if it has none).
pub fn holder_ids(status: &Value) -> Vec<String> {
    status["holders"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no `holders` array: {status}"))
        .iter()
        .map(|h| {
            h["node_id"]
                .as_str()
                .unwrap_or_else(|| panic!("holder without node_id: {status}"))
                .to_string()
        })
        .collect()
}

/// The entry of `node_id` in a federation report's `peers`.
pub fn peer_entry<'a>(report: &'a Value, node_id: &str) -> Option<&'a Value> {
    report["peers"]
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == node_id)
}

/// A path's directory entries, sorted (for comparing restored directories).
pub fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    v.sort();
    v
}
