//! A Linux tap interface: the host end of a virtio-net device.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::vmm::devices::virtio::chain::Buffers;
use crate::vmm::memory::GuestMemory;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
/// Every frame read or written is preceded by a virtio-net header.
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// `virtio_net_hdr_v1` (virtio 1.x): flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset, num_buffers. The tap reads and writes the
/// first ten bytes and skips `num_buffers`.
pub const VNET_HDR_LEN: usize = 12;

/// Offloads a tap's reader accepts (TUNSETOFFLOAD): partial checksums,
/// TCP segmentation over IPv4 and IPv6, and with ECN.
pub const TUN_F_CSUM: u32 = 0x01;
pub const TUN_F_TSO4: u32 = 0x02;
pub const TUN_F_TSO6: u32 = 0x04;
pub const TUN_F_TSO_ECN: u32 = 0x08;
/// The TUNSETOFFLOAD request, for the seccomp filter of the thread that
/// activates the device.
pub const TUNSETOFFLOAD: u64 = 0x4004_54d0;

/// Most iovecs one readv or writev takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

nix::ioctl_write_ptr_bad!(tun_set_iff, 0x4004_54ca, IfReq);
nix::ioctl_write_int_bad!(tun_set_persist, 0x4004_54cb);
nix::ioctl_write_int_bad!(tun_set_offload, TUNSETOFFLOAD);
nix::ioctl_write_ptr_bad!(tun_set_vnet_hdr_sz, 0x4004_54d8, libc::c_int);

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
    #[error("cannot set the offloads of tap {name}: {source}")]
    Offload { name: String, source: nix::Error },
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
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
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
        // The header is virtio 1.x's, which has `num_buffers` (the tap's
        // default is the legacy 10 bytes).
        let attach_error = |source| Error::Attach {
            name: name.to_string(),
            source,
        };
        let hdr_len = libc::c_int::try_from(VNET_HDR_LEN)
            .map_err(|_| attach_error(nix::errno::Errno::EINVAL))?;
        // SAFETY: `file` is the tun fd just attached; TUNSETVNETHDRSZ reads
        // one int through the pointer, which points at `hdr_len`.
        unsafe { tun_set_vnet_hdr_sz(file.as_raw_fd(), &hdr_len) }.map_err(attach_error)?;
        let tap = Self {
            file,
            name: name.to_string(),
        };
        // No offloads until a driver accepts some: an existing tap may
        // still have them on from its last user (QEMU sets them).
        tap.set_offload(0)?;
        Ok(tap)
    }

    /// Sets the offloads (`TUN_F_*`) of the frames the tap hands over:
    /// only what the guest's driver accepted.
    pub fn set_offload(&self, flags: u32) -> Result<(), Error> {
        let error = |source| Error::Offload {
            name: self.name.clone(),
            source,
        };
        let flags = libc::c_int::try_from(flags).map_err(|_| error(nix::errno::Errno::EINVAL))?;
        // SAFETY: `file` is an attached tun fd; TUNSETOFFLOAD takes its
        // flags by value.
        unsafe { tun_set_offload(self.file.as_raw_fd(), flags) }
            .map(drop)
            .map_err(error)
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

    /// Reads one frame, its virtio-net header first, straight into the
    /// guest buffers `into`. Returns the frame's length with its header:
    /// more than `into` holds when the frame did not fit (it is then cut).
    /// `WouldBlock` when none is waiting.
    pub fn read_frame(&self, mem: &GuestMemory, into: &Buffers) -> std::io::Result<usize> {
        let mut iovs = into.iovecs(mem).ok_or(std::io::ErrorKind::InvalidInput)?;
        // One byte past the buffers: a frame that fills them and more
        // shows as longer than they are whether the kernel reports the
        // frame's length or what it copied.
        let mut spill = [0u8; 1];
        iovs.push(libc::iovec {
            iov_base: spill.as_mut_ptr().cast(),
            iov_len: spill.len(),
        });
        let count = iov_count(&iovs)?;
        // SAFETY: every iovec points into guest memory that `mem` maps
        // for as long as it lives (past this call), or at `spill`;
        // `count` is their number.
        let n = unsafe { libc::readv(self.file.as_raw_fd(), iovs.as_ptr(), count) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    /// Writes one frame: `header` (a virtio-net header), then the guest
    /// buffers `frame`, in one syscall without copying them.
    pub fn write_frame(
        &self,
        header: &[u8],
        mem: &GuestMemory,
        frame: &Buffers,
    ) -> std::io::Result<usize> {
        let mut iovs = vec![libc::iovec {
            iov_base: header.as_ptr().cast_mut().cast(),
            iov_len: header.len(),
        }];
        iovs.extend(frame.iovecs(mem).ok_or(std::io::ErrorKind::InvalidInput)?);
        let count = iov_count(&iovs)?;
        // SAFETY: every iovec points at `header` or into guest memory
        // that `mem` maps past this call; writev only reads them.
        let n = unsafe { libc::writev(self.file.as_raw_fd(), iovs.as_ptr(), count) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }
}

/// The iovec count for readv/writev; more than the kernel takes in one
/// call is refused (a frame is one syscall or none).
fn iov_count(iovs: &[libc::iovec]) -> std::io::Result<libc::c_int> {
    if iovs.len() > IOV_MAX {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    libc::c_int::try_from(iovs.len()).map_err(|_| std::io::ErrorKind::InvalidInput.into())
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
