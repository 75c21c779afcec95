//! Keeping the store and Linux in step: a change runs in one store
//! transaction that also makes the Linux change, with how to unmake it
//! registered; a failure anywhere, the commit included, rolls back both.
//!
//! A VPC is reopened in each process from the records (`open`): the store
//! is the truth, and the firewall is rebuilt whole from it on every change.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use crate::cloud::store::{Store, Tx};
use crate::cloud::{self, lookup};
use crate::net::undo::Undo;
use crate::net::vpc::Holdings;
use crate::net::{self};

use super::elastic_ip::ElasticIp;
use super::gateway::InternetGateway;
use super::network::Vpc;
use super::public::NetConfig;
use super::route_table::RouteTable;
use super::security_group::SecurityGroup;
use super::subnet::Subnet;
use super::{Error, in_vpc};

/// A reopened VPC shared with the undo steps that may need it after the
/// transaction's closure has returned.
pub type Shared = Rc<RefCell<net::vpc::Vpc>>;

/// Runs `change` in one write transaction. `change` makes its Linux change
/// and pushes on `undo` how to unmake it; unless the transaction commits,
/// the undo steps run.
pub fn transaction<T>(
    store: &mut Store,
    change: impl FnOnce(&Tx<'_>, &mut Undo) -> Result<T, cloud::Error>,
) -> Result<T, cloud::Error> {
    let mut undo = Undo::new();
    let out = store.write(|tx| change(tx, &mut undo))?;
    undo.commit();
    Ok(out)
}

/// Reopens `vpc` in Linux with what the records in `tx` say it holds.
pub fn open(tx: &Tx<'_>, config: &NetConfig, vpc: &Vpc) -> Result<net::vpc::Vpc, cloud::Error> {
    let netns = config.vpc_netns(&vpc.id);
    // Checked first: nothing (the public side) is made for a VPC that is
    // not there, and the user learns how to get it back.
    if !net::netns::exists(&netns) {
        return Err(Error::NotRealised {
            vpc: vpc.id.clone(),
            netns,
        }
        .into());
    }
    let holdings = holdings(tx, config, vpc)?;
    Ok(net::vpc::Vpc::open(&config.prefix, &vpc.id, vpc.cidr, holdings).map_err(Error::from)?)
}

/// What the records in `tx` say `vpc` holds in Linux; opens (or makes)
/// the public namespace when a gateway is attached.
pub fn holdings(tx: &Tx<'_>, config: &NetConfig, vpc: &Vpc) -> Result<Holdings, cloud::Error> {
    let subnets: Vec<Subnet> = in_vpc(tx, &vpc.id)?;
    let tables: Vec<RouteTable> = in_vpc(tx, &vpc.id)?;
    let gateway = in_vpc::<InternetGateway>(tx, &vpc.id)?.into_iter().next();
    let gateway_address = gateway.as_ref().and_then(|g| g.public_ip);
    let ports = cloud::vpc::subnet::ports_in(tx, &vpc.id)?;
    let port_ids: BTreeSet<&str> = ports.iter().map(|port| port.id.as_str()).collect();
    let elastic = tx
        .list::<ElasticIp>()?
        .into_iter()
        .filter_map(|eip| Some((eip.public_ip, eip.instance_id?)))
        .filter(|(_, instance)| port_ids.contains(instance.as_str()))
        .collect();
    Ok(Holdings {
        subnets: subnets
            .iter()
            .map(|subnet| {
                let public = gateway
                    .as_ref()
                    .is_some_and(|g| RouteTable::is_public(&tables, &subnet.id, &g.id));
                (subnet.id.clone(), subnet.cidr, public)
            })
            .collect(),
        gateway: match gateway_address {
            Some(address) => Some((config.open_public()?, address)),
            None => None,
        },
        groups: in_vpc::<SecurityGroup>(tx, &vpc.id)?
            .iter()
            .map(SecurityGroup::realised)
            .collect(),
        ports,
        elastic,
    })
}

/// Reopens VPC `id` to be shared with undo steps.
pub fn open_shared(tx: &Tx<'_>, config: &NetConfig, id: &str) -> Result<Shared, cloud::Error> {
    let vpc: Vpc = lookup::find(tx, id)?;
    Ok(Rc::new(RefCell::new(open(tx, config, &vpc)?)))
}

/// Makes the subnets of VPC `vpc_id` public or private as its route
/// tables (as now recorded in `tx`) say, registering the way back.
pub fn sync_routes(
    tx: &Tx<'_>,
    linux: &Shared,
    vpc_id: &str,
    undo: &mut Undo,
) -> Result<(), cloud::Error> {
    let subnets: Vec<Subnet> = in_vpc(tx, vpc_id)?;
    let tables: Vec<RouteTable> = in_vpc(tx, vpc_id)?;
    let gateway = in_vpc::<InternetGateway>(tx, vpc_id)?.into_iter().next();
    for subnet in subnets {
        let want = gateway
            .as_ref()
            .is_some_and(|g| RouteTable::is_public(&tables, &subnet.id, &g.id));
        let was = linux.borrow().is_public(&subnet.id);
        if was == Some(want) {
            continue;
        }
        linux
            .borrow_mut()
            .set_subnet_internet(&subnet.id, want)
            .map_err(Error::from)?;
        let (back, id) = (linux.clone(), subnet.id.clone());
        undo.push(move || back.borrow_mut().set_subnet_internet(&id, !want));
    }
    Ok(())
}
