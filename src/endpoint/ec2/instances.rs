//! Instances: RunInstances, DescribeInstances, DescribeInstanceStatus,
//! Start/Stop/Reboot/TerminateInstances (answering each instance's
//! previous and current state), ModifyInstanceAttribute and
//! GetConsoleOutput, DescribeInstanceAttribute (userData) and
//! ModifyInstanceMetadataOptions. State codes are EC2's, so that `aws ec2 wait
//! instance-running` and `instance-stopped` work.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::cloud::api::{Action, Response, Tagged};
use crate::cloud::cpu_options::CpuOptions;
use crate::cloud::ids::Kind;
use crate::cloud::instance::{Instance, ShutdownBehavior, State};
use crate::cloud::instance_type::LimitOverrides;
use crate::cloud::launch::{LaunchNetwork, LaunchRequest};
use crate::cloud::launch_count::LaunchCount;
use crate::cloud::metadata_options::{MetadataChange, MetadataOptions};
use crate::cloud::user_data::UserData;
use crate::cloud::vpc::port::{PlacementRequest, PortChange};

use super::super::error::{DID_NOT_START, Ec2Error};
use super::super::params::Params;
use super::super::xml::Xml;
use super::{Call, Filters, Operation, Target, derived_id, done, named};

const INSTANCE: Target = named(Kind::Instance, "InstanceId");
const INSTANCES: Target = Target::Each {
    kind: Kind::Instance,
    list: "InstanceId",
};

/// Seconds a guest gets to shut down before its VMM is killed (the
/// CLI's default `--timeout`).
const SHUTDOWN_SECS: u64 = 30;

pub const OPERATIONS: &[Operation] = &[
    Operation::new("RunInstances", named(Kind::Image, "ImageId"), run),
    Operation::new("DescribeInstances", Target::Any, describe),
    Operation::new("DescribeInstanceStatus", Target::Any, status),
    Operation::new("StartInstances", INSTANCES, start),
    Operation::new("StopInstances", INSTANCES, stop),
    Operation::new("RebootInstances", INSTANCES, reboot),
    Operation::new("TerminateInstances", INSTANCES, terminate),
    Operation::new("ModifyInstanceAttribute", INSTANCE, modify),
    Operation::new("GetConsoleOutput", INSTANCE, console_output),
    Operation::new("DescribeInstanceAttribute", INSTANCE, attribute),
    Operation::new(
        "ModifyInstanceMetadataOptions",
        INSTANCE,
        modify_metadata_options,
    ),
    Operation::new("ModifyInstanceCpuOptions", INSTANCE, modify_cpu_options),
];

/// The base64 user data of parameter `name`, if given.
pub(super) fn user_data(p: &Params, name: &str) -> Result<Option<UserData>, Ec2Error> {
    p.get(name)
        .map(|text| UserData::from_base64(text, name))
        .transpose()
        .map_err(|e| Ec2Error::client("InvalidParameterValue", e.to_string()))
}

/// The metadata options among `p` (`HttpTokens`, ...), as EC2 names them.
pub(super) fn metadata_change(p: &Params) -> Result<MetadataChange, Ec2Error> {
    let mut change = MetadataChange::default();
    for key in [
        "HttpTokens",
        "HttpPutResponseHopLimit",
        "HttpEndpoint",
        "InstanceMetadataTags",
    ] {
        if let Some(value) = p.get(key) {
            change
                .set(key, value)
                .map_err(|e| Ec2Error::client("InvalidParameterValue", e.to_string()))?;
        }
    }
    Ok(change)
}

/// EC2's `InstanceMetadataOptionsResponse`: the options, applied at once.
fn write_metadata_options(x: &mut Xml, tag: &str, o: &MetadataOptions) {
    x.node(tag, |x| {
        x.leaf("state", "applied")
            .leaf("httpTokens", o.http_tokens.as_str())
            .leaf("httpPutResponseHopLimit", o.http_put_response_hop_limit)
            .leaf("httpEndpoint", o.http_endpoint.as_str())
            .leaf("httpProtocolIpv6", "disabled")
            .leaf("instanceMetadataTags", o.instance_metadata_tags.as_str());
    });
}

