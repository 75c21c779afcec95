//! nftables: the one table per family that gureum owns in a VPC namespace
//! (`inet gureum`, `bridge gureum`), compiled from the VPC's state and
//! replaced whole in one transaction.
//!
//! The ruleset is handed to `nft -f -` as nft's own language: one `nft -f`
//! run is one netlink batch, which the kernel commits atomically or not at
//! all, so a security-group change never leaves a port half-filtered.

pub mod anti_spoof;
pub mod nat;
pub mod ruleset;
pub mod security_group;

use std::io::{self, Write};
use std::process::{Command, Stdio};

use crate::host::netns::{self, Netns};

/// The name of every table gureum owns.
pub const TABLE: &str = "gureum";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run `nft` ({source}): install the nftables package (apt-get install nftables)")]
    Spawn { source: io::Error },
    #[error("nft refused the ruleset for network namespace '{netns}': {stderr}")]
    Refused { netns: String, stderr: String },
    #[error(transparent)]
    Netns(#[from] netns::Error),
}

/// Runs `nft -f -` with `script` on standard input, in `netns`.
pub fn apply(netns: &Netns, script: &str) -> Result<(), Error> {
    run(netns, &["-f", "-"], script).map(drop)
}

/// The whole ruleset of `netns`, as nft lists it.
pub fn list_ruleset(netns: &Netns) -> Result<String, Error> {
    run(netns, &["list", "ruleset"], "")
}

/// Table `family name` of `netns` as nft lists it; empty when it is not
/// there.
pub fn list_table(netns: &Netns, family: &str, name: &str) -> Result<String, Error> {
    let there = tables(netns)?.iter().any(|(f, n)| f == family && n == name);
    if !there {
        return Ok(String::new());
    }
    run(netns, &["list", "table", family, name], "")
}

/// Replaces table `family name` of `netns` (made by `script`) in one
/// transaction, leaving every other table as it is.
pub fn replace_table(netns: &Netns, family: &str, name: &str, script: &str) -> Result<(), Error> {
    // Declared first so that the delete never fails on a missing table.
    apply(
        netns,
        &format!("table {family} {name}\ndelete table {family} {name}\n{script}"),
    )
}

/// The tables in `netns`, as `FAMILY NAME` pairs.
pub fn tables(netns: &Netns) -> Result<Vec<(String, String)>, Error> {
    let listing = run(netns, &["list", "tables"], "")?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("table"), Some(family), Some(name)) => {
                    Some((family.to_owned(), name.to_owned()))
                }
                _ => None,
            }
        })
        .collect())
}

fn run(netns: &Netns, args: &[&str], stdin: &str) -> Result<String, Error> {
    // The child inherits the namespace of the thread that starts it.
    let output = netns.run(|| {
        let mut child = Command::new("nft")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        child.wait_with_output()
    })?;
    let output = output.map_err(|source| Error::Spawn { source })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Refused {
            netns: netns.name().to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// An nft identifier for a gureum ID: IDs are lowercase letters, digits
/// and '-', and nft identifiers take '_' where IDs have '-'.
pub fn ident(id: &str) -> String {
    id.replace('-', "_")
}
