//! End-to-end: virtio-blk and virtio-net seen by a stock Debian kernel,
//! inside the nested KVM rig. The guest finds the devices through the
//! ACPI DSDT and Debian's own virtio modules.

#![allow(clippy::panic)]

mod common;

common::rig_run!("tests/rig/devices.sh", &["--timeout", "600"]);

#[test]
fn disk_is_read_and_written_and_read_only_is_enforced() {
    let case = rig().case("disk");
    assert_eq!(case.rc, 0, "{}", case.output);
    assert_eq!(
        case.marker("@@VDA-SECTORS"),
        Some("131072"),
        "64 MiB in sectors"
    );
    assert_eq!(
        case.marker("@@VDA-READ"),
        Some("GUREUM-DISK-OK"),
        "{}",
        case.output
    );
    assert_eq!(
        case.marker("@@HOST-READ"),
        Some("GUEST-WROTE-THIS"),
        "{}",
        case.output
    );
    assert_eq!(case.marker("@@VDB-RO"), Some("1"), "{}", case.output);
    assert_eq!(
        case.marker("@@VDB-WRITE"),
        Some("refused"),
        "{}",
        case.output
    );
    assert_eq!(
        case.marker("@@HOST-VDB-BYTES"),
        Some("00"),
        "read-only disk unchanged"
    );
    // vda's rate limit held the guest back, and every request succeeded.
    assert!(count(case, "@@VDA-REQUESTS") > 0, "{}", case.output);
    assert!(count(case, "@@VDA-THROTTLED") > 0, "{}", case.output);
    assert_eq!(count(case, "@@VDA-ERRORS"), 0, "{}", case.output);
}

/// The number after marker `name`.
fn count(case: &common::Case, name: &str) -> u64 {
    case.marker(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing: {}", case.output))
}

#[test]
fn network_reaches_the_host_both_ways_over_the_tap() {
    let case = rig().case("net");
    assert_eq!(case.rc, 0, "{}", case.output);
    assert_eq!(
        case.marker("@@MAC"),
        Some("02:00:00:00:00:2a"),
        "{}",
        case.output
    );
    assert_eq!(
        case.marker("@@PING"),
        Some("ok"),
        "guest to host: {}",
        case.output
    );
    assert_eq!(
        case.marker("@@HOST-PING"),
        Some("ok"),
        "host to guest: {}",
        case.output
    );
    // The guest's flood arrived whole, held to the interface's 512 KiB/s:
    // with a bucket of one second, 4 MiB take at least 7 s; twice the
    // rate would mean the limit did not hold.
    assert_eq!(case.marker("@@FLOOD-SENT"), Some("0"), "{}", case.output);
    assert_eq!(count(case, "@@FLOOD-BYTES"), 4 << 20, "{}", case.output);
    assert!(count(case, "@@NET-THROTTLED") > 0, "{}", case.output);
    // Debian's driver took the offloads, mergeable receive buffers and
    // EVENT_IDX: CSUM, GUEST_CSUM, GUEST_TSO4/6, HOST_TSO4/6, MRG_RXBUF.
    let wanted: u64 = 1 | 1 << 1 | 1 << 7 | 1 << 8 | 1 << 11 | 1 << 12 | 1 << 15 | 1 << 29;
    let features = count(case, "@@NET-FEATURES");
    assert_eq!(features & wanted, wanted, "{features:#x}: {}", case.output);
    let millis = count(case, "@@FLOOD-MS").max(1);
    let rate = (4u64 << 20) * 1000 / millis;
    eprintln!("guest flood: 4 MiB in {millis} ms ({} KiB/s)", rate >> 10);
    assert!(rate < 2 * (512 << 10), "{rate} B/s: {}", case.output);
    assert_eq!(
        case.marker("@@TAP-LEFT"),
        Some("no"),
        "the VMM's tap is gone with it"
    );
}
