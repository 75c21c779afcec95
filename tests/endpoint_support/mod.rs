//! A daemon serving the EC2 endpoint on a free port of 127.0.0.1, with
//! its own state directory and namespace prefix, and the real aws CLI
//! (and boto3) pointed at it. The aws CLI comes from the virtualenv
//! `scripts/setup-deps` makes (`ensure_aws_cli` in scripts/lib/common.sh).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli_support::{self, Gureum};

/// A new access key of the account's root in `host`'s store, as `gureum
/// iam create-access-key -o json` hands it out (the secret this once).
fn root_access_key(host: &Host) -> (String, String) {
    let out = host
        .command(&["iam", "create-access-key", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gureum iam create-access-key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = &made["AccessKey"];
    (
        key["AccessKeyId"].as_str().unwrap().to_owned(),
        key["SecretAccessKey"].as_str().unwrap().to_owned(),
    )
}

/// A daemon with the EC2 endpoint, and the ways to call it.
pub struct Host {
    pub state: tempfile::TempDir,
    pub work: tempfile::TempDir,
    pub prefix: String,
    pub port: u16,
    pub region: String,
    bin: PathBuf,
    daemon: Option<Child>,
    /// The root's access key every request is signed with.
    key: (String, String),
}

impl Host {
    /// Starts the daemon; returns once the endpoint accepts connections.
    pub fn start(region: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut host = Self {
            state: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            prefix: cli_support::unique_prefix("gep"),
            port,
            region: region.to_owned(),
            bin: cli_support::aws_bin_dir(),
            daemon: None,
            key: (String::new(), String::new()),
        };
        host.start_daemon();
        host.key = root_access_key(&host);
        host
    }

    /// Starts the daemon (its log: a new one); returns once the endpoint
    /// accepts connections.
    fn start_daemon(&mut self) {
        let log = std::fs::File::create(self.work.path().join("daemon.log")).unwrap();
        let listen = format!("127.0.0.1:{}", self.port);
        let child = self
            // CPU figures every 5 s (not a minute): scaling on them is
            // tested in seconds.
            .command(&[
                "daemon",
                "--reconcile-every",
                "5",
                "--metrics-period",
                "5",
                "--listen",
                &listen,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon ended ({status}): {}", self.daemon_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the endpoint never answered: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill_daemon(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill().unwrap();
            daemon.wait().unwrap();
        }
    }

    /// Starts the daemon again after `kill_daemon`.
    pub fn restart_daemon(&mut self) {
        self.kill_daemon();
        self.start_daemon();
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A program from the venv with the credentials and region set.
    pub fn tool(&self, program: &str) -> Command {
        let (key, secret) = &self.key;
        let mut command = Command::new(self.bin.join(program));
        command
            .current_dir(self.work.path())
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_PAGER", "")
            .env("GUREUM_ENDPOINT", self.endpoint())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        command
    }

    /// `aws --endpoint-url … ec2 ARGS --output json`.
    pub fn aws(&self, args: &[&str]) -> Output {
        self.tool("aws")
            .args([
                "--endpoint-url",
                &self.endpoint(),
                "--output",
                "json",
                "ec2",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    /// An aws command that must succeed; its JSON (Null when it prints none).
    pub fn ec2(&self, args: &[&str]) -> Value {
        let out = self.aws(args);
        assert!(
            out.status.success(),
            "aws ec2 {args:?} failed: {}\ndaemon: {}",
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// An aws command that must fail; the EC2 error code it names.
    pub fn ec2_error(&self, args: &[&str]) -> String {
        let out = self.aws(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "aws ec2 {args:?} should fail");
        let code = stderr
            .split_once("An error occurred (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(code, _)| code.to_owned());
        code.unwrap_or_else(|| panic!("aws ec2 {args:?}: no error code in: {stderr}"))
    }
}

impl Gureum for Host {
    fn command(&self, args: &[&str]) -> Command {
        cli_support::host_command(self.state.path(), self.work.path(), &self.prefix, args)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        cli_support::end_dns_servers(self.state.path());
        cli_support::remove_namespaces(&self.prefix);
    }
}
