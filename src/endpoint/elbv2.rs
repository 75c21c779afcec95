//! ELBv2's Query API (version 2015-12-01) for network and application
//! load balancers: target groups, targets and their health, load
//! balancers, listeners and listener rules, as botocore's `elbv2` model
//! shapes them (`member` lists,
//! `<XResponse><XResult>`, ELBv2's error codes). Each operation is a core
//! action run by the daemon's executor, as the EC2 endpoint's are, after
//! `authorize` allows `elasticloadbalancing:ACTION` (on `*`: policies
//! name ELBv2 resources by ARN, which this does not match yet).

use std::collections::BTreeMap;

use super::iam::{Failure, Params, Xml};
use super::{Reply, Service, members, missing, need, number, tags, unexpected};
use crate::cloud::api::{Action, ApiError, Category, Reason, Response, Tagged};
use crate::cloud::elb::load_balancer::{BalancerType, Listener, LoadBalancer, Scheme};
use crate::cloud::elb::rule::{Field, Rule};
use crate::cloud::elb::target_group::HealthCheckRequest;
use crate::cloud::elb::target_group::{CheckProtocol, TargetGroup};
use crate::cloud::elb::{BalancerRequest, ListenerRuleRequest, TargetGroupRequest, TargetRef};
use crate::cloud::iam::{AuthError, Caller};
use crate::cloud::lifecycle::Context;
use crate::cloud::vpc::subnet::Subnet;
use crate::daemon::Executor;

const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// ELBv2's answer to a request that failed authentication.
pub fn refused(e: &AuthError, request_id: &str) -> Reply {
    Failure::from(e).reply(NAMESPACE, request_id)
}

/// Answers the ELBv2 request `params` from `caller`.
pub fn handle(
    ctx: &Context,
    executor: &Executor,
    caller: &Caller,
    params: &[(String, String)],
    request_id: &str,
) -> Reply {
    let service = Service {
        name: "elasticloadbalancing",
        namespace: NAMESPACE,
        failure,
    };
    service.handle(ctx, caller, params, request_id, |params, action| {
        run(ctx, executor, params, action)
    })
}

/// ELBv2's error for a failed core action.
fn failure(e: ApiError) -> Failure {
    let code = match (&e.category, &e.reason) {
        (Category::Unauthorised, _) => return Failure::new(403, "AccessDenied", e.message),
        (Category::Internal, _) => return Failure::new(500, "InternalFailure", e.message),
        (_, Some(Reason::NotFound { noun })) => match noun.as_str() {
            "target group" => "TargetGroupNotFound",
            "load balancer" => "LoadBalancerNotFound",
            "subnet" => "SubnetNotFound",
            "security group" => "InvalidSecurityGroup",
            "instance" => "InvalidTarget",
            _ => "ValidationError",
        },
        (_, Some(Reason::NameTaken { noun })) if noun == "target group" => {
            "DuplicateTargetGroupName"
        }
        (_, Some(Reason::NameTaken { .. })) => "DuplicateLoadBalancerName",
        (_, Some(Reason::InUse)) => "ResourceInUse",
        (Category::NotFound, _) if e.message.contains("has no rule") => "RuleNotFound",
        (Category::NotFound, _) if e.message.contains("listener") => "ListenerNotFound",
        (Category::NotFound, _) => "InvalidTarget",
        (Category::Conflict, _) if e.message.contains("already has a listener") => {
            "DuplicateListener"
        }
        (Category::Conflict, _) if e.message.contains("already has a rule of priority") => {
            "PriorityInUse"
        }
        (Category::LimitExceeded, _) => "TooManyLoadBalancers",
        _ => "ValidationError",
    };
    Failure::new(400, code, e.message)
}

/// The core API's reference of an ELBv2 ARN: the name it carries
/// (`targetgroup/NAME/HEX`, `loadbalancer/net/NAME/HEX`, a listener's or
/// rule's balancer name), names being unique; anything else as it is.
fn by_arn(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    let parts: Vec<&str> = resource.split('/').collect();
    match parts.as_slice() {
        ["targetgroup", name, _] => (*name).to_owned(),
        ["loadbalancer", _, name, _]
        | ["listener", _, name, _, _]
        | ["listener-rule", _, name, _, _, _] => (*name).to_owned(),
        _ => arn.to_owned(),
    }
}

