//! Create/Attach/Detach/Delete/DescribeInternetGateways.

use crate::cloud::api::{Action, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::vpc::gateway::InternetGateway;

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target, done, named};

const IGW: Target = named(Kind::InternetGateway, "InternetGatewayId");

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateInternetGateway", Target::Any, create),
    Operation::new("AttachInternetGateway", IGW, attach),
    Operation::new("DetachInternetGateway", IGW, detach),
    Operation::new("DeleteInternetGateway", IGW, delete),
    Operation::new("DescribeInternetGateways", Target::Any, describe),
];

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let tags = call.tag_spec("internet-gateway")?;
    let igw = call.one::<InternetGateway>(Action::CreateInternetGateway { tags })?;
    let mut x = Xml::new();
    x.node("internetGateway", |x| write(x, &igw, call.account));
    Ok(x)
}

fn attach(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    call.run(Action::AttachInternetGateway {
        igw: call.params.required("InternetGatewayId")?.to_owned(),
        vpc: call.params.required("VpcId")?.to_owned(),
    })?;
    done()
}

fn detach(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let igw = call.params.required("InternetGatewayId")?.to_owned();
    let vpc = call.params.required("VpcId")?;
    // EC2 names the VPC; the core detaches from whichever it is on.
    let current =
        call.one::<InternetGateway>(Action::DescribeInternetGateway { igw: igw.clone() })?;
    if current.item.vpc_id.as_deref() != Some(vpc) {
        return Err(Ec2Error::client(
            "Gateway.NotAttached",
            format!("resource {igw} is not attached to network {vpc}"),
        ));
    }
    call.run(Action::DetachInternetGateway { igw })?;
    done()
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let igw = call.params.required("InternetGatewayId")?.to_owned();
    call.run(Action::DeleteInternetGateway { igw })?;
    done()
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let gateways = call.describe(
        "InternetGatewayId",
        Action::ListInternetGateways { filters: vec![] },
        |igw| Action::DescribeInternetGateway { igw },
        field,
    )?;
    let mut x = Xml::new();
    x.list("internetGatewaySet", &gateways, |x, g| {
        write(x, g, call.account)
    });
    Ok(x)
}

fn field(g: &InternetGateway, name: &str) -> Option<Vec<String>> {
    Some(match name {
        "internet-gateway-id" => vec![g.id.clone()],
        "attachment.vpc-id" => g.vpc_id.iter().cloned().collect(),
        "attachment.state" => g.vpc_id.iter().map(|_| "available".to_owned()).collect(),
        _ => return None,
    })
}

fn write(x: &mut Xml, g: &Tagged<InternetGateway>, account: &str) {
    x.leaf("internetGatewayId", &g.item.id)
        .leaf("ownerId", account)
        .list("attachmentSet", &g.item.vpc_id, |x, vpc| {
            x.leaf("vpcId", vpc).leaf("state", "available");
        })
        .tags(&g.tags);
}
