//! Security groups: Create/Delete/DescribeSecurityGroups, Authorize and
//! Revoke SecurityGroupIngress/Egress (`IpPermissions.N` or the single
//! rule of `IpProtocol`/`FromPort`/`ToPort`/`CidrIp`), and
//! DescribeSecurityGroupRules. A rule's ID (`sgr-…`) is derived from the
//! group, the direction and the rule, so it is the same on every call.

use crate::cloud::api::{Action, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::vpc::security_group::{Direction, RuleRequest, SecurityGroup};
use crate::net::nft::security_group::{Peer, Protocol, Rule};

use super::super::error::Ec2Error;
use super::super::params::Params;
use super::super::xml::Xml;
use super::{Call, Filters, Operation, Target, done, named};

const GROUP: Target = named(Kind::SecurityGroup, "GroupId");

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateSecurityGroup", named(Kind::Vpc, "VpcId"), create),
    Operation::new("DeleteSecurityGroup", GROUP, delete),
    Operation::new("DescribeSecurityGroups", Target::Any, describe),
    Operation::new("AuthorizeSecurityGroupIngress", GROUP, authorize_ingress),
    Operation::new("AuthorizeSecurityGroupEgress", GROUP, authorize_egress),
    Operation::new("RevokeSecurityGroupIngress", GROUP, revoke_ingress),
    Operation::new("RevokeSecurityGroupEgress", GROUP, revoke_egress),
    Operation::new("DescribeSecurityGroupRules", Target::Any, describe_rules),
];

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let group = call.one::<SecurityGroup>(Action::CreateSecurityGroup {
        vpc: p.required("VpcId")?.to_owned(),
        name: p.required("GroupName")?.to_owned(),
        description: p.required("GroupDescription")?.to_owned(),
        tags: call.tag_spec("security-group")?,
    })?;
    let mut x = Xml::new();
    x.leaf("return", true)
        .leaf("groupId", &group.item.id)
        .leaf("securityGroupArn", arn(call, &group.item.id))
        .tags(&group.tags);
    Ok(x)
}

fn arn(call: &Call<'_>, id: &str) -> String {
    format!(
        "arn:aws:ec2:{}:{}:security-group/{id}",
        call.region, call.account
    )
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let group = call.params.required("GroupId")?.to_owned();
    call.run(Action::DeleteSecurityGroup { group })?;
    done()
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let mut groups = call.describe(
        "GroupId",
        Action::ListSecurityGroups { filters: vec![] },
        |group| Action::DescribeSecurityGroup { group },
        |item, name| field(item, name, call.account),
    )?;
    let names = call.params.list("GroupName");
    if !names.is_empty() {
        groups.retain(|g| names.contains(&g.item.group_name));
    }
    let mut x = Xml::new();
    x.list("securityGroupInfo", &groups, |x, g| write(x, g, call));
    Ok(x)
}

fn field(g: &SecurityGroup, name: &str, account: &str) -> Option<Vec<String>> {
    Some(vec![match name {
        "group-id" => g.id.clone(),
        "group-name" => g.group_name.clone(),
        "vpc-id" => g.vpc_id.clone(),
        "description" => g.description.clone(),
        "owner-id" => account.into(),
        _ => return None,
    }])
}

fn write(x: &mut Xml, g: &Tagged<SecurityGroup>, call: &Call<'_>) {
    let group = &g.item;
    x.leaf("ownerId", call.account)
        .leaf("groupId", &group.id)
        .leaf("groupName", &group.group_name)
        .leaf("groupDescription", &group.description)
        .leaf("vpcId", &group.vpc_id)
        .leaf("securityGroupArn", arn(call, &group.id))
        .list("ipPermissions", &group.inbound, |x, r| {
            permission(x, r, call.account)
        })
        .list("ipPermissionsEgress", &group.outbound, |x, r| {
            permission(x, r, call.account)
        })
        .tags(&g.tags);
}

/// EC2's protocol name of a rule (`-1` for all).
fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::All => "-1",
    }
}

/// The `fromPort`/`toPort` EC2 shows for a rule.
fn port_range(r: &Rule) -> Option<(i32, i32)> {
    match (r.protocol, r.ports) {
        (Protocol::All, _) => None,
        (Protocol::Icmp, _) => Some((-1, -1)),
        (_, Some(ports)) => Some((i32::from(ports.from()), i32::from(ports.to()))),
        (_, None) => Some((0, 65535)),
    }
}

fn permission(x: &mut Xml, r: &Rule, account: &str) {
    x.leaf("ipProtocol", protocol_name(r.protocol));
    if let Some((from, to)) = port_range(r) {
        x.leaf("fromPort", from).leaf("toPort", to);
    }
    let (groups, ranges): (Vec<&Peer>, Vec<&Peer>) = match &r.peer {
        p @ Peer::Group(_) => (vec![p], vec![]),
        p @ Peer::Cidr(_) => (vec![], vec![p]),
    };
    x.list("groups", groups, |x, p| {
        if let Peer::Group(id) = p {
            x.leaf("groupId", id).leaf("userId", account);
        }
    })
    .list("ipRanges", ranges, |x, p| {
        if let Peer::Cidr(cidr) = p {
            x.leaf("cidrIp", cidr);
        }
    })
    .node("ipv6Ranges", |_| {})
    .node("prefixListIds", |_| {});
}

