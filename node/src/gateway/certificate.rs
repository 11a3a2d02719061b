//! Deposit certificates: `/records/{id}/certificate`, a C2SP tlog-proof of the record's
//! ingestion event against the latest checkpoint the node has signed (with the witnesses'
//! cosignatures), the same file `archipel log prove` writes. Checked with
//! `archipel log check-proof FILE --key VKEY`.
//!
//! The gateway never signs: it proves against the latest checkpoint already signed by the
//! node's checkpointer (every `checkpoint_interval_secs` when the log grew), so a public
//! request never writes to the store. A record newer than that checkpoint gets 503 with
//! `Retry-After` until the next one.

use super::{GatewayError, Shared, blocking, load_visible};
use crate::archive::Archive;
use archipel_proto::rfc6962::inclusion_proof_at;
use archipel_proto::tlog_proof::TlogProof;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/records/{id}/certificate", get(certificate))
}

/// The deposit certificate of `record`, verified before it is handed out.
pub fn build(archive: &Archive, record: &str) -> crate::Result<TlogProof> {
    let log = &archive.log;
    let view = log.view()?;
    let index = view.record_event(record)?;
    let Some((cp, note)) = log.latest_signed()? else {
        return Err(GatewayError::NotYetCertified(record.to_string()).into());
    };
    if index >= cp.size || cp.size > view.size() {
        return Err(GatewayError::NotYetCertified(record.to_string()).into());
    }
    let proof = TlogProof {
        extra: Some(view.leaf(index)?),
        index,
        proof: inclusion_proof_at(&view, index, cp.size)?,
        checkpoint: log.with_cosignatures(cp.size, &note).unwrap_or(note),
    };
    // Never hand out a certificate that does not verify.
    proof.verify(&log.verifier(), None).map_err(|e| {
        GatewayError::Worker(format!(
            "the deposit certificate of {record} does not verify: {e}"
        ))
    })?;
    Ok(proof)
}

async fn certificate(State(gw): State<Shared>, Path(id): Path<String>) -> Response {
    let made = async {
        let (m, _) = load_visible(&gw, &id).await?;
        let a = gw.archive.clone();
        let record = m.record_id.clone();
        blocking(move || build(&a, &record)).await
    }
    .await;
    match made {
        Ok(proof) => {
            let disposition = format!("attachment; filename=\"{id}.tlog-proof\"");
            (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&disposition)
                            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
                    ),
                    // It is proved against the latest checkpoint, which moves.
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                ],
                proof.encode(),
            )
                .into_response()
        }
        Err(e) => super::pages::error_page(&gw, &e),
    }
}
