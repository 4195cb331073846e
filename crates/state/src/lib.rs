//! Headway's domain: the tailnet held in memory, and the service layer every
//! door (control protocol, REST, gRPC, CLI, console) goes through.
//!
//! A change is validated here, written to the [`store::Store`] in one
//! transaction, applied to memory, and then announced to the connected map
//! sessions as per-node pending updates. This crate speaks neither HTTP nor SQL.

pub mod access;
pub mod audit;
pub mod clock;
pub mod error;
pub mod events;
pub mod ipalloc;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod naming;
pub mod sessions;
pub mod settings;
pub mod store;
pub mod tailnet;

#[cfg(any(test, feature = "testing"))]
pub mod memstore;

pub use error::{Error, Result};
pub use tailnet::Tailnet;
