//! A VPC realised in Linux: one network namespace per VPC, so that VPCs are
//! isolated and may use the same block.
//!
//! Inside the namespace:
//! - each subnet is a bridge holding the subnet's router address (.1);
//! - instance ports join their subnet's bridge as *isolated* ports, and the
//!   bridge answers ARP for the whole subnet (proxy_arp_pvlan), so every
//!   packet, even between two instances of one subnet, is routed: as in
//!   AWS, the router sees all traffic, and the security groups live there;
//! - the internet gateway is a veth pair whose other end is in the public
//!   namespace (`public`); a subnet reaches it only when its route table
//!   says so (a policy rule sends the subnet's traffic to the table
//!   holding the default route);
//! - the firewall (security groups, anti-spoofing, NAT) is gureum's own
//!   nft tables, replaced whole in one transaction.
//!
//! The control plane says what a VPC is to hold (`VpcSpec`, from its
//! records); `converge` reads what the namespace holds, notes every
//! difference and, when repairing, makes only that difference. The
//! namespace carries the store's identity (the alias of its loopback), and
//! nothing without it is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cidr::{self, Ipv4Cidr};
use super::link::{self, LinkKind, LinkState, MAX_IFNAME_LEN, RouteState, Rtnl, RuleState};
use super::nft::nat::Nat;
use super::nft::ruleset::{self, Firewall};
use super::nft::security_group::{self, SecurityGroup};
use super::port::Port;
use super::reconcile::{Difference, Found, Mode, Pass, split};
use crate::host::netns::{self, Netns};
use crate::host::sysctl;

/// The namespace prefix of gureum's VPCs (`GUREUM_NET_PREFIX` overrides it).
pub const DEFAULT_PREFIX: &str = "gureum-";
/// The internet gateway's link in the VPC namespace.
pub const GATEWAY_LINK: &str = "igw";
/// What every public-side gateway link's name starts with.
pub const GATEWAY_PEER_PREFIX: &str = "gp";
/// Every namespace's loopback link.
pub(super) const LOOPBACK: &str = "lo";
/// The routing table holding the default route through the gateway.
const INTERNET_TABLE: u32 = 100;
pub const MAIN_TABLE: u32 = 254;
/// The instance metadata service's address, held on every VPC
/// namespace's loopback so that the daemon can listen on it there.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Rule priorities: first the VPC-local routes of the main table (any
/// default route there ignored), then a public subnet's internet table.
const LOCAL_RULE_PRIORITY: u32 = 1000;
/// Replies of flows that came to a load balancer's public address, from
/// any subnet (`elb::REPLY_MARK`), go back through the gateway.
const BALANCER_RULE_PRIORITY: u32 = 1500;
const INTERNET_RULE_PRIORITY: u32 = 2000;
/// A bridge is named for its subnet's ID, cut to fit an interface name.
const BRIDGE_PREFIX: &str = "br-";
/// The loopback alias that says which store a namespace belongs to.
const OWNER_PREFIX: &str = "gureum-store:";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("'{0}' is not a usable ID: use lowercase letters, digits and '-'")]
    BadId(String),
    #[error("'{0}' is not a usable link name: use 1 to {MAX_IFNAME_LEN} of a-z, 0-9 and '-'")]
    BadLinkName(String),
    #[error(transparent)]
    Cidr(#[from] cidr::Error),
    #[error(transparent)]
    SecurityGroup(#[from] security_group::Error),
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error(transparent)]
    Link(#[from] link::Error),
    #[error(transparent)]
    Sysctl(#[from] sysctl::Error),
    #[error(transparent)]
    Nft(#[from] super::nft::Error),
    #[error("VPC {vpc} has no {noun} {id}")]
    Missing {
        vpc: String,
        noun: &'static str,
        id: String,
    },
    #[error("VPC {vpc} has {noun} {id} twice")]
    Duplicate {
        vpc: String,
        noun: &'static str,
        id: String,
    },
    #[error("subnets {id} and {other} would share bridge name {bridge}: give them IDs that differ in the last {} characters", MAX_IFNAME_LEN - BRIDGE_PREFIX.len())]
    BridgeNameClash {
        id: String,
        other: String,
        bridge: String,
    },
    #[error("VPC {vpc} has no internet gateway attached: attach one first")]
    NoGateway { vpc: String },
    #[error("port {port} has no security group: give it at least one")]
    NoGroups { port: String },
    #[error("ports {port} and {other} of VPC {vpc} both have {what}")]
    PortClash {
        vpc: String,
        port: String,
        other: String,
        what: String,
    },
    #[error("cannot make link {link} of port {port}: {source}")]
    PortLink {
        port: String,
        link: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "network namespace '{netns}' belongs to {owner}, not to this store: another gureum \
         state directory uses the same GUREUM_NET_PREFIX; give each its own prefix"
    )]
    Foreign { netns: String, owner: String },
    #[error(
        "GUREUM_UPLINK names interface '{0}', which this host does not have: name one \
         `ip link` lists, or set it to auto (the default route's) or none (no way out)"
    )]
    NoUplink(String),
    #[error("cannot {what} {path}: {source}")]
    Cache {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where gureum's namespaces are, and whose they are.
#[derive(Debug, Clone)]
pub struct Host {
    /// What the names of gureum's namespaces start with.
    pub prefix: String,
    /// The store's identity: namespaces carrying it are this store's.
    pub owner: String,
    /// The public side's router: every gateway's next hop.
    pub router: Ipv4Addr,
    /// Where the firewall listings of the last repair are kept, so that a
    /// check can tell a ruleset changed behind gureum's back.
    pub cache: PathBuf,
}

impl Host {
    pub fn vpc_netns(&self, vpc: &str) -> String {
        format!("{}{vpc}", self.prefix)
    }

    pub fn public_netns(&self) -> String {
        format!("{}public", self.prefix)
    }

    /// Where the firewall listing of namespace `netns` is kept.
    fn listing(&self, netns: &str) -> PathBuf {
        self.cache.join(format!("{netns}.nft"))
    }

    pub(super) fn owner_alias(&self) -> String {
        format!("{OWNER_PREFIX}{}", self.owner)
    }
}

/// One subnet as the records describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSpec {
    pub id: String,
    pub cidr: Ipv4Cidr,
    /// Whether its route table sends 0.0.0.0/0 to the gateway.
    pub internet: bool,
}

/// What one VPC holds in Linux, as the records describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcSpec {
    pub id: String,
    pub cidr: Ipv4Cidr,
    pub subnets: Vec<SubnetSpec>,
    /// The attached gateway's public address.
    pub gateway: Option<Ipv4Addr>,
    pub groups: Vec<SecurityGroup>,
    pub ports: Vec<Port>,
    /// Public addresses mapped 1:1 at the gateway (elastic IPs, and
    /// those given to instances at launch) and the ID of each one's port.
    pub elastic: Vec<(Ipv4Addr, String)>,
    /// Network load balancers (their ports are among `ports`).
    pub balancers: Vec<super::elb::Balancer>,
}

