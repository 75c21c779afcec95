//! Security groups: allow-only rules per direction, compiled into one
//! inbound and one outbound chain per port.
//!
//! A port's chains hold the rules of all its groups; the first rule that
//! matches allows the packet, and a packet no rule allows is dropped. Only
//! the first packet of a connection is judged: the forward chain accepts
//! established and related traffic before it reaches them (stateful).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};
use std::net::Ipv4Addr;

use super::ident;
use crate::net::cidr::{self, Ipv4Cidr};
use crate::net::port::Port;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("port range {from}-{to} is backwards: write the lower port first")]
    BackwardsPorts { from: u16, to: u16 },
    #[error("a {protocol} rule cannot have a port range: only tcp and udp rules do")]
    PortsWithoutPorts { protocol: Protocol },
    #[error("security group {group} names group {peer} as a peer, which this VPC does not have")]
    UnknownPeer { group: String, peer: String },
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::All => "all",
        })
    }
}

/// An inclusive range of TCP or UDP ports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PortRange {
    from: u16,
    to: u16,
}

impl PortRange {
    pub fn new(from: u16, to: u16) -> Result<Self, Error> {
        if from <= to {
            Ok(Self { from, to })
        } else {
            Err(Error::BackwardsPorts { from, to })
        }
    }

    pub fn single(port: u16) -> Self {
        Self {
            from: port,
            to: port,
        }
    }

    /// The first port.
    pub fn from(self) -> u16 {
        self.from
    }

    /// The last port.
    pub fn to(self) -> u16 {
        self.to
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// Whom a rule is about: an address block, or the members of a group.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    Cidr(Ipv4Cidr),
    Group(String),
}

/// One allow rule.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Rule {
    pub protocol: Protocol,
    /// For tcp and udp; `None` means every port.
    pub ports: Option<PortRange>,
    pub peer: Peer,
}

impl Rule {
    /// A rule, refused when it gives ports to a protocol without them.
    pub fn new(protocol: Protocol, ports: Option<PortRange>, peer: Peer) -> Result<Self, Error> {
        if ports.is_some() && !matches!(protocol, Protocol::Tcp | Protocol::Udp) {
            return Err(Error::PortsWithoutPorts { protocol });
        }
        Ok(Self {
            protocol,
            ports,
            peer,
        })
    }

    /// Allows everything to or from anywhere: the egress rule of a new group.
    pub fn allow_all() -> Self {
        Self {
            protocol: Protocol::All,
            ports: None,
            peer: Peer::Cidr(cidr::ANY),
        }
    }

    /// The nft rule: the peer is the source of inbound and the
    /// destination of outbound packets.
    fn compile(&self, direction: Direction, verdict: &str) -> String {
        let field = match direction {
            Direction::Inbound => "ip saddr",
            Direction::Outbound => "ip daddr",
        };
        let mut words = Vec::new();
        match &self.peer {
            Peer::Cidr(cidr) if cidr.prefix() == 0 => {}
            Peer::Cidr(cidr) => words.push(format!("{field} {cidr}")),
            Peer::Group(group) => words.push(format!("{field} @{}", members_set(group))),
        }
        match self.protocol {
            Protocol::All => {}
            protocol => words.push(format!("meta l4proto {protocol}")),
        }
        if let Some(ports) = self.ports {
            words.push(format!("th dport {ports}"));
        }
        words.push(verdict.to_owned());
        words.join(" ")
    }
}

/// A security group: what its members may receive and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub inbound: Vec<Rule>,
    pub outbound: Vec<Rule>,
}

