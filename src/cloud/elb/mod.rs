//! Elastic Load Balancing (ELBv2's network and application load
//! balancers): target groups, load balancers, their listeners and
//! listener rules as records in the store, realised in their VPC's
//! namespace by the reconciler like the rest of the VPC (`net::elb`),
//! their targets' health checked by the daemon, which also runs the
//! application balancers' proxies (`daemon::proxy`, from `routes`).
//!
//! IDs are the store's (`tg-…`, `elb-…`); ARNs are ELBv2's shapes
//! (`arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/HEX`,
//! `loadbalancer/net/NAME/HEX`, `listener/app/NAME/HEX/HEX`,
//! `listener-rule/app/NAME/HEX/HEX/HEX`). Names are unique per kind, as
//! ELBv2's are per account and region.

pub mod load_balancer;
pub mod routes;
pub mod rule;
pub mod target_group;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::instance::Instance;
use crate::cloud::store::{Store, Tx};
use crate::cloud::tags::Tags;
use crate::cloud::vpc::network::Vpc;
use crate::cloud::vpc::public::NetConfig;
use crate::cloud::vpc::subnet::Subnet;
use crate::cloud::vpc::{self, in_vpc, realise};
use crate::cloud::{self, lookup};
use crate::net::cidr;
use crate::net::elb::{Balancer, Forward};

use load_balancer::{BalancerType, Listener, LoadBalancer, Scheme};
use target_group::{HealthCheck, HealthCheckRequest, HealthState, TargetGroup, TrafficProtocol};

/// The region ARNs and DNS names carry (`cloud::iam::arn::REGION`).
const REGION: &str = crate::cloud::iam::arn::REGION;

/// What went wrong with a load balancer or target group.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "'{0}' is not a valid load balancer or target group name: use 1 to 32 letters, digits \
         and '-', not starting or ending with '-' (and a load balancer's not with 'internal-')"
    )]
    BadName(String),
    #[error("'{got}' is not a protocol of {what}: use {allowed}")]
    Protocol {
        what: &'static str,
        got: String,
        allowed: &'static str,
    },
    #[error("'{0}' is not a scheme: use internal or internet-facing")]
    Scheme(String),
    #[error("a {what} port must be 1 to 65535")]
    BadPort { what: &'static str },
    #[error("the health check {what} must be {min} to {max} (got {got})")]
    OutOfRange {
        what: &'static str,
        got: u32,
        min: u32,
        max: u32,
    },
    #[error("the health check timeout ({timeout} s) must not exceed its interval ({interval} s)")]
    TimeoutOverInterval { timeout: u32, interval: u32 },
    #[error("a health check path is for HTTP checks: add --health-protocol http, or drop the path")]
    PathWithoutHttp,
    #[error("health check path '{0}' must start with '/' and hold printable characters only")]
    BadPath(String),
    #[error("the deregistration delay must be 0 to 3600 s (got {0})")]
    BadDelay(u32),
    #[error("a load balancer needs at least one subnet: pass --subnet")]
    NoSubnets,
    #[error(
        "subnets {subnet} and {other} are both in zone {zone}: a load balancer takes one \
         subnet per availability zone, as ELBv2's"
    )]
    SameZone {
        subnet: String,
        other: String,
        zone: String,
    },
    #[error(
        "VPC {vpc} has no internet gateway attached: an internet-facing load balancer takes its \
         public address through one (`gureum igw attach`), or make it internal"
    )]
    NoGateway { vpc: String },
    #[error("{noun} {id} is in VPC {its_vpc}, not in the VPC {vpc} of {what}")]
    OtherVpc {
        noun: &'static str,
        id: String,
        its_vpc: String,
        vpc: String,
        what: String,
    },
    #[error(
        "instance {instance} is not in a VPC subnet: only instances with a VPC port can be \
         targets"
    )]
    NotInVpc { instance: String },
    #[error("instance {instance} is {state}: register running or stopped instances")]
    Terminated { instance: String, state: String },
    #[error(
        "instance {instance} port {port} is not registered in target group {group} \
         (`gureum target-group health {group}`)"
    )]
    NotRegistered {
        group: String,
        instance: String,
        port: u16,
    },
    #[error("load balancer {balancer} already has a listener on port {port}")]
    ListenerExists { balancer: String, port: u16 },
    #[error(
        "load balancer {balancer} has no listener '{listener}' (`gureum elb describe \
         {balancer}`)"
    )]
    NoListener { balancer: String, listener: String },
    #[error(
        "a {listener} listener cannot send to {group_protocol} target group {group}: their \
         protocols must match"
    )]
    ProtocolMismatch {
        listener: TrafficProtocol,
        group: String,
        group_protocol: TrafficProtocol,
    },
    #[error("'{0}' is not a load balancer type: use network or application")]
    BalancerType(String),
    #[error(
        "a {protocol} listener is not for {kind} load balancer {balancer}: use TCP or UDP on \
         a network one, HTTP on an application one"
    )]
    ListenerProtocol {
        protocol: TrafficProtocol,
        kind: &'static str,
        balancer: String,
    },
    #[error("'{0}' is not a rule condition field: use path-pattern or host-header")]
    Field(String),
    #[error("a {0} condition needs at least one value")]
    NoValues(&'static str),
    #[error(
        "'{value}' is not a {field} pattern: 1 to 128 characters, letters, digits, '*', '?', \
         and for paths _-.$/~\"'@:+&"
    )]
    BadPattern { field: &'static str, value: String },
    #[error("a rule needs a condition: --path or --host")]
    NoConditions,
    #[error("a rule takes one {0} condition (give it several values instead)")]
    RepeatedField(&'static str),
    #[error("a rule takes at most 5 condition values in all (got {0})")]
    TooManyValues(usize),
    #[error("rule priority {0} is out of range: use 1 to 50000 (lower goes first)")]
    Priority(u32),
    #[error("listener {listener} already has a rule of priority {priority}")]
    PriorityTaken { listener: String, priority: u32 },
    #[error(
        "listener {listener} is on network load balancer {balancer}: rules are for \
         application load balancers"
    )]
    RulesOnNetwork { listener: String, balancer: String },
    #[error("load balancer {balancer} has no rule '{rule}' (`gureum elb rule list {balancer}`)")]
    NoRule { balancer: String, rule: String },
    #[error("a rule needs the target group its requests go to: pass --target-group")]
    NoRuleGroup,
    #[error("{noun} {id} is used by {users}: {fix}")]
    InUse {
        noun: &'static str,
        id: String,
        users: String,
        fix: &'static str,
    },
}

