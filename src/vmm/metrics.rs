//! The VMM's counters, readable from outside the process: a small JSON
//! file rewritten (atomically, by rename) every few seconds and whenever
//! the VMM gets SIGUSR1.
//!
//! ```json
//! {"time": 1764750000, "devices": [{"name": "virtio-blk vda",
//!   "counters": {"requests": 1, ...}}], "console": {"dropped_bytes": 0}}
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::Duration;

use super::console_queue::BufferedOutput;
use super::devices::virtio::DeviceMetrics;

/// How often the metrics file is rewritten.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Reads a running VM's counters.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    devices: Vec<(String, Arc<dyn DeviceMetrics>)>,
    console_out: BufferedOutput,
}

impl MetricsSource {
    pub fn new(
        devices: Vec<(String, Arc<dyn DeviceMetrics>)>,
        console_out: BufferedOutput,
    ) -> Self {
        Self {
            devices,
            console_out,
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> serde_json::Value {
        let devices: Vec<_> = self
            .devices
            .iter()
            .map(|(name, m)| serde_json::json!({ "name": name, "counters": m.to_json() }))
            .collect();
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        serde_json::json!({
            "time": time,
            "devices": devices,
            "console": { "dropped_bytes": self.console_out.dropped() },
        })
    }
}

/// Writes `value` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
pub fn write_file(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{value}\n"))?;
    std::fs::rename(&tmp, path)
}

/// The thread that keeps the metrics file fresh.
#[derive(Debug, Clone)]
pub struct MetricsWriter {
    now: Sender<()>,
}

impl MetricsWriter {
    /// Writes `source` to `path` now and every [`INTERVAL`].
    pub fn start(source: MetricsSource, path: PathBuf) -> std::io::Result<Self> {
        let (now, wake) = channel();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                loop {
                    if let Err(e) = write_file(&path, &source.snapshot()) {
                        eprintln!("gureum: cannot write metrics to {}: {e}", path.display());
                    }
                    if let Err(RecvTimeoutError::Disconnected) = wake.recv_timeout(INTERVAL) {
                        return;
                    }
                }
            })?;
        Ok(Self { now })
    }

    /// Writes the file now (on SIGUSR1, and as the VM stops).
    pub fn write_now(&self) {
        // The thread is gone only once the process is ending.
        let _ = self.now.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::counters::BlockCounters;

    #[test]
    fn the_file_holds_every_device_counter() {
        let blk = Arc::new(BlockCounters::default());
        blk.requests.add(3);
        blk.throttled.inc();
        let out = BufferedOutput::start(Box::new(std::io::sink())).unwrap();
        let source = MetricsSource::new(vec![("virtio-blk vda".into(), blk.clone())], out);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        write_file(&path, &source.snapshot()).unwrap();
        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read["devices"][0]["name"], "virtio-blk vda");
        assert_eq!(read["devices"][0]["counters"]["requests"], 3);
        assert_eq!(read["devices"][0]["counters"]["throttled"], 1);
        assert_eq!(read["console"]["dropped_bytes"], 0);
    }
}