/// `Targets.member.N.Id` / `.Port`.
fn targets(params: &Params<'_>) -> Result<Vec<TargetRef>, Failure> {
    let mut all = Vec::new();
    for n in 1.. {
        let Some(id) = params.get(&format!("Targets.member.{n}.Id")) else {
            break;
        };
        all.push(TargetRef {
            instance: id.to_owned(),
            port: number(params, &format!("Targets.member.{n}.Port"))?,
        });
    }
    if all.is_empty() {
        return Err(missing("Targets"));
    }
    Ok(all)
}

fn run(
    ctx: &Context,
    executor: &Executor,
    params: &Params<'_>,
    name: &str,
) -> Result<Option<Xml>, Failure> {
    let call = |action: Action| executor.run(action).map_err(failure);
    let groups = |action: Action| match call(action)? {
        Response::TargetGroups(items) => Ok(items),
        _ => Err(unexpected()),
    };
    let balancers = |action: Action| match call(action)? {
        Response::LoadBalancers(items) => Ok(items),
        _ => Err(unexpected()),
    };
    let target_group = || need(params, "TargetGroupArn").map(|arn| by_arn(&arn));
    let load_balancer = || need(params, "LoadBalancerArn").map(|arn| by_arn(&arn));
    let mut x = Xml::default();
    match name {
        "CreateTargetGroup" => {
            if params.get("TargetType").is_some_and(|t| t != "instance") {
                return Err(unsupported("target types other than instance"));
            }
            let port = match params.get("HealthCheckPort") {
                None | Some("traffic-port") => None,
                Some(_) => number(params, "HealthCheckPort")?,
            };
            let request = TargetGroupRequest {
                name: need(params, "Name")?,
                vpc: need(params, "VpcId")?,
                protocol: need(params, "Protocol")?,
                port: number(params, "Port")?.ok_or_else(|| missing("Port"))?,
                health_check: HealthCheckRequest {
                    protocol: params.get("HealthCheckProtocol").map(str::to_owned),
                    port,
                    path: params.get("HealthCheckPath").map(str::to_owned),
                    interval_secs: number(params, "HealthCheckIntervalSeconds")?,
                    timeout_secs: number(params, "HealthCheckTimeoutSeconds")?,
                    healthy_threshold: number(params, "HealthyThresholdCount")?,
                    unhealthy_threshold: number(params, "UnhealthyThresholdCount")?,
                },
                deregistration_delay_secs: None,
                tags: tags(params),
            };
            let made = groups(Action::CreateTargetGroup { request })?;
            target_groups(ctx, &mut x, &made)?;
        }
        "DescribeTargetGroups" => {
            let mut found = described(
                params,
                "TargetGroupArns",
                || {
                    groups(Action::ListTargetGroups {
                        filters: Vec::new(),
                    })
                },
                |target_group| groups(Action::DescribeTargetGroup { target_group }),
            )?;
            if let Some(arn) = params.get("LoadBalancerArn") {
                let balancer = balancers(Action::DescribeLoadBalancer {
                    load_balancer: by_arn(arn),
                })?;
                found.retain(|g| balancer.iter().any(|b| b.item.uses(&g.item.id)));
            }
            target_groups(ctx, &mut x, &found)?;
        }
        "DeleteTargetGroup" => {
            groups(Action::DeleteTargetGroup {
                target_group: target_group()?,
            })?;
            return Ok(Some(Xml::default()));
        }
        "RegisterTargets" | "DeregisterTargets" => {
            let (target_group, targets) = (target_group()?, targets(params)?);
            groups(if name == "RegisterTargets" {
                Action::RegisterTargets {
                    target_group,
                    targets,
                }
            } else {
                Action::DeregisterTargets {
                    target_group,
                    targets,
                }
            })?;
            return Ok(Some(Xml::default()));
        }
        "DescribeTargetHealth" => {
            let found = groups(Action::DescribeTargetGroup {
                target_group: target_group()?,
            })?;
            x.open("TargetHealthDescriptions");
            for group in &found {
                for target in &group.item.targets {
                    x.open("member")
                        .open("Target")
                        .leaf("Id", &target.instance_id)
                        .leaf("Port", &target.port.to_string())
                        .close("Target")
                        .leaf(
                            "HealthCheckPort",
                            &group.item.check_port(target).to_string(),
                        )
                        .open("TargetHealth")
                        .leaf("State", &target.state.to_string());
                    if let Some(reason) = &target.reason {
                        x.leaf("Reason", reason);
                    }
                    if let Some(description) = &target.description {
                        x.leaf("Description", description);
                    }
                    x.close("TargetHealth").close("member");
                }
            }
            x.close("TargetHealthDescriptions");
        }
        "CreateLoadBalancer" => {
            let balancer_type = BalancerType::parse(params.get("Type").unwrap_or("application"))
                .map_err(|e| Failure::new(400, "ValidationError", e.to_string()))?;
            let scheme = params.get("Scheme").unwrap_or("internet-facing");
            let request = BalancerRequest {
                name: need(params, "Name")?,
                subnets: members(params, "Subnets"),
                security_groups: members(params, "SecurityGroups"),
                scheme: Scheme::parse(scheme)
                    .map_err(|e| Failure::new(400, "ValidationError", e.to_string()))?,
                balancer_type,
                tags: tags(params),
            };
            let made = balancers(Action::CreateLoadBalancer { request })?;
            load_balancers(ctx, &mut x, &made)?;
        }
        "DescribeLoadBalancers" => {
            let found = described(
                params,
                "LoadBalancerArns",
                || {
                    balancers(Action::ListLoadBalancers {
                        filters: Vec::new(),
                    })
                },
                |load_balancer| balancers(Action::DescribeLoadBalancer { load_balancer }),
            )?;
            load_balancers(ctx, &mut x, &found)?;
        }
        "DeleteLoadBalancer" => {
            balancers(Action::DeleteLoadBalancer {
                load_balancer: load_balancer()?,
            })?;
            return Ok(Some(Xml::default()));
        }
        "CreateListener" => {
            let port: u16 = number(params, "Port")?.ok_or_else(|| missing("Port"))?;
            let made = balancers(Action::CreateListener {
                load_balancer: load_balancer()?,
                protocol: Some(need(params, "Protocol")?),
                port,
                target_group: forward_to(params, "DefaultActions")?
                    .ok_or_else(|| missing("DefaultActions"))?,
            })?;
            let listeners: Vec<_> = made
                .iter()
                .flat_map(|b| {
                    b.item
                        .listeners
                        .iter()
                        .filter(|l| l.port == port)
                        .map(move |l| (b, l))
                })
                .collect();
            listeners_xml(ctx, &mut x, &listeners)?;
        }
        "DescribeListeners" => {
            let reference = match params.get("LoadBalancerArn") {
                Some(arn) => by_arn(arn),
                None => members(params, "ListenerArns")
                    .first()
                    .map(|a| by_arn(a))
                    .ok_or_else(|| missing("LoadBalancerArn"))?,
            };
            let found = balancers(Action::DescribeLoadBalancer {
                load_balancer: reference,
            })?;
            let arns = members(params, "ListenerArns");
            let listeners: Vec<_> = found
                .iter()
                .flat_map(|b| b.item.listeners.iter().map(move |l| (b, l)))
                .filter(|(_, l)| arns.is_empty() || arns.contains(&l.arn))
                .collect();
            listeners_xml(ctx, &mut x, &listeners)?;
        }
        "DeleteListener" => {
            let arn = need(params, "ListenerArn")?;
            balancers(Action::DeleteListener {
                load_balancer: by_arn(&arn),
                listener: arn,
            })?;
            return Ok(Some(Xml::default()));
        }
        "CreateRule" => {
            let listener = need(params, "ListenerArn")?;
            let priority = number(params, "Priority")?.ok_or_else(|| missing("Priority"))?;
            let mut request = conditions(params)?;
            request.target_group = forward_to(params, "Actions")?;
            let made = balancers(Action::CreateRule {
                load_balancer: by_arn(&listener),
                listener,
                priority,
                request,
            })?;
            let arns: Vec<String> = made
                .iter()
                .flat_map(|b| &b.item.listeners)
                .flat_map(|l| &l.rules)
                .filter(|r| r.priority == priority)
                .map(|r| r.arn.clone())
                .collect();
            rules_xml(ctx, &mut x, &made, |_, r| {
                r.is_some_and(|r| arns.contains(&r.arn))
            })?;
        }
        "DescribeRules" => {
            let listener = params.get("ListenerArn");
            let arns = members(params, "RuleArns");
            let reference = listener
                .or(arns.first().map(String::as_str))
                .map(by_arn)
                .ok_or_else(|| missing("ListenerArn"))?;
            let found = balancers(Action::DescribeLoadBalancer {
                load_balancer: reference,
            })?;
            rules_xml(ctx, &mut x, &found, |l, r| match listener {
                Some(arn) => l.arn == arn,
                None => arns.contains(&r.map_or_else(|| l.default_rule_arn(), |r| r.arn.clone())),
            })?;
        }
        "ModifyRule" => {
            let rule = need(params, "RuleArn")?;
            let mut request = conditions(params)?;
            request.target_group = forward_to(params, "Actions")?;
            let made = balancers(Action::ModifyRule {
                load_balancer: by_arn(&rule),
                rule: rule.clone(),
                request,
            })?;
            rules_xml(ctx, &mut x, &made, |_, r| r.is_some_and(|r| r.arn == rule))?;
        }
        "SetRulePriorities" => {
            let mut priorities = Vec::new();
            for n in 1.. {
                let Some(arn) = params.get(&format!("RulePriorities.member.{n}.RuleArn")) else {
                    break;
                };
                let priority = number(params, &format!("RulePriorities.member.{n}.Priority"))?
                    .ok_or_else(|| missing("Priority"))?;
                priorities.push((arn.to_owned(), priority));
            }
            let first = priorities
                .first()
                .map(|(arn, _)| by_arn(arn))
                .ok_or_else(|| missing("RulePriorities"))?;
            if priorities.iter().any(|(arn, _)| by_arn(arn) != first) {
                return Err(Failure::new(
                    400,
                    "ValidationError",
                    "set the priorities of one load balancer's rules at a time",
                ));
            }
            let made = balancers(Action::SetRulePriorities {
                load_balancer: first,
                priorities: priorities.clone(),
            })?;
            rules_xml(ctx, &mut x, &made, |_, r| {
                r.is_some_and(|r| priorities.iter().any(|(arn, _)| *arn == r.arn))
            })?;
        }
        "DeleteRule" => {
            let rule = need(params, "RuleArn")?;
            balancers(Action::DeleteRule {
                load_balancer: by_arn(&rule),
                rule,
            })?;
            return Ok(Some(Xml::default()));
        }
        other => return Err(Failure::invalid_action(other)),
    }
    Ok(Some(x))
}

