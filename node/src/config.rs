//! Node configuration: one serde `Config`, documented, with `validate()`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobStoreKind {
    Files,
    Sled,
    /// An S3-compatible object store, configured by the `[s3]` table.
    S3,
}

impl BlobStoreKind {
    /// The value `blob_store` takes in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            BlobStoreKind::Files => "files",
            BlobStoreKind::Sled => "sled",
            BlobStoreKind::S3 => "s3",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "files" => Some(BlobStoreKind::Files),
            "sled" => Some(BlobStoreKind::Sled),
            "s3" => Some(BlobStoreKind::S3),
            _ => None,
        }
    }
}

/// The `[s3]` table: the object store that holds blobs when `blob_store = "s3"`. The
/// credentials are not here (this file gets shared when asking for help): see
/// `credentials_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// URL of the S3 API, e.g. `https://s3.garage.example.fr` or `http://127.0.0.1:3900`.
    pub endpoint: String,
    /// The bucket; it must exist, and the key needs read, write and delete on it.
    pub bucket: String,
    /// The region the store signs requests for (Garage: its `s3_region`, often "garage").
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which Garage and most self-hosted
    /// stores want; false: virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Every object's key starts with this (several nodes can share a bucket).
    pub key_prefix: String,
    /// A TOML file with `access_key_id` and `secret_access_key` (mode 0600). Unset: the
    /// environment, `ARCHIPEL_S3_ACCESS_KEY_ID` and `ARCHIPEL_S3_SECRET_ACCESS_KEY`.
    pub credentials_file: Option<PathBuf>,
    /// Requests in flight at once (each holds at most one blob in memory).
    pub concurrency: u32,
    /// Longest time (seconds) for one request, body included.
    pub timeout_secs: u64,
    /// Longest time (seconds) to open a connection.
    pub connect_timeout_secs: u64,
    /// Retries of a request that timed out or got a 5xx answer, with exponential backoff.
    pub max_retries: u32,
    /// First backoff between retries, in milliseconds (doubled at each retry).
    pub retry_backoff_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "garage".into(),
            path_style: true,
            key_prefix: "archipel".into(),
            credentials_file: None,
            concurrency: 16,
            timeout_secs: 30,
            connect_timeout_secs: 5,
            max_retries: 4,
            retry_backoff_ms: 100,
        }
    }
}

impl S3Config {
    fn problems(&self, out: &mut Vec<String>) {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            out.push(format!(
                "s3.endpoint = {:?}: must be the http:// or https:// URL of the S3 API (blob_store = \"s3\")",
                self.endpoint
            ));
        }
        let b = &self.bucket;
        if !(3..=63).contains(&b.len())
            || !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        {
            out.push(format!(
                "s3.bucket = {b:?}: must be an S3 bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
            ));
        }
        if self.region.is_empty() {
            out.push("s3.region: must not be empty (Garage's default is \"garage\")".into());
        }
        let p = self.key_prefix.trim_matches('/');
        if p.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            && !p.is_empty()
        {
            out.push(format!(
                "s3.key_prefix = {:?}: must be path segments separated by single '/'",
                self.key_prefix
            ));
        }
        if !(1..=1024).contains(&self.concurrency) {
            out.push(format!(
                "s3.concurrency = {}: must be between 1 and 1024",
                self.concurrency
            ));
        }
        for (name, v) in [
            ("timeout_secs", self.timeout_secs),
            ("connect_timeout_secs", self.connect_timeout_secs),
        ] {
            if !(1..=3600).contains(&v) {
                out.push(format!("s3.{name} = {v}: must be between 1 and 3600"));
            }
        }
        if self.max_retries > 20 {
            out.push(format!(
                "s3.max_retries = {}: must be between 0 and 20",
                self.max_retries
            ));
        }
        if !(1..=60_000).contains(&self.retry_backoff_ms) {
            out.push(format!(
                "s3.retry_backoff_ms = {}: must be between 1 and 60000",
                self.retry_backoff_ms
            ));
        }
    }
}

