//! Copying disk images cheaply: only the data extents are copied (holes
//! stay holes), with `copy_file_range`, which shares the blocks instead
//! (reflink) on file systems that can (btrfs, XFS). The same effect as
//! `cp --reflink=auto --sparse=always`.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::copy_file_range;
use nix::unistd::{Whence, lseek};

/// A copy that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path} to copy it: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// The next data extent at or after `offset`: (start, end), or None
/// past the last one.
fn next_extent(file: &File, offset: i64, len: i64) -> std::io::Result<Option<(i64, i64)>> {
    let start = match lseek(file, offset, Whence::SeekData) {
        Ok(start) => start,
        // No data after `offset`.
        Err(Errno::ENXIO) => return Ok(None),
        // A file system without SEEK_DATA: treat it all as data.
        Err(Errno::EINVAL) => return Ok((offset < len).then_some((offset, len))),
        Err(e) => return Err(e.into()),
    };
    let end = lseek(file, start, Whence::SeekHole)?;
    Ok(Some((start, end.min(len))))
}

/// Copies bytes `start..end` of `src` to the same place in `dst`: in the
/// kernel where it can (sharing blocks on btrfs/XFS), else through a
/// buffer (across file systems, where copy_file_range gives EXDEV).
fn copy_extent(src: &File, dst: &File, start: i64, end: i64) -> std::io::Result<()> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let chunk = usize::try_from(end - off_in).unwrap_or(usize::MAX);
        match copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
            // The source shrank under us.
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return copy_through_buffer(src, dst, off_in, end);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_through_buffer(src: &File, dst: &File, start: i64, end: i64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = u64::try_from(start).map_err(|_| ErrorKind::InvalidInput)?;
    let end = u64::try_from(end).map_err(|_| ErrorKind::InvalidInput)?;
    while offset < end {
        let want = usize::try_from(end - offset).map_or(buf.len(), |n| n.min(buf.len()));
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = src.read_at(chunk, offset)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        dst.write_all_at(chunk.get(..n).unwrap_or_default(), offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// Copies `from` to a new file `to` (which must not exist), keeping holes.
pub fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    let src = File::open(from).map_err(|source| Error::Open {
        path: from.into(),
        source,
    })?;
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|source| Error::Create {
            path: to.into(),
            source,
        })?;
    let copy_err = |source: std::io::Error| Error::Copy {
        from: from.into(),
        to: to.into(),
        source,
    };
    let len = src.metadata().map_err(copy_err)?.len();
    let len_i = i64::try_from(len).map_err(|_| copy_err(ErrorKind::FileTooLarge.into()))?;
    let mut offset = 0;
    while let Some((start, end)) = next_extent(&src, offset, len_i).map_err(copy_err)? {
        copy_extent(&src, &dst, start, end).map_err(copy_err)?;
        offset = end;
    }
    // Trailing holes: the length, without writing zeros.
    dst.set_len(len).map_err(copy_err)?;
    dst.sync_all().map_err(copy_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_data_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("disk");
        let mut f = File::create(&from).unwrap();
        f.write_all(b"boot sector").unwrap();
        f.seek(SeekFrom::Start(64 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(128 << 20).unwrap();
        drop(f);
        let to = dir.path().join("copy");
        copy(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        let meta = std::fs::metadata(&to).unwrap();
        assert_eq!(meta.len(), 128 << 20);
        // 128 MiB apparent; far less allocated (tmpfs and ext4 both keep
        // holes).
        assert!(meta.blocks() * 512 < 8 << 20, "{} blocks", meta.blocks());
    }

    #[test]
    fn copies_across_file_systems() {
        // /dev/shm is tmpfs; the temp dir is usually elsewhere. Where
        // both are one file system this is the same-fs path again.
        let dir = tempfile::tempdir().unwrap();
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let from = shm.path().join("disk");
        std::fs::write(&from, vec![7u8; 3 << 20]).unwrap();
        let to = dir.path().join("copy");
        copy(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        std::fs::write(&from, b"x").unwrap();
        let to = dir.path().join("b");
        std::fs::write(&to, b"keep").unwrap();
        assert!(matches!(copy(&from, &to), Err(Error::Create { .. })));
        assert_eq!(std::fs::read(&to).unwrap(), b"keep");
    }
}
