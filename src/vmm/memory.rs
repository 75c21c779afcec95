//! Guest RAM: its layout around the 32-bit MMIO hole and its allocation.
//!
//! Each RAM region is an anonymous mapping of ours, aligned to 2 MiB. KVM
//! maps guest memory with huge pages only where the host address and the
//! guest address agree modulo 2 MiB and the host backs the range with a
//! transparent huge page; a plain `mmap` gives neither, and every first
//! touch of the guest then costs a 4 KiB fault (in a nested host, two).
//! vm-memory's own regions cannot be aligned (its builder takes no
//! address), so the mapping is made here and handed to vm-memory as a raw
//! pointer, with `GuestRam` owning it.

use std::io;
use std::ptr::NonNull;

use vm_memory::bitmap::BS;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryRegion, GuestMemoryRegionBytes,
    GuestRegionCollection, GuestRegionMmap, GuestUsize, MemoryRegionAddress, VolatileSlice,
};

use super::layout::{MMIO_GAP_END, MMIO_GAP_START};

/// Guest memory as the VMM sees it.
pub type GuestMemory = GuestRegionCollection<GuestRam>;

/// The alignment that lets KVM map guest memory with 2 MiB pages.
const HUGE_PAGE: usize = 2 << 20;

/// Errors of guest memory setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot map {mib} MiB of guest memory: {source}")]
    Map { mib: u64, source: io::Error },
    #[error("cannot describe guest memory of {mib} MiB to vm-memory: {reason}")]
    Describe { mib: u64, reason: String },
    #[error("guest memory of {mib} MiB does not fit this host's address space")]
    TooLarge { mib: u64 },
}

/// Whether guest RAM asks the host for transparent huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// `MADV_HUGEPAGE`: fewer, cheaper faults and TLB misses; memory is
    /// taken from the host in 2 MiB steps as the guest touches it.
    #[default]
    On,
    /// `MADV_NOHUGEPAGE`: 4 KiB pages even where the host's THP setting is
    /// "always".
    Off,
}

impl std::str::FromStr for HugePages {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("huge pages are \"on\" or \"off\", not {other:?}")),
        }
    }
}

/// The RAM regions for `size` bytes of guest memory: everything below the
/// MMIO hole first, the rest above 4 GiB.
pub fn ram_regions(size: u64) -> Vec<(GuestAddress, u64)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START),
            (GuestAddress(MMIO_GAP_END), size - MMIO_GAP_START),
        ]
    }
}

/// End (exclusive) of the RAM below the MMIO hole.
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO_GAP_START)
}

/// Allocates `mib` MiB of guest RAM with the default huge page setting.
pub fn create(mib: u64) -> Result<GuestMemory, Error> {
    create_with(mib, HugePages::default())
}

