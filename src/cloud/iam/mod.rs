//! IAM: the account's root identity, users, access keys, policies and
//! their evaluation, and SigV4 request authentication. The store keeps
//! the records (`tables`); `actions` are IAM's operations in the core
//! API; `authenticate` and `authorize` sit in front of the core API for
//! requests that come signed (the EC2/IAM/STS endpoint).

pub mod actions;
pub mod arn;
mod auth;
pub mod credentials;
pub mod error;
pub mod evaluate;
pub mod managed;
pub mod policy;
pub mod records;
pub mod sigv4;
pub mod tables;

pub use actions::{IamAction, IamResponse, execute};
pub use auth::{Authenticated, Caller, arn, authenticate, authorize};
pub use error::Error;
pub use sigv4::{AuthError, SignedRequest};
