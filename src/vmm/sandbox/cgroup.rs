//! A cgroup v2 per instance, under a parent gureum owns (by default
//! `gureum` at the root of the cgroup2 mount): CPU time capped at the
//! instance type's vCPUs, memory at its RAM plus the VMM's own overhead.
//! The supervisor makes it before the VMM starts (`gureum boot --cgroup`
//! joins it first thing) and removes it when the VMM ends; what a crash
//! of everything leaves is removed by [`Parent::remove_stale`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Overrides the parent: a cgroup2 directory, or `off` to run VMMs
/// without cgroups on a host that has no cgroup v2 to give.
pub const PARENT_ENV: &str = "GUREUM_CGROUP_PARENT";
/// The parent's name under the cgroup2 mount by default.
pub const DEFAULT_PARENT: &str = "gureum";
/// What the VMM process needs beyond guest RAM, in MiB: its heap, thread
/// stacks, KVM's page tables and per-vCPU state, socket buffers of the
/// taps and console, the page cache of disk I/O (reclaimable). Measured
/// in the rig (README "Sandbox"), with room to spare.
pub const VMM_OVERHEAD_MIB: u64 = 64;
/// cpu.max's period, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// CPU time per period the VMM's own threads (device workers, console)
/// get beyond the vCPUs' worth: half a CPU. An EC2 instance does not pay
/// for its I/O out of its vCPUs' time, and with the cap at exactly the
/// vCPUs' worth a busy 1-vCPU instance's disk and network workers were
/// throttled with its vCPU (a Debian first boot to SSH took 96 s in the
/// nested KVM rig against 42 s with 2 vCPUs).
pub const VMM_CPU_ALLOWANCE_US: u64 = CPU_PERIOD_US / 2;
/// Controllers an instance's cgroup needs.
const CONTROLLERS: [&str; 2] = ["cpu", "memory"];
/// How long removing a cgroup waits for its processes to be gone.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// Errors of managing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "this host has no cgroup v2 mounted (see /proc/self/mountinfo); mount one \
         (`mount -t cgroup2 none /sys/fs/cgroup`), or set {PARENT_ENV}=off to run VMMs \
         without CPU and memory limits"
    )]
    NoCgroup2,
    #[error(
        "the cgroup v2 at {mount} does not offer the {controller} controller (is it bound to \
         cgroup v1? boot with systemd.unified_cgroup_hierarchy=1), or set {PARENT_ENV}=off to \
         run VMMs without CPU and memory limits"
    )]
    NoController {
        mount: PathBuf,
        controller: &'static str,
    },
    #[error(
        "{PARENT_ENV}={0} is not a directory of a cgroup v2 filesystem; give one gureum may \
         manage, or off"
    )]
    BadParent(PathBuf),
    #[error(
        "cannot {what} {path}: {source}; gureum needs a cgroup v2 subtree it may manage \
         (delegate one and set {PARENT_ENV})"
    )]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {0} still holds processes after {secs} s", secs = EMPTY_WAIT.as_secs())]
    Busy(PathBuf),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// The limits of one instance's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub vcpus: u16,
    pub memory_mib: u64,
}

impl Limits {
    /// cpu.max: the vCPUs' worth of CPU time per period, and the VMM's
    /// allowance.
    pub fn cpu_max(&self) -> String {
        format!(
            "{} {CPU_PERIOD_US}",
            u64::from(self.vcpus.max(1)) * CPU_PERIOD_US + VMM_CPU_ALLOWANCE_US
        )
    }

    /// memory.max in bytes: guest RAM and the VMM's overhead.
    pub fn memory_max(&self) -> u64 {
        (self.memory_mib + VMM_OVERHEAD_MIB) << 20
    }
}

/// The first cgroup2 mount point in a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mount_point = mount.split_whitespace().nth(4)?;
        (fs.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(io("read", path))
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(io("write", path))
}

/// Whether a cgroup still holds processes (cgroup.events' `populated`).
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|text| text.lines().any(|l| l == "populated 1"))
}

/// The cgroup every instance's cgroup is made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// The cgroup2 mount it is under.
    mount: PathBuf,
    dir: PathBuf,
}

impl Parent {
    /// The parent `$GUREUM_CGROUP_PARENT` names, or `gureum` under the
    /// host's cgroup2 mount; `None` when the variable says `off`.
    pub fn from_env() -> Result<Option<Self>, Error> {
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let setting = std::env::var_os(PARENT_ENV).filter(|v| !v.is_empty());
        Self::resolve(&mountinfo, setting.as_deref().map(Path::new))
    }

