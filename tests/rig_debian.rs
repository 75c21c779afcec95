//! End-to-end: the Debian image (scripts/images/debian-image) inside the
//! nested KVM rig: its instances boot systemd from a virtio-blk root
//! disk, Debian's cloud-init configures them from the daemon's DHCP and
//! metadata service (address, name, key pair, user data), and OpenSSH's
//! client in L1 logs in with a key pair the EC2 endpoint made, through
//! the instance's VPC, while another key is refused. A file written in
//! the guest is on the disk of the image saved from it; the first image
//! stays as it was. The README's CI example runs as written (its blocks
//! extracted from README.md): a failing test's status and its report
//! come out and nothing is left, also of a job killed with SIGKILL.
//!
//! One rig run executes every case of tests/rig/debian.sh in order; each
//! test below asserts on its own case. Times (boot to SSH, the CI
//! example's steps) are printed, not asserted (the rig's emulation
//! inflates them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Case;

/// Builds the image (cached) and a payload holding its manifest and its
/// root disk as a sparse tar: the rig copies payloads into L1's RAM, and
/// a plain copy of the sparse disk would carry every hole as zeros.
fn payload() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/images/debian-image"))
        .status()
        .expect("run scripts/images/debian-image");
    assert!(built.success(), "scripts/images/debian-image failed");
    let image = root.join("target/images/debian");
    let dir = root.join("target/rig/payload-debian/debian");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.join("root.tar");
    let disk = image.join("root.img");
    let stale = |p: &Path| {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        mtime(p).is_none() || mtime(p) < mtime(&disk)
    };
    if stale(&tar) {
        let partial = dir.join("root.tar.partial");
        let status = Command::new("tar")
            .arg("-cSf")
            .arg(&partial)
            .arg("-C")
            .arg(&image)
            .arg("root.img")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar of the root disk failed");
        std::fs::rename(&partial, &tar).unwrap();
    }
    std::fs::copy(image.join("manifest"), dir.join("manifest")).unwrap();
    dir
}

/// The shell blocks of README.md between `<!-- NAME: begin` and
/// `<!-- NAME: end` lines: an indented code block, its indentation taken
/// off, blank lines dropped.
fn readme_block(readme: &str, name: &str) -> String {
    let begin = format!("<!-- {name}: begin");
    let end = format!("<!-- {name}: end");
    let lines: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with(&begin))
        .skip(1)
        .take_while(|l| !l.starts_with(&end))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "README.md has no block {name}");
    let mut block = String::new();
    for line in lines {
        let code = line.strip_prefix("    ");
        assert!(
            code.is_some(),
            "{name} in README.md: not an indented code line: {line}"
        );
        block.push_str(code.unwrap());
        block.push('\n');
    }
    block
}

/// The README's CI example, as written, for the rig: `setup.sh` (the key
/// pair, once) and `job.sh` (the job).
fn ci_example_payload() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dir = root.join("target/rig/payload-ci/ci-example");
    std::fs::create_dir_all(&dir).unwrap();
    let job = readme_block(&readme, "ci-example");
    let commands = job.lines().filter(|l| l.starts_with("gureum ")).count();
    assert_eq!(commands, 5, "the CI example is five commands:\n{job}");
    std::fs::write(
        dir.join("setup.sh"),
        readme_block(&readme, "ci-example-setup"),
    )
    .unwrap();
    std::fs::write(dir.join("job.sh"), job).unwrap();
    dir
}

common::rig_run!(
    "tests/rig/debian.sh",
    &[
        "--timeout",
        "1500",
        "--l1-memory",
        "3072",
        "--with-tools",
        "ssh scp tar nft debugfs curl dnsmasq",
        "--payload",
        payload().to_str().unwrap(),
        "--payload",
        ci_example_payload().to_str().unwrap(),
    ]
);

fn passed_with(name: &str, pairs: &[(&str, &str)]) -> &'static Case {
    rig().passed_with(name, pairs)
}

#[test]
fn the_debian_image_imports() {
    let case = passed_with("import", &[]);
    assert!(case.output.contains("debian-12"), "{}", case.output);
    passed_with("keys", &[]);
    passed_with("daemon", &[]);
}

