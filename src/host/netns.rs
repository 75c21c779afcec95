//! Named network namespaces, kept where `ip netns` keeps them so that the
//! usual tools (`ip netns exec`, `nft`) see what gureum made.
//!
//! A namespace is entered only by a thread of its own: setns(2) changes the
//! calling thread, and the caller's thread must never end up in a VPC.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::thread;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Where named namespaces are bind-mounted (the `ip netns` convention).
pub const NETNS_DIR: &str = "/run/netns";

/// What fstatfs(2) says of a namespace file (`NSFS_MAGIC`).
const NSFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x6e73_6673);

/// Longest namespace name accepted: names become file names and parts of
/// nft comments; keeping them short keeps both readable.
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "'{0}' is not a usable namespace name: use 1 to {MAX_NAME_LEN} of a-z, 0-9, '-' and '_'"
    )]
    BadName(String),
    #[error("network namespace '{0}' already exists: `gureum net check` lists leftovers")]
    Exists(String),
    #[error("network namespace '{0}' does not exist")]
    Missing(String),
    #[error("cannot {action} network namespace '{name}': {source}")]
    Io {
        action: &'static str,
        name: String,
        source: io::Error,
    },
    #[error("cannot {action} network namespace '{name}': {source}")]
    Sys {
        action: &'static str,
        name: String,
        source: nix::Error,
    },
    #[error(
        "'{0}' under /run/netns is not a network namespace (an empty mount point a creator \
         left when it was killed?)"
    )]
    NotANamespace(String),
    #[error("cannot prepare network namespace '{name}': {detail}")]
    Init { name: String, detail: String },
    #[error("a thread working in network namespace '{0}' panicked")]
    ThreadPanicked(String),
}

/// An open handle on a named network namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
}

impl Netns {
    /// Creates the namespace `name` (with only a down loopback in it).
    pub fn create(name: &str) -> Result<Self, Error> {
        Self::create_with(name, "", || Ok::<(), std::convert::Infallible>(()))
    }

