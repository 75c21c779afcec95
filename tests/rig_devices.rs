//! End-to-end: virtio-blk and virtio-net seen by a stock Debian kernel,
//! inside the nested KVM rig. The guest finds the devices through the
//! ACPI DSDT and Debian's own virtio modules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::OnceLock;

use common::{Case, RigRun};

fn rig() -> &'static RigRun {
    static RUN: OnceLock<RigRun> = OnceLock::new();
    RUN.get_or_init(|| common::run("tests/rig/devices.sh", &["--timeout", "900"]))
}

/// The rest of the line after `key`, e.g. `@@VDB-RO 1` gives "1". The key
/// may follow a guest console line the VMM's exit cut short.
fn value<'a>(case: &'a Case, key: &str) -> Option<&'a str> {
    case.output
        .lines()
        .find_map(|l| l.find(key).map(|at| &l[at + key.len()..]))
        .map(str::trim)
}

#[test]
fn disk_is_read_and_written_and_read_only_is_enforced() {
    let case = rig().case("disk");
    assert_eq!(case.rc, 0, "{}", case.output);
    assert_eq!(
        value(case, "@@VDA-SECTORS"),
        Some("131072"),
        "64 MiB in sectors"
    );
    assert_eq!(
        value(case, "@@VDA-READ"),
        Some("GUREUM-DISK-OK"),
        "{}",
        case.output
    );
    assert_eq!(
        value(case, "@@HOST-READ"),
        Some("GUEST-WROTE-THIS"),
        "{}",
        case.output
    );
    assert_eq!(value(case, "@@VDB-RO"), Some("1"), "{}", case.output);
    assert_eq!(
        value(case, "@@VDB-WRITE"),
        Some("refused"),
        "{}",
        case.output
    );
    assert_eq!(
        value(case, "@@HOST-VDB-BYTES"),
        Some("00"),
        "read-only disk unchanged"
    );
}

#[test]
fn network_reaches_the_host_both_ways_over_the_tap() {
    let case = rig().case("net");
    assert_eq!(case.rc, 0, "{}", case.output);
    assert_eq!(
        value(case, "@@MAC"),
        Some("02:00:00:00:00:2a"),
        "{}",
        case.output
    );
    assert_eq!(
        value(case, "@@PING"),
        Some("ok"),
        "guest to host: {}",
        case.output
    );
    assert_eq!(
        value(case, "@@HOST-PING"),
        Some("ok"),
        "host to guest: {}",
        case.output
    );
    assert_eq!(
        value(case, "@@TAP-LEFT"),
        Some("no"),
        "the VMM's tap is gone with it"
    );
}