/// Everything a node needs to run. Every field has a safe default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the node keeps its keys and its sled database.
    pub data_dir: PathBuf,
    /// Admin API Unix socket; default `<data_dir>/admin.sock` (mode 0600, no network access).
    pub admin_socket: Option<PathBuf>,
    /// sled page cache, in MiB. sled's own default lets RSS grow with the data; we bound it.
    pub cache_capacity_mib: u64,
    /// Where blobs live: "files" (one file per blob under `<data_dir>/blobs`, the default),
    /// "sled" (in the database: simple, but sled keeps values in memory) or "s3" (an
    /// S3-compatible object store, the `[s3]` table). `archipel-node migrate-blobs` moves
    /// them from one to another; a marker in the database then overrides this field.
    pub blob_store: BlobStoreKind,
    /// The object store of `blob_store = "s3"` (the `[s3]` table).
    pub s3: S3Config,
    /// Ciphertext is cut into blobs of this size (KiB) before storage.
    pub blob_size_kib: u32,
    /// Largest accepted record, in GiB (protects the disk from a runaway client).
    pub max_record_gib: u64,
    /// Free space (MiB) the node never writes into: an ingest that would go below it is
    /// refused, so the database always has room to clean up and restart.
    pub disk_reserve_mib: u64,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// How often (seconds) a checkpoint of the audit log is signed when the log has grown.
    pub checkpoint_interval_secs: u64,
    /// On SIGTERM, how long (seconds) admin requests in flight (ingests) and peers'
    /// transfers may take to finish; what has not committed by then is rolled back.
    pub shutdown_grace_secs: u64,
    /// HOST:PORT where other territories' nodes reach this one (mutual TLS, pinned peers
    /// only); unset: no federation listener.
    pub peer_listen: Option<String>,
    /// An RFC 3161 time-stamping authority (`http://host:port/path`); when set, every
    /// signed checkpoint is also timestamped by it.
    pub tsa_url: Option<String>,
    /// HOST:PORT of the citizen gateway (read-only HTTP server of communicable records);
    /// unset: no gateway. A bare `:PORT` (or `PORT`) listens on loopback (127.0.0.1).
    pub gateway_listen: Option<String>,
    /// PEM certificate chain of the gateway: with `gateway_tls_key`, the gateway serves
    /// HTTPS (TLS 1.3, rustls); without both, plain HTTP (meant for loopback, behind a
    /// reverse proxy).
    pub gateway_tls_cert: Option<PathBuf>,
    /// PEM private key of `gateway_tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub gateway_tls_key: Option<PathBuf>,
    /// Requests a second each client (IP address; IPv6 by /64) may make to the gateway on
    /// average; more are answered 429 with `Retry-After`. 0 switches the limit off (e.g.
    /// when a reverse proxy limits instead).
    pub gateway_rate_per_sec: u32,
    /// Requests a client may make at once before `gateway_rate_per_sec` applies (the size
    /// of its token bucket).
    pub gateway_burst: u32,
    /// Longest time (seconds) the gateway works on one request before answering 503; a
    /// download's body, once started, is not bounded by it.
    pub gateway_request_timeout_secs: u64,
    /// Trust the last address of `X-Forwarded-For` as the client's, for connections from
    /// loopback only (a reverse proxy on the same machine); otherwise every reader behind
    /// the proxy would share one rate limit.
    pub gateway_trust_forwarded_for: bool,
    /// Name Assigning Authority Number (5 digits) of this territory's ARK identifiers
    /// (`ark:/NAAN/<record id>`); unset: no ARK identifiers.
    pub ark_naan: Option<String>,
    /// HOST:PORT of the Prometheus `/metrics` endpoint (plain HTTP); unset: none. Keep it on
    /// loopback or a management network: it tells what each territory holds for which.
    pub metrics_listen: Option<String>,
    /// How this node takes part in the federation (the `[federation]` table).
    pub federation: FederationConfig,
}

