//! A VPC realised in Linux: one network namespace per VPC, so that VPCs are
//! isolated and may use the same block.
//!
//! Inside the namespace:
//! - each subnet is a bridge holding the subnet's router address (.1);
//! - instance ports join their subnet's bridge as *isolated* ports, and the
//!   bridge answers ARP for the whole subnet (proxy_arp_pvlan), so every
//!   packet, even between two instances of one subnet, is routed: as in
//!   AWS, the router sees all traffic, and the security groups live there;
//! - the internet gateway is a veth pair whose other end is in a "public"
//!   namespace; a subnet reaches it only when its route table says so
//!   (a policy rule sends the subnet's traffic to the table holding the
//!   default route);
//! - the firewall (security groups, anti-spoofing, NAT) is gureum's own
//!   nft tables, rebuilt whole in one transaction on every change.
//!
//! Every method changes all or nothing: what a failing step's predecessors
//! made is undone, and the in-memory state is only updated on success.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::cidr::{self, Ipv4Cidr};
use super::link::{self, MAX_IFNAME_LEN, Route, Rtnl, Rule};
use super::netns::{self, Netns};
use super::nft::nat::Nat;
use super::nft::ruleset::{self, Firewall};
use super::nft::security_group::{self, SecurityGroup};
use super::port::Port;
use super::sysctl;
use super::undo::Undo;

