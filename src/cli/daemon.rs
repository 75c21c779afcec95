//! `gureum daemon`: the control plane as a long-running process.

use std::time::Duration;

use clap::Args;

use gureum::cloud::api::{ApiError, Category};
use gureum::daemon::{self, Config, Listen};

use super::cloud::{CliError, Env};

/// Serve the core API on a unix socket (mode 0600: who may use it is who
/// may open it) and reconcile at start, after every change and
/// periodically. Instances keep running when it stops.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Seconds between reconcile passes when nothing happens.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    reconcile_every: u64,
    /// Where the EC2 Query endpoint listens (HOST:PORT), or `off`
    /// [default: 127.0.0.1:8773 when free].
    #[arg(long, value_name = "ADDRESS|off", value_parser = parse_listen)]
    listen: Option<Listen>,
    /// Seconds over which each instance's CPU utilization is averaged
    /// (5 to 60; target-tracking policies act on each new figure).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(5..=60))]
    metrics_period: u64,
    /// Only say whether a daemon answers on the socket (status 0), or
    /// not (status 4), and end.
    #[arg(long)]
    check: bool,
}

/// Serves on `--socket` (default: the state directory's `gureum.sock`).
pub fn run(env: &Env, args: &DaemonArgs) -> Result<(), CliError> {
    if args.check {
        let socket = env.socket.display();
        if daemon::client::answers(&env.socket) {
            println!("a daemon answers on {socket}");
            return Ok(());
        }
        return Err(ApiError::new(
            Category::NotFound,
            format!("no daemon answers on {socket}; commands run in their own process"),
        )
        .into());
    }
    let config = Config {
        ctx: env.ctx.clone(),
        socket: env.socket.clone(),
        reconcile_every: Duration::from_secs(args.reconcile_every),
        listen: args.listen.unwrap_or(Listen::Default),
        metrics_period: Duration::from_secs(args.metrics_period),
    };
    Ok(daemon::run(&config)?)
}

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text == "off" {
        return Ok(Listen::Off);
    }
    text.parse()
        .map(Listen::At)
        .map_err(|e| format!("'{text}' is not HOST:PORT (e.g. 127.0.0.1:8773) nor off: {e}"))
}