impl SecurityGroup {
    /// A new group allows no inbound and all outbound traffic.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            inbound: Vec::new(),
            outbound: vec![Rule::allow_all()],
        }
    }

    /// Checks that every group this one names as a peer exists.
    pub fn check_peers(&self, groups: &BTreeMap<String, SecurityGroup>) -> Result<(), Error> {
        self.peer_groups()
            .find(|peer| !groups.contains_key(*peer) && **peer != self.id)
            .map_or(Ok(()), |peer| {
                Err(Error::UnknownPeer {
                    group: self.id.clone(),
                    peer: peer.clone(),
                })
            })
    }

    /// The groups this one names as peers.
    pub fn peer_groups(&self) -> impl Iterator<Item = &String> {
        self.inbound
            .iter()
            .chain(&self.outbound)
            .filter_map(|rule| match &rule.peer {
                Peer::Group(group) => Some(group),
                Peer::Cidr(_) => None,
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound,
}

/// The name of the set holding the addresses of a group's members.
pub fn members_set(group: &str) -> String {
    format!("members_{}", ident(group))
}

pub fn inbound_chain(port: &Port) -> String {
    format!("port_in_{}", ident(&port.id))
}

pub fn outbound_chain(port: &Port) -> String {
    format!("port_out_{}", ident(&port.id))
}

/// Declares a set of member addresses for every group.
pub fn member_sets(
    out: &mut String,
    groups: &BTreeMap<String, SecurityGroup>,
    ports: &BTreeMap<String, Port>,
) {
    for group in groups.keys() {
        let members: BTreeSet<Ipv4Addr> = ports
            .values()
            .filter(|port| port.groups.contains(group))
            .map(|port| port.ip)
            .collect();
        let _ = writeln!(out, "  set {} {{", members_set(group));
        let _ = writeln!(out, "    type ipv4_addr");
        if !members.is_empty() {
            let list: Vec<String> = members.iter().map(Ipv4Addr::to_string).collect();
            let _ = writeln!(out, "    elements = {{ {} }}", list.join(", "));
        }
        let _ = writeln!(out, "  }}");
    }
}

/// The port's two chains. Inbound rules accept: the packet has passed
/// every check by then. Outbound rules return, so that the receiving
/// port's inbound chain still judges traffic between two instances.
pub fn port_chains(out: &mut String, port: &Port, groups: &BTreeMap<String, SecurityGroup>) {
    let port_groups: Vec<&SecurityGroup> =
        port.groups.iter().filter_map(|id| groups.get(id)).collect();
    for (chain, direction, verdict) in [
        (inbound_chain(port), Direction::Inbound, "accept"),
        (outbound_chain(port), Direction::Outbound, "return"),
    ] {
        let _ = writeln!(out, "  chain {chain} {{");
        for group in &port_groups {
            let rules = match direction {
                Direction::Inbound => &group.inbound,
                Direction::Outbound => &group.outbound,
            };
            for rule in rules {
                let _ = writeln!(out, "    {}", rule.compile(direction, verdict));
            }
        }
        let _ = writeln!(out, "    drop");
        let _ = writeln!(out, "  }}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Peer {
        Peer::Cidr(text.parse().unwrap())
    }

    #[test]
    fn rules_compile_to_nft_matches() {
        let ssh = Rule::new(
            Protocol::Tcp,
            Some(PortRange::single(22)),
            cidr("10.0.0.0/16"),
        )
        .unwrap();
        assert_eq!(
            ssh.compile(Direction::Inbound, "accept"),
            "ip saddr 10.0.0.0/16 meta l4proto tcp th dport 22 accept"
        );
        let dns = Rule::new(
            Protocol::Udp,
            Some(PortRange::new(53, 54).unwrap()),
            cidr("0.0.0.0/0"),
        )
        .unwrap();
        assert_eq!(
            dns.compile(Direction::Outbound, "return"),
            "meta l4proto udp th dport 53-54 return"
        );
        let ping = Rule::new(Protocol::Icmp, None, Peer::Group("sg-web".into())).unwrap();
        assert_eq!(
            ping.compile(Direction::Inbound, "accept"),
            "ip saddr @members_sg_web meta l4proto icmp accept"
        );
        assert_eq!(
            Rule::allow_all().compile(Direction::Outbound, "return"),
            "return"
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(
            PortRange::new(80, 22),
            Err(Error::BackwardsPorts { from: 80, to: 22 })
        );
        assert_eq!(
            Rule::new(
                Protocol::Icmp,
                Some(PortRange::single(1)),
                cidr("0.0.0.0/0")
            ),
            Err(Error::PortsWithoutPorts {
                protocol: Protocol::Icmp
            })
        );
    }

    #[test]
    fn a_new_group_allows_all_out_and_nothing_in() {
        let group = SecurityGroup::new("sg-a");
        assert!(group.inbound.is_empty());
        assert_eq!(group.outbound, vec![Rule::allow_all()]);
    }

    #[test]
    fn peers_must_exist_or_be_the_group_itself() {
        let mut group = SecurityGroup::new("sg-a");
        group
            .inbound
            .push(Rule::new(Protocol::All, None, Peer::Group("sg-a".into())).unwrap());
        group.check_peers(&BTreeMap::new()).unwrap();
        group
            .inbound
            .push(Rule::new(Protocol::All, None, Peer::Group("sg-b".into())).unwrap());
        assert_eq!(
            group.check_peers(&BTreeMap::new()),
            Err(Error::UnknownPeer {
                group: "sg-a".into(),
                peer: "sg-b".into()
            })
        );
    }
}