/// The namespace prefix of gureum's VPCs (`GUREUM_NET_PREFIX` overrides it).
pub const DEFAULT_PREFIX: &str = "gureum-";
/// The internet gateway's link in the VPC namespace.
pub const GATEWAY_LINK: &str = "igw";
/// The routing table holding the default route through the gateway.
const INTERNET_TABLE: u32 = 100;
const MAIN_TABLE: u32 = 254;
/// Rule priorities: first the VPC-local routes of the main table (any
/// default route there ignored), then a public subnet's internet table.
const LOCAL_RULE_PRIORITY: u32 = 1000;
const INTERNET_RULE_PRIORITY: u32 = 2000;
/// A bridge is named for its subnet's ID, cut to fit an interface name.
const BRIDGE_PREFIX: &str = "br-";

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
    #[error("VPC {vpc} already has a {noun} {id}")]
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
    #[error("{noun} {id} is still used by {user}: {fix}")]
    InUse {
        noun: &'static str,
        id: String,
        user: String,
        fix: &'static str,
    },
    #[error("VPC {vpc} already has an internet gateway attached")]
    GatewayAttached { vpc: String },
    #[error("VPC {vpc} has no internet gateway attached: attach one first")]
    NoGateway { vpc: String },
    #[error("port {port} has no security group: give it at least one")]
    NoGroups { port: String },
    #[error("cannot make link {link} of port {port}: {source}")]
    PortLink {
        port: String,
        link: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

#[derive(Debug, Clone)]
struct Subnet {
    cidr: Ipv4Cidr,
    bridge: String,
    /// Whether the subnet's route table sends 0.0.0.0/0 to the gateway.
    internet: bool,
}

#[derive(Debug, Clone)]
struct Gateway {
    /// The gateway's public address: ordinary outbound traffic leaves
    /// with it.
    address: Ipv4Addr,
    /// The public side's end of the veth pair, and a connection there.
    peer: String,
    public: Rtnl,
}

/// What a realised VPC holds, for `Vpc::open`.
#[derive(Debug, Default)]
pub struct Holdings {
    /// Subnet ID, block, and whether its route table reaches the gateway.
    pub subnets: Vec<(String, Ipv4Cidr, bool)>,
    /// The public namespace and the gateway's address, when attached.
    pub gateway: Option<(Netns, Ipv4Addr)>,
    pub groups: Vec<SecurityGroup>,
    pub ports: Vec<Port>,
    /// Elastic IP and the ID of the port it maps to.
    pub elastic: Vec<(Ipv4Addr, String)>,
}

/// What the firewall is compiled from; cloned before a change so that a
/// failed change leaves it as it was.
#[derive(Debug, Clone, Default)]
struct State {
    subnets: BTreeMap<String, Subnet>,
    ports: BTreeMap<String, Port>,
    groups: BTreeMap<String, SecurityGroup>,
    /// Elastic IP -> the ID of the port it maps to.
    elastic: BTreeMap<Ipv4Addr, String>,
    gateway: Option<Gateway>,
}

/// A live VPC namespace and what gureum made in it.
#[derive(Debug)]
pub struct Vpc {
    id: String,
    cidr: Ipv4Cidr,
    netns: Netns,
    rtnl: Rtnl,
    state: State,
}

impl Vpc {
    /// Creates VPC `id` with block `cidr` as namespace `prefix` + `id`.
    /// The netmask rule is enforced here; the warning for a block outside
    /// RFC 1918 is the caller's to show (`cidr::check_vpc`).
    pub fn create(prefix: &str, id: &str, cidr: Ipv4Cidr) -> Result<Self, Error> {
        check_id(id)?;
        cidr::check_vpc(cidr)?;
        let netns = Netns::create(&format!("{prefix}{id}"))?;
        let mut undo = Undo::new();
        let name = netns.name().to_owned();
        undo.push(move || netns::remove(&name));
        let rtnl = Rtnl::open(&netns)?;
        rtnl.set_up("lo")?;
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            // Instances of one subnet talk through the router, which would
            // otherwise redirect them to each other.
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
        ] {
            sysctl::set(&netns, key, value)?;
        }
        rtnl.add_rule(&Rule {
            priority: LOCAL_RULE_PRIORITY,
            input: None,
            table: MAIN_TABLE,
            suppress_default: true,
        })?;
        let vpc = Self {
            id: id.to_owned(),
            cidr,
            netns,
            rtnl,
            state: State::default(),
        };
        vpc.apply_firewall(&vpc.state)?;
        undo.commit();
        Ok(vpc)
    }

    /// Rebuilds VPC `id` from what the records say it holds, when its
    /// namespace is gone (a host reboot empties /run): the holdings are
    /// replayed through the methods that made them. `router` is the
    /// public side's, for the gateway; `make_link` makes a port's link in
    /// the new namespace before the port is attached. All or nothing: on
    /// failure the namespace and the gateway link are gone again.
    pub fn rebuild<E: std::error::Error + Send + Sync + 'static>(
        prefix: &str,
        id: &str,
        cidr: Ipv4Cidr,
        holds: Holdings,
        router: Ipv4Addr,
        mut make_link: impl FnMut(&Netns, &Port) -> Result<(), E>,
    ) -> Result<Self, Error> {
        let mut vpc = Self::create(prefix, id, cidr)?;
        let mut undo = Undo::new();
        let name = vpc.netns.name().to_owned();
        undo.push(move || netns::remove(&name));
        for (subnet, block, _) in &holds.subnets {
            vpc.add_subnet(subnet, *block)?;
        }
        if let Some((public, address)) = &holds.gateway {
            vpc.remove_stale_peer(public)?;
            vpc.attach_gateway(public, *address, router)?;
            // Deleting this end deletes the public one at once, rather
            // than whenever the kernel frees the namespace.
            let rtnl = vpc.rtnl.clone();
            undo.push(move || rtnl.delete(GATEWAY_LINK));
        }
        vpc.put_groups(holds.groups)?;
        for (subnet, _, internet) in &holds.subnets {
            if *internet {
                vpc.set_subnet_internet(subnet, true)?;
            }
        }
        for port in holds.ports {
            make_link(&vpc.netns, &port).map_err(|source| Error::PortLink {
                port: port.id.clone(),
                link: port.link.clone(),
                source: Box::new(source),
            })?;
            vpc.attach_port(port)?;
        }
        for (address, port) in &holds.elastic {
            vpc.associate_address(*address, port)?;
        }
        undo.commit();
        Ok(vpc)
    }

    /// Deletes the public end of this VPC's gateway link that an earlier
    /// namespace of the same name left behind: the kernel deletes it only
    /// once it frees that namespace, which may not have happened yet.
    /// A link of that name serving another namespace is left to refuse
    /// the attachment.
    fn remove_stale_peer(&self, public: &Netns) -> Result<(), Error> {
        let public = Rtnl::open(public)?;
        let peer = self.gateway_peer_name();
        let stale = public
            .links()?
            .into_iter()
            .any(|(name, alias)| name == peer && alias.as_deref() == Some(self.netns.name()));
        if stale {
            if let Err(error) = public.delete(&peer) {
                // Gone meanwhile is as good.
                if public.index(&peer)?.is_some() {
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    /// Reopens VPC `id`, made earlier (by another process) as namespace
    /// `prefix` + `id`, with what the control plane's records say it
    /// holds. Nothing in Linux changes: the next change rebuilds the
    /// firewall whole from this state, so the records are the truth.
    pub fn open(prefix: &str, id: &str, cidr: Ipv4Cidr, holds: Holdings) -> Result<Self, Error> {
        check_id(id)?;
        let netns = Netns::open(&format!("{prefix}{id}"))?;
        let rtnl = Rtnl::open(&netns)?;
        let gateway = match holds.gateway {
            Some((public, address)) => Some(Gateway {
                address,
                peer: gateway_peer_name(netns.name()),
                public: Rtnl::open(&public)?,
            }),
            None => None,
        };
        let state = State {
            subnets: holds
                .subnets
                .into_iter()
                .map(|(id, cidr, internet)| {
                    let bridge = bridge_name(&id);
                    (
                        id,
                        Subnet {
                            cidr,
                            bridge,
                            internet,
                        },
                    )
                })
                .collect(),
            ports: holds
                .ports
                .into_iter()
                .map(|port| (port.id.clone(), port))
                .collect(),
            groups: holds
                .groups
                .into_iter()
                .map(|group| (group.id.clone(), group))
                .collect(),
            elastic: holds.elastic.into_iter().collect(),
            gateway,
        };
        Ok(Self {
            id: id.to_owned(),
            cidr,
            netns,
            rtnl,
            state,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Deletes the VPC and everything in it: the gateway's link first, so
    /// that its public end is gone when this returns, then the namespace.
    pub fn delete(self) -> Result<(), Error> {
        if self.state.gateway.is_some() {
            self.rtnl.delete(GATEWAY_LINK)?;
        }
        let Self { netns, rtnl, .. } = self;
        // The netlink socket holds the namespace; close it first.
        drop(rtnl);
        Ok(netns.delete()?)
    }

    /// Adds subnet `id`: a bridge holding the router address.
    pub fn add_subnet(&mut self, id: &str, cidr: Ipv4Cidr) -> Result<(), Error> {
        check_id(id)?;
        if self.state.subnets.contains_key(id) {
            return Err(self.duplicate("subnet", id));
        }
        cidr::check_subnet(
            cidr,
            self.cidr,
            self.state.subnets.values().map(|subnet| &subnet.cidr),
        )?;
        let bridge = bridge_name(id);
        if let Some((other, _)) = self
            .state
            .subnets
            .iter()
            .find(|(_, subnet)| subnet.bridge == bridge)
        {
            return Err(Error::BridgeNameClash {
                id: id.to_owned(),
                other: other.clone(),
                bridge,
            });
        }
        let router = cidr::router(cidr).ok_or(cidr::Error::Full {
            subnet: cidr,
            capacity: 0,
        })?;
        let mut undo = Undo::new();
        self.rtnl.add_bridge(&bridge)?;
        let (rtnl, name) = (self.rtnl.clone(), bridge.clone());
        undo.push(move || rtnl.delete(&name));
        for (key, value) in [
            // Answer ARP for every address of the subnet: isolated ports
            // then send everything to the router.
            (format!("net.ipv4.conf.{bridge}.proxy_arp_pvlan"), "1"),
            (format!("net.ipv4.neigh.{bridge}.proxy_delay"), "0"),
            (format!("net.ipv4.conf.{bridge}.send_redirects"), "0"),
        ] {
            sysctl::set(&self.netns, &key, value)?;
        }
        self.rtnl.add_address(&bridge, router, cidr.prefix())?;
        self.rtnl.set_up(&bridge)?;
        undo.commit();
        self.state.subnets.insert(
            id.to_owned(),
            Subnet {
                cidr,
                bridge,
                internet: false,
            },
        );
        Ok(())
    }

    /// Removes subnet `id`, which must have no ports.
    pub fn remove_subnet(&mut self, id: &str) -> Result<(), Error> {
        let subnet = self.subnet(id)?.clone();
        if let Some(port) = self.state.ports.values().find(|port| port.subnet == id) {
            return Err(in_use("subnet", id, &port.id, "detach its ports first"));
        }
        if subnet.internet {
            self.set_subnet_internet(id, false)?;
        }
        self.rtnl.delete(&subnet.bridge)?;
        self.state.subnets.remove(id);
        Ok(())
    }

    /// Realises whether the route table of subnet `id` has a default route
    /// to the attached internet gateway (which makes the subnet public).
    pub fn set_subnet_internet(&mut self, id: &str, internet: bool) -> Result<(), Error> {
        let subnet = self.subnet(id)?;
        if subnet.internet == internet {
            return Ok(());
        }
        if internet && self.state.gateway.is_none() {
            return Err(Error::NoGateway {
                vpc: self.id.clone(),
            });
        }
        let rule = Rule {
            priority: INTERNET_RULE_PRIORITY,
            input: Some(&subnet.bridge),
            table: INTERNET_TABLE,
            suppress_default: false,
        };
        if internet {
            self.rtnl.add_rule(&rule)?;
        } else {
            self.rtnl.delete_rule(&rule)?;
        }
        if let Some(subnet) = self.state.subnets.get_mut(id) {
            subnet.internet = internet;
        }
        Ok(())
    }

    /// Whether subnet `id` is realised as public (routed to the gateway).
    pub fn is_public(&self, id: &str) -> Option<bool> {
        self.state.subnets.get(id).map(|subnet| subnet.internet)
    }

    /// The name the public end of this VPC's gateway link has: unique per
    /// VPC namespace, and short enough for an interface name.
    pub fn gateway_peer_name(&self) -> String {
        gateway_peer_name(self.netns.name())
    }

    /// Attaches an internet gateway: a veth pair to namespace `public`,
    /// whose end there holds `router` (the next hop, the same for every
    /// VPC attached there), while this end holds `address`, the public
    /// address the VPC's outbound traffic is translated to.
    pub fn attach_gateway(
        &mut self,
        public: &Netns,
        address: Ipv4Addr,
        router: Ipv4Addr,
    ) -> Result<(), Error> {
        if self.state.gateway.is_some() {
            return Err(Error::GatewayAttached {
                vpc: self.id.clone(),
            });
        }
        let peer = self.gateway_peer_name();
        let mut undo = Undo::new();
        self.rtnl.add_veth(GATEWAY_LINK, &peer)?;
        // Deleting one end deletes both, wherever the other end is; the
        // addresses and routes on them go with them.
        let rtnl = self.rtnl.clone();
        undo.push(move || rtnl.delete(GATEWAY_LINK));
        // The alias tells `cleanup` which VPC a public-side link serves.
        self.rtnl.set_alias(&peer, self.netns.name())?;
        self.rtnl.move_to(&peer, public)?;
        let public_rtnl = Rtnl::open(public)?;
        public_rtnl.add_address(&peer, router, 32)?;
        public_rtnl.set_up(&peer)?;
        public_rtnl.add_route(&host_route(address, &peer))?;
        self.rtnl.add_address(GATEWAY_LINK, address, 32)?;
        self.rtnl.set_up(GATEWAY_LINK)?;
        self.rtnl.add_route(&Route {
            destination: cidr::ANY,
            gateway: Some(router),
            device: GATEWAY_LINK,
            table: INTERNET_TABLE,
        })?;
        let mut next = self.state.clone();
        next.gateway = Some(Gateway {
            address,
            peer,
            public: public_rtnl,
        });
        self.apply_firewall(&next)?;
        undo.commit();
        self.state = next;
        Ok(())
    }

    /// Detaches the internet gateway; no subnet may route to it and no
    /// elastic IP may be associated.
    pub fn detach_gateway(&mut self) -> Result<(), Error> {
        if self.state.gateway.is_none() {
            return Err(Error::NoGateway {
                vpc: self.id.clone(),
            });
        }
        if let Some((id, _)) = self
            .state
            .subnets
            .iter()
            .find(|(_, subnet)| subnet.internet)
        {
            return Err(in_use(
                "the internet gateway of",
                &self.id,
                &format!("the route table of subnet {id}"),
                "remove its 0.0.0.0/0 route first",
            ));
        }
        if let Some(address) = self.state.elastic.keys().next() {
            return Err(in_use(
                "the internet gateway of",
                &self.id,
                &format!("elastic IP {address}"),
                "disassociate it first",
            ));
        }
        let mut next = self.state.clone();
        next.gateway = None;
        self.apply_firewall(&next)?;
        if let Err(error) = self.rtnl.delete(GATEWAY_LINK) {
            let _ = self.apply_firewall(&self.state);
            return Err(error.into());
        }
        self.state = next;
        Ok(())
    }

    /// Adds or replaces security group `group`; the ports in it are
    /// re-filtered at once.
    pub fn put_group(&mut self, group: SecurityGroup) -> Result<(), Error> {
        self.put_groups(vec![group])
    }

    /// Adds or replaces `groups` in one firewall change; they may name
    /// each other as peers (restored groups do).
    pub fn put_groups(&mut self, groups: Vec<SecurityGroup>) -> Result<(), Error> {
        let mut next = self.state.clone();
        for group in &groups {
            check_id(&group.id)?;
            next.groups.insert(group.id.clone(), group.clone());
        }
        for group in &groups {
            group.check_peers(&next.groups)?;
        }
        self.commit_firewall(next)
    }

    /// Removes security group `id`, which no port may be in and no other
    /// group may name.
    pub fn remove_group(&mut self, id: &str) -> Result<(), Error> {
        if !self.state.groups.contains_key(id) {
            return Err(self.missing("security group", id));
        }
        if let Some(port) = self
            .state
            .ports
            .values()
            .find(|port| port.groups.iter().any(|g| g == id))
        {
            return Err(in_use(
                "security group",
                id,
                &port.id,
                "move the port to other groups first",
            ));
        }
        if let Some(other) = self
            .state
            .groups
            .values()
            .find(|group| group.id != id && group.peer_groups().any(|peer| peer == id))
        {
            return Err(in_use(
                "security group",
                id,
                &format!("a rule of group {}", other.id),
                "remove that rule first",
            ));
        }
        let mut next = self.state.clone();
        next.groups.remove(id);
        self.commit_firewall(next)
    }

    /// Attaches an instance port: its link (already in the VPC namespace)
    /// joins the subnet's bridge and is filtered from the first packet.
    pub fn attach_port(&mut self, port: Port) -> Result<(), Error> {
        check_id(&port.id)?;
        check_link_name(&port.link)?;
        if self.state.ports.contains_key(&port.id) {
            return Err(self.duplicate("port", &port.id));
        }
        let subnet = self.subnet(&port.subnet)?.clone();
        let used: BTreeSet<Ipv4Addr> = self.state.ports.values().map(|other| other.ip).collect();
        cidr::allocate(subnet.cidr, &used, Some(port.ip))?;
        self.check_port_groups(&port)?;
        if let Some(other) = self
            .state
            .ports
            .values()
            .find(|other| other.link == port.link)
        {
            return Err(in_use(
                "link",
                &port.link,
                &other.id,
                "give each port its own link",
            ));
        }
        let mut undo = Undo::new();
        self.rtnl.set_bridge(&port.link, Some(&subnet.bridge))?;
        let (rtnl, link) = (self.rtnl.clone(), port.link.clone());
        undo.push(move || rtnl.set_bridge(&link, None));
        self.rtnl.set_up(&port.link)?;
        let mut next = self.state.clone();
        next.ports.insert(port.id.clone(), port);
        self.commit_firewall(next)?;
        undo.commit();
        Ok(())
    }

    /// Detaches port `id` (its elastic IP must be disassociated first). The
    /// link itself is its owner's (the VMM's tap) to delete.
    pub fn detach_port(&mut self, id: &str) -> Result<(), Error> {
        let port = self.port(id)?.clone();
        if let Some((address, _)) = self.state.elastic.iter().find(|(_, owner)| *owner == id) {
            return Err(in_use(
                "port",
                id,
                &format!("elastic IP {address}"),
                "disassociate it first",
            ));
        }
        let mut next = self.state.clone();
        next.ports.remove(id);
        self.commit_firewall(next)?;
        // Unfiltered from here on, but also off the bridge: it reaches nothing.
        self.rtnl.set_bridge(&port.link, None)?;
        Ok(())
    }

    /// Changes the security groups of port `id`.
    pub fn set_port_groups(&mut self, id: &str, groups: Vec<String>) -> Result<(), Error> {
        let mut port = self.port(id)?.clone();
        port.groups = groups;
        self.check_port_groups(&port)?;
        let mut next = self.state.clone();
        next.ports.insert(id.to_owned(), port);
        self.commit_firewall(next)
    }

    /// Turns the source/destination check of port `id` on or off.
    pub fn set_source_dest_check(&mut self, id: &str, on: bool) -> Result<(), Error> {
        let mut port = self.port(id)?.clone();
        port.source_dest_check = on;
        let mut next = self.state.clone();
        next.ports.insert(id.to_owned(), port);
        self.commit_firewall(next)
    }

    /// Associates elastic IP `address` with port `port`: 1:1 translation
    /// both ways at the gateway.
    pub fn associate_address(&mut self, address: Ipv4Addr, port: &str) -> Result<(), Error> {
        let gateway = self.gateway()?.clone();
        self.port(port)?;
        if let Some(owner) = self.state.elastic.get(&address) {
            return Err(in_use(
                "elastic IP",
                &address.to_string(),
                owner,
                "disassociate it first",
            ));
        }
        if let Some((other, _)) = self.state.elastic.iter().find(|(_, owner)| *owner == port) {
            return Err(in_use(
                "port",
                port,
                &format!("elastic IP {other}"),
                "disassociate it first",
            ));
        }
        let mut undo = Undo::new();
        // Held here so that this end answers ARP for it on the gateway link.
        self.rtnl.add_address(GATEWAY_LINK, address, 32)?;
        let rtnl = self.rtnl.clone();
        undo.push(move || rtnl.delete_address(GATEWAY_LINK, address));
        gateway
            .public
            .add_route(&host_route(address, &gateway.peer))?;
        let public = gateway.public.clone();
        let peer = gateway.peer.clone();
        undo.push(move || public.delete_route(&host_route(address, &peer)));
        let mut next = self.state.clone();
        next.elastic.insert(address, port.to_owned());
        self.commit_firewall(next)?;
        undo.commit();
        Ok(())
    }

    /// Disassociates elastic IP `address` from its port.
    pub fn disassociate_address(&mut self, address: Ipv4Addr) -> Result<(), Error> {
        let gateway = self.gateway()?.clone();
        if !self.state.elastic.contains_key(&address) {
            return Err(self.missing("elastic IP", &address.to_string()));
        }
        let mut next = self.state.clone();
        next.elastic.remove(&address);
        self.commit_firewall(next)?;
        gateway
            .public
            .delete_route(&host_route(address, &gateway.peer))?;
        self.rtnl.delete_address(GATEWAY_LINK, address)?;
        Ok(())
    }

    /// The nft script the VPC's firewall is, for `gureum` to show.
    pub fn firewall_script(&self) -> String {
        ruleset::script(&firewall(&self.state))
    }

    fn apply_firewall(&self, state: &State) -> Result<(), Error> {
        Ok(super::nft::apply(
            &self.netns,
            &ruleset::script(&firewall(state)),
        )?)
    }

    /// Applies the firewall of `next` and, only if the kernel took it,
    /// makes `next` the state.
    fn commit_firewall(&mut self, next: State) -> Result<(), Error> {
        self.apply_firewall(&next)?;
        self.state = next;
        Ok(())
    }

    fn check_port_groups(&self, port: &Port) -> Result<(), Error> {
        if port.groups.is_empty() {
            return Err(Error::NoGroups {
                port: port.id.clone(),
            });
        }
        match port
            .groups
            .iter()
            .find(|group| !self.state.groups.contains_key(*group))
        {
            Some(group) => Err(self.missing("security group", group)),
            None => Ok(()),
        }
    }

    fn subnet(&self, id: &str) -> Result<&Subnet, Error> {
        self.state
            .subnets
            .get(id)
            .ok_or_else(|| self.missing("subnet", id))
    }

    fn port(&self, id: &str) -> Result<&Port, Error> {
        self.state
            .ports
            .get(id)
            .ok_or_else(|| self.missing("port", id))
    }

    fn gateway(&self) -> Result<&Gateway, Error> {
        self.state.gateway.as_ref().ok_or_else(|| Error::NoGateway {
            vpc: self.id.clone(),
        })
    }

    fn missing(&self, noun: &'static str, id: &str) -> Error {
        Error::Missing {
            vpc: self.id.clone(),
            noun,
            id: id.to_owned(),
        }
    }

    fn duplicate(&self, noun: &'static str, id: &str) -> Error {
        Error::Duplicate {
            vpc: self.id.clone(),
            noun,
            id: id.to_owned(),
        }
    }
}

fn firewall(state: &State) -> Firewall<'_> {
    Firewall {
        ports: &state.ports,
        groups: &state.groups,
        nat: state.gateway.as_ref().map(|gateway| Nat {
            link: GATEWAY_LINK,
            address: gateway.address,
            elastic: state
                .elastic
                .iter()
                .filter_map(|(public, port)| Some((*public, state.ports.get(port)?.ip)))
                .collect(),
        }),
    }
}

/// The public end of a VPC's gateway link: "gp" and a hash of the VPC's
/// namespace name (names there must be unique across VPCs, and short).
pub fn gateway_peer_name(netns: &str) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let hash = netns.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("{GATEWAY_PEER_PREFIX}{hash:08x}")
}

/// What every public-side gateway link's name starts with.
pub const GATEWAY_PEER_PREFIX: &str = "gp";

fn bridge_name(subnet: &str) -> String {
    let room = MAX_IFNAME_LEN - BRIDGE_PREFIX.len();
    let tail = subnet
        .get(subnet.len().saturating_sub(room)..)
        .unwrap_or(subnet);
    format!("{BRIDGE_PREFIX}{tail}")
}

fn host_route(address: Ipv4Addr, device: &str) -> Route<'_> {
    Route {
        destination: Ipv4Cidr::host(address),
        gateway: None,
        device,
        table: MAIN_TABLE,
    }
}

fn in_use(noun: &'static str, id: &str, user: &str, fix: &'static str) -> Error {
    Error::InUse {
        noun,
        id: id.to_owned(),
        user: user.to_owned(),
        fix,
    }
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

fn check_link_name(name: &str) -> Result<(), Error> {
    if !name.is_empty() && name.len() <= MAX_IFNAME_LEN && name.bytes().all(is_name_char) {
        Ok(())
    } else {
        Err(Error::BadLinkName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
