//! `gureum template`: launch templates.

use clap::Subcommand;

use gureum::cloud::api::Action;
use gureum::cloud::template::{LaunchTemplate, TemplateRequest};

use super::cloud::{CliError, Env, FilterArgs, TagArgs, change, describe, list, removed};
use super::instance::InstanceDataArgs;

/// Saved launch settings: image, type, key, tags.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Save launch settings under a name.
    Create {
        #[arg(long)]
        name: String,
        /// Image: ID or name.
        #[arg(long)]
        image: String,
        /// Instance type, e.g. t2.micro.
        #[arg(long = "type", value_name = "TYPE")]
        instance_type: Option<String>,
        /// Key pair name or ID.
        #[arg(long)]
        key: Option<String>,
        /// Appended to the image's kernel command line.
        #[arg(long, value_name = "TEXT")]
        cmdline_append: Option<String>,
        #[command(flatten)]
        data: InstanceDataArgs,
        /// Tags for the instances launched from it (repeatable).
        #[command(flatten)]
        tags: TagArgs,
    },
    /// List launch templates.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one launch template.
    Describe { template: String },
    /// Delete a launch template.
    #[command(visible_alias = "remove")]
    Rm { template: String },
}

pub fn run(env: &Env, command: TemplateCommand) -> Result<(), CliError> {
    match command {
        TemplateCommand::Create {
            name,
            image,
            instance_type,
            key,
            cmdline_append,
            data,
            tags,
        } => {
            let request = TemplateRequest {
                name,
                image,
                instance_type,
                key,
                cmdline_append,
                instance_tags: tags.parse()?,
                user_data: data.user_data()?,
                metadata_options: data.metadata_options(),
                cpu_options: data.cpu_options.unwrap_or_default(),
                shutdown_behavior: data
                    .instance_initiated_shutdown_behavior
                    .unwrap_or_default(),
            };
            change::<LaunchTemplate>(env, Action::CreateLaunchTemplate { request })?;
        }
        TemplateCommand::List(filter) => {
            list::<LaunchTemplate>(
                env,
                Action::ListLaunchTemplates {
                    filters: filter.filters()?,
                },
                &["ID", "NAME", "IMAGE", "TYPE", "KEY", "CREATED"],
                |t| {
                    let t = &t.item;
                    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.image_id.clone(),
                        or_dash(&t.instance_type),
                        or_dash(&t.key_name),
                        t.created.clone(),
                    ]
                },
            )?;
        }
        TemplateCommand::Describe { template } => {
            describe::<LaunchTemplate>(env, Action::DescribeLaunchTemplate { template })?;
        }
        TemplateCommand::Rm { template } => {
            removed(env, Action::DeleteLaunchTemplate { template })?;
        }
    }
    Ok(())
}
