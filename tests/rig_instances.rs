//! End-to-end: the instance lifecycle on real KVM, inside the nested KVM
//! rig (see scripts/rig/run): `gureum run` starts a busybox instance
//! detached under its supervisor; stop, start, reboot, a VMM killed with
//! SIGKILL and terminate are recorded as EC2 would, with nothing left
//! behind.
//!
//! One rig run executes every case of tests/rig/instances.sh in order;
//! each test below asserts on its own case.

mod common;

use common::Case;

common::rig_run!("tests/rig/instances.sh", &["--timeout", "900"]);

/// The case `name`, which must have passed all its checks.
fn passed(name: &str) -> &'static Case {
    rig().passed(name)
}

#[test]
fn the_busybox_image_imports() {
    let case = passed("import");
    assert!(case.output.contains("busybox"), "{}", case.output);
}

#[test]
fn run_starts_a_detached_instance_that_boots_to_its_init() {
    let case = passed("run");
    assert_eq!(case.values("state"), ["running"], "{}", case.output);
    assert!(case.output.contains("web-1"), "{}", case.output);
}

#[test]
fn stop_stops_the_vmm_and_removes_runtime_files() {
    let case = passed("stop");
    assert_eq!(case.values("state"), ["stopped"], "{}", case.output);
    let reason = case.values("reason").join("");
    assert!(reason.contains("UserInitiatedShutdown"), "{}", case.output);
}

#[test]
fn start_boots_a_stopped_instance_again() {
    let case = passed("start");
    assert_eq!(case.values("state"), ["running"], "{}", case.output);
    assert_eq!(case.values("boots"), ["2"], "{}", case.output);
}

#[test]
fn reboot_restarts_the_vmm_and_the_instance_stays_running() {
    let case = passed("reboot");
    assert_eq!(case.values("state"), ["running"], "{}", case.output);
    assert_eq!(case.values("boots"), ["3"], "{}", case.output);
}

#[test]
fn a_vmm_killed_with_sigkill_leaves_the_instance_stopped_with_a_reason_and_nothing_behind() {
    let case = passed("kill9");
    assert_eq!(case.values("state"), ["stopped"], "{}", case.output);
    let reason = case.values("reason").join("");
    assert!(reason.contains("killed by SIGKILL"), "{}", case.output);
}

#[test]
fn terminate_ends_the_instance_and_deletes_its_files() {
    let case = passed("terminate");
    assert_eq!(case.values("state"), ["terminated"], "{}", case.output);
}
