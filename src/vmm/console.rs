//! Where the guest's serial console goes when the VMM runs detached: an
//! append-only log file and a unix socket one client at a time attaches
//! to (`gureum console`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::ConsoleInput;
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

/// The attached client, if any.
type Client = Arc<Mutex<Option<UnixStream>>>;

/// Guest console output: to the log and the attached client.
#[derive(Debug)]
pub struct ConsoleOutput {
    log: Option<File>,
    client: Client,
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(log) = &mut self.log {
            log.write_all(buf)?;
        }
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stream) = client.as_mut() {
            // A client that went away is dropped; the guest carries on.
            if stream.write_all(buf).is_err() {
                *client = None;
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
    /// appending. Returns the console and the output to give the VM.
    pub fn bind(socket: &Path, log: Option<&Path>) -> Result<(Self, ConsoleOutput), Error> {
        let log = log
            .map(|path| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| Error::Log {
                        path: path.to_path_buf(),
                        source,
                    })
            })
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
        let input = Arc::new(input);
        std::thread::Builder::new()
            .name("console-sock".into())
            .spawn(move || {
                seccomp::enter(ThreadKind::Console);
                for stream in self.listener.incoming().flatten() {
                    let Ok(reader) = stream.try_clone() else {
                        continue;
                    };
                    let previous = self
                        .client
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .replace(stream);
                    if let Some(old) = previous {
                        let _ = old.shutdown(std::net::Shutdown::Both);
                    }
                    let input = input.clone();
                    let _ = std::thread::Builder::new()
                        .name("console-client".into())
                        .spawn(move || forward(reader, &input));
                }
            })
            .map(drop)
    }
}

fn forward(mut stream: UnixStream, input: &ConsoleInput) {
    let mut buf = [0u8; 256];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || input.send(buf.get(..n).unwrap_or_default()).is_err() {
            return;
        }
    }
}
