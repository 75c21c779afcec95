//! Where the guest's serial console goes when the VMM runs detached: a
//! log file rotated at 1 MiB (one previous log kept) and a unix socket
//! one client at a time attaches to (`gureum console`); a new client
//! replaces the previous one, a client stalled for longer than a write
//! timeout is dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::ConsoleInput;
use super::named_file::NamedFile;
use super::sandbox::seccomp::{self, ThreadKind};

/// Errors of console setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open console log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on console socket {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Size at which the console log is rotated: the current log moves to
/// `<log>.1` (replacing the previous one) and a new one starts, so a
/// guest's console takes at most twice this on disk.
pub const LOG_ROTATE_BYTES: u64 = 1 << 20;
/// How long one write to the attached client may take before the client
/// counts as stalled and is dropped (it can attach again).
pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The attached client, if any.
type Client = Arc<Mutex<Option<Arc<UnixStream>>>>;

/// The console log, rotated at a size. Reached through its directory's
/// descriptor, so that it rotates inside the jail too.
#[derive(Debug)]
pub struct RotatingLog {
    name: NamedFile,
    file: File,
    size: u64,
    limit: u64,
}

impl RotatingLog {
    /// Opens `path` for appending; it rotates once it holds `limit` bytes.
    pub fn open(path: &Path, limit: u64) -> Result<Self, Error> {
        let err = |source| Error::Log {
            path: path.to_path_buf(),
            source,
        };
        let name = NamedFile::new(path).map_err(err)?;
        let file = name.open_append().map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        Ok(Self {
            name,
            file,
            size,
            limit,
        })
    }

    /// The path of the previous log.
    pub fn rotated_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(ROTATED_SUFFIX);
        PathBuf::from(name)
    }

    /// Lets the jail's `uid`:`gid` rotate the log in its directory.
    pub fn give_dir_to(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        self.name.give_dir_to(uid, gid)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.name.move_to_sibling(ROTATED_SUFFIX)?;
        self.file = self.name.open_append()?;
        self.size = 0;
        Ok(())
    }
}

/// What the previous log's name adds to the log's.
const ROTATED_SUFFIX: &str = ".1";

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size.saturating_add(buf.len() as u64) > self.limit {
            self.rotate()?;
        }
        // One chunk may overshoot the limit once; the next write rotates.
        self.file.write_all(buf)?;
        self.size = self.size.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Guest console output: to the log and the attached client. It runs on
/// the console's own output thread (see [`super::console_queue`]), so a
/// slow client delays neither the guest nor, beyond one write timeout,
/// the log.
#[derive(Debug)]
pub struct ConsoleOutput {
    log: Option<RotatingLog>,
    client: Client,
}

impl ConsoleOutput {
    /// Lets the jail's `uid`:`gid` rotate the log, if there is one.
    pub fn give_log_dir_to(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        self.log
            .as_ref()
            .map_or(Ok(()), |log| log.give_dir_to(uid, gid))
    }
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(log) = &mut self.log {
            // A full disk loses log lines, not the guest's progress.
            let _ = log.write_all(buf);
        }
        // Written outside the lock, so that a new client can replace a
        // stalled one while this write waits.
        let client = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(stream) = client {
            // A client that went away or stalled is dropped; the guest
            // carries on.
            if (&*stream).write_all(buf).is_err() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &stream)) {
                    *slot = None;
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A console served on a socket, before the VM exists.
#[derive(Debug)]
pub struct SocketConsole {
    listener: UnixListener,
    client: Client,
}

impl SocketConsole {
    /// Binds `socket` (replacing a stale socket file) and opens `log` for
    /// appending (rotated at [`LOG_ROTATE_BYTES`], one previous log kept).
    /// Returns the console and the output to give the VM.
    pub fn bind(socket: &Path, log: Option<&Path>) -> Result<(Self, ConsoleOutput), Error> {
        let log = log
            .map(|path| RotatingLog::open(path, LOG_ROTATE_BYTES))
            .transpose()?;
        let listen_err = |source| Error::Listen {
            path: socket.to_path_buf(),
            source,
        };
        // Only a socket left by a dead VMM is replaced, never another file.
        if std::fs::symlink_metadata(socket)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            && UnixStream::connect(socket).is_err()
        {
            std::fs::remove_file(socket).map_err(listen_err)?;
        }
        let listener = UnixListener::bind(socket).map_err(listen_err)?;
        let client = Client::default();
        Ok((
            Self {
                listener,
                client: client.clone(),
            },
            ConsoleOutput { log, client },
        ))
    }

    /// Serves clients on a thread: each new client replaces the previous
    /// one; what a client sends goes to the guest.
    pub fn serve(self, input: ConsoleInput) -> std::io::Result<()> {
        self.serve_with(move |bytes| input.send(bytes))
    }

    /// As [`SocketConsole::serve`], with what clients send going to
    /// `input`.
    pub fn serve_with(self, input: impl Fn(&[u8]) + Send + Sync + 'static) -> std::io::Result<()> {
        let input = Arc::new(input);
        crate::vmm::thread("console-sock")
            .spawn(move || {
                seccomp::enter(ThreadKind::Console);
                for stream in self.listener.incoming().flatten() {
                    let Ok(reader) = stream.try_clone() else {
                        continue;
                    };
                    if stream
                        .set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))
                        .is_err()
                    {
                        continue;
                    }
                    let previous = self
                        .client
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .replace(Arc::new(stream));
                    if let Some(old) = previous {
                        let _ = old.shutdown(std::net::Shutdown::Both);
                    }
                    let input = input.clone();
                    let _ = crate::vmm::thread("console-client")
                        .spawn(move || forward(reader, &*input));
                }
            })
            .map(drop)
    }
}

fn forward(mut stream: UnixStream, input: &impl Fn(&[u8])) {
    let mut buf = [0u8; 256];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        input(buf.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_into_one_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = RotatingLog::open(&path, 10).unwrap();
        log.write_all(b"0123456").unwrap();
        log.write_all(b"789").unwrap();
        log.write_all(b"abc").unwrap();
        log.write_all(b"defghijk").unwrap();
        let rotated = RotatingLog::rotated_path(&path);
        assert_eq!(std::fs::read(&rotated).unwrap(), b"abc");
        assert_eq!(std::fs::read(&path).unwrap(), b"defghijk");
        // A restarted VMM appends and counts what is there.
        let mut log = RotatingLog::open(&path, 10).unwrap();
        log.write_all(b"lmn").unwrap();
        assert_eq!(std::fs::read(&rotated).unwrap(), b"defghijk");
        assert_eq!(std::fs::read(&path).unwrap(), b"lmn");
    }
}
