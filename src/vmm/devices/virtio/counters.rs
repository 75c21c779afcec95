//! Per-device counters, bumped by the device's worker and read from
//! outside (the VMM's metrics file) without stopping it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::DeviceMetrics;

/// One counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Replaces the value: for one that is a state, not a count.
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// What a virtio-blk device did.
#[derive(Debug, Default)]
pub struct BlockCounters {
    /// Requests completed, whatever their status.
    pub requests: Counter,
    pub read_bytes: Counter,
    pub write_bytes: Counter,
    /// Requests completed with an error status, or refused chains.
    pub errors: Counter,
    /// Times the rate limiter held the queue back.
    pub throttled: Counter,
}

/// What a virtio-net device did.
#[derive(Debug, Default)]
pub struct NetCounters {
    pub rx_frames: Counter,
    pub rx_bytes: Counter,
    pub tx_frames: Counter,
    pub tx_bytes: Counter,
    /// Frames dropped: larger than the limit or than the guest's buffer,
    /// or refused by the tap.
    pub dropped: Counter,
    /// Chains refused as malformed.
    pub errors: Counter,
    /// Times the receive path ran out of guest buffers (frames then wait
    /// in the tap until the driver gives more).
    pub rx_no_buffers: Counter,
    /// Times a rate limiter held a direction back.
    pub throttled: Counter,
    /// The feature bits the driver accepted at its last activation
    /// (offloads, mergeable buffers, EVENT_IDX).
    pub features: Counter,
}

impl DeviceMetrics for BlockCounters {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.get(),
            "read_bytes": self.read_bytes.get(),
            "write_bytes": self.write_bytes.get(),
            "errors": self.errors.get(),
            "throttled": self.throttled.get(),
        })
    }
}

impl DeviceMetrics for NetCounters {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rx_frames": self.rx_frames.get(),
            "rx_bytes": self.rx_bytes.get(),
            "tx_frames": self.tx_frames.get(),
            "tx_bytes": self.tx_bytes.get(),
            "dropped": self.dropped.get(),
            "errors": self.errors.get(),
            "rx_no_buffers": self.rx_no_buffers.get(),
            "throttled": self.throttled.get(),
            "features": self.features.get(),
        })
    }
}