/// The 16 hex digits of ID `id` an ARN or DNS name ends with.
fn hex16(id: &str) -> &str {
    id.get(id.len().saturating_sub(16)..).unwrap_or(id)
}

fn account(tx: &Tx<'_>) -> Result<String, cloud::Error> {
    // Made with the store (schema 2); an older one's first write makes it.
    Ok(tx
        .fact("account_id")?
        .unwrap_or_else(|| "000000000000".into()))
}

fn arn(account: &str, resource: &str) -> String {
    format!("arn:aws:elasticloadbalancing:{REGION}:{account}:{resource}")
}

/// ELBv2's names: 1 to 32 of letters, digits and '-', no '-' at either
/// end; a load balancer's not starting with `internal-`.
fn check_name(name: &str, balancer: bool) -> Result<(), Error> {
    let shaped = (1..=32).contains(&name.len())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let reserved = (balancer && name.starts_with("internal-"))
        || ids::is_id(Kind::TargetGroup, name)
        || ids::is_id(Kind::LoadBalancer, name);
    if shaped && !reserved {
        Ok(())
    } else {
        Err(Error::BadName(name.to_owned()))
    }
}

fn check_port(port: u16, what: &'static str) -> Result<(), Error> {
    if port == 0 {
        Err(Error::BadPort { what })
    } else {
        Ok(())
    }
}

/// What `target-group create` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetGroupRequest {
    pub name: String,
    /// ID or Name tag.
    pub vpc: String,
    pub protocol: String,
    pub port: u16,
    pub health_check: HealthCheckRequest,
    /// Seconds [default: 300].
    pub deregistration_delay_secs: Option<u32>,
    pub tags: Tags,
}

/// A target to register or deregister: an instance (ID or Name tag) and a
/// port [default: the group's].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    pub instance: String,
    pub port: Option<u16>,
}

