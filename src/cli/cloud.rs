//! What the control-plane commands share: global flags, the context they
//! run in, how they reach the core API (the daemon when it answers, this
//! process otherwise), and how their errors end the process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use gureum::cloud::api::{self, Action, ApiError, Category, Records, Response, Tagged};
use gureum::cloud::lifecycle::{self, Context};
use gureum::cloud::state_dir::StateDir;
use gureum::cloud::{self, tags};
use gureum::daemon;

use super::output::{self, Format};

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where gureum keeps its store, images and instances
    /// [env: GUREUM_STATE_DIR] [default: /var/lib/gureum].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The daemon's socket; commands go through the daemon when it
    /// answers there, else run in this process
    /// [env: GUREUM_SOCKET] [default: STATE_DIR/gureum.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// How read commands print.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t)]
    pub output: Format,
}

/// The variable that names the daemon's socket.
const SOCKET_ENV: &str = "GUREUM_SOCKET";

impl GlobalArgs {
    pub fn state(&self) -> StateDir {
        StateDir::resolve(self.state_dir.clone())
    }

    /// `--socket`, else `$GUREUM_SOCKET`, else the state directory's.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .or_else(|| {
                std::env::var_os(SOCKET_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| daemon::default_socket(&self.state()))
    }
}

/// Errors of control-plane commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Cloud(#[from] cloud::Error),
    #[error(
        "{count} differences between the records and Linux (listed above); \
         `gureum net reconcile` repairs them"
    )]
    Differences { count: usize },
    #[error(transparent)]
    Daemon(#[from] daemon::Error),
    #[error("cannot print the output: {0}")]
    Output(#[from] serde_json::Error),
    #[error("cannot attach to the console of {id} at {path}: {source}")]
    Console {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the console log to standard output: {0}")]
    Logs(std::io::Error),
    #[error("cannot read the user data file {path}: {source}")]
    UserDataFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Reach(#[from] gureum::cloud::instance::ReachError),
    #[error(
        "the private key file {0} does not exist: pass the file saved when the key pair was created"
    )]
    SshKey(PathBuf),
    #[error("'{0}' names more than one instance: use its ID")]
    SshAmbiguous(String),
    #[error("cannot copy: {0} (write the instance's side as INSTANCE:PATH, e.g. web-1:/tmp/out)")]
    CpSides(String),
    #[error(
        "cannot enter the VPC namespace of {id}: {source}; `gureum net check` shows what is missing"
    )]
    SshNamespace {
        id: String,
        source: gureum::host::netns::Error,
    },
    #[error(
        "{0} is running but its SSH server did not answer in time: `gureum instance logs {0}` \
         shows how far it booted (raise --wait-timeout for a slow image)"
    )]
    SshSilent(String),
    #[error("cannot run ssh: {0}; install OpenSSH's client (package openssh-client)")]
    SshClient(std::io::Error),
    #[error("the core API answered with an unexpected {0}; this is a bug in gureum")]
    Unexpected(String),
}

impl CliError {
    fn category(&self) -> Category {
        match self {
            CliError::Api(e) => e.category,
            CliError::Cloud(e) => e.category(),
            CliError::Daemon(daemon::Error::AlreadyRunning(_)) => Category::Conflict,
            // A check that found something ends as checks do, with 1.
            CliError::Differences { .. } => Category::Internal,
            CliError::UserDataFile { .. }
            | CliError::SshKey(_)
            | CliError::SshAmbiguous(_)
            | CliError::CpSides(_) => Category::InvalidInput,
            CliError::Reach(gureum::cloud::instance::ReachError::NotRunning { .. }) => {
                Category::Conflict
            }
            CliError::Reach(gureum::cloud::instance::ReachError::NoAddress { .. }) => {
                Category::InvalidInput
            }
            CliError::Daemon(daemon::Error::Cloud(e)) => e.category(),
            CliError::Daemon(_)
            | CliError::Output(_)
            | CliError::Console { .. }
            | CliError::Logs(_)
            | CliError::SshNamespace { .. }
            | CliError::SshSilent(_)
            | CliError::SshClient(_)
            | CliError::Unexpected(_) => Category::Internal,
        }
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
    pub socket: PathBuf,
    pub format: Format,
}

impl Env {
    /// Runs `action` through the daemon if one answers on the socket,
    /// else in this process: the same `api::execute` either way.
    pub fn call(&self, action: Action) -> Result<Response, CliError> {
        let result = match daemon::client::call(&self.socket, &action) {
            Some(result) => result,
            None => api::execute(&self.ctx, &action),
        };
        Ok(result?)
    }

