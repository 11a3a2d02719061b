//! The citizen gateway (issue 5): a read-only HTTP server inside the node, switched on in the
//! configuration (`gateway_listen`), serving communicable records to the public.
//!
//! One module a concept; each exposes `routes()`, merged here:
//! - `server`: the listener, optional TLS (rustls, aws-lc-rs), graceful shutdown;
//! - `access`: the one place that decides what a citizen may see of a record (from
//!   `record::communicability`, at request time);
//! - `index`: the in-memory search index of public metadata, rebuilt when records change;
//! - `query`: parsing of search query strings (outside input);
//! - `range`: parsing of `Range` headers (outside input);
//! - `html`: escaping and the page layout (French, RGAA basics);
//! - `pages`: the HTML pages (home and search, record, communicability);
//! - `api`: the JSON API and its OpenAPI document;
//! - `download`: streamed file downloads; `cache`: small files kept decrypted, bounded;
//! - `certificate`: deposit certificates (C2SP tlog-proof);
//! - `oai`, `tiles`: OAI-PMH and the public log (built separately);
//! - `limits`: per-client rate limit, size and time limits, path checks, status counters;
//! - `ark`: permanent links (`ark:/NAAN/<record id>`).
//!
//! The gateway keeps no state of its own: everything it shows is read from the archive at
//! request time (the search index is a cache of it). It never writes to the store or the
//! audit log, and never logs who reads what (RGPD).

pub mod access;
pub mod api;
pub mod ark;
pub mod cache;
pub mod certificate;
pub mod download;
pub mod html;
pub mod index;
pub mod limits;
pub mod oai;
pub mod pages;
pub mod query;
pub mod range;
pub mod server;
pub mod tiles;

use crate::archive::Archive;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use std::sync::Arc;
use time::Date;

/// Shared state of every handler.
pub type State = Arc<Archive>;

/// State of this module's own handlers: the archive, the search index, the download slots.
#[derive(Debug)]
pub struct Gateway {
    pub archive: Arc<Archive>,
    pub index: index::SearchIndex,
    /// File reads running at once; each holds at most one blob and a few chunks in memory.
    pub downloads: Arc<tokio::sync::Semaphore>,
    /// Small files already decrypted (bounded; dropped whenever a record changes).
    pub files: cache::FileCache,
}

/// Downloads served at the same time (more get 503 with `Retry-After`): bounds the memory
/// of reads to about this many times (blob size + 1 MiB).
pub const MAX_DOWNLOADS: usize = 64;

pub type Shared = Arc<Gateway>;

/// What the gateway answers when it cannot serve a request (statuses: `Error::http_status`).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("not found")]
    NotFound,
    /// Lawfully eliminated (a record the public could see before): 410 Gone.
    #[error("record {record} was eliminated on {day}")]
    Eliminated { record: String, day: Date },
    #[error("record {record} is not communicable yet{}", opens.map(|d| format!(" (opens {d})")).unwrap_or_default())]
    NotCommunicable { record: String, opens: Option<Date> },
    /// The message is shown to the reader, in French.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("range not satisfiable for a file of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("record {0} is not covered by a signed checkpoint yet")]
    NotYetCertified(String),
    #[error("too many downloads at once")]
    Busy,
    /// The client's token bucket is empty (`limits`); retry after this many seconds.
    #[error("rate limit exceeded")]
    TooManyRequests { retry_after: u64 },
    /// A body where none is accepted, or a larger one than the OAI-PMH form allows.
    #[error("request body refused")]
    PayloadTooLarge,
    #[error("request URI too long")]
    UriTooLong,
    /// The request took longer than `gateway_request_timeout_secs`.
    #[error("request timed out")]
    Timeout,
    #[error("gateway TLS configuration: {0}")]
    Tls(String),
    #[error("gateway worker failed: {0}")]
    Worker(String),
}

