//! Keeping Linux in step with the store. The store is the desired state:
//! a change is validated and committed as intent, then the VPCs it touched
//! are converged (`net::vpc::converge`), their namespaces made to hold
//! what the records describe. Should that fail, the records go back as
//! they were and the VPCs are converged again, so the user gets the error
//! and nothing is left half made. A crash in between leaves the store
//! ahead of Linux, which the next pass (`gureum net reconcile`, or the
//! daemon's) repairs.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{Flock, FlockArg};

use crate::cloud::ids::Kind;
use crate::cloud::store::{Store, Tx};
use crate::cloud::{self};
use crate::host::netns::Netns;
use crate::net::cidr::Ipv4Cidr;
use crate::net::elb;
use crate::net::port::Port;
use crate::net::reconcile::{Difference, Mode};
use crate::net::uplink;
use crate::net::vpc::{self as net_vpc, Host, SubnetSpec, VpcSpec};

use super::elastic_ip::ElasticIp;
use super::gateway::InternetGateway;
use super::network::Vpc;
use super::public::{self, NetConfig};
use super::route_table::RouteTable;
use super::security_group::SecurityGroup;
use super::subnet::Subnet;
use super::{Error, in_vpc, port};

/// The VPCs a change touched, by ID: these are converged after it.
pub type Touched = Vec<String>;

/// Where this store's namespaces are, and its identity.
pub fn host(store: &Store, config: &NetConfig) -> Host {
    Host {
        prefix: config.prefix.clone(),
        owner: store.identity().to_owned(),
        router: config.router,
        cache: store.dir().join("net"),
    }
}

/// Commits `change`, then converges the VPCs it says it touched. If they
/// cannot be converged, the records go back as they were, Linux follows
/// them, and the error is returned.
pub fn change<T>(
    store: &mut Store,
    config: &NetConfig,
    change: impl FnOnce(&Tx<'_>) -> Result<(T, Touched), cloud::Error>,
) -> Result<T, cloud::Error> {
    let ((out, touched), undo) = store.write_undoable(change)?;
    match converge(store, config, Some(&touched), Mode::Repair) {
        Ok(_) => Ok(out),
        Err(error) => {
            store.undo(undo)?;
            // Best effort: what stays different is the next pass's.
            let _ = converge(store, config, Some(&touched), Mode::Repair);
            Err(error)
        }
    }
}

/// Held while a process converges this store's VPCs. Two passes at once
/// trip over each other (one deletes what the other is changing), and a
/// change whose pass failed that way would be rolled back: seen when
/// four terminated instances' supervisors released their ports at once.
/// A killed holder's lock goes with it.
fn converging(store: &Store) -> Result<Flock<File>, cloud::Error> {
    let path = store.dir().join("converge.lock");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(cloud::Error::io("cannot open", &path))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| cloud::Error::io("cannot lock", &path)(errno.into()))
}

