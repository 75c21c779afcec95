//! `gureum image`: images (AMIs).

use std::path::PathBuf;

use clap::Subcommand;

use gureum::cloud::Error;
use gureum::cloud::api::Action;
use gureum::cloud::image::Image;

use super::cloud::{CliError, Env, FilterArgs, TagArgs, describe, list, removed};
use super::output;

/// Images instances boot from.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image from a directory holding a `manifest` (or the
    /// manifest file), copying its files into the state directory.
    Import {
        source: PathBuf,
        /// Image name [default: the manifest's name=].
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// Save a stopped instance (its root disk as it is now) as a new image.
    Create {
        /// The instance: ID or Name tag.
        #[arg(long)]
        instance: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// List images.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one image.
    Describe { image: String },
    /// Delete an image and its files (refused while instances use it).
    #[command(visible_alias = "remove")]
    Rm { image: String },
}

pub fn run(env: &Env, command: ImageCommand) -> Result<(), CliError> {
    let action = match command {
        ImageCommand::Import {
            source,
            name,
            description,
            tags,
        } => Action::ImportImage {
            // The daemon does not share this process's directory.
            source: std::path::absolute(&source).map_err(Error::io("cannot find", &source))?,
            name,
            description,
            tags: tags.parse()?,
        },
        ImageCommand::Create {
            instance,
            name,
            description,
            tags,
        } => Action::CreateImage {
            instance,
            name,
            description,
            tags: tags.parse()?,
        },
        ImageCommand::List(filter) => {
            list::<Image>(
                env,
                Action::ListImages {
                    filters: filter.filters()?,
                },
                &[
                    "ID",
                    "NAME",
                    "ARCH",
                    "MIN-MEMORY",
                    "ROOT-DISK",
                    "CREATED",
                    "DESCRIPTION",
                ],
                |i| {
                    let i = &i.item;
                    vec![
                        i.id.clone(),
                        i.name.clone(),
                        i.architecture.clone(),
                        format!("{} MiB", i.min_memory_mib),
                        if i.root_disk.is_some() { "yes" } else { "no" }.into(),
                        i.created.clone(),
                        i.description.clone(),
                    ]
                },
            )?;
            return Ok(());
        }
        ImageCommand::Describe { image } => {
            return describe::<Image>(env, Action::DescribeImage { image });
        }
        ImageCommand::Rm { image } => return removed(env, Action::DeleteImage { image }),
    };
    for made in env.records::<Image>(action)? {
        match env.format {
            output::Format::Json => output::json(&made)?,
            output::Format::Table => println!("{}", made.item.id),
        }
    }
    Ok(())
}
