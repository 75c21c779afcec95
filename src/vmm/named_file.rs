//! A file named by its directory's descriptor and its name, rather than
//! by a path: once the VMM is jailed its root is empty and no path leads
//! anywhere, but a directory opened before the jail still does. The
//! console log rotates and the metrics file is replaced through it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;

/// A file in a directory held open.
#[derive(Debug)]
pub struct NamedFile {
    dir: OwnedFd,
    name: OsString,
}

fn io(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

impl NamedFile {
    /// Holds `path`'s directory open (the file need not exist yet).
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other("the path names no file"))?
            .to_os_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(Self { dir, name })
    }

    /// This file's name with `suffix` appended.
    fn sibling(&self, suffix: &str) -> OsString {
        let mut name = self.name.clone();
        name.push(suffix);
        name
    }

    fn open(&self, name: &OsStr, flags: OFlag) -> std::io::Result<File> {
        let fd = openat(
            &self.dir,
            name,
            flags | OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(io)?;
        Ok(File::from(fd))
    }

    /// Opens the file for appending, creating it.
    pub fn open_append(&self) -> std::io::Result<File> {
        self.open(&self.name, OFlag::O_APPEND)
    }

    /// Renames the file to its name with `suffix` appended, replacing
    /// any file of that name.
    pub fn move_to_sibling(&self, suffix: &str) -> std::io::Result<()> {
        renameat(&self.dir, &*self.name, &self.dir, &*self.sibling(suffix)).map_err(io)
    }

    /// Replaces the file's contents with `bytes` through a temporary
    /// file and a rename, so a reader never sees half of them.
    pub fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.sibling(".tmp");
        self.open(&tmp, OFlag::O_TRUNC)?.write_all(bytes)?;
        renameat(&self.dir, &*tmp, &self.dir, &*self.name).map_err(io)
    }

    /// Gives the directory to `uid`:`gid`, so that a jailed VMM running
    /// as them can still create and rename its files there.
    pub fn give_dir_to(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        nix::unistd::fchown(
            &self.dir,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_reached_through_the_directory_after_it_moved() {
        let top = tempfile::tempdir().unwrap();
        let before = top.path().join("a");
        std::fs::create_dir(&before).unwrap();
        let file = NamedFile::new(&before.join("m.json")).unwrap();
        // Paths no longer lead to it, as in the jail; the descriptor does.
        let after = top.path().join("b");
        std::fs::rename(&before, &after).unwrap();
        file.replace(b"{}").unwrap();
        file.replace(b"{\"n\": 1}").unwrap();
        assert_eq!(std::fs::read(after.join("m.json")).unwrap(), b"{\"n\": 1}");
        assert!(!after.join("m.json.tmp").exists());
        file.open_append().unwrap().write_all(b"!").unwrap();
        file.move_to_sibling(".1").unwrap();
        assert_eq!(
            std::fs::read(after.join("m.json.1")).unwrap(),
            b"{\"n\": 1}!"
        );
        assert!(!after.join("m.json").exists());
    }
}