    /// `call`, for an action that answers records of kind `R`.
    pub fn records<R: Records>(&self, action: Action) -> Result<Vec<Tagged<R>>, CliError> {
        let response = self.call(action)?;
        let got = kind_name(&response);
        R::from_response(response).ok_or(CliError::Unexpected(got))
    }
}

/// The kind of `response`, as the wire names it.
fn kind_name(response: &Response) -> String {
    serde_json::to_value(response)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "response".into())
}

/// The error for a response of the wrong kind.
pub fn unexpected(response: &Response) -> CliError {
    CliError::Unexpected(kind_name(response))
}

/// Runs a control-plane command; an error goes to stderr and its
/// category decides the exit status.
pub fn run(global: &GlobalArgs, command: impl FnOnce(&Env) -> Result<(), CliError>) -> ExitCode {
    run_with_status(global, |env| command(env).map(|()| ExitCode::SUCCESS))
}

/// `run`, for a command whose success has a status of its own (`ssh`).
pub fn run_with_status(
    global: &GlobalArgs,
    command: impl FnOnce(&Env) -> Result<ExitCode, CliError>,
) -> ExitCode {
    let result = lifecycle::current_exe()
        .map_err(CliError::from)
        .and_then(|exe| {
            let env = Env {
                ctx: Context {
                    state: global.state(),
                    exe,
                },
                socket: global.socket(),
                format: global.output,
            };
            command(&env)
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gureum: {e}");
            ExitCode::from(e.category().exit_code())
        }
    }
}

/// Lists `R` with `action` and prints the listing: JSON, or a table with
/// `headers` and one `row` per resource. Returns the records.
pub fn list<R: Records + serde::Serialize>(
    env: &Env,
    action: Action,
    headers: &[&str],
    row: impl Fn(&Tagged<R>) -> Vec<String>,
) -> Result<Vec<Tagged<R>>, CliError> {
    let items = env.records::<R>(action)?;
    match env.format {
        Format::Json => output::json(&items)?,
        Format::Table => output::table(headers, &items.iter().map(row).collect::<Vec<_>>()),
    }
    Ok(items)
}

/// Prints the one record `action` describes.
pub fn describe<R: Records + serde::Serialize>(env: &Env, action: Action) -> Result<(), CliError> {
    for item in env.records::<R>(action)? {
        output::describe(env.format, &item)?;
    }
    Ok(())
}

/// Runs a removing `action` and prints the ID of what went.
pub fn removed(env: &Env, action: Action) -> Result<(), CliError> {
    match env.call(action)? {
        Response::Removed { id } => {
            println!("{id}");
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// Runs `action`, which makes, changes or deletes one `R`, and prints
/// its ID.
pub fn change<R: Records>(env: &Env, action: Action) -> Result<(), CliError> {
    for item in env.records::<R>(action)? {
        println!("{}", item.item.id());
    }
    Ok(())
}

/// The Name tag of a listed resource, or "-".
pub fn name_of<R>(item: &Tagged<R>) -> String {
    item.tags
        .get(tags::NAME)
        .cloned()
        .unwrap_or_else(|| "-".into())
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
    pub fn parse(&self) -> Result<tags::Tags, CliError> {
        parse_tags(&self.tags)
    }

    /// The tags with Name set to `name`: a resource with a name of its own
    /// carries it as its Name tag too.
    pub fn named(&self, name: &str) -> Result<tags::Tags, CliError> {
        let mut tags = self.parse()?;
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
            None => self.tags.parse(),
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
    /// Every filter given, as the core API takes them (`--tag K=V` is the
    /// filter `tag:K=V`).
    pub fn filters(self) -> Result<Vec<String>, CliError> {
        let tags = parse_tags(&self.tags)?;
        let mut filters = self.filters;
        filters.extend(tags.iter().map(|(k, v)| format!("tag:{k}={v}")));
        Ok(filters)
    }
}