    fn resolve(mountinfo: &str, setting: Option<&Path>) -> Result<Option<Self>, Error> {
        if setting == Some(Path::new("off")) {
            return Ok(None);
        }
        let mount = cgroup2_mount(mountinfo).ok_or(Error::NoCgroup2)?;
        let dir = match setting {
            None => mount.join(DEFAULT_PARENT),
            Some(dir) if dir.starts_with(&mount) && dir != mount => dir.to_path_buf(),
            Some(dir) => return Err(Error::BadParent(dir.to_path_buf())),
        };
        Ok(Some(Self { mount, dir }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup of instance `id`.
    pub fn instance(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Makes the parent if needed, with the controllers enabled on the
    /// way down from the mount so that its children get them.
    fn ensure(&self) -> Result<(), Error> {
        let offered = read(&self.mount.join("cgroup.controllers"))?;
        for controller in CONTROLLERS {
            if !offered.split_whitespace().any(|c| c == controller) {
                return Err(Error::NoController {
                    mount: self.mount.clone(),
                    controller,
                });
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let below = self.dir.strip_prefix(&self.mount).unwrap_or(Path::new(""));
        let mut at = self.mount.clone();
        let mut levels = vec![at.clone()];
        for part in below.components() {
            at.push(part);
            levels.push(at.clone());
        }
        for level in levels {
            let control = level.join("cgroup.subtree_control");
            let enabled = read(&control)?;
            let missing: Vec<String> = CONTROLLERS
                .iter()
                .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
                .map(|c| format!("+{c}"))
                .collect();
            if !missing.is_empty() {
                write(&control, &missing.join(" "))?;
            }
        }
        Ok(())
    }

    /// Makes instance `id`'s cgroup with `limits` (replacing one a crash
    /// left); returns its directory for `gureum boot --cgroup`.
    pub fn create(&self, id: &str, limits: Limits) -> Result<PathBuf, Error> {
        self.ensure()?;
        let dir = self.instance(id);
        if dir.exists() {
            self.remove(id)?;
        }
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        write(&dir.join("cpu.max"), &limits.cpu_max())?;
        write(&dir.join("memory.max"), &limits.memory_max().to_string())?;
        Ok(dir)
    }

    /// Removes instance `id`'s cgroup, killing what still runs in it.
    /// Gone already is fine.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        remove_dir(&self.instance(id))
    }

    /// Removes the empty cgroups under the parent whose instance `keep`
    /// does not claim (for the reconciler: after a crash of the
    /// supervisors and VMMs, or a host's). One that still holds
    /// processes is left for a later pass (a VMM whose keeper was just
    /// killed ends with it): this never kills, so the VMMs of another
    /// store given the same parent are safe. Touches nothing outside the
    /// parent. Returns the names removed.
    pub fn remove_stale(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.dir)(e)),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("list", &self.dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let dir = entry.path();
            if !dir.is_dir() || keep(&name) || populated(&dir) {
                continue;
            }
            remove_dir(&dir)?;
            removed.push(name);
        }
        Ok(removed)
    }
}

fn remove_dir(dir: &Path) -> Result<(), Error> {
    if !dir.exists() {
        return Ok(());
    }
    let start = Instant::now();
    while populated(dir) {
        // cgroup.kill (Linux 5.14) SIGKILLs everything inside.
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        if start.elapsed() > EMPTY_WAIT {
            return Err(Error::Busy(dir.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", dir)(e)),
    }
}

/// Moves the calling process into the cgroup `dir` (`gureum boot
/// --cgroup`): before the VMM allocates anything, so that its memory is
/// charged there.
pub fn join(dir: &Path) -> Result<(), Error> {
    write(&dir.join("cgroup.procs"), "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 24 0:25 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
35 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
36 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn the_parent_is_found_under_the_cgroup2_mount_or_named() {
        let parent = Parent::resolve(HYBRID, None).unwrap().unwrap();
        assert_eq!(parent.dir(), Path::new("/sys/fs/cgroup/unified/gureum"));
        assert_eq!(
            parent.instance("i-1"),
            Path::new("/sys/fs/cgroup/unified/gureum/i-1")
        );
        let named = Parent::resolve(HYBRID, Some(Path::new("/sys/fs/cgroup/unified/a/b")));
        assert_eq!(
            named.unwrap().unwrap().dir(),
            Path::new("/sys/fs/cgroup/unified/a/b")
        );
        assert_eq!(
            Parent::resolve(HYBRID, Some(Path::new("off"))).unwrap(),
            None
        );
        let outside = Parent::resolve(HYBRID, Some(Path::new("/sys/fs/cgroup/memory/x")));
        assert!(matches!(outside, Err(Error::BadParent(_))), "{outside:?}");
        let error = Parent::resolve("24 1 254:0 / / rw - ext4 /dev/vda rw\n", None).unwrap_err();
        assert!(matches!(error, Error::NoCgroup2));
        assert!(error.to_string().contains("GUREUM_CGROUP_PARENT=off"));
    }

    #[test]
    fn limits_follow_the_instance_type() {
        let limits = Limits {
            vcpus: 2,
            memory_mib: 512,
        };
        assert_eq!(limits.cpu_max(), "250000 100000");
        assert_eq!(limits.memory_max(), (512 + VMM_OVERHEAD_MIB) << 20);
    }

    #[test]
    fn stale_cgroups_go_and_claimed_ones_stay() {
        // A plain directory stands in for the parent: remove_stale only
        // lists and removes directories.
        let root = tempfile::tempdir().unwrap();
        let parent = Parent {
            mount: root.path().to_path_buf(),
            dir: root.path().join("gureum"),
        };
        assert!(parent.remove_stale(|_| false).unwrap().is_empty());
        for id in ["i-live", "i-dead"] {
            std::fs::create_dir_all(parent.instance(id)).unwrap();
        }
        std::fs::write(parent.dir().join("not-a-cgroup"), "").unwrap();
        let removed = parent.remove_stale(|id| id == "i-live").unwrap();
        assert_eq!(removed, ["i-dead"]);
        assert!(parent.instance("i-live").exists());
        assert!(!parent.instance("i-dead").exists());
        assert!(parent.dir().join("not-a-cgroup").exists());
    }
}