/// Creates a target group in a VPC.
pub fn create_target_group(
    store: &mut Store,
    request: &TargetGroupRequest,
) -> Result<TargetGroup, cloud::Error> {
    check_name(&request.name, false)?;
    let protocol = TrafficProtocol::parse(&request.protocol)?;
    check_port(request.port, "target group")?;
    let mut asked = request.health_check.clone();
    if protocol == TrafficProtocol::Http && asked.protocol.is_none() {
        // ELBv2's default for an HTTP group: checked over HTTP.
        asked.protocol = Some("http".into());
    }
    let health_check = HealthCheck::from_request(&asked)?;
    let delay = request.deregistration_delay_secs.unwrap_or(300);
    if delay > 3600 {
        return Err(Error::BadDelay(delay).into());
    }
    let id = ids::new_id(Kind::TargetGroup)?;
    store.write(|tx| {
        let vpc: Vpc = lookup::find_tagged(tx, &request.vpc, |_| true)?;
        let group = TargetGroup {
            arn: arn(
                &account(tx)?,
                &format!("targetgroup/{}/{}", request.name, hex16(&id)),
            ),
            id,
            name: request.name.clone(),
            vpc_id: vpc.id,
            protocol,
            port: request.port,
            health_check,
            deregistration_delay_secs: delay,
            targets: Vec::new(),
            created: cloud::time::now(),
        };
        tx.insert(&group, &request.tags)?;
        Ok(group)
    })
}

/// The instance `reference` names, checked to be in `group`'s VPC.
fn target_instance(
    tx: &Tx<'_>,
    group: &TargetGroup,
    reference: &str,
) -> Result<Instance, cloud::Error> {
    let instance = lookup::find_instance(tx, reference)?;
    if matches!(
        instance.state,
        crate::cloud::instance::State::ShuttingDown | crate::cloud::instance::State::Terminated
    ) {
        return Err(Error::Terminated {
            instance: instance.id,
            state: instance.state.to_string(),
        }
        .into());
    }
    let Some(placement) = &instance.placement else {
        return Err(Error::NotInVpc {
            instance: instance.id,
        }
        .into());
    };
    if placement.vpc_id != group.vpc_id {
        return Err(Error::OtherVpc {
            noun: "instance",
            id: instance.id.clone(),
            its_vpc: placement.vpc_id.clone(),
            vpc: group.vpc_id.clone(),
            what: format!("target group {}", group.id),
        }
        .into());
    }
    Ok(instance)
}

/// Registers (`register`) or deregisters targets: a deregistered target
/// drains for the group's delay, then goes.
pub fn change_targets(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    targets: &[TargetRef],
    register: bool,
) -> Result<TargetGroup, cloud::Error> {
    for target in targets {
        if let Some(port) = target.port {
            check_port(port, "target")?;
        }
    }
    let now = cloud::time::now_secs();
    realise::change(store, config, |tx| {
        let mut group: TargetGroup = lookup::find(tx, reference)?;
        group.expire(now);
        for target in targets {
            let port = target.port.unwrap_or(group.port);
            if register {
                let instance = target_instance(tx, &group, &target.instance)?;
                group.register(&instance.id, port);
            } else {
                // A terminated instance's target is gone already; one that
                // is still there is named by its ID or Name tag.
                let id = match lookup::find_instance(tx, &target.instance) {
                    Ok(instance) => instance.id,
                    Err(_) => target.instance.clone(),
                };
                group.drain(&id, port, now)?;
            }
        }
        tx.update(&group)?;
        let vpc = group.vpc_id.clone();
        Ok((group, vec![vpc]))
    })
}

/// Deletes a target group no listener uses (ELBv2's ResourceInUse).
pub fn delete_target_group(
    store: &mut Store,
    reference: &str,
) -> Result<TargetGroup, cloud::Error> {
    store.write(|tx| {
        let group: TargetGroup = lookup::find(tx, reference)?;
        let users: Vec<String> = tx
            .list::<LoadBalancer>()?
            .into_iter()
            .filter(|b| b.uses(&group.id))
            .map(|b| b.id)
            .collect();
        if !users.is_empty() {
            return Err(Error::InUse {
                noun: "target group",
                id: group.id,
                users: format!("listeners of load balancers {}", users.join(", ")),
                fix: "delete those listeners or rules first (`gureum elb listener delete`, \
                      `gureum elb rule delete`)",
            }
            .into());
        }
        let groups = crate::cloud::autoscaling::users_of(tx, &group.id)?;
        if !groups.is_empty() {
            return Err(Error::InUse {
                noun: "target group",
                id: group.id,
                users: format!("Auto Scaling groups {}", groups.join(", ")),
                fix: "detach it from them first (`gureum asg detach-target-groups`)",
            }
            .into());
        }
        tx.delete(&group.id)?;
        Ok(group)
    })
}

