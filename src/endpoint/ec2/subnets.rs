//! CreateSubnet, DeleteSubnet, DescribeSubnets.

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
        // No public address is assigned at launch, not even in the
        // default subnet: an elastic IP gives one.
        .leaf("mapPublicIpOnLaunch", false)
        .tags(&s.tags);
}
