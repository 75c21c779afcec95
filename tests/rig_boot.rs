//! End-to-end: gureum boots a stock Debian kernel on real KVM, inside the
//! nested KVM rig (see scripts/rig/run and ../shared/KVM-RIG.md).
//!
//! One rig run executes every case of tests/rig/boot.sh; each test below
//! asserts on its own case.

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use common::Case;

const EXIT_REBOOT: i32 = gureum::vmm::exit::Status::Reboot.code() as i32;
const EXIT_VMM_ERROR: i32 = gureum::vmm::exit::Status::VmmError.code() as i32;

common::rig_run!("tests/rig/boot.sh", &["--timeout", "600"]);

/// The number after the marker `key`, e.g. `@@CPUS 2`.
fn marker(case: &Case, key: &str) -> Option<u64> {
    case.marker(key)?.parse().ok()
}

fn assert_booted_with_two_cpus_and_512_mib(case: &Case) {
    assert_eq!(
        case.rc, 0,
        "gureum exits 0 on guest power-off:\n{}",
        case.output
    );
    assert!(case.output.contains("@@INIT"), "guest reached /init");
    assert_eq!(marker(case, "@@CPUS"), Some(2), "{}", case.output);
    let mem_kb = marker(case, "@@MEMTOTAL").expect("MemTotal printed");
    // MemTotal is RAM minus what the kernel reserves for itself: it must
    // fit in 512 MiB and be most of it.
    assert!(mem_kb <= 512 * 1024, "MemTotal {mem_kb} kB exceeds 512 MiB");
    assert!(
        mem_kb >= 400 * 1024,
        "MemTotal {mem_kb} kB is far below 512 MiB"
    );
}

/// What the guest read in /sys/class/dmi/id/`file`.
fn dmi<'a>(case: &'a Case, file: &str) -> &'a str {
    case.marker(&format!("@@DMI-{file}"))
        .unwrap_or_else(|| panic!("no {file}: {}", case.output))
}

#[test]
fn boots_debian_bzimage_with_2_vcpus_and_512_mib() {
    let case = rig().case("info-bzimage");
    assert_booted_with_two_cpus_and_512_mib(case);
    // Without an identity given, the machine is still "EC2" to the guest.
    assert_eq!(dmi(case, "sys_vendor"), "Amazon EC2", "{}", case.output);
    assert_eq!(dmi(case, "product_name"), "gureum");
    assert!(
        dmi(case, "product_uuid").starts_with("ec2"),
        "{}",
        case.output
    );
    assert_eq!(dmi(case, "board_asset_tag"), "");
}

#[test]
fn boots_debian_elf_vmlinux_with_2_vcpus_and_512_mib() {
    assert_booted_with_two_cpus_and_512_mib(rig().case("info-elf"));
}

#[test]
fn the_guests_smbios_tables_carry_the_instance_identity() {
    let case = rig().case("info-elf");
    assert_eq!(dmi(case, "sys_vendor"), "Amazon EC2", "{}", case.output);
    assert_eq!(dmi(case, "product_name"), "t3.micro");
    assert_eq!(
        dmi(case, "product_uuid"),
        "ec201234-5678-9abc-def0-000000000000"
    );
    assert_eq!(dmi(case, "board_asset_tag"), "i-0123456789abcdef0");
}

/// The guest names its CPU as the host does (the brand string in CPUID),
/// not by family and model number.
#[test]
fn the_guest_sees_the_hosts_cpu_model_name() {
    let host = rig().case("host");
    let host = host.marker("@@HOST-MODEL").unwrap_or_default();
    assert!(!host.is_empty(), "L1 names no CPU model");
    let case = rig().case("info-elf");
    assert_eq!(case.marker("@@MODEL"), Some(host), "{}", case.output);
}

#[test]
fn guest_reboot_request_gives_the_reboot_exit_code() {
    let case = rig().case("reboot");
    assert!(case.output.contains("@@REBOOTING"), "{}", case.output);
    assert_eq!(case.rc, EXIT_REBOOT, "{}", case.output);
}

#[test]
fn serial_console_shell_answers_stdin() {
    let case = rig().case("shell");
    assert!(case.output.contains("@@READY"), "{}", case.output);
    // The command line echoes as typed; only the shell computes 42.
    assert!(case.output.contains("HELLO-42"), "{}", case.output);
    assert_eq!(case.rc, 0, "poweroff from the shell: {}", case.output);
}

#[test]
fn corrupt_kernel_fails_with_a_clear_error() {
    let case = rig().case("corrupt-kernel");
    assert_eq!(case.rc, EXIT_VMM_ERROR, "{}", case.output);
    assert!(
        case.output.contains("is not a Linux kernel"),
        "{}",
        case.output
    );
    let case = rig().case("truncated-kernel");
    assert_eq!(case.rc, EXIT_VMM_ERROR, "{}", case.output);
    assert!(case.output.contains("is truncated"), "{}", case.output);
}