/// What `elb create` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalancerRequest {
    pub name: String,
    /// IDs or Name tags, one per availability zone.
    pub subnets: Vec<String>,
    /// IDs, names in the VPC, or Name tags [default: the VPC's default].
    pub security_groups: Vec<String>,
    pub scheme: Scheme,
    /// network (the default) or application.
    #[serde(default)]
    pub balancer_type: BalancerType,
    pub tags: Tags,
}

/// The addresses of the load balancers' ports in VPC `vpc`: taken, as
/// instances' are.
pub fn addresses_in(tx: &Tx<'_>, vpc: &str) -> Result<BTreeSet<Ipv4Addr>, cloud::Error> {
    Ok(in_vpc::<LoadBalancer>(tx, vpc)?
        .iter()
        .flat_map(|b| b.ports.iter().map(|p| p.private_ip))
        .collect())
}

/// The public addresses internet-facing load balancers hold.
pub fn public_addresses(tx: &Tx<'_>) -> Result<Vec<Ipv4Addr>, cloud::Error> {
    Ok(tx
        .list::<LoadBalancer>()?
        .into_iter()
        .filter_map(|b| b.public_ip)
        .collect())
}

/// Creates a load balancer: a port in each subnet (the lowest
/// free address), and for an internet-facing one an address from the
/// public pool.
pub fn create_load_balancer(
    store: &mut Store,
    config: &NetConfig,
    request: &BalancerRequest,
) -> Result<LoadBalancer, cloud::Error> {
    check_name(&request.name, true)?;
    if request.subnets.is_empty() {
        return Err(Error::NoSubnets.into());
    }
    let id = ids::new_id(Kind::LoadBalancer)?;
    realise::change(store, config, |tx| {
        let mut subnets: Vec<Subnet> = Vec::new();
        for reference in &request.subnets {
            let subnet: Subnet = lookup::find_tagged(tx, reference, |_| true)?;
            if subnets.iter().any(|s| s.id == subnet.id) {
                continue;
            }
            if let Some(other) = subnets
                .iter()
                .find(|s| s.availability_zone == subnet.availability_zone)
            {
                return Err(Error::SameZone {
                    subnet: subnet.id.clone(),
                    other: other.id.clone(),
                    zone: subnet.availability_zone.clone(),
                }
                .into());
            }
            if let Some(first) = subnets.first() {
                if first.vpc_id != subnet.vpc_id {
                    return Err(Error::OtherVpc {
                        noun: "subnet",
                        id: subnet.id.clone(),
                        its_vpc: subnet.vpc_id.clone(),
                        vpc: first.vpc_id.clone(),
                        what: format!("subnet {}", first.id),
                    }
                    .into());
                }
            }
            subnets.push(subnet);
        }
        let vpc_id = subnets
            .first()
            .map(|s| s.vpc_id.clone())
            .ok_or(Error::NoSubnets)?;
        let vpc: Vpc = lookup::find(tx, &vpc_id)?;
        let groups = vpc::port::groups_in(tx, &vpc.id, &request.security_groups)?;
        let groups = if groups.is_empty() {
            vec![vpc.default_security_group.clone()]
        } else {
            groups
        };
        let mut used: BTreeSet<Ipv4Addr> = vpc::port::instances_in(tx, &vpc.id)?
            .into_iter()
            .map(|(_, p)| p.private_ip)
            .collect();
        used.extend(addresses_in(tx, &vpc.id)?);
        let mut ports = Vec::new();
        for (index, subnet) in subnets.iter().enumerate() {
            let address = cidr::allocate(subnet.cidr, &used, None).map_err(vpc::Error::from)?;
            used.insert(address);
            ports.push(LoadBalancer::port(&id, index, &subnet.id, address));
        }
        let public_ip = match request.scheme {
            Scheme::Internal => None,
            Scheme::InternetFacing => {
                let attached = in_vpc::<crate::cloud::vpc::gateway::InternetGateway>(tx, &vpc.id)?;
                if attached.is_empty() {
                    return Err(Error::NoGateway { vpc: vpc.id }.into());
                }
                let taken = crate::cloud::vpc::gateway::public_addresses(tx)?;
                Some(config.allocate(&taken)?)
            }
        };
        let hex = hex16(&id);
        let internal = if request.scheme == Scheme::Internal {
            "internal-"
        } else {
            ""
        };
        let balancer = LoadBalancer {
            arn: arn(
                &account(tx)?,
                &format!(
                    "loadbalancer/{}/{}/{hex}",
                    request.balancer_type.arn_part(),
                    request.name
                ),
            ),
            dns_name: format!(
                "{internal}{}-{hex}.elb.{REGION}.gureum.internal",
                request.name
            ),
            name: request.name.clone(),
            balancer_type: request.balancer_type,
            scheme: request.scheme,
            vpc_id: vpc.id.clone(),
            netns: format!("{}{id}", config.prefix),
            ports,
            security_groups: groups,
            public_ip,
            listeners: Vec::new(),
            created: cloud::time::now(),
            id,
        };
        tx.insert(&balancer, &request.tags)?;
        realise::check(tx, &vpc.id)?;
        Ok((balancer, vec![vpc.id]))
    })
}

