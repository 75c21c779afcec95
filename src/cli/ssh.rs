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

/// How to log in: the key, the user, how long to try.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The key pair's private key, as saved when the pair was created.
    #[arg(short = 'i', long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The user to log in as [default: the image's default user, else root].
    #[arg(short = 'l', long)]
    user: Option<String>,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    connect_timeout: u32,
}

/// Log in to an instance with SSH, or run COMMAND there; COMMAND's exit
/// status becomes gureum's (255: SSH itself failed). The instance's host
/// key is taken on first use and kept until the instance is terminated.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Instance: ID or Name tag.
    instance: String,
    #[command(flatten)]
    login: LoginArgs,
    /// What to run instead of a login shell (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Copy files and directories (recursively) between this host and an
/// instance, with scp over SSH as `gureum ssh` logs in: the instance's
/// side is INSTANCE:PATH (ID or Name tag; a local path with a colon is
/// written ./a:b).
#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy, then where to: one side INSTANCE:PATH, the other local.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    paths: Vec<String>,
    #[command(flatten)]
    login: LoginArgs,
}

/// Where and as whom a client logs in to one instance.
struct Login {
    id: String,
    reach: Reach,
    user: String,
    /// OpenSSH options shared by ssh and scp.
    options: Vec<std::ffi::OsString>,
}

impl Login {
    fn new(env: &Env, reference: &str, args: &LoginArgs) -> Result<Self, CliError> {
        let instance = one_instance(env, reference)?;
        let reach = instance.reach()?;
        let mut options: Vec<std::ffi::OsString> = Vec::new();
        let known_hosts = env.ctx.state.instance(&instance.id).join("known_hosts");
        for option in [
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "StrictHostKeyChecking=accept-new".into(),
            format!("ConnectTimeout={}", args.connect_timeout),
            "LogLevel=ERROR".into(),
        ] {
            options.extend(["-o".into(), option.into()]);
        }
        // Without a terminal nobody can answer a prompt: fail instead.
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            options.extend(["-o".into(), "BatchMode=yes".into()]);
        }
        if let Some(key) = &args.identity {
            if !key.is_file() {
                return Err(CliError::SshKey(key.clone()));
            }
            options.extend([
                "-i".into(),
                key.clone().into(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        let user = match &args.user {
            Some(user) => user.clone(),
            None => default_user(env, &instance),
        };
        Ok(Login {
            id: instance.id,
            reach,
            user,
            options,
        })
    }

    /// `user@address`.
    fn destination(&self) -> String {
        format!("{}@{}", self.user, self.reach.address)
    }

    /// Runs `client` where the instance is reached; its exit status
    /// (255 for a death by signal, as ssh's own failures).
    fn status(&self, mut client: Command) -> Result<ExitCode, CliError> {
        // A child forked by a thread inside the namespace is born there.
        let status = from_where_reached(&self.reach, &self.id, || client.status())?
            .map_err(CliError::SshClient)?;
        let code = status.code().unwrap_or(255);
        Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
    }
}

pub fn ssh(env: &Env, args: SshArgs) -> Result<ExitCode, CliError> {
    let login = Login::new(env, &args.instance, &args.login)?;
    let mut ssh = Command::new("ssh");
    ssh.args(&login.options).arg(login.destination());
    if !args.command.is_empty() {
        ssh.arg("--").args(&args.command);
    }
    login.status(ssh)
}

pub fn cp(env: &Env, args: CpArgs) -> Result<ExitCode, CliError> {
    let remote: Vec<(usize, &str, &str)> = args
        .paths
        .iter()
        .enumerate()
        .filter_map(|(n, p)| remote_side(p).map(|(instance, path)| (n, instance, path)))
        .collect();
    let last = args.paths.len() - 1;
    let Some(&(_, instance, _)) = remote.first() else {
        return Err(CliError::CpSides("no side names an instance".into()));
    };
    if remote.iter().any(|(_, other, _)| *other != instance) {
        return Err(CliError::CpSides("they name more than one instance".into()));
    }
    // Into the instance (the destination alone is remote) or out of it
    // (every source is remote, the destination local).
    let into = matches!(remote.as_slice(), [(n, _, _)] if *n == last);
    let out_of = remote.len() == last && remote.iter().all(|(n, _, _)| *n < last);
    if !into && !out_of {
        return Err(CliError::CpSides(
            "one side must be the instance's and the other this host's".into(),
        ));
    }
    let login = Login::new(env, instance, &args.login)?;
    let mut scp = Command::new("scp");
    scp.arg("-r").args(&login.options);
    for (n, p) in args.paths.iter().enumerate() {
        match remote.iter().find(|(at, _, _)| *at == n) {
            Some((_, _, path)) => scp.arg(format!("{}:{path}", login.destination())),
            None => scp.arg(p),
        };
    }
    login.status(scp)
}

/// `INSTANCE:PATH` split, if `operand` names an instance's side (text
/// before a colon without a slash, as scp reads it).
fn remote_side(operand: &str) -> Option<(&str, &str)> {
    let (instance, path) = operand.split_once(':')?;
    (!instance.is_empty() && !instance.contains('/')).then_some((instance, path))
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
        if from_where_reached(&reach, id, || greets(&reach))? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::SshSilent(id.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `work` in instance `id`'s VPC namespace, or here.
fn from_where_reached<T: Send>(
    reach: &Reach,
    id: &str,
    work: impl FnOnce() -> T + Send,
) -> Result<T, CliError> {
    match &reach.netns {
        Some(name) => Netns::open(name)
            .and_then(|ns| ns.run(work))
            .map_err(|source| CliError::SshNamespace {
                id: id.to_owned(),
                source,
            }),
        None => Ok(work()),
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

#[cfg(test)]
mod tests {
    use super::remote_side;

    #[test]
    fn an_instance_side_is_text_before_a_colon_without_a_slash() {
        assert_eq!(remote_side("web-1:/tmp/x"), Some(("web-1", "/tmp/x")));
        assert_eq!(
            remote_side("i-0123:report.xml"),
            Some(("i-0123", "report.xml"))
        );
        assert_eq!(remote_side("./a:b"), None);
        assert_eq!(remote_side("src/dir"), None);
        assert_eq!(remote_side(":x"), None);
    }
}
