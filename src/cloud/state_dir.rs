//! Where the control plane keeps its files: the store, image directories
//! and per-instance directories.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Used when neither `--state-dir` nor `GUREUM_STATE_DIR` is given.
pub const DEFAULT: &str = "/var/lib/gureum";
/// The environment variable that overrides the default.
pub const ENV: &str = "GUREUM_STATE_DIR";

/// Mode of a state directory gureum makes.
const MODE: u32 = 0o700;

/// The files of one instance.
#[derive(Debug, Clone)]
pub struct InstanceFiles {
    pub dir: PathBuf,
    /// The instance's own copy of its image's root disk.
    pub root_disk: PathBuf,
    /// Everything the guest printed, across boots (`gureum instance logs`).
    pub console_log: PathBuf,
    /// The VMM's and supervisor's own messages.
    pub vmm_log: PathBuf,
    /// The VMM's device counters, as JSON (`gureum boot --metrics`).
    pub metrics: PathBuf,
    /// Files that exist only while the VMM runs.
    pub run_dir: PathBuf,
    pub console_socket: PathBuf,
}

/// The state directory's layout.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `flag` if given, else `$GUREUM_STATE_DIR`, else the default.
    pub fn resolve(flag: Option<PathBuf>) -> Self {
        let root = flag
            .or_else(|| {
                std::env::var_os(ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT));
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the state directory if it is missing, mode 0700 whatever the
    /// umask (it holds the store and the instances' disks). One that
    /// exists is left as it is.
    pub fn create(&self) -> std::io::Result<()> {
        if self.root.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(MODE)
            .create(&self.root)?;
        // The umask may have taken bits from MODE.
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(MODE))
    }

    /// The SQLite store.
    pub fn store(&self) -> PathBuf {
        self.root.join("gureum.db")
    }

    /// Directory of image `id` (its manifest and files).
    pub fn image(&self, id: &str) -> PathBuf {
        self.root.join("images").join(id)
    }

    /// Directory of instance `id`: its disk copies and console log,
    /// kept while the instance is stopped.
    pub fn instance(&self, id: &str) -> PathBuf {
        self.root.join("instances").join(id)
    }

    /// The files of instance `id`.
    pub fn instance_files(&self, id: &str) -> InstanceFiles {
        let dir = self.instance(id);
        let run_dir = dir.join("run");
        InstanceFiles {
            root_disk: dir.join("root.img"),
            console_log: dir.join("console.log"),
            vmm_log: dir.join("vmm.log"),
            metrics: dir.join("metrics.json"),
            console_socket: run_dir.join("console.sock"),
            run_dir,
            dir,
        }
    }

    /// Staging directory for a resource being created: renamed into
    /// place only once complete, so a failure never leaves a half-made
    /// directory under its real name.
    pub fn staging(&self, id: &str) -> PathBuf {
        self.root.join("staging").join(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_default() {
        let dir = StateDir::resolve(Some("/tmp/x".into()));
        assert_eq!(dir.store(), Path::new("/tmp/x/gureum.db"));
        assert_eq!(dir.image("ami-1"), Path::new("/tmp/x/images/ami-1"));
        assert_eq!(dir.instance("i-1"), Path::new("/tmp/x/instances/i-1"));
    }

    #[test]
    fn a_new_state_directory_is_private_and_an_existing_one_is_kept() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("a/b");
        let dir = StateDir::resolve(Some(root.clone()));
        dir.create().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750)).unwrap();
        dir.create().unwrap();
        assert_eq!(mode(&root), 0o750);
    }
}