/// The `[federation]` table: replication policy and the schedules of the background jobs
/// that keep copies alive (see ARCHITECTURE.md, "Federation").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Copies of each record, the origin's included (3: the origin and two peers).
    pub replication_factor: u32,
    /// This territory's zone (département or région code); placement keeps one copy
    /// outside it when a peer allows.
    pub zone: String,
    /// How often (seconds) the replicator looks for records lacking copies; new records
    /// are sent at once.
    pub replication_interval_secs: u64,
    /// Records sent to one holder in one batch (one durable commit at the holder).
    pub batch_records: u32,
    /// Records replicated at the same time.
    pub concurrency: u32,
    /// Outgoing replication bandwidth limit, MiB/s; 0 = unlimited.
    pub bandwidth_limit_mib_s: u64,
    /// How often (seconds) each origin–holder pair is reconciled (anti-entropy).
    pub anti_entropy_interval_secs: u64,
    /// How often (seconds) each holder is challenged to prove it keeps our blobs.
    pub challenge_interval_secs: u64,
    /// Blobs per challenge.
    pub challenge_blobs: u32,
    /// How often (seconds) this node re-reads and checks every blob it holds.
    pub scrub_interval_secs: u64,
    /// A holder unreachable for longer than this (seconds) is replaced.
    pub holder_grace_secs: u64,
    /// Days a lawfully eliminated record is still kept at this node when it holds a copy
    /// (from the tombstone's arrival), withdrawn but recoverable by hand should the
    /// elimination have been ordered from a compromised origin; then it is deleted and a
    /// signed deletion receipt goes back. 0: delete at once. At most 3650.
    pub deletion_quarantine_days: u32,
    /// Deletion requests from one origin within an hour that raise an alert at a holder.
    pub mass_change_alert: u32,
    /// How often (seconds) this node asks its peers to witness (cosign) its log.
    pub witness_interval_secs: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            replication_factor: 3,
            zone: String::new(),
            replication_interval_secs: 30,
            batch_records: 256,
            concurrency: 4,
            bandwidth_limit_mib_s: 0,
            anti_entropy_interval_secs: 3600,
            challenge_interval_secs: 3600,
            challenge_blobs: 8,
            scrub_interval_secs: 86_400,
            holder_grace_secs: 7 * 86_400,
            deletion_quarantine_days: 30,
            mass_change_alert: 10,
            witness_interval_secs: 60,
        }
    }
}

impl FederationConfig {
    fn problems(&self, out: &mut Vec<String>) {
        let f = &self;
        if !(1..=16).contains(&f.replication_factor) {
            out.push(format!(
                "federation.replication_factor = {}: must be between 1 and 16 (3 is usual)",
                f.replication_factor
            ));
        }
        for (name, v) in [
            ("replication_interval_secs", f.replication_interval_secs),
            ("anti_entropy_interval_secs", f.anti_entropy_interval_secs),
            ("challenge_interval_secs", f.challenge_interval_secs),
            ("scrub_interval_secs", f.scrub_interval_secs),
            ("holder_grace_secs", f.holder_grace_secs),
            ("witness_interval_secs", f.witness_interval_secs),
        ] {
            if !(1..=30 * 86_400).contains(&v) {
                out.push(format!(
                    "federation.{name} = {v}: must be between 1 and 2592000 (30 days)"
                ));
            }
        }
        if !(1..=4096).contains(&f.batch_records) {
            out.push(format!(
                "federation.batch_records = {}: must be between 1 and 4096",
                f.batch_records
            ));
        }
        if !(1..=64).contains(&f.concurrency) {
            out.push(format!(
                "federation.concurrency = {}: must be between 1 and 64",
                f.concurrency
            ));
        }
        if !(1..=1024).contains(&f.challenge_blobs) {
            out.push(format!(
                "federation.challenge_blobs = {}: must be between 1 and 1024",
                f.challenge_blobs
            ));
        }
        if f.deletion_quarantine_days > 3650 {
            out.push(format!(
                "federation.deletion_quarantine_days = {}: must be at most 3650 (10 years)",
                f.deletion_quarantine_days
            ));
        }
        if f.mass_change_alert == 0 {
            out.push("federation.mass_change_alert: must be at least 1".to_string());
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("archipel-data"),
            admin_socket: None,
            cache_capacity_mib: 64,
            blob_store: BlobStoreKind::Files,
            s3: S3Config::default(),
            blob_size_kib: 4096,
            max_record_gib: 1024,
            disk_reserve_mib: 256,
            log_json: false,
            checkpoint_interval_secs: 60,
            shutdown_grace_secs: 30,
            tsa_url: None,
            peer_listen: None,
            gateway_listen: None,
            gateway_tls_cert: None,
            gateway_tls_key: None,
            gateway_rate_per_sec: 20,
            gateway_burst: 100,
            gateway_request_timeout_secs: 30,
            gateway_trust_forwarded_for: false,
            ark_naan: None,
            metrics_listen: None,
            federation: FederationConfig::default(),
        }
    }
}