/// What a Describe names by its ARNs (list `arns`) and `Names`, each
/// found with `one`; everything (`all`) when it names nothing.
fn described<T>(
    params: &Params<'_>,
    arns: &str,
    all: impl FnOnce() -> Result<Vec<T>, Failure>,
    one: impl Fn(String) -> Result<Vec<T>, Failure>,
) -> Result<Vec<T>, Failure> {
    let mut wanted: Vec<String> = members(params, arns).iter().map(|a| by_arn(a)).collect();
    wanted.extend(members(params, "Names"));
    if wanted.is_empty() {
        return all();
    }
    let mut found = Vec::new();
    for reference in wanted {
        found.extend(one(reference)?);
    }
    Ok(found)
}

fn unsupported(what: &str) -> Failure {
    Failure::new(
        400,
        "ValidationError",
        format!("{what} are not supported by this endpoint"),
    )
}

/// The target group of the forward action of list `name`
/// (`NAME.member.1.TargetGroupArn`, or its ForwardConfig's one group),
/// as the core API finds it; None when the list is not given.
fn forward_to(params: &Params<'_>, name: &str) -> Result<Option<String>, Failure> {
    let first = format!("{name}.member.1");
    if params.get(&format!("{name}.member.2.Type")).is_some() {
        return Err(unsupported("several actions"));
    }
    let Some(kind) = params.get(&format!("{first}.Type")) else {
        return Ok(None);
    };
    if kind != "forward" {
        return Err(unsupported("actions other than forward"));
    }
    let weighted = format!("{first}.ForwardConfig.TargetGroups.member");
    if params
        .get(&format!("{weighted}.2.TargetGroupArn"))
        .is_some()
    {
        return Err(unsupported("forwards to several target groups"));
    }
    params
        .get(&format!("{first}.TargetGroupArn"))
        .or_else(|| params.get(&format!("{weighted}.1.TargetGroupArn")))
        .map(|arn| Some(by_arn(arn)))
        .ok_or_else(|| missing(&format!("{first}.TargetGroupArn")))
}

