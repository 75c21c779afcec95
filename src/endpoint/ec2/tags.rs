//! CreateTags, DeleteTags, DescribeTags over every kind of resource.

use crate::cloud::api::{Action, Response, Tagged};
use crate::cloud::ids::{self, Kind};

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Filters, Operation, Target, done, tag_list};

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateTags", Target::Any, create),
    Operation::new("DeleteTags", Target::Any, delete),
    Operation::new("DescribeTags", Target::Any, describe),
];

/// The resources `ResourceId.N` names, each an ID of a known kind.
fn resources(call: &Call<'_>) -> Result<Vec<String>, Ec2Error> {
    let ids = call.params.list("ResourceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("ResourceId"));
    }
    if let Some(bad) = ids.iter().find(|id| ids::kind_of(id).is_none()) {
        return Err(Ec2Error::client(
            "InvalidID",
            format!("The ID '{bad}' is not valid"),
        ));
    }
    Ok(ids)
}

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let tags = tag_list(call.params, "Tag")?;
    call.run(Action::CreateTags {
        resources: resources(call)?,
        tags,
    })?;
    done()
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let tags = call
        .params
        .members("Tag")
        .into_iter()
        .map(|t| {
            Ok((
                t.required("Key")?.to_owned(),
                t.get("Value").map(str::to_owned),
            ))
        })
        .collect::<Result<Vec<_>, Ec2Error>>()?;
    call.run(Action::DeleteTags {
        resources: resources(call)?,
        tags,
    })?;
    done()
}

/// EC2's resource type of an ID.
fn resource_type(id: &str) -> &'static str {
    match ids::kind_of(id) {
        Some(Kind::Instance) => "instance",
        Some(Kind::Image) => "image",
        Some(Kind::KeyPair) => "key-pair",
        Some(Kind::LaunchTemplate) => "launch-template",
        Some(Kind::Vpc) => "vpc",
        Some(Kind::Subnet) => "subnet",
        Some(Kind::RouteTable) => "route-table",
        Some(Kind::InternetGateway) => "internet-gateway",
        Some(Kind::ElasticIp) => "elastic-ip",
        Some(Kind::SecurityGroup) => "security-group",
        // ELBv2's resources are tagged through ELBv2, not EC2.
        Some(Kind::TargetGroup | Kind::LoadBalancer | Kind::AutoScalingGroup) | None => "",
    }
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let Response::Tags(all) = call.run(Action::ListTags)? else {
        return Err(super::unexpected());
    };
    let all = all
        .into_iter()
        .map(|t| Tagged::new(t, Default::default()))
        .collect();
    let kept = Filters::of(call.params).keep(all, |(id, key, value), name| {
        Some(vec![match name {
            "resource-id" => id.clone(),
            "resource-type" => resource_type(id).to_owned(),
            "key" => key.clone(),
            "value" => value.clone(),
            _ => return None,
        }])
    })?;
    let (kept, next) = super::page(call.params, kept)?;
    let mut x = Xml::new();
    x.list("tagSet", kept, |x, t| {
        let (id, key, value) = t.item;
        x.leaf("resourceId", &id)
            .leaf("resourceType", resource_type(&id))
            .leaf("key", key)
            .leaf("value", value);
    })
    .opt("nextToken", next);
    Ok(x)
}
