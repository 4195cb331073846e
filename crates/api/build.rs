//! Generates the gRPC service (headscale.v1.HeadscaleService) from the
//! .proto files in `proto/`, with protox (a protobuf compiler in Rust), so
//! building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/headscale/v1/headscale.proto",
        "proto/headscale/v1/user.proto",
        "proto/headscale/v1/preauthkey.proto",
        "proto/headscale/v1/node.proto",
        "proto/headscale/v1/apikey.proto",
        "proto/headscale/v1/auth.proto",
        "proto/headscale/v1/policy.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // No tonic transport here: clients bring their own (tests pass a router).
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