/// Every route of the gateway.
pub fn router(archive: State) -> axum::Router {
    let gateway = Arc::new(Gateway {
        index: index::SearchIndex::default(),
        downloads: Arc::new(tokio::sync::Semaphore::new(MAX_DOWNLOADS)),
        files: cache::FileCache::default(),
        archive: archive.clone(),
    });
    // Build the index now rather than on the first search (when there is a runtime to do
    // it on; a router built outside one builds it at the first search).
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let warm = gateway.clone();
        rt.spawn(async move {
            if let Err(e) = warm.index.snapshot(&warm.archive).await {
                tracing::warn!(error = %e, "gateway: cannot build the search index");
            }
        });
    }
    let ours: axum::Router<State> = axum::Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .merge(download::routes())
        .merge(certificate::routes())
        .merge(ark::routes())
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(gateway.clone());
    let limits = Arc::new(limits::Limits::from_config(&archive.config, gateway));
    axum::Router::new()
        .merge(oai::routes())
        .merge(tiles::routes())
        .merge(ours)
        .with_state(archive)
        // Outermost: every request, routed or not, is limited and counted.
        .layer(axum::extract::DefaultBodyLimit::max(limits::MAX_OAI_BODY))
        .layer(axum::middleware::from_fn_with_state(limits, limits::guard))
}

/// Headers on every answer of this module: no scripts, styles from our own stylesheet
/// only, no framing, no sniffing, and no Referer leaking a reader's searches elsewhere.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    r
}

/// Runs a blocking read of the archive (sled, decryption) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GatewayError::Worker(e.to_string()))?
}

/// A record ID as the store writes them (a ULID: 26 Crockford base-32 characters); anything
/// else is answered 404 without touching the store.
pub fn is_record_id(id: &str) -> bool {
    id.len() == 26 && id.parse::<ulid::Ulid>().is_ok()
}

/// Characters left as they are in a URL path segment (RFC 3986 unreserved).
const PATH_SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The stable URL path of a record's file download.
pub fn file_path(record: &str, name: &str) -> String {
    format!(
        "/records/{record}/files/{}",
        percent_encoding::utf8_percent_encode(name, PATH_SAFE)
    )
}

/// A record's manifest and what the public may see of it today; 404 when nothing.
pub(crate) async fn load_visible(
    gw: &Shared,
    id: &str,
) -> crate::Result<(Arc<archipel_proto::manifest::Manifest>, access::Access)> {
    if !is_record_id(id) {
        return Err(GatewayError::NotFound.into());
    }
    let a = gw.archive.clone();
    let id = id.to_string();
    let m = blocking(move || find_manifest(&a, &id)).await?;
    let access = access::require_visible(&m.metadata, crate::clock::today())?;
    Ok((m, access))
}

/// A record's manifest: one of this node's own, or one another territory released to it
/// (its gateway then serves it when the origin is down).
pub(crate) fn find_manifest(
    archive: &Archive,
    id: &str,
) -> crate::Result<Arc<archipel_proto::manifest::Manifest>> {
    match archive.manifest_shared(id) {
        Err(crate::Error::Store(crate::store::StoreError::NotFound(_))) => {
            match crate::federation::release::find(archive, id)? {
                Some(r) => Ok(Arc::new(r.manifest)),
                None => match eliminated_day(archive, id) {
                    Some(day) => Err(GatewayError::Eliminated {
                        record: id.to_string(),
                        day,
                    }
                    .into()),
                    None => Err(crate::store::StoreError::NotFound(id.to_string()).into()),
                },
            }
        }
        other => other,
    }
}

/// The day a record that the public could see was eliminated here; `None` for any other
/// record (a closed record's elimination is as invisible as the record was).
fn eliminated_day(archive: &Archive, id: &str) -> Option<Date> {
    let state = archive.elimination(id).ok().flatten()?;
    if !state.oai_visible {
        return None;
    }
    let t = archipel_proto::tombstone::Tombstone::decode(&state.tombstone?.text).ok()?;
    t.time.get(..10).and_then(crate::clock::parse_date)
}

/// Where a record's blobs are: this node's store, or the origin's namespace here.
pub(crate) fn blobs_for(
    archive: &Archive,
    m: &archipel_proto::manifest::Manifest,
) -> crate::Result<Arc<dyn crate::store::BlobStore>> {
    if m.origin == archive.identity.node_id {
        Ok(archive.store.blobs.clone())
    } else {
        Ok(archive.holding.blobs_of(&m.origin)?)
    }
}

