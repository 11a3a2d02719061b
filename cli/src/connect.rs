//! Reaching a node's admin API: a data directory (its admin socket), `unix:PATH`, or
//! `https://HOST:PORT` (remote admin, mutual TLS).

use anyhow::bail;
use archipel_proto::v1::archive_client::ArchiveClient;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use tonic::transport::{Channel, Endpoint, Uri};

/// Largest gRPC message accepted from the node.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub enum Target {
    Socket(PathBuf),
    Remote(String),
}

pub fn parse_target(node: &str) -> Target {
    if let Some(p) = node.strip_prefix("unix:") {
        Target::Socket(PathBuf::from(p))
    } else if node.starts_with("https://") || node.starts_with("http://") {
        Target::Remote(node.to_string())
    } else {
        Target::Socket(PathBuf::from(node).join("admin.sock"))
    }
}

/// Raised when the node cannot be reached; mapped to its own exit code.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Unreachable {}

pub async fn connect(node: &str) -> anyhow::Result<ArchiveClient<Channel>> {
    Ok(ArchiveClient::new(channel(node).await?)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// A channel to the node's admin socket, shared by all its services.
pub async fn channel(node: &str) -> anyhow::Result<Channel> {
    Ok(match parse_target(node) {
        Target::Socket(path) => {
            if !path.exists() {
                return Err(Unreachable(format!(
                    "no node at {}: is archipel-node running? (start it with `archipel-node run --data DIR`, or pass --node)",
                    path.display()
                ))
                .into());
            }
            let p = path.clone();
            // The URI is ignored: every connection goes to the socket.
            Endpoint::try_from("http://archipel.invalid")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let p = p.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(p).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| Unreachable(format!("cannot connect to {}: {e}", path.display())))?
        }
        Target::Remote(url) => {
            bail!(
                "remote admin ({url}) needs mutual TLS, which this version does not offer yet: run the CLI on the node's machine, against its data directory or unix:PATH"
            )
        }
    })
}
