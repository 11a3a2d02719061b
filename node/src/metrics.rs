//! Prometheus metrics (text exposition format 0.0.4), served at `/metrics` on
//! `metrics_listen` (off by default; a loopback address is the safe choice: the figures say
//! how much each territory holds for which peer).
//!
//! Gauges are read from the store when scraped; counters and latency histograms are kept in
//! memory by the code they measure ([`Metrics`], in the `Archive`). No label ever carries a
//! citizen's address or a record's title: labels are node IDs and status classes.

use crate::archive::Archive;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A latency histogram (cumulative when rendered, as Prometheus wants).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| s <= *b)
            && let Some(b) = self.buckets.get(i)
        {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BOUNDS.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// What the node counts as it runs.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ingest_seconds: Histogram,
    pub get_seconds: Histogram,
    /// Gateway answers by status class, and 429s (kept by the gateway's middleware).
    pub gateway: Arc<crate::gateway::limits::Counters>,
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition text. Blocking (reads sled): call it off the async threads.
pub fn render(archive: &Archive) -> crate::Result<String> {
    let mut out = String::new();
    let s = &archive.store;
    gauge(
        &mut out,
        "archipel_records",
        "Records archived by this node.",
        s.record_count()?,
    );
    gauge(
        &mut out,
        "archipel_blobs",
        "Blobs of this node's records.",
        s.blob_count()?,
    );
    gauge(
        &mut out,
        "archipel_stored_bytes",
        "Ciphertext bytes of this node's records.",
        s.blob_bytes()?,
    );
    gauge(
        &mut out,
        "archipel_log_entries",
        "Events in the audit log.",
        archive.log.view()?.size(),
    );
    let peers = archive.peers.list()?;
    let grace = archive.config.federation.holder_grace_secs;
    let now = crate::federation::custody::unix_now();
    let mut held_for = String::new();
    let mut held_by = String::new();
    let mut seen = String::new();
    let mut challenge = String::new();
    let mut gone = String::new();
    for p in &peers {
        let id = &p.node_id;
        let held = archive.holding.totals(id)?;
        let (records, bytes) = archive.custody.totals_at(id)?;
        let state = archive.custody.state(id)?;
        let _ = writeln!(
            held_for,
            "archipel_held_for_peer_records{{peer=\"{id}\"}} {}",
            held.records
        );
        let _ = writeln!(
            held_for,
            "archipel_held_for_peer_bytes{{peer=\"{id}\"}} {}",
            held.bytes
        );
        let _ = writeln!(
            held_by,
            "archipel_held_by_peer_records{{peer=\"{id}\"}} {records}"
        );
        let _ = writeln!(
            held_by,
            "archipel_held_by_peer_bytes{{peer=\"{id}\"}} {bytes}"
        );
        // Replication lag per peer: how long since it last took part (receipts, challenges).
        let lag = if state.last_seen == 0 {
            -1
        } else {
            now.saturating_sub(state.last_seen) as i64
        };
        let _ = writeln!(
            seen,
            "archipel_peer_seconds_since_seen{{peer=\"{id}\"}} {lag}"
        );
        let failed = u8::from(state.last_challenge_outcome == "failed");
        let _ = writeln!(
            challenge,
            "archipel_peer_challenge_failed{{peer=\"{id}\"}} {failed}"
        );
        let is_gone = u8::from(archive.custody.is_gone(id, grace)?);
        let _ = writeln!(gone, "archipel_peer_gone{{peer=\"{id}\"}} {is_gone}");
    }
    header(
        &mut out,
        "archipel_held_for_peer_records",
        "Records this node keeps for a peer.",
        "gauge",
    );
    header(
        &mut out,
        "archipel_held_for_peer_bytes",
        "Bytes this node keeps for a peer.",
        "gauge",
    );
    out.push_str(&held_for);
    header(
        &mut out,
        "archipel_held_by_peer_records",
        "This node's records a peer receipted.",
        "gauge",
    );
    header(
        &mut out,
        "archipel_held_by_peer_bytes",
        "Bytes of this node's records a peer receipted.",
        "gauge",
    );
    out.push_str(&held_by);
    header(
        &mut out,
        "archipel_peer_seconds_since_seen",
        "Seconds since the peer last answered (-1: never): replication lag.",
        "gauge",
    );
    out.push_str(&seen);
    header(
        &mut out,
        "archipel_peer_challenge_failed",
        "1 if the peer's latest proof-of-storage challenge failed.",
        "gauge",
    );
    out.push_str(&challenge);
    header(
        &mut out,
        "archipel_peer_gone",
        "1 if the peer is unreachable beyond the grace period.",
        "gauge",
    );
    out.push_str(&gone);
    let (classes, limited) = archive.metrics.gateway.snapshot();
    header(
        &mut out,
        "archipel_gateway_responses_total",
        "Gateway answers by status class.",
        "counter",
    );
    for (i, n) in classes.iter().enumerate() {
        let _ = writeln!(
            out,
            "archipel_gateway_responses_total{{class=\"{}xx\"}} {n}",
            i + 1
        );
    }
    header(
        &mut out,
        "archipel_gateway_rate_limited_total",
        "Gateway answers refused by the rate limit.",
        "counter",
    );
    let _ = writeln!(out, "archipel_gateway_rate_limited_total {limited}");
    archive.metrics.ingest_seconds.render(
        "archipel_ingest_seconds",
        "Time from an ingest's first message to its acknowledgement.",
        &mut out,
    );
    archive.metrics.get_seconds.render(
        "archipel_get_seconds",
        "Time to read a file (or range) back, verified.",
        &mut out,
    );
    Ok(out)
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(
    archive: Arc<Archive>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let a = archive.clone();
            async move {
                match tokio::task::spawn_blocking(move || render(&a)).await {
                    Ok(Ok(text)) => (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_count_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render("x", "help", &mut out);
        assert!(out.contains("x_bucket{le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.05\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"60\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count 3"), "{out}");
    }
}