    /// Creates the namespace `name`, running `init` inside it before it
    /// gets its name: killed at any instant, the creator leaves either no
    /// namespace or one `init` has prepared, or at worst a mount point
    /// with nothing mounted on it (which `open` tells apart), holding
    /// `label` (`label_of` reads it), so that its maker can know it.
    pub fn create_with<E: std::fmt::Display>(
        name: &str,
        label: &str,
        init: impl FnOnce() -> Result<(), E> + Send,
    ) -> Result<Self, Error> {
        check_name(name)?;
        let path = path_of(name);
        fs::create_dir_all(NETNS_DIR)
            .map_err(|source| io_error("create the directory of", name, source))?;
        share_netns_dir(name)?;
        // create_new: two creators of one name must not share a namespace.
        let mut point = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => Error::Exists(name.to_owned()),
                _ => io_error("create the mount point of", name, source),
            })?;
        io::Write::write_all(&mut point, label.as_bytes())
            .map_err(|source| io_error("label the mount point of", name, source))?;
        drop(point);
        let made = thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                        .map_err(|source| sys_error("unshare", name, source))?;
                    init().map_err(|error| Error::Init {
                        name: name.to_owned(),
                        detail: error.to_string(),
                    })?;
                    nix::mount::mount(
                        Some("/proc/thread-self/ns/net"),
                        &path,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|source| sys_error("bind-mount", name, source))
                })
                .join()
                .unwrap_or_else(|_| Err(Error::ThreadPanicked(name.to_owned())))
        });
        if let Err(error) = made {
            // Best effort: the mount point is empty, nothing else was made.
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        match Self::open(name) {
            Ok(netns) => Ok(netns),
            Err(error) => {
                let _ = remove(name);
                Err(error)
            }
        }
    }

    /// Opens the existing namespace `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        check_name(name)?;
        let file = File::open(path_of(name)).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::Missing(name.to_owned()),
            _ => io_error("open", name, source),
        })?;
        let kind = nix::sys::statfs::fstatfs(&file)
            .map_err(|source| sys_error("look at", name, source))?;
        if kind.filesystem_type() != NSFS_MAGIC {
            return Err(Error::NotANamespace(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            file,
        })
    }

    /// The namespace this process runs in (its first thread's: gureum
    /// enters others only on threads of their own), named "host".
    pub fn current() -> Result<Self, Error> {
        let name = "host";
        let file =
            File::open("/proc/self/ns/net").map_err(|source| io_error("open", name, source))?;
        Ok(Self {
            name: name.to_owned(),
            file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A second handle on the same namespace.
    pub fn try_clone(&self) -> Result<Self, Error> {
        Ok(Self {
            name: self.name.clone(),
            file: self
                .file
                .try_clone()
                .map_err(|source| io_error("duplicate", &self.name, source))?,
        })
    }

    /// Runs `work` on a thread inside the namespace and waits for it.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, Error> {
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter_this_thread()?;
                    Ok(work())
                })
                .join()
                .unwrap_or_else(|_| Err(Error::ThreadPanicked(self.name.clone())))
        })
    }

    /// Starts `work` on a new thread inside the namespace, for work that
    /// must go on while the caller does something else (a server in a test).
    pub fn spawn<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<thread::JoinHandle<Result<T, Error>>, Error> {
        let netns = self.try_clone()?;
        Ok(thread::spawn(move || {
            netns.enter_this_thread()?;
            Ok(work())
        }))
    }

    fn enter_this_thread(&self) -> Result<(), Error> {
        nix::sched::setns(&self.file, CloneFlags::CLONE_NEWNET)
            .map_err(|source| sys_error("enter", &self.name, source))
    }

    /// Deletes the namespace. The kernel frees it, and whatever is left in
    /// it, once no process, socket or handle refers to it any more.
    pub fn delete(self) -> Result<(), Error> {
        let Self { name, file } = self;
        drop(file);
        remove(&name)
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Makes the namespace directory a mount point of its own with shared
/// propagation, as `ip netns add` does. Without it, the first `ip netns
/// add` after gureum's namespaces exist bind-mounts the directory onto
/// itself recursively, which leaves a hidden second mount of each of them:
/// they could never be removed (EBUSY), and `ip netns exec` children would
/// keep copies that a later unmount does not reach.
fn share_netns_dir(name: &str) -> Result<(), Error> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    let none = None::<&str>;
    match nix::mount::mount(none, NETNS_DIR, none, shared, none) {
        Ok(()) => return Ok(()),
        // EINVAL: not a mount point yet.
        Err(nix::Error::EINVAL) => {}
        Err(source) => return Err(sys_error("share the directory of", name, source)),
    }
    nix::mount::mount(
        Some(NETNS_DIR),
        NETNS_DIR,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|source| sys_error("bind-mount the directory of", name, source))?;
    nix::mount::mount(none, NETNS_DIR, none, shared, none)
        .map_err(|source| sys_error("share the directory of", name, source))
}

/// Unmounts and removes the namespace `name` without opening it.
pub fn remove(name: &str) -> Result<(), Error> {
    check_name(name)?;
    let path = path_of(name);
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-made namespace): just unlink.
        Ok(()) | Err(nix::Error::EINVAL) => {}
        Err(nix::Error::ENOENT) => return Err(Error::Missing(name.to_owned())),
        Err(source) => return Err(sys_error("unmount", name, source)),
    }
    fs::remove_file(&path).map_err(|source| io_error("remove the mount point of", name, source))
}

/// What the mount point `name`, with no namespace mounted on it, holds:
/// the label its creator wrote (`Netns::create_with`).
pub fn label_of(name: &str) -> Result<String, Error> {
    check_name(name)?;
    let mut label = String::new();
    File::open(path_of(name))
        .and_then(|file| io::Read::read_to_string(&mut io::Read::take(file, 256), &mut label))
        .map_err(|source| io_error("read the mount point of", name, source))?;
    Ok(label)
}

/// Names of the namespaces whose name starts with `prefix`, sorted.
pub fn list(prefix: &str) -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error("list", prefix, source)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

pub fn exists(name: &str) -> bool {
    path_of(name).exists()
}

fn check_name(name: &str) -> Result<(), Error> {
    let good = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if good {
        Ok(())
    } else {
        Err(Error::BadName(name.to_owned()))
    }
}

fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn io_error(action: &'static str, name: &str, source: io::Error) -> Error {
    Error::Io {
        action,
        name: name.to_owned(),
        source,
    }
}

fn sys_error(action: &'static str, name: &str, source: nix::Error) -> Error {
    Error::Sys {
        action,
        name: name.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_file_is_touched() {
        for bad in ["", "Upper", "a/b", "..", "sp ace", &"x".repeat(65)] {
            assert!(matches!(check_name(bad), Err(Error::BadName(_))), "{bad}");
        }
        check_name("gr-vpc-0123abcd").unwrap();
    }
}
