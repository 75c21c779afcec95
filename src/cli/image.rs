//! `gureum image`: images (AMIs).

use std::path::PathBuf;

use clap::Subcommand;

use gureum::cloud::image::{self, Image};

use super::cloud::{CliError, Env, FilterArgs, TagArgs, describe, list, parse_tags};
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
    let mut store = env.store()?;
    let state = &env.ctx.state;
    let created = match command {
        ImageCommand::Import {
            source,
            name,
            description,
            tags,
        } => image::import(
            state,
            &mut store,
            &source,
            name.as_deref(),
            description.as_deref(),
            &parse_tags(&tags.tags)?,
        )?,
        ImageCommand::Create {
            instance,
            name,
            description,
            tags,
        } => image::create_from_instance(
            state,
            &mut store,
            &instance,
            &name,
            description.as_deref(),
            &parse_tags(&tags.tags)?,
        )?,
        ImageCommand::List(filter) => {
            list::<Image>(
                env,
                &mut store,
                &filter,
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
        ImageCommand::Describe { image } => return describe::<Image>(env, &mut store, &image),
        ImageCommand::Rm { image } => {
            let gone = image::remove(state, &mut store, &image)?;
            println!("{gone}");
            return Ok(());
        }
    };
    match env.format {
        output::Format::Json => output::json(&created)?,
        output::Format::Table => println!("{}", created.id),
    }
    Ok(())
}
