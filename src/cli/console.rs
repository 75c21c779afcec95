//! The terminal side of the serial console: raw mode while attached, and
//! a thread that forwards standard input to the guest.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

use gureum::vmm::ConsoleInput;

/// Ctrl-A starts an escape; Ctrl-A x stops the VM, Ctrl-A Ctrl-A sends a
/// literal Ctrl-A.
const ESCAPE: u8 = 0x01;

/// An attached console. Dropping it restores the terminal.
#[derive(Debug)]
pub struct Console {
    saved: Option<Termios>,
}

impl Console {
    /// Forwards standard input to the guest; when it is a terminal, puts
    /// it in raw mode so keys reach the guest as typed.
    pub fn attach(input: ConsoleInput) -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = if stdin.is_terminal() {
            let saved = termios::tcgetattr(stdin.as_fd())?;
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
            eprint!("gureum: console attached; Ctrl-A x stops the VM\r\n");
            Some(saved)
        } else {
            None
        };
        let interactive = saved.is_some();
        std::thread::Builder::new()
            .name("console-in".into())
            .spawn(move || forward(&input, interactive))?;
        Ok(Self { saved })
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // Nothing more can be done if the terminal is gone.
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Splits typed input at console escapes. Returns the bytes for the guest
/// and whether the person asked to stop.
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

fn forward(input: &ConsoleInput, interactive: bool) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 256];
    let mut pending_escape = false;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return, // end of input: the VM runs on
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or_default();
        let (bytes, stop) = if interactive {
            unescape(chunk, &mut pending_escape)
        } else {
            (chunk.to_vec(), false)
        };
        if input.send(&bytes).is_err() {
            return;
        }
        if stop {
            input.detach();
            return;
        }
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
