//! Token-bucket rate limits for a device's I/O: one bucket for bytes and
//! one for operations (requests or frames), each refilled continuously at
//! its rate and holding at most one second of it.
//!
//! An operation goes ahead when both buckets hold its cost, or are full
//! when it costs more than they hold; it then takes its whole cost, which
//! may leave a debt: a request larger than a bucket still passes (never
//! wedges the queue) and the debt holds the next ones back until it is
//! repaid, so the average stays the rate.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use vmm_sys_util::timerfd::TimerFd;

/// What a device may do per second; 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    pub bytes_per_sec: u64,
    pub ops_per_sec: u64,
}

impl RateLimit {
    pub fn is_unlimited(&self) -> bool {
        self.bytes_per_sec == 0 && self.ops_per_sec == 0
    }
}

const NANOS: i128 = 1_000_000_000;

/// One bucket; the balance is in units times 10^9 so that refills of a
/// few nanoseconds are not lost to rounding.
#[derive(Debug)]
struct Bucket {
    rate: u64,
    balance: i128,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Self {
        Self {
            rate,
            balance: i128::from(rate) * NANOS,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = i128::try_from(now.saturating_duration_since(self.last).as_nanos())
            .unwrap_or(i128::MAX / 2);
        self.last = now;
        let capacity = i128::from(self.rate) * NANOS;
        self.balance = self
            .balance
            .saturating_add(elapsed.saturating_mul(i128::from(self.rate)))
            .min(capacity);
    }

    /// How long until the balance covers `units`, or a full bucket when
    /// `units` is more than it holds.
    fn wait(&self, units: u64) -> Duration {
        let capacity = i128::from(self.rate) * NANOS;
        let needed = i128::from(units).saturating_mul(NANOS).min(capacity);
        if self.balance >= needed || self.rate == 0 {
            return Duration::ZERO;
        }
        let nanos = (needed - self.balance) / i128::from(self.rate) + 1;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn take(&mut self, units: u64) {
        self.balance = self
            .balance
            .saturating_sub(i128::from(units).saturating_mul(NANOS));
    }
}

/// A device's limiter: bytes and operations.
#[derive(Debug)]
pub struct Limiter {
    bytes: Option<Bucket>,
    ops: Option<Bucket>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        let now = Instant::now();
        let bucket = |rate| (rate > 0).then(|| Bucket::new(rate, now));
        Self {
            bytes: bucket(limit.bytes_per_sec),
            ops: bucket(limit.ops_per_sec),
        }
    }

    /// Takes one operation of `bytes` if both buckets allow it now;
    /// otherwise says how long to wait before asking again.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Result<(), Duration> {
        self.check(bytes, now)?;
        self.charge(bytes);
        Ok(())
    }

    /// Whether both buckets allow an operation of `bytes` now, taking
    /// nothing; when not, how long to wait.
    fn check(&mut self, bytes: u64, now: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for (bucket, units) in [(&mut self.bytes, bytes), (&mut self.ops, 1)] {
            if let Some(bucket) = bucket {
                bucket.refill(now);
                wait = wait.max(bucket.wait(units));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        Ok(())
    }

    /// Takes one operation of `bytes`, whatever the buckets hold.
    fn charge(&mut self, bytes: u64) {
        if let Some(b) = &mut self.bytes {
            b.take(bytes);
        }
        if let Some(o) = &mut self.ops {
            o.take(1);
        }
    }
}

/// A limiter and the timer that wakes its device's worker once a held
/// back operation may go ahead.
#[derive(Debug)]
pub struct Throttle {
    limiter: Limiter,
    timer: TimerFd,
}

impl Throttle {
    pub fn new(limit: RateLimit) -> std::io::Result<Self> {
        Ok(Self {
            limiter: Limiter::new(limit),
            timer: TimerFd::new()?,
        })
    }

    /// The timer's fd, for the worker to wait on.
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// Consumes the timer's expiry after it woke the worker.
    pub fn timer_fired(&mut self) {
        // Reads at once: the worker calls this only when the fd is ready.
        let _ = self.timer.wait();
    }

    /// Whether an operation of `bytes` may go ahead now (it is then
    /// taken); when not, the timer is armed for when it may.
    pub fn admit(&mut self, bytes: u64) -> bool {
        let admitted = self.limiter.take(bytes, Instant::now());
        self.arm_unless(admitted)
    }

    /// Whether an operation whose size is known only once done (a frame
    /// read from a tap) may start now: the buckets hold an operation and
    /// no byte debt. The caller then pays with [`Throttle::charge`].
    pub fn ready(&mut self) -> bool {
        let ready = self.limiter.check(0, Instant::now());
        self.arm_unless(ready)
    }

    /// Takes one operation of `bytes` that [`Throttle::ready`] let start;
    /// what the buckets lack becomes a debt that holds the next back.
    pub fn charge(&mut self, bytes: u64) {
        self.limiter.charge(bytes);
    }

    fn arm_unless(&mut self, outcome: Result<(), Duration>) -> bool {
        match outcome {
            Ok(()) => true,
            Err(wait) => {
                // A timer that cannot be armed leaves the queue to the
                // driver's next notification.
                let _ = self.timer.reset(wait, None);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_never_waits() {
        let mut l = Limiter::new(RateLimit::default());
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.take(1 << 30, now), Ok(()));
        }
    }

    #[test]
    fn ops_are_held_to_their_rate() {
        let start = Instant::now();
        let mut l = Limiter::new(RateLimit {
            bytes_per_sec: 0,
            ops_per_sec: 100,
        });
        // A full bucket lets one second's worth through at once.
        let passed = (0..1000).filter(|_| l.take(0, start).is_ok()).count();
        assert_eq!(passed, 100);
        // Then 10 ms buys one more operation.
        let wait = l.take(0, start).unwrap_err();
        assert!(wait <= Duration::from_micros(10_001), "{wait:?}");
        assert_eq!(l.take(0, start + Duration::from_millis(10)), Ok(()));
        assert!(l.take(0, start + Duration::from_millis(10)).is_err());
    }

    #[test]
    fn an_operation_charged_afterwards_holds_the_next_back_by_its_size() {
        let start = Instant::now();
        let mut l = Limiter::new(RateLimit {
            bytes_per_sec: 1000,
            ops_per_sec: 0,
        });
        assert_eq!(l.check(0, start), Ok(()));
        l.charge(3000);
        // 2000 bytes of debt: two seconds before the next may start.
        assert!(l.check(0, start + Duration::from_millis(1999)).is_err());
        assert_eq!(l.check(0, start + Duration::from_millis(2000)), Ok(()));
    }

    #[test]
    fn a_request_larger_than_the_bucket_passes_and_leaves_a_debt() {
        let start = Instant::now();
        let mut l = Limiter::new(RateLimit {
            bytes_per_sec: 1000,
            ops_per_sec: 0,
        });
        assert_eq!(l.take(5000, start), Ok(()));
        // 4000 bytes of debt at 1000/s: four seconds until the next byte.
        let wait = l.take(1, start).unwrap_err();
        assert!(
            wait > Duration::from_millis(4000) && wait <= Duration::from_millis(4002),
            "{wait:?}"
        );
        assert!(l.take(1, start + Duration::from_secs(3)).is_err());
        assert_eq!(l.take(1, start + Duration::from_millis(4002)), Ok(()));
    }
}
