//! End-to-end tests with official Tailscale clients against a real
//! `headway serve` process. The clients are installed by
//! `scripts/fetch-tailscale` on first use (pinned, checksummed).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod kit;

mod api;
mod console;
mod control_plane;
#[cfg(feature = "sqlcipher")]
mod data_at_rest;
mod interactive;
mod migrate;
mod oidc;
mod operations;
mod policy;
mod replicas;
mod routes;
mod ssh_check;
mod tls;
