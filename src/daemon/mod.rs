//! `gureum daemon`: the long-running control-plane process. It serves
//! the core API (`cloud::api`) on a unix socket, one JSON line per
//! request and per reply, and reconciles (`cloud::reconcile`) at start,
//! after every change and periodically. The socket's permissions (0600,
//! owned by whoever runs the daemon: root) are the access boundary.
//!
//! Actions run one after the other on one thread (the store is SQLite,
//! and Linux changes must not interleave); waiting for an instance runs
//! on a thread of its own so that it holds nobody up. Instances are
//! detached processes with their own supervisors: a daemon killed and
//! started again finds them through the store and carries on.

mod autoscaling;
pub mod client;
mod cpu;
mod dhcp;
mod executor;
mod health;
mod metadata;
mod proxy;
mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cloud::api::{ApiError, Response};
use crate::cloud::lifecycle::Context;
use crate::cloud::state_dir::StateDir;

pub use executor::Executor;
pub use server::run;

/// What a per-VPC service (metadata, DHCP and DNS) says when it cannot
/// serve a VPC: each failure once, again only once it changed or cleared,
/// so that a service retrying every few seconds does not flood the log.
#[derive(Debug, Default)]
struct Told(std::collections::HashMap<String, String>);

impl Told {
    /// Notes the outcome of serving `vpc`, printing a new failure with
    /// `what` (the service's name and verb).
    fn outcome(&mut self, what: &str, vpc: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.0.remove(vpc);
            }
            Err(e) => {
                if self.0.get(vpc) != Some(&e) {
                    eprintln!("gureum daemon: {what} {vpc}: {e}");
                    self.0.insert(vpc.to_owned(), e);
                }
            }
        }
    }

    /// Forgets the VPCs `keep` does not keep.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|vpc, _| keep(vpc));
    }
}

/// The socket's name in the state directory.
pub const SOCKET: &str = "gureum.sock";

/// Where the daemon of `state` listens unless told otherwise.
pub fn default_socket(state: &StateDir) -> PathBuf {
    state.root().join(SOCKET)
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub ctx: Context,
    pub socket: PathBuf,
    /// Time between two reconcile passes when nothing happens.
    pub reconcile_every: Duration,
    /// Where the EC2 endpoint listens.
    pub listen: Listen,
    /// Over how long each instance's CPU utilization is averaged.
    pub metrics_period: Duration,
}

/// Where the EC2 Query endpoint (`crate::endpoint`) listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Not at all.
    Off,
    /// On `endpoint::DEFAULT_LISTEN` if that is free: a second daemon
    /// (another state directory) serves its socket without an endpoint.
    Default,
    /// On this address, or the daemon does not start.
    At(std::net::SocketAddr),
}

/// One reply line: the action's result, or its error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Ok(Response),
    Error(ApiError),
}

impl From<Result<Response, ApiError>> for Reply {
    fn from(result: Result<Response, ApiError>) -> Self {
        match result {
            Ok(r) => Reply::Ok(r),
            Err(e) => Reply::Error(e),
        }
    }
}

impl From<Reply> for Result<Response, ApiError> {
    fn from(reply: Reply) -> Self {
        match reply {
            Reply::Ok(r) => Ok(r),
            Reply::Error(e) => Err(e),
        }
    }
}

/// Errors that keep the daemon from serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "a daemon already answers on {0}; stop it first (`systemctl stop gureum`, or end its \
         process), or pass another --socket"
    )]
    AlreadyRunning(PathBuf),
    #[error("cannot {what} {path}: {source}")]
    Socket {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {address} for the EC2 endpoint: {source}; pick another --listen \
         address (or --listen off)"
    )]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the daemon's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start a thread of the daemon: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Cloud(#[from] crate::cloud::Error),
}

impl Error {
    fn socket(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Error::Socket { what, path, source }
    }
}
