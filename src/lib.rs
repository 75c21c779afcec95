//! gureum: a local EC2 for one Linux host.
//!
//! The library holds the pieces the `gureum` binary is made of, so that
//! integration tests can drive them directly.

pub mod cloud;
pub mod daemon;
pub mod endpoint;
pub mod net;
pub mod vmm;
