//! The citizen gateway (issue 5): a read-only HTTP server inside the node, switched on in the
//! configuration, serving communicable records to the public. (Being built.)
//!
//! One module a concept; each exposes `routes()`, merged here.

pub mod oai;
pub mod tiles;

use crate::archive::Archive;
use std::sync::Arc;

/// Shared state of every handler.
pub type State = Arc<Archive>;

/// Every route of the gateway.
pub fn router(archive: State) -> axum::Router {
    axum::Router::new()
        .merge(oai::routes())
        .merge(tiles::routes())
        .with_state(archive)
}
