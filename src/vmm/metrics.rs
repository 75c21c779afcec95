//! The VMM's counters, readable from outside the process: a small JSON
//! file rewritten (atomically, by rename) every few seconds, whenever
//! the VMM gets SIGUSR1 and as it ends.
//!
//! ```json
//! {"time": 1764750000, "devices": [{"name": "virtio-blk vda",
//!   "counters": {"requests": 1, ...}}], "console": {"dropped_bytes": 0},
//!  "startup": {"setup_us": 9000, "cpu_us": 7000},
//!  "memory": {"rss_kib": 70000, "guest_resident_kib": 66000, "overhead_kib": 4000}}
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::Duration;

use super::console_queue::BufferedOutput;
use super::devices::virtio::DeviceMetrics;
use super::memory::{self, GuestMemory};
use super::named_file::NamedFile;
use super::sandbox::seccomp::{self, ThreadKind};

/// How often the metrics file is rewritten.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// How long the VMM took to get its guest going, taken as its vCPUs
/// start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Startup {
    /// Wall time of the VM's setup: KVM, guest memory, devices, the
    /// kernel's load, up to the vCPUs' start.
    pub setup: Duration,
    /// CPU time the process had used by then, all threads, since its exec.
    pub cpu: Duration,
}

impl Startup {
    /// The process's CPU time now, as the end of a setup of `setup`.
    pub fn now(setup: Duration) -> Self {
        let cpu = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
            .map_or(Duration::ZERO, Duration::from);
        Self { setup, cpu }
    }
}

/// What the VMM itself costs: its start, and the memory it holds besides
/// the guest's RAM.
#[derive(Debug, Clone)]
pub struct VmmFigures {
    pub startup: Startup,
    /// `/proc/self/statm`, opened before the jail hides /proc.
    pub statm: Option<Arc<File>>,
    pub memory: GuestMemory,
}

impl VmmFigures {
    /// The process's resident set, from statm's second field (pages).
    fn rss_bytes(&self) -> Option<u64> {
        let mut buf = [0u8; 128];
        let n = self.statm.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(buf.get(..n)?).ok()?;
        let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    fn to_json(&self) -> (serde_json::Value, serde_json::Value) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let startup = serde_json::json!({
            "setup_us": micros(self.startup.setup),
            "cpu_us": micros(self.startup.cpu),
        });
        let rss = self.rss_bytes();
        let guest = memory::resident_bytes(&self.memory).ok();
        let kib = |b: Option<u64>| b.map(|b| b / 1024);
        let memory = serde_json::json!({
            "rss_kib": kib(rss),
            "guest_resident_kib": kib(guest),
            "overhead_kib": kib(rss.zip(guest).map(|(r, g)| r.saturating_sub(g))),
        });
        (startup, memory)
    }
}

/// Reads a running VM's counters.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    devices: Vec<(String, Arc<dyn DeviceMetrics>)>,
    console_out: BufferedOutput,
    vmm: Option<VmmFigures>,
}

impl MetricsSource {
    pub fn new(
        devices: Vec<(String, Arc<dyn DeviceMetrics>)>,
        console_out: BufferedOutput,
    ) -> Self {
        Self {
            devices,
            console_out,
            vmm: None,
        }
    }

    /// Also reports the VMM's own start and memory figures.
    pub fn with_vmm(self, vmm: VmmFigures) -> Self {
        Self {
            vmm: Some(vmm),
            ..self
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
        let mut snapshot = serde_json::json!({
            "time": time,
            "devices": devices,
            "console": { "dropped_bytes": self.console_out.dropped() },
        });
        if let (Some(vmm), Some(fields)) = (&self.vmm, snapshot.as_object_mut()) {
            let (startup, memory) = vmm.to_json();
            fields.insert("startup".into(), startup);
            fields.insert("memory".into(), memory);
        }
        snapshot
    }
}

/// Errors of the metrics file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the directory of the metrics file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The metrics file, reached through its directory (it is rewritten
/// from inside the jail, where paths lead nowhere).
#[derive(Debug)]
pub struct MetricsFile {
    file: NamedFile,
    path: PathBuf,
}

impl MetricsFile {
    /// Holds `path`'s directory open; nothing is written yet.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = NamedFile::new(path).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Lets the jail's `uid`:`gid` replace the file in its directory.
    pub fn give_dir_to(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        self.file.give_dir_to(uid, gid)
    }

