//! Abuse limits of the gateway (issue 5, point 9), as one middleware in front of every route:
//!
//! - a per-client rate limit: a token bucket per client address, in memory only, in a map
//!   bounded to [`MAX_CLIENTS`] entries; an empty bucket answers 429 with `Retry-After`;
//! - size limits: no request body anywhere except the OAI-PMH POST form, itself bounded to
//!   [`MAX_OAI_BODY`] (413); URIs over [`MAX_URI`] bytes and paths over [`MAX_PATH`] (414);
//! - a time limit on the work of each request (`gateway_request_timeout_secs`, 503);
//! - path checks before routing: NUL, encoded slashes or backslashes, `.` and `..`
//!   segments, malformed percent-encoding and non-UTF-8 names are a clean 400, whatever
//!   the route (no handler ever sees them);
//! - counters of answers by status class, in memory, exposed nowhere yet.
//!
//! Privacy (RGPD): a client address is only ever hashed, with a key drawn at start and never
//! stored, into the bucket map's key; it is never logged, written or kept in clear. The
//! header-read and idle-connection timeout is set on the connections (`server.rs`).

use super::{GatewayError, Shared};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients tracked at once; beyond, idle buckets are dropped first (a full bucket is the
/// same as none), then buckets chosen by [`evict_one`].
pub const MAX_CLIENTS: usize = 65_536;
/// Longest request target (path and query), in bytes.
pub const MAX_URI: usize = 8 * 1024;
/// Longest path, in bytes.
pub const MAX_PATH: usize = 2048;
/// Largest OAI-PMH POST form, in bytes: above `oai::args::MAX_QUERY` (whose larger forms
/// get OAI-PMH's own `badArgument`), far below anything that costs memory.
pub const MAX_OAI_BODY: usize = 16 * 1024;
/// Full sweeps of idle buckets happen at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Buckets looked at to choose one to evict when no bucket is idle.
const EVICTION_SAMPLE: usize = 32;

/// A client's token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<u64, Bucket>,
    last_sweep: Option<Instant>,
}

/// Token buckets by hashed client address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    /// Keyed with random keys at start: the map holds no address, and keys mean nothing
    /// after a restart.
    hasher: RandomState,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// `rate` tokens a second, `burst` at most; `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<Self> {
        Self::with_capacity(rate, burst, MAX_CLIENTS)
    }

    fn with_capacity(rate: u32, burst: u32, capacity: usize) -> Option<Self> {
        (rate > 0).then(|| RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(1),
            hasher: RandomState::new(),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                last_sweep: None,
            }),
        })
    }

    /// The bucket key of an address: IPv4 as it is, IPv6 by its /64 prefix (one subscriber
    /// usually holds a whole /64, and could otherwise take a fresh bucket for every request).
    fn key(&self, ip: IpAddr) -> u64 {
        match ip {
            IpAddr::V4(v4) => self.hasher.hash_one(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.hasher.hash_one(v4.octets()),
                None => {
                    let o = v6.octets();
                    self.hasher.hash_one([&[6u8][..], &o[..8]].concat())
                }
            },
        }
    }

    /// Takes one token of `ip`'s bucket; `Err(seconds)` until the next token when empty.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let key = self.key(ip);
        // A panic elsewhere while holding the lock leaves consistent buckets (plain data).
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !b.map.contains_key(&key) && b.map.len() >= self.capacity {
            self.make_room(&mut b, now);
        }
        let bucket = b.map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / self.rate)
                .ceil()
                .clamp(1.0, 3600.0);
            // In 1..=3600 by the clamp: the conversion is exact.
            Err(wait as u64)
        }
    }

    fn is_idle(&self, bucket: &Bucket, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens + elapsed * self.rate >= self.burst
    }

    fn make_room(&self, b: &mut Buckets, now: Instant) {
        let due = b
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
        if due {
            b.last_sweep = Some(now);
            b.map.retain(|_, bucket| !self.is_idle(bucket, now));
        }
        if b.map.len() >= self.capacity {
            evict_one(&mut b.map);
        }
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

/// Drops the least recently used of a few buckets (the map's order is arbitrary, keyed at
/// random): constant time, and a flood of new addresses mostly evicts its own buckets, which
/// are the most numerous. An evicted client starts again with a full bucket.
fn evict_one(map: &mut HashMap<u64, Bucket>) {
    if let Some(key) = map
        .iter()
        .take(EVICTION_SAMPLE)
        .min_by_key(|(_, b)| b.at)
        .map(|(k, _)| *k)
    {
        map.remove(&key);
    }
}

/// Answers counted by status class (1xx to 5xx), and how many were refused by the rate
/// limit. In memory; published by `/metrics` (`crate::metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    by_class: [AtomicU64; 5],
    rate_limited: AtomicU64,
}

