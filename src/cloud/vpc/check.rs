//! `gureum net check`: what gureum made in Linux that no record owns
//! (namespaces with its prefix, gateway links on the public side, taps in
//! a VPC that no instance has), ports of terminated instances that were
//! not taken out of their VPC, and the other way round: VPCs whose
//! namespace is missing (`gureum net restore` rebuilds them).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::cloud;
use crate::cloud::instance::{Instance, State};
use crate::cloud::store::Store;
use crate::net::cleanup::{self, Leftovers};
use crate::net::link::Rtnl;
use crate::net::netns::{self, Netns};

use super::Error;
use super::gateway::InternetGateway;
use super::network::Vpc;
use super::port::{self, TAP_PREFIX};
use super::public::NetConfig;

/// What `net check` found.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub leftovers: Leftovers,
    /// `NAMESPACE/TAP` of taps in a VPC that no instance has.
    pub taps: Vec<String>,
    /// Terminated instances whose port is still in their VPC.
    pub ports: Vec<String>,
    /// VPCs that are recorded but whose namespace does not exist.
    pub missing: Vec<MissingVpc>,
}

/// A VPC without its namespace.
#[derive(Debug, Serialize, Deserialize)]
pub struct MissingVpc {
    pub vpc: String,
    pub netns: String,
}

impl Report {
    /// Whether nothing is left over (missing VPCs aside).
    pub fn nothing_left_over(&self) -> bool {
        self.leftovers.is_empty() && self.taps.is_empty() && self.ports.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.nothing_left_over() && self.missing.is_empty()
    }
}

/// Finds the leftovers; with `remove`, removes them too.
pub fn run(store: &mut Store, config: &NetConfig, remove: bool) -> Result<Report, cloud::Error> {
    let (mut report, releasable) = store.write(|tx| {
        let vpcs = tx.list::<Vpc>()?;
        let mut owned: BTreeSet<String> = vpcs.iter().map(|v| v.netns.clone()).collect();
        let public_name = config.public_netns();
        // The public namespace is owned while any gateway is attached.
        if tx
            .list::<InternetGateway>()?
            .iter()
            .any(|g| g.vpc_id.is_some())
        {
            owned.insert(public_name.clone());
        }
        let public = match Netns::open(&public_name) {
            Ok(public) => Some(public),
            Err(netns::Error::Missing(_)) => None,
            Err(error) => return Err(Error::from(error).into()),
        };
        let leftovers =
            cleanup::find(&config.prefix, &owned, public.as_ref()).map_err(Error::from)?;
        if remove {
            cleanup::remove(&leftovers, public.as_ref()).map_err(Error::from)?;
        }
        let mut report = Report {
            leftovers,
            ..Report::default()
        };
        for vpc in &vpcs {
            if !netns::exists(&vpc.netns) {
                report.missing.push(MissingVpc {
                    vpc: vpc.id.clone(),
                    netns: vpc.netns.clone(),
                });
                continue;
            }
            let taps: BTreeSet<String> = port::instances_in(tx, &vpc.id)?
                .into_iter()
                .map(|(_, placement)| placement.tap)
                .collect();
            let rtnl =
                Rtnl::open(&Netns::open(&vpc.netns).map_err(Error::from)?).map_err(Error::from)?;
            for (link, _) in rtnl.links().map_err(Error::from)? {
                if link.starts_with(TAP_PREFIX) && !taps.contains(&link) {
                    if remove {
                        rtnl.delete(&link).map_err(Error::from)?;
                    }
                    report.taps.push(format!("{}/{link}", vpc.netns));
                }
            }
        }
        let mut releasable = Vec::new();
        for i in tx.list::<Instance>()? {
            let Some(placement) = i.placement.filter(|_| i.state == State::Terminated) else {
                continue;
            };
            // A port in a missing VPC is released once it is restored.
            if !report.missing.iter().any(|m| m.vpc == placement.vpc_id) {
                releasable.push(i.id.clone());
            }
            report.ports.push(i.id);
        }
        Ok::<_, cloud::Error>((report, releasable))
    })?;
    if remove {
        for id in &releasable {
            port::release(store, config, id)?;
        }
        report.ports = releasable;
    }
    report.taps.sort();
    Ok(report)
}