/// The rule conditions of `Conditions.member.N` (`Field` with `Values`,
/// or `PathPatternConfig`/`HostHeaderConfig`), with no target group.
fn conditions(params: &Params<'_>) -> Result<ListenerRuleRequest, Failure> {
    let mut request = ListenerRuleRequest::default();
    for n in 1.. {
        let at = format!("Conditions.member.{n}");
        let Some(field) = params.get(&format!("{at}.Field")) else {
            break;
        };
        let field =
            Field::parse(field).map_err(|e| Failure::new(400, "ValidationError", e.to_string()))?;
        let config = match field {
            Field::PathPattern => "PathPatternConfig",
            Field::HostHeader => "HostHeaderConfig",
        };
        let mut values = members(params, &format!("{at}.Values"));
        values.extend(members(params, &format!("{at}.{config}.Values")));
        match field {
            Field::PathPattern => request.paths.extend(values),
            Field::HostHeader => request.hosts.extend(values),
        }
    }
    Ok(request)
}

/// The ARN of each target group by ID.
fn group_arns(ctx: &Context) -> Result<BTreeMap<String, String>, Failure> {
    let mut store = ctx.open_store()?;
    let groups = store
        .read(|tx| tx.list::<TargetGroup>())
        .map_err(|e| Failure::new(500, "InternalFailure", e.to_string()))?;
    Ok(groups.into_iter().map(|g| (g.id, g.arn)).collect())
}

