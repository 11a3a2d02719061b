//! The JSON API: the same data as the pages, for scripts. Described by the OpenAPI document
//! served at `/openapi.json` (hand-written in `openapi.json`; the integration tests check it
//! against the running gateway).

use super::access::Access;
use super::index::Entry;
use super::query::{PAGE_SIZE, SearchQuery};
use super::{
    GatewayError, Shared, error_headers, file_path, load_visible, log_error, public_message,
};
use archipel_proto::manifest::Metadata;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/api/records", get(search))
        .route("/api/records/{id}", get(record))
        .route("/openapi.json", get(openapi))
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        v.to_string(),
    )
        .into_response()
}

/// An error as JSON: `{"error": code, "message": French text, "communicable_from"?}`.
pub fn json_error(e: &crate::Error) -> Response {
    log_error(e);
    let status = e.http_status();
    let code = match e {
        crate::Error::Gateway(GatewayError::NotCommunicable { .. }) => "not_communicable",
        crate::Error::Gateway(GatewayError::NotYetCertified(_)) => "not_yet_certified",
        crate::Error::Gateway(GatewayError::Busy) => "busy",
        crate::Error::Gateway(GatewayError::Eliminated { .. }) => "eliminated",
        _ => match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::URI_TOO_LONG => "uri_too_long",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        },
    };
    let mut v = json!({"error": code, "message": public_message(e)});
    if let crate::Error::Gateway(GatewayError::NotCommunicable { opens: Some(d), .. }) = e {
        v["communicable_from"] = json!(crate::clock::format_date(*d));
    }
    let mut r = json_response(status, &v);
    error_headers(e, &mut r);
    r
}

/// The fields a search result and a record share.
fn summary(id: &str, md: &Metadata, access: Access) -> Value {
    let (communicable, from) = match access {
        Access::Open => (true, None),
        Access::MetadataOnly { opens } => (false, opens.map(crate::clock::format_date)),
        Access::Hidden => (false, None),
    };
    json!({
        "id": id,
        "url": format!("/records/{id}"),
        "api_url": format!("/api/records/{id}"),
        "title": md.title,
        "description": md.description,
        "producer": md.producer,
        "type": md.record_type,
        "date_from": md.date_from,
        "date_to": md.date_to,
        "keywords": md.keywords,
        "language": md.language,
        "licence": md.licence,
        "communicable": communicable,
        "communicable_from": from,
    })
}

fn entry_summary(e: &Entry, access: Access) -> Value {
    summary(&e.id, &e.metadata, access)
}

async fn search(State(gw): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let q = match SearchQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return json_error(&e.into()),
    };
    let snapshot = match gw.index.snapshot(&gw.archive).await {
        Ok(s) => s,
        Err(e) => return json_error(&e),
    };
    let r = snapshot.search(&q, crate::clock::today(), PAGE_SIZE);
    let link = |page: usize| {
        let qs = q.to_query(page);
        if qs.is_empty() {
            "/api/records".to_string()
        } else {
            format!("/api/records?{qs}")
        }
    };
    let v = json!({
        "total": r.total,
        "page": r.page,
        "pages": r.pages,
        "page_size": PAGE_SIZE,
        "records": r.entries.iter().map(|(e, a)| entry_summary(e, *a)).collect::<Vec<_>>(),
        "next": (r.page < r.pages).then(|| link(r.page + 1)),
        "previous": (r.page > 1).then(|| link(r.page - 1)),
    });
    json_response(StatusCode::OK, &v)
}

async fn record(State(gw): State<Shared>, Path(id): Path<String>) -> Response {
    let (m, access) = match load_visible(&gw, &id).await {
        Ok(v) => v,
        Err(e) => return json_error(&e),
    };
    let id = &m.record_id;
    let mut v = summary(id, &m.metadata, access);
    let files: Vec<Value> = m
        .files
        .iter()
        .map(|f| {
            let mut fv = json!({"name": f.name, "size": f.size, "media_type": f.media_type});
            // Content digests only with the content: a digest of a closed file would let
            // anyone confirm a guess of what it says.
            if access == Access::Open {
                fv["blake3"] = json!(hex::encode(f.blake3));
                fv["sha512"] = json!(hex::encode(f.sha512));
                fv["url"] = json!(file_path(id, &f.name));
            }
            fv
        })
        .collect();
    v["files"] = json!(files);
    v["publisher"] = json!(super::publisher_of(&gw.archive, &m));
    v["ingested_at"] = json!(crate::clock::rfc3339(m.ingested_at));
    v["certificate_url"] = json!(format!("/records/{id}/certificate"));
    v["checkpoint_url"] = json!("/checkpoint");
    v["log_vkey"] = json!(gw.archive.log.vkey());
    if let Some(ark) = super::ark::ark(&gw.archive.config, id) {
        v["ark"] = json!(ark);
    }
    json_response(StatusCode::OK, &v)
}

async fn openapi() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        OPENAPI,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_json_and_names_the_stable_routes() {
        let v: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
        for p in [
            "/records/{id}",
            "/records/{id}/files/{name}",
            "/api/records",
            "/api/records/{id}",
        ] {
            assert!(v["paths"][p].is_object(), "{p} missing");
        }
    }
}
