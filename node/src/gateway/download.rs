//! File downloads: `/records/{id}/files/{name}`, streamed with bounded memory.
//!
//! A blocking reader (`read::read_range`, which checks every blob and every 64 KiB of
//! plaintext) sends chunks of [`CHUNK`] bytes through a channel of [`DEPTH`] to the response
//! body, so a download holds at most one blob and `DEPTH + 2` chunks whatever the file size,
//! and a slow reader slows the read (backpressure). The last chunk of a whole-file read is
//! held back until the file's BLAKE3 has been checked: if it does not match, the connection
//! is cut before the body is complete, so a client never sees a complete wrong file.
//!
//! Files of at most `cache::MAX_FILE` bytes are read whole (verified) and kept decrypted
//! in a small bounded cache (see `cache`): that is what makes small downloads cheap.
//!
//! HTTP: strong `ETag` from the content's BLAKE3, `Cache-Control: public, max-age=86400,
//! immutable` (a file's content never changes under its URL; one day rather than a year so
//! that caches drop a record whose communicability is withdrawn), `If-None-Match` (304),
//! one `Range` (206, 416; several ranges are answered 200 with the whole file), `If-Range`,
//! `HEAD` without reading. Files are always sent as attachments with `nosniff` and a
//! sandboxing CSP: an archived HTML file must never run in the gateway's origin.

use super::access::require_content;
use super::cache;
use super::range::{self, RangeAnswer};
use super::{GatewayError, Shared, blocking, is_record_id};
use crate::read::read_range_from;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Plaintext chunk sent to the client.
pub const CHUNK: usize = 256 * 1024;
/// Chunks waiting between the reader and the connection.
pub const DEPTH: usize = 4;

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/records/{id}/files/{name}", get(download))
}

/// RFC 8187 attr-char: what `filename*` may carry without percent-encoding.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="ASCII fallback"; filename*=UTF-8''percent-encoded` (RFC 6266):
/// the fallback has accents folded and anything unsafe replaced by `_`.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            let c = if c.is_ascii() {
                c
            } else {
                // "é" → "e"; what has no ASCII letter becomes "_".
                super::query::fold(&c.to_string())
                    .chars()
                    .next()
                    .filter(char::is_ascii_alphanumeric)
                    .unwrap_or('_')
            };
            match c {
                '"' | '\\' | '%' => '_',
                c if c == ' ' || c.is_ascii_graphic() => c,
                _ => '_',
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

pub fn etag(blake3: &[u8; 32]) -> String {
    format!("\"b3-{}\"", hex::encode(blake3))
}

/// `If-None-Match` matches (weak comparison, RFC 9110 §13.1.2).
fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// A `Range` applies unless `If-Range` names another validator (strong comparison; a date
/// is never a strong validator here).
fn range_applies(headers: &HeaderMap, tag: &str) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => v.to_str().ok().map(str::trim) == Some(tag),
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

async fn download(
    State(gw): State<Shared>,
    Path((id, name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    match serve(&gw, &id, &name, &method, &headers).await {
        Ok(r) => r,
        Err(e) => super::pages::error_page(&gw, &e),
    }
}

async fn serve(
    gw: &Shared,
    id: &str,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> crate::Result<Response> {
    if !is_record_id(id) {
        return Err(GatewayError::NotFound.into());
    }
    let manifest = match gw.archive.recent_manifest(id) {
        Some(m) => m,
        None => {
            let (a, rid) = (gw.archive.clone(), id.to_string());
            blocking(move || super::find_manifest(&a, &rid)).await?
        }
    };
    require_content(id, &manifest.metadata, crate::clock::today())?;
    // An empty name would mean "the only file" to `find_file`; the route never gives one.
    if name.is_empty() {
        return Err(GatewayError::NotFound.into());
    }
    let file = gw.archive.find_file(&manifest, name)?.clone();
    let tag = etag(&file.blake3);
    let mut b = Response::builder()
        .header(header::ETAG, header_value(&tag))
        .header(header::CACHE_CONTROL, "public, max-age=86400, immutable")
        .header(header::ACCEPT_RANGES, "bytes");
    if none_match(headers, &tag) {
        return b
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| GatewayError::Worker(e.to_string()).into());
    }
    let size = file.size;
    let (status, start, len) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if range_applies(headers, &tag) => match range::parse(r, size) {
            RangeAnswer::Whole => (StatusCode::OK, 0, size),
            RangeAnswer::Part { start, end } => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            RangeAnswer::Unsatisfiable => {
                return Err(GatewayError::RangeNotSatisfiable { size }.into());
            }
        },
        _ => (StatusCode::OK, 0, size),
    };
    let media_type = if file.media_type.is_empty() {
        "application/octet-stream"
    } else {
        file.media_type.as_str()
    };
    b = b
        .status(status)
        .header(header::CONTENT_TYPE, header_value(media_type))
        .header(
            header::CONTENT_DISPOSITION,
            header_value(&content_disposition(&file.name)),
        )
        .header(header::CONTENT_LENGTH, len)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        );
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    let body = if method == Method::HEAD || len == 0 {
        Body::empty()
    } else if file.size <= cache::MAX_FILE {
        let whole = small_file(gw, id, &manifest, &file).await?;
        Body::from(whole.slice(start as usize..(start + len) as usize))
    } else {
        let permit = gw
            .downloads
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::Busy)?;
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(DEPTH);
        let blobs = super::blobs_for(&gw.archive, &manifest)?;
        let record = id.to_string();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut held: Option<Vec<u8>> = None;
            let res = read_range_from(blobs, &file, &record, start, len, CHUNK, |chunk| match held
                .replace(chunk)
            {
                Some(prev) => tx.blocking_send(Ok(Bytes::from(prev))).is_ok(),
                None => true,
            });
            match res {
                Ok(()) => {
                    if let Some(last) = held {
                        let _ = tx.blocking_send(Ok(Bytes::from(last)));
                    }
                }
                Err(e) => {
                    tracing::error!(record = %record, file = %file.name, error = %e, "gateway: read failed, download cut");
                    let _ = tx.blocking_send(Err(std::io::Error::other("read failed")));
                }
            }
        });
        Body::from_stream(ReceiverStream::new(rx))
    };
    b.body(body)
        .map_err(|e| GatewayError::Worker(e.to_string()).into())
}

