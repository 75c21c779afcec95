//! What the control plane does with its files when they are not as it
//! left them (a damaged or foreign store, a corrupt record, image
//! manifests that point outside their directory) and what it makes of
//! odd input, as a user meets it: the real binary, a private state
//! directory.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod cli_support;

use cli_support::Gureum;

/// A private state directory (`state/`, not yet made) and a work
/// directory for the files a command reads.
///
/// Its instances need no network (`run --no-network`); a launch that
/// forgot to say so would make a default VPC in namespaces of its own
/// prefix, removed when it is dropped, never in the machine's.
struct Cloud {
    dir: tempfile::TempDir,
    prefix: String,
}

impl Cloud {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            prefix: cli_support::unique_prefix("gst"),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn store(&self) -> PathBuf {
        self.state().join("gureum.db")
    }

    fn work(&self) -> &Path {
        self.dir.path()
    }

    fn image_source(&self, name: &str, extra: &str) -> PathBuf {
        cli_support::image_source(self.work(), name, extra)
    }

    /// Whether `KIND list` shows nothing.
    fn none(&self, kind: &str) -> bool {
        self.json(&[kind, "list"]).as_array().unwrap().is_empty()
    }
}

impl Gureum for Cloud {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = cli_support::gureum(&self.state(), args);
        c.current_dir(self.work())
            .env("GUREUM_NET_PREFIX", &self.prefix);
        c
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        cli_support::remove_namespaces(&self.prefix);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_state_dir_and_store_are_private_whatever_the_umask() {
    let cloud = Cloud::new();
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" key list")
        .arg(env!("CARGO_BIN_EXE_gureum"))
        .env("GUREUM_STATE_DIR", cloud.state())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&cloud.state()), 0o700);
    assert_eq!(mode(&cloud.store()), 0o600);
    cloud.ok(&["key", "create", "k"]);
    for entry in std::fs::read_dir(cloud.state()).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn damaged_stores_are_refused_and_left_as_they_are() {
    let cases: [(&str, &[u8], &str); 3] = [
        ("empty", b"", "empty (0-byte) file"),
        (
            "garbage",
            b"#!/bin/sh\necho not a database\n",
            "not an SQLite database",
        ),
        ("truncated", b"SQLite format 3\0\x10\0", "is truncated"),
    ];
    for (what, bytes, says) in cases {
        let cloud = Cloud::new();
        std::fs::create_dir(cloud.state()).unwrap();
        std::fs::write(cloud.store(), bytes).unwrap();
        for args in [&["key", "list"][..], &["vpc", "list"], &["net", "check"]] {
            let err = cloud.fails(args);
            assert!(err.contains(says), "{what}: {args:?}: {err}");
            assert!(!err.contains("check that this user"), "{what}: {err}");
        }
        assert_eq!(std::fs::read(cloud.store()).unwrap(), bytes, "{what}");
    }
}

