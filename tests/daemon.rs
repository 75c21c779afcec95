//! `gureum daemon` as a user runs it: started on a private state
//! directory, driven through the CLI, compared with the same commands run
//! in-process, killed with SIGKILL and started again. Needs root, `ip`
//! and `nft` (a VPC is made, in namespaces with this test's prefix).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gureum::cloud::process::ProcessRef;
use serde_json::Value;

mod cli_support;

use cli_support::Gureum;

/// A private state directory and namespace prefix, and the daemon
/// serving them (killed, and the namespaces removed, when dropped).
struct Host {
    state: tempfile::TempDir,
    work: tempfile::TempDir,
    prefix: String,
    daemon: Option<Child>,
}

impl Host {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            prefix: cli_support::unique_prefix("gdt"),
            daemon: None,
        }
    }

    fn socket(&self) -> PathBuf {
        self.state.path().join("gureum.sock")
    }

    /// Whether a daemon answers on the socket.
    fn answers(&self) -> bool {
        UnixStream::connect(self.socket()).is_ok()
    }

    /// Starts `gureum daemon` (a reconcile pass every second) and
    /// returns once its socket answers.
    fn start_daemon(&mut self) {
        let log = std::fs::File::create(self.work.path().join("daemon.log")).unwrap();
        let child = self
            .command(&["daemon", "--reconcile-every", "1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let start = Instant::now();
        while !self.answers() {
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon ended ({status}): {}", self.daemon_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the daemon never answered: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    fn kill_daemon(&mut self) {
        let mut child = self.daemon.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `gureum ARGS` run in its own process: the socket it is given
    /// does not exist.
    fn in_process(&self, args: &[&str]) -> Command {
        let mut all = vec!["--socket", "/nonexistent/gureum.sock"];
        all.extend(args);
        self.command(&all)
    }

    /// The JSON `args` print through the daemon and in-process.
    fn both_json(&self, args: &[&str]) -> (Value, Value) {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let local = self.in_process(&all).output().unwrap();
        assert!(local.status.success(), "{args:?} in-process failed");
        (
            self.json(args),
            serde_json::from_slice(&local.stdout).unwrap(),
        )
    }

    fn record(&self, id: &str) -> Value {
        cli_support::read_record(self.state.path(), id)
    }

    /// Waits until the stored record of `id` satisfies `pred` (read from
    /// the store, so that no command reconciles it).
    fn await_record(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let v = self.record(id);
            if pred(&v) {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "timed out: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// Imports a stand-in image (a kernel the VMM refuses: its instances
/// stop at once) and returns the ID of an instance launched with `extra`
/// flags, stopped. It
/// has no network: what the daemon does with VPCs is tested with named
/// ones, and the endpoint's tests launch into the default VPC through it.
fn stopped_instance(host: &Host, extra: &[&str]) -> String {
    if host.json(&["image", "list"]).as_array().unwrap().is_empty() {
        let src = cli_support::image_source(host.work.path(), "tiny", "");
        host.ok(&["image", "import", src.to_str().unwrap()]);
    }
    let id = host.run_stand_in(&[&["--image", "tiny", "--no-network"][..], extra].concat());
    let out = host.ok(&["instance", "wait", &id, "--state", "stopped"]);
    assert_eq!(out, format!("{id} stopped"));
    id
}

#[test]
fn the_daemon_answers_as_the_cli_does_in_process() {
    let mut host = Host::new();
    host.start_daemon();

    // Its socket is the access boundary: this user's only.
    let meta = std::fs::metadata(host.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    assert!(
        host.ok(&["daemon", "--check"])
            .starts_with("a daemon answers on")
    );

    // Changes through the daemon.
    host.ok(&["key", "create", "k1", "--tag", "env=dev"]);
    assert!(host.work.path().join("k1.pem").exists());
    let id = stopped_instance(&host, &[]);
    host.ok(&["template", "create", "--name", "small", "--image", "tiny"]);
    host.ok(&["vpc", "create", "--cidr", "10.0.0.0/16", "--name", "v"]);
    host.ok(&[
        "subnet",
        "create",
        "--vpc",
        "v",
        "--cidr",
        "10.0.1.0/24",
        "--name",
        "s",
    ]);
    host.ok(&["sg", "create", "--vpc", "v", "--name", "web"]);
    host.ok(&[
        "sg",
        "authorize-ingress",
        "web",
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--cidr",
        "0.0.0.0/0",
    ]);

    // They went through the daemon: a CLI with an empty state directory
    // of its own sees them on the daemon's socket.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = cli_support::gureum(elsewhere.path(), &["key", "list", "-o", "json"])
        .arg("--socket")
        .arg(host.socket())
        .output()
        .unwrap();
    assert!(out.status.success());
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys[0]["name"], "k1");
    assert!(!elsewhere.path().join("gureum.db").exists());

    // The same store answers the same through the daemon and in-process.
    for args in [
        &["instance", "list"][..],
        &["instance", "describe", &id],
        &["instance", "list", "--filter", "state=stopped"],
        &["key", "list", "--tag", "env=dev"],
        &["key", "describe", "k1"],
        &["image", "list"],
        &["image", "describe", "tiny"],
        &["template", "list"],
        &["template", "describe", "small"],
        &["vpc", "list"],
        &["vpc", "describe", "v"],
        &["subnet", "list"],
        &["subnet", "describe", "s"],
        &["sg", "list"],
        &["sg", "describe", "web"],
        &["route-table", "list"],
        &["types"],
    ] {
        let (daemon, local) = host.both_json(args);
        assert_eq!(daemon, local, "{args:?}");
    }

    // Errors carry their category, as an exit status, and the same
    // message either way.
    for (code, args, says) in [
        (
            4,
            &["instance", "describe", "i-0123456789abcdef0"][..],
            "no instance",
        ),
        (3, &["vpc", "create", "--cidr", "10.0.0.0/8"], "/8"),
        (
            5,
            &["subnet", "create", "--vpc", "v", "--cidr", "10.0.1.0/25"],
            "overlap",
        ),
        (3, &["key", "list", "--filter", "bogus"], "not understood"),
        (5, &["instance", "reboot", &id], "not running"),
    ] {
        let err = host.fails_with(code, args);
        assert!(err.contains(says), "{args:?}: {err}");
        let local = host.in_process(args).output().unwrap();
        assert_eq!(local.status.code(), Some(code), "{args:?} in-process");
        assert_eq!(String::from_utf8(local.stderr).unwrap(), err);
    }
    // A taken key name: refused, and no private key file is left.
    let err = host.fails_with(5, &["key", "create", "k1", "--out", "other.pem"]);
    assert!(err.contains("is taken"), "{err}");
    assert!(!host.work.path().join("other.pem").exists());

    // A request that is not an action gets an error of its own category.
    let mut raw = UnixStream::connect(host.socket()).unwrap();
    raw.write_all(b"{\"action\": \"no-such-thing\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&raw).read_line(&mut reply).unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["error"]["category"], "invalid-input", "{reply}");

    // A second daemon on the same socket is refused; the first serves on.
    let second = host.command(&["daemon"]).output().unwrap();
    assert_eq!(second.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already answers"));
    assert!(host.answers());
}

#[test]
fn a_daemon_killed_with_sigkill_comes_back_adopts_instances_and_converges() {
    let mut host = Host::new();
    host.start_daemon();
    let adopted = stopped_instance(&host, &[]);
    let orphan = stopped_instance(&host, &[]);
    host.kill_daemon();

    // The socket file is left behind; nobody answers on it. The CLI runs
    // in-process.
    assert!(host.socket().exists() && !host.answers());
    let err = host.fails_with(4, &["daemon", "--check"]);
    assert!(err.contains("no daemon answers"), "{err}");
    assert_eq!(host.json(&["image", "list"])[0]["name"], "tiny");

    // While no daemon runs: one instance's supervisor is alive (a live
    // process stands in for it), the other's died.
    let mut supervisor = Command::new("sleep").arg("600").spawn().unwrap();
    let live = serde_json::to_value(ProcessRef::of(supervisor.id()).unwrap()).unwrap();
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    cli_support::edit_record(host.state.path(), &adopted, |v| {
        v["state"] = "running".into();
        v["supervisor"] = live;
    });
    cli_support::edit_record(host.state.path(), &orphan, |v| {
        v["state"] = "running".into();
        v["supervisor"] = serde_json::json!({"pid": dead_pid, "start_ticks": 1});
    });

    // Started again, it replaces the stale socket and reconciles before
    // it answers: the orphan is stopped, the live one adopted.
    host.start_daemon();
    let o = host.record(&orphan);
    assert_eq!(o["state"], "stopped");
    assert!(
        o["state_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("supervisor (pid {dead_pid}) is gone")),
        "{o}"
    );
    assert_eq!(host.record(&adopted)["state"], "running");
    let listed = host.json(&["instance", "list", "--filter", "state=running"]);
    assert_eq!(listed[0]["id"], adopted.as_str(), "{listed}");

    // Terminate returns at once; when the supervisor is gone, the
    // daemon's periodic pass finishes it.
    let out = host.ok(&["instance", "terminate", &adopted]);
    assert_eq!(out, format!("{adopted} shutting-down"));
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    let t = host.await_record(&adopted, |v| v["state"] == "terminated");
    assert!(
        t["state_reason"]
            .as_str()
            .unwrap()
            .starts_with("Client.UserInitiatedShutdown"),
        "{t}"
    );
    assert!(!host.state.path().join("instances").join(&adopted).exists());
}

/// The daemon's periodic pass terminates an instance whose owner (`run
/// --rm-with`) was killed, with no command run meanwhile: its files go.
#[test]
fn the_daemon_terminates_an_instance_whose_owner_was_killed() {
    let mut host = Host::new();
    host.start_daemon();
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let id = stopped_instance(&host, &["--rm-with", &owner.id().to_string()]);
    assert!(host.state.path().join("instances").join(&id).exists());
    owner.kill().unwrap();
    owner.wait().unwrap();
    let t = host.await_record(&id, |v| v["state"] == "terminated");
    assert!(
        t["state_reason"]
            .as_str()
            .unwrap()
            .contains("(run --rm), ended"),
        "{t}"
    );
    assert!(!host.state.path().join("instances").join(&id).exists());
}
