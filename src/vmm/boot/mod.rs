//! Putting a Linux kernel, its initrd, command line, boot parameters and
//! ACPI tables into guest memory, per the Linux x86 boot protocol.

pub mod acpi;
pub mod kernel;
pub mod params;
pub mod smbios;

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::loader::{Cmdline, load_cmdline};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::layout::{CMDLINE_ADDR, CMDLINE_MAX_SIZE};
use super::memory::{self, GuestMemory};

/// Linux's default `initrd_addr_max` for kernels that do not state one.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;

/// Errors of loading a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] kernel::Error),
    #[error("cannot read initrd {path}: {source}")]
    Initrd {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "guest memory of {memory_mib} MiB is too small for the kernel ({kernel_mib} MiB at boot) \
         and initrd ({initrd_mib} MiB); use --memory {suggested_mib} or more"
    )]
    MemoryTooSmall {
        memory_mib: u64,
        kernel_mib: u64,
        initrd_mib: u64,
        suggested_mib: u64,
    },
    #[error("the kernel command line is {len} bytes; the limit is {max} (shorten --cmdline)")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("invalid kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("cannot write the kernel command line to guest memory: {0}")]
    CmdlineWrite(linux_loader::loader::Error),
    #[error(transparent)]
    Params(#[from] params::Error),
    #[error(transparent)]
    Acpi(#[from] acpi::Error),
    #[error(transparent)]
    Smbios(#[from] smbios::Error),
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSource {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// The result of loading: where the vCPUs start.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    pub entry: GuestAddress,
    pub format: kernel::KernelFormat,
}

/// The kernel command line the guest gets: `user`'s, plus `pci=off`
/// unless it says something about PCI itself. The VM has no PCI bus (its
/// devices are virtio-mmio, described in ACPI), and without `pci=off`
/// Linux probes the config ports and scans bus 0 anyway: ~230 port-I/O
/// exits to the VMM per boot, each a round trip through the host.
/// (Firecracker adds the same when its PCI support is off.)
fn guest_cmdline(user: &str) -> String {
    // Kernel parameters end at a lone "--" (the rest is init's); quotes
    // group words, as the kernel's own parser has it.
    let mut in_quotes = false;
    let mut params_end = user.len();
    let mut mentions_pci = false;
    let mut start = None;
    for (i, c) in user.char_indices().chain([(user.len(), ' ')]) {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if !c.is_ascii_whitespace() || in_quotes {
            start.get_or_insert(i);
            continue;
        }
        let Some(s) = start.take() else { continue };
        let word = &user[s..i];
        if word == "--" {
            params_end = s;
            break;
        }
        mentions_pci |= word == "pci" || word.starts_with("pci=");
    }
    if mentions_pci {
        return user.to_owned();
    }
    let (params, rest) = user.split_at(params_end);
    let params = params.trim_end();
    let sep = if params.is_empty() { "" } else { " " };
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!(" {rest}")
    };
    format!("{params}{sep}pci=off{rest}")
}

fn mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

fn memory_too_small(memory_mib: u64, kernel_end: u64, initrd_len: u64) -> Error {
    Error::MemoryTooSmall {
        memory_mib,
        kernel_mib: mib_ceil(kernel_end),
        initrd_mib: mib_ceil(initrd_len),
        // Room for the kernel's own allocations after boot.
        suggested_mib: (mib_ceil(kernel_end.saturating_add(initrd_len)) + 64).next_multiple_of(64),
    }
}

/// An initrd file, opened.
#[derive(Debug)]
struct Initrd {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Initrd {
    fn open(path: &Path) -> Result<Self, Error> {
        let err = |source| Error::Initrd {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
        })
    }
}

/// The boot files, opened and checked, before any VM exists: bad input is
/// reported without touching KVM.
#[derive(Debug)]
pub struct BootFiles {
    kernel: kernel::KernelImage,
    kernel_footprint: u64,
    initrd: Option<Initrd>,
    cmdline: Cmdline,
    cmdline_len: usize,
}

impl BootFiles {
    /// Opens and identifies the kernel and initrd, checks the command line.
    pub fn open(source: &BootSource) -> Result<Self, Error> {
        let text = guest_cmdline(&source.cmdline);
        let cmdline = Cmdline::try_from(&text, CMDLINE_MAX_SIZE).map_err(|e| match e {
            linux_loader::cmdline::Error::TooLarge => Error::CmdlineTooLong {
                len: text.len(),
                max: CMDLINE_MAX_SIZE - 1,
            },
            other => Error::Cmdline(other),
        })?;
        let mut kernel = kernel::KernelImage::open(&source.kernel)?;
        let kernel_footprint = kernel.footprint_end()?;
        let initrd = source.initrd.as_deref().map(Initrd::open).transpose()?;
        Ok(Self {
            kernel,
            kernel_footprint,
            initrd,
            cmdline,
            cmdline_len: text.len(),
        })
    }

    fn initrd_len(&self) -> u64 {
        self.initrd.as_ref().map_or(0, |i| i.len)
    }

    /// Checks that kernel and initrd fit in `memory_mib` of guest RAM.
    pub fn check_fits(&self, memory_mib: u64) -> Result<(), Error> {
        let low_end = memory::low_ram_end(memory_mib.saturating_mul(1 << 20));
        let initrd_len = self.initrd_len();
        if self.kernel_footprint.saturating_add(initrd_len) > low_end {
            return Err(memory_too_small(
                memory_mib,
                self.kernel_footprint,
                initrd_len,
            ));
        }
        Ok(())
    }

    /// Loads everything the guest needs to start into `mem`.
    pub fn load(
        self,
        mem: &GuestMemory,
        vcpus: u8,
        virtio: &[acpi::VirtioMmioDevice],
        platform: &smbios::Platform,
    ) -> Result<BootInfo, Error> {
        let ram_bytes = mem.iter().map(GuestMemoryRegion::len).sum::<u64>();
        let memory_mib = ram_bytes >> 20;
        self.check_fits(memory_mib)?;
        let low_end = memory::low_ram_end(ram_bytes);
        let initrd_len = self.initrd_len();
        let too_small = |end| memory_too_small(memory_mib, end, initrd_len);
        let loaded = self.kernel.load(mem)?;

        let initrd = match self.initrd {
            Some(Initrd {
                ref path,
                mut file,
                len,
            }) => {
                let addr_max = loaded
                    .setup_header
                    .map(|h| u64::from(h.initrd_addr_max))
                    .filter(|&max| max != 0)
                    .unwrap_or(DEFAULT_INITRD_ADDR_MAX);
                let placement = params::place_initrd(len, loaded.end, low_end, addr_max)
                    .ok_or_else(|| too_small(loaded.end))?;
                let count = usize::try_from(len).map_err(|_| too_small(loaded.end))?;
                mem.read_exact_volatile_from(GuestAddress(placement.addr), &mut file, count)
                    .map_err(|e| Error::Initrd {
                        path: path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                Some(placement)
            }
            None => None,
        };

        load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &self.cmdline)
            .map_err(Error::CmdlineWrite)?;
        let rsdp_addr = acpi::write_tables(mem, vcpus, virtio)?;
        smbios::write_tables(mem, platform)?;
        let e820 = params::e820_map(mem);
        params::write(
            mem,
            &params::ZeroPage {
                kernel_header: loaded.setup_header,
                cmdline_len: self.cmdline_len,
                initrd,
                rsdp_addr,
                e820: &e820,
            },
        )?;
        Ok(BootInfo {
            entry: loaded.entry,
            format: loaded.format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pci_is_turned_off_unless_the_user_speaks_of_it() {
        assert_eq!(guest_cmdline("console=ttyS0"), "console=ttyS0 pci=off");
        assert_eq!(guest_cmdline(""), "pci=off");
        assert_eq!(guest_cmdline("pci=nomsi quiet"), "pci=nomsi quiet");
        assert_eq!(guest_cmdline("quiet pci=off"), "quiet pci=off");
        // Other parameters that merely start with "pci" are not PCI's.
        assert_eq!(guest_cmdline("pcie_aspm=off"), "pcie_aspm=off pci=off");
    }

    /// Found by the boot_loader fuzz target: an ELF whose PT_LOAD ends
    /// near 2^64 overflowed the "memory too small" advice.
    #[test]
    fn a_kernel_claiming_all_of_memory_is_refused_not_a_crash() {
        let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
        elf.resize(16, 0);
        for (value, size) in [
            (2u64, 2),
            (0x3e, 2),
            (1, 4),
            (0x100_0000, 8),
            (64, 8),
            (0, 8),
            (0, 4),
            (64, 2),
            (56, 2),
            (1, 2),
            (64, 2),
            (0, 2),
            (0, 2),
        ] {
            elf.extend_from_slice(&value.to_le_bytes()[..size]);
        }
        // One PT_LOAD at 16 MiB whose memsz runs to the end of the space.
        for (value, size) in [
            (1u64, 4),
            (5, 4),
            (120, 8),
            (0x100_0000, 8),
            (0x100_0000, 8),
            (4, 8),
            (u64::MAX - 0x10, 8),
            (0x1000, 8),
        ] {
            elf.extend_from_slice(&value.to_le_bytes()[..size]);
        }
        elf.extend_from_slice(&[0xf4, 0xeb, 0xfd, 0x90]);
        let mut kernel = tempfile::NamedTempFile::new().unwrap();
        kernel.write_all(&elf).unwrap();
        let mut initrd = tempfile::NamedTempFile::new().unwrap();
        initrd.write_all(&[0u8; 4096]).unwrap();
        let files = BootFiles::open(&BootSource {
            kernel: kernel.path().to_path_buf(),
            initrd: Some(initrd.path().to_path_buf()),
            cmdline: "console=ttyS0".into(),
        })
        .unwrap();
        let err = files.check_fits(32).unwrap_err();
        assert!(matches!(err, Error::MemoryTooSmall { .. }), "{err}");
    }
}
