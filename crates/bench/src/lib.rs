//! headway-bench: a protocol-level load generator for Headway.
//!
//! It starts the server in a process of its own and simulates thousands of
//! nodes in this one, each with its own TCP connection speaking the real
//! control protocol (`/ts2021`, Noise IK, HTTP/2, zstd-framed map streams),
//! then measures what the issue "Scale: a protocol-level load generator and
//! the numbers for 10,000 nodes" asks for: registration throughput, join,
//! endpoint and disconnect propagation, bytes per change, the idle cost, a
//! reconnect storm, and the server's CPU and memory from `/proc`.
//!
//! It must not reach into the server's process: everything it learns comes
//! over the wire, the admin API or `/proc`.

pub mod digest;
pub mod node;
pub mod official;
pub mod procstat;
pub mod profile;
pub mod report;
pub mod results;
pub mod run;
pub mod server;
pub mod stats;

pub use results::Results;
pub use run::{Options, run};
pub use server::ServerCommand;