impl Config {
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: dir.into(),
            ..Default::default()
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reports every problem at once, each with the field and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            problems.push("data_dir: must not be empty; set it to a directory path".to_string());
        }
        if !(16..=1024 * 1024).contains(&self.cache_capacity_mib) {
            problems.push(format!(
                "cache_capacity_mib = {}: must be between 16 and 1048576",
                self.cache_capacity_mib
            ));
        }
        if !(64..=16 * 1024).contains(&self.blob_size_kib) {
            problems.push(format!(
                "blob_size_kib = {}: must be between 64 and 16384 (a few MiB is best)",
                self.blob_size_kib
            ));
        }
        if !(1..=3_600).contains(&self.shutdown_grace_secs) {
            problems.push(format!(
                "shutdown_grace_secs = {}: must be between 1 and 3600",
                self.shutdown_grace_secs
            ));
        }
        if !(1..=86_400).contains(&self.checkpoint_interval_secs) {
            problems.push(format!(
                "checkpoint_interval_secs = {}: must be between 1 and 86400",
                self.checkpoint_interval_secs
            ));
        }
        if let Some(url) = &self.tsa_url
            && !url.starts_with("http://")
        {
            problems.push(format!(
                "tsa_url = {url:?}: must be an http:// URL of an RFC 3161 time-stamping authority"
            ));
        }
        if self.max_record_gib == 0 {
            problems.push("max_record_gib: must be at least 1".to_string());
        }
        if let Some(address) = &self.gateway_listen
            && gateway_address(address).is_none()
        {
            problems.push(format!(
                "gateway_listen = {address:?}: must be HOST:PORT (e.g. \"127.0.0.1:8080\") or :PORT for loopback"
            ));
        }
        if self.gateway_tls_cert.is_some() != self.gateway_tls_key.is_some() {
            problems.push(
                "gateway_tls_cert and gateway_tls_key: set both (HTTPS) or neither (plain HTTP)"
                    .to_string(),
            );
        }
        if self.gateway_rate_per_sec > 100_000 {
            problems.push(format!(
                "gateway_rate_per_sec = {}: must be between 0 (no limit) and 100000",
                self.gateway_rate_per_sec
            ));
        }
        if !(1..=100_000).contains(&self.gateway_burst) {
            problems.push(format!(
                "gateway_burst = {}: must be between 1 and 100000",
                self.gateway_burst
            ));
        }
        if !(1..=3600).contains(&self.gateway_request_timeout_secs) {
            problems.push(format!(
                "gateway_request_timeout_secs = {}: must be between 1 and 3600",
                self.gateway_request_timeout_secs
            ));
        }
        if let Some(naan) = &self.ark_naan
            && !is_naan(naan)
        {
            problems.push(format!(
                "ark_naan = {naan:?}: must be the 5 digits assigned to this territory by the ARK Alliance (e.g. \"12345\")"
            ));
        }
        self.federation.problems(&mut problems);
        if self.blob_store == BlobStoreKind::S3 {
            self.s3.problems(&mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    pub fn admin_socket_path(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    pub fn blob_size(&self) -> usize {
        self.blob_size_kib as usize * 1024
    }

    /// The address the gateway binds, when it is switched on (see [`gateway_address`]).
    pub fn gateway_bind_address(&self) -> Option<String> {
        self.gateway_listen.as_deref().and_then(gateway_address)
    }
}

/// A Name Assigning Authority Number as this configuration accepts it: 5 ASCII digits.
pub fn is_naan(s: &str) -> bool {
    s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `HOST:PORT` as given, or `127.0.0.1:PORT` for `:PORT` and `PORT`: a gateway switched on
/// without a host stays on loopback, so plain HTTP is never exposed by accident.
pub fn gateway_address(listen: &str) -> Option<String> {
    let listen = listen.trim();
    let port_only = listen.strip_prefix(':').unwrap_or(listen);
    if port_only.parse::<u16>().is_ok() {
        return Some(format!("127.0.0.1:{port_only}"));
    }
    let (host, port) = listen.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() || host.chars().any(char::is_whitespace) {
        return None;
    }
    Some(listen.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn validate_reports_every_problem() {
        let c = Config {
            cache_capacity_mib: 1,
            blob_size_kib: 1,
            max_record_gib: 0,
            ..Default::default()
        };
        let ConfigError::Invalid(p) = c.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn the_documented_example_parses_and_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/config.example.toml");
        let c = Config::load(std::path::Path::new(path)).unwrap();
        c.validate().unwrap();
        assert_eq!(c.cache_capacity_mib, Config::default().cache_capacity_mib);
        assert_eq!(c.blob_size_kib, Config::default().blob_size_kib);
    }

    #[test]
    fn gateway_listen_defaults_to_loopback_and_tls_needs_both_files() {
        assert_eq!(gateway_address(":8080").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(gateway_address("8080").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            gateway_address("0.0.0.0:443").as_deref(),
            Some("0.0.0.0:443")
        );
        assert_eq!(gateway_address("[::1]:80").as_deref(), Some("[::1]:80"));
        assert_eq!(gateway_address("host"), None);
        assert_eq!(gateway_address("host:99999"), None);
        let c = Config {
            gateway_listen: Some("nowhere".into()),
            gateway_tls_cert: Some("cert.pem".into()),
            ..Default::default()
        };
        let ConfigError::Invalid(p) = c.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn gateway_limits_and_ark_naan_are_checked() {
        let c = Config {
            gateway_burst: 0,
            gateway_rate_per_sec: 1_000_000,
            gateway_request_timeout_secs: 0,
            ark_naan: Some("1234".into()),
            ..Default::default()
        };
        let ConfigError::Invalid(p) = c.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert_eq!(p.len(), 4, "{p:?}");
        let ok = Config {
            gateway_rate_per_sec: 0,
            ark_naan: Some("12345".into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        assert!(!is_naan("1234a") && !is_naan("123456") && is_naan("00000"));
    }

    #[test]
    fn s3_settings_are_checked_only_when_used() {
        let mut c = Config {
            s3: S3Config {
                concurrency: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        c.validate().unwrap();
        c.blob_store = BlobStoreKind::S3;
        let ConfigError::Invalid(p) = c.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert_eq!(p.len(), 3, "{p:?}"); // endpoint, bucket, concurrency
        assert!(p.iter().all(|p| p.starts_with("s3.")), "{p:?}");
        c.s3.endpoint = "http://127.0.0.1:3900".into();
        c.s3.bucket = "archipel-blobs".into();
        c.s3.concurrency = 8;
        c.validate().unwrap();
        let t: Config = toml::from_str(
            "blob_store = \"s3\"\n[s3]\nendpoint = \"http://h:1\"\nbucket = \"abc\"\npath_style = false\n",
        )
        .unwrap();
        assert!(!t.s3.path_style && t.s3.region == "garage");
        t.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = toml::from_str::<Config>("cache_capacity_mb = 3").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