/// Deletes a load balancer with its listeners (as ELBv2 does); its
/// ports, namespace and public address go.
pub fn delete_load_balancer(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
) -> Result<LoadBalancer, cloud::Error> {
    realise::change(store, config, |tx| {
        let balancer: LoadBalancer = lookup::find(tx, reference)?;
        tx.delete(&balancer.id)?;
        let vpc = balancer.vpc_id.clone();
        Ok((balancer, vec![vpc]))
    })
}

/// Adds a listener sending `protocol` flows (or requests) to `port` to
/// target group `group`; without a protocol, the balancer's own (TCP on
/// a network one, HTTP on an application one).
pub fn create_listener(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    protocol: Option<&str>,
    port: u16,
    group: &str,
) -> Result<LoadBalancer, cloud::Error> {
    let asked = protocol.map(TrafficProtocol::parse).transpose()?;
    check_port(port, "listener")?;
    let listener_id = ids::new_id(Kind::LoadBalancer)?;
    realise::change(store, config, |tx| {
        let mut balancer: LoadBalancer = lookup::find(tx, reference)?;
        let protocol = asked.unwrap_or(match balancer.balancer_type {
            BalancerType::Network => TrafficProtocol::Tcp,
            BalancerType::Application => TrafficProtocol::Http,
        });
        if !protocol.carried_by(balancer.balancer_type) {
            return Err(Error::ListenerProtocol {
                protocol,
                kind: balancer.balancer_type.as_str(),
                balancer: balancer.id,
            }
            .into());
        }
        let mut group = group_for(tx, &balancer, protocol, group)?;
        if balancer.listeners.iter().any(|l| l.port == port) {
            return Err(Error::ListenerExists {
                balancer: balancer.id,
                port,
            }
            .into());
        }
        start_using(tx, &mut group)?;
        let hex = hex16(&listener_id).to_owned();
        balancer.listeners.push(Listener {
            arn: arn(
                &account(tx)?,
                &format!(
                    "listener/{}/{}/{}/{hex}",
                    balancer.balancer_type.arn_part(),
                    balancer.name,
                    hex16(&balancer.id)
                ),
            ),
            id: hex,
            protocol,
            port,
            target_group_id: group.id,
            rules: Vec::new(),
        });
        tx.update(&balancer)?;
        let vpc = balancer.vpc_id.clone();
        Ok((balancer, vec![vpc]))
    })
}

/// Restarts the checks of `group` when no listener used it yet: its
/// targets are checked afresh from now on.
fn start_using(tx: &Tx<'_>, group: &mut TargetGroup) -> Result<(), cloud::Error> {
    let in_use = tx.list::<LoadBalancer>()?.iter().any(|b| b.uses(&group.id));
    if !in_use {
        group.restart_checks();
        tx.update(group)?;
    }
    Ok(())
}

/// The target group `reference` names, checked to be in `balancer`'s VPC
/// and of `protocol`.
fn group_for(
    tx: &Tx<'_>,
    balancer: &LoadBalancer,
    protocol: TrafficProtocol,
    reference: &str,
) -> Result<TargetGroup, cloud::Error> {
    let group: TargetGroup = lookup::find(tx, reference)?;
    if group.vpc_id != balancer.vpc_id {
        return Err(Error::OtherVpc {
            noun: "target group",
            id: group.id,
            its_vpc: group.vpc_id,
            vpc: balancer.vpc_id.clone(),
            what: format!("load balancer {}", balancer.id),
        }
        .into());
    }
    if group.protocol != protocol {
        return Err(Error::ProtocolMismatch {
            listener: protocol,
            group: group.id,
            group_protocol: group.protocol,
        }
        .into());
    }
    Ok(group)
}

/// What `elb rule create` and `modify` ask for. Conditions given to a
/// modify replace all the rule's (as ELBv2's ModifyRule); none keep them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListenerRuleRequest {
    /// `path-pattern` values.
    pub paths: Vec<String>,
    /// `host-header` values.
    pub hosts: Vec<String>,
    /// The target group matching requests go to: ID or name.
    pub target_group: Option<String>,
}

