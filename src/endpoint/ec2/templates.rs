//! Launch templates: Create/Delete/DescribeLaunchTemplates and
//! DescribeLaunchTemplateVersions. gureum's templates are not versioned:
//! each has one version, 1, its default and latest.

use crate::cloud::api::{Action, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::template::{LaunchTemplate, TemplateRequest};

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::instances::{cpu_options, metadata_change, shutdown_behavior, user_data};
use super::{Call, Operation, Target, named, tag_specifications};

const TEMPLATE: Target = named(Kind::LaunchTemplate, "LaunchTemplateId");

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateLaunchTemplate", Target::Any, create),
    Operation::new("DeleteLaunchTemplate", TEMPLATE, delete),
    Operation::new("DescribeLaunchTemplates", Target::Any, describe),
    Operation::new("DescribeLaunchTemplateVersions", TEMPLATE, versions),
];

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let data = p.nested("LaunchTemplateData");
    for unsupported in ["NetworkInterface.1.SubnetId", "SecurityGroupId.1"] {
        if data.get(unsupported).is_some() {
            return Err(Ec2Error::unsupported(&format!(
                "{unsupported} in a launch template"
            )));
        }
    }
    let template = call.one::<LaunchTemplate>(Action::CreateLaunchTemplate {
        request: TemplateRequest {
            name: p.required("LaunchTemplateName")?.to_owned(),
            image: data
                .required("ImageId")
                .map_err(|_| Ec2Error::missing("LaunchTemplateData.ImageId"))?
                .to_owned(),
            instance_type: data.get("InstanceType").map(str::to_owned),
            key: data.get("KeyName").map(str::to_owned),
            cmdline_append: None,
            instance_tags: tag_specifications(&data, "instance")?,
            user_data: user_data(&data, "UserData")?,
            metadata_options: metadata_change(&data.nested("MetadataOptions"))?,
            cpu_options: cpu_options(&data.nested("CpuOptions"))?.unwrap_or_default(),
            shutdown_behavior: shutdown_behavior(&data)?.unwrap_or_default(),
        },
    })?;
    let mut x = Xml::new();
    x.node("launchTemplate", |x| write(x, &template));
    Ok(x)
}

/// The template `LaunchTemplateId` or `LaunchTemplateName` names.
fn reference(call: &Call<'_>) -> Result<String, Ec2Error> {
    let p = call.params;
    Ok(match p.get("LaunchTemplateId") {
        Some(id) => id,
        None => p.required("LaunchTemplateName")?,
    }
    .to_owned())
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let template = reference(call)?;
    let gone = call.one::<LaunchTemplate>(Action::DescribeLaunchTemplate {
        template: template.clone(),
    })?;
    call.run(Action::DeleteLaunchTemplate { template })?;
    let mut x = Xml::new();
    x.node("launchTemplate", |x| write(x, &gone));
    Ok(x)
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let mut templates = call.describe(
        "LaunchTemplateId",
        Action::ListLaunchTemplates { filters: vec![] },
        |template| Action::DescribeLaunchTemplate { template },
        field,
    )?;
    let names = call.params.list("LaunchTemplateName");
    for name in &names {
        if !templates.iter().any(|t| &t.item.name == name) {
            return Err(Ec2Error::client(
                "InvalidLaunchTemplateName.NotFoundException",
                format!(
                    "At least one of the launch templates specified in the request does not exist: {name}"
                ),
            ));
        }
    }
    if !names.is_empty() {
        templates.retain(|t| names.contains(&t.item.name));
    }
    let mut x = Xml::new();
    x.list("launchTemplates", &templates, write);
    Ok(x)
}

fn field(t: &LaunchTemplate, name: &str) -> Option<Vec<String>> {
    Some(vec![match name {
        "launch-template-name" => t.name.clone(),
        "launch-template-id" => t.id.clone(),
        _ => return None,
    }])
}

fn write(x: &mut Xml, t: &Tagged<LaunchTemplate>) {
    x.leaf("launchTemplateId", &t.item.id)
        .leaf("launchTemplateName", &t.item.name)
        .leaf("createTime", &t.item.created)
        .leaf("defaultVersionNumber", 1)
        .leaf("latestVersionNumber", 1)
        .tags(&t.tags);
}

fn versions(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let template = call.one::<LaunchTemplate>(Action::DescribeLaunchTemplate {
        template: reference(call)?,
    })?;
    let t = &template.item;
    let mut x = Xml::new();
    x.list("launchTemplateVersionSet", [t], |x, t| {
        x.leaf("launchTemplateId", &t.id)
            .leaf("launchTemplateName", &t.name)
            .leaf("versionNumber", 1)
            .leaf("createTime", &t.created)
            .leaf("defaultVersion", true)
            .node("launchTemplateData", |x| {
                x.leaf("imageId", &t.image_id)
                    .opt("instanceType", t.instance_type.as_ref())
                    .opt("keyName", t.key_name.as_ref())
                    .opt("userData", t.user_data.as_ref().map(|u| u.to_base64()))
                    .opt(
                        "instanceInitiatedShutdownBehavior",
                        (!t.shutdown_behavior.is_stop()).then(|| t.shutdown_behavior.as_str()),
                    )
                    .list("tagSpecificationSet", [&t.instance_tags], |x, tags| {
                        x.leaf("resourceType", "instance").tags(tags);
                    });
                if !t.cpu_options.is_default() {
                    x.node("cpuOptions", |x| {
                        x.leaf(
                            "nestedVirtualization",
                            t.cpu_options.nested_virtualization_word(),
                        );
                    });
                }
                let o = &t.metadata_options;
                if !o.is_empty() {
                    x.node("metadataOptions", |x| {
                        x.opt("httpTokens", o.http_tokens.map(|v| v.as_str()))
                            .opt("httpPutResponseHopLimit", o.http_put_response_hop_limit)
                            .opt("httpEndpoint", o.http_endpoint.map(|v| v.as_str()))
                            .opt(
                                "instanceMetadataTags",
                                o.instance_metadata_tags.map(|v| v.as_str()),
                            );
                    });
                }
            });
    });
    Ok(x)
}
