//! Errors of the node library.
//!
//! Rules (as in rustic_core):
//! - each module has its own `thiserror` enum saying what went wrong in its terms
//!   (`StoreError`, `KeyError`, `ValidationError`, ...); they never carry `anyhow`;
//! - this file gathers them into [`Error`], the one type the public API returns;
//! - there is exactly one mapping to `tonic::Status` (below) and, for the gateway, one to
//!   HTTP; nowhere else decides status codes;
//! - messages name the object (record, blob, field, file path) and, when the user can act,
//!   say how;
//! - no `unwrap()` outside tests; a broken invariant is an error, not a panic.

use crate::config::ConfigError;
use crate::identity::IdentityError;
use crate::keys::KeyError;
use crate::log::LogError;
use crate::record::ValidationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Peer(#[from] crate::federation::PeerError),
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    #[error(transparent)]
    Witness(#[from] crate::federation::witness::WitnessError),
    #[error(transparent)]
    Reconcile(#[from] crate::federation::reconcile::ReconcileError),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error(transparent)]
    KeyManagement(#[from] crate::key_management::KeyManagementError),
    #[error(transparent)]
    Hold(#[from] crate::hold::HoldError),
    #[error(transparent)]
    Elimination(#[from] crate::elimination::EliminationError),
    #[error(transparent)]
    Transfer(#[from] crate::transfer::TransferError),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Status;
        let msg = e.to_string();
        match &e {
            Error::Validation(_) | Error::Protocol(_) => Status::invalid_argument(msg),
            Error::Store(s) => match s {
                StoreError::NotFound(_) | StoreError::FileNotFound { .. } => Status::not_found(msg),
                StoreError::AmbiguousFile(_) | StoreError::Range { .. } => {
                    Status::invalid_argument(msg)
                }
                StoreError::TooLarge(_) | StoreError::DiskFull(_) => {
                    Status::resource_exhausted(msg)
                }
                StoreError::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                    Status::resource_exhausted(msg)
                }
                StoreError::Held(_) => Status::failed_precondition(msg),
                StoreError::Eliminated => Status::aborted(msg),
                StoreError::Corrupt { .. }
                | StoreError::Missing { .. }
                | StoreError::Damaged { .. }
                | StoreError::DigestMismatch { .. } => Status::data_loss(msg),
                _ => Status::internal(msg),
            },
            Error::Log(l) => match l {
                LogError::Proof(_) | LogError::Empty => Status::invalid_argument(msg),
                LogError::NoRecord(_) | LogError::NotSigned(_) => Status::not_found(msg),
                LogError::Inconsistent { .. } | LogError::Damaged(_) => Status::data_loss(msg),
                _ => Status::internal(msg),
            },
            Error::Peer(p) => {
                use crate::federation::PeerError;
                match p {
                    PeerError::Unknown(_) => Status::not_found(msg),
                    PeerError::BadNodeId(_)
                    | PeerError::BadAddress(_)
                    | PeerError::BadTerritory
                    | PeerError::Itself => Status::invalid_argument(msg),
                    PeerError::Unreachable { .. } => Status::unavailable(msg),
                    _ => Status::internal(msg),
                }
            }
            Error::Federation(f) => {
                use crate::federation::FederationError as F;
                match f {
                    F::Refused(_) => Status::invalid_argument(msg),
                    F::NotFound(_) => Status::not_found(msg),
                    F::DeletionRefused { .. } => Status::failed_precondition(msg),
                    F::Full(_) => Status::resource_exhausted(msg),
                    F::Peer { .. } => Status::unavailable(msg),
                    F::Store(s) if s.is_disk_full() => Status::resource_exhausted(msg),
                    F::Store(StoreError::DiskFull(_)) => Status::resource_exhausted(msg),
                    _ => Status::internal(msg),
                }
            }
            Error::Hold(h) => {
                use crate::hold::HoldError as H;
                match h {
                    H::Reason => Status::invalid_argument(msg),
                    H::AlreadyHeld(_) | H::NotHeld(_) => Status::failed_precondition(msg),
                    H::Damaged(..) => Status::data_loss(msg),
                }
            }
            Error::Elimination(e) => {
                use crate::elimination::EliminationError as E;
                match e {
                    E::Visa | E::Records | E::SuspensionReason => Status::invalid_argument(msg),
                    E::Refused(_) | E::Suspension(_) => Status::failed_precondition(msg),
                    E::Damaged(..) => Status::data_loss(msg),
                }
            }
            Error::Transfer(_) => Status::invalid_argument(msg),
            // Their modules say which code fits each of their variants.
            Error::Witness(w) => Status::new(w.code(), msg),
            Error::KeyManagement(k) => {
                use crate::key_management::KeyManagementError as K;
                match k {
                    K::NothingToRetire | K::RewrapPending | K::HoldersBehind { .. } => {
                        Status::failed_precondition(msg)
                    }
                    K::Keys(KeyError::BadRecipient(_)) => Status::invalid_argument(msg),
                    _ => Status::internal(msg),
                }
            }
            Error::Reconcile(r) => Status::new(r.code(), msg),
            Error::Keys(_)
            | Error::Identity(_)
            | Error::Config(_)
            | Error::Io { .. }
            | Error::Gateway(_) => Status::internal(msg),
        }
    }
}

impl Error {
    /// The HTTP status of this error on the citizen gateway: the one mapping to HTTP.
    ///
    /// What a citizen may not see is `404` whether it exists or not; a record whose
    /// metadata is public but whose content is not communicable yet is `403`; damage inside
    /// the archive is the server's fault (`500`), never the reader's.
    pub fn http_status(&self) -> axum::http::StatusCode {
        use crate::gateway::GatewayError as G;
        use axum::http::StatusCode as S;
        match self {
            Error::Gateway(g) => match g {
                G::NotFound => S::NOT_FOUND,
                G::Eliminated { .. } => S::GONE,
                G::NotCommunicable { .. } => S::FORBIDDEN,
                G::BadRequest(_) => S::BAD_REQUEST,
                G::RangeNotSatisfiable { .. } => S::RANGE_NOT_SATISFIABLE,
                G::NotYetCertified(_) | G::Busy => S::SERVICE_UNAVAILABLE,
                G::TooManyRequests { .. } => S::TOO_MANY_REQUESTS,
                G::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
                G::UriTooLong => S::URI_TOO_LONG,
                G::Timeout => S::SERVICE_UNAVAILABLE,
                G::Tls(_) | G::Worker(_) => S::INTERNAL_SERVER_ERROR,
            },
            Error::Validation(_) | Error::Protocol(_) => S::BAD_REQUEST,
            Error::Store(s) => match s {
                StoreError::NotFound(_) | StoreError::FileNotFound { .. } => S::NOT_FOUND,
                StoreError::AmbiguousFile(_) => S::BAD_REQUEST,
                StoreError::Range { .. } => S::RANGE_NOT_SATISFIABLE,
                _ => S::INTERNAL_SERVER_ERROR,
            },
            Error::Log(LogError::NoRecord(_)) => S::NOT_FOUND,
            Error::Log(LogError::NotSigned(_) | LogError::Empty) => S::SERVICE_UNAVAILABLE,
            _ => S::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::GatewayError as G;
    use axum::http::StatusCode as S;

    #[test]
    fn http_mapping() {
        let cases: Vec<(Error, S)> = vec![
            (G::NotFound.into(), S::NOT_FOUND),
            (
                G::NotCommunicable {
                    record: "r".into(),
                    opens: None,
                }
                .into(),
                S::FORBIDDEN,
            ),
            (G::BadRequest("x".into()).into(), S::BAD_REQUEST),
            (
                G::RangeNotSatisfiable { size: 3 }.into(),
                S::RANGE_NOT_SATISFIABLE,
            ),
            (
                G::NotYetCertified("r".into()).into(),
                S::SERVICE_UNAVAILABLE,
            ),
            (G::Busy.into(), S::SERVICE_UNAVAILABLE),
            (StoreError::NotFound("r".into()).into(), S::NOT_FOUND),
            (
                StoreError::FileNotFound {
                    record: "r".into(),
                    name: "f".into(),
                }
                .into(),
                S::NOT_FOUND,
            ),
            (
                StoreError::Range {
                    offset: 5,
                    length: 1,
                    size: 2,
                }
                .into(),
                S::RANGE_NOT_SATISFIABLE,
            ),
            (
                StoreError::Corrupt {
                    record: "r".into(),
                    blob: "b".into(),
                }
                .into(),
                S::INTERNAL_SERVER_ERROR,
            ),
            (LogError::NoRecord("r".into()).into(), S::NOT_FOUND),
            (LogError::NotSigned(3).into(), S::SERVICE_UNAVAILABLE),
            (Error::Protocol("x".into()), S::BAD_REQUEST),
        ];
        for (e, want) in cases {
            assert_eq!(e.http_status(), want, "{e}");
        }
    }
}
