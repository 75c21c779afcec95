//! `gureum instance console`: this terminal on an instance's console
//! socket. Ctrl-A x detaches and leaves the instance running.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::console::{RawTerminal, pump_stdin};

/// Relays the terminal to the console at `socket` until the person
/// detaches, input ends, or the VM goes away.
pub fn attach(id: &str, socket: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    let to_guest = stream.try_clone()?;
    let terminal = RawTerminal::enter()?;
    let interactive = terminal.is_interactive();
    if interactive {
        eprint!("gureum: attached to {id}; Ctrl-A x detaches (the instance keeps running)\r\n");
    }
    std::thread::Builder::new()
        .name("console-in".into())
        .spawn(move || forward(to_guest, interactive))?;
    let mut from_guest = stream;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 4096];
    loop {
        match from_guest.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                stdout.write_all(buf.get(..n).unwrap_or_default())?;
                stdout.flush()?;
            }
        }
    }
    drop(terminal);
    if interactive {
        eprintln!("gureum: detached from {id}");
    }
    Ok(())
}

/// Sends standard input to the guest; ends the session on Ctrl-A x or at
/// the end of input.
fn forward(mut to_guest: UnixStream, interactive: bool) {
    pump_stdin(interactive, |bytes| to_guest.write_all(bytes));
    // Unblocks the reader in `attach`: the session is over.
    let _ = to_guest.shutdown(Shutdown::Both);
}