/// EC2's code of a state (the low byte of `instanceState.code`).
fn state_code(state: State) -> u8 {
    match state {
        State::Pending => 0,
        State::Running => 16,
        State::ShuttingDown => 32,
        State::Terminated => 48,
        State::Stopping => 64,
        State::Stopped => 80,
    }
}

fn write_state(x: &mut Xml, tag: &str, state: State) {
    x.node(tag, |x| {
        x.leaf("code", state_code(state)).leaf("name", state);
    });
}

/// The `CpuOptions` among `p`, if given: only NestedVirtualization is
/// gureum's (cores and threads follow the type).
pub(super) fn cpu_options(p: &Params) -> Result<Option<CpuOptions>, Ec2Error> {
    p.get("NestedVirtualization")
        .map(|word| {
            CpuOptions::parse(&format!("NestedVirtualization={word}"))
                .map_err(|e| Ec2Error::client("InvalidParameterValue", e.to_string()))
        })
        .transpose()
}

/// `InstanceInitiatedShutdownBehavior` among `p`, if given.
pub(super) fn shutdown_behavior(p: &Params) -> Result<Option<ShutdownBehavior>, Ec2Error> {
    p.get("InstanceInitiatedShutdownBehavior")
        .map(ShutdownBehavior::parse)
        .transpose()
        .map_err(|e| Ec2Error::client("InvalidParameterValue", e))
}

fn run(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let count =
        |name| -> Result<u32, Ec2Error> { p.int(name)?.ok_or_else(|| Ec2Error::missing(name)) };
    let (min, max) = (count("MinCount")?, count("MaxCount")?);
    if min == 0 || min > max {
        return Err(Ec2Error::client(
            "InvalidParameterValue",
            format!("MinCount ({min}) must be at least 1 and at most MaxCount ({max})"),
        ));
    }
    let template = p.nested("LaunchTemplate");
    // The primary interface may carry the network instead (the aws CLI's
    // --associate-public-ip-address puts it there); no other is made.
    let interfaces = p.members("NetworkInterface");
    if interfaces
        .iter()
        .any(|n| n.get("DeviceIndex").is_some_and(|i| i != "0"))
        || interfaces.len() > 1
    {
        return Err(Ec2Error::unsupported(
            "network interfaces other than the primary one (DeviceIndex 0)",
        ));
    }
    let primary = interfaces.into_iter().next().unwrap_or_default();
    let mut groups = p.list("SecurityGroupId");
    groups.extend(p.list("SecurityGroup"));
    groups.extend(primary.list("SecurityGroupId"));
    let private_ip = match p.parsed("PrivateIpAddress", "an IPv4 address")? {
        Some(address) => Some(address),
        None => primary.parsed("PrivateIpAddress", "an IPv4 address")?,
    };
    let request = LaunchRequest {
        image: p.get("ImageId").map(str::to_owned),
        instance_type: p.get("InstanceType").map(str::to_owned),
        key: p.get("KeyName").map(str::to_owned),
        template: template
            .get("LaunchTemplateId")
            .or(template.get("LaunchTemplateName"))
            .map(str::to_owned),
        cmdline_append: None,
        // No SubnetId: the default VPC's default subnet, as EC2's.
        network: LaunchNetwork::Vpc(PlacementRequest {
            subnet: p
                .get("SubnetId")
                .or(primary.get("SubnetId"))
                .map(str::to_owned),
            groups,
            private_ip,
            source_dest_check: true,
            associate_public_ip: primary.bool("AssociatePublicIpAddress")?,
        }),
        tags: call.tag_spec("instance")?,
        count: LaunchCount { min, max },
        client_token: p.get("ClientToken").map(str::to_owned),
        // EC2 has no per-instance rate limits: the type's hold.
        limits: LimitOverrides::default(),
        cpu_options: cpu_options(&p.nested("CpuOptions"))?,
        shutdown_behavior: shutdown_behavior(p)?,
        // A request here has no process to be tied to.
        terminate_with: None,
        user_data: user_data(p, "UserData")?,
        metadata_options: metadata_change(&p.nested("MetadataOptions"))?,
        auto_scaling_group: None,
    };
    let Response::Launched { instances, .. } = call.run(Action::RunInstances {
        request: Box::new(request),
    })?
    else {
        return Err(super::unexpected());
    };
    // A VMM that failed at once leaves its instance stopped with a reason,
    // which DescribeInstances shows, as EC2 shows a failed launch.
    let mut x = Xml::new();
    reservation(&mut x, &instances, call.account);
    Ok(x)
}

