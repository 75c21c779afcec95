//! DHCP and DNS for every VPC: a dnsmasq (Debian's, a maintained server
//! that does both) in each VPC namespace, configured by `net::dnsmasq`
//! from the store, started again whenever what it must serve changes or
//! it ends, and ended when its VPC goes. dnsmasq drops to an
//! unprivileged user once its sockets are open.
//!
//! Servers are the daemon's children. One outlives a daemon killed with
//! SIGKILL (it serves on meanwhile); found again by its configuration's
//! path (`cloud::vpc::dns_server`), it is ended by the next daemon before
//! that starts its own, or by the reconciler once its VPC is gone.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Told;
use crate::cloud::Error;
use crate::cloud::lifecycle::Context;
use crate::cloud::store::Store;
use crate::cloud::vpc::dns_server::{self, ServerFiles};
use crate::cloud::vpc::network::Vpc;
use crate::cloud::vpc::public::NetConfig;
use crate::cloud::vpc::realise;
use crate::host::{netns, resolvers};
use crate::net::{dnsmasq, uplink};

/// How often the servers are compared with the store: a new instance
/// gets its lease within this.
const SYNC_EVERY: Duration = Duration::from_secs(2);
const PROGRAM: &str = "dnsmasq";

/// One VPC's running server.
#[derive(Debug)]
struct Server {
    config: String,
    /// The namespace it serves (device and inode): a VPC namespace made
    /// again needs a new server.
    namespace: (u64, u64),
    child: Child,
}

/// Serves DHCP and DNS in every VPC of the store in `ctx`, on a thread
/// of its own, for as long as the daemon runs.
pub fn start(ctx: Context) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("dhcp-dns".into())
        .spawn(move || serve(&ctx))
        .map(drop)
}

fn serve(ctx: &Context) {
    let dir = dns_server::dir(ctx.state.root());
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!(
            "gureum daemon: no DHCP or DNS: cannot create {}: {e}",
            dir.display()
        );
        return;
    }
    // An earlier daemon's servers: this one starts its own.
    dns_server::end_all(&dir);
    let mut store = match ctx.open_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gureum daemon: no DHCP or DNS: {e}");
            return;
        }
    };
    let mut servers: HashMap<String, Server> = HashMap::new();
    let mut told = Told::default();
    loop {
        match wanted(&mut store) {
            Ok(wanted) => {
                servers.retain(|id, server| {
                    let keep = wanted.iter().any(|(vpc, _)| vpc.id == *id);
                    if !keep {
                        stop(server);
                        ServerFiles::of(&dir, id).end();
                    }
                    keep
                });
                told.retain(|id| wanted.iter().any(|(vpc, _)| vpc.id == id));
                for (vpc, config) in wanted {
                    let result = sync(&dir, &mut servers, &vpc, config);
                    told.outcome("DHCP and DNS of", &vpc.id, result);
                }
            }
            Err(e) => eprintln!("gureum daemon: DHCP and DNS: cannot read the VPCs: {e}"),
        }
        std::thread::sleep(SYNC_EVERY);
    }
}

/// Every VPC with the configuration of its server.
fn wanted(store: &mut Store) -> Result<Vec<(Vpc, String)>, Error> {
    // Read each time: a host's resolvers change (a new network, a VPN).
    let upstreams = match NetConfig::from_env()?.uplink {
        uplink::Setting::None => Vec::new(),
        _ => resolvers::reachable(),
    };
    store.read(|tx| {
        let mut all = Vec::new();
        for vpc in tx.list::<Vpc>()? {
            if let Some(config) = dnsmasq::config(&realise::spec(tx, &vpc)?, &upstreams) {
                all.push((vpc, config));
            }
        }
        Ok(all)
    })
}

/// Makes sure `vpc` has a server with `config` in its current namespace.
fn sync(
    dir: &Path,
    servers: &mut HashMap<String, Server>,
    vpc: &Vpc,
    config: String,
) -> Result<(), String> {
    let path = Path::new(netns::NETNS_DIR).join(&vpc.netns);
    let namespace = match fs::metadata(&path) {
        Ok(m) => (m.dev(), m.ino()),
        Err(e) => {
            if let Some(mut old) = servers.remove(&vpc.id) {
                stop(&mut old);
            }
            return Err(format!("its namespace {} is not there ({e})", vpc.netns));
        }
    };
    let files = ServerFiles::of(dir, &vpc.id);
    if let Some(server) = servers.get_mut(&vpc.id) {
        match server.child.try_wait() {
            Ok(None) if server.config == config && server.namespace == namespace => return Ok(()),
            Ok(Some(status)) => {
                servers.remove(&vpc.id);
                return Err(format!(
                    "{PROGRAM} ended ({status}): {}; starting it again",
                    last_line(&files.log)
                ));
            }
            _ => {}
        }
    }
    if let Some(mut old) = servers.remove(&vpc.id) {
        stop(&mut old);
    }
    let child = launch(&files, &path, &config)?;
    servers.insert(
        vpc.id.clone(),
        Server {
            config,
            namespace,
            child,
        },
    );
    Ok(())
}

/// Starts a server with `config` in the namespace at `netns`, recording
/// its process.
fn launch(files: &ServerFiles, netns: &Path, config: &str) -> Result<Child, String> {
    let io = |what: &str, path: &Path| {
        let path = path.display().to_string();
        let what = what.to_owned();
        move |e: std::io::Error| format!("cannot {what} {path}: {e}")
    };
    let staged = files.config.with_extension("conf.new");
    fs::write(&staged, config).map_err(io("write", &staged))?;
    fs::rename(&staged, &files.config).map_err(io("write", &files.config))?;
    // One run's messages only: quiet-dhcp keeps them few.
    let log = File::create(&files.log).map_err(io("create", &files.log))?;
    let err = log.try_clone().map_err(io("open", &files.log))?;
    // nsenter (util-linux) enters the namespace and executes dnsmasq in
    // the same process.
    let child = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(PROGRAM)
        .arg("--keep-in-foreground")
        .arg(files.config_arg())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run nsenter to start {PROGRAM}: {e}"))?;
    Ok(child)
}

fn stop(server: &mut Server) {
    let _ = server.child.kill();
    let _ = server.child.wait();
}

/// The last line a server wrote, for an error message.
fn last_line(log: &Path) -> String {
    fs::read_to_string(log)
        .ok()
        .and_then(|text| text.lines().last().map(str::to_owned))
        .unwrap_or_else(|| "it said nothing".to_owned())
}