impl Counters {
    fn record(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        if let Some(c) = self.by_class.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers by class (index 0 is 1xx), and the 429s among them.
    pub fn snapshot(&self) -> ([u64; 5], u64) {
        let mut out = [0; 5];
        for (o, c) in out.iter_mut().zip(&self.by_class) {
            *o = c.load(Ordering::Relaxed);
        }
        (out, self.rate_limited.load(Ordering::Relaxed))
    }
}

/// The middleware's state.
#[derive(Debug)]
pub struct Limits {
    pub rate: Option<RateLimiter>,
    pub trust_forwarded_for: bool,
    pub timeout: Duration,
    /// Shared with `/metrics` (the archive's `metrics.gateway`).
    pub counters: std::sync::Arc<Counters>,
    /// For error pages (the territory's name in the layout).
    pub gateway: Shared,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config, gateway: Shared) -> Self {
        Limits {
            rate: RateLimiter::new(c.gateway_rate_per_sec, c.gateway_burst),
            trust_forwarded_for: c.gateway_trust_forwarded_for,
            timeout: Duration::from_secs(c.gateway_request_timeout_secs),
            counters: gateway.archive.metrics.gateway.clone(),
            gateway,
        }
    }

    fn error(&self, path: &str, e: GatewayError) -> Response {
        let e = crate::Error::from(e);
        if path.starts_with("/api/") {
            super::api::json_error(&e)
        } else {
            super::pages::error_page(&self.gateway, &e)
        }
    }

    /// What to refuse before routing.
    fn check(&self, req: &Request) -> Result<(), GatewayError> {
        if let (Some(rate), Some(ip)) = (&self.rate, self.client(req)) {
            rate.check(ip, Instant::now())
                .map_err(|retry_after| GatewayError::TooManyRequests { retry_after })?;
        }
        let uri = req.uri();
        let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if target > MAX_URI || uri.path().len() > MAX_PATH {
            return Err(GatewayError::UriTooLong);
        }
        check_path(uri.path())?;
        check_body(req.method(), uri.path(), req.headers())
    }

    /// The client's address: the peer's, or behind a trusted local proxy the last
    /// `X-Forwarded-For` entry (the one that proxy added; earlier ones are the client's say).
    fn client(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
        if self.trust_forwarded_for && peer.is_loopback() {
            let forwarded = req
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|s| s.trim().parse::<IpAddr>().ok());
            if let Some(ip) = forwarded {
                return Some(ip);
            }
        }
        Some(peer)
    }
}

fn bad(msg: &str) -> GatewayError {
    GatewayError::BadRequest(msg.to_string())
}

/// Refuses, in every segment of a raw path: NUL, an encoded `/` or `\` (which would let a
/// file name or ID smuggle a path), `.` and `..` (raw or encoded), malformed
/// percent-encoding and what does not decode to UTF-8.
pub fn check_path(path: &str) -> Result<(), GatewayError> {
    for seg in path.split('/') {
        let b = seg.as_bytes();
        let mut decoded = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = |c: u8| char::from(c).to_digit(16);
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(bad("l'adresse contient un encodage « % » invalide"));
                };
                // Two hex digits: at most 255.
                decoded.push(u8::try_from(h * 16 + l).unwrap_or(u8::MAX));
                i += 3;
            } else {
                decoded.push(b[i]);
                i += 1;
            }
        }
        if decoded.contains(&0) {
            return Err(bad("l'adresse contient un caractère nul"));
        }
        if decoded.len() != b.len() && (decoded.contains(&b'/') || decoded.contains(&b'\\')) {
            return Err(bad("l'adresse contient une barre oblique encodée"));
        }
        if decoded == b"." || decoded == b".." {
            return Err(bad("l'adresse contient un segment « . » ou « .. »"));
        }
        if std::str::from_utf8(&decoded).is_err() {
            return Err(bad(
                "l'adresse contient des caractères qui ne sont pas de l'UTF-8",
            ));
        }
    }
    Ok(())
}

/// No body except a bounded OAI-PMH POST form. A GET with a body is refused rather than
/// ignored, so that no request smuggles data past the routes.
fn check_body(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), GatewayError> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let has_body = chunked || length.is_some_and(|n| n > 0);
    if !has_body {
        return Ok(());
    }
    if method == Method::POST && path == "/oai" {
        // A chunked body is bounded as it is read (`DefaultBodyLimit` on the router).
        if length.is_some_and(|n| n > MAX_OAI_BODY as u64) {
            return Err(GatewayError::PayloadTooLarge);
        }
        return Ok(());
    }
    Err(GatewayError::PayloadTooLarge)
}

