//! The CLI's side of the daemon's socket: send one action, read one
//! reply. No daemon (no socket, or a stale one nobody listens on) is
//! not an error: the caller executes the action in its own process.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::Reply;
use crate::cloud::api::{Action, ApiError, Category, Response};

/// Whether a daemon answers on `socket`.
pub fn answers(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// Sends `action` to the daemon on `socket`. `None` when no daemon
/// answers there.
pub fn call(socket: &Path, action: &Action) -> Option<Result<Response, ApiError>> {
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return None;
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Some(Err(ApiError::new(
                Category::Unauthorised,
                format!(
                    "the daemon's socket {} is not open to this user ({e}); run gureum as the \
                     user the daemon runs as (root)",
                    socket.display()
                ),
            )));
        }
        Err(e) => return Some(Err(lost(socket, &e))),
    };
    Some(exchange(stream, action).unwrap_or_else(|e| Err(lost(socket, &e))))
}

fn exchange(
    mut stream: UnixStream,
    action: &Action,
) -> std::io::Result<Result<Response, ApiError>> {
    let mut line = serde_json::to_string(action)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "it closed the connection without a reply",
        ));
    }
    Ok(serde_json::from_str::<Reply>(&reply)?.into())
}

/// The daemon was reached but the exchange failed: whether the action ran
/// is unknown.
fn lost(socket: &Path, e: &std::io::Error) -> ApiError {
    ApiError::new(
        Category::Internal,
        format!(
            "the daemon on {} did not answer ({e}); whether the action ran is unknown: look \
             (e.g. `gureum instance list`) before trying again",
            socket.display()
        ),
    )
}