/// Compares Linux with the records (of VPCs `only`, or of everything, with
/// this store's orphans), repairing the differences in `Mode::Repair`.
pub fn converge(
    store: &mut Store,
    config: &NetConfig,
    only: Option<&[String]>,
    mode: Mode,
) -> Result<Vec<Difference>, cloud::Error> {
    let _converging = converging(store)?;
    let host = host(store, config);
    let (vpcs, specs) = store.read(|tx| {
        let vpcs = tx.list::<Vpc>()?;
        let specs = vpcs
            .iter()
            .map(|vpc| spec(tx, vpc))
            .collect::<Result<Vec<_>, cloud::Error>>()?;
        Ok::<_, cloud::Error>((vpcs, specs))
    })?;
    let chosen = |id: &str| only.is_none_or(|only| only.iter().any(|o| o == id));
    for vpc in vpcs.iter().filter(|vpc| chosen(&vpc.id)) {
        // Made under another prefix, it would be made twice.
        let now = host.vpc_netns(&vpc.id);
        if vpc.netns != now {
            return Err(Error::PrefixChanged {
                vpc: vpc.id.clone(),
                recorded: vpc.netns.clone(),
                now,
                var: public::PREFIX_VAR,
            }
            .into());
        }
    }
    let (public, mut found) = net_vpc::converge_public(&host, &specs, mode).map_err(Error::from)?;
    // Load balancers' namespaces before their VPCs, which plug their
    // ports' far ends into them; what is inside them after.
    let mut balancers: Vec<(&elb::Balancer, &VpcSpec, Netns)> = Vec::new();
    for spec in specs.iter().filter(|spec| chosen(&spec.id)) {
        for balancer in &spec.balancers {
            let (netns, differences) =
                elb::converge_namespace(&host, balancer, mode).map_err(Error::from)?;
            found.extend(differences);
            if let Some(netns) = netns {
                balancers.push((balancer, spec, netns));
            }
        }
    }
    let mut make_tap = |netns: &Netns, port: &Port| {
        let balancer = balancers
            .iter()
            .find(|(b, _, _)| b.ports.iter().any(|p| p.id == port.id));
        match balancer {
            Some((_, _, inside)) => {
                elb::make_port_link(netns, inside, port).map_err(|e| Box::new(e) as Box<_>)
            }
            None => port::make_tap(netns, &port.link).map_err(|e| Box::new(e) as Box<_>),
        }
    };
    // One VPC whose records cannot be realised does not hold up the
    // others: every failure is reported once the pass is over.
    let mut failed: Vec<(String, net_vpc::Error)> = Vec::new();
    for spec in specs.iter().filter(|spec| chosen(&spec.id)) {
        match net_vpc::converge(&host, spec, public.as_ref(), mode, &mut make_tap) {
            Ok(differences) => found.extend(differences),
            Err(error) => failed.push((spec.id.clone(), error)),
        }
    }
    for (balancer, spec, netns) in &balancers {
        if failed.iter().any(|(vpc, _)| *vpc == spec.id) {
            continue;
        }
        let subnets: Vec<(String, Ipv4Cidr)> = spec
            .subnets
            .iter()
            .map(|s| (s.id.clone(), s.cidr))
            .collect();
        found.extend(elb::converge_inside(balancer, netns, &subnets, mode).map_err(Error::from)?);
    }
    if let Some(public) = &public {
        found.extend(
            net_vpc::converge_public_links(&host, &specs, public, mode).map_err(Error::from)?,
        );
    }
    // The way out of the host follows the public side.
    let here = Netns::current().map_err(Error::from)?;
    found.extend(
        uplink::converge(
            &host,
            &config.uplink,
            config.pool,
            &here,
            public.as_ref(),
            mode,
        )
        .map_err(Error::from)?,
    );
    let recorded: BTreeSet<String> = vpcs
        .iter()
        .map(|vpc| vpc.netns.clone())
        .chain(
            specs
                .iter()
                .flat_map(|s| s.balancers.iter().map(|b| b.netns.clone())),
        )
        .collect();
    let mut candidates: Vec<String> = match only {
        Some(only) => only.iter().map(|id| host.vpc_netns(id)).collect(),
        None => crate::host::netns::list(&host.prefix).map_err(Error::from)?,
    };
    if only.is_some() {
        // A load balancer deleted by this change leaves its namespace.
        let prefix = format!("{}{}-", host.prefix, Kind::LoadBalancer.prefix());
        candidates.extend(crate::host::netns::list(&prefix).map_err(Error::from)?);
    }
    let orphans: Vec<String> = candidates
        .into_iter()
        .filter(|name| !recorded.contains(name))
        .collect();
    found.extend(net_vpc::converge_orphans(&host, &orphans, mode).map_err(Error::from)?);
    if failed.is_empty() {
        return Ok(found);
    }
    // A change touched one VPC: its own error says it best.
    if only.is_some() && failed.len() == 1 {
        if let Some((_, error)) = failed.pop() {
            return Err(Error::from(error).into());
        }
    }
    Err(Error::NotConverged {
        vpcs: failed
            .iter()
            .map(|(vpc, error)| format!("VPC {vpc}: {error}"))
            .collect::<Vec<_>>()
            .join("; "),
    }
    .into())
}

