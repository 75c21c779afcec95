//! One pass that brings everything gureum made in line with the store:
//! instance records with the processes that run, the ports of terminated
//! instances out of their VPCs, the VPCs in Linux with their records
//! (`vpc::realise::converge`), and files nothing owns (staging directories
//! whose maker died, instance and image directories without a record,
//! the DHCP and DNS server of a VPC that is gone, with its process).
//! Level-triggered and idempotent: run it after any crash, as often as
//! wanted; `Mode::Check` only reports.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::net::reconcile::{Difference, Mode};

use super::image::Image;
use super::instance::{Instance, State};
use super::lifecycle::{self, Context};
use super::store::Store;
use super::vpc::dns_server::{self, ServerFiles};
use super::vpc::network::Vpc;
use super::vpc::public::NetConfig;
use super::vpc::{port, realise};
use super::{Error, staging};

/// What a pass found (and, repairing, made good).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Terminated instances whose port was still in their VPC.
    pub ports: Vec<String>,
    /// Differences between the VPCs in Linux and their records.
    pub network: Vec<Difference>,
    /// Files and directories no record owns.
    pub files: Vec<PathBuf>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.network.is_empty() && self.files.is_empty()
    }
}

/// Runs one pass.
pub fn run(ctx: &Context, store: &mut Store, mode: Mode) -> Result<Report, Error> {
    // Records first: they decide what Linux should hold.
    lifecycle::reconcile(ctx, store)?;
    let config = NetConfig::from_env()?;
    let mut report = Report::default();
    let leaving: Vec<String> = store.read(|tx| {
        Ok::<_, Error>(
            tx.list_readable::<Instance>()?
                .items
                .into_iter()
                .filter(|i| i.state == State::Terminated && i.placement.is_some())
                .map(|i| i.id)
                .collect(),
        )
    })?;
    for id in leaving {
        if mode == Mode::Repair {
            port::release(store, &config, &id)?;
        }
        report.ports.push(id);
    }
    report.network = realise::converge(store, &config, None, mode)?;
    report.files = files(ctx, store, mode)?;
    Ok(report)
}

/// Directories under the state directory that nothing owns. Looked at in
/// a write transaction: a resource being made publishes its directory
/// inside the transaction that records it, so none is half-way here.
fn files(ctx: &Context, store: &mut Store, mode: Mode) -> Result<Vec<PathBuf>, Error> {
    let root = ctx.state.root().to_path_buf();
    store.write(|tx| {
        let mut found = Vec::new();
        for dir in subdirectories(&root.join("staging"))? {
            if staging::abandoned(&dir).map_err(Error::io("cannot lock", &dir))? {
                found.push(dir);
            }
        }
        for dir in subdirectories(&root.join("instances"))? {
            if tx.get::<Instance>(&file_name(&dir))?.is_none() {
                found.push(dir);
            }
        }
        for dir in subdirectories(&root.join("images"))? {
            if tx.get::<Image>(&file_name(&dir))?.is_none() {
                found.push(dir);
            }
        }
        let vpcs = tx.list::<Vpc>()?;
        let ids: Vec<String> = vpcs.iter().map(|vpc| vpc.id.clone()).collect();
        // The firewall listings kept for the VPCs' checks.
        let kept: Vec<String> = vpcs
            .iter()
            .map(|vpc| format!("{}.nft", vpc.netns))
            .collect();
        let mut stale = Vec::new();
        for file in entries(&root.join("net"), false)? {
            if !kept.contains(&file_name(&file)) {
                stale.push(file);
            }
        }
        // DHCP and DNS servers (process and files) whose VPC is gone.
        let servers = dns_server::dir(ctx.state.root());
        let gone: Vec<ServerFiles> = dns_server::recorded(&servers)
            .iter()
            .filter(|vpc| !ids.contains(vpc))
            .map(|vpc| ServerFiles::of(&servers, vpc))
            .collect();
        if mode == Mode::Repair {
            for server in &gone {
                server.end();
            }
            for dir in &found {
                std::fs::remove_dir_all(dir).map_err(Error::io("cannot remove", dir))?;
            }
            for file in &stale {
                std::fs::remove_file(file).map_err(Error::io("cannot remove", file))?;
            }
        }
        found.extend(stale);
        found.extend(gone.into_iter().map(|server| server.config));
        Ok(found)
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    entries(dir, true)
}

/// The subdirectories (`dirs`) or the other entries of `dir`, sorted.
fn entries(dir: &Path, dirs: bool) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                what: "cannot list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir() == dirs))
        .map(|entry| entry.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}
