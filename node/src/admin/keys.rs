//! The `Keys` admin service: thin, over `key_management`.

use crate::archive::Archive;
use crate::error::Error;
use crate::key_management::{self, ChangeReport};
use archipel_proto::v1::keys_server::Keys;
use archipel_proto::v1::{
    ChangeRecoveryRecipientRequest, KeyChangeResponse, KeyStatusRequest, KeyStatusResponse,
    RetireTerritoryKeysRequest, RetireTerritoryKeysResponse, RewrapRecordKeysRequest,
    RotateTerritoryKeyRequest,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct KeysService {
    archive: Arc<Archive>,
}

impl KeysService {
    pub fn new(archive: Arc<Archive>) -> Self {
        KeysService { archive }
    }

    /// Key changes read and re-wrap every record key: on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Archive) -> Result<T, key_management::KeyManagementError> + Send + 'static,
    ) -> Result<T, Status> {
        let a = self.archive.clone();
        tokio::task::spawn_blocking(move || f(&a))
            .await
            .map_err(|e| Status::internal(format!("worker failed: {e}")))?
            .map_err(|e| Status::from(Error::from(e)))
    }
}

fn change(r: ChangeReport) -> Response<KeyChangeResponse> {
    Response::new(KeyChangeResponse {
        territory_recipient: r.territory_recipient,
        previous_recipient: r.previous_recipient,
        rewrapped: r.rewrapped,
        changed: r.changed,
    })
}

#[tonic::async_trait]
impl Keys for KeysService {
    async fn key_status(
        &self,
        _: Request<KeyStatusRequest>,
    ) -> Result<Response<KeyStatusResponse>, Status> {
        let s = self.run(key_management::status).await?;
        Ok(Response::new(KeyStatusResponse {
            territory_recipient: s.territory_recipient,
            previous_recipients: s.previous_recipients,
            recovery_recipients: s.recovery_recipients,
            rewrap_pending: s.rewrap_pending,
            copies_behind: s.copies_behind,
        }))
    }

    async fn rotate_territory_key(
        &self,
        _: Request<RotateTerritoryKeyRequest>,
    ) -> Result<Response<KeyChangeResponse>, Status> {
        Ok(change(self.run(key_management::rotate).await?))
    }

    async fn change_recovery_recipient(
        &self,
        request: Request<ChangeRecoveryRecipientRequest>,
    ) -> Result<Response<KeyChangeResponse>, Status> {
        let r = request.into_inner();
        Ok(change(
            self.run(move |a| key_management::change_recovery(a, &r.recipient, r.add))
                .await?,
        ))
    }

    async fn rewrap_record_keys(
        &self,
        _: Request<RewrapRecordKeysRequest>,
    ) -> Result<Response<KeyChangeResponse>, Status> {
        let rewrapped = self.run(key_management::rewrap).await?;
        Ok(change(ChangeReport {
            territory_recipient: self.archive.keys.territory_recipient(),
            rewrapped,
            changed: rewrapped > 0,
            ..Default::default()
        }))
    }

    async fn retire_territory_keys(
        &self,
        request: Request<RetireTerritoryKeysRequest>,
    ) -> Result<Response<RetireTerritoryKeysResponse>, Status> {
        let force = request.into_inner().force;
        let retired = self.run(move |a| key_management::retire(a, force)).await?;
        Ok(Response::new(RetireTerritoryKeysResponse { retired }))
    }
}
