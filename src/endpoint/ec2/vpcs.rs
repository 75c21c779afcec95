//! CreateVpc, DeleteVpc, DescribeVpcs.

use crate::cloud::api::{Action, Response, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::vpc::network::Vpc;

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target, done, named};

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateVpc", Target::Any, create),
    Operation::new("CreateDefaultVpc", Target::Any, create_default),
    Operation::new("DeleteVpc", named(Kind::Vpc, "VpcId"), delete),
    Operation::new("DescribeVpcs", Target::Any, describe),
];

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let cidr = call.params.required("CidrBlock")?;
    let cidr = cidr
        .parse()
        .map_err(|e| Ec2Error::client("InvalidParameterValue", format!("{e}")))?;
    let tags = call.tag_spec("vpc")?;
    let vpc = match call.run(Action::CreateVpc { cidr, tags }) {
        Ok(Response::NewVpc { vpc, .. }) => vpc,
        Ok(_) => return Err(super::unexpected()),
        Err(e) if e.code == "InvalidSubnet.Range" => {
            return Err(Ec2Error::client("InvalidVpc.Range", e.message));
        }
        Err(e) => return Err(e),
    };
    let mut x = Xml::new();
    x.node("vpc", |x| write(x, &vpc, call.account));
    Ok(x)
}

fn create_default(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let Response::NewVpc { vpc, .. } = call.run(Action::CreateDefaultVpc)? else {
        return Err(super::unexpected());
    };
    let mut x = Xml::new();
    x.node("vpc", |x| write(x, &vpc, call.account));
    Ok(x)
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let vpc = call.params.required("VpcId")?.to_owned();
    call.run(Action::DeleteVpc { vpc })?;
    done()
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let vpcs = call.describe(
        "VpcId",
        Action::ListVpcs { filters: vec![] },
        |vpc| Action::DescribeVpc { vpc },
        |item, name| field(item, name, call.account),
    )?;
    let mut x = Xml::new();
    x.list("vpcSet", &vpcs, |x, v| write(x, v, call.account));
    Ok(x)
}

fn field(v: &Vpc, name: &str, account: &str) -> Option<Vec<String>> {
    Some(vec![match name {
        "vpc-id" => v.id.clone(),
        "cidr" | "cidr-block-association.cidr-block" | "cidrBlock" => v.cidr.to_string(),
        "state" => "available".into(),
        "is-default" => v.is_default.to_string(),
        "owner-id" => account.into(),
        "dhcp-options-id" => "default".into(),
        _ => return None,
    }])
}

fn write(x: &mut Xml, v: &Tagged<Vpc>, account: &str) {
    let vpc = &v.item;
    x.leaf("vpcId", &vpc.id)
        .leaf("ownerId", account)
        .leaf("state", "available")
        .leaf("cidrBlock", vpc.cidr)
        .list("cidrBlockAssociationSet", [&vpc.cidr], |x, cidr| {
            x.leaf(
                "associationId",
                super::derived_id("vpc-cidr-assoc", &vpc.id),
            )
            .leaf("cidrBlock", cidr)
            .node("cidrBlockState", |x| {
                x.leaf("state", "associated");
            });
        })
        .leaf("dhcpOptionsId", "default")
        .leaf("instanceTenancy", "default")
        .leaf("isDefault", vpc.is_default)
        .tags(&v.tags);
}
