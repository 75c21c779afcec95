//! Each instance's CPU utilization: the CPU time its VMM process used
//! over a minute, as a share of its vCPUs' time, kept in the instance's
//! record as a short ring of per-minute averages (the daemon samples it,
//! `daemon::cpu`), as CloudWatch's CPUUtilization for EC2.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How many minutes are kept.
pub const MINUTES: usize = 10;

/// One minute's average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuMinute {
    /// Seconds since the epoch when the minute ended.
    pub at: u64,
    /// Per cent of its vCPUs' time, 0 to 100.
    pub percent: u16,
}

/// The utilization of `vcpus` vCPUs that used `cpu` over `wall`: the VMM's
/// own threads count too, as a hypervisor's do in EC2's figure.
pub fn utilization(cpu: Duration, wall: Duration, vcpus: u16) -> u16 {
    let capacity = wall.as_millis() * u128::from(vcpus.max(1));
    if capacity == 0 {
        return 0;
    }
    // Rounded to the nearest per cent, at most 100.
    let percent = ((cpu.as_millis() * 100 + capacity / 2) / capacity).min(100);
    u16::try_from(percent).unwrap_or(100)
}

/// Adds `minute` to `ring`, keeping the last `MINUTES`.
pub fn push(ring: &mut Vec<CpuMinute>, minute: CpuMinute) {
    ring.push(minute);
    if ring.len() > MINUTES {
        ring.drain(..ring.len() - MINUTES);
    }
}

/// The latest minute of `ring` if it ended within two minutes of `now`.
pub fn fresh(ring: &[CpuMinute], now: u64) -> Option<CpuMinute> {
    ring.last()
        .copied()
        .filter(|m| now.saturating_sub(m.at) <= 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_is_a_share_of_the_vcpus_time() {
        let s = Duration::from_secs;
        assert_eq!(utilization(s(30), s(60), 1), 50);
        assert_eq!(utilization(s(60), s(60), 2), 50);
        assert_eq!(utilization(s(90), s(60), 1), 100, "bounded");
        assert_eq!(utilization(s(0), s(60), 1), 0);
        assert_eq!(utilization(s(1), s(0), 1), 0);
    }

    #[test]
    fn the_ring_keeps_the_last_minutes_and_only_fresh_ones_count() {
        let mut ring = Vec::new();
        for at in 0..15 {
            push(&mut ring, CpuMinute { at, percent: 1 });
        }
        assert_eq!(ring.len(), MINUTES);
        assert_eq!(ring[0].at, 5);
        assert_eq!(fresh(&ring, 100).map(|m| m.at), Some(14));
        assert_eq!(fresh(&ring, 14 + 121), None);
    }
}