/// The reservation of `instances`: its ID made from the first one's.
fn reservation(x: &mut Xml, instances: &[Tagged<Instance>], account: &str) {
    let first = instances.first().map_or("", |i| i.item.id.as_str());
    x.leaf("reservationId", derived_id("r", first))
        .leaf("ownerId", account)
        .node("groupSet", |_| {})
        .list("instancesSet", instances.iter().enumerate(), |x, (n, i)| {
            write(x, i, n);
        });
}

fn write(x: &mut Xml, t: &Tagged<Instance>, launch_index: usize) {
    let i = &t.item;
    let place = i.placement.as_ref();
    x.leaf("instanceId", &i.id).leaf("imageId", &i.image_id);
    write_state(x, "instanceState", i.state);
    x.leaf("privateDnsName", "")
        .leaf("dnsName", "")
        .leaf("reason", i.state_reason.as_deref().unwrap_or(""))
        .opt("keyName", i.key_name.as_ref())
        .leaf("amiLaunchIndex", launch_index)
        .node("productCodes", |_| {})
        .leaf("instanceType", &i.instance_type)
        .leaf("launchTime", &i.launch_time)
        .node("placement", |x| {
            x.leaf("availabilityZone", &i.availability_zone)
                .leaf("tenancy", "default");
        })
        .node("monitoring", |x| {
            x.leaf("state", "disabled");
        })
        .opt("subnetId", place.map(|p| &p.subnet_id))
        .opt("vpcId", place.map(|p| &p.vpc_id))
        .opt("privateIpAddress", place.map(|p| p.private_ip))
        .opt("ipAddress", place.and_then(|p| p.public_address()))
        .opt("sourceDestCheck", place.map(|p| p.source_dest_check))
        .list(
            "groupSet",
            place.map(|p| p.security_groups.as_slice()).unwrap_or(&[]),
            |x, g| {
                x.leaf("groupId", g);
            },
        );
    if let Some(reason) = &i.state_reason {
        let (code, message) = reason.split_once(": ").unwrap_or((reason, reason));
        x.node("stateReason", |x| {
            x.leaf("code", code).leaf("message", message);
        });
    }
    x.leaf("architecture", "x86_64")
        .leaf("rootDeviceType", "ebs")
        .leaf("rootDeviceName", "/dev/vda")
        .leaf("virtualizationType", "hvm")
        .opt("clientToken", i.client_token.as_ref())
        .tags(&t.tags)
        .node("cpuOptions", |x| {
            x.leaf("coreCount", i.vcpus).leaf("threadsPerCore", 1).leaf(
                "nestedVirtualization",
                i.cpu_options.nested_virtualization_word(),
            );
        });
    write_metadata_options(x, "metadataOptions", &i.metadata_options);
}

