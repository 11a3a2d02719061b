//! Compiles the `.proto` files with protox (pure Rust), so the build needs no system `protoc`.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/archipel/v1/archive.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC reflection.
    std::fs::write(out.join("archipel_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Blob bytes are handed on without a copy (up to 4 MiB a message).
        .bytes(".archipel.v1.BlobPut.data")
        .bytes(".archipel.v1.FetchBlobResponse.data")
        .compile_fds(fds)?;
    Ok(())
}