/// `<Rules>` of the rules `wanted` takes (a listener and one of its
/// rules, or None for its default rule) of `balancers`, by priority.
fn rules_xml(
    ctx: &Context,
    x: &mut Xml,
    balancers: &[Tagged<LoadBalancer>],
    wanted: impl Fn(&Listener, Option<&Rule>) -> bool,
) -> Result<(), Failure> {
    let arns = group_arns(ctx)?;
    let group_arn = |id: &str| arns.get(id).map_or("", String::as_str).to_owned();
    x.open("Rules");
    for listener in balancers.iter().flat_map(|b| &b.item.listeners) {
        let mut rules: Vec<&Rule> = listener.rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        for rule in rules {
            if !wanted(listener, Some(rule)) {
                continue;
            }
            x.open("member")
                .leaf("RuleArn", &rule.arn)
                .leaf("Priority", &rule.priority.to_string())
                .open("Conditions");
            for condition in &rule.conditions {
                let config = match condition.field {
                    Field::PathPattern => "PathPatternConfig",
                    Field::HostHeader => "HostHeaderConfig",
                };
                x.open("member")
                    .leaf("Field", condition.field.as_str())
                    .open("Values");
                for value in &condition.values {
                    x.leaf("member", value);
                }
                x.close("Values").open(config).open("Values");
                for value in &condition.values {
                    x.leaf("member", value);
                }
                x.close("Values").close(config).close("member");
            }
            x.close("Conditions");
            forward_xml(x, "Actions", &group_arn(&rule.target_group_id));
            x.leaf("IsDefault", "false").close("member");
        }
        if wanted(listener, None) {
            x.open("member")
                .leaf("RuleArn", &listener.default_rule_arn())
                .leaf("Priority", "default")
                .open("Conditions")
                .close("Conditions");
            forward_xml(x, "Actions", &group_arn(&listener.target_group_id));
            x.leaf("IsDefault", "true").close("member");
        }
    }
    x.close("Rules");
    Ok(())
}