/// The EC2 endpoint end to end: a VPC, subnet, security group and key
/// pair made through it (curl signs the requests), an instance launched
/// through it into them with user data, reached by `gureum ssh` with the
/// key pair it handed out.
#[test]
fn an_instance_launched_through_the_ec2_endpoint_boots_from_its_virtio_root_disk_and_accepts_its_key_pair()
 {
    let case = passed_with("run", &[("api_state", "running")]);
    let secs = case.values("boot_to_ssh_seconds");
    assert_eq!(secs.len(), 1, "{}", case.output);
    common::say(&format!(
        "rig_debian: RunInstances -> SSH login: {} s (rig time)",
        secs[0]
    ));
    passed_with(
        "ssh",
        &[
            ("hostname", "ip-10-9-1-10"),
            ("user", "admin"),
            ("sudo", "ok"),
            ("root", "/dev/vda"),
            ("failed_units", "none"),
            ("modprobe", "ok"),
            ("exit_status", "7"),
            ("copied_back", "HELLO"),
        ],
    );
}

/// Debian's cloud-init, unmodified and told nothing but the default
/// user's name, finds EC2 by itself (SMBIOS), takes the store's address
/// by DHCP, EC2's private name, the VPC resolver, and runs the user data.
#[test]
fn cloud_init_configures_the_instance_from_dhcp_and_the_metadata_service() {
    let case = passed_with(
        "cloud-init",
        &[
            ("store_ip", "10.9.1.10"),
            ("dhcp_address", "10.9.1.10"),
            ("address", "10.9.1.10"),
            ("hostname", "ip-10-9-1-10"),
            ("resolver", "10.9.0.2"),
            ("resolved", "10.9.1.9"),
            ("cloud_id", "aws"),
            ("user_data_file", "done"),
            ("user_data_console", "ran as root on ip-10-9-1-10"),
        ],
    );
    // ds-identify chose the datasource: EC2 first, nothing configured.
    let found = case.values("ds_identify").join("");
    assert!(found.starts_with("[ Ec2"), "{}", case.output);
    assert!(case.output.contains("status: done"), "{}", case.output);
}

#[test]
fn a_wrong_key_is_refused() {
    passed_with("wrong-key", &[("refused", "yes")]);
}

/// The guest shuts down on its power button; what it wrote before is on
/// the disk of the image saved from it (read with debugfs), host key
/// included; the first image's disk does not have it.
#[test]
fn an_image_saved_from_the_stopped_instance_has_the_file_and_the_first_image_does_not() {
    let case = passed_with("persist", &[("state", "stopped")]);
    let reason = case.values("reason").join("");
    assert!(reason.ends_with("(the guest shut down)"), "{}", case.output);
    passed_with(
        "image-create",
        &[("marker", "gureum-was-here"), ("hostkey_kept", "yes")],
    );
    passed_with("original-image", &[("original_marker", "absent")]);
}

/// The README's CI example, as written, in the default VPC: `run --rm
/// --wait ssh` returns once SSH answers, the tree goes in, the failing
/// tests' status is the job's, the report comes out, and once the
/// instance is terminated nothing of it is left.
#[test]
fn the_readmes_ci_example_runs_as_written() {
    let case = passed_with(
        "ci-example",
        &[
            ("job_status", "3"),
            ("job_state", "terminated"),
            ("nothing_left", "yes"),
            ("ci_commands", "5"),
        ],
    );
    let report = case.values("report").join("");
    assert!(
        report.starts_with("<testsuite tests=\"2\" failures=\"1\" host=\"ip-172-31-"),
        "the report came out of an instance in the default VPC:\n{}",
        case.output
    );
    for line in case.output.lines().filter(|l| l.starts_with("ci_")) {
        common::say(&format!("rig_debian: CI example: {line} (rig time)"));
    }
}

/// A CI job killed with SIGKILL while `gureum run --rm` waits for SSH:
/// the instance is terminated, saying why, and nothing is left of it or
/// of the job's commands.
#[test]
fn a_ci_job_killed_with_sigkill_leaves_nothing() {
    let case = passed_with(
        "ci-example-killed",
        &[
            ("terminate_with", "the job's shell"),
            ("killed_state", "terminated"),
            ("reason_names_the_job", "yes"),
        ],
    );
    for line in case.output.lines().filter(|l| l.starts_with("killed_to")) {
        common::say(&format!("rig_debian: CI job killed: {line} (rig time)"));
    }
}
