//! Launch templates: an image, an instance type, a key pair, the tags,
//! kernel command line additions, CPU options, user data, metadata
//! options and shutdown behavior for the instances launched from it,
//! saved under a name.

use serde::{Deserialize, Serialize};

use super::cpu_options::CpuOptions;
use super::ids::{self, Kind};
use super::image::Image;
use super::instance::ShutdownBehavior;
use super::key_pair::KeyPair;
use super::metadata_options::MetadataChange;
use super::store::{Resource, Store};
use super::tags::{NAME, Tags};
use super::user_data::UserData;
use super::{Error, instance_type, lookup, names};

/// A launch template as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplate {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub instance_type: Option<String>,
    pub key_name: Option<String>,
    pub cmdline_append: Option<String>,
    /// Tags given to every instance launched from it.
    pub instance_tags: Tags,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
    #[serde(default, skip_serializing_if = "MetadataChange::is_empty")]
    pub metadata_options: MetadataChange,
    #[serde(default, skip_serializing_if = "CpuOptions::is_default")]
    pub cpu_options: CpuOptions,
    /// What a shutdown from inside its instances' guests does.
    #[serde(default, skip_serializing_if = "ShutdownBehavior::is_stop")]
    pub shutdown_behavior: ShutdownBehavior,
}

impl Resource for LaunchTemplate {
    const KIND: Kind = Kind::LaunchTemplate;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// What `gureum template create` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TemplateRequest {
    pub name: String,
    pub image: String,
    pub instance_type: Option<String>,
    pub key: Option<String>,
    pub cmdline_append: Option<String>,
    pub instance_tags: Tags,
    #[serde(default)]
    pub user_data: Option<UserData>,
    #[serde(default)]
    pub metadata_options: MetadataChange,
    #[serde(default)]
    pub cpu_options: CpuOptions,
    #[serde(default)]
    pub shutdown_behavior: ShutdownBehavior,
}

/// Creates a template after checking that what it names exists.
pub fn create(store: &mut Store, req: TemplateRequest) -> Result<LaunchTemplate, Error> {
    names::check(Kind::LaunchTemplate, &req.name)?;
    super::tags::check_all(&req.instance_tags)?;
    if let Some(t) = &req.instance_type {
        instance_type::lookup(t)?;
    }
    // Its instances take its type unless a launch names another: the
    // option must suit the type it names (or the default).
    req.cpu_options.check(
        req.instance_type
            .as_deref()
            .unwrap_or(instance_type::DEFAULT),
    )?;
    let id = ids::new_id(Kind::LaunchTemplate)?;
    store.write(|tx| {
        let image: Image = lookup::find(tx, &req.image)?;
        let key_name = match &req.key {
            Some(key) => Some(lookup::find::<KeyPair>(tx, key)?.name),
            None => None,
        };
        let template = LaunchTemplate {
            id,
            name: req.name.clone(),
            image_id: image.id,
            instance_type: req.instance_type.clone(),
            key_name,
            cmdline_append: req.cmdline_append.clone(),
            instance_tags: req.instance_tags.clone(),
            created: super::time::now(),
            user_data: req.user_data.clone(),
            metadata_options: req.metadata_options,
            cpu_options: req.cpu_options,
            shutdown_behavior: req.shutdown_behavior,
        };
        tx.insert(&template, &[(NAME.to_string(), req.name.clone())].into())?;
        Ok(template)
    })
}