/// A list `name` of one forward action to target group `arn`.
fn forward_xml(x: &mut Xml, name: &str, arn: &str) {
    x.open(name)
        .open("member")
        .leaf("Type", "forward")
        .leaf("TargetGroupArn", arn)
        .leaf("Order", "1")
        .close("member")
        .close(name);
}

/// The ARNs of the load balancers using each target group.
fn users(ctx: &Context) -> Result<BTreeMap<String, Vec<String>>, Failure> {
    let mut store = ctx.open_store()?;
    let balancers = store
        .read(|tx| tx.list::<LoadBalancer>())
        .map_err(|e| Failure::new(500, "InternalFailure", e.to_string()))?;
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for balancer in balancers {
        for listener in &balancer.listeners {
            let arns = users.entry(listener.target_group_id.clone()).or_default();
            if !arns.contains(&balancer.arn) {
                arns.push(balancer.arn.clone());
            }
        }
    }
    Ok(users)
}

fn target_groups(
    ctx: &Context,
    x: &mut Xml,
    groups: &[Tagged<TargetGroup>],
) -> Result<(), Failure> {
    let users = users(ctx)?;
    x.open("TargetGroups");
    for group in groups {
        let g = &group.item;
        let check = &g.health_check;
        x.open("member")
            .leaf("TargetGroupArn", &g.arn)
            .leaf("TargetGroupName", &g.name)
            .leaf("Protocol", &g.protocol.to_string())
            .leaf("Port", &g.port.to_string())
            .leaf("VpcId", &g.vpc_id)
            .leaf(
                "HealthCheckProtocol",
                match check.protocol {
                    CheckProtocol::Tcp => "TCP",
                    CheckProtocol::Http => "HTTP",
                },
            )
            .leaf(
                "HealthCheckPort",
                &check
                    .port
                    .map_or_else(|| "traffic-port".to_owned(), |p| p.to_string()),
            )
            .leaf("HealthCheckEnabled", "true")
            .leaf(
                "HealthCheckIntervalSeconds",
                &check.interval_secs.to_string(),
            )
            .leaf("HealthCheckTimeoutSeconds", &check.timeout_secs.to_string())
            .leaf(
                "HealthyThresholdCount",
                &check.healthy_threshold.to_string(),
            )
            .leaf(
                "UnhealthyThresholdCount",
                &check.unhealthy_threshold.to_string(),
            );
        if let Some(path) = &check.path {
            x.leaf("HealthCheckPath", path);
        }
        x.open("LoadBalancerArns");
        for arn in users.get(&g.id).into_iter().flatten() {
            x.leaf("member", arn);
        }
        x.close("LoadBalancerArns")
            .leaf("TargetType", "instance")
            .leaf("IpAddressType", "ipv4")
            .close("member");
    }
    x.close("TargetGroups");
    Ok(())
}