/// The territory that archived a record (the publisher, in Dublin Core terms).
pub(crate) fn publisher_of(archive: &Archive, m: &archipel_proto::manifest::Manifest) -> String {
    if m.origin == archive.identity.node_id {
        return archive.identity.territory.clone();
    }
    archive
        .peers
        .get(&m.origin)
        .ok()
        .flatten()
        .map(|p| p.territory)
        .unwrap_or_else(|| m.origin.clone())
}

/// What the reader is told, in French. Internal errors say nothing of the inside (they are
/// logged, without the reader's address).
pub fn public_message(e: &crate::Error) -> String {
    use crate::Error as E;
    match e {
        E::Gateway(GatewayError::NotCommunicable { opens: Some(d), .. }) => format!(
            "Ce document n'est pas encore communicable : il le sera à partir du {} (article L213-2 du Code du patrimoine).",
            html::date_fr(*d)
        ),
        E::Gateway(GatewayError::NotCommunicable { opens: None, .. }) => {
            "Ce document n'est pas communicable au public, et aucune date d'ouverture ne peut être calculée.".to_string()
        }
        E::Gateway(GatewayError::Eliminated { day, .. }) => format!(
            "Ce document a été éliminé le {}, au terme de sa durée d'utilité administrative, avec le visa des Archives départementales (article L212-2 du Code du patrimoine). Son élimination reste inscrite au journal public.",
            html::date_fr(*day)
        ),
        E::Gateway(GatewayError::BadRequest(m)) => format!("Requête invalide : {m}."),
        E::Gateway(GatewayError::RangeNotSatisfiable { .. })
        | E::Store(crate::store::StoreError::Range { .. }) => {
            "La plage d'octets demandée est en dehors du fichier.".to_string()
        }
        E::Gateway(GatewayError::NotYetCertified(_)) | E::Log(crate::log::LogError::NotSigned(_)) => {
            "Le certificat de dépôt de ce document sera disponible après la prochaine signature du journal (quelques minutes au plus). Réessayez plus tard.".to_string()
        }
        E::Gateway(GatewayError::Busy) => {
            "Trop de téléchargements sont en cours. Réessayez dans quelques secondes.".to_string()
        }
        E::Gateway(GatewayError::TooManyRequests { retry_after }) => format!(
            "Trop de requêtes en peu de temps depuis votre connexion. Réessayez dans {retry_after} seconde{}.",
            if *retry_after > 1 { "s" } else { "" }
        ),
        E::Gateway(GatewayError::PayloadTooLarge) => {
            "Cette adresse n'accepte pas de contenu envoyé (ou pas de cette taille).".to_string()
        }
        E::Gateway(GatewayError::UriTooLong) => "L'adresse demandée est trop longue.".to_string(),
        E::Gateway(GatewayError::Timeout) => {
            "La réponse a pris trop de temps. Réessayez dans quelques instants.".to_string()
        }
        _ if e.http_status() == axum::http::StatusCode::NOT_FOUND => {
            "Ce document ou cette page n'existe pas, ou n'est pas consultable.".to_string()
        }
        _ => "Une erreur interne empêche de répondre. Réessayez plus tard.".to_string(),
    }
}

/// Headers that go with some errors: when to retry, the size of a file for a 416.
pub(crate) fn error_headers(e: &crate::Error, r: &mut Response) {
    let h = r.headers_mut();
    match e {
        crate::Error::Gateway(GatewayError::Busy) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        crate::Error::Gateway(GatewayError::TooManyRequests { retry_after }) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        crate::Error::Gateway(GatewayError::Timeout) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        crate::Error::Gateway(GatewayError::NotYetCertified(_)) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        crate::Error::Gateway(GatewayError::RangeNotSatisfiable { size }) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        _ => {}
    }
}

/// Server-side trace of an error: the reader's address is never part of it.
pub(crate) fn log_error(e: &crate::Error) {
    if e.http_status() == axum::http::StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "gateway: request failed");
    }
}
