//! `gureum net restore`: rebuilding in Linux the VPCs whose namespace is
//! gone while their records are not. The store is on disk, but
//! namespaces (and with them bridges, gateway links, taps and nft tables)
//! live in /run: a host reboot keeps the records and loses the rest.
//!
//! Each VPC is rebuilt by replaying its records through the functions
//! that made it (`net::vpc::Vpc::rebuild`), all or nothing, in a write
//! transaction: the records cannot change meanwhile, and a second restore
//! waits, then finds the namespace there and leaves it alone.

use serde::{Deserialize, Serialize};

use crate::cloud::store::Store;
use crate::cloud::{self, lookup};
use crate::net::{self, netns};

use super::network::Vpc;
use super::port;
use super::public::{self, NetConfig};
use super::subnet::Subnet;
use super::{Error, realise};

/// What restoring one VPC came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Its namespace was missing and was rebuilt from the records.
    Restored,
    /// Its namespace exists: left alone.
    Present,
    /// Rebuilding it failed; what was made for it was undone.
    Failed { error: String },
}

/// One VPC's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restore {
    pub vpc: String,
    pub netns: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Restores every VPC whose namespace is missing; one that fails does not
/// stop the others.
pub fn run(store: &mut Store, config: &NetConfig) -> Result<Vec<Restore>, cloud::Error> {
    let vpcs = store.read(|tx| tx.list::<Vpc>())?;
    Ok(vpcs
        .into_iter()
        .map(|vpc| {
            let outcome = match vpc_if_missing(store, config, &vpc.id) {
                Ok(true) => Outcome::Restored,
                Ok(false) => Outcome::Present,
                Err(error) => Outcome::Failed {
                    error: error.to_string(),
                },
            };
            Restore {
                vpc: vpc.id,
                netns: vpc.netns,
                outcome,
            }
        })
        .collect())
}

/// Rebuilds VPC `id` from its records if its namespace is missing; says
/// whether it did.
pub fn vpc_if_missing(
    store: &mut Store,
    config: &NetConfig,
    id: &str,
) -> Result<bool, cloud::Error> {
    realise::transaction(store, |tx, undo| {
        let vpc: Vpc = lookup::find(tx, id)?;
        if netns::exists(&vpc.netns) {
            return Ok(false);
        }
        // Made under another prefix, it would be made twice.
        let now = config.vpc_netns(&vpc.id);
        if vpc.netns != now {
            return Err(Error::PrefixChanged {
                vpc: vpc.id,
                recorded: vpc.netns,
                now,
                var: public::PREFIX_VAR,
            }
            .into());
        }
        // The public side is made for the first VPC with a gateway; it
        // goes again if that VPC fails.
        let public = config.public_netns();
        let had_public = netns::exists(&public);
        let holdings = realise::holdings(tx, config, &vpc);
        if !had_public && netns::exists(&public) {
            undo.push(move || netns::remove(&public));
        }
        let linux = net::vpc::Vpc::rebuild(
            &config.prefix,
            &vpc.id,
            vpc.cidr,
            holdings?,
            config.router,
            |netns, port| port::make_tap(netns, &port.link),
        )
        .map_err(Error::from)?;
        // Should the commit fail, the rebuilt VPC goes again.
        undo.push(move || linux.delete());
        Ok(true)
    })
}

/// Restores the VPC of instance `reference` if its namespace is missing,
/// so that the port its VMM opens exists (`instance start` after a host
/// reboot).
pub fn for_instance(store: &mut Store, reference: &str) -> Result<(), cloud::Error> {
    let vpc = store.read(|tx| match lookup::find_instance(tx, reference)?.placement {
        Some(placement) => Ok(Some(lookup::find::<Vpc>(tx, &placement.vpc_id)?)),
        None => Ok::<_, cloud::Error>(None),
    })?;
    before_use(store, vpc)
}

/// Restores the VPC of subnet `reference` if its namespace is missing,
/// so that an instance can be placed in it (`run --subnet` after a host
/// reboot).
pub fn for_subnet(store: &mut Store, reference: &str) -> Result<(), cloud::Error> {
    let vpc = store.read(|tx| {
        let subnet: Subnet = lookup::find_tagged(tx, reference, |_| true)?;
        lookup::find::<Vpc>(tx, &subnet.vpc_id)
    })?;
    before_use(store, Some(vpc))
}

/// Restores `vpc`, about to be used, if its namespace is missing. Says so
/// on standard error when it did.
fn before_use(store: &mut Store, vpc: Option<Vpc>) -> Result<(), cloud::Error> {
    // Looked at first, so that the usual use takes no write lock.
    let Some(vpc) = vpc
        .filter(|vpc| !netns::exists(&vpc.netns))
        .map(|vpc| vpc.id)
    else {
        return Ok(());
    };
    match vpc_if_missing(store, &NetConfig::from_env()?, &vpc) {
        Ok(true) => {
            eprintln!("gureum: VPC {vpc} had lost its network namespace: restored it first");
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(source) => Err(Error::RestoreFailed {
            vpc,
            source: Box::new(source),
        }
        .into()),
    }
}
