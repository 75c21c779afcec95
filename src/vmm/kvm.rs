//! Opening `/dev/kvm` and checking that it can run a stock Linux guest.

use std::io::BufRead;
use std::path::Path;

use kvm_ioctls::{Cap, Kvm};

/// Errors of reaching KVM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "/dev/kvm does not exist: this host has no KVM. Load the kvm_intel or kvm_amd module \
         (and enable VT-x/AMD-V in the firmware), or run gureum on a host with KVM"
    )]
    NoDevice,
    #[error(
        "permission denied opening /dev/kvm: add your user to the group that owns it \
         (usually `kvm`: sudo usermod -aG kvm $USER, then log in again) or run as root"
    )]
    PermissionDenied,
    #[error("cannot open /dev/kvm: {0}")]
    Open(kvm_ioctls::Error),
    #[error("KVM API version {0} is not supported (gureum needs 12)")]
    ApiVersion(i32),
    #[error("this KVM lacks {0:?}, which gureum needs")]
    MissingCapability(Cap),
    #[error(
        "/dev/kvm here is not backed by hardware virtualization: the CPU has no vmx/svm flag{module}. \
         Such a KVM emulates every guest instruction and a stock Linux guest cannot boot on it. \
         Run gureum on a host with VT-x or AMD-V (bare metal, or a cloud VM with nested \
         virtualization); on this machine, scripts/rig/run runs gureum inside a nested KVM VM"
    )]
    NoHardwareVirtualization { module: String },
}

/// Capabilities the VMM relies on.
const REQUIRED_CAPS: [Cap; 6] = [
    Cap::Irqchip,
    Cap::Pit2,
    Cap::Irqfd,
    Cap::UserMemory,
    Cap::SetTssAddr,
    Cap::ExtCpuid,
];

/// Whether the first CPU flags line of `/proc/cpuinfo` text includes
/// VT-x or AMD-V.
pub fn cpuinfo_has_hardware_virtualization<I, L>(lines: I) -> bool
where
    I: IntoIterator<Item = L>,
    L: AsRef<str>,
{
    lines
        .into_iter()
        .find(|l| l.as_ref().starts_with("flags"))
        .is_some_and(|l| {
            l.as_ref()
                .split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        })
}

/// The KVM vendor modules loaded, for the error message.
fn loaded_kvm_modules() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/module") else {
        return Vec::new();
    };
    let mut mods: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with("kvm_"))
        .collect();
    mods.sort();
    mods
}

/// Checks that the host CPU offers hardware virtualization.
pub fn check_hardware_virtualization() -> Result<(), Error> {
    // Up to the first CPU's flags only: the kernel formats the file CPU
    // by CPU as it is read, and a large host has hundreds (issue 12: the
    // VMM's own start time).
    let lines = std::fs::File::open(Path::new("/proc/cpuinfo"))
        .map(|f| std::io::BufReader::new(f).lines().map_while(Result::ok));
    if lines.is_ok_and(cpuinfo_has_hardware_virtualization) {
        return Ok(());
    }
    let mods = loaded_kvm_modules();
    let module = if mods.is_empty() {
        String::new()
    } else {
        format!(" (KVM is provided by {})", mods.join(", "))
    };
    Err(Error::NoHardwareVirtualization { module })
}

/// Opens `/dev/kvm` and checks its API version and capabilities.
pub fn open() -> Result<Kvm, Error> {
    let kvm = Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENXIO | libc::ENODEV => Error::NoDevice,
        libc::EACCES | libc::EPERM => Error::PermissionDenied,
        _ => Error::Open(e),
    })?;
    let version = kvm.get_api_version();
    if version != 12 {
        return Err(Error::ApiVersion(version));
    }
    for cap in REQUIRED_CAPS {
        if !kvm.check_extension(cap) {
            return Err(Error::MissingCapability(cap));
        }
    }
    Ok(kvm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_vmx_and_svm_flags_only() {
        assert!(cpuinfo_has_hardware_virtualization(
            "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse\n".lines()
        ));
        assert!(cpuinfo_has_hardware_virtualization(
            "flags\t\t: fpu svm npt\n".lines()
        ));
        assert!(!cpuinfo_has_hardware_virtualization(
            "flags\t\t: fpu vme hypervisor avx512f\nvmx flags\t: ept\n".lines()
        ));
        assert!(!cpuinfo_has_hardware_virtualization("".lines()));
        // The first CPU's flags decide.
        assert!(!cpuinfo_has_hardware_virtualization(
            "flags\t\t: fpu\nflags\t\t: fpu svm\n".lines()
        ));
    }
}
