//! Permanent links (issue 5, point 10): ARK identifiers `ark:/NAAN/<record id>`.
//!
//! The NAAN (Name Assigning Authority Number) is the territory's, from the configuration
//! (`ark_naan`); the record ID is the ULID minted at ingestion, which never changes. So the
//! identifier names the record, not a host: a resolver (n2t.net, or the territory's own
//! proxy) sends `https://n2t.net/ark:/NAAN/ID` to whichever gateway serves the territory
//! today, and every gateway answers `/ark:/NAAN/ID` with a permanent redirect (301) to the
//! record's page on itself.
//!
//! The redirect is given for any well-formed record ID without reading the store: whether
//! the record exists or is visible is then the record page's business (404 for both), so the
//! ARK route reveals nothing the page does not. Another NAAN is 404: this gateway does not
//! speak for other authorities.

use super::Shared;
use super::html::escape;
use crate::config::Config;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/ark:/{naan}/{id}", get(resolve))
}

/// The ARK identifier of a record, when the territory has a NAAN.
pub fn ark(config: &Config, record_id: &str) -> Option<String> {
    config
        .ark_naan
        .as_deref()
        .map(|naan| format!("ark:/{naan}/{record_id}"))
}

/// The permanent link shown on a record's page (empty without a NAAN): the identifier, as a
/// link to this gateway's `/ark:/...` path, which resolves wherever the page is served.
pub fn permalink_html(config: &Config, record_id: &str) -> String {
    match ark(config, record_id) {
        None => String::new(),
        Some(a) => format!(
            "<p class=\"permalien\">Lien permanent : <a href=\"/{a}\">{a}</a> (identifiant ARK : il ne change pas si le service déménage).</p>\n",
            a = escape(&a)
        ),
    }
}

async fn resolve(State(gw): State<Shared>, Path((naan, id)): Path<(String, String)>) -> Response {
    let ours = gw.archive.config.ark_naan.as_deref() == Some(naan.as_str());
    if !ours || !super::is_record_id(&id) {
        return super::pages::not_found(State(gw)).await;
    }
    let target = format!("/records/{id}");
    match HeaderValue::from_str(&target) {
        Ok(location) => (
            StatusCode::MOVED_PERMANENTLY,
            [
                (header::LOCATION, location),
                // The mapping never changes; caches may keep it as long as the page.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=86400"),
                ),
            ],
        )
            .into_response(),
        Err(_) => super::pages::not_found(State(gw)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ark_identifiers_need_a_naan() {
        let id = "01J0000000000000000000000A";
        assert_eq!(ark(&Config::default(), id), None);
        assert_eq!(permalink_html(&Config::default(), id), "");
        let c = Config {
            ark_naan: Some("12345".into()),
            ..Default::default()
        };
        assert_eq!(
            ark(&c, id).as_deref(),
            Some("ark:/12345/01J0000000000000000000000A")
        );
        let html = permalink_html(&c, id);
        assert!(
            html.contains("href=\"/ark:/12345/01J0000000000000000000000A\""),
            "{html}"
        );
    }
}
