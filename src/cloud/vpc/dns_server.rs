//! Where each VPC's DHCP and DNS server (the dnsmasq `gureum daemon`
//! runs in the VPC's namespace) keeps its files, and how a server is
//! found again: by its configuration's path on its command line, which
//! is under this state directory and so names a process gureum made. A
//! server outlives a daemon killed with SIGKILL (at any instant, even
//! between starting it and noting that it did), so the next daemon, and
//! the reconciler once its VPC is gone, find it that way and end it.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// The servers' directory, under the state directory `root`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("dns")
}

/// One VPC's server files.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// Written before its server starts: a server always has one.
    pub config: PathBuf,
    /// What the server writes (one run's).
    pub log: PathBuf,
}

impl ServerFiles {
    pub fn of(dir: &Path, vpc: &str) -> Self {
        Self {
            config: dir.join(format!("{vpc}.conf")),
            log: dir.join(format!("{vpc}.log")),
        }
    }

    /// The argument that names this configuration on a server's command
    /// line.
    pub fn config_arg(&self) -> String {
        format!("--conf-file={}", self.config.display())
    }

    /// Ends every process serving this configuration and removes the
    /// files. Says whether there was anything.
    pub fn end(&self) -> bool {
        let arg = self.config_arg();
        let ended = end_processes(|a| a == arg.as_bytes());
        // Every file goes: no short cut after the first.
        let removed: Vec<bool> = [&self.config, &self.log]
            .into_iter()
            .map(|path| fs::remove_file(path).is_ok())
            .collect();
        ended || removed.contains(&true)
    }
}

/// Ends every server of a configuration in `dir`: an earlier daemon's,
/// when a daemon starts.
pub fn end_all(dir: &Path) {
    let prefix = format!("--conf-file={}/", dir.display());
    end_processes(|a| a.starts_with(prefix.as_bytes()));
}

/// Sends SIGKILL to every process with an argument `matches` takes.
/// Says whether there was one.
fn end_processes(matches: impl Fn(&[u8]) -> bool) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    let mut found = false;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(&matches) {
            found |= signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok();
        }
    }
    found
}

/// The VPCs that have a server configuration in `dir`.
pub fn recorded(dir: &Path) -> Vec<String> {
    let mut vpcs: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (vpc, _) = name.split_once('.')?;
            Some(vpc.to_owned())
        })
        .collect();
    vpcs.sort();
    vpcs.dedup();
    vpcs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `sh` with `arg` on its command line, and waits until it
    /// shows there (before its exec, the child's is the test's).
    fn server(arg: &str) -> std::process::Child {
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", arg])
            .spawn()
            .unwrap();
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let started = std::time::Instant::now();
        while !fs::read(&cmdline)
            .unwrap_or_default()
            .split(|b| *b == 0)
            .any(|a| a == arg.as_bytes())
        {
            assert!(started.elapsed().as_secs() < 10, "sh never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child
    }

    #[test]
    fn a_server_is_found_by_its_configuration_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServerFiles::of(dir.path(), "vpc-1");
        let other = ServerFiles::of(dir.path(), "vpc-2");
        fs::write(&files.config, "x").unwrap();
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut mine = server(&files.config_arg());
        let mut another = server(&other.config_arg());
        assert_eq!(recorded(dir.path()), ["vpc-1"]);
        assert!(files.end());
        assert!(mine.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(recorded(dir.path()).is_empty());
        assert!(!files.end());
        // A daemon starting ends every server of its directory, only those.
        end_all(dir.path());
        assert!(
            another.wait().unwrap().code().is_none(),
            "killed by a signal"
        );
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "a stranger was ended"
        );
        let _ = stranger.kill();
        let _ = stranger.wait();
    }
}
