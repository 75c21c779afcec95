//! End-to-end: the Debian image (scripts/images/debian-image) inside the
//! nested KVM rig: its instances boot systemd from a virtio-blk root
//! disk, Debian's cloud-init configures them from the daemon's DHCP and
//! metadata service (address, name, key pair, user data), and OpenSSH's
//! client in L1 logs in with a key pair from `gureum key create` through
//! the instance's VPC, while another key is refused. A file
//! written in the guest survives stop/start and `image create`; the
//! first image stays as it was.
//!
//! One rig run executes every case of tests/rig/debian.sh in order; each
//! test below asserts on its own case. The time from `gureum run` to a
//! successful SSH login is printed, not asserted (it is inflated by the
//! rig's emulation).

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

#[test]
fn an_instance_boots_from_its_virtio_root_disk_and_accepts_its_key_pair() {
    let case = passed_with("run", &[]);
    // `run --wait ssh` returned when SSH answered (unless the rig crashed
    // the guest meanwhile: then the case shows the retry).
    if !case.output.contains("@@RETRY") {
        assert_eq!(case.values("run_waited"), ["ssh"], "{}", case.output);
    }
    let secs = case.values("boot_to_ssh_seconds");
    assert_eq!(secs.len(), 1, "{}", case.output);
    eprintln!("gureum run -> SSH login: {} s (rig time)", secs[0]);
    passed_with(
        "ssh",
        &[
            ("hostname", "ip-172-31-0-4"),
            ("user", "admin"),
            ("sudo", "ok"),
            ("root", "/dev/vda"),
            ("exit_status", "7"),
            ("copied_back", "HELLO"),
        ],
    );
}

/// `gureum run` with no network flags: the instance is in the default
/// VPC, where Debian's cloud-init, unmodified and told nothing but the
/// default user's name, finds EC2 by itself (SMBIOS), takes the store's
/// address by DHCP, EC2's private name, the VPC resolver, and runs the
/// user data.
#[test]
fn cloud_init_configures_the_instance_from_dhcp_and_the_metadata_service() {
    let case = passed_with(
        "cloud-init",
        &[
            ("store_ip", "172.31.0.4"),
            ("dhcp_address", "172.31.0.4"),
            ("address", "172.31.0.4"),
            ("hostname", "ip-172-31-0-4"),
            ("resolver", "172.31.0.2"),
            ("resolved", "172.31.0.9"),
            ("cloud_id", "aws"),
            ("user_data_file", "done"),
            ("user_data_console", "ran as root on ip-172-31-0-4"),
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

#[test]
fn a_file_written_in_the_guest_survives_stop_and_start() {
    let case = passed_with(
        "persist",
        &[
            ("state", "stopped"),
            ("marker", "gureum-was-here"),
            ("hostkey_kept", "yes"),
        ],
    );
    // systemd shut the guest down on its power button.
    let reason = case.values("reason").join("");
    assert!(reason.ends_with("(the guest shut down)"), "{}", case.output);
}

#[test]
fn an_image_saved_from_the_instance_has_the_file_and_the_first_image_does_not() {
    passed_with("image-create", &[]);
    // The saved image's instance is the one the EC2 endpoint launches.
    passed_with("api", &[("new_marker", "gureum-was-here")]);
    passed_with("original-image", &[("original_marker", "absent")]);
}

/// The EC2 endpoint end to end: a VPC, subnet, security group and key
/// pair made through it (curl signs the requests), an instance launched
/// through it into them, reached by SSH with the key pair it handed out,
/// with its own EC2 name and host key.
#[test]
fn an_instance_launched_through_the_ec2_endpoint_is_reached_by_ssh_with_its_key_pair() {
    let case = passed_with(
        "api",
        &[
            ("api_state", "running"),
            ("new_hostname", "ip-10-9-1-10"),
            ("new_hostkey", "yes"),
        ],
    );
    let addresses = case.values("api_ssh_addresses").join(" ");
    assert!(addresses.contains("10.9.1.10"), "{}", case.output);
}
