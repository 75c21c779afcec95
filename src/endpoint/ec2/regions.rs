//! DescribeRegions, DescribeAvailabilityZones, DescribeInstanceTypes: one
//! host is one region (the one the request is signed for) with one zone.

use crate::cloud::api::{Action, Response};
use crate::cloud::instance_type::InstanceType;
use crate::cloud::vpc::subnet;

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target};

pub const OPERATIONS: &[Operation] = &[
    Operation::new("DescribeRegions", Target::Any, regions),
    Operation::new("DescribeAvailabilityZones", Target::Any, zones),
    Operation::new("DescribeInstanceTypes", Target::Any, instance_types),
];

fn regions(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let mut x = Xml::new();
    x.list("regionInfo", [call.region], |x, r| {
        x.leaf("regionName", r)
            .leaf("regionEndpoint", "localhost")
            .leaf("optInStatus", "opt-in-not-required");
    });
    Ok(x)
}

fn zones(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let mut x = Xml::new();
    x.list("availabilityZoneInfo", [subnet::DEFAULT_ZONE], |x, z| {
        x.leaf("zoneName", z)
            .leaf("zoneId", z)
            .leaf("zoneState", "available")
            .leaf("regionName", call.region)
            .leaf("zoneType", "availability-zone")
            .leaf("optInStatus", "opt-in-not-required")
            .node("messageSet", |_| {});
    });
    Ok(x)
}

fn instance_types(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let Response::InstanceTypes(mut types) = call.run(Action::ListInstanceTypes)? else {
        return Err(super::unexpected());
    };
    let wanted = call.params.list("InstanceType");
    if !wanted.is_empty() {
        if let Some(unknown) = wanted.iter().find(|w| !types.iter().any(|t| &t.name == *w)) {
            return Err(Ec2Error::client(
                "InvalidInstanceType",
                format!("The following supplied instance types do not exist: [{unknown}]"),
            ));
        }
        types.retain(|t| wanted.contains(&t.name));
    }
    let (types, next) = super::page(call.params, types)?;
    let mut x = Xml::new();
    x.list("instanceTypeSet", &types, write)
        .opt("nextToken", next);
    Ok(x)
}

fn write(x: &mut Xml, t: &InstanceType) {
    x.leaf("instanceType", &t.name)
        .leaf("currentGeneration", true)
        .leaf("hypervisor", "nitro")
        .node("processorInfo", |x| {
            x.node("supportedArchitectures", |x| {
                x.leaf("item", "x86_64");
            });
        })
        .node("vCpuInfo", |x| {
            x.leaf("defaultVCpus", t.vcpus);
        })
        .node("memoryInfo", |x| {
            x.leaf("sizeInMiB", t.memory_mib);
        });
}
