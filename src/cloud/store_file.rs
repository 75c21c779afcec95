//! The store as a file on disk, before SQLite reads it: made whole and
//! with a fixed mode, or recognised as not a store.
//!
//! SQLite takes a 0-byte file for a new database and, given garbage,
//! answers "file is not a database" from the first statement; neither
//! says what the file is. These checks read SQLite's 100-byte header
//! (<https://www.sqlite.org/fileformat.html>) so a refusal names it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::store::Error;

/// What every SQLite 3 file starts with.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The database header's length.
const HEADER_LEN: usize = 100;
/// Mode of the store file; SQLite gives its `-wal` and `-shm` files the
/// store's mode.
pub const MODE: u32 = 0o600;

/// An I/O error on the store, told apart when it is about permissions.
pub fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| {
        if source.kind() == ErrorKind::PermissionDenied {
            Error::Permission { path, source }
        } else {
            Error::Io { what, path, source }
        }
    }
}

/// Whether there is anything at `path` (a dangling symlink counts: it is
/// not ours to replace).
pub fn exists(path: &Path) -> Result<bool, Error> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("look at", path)(e)),
    }
}

/// Makes a new store at `path`: `init` fills a file beside it, which then
/// appears under `path` whole, so a crash never leaves a half-made store
/// (a 0-byte one would be refused at the next open). If another process
/// made the store meanwhile, its store is kept.
pub fn create(path: &Path, init: impl FnOnce(&Path) -> Result<(), Error>) -> Result<(), Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let new = path.with_file_name(format!(".{name}.new-{}", std::process::id()));
    let made = make(&new, init).and_then(|()| match std::fs::hard_link(&new, path) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(io_error("create", path)(e)),
        _ => Ok(()),
    });
    let removed = std::fs::remove_file(&new).map_err(io_error("remove the new", &new));
    made.and(removed)
}

fn make(new: &Path, init: impl FnOnce(&Path) -> Result<(), Error>) -> Result<(), Error> {
    // A file left by a crashed process that had this PID: never a store.
    match std::fs::remove_file(new) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_error("remove", new)(e)),
        _ => {}
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .open(new)
        .map_err(io_error("create", new))?;
    // The umask may have taken bits from MODE at creation.
    file.set_permissions(std::fs::Permissions::from_mode(MODE))
        .map_err(io_error("set the mode of", new))?;
    drop(file);
    init(new)
}

/// Refuses a file at `path` that is not a whole SQLite database: not a
/// regular file, empty, not SQLite, or shorter than its header says.
pub fn check(path: &Path) -> Result<(), Error> {
    let owned = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(io_error("look at", path))?;
    if !meta.is_file() {
        return Err(Error::NotAFile { path: owned() });
    }
    let mut file = File::open(path).map_err(io_error("read", path))?;
    let len = file.metadata().map_err(io_error("read", path))?.len();
    if len == 0 {
        return Err(Error::Empty { path: owned() });
    }
    let mut header = [0u8; HEADER_LEN];
    let read = read_up_to(&mut file, &mut header).map_err(io_error("read", path))?;
    let got = header.get(..read.min(MAGIC.len())).unwrap_or_default();
    if MAGIC.get(..got.len()) != Some(got) {
        return Err(Error::NotSqlite { path: owned() });
    }
    if read < HEADER_LEN {
        return Err(truncated(owned(), len, HEADER_LEN as u64));
    }
    let page_size = match be_u16(&header, 16) {
        1 => 65536,
        n if n.is_power_of_two() && n >= 512 => u64::from(n),
        n => {
            return Err(Error::Damaged {
                path: owned(),
                detail: format!("its header gives a page size of {n}"),
            });
        }
    };
    // The header's page count is valid only if written by a SQLite that
    // keeps it (its change counter equals its version-valid-for number).
    let pages = be_u32(&header, 28);
    let expected = if pages != 0 && be_u32(&header, 24) == be_u32(&header, 92) {
        u64::from(pages) * page_size
    } else {
        len.div_ceil(page_size) * page_size
    };
    if len < expected || len % page_size != 0 {
        return Err(truncated(
            owned(),
            len,
            expected.max(len.div_ceil(page_size) * page_size),
        ));
    }
    Ok(())
}

fn truncated(path: PathBuf, len: u64, expected: u64) -> Error {
    Error::Truncated {
        path,
        len,
        expected,
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn be_u16(header: &[u8; HEADER_LEN], at: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(src) = header.get(at..at + 2) {
        b.copy_from_slice(src);
    }
    u16::from_be_bytes(b)
}

fn be_u32(header: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = header.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_be_bytes(b)
}
