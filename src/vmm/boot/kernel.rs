//! Recognising and loading a Linux kernel image: an ELF `vmlinux` or a
//! `bzImage`.
//!
//! linux-loader does the loading; this module first reads the headers
//! itself so that a file that is not an x86-64 Linux kernel gets an error
//! that says what the file is instead of a loader's "invalid magic".

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::GuestAddress;

use crate::vmm::layout::HIMEM_START;
use crate::vmm::memory::GuestMemory;

/// The bzImage's 64-bit entry point lies this far into the protected-mode
/// kernel (`startup_64`, Linux boot protocol 2.12+).
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// `xloadflags` bit: the kernel has the 64-bit entry point.
const XLF_KERNEL_64: u16 = 1 << 0;
/// First boot protocol version with `xloadflags`.
const BOOT_PROTOCOL_XLOADFLAGS: u16 = 0x020c;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;

/// Bytes read to identify a kernel: the whole bzImage setup header.
const HEADER_PROBE_LEN: usize = 0x280;

/// What a kernel file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF64 x86-64 `vmlinux`.
    Elf,
    /// A `bzImage` with a 64-bit entry point.
    BzImage,
}

/// Errors of kernel identification and loading.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kernel {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a Linux kernel (neither an ELF vmlinux nor a bzImage); \
         pass a vmlinuz/bzImage or an uncompressed vmlinux built for x86_64"
    )]
    NotAKernel { path: PathBuf },
    #[error(
        "{path} is a 32-bit ELF kernel; gureum boots 64-bit x86 kernels only \
         (use a kernel built for x86_64)"
    )]
    Elf32 { path: PathBuf },
    #[error("{path} is a big-endian ELF file, not an x86_64 kernel")]
    ElfBigEndian { path: PathBuf },
    #[error("{path} is a kernel for {arch}, not x86_64; use a kernel built for x86_64")]
    WrongArch { path: PathBuf, arch: String },
    #[error(
        "{path} is a bzImage without a 64-bit entry point (boot protocol {major}.{minor:02}, \
         32-bit only); use a kernel built for x86_64"
    )]
    BzImage32 { path: PathBuf, major: u8, minor: u8 },
    #[error(
        "{path} is truncated: its bzImage header announces {expected} bytes but the file has \
         {actual}; the file is corrupt, fetch the kernel again"
    )]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("cannot load kernel {path} into guest memory: {source}; the file may be corrupt")]
    Load {
        path: PathBuf,
        source: linux_loader::loader::Error,
    },
}

/// A kernel loaded into guest memory.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    /// Where the vCPU starts, in 64-bit mode.
    pub entry: GuestAddress,
    /// First byte after the memory the kernel occupies at boot, including
    /// what a bzImage needs to decompress itself (`init_size`).
    pub end: u64,
    /// The bzImage's setup header, to be copied into `boot_params`.
    pub setup_header: Option<setup_header>,
}

fn u16_at(buf: &[u8], offset: usize) -> Option<u16> {
    let bytes = buf.get(offset..offset + 2)?;
    Some(u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]))
}

