//! The VMM's sandbox: it treats its guest as hostile. Per-thread seccomp
//! filters, a jail (its own mount and PID namespaces, an unprivileged
//! uid/gid, no capabilities, rlimits) and a cgroup v2 per instance with
//! the instance type's CPU and memory limits.

pub mod cgroup;
pub mod jail;
pub mod seccomp;

/// Errors of entering the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Jail(#[from] jail::Error),
}

/// Called by the VMM once every file it needs is open and before its
/// first thread starts: enters the jail, if `gureum boot --jail` planned
/// one. The seccomp filters follow, each thread installing its own.
pub fn lock_down() -> Result<(), Error> {
    jail::lock_down()?;
    Ok(())
}