fn field(i: &Instance, name: &str) -> Option<Vec<String>> {
    let place = i.placement.as_ref();
    let one = |v: Option<String>| v.into_iter().collect::<Vec<_>>();
    Some(match name {
        "instance-id" => vec![i.id.clone()],
        "instance-state-name" => vec![i.state.to_string()],
        "instance-state-code" => vec![state_code(i.state).to_string()],
        "instance-type" => vec![i.instance_type.clone()],
        "image-id" => vec![i.image_id.clone()],
        "key-name" => one(i.key_name.clone()),
        "availability-zone" => vec![i.availability_zone.clone()],
        "vpc-id" => one(place.map(|p| p.vpc_id.clone())),
        "subnet-id" => one(place.map(|p| p.subnet_id.clone())),
        "private-ip-address" => one(place.map(|p| p.private_ip.to_string())),
        "ip-address" => one(place
            .and_then(|p| p.public_address())
            .map(|a| a.to_string())),
        "instance.group-id" | "group-id" => {
            place.map(|p| p.security_groups.clone()).unwrap_or_default()
        }
        "client-token" => one(i.client_token.clone()),
        _ => return None,
    })
}

/// The instances `InstanceId.N` names (every one if none), filtered.
fn chosen(call: &Call<'_>) -> Result<Vec<Tagged<Instance>>, Ec2Error> {
    let instances = call.records::<Instance>(Action::DescribeInstances {
        instances: call.params.list("InstanceId"),
    })?;
    Filters::of(call.params).keep(instances, field)
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let (instances, next) = super::page(call.params, chosen(call)?)?;
    let mut x = Xml::new();
    x.list("reservationSet", &instances, |x, i| {
        reservation(x, std::slice::from_ref(i), call.account);
    })
    .opt("nextToken", next);
    Ok(x)
}

fn status(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let all = call.params.bool("IncludeAllInstances")? == Some(true);
    let mut instances = chosen(call)?;
    if !all {
        instances.retain(|i| i.item.state == State::Running);
    }
    let (instances, next) = super::page(call.params, instances)?;
    let mut x = Xml::new();
    x.list("instanceStatusSet", &instances, |x, t| {
        let i = &t.item;
        let health = if i.state == State::Running {
            "ok"
        } else {
            "not-applicable"
        };
        x.leaf("instanceId", &i.id)
            .leaf("availabilityZone", &i.availability_zone);
        write_state(x, "instanceState", i.state);
        for tag in ["systemStatus", "instanceStatus"] {
            x.node(tag, |x| {
                x.leaf("status", health).node("details", |_| {});
            });
        }
    })
    .opt("nextToken", next);
    Ok(x)
}

/// Runs `action` on the named instances and answers each one's state
/// before and after.
fn change(
    call: &Call<'_>,
    tag: &str,
    action: impl FnOnce(Vec<String>) -> Action,
) -> Result<Xml, Ec2Error> {
    let ids = call.params.list("InstanceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId"));
    }
    let before = call.records::<Instance>(Action::DescribeInstances {
        instances: ids.clone(),
    })?;
    let after = match call.records::<Instance>(action(ids.clone())) {
        // As EC2 answers a start the host then fails: the instance is
        // stopped again, and DescribeInstances says why.
        Err(e) if e.code == DID_NOT_START => {
            call.records::<Instance>(Action::DescribeInstances { instances: ids })?
        }
        result => result?,
    };
    let mut x = Xml::new();
    x.list(tag, after.iter().zip(&before), |x, (now, was)| {
        x.leaf("instanceId", &now.item.id);
        write_state(x, "currentState", now.item.state);
        write_state(x, "previousState", was.item.state);
    });
    Ok(x)
}

fn start(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    change(call, "instancesSet", |instances| Action::StartInstances {
        instances,
    })
}

fn stop(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let force = call.params.bool("Force")? == Some(true);
    change(call, "instancesSet", |instances| Action::StopInstances {
        instances,
        force,
        timeout_secs: SHUTDOWN_SECS,
    })
}

fn terminate(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    change(call, "instancesSet", |instances| {
        Action::TerminateInstances {
            instances,
            timeout_secs: SHUTDOWN_SECS,
        }
    })
}

fn reboot(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let instances = call.params.list("InstanceId");
    if instances.is_empty() {
        return Err(Ec2Error::missing("InstanceId"));
    }
    call.run(Action::RebootInstances {
        instances,
        timeout_secs: SHUTDOWN_SECS,
    })?;
    done()
}

