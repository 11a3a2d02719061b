//! Admin RPCs about the federation: where a record's copies are, and per-peer accounting.

use crate::archive::Archive;
use crate::error::Error;
use archipel_proto::v1::{CustodyResponse, FederationReportResponse};

pub async fn custody(_archive: &Archive, _record_id: &str) -> Result<CustodyResponse, Error> {
    Err(Error::Protocol("not built yet".into()))
}

pub async fn report(_archive: &Archive) -> Result<FederationReportResponse, Error> {
    Err(Error::Protocol("not built yet".into()))
}