fn authorize_ingress(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    change(call, Direction::Ingress, true)
}

fn authorize_egress(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    change(call, Direction::Egress, true)
}

fn revoke_ingress(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    change(call, Direction::Ingress, false)
}

fn revoke_egress(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    change(call, Direction::Egress, false)
}

/// Adds or removes each rule the request names, one core action each
/// (an error stops at that rule: the ones before it stay changed).
fn change(call: &Call<'_>, direction: Direction, add: bool) -> Result<Xml, Ec2Error> {
    let group = call.params.required("GroupId")?.to_owned();
    let mut rules = requested_rules(call.params)?;
    let by_id = call.params.list("SecurityGroupRuleId");
    if !by_id.is_empty() {
        let current = call.one::<SecurityGroup>(Action::DescribeSecurityGroup {
            group: group.clone(),
        })?;
        for id in by_id {
            let rule = rules_of(&current.item)
                .find(|(rule_id, d, _)| *rule_id == id && *d == direction)
                .map(|(_, _, r)| request_of(r))
                .ok_or_else(|| {
                    Ec2Error::client(
                        "InvalidSecurityGroupRuleId.NotFound",
                        format!("The security group rule ID '{id}' does not exist"),
                    )
                })?;
            rules.push(rule);
        }
    }
    if rules.is_empty() {
        return Err(Ec2Error::missing("IpPermissions"));
    }
    let mut changed = None;
    for rule in &rules {
        let action = if add {
            Action::AuthorizeSecurityGroupRule {
                group: group.clone(),
                direction,
                rule: rule.clone(),
            }
        } else {
            Action::RevokeSecurityGroupRule {
                group: group.clone(),
                direction,
                rule: rule.clone(),
            }
        };
        changed = Some(call.one::<SecurityGroup>(action)?);
    }
    let mut x = Xml::new();
    x.leaf("return", true);
    if let (true, Some(group)) = (add, changed) {
        // The rules just added, as DescribeSecurityGroupRules shows them.
        let added: Vec<_> = rules_of(&group.item)
            .filter(|(_, d, r)| *d == direction && rules.iter().any(|q| same(q, r)))
            .collect();
        x.list("securityGroupRuleSet", added, |x, (id, d, r)| {
            write_rule(x, &group.item.id, &id, d, r, call.account);
        });
    }
    Ok(x)
}

/// Whether `request` asks for `rule` (no peer at all is every address,
/// as the core reads it).
fn same(request: &RuleRequest, rule: &Rule) -> bool {
    let r = request_of(rule);
    let cidr = match request.source_group {
        None => Some(request.cidr.unwrap_or(crate::net::cidr::ANY)),
        Some(_) => None,
    };
    r.protocol == request.protocol
        && r.ports == request.ports
        && r.cidr == cidr
        && r.source_group == request.source_group
}

/// The rules a request names, each as the core takes it.
fn requested_rules(p: &Params) -> Result<Vec<RuleRequest>, Ec2Error> {
    let mut out = Vec::new();
    for perm in p.members("IpPermissions") {
        let (protocol, ports) = protocol_ports(&perm)?;
        for range in perm.members("IpRanges") {
            out.push(RuleRequest {
                protocol,
                ports: ports.clone(),
                cidr: Some(cidr(range.required("CidrIp")?)?),
                source_group: None,
            });
        }
        for pair in perm.members("Groups") {
            out.push(RuleRequest {
                protocol,
                ports: ports.clone(),
                cidr: None,
                source_group: Some(pair.required("GroupId")?.to_owned()),
            });
        }
        if !perm.members("Ipv6Ranges").is_empty() || !perm.members("PrefixListIds").is_empty() {
            return Err(Ec2Error::unsupported(
                "IPv6 ranges and prefix lists in rules",
            ));
        }
    }
    // The single rule of the top-level parameters (`aws ec2
    // authorize-security-group-ingress --protocol tcp --port 22 --cidr …`).
    if p.get("IpProtocol").is_some() {
        let (protocol, ports) = protocol_ports(p)?;
        let source_group = p
            .get("SourceSecurityGroupName")
            .or(p.get("SourceSecurityGroupId"))
            .map(str::to_owned);
        let cidr = p.get("CidrIp").map(cidr).transpose()?;
        out.push(RuleRequest {
            protocol,
            ports,
            cidr,
            source_group,
        });
    }
    Ok(out)
}

fn cidr(text: &str) -> Result<crate::net::cidr::Ipv4Cidr, Ec2Error> {
    text.parse()
        .map_err(|e| Ec2Error::client("InvalidParameterValue", format!("{e}")))
}

