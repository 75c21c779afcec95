//! `gureum ssh`: log in to an instance, or run a command there, with
//! OpenSSH's client, from where the instance's address is reached (its
//! VPC's namespace, or this host for a `--tap` instance).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Args;

use gureum::cloud::api::Action;
use gureum::cloud::image::Image;
use gureum::cloud::instance::{Instance, Reach};
use gureum::host::netns::Netns;

use super::cloud::{CliError, Env};

/// Log in to an instance with SSH, or run COMMAND there; COMMAND's exit
/// status becomes gureum's (255: SSH itself failed). The instance's host
/// key is taken on first use and kept until the instance is terminated.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Instance: ID or Name tag.
    instance: String,
    /// The key pair's private key, as saved when the pair was created.
    #[arg(short = 'i', long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The user to log in as [default: the image's default user, else root].
    #[arg(short = 'l', long)]
    user: Option<String>,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    connect_timeout: u32,
    /// What to run instead of a login shell (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The OpenSSH client gureum runs.
const SSH: &str = "ssh";

pub fn run(env: &Env, args: SshArgs) -> Result<ExitCode, CliError> {
    let instance = one_instance(env, &args.instance)?;
    let reach = instance.reach()?;
    if let Some(key) = &args.identity {
        if !key.is_file() {
            return Err(CliError::SshKey(key.clone()));
        }
    }
    let user = match args.user {
        Some(user) => user,
        None => default_user(env, &instance),
    };
    let known_hosts = env.ctx.state.instance(&instance.id).join("known_hosts");
    let mut ssh = Command::new(SSH);
    ssh.arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=accept-new"])
        .arg("-o")
        .arg(format!("ConnectTimeout={}", args.connect_timeout))
        .args(["-o", "LogLevel=ERROR"]);
    // Without a terminal nobody can answer a prompt: fail instead.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        ssh.args(["-o", "BatchMode=yes"]);
    }
    if let Some(key) = &args.identity {
        ssh.arg("-i").arg(key).args(["-o", "IdentitiesOnly=yes"]);
    }
    ssh.arg(format!("{user}@{}", reach.address));
    if !args.command.is_empty() {
        ssh.arg("--").args(&args.command);
    }
    let status = match &reach.netns {
        // A child forked by a thread inside the namespace is born there.
        Some(name) => Netns::open(name)
            .and_then(|ns| ns.run(|| ssh.status()))
            .map_err(|e| CliError::SshNamespace {
                id: instance.id.clone(),
                source: e,
            })?,
        None => ssh.status(),
    }
    .map_err(CliError::SshClient)?;
    // A signal's death reads as ssh's own failure.
    let code = status.code().unwrap_or(255);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

fn one_instance(env: &Env, reference: &str) -> Result<Instance, CliError> {
    let mut found = env.records::<Instance>(Action::DescribeInstances {
        instances: vec![reference.to_owned()],
    })?;
    match found.pop() {
        Some(one) if found.is_empty() => Ok(one.item),
        Some(_) => Err(CliError::SshAmbiguous(reference.to_owned())),
        None => Err(CliError::Unexpected("empty instance list".into())),
    }
}

fn default_user(env: &Env, instance: &Instance) -> String {
    // An image deregistered since the launch leaves no default user.
    let user = env
        .records::<Image>(Action::DescribeImage {
            image: instance.image_id.clone(),
        })
        .ok()
        .and_then(|mut found| found.pop())
        .and_then(|one| one.item.default_user);
    user.unwrap_or_else(|| "root".into())
}

/// Returns once instance `id`'s SSH server sends its greeting where
/// `gureum ssh` reaches it (`run --wait ssh`); fails at `deadline`, or at
/// once if the instance stops running.
pub fn wait_until_it_answers(env: &Env, id: &str, deadline: Instant) -> Result<(), CliError> {
    loop {
        let reach = one_instance(env, id)?.reach()?;
        let answered = match &reach.netns {
            Some(name) => Netns::open(name)
                .and_then(|ns| ns.run(|| greets(&reach)))
                .map_err(|e| CliError::SshNamespace {
                    id: id.to_owned(),
                    source: e,
                })?,
            None => greets(&reach),
        };
        if answered {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::SshSilent(id.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether an SSH server at `reach` sends its version line ("SSH-2.0-…").
fn greets(reach: &Reach) -> bool {
    let wait = Duration::from_secs(2);
    let Ok(mut stream) = TcpStream::connect_timeout(&SocketAddr::from((reach.address, 22)), wait)
    else {
        return false;
    };
    let mut greeting = [0u8; 4];
    stream.set_read_timeout(Some(wait)).is_ok()
        && stream.read_exact(&mut greeting).is_ok()
        && &greeting == b"SSH-"
}