#[test]
fn a_foreign_sqlite_file_is_not_taken_for_a_store() {
    let cloud = Cloud::new();
    std::fs::create_dir(cloud.state()).unwrap();
    rusqlite::Connection::open(cloud.store())
        .unwrap()
        .execute_batch("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        .unwrap();
    let err = cloud.fails(&["image", "list"]);
    assert!(
        err.contains("not a gureum store") && err.contains("moz_places"),
        "{err}"
    );
}

#[test]
fn a_corrupt_record_is_named_skipped_by_lists_and_removable() {
    let cloud = Cloud::new();
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| cloud.ok(&["key", "create", name]))
        .collect();
    let bad = &ids[1];
    rusqlite::Connection::open(cloud.store())
        .unwrap()
        .execute(
            "UPDATE resources SET body = '{\"id\": ' WHERE id = ?1",
            [bad],
        )
        .unwrap();

    let out = cloud.run(&["key", "list", "--output", "json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "c"]);
    let warning = String::from_utf8(out.stderr).unwrap();
    assert!(
        warning.contains(bad.as_str()) && warning.contains("unreadable"),
        "{warning}"
    );

    let err = cloud.fails(&["key", "describe", bad]);
    assert!(
        err.contains(bad.as_str()) && err.contains(&format!("gureum key rm {bad}")),
        "{err}"
    );
    assert_eq!(cloud.ok(&["key", "rm", bad]), *bad);
    let out = cloud.run(&["key", "list"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn a_corrupt_image_record_is_removed_with_its_files() {
    let cloud = Cloud::new();
    let src = cloud.image_source("tiny", "");
    let id = cloud.ok(&["image", "import", src.to_str().unwrap()]);
    rusqlite::Connection::open(cloud.store())
        .unwrap()
        .execute("UPDATE resources SET body = 'null' WHERE id = ?1", [&id])
        .unwrap();
    let out = cloud.run(&["image", "list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&id));
    assert_eq!(cloud.ok(&["image", "rm", &id]), id);
    assert!(!cloud.state().join("images").join(&id).exists());
}

#[test]
fn image_files_must_be_inside_the_manifest_s_directory() {
    let cloud = Cloud::new();
    let secret = cloud.work().join("secret");
    std::fs::write(&secret, b"root:$6$hash:19000:0:99999:7:::\n").unwrap();
    let src = cloud.image_source("evil", "");
    std::os::unix::fs::symlink(&secret, src.join("link-out")).unwrap();
    std::os::unix::fs::symlink("initrd.cpio.gz", src.join("link-in")).unwrap();
    let cases = [
        ("root_disk=../secret", "climbs out with '..'"),
        (
            "root_disk=../../../../../../etc/shadow",
            "climbs out with '..'",
        ),
        ("root_disk=sub/../../secret", "climbs out with '..'"),
        ("root_disk=/etc/shadow", "is an absolute path"),
        ("root_disk=link-out", "outside it"),
    ];
    for (line, says) in cases {
        cli_support::image_source(cloud.work(), "evil", line);
        let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
        assert!(
            err.contains(says) && err.contains("root disk"),
            "{line}: {err}"
        );
    }
    assert!(cloud.none("image"));
    // A symlink that stays inside is fine.
    cli_support::image_source(cloud.work(), "evil", "root_disk=link-in");
    cloud.ok(&["image", "import", src.to_str().unwrap()]);
}

#[test]
fn image_import_refuses_an_empty_or_non_kernel_file() {
    let cloud = Cloud::new();
    let src = cloud.image_source("k", "");
    std::fs::write(src.join("vmlinuz"), b"").unwrap();
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(err.contains("kernel") && err.contains("is empty"), "{err}");

    std::fs::write(src.join("vmlinuz"), vec![0x5a; 8192]).unwrap();
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(err.contains("is not a Linux kernel"), "{err}");

    // A bzImage cut short: its header says how long it is.
    std::fs::write(src.join("vmlinuz"), &cli_support::stand_in_kernel()[..4096]).unwrap();
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(err.contains("is truncated"), "{err}");

    std::fs::write(src.join("vmlinuz"), cli_support::stand_in_kernel()).unwrap();
    std::fs::write(src.join("initrd.cpio.gz"), b"").unwrap();
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(err.contains("initrd") && err.contains("is empty"), "{err}");
    assert!(cloud.none("image"));
    let staging = cloud.state().join("staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "nothing staged is left"
    );
}

#[test]
fn names_tags_zones_and_descriptions_are_bounded_and_single_line() {
    let cloud = Cloud::new();
    let src = cloud.image_source("tiny", "");
    cloud.ok(&["image", "import", src.to_str().unwrap(), "--name", "ok"]);
    let forged = "web\ni-0000000000000000f  running";
    let long = "n".repeat(257);
    for (args, says) in [
        (vec!["run", "--name", forged], "control character '\\n'"),
        (vec!["run", "--name", &long], "longer than 256"),
        (
            vec!["key", "create", "k", "--tag", "env=a\rb"],
            "control character '\\r'",
        ),
        (
            vec!["vpc", "create", "--cidr", "10.9.0.0/16", "--name", forged],
            "control character",
        ),
        (
            vec![
                "subnet",
                "create",
                "--vpc",
                "v",
                "--cidr",
                "10.9.1.0/24",
                "--zone",
                "z\nz",
            ],
            "availability zone contains the control character",
        ),
        (
            vec![
                "subnet",
                "create",
                "--vpc",
                "v",
                "--cidr",
                "10.9.1.0/24",
                "--zone",
                "",
            ],
            "availability zone is empty",
        ),
        (
            vec![
                "sg",
                "create",
                "--vpc",
                "v",
                "--name",
                "g",
                "--description",
                &long,
            ],
            "group description has 257 characters; at most 255",
        ),
        (
            vec![
                "image",
                "import",
                src.to_str().unwrap(),
                "--description",
                "two\nlines",
            ],
            "image description contains the control character",
        ),
    ] {
        let err = cloud.fails(&args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(cloud.none("instance"));
    assert!(cloud.none("key"));
    assert!(cloud.none("vpc"));
}

/// Whether `reason` is a VMM's failure at start: on a host without
/// vmx/svm (this one) KVM is refused; elsewhere the stand-in kernel is.
fn vmm_failed_at_once(reason: &str) -> bool {
    reason.contains("the VMM failed")
        && (reason.contains("no vmx/svm") || reason.contains("cannot load kernel"))
}

#[test]
fn run_and_start_report_a_vmm_that_fails_at_once() {
    let cloud = Cloud::new();
    let src = cloud.image_source("tiny", "");
    cloud.ok(&["image", "import", src.to_str().unwrap()]);
    let out = cloud.run(&["run", "--count", "3", "--no-network"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids.len(), 3, "every ID is printed: {stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    for id in &ids {
        assert!(
            stderr.contains(&format!("instance {id} did not start")),
            "{stderr}"
        );
    }
    assert!(vmm_failed_at_once(&stderr), "{stderr}");
    // At once: the instances are already stopped with the reason.
    let listed = cloud.json(&["instance", "list"]);
    for i in listed.as_array().unwrap() {
        assert_eq!(i["state"], "stopped", "{i}");
        assert!(
            vmm_failed_at_once(i["state_reason"].as_str().unwrap()),
            "{i}"
        );
    }

    let err = cloud.fails(&["instance", "start", ids[0]]);
    assert!(
        err.contains(&format!("instance {} did not start", ids[0])) && vmm_failed_at_once(&err),
        "{err}"
    );
    let shown = cloud.json(&["instance", "describe", ids[0]]);
    assert_eq!(shown[0]["state"], "stopped");
    assert!(vmm_failed_at_once(
        shown[0]["state_reason"].as_str().unwrap()
    ));
}

#[test]
fn counts_are_n_or_min_max() {
    let cloud = Cloud::new();
    let src = cloud.image_source("tiny", "");
    cloud.ok(&["image", "import", src.to_str().unwrap()]);
    for (count, says) in [
        ("0", "the minimum must be at least 1"),
        ("5:2", "minimum above its maximum"),
        ("two", "is not N or MIN:MAX"),
        ("1:", "is not N or MIN:MAX"),
    ] {
        let out = cloud.run(&["run", "--count", count]);
        assert!(!out.status.success(), "{count}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{count}: {err}");
    }
    assert!(cloud.none("instance"));
    let made = cloud.run_stand_in(&["--no-network", "--count", "2:4"]);
    assert_eq!(made.lines().count(), 4, "{made}");
}

#[test]
fn only_a_permission_problem_gets_the_permission_hint() {
    let cloud = Cloud::new();
    cloud.ok(&["key", "list"]);
    // As another user (root reads everything), or as this one if not root.
    let as_user = |args: &[&str]| {
        let exe = env!("CARGO_BIN_EXE_gureum");
        // Owned by whoever made it: this process's user.
        let root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(cloud.work()).unwrap()) == 0;
        let mut c = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", exe]);
            c
        } else {
            Command::new(exe)
        };
        let out = c
            .args(args)
            .env("GUREUM_STATE_DIR", cloud.state())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(&cloud.state(), 0o755);
    set_mode(&cloud.store(), 0o000);
    let err = as_user(&["key", "list"]);
    assert!(
        err.contains("Permission denied") && err.contains("check that this user may read"),
        "{err}"
    );
    set_mode(&cloud.store(), 0o444);
    let err = as_user(&["key", "list"]);
    assert!(
        err.contains("for writing") && err.contains("check that this user may write"),
        "{err}"
    );
}