/// A small file whole, from the cache or read (verified) and then cached.
async fn small_file(
    gw: &Shared,
    id: &str,
    manifest: &archipel_proto::manifest::Manifest,
    file: &archipel_proto::manifest::FileEntry,
) -> crate::Result<Bytes> {
    // Read before the file: if the archive changes meanwhile, this entry is dropped.
    let generation = gw.archive.store.generation();
    if let Some(b) = gw.files.get(generation, &file.blake3) {
        return Ok(b);
    }
    let permit = gw
        .downloads
        .clone()
        .try_acquire_owned()
        .map_err(|_| GatewayError::Busy)?;
    let blobs = super::blobs_for(&gw.archive, manifest)?;
    let (f, record) = (file.clone(), id.to_string());
    let whole = blocking(move || {
        let _permit = permit;
        let mut out = Vec::with_capacity(f.size as usize);
        // A whole-file read: the file's BLAKE3 is checked before it returns Ok.
        read_range_from(blobs, &f, &record, 0, f.size, CHUNK, |c| {
            out.extend_from_slice(&c);
            true
        })?;
        Ok(Bytes::from(out))
    })
    .await?;
    gw.files.put(generation, file.blake3, whole.clone());
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_utf8() {
        assert_eq!(
            content_disposition("Délibération n°3 \"été\".pdf"),
            "attachment; filename=\"Deliberation n_3 _ete_.pdf\"; filename*=UTF-8''D%C3%A9lib%C3%A9ration%20n%C2%B03%20%22%C3%A9t%C3%A9%22.pdf"
        );
        assert_eq!(
            content_disposition("plain.txt"),
            "attachment; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"
        );
    }

    #[test]
    fn validators() {
        let tag = etag(&[0xab; 32]);
        let mut h = HeaderMap::new();
        assert!(!none_match(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            header_value(&format!("\"x\", W/{tag}")),
        );
        assert!(none_match(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, &tag));
        assert!(range_applies(&h, &tag));
        h.insert(header::IF_RANGE, header_value(&tag));
        assert!(range_applies(&h, &tag));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"other\""));
        assert!(!range_applies(&h, &tag));
    }
}