/// The middleware: counts every answer, refuses what [`Limits::check`] refuses, bounds the
/// time to the response head.
pub async fn guard(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let response = match limits.check(&req) {
        // OAI-PMH's own flow control is 503 with Retry-After (the specification, 3.1.2.1),
        // which harvesters such as Sickle know to wait on; 429 would end a harvest.
        Err(e @ GatewayError::TooManyRequests { .. }) if path == "/oai" => {
            let mut r = limits.error(&path, e);
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
        Err(e) => limits.error(&path, e),
        Ok(()) => match tokio::time::timeout(limits.timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => limits.error(&path, GatewayError::Timeout),
        },
    };
    limits.counters.record(response.status());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_the_rate() {
        let r = RateLimiter::new(2, 3).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            r.check(ip, t).unwrap();
        }
        assert_eq!(r.check(ip, t), Err(1));
        r.check(other, t).unwrap();
        // Half a second refills one token at 2 a second.
        r.check(ip, t + Duration::from_millis(500)).unwrap();
        assert!(r.check(ip, t + Duration::from_millis(500)).is_err());
        assert!(RateLimiter::new(0, 3).is_none());
    }

    #[test]
    fn ipv6_clients_share_a_bucket_by_slash_64_and_mapped_v4_is_v4() {
        let r = RateLimiter::new(1, 1).unwrap();
        let t = Instant::now();
        r.check("2001:db8:1:2::1".parse().unwrap(), t).unwrap();
        assert!(r.check("2001:db8:1:2::ffff".parse().unwrap(), t).is_err());
        r.check("2001:db8:1:3::1".parse().unwrap(), t).unwrap();
        r.check("198.51.100.7".parse().unwrap(), t).unwrap();
        assert!(r.check("::ffff:198.51.100.7".parse().unwrap(), t).is_err());
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_busy_clients() {
        let r = RateLimiter::with_capacity(1, 2, 100).unwrap();
        let t = Instant::now();
        let busy: IpAddr = "203.0.113.1".parse().unwrap();
        r.check(busy, t).unwrap();
        r.check(busy, t).unwrap();
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = r.check(ip, t + Duration::from_millis(u64::from(i)));
            assert!(r.tracked() <= 100);
        }
        // Idle buckets were swept: the busy client's bucket is full again (10 s later).
        let later = t + Duration::from_secs(10);
        r.check(busy, later).unwrap();
    }

    #[test]
    fn paths_with_nul_encoded_slashes_dot_segments_or_bad_encoding_are_refused() {
        for ok in [
            "/",
            "/records/01J0000000000000000000000A/files/D%C3%A9lib%C3%A9ration%201998.pdf",
            "/tile/0/000.p/5",
            "/ark:/12345/01J0000000000000000000000A",
            "/records/x/files/a..b",
        ] {
            check_path(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "/records/%00",
            "/records/x/files/a%00b",
            "/records/x/files/..%2Fsecret",
            "/records/x/files/a%5Cb",
            "/records/x/files/..",
            "/records/%2e%2E/files/x",
            "/records/./x",
            "/records/x/files/a%zz",
            "/records/x/files/a%C3",
            "/records/x/files/%ff",
            "/x%",
        ] {
            assert!(check_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bodies_are_refused_except_a_bounded_oai_form() {
        let mut h = HeaderMap::new();
        check_body(&Method::GET, "/", &h).unwrap();
        h.insert(header::CONTENT_LENGTH, "0".parse().unwrap());
        check_body(&Method::GET, "/", &h).unwrap();
        h.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        assert!(check_body(&Method::GET, "/", &h).is_err());
        assert!(check_body(&Method::POST, "/api/records", &h).is_err());
        check_body(&Method::POST, "/oai", &h).unwrap();
        h.insert(header::CONTENT_LENGTH, "1000000".parse().unwrap());
        assert!(check_body(&Method::POST, "/oai", &h).is_err());
        let mut chunked = HeaderMap::new();
        chunked.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(check_body(&Method::GET, "/records/x", &chunked).is_err());
    }

    #[test]
    fn counters_count_by_class() {
        let c = Counters::default();
        c.record(StatusCode::OK);
        c.record(StatusCode::TOO_MANY_REQUESTS);
        c.record(StatusCode::NOT_FOUND);
        c.record(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(c.snapshot(), ([0, 1, 0, 2, 1], 1));
    }
}
