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
        Ok(Self {
            file,
            name: name.to_string(),
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
}
