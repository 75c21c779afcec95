//! Where each VPC's DHCP and DNS server (the dnsmasq `gureum daemon`
//! runs in the VPC's namespace) keeps its files, and the record of its
//! process: a server outlives a daemon killed with SIGKILL, so the next
//! daemon, and the reconciler once its VPC is gone, find it by that
//! record and end it.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::cloud::Error;
use crate::cloud::process::ProcessRef;

/// The servers' directory, under the state directory `root`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("dns")
}

/// One VPC's server files.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub config: PathBuf,
    /// The `ProcessRef` of the running server, as JSON.
    pub process: PathBuf,
    /// What the server writes (one run's).
    pub log: PathBuf,
}

impl ServerFiles {
    pub fn of(dir: &Path, vpc: &str) -> Self {
        Self {
            config: dir.join(format!("{vpc}.conf")),
            process: dir.join(format!("{vpc}.process")),
            log: dir.join(format!("{vpc}.log")),
        }
    }

    /// The argument that names this configuration on a server's command
    /// line: how a recorded process is told from a recycled PID.
    pub fn config_arg(&self) -> String {
        format!("--conf-file={}", self.config.display())
    }

    /// Records the server that runs as `pid`.
    pub fn record(&self, pid: u32) -> Result<(), Error> {
        let Some(process) = ProcessRef::of(pid) else {
            // It has already ended: nothing to record.
            return Ok(());
        };
        let text = serde_json::to_string(&process).map_err(|e| Error::Io {
            what: "cannot record the process of",
            path: self.process.clone(),
            source: std::io::Error::other(e),
        })?;
        fs::write(&self.process, text).map_err(Error::io("cannot write", &self.process))
    }

    /// Ends the recorded server if it still runs this configuration, and
    /// removes every file. Says whether there was anything.
    pub fn end(&self) -> bool {
        let recorded = fs::read_to_string(&self.process)
            .ok()
            .and_then(|text| serde_json::from_str::<ProcessRef>(&text).ok());
        if let Some(process) = recorded {
            if runs(&process, &self.config_arg()) {
                process.signal(Signal::SIGKILL);
            }
        }
        // Every file goes: no short cut after the first.
        let removed: Vec<bool> = [&self.process, &self.config, &self.log]
            .into_iter()
            .map(|path| fs::remove_file(path).is_ok())
            .collect();
        removed.contains(&true)
    }
}

/// Whether `process` still runs with `arg` on its command line (a
/// recycled PID is someone else's, and never touched).
fn runs(process: &ProcessRef, arg: &str) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{}/cmdline", process.pid)) else {
        return false;
    };
    process.is_alive() && cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes())
}

/// The VPCs that have server files in `dir`.
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

    #[test]
    fn a_recorded_process_is_ended_only_while_it_runs_its_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServerFiles::of(dir.path(), "vpc-1");
        fs::write(&files.config, "x").unwrap();
        // A process that runs something else under a recorded PID.
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        files.record(other.id()).unwrap();
        assert_eq!(recorded(dir.path()), ["vpc-1"]);
        assert!(files.end());
        assert!(other.try_wait().unwrap().is_none(), "a stranger was ended");
        let _ = other.kill();
        let _ = other.wait();
        // One whose command line names the configuration.
        fs::write(&files.config, "x").unwrap();
        let mut server = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", &files.config_arg()])
            .spawn()
            .unwrap();
        // Until the child has executed sh, its command line is the test's.
        let process = ProcessRef::of(server.id()).unwrap();
        let started = std::time::Instant::now();
        while !runs(&process, &files.config_arg()) {
            assert!(started.elapsed().as_secs() < 10, "sh never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        files.record(server.id()).unwrap();
        assert!(files.end());
        assert!(
            server.wait().unwrap().code().is_none(),
            "killed by a signal"
        );
        assert!(recorded(dir.path()).is_empty());
        assert!(!files.end());
    }
}
