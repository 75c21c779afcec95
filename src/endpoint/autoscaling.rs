//! EC2 Auto Scaling's Query API (version 2011-01-01): groups from launch
//! templates, their capacity, instances and scale-in protection, and
//! their target groups, as botocore's `autoscaling` model shapes them
//! (`member` lists, `<XResponse><XResult>`, Auto Scaling's error codes:
//! an unknown group is a ValidationError, as AWS's). Each operation is a
//! core action run by the daemon's executor after `authorize` allows
//! `autoscaling:ACTION`.

use super::iam::{Failure, Params, Xml};
use super::{Reply, Service, members, missing, need, number, tags, unexpected};
use crate::cloud::api::{Action, ApiError, Category, Reason, Response, Tagged};
use crate::cloud::autoscaling::group::AutoScalingGroup;
use crate::cloud::autoscaling::{GroupRequest, GroupUpdate};
use crate::cloud::elb::target_group::TargetGroup;
use crate::cloud::iam::{AuthError, Caller};
use crate::cloud::instance::{Instance, State};
use crate::cloud::lifecycle::Context;
use crate::cloud::vpc::subnet::Subnet;
use crate::daemon::Executor;

const NAMESPACE: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

/// What a terminated instance's guest gets to shut down.
const TERMINATE_TIMEOUT_SECS: u64 = 30;

/// Auto Scaling's answer to a request that failed authentication.
pub fn refused(e: &AuthError, request_id: &str) -> Reply {
    Failure::from(e).reply(NAMESPACE, request_id)
}

/// Answers the Auto Scaling request `params` from `caller`.
pub fn handle(
    ctx: &Context,
    executor: &Executor,
    caller: &Caller,
    params: &[(String, String)],
    request_id: &str,
) -> Reply {
    let service = Service {
        name: "autoscaling",
        namespace: NAMESPACE,
        failure,
    };
    service.handle(ctx, caller, params, request_id, |params, action| {
        run(ctx, executor, params, action)
    })
}

/// Auto Scaling's error for a failed core action.
fn failure(e: ApiError) -> Failure {
    let code = match (&e.category, &e.reason) {
        (Category::Unauthorised, _) => return Failure::new(403, "AccessDenied", e.message),
        (Category::Internal, _) => return Failure::new(500, "InternalFailure", e.message),
        (_, Some(Reason::NameTaken { .. })) => "AlreadyExists",
        (_, Some(Reason::InUse)) => "ResourceInUse",
        (Category::LimitExceeded, _) => "LimitExceeded",
        _ => "ValidationError",
    };
    Failure::new(400, code, e.message)
}

fn unsupported(what: &str) -> Failure {
    Failure::new(
        400,
        "ValidationError",
        format!("{what} are not supported by this endpoint (launch templates only)"),
    )
}