    /// Writes `value` through a temporary file and a rename, so a reader
    /// never sees half a file; a failure is reported, not fatal.
    fn write(&self, value: &serde_json::Value) {
        if let Err(e) = self.file.replace(format!("{value}\n").as_bytes()) {
            eprintln!(
                "gureum: cannot write metrics to {}: {e}",
                self.path.display()
            );
        }
    }

    /// Starts the thread that writes `source` to the file now and every
    /// [`INTERVAL`]; call once the sandbox is locked down.
    pub fn start(self, source: MetricsSource) -> std::io::Result<MetricsWriter> {
        let (ask, asked) = channel();
        crate::vmm::thread("metrics").spawn(move || {
            seccomp::enter(ThreadKind::Metrics);
            loop {
                self.write(&source.snapshot());
                match asked.recv_timeout(INTERVAL) {
                    Ok(Ask::Now) | Err(RecvTimeoutError::Timeout) => {}
                    Ok(Ask::Last(done)) => {
                        self.write(&source.snapshot());
                        let _ = done.send(());
                        return;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
        Ok(MetricsWriter { ask })
    }
}

/// What the metrics thread is asked to do.
#[derive(Debug)]
enum Ask {
    /// Write the file now.
    Now,
    /// Write it a last time, say so, and end.
    Last(Sender<()>),
}

/// How long the last write may take as the VMM ends.
const LAST_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The thread that keeps the metrics file fresh.
#[derive(Debug, Clone)]
pub struct MetricsWriter {
    ask: Sender<Ask>,
}

impl MetricsWriter {
    /// Writes the file now (on SIGUSR1).
    pub fn write_now(&self) {
        // The thread is gone only once the process is ending.
        let _ = self.ask.send(Ask::Now);
    }

    /// Writes the final counters and waits (briefly) until they are out.
    pub fn finish(&self) {
        let (done, written) = channel();
        if self.ask.send(Ask::Last(done)).is_ok() {
            let _ = written.recv_timeout(LAST_WRITE_TIMEOUT);
        }
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
        MetricsFile::open(&path).unwrap().write(&source.snapshot());
        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read["devices"][0]["name"], "virtio-blk vda");
        assert_eq!(read["devices"][0]["counters"]["requests"], 3);
        assert_eq!(read["devices"][0]["counters"]["throttled"], 1);
        assert_eq!(read["console"]["dropped_bytes"], 0);
    }

    #[test]
    fn the_vmm_figures_split_its_memory_from_the_guests() {
        use vm_memory::{Bytes, GuestAddress};
        let mem = memory::create_with(64, memory::HugePages::Off).unwrap();
        for page in 0..256u64 {
            mem.write_obj(1u8, GuestAddress(page << 12)).unwrap();
        }
        let figures = VmmFigures {
            startup: Startup::now(Duration::from_millis(3)),
            statm: File::open("/proc/self/statm").ok().map(Arc::new),
            memory: mem,
        };
        let out = BufferedOutput::start(Box::new(std::io::sink())).unwrap();
        let snapshot = MetricsSource::new(Vec::new(), out)
            .with_vmm(figures)
            .snapshot();
        assert_eq!(snapshot["startup"]["setup_us"], 3000);
        assert!(snapshot["startup"]["cpu_us"].as_u64().unwrap() > 0);
        let memory = &snapshot["memory"];
        assert_eq!(memory["guest_resident_kib"], 1024);
        let rss = memory["rss_kib"].as_u64().unwrap();
        let overhead = memory["overhead_kib"].as_u64().unwrap();
        assert!(rss > 1024, "{memory}");
        assert_eq!(overhead, rss - 1024);
    }
}
