//! Elastic IPs: Allocate/Associate/Disassociate/Release/DescribeAddresses.
//! An association's ID (`eipassoc-…`) is made from the allocation's, as
//! an address has at most one association.

use crate::cloud::api::{Action, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::vpc::elastic_ip::ElasticIp;

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target, derived_id, done, named, origin_id};

const ALLOCATION: Target = named(Kind::ElasticIp, "AllocationId");
const ASSOCIATION: &str = "eipassoc";

pub const OPERATIONS: &[Operation] = &[
    Operation::new("AllocateAddress", Target::Any, allocate),
    Operation::new("AssociateAddress", ALLOCATION, associate),
    Operation::new("DisassociateAddress", Target::Any, disassociate),
    Operation::new("ReleaseAddress", ALLOCATION, release),
    Operation::new("DescribeAddresses", Target::Any, describe),
];

fn allocate(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    if call.params.get("Domain").is_some_and(|d| d != "vpc") {
        return Err(Ec2Error::unsupported(
            "EC2-Classic addresses (Domain=standard)",
        ));
    }
    let eip = call.one::<ElasticIp>(Action::AllocateAddress {
        tags: call.tag_spec("elastic-ip")?,
    })?;
    let mut x = Xml::new();
    x.leaf("publicIp", eip.item.public_ip)
        .leaf("allocationId", &eip.item.id)
        .leaf("domain", "vpc");
    Ok(x)
}

/// The allocation an `AllocationId` or a `PublicIp` names.
fn allocation(call: &Call<'_>) -> Result<String, Ec2Error> {
    if let Some(id) = call.params.get("AllocationId") {
        return Ok(id.to_owned());
    }
    let ip = call.params.required("PublicIp")?;
    let all = call.records::<ElasticIp>(Action::ListAddresses { filters: vec![] })?;
    all.into_iter()
        .find(|e| e.item.public_ip.to_string() == ip)
        .map(|e| e.item.id)
        .ok_or_else(|| {
            Ec2Error::client(
                "InvalidAddress.NotFound",
                format!("Address '{ip}' not found."),
            )
        })
}

fn associate(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let eip = allocation(call)?;
    if call.params.get("NetworkInterfaceId").is_some() {
        return Err(Ec2Error::unsupported(
            "associating an address with a network interface",
        ));
    }
    call.run(Action::AssociateAddress {
        eip: eip.clone(),
        instance: call.params.required("InstanceId")?.to_owned(),
    })?;
    let mut x = Xml::new();
    x.leaf("return", true)
        .leaf("associationId", derived_id(ASSOCIATION, &eip));
    Ok(x)
}

fn disassociate(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let eip = match call.params.get("AssociationId") {
        Some(id) => origin_id(id, ASSOCIATION, Kind::ElasticIp).ok_or_else(|| {
            Ec2Error::client(
                "InvalidAssociationID.NotFound",
                format!("The association ID '{id}' does not exist"),
            )
        })?,
        None => allocation(call)?,
    };
    call.run(Action::DisassociateAddress { eip })?;
    done()
}

fn release(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let eip = allocation(call)?;
    call.run(Action::ReleaseAddress { eip })?;
    done()
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let mut addresses = call.describe(
        "AllocationId",
        Action::ListAddresses { filters: vec![] },
        |eip| Action::DescribeAddress { eip },
        field,
    )?;
    let ips = call.params.list("PublicIp");
    if !ips.is_empty() {
        addresses.retain(|a| ips.contains(&a.item.public_ip.to_string()));
    }
    let mut x = Xml::new();
    x.list("addressesSet", &addresses, write);
    Ok(x)
}

fn field(a: &ElasticIp, name: &str) -> Option<Vec<String>> {
    Some(match name {
        "allocation-id" => vec![a.id.clone()],
        "public-ip" => vec![a.public_ip.to_string()],
        "domain" => vec!["vpc".into()],
        "instance-id" => a.instance_id.iter().cloned().collect(),
        "association-id" => a
            .instance_id
            .iter()
            .map(|_| derived_id(ASSOCIATION, &a.id))
            .collect(),
        _ => return None,
    })
}

fn write(x: &mut Xml, a: &Tagged<ElasticIp>) {
    let eip = &a.item;
    x.leaf("publicIp", eip.public_ip)
        .leaf("allocationId", &eip.id)
        .leaf("domain", "vpc")
        .opt("instanceId", eip.instance_id.as_ref())
        .opt(
            "associationId",
            eip.instance_id
                .as_ref()
                .map(|_| derived_id(ASSOCIATION, &eip.id)),
        )
        .tags(&a.tags);
}
