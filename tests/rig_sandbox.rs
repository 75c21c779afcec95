//! End-to-end: the VMM's sandbox on real KVM, inside the nested KVM rig
//! (see scripts/rig/run). A busybox instance (t3.micro: 2 vCPUs, 1 GiB,
//! a NIC) runs with every VMM thread under a seccomp filter, jailed (own
//! PID and mount namespaces, empty root, unprivileged uid, no
//! capabilities, rlimits) in a cgroup with its type's limits; a syscall
//! outside a filter kills the VMM with SIGSYS and the instance stops with
//! that reason; cgroups go with their VMM, and one left by a crash of
//! everything goes at the next reconcile.
//!
//! One rig run executes every case of tests/rig/sandbox.sh in order;
//! each test below asserts on its own case.

#![allow(clippy::panic, clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::Case;
use gureum::vmm::sandbox::cgroup::VMM_OVERHEAD_MIB;

common::rig_run!(
    "tests/rig/sandbox.sh",
    &["--timeout", "900", "--with-tools", "ip"]
);

fn passed(name: &str) -> &'static Case {
    rig().passed(name)
}

fn value<'a>(case: &'a Case, key: &str) -> &'a str {
    match case.values(key)[..] {
        [v] => v,
        _ => panic!("no single {key}= in:\n{}", case.output),
    }
}

#[test]
fn the_instance_runs() {
    passed("import");
    let case = passed("run");
    assert!(case.output.contains("@@IDLE after"), "{}", case.output);
}

#[test]
fn every_thread_of_the_vmm_and_its_keeper_runs_under_a_seccomp_filter() {
    let case = passed("seccomp");
    assert_eq!(value(case, "unfiltered"), "0", "{}", case.output);
    let threads: Vec<&str> = case.values("thread");
    // The keeper; the VMM's main, 2 vCPUs, signal, console, the workers'
    // spawner and the NIC's worker threads.
    for name in [
        "vcpu0",
        "vcpu1",
        "signals",
        "console-sock",
        "virtio-spawn",
        "virtio-net",
    ] {
        assert!(
            threads.iter().any(|t| t.contains(name)),
            "no {name} thread:\n{}",
            case.output
        );
    }
    for thread in &threads {
        assert!(thread.contains("Seccomp=2"), "{thread}\n{}", case.output);
        assert!(!thread.ends_with("filters=0"), "{thread}");
    }
    // A worker carries the filter of the spawner that started it and its
    // own, not a vCPU's.
    let worker = threads.iter().find(|t| t.contains("virtio-net")).unwrap();
    assert!(worker.ends_with("filters=2"), "{worker}");
    assert!(
        case.output.contains("kill the process (SIGSYS)"),
        "{}",
        case.output
    );
}

#[test]
fn the_vmm_is_jailed_unprivileged_without_capabilities_in_its_own_namespaces() {
    let case = passed("jail");
    let uid = value(case, "uid");
    let ids: Vec<&str> = uid.split(' ').collect();
    assert_eq!(ids.len(), 4, "{uid}");
    assert!(ids.iter().all(|u| *u == ids[0] && *u != "0"), "{uid}");
    assert!(ids[0].parse::<u32>().unwrap() >= 0x7000_0000, "{uid}");
    assert_eq!(value(case, "gid"), uid, "{}", case.output);
    assert_eq!(value(case, "groups"), "", "{}", case.output);
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(value(case, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(value(case, "NoNewPrivs"), "1");
    // Pid 1 of its own PID namespace.
    assert!(value(case, "nspid").ends_with(" 1"), "{}", case.output);
    for ns in ["own_mnt", "own_pid", "own_ipc"] {
        assert_eq!(value(case, ns), "yes", "{ns}");
    }
    assert_eq!(value(case, "root_entries"), "0", "its root is empty");
    // The keeper stays root (it must signal the VMM) but is filtered too.
    assert_eq!(value(case, "keeper_uid"), "0");
    let core = case
        .output
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    let files = case
        .output
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let limit: u64 = files.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(limit < 1024, "{files}");
}

#[test]
fn the_cgroup_has_the_types_limits_and_holds_the_vmm() {
    let case = passed("cgroup");
    assert_eq!(value(case, "cpu.max"), "250000 100000");
    assert_eq!(
        value(case, "memory.max"),
        ((1024 + VMM_OVERHEAD_MIB) << 20).to_string()
    );
    let overhead_kb: i64 = value(case, "overhead_kb").parse().unwrap();
    assert!(
        overhead_kb < i64::try_from(VMM_OVERHEAD_MIB * 1024).unwrap(),
        "the VMM's overhead {overhead_kb} KiB is beyond the stated {VMM_OVERHEAD_MIB} MiB:\n{}",
        case.output
    );
}

#[test]
fn the_console_socket_and_log_serve_from_inside_the_jail() {
    let case = passed("console");
    assert_eq!(value(case, "state"), "running");
}

#[test]
fn the_metrics_file_is_replaced_from_inside_the_jail() {
    let case = passed("metrics");
    assert_eq!(value(case, "rewritten"), "yes", "{}", case.output);
    assert_eq!(
        value(case, "shown"),
        "yes",
        "instance metrics: {}",
        case.output
    );
}

#[test]
fn a_jailed_guest_shuts_down_on_its_power_button_and_its_cgroup_goes() {
    let case = passed("stop");
    assert_eq!(value(case, "state"), "stopped");
    assert!(
        value(case, "reason").ends_with("(the guest shut down)"),
        "{}",
        case.output
    );
}

#[test]
fn a_syscall_outside_a_filter_kills_the_vmm_with_sigsys() {
    for kind in ["vcpu", "console"] {
        let case = passed(&format!("trip-{kind}"));
        assert_eq!(value(case, "state"), "stopped");
        assert!(
            value(case, "reason").ends_with("the VMM was killed by SIGSYS"),
            "{}",
            case.output
        );
    }
}

#[test]
fn a_cgroup_left_by_a_crash_of_everything_goes_at_the_next_reconcile() {
    let case = passed("stale");
    assert_eq!(value(case, "left"), "yes", "{}", case.output);
    assert_eq!(value(case, "state"), "stopped");
    assert_eq!(value(case, "after_reconcile"), "no", "{}", case.output);
}

#[test]
fn terminate_leaves_no_cgroup_and_no_vmm() {
    let case = passed("terminate");
    assert_eq!(value(case, "state"), "terminated");
    assert_eq!(value(case, "left_cgroups"), "0");
    assert_eq!(value(case, "left_vmms"), "0");
}

#[test]
fn no_filter_refused_anything_but_the_trips() {
    let case = passed("audit");
    assert_eq!(value(case, "refused"), "2", "{}", case.output);
    assert_eq!(value(case, "unexpected"), "0", "{}", case.output);
}
