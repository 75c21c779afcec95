//! The daemon's socket: accepts clients, reads one action per line,
//! hands it to the executor and writes the reply as one line.

use nix::sys::stat::{Mode, umask};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::executor::{self, Executor};
use super::{Config, Error, Listen, Reply};
use crate::cloud::api::{Action, ApiError, Category};
use crate::cloud::lifecycle::Context;
use crate::endpoint;

/// Serves until the process is ended: reconciles first, then answers
/// clients and reconciles every `config.reconcile_every`.
pub fn run(config: &Config) -> Result<(), Error> {
    // Creates the state directory and checks that the store opens.
    config.ctx.open_store()?;
    executor::reconcile(&config.ctx);
    let jobs = executor::start(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async {
        let listener = bind(&config.socket)?;
        eprintln!(
            "gureum daemon: serving {} on {} (reconciling every {} s)",
            config.ctx.state.root().display(),
            config.socket.display(),
            config.reconcile_every.as_secs()
        );
        listen(config.listen, &jobs, &config.ctx).await?;
        tokio::spawn(super::metadata::serve(config.ctx.clone()));
        super::dhcp::start(config.ctx.clone()).map_err(Error::Thread)?;
        super::health::start(config.ctx.clone(), jobs.clone()).map_err(Error::Thread)?;
        super::proxy::start(config.ctx.clone()).map_err(Error::Thread)?;
        super::autoscaling::start(config.ctx.clone(), jobs.clone()).map_err(Error::Thread)?;
        super::cpu::start(config.ctx.clone(), jobs.clone(), config.metrics_period)
            .map_err(Error::Thread)?;
        let periodic = jobs.clone();
        let every = config.reconcile_every;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            // The first tick is now: the pass at start has just run.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if !periodic.reconcile() {
                    return;
                }
            }
        });
        loop {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(Error::socket("accept clients on", &config.socket))?;
            tokio::spawn(serve(stream, jobs.clone()));
        }
    })
}

/// Starts the EC2 endpoint where `listen` says.
async fn listen(listen: Listen, jobs: &Executor, ctx: &Context) -> Result<(), Error> {
    let (address, required) = match listen {
        Listen::Off => return Ok(()),
        Listen::At(address) => (address, true),
        Listen::Default => match endpoint::DEFAULT_LISTEN.parse() {
            Ok(address) => (address, false),
            Err(_) => return Ok(()),
        },
    };
    match endpoint::bind(address).await {
        Ok(listener) => {
            eprintln!("gureum daemon: EC2 endpoint on http://{address}");
            tokio::spawn(endpoint::serve(listener, jobs.clone(), ctx.clone()));
            Ok(())
        }
        Err(source) if required => Err(Error::Listen { address, source }),
        Err(e) => {
            eprintln!(
                "gureum daemon: no EC2 endpoint: cannot listen on {address} ({e}); pass \
                 --listen ADDRESS for another"
            );
            Ok(())
        }
    }
}

/// Listens on `path`, readable and writable by this user only. A socket
/// file whose daemon is gone is replaced; a live one is refused.
fn bind(path: &Path) -> Result<UnixListener, Error> {
    if path.exists() {
        if super::client::answers(path) {
            return Err(Error::AlreadyRunning(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(Error::socket("remove the stale socket", path))?;
    }
    // Made 0600 from the start: no instant in which others may connect.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(Error::socket("listen on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(Error::socket("set the mode of", path))?;
    Ok(listener)
}

/// Answers one client's requests until it hangs up.
async fn serve(stream: UnixStream, jobs: Executor) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // A read error is a client gone mid-line: nothing to answer.
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match serde_json::from_str::<Action>(&line) {
            Ok(action) => jobs.execute(action).await,
            Err(e) => Reply::Error(ApiError::new(
                Category::InvalidInput,
                format!("the request is not an action: {e}"),
            )),
        };
        let mut text = match serde_json::to_string(&reply) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("gureum daemon: cannot encode a reply: {e}");
                return;
            }
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}
