//! Route tables: the main one every VPC has, custom ones, their routes
//! and their subnets. A subnet whose table routes 0.0.0.0/0 to the VPC's
//! internet gateway is public; every other route is the `local` one.

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::store::{Store, Tx};
use crate::cloud::tags::Tags;
use crate::cloud::{self, lookup};
use crate::net::cidr::{self, Ipv4Cidr};

use super::gateway::InternetGateway;
use super::network::Vpc;
use super::public::NetConfig;
use super::subnet::Subnet;
use super::{Error, realise, same_vpc};

/// The target of the route every table has to its VPC's own block.
pub const LOCAL: &str = "local";

/// One route: where to, and through what (`local` or an `igw-` ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: Ipv4Cidr,
    pub target: String,
}

/// A route table as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    /// The table of every subnet not associated with another one.
    pub main: bool,
    pub routes: Vec<Route>,
    /// The subnets explicitly associated with it.
    pub subnets: Vec<String>,
    pub created: String,
}

vpc_record!(RouteTable, Kind::RouteTable, in_vpc);

impl RouteTable {
    fn new(id: String, vpc: &str, cidr: Ipv4Cidr, main: bool) -> Self {
        Self {
            id,
            vpc_id: vpc.to_owned(),
            main,
            routes: vec![Route {
                destination: cidr,
                target: LOCAL.to_owned(),
            }],
            subnets: Vec::new(),
            created: cloud::time::now(),
        }
    }

    /// The main table of a new VPC.
    pub fn main(id: String, vpc: &str, cidr: Ipv4Cidr) -> Self {
        Self::new(id, vpc, cidr, true)
    }

    /// Whether it routes 0.0.0.0/0 to internet gateway `igw`.
    pub fn routes_to(&self, igw: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.destination == cidr::ANY && r.target == igw)
    }

    /// Whether subnet `subnet` is public: the table it is associated with
    /// (else the main one) among `tables` routes to `igw`.
    pub fn is_public(tables: &[RouteTable], subnet: &str, igw: &str) -> bool {
        tables
            .iter()
            .find(|t| t.subnets.iter().any(|s| s == subnet))
            .or_else(|| tables.iter().find(|t| t.main))
            .is_some_and(|t| t.routes_to(igw))
    }
}

/// Creates a custom route table (only the local route) in a VPC.
pub fn create(store: &mut Store, vpc: &str, tags: &Tags) -> Result<RouteTable, cloud::Error> {
    let id = ids::new_id(Kind::RouteTable)?;
    store.write(|tx| {
        let vpc: Vpc = lookup::find_tagged(tx, vpc, |_| true)?;
        let table = RouteTable::new(id, &vpc.id, vpc.cidr, false);
        tx.insert(&table, tags)?;
        Ok(table)
    })
}

/// Deletes a custom route table no subnet is associated with.
pub fn delete(store: &mut Store, reference: &str) -> Result<RouteTable, cloud::Error> {
    store.write(|tx| {
        let table: RouteTable = lookup::find_tagged(tx, reference, |_| true)?;
        if table.main {
            return Err(Error::OwnedByVpc {
                what: "main route table",
                id: table.id,
            }
            .into());
        }
        if !table.subnets.is_empty() {
            return Err(Error::InUse {
                noun: "route table",
                id: table.id.clone(),
                what: format!("subnets {}", table.subnets.join(", ")),
                fix: format!(
                    "`gureum route-table disassociate {} --subnet ID` them first",
                    table.id
                ),
            }
            .into());
        }
        tx.delete(&table.id)?;
        Ok(table)
    })
}

/// Associates a subnet with a table (moving it off the one it had).
pub fn associate(
    store: &mut Store,
    config: &NetConfig,
    table: &str,
    subnet: &str,
) -> Result<RouteTable, cloud::Error> {
    change_association(store, config, table, subnet, |tx, table, subnet| {
        same_vpc("subnet", &subnet.id, &subnet.vpc_id, &table.vpc_id)?;
        unassociate(tx, &table.vpc_id, &subnet.id, Some(&table.id))?;
        if !table.subnets.contains(&subnet.id) {
            table.subnets.push(subnet.id);
        }
        Ok(())
    })
}