/// Allocates anonymous host memory for `mib` MiB of guest RAM.
pub fn create_with(mib: u64, huge_pages: HugePages) -> Result<GuestMemory, Error> {
    let bytes = mib.checked_mul(1 << 20).ok_or(Error::TooLarge { mib })?;
    let regions = ram_regions(bytes)
        .into_iter()
        .map(|(addr, len)| {
            let len = usize::try_from(len).map_err(|_| Error::TooLarge { mib })?;
            let mapping =
                Mapping::new(len, huge_pages).map_err(|source| Error::Map { mib, source })?;
            GuestRam::new(mapping, addr).map_err(|reason| Error::Describe { mib, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestRegionCollection::from_regions(regions).map_err(|e| Error::Describe {
        mib,
        reason: e.to_string(),
    })
}

/// An anonymous private read-write mapping, 2 MiB-aligned, unmapped on
/// drop.
#[derive(Debug)]
struct Mapping {
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; guest memory is
// shared between threads through vm-memory's volatile accessors.
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` itself has no interior state.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes at a 2 MiB boundary: maps `len + 2 MiB`, then
    /// gives back the unaligned head and the tail.
    fn new(len: usize, huge_pages: HugePages) -> io::Result<Self> {
        let reserve = len
            .checked_add(HUGE_PAGE)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // nothing else refers to it.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let head = (HUGE_PAGE - start as usize % HUGE_PAGE) % HUGE_PAGE;
        let tail = reserve - head - len;
        let kept = start.cast::<u8>().wrapping_add(head);
        if head > 0 {
            // SAFETY: the head lies inside the mapping just made, before the
            // `len` bytes kept.
            unsafe { libc::munmap(start, head) };
        }
        if tail > 0 {
            // SAFETY: the tail lies inside the mapping just made, after the
            // `len` bytes kept.
            unsafe { libc::munmap(kept.wrapping_add(len).cast(), tail) };
        }
        let addr = NonNull::new(kept).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let mapping = Self { addr, len };
        let advice = match huge_pages {
            HugePages::On => libc::MADV_HUGEPAGE,
            HugePages::Off => libc::MADV_NOHUGEPAGE,
        };
        // SAFETY: advice on our own mapping; it changes no contents. A
        // kernel without THP refuses it (EINVAL): RAM then stays 4 KiB
        // pages, as it would anyway, so the refusal is not an error.
        unsafe { libc::madvise(mapping.addr.as_ptr().cast(), len, advice) };
        Ok(mapping)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is the mapping this value made and owns; every
        // vm-memory view of it (`GuestRam::region`) is dropped before it.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

/// One region of guest RAM: vm-memory's view of a mapping this value
/// owns.
#[derive(Debug)]
pub struct GuestRam {
    // Declared first: dropped before the mapping it points into.
    region: GuestRegionMmap<()>,
    mapping: Mapping,
}

impl GuestRam {
    fn new(mapping: Mapping, base: GuestAddress) -> Result<Self, String> {
        // SAFETY: `mapping` is a live mapping of `len` bytes and is moved
        // into the same value as the region, which it outlives.
        let raw = unsafe {
            MmapRegionBuilder::new(mapping.len)
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE)
                .with_raw_mmap_pointer(mapping.addr.as_ptr())
        }
        .build()
        .map_err(|e| e.to_string())?;
        let region = GuestRegionMmap::new(raw, base)
            .ok_or_else(|| format!("the region at {:#x} wraps the address space", base.0))?;
        Ok(Self { region, mapping })
    }

    /// The host address of the region's first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapping.addr.as_ptr()
    }
}

impl GuestMemoryRegion for GuestRam {
    type B = ();

    fn len(&self) -> GuestUsize {
        self.region.len()
    }

    fn start_addr(&self) -> GuestAddress {
        self.region.start_addr()
    }

    fn bitmap(&self) -> BS<'_, ()> {
        self.region.bitmap()
    }

    fn get_host_address(&self, addr: MemoryRegionAddress) -> Result<*mut u8, GuestMemoryError> {
        self.region.get_host_address(addr)
    }

    fn get_slice(
        &self,
        offset: MemoryRegionAddress,
        count: usize,
    ) -> Result<VolatileSlice<'_, BS<'_, ()>>, GuestMemoryError> {
        self.region.get_slice(offset, count)
    }
}

impl GuestMemoryRegionBytes for GuestRam {}

/// Bytes of `mem` the host has backed with memory: the pages the guest
/// (or the VMM on its behalf) has touched.
pub fn resident_bytes(mem: &GuestMemory) -> io::Result<u64> {
    // mincore reports a byte per 4 KiB page; look 64 MiB at a time so the
    // vector stays small whatever the guest's size.
    const PAGE: usize = 4096;
    const CHUNK: usize = 64 << 20;
    let mut flags = vec![0u8; CHUNK / PAGE];
    let mut resident = 0u64;
    for region in mem.iter() {
        let len = region.mapping.len;
        let mut at = 0;
        while at < len {
            let n = CHUNK.min(len - at);
            // SAFETY: the range lies inside the region's live mapping (held
            // by `mem`), and `flags` has a byte for each of its pages.
            let rc = unsafe {
                libc::mincore(
                    region.as_ptr().wrapping_add(at).cast(),
                    n,
                    flags.as_mut_ptr(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            let pages = n.div_ceil(PAGE);
            let touched = flags
                .get(..pages)
                .unwrap_or_default()
                .iter()
                .filter(|&&f| f & 1 != 0);
            resident += touched.count() as u64 * PAGE as u64;
            at += n;
        }
    }
    Ok(resident)
}

#[cfg(test)]
mod tests {
    use vm_memory::Bytes;

    use super::*;

    #[test]
    fn small_memory_is_one_region() {
        assert_eq!(ram_regions(512 << 20), vec![(GuestAddress(0), 512 << 20)]);
        assert_eq!(low_ram_end(512 << 20), 512 << 20);
    }

    #[test]
    fn large_memory_skips_the_mmio_hole() {
        let regions = ram_regions(4 << 30);
        assert_eq!(
            regions,
            vec![
                (GuestAddress(0), MMIO_GAP_START),
                (GuestAddress(MMIO_GAP_END), (4 << 30) - MMIO_GAP_START)
            ]
        );
        let total: u64 = regions.iter().map(|r| r.1).sum();
        assert_eq!(total, 4 << 30);
        assert_eq!(low_ram_end(4 << 30), MMIO_GAP_START);
    }

    #[test]
    fn regions_are_aligned_for_huge_pages_and_usable() {
        for mode in [HugePages::On, HugePages::Off] {
            let mem = create_with(4 << 10, mode).unwrap();
            assert_eq!(mem.num_regions(), 2);
            for region in mem.iter() {
                assert_eq!(region.as_ptr() as usize % HUGE_PAGE, 0, "{mode:?}");
                // Host and guest addresses congruent mod 2 MiB.
                assert_eq!(region.start_addr().0 % HUGE_PAGE as u64, 0);
            }
            let last = GuestAddress(MMIO_GAP_END + (4 << 30) - MMIO_GAP_START - 8);
            mem.write_obj(0x1234_5678_u64, last).unwrap();
            assert_eq!(mem.read_obj::<u64>(last).unwrap(), 0x1234_5678);
            mem.write_obj(7_u8, GuestAddress(0)).unwrap();
            assert_eq!(mem.read_obj::<u8>(GuestAddress(0)).unwrap(), 7);
            assert!(mem.read_obj::<u8>(GuestAddress(MMIO_GAP_START)).is_err());
        }
    }

    #[test]
    fn resident_bytes_counts_touched_pages() {
        let mem = create_with(128, HugePages::Off).unwrap();
        assert_eq!(resident_bytes(&mem).unwrap(), 0);
        for page in [0u64, 1, 70 << 8] {
            mem.write_obj(1u8, GuestAddress(page << 12)).unwrap();
        }
        assert_eq!(resident_bytes(&mem).unwrap(), 3 * 4096);
    }

    #[test]
    fn dropping_the_memory_unmaps_it() {
        let mem = create(64).unwrap();
        let ptr = mem.iter().next().unwrap().as_ptr();
        let clone = mem.clone();
        drop(mem);
        // A clone keeps the mapping: still readable.
        assert_eq!(clone.read_obj::<u8>(GuestAddress(0)).unwrap(), 0);
        drop(clone);
        // mincore on an unmapped range fails with ENOMEM.
        let mut vec = [0u8; 1];
        // SAFETY: mincore only reports on the range; `vec` holds one page's flag.
        let rc = unsafe { libc::mincore(ptr.cast(), 4096, vec.as_mut_ptr()) };
        assert_eq!(rc, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOMEM)
        );
    }
}