fn load_balancers(
    ctx: &Context,
    x: &mut Xml,
    balancers: &[Tagged<LoadBalancer>],
) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let subnets = store
        .read(|tx| tx.list::<Subnet>())
        .map_err(|e| Failure::new(500, "InternalFailure", e.to_string()))?;
    x.open("LoadBalancers");
    for balancer in balancers {
        let b = &balancer.item;
        x.open("member")
            .leaf("LoadBalancerArn", &b.arn)
            .leaf("DNSName", &b.dns_name)
            .leaf("CreatedTime", &b.created)
            .leaf("LoadBalancerName", &b.name)
            .leaf(
                "Scheme",
                match b.scheme {
                    Scheme::Internal => "internal",
                    Scheme::InternetFacing => "internet-facing",
                },
            )
            .leaf("VpcId", &b.vpc_id)
            .open("State")
            .leaf("Code", "active")
            .close("State")
            .leaf("Type", b.balancer_type.as_str())
            .open("AvailabilityZones");
        for port in &b.ports {
            let zone = subnets
                .iter()
                .find(|s| s.id == port.subnet_id)
                .map_or("", |s| s.availability_zone.as_str());
            x.open("member")
                .leaf("ZoneName", zone)
                .leaf("SubnetId", &port.subnet_id)
                .open("LoadBalancerAddresses")
                .open("member");
            if let Some(public) = b.public_ip {
                x.leaf("IpAddress", &public.to_string());
            }
            x.leaf("PrivateIPv4Address", &port.private_ip.to_string())
                .close("member")
                .close("LoadBalancerAddresses")
                .close("member");
        }
        x.close("AvailabilityZones").open("SecurityGroups");
        for group in &b.security_groups {
            x.leaf("member", group);
        }
        x.close("SecurityGroups")
            .leaf("IpAddressType", "ipv4")
            .close("member");
    }
    x.close("LoadBalancers");
    Ok(())
}

fn listeners_xml(
    ctx: &Context,
    x: &mut Xml,
    listeners: &[(&Tagged<LoadBalancer>, &Listener)],
) -> Result<(), Failure> {
    let arns = group_arns(ctx)?;
    x.open("Listeners");
    for (balancer, listener) in listeners {
        let group_arn = arns
            .get(&listener.target_group_id)
            .map_or("", String::as_str);
        x.open("member")
            .leaf("ListenerArn", &listener.arn)
            .leaf("LoadBalancerArn", &balancer.item.arn)
            .leaf("Port", &listener.port.to_string())
            .leaf("Protocol", &listener.protocol.to_string());
        forward_xml(x, "DefaultActions", group_arn);
        x.close("member");
    }
    x.close("Listeners");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_what_the_core_api_finds() {
        assert_eq!(
            by_arn(
                "arn:aws:elasticloadbalancing:local-1:123456789012:targetgroup/web/0123456789abcdef"
            ),
            "web"
        );
        assert_eq!(
            by_arn(
                "arn:aws:elasticloadbalancing:local-1:123456789012:loadbalancer/net/front/0123456789abcdef"
            ),
            "front"
        );
        assert_eq!(
            by_arn(
                "arn:aws:elasticloadbalancing:local-1:123456789012:listener/net/front/0123456789abcdef/fedcba9876543210"
            ),
            "front"
        );
        assert_eq!(
            by_arn(
                "arn:aws:elasticloadbalancing:local-1:123456789012:listener-rule/app/front/0123456789abcdef/fedcba9876543210/00112233445566ff"
            ),
            "front"
        );
        assert_eq!(by_arn("tg-0123456789abcdef0"), "tg-0123456789abcdef0");
    }

    #[test]
    fn core_errors_become_elbv2_codes() {
        let e = |category, reason| ApiError {
            category,
            message: "m".into(),
            reason,
        };
        let not_found = |noun: &str| {
            failure(e(
                Category::NotFound,
                Some(Reason::NotFound { noun: noun.into() }),
            ))
            .code
        };
        assert_eq!(not_found("target group"), "TargetGroupNotFound");
        assert_eq!(not_found("load balancer"), "LoadBalancerNotFound");
        assert_eq!(
            failure(e(Category::Conflict, Some(Reason::InUse))).code,
            "ResourceInUse"
        );
        assert_eq!(
            failure(e(
                Category::Conflict,
                Some(Reason::NameTaken {
                    noun: "target group".into()
                })
            ))
            .code,
            "DuplicateTargetGroupName"
        );
        assert_eq!(failure(e(Category::Unauthorised, None)).status, 403);
        assert_eq!(
            failure(e(Category::InvalidInput, None)).code,
            "ValidationError"
        );
    }
}
