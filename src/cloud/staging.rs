//! Creating a resource's directory all-or-nothing: it is filled under a
//! staging name, renamed into place inside the store transaction that
//! records the resource, and removed if anything fails before commit.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A directory being made. Dropped without [`Staging::keep`], it is
/// removed, wherever it is.
#[derive(Debug)]
pub struct Staging {
    /// An exclusive lock on the directory while it is being made: a
    /// staging directory nobody holds is a leftover (`cloud::reconcile`).
    _lock: Flock<File>,
    staging: PathBuf,
    dest: PathBuf,
    published: bool,
    kept: bool,
}

impl Staging {
    /// Creates an empty staging directory that will become `dest`.
    pub fn create(staging: PathBuf, dest: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&staging)?;
        let lock = Flock::lock(File::open(&staging)?, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| std::io::Error::from(errno))?;
        Ok(Self {
            _lock: lock,
            staging,
            dest,
            published: false,
            kept: false,
        })
    }

    /// Where to put the files.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Renames the directory into place. Call inside the transaction that
    /// records the resource, so a failed commit still removes it.
    pub fn publish(&mut self) -> std::io::Result<()> {
        if let Some(parent) = self.dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&self.staging, &self.dest)?;
        self.published = true;
        Ok(())
    }

    /// The resource was committed: keep its directory.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.kept {
            let dir = if self.published {
                &self.dest
            } else {
                &self.staging
            };
            // Best effort: the failure being reported matters more.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether staging directory `dir` is a leftover: nobody is making it
/// (its maker died, by SIGKILL say).
pub fn abandoned(dir: &Path) -> std::io::Result<bool> {
    match Flock::lock(File::open(dir)?, FlockArg::LockExclusiveNonblock) {
        Ok(_) => Ok(true),
        Err((_, nix::Error::EWOULDBLOCK)) => Ok(false),
        Err((_, errno)) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_staging_leaves_nothing_and_kept_staging_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (s, d) = (dir.path().join("s/x"), dir.path().join("d/x"));
        let mut staging = Staging::create(s.clone(), d.clone()).unwrap();
        assert!(!abandoned(&s).unwrap(), "held while being made");
        std::fs::write(staging.path().join("f"), b"1").unwrap();
        staging.publish().unwrap();
        drop(staging);
        assert!(!s.exists() && !d.exists());

        let mut staging = Staging::create(s.clone(), d.clone()).unwrap();
        staging.publish().unwrap();
        staging.keep();
        assert!(d.exists() && !s.exists());
    }
}
