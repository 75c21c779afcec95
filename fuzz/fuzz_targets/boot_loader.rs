//! The kernel and initrd loaders: any kernel file (bzImage, ELF or
//! neither) and initrd is identified, checked against guest memory and
//! loaded, or refused with an error, without crashing.

#![no_main]

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use gureum::vmm::boot::smbios::{Platform, Uuid};
use gureum::vmm::boot::{BootFiles, BootSource};
use gureum::vmm::memory;
use libfuzzer_sys::fuzz_target;

/// An in-memory file holding `bytes`, and a path that opens it.
fn memfd(name: &str, bytes: &[u8]) -> (std::fs::File, PathBuf) {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::empty())
        .expect("a memfd");
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).expect("the memfd takes the bytes");
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    (file, path)
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how much of the tail is the initrd.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let initrd_len = usize::from(split).min(rest.len());
    let (kernel, initrd) = rest.split_at(rest.len() - initrd_len);
    let (_k, kernel_path) = memfd("kernel", kernel);
    let (_i, initrd_path) = memfd("initrd", initrd);
    let source = BootSource {
        kernel: kernel_path,
        initrd: (initrd_len > 0).then_some(initrd_path),
        cmdline: "console=ttyS0".into(),
    };
    let Ok(files) = BootFiles::open(&source) else {
        return;
    };
    if files.check_fits(32).is_err() {
        return;
    }
    let mem = memory::create(32).expect("32 MiB of guest memory");
    let platform = Platform {
        uuid: Uuid([0xec; 16]),
        product: "fuzz".into(),
        asset_tag: None,
    };
    let _ = files.load(&mem, 1, &[], &platform);
});