/// `IpProtocol`, `FromPort` and `ToPort` as the core's protocol and ports.
fn protocol_ports(p: &Params) -> Result<(Protocol, Option<String>), Ec2Error> {
    let name = p.required("IpProtocol")?;
    let protocol = match name.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Protocol::Tcp,
        "udp" | "17" => Protocol::Udp,
        "icmp" | "1" => Protocol::Icmp,
        "-1" | "all" => Protocol::All,
        _ => {
            return Err(Ec2Error::client(
                "InvalidParameterValue",
                format!("Invalid value '{name}' for IP protocol: use tcp, udp, icmp or -1"),
            ));
        }
    };
    let from: Option<i32> = p.int("FromPort")?;
    let to: Option<i32> = p.int("ToPort")?.or(from);
    let ports = match (protocol, from, to) {
        (Protocol::Tcp | Protocol::Udp, Some(0), Some(65535))
        | (Protocol::Tcp | Protocol::Udp, None, None) => None,
        (Protocol::Tcp | Protocol::Udp, Some(f), Some(t)) if f == t => Some(f.to_string()),
        (Protocol::Tcp | Protocol::Udp, Some(f), Some(t)) => Some(format!("{f}-{t}")),
        (Protocol::Icmp, Some(-1) | None, _) | (Protocol::All, _, _) => None,
        (Protocol::Icmp, Some(_), _) => {
            return Err(Ec2Error::unsupported("ICMP rules for one ICMP type"));
        }
        _ => return Err(Ec2Error::missing("FromPort")),
    };
    Ok((protocol, ports))
}

/// The request that names `rule`.
fn request_of(rule: &Rule) -> RuleRequest {
    let (cidr, source_group) = match &rule.peer {
        Peer::Cidr(c) => (Some(*c), None),
        Peer::Group(g) => (None, Some(g.clone())),
    };
    RuleRequest {
        protocol: rule.protocol,
        ports: rule.ports.map(|p| p.to_string()),
        cidr,
        source_group,
    }
}

/// Every rule of `group` with its ID and direction.
fn rules_of(group: &SecurityGroup) -> impl Iterator<Item = (String, Direction, &Rule)> {
    let inbound = group.inbound.iter().map(|r| (Direction::Ingress, r));
    let outbound = group.outbound.iter().map(|r| (Direction::Egress, r));
    inbound
        .chain(outbound)
        .map(move |(d, r)| (rule_id(&group.id, d, r), d, r))
}

/// `sgr-` and 17 hex digits of an FNV-1a hash of the group, direction
/// and rule: stable, so a rule keeps its ID.
fn rule_id(group: &str, direction: Direction, rule: &Rule) -> String {
    let text = format!(
        "{group}|{direction:?}|{:?}|{:?}|{:?}",
        rule.protocol, rule.ports, rule.peer
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sgr-0{hash:016x}")
}

fn describe_rules(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let groups = call.records::<SecurityGroup>(Action::ListSecurityGroups { filters: vec![] })?;
    let wanted = call.params.list("SecurityGroupRuleId");
    let filters = Filters::of(call.params);
    let mut rules = Vec::new();
    for g in &groups {
        let tagged: Vec<Tagged<(String, Direction, &Rule)>> = rules_of(&g.item)
            .filter(|(id, _, _)| wanted.is_empty() || wanted.contains(id))
            .map(|r| Tagged::new(r, Default::default()))
            .collect();
        let kept = filters.keep(tagged, |(id, d, _), name| {
            Some(vec![match name {
                "group-id" => g.item.id.clone(),
                "security-group-rule-id" => id.clone(),
                "is-egress" => (*d == Direction::Egress).to_string(),
                _ => return None,
            }])
        })?;
        rules.extend(kept.into_iter().map(|t| (g.item.id.clone(), t.item)));
    }
    let (rules, next) = super::page(call.params, rules)?;
    let mut x = Xml::new();
    x.list("securityGroupRuleSet", rules, |x, (group, (id, d, r))| {
        write_rule(x, &group, &id, d, r, call.account);
    })
    .opt("nextToken", next);
    Ok(x)
}

fn write_rule(x: &mut Xml, group: &str, id: &str, d: Direction, r: &Rule, account: &str) {
    x.leaf("securityGroupRuleId", id)
        .leaf("groupId", group)
        .leaf("groupOwnerId", account)
        .leaf("isEgress", d == Direction::Egress)
        .leaf("ipProtocol", protocol_name(r.protocol));
    let (from, to) = port_range(r).unwrap_or((-1, -1));
    x.leaf("fromPort", from).leaf("toPort", to);
    match &r.peer {
        Peer::Cidr(cidr) => {
            x.leaf("cidrIpv4", cidr);
        }
        Peer::Group(other) => {
            x.node("referencedGroupInfo", |x| {
                x.leaf("groupId", other).leaf("userId", account);
            });
        }
    }
    x.node("tagSet", |_| {});
}