impl VpcSpec {
    pub fn new(id: &str, cidr: Ipv4Cidr) -> Self {
        Self {
            id: id.to_owned(),
            cidr,
            subnets: Vec::new(),
            gateway: None,
            groups: Vec::new(),
            ports: Vec::new(),
            elastic: Vec::new(),
            balancers: Vec::new(),
        }
    }

    /// Checks that the description can be realised: names fit, subnets
    /// lie inside the block without overlapping, ports sit in subnets
    /// with addresses and links of their own and in groups that exist,
    /// and whatever needs the gateway has one.
    pub fn check(&self) -> Result<(), Error> {
        check_id(&self.id)?;
        cidr::check_vpc(self.cidr)?;
        let mut bridges: BTreeMap<String, &str> = BTreeMap::new();
        for (index, subnet) in self.subnets.iter().enumerate() {
            check_id(&subnet.id)?;
            let others = self.subnets.get(..index).unwrap_or_default();
            cidr::check_subnet(subnet.cidr, self.cidr, others.iter().map(|s| &s.cidr))?;
            if let Some(other) = bridges.insert(bridge_name(&subnet.id), &subnet.id) {
                return Err(Error::BridgeNameClash {
                    id: subnet.id.clone(),
                    other: other.to_owned(),
                    bridge: bridge_name(&subnet.id),
                });
            }
            if subnet.internet && self.gateway.is_none() {
                return Err(self.no_gateway());
            }
        }
        let groups = self.group_map();
        for group in &self.groups {
            check_id(&group.id)?;
            group.check_peers(&groups)?;
        }
        for (index, port) in self.ports.iter().enumerate() {
            check_id(&port.id)?;
            check_link_name(&port.link)?;
            let subnet = self
                .subnets
                .iter()
                .find(|s| s.id == port.subnet)
                .ok_or_else(|| self.missing("subnet", &port.subnet))?;
            if !cidr::is_assignable(subnet.cidr, port.ip) {
                return Err(cidr::Error::NotAssignable {
                    subnet: subnet.cidr,
                    address: port.ip,
                }
                .into());
            }
            if port.groups.is_empty() {
                return Err(Error::NoGroups {
                    port: port.id.clone(),
                });
            }
            if let Some(group) = port.groups.iter().find(|g| !groups.contains_key(*g)) {
                return Err(self.missing("security group", group));
            }
            for other in self.ports.get(..index).unwrap_or_default() {
                let clash = if other.id == port.id {
                    Some("one ID".to_owned())
                } else if other.ip == port.ip {
                    Some(format!("address {}", port.ip))
                } else if other.link == port.link {
                    Some(format!("link {}", port.link))
                } else {
                    None
                };
                if let Some(what) = clash {
                    return Err(Error::PortClash {
                        vpc: self.id.clone(),
                        port: port.id.clone(),
                        other: other.id.clone(),
                        what,
                    });
                }
            }
        }
        for balancer in &self.balancers {
            check_id(&balancer.id)?;
            if balancer.public_ip.is_some() && self.gateway.is_none() {
                return Err(self.no_gateway());
            }
            if let Some(port) = balancer
                .ports
                .iter()
                .find(|b| !self.ports.iter().any(|p| p.id == b.id))
            {
                return Err(self.missing("port", &port.id));
            }
        }
        let mut mapped = BTreeSet::new();
        for (address, port) in &self.elastic {
            if self.gateway.is_none() {
                return Err(self.no_gateway());
            }
            if !self.ports.iter().any(|p| p.id == *port) {
                return Err(self.missing("port", port));
            }
            if !mapped.insert(address) {
                return Err(Error::Duplicate {
                    vpc: self.id.clone(),
                    noun: "elastic IP",
                    id: address.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The nft script the VPC's firewall is.
    pub fn firewall_script(&self) -> String {
        let ports: BTreeMap<String, Port> = self
            .ports
            .iter()
            .map(|port| (port.id.clone(), port.clone()))
            .collect();
        let groups = self.group_map();
        let nat = self.gateway.map(|address| Nat {
            link: GATEWAY_LINK,
            address,
            elastic: self
                .elastic
                .iter()
                .filter_map(|(public, port)| Some((*public, ports.get(port)?.ip)))
                .collect(),
        });
        ruleset::script(&Firewall {
            ports: &ports,
            groups: &groups,
            nat,
            balancers: &self.balancers,
        })
    }

    /// The public addresses the gateway answers for beyond its own:
    /// elastic IPs and internet-facing balancers'.
    fn public_addresses(&self) -> Vec<Ipv4Addr> {
        self.elastic
            .iter()
            .map(|(a, _)| *a)
            .chain(self.balancers.iter().filter_map(|b| b.public_ip))
            .collect()
    }

    fn group_map(&self) -> BTreeMap<String, SecurityGroup> {
        self.groups
            .iter()
            .map(|group| (group.id.clone(), group.clone()))
            .collect()
    }

    fn missing(&self, noun: &'static str, id: &str) -> Error {
        Error::Missing {
            vpc: self.id.clone(),
            noun,
            id: id.to_owned(),
        }
    }

    fn no_gateway(&self) -> Error {
        Error::NoGateway {
            vpc: self.id.clone(),
        }
    }

    /// The links gureum makes in the namespace (the loopback aside).
    fn links(&self) -> Vec<(String, Option<LinkKind>)> {
        let bridges = self
            .subnets
            .iter()
            .map(|s| (bridge_name(&s.id), Some(LinkKind::Bridge)));
        let gateway = self
            .gateway
            .map(|_| (GATEWAY_LINK.to_owned(), Some(LinkKind::Veth)));
        // A port's link is a tap in production and a veth in tests.
        let ports = self.ports.iter().map(|p| (p.link.clone(), None));
        bridges.chain(gateway).chain(ports).collect()
    }

    fn sysctls(&self) -> Vec<(String, &'static str)> {
        let mut all: Vec<(String, &'static str)> = vec![
            ("net.ipv4.ip_forward".into(), "1"),
            // Instances of one subnet talk through the router, which would
            // otherwise redirect them to each other.
            ("net.ipv4.conf.all.send_redirects".into(), "0"),
            ("net.ipv4.conf.default.send_redirects".into(), "0"),
        ];
        for subnet in &self.subnets {
            let bridge = bridge_name(&subnet.id);
            // Answer ARP for every address of the subnet: isolated ports
            // then send everything to the router.
            all.push((format!("net.ipv4.conf.{bridge}.proxy_arp_pvlan"), "1"));
            all.push((format!("net.ipv4.neigh.{bridge}.proxy_delay"), "0"));
            all.push((format!("net.ipv4.conf.{bridge}.send_redirects"), "0"));
        }
        all
    }

    fn addresses(&self) -> Vec<(String, Ipv4Addr, u8)> {
        let mut all: Vec<(String, Ipv4Addr, u8)> = self
            .subnets
            .iter()
            .filter_map(|s| Some((bridge_name(&s.id), cidr::router(s.cidr)?, s.cidr.prefix())))
            .collect();
        all.push((LOOPBACK.to_owned(), METADATA_ADDRESS, 32));
        if let Some(resolver) = cidr::resolver(self.cidr) {
            // The resolver of every subnet: reached through their routers.
            all.push((LOOPBACK.to_owned(), resolver, 32));
        }
        if let Some(address) = self.gateway {
            all.push((GATEWAY_LINK.to_owned(), address, 32));
            // Held here so that this end answers ARP for them.
            for public in self.public_addresses() {
                all.push((GATEWAY_LINK.to_owned(), public, 32));
            }
        }
        all
    }

    fn routes(&self, router: Ipv4Addr) -> Vec<RouteState> {
        self.gateway
            .map(|_| RouteState {
                destination: cidr::ANY,
                gateway: Some(router),
                device: GATEWAY_LINK.to_owned(),
                table: INTERNET_TABLE,
            })
            .into_iter()
            .collect()
    }

    fn rules(&self) -> Vec<RuleState> {
        let local = RuleState {
            priority: LOCAL_RULE_PRIORITY,
            input: None,
            table: MAIN_TABLE,
            suppress_default: true,
            fwmark: None,
        };
        let internet = self
            .subnets
            .iter()
            .filter(|s| s.internet)
            .map(|s| RuleState {
                priority: INTERNET_RULE_PRIORITY,
                input: Some(bridge_name(&s.id)),
                table: INTERNET_TABLE,
                suppress_default: false,
                fwmark: None,
            });
        let facing = self.gateway.is_some() && self.balancers.iter().any(|b| b.public_ip.is_some());
        let replies = facing.then_some(RuleState {
            priority: BALANCER_RULE_PRIORITY,
            input: None,
            table: INTERNET_TABLE,
            suppress_default: false,
            fwmark: Some(super::elb::REPLY_MARK),
        });
        // The namespace's own traffic (the VPC resolver forwarding to the
        // host's resolvers) leaves through the gateway, as the AWS
        // resolver reaches the internet.
        let own = self.gateway.map(|_| RuleState {
            priority: INTERNET_RULE_PRIORITY,
            input: Some(LOOPBACK.to_owned()),
            table: INTERNET_TABLE,
            suppress_default: false,
            fwmark: None,
        });
        std::iter::once(local)
            .chain(replies)
            .chain(internet)
            .chain(own)
            .collect()
    }
}

/// Makes the link of a port that is missing (its persistent tap).
pub type MakeLink<'a> =
    dyn FnMut(&Netns, &Port) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + 'a;

/// Opens namespace `name` if it is there and this store's. A namespace
/// without an owner is adopted when the records name it (`adopt`), and
/// otherwise left alone (`None`), as is another store's... which is an
/// error when the records name it.
pub(super) fn open_owned(
    host: &Host,
    name: &str,
    adopt: bool,
    pass: &mut Pass,
) -> Result<Option<(Netns, Rtnl)>, Error> {
    let netns = match Netns::open(name) {
        Ok(netns) => netns,
        Err(netns::Error::Missing(_)) => return Ok(None),
        // A creator killed before the namespace was bound, or a remover
        // killed before it unlinked, leaves its mount point: taken away
        // when the records name it or it carries this store's label.
        Err(netns::Error::NotANamespace(_)) => {
            if adopt || netns::label_of(name)? == host.owner_alias() {
                let found = Found::Wrong {
                    have: "a mount point with no namespace".into(),
                    want: if adopt { "a namespace" } else { "nothing" }.into(),
                };
                if pass.note("the namespace", found) {
                    netns::remove(name)?;
                }
            }
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    let rtnl = Rtnl::open(&netns)?;
    let want = host.owner_alias();
    match owner_of(&rtnl)? {
        Some(owner) if owner == want => Ok(Some((netns, rtnl))),
        Some(owner) if adopt => Err(Error::Foreign {
            netns: name.to_owned(),
            owner,
        }),
        None if adopt => {
            if pass.note("the owner of the namespace", Found::Missing) {
                rtnl.set_alias(LOOPBACK, &want)?;
            }
            Ok(Some((netns, rtnl)))
        }
        _ => Ok(None),
    }
}

/// Which store namespace `rtnl` is in belongs to, if any.
fn owner_of(rtnl: &Rtnl) -> Result<Option<String>, Error> {
    Ok(rtnl
        .link_states()?
        .into_iter()
        .find(|link| link.name == LOOPBACK)
        .and_then(|lo| lo.alias)
        .filter(|alias| alias.starts_with(OWNER_PREFIX)))
}

/// Creates namespace `name` marked as this store's: the mark is set
/// before the namespace is named, so no namespace of this store is ever
/// without it.
pub(super) fn create_owned(host: &Host, name: &str) -> Result<(Netns, Rtnl), Error> {
    let alias = host.owner_alias();
    let netns = Netns::create_with(name, &alias, || {
        Rtnl::open_here(name)?.set_alias(LOOPBACK, &alias)
    })?;
    let rtnl = Rtnl::open(&netns)?;
    Ok((netns, rtnl))
}

/// Brings VPC `spec` in Linux in line with its description; `public` is
/// the public namespace (there when the VPC has a gateway).
pub fn converge(
    host: &Host,
    spec: &VpcSpec,
    public: Option<&Netns>,
    mode: Mode,
    make_link: &mut MakeLink<'_>,
) -> Result<Vec<Difference>, Error> {
    spec.check()?;
    let name = host.vpc_netns(&spec.id);
    let mut pass = Pass::new(&name, mode);
    let (netns, rtnl) = match open_owned(host, &name, true, &mut pass)? {
        Some(open) => open,
        None => {
            if !pass.note("the namespace", Found::Missing) {
                return Ok(pass.into_differences());
            }
            create_owned(host, &name)?
        }
    };
    converge_links(spec, &netns, &rtnl, public, &mut pass, make_link)?;
    converge_sysctls(&netns, &spec.sysctls(), &mut pass)?;
    if !spec.balancers.is_empty() {
        super::elb::converge_bridge_netfilter(&netns, &mut pass)?;
    }
    // The loopback's own addresses are the kernel's; the metadata and
    // resolver addresses on it are gureum's.
    let resolver = cidr::resolver(spec.cidr);
    let managed = |link: &str, address: Ipv4Addr| {
        link != LOOPBACK || address == METADATA_ADDRESS || Some(address) == resolver
    };
    converge_addresses(&rtnl, &spec.addresses(), managed, &mut pass)?;
    let mut routes = spec.routes(host.router);
    converge_routes(&rtnl, INTERNET_TABLE, &routes, |_| true, &mut pass)?;
    routes.clear();
    converge_routes(&rtnl, MAIN_TABLE, &routes, |_| true, &mut pass)?;
    converge_rules(&rtnl, &spec.rules(), &mut pass)?;
    converge_firewall(host, &netns, &spec.firewall_script(), &mut pass)?;
    Ok(pass.into_differences())
}

fn converge_links(
    spec: &VpcSpec,
    netns: &Netns,
    rtnl: &Rtnl,
    public: Option<&Netns>,
    pass: &mut Pass,
    make_link: &mut MakeLink<'_>,
) -> Result<(), Error> {
    let want = spec.links();
    let mut have: BTreeMap<String, LinkState> = rtnl
        .link_states()?
        .into_iter()
        .map(|link| (link.name.clone(), link))
        .collect();
    // What no record owns goes first: it may hold a name to be made.
    let extra: Vec<String> = have
        .keys()
        .filter(|name| *name != LOOPBACK && !want.iter().any(|(w, _)| w == *name))
        .cloned()
        .collect();
    for name in extra {
        if pass.note(format_args!("link {name}"), Found::Extra) {
            rtnl.delete(&name)?;
        }
        have.remove(&name);
    }
    let peer = gateway_peer_name(netns.name());
    for (name, kind) in &want {
        let state = have.get(name);
        let wrong_kind = match (state, kind) {
            (Some(state), Some(kind)) => state.kind != *kind,
            _ => false,
        };
        // The gateway's other end must be in the public namespace.
        let lost_peer = name == GATEWAY_LINK
            && state.is_some()
            && match public {
                Some(public) => Rtnl::open(public)?.index(&peer)?.is_none(),
                None => true,
            };
        if wrong_kind || lost_peer {
            if !pass.note(
                format_args!("link {name}"),
                Found::Wrong {
                    have: if lost_peer {
                        "without its public end".into()
                    } else {
                        "of another kind".into()
                    },
                    want: "as gureum makes it".into(),
                },
            ) {
                continue;
            }
            rtnl.delete(name)?;
        } else if state.is_some() || !pass.note(format_args!("link {name}"), Found::Missing) {
            continue;
        }
        if name == GATEWAY_LINK {
            let public = public.ok_or_else(|| spec.no_gateway())?;
            make_gateway_link(netns, rtnl, public, &peer)?;
        } else if let Some(port) = spec.ports.iter().find(|p| p.link == *name) {
            make_link(netns, port).map_err(|source| Error::PortLink {
                port: port.id.clone(),
                link: port.link.clone(),
                source,
            })?;
        } else {
            rtnl.add_bridge(name)?;
        }
    }
    // Ports on their bridge, isolated; everything up.
    let have: BTreeMap<String, LinkState> = rtnl
        .link_states()?
        .into_iter()
        .map(|link| (link.name.clone(), link))
        .collect();
    for port in &spec.ports {
        let Some(state) = have.get(&port.link) else {
            continue;
        };
        let bridge = bridge_name(&port.subnet);
        let want = format!("an isolated port of {bridge}");
        let now = match (&state.controller, state.isolated) {
            (Some(c), true) => format!("an isolated port of {c}"),
            (Some(c), false) => format!("a port of {c}"),
            (None, _) => "on no bridge".to_owned(),
        };
        if pass.compare(format_args!("link {}", port.link), &now, &want) {
            rtnl.set_bridge(&port.link, Some(&bridge))?;
        }
    }
    let up: Vec<String> = std::iter::once(LOOPBACK.to_owned())
        .chain(want.into_iter().map(|(name, _)| name))
        .collect();
    for name in up {
        if let Some(state) = have.get(&name) {
            if pass.compare(
                format_args!("link {name}"),
                &updown(state.up),
                &updown(true),
            ) {
                rtnl.set_up(&name)?;
            }
        }
    }
    Ok(())
}

pub(super) fn updown(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

/// Makes the gateway's veth pair, its far end moved into `public` and
/// labelled with the VPC's namespace (so the public side knows whose it
/// is). A far end an earlier namespace of the same name left behind (the
/// kernel frees a deleted namespace's links only eventually) goes first.
fn make_gateway_link(netns: &Netns, rtnl: &Rtnl, public: &Netns, peer: &str) -> Result<(), Error> {
    let public_rtnl = Rtnl::open(public)?;
    let stale = public_rtnl
        .links()?
        .into_iter()
        .any(|(name, alias)| name == peer && alias.as_deref() == Some(netns.name()));
    if stale {
        public_rtnl.delete(peer)?;
    }
    rtnl.add_veth(GATEWAY_LINK, peer)?;
    let moved = rtnl
        .set_alias(peer, netns.name())
        .and_then(|()| rtnl.move_to(peer, public));
    if let Err(error) = moved {
        // Deleting one end deletes both.
        let _ = rtnl.delete(GATEWAY_LINK);
        return Err(error.into());
    }
    Ok(())
}

pub(super) fn converge_sysctls(
    netns: &Netns,
    want: &[(String, &str)],
    pass: &mut Pass,
) -> Result<(), Error> {
    let keys: Vec<String> = want.iter().map(|(key, _)| key.clone()).collect();
    let have = sysctl::get_all(netns, &keys)?;
    for ((key, value), now) in want.iter().zip(have) {
        let now = now.unwrap_or_else(|| "absent".to_owned());
        if pass.compare(format_args!("sysctl {key}"), &now, &(*value).to_owned()) {
            sysctl::set(netns, key, value)?;
        }
    }
    Ok(())
}

/// Makes the addresses on the links `managed` picks exactly `want`.
pub(super) fn converge_addresses(
    rtnl: &Rtnl,
    want: &[(String, Ipv4Addr, u8)],
    managed: impl Fn(&str, Ipv4Addr) -> bool,
    pass: &mut Pass,
) -> Result<(), Error> {
    let have: Vec<(String, Ipv4Addr, u8)> = rtnl
        .addresses()?
        .into_iter()
        .filter(|(link, address, _)| managed(link, *address))
        .collect();
    let (missing, extra) = split(want, &have);
    for (link, address, prefix) in extra {
        if pass.note(
            format_args!("address {address}/{prefix} on {link}"),
            Found::Extra,
        ) {
            rtnl.delete_address(link, *address)?;
        }
    }
    for (link, address, prefix) in missing {
        if pass.note(
            format_args!("address {address}/{prefix} on {link}"),
            Found::Missing,
        ) {
            rtnl.add_address(link, *address, *prefix)?;
        }
    }
    Ok(())
}

/// Makes the routes of `table` through the links `managed` picks exactly
/// `want` (routes the kernel makes for addresses are not gureum's).
pub(super) fn converge_routes(
    rtnl: &Rtnl,
    table: u32,
    want: &[RouteState],
    managed: impl Fn(&str) -> bool,
    pass: &mut Pass,
) -> Result<(), Error> {
    let have: Vec<RouteState> = rtnl
        .routes(table)?
        .into_iter()
        .filter(|route| managed(&route.device))
        .collect();
    let (missing, extra) = split(want, &have);
    for route in extra {
        if pass.note(route.route(), Found::Extra) {
            rtnl.delete_route(&route.route())?;
        }
    }
    for route in missing {
        if pass.note(route.route(), Found::Missing) {
            rtnl.add_route(&route.route())?;
        }
    }
    Ok(())
}

fn converge_rules(rtnl: &Rtnl, want: &[RuleState], pass: &mut Pass) -> Result<(), Error> {
    let have = rtnl.rules()?;
    let (missing, extra) = split(want, &have);
    for rule in extra {
        if pass.note(rule.rule(), Found::Extra) {
            rtnl.delete_rule(&rule.rule())?;
        }
    }
    for rule in missing {
        if pass.note(rule.rule(), Found::Missing) {
            rtnl.add_rule(&rule.rule())?;
        }
    }
    Ok(())
}

/// The ruleset of the namespace as the last repair left it is kept in the
/// cache with a hash of the script it came from: a check compares the
/// listing with it, a repair applies the script whole when they differ.
fn converge_firewall(
    host: &Host,
    netns: &Netns,
    script: &str,
    pass: &mut Pass,
) -> Result<(), Error> {
    converge_nft(
        &host.listing(netns.name()),
        script,
        "the firewall (nft tables)",
        || super::nft::list_ruleset(netns),
        || super::nft::apply(netns, script),
        pass,
    )
}

/// One table of gureum's in a namespace that is not gureum's (the host's),
/// checked and replaced as the firewall of a VPC is, and nothing else of
/// that namespace's ruleset touched.
pub(super) fn converge_table(
    host: &Host,
    netns: &Netns,
    family: &str,
    table: &str,
    script: &str,
    pass: &mut Pass,
) -> Result<(), Error> {
    converge_nft(
        &table_listing(host, netns, family, table),
        script,
        &format!("nft table {family} {table}"),
        || super::nft::list_table(netns, family, table),
        || super::nft::replace_table(netns, family, table, script),
        pass,
    )
}

/// Where the listing of table `family table` in `netns` is kept when it
/// is applied (by `converge_table`).
pub(super) fn table_listing(host: &Host, netns: &Netns, family: &str, table: &str) -> PathBuf {
    host.listing(&format!("{}-{family}-{table}", netns.name()))
}

/// Compares what `list` shows with the listing kept in `cache` when
/// `script` was last applied; applies it (and keeps the new listing) when
/// they differ and the pass repairs.
fn converge_nft(
    cache: &Path,
    script: &str,
    object: &str,
    list: impl Fn() -> Result<String, super::nft::Error>,
    apply: impl Fn() -> Result<(), super::nft::Error>,
    pass: &mut Pass,
) -> Result<(), Error> {
    let stamp = format!("# script {:016x}\n", fnv1a64(script.as_bytes()));
    let kept = match std::fs::read_to_string(cache) {
        Ok(kept) => Some(kept),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Cache {
                what: "read",
                path: cache.to_path_buf(),
                source,
            });
        }
    };
    // Listed only when the records are those of the last repair: else the
    // ruleset cannot be right. (Listed in a run of its own after the
    // apply: a listing in the applying run differs in form.)
    let found = match kept.as_deref().and_then(|kept| kept.strip_prefix(&stamp)) {
        Some(listing) => {
            let have = list()?;
            if listing == have {
                return Ok(());
            }
            if have.trim().is_empty() {
                Found::Missing
            } else {
                Found::Wrong {
                    have: "changed by hand".into(),
                    want: "the one its records compile to".into(),
                }
            }
        }
        None => Found::Wrong {
            have: "not known to be the one of its records".into(),
            want: "the one they compile to".into(),
        },
    };
    if !pass.note(object, found) {
        return Ok(());
    }
    apply()?;
    let listing = list()?;
    write_cache(cache, &format!("{stamp}{listing}"))
}

pub(super) fn write_cache(path: &Path, text: &str) -> Result<(), Error> {
    let cache_error = |what| {
        move |source| Error::Cache {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(cache_error("create the directory of"))?;
    }
    // Written whole then renamed: a crash leaves the old listing or the
    // new one, and either only makes the next pass apply the script again.
    let partial = path.with_extension("nft.partial");
    std::fs::write(&partial, text).map_err(cache_error("write"))?;
    std::fs::rename(&partial, path).map_err(cache_error("rename into"))
}

/// The public namespace: where every attached gateway's far end is, with
/// the router address and a route to each public address it serves.
/// It exists while some VPC has a gateway.
pub fn converge_public(
    host: &Host,
    specs: &[VpcSpec],
    mode: Mode,
) -> Result<(Option<Netns>, Vec<Difference>), Error> {
    let name = host.public_netns();
    let mut pass = Pass::new(&name, mode);
    // A VPC whose description cannot be realised is left as it is (its
    // own pass says why), public end included: it may need the namespace.
    let gateways: Vec<&VpcSpec> = specs
        .iter()
        .filter(|s| s.gateway.is_some() || s.check().is_err())
        .collect();
    let open = open_owned(host, &name, !gateways.is_empty(), &mut pass)?;
    if gateways.is_empty() {
        if let Some((netns, rtnl)) = open {
            if pass.note("the namespace", Found::Extra) {
                remove_namespace(netns, rtnl)?;
            }
        }
        return Ok((None, pass.into_differences()));
    }
    let (netns, rtnl) = match open {
        Some(open) => open,
        None => {
            if !pass.note("the namespace", Found::Missing) {
                return Ok((None, pass.into_differences()));
            }
            create_owned(host, &name)?
        }
    };
    let lo = rtnl.link_states()?.into_iter().find(|l| l.name == LOOPBACK);
    if pass.compare("link lo", &updown(lo.is_some_and(|l| l.up)), &updown(true)) {
        rtnl.set_up(LOOPBACK)?;
    }
    converge_sysctls(
        &netns,
        &[("net.ipv4.ip_forward".to_owned(), "1")],
        &mut pass,
    )?;
    Ok((Some(netns), pass.into_differences()))
}

/// The gateway ends in the public namespace: each attached gateway's is
/// up with the router address and routes its public addresses; ends no
/// VPC of this store has any more go. Run after the VPCs, which make the
/// ends.
pub fn converge_public_links(
    host: &Host,
    specs: &[VpcSpec],
    public: &Netns,
    mode: Mode,
) -> Result<Vec<Difference>, Error> {
    let mut pass = Pass::new(public.name(), mode);
    let rtnl = Rtnl::open(public)?;
    let mut wanted = BTreeMap::new();
    // The ends of VPCs whose descriptions cannot be realised stay as
    // they are, as do those VPCs.
    let mut untouched = BTreeSet::new();
    for spec in specs {
        let peer = gateway_peer_name(&host.vpc_netns(&spec.id));
        if spec.check().is_err() {
            untouched.insert(peer);
        } else if let Some(address) = spec.gateway {
            let mut addresses = vec![address];
            addresses.extend(spec.public_addresses());
            wanted.insert(peer, addresses);
        }
    }
    let ours = |name: &str| name.starts_with(GATEWAY_PEER_PREFIX) && !untouched.contains(name);
    let links: Vec<LinkState> = rtnl
        .link_states()?
        .into_iter()
        .filter(|l| ours(&l.name))
        .collect();
    for link in &links {
        if !wanted.contains_key(&link.name) {
            if pass.note(format_args!("link {}", link.name), Found::Extra) {
                rtnl.delete(&link.name)?;
            }
        } else if pass.compare(
            format_args!("link {}", link.name),
            &updown(link.up),
            &updown(true),
        ) {
            rtnl.set_up(&link.name)?;
        }
    }
    let present: Vec<&String> = wanted
        .keys()
        .filter(|peer| links.iter().any(|l| l.name == **peer))
        .collect();
    let addresses: Vec<(String, Ipv4Addr, u8)> = present
        .iter()
        .map(|peer| ((*peer).clone(), host.router, 32))
        .collect();
    let is_present = |link: &str| present.iter().any(|p| *p == link);
    converge_addresses(&rtnl, &addresses, |link, _| is_present(link), &mut pass)?;
    let routes: Vec<RouteState> = present
        .iter()
        .flat_map(|peer| {
            wanted
                .get(*peer)
                .into_iter()
                .flatten()
                .map(|address| RouteState {
                    destination: Ipv4Cidr::host(*address),
                    gateway: None,
                    device: (*peer).clone(),
                    table: MAIN_TABLE,
                })
        })
        .collect();
    converge_routes(&rtnl, MAIN_TABLE, &routes, is_present, &mut pass)?;
    Ok(pass.into_differences())
}

/// Of the namespaces `candidates` (named with the prefix, but no record's),
/// those that are this store's are removed when repairing. Namespaces of
/// other stores, and namespaces nobody marked, are never touched.
pub fn converge_orphans(
    host: &Host,
    candidates: &[String],
    mode: Mode,
) -> Result<Vec<Difference>, Error> {
    let public = host.public_netns();
    let mut found = Vec::new();
    for name in candidates.iter().filter(|name| **name != public) {
        let mut pass = Pass::new(name, mode);
        if let Some((netns, rtnl)) = open_owned(host, name, false, &mut pass)? {
            if pass.note("the namespace", Found::Extra) {
                remove_namespace(netns, rtnl)?;
                forget_listing(host, name)?;
            }
        }
        found.extend(pass.into_differences());
    }
    Ok(found)
}

/// Removes the firewall listing kept for namespace `name`, if any.
fn forget_listing(host: &Host, name: &str) -> Result<(), Error> {
    let path = host.listing(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Cache {
            what: "remove",
            path,
            source,
        }),
    }
}

/// Deletes a namespace of this store: its veths first (a VPC's gateway
/// link, the public namespace's gateway ends), so that their far ends go
/// at once rather than whenever the kernel frees the namespace, which
/// would pull links from under a pass over the VPC at the other end.
fn remove_namespace(netns: Netns, rtnl: Rtnl) -> Result<(), Error> {
    for link in rtnl.link_states()? {
        if link.kind == LinkKind::Veth {
            rtnl.delete(&link.name)?;
        }
    }
    // The netlink socket holds the namespace; close it first.
    drop(rtnl);
    Ok(netns.delete()?)
}

/// The public end of a VPC's gateway link: "gp" and a hash of the VPC's
/// namespace name (names there must be unique across VPCs, and short).
pub fn gateway_peer_name(netns: &str) -> String {
    format!("{GATEWAY_PEER_PREFIX}{:08x}", short_hash(netns))
}

/// 32 bits of a stable hash of `text`: a link name has room for 8 hex
/// digits after a two-letter prefix.
pub(super) fn short_hash(text: &str) -> u32 {
    (fnv1a64(text.as_bytes()) & 0xffff_ffff) as u32
}

/// FNV-1a: stable across runs and Rust versions, unlike the std hasher.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The bridge of subnet `subnet`.
pub fn bridge_name(subnet: &str) -> String {
    let room = MAX_IFNAME_LEN - BRIDGE_PREFIX.len();
    let tail = subnet
        .get(subnet.len().saturating_sub(room)..)
        .unwrap_or(subnet);
    format!("{BRIDGE_PREFIX}{tail}")
}

fn is_name_char(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
}

/// IDs become namespace, link, chain and set names: only characters that
/// are safe in all of them.
fn check_id(id: &str) -> Result<(), Error> {
    if !id.is_empty() && id.len() <= 48 && id.bytes().all(is_name_char) {
        Ok(())
    } else {
        Err(Error::BadId(id.to_owned()))
    }
}

pub(super) fn check_link_name(name: &str) -> Result<(), Error> {
    if !name.is_empty() && name.len() <= MAX_IFNAME_LEN && name.bytes().all(is_name_char) {
        Ok(())
    } else {
        Err(Error::BadLinkName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mac::MacAddr;

    #[test]
    fn bridge_names_fit_an_interface_name() {
        assert_eq!(bridge_name("subnet-0123456789abcdef"), "br-456789abcdef");
        assert_eq!(bridge_name("a"), "br-a");
        assert!(bridge_name("subnet-0123456789abcdef").len() <= MAX_IFNAME_LEN);
    }

    #[test]
    fn gateway_peer_names_are_stable_and_short() {
        assert_eq!(gateway_peer_name("gr-vpc-1"), gateway_peer_name("gr-vpc-1"));
        assert_ne!(gateway_peer_name("gr-vpc-1"), gateway_peer_name("gr-vpc-2"));
        assert_eq!(gateway_peer_name("gr-vpc-1").len(), 10);
    }

    #[test]
    fn ids_and_link_names_are_checked() {
        check_id("vpc-0abc").unwrap();
        for bad in ["", "VPC", "a_b", "a b", "a;b", "a\"b"] {
            assert!(matches!(check_id(bad), Err(Error::BadId(_))), "{bad}");
        }
        check_link_name("tap-i-0abc").unwrap();
        assert!(check_link_name("tap-0123456789ab").is_err());
    }

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    fn spec() -> VpcSpec {
        let mut spec = VpcSpec::new("vpc-1", cidr("10.0.0.0/16"));
        spec.subnets.push(SubnetSpec {
            id: "subnet-a".into(),
            cidr: cidr("10.0.1.0/24"),
            internet: true,
        });
        spec.gateway = Some(Ipv4Addr::new(203, 0, 113, 2));
        spec.groups.push(SecurityGroup::new("sg-1"));
        spec.ports.push(Port {
            id: "i-1".into(),
            link: "t-1".into(),
            subnet: "subnet-a".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ip: Ipv4Addr::new(10, 0, 1, 10),
            groups: vec!["sg-1".into()],
            source_dest_check: true,
        });
        spec.elastic
            .push((Ipv4Addr::new(203, 0, 113, 3), "i-1".into()));
        spec
    }

    #[test]
    fn a_coherent_spec_passes_and_derives_what_linux_holds() {
        let spec = spec();
        spec.check().unwrap();
        assert_eq!(
            spec.addresses(),
            [
                ("br-subnet-a".to_owned(), Ipv4Addr::new(10, 0, 1, 1), 24),
                (LOOPBACK.to_owned(), METADATA_ADDRESS, 32),
                (LOOPBACK.to_owned(), Ipv4Addr::new(10, 0, 0, 2), 32),
                ("igw".to_owned(), Ipv4Addr::new(203, 0, 113, 2), 32),
                ("igw".to_owned(), Ipv4Addr::new(203, 0, 113, 3), 32),
            ]
        );
        assert_eq!(spec.rules().len(), 3);
        assert_eq!(spec.routes(Ipv4Addr::new(203, 0, 113, 1)).len(), 1);
        let links: Vec<String> = spec.links().into_iter().map(|(name, _)| name).collect();
        assert_eq!(links, ["br-subnet-a", "igw", "t-1"]);
        assert!(spec.firewall_script().contains("203.0.113.3"));
    }

    #[test]
    fn incoherent_specs_are_refused_before_linux_is_touched() {
        let mut no_gateway = spec();
        no_gateway.gateway = None;
        assert!(matches!(no_gateway.check(), Err(Error::NoGateway { .. })));
        let mut twin = spec();
        let mut port = twin.ports[0].clone();
        port.id = "i-2".into();
        port.link = "t-2".into();
        twin.ports.push(port);
        assert!(
            matches!(twin.check(), Err(Error::PortClash { .. })),
            "{:?}",
            twin.check()
        );
        let mut unknown_group = spec();
        unknown_group.ports[0].groups = vec!["sg-9".into()];
        assert!(matches!(unknown_group.check(), Err(Error::Missing { .. })));
        let mut outside = spec();
        outside.subnets[0].cidr = cidr("10.1.0.0/24");
        assert!(outside.check().is_err());
    }
}