fn modify(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let groups = p.list("GroupId");
    let change = PortChange {
        groups: (!groups.is_empty()).then_some(groups),
        source_dest_check: p.bool("SourceDestCheck.Value")?,
    };
    if change.groups.is_none() && change.source_dest_check.is_none() {
        return Err(Ec2Error::unsupported(
            "changing instance attributes other than groups and SourceDestCheck",
        ));
    }
    call.run(Action::ModifyInstance {
        instance: p.required("InstanceId")?.to_owned(),
        change,
    })?;
    done()
}

/// The last 64 KiB the console printed, base64 (as EC2 gives it).
fn console_output(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    const TAIL: usize = 64 * 1024;
    let instance = call.params.required("InstanceId")?.to_owned();
    let Response::ConsoleLog { instance, log } = call.run(Action::GetConsoleLog { instance })?
    else {
        return Err(super::unexpected());
    };
    let log = log.unwrap_or_default();
    let bytes = log.as_bytes();
    let tail = bytes
        .get(bytes.len().saturating_sub(TAIL)..)
        .unwrap_or(bytes);
    let mut x = Xml::new();
    x.leaf("instanceId", instance)
        .leaf("timestamp", crate::cloud::time::now())
        .leaf("output", BASE64.encode(tail));
    Ok(x)
}

/// DescribeInstanceAttribute, for the attribute gureum keeps apart from
/// DescribeInstances: userData (base64, absent when none, as EC2 answers).
fn attribute(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let name = p.required("Attribute")?;
    if !matches!(name, "userData" | "instanceInitiatedShutdownBehavior") {
        return Err(Ec2Error::unsupported(&format!(
            "DescribeInstanceAttribute of {name} (userData and \
             instanceInitiatedShutdownBehavior are; DescribeInstances shows the rest)"
        )));
    }
    let instance = call.one::<Instance>(Action::DescribeInstances {
        instances: vec![p.required("InstanceId")?.to_owned()],
    })?;
    let i = &instance.item;
    let mut x = Xml::new();
    x.leaf("instanceId", &i.id).node(name, |x| match name {
        "userData" => {
            if let Some(data) = &i.user_data {
                x.leaf("value", data.to_base64());
            }
        }
        _ => {
            x.leaf("value", i.shutdown_behavior.as_str());
        }
    });
    Ok(x)
}

fn modify_metadata_options(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let instance = call.one::<Instance>(Action::ModifyInstanceMetadataOptions {
        instance: p.required("InstanceId")?.to_owned(),
        change: metadata_change(p)?,
    })?;
    let mut x = Xml::new();
    x.leaf("instanceId", &instance.item.id);
    write_metadata_options(
        &mut x,
        "instanceMetadataOptions",
        &instance.item.metadata_options,
    );
    Ok(x)
}

/// Only NestedVirtualization is gureum's: cores and threads follow the
/// type, so CoreCount and ThreadsPerCore are refused.
fn modify_cpu_options(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    for fixed in ["CoreCount", "ThreadsPerCore"] {
        if p.get(fixed).is_some() {
            return Err(Ec2Error::client(
                "InvalidParameterValue",
                format!(
                    "{fixed} follows the instance type here; only NestedVirtualization changes"
                ),
            ));
        }
    }
    let instance = call.one::<Instance>(Action::ModifyInstanceCpuOptions {
        instance: p.required("InstanceId")?.to_owned(),
        cpu_options: cpu_options(p)?.ok_or_else(|| Ec2Error::missing("NestedVirtualization"))?,
    })?;
    let i = &instance.item;
    let mut x = Xml::new();
    x.leaf("instanceId", &i.id)
        .leaf("coreCount", i.vcpus)
        .leaf("threadsPerCore", 1)
        .leaf(
            "nestedVirtualization",
            i.cpu_options.nested_virtualization_word(),
        );
    Ok(x)
}
