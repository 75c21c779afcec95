//! Guest RAM: its layout around the 32-bit MMIO hole and its allocation.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::layout::{MMIO_GAP_END, MMIO_GAP_START};

/// Guest memory as the VMM sees it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Errors of guest memory setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Allocate {
        mib: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("guest memory of {mib} MiB does not fit this host's address space")]
    TooLarge { mib: u64 },
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

/// Allocates anonymous host memory for `mib` MiB of guest RAM.
pub fn create(mib: u64) -> Result<GuestMemory, Error> {
    let bytes = mib.checked_mul(1 << 20).ok_or(Error::TooLarge { mib })?;
    let regions = ram_regions(bytes)
        .into_iter()
        .map(|(addr, len)| usize::try_from(len).map(|len| (addr, len)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::TooLarge { mib })?;
    GuestMemoryMmap::from_ranges(&regions).map_err(|source| Error::Allocate { mib, source })
}

#[cfg(test)]
mod tests {
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
}