/// What the records in `tx` say `vpc` holds in Linux.
pub fn spec(tx: &Tx<'_>, vpc: &Vpc) -> Result<VpcSpec, cloud::Error> {
    let subnets: Vec<Subnet> = in_vpc(tx, &vpc.id)?;
    let tables: Vec<RouteTable> = in_vpc(tx, &vpc.id)?;
    let gateway = in_vpc::<InternetGateway>(tx, &vpc.id)?.into_iter().next();
    let ports = super::subnet::ports_in(tx, &vpc.id)?;
    let mut elastic: Vec<_> = tx
        .list::<ElasticIp>()?
        .into_iter()
        .filter_map(|eip| Some((eip.public_ip, eip.instance_id?)))
        .filter(|(_, instance)| ports.iter().any(|port| port.id == *instance))
        .collect();
    // Addresses given to instances are mapped 1:1 as elastic IPs are.
    elastic.extend(
        port::instances_in(tx, &vpc.id)?
            .into_iter()
            .filter_map(|(id, placement)| Some((placement.public_ip?, id))),
    );
    let mut spec = VpcSpec::new(&vpc.id, vpc.cidr);
    spec.subnets = subnets
        .iter()
        .map(|subnet| SubnetSpec {
            id: subnet.id.clone(),
            cidr: subnet.cidr,
            internet: gateway
                .as_ref()
                .is_some_and(|g| RouteTable::is_public(&tables, &subnet.id, &g.id)),
        })
        .collect();
    spec.gateway = gateway.and_then(|g| g.public_ip);
    spec.groups = in_vpc::<SecurityGroup>(tx, &vpc.id)?
        .iter()
        .map(SecurityGroup::realised)
        .collect();
    spec.ports = ports;
    spec.elastic = elastic;
    spec.balancers = crate::cloud::elb::balancers(tx, &vpc.id)?;
    for balancer in &spec.balancers {
        spec.ports.extend(balancer.ports.iter().cloned());
    }
    Ok(spec)
}

/// Checks, inside a change, that VPC `vpc_id` as the change leaves it can
/// be realised, so that a change that cannot is refused before its
/// commit with the reason.
pub fn check(tx: &Tx<'_>, vpc_id: &str) -> Result<(), cloud::Error> {
    let vpc: Vpc = crate::cloud::lookup::find(tx, vpc_id)?;
    Ok(spec(tx, &vpc)?.check().map_err(Error::from)?)
}

/// Converges the VPC of instance `reference`, if it has one, before its
/// VMM opens its port there (`instance start` after a host reboot, which
/// empties /run/netns). Says on standard error what it repaired.
pub fn converge_for_instance(store: &mut Store, reference: &str) -> Result<(), cloud::Error> {
    if let Some((vpc, repaired)) = converge_instance_vpc(store, reference)? {
        if !repaired.is_empty() {
            eprintln!(
                "gureum: VPC {vpc} differed from its records in {} places (a host reboot?): repaired it first",
                repaired.len()
            );
        }
    }
    Ok(())
}

/// Converges the VPC of instance `reference`, if it has one (after its
/// public address was given or taken back); returns the VPC and what
/// differed.
pub fn converge_instance_vpc(
    store: &mut Store,
    reference: &str,
) -> Result<Option<(String, Vec<Difference>)>, cloud::Error> {
    let vpc = store.read(|tx| {
        Ok::<_, cloud::Error>(
            crate::cloud::lookup::find_instance(tx, reference)?
                .placement
                .map(|p| p.vpc_id),
        )
    })?;
    let Some(vpc) = vpc else {
        return Ok(None);
    };
    let differences = converge(
        store,
        &NetConfig::from_env()?,
        Some(std::slice::from_ref(&vpc)),
        Mode::Repair,
    )?;
    Ok(Some((vpc, differences)))
}
