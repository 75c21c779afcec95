//! The VPC itself: a block of addresses realised as a network namespace,
//! born with its main route table and its default security group.

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::store::{Resource, Store};
use crate::cloud::tags::Tags;
use crate::cloud::{self, lookup};
use crate::net::cidr::{self, Ipv4Cidr};

use super::gateway::InternetGateway;
use super::public::NetConfig;
use super::route_table::RouteTable;
use super::security_group::SecurityGroup;
use super::subnet::Subnet;
use super::{Error, in_vpc, realise};

/// A VPC as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: Ipv4Cidr,
    /// The network namespace realising it.
    pub netns: String,
    pub main_route_table: String,
    pub default_security_group: String,
    pub created: String,
}

vpc_record!(Vpc, Kind::Vpc);

/// A new VPC, and whether its block lies outside the private ranges (the
/// caller warns).
#[derive(Debug)]
pub struct Created {
    pub vpc: Vpc,
    pub not_private: bool,
}

/// Creates a VPC with its main route table and default security group.
pub fn create(
    store: &mut Store,
    config: &NetConfig,
    cidr: Ipv4Cidr,
    tags: &Tags,
) -> Result<Created, cloud::Error> {
    let checked = cidr::check_vpc(cidr).map_err(Error::from)?;
    let id = ids::new_id(Kind::Vpc)?;
    let table = RouteTable::main(ids::new_id(Kind::RouteTable)?, &id, cidr);
    let group = SecurityGroup::default_of(ids::new_id(Kind::SecurityGroup)?, &id);
    let vpc = Vpc {
        netns: config.vpc_netns(&id),
        id,
        cidr,
        main_route_table: table.id.clone(),
        default_security_group: group.id.clone(),
        created: cloud::time::now(),
    };
    realise::change(store, config, |tx| {
        tx.insert(&vpc, tags)?;
        tx.insert(&table, &Tags::new())?;
        tx.insert(&group, &Tags::new())?;
        Ok(((), vec![vpc.id.clone()]))
    })?;
    Ok(Created {
        vpc,
        not_private: checked.public_range_warning,
    })
}

/// Deletes an empty VPC (its main route table and default group go with
/// it); refuses, saying what to remove first, while anything is in it.
pub fn delete(store: &mut Store, config: &NetConfig, reference: &str) -> Result<Vpc, cloud::Error> {
    realise::change(store, config, |tx| {
        let vpc: Vpc = lookup::find_tagged(tx, reference, |_| true)?;
        let gateways: Vec<InternetGateway> = in_vpc(tx, &vpc.id)?;
        let subnets: Vec<Subnet> = in_vpc(tx, &vpc.id)?;
        let tables: Vec<RouteTable> = in_vpc(tx, &vpc.id)?;
        let groups: Vec<SecurityGroup> = in_vpc(tx, &vpc.id)?;
        let blockers = [
            (
                "subnets",
                ids_of(&subnets, |_| true),
                "terminate their instances and `gureum subnet delete` them",
            ),
            (
                "an internet gateway",
                ids_of(&gateways, |_| true),
                "`gureum igw detach` it",
            ),
            (
                "route tables",
                ids_of(&tables, |t: &RouteTable| !t.main),
                "`gureum route-table delete` them",
            ),
            (
                "security groups",
                ids_of(&groups, |g: &SecurityGroup| !g.default),
                "`gureum sg delete` them",
            ),
        ];
        if let Some((what, list, fix)) = blockers.into_iter().find(|(_, list, _)| !list.is_empty())
        {
            return Err(Error::InUse {
                noun: "VPC",
                id: vpc.id.clone(),
                what: format!("{what} {list}"),
                fix: format!("{fix} first"),
            }
            .into());
        }
        tx.delete(&vpc.id)?;
        for table in &tables {
            tx.delete(&table.id)?;
        }
        for group in &groups {
            tx.delete(&group.id)?;
        }
        let id = vpc.id.clone();
        Ok((vpc, vec![id]))
    })
}

/// The IDs of the `items` that `pick` keeps, comma-separated.
fn ids_of<R: Resource>(items: &[R], pick: impl Fn(&R) -> bool) -> String {
    items
        .iter()
        .filter(|item| pick(item))
        .map(Resource::id)
        .collect::<Vec<_>>()
        .join(", ")
}
