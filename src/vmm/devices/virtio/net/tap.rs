//! A Linux tap interface: the host end of a virtio-net device.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

nix::ioctl_write_ptr_bad!(tun_set_iff, 0x4004_54ca, IfReq);
nix::ioctl_write_int_bad!(tun_set_persist, 0x4004_54cb);
nix::ioctl_write_int_bad!(tun_set_offload, 0x4004_54d0);

/// Errors of opening a tap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tap name {0:?} is invalid: it must be 1 to 15 characters without '/', ' ' or ':'")]
    InvalidName(String),
    #[error("cannot open /dev/net/tun: {0} (is the tun module loaded?)")]
    OpenTun(std::io::Error),
    #[error(
        "cannot attach to tap {name}: {source}; gureum needs CAP_NET_ADMIN (run as root) \
         or a tap created for this user (ip tuntap add {name} mode tap user $USER)"
    )]
    Attach { name: String, source: nix::Error },
    #[error(
        "network namespace {0} does not exist: the instance's VPC is not in Linux \
         (a host reboot empties /run/netns); `gureum net restore` rebuilds it from its records"
    )]
    NoNetns(String),
    #[error(transparent)]
    Netns(crate::host::netns::Error),
    #[error(
        "tap {name} does not exist in network namespace {netns}: the control plane makes it \
         before the VM starts (`gureum instance start` does)"
    )]
    NoTap { name: String, netns: String },
    #[error("cannot make tap {name} persistent: {source}")]
    Persist { name: String, source: nix::Error },
}

/// An open tap interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() < libc::IFNAMSIZ && !name.contains(['/', ' ', ':', '\0'])
}

impl Tap {
    /// Opens tap `name`, creating it (for as long as this process holds
    /// it) when it does not exist yet.
    pub fn open(name: &str) -> Result<Self, Error> {
        if !valid_name(name) {
            return Err(Error::InvalidName(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(Error::OpenTun)?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
            *dst = src;
        }
        // SAFETY: `file` is an open tun control fd and `req` a properly
        // sized, initialised ifreq that outlives the call.
        unsafe { tun_set_iff(file.as_raw_fd(), &req) }.map_err(|source| Error::Attach {
            name: name.to_string(),
            source,
        })?;
        // The device negotiates no offloads and reads no virtio-net header:
        // an existing tap may still have checksum/TSO offloads on from its
        // last user (QEMU sets them), and would then hand us frames with
        // unfinished checksums. Seen in the SSH benchmark after a QEMU boot.
        // SAFETY: `file` is the tun fd just attached; TUNSETOFFLOAD takes
        // its flags by value.
        unsafe { tun_set_offload(file.as_raw_fd(), 0) }.map_err(|source| Error::Attach {
            name: name.to_string(),
            source,
        })?;
        Ok(Self {
            file,
            name: name.to_string(),
        })
    }

    /// Opens the existing tap `name` in the named network namespace
    /// `netns`. setns(2) moves only the calling thread, so this is done on
    /// a short-lived thread of its own: the VMM's other threads stay where
    /// they are, and the fd keeps its tap whichever thread uses it.
    pub fn open_in(name: &str, netns: &str) -> Result<Self, Error> {
        use crate::host::netns::{Error as NetnsError, Netns};
        if !valid_name(name) {
            return Err(Error::InvalidName(name.to_string()));
        }
        let namespace = Netns::open(netns).map_err(|e| match e {
            NetnsError::Missing(_) | NetnsError::BadName(_) => Error::NoNetns(netns.to_string()),
            other => Error::Netns(other),
        })?;
        namespace
            .run(|| {
                // TUNSETIFF would make a missing tap: it must exist, as it
                // is the port the VPC filters.
                let c_name = std::ffi::CString::new(name)
                    .map_err(|_| Error::InvalidName(name.to_string()))?;
                // SAFETY: `c_name` is a valid NUL-terminated string that
                // outlives the call.
                if unsafe { libc::if_nametoindex(c_name.as_ptr()) } == 0 {
                    return Err(Error::NoTap {
                        name: name.to_string(),
                        netns: netns.to_string(),
                    });
                }
                Self::open(name)
            })
            .map_err(Error::Netns)?
    }

    /// Makes the tap outlive this fd (and the process), or not.
    pub fn set_persistent(&self, on: bool) -> Result<(), Error> {
        // SAFETY: `file` is an attached tun fd; TUNSETPERSIST takes an
        // int by value.
        unsafe { tun_set_persist(self.file.as_raw_fd(), libc::c_int::from(on)) }
            .map(drop)
            .map_err(|source| Error::Persist {
                name: self.name.clone(),
                source,
            })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame; `WouldBlock` when none is waiting.
    pub fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame.
    pub fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize> {
        (&self.file).write(frame)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_the_kernel_sees_them() {
        for bad in ["", "a/b", "with space", "way-too-long-name0", "a:b"] {
            assert!(
                matches!(Tap::open(bad), Err(Error::InvalidName(_))),
                "{bad}"
            );
        }
        assert!(valid_name("tap0"));
        assert!(valid_name("gr-i-0123456789"));
    }

    #[test]
    fn a_missing_namespace_points_to_net_restore() {
        let netns = format!("grt{}-no-such-vpc", std::process::id());
        let error = Tap::open_in("t-0000000000000", &netns).unwrap_err();
        assert!(matches!(error, Error::NoNetns(_)), "{error}");
        assert!(
            error.to_string().contains("`gureum net restore`"),
            "{error}"
        );
    }
}
