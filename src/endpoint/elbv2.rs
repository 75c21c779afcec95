//! ELBv2's Query API (version 2015-12-01) for network load balancers:
//! target groups, targets and their health, load balancers and
//! listeners, as botocore's `elbv2` model shapes them (`member` lists,
//! `<XResponse><XResult>`, ELBv2's error codes). Each operation is a core
//! action run by the daemon's executor, as the EC2 endpoint's are, after
//! `authorize` allows `elasticloadbalancing:ACTION` (on `*`: policies
//! name ELBv2 resources by ARN, which this does not match yet).

use std::collections::BTreeMap;

use super::iam::{Failure, Params, Xml};
use super::{Reply, Service, members, missing, need, number, tags, unexpected};
use crate::cloud::api::{Action, ApiError, Category, Reason, Response, Tagged};
use crate::cloud::elb::load_balancer::{LoadBalancer, Scheme};
use crate::cloud::elb::target_group::HealthCheckRequest;
use crate::cloud::elb::target_group::{CheckProtocol, TargetGroup};
use crate::cloud::elb::{BalancerRequest, TargetGroupRequest, TargetRef};
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
        (Category::NotFound, _) if e.message.contains("listener") => "ListenerNotFound",
        (Category::NotFound, _) => "InvalidTarget",
        (Category::Conflict, _) if e.message.contains("already has a listener") => {
            "DuplicateListener"
        }
        (Category::LimitExceeded, _) => "TooManyLoadBalancers",
        _ => "ValidationError",
    };
    Failure::new(400, code, e.message)
}

/// The core API's reference of an ELBv2 ARN: the name it carries
/// (`targetgroup/NAME/HEX`, `loadbalancer/net/NAME/HEX`), names being
/// unique; anything else as it is.
fn by_arn(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    let parts: Vec<&str> = resource.split('/').collect();
    match parts.as_slice() {
        ["targetgroup", name, _] => (*name).to_owned(),
        ["loadbalancer", _, name, _] | ["listener", _, name, _, _] => (*name).to_owned(),
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
            if params.get("Type").is_some_and(|t| t != "network") {
                return Err(unsupported("load balancers of a type other than network"));
            }
            let scheme = params.get("Scheme").unwrap_or("internet-facing");
            let request = BalancerRequest {
                name: need(params, "Name")?,
                subnets: members(params, "Subnets"),
                security_groups: members(params, "SecurityGroups"),
                scheme: Scheme::parse(scheme)
                    .map_err(|e| Failure::new(400, "ValidationError", e.to_string()))?,
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
            if params
                .get("DefaultActions.member.1.Type")
                .is_some_and(|t| t != "forward")
            {
                return Err(unsupported("listener actions other than forward"));
            }
            let port: u16 = number(params, "Port")?.ok_or_else(|| missing("Port"))?;
            let made = balancers(Action::CreateListener {
                load_balancer: load_balancer()?,
                protocol: need(params, "Protocol")?,
                port,
                target_group: by_arn(&need(params, "DefaultActions.member.1.TargetGroupArn")?),
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
        format!("{what} are not supported by this endpoint (network load balancers only)"),
    )
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
            .leaf("Type", "network")
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
    listeners: &[(
        &Tagged<LoadBalancer>,
        &crate::cloud::elb::load_balancer::Listener,
    )],
) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let groups = store
        .read(|tx| tx.list::<TargetGroup>())
        .map_err(|e| Failure::new(500, "InternalFailure", e.to_string()))?;
    x.open("Listeners");
    for (balancer, listener) in listeners {
        let group_arn = groups
            .iter()
            .find(|g| g.id == listener.target_group_id)
            .map_or("", |g| g.arn.as_str());
        x.open("member")
            .leaf("ListenerArn", &listener.arn)
            .leaf("LoadBalancerArn", &balancer.item.arn)
            .leaf("Port", &listener.port.to_string())
            .leaf("Protocol", &listener.protocol.to_string())
            .open("DefaultActions")
            .open("member")
            .leaf("Type", "forward")
            .leaf("TargetGroupArn", group_arn)
            .close("member")
            .close("DefaultActions")
            .close("member");
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
