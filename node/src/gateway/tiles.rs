//! (being built)

use super::State;

pub fn routes() -> axum::Router<State> {
    axum::Router::new()
}