/// `VPCZoneIdentifier`: subnet IDs separated by commas.
fn subnets(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn run(
    ctx: &Context,
    executor: &Executor,
    params: &Params<'_>,
    name: &str,
) -> Result<Option<Xml>, Failure> {
    let call = |action: Action| executor.run(action).map_err(failure);
    let groups = |action: Action| match call(action)? {
        Response::AutoScalingGroups(items) => Ok(items),
        _ => Err(unexpected()),
    };
    let group = || need(params, "AutoScalingGroupName");
    let template = || {
        params
            .get("LaunchTemplate.LaunchTemplateId")
            .or(params.get("LaunchTemplate.LaunchTemplateName"))
            .map(str::to_owned)
    };
    let mut x = Xml::default();
    match name {
        "CreateAutoScalingGroup" => {
            if params.get("LaunchConfigurationName").is_some()
                || params.get("InstanceId").is_some()
                || params.get("MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId").is_some()
            {
                return Err(unsupported(
                    "launch configurations, instances and mixed instances policies",
                ));
            }
            let request = GroupRequest {
                name: group()?,
                launch_template: template().ok_or_else(|| missing("LaunchTemplate"))?,
                launch_template_version: params.get("LaunchTemplate.Version").map(str::to_owned),
                subnets: subnets(&need(params, "VPCZoneIdentifier")?),
                min_size: number(params, "MinSize")?.ok_or_else(|| missing("MinSize"))?,
                max_size: number(params, "MaxSize")?.ok_or_else(|| missing("MaxSize"))?,
                desired_capacity: number(params, "DesiredCapacity")?,
                target_groups: members(params, "TargetGroupARNs"),
                health_check_type: params.get("HealthCheckType").map(str::to_owned),
                health_check_grace_secs: number(params, "HealthCheckGracePeriod")?,
                new_instances_protected: number(params, "NewInstancesProtectedFromScaleIn")?
                    .unwrap_or(false),
                tags: tags(params),
            };
            groups(Action::CreateAutoScalingGroup { request })?;
            return Ok(None);
        }
        "DescribeAutoScalingGroups" => {
            let wanted = members(params, "AutoScalingGroupNames");
            let mut found = groups(Action::ListAutoScalingGroups {
                filters: Vec::new(),
            })?;
            if !wanted.is_empty() {
                found.retain(|g| wanted.contains(&g.item.name));
            }
            groups_xml(ctx, &mut x, &found)?;
        }
        "UpdateAutoScalingGroup" => {
            let change = GroupUpdate {
                launch_template: template(),
                launch_template_version: params.get("LaunchTemplate.Version").map(str::to_owned),
                subnets: params.get("VPCZoneIdentifier").map(subnets),
                min_size: number(params, "MinSize")?,
                max_size: number(params, "MaxSize")?,
                desired_capacity: number(params, "DesiredCapacity")?,
                health_check_type: params.get("HealthCheckType").map(str::to_owned),
                health_check_grace_secs: number(params, "HealthCheckGracePeriod")?,
                new_instances_protected: number(params, "NewInstancesProtectedFromScaleIn")?,
            };
            groups(Action::UpdateAutoScalingGroup {
                group: group()?,
                change,
            })?;
            return Ok(None);
        }
        "SetDesiredCapacity" => {
            groups(Action::SetDesiredCapacity {
                group: group()?,
                desired: number(params, "DesiredCapacity")?
                    .ok_or_else(|| missing("DesiredCapacity"))?,
            })?;
            return Ok(None);
        }
        "SetInstanceProtection" => {
            groups(Action::SetInstanceProtection {
                group: group()?,
                instances: members(params, "InstanceIds"),
                protected: number(params, "ProtectedFromScaleIn")?
                    .ok_or_else(|| missing("ProtectedFromScaleIn"))?,
            })?;
        }
        "DescribeAutoScalingInstances" => {
            let wanted = members(params, "InstanceIds");
            let found = groups(Action::ListAutoScalingGroups {
                filters: Vec::new(),
            })?;
            let instances = instances(ctx)?;
            x.open("AutoScalingInstances");
            for group in &found {
                for member in &group.item.instances {
                    if !wanted.is_empty() && !wanted.contains(&member.instance_id) {
                        continue;
                    }
                    let instance = instances.iter().find(|i| i.id == member.instance_id);
                    x.open("member")
                        .leaf("AutoScalingGroupName", &group.item.name);
                    instance_xml(&mut x, &group.item, member, instance);
                    x.close("member");
                }
            }
            x.close("AutoScalingInstances");
        }
        "TerminateInstanceInAutoScalingGroup" => {
            let instance = need(params, "InstanceId")?;
            let decrement: bool = number(params, "ShouldDecrementDesiredCapacity")?
                .ok_or_else(|| missing("ShouldDecrementDesiredCapacity"))?;
            let group = groups(Action::ListAutoScalingGroups {
                filters: Vec::new(),
            })?
            .into_iter()
            .find(|g| g.item.member(&instance).is_some());
            match call(Action::TerminateInstanceInAutoScalingGroup {
                instance: instance.clone(),
                decrement,
                timeout_secs: TERMINATE_TIMEOUT_SECS,
            })? {
                Response::Instances(_) => {}
                _ => return Err(unexpected()),
            }
            let name = group.map(|g| g.item.name).unwrap_or_default();
            let cause = if decrement {
                "an instance was taken out of service in response to a user request, shrinking \
                 the capacity"
            } else {
                "an instance was taken out of service in response to a user request"
            };
            x.open("Activity")
                .leaf("ActivityId", &super::request_id())
                .leaf("AutoScalingGroupName", &name)
                .leaf(
                    "Description",
                    &format!("Terminating EC2 instance: {instance}"),
                )
                .leaf("Cause", cause)
                .leaf("StartTime", &crate::cloud::time::now())
                .leaf("StatusCode", "InProgress")
                .leaf("Progress", "0")
                .close("Activity");
        }
        "AttachLoadBalancerTargetGroups" | "DetachLoadBalancerTargetGroups" => {
            let target_groups = members(params, "TargetGroupARNs");
            if target_groups.is_empty() {
                return Err(missing("TargetGroupARNs"));
            }
            groups(Action::ChangeAutoScalingTargetGroups {
                group: group()?,
                target_groups,
                attach: name == "AttachLoadBalancerTargetGroups",
            })?;
        }
        "DeleteAutoScalingGroup" => {
            groups(Action::DeleteAutoScalingGroup {
                group: group()?,
                force: number(params, "ForceDelete")?.unwrap_or(false),
                timeout_secs: TERMINATE_TIMEOUT_SECS,
            })?;
            return Ok(None);
        }
        "PutScalingPolicy" => {
            let config = "TargetTrackingConfiguration";
            let metric = params.get(&format!(
                "{config}.PredefinedMetricSpecification.PredefinedMetricType"
            ));
            if params.get("PolicyType") != Some("TargetTrackingScaling")
                || metric != Some("ASGAverageCPUUtilization")
            {
                return Err(Failure::new(
                    400,
                    "ValidationError",
                    "only target tracking (PolicyType TargetTrackingScaling) on \
                     ASGAverageCPUUtilization is supported by this endpoint",
                ));
            }
            let target: f64 = number(params, &format!("{config}.TargetValue"))?
                .ok_or_else(|| missing("TargetTrackingConfiguration.TargetValue"))?;
            if !(1.0..=100.0).contains(&target) {
                return Err(Failure::new(
                    400,
                    "ValidationError",
                    format!("a target CPU utilization is 1 to 100 per cent (got {target})"),
                ));
            }
            let name = need(params, "PolicyName")?;
            let made = groups(Action::PutScalingPolicy {
                group: group()?,
                name: name.clone(),
                // To the nearest whole per cent.
                target_cpu: (1..=100u16)
                    .find(|p| f64::from(*p) + 0.5 > target)
                    .unwrap_or(100),
                disable_scale_in: number(params, &format!("{config}.DisableScaleIn"))?
                    .unwrap_or(false),
            })?;
            let arn = made
                .iter()
                .flat_map(|g| &g.item.policies)
                .find(|p| p.name == name)
                .map(|p| p.arn.clone())
                .unwrap_or_default();
            x.leaf("PolicyARN", &arn).open("Alarms").close("Alarms");
        }
        "DescribePolicies" => {
            let names = members(params, "PolicyNames");
            let wanted = params.get("AutoScalingGroupName");
            let found = groups(Action::ListAutoScalingGroups {
                filters: Vec::new(),
            })?;
            x.open("ScalingPolicies");
            for g in found
                .iter()
                .filter(|g| wanted.is_none_or(|w| w == g.item.name))
            {
                for p in &g.item.policies {
                    if !names.is_empty() && !names.contains(&p.name) {
                        continue;
                    }
                    x.open("member")
                        .leaf("AutoScalingGroupName", &g.item.name)
                        .leaf("PolicyName", &p.name)
                        .leaf("PolicyARN", &p.arn)
                        .leaf("PolicyType", "TargetTrackingScaling")
                        .open("Alarms")
                        .close("Alarms")
                        .open("TargetTrackingConfiguration")
                        .open("PredefinedMetricSpecification")
                        .leaf("PredefinedMetricType", "ASGAverageCPUUtilization")
                        .close("PredefinedMetricSpecification")
                        .leaf("TargetValue", &p.target_cpu.to_string())
                        .leaf(
                            "DisableScaleIn",
                            if p.disable_scale_in { "true" } else { "false" },
                        )
                        .close("TargetTrackingConfiguration")
                        .leaf("Enabled", "true")
                        .close("member");
                }
            }
            x.close("ScalingPolicies");
        }
        "DeletePolicy" => {
            groups(Action::DeleteScalingPolicy {
                group: group()?,
                name: need(params, "PolicyName")?,
            })?;
            return Ok(None);
        }
        other => return Err(Failure::invalid_action(other)),
    }
    Ok(Some(x))
}

/// Every instance, for the members' types and states.
fn instances(ctx: &Context) -> Result<Vec<Instance>, Failure> {
    let mut store = ctx.open_store()?;
    store
        .read(|tx| tx.list::<Instance>())
        .map_err(|e| Failure::new(500, "InternalFailure", e.to_string()))
}

/// A member's fields after its group's name: its lifecycle state and
/// health as Auto Scaling names them from its state.
fn instance_xml(
    x: &mut Xml,
    group: &AutoScalingGroup,
    member: &crate::cloud::autoscaling::group::Member,
    instance: Option<&Instance>,
) {
    let state = instance.map_or(State::Terminated, |i| i.state);
    let (lifecycle, health) = match state {
        State::Pending => ("Pending", "Healthy"),
        State::Running => ("InService", "Healthy"),
        State::Stopping | State::Stopped => ("InService", "Unhealthy"),
        State::ShuttingDown | State::Terminated => ("Terminating", "Unhealthy"),
    };
    x.leaf("InstanceId", &member.instance_id);
    if let Some(instance) = instance {
        x.leaf("InstanceType", &instance.instance_type);
    }
    x.leaf("AvailabilityZone", &member.availability_zone)
        .leaf("LifecycleState", lifecycle)
        .leaf("HealthStatus", health);
    template_xml(x, group);
    x.leaf(
        "ProtectedFromScaleIn",
        if member.protected { "true" } else { "false" },
    );
}

fn template_xml(x: &mut Xml, group: &AutoScalingGroup) {
    x.open("LaunchTemplate")
        .leaf("LaunchTemplateId", &group.launch_template_id)
        .leaf("LaunchTemplateName", &group.launch_template_name)
        .leaf("Version", &group.launch_template_version)
        .close("LaunchTemplate");
}

fn groups_xml(
    ctx: &Context,
    x: &mut Xml,
    groups: &[Tagged<AutoScalingGroup>],
) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let (subnets, target_groups) = store
        .read(|tx| Ok::<_, crate::cloud::Error>((tx.list::<Subnet>()?, tx.list::<TargetGroup>()?)))
        .map_err(|e| Failure::new(500, "InternalFailure", e.to_string()))?;
    let instances = instances(ctx)?;
    x.open("AutoScalingGroups");
    for tagged in groups {
        let g = &tagged.item;
        x.open("member")
            .leaf("AutoScalingGroupName", &g.name)
            .leaf("AutoScalingGroupARN", &g.arn);
        template_xml(x, g);
        x.leaf("MinSize", &g.min_size.to_string())
            .leaf("MaxSize", &g.max_size.to_string())
            .leaf("DesiredCapacity", &g.desired_capacity.to_string())
            .leaf("DefaultCooldown", "300")
            .open("AvailabilityZones");
        let mut zones: Vec<&str> = Vec::new();
        for subnet in subnets.iter().filter(|s| g.subnets.contains(&s.id)) {
            if !zones.contains(&subnet.availability_zone.as_str()) {
                zones.push(&subnet.availability_zone);
            }
        }
        for zone in zones {
            x.leaf("member", zone);
        }
        x.close("AvailabilityZones")
            .open("LoadBalancerNames")
            .close("LoadBalancerNames")
            .open("TargetGroupARNs");
        for group in target_groups
            .iter()
            .filter(|t| g.target_groups.contains(&t.id))
        {
            x.leaf("member", &group.arn);
        }
        x.close("TargetGroupARNs")
            .leaf("HealthCheckType", &g.health_check_type.to_string())
            .leaf(
                "HealthCheckGracePeriod",
                &g.health_check_grace_secs.to_string(),
            )
            .open("Instances");
        for member in &g.instances {
            let instance = instances.iter().find(|i| i.id == member.instance_id);
            x.open("member");
            instance_xml(x, g, member, instance);
            x.close("member");
        }
        x.close("Instances")
            .leaf("CreatedTime", &g.created)
            .open("SuspendedProcesses")
            .close("SuspendedProcesses")
            .leaf("VPCZoneIdentifier", &g.subnets.join(","))
            .open("EnabledMetrics")
            .close("EnabledMetrics")
            .open("Tags");
        for (key, value) in &tagged.tags {
            x.open("member")
                .leaf("ResourceId", &g.name)
                .leaf("ResourceType", "auto-scaling-group")
                .leaf("Key", key)
                .leaf("Value", value)
                .leaf("PropagateAtLaunch", "false")
                .close("member");
        }
        x.close("Tags")
            .open("TerminationPolicies")
            .leaf("member", "Default")
            .close("TerminationPolicies")
            .leaf(
                "NewInstancesProtectedFromScaleIn",
                if g.new_instances_protected {
                    "true"
                } else {
                    "false"
                },
            )
            .close("member");
    }
    x.close("AutoScalingGroups");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_become_auto_scaling_codes() {
        let e = |category, reason| ApiError {
            category,
            message: "m".into(),
            reason,
        };
        let code = |category, reason| failure(e(category, reason)).code;
        assert_eq!(
            code(
                Category::Conflict,
                Some(Reason::NameTaken {
                    noun: "Auto Scaling group".into()
                })
            ),
            "AlreadyExists"
        );
        assert_eq!(
            code(Category::Conflict, Some(Reason::InUse)),
            "ResourceInUse"
        );
        assert_eq!(code(Category::LimitExceeded, None), "LimitExceeded");
        // An unknown group is a ValidationError, as AWS's.
        assert_eq!(
            code(
                Category::NotFound,
                Some(Reason::NotFound {
                    noun: "Auto Scaling group".into()
                })
            ),
            "ValidationError"
        );
        assert_eq!(failure(e(Category::Unauthorised, None)).status, 403);
    }

    #[test]
    fn zone_identifiers_are_comma_separated_subnets() {
        assert_eq!(subnets("subnet-a, subnet-b,"), ["subnet-a", "subnet-b"]);
        assert!(subnets("").is_empty());
    }
}
