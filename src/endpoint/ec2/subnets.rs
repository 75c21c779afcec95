//! CreateSubnet, DeleteSubnet, DescribeSubnets, ModifySubnetAttribute
//! (MapPublicIpOnLaunch).

use crate::cloud::api::{Action, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::vpc::subnet::Subnet;

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target, done, named};

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateSubnet", named(Kind::Vpc, "VpcId"), create),
    Operation::new("DeleteSubnet", named(Kind::Subnet, "SubnetId"), delete),
    Operation::new("DescribeSubnets", Target::Any, describe),
    Operation::new(
        "ModifySubnetAttribute",
        named(Kind::Subnet, "SubnetId"),
        modify,
    ),
];

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let cidr = p.required("CidrBlock")?;
    let cidr = cidr
        .parse()
        .map_err(|e| Ec2Error::client("InvalidParameterValue", format!("{e}")))?;
    let subnet = call.one::<Subnet>(Action::CreateSubnet {
        vpc: p.required("VpcId")?.to_owned(),
        cidr,
        zone: p.get("AvailabilityZone").map(str::to_owned),
        tags: call.tag_spec("subnet")?,
    })?;
    let mut x = Xml::new();
    x.node("subnet", |x| write(x, &subnet, call));
    Ok(x)
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let subnet = call.params.required("SubnetId")?.to_owned();
    call.run(Action::DeleteSubnet { subnet })?;
    done()
}

/// Only MapPublicIpOnLaunch is gureum's to change.
fn modify(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let Some(on) = p.bool("MapPublicIpOnLaunch.Value")? else {
        return Err(Ec2Error::unsupported(
            "changing subnet attributes other than MapPublicIpOnLaunch",
        ));
    };
    call.run(Action::SetMapPublicIpOnLaunch {
        subnet: p.required("SubnetId")?.to_owned(),
        on,
    })?;
    done()
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let subnets = call.describe(
        "SubnetId",
        Action::ListSubnets { filters: vec![] },
        |subnet| Action::DescribeSubnet { subnet },
        field,
    )?;
    let mut x = Xml::new();
    x.list("subnetSet", &subnets, |x, s| write(x, s, call));
    Ok(x)
}

fn field(s: &Subnet, name: &str) -> Option<Vec<String>> {
    Some(vec![match name {
        "subnet-id" => s.id.clone(),
        "vpc-id" => s.vpc_id.clone(),
        "cidr-block" | "cidr" | "cidrBlock" => s.cidr.to_string(),
        "availability-zone" | "availabilityZone" => s.availability_zone.clone(),
        "state" => "available".into(),
        "default-for-az" | "defaultForAz" => s.default_for_az.to_string(),
        "map-public-ip-on-launch" => s.map_public_ip_on_launch.to_string(),
        _ => return None,
    }])
}

fn write(x: &mut Xml, s: &Tagged<Subnet>, call: &Call<'_>) {
    let subnet = &s.item;
    x.leaf("subnetId", &subnet.id)
        .leaf(
            "subnetArn",
            format!(
                "arn:aws:ec2:{}:{}:subnet/{}",
                call.region, call.account, subnet.id
            ),
        )
        .leaf("state", "available")
        .leaf("ownerId", call.account)
        .leaf("vpcId", &subnet.vpc_id)
        .leaf("cidrBlock", subnet.cidr)
        .leaf("availableIpAddressCount", subnet.capacity)
        .leaf("availabilityZone", &subnet.availability_zone)
        .leaf("defaultForAz", subnet.default_for_az)
        .leaf("mapPublicIpOnLaunch", subnet.map_public_ip_on_launch)
        .tags(&s.tags);
}