fn u32_at(buf: &[u8], offset: usize) -> Option<u32> {
    let b = buf.get(offset..offset + 4)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Names the architecture of an ELF `e_machine` for error messages.
fn elf_machine_name(machine: u16) -> String {
    match machine {
        3 => "i386".into(),
        40 => "arm (32-bit)".into(),
        183 => "arm64 (aarch64)".into(),
        243 => "riscv".into(),
        8 => "mips".into(),
        20 | 21 => "powerpc".into(),
        22 => "s390".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Identifies the kernel format from the first bytes of the file and its
/// length. Pure, so that it can be tested on crafted headers.
pub fn identify(path: &Path, header: &[u8], file_len: u64) -> Result<KernelFormat, Error> {
    let path = path.to_path_buf();
    if header.starts_with(ELF_MAGIC) {
        match header.get(4) {
            Some(&ELFCLASS64) => {}
            Some(&ELFCLASS32) => return Err(Error::Elf32 { path }),
            _ => return Err(Error::NotAKernel { path }),
        }
        if header.get(5) != Some(&ELFDATA2LSB) {
            return Err(Error::ElfBigEndian { path });
        }
        return match u16_at(header, 18) {
            // A kernel is a fixed-address executable; shared objects and
            // PIE programs are not.
            Some(EM_X86_64) if u16_at(header, 16) != Some(ET_EXEC) => {
                Err(Error::NotAKernel { path })
            }
            Some(EM_X86_64) => Ok(KernelFormat::Elf),
            Some(machine) => Err(Error::WrongArch {
                path,
                arch: elf_machine_name(machine),
            }),
            None => Err(Error::NotAKernel { path }),
        };
    }
    // arm64 `Image`: magic "ARM\x64" at 0x38.
    if header.get(0x38..0x3c) == Some(b"ARM\x64".as_slice()) {
        return Err(Error::WrongArch {
            path,
            arch: "arm64 (aarch64 Image)".into(),
        });
    }
    // RISC-V `Image`: magic "RSC\x05" at 0x38.
    if header.get(0x38..0x3c) == Some(b"RSC\x05".as_slice()) {
        return Err(Error::WrongArch {
            path,
            arch: "riscv (Image)".into(),
        });
    }
    let is_bzimage =
        u16_at(header, 0x1fe) == Some(0xaa55) && header.get(0x202..0x206) == Some(b"HdrS");
    if !is_bzimage {
        return Err(Error::NotAKernel { path });
    }
    let version = u16_at(header, 0x206).unwrap_or(0);
    let xloadflags = u16_at(header, 0x236).unwrap_or(0);
    if version < BOOT_PROTOCOL_XLOADFLAGS || xloadflags & XLF_KERNEL_64 == 0 {
        let [minor, major] = version.to_le_bytes();
        return Err(Error::BzImage32 { path, major, minor });
    }
    // setup_sects at 0x1f1 (0 means 4), syssize (16-byte units) at 0x1f4.
    let setup_sects = match header.get(0x1f1) {
        Some(0) | None => 4,
        Some(&n) => u64::from(n),
    };
    let syssize = u64::from(u32_at(header, 0x1f4).unwrap_or(0));
    let expected = (setup_sects + 1) * 512 + syssize * 16;
    if file_len < expected {
        return Err(Error::Truncated {
            path,
            expected,
            actual: file_len,
        });
    }
    Ok(KernelFormat::BzImage)
}

const PT_LOAD: u32 = 1;

/// Where the loaded ELF image ends: the highest `p_paddr + p_memsz` of its
/// loadable segments. Pure, over the file's bytes read so far.
fn elf_footprint_end(file: &mut File, header: &[u8]) -> std::io::Result<u64> {
    let field = |off: usize| u64_at(header, off).unwrap_or(0);
    let phoff = field(32);
    let phentsize = u64::from(u16_at(header, 54).unwrap_or(0));
    let phnum = u64::from(u16_at(header, 56).unwrap_or(0));
    let mut end = 0u64;
    let mut phdr = [0u8; 56];
    for i in 0..phnum {
        file.seek(SeekFrom::Start(
            phoff.saturating_add(i.saturating_mul(phentsize)),
        ))?;
        file.read_exact(&mut phdr)?;
        if u32_at(&phdr, 0) == Some(PT_LOAD) {
            let paddr = u64_at(&phdr, 24).unwrap_or(0);
            let memsz = u64_at(&phdr, 40).unwrap_or(0);
            end = end.max(paddr.saturating_add(memsz));
        }
    }
    Ok(end)
}

fn u64_at(buf: &[u8], offset: usize) -> Option<u64> {
    let b = buf.get(offset..offset + 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// A kernel file, opened and identified.
#[derive(Debug)]
pub struct KernelImage {
    path: PathBuf,
    file: File,
    header: Vec<u8>,
    len: u64,
    format: KernelFormat,
}

impl KernelImage {
    /// Opens `path` and identifies what kind of kernel it is.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let read_err = |source| Error::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let mut header = Vec::with_capacity(HEADER_PROBE_LEN);
        file.by_ref()
            .take(HEADER_PROBE_LEN as u64)
            .read_to_end(&mut header)
            .map_err(read_err)?;
        let format = identify(path, &header, len)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            header,
            len,
            format,
        })
    }

    /// The first guest-physical byte after the memory the kernel needs at
    /// boot, known before loading it.
    pub fn footprint_end(&mut self) -> Result<u64, Error> {
        match self.format {
            KernelFormat::Elf => {
                elf_footprint_end(&mut self.file, &self.header).map_err(|_| Error::Load {
                    path: self.path.clone(),
                    source: linux_loader::loader::Error::Elf(
                        linux_loader::loader::elf::Error::ReadProgramHeader,
                    ),
                })
            }
            KernelFormat::BzImage => {
                // Loaded at 1 MiB; decompresses in place within `init_size`.
                let init_size = u64::from(u32_at(&self.header, 0x260).unwrap_or(0));
                Ok(HIMEM_START + init_size.max(self.len))
            }
        }
    }

    /// Loads the kernel into `mem`.
    pub fn load(mut self, mem: &GuestMemory) -> Result<LoadedKernel, Error> {
        let path = self.path;
        let load_err = |source| Error::Load {
            path: path.clone(),
            source,
        };
        let himem = Some(GuestAddress(HIMEM_START));
        let file = &mut self.file;
        match self.format {
            KernelFormat::Elf => {
                let result = Elf::load(mem, None, file, himem).map_err(load_err)?;
                Ok(LoadedKernel {
                    format: self.format,
                    entry: result.kernel_load,
                    end: result.kernel_end,
                    setup_header: None,
                })
            }
            KernelFormat::BzImage => {
                let result = BzImage::load(mem, None, file, himem).map_err(load_err)?;
                let hdr = result.setup_header;
                let init_size = hdr.map_or(0, |h| u64::from(h.init_size));
                let end = result
                    .kernel_end
                    .max(result.kernel_load.0.saturating_add(init_size));
                Ok(LoadedKernel {
                    format: self.format,
                    entry: GuestAddress(result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET),
                    end,
                    setup_header: hdr,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(ELF_MAGIC);
        h[4] = class;
        h[5] = data;
        h[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    fn bzimage_header(version: u16, xloadflags: u16, setup_sects: u8, syssize: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_PROBE_LEN];
        h[0x1f1] = setup_sects;
        h[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
        h[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        h[0x202..0x206].copy_from_slice(b"HdrS");
        h[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        h[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        h
    }

    fn id(header: &[u8], len: u64) -> Result<KernelFormat, Error> {
        identify(Path::new("k"), header, len)
    }

    #[test]
    fn accepts_x86_64_elf() {
        let h = elf_header(ELFCLASS64, ELFDATA2LSB, EM_X86_64);
        assert_eq!(id(&h, 1 << 20).unwrap(), KernelFormat::Elf);
    }

    #[test]
    fn rejects_elf_programs_and_libraries() {
        let mut h = elf_header(ELFCLASS64, ELFDATA2LSB, EM_X86_64);
        h[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        assert!(matches!(id(&h, 1 << 20), Err(Error::NotAKernel { .. })));
    }

    #[test]
    fn rejects_32_bit_elf() {
        let h = elf_header(ELFCLASS32, ELFDATA2LSB, 3);
        let err = id(&h, 1 << 20).unwrap_err();
        assert!(matches!(err, Error::Elf32 { .. }), "{err}");
        assert!(err.to_string().contains("32-bit"));
    }

    #[test]
    fn rejects_other_architectures_by_name() {
        let h = elf_header(ELFCLASS64, ELFDATA2LSB, 183);
        let err = id(&h, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("arm64"), "{err}");

        let mut image = vec![0u8; HEADER_PROBE_LEN];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let err = id(&image, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("arm64"), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        let garbage: Vec<u8> = (0..HEADER_PROBE_LEN)
            .map(|i| u8::try_from((i * 7 + 3) % 251).unwrap())
            .collect();
        let err = id(&garbage, 1 << 20).unwrap_err();
        assert!(matches!(err, Error::NotAKernel { .. }));
        assert!(err.to_string().contains("not a Linux kernel"));
        assert!(matches!(id(&[], 0), Err(Error::NotAKernel { .. })));
    }

    #[test]
    fn accepts_64_bit_bzimage() {
        let h = bzimage_header(0x020f, XLF_KERNEL_64, 30, 0x1000);
        let len = 31 * 512 + 0x1000 * 16;
        assert_eq!(id(&h, len).unwrap(), KernelFormat::BzImage);
    }

    #[test]
    fn rejects_bzimage_without_64_bit_entry() {
        let h = bzimage_header(0x020f, 0, 30, 0x1000);
        assert!(matches!(
            id(&h, 1 << 30),
            Err(Error::BzImage32 {
                major: 2,
                minor: 15,
                ..
            })
        ));
        let old = bzimage_header(0x020a, XLF_KERNEL_64, 30, 0x1000);
        assert!(matches!(id(&old, 1 << 30), Err(Error::BzImage32 { .. })));
    }

    #[test]
    fn rejects_truncated_bzimage() {
        let h = bzimage_header(0x020f, XLF_KERNEL_64, 30, 0x1000);
        let err = id(&h, 31 * 512 + 100).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
    }
}
