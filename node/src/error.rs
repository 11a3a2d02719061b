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
            // Their modules say which code fits each of their variants.
            Error::Witness(w) => Status::new(w.code(), msg),
            Error::Reconcile(r) => Status::new(r.code(), msg),
            Error::Keys(_) | Error::Identity(_) | Error::Config(_) | Error::Io { .. } => {
                Status::internal(msg)
            }
        }
    }
}