impl ListenerRuleRequest {
    /// Its conditions, checked; none when it names no values.
    fn conditions(&self) -> Result<Vec<rule::Condition>, Error> {
        let mut conditions = Vec::new();
        for (field, values) in [
            (rule::Field::PathPattern, &self.paths),
            (rule::Field::HostHeader, &self.hosts),
        ] {
            if !values.is_empty() {
                conditions.push(rule::Condition::checked(field, values.clone())?);
            }
        }
        Ok(conditions)
    }
}

/// The listener `listener` (its port, ID or ARN) of `balancer`.
fn listener_mut<'b>(
    balancer: &'b mut LoadBalancer,
    listener: &str,
) -> Result<&'b mut Listener, Error> {
    let (id, kind) = (balancer.id.clone(), balancer.balancer_type);
    let found = balancer
        .listeners
        .iter_mut()
        .find(|l| l.id == listener || l.arn == listener || l.port.to_string() == listener)
        .ok_or_else(|| Error::NoListener {
            balancer: id.clone(),
            listener: listener.to_owned(),
        })?;
    if kind != BalancerType::Application {
        return Err(Error::RulesOnNetwork {
            listener: found.id.clone(),
            balancer: id,
        });
    }
    Ok(found)
}

/// The listener of `balancer` holding rule `rule` (its ID or ARN), and
/// the rule's place in it.
fn rule_place(balancer: &LoadBalancer, rule: &str) -> Result<(usize, usize), Error> {
    balancer
        .listeners
        .iter()
        .enumerate()
        .find_map(|(l, listener)| {
            let r = listener
                .rules
                .iter()
                .position(|r| r.id == rule || r.arn == rule)?;
            Some((l, r))
        })
        .ok_or_else(|| Error::NoRule {
            balancer: balancer.id.clone(),
            rule: rule.to_owned(),
        })
}

/// Refuses two rules of `listener` with one priority.
fn check_priorities(listener: &Listener) -> Result<(), Error> {
    for (n, rule) in listener.rules.iter().enumerate() {
        if listener
            .rules
            .iter()
            .skip(n + 1)
            .any(|r| r.priority == rule.priority)
        {
            return Err(Error::PriorityTaken {
                listener: listener.id.clone(),
                priority: rule.priority,
            });
        }
    }
    Ok(())
}

/// Adds a rule of `priority` to listener `listener` (its port, ID or
/// ARN) of application load balancer `reference`: requests matching
/// every condition go to the request's target group.
pub fn create_rule(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    listener: &str,
    priority: u32,
    request: &ListenerRuleRequest,
) -> Result<LoadBalancer, cloud::Error> {
    let conditions = request.conditions()?;
    rule::check(priority, &conditions)?;
    let Some(group) = &request.target_group else {
        return Err(Error::NoRuleGroup.into());
    };
    let rule_id = ids::new_id(Kind::LoadBalancer)?;
    realise::change(store, config, |tx| {
        let mut balancer: LoadBalancer = lookup::find(tx, reference)?;
        let protocol = listener_mut(&mut balancer, listener)?.protocol;
        let mut group = group_for(tx, &balancer, protocol, group)?;
        start_using(tx, &mut group)?;
        let found = listener_mut(&mut balancer, listener)?;
        let hex = hex16(&rule_id).to_owned();
        let rule_arn = found.rule_arn(&hex);
        found.rules.push(rule::Rule {
            arn: rule_arn,
            id: hex,
            priority,
            conditions,
            target_group_id: group.id,
        });
        check_priorities(found)?;
        tx.update(&balancer)?;
        let vpc = balancer.vpc_id.clone();
        Ok((balancer, vec![vpc]))
    })
}

