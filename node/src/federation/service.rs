//! The node-to-node gRPC service, served only to pinned peers over mutual TLS.

use super::transport::peer_node_id;
use crate::archive::Archive;
use archipel_proto::v1::federation_server::Federation;
use archipel_proto::v1::{HelloRequest, HelloResponse};
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct FederationService {
    archive: Arc<Archive>,
}

impl FederationService {
    pub fn new(archive: Arc<Archive>) -> Self {
        FederationService { archive }
    }
}

#[tonic::async_trait]
impl Federation for FederationService {
    async fn hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        // The transport refuses unpinned certificates; a request without one cannot get here.
        let caller =
            peer_node_id(&request).ok_or_else(|| Status::unauthenticated("no peer certificate"))?;
        let id = &self.archive.identity;
        Ok(Response::new(HelloResponse {
            node_id: id.node_id.clone(),
            territory: id.territory.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            you_are: caller,
        }))
    }
}
