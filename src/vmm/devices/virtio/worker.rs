//! The thread that runs an activated device: it waits on the device's
//! eventfds (queue notifications, a tap, ...) and a stop eventfd, and
//! calls the device's handler with the index of what became ready.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::{ActivateError, Interrupt};
use crate::vmm::sandbox::seccomp::{self, ThreadKind};

/// What a handler tells the worker loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The device is broken: stop until the driver resets it.
    Stop,
}

/// A running worker; dropping it does not stop it, [`Worker::stop`] does.
#[derive(Debug)]
pub struct Worker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

/// Token reserved for the stop eventfd.
const STOP_TOKEN: u64 = u64::MAX;

impl Worker {
    /// Starts `handler` on a thread named `name`, woken for each fd in
    /// `sources` (with the fd's index) and, with `edge` set for that
    /// index, edge-triggered.
    pub fn spawn<H>(
        name: String,
        sources: Vec<(RawFd, bool)>,
        mut handler: H,
    ) -> std::io::Result<Self>
    where
        H: FnMut(usize) -> Flow + Send + 'static,
    {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP_TOKEN),
        )?;
        for (index, (fd, edge)) in (0u64..).zip(&sources) {
            let events = if *edge {
                EventSet::IN | EventSet::EDGE_TRIGGERED
            } else {
                EventSet::IN
            };
            epoll.ctl(ControlOperation::Add, *fd, EpollEvent::new(events, index))?;
        }
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            seccomp::enter(ThreadKind::Worker);
            let mut events = vec![EpollEvent::default(); sources.len() + 1];
            loop {
                let n = match epoll.wait(-1, &mut events) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                for event in events.iter().take(n) {
                    let token = event.data();
                    if token == STOP_TOKEN {
                        return;
                    }
                    let Ok(index) = usize::try_from(token) else {
                        continue;
                    };
                    if handler(index) == Flow::Stop {
                        return;
                    }
                }
            }
        })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Starts the worker of `device`, as [`Worker::spawn`]: `pass` serves
    /// the source at the index it is given and says whether the driver
    /// wants an interrupt; each pass ends with [`finish_pass`].
    pub fn start<P, E>(
        device: &str,
        sources: Vec<(RawFd, bool)>,
        interrupt: Arc<Interrupt>,
        mut pass: P,
    ) -> Result<Self, ActivateError>
    where
        P: FnMut(usize) -> Result<bool, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let name = device.to_string();
        let handler = move |source| finish_pass(&interrupt, &name, pass(source));
        Self::spawn(device.to_string(), sources, handler).map_err(|source| ActivateError::Worker {
            device: device.to_string(),
            source,
        })
    }

    /// Stops the worker in `slot`, if one runs.
    pub fn stop_slot(slot: &mut Option<Self>) {
        if let Some(worker) = slot.take() {
            worker.stop();
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        // If the write fails the thread has already ended.
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Ends one pass over a device's queues: interrupts the driver when the
/// pass used buffers it wants to hear about, or marks the device broken
/// when the pass met guest input it cannot accept.
fn finish_pass<E: std::fmt::Display>(
    interrupt: &Interrupt,
    device: &str,
    outcome: Result<bool, E>,
) -> Flow {
    match outcome {
        Ok(notify) => {
            if notify {
                interrupt.used_ring();
            }
            Flow::Continue
        }
        Err(e) => {
            interrupt.mark_broken(device, &e);
            Flow::Stop
        }
    }
}
