//! The VPC itself: a block of addresses realised as a network namespace,
//! born with its main route table and its default security group.

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::store::{Resource, Store, Tx};
use crate::cloud::tags::Tags;
use crate::cloud::{self, lookup};
use crate::net::cidr::{self, Ipv4Cidr};

use super::gateway::InternetGateway;
use super::public::NetConfig;
use super::route_table::RouteTable;
use super::security_group::SecurityGroup;
use super::subnet::Subnet;
use super::{Error, dns_server, in_vpc, realise};

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
    /// The account's default VPC (`super::default`), where launches that
    /// name no network go.
    #[serde(default)]
    pub is_default: bool,
}

/// The unique name only the default VPC has: the store itself then
/// refuses a second one, whatever raced to make it.
const DEFAULT_UNIQUE_NAME: &str = "default";

impl Resource for Vpc {
    const KIND: Kind = Kind::Vpc;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        self.is_default.then_some(DEFAULT_UNIQUE_NAME)
    }
}

/// A new VPC, and whether its block lies outside the private ranges (the
/// caller warns).
#[derive(Debug)]
pub struct Created {
    pub vpc: Vpc,
    pub not_private: bool,
}

/// A new VPC's records: itself, its main route table and its default
/// security group, not yet stored.
#[derive(Debug)]
pub struct NewVpc {
    pub vpc: Vpc,
    pub main_route_table: RouteTable,
    pub default_security_group: SecurityGroup,
}

impl NewVpc {
    pub fn new(config: &NetConfig, cidr: Ipv4Cidr, is_default: bool) -> Result<Self, cloud::Error> {
        let id = ids::new_id(Kind::Vpc)?;
        let table = RouteTable::main(ids::new_id(Kind::RouteTable)?, &id, cidr);
        let group = SecurityGroup::default_of(ids::new_id(Kind::SecurityGroup)?, &id);
        Ok(Self {
            vpc: Vpc {
                netns: config.vpc_netns(&id),
                id,
                cidr,
                main_route_table: table.id.clone(),
                default_security_group: group.id.clone(),
                created: cloud::time::now(),
                is_default,
            },
            main_route_table: table,
            default_security_group: group,
        })
    }

    /// Stores the records, the VPC with `tags`.
    pub fn insert(&self, tx: &Tx<'_>, tags: &Tags) -> Result<(), cloud::Error> {
        tx.insert(&self.vpc, tags)?;
        tx.insert(&self.main_route_table, &Tags::new())?;
        tx.insert(&self.default_security_group, &Tags::new())?;
        Ok(())
    }
}

/// Creates a VPC with its main route table and default security group.
pub fn create(
    store: &mut Store,
    config: &NetConfig,
    cidr: Ipv4Cidr,
    tags: &Tags,
) -> Result<Created, cloud::Error> {
    let checked = cidr::check_vpc(cidr).map_err(Error::from)?;
    let new = NewVpc::new(config, cidr, false)?;
    realise::change(store, config, |tx| {
        new.insert(tx, tags)?;
        Ok(((), vec![new.vpc.id.clone()]))
    })?;
    Ok(Created {
        vpc: new.vpc,
        not_private: checked.public_range_warning,
    })
}

/// Deletes an empty VPC (its main route table and default group go with
/// it); refuses, saying what to remove first, while anything is in it.
pub fn delete(store: &mut Store, config: &NetConfig, reference: &str) -> Result<Vpc, cloud::Error> {
    let vpc = realise::change(store, config, |tx| {
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
            (
                "target groups",
                crate::cloud::elb::groups_in(tx, &vpc.id)?.join(", "),
                "`gureum target-group delete` them",
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
        // A deleted default VPC stays deleted: its fact in the store
        // (`super::default`) keeps launches from making another.
        tx.delete(&vpc.id)?;
        for table in &tables {
            tx.delete(&table.id)?;
        }
        for group in &groups {
            tx.delete(&group.id)?;
        }
        let id = vpc.id.clone();
        Ok((vpc, vec![id]))
    })?;
    // Its DHCP and DNS server (the daemon's) goes with it, now rather
    // than when the daemon next looks: a daemon ended meanwhile would
    // leave it to the next reconcile.
    dns_server::ServerFiles::of(&dns_server::dir(store.dir()), &vpc.id).end();
    Ok(vpc)
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