/// Changes rule `rule`'s conditions (those of the request replace all
/// of them, if it names any) or target group.
pub fn modify_rule(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    rule: &str,
    request: &ListenerRuleRequest,
) -> Result<LoadBalancer, cloud::Error> {
    let asked = request.conditions()?;
    realise::change(store, config, |tx| {
        let mut balancer: LoadBalancer = lookup::find(tx, reference)?;
        let (l, r) = rule_place(&balancer, rule)?;
        let Some(listener) = balancer.listeners.get(l) else {
            return Err(Error::NoRule {
                balancer: balancer.id,
                rule: rule.to_owned(),
            }
            .into());
        };
        let group = match &request.target_group {
            Some(group) => {
                let mut group = group_for(tx, &balancer, listener.protocol, group)?;
                start_using(tx, &mut group)?;
                Some(group.id)
            }
            None => None,
        };
        let Some(found) = balancer
            .listeners
            .get_mut(l)
            .and_then(|l| l.rules.get_mut(r))
        else {
            return Err(Error::NoRule {
                balancer: balancer.id,
                rule: rule.to_owned(),
            }
            .into());
        };
        if !asked.is_empty() {
            rule::check(found.priority, &asked)?;
            found.conditions.clone_from(&asked);
        }
        if let Some(group) = group {
            found.target_group_id = group;
        }
        tx.update(&balancer)?;
        let vpc = balancer.vpc_id.clone();
        Ok((balancer, vec![vpc]))
    })
}

/// Gives rules of load balancer `reference` new priorities, all at once
/// (so that two may swap theirs).
pub fn set_rule_priorities(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    priorities: &[(String, u32)],
) -> Result<LoadBalancer, cloud::Error> {
    for (_, priority) in priorities {
        rule::check_priority(*priority)?;
    }
    realise::change(store, config, |tx| {
        let mut balancer: LoadBalancer = lookup::find(tx, reference)?;
        for (rule, priority) in priorities {
            let (l, r) = rule_place(&balancer, rule)?;
            if let Some(found) = balancer
                .listeners
                .get_mut(l)
                .and_then(|l| l.rules.get_mut(r))
            {
                found.priority = *priority;
            }
        }
        for listener in &balancer.listeners {
            check_priorities(listener)?;
        }
        tx.update(&balancer)?;
        let vpc = balancer.vpc_id.clone();
        Ok((balancer, vec![vpc]))
    })
}

/// Removes rule `rule` (its ID or ARN) of load balancer `reference`.
pub fn delete_rule(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    rule: &str,
) -> Result<LoadBalancer, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut balancer: LoadBalancer = lookup::find(tx, reference)?;
        let (l, r) = rule_place(&balancer, rule)?;
        if let Some(listener) = balancer.listeners.get_mut(l) {
            if r < listener.rules.len() {
                listener.rules.remove(r);
            }
        }
        tx.update(&balancer)?;
        let vpc = balancer.vpc_id.clone();
        Ok((balancer, vec![vpc]))
    })
}

/// Removes the listener `listener` (its port, ID or ARN) of a load
/// balancer.
pub fn delete_listener(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    listener: &str,
) -> Result<LoadBalancer, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut balancer: LoadBalancer = lookup::find(tx, reference)?;
        let before = balancer.listeners.len();
        balancer
            .listeners
            .retain(|l| l.id != listener && l.arn != listener && l.port.to_string() != listener);
        if balancer.listeners.len() == before {
            return Err(Error::NoListener {
                balancer: balancer.id,
                listener: listener.to_owned(),
            }
            .into());
        }
        tx.update(&balancer)?;
        let vpc = balancer.vpc_id.clone();
        Ok((balancer, vec![vpc]))
    })
}

/// What the health checker found of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub instance: String,
    pub port: u16,
    pub state: HealthState,
    pub reason: Option<String>,
    pub description: Option<String>,
}

/// Records the health checker's findings on a group's targets (a target
/// deregistered meanwhile is left draining), and drops the targets whose
/// drain ended. The VPC's datapath follows.
pub fn report_health(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    reports: &[HealthReport],
) -> Result<TargetGroup, cloud::Error> {
    let now = cloud::time::now_secs();
    realise::change(store, config, |tx| {
        let mut group: TargetGroup = lookup::find(tx, reference)?;
        group.expire(now);
        for report in reports {
            let found = group.targets.iter_mut().find(|t| {
                t.instance_id == report.instance
                    && t.port == report.port
                    && t.state != HealthState::Draining
            });
            if let Some(target) = found {
                target.state = report.state;
                target.reason.clone_from(&report.reason);
                target.description.clone_from(&report.description);
            }
        }
        tx.update(&group)?;
        let vpc = group.vpc_id.clone();
        Ok((group, vec![vpc]))
    })
}

/// Target groups as shown: a group no listener uses has unused targets.
pub fn shown(tx: &Tx<'_>, groups: Vec<TargetGroup>) -> Result<Vec<TargetGroup>, cloud::Error> {
    let balancers = tx.list::<LoadBalancer>()?;
    let now = cloud::time::now_secs();
    Ok(groups
        .into_iter()
        .map(|mut group| {
            group.expire(now);
            let in_use = balancers.iter().any(|b| b.uses(&group.id));
            group.shown(in_use)
        })
        .collect())
}

