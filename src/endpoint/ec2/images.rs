//! DescribeImages, CreateImage, DeregisterImage.

use crate::cloud::api::{Action, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::image::Image;

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target, done, named};

pub const OPERATIONS: &[Operation] = &[
    Operation::new("DescribeImages", Target::Any, describe),
    Operation::new("CreateImage", named(Kind::Instance, "InstanceId"), create),
    Operation::new("DeregisterImage", named(Kind::Image, "ImageId"), deregister),
];

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let images = call.describe(
        "ImageId",
        Action::ListImages { filters: vec![] },
        |image| Action::DescribeImage { image },
        field,
    )?;
    let mut x = Xml::new();
    x.list("imagesSet", &images, |x, i| write(x, i, call.account));
    Ok(x)
}

fn field(i: &Image, name: &str) -> Option<Vec<String>> {
    Some(vec![match name {
        "image-id" => i.id.clone(),
        "name" => i.name.clone(),
        "description" => i.description.clone(),
        "architecture" => i.architecture.clone(),
        "state" => "available".into(),
        "image-type" => "machine".into(),
        "is-public" => "false".into(),
        _ => return None,
    }])
}

fn write(x: &mut Xml, t: &Tagged<Image>, account: &str) {
    let i = &t.item;
    x.leaf("imageId", &i.id)
        .leaf("imageLocation", format!("{account}/{}", i.name))
        .leaf("imageState", "available")
        .leaf("imageOwnerId", account)
        .leaf("creationDate", &i.created)
        .leaf("isPublic", false)
        .leaf("architecture", &i.architecture)
        .leaf("imageType", "machine")
        .leaf("name", &i.name)
        .leaf("description", &i.description)
        .leaf("rootDeviceType", "ebs")
        .leaf("rootDeviceName", "/dev/vda")
        .leaf("virtualizationType", "hvm")
        .node("blockDeviceMapping", |_| {})
        .tags(&t.tags);
}

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let p = call.params;
    let image = call.one::<Image>(Action::CreateImage {
        instance: p.required("InstanceId")?.to_owned(),
        name: p.required("Name")?.to_owned(),
        description: p.get("Description").map(str::to_owned),
        tags: call.tag_spec("image")?,
    })?;
    let mut x = Xml::new();
    x.leaf("imageId", &image.item.id);
    Ok(x)
}

fn deregister(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let image = call.params.required("ImageId")?.to_owned();
    call.run(Action::DeleteImage { image })?;
    done()
}