/// Takes a subnet off a table: it follows the main table again.
pub fn disassociate(
    store: &mut Store,
    config: &NetConfig,
    table: &str,
    subnet: &str,
) -> Result<RouteTable, cloud::Error> {
    change_association(store, config, table, subnet, |_, table, subnet| {
        if !table.subnets.contains(&subnet.id) {
            return Err(Error::NotAssociated {
                subnet: subnet.id,
                table: table.id.clone(),
            }
            .into());
        }
        table.subnets.retain(|s| *s != subnet.id);
        Ok(())
    })
}

/// Adds a route to an internet gateway attached to the table's VPC.
pub fn create_route(
    store: &mut Store,
    config: &NetConfig,
    table: &str,
    destination: Ipv4Cidr,
    gateway: &str,
) -> Result<RouteTable, cloud::Error> {
    change(store, config, table, |tx, table| {
        if destination != cidr::ANY {
            return Err(Error::UnsupportedRoute { destination }.into());
        }
        if table.routes.iter().any(|r| r.destination == destination) {
            return Err(Error::RouteExists {
                table: table.id.clone(),
                destination,
            }
            .into());
        }
        let igw: InternetGateway = lookup::find_tagged(tx, gateway, |_| true)?;
        if igw.vpc_id.as_deref() != Some(&table.vpc_id) {
            return Err(Error::GatewayNotAttached {
                igw: igw.id,
                vpc: table.vpc_id.clone(),
            }
            .into());
        }
        table.routes.push(Route {
            destination,
            target: igw.id,
        });
        Ok(())
    })
}

/// Removes the route to `destination` (never the local one).
pub fn delete_route(
    store: &mut Store,
    config: &NetConfig,
    table: &str,
    destination: Ipv4Cidr,
) -> Result<RouteTable, cloud::Error> {
    change(store, config, table, |_, table| {
        let found = table
            .routes
            .iter()
            .position(|r| r.destination == destination);
        match found {
            None => Err(Error::NoRoute {
                table: table.id.clone(),
                destination,
            }
            .into()),
            Some(index) => {
                if table.routes.get(index).is_some_and(|r| r.target == LOCAL) {
                    return Err(Error::LocalRoute {
                        table: table.id.clone(),
                    }
                    .into());
                }
                table.routes.remove(index);
                Ok(())
            }
        }
    })
}

/// Changes a table with `edit`, records it, and makes its VPC's subnets
/// public or private to match.
fn change(
    store: &mut Store,
    config: &NetConfig,
    table: &str,
    edit: impl FnOnce(&Tx<'_>, &mut RouteTable) -> Result<(), cloud::Error>,
) -> Result<RouteTable, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut table: RouteTable = lookup::find_tagged(tx, table, |_| true)?;
        edit(tx, &mut table)?;
        tx.update(&table)?;
        let vpc = table.vpc_id.clone();
        Ok((table, vec![vpc]))
    })
}

/// Changes a table's association with subnet `subnet` (ID or Name tag)
/// with `edit`, as `change` does.
fn change_association(
    store: &mut Store,
    config: &NetConfig,
    table: &str,
    subnet: &str,
    edit: impl FnOnce(&Tx<'_>, &mut RouteTable, Subnet) -> Result<(), cloud::Error>,
) -> Result<RouteTable, cloud::Error> {
    change(store, config, table, |tx, table| {
        let subnet: Subnet = lookup::find_tagged(tx, subnet, |_| true)?;
        edit(tx, table, subnet)
    })
}

/// Takes subnet `subnet` off every stored table of VPC `vpc` but `keep`.
pub fn unassociate(
    tx: &Tx<'_>,
    vpc: &str,
    subnet: &str,
    keep: Option<&str>,
) -> Result<(), cloud::store::Error> {
    for mut table in super::in_vpc::<RouteTable>(tx, vpc)? {
        if Some(table.id.as_str()) != keep && table.subnets.iter().any(|s| s == subnet) {
            table.subnets.retain(|s| s != subnet);
            tx.update(&table)?;
        }
    }
    Ok(())
}
