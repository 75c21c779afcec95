//! Security groups: allow-only inbound and outbound rules per VPC,
//! realised as nft chains on the ports of their members; a rule change
//! applies to running instances at once.

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::store::Store;
use crate::cloud::tags::Tags;
use crate::cloud::{self, lookup, names};
use crate::net::cidr::Ipv4Cidr;
use crate::net::nft::security_group::{self as nft_group, Peer, PortRange, Protocol, Rule};

use super::network::Vpc;
use super::public::NetConfig;
use super::{Error, in_vpc, realise, same_vpc};

/// The name of every VPC's default group.
pub const DEFAULT_NAME: &str = "default";

/// A security group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub group_name: String,
    pub description: String,
    /// The VPC's default group: deleted with it only.
    pub default: bool,
    pub inbound: Vec<Rule>,
    pub outbound: Vec<Rule>,
    pub created: String,
}

vpc_record!(SecurityGroup, Kind::SecurityGroup, in_vpc);

/// Inbound (ingress) or outbound (egress) rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Ingress,
    Egress,
}

impl SecurityGroup {
    fn new(id: String, vpc: &str, name: &str, description: &str) -> Self {
        let realised = nft_group::SecurityGroup::new(&id);
        Self {
            vpc_id: vpc.to_owned(),
            group_name: name.to_owned(),
            description: description.to_owned(),
            default: false,
            inbound: realised.inbound,
            outbound: realised.outbound,
            id,
            created: cloud::time::now(),
        }
    }

    /// A VPC's default group: as in AWS, its members reach each other, and
    /// everything may go out.
    pub fn default_of(id: String, vpc: &str) -> Self {
        let mut group = Self::new(id, vpc, DEFAULT_NAME, "default VPC security group");
        group.default = true;
        group.inbound = vec![Rule {
            protocol: Protocol::All,
            ports: None,
            peer: Peer::Group(group.id.clone()),
        }];
        group
    }

    /// The group as the realisation takes it.
    pub fn realised(&self) -> nft_group::SecurityGroup {
        nft_group::SecurityGroup {
            id: self.id.clone(),
            inbound: self.inbound.clone(),
            outbound: self.outbound.clone(),
        }
    }

    fn rules_mut(&mut self, direction: Direction) -> &mut Vec<Rule> {
        match direction {
            Direction::Ingress => &mut self.inbound,
            Direction::Egress => &mut self.outbound,
        }
    }
}

/// Creates a group in a VPC: no inbound, all outbound.
pub fn create(
    store: &mut Store,
    config: &NetConfig,
    vpc: &str,
    name: &str,
    description: &str,
    tags: &Tags,
) -> Result<SecurityGroup, cloud::Error> {
    names::check(Kind::SecurityGroup, name)?;
    names::check_text("group description", description, names::MAX_DESCRIPTION)?;
    let id = ids::new_id(Kind::SecurityGroup)?;
    realise::change(store, config, |tx| {
        let vpc: Vpc = lookup::find_tagged(tx, vpc, |_| true)?;
        if in_vpc::<SecurityGroup>(tx, &vpc.id)?
            .iter()
            .any(|g| g.group_name == name)
        {
            return Err(Error::GroupNameTaken {
                vpc: vpc.id,
                name: name.to_owned(),
            }
            .into());
        }
        let group = SecurityGroup::new(id, &vpc.id, name, description);
        tx.insert(&group, tags)?;
        Ok((group, vec![vpc.id]))
    })
}

/// Deletes a group no instance is in and no other group's rule names.
pub fn delete(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
) -> Result<SecurityGroup, cloud::Error> {
    realise::change(store, config, |tx| {
        let group: SecurityGroup = lookup::find_tagged(tx, reference, |_| true)?;
        if group.default {
            return Err(Error::OwnedByVpc {
                what: "default security group",
                id: group.id,
            }
            .into());
        }
        let members: Vec<String> = super::port::instances_in(tx, &group.vpc_id)?
            .into_iter()
            .filter(|(_, placement)| placement.security_groups.contains(&group.id))
            .map(|(id, _)| id)
            .collect();
        if !members.is_empty() {
            return Err(Error::InUse {
                noun: "security group",
                id: group.id.clone(),
                what: format!("instances {}", members.join(", ")),
                fix: "move them to other groups (`gureum instance modify --sg`) first".into(),
            }
            .into());
        }
        let balancers = crate::cloud::elb::users_of(tx, &group.vpc_id, &group.id)?;
        if !balancers.is_empty() {
            return Err(Error::InUse {
                noun: "security group",
                id: group.id.clone(),
                what: format!("load balancers {}", balancers.join(", ")),
                fix: "`gureum elb delete` them first".into(),
            }
            .into());
        }
        let naming: Vec<String> = in_vpc::<SecurityGroup>(tx, &group.vpc_id)?
            .into_iter()
            .filter(|other| {
                other.id != group.id && other.realised().peer_groups().any(|p| *p == group.id)
            })
            .map(|other| other.id)
            .collect();
        if !naming.is_empty() {
            return Err(Error::InUse {
                noun: "security group",
                id: group.id.clone(),
                what: format!(
                    "a rule of group {} naming it",
                    naming.join(", and of group ")
                ),
                fix: "revoke those rules first".into(),
            }
            .into());
        }
        tx.delete(&group.id)?;
        let vpc = group.vpc_id.clone();
        Ok((group, vec![vpc]))
    })
}

/// What `sg authorize-*` and `sg revoke-*` name: a protocol, a port or
/// range (`22`, `8000-8100`), and a block or a group as the peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleRequest {
    pub protocol: Protocol,
    pub ports: Option<String>,
    pub cidr: Option<Ipv4Cidr>,
    pub source_group: Option<String>,
}

/// Parses `22` or `8000-8100`.
fn parse_ports(text: &str) -> Result<PortRange, Error> {
    let bad = || Error::BadPorts(text.to_owned());
    let port = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
    match text.split_once('-') {
        Some((from, to)) => Ok(PortRange::new(port(from)?, port(to)?)?),
        None => Ok(PortRange::single(port(text)?)),
    }
}

/// Adds (`add`) or removes a rule of a group, at once on its members.
pub fn change_rule(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    direction: Direction,
    request: &RuleRequest,
    add: bool,
) -> Result<SecurityGroup, cloud::Error> {
    let ports = request.ports.as_deref().map(parse_ports).transpose()?;
    realise::change(store, config, |tx| {
        let mut group: SecurityGroup = lookup::find_tagged(tx, reference, |_| true)?;
        let peer = match (&request.source_group, request.cidr) {
            (Some(other), _) => {
                let other: SecurityGroup = lookup::find_tagged(tx, other, |_| true)?;
                same_vpc("security group", &other.id, &other.vpc_id, &group.vpc_id)?;
                Peer::Group(other.id)
            }
            (None, cidr) => Peer::Cidr(cidr.unwrap_or(crate::net::cidr::ANY)),
        };
        let rule = Rule::new(request.protocol, ports, peer).map_err(Error::from)?;
        let id = group.id.clone();
        let rules = group.rules_mut(direction);
        match (add, rules.iter().position(|r| *r == rule)) {
            (true, Some(_)) => return Err(Error::RuleExists { group: id }.into()),
            (false, None) => return Err(Error::NoSuchRule { group: id }.into()),
            (true, None) => rules.push(rule),
            (false, Some(index)) => {
                rules.remove(index);
            }
        }
        tx.update(&group)?;
        let vpc = group.vpc_id.clone();
        Ok((group, vec![vpc]))
    })
}
