//! `gureum boot` on bad input, run as a user would run it: a clear error
//! naming the problem, exit status 1, and no guest started.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gureum(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gureum"))
        .args(args)
        .output()
        .expect("run gureum")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A scratch directory for this test's files, removed when dropped.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A file with a valid 64-bit bzImage header and `total` bytes.
fn fake_bzimage(dir: &Path, total: usize) -> PathBuf {
    let mut img = vec![0u8; total];
    img[0x1f1] = 4; // setup_sects
    let syssize = u32::try_from((total - 5 * 512) / 16).unwrap();
    img[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = 1; // loadflags: LOADED_HIGH
    img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    img[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    img[0x260..0x264].copy_from_slice(&0x20_0000u32.to_le_bytes()); // init_size
    let path = dir.join("bzImage");
    std::fs::write(&path, img).unwrap();
    path
}

fn assert_fails_with(args: &[&str], needle: &str) {
    let out = gureum(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "no guest output expected");
}

#[test]
fn missing_kernel_file() {
    assert_fails_with(
        &["boot", "--kernel", "/nonexistent/vmlinuz"],
        "cannot read kernel /nonexistent/vmlinuz",
    );
}

#[test]
fn file_that_is_not_a_kernel() {
    let tmp = scratch();
    let dir = tmp.path();
    let path = dir.join("garbage");
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&path, noise).unwrap();
    assert_fails_with(
        &["boot", "--kernel", path.to_str().unwrap()],
        "is not a Linux kernel",
    );
    // A user-space program is not a kernel either.
    assert_fails_with(
        &["boot", "--kernel", env!("CARGO_BIN_EXE_gureum")],
        "is not a Linux kernel",
    );
}

#[test]
fn truncated_bzimage() {
    let tmp = scratch();
    let dir = tmp.path();
    let path = fake_bzimage(dir, 64 * 1024);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..40 * 1024]).unwrap();
    assert_fails_with(
        &["boot", "--kernel", path.to_str().unwrap()],
        "is truncated",
    );
}

#[test]
fn zero_vcpus_and_tiny_memory() {
    let tmp = scratch();
    let dir = tmp.path();
    let kernel = fake_bzimage(dir, 64 * 1024);
    let kernel = kernel.to_str().unwrap();
    assert_fails_with(
        &["boot", "--kernel", kernel, "--vcpus", "0"],
        "--vcpus must be at least 1",
    );
    assert_fails_with(
        &["boot", "--kernel", kernel, "--memory", "4"],
        "--memory 4 MiB is too small",
    );
}

#[test]
fn initrd_that_does_not_fit() {
    let tmp = scratch();
    let dir = tmp.path();
    let kernel = fake_bzimage(dir, 64 * 1024);
    let initrd = dir.join("initrd");
    let file = std::fs::File::create(&initrd).unwrap();
    file.set_len(40 << 20).unwrap(); // sparse, 40 MiB
    assert_fails_with(
        &[
            "boot",
            "--kernel",
            kernel.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
            "--memory",
            "32",
        ],
        "too small for the kernel",
    );
    assert_fails_with(
        &[
            "boot",
            "--kernel",
            kernel.to_str().unwrap(),
            "--initrd",
            "/nonexistent/initrd",
        ],
        "cannot read initrd /nonexistent/initrd",
    );
}

#[test]
fn host_without_hardware_virtualization_is_named_or_vcpu_limit_is_enforced() {
    let tmp = scratch();
    let dir = tmp.path();
    let kernel = fake_bzimage(dir, 64 * 1024);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    if gureum::vmm::kvm::cpuinfo_has_hardware_virtualization(cpuinfo.lines()) {
        // A real KVM host gets past the check to the next one.
        assert_fails_with(
            &[
                "boot",
                "--kernel",
                kernel.to_str().unwrap(),
                "--vcpus",
                "9999",
            ],
            "--vcpus 9999 is more than this host's KVM allows",
        );
    } else {
        assert_fails_with(
            &["boot", "--kernel", kernel.to_str().unwrap()],
            "not backed by hardware virtualization",
        );
    }
}

#[test]
fn a_jailed_vmm_reports_bad_input_through_its_keeper() {
    // The keeper outside the VMM's PID namespace ends with its status.
    let dir = scratch();
    let not_a_kernel = dir.path().join("kernel");
    std::fs::write(&not_a_kernel, b"hello").unwrap();
    assert_fails_with(
        &[
            "boot",
            "--jail",
            "1879048193",
            "--kernel",
            not_a_kernel.to_str().unwrap(),
        ],
        "is not a Linux kernel",
    );
    let out = gureum(&["boot", "--jail", "0", "--kernel", "/k"]);
    assert_eq!(out.status.code(), Some(2), "root is refused as usage");
    assert!(stderr(&out).contains("numbers other than 0"));
}

#[test]
fn the_seccomp_filters_print_and_a_bad_trip_is_refused() {
    let out = gureum(&["boot", "--print-seccomp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for kind in ["main (", "vcpu (", "worker (", "console (", "keeper ("] {
        assert!(text.contains(kind), "{kind} missing:\n{text}");
    }
    assert!(text.contains("ioctl (argument 1 one of: KVM_RUN"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_gureum"))
        .args(["boot", "--kernel", "/nonexistent"])
        .env("GUREUM_TEST_SECCOMP_TRIP", "everything")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("names no thread kind"),
        "{}",
        stderr(&out)
    );
}
