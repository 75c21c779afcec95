//! End-to-end: the instance lifecycle on real KVM, inside the nested KVM
//! rig (see scripts/rig/run): `gureum run` starts a busybox instance
//! detached under its supervisor; stop, start, reboot, a VMM killed with
//! SIGKILL and terminate are recorded as EC2 would, with nothing left
//! behind. Stop and reboot press the guest's ACPI power button: the guest
//! shuts down by itself, and one that ignores the button is killed after
//! the timeout. Stop, reboot and terminate return at once; `instance
//! wait` waits. A daemon killed with SIGKILL and started again adopts a
//! running instance.
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

/// What the command printed for the instance: `ID STATE`, at once.
fn assert_printed(case: &Case, key: &str, state: &str) {
    let printed = case.values(key).join("");
    assert!(
        printed.starts_with("i-") && printed.ends_with(&format!(" {state}")),
        "{key}={printed}, want 'ID {state}':\n{}",
        case.output
    );
}

#[test]
fn stop_returns_at_once_stopping_and_wait_sees_it_stopped() {
    let case = passed("stop");
    assert_printed(case, "stop_printed", "stopping");
}

#[test]
fn stop_stops_the_vmm_and_removes_runtime_files() {
    let case = passed("stop");
    assert_eq!(case.values("state"), ["stopped"], "{}", case.output);
    let reason = case.values("reason").join("");
    assert!(reason.contains("UserInitiatedShutdown"), "{}", case.output);
}

/// Asserts that the case printed `key=MS` once, with MS at least `min`.
fn assert_waited(case: &Case, key: &str, min: u64) {
    let ms: Option<u64> = match case.values(key)[..] {
        [value] => value.parse().ok(),
        _ => None,
    };
    assert!(
        ms.is_some_and(|ms| ms >= min),
        "{key}={ms:?}, want at least {min} ms:\n{}",
        case.output
    );
}

/// Asserts that the instance has booted `want` times, plus once for
/// each boot the rig script retried after a guest crash (nested SVM
/// under TCG triple-faults an L2 boot now and then; see /rig/cases.sh).
fn assert_boots(case: &Case, want: u32) {
    let number = |key| -> Option<u32> {
        match case.values(key)[..] {
            [value] => value.parse().ok(),
            _ => None,
        }
    };
    let (boots, retries) = (number("boots"), number("crash_retries"));
    assert!(
        boots.is_some() && boots == retries.map(|r| want + r),
        "boots={boots:?} crash_retries={retries:?}, want {want} + crash_retries:\n{}",
        case.output
    );
}

/// Asserts that a stop case left the instance stopped after `shutdowns`
/// shutdowns of its guest, with a reason ending in `how`.
fn assert_stopped(case: &Case, shutdowns: &str, how: &str) {
    assert_eq!(case.values("state"), ["stopped"], "{}", case.output);
    assert_eq!(case.values("shutdowns"), [shutdowns], "{}", case.output);
    let reason = case.values("reason").join("");
    assert!(reason.ends_with(how), "{}", case.output);
}

#[test]
fn stop_lets_the_guest_shut_down_on_its_power_button() {
    let case = passed("stop");
    // The guest's acpid ran its handler and its kernel powered off; the
    // VMM ended with the power-off status, which the reason reflects.
    assert_stopped(case, "1", "(the guest shut down)");
    assert_eq!(case.values("power_downs"), ["1"], "{}", case.output);
}

#[test]
fn start_boots_a_stopped_instance_again() {
    let case = passed("start");
    assert_eq!(case.values("state"), ["running"], "{}", case.output);
    assert_boots(case, 2);
}

#[test]
fn reboot_restarts_the_vmm_and_the_instance_stays_running() {
    let case = passed("reboot");
    assert_eq!(case.values("state"), ["running"], "{}", case.output);
    assert_boots(case, 3);
    // The guest shut down before it booted again (the stop's was the first).
    assert_eq!(case.values("shutdowns"), ["2"], "{}", case.output);
    assert_printed(case, "reboot_printed", "running");
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
    assert_printed(case, "terminate_printed", "shutting-down");
    assert_eq!(case.values("state"), ["terminated"], "{}", case.output);
}

#[test]
fn a_guest_that_ignores_its_power_button_is_killed_after_the_timeout() {
    let case = passed("deaf");
    assert_stopped(
        case,
        "0",
        "(the guest did not shut down; the VMM was killed by SIGKILL)",
    );
    // Killed after the 5 s timeout, not before.
    assert_waited(case, "stop_ms", 5_000);
}

/// EC2's InstanceInitiatedShutdownBehavior=terminate: a guest that
/// powers itself off takes its instance, and its files, with it.
#[test]
fn a_guest_power_off_terminates_an_instance_whose_shutdown_behavior_is_terminate() {
    let case = passed("shutdown-terminate");
    assert_eq!(case.values("state"), ["terminated"], "{}", case.output);
    let reason = case.values("reason").join("");
    assert!(
        reason.starts_with("Client.InstanceInitiatedShutdown"),
        "{}",
        case.output
    );
}

#[test]
fn a_daemon_killed_with_sigkill_and_started_again_adopts_the_running_instance() {
    let case = passed("daemon");
    assert_eq!(case.values("stale_socket"), ["yes"], "{}", case.output);
    assert_eq!(case.values("adopted_state"), ["running"], "{}", case.output);
    assert_printed(case, "daemon_stop_printed", "stopping");
    assert_eq!(case.values("state"), ["stopped"], "{}", case.output);
}

#[test]
fn nested_virtualization_gives_an_instance_a_kvm_of_its_own_only_when_asked() {
    let case = passed("nested");
    let one = |key: &str| {
        let values = case.values(key);
        assert_eq!(values.len(), 1, "{key}:\n{}", case.output);
        values[0]
    };
    assert!(
        ["svm", "vmx"].contains(&one("on_VIRT-FLAGS")),
        "{}",
        case.output
    );
    assert_eq!(one("on_DEV-KVM"), "yes", "{}", case.output);
    assert_eq!(
        one("on_KVM-HELLO"),
        "kvm-hello: guest said 42",
        "{}",
        case.output
    );
    assert_eq!(one("off_VIRT-FLAGS"), "", "{}", case.output);
    assert_eq!(one("off_DEV-KVM"), "no", "{}", case.output);
    assert!(
        one("off_KVM-HELLO").starts_with("kvm-hello: open /dev/kvm"),
        "{}",
        case.output
    );
    assert!(
        one("t3_refused").contains("does not offer nested virtualization"),
        "{}",
        case.output
    );
}