/// Takes a terminated instance out of every target group, as ELBv2
/// deregisters terminated instances.
pub fn forget_instance(tx: &Tx<'_>, instance: &str) -> Result<(), cloud::Error> {
    for mut group in tx.list::<TargetGroup>()? {
        let before = group.targets.len();
        group.targets.retain(|t| t.instance_id != instance);
        if group.targets.len() != before {
            tx.update(&group)?;
        }
    }
    Ok(())
}

/// The load balancers of VPC `vpc` in subnet or security group `id`, for
/// refusing to delete it.
pub fn users_of(tx: &Tx<'_>, vpc: &str, id: &str) -> Result<Vec<String>, cloud::Error> {
    Ok(in_vpc::<LoadBalancer>(tx, vpc)?
        .into_iter()
        .filter(|b| {
            b.ports.iter().any(|p| p.subnet_id == id) || b.security_groups.iter().any(|g| g == id)
        })
        .map(|b| b.id)
        .collect())
}

/// The target groups in VPC `vpc`, for refusing to delete it.
pub fn groups_in(tx: &Tx<'_>, vpc: &str) -> Result<Vec<String>, cloud::Error> {
    Ok(in_vpc::<TargetGroup>(tx, vpc)?
        .into_iter()
        .map(|g| g.id)
        .collect())
}

/// The healthy targets (address and port) of each target group of VPC
/// `vpc` whose instance has a port there.
pub fn healthy_targets(
    tx: &Tx<'_>,
    vpc: &str,
) -> Result<BTreeMap<String, Vec<(Ipv4Addr, u16)>>, cloud::Error> {
    let addresses: BTreeMap<String, Ipv4Addr> = vpc::port::instances_in(tx, vpc)?
        .into_iter()
        .map(|(id, placement)| (id, placement.private_ip))
        .collect();
    let now = cloud::time::now_secs();
    Ok(in_vpc::<TargetGroup>(tx, vpc)?
        .into_iter()
        .map(|mut group| {
            group.expire(now);
            let healthy = group
                .targets
                .iter()
                .filter(|t| t.state == HealthState::Healthy)
                .filter_map(|t| Some((*addresses.get(&t.instance_id)?, t.port)))
                .collect();
            (group.id, healthy)
        })
        .collect())
}

/// The load balancers of VPC `vpc` as its realisation takes them: a
/// network one's listeners send to the healthy targets whose instance
/// has a port here; an application one's are its proxy's, in its
/// namespace.
pub fn balancers(tx: &Tx<'_>, vpc: &str) -> Result<Vec<Balancer>, cloud::Error> {
    let healthy = healthy_targets(tx, vpc)?;
    Ok(in_vpc::<LoadBalancer>(tx, vpc)?
        .into_iter()
        .map(|balancer| {
            let network = balancer.balancer_type == BalancerType::Network;
            Balancer {
                id: balancer.id.clone(),
                netns: balancer.netns.clone(),
                ports: balancer.realised_ports(),
                public_ip: balancer.public_ip,
                listeners: balancer
                    .listeners
                    .iter()
                    .filter(|_| network)
                    .map(|listener| Forward {
                        protocol: listener.protocol.realised(),
                        port: listener.port,
                        targets: healthy
                            .get(&listener.target_group_id)
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
                proxied: balancer
                    .listeners
                    .iter()
                    .filter(|_| !network)
                    .map(|l| l.port)
                    .collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_elbv2() {
        for good in ["web", "a-b-1", "x234567890123456789012345678901z"] {
            check_name(good, true).unwrap();
        }
        for bad in [
            "",
            "-web",
            "web-",
            "a_b",
            "a.b",
            "x2345678901234567890123456789012z",
            "tg-0123456789abcdef0",
        ] {
            assert!(check_name(bad, false).is_err(), "{bad}");
        }
        assert!(check_name("internal-web", true).is_err());
        check_name("internal-web", false).unwrap();
    }

    #[test]
    fn arns_have_elbv2_shapes() {
        assert_eq!(
            arn(
                "123456789012",
                &format!("targetgroup/web/{}", hex16("tg-0123456789abcdef0"))
            ),
            "arn:aws:elasticloadbalancing:local-1:123456789012:targetgroup/web/123456789abcdef0"
        );
    }
}
