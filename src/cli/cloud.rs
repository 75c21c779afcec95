//! What the control-plane commands share: global flags, the context they
//! run in, and how their errors are reported.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use gureum::cloud::lifecycle::{self, Context};
use gureum::cloud::state_dir::StateDir;
use gureum::cloud::store::{Resource, Store, Tx};
use gureum::cloud::tags::Filter;
use gureum::cloud::vpc::public::NetConfig;
use gureum::cloud::{self, lookup, tags};

use super::output::{self, Format, Tagged};

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where gureum keeps its store, images and instances
    /// [env: GUREUM_STATE_DIR] [default: /var/lib/gureum].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How read commands print.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t)]
    pub output: Format,
}

/// Errors of control-plane commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Cloud(#[from] cloud::Error),
    #[error(
        "{count} differences between the records and Linux (listed above); \
         `gureum net reconcile` repairs them"
    )]
    Differences { count: usize },
    #[error("cannot print the output: {0}")]
    Output(#[from] serde_json::Error),
    #[error("cannot attach to the console of {id} at {path}: {source}")]
    Console {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the console log {path}: {source}")]
    Logs {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<cloud::store::Error> for CliError {
    fn from(e: cloud::store::Error) -> Self {
        CliError::Cloud(e.into())
    }
}

impl From<cloud::vpc::Error> for CliError {
    fn from(e: cloud::vpc::Error) -> Self {
        CliError::Cloud(e.into())
    }
}

impl From<tags::Error> for CliError {
    fn from(e: tags::Error) -> Self {
        CliError::Cloud(e.into())
    }
}

/// What a control-plane command runs with.
#[derive(Debug)]
pub struct Env {
    pub ctx: Context,
    pub format: Format,
}

impl Env {
    pub fn store(&self) -> Result<Store, CliError> {
        Ok(self.ctx.open_store()?)
    }

    /// The host's network settings (`GUREUM_NET_PREFIX`, ...).
    pub fn net(&self) -> Result<NetConfig, CliError> {
        Ok(NetConfig::from_env()?)
    }
}

/// Runs a control-plane command; errors go to stderr with status 1.
pub fn run(global: &GlobalArgs, command: impl FnOnce(&Env) -> Result<(), CliError>) -> ExitCode {
    let result = lifecycle::current_exe()
        .map_err(CliError::from)
        .and_then(|exe| {
            let env = Env {
                ctx: Context {
                    state: StateDir::resolve(global.state_dir.clone()),
                    exe,
                },
                format: global.output,
            };
            command(&env)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gureum: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every `R` with its tags, keeping those that pass every filter.
/// `state` gives a resource's state for state filters.
pub fn list_tagged<R: Resource>(
    store: &mut Store,
    filters: &[Filter],
    state: impl Fn(&R) -> Option<&str>,
) -> Result<Vec<Tagged<R>>, CliError> {
    store.read(|tx| {
        let mut out = Vec::new();
        let listed = tx.list_readable::<R>()?;
        for skipped in &listed.unreadable {
            eprintln!("gureum: warning: {skipped}");
        }
        for item in listed.items {
            let tags = tx.tags(item.id())?;
            if filters.iter().all(|f| f.matches(&tags, state(&item))) {
                out.push(Tagged { item, tags });
            }
        }
        Ok(out)
    })
}

/// Prints every `R` that passes `filter` (a kind without states: state
/// filters match none) and returns them, for commands that say more.
pub fn list<R: Resource>(
    env: &Env,
    store: &mut Store,
    filter: &FilterArgs,
    headers: &[&str],
    row: impl Fn(&Tagged<R>) -> Vec<String>,
) -> Result<Vec<Tagged<R>>, CliError> {
    let items = list_tagged::<R>(store, &filter.parse()?, |_| None)?;
    print_list(env.format, &items, headers, row)?;
    Ok(items)
}

/// Prints a listing: JSON, or a table with `headers` and one `row` per
/// resource.
pub fn print_list<R: Resource>(
    format: Format,
    items: &[Tagged<R>],
    headers: &[&str],
    row: impl Fn(&Tagged<R>) -> Vec<String>,
) -> Result<(), CliError> {
    match format {
        Format::Json => output::json(items)?,
        Format::Table => output::table(headers, &items.iter().map(row).collect::<Vec<_>>()),
    }
    Ok(())
}

/// Prints the `R` named `reference` (by ID or unique name) with its tags.
pub fn describe<R: Resource>(
    env: &Env,
    store: &mut Store,
    reference: &str,
) -> Result<(), CliError> {
    describe_found(env, store, |tx| lookup::find::<R>(tx, reference))
}

/// Prints the `R` named `reference` (by ID or Name tag) with its tags.
pub fn describe_tagged<R: Resource>(
    env: &Env,
    store: &mut Store,
    reference: &str,
) -> Result<(), CliError> {
    describe_found(env, store, |tx| {
        lookup::find_tagged::<R>(tx, reference, |_| true)
    })
}

/// Prints the resource `find` finds, with its tags.
fn describe_found<R: Resource>(
    env: &Env,
    store: &mut Store,
    find: impl FnOnce(&Tx<'_>) -> Result<R, cloud::Error>,
) -> Result<(), CliError> {
    let shown = store.read(|tx| {
        let item = find(tx)?;
        let tags = tx.tags(item.id())?;
        Ok::<_, CliError>(Tagged { item, tags })
    })?;
    output::describe(env.format, &shown)?;
    Ok(())
}

/// Prints the ID of the resource a command made or changed.
pub fn print_id<R: Resource>(item: &R) {
    println!("{}", item.id());
}

/// The Name tag of a listed resource, or "-".
pub fn name_of<R: Resource>(item: &Tagged<R>) -> String {
    item.tags
        .get(tags::NAME)
        .cloned()
        .unwrap_or_else(|| "-".into())
}

/// Deletes the `R` named `reference` and prints its ID.
pub fn remove<R: Resource>(store: &mut Store, reference: &str) -> Result<(), CliError> {
    let gone = store.write(|tx| lookup::remove::<R>(tx, reference))?;
    println!("{gone}");
    Ok(())
}

/// `--tag KEY=VALUE` values as tags.
pub fn parse_tags(texts: &[String]) -> Result<tags::Tags, CliError> {
    Ok(tags::parse_all(texts)?)
}

/// `--tag KEY=VALUE` on create commands.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Tag the new resource (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
}

/// `--name` and `--tag` on create commands of resources named by tag.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The Name tag.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub tags: TagArgs,
}

impl TagArgs {
    /// The tags with Name set to `name`: a resource with a name of its own
    /// carries it as its Name tag too.
    pub fn named(&self, name: &str) -> Result<tags::Tags, CliError> {
        let mut tags = parse_tags(&self.tags)?;
        tags::check(tags::NAME, name)?;
        tags.insert(tags::NAME.into(), name.to_owned());
        Ok(tags)
    }
}

impl NameArgs {
    /// The tags, Name included.
    pub fn tags(&self) -> Result<tags::Tags, CliError> {
        match &self.name {
            Some(name) => self.tags.named(name),
            None => parse_tags(&self.tags.tags),
        }
    }
}

/// Filters of list commands.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only resources matching: Name=VALUE, tag:KEY=VALUE, state=STATE (repeatable).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Only resources with this tag (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
}

impl FilterArgs {
    /// Every filter given, tags included.
    pub fn parse(&self) -> Result<Vec<Filter>, CliError> {
        let mut filters = self
            .filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        for (key, value) in parse_tags(&self.tags)? {
            filters.push(Filter::Tag { key, value });
        }
        Ok(filters)
    }
}
