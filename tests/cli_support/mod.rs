//! What the tests of the control-plane commands share: running the real
//! binary against a test's private state directory, checking how a command
//! ended, and a stand-in image to import.

// Each test binary that includes this uses only some of it; the helpers
// fail the calling test by panicking, and are not themselves `#[test]`s,
// which clippy.toml already exempts.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// `gureum ARGS` with its store in `state`. Instances here run VMMs
/// that refuse their stand-in kernel on any host, with or without a
/// cgroup v2 to give them: they get none (tests/rig_sandbox.rs proves the
/// cgroups). Nor does the public side get a way out of this machine
/// (`GUREUM_UPLINK=none`): tests never touch the machine's network; the
/// uplink is tested from a namespace playing the host.
pub fn gureum(state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gureum"));
    command
        .args(args)
        .env("GUREUM_STATE_DIR", state)
        .env("GUREUM_CGROUP_PARENT", "off")
        .env("GUREUM_UPLINK", "none");
    command
}

/// `gureum ARGS` on a test host of its own: its state directory, working
/// directory and namespace prefix, and none of the caller's socket or
/// public pool settings.
pub fn host_command(state: &Path, work: &Path, prefix: &str, args: &[&str]) -> Command {
    let mut command = gureum(state, args);
    command
        .current_dir(work)
        .env("GUREUM_NET_PREFIX", prefix)
        .env_remove("GUREUM_SOCKET")
        .env_remove("GUREUM_PUBLIC_POOL")
        .env_remove("GUREUM_PUBLIC_ROUTER");
    command
}

/// A test's private setup, and the checked ways to run a command in it.
pub trait Gureum {
    /// `gureum ARGS` as this test runs it.
    fn command(&self, args: &[&str]) -> Command;

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run gureum")
    }

    /// Runs a command that must succeed; returns its stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gureum {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Runs a command that must fail with an error's exit status (1, or
    /// 3..=7 by category; not 2, bad usage); returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let code = out.status.code();
        assert!(
            matches!(code, Some(1 | 3..=7)),
            "gureum {args:?} should fail with an error's status, not {code:?}; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs `gureum run ARGS` with the stand-in image, whose VMM fails at
    /// once: it must make the instances, print them and fail saying why.
    /// Returns its stdout, trimmed (the IDs, or JSON with `--output json`).
    fn run_stand_in(&self, args: &[&str]) -> String {
        let mut all = vec!["run"];
        all.extend(args);
        let out = self.run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "gureum {all:?} should fail at VMM start; stderr: {stderr}"
        );
        assert!(
            stderr.contains("did not start") && stderr.contains("the VMM failed"),
            "{stderr}"
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Runs a command that must fail with exit status `code`; returns its
    /// stderr.
    fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(code), "gureum {args:?}: {stderr}");
        stderr
    }

    /// Runs a read command with `--output json`; its output.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }
}

/// A stand-in kernel: a 64-bit bzImage header, whole, so `image import`
/// takes it, but without the "loaded high" flag a loader needs, so the
/// VMM refuses to load it (on any host).
pub fn stand_in_kernel() -> Vec<u8> {
    let mut k = vec![0u8; 8192];
    k[0x1f1] = 4; // setup sectors: the kernel proper starts at 5 * 512
    k[0x1f4..0x1f8].copy_from_slice(&((8192u32 - 5 * 512) / 16).to_le_bytes());
    k[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // 64-bit entry
    k
}

/// An image source directory `src-NAME` under `parent`: a manifest (with
/// `extra` lines) and stand-in files, a kernel the VMM refuses.
pub fn image_source(parent: &Path, name: &str, extra: &str) -> PathBuf {
    let dir = parent.join(format!("src-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vmlinuz"), stand_in_kernel()).unwrap();
    std::fs::write(dir.join("initrd.cpio.gz"), b"initrd").unwrap();
    std::fs::write(
        dir.join("manifest"),
        format!(
            "# test image\nname={name}\ndescription=test\narch=x86_64\nkernel=vmlinuz\n\
             initrd=initrd.cpio.gz\ncmdline=console=ttyS0\nmin_memory_mib=128\n{extra}"
        ),
    )
    .unwrap();
    dir
}

/// Rewrites the stored body of resource `id` in the store in `state` with
/// `edit`, as a store edited by hand (or damaged, or forged) has it.
pub fn edit_record(state: &Path, id: &str, edit: impl FnOnce(&mut Value)) {
    let db = rusqlite::Connection::open(state.join("gureum.db")).unwrap();
    let body: String = db
        .query_row("SELECT body FROM resources WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap();
    let mut value: Value = serde_json::from_str(&body).unwrap();
    edit(&mut value);
    db.execute(
        "UPDATE resources SET body = ?1 WHERE id = ?2",
        [value.to_string().as_str(), id],
    )
    .unwrap();
}

/// The stored body of resource `id` in the store in `state`, read
/// directly (no command runs, so nothing reconciles it first).
pub fn read_record(state: &Path, id: &str) -> Value {
    let db = rusqlite::Connection::open(state.join("gureum.db")).unwrap();
    let body: String = db
        .query_row("SELECT body FROM resources WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace prefix no other test (or test process) uses:
/// `TAG`, this process's ID and a counter.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{tag}{}x{}-",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// The network namespaces whose names start with `prefix`, sorted.
pub fn namespaces(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Removes every network namespace whose name starts with `prefix`.
/// Ends the DHCP and DNS servers a test's daemon started for the store in
/// `state`: they outlive a daemon killed with SIGKILL (as they must in
/// use), and one the daemon was starting as it died is not yet in a
/// namespace `remove_namespaces` would find. CI saw such servers left
/// running after the endpoint tests.
pub fn end_dns_servers(state: &Path) {
    gureum::cloud::vpc::dns_server::end_all(&gureum::cloud::vpc::dns_server::dir(state));
}

pub fn remove_namespaces(prefix: &str) {
    for name in namespaces(prefix) {
        // What runs in them was started by the test's daemon (its DHCP
        // and DNS servers), which the test has already ended.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
    }
}

/// The venv's bin directory, as scripts/lib/common.sh names it; the
/// test fails, saying what to run, when the aws CLI is not there.
pub fn aws_bin_dir() -> PathBuf {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/common.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg("source \"$1\" && printf %s \"$AWS_VENV/bin\"")
        .arg("bash")
        .arg(lib)
        .output()
        .unwrap();
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap());
    assert!(
        dir.join("aws").is_file() && dir.join("python").is_file(),
        "no aws CLI in {}: run scripts/setup-deps",
        dir.display()
    );
    dir
}
