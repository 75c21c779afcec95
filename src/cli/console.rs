//! The terminal side of the serial console: raw mode while attached, and
//! a thread that forwards standard input to the guest.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

use gureum::vmm::ConsoleInput;
use gureum::vmm::sandbox::seccomp::{self, ThreadKind};

/// Ctrl-A starts an escape; Ctrl-A x stops the VM, Ctrl-A Ctrl-A sends a
/// literal Ctrl-A.
const ESCAPE: u8 = 0x01;

/// Standard input in raw mode while this lives, when it is a terminal,
/// so keys reach the guest as typed. Dropping it restores the terminal.
#[derive(Debug)]
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    pub fn enter() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = if stdin.is_terminal() {
            let saved = termios::tcgetattr(stdin.as_fd())?;
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
            Some(saved)
        } else {
            None
        };
        Ok(Self { saved })
    }

    /// Whether a person is typing (escapes are interpreted only then).
    pub fn is_interactive(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // Nothing more can be done if the terminal is gone.
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// An attached console. Dropping it restores the terminal.
#[derive(Debug)]
pub struct Console {
    _terminal: RawTerminal,
}

impl Console {
    /// Forwards standard input to the guest.
    pub fn attach(input: ConsoleInput) -> std::io::Result<Self> {
        let terminal = RawTerminal::enter()?;
        let interactive = terminal.is_interactive();
        if interactive {
            eprint!("gureum: console attached; Ctrl-A x stops the VM\r\n");
        }
        std::thread::Builder::new()
            .name("console-in".into())
            .spawn(move || {
                seccomp::enter(ThreadKind::Console);
                forward(&input, interactive)
            })?;
        Ok(Self {
            _terminal: terminal,
        })
    }
}

/// Splits typed input at console escapes. Returns the bytes for the guest
/// and whether the person asked to leave (Ctrl-A x).
fn unescape(input: &[u8], pending_escape: &mut bool) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(input.len());
    for &b in input {
        if *pending_escape {
            *pending_escape = false;
            match b {
                b'x' | b'X' => return (out, true),
                ESCAPE => out.push(ESCAPE),
                other => out.extend([ESCAPE, other]),
            }
        } else if b == ESCAPE {
            *pending_escape = true;
        } else {
            out.push(b);
        }
    }
    (out, false)
}

/// Sends standard input through `send` until it ends or `send` fails;
/// when `interactive`, console escapes are applied. Returns true when the
/// person typed Ctrl-A x.
pub fn pump_stdin(interactive: bool, mut send: impl FnMut(&[u8]) -> std::io::Result<()>) -> bool {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 256];
    let mut pending_escape = false;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or_default();
        let (bytes, stop) = if interactive {
            unescape(chunk, &mut pending_escape)
        } else {
            (chunk.to_vec(), false)
        };
        if send(&bytes).is_err() {
            return false;
        }
        if stop {
            return true;
        }
    }
}

fn forward(input: &ConsoleInput, interactive: bool) {
    // At the end of input the VM runs on.
    if pump_stdin(interactive, |bytes| {
        input.send(bytes);
        Ok(())
    }) {
        input.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_x_stops_and_ctrl_a_ctrl_a_is_literal() {
        let mut pending = false;
        assert_eq!(unescape(b"ls\r", &mut pending), (b"ls\r".to_vec(), false));
        assert_eq!(
            unescape(b"a\x01\x01b", &mut pending),
            (b"a\x01b".to_vec(), false)
        );
        assert_eq!(unescape(b"q\x01", &mut pending), (b"q".to_vec(), false));
        assert!(pending);
        assert_eq!(unescape(b"x", &mut pending), (Vec::new(), true));
        assert_eq!(unescape(b"\x01c", &mut pending), (b"\x01c".to_vec(), false));
    }
}
