//! The thread that runs an activated device: it waits on the device's
//! eventfds (queue notifications, a tap, ...) and a stop eventfd, and
//! calls the device's handler with the index of what became ready.
//!
//! Devices are activated on vCPU threads, but their workers are started
//! by the spawner ([`start_spawner`]), a thread made before the vCPUs:
//! a thread inherits its creator's seccomp filter, so a worker started
//! by a vCPU could do only what the vCPU's filter allows, and the vCPU
//! would have to be allowed whatever any worker does (a virtio-blk
//! worker's io_uring).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::{ActivateError, Interrupt, ResetError};
use crate::vmm::sandbox::seccomp::{self, ThreadKind};

/// What a handler tells the worker loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The device is broken: stop until the driver resets it.
    Stop,
}

/// Set when a worker is retired (its device reset): the device's queue
/// loops check it between requests, so a retired worker touches no ring
/// after the request in hand.
#[derive(Debug, Clone, Default)]
pub struct Retired(Arc<AtomicBool>);

impl Retired {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A running worker; dropping it does not stop it, [`Worker::retire`]
/// and [`Worker::join_until`] do (a device's [`Workers`] call them).
#[derive(Debug)]
pub struct Worker {
    stop: EventFd,
    pub(super) retired: Retired,
    /// Disconnected once the thread is done: its handler, and whatever
    /// that held (transfers in flight), dropped. In a mutex so that a
    /// worker can be shared (a receiver alone is not `Sync`).
    ended: Mutex<Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A thread for the spawner to start, and where its handle goes.
struct Request {
    name: String,
    body: Box<dyn FnOnce() + Send>,
    reply: SyncSender<std::io::Result<JoinHandle<()>>>,
}

/// Where vCPUs send the workers to start, once [`start_spawner`] ran.
static SPAWNER: OnceLock<Sender<Request>> = OnceLock::new();

/// Starts the spawner thread, which starts every device worker from
/// then on (under its filter, not a vCPU's). Called once, before the
/// vCPUs run; a second call starts nothing. Without it (tests), workers
/// are started by the thread that activates the device.
pub fn start_spawner() -> std::io::Result<()> {
    if SPAWNER.get().is_some() {
        return Ok(());
    }
    let (requests, jobs) = channel::<Request>();
    crate::vmm::thread("virtio-spawn").spawn(move || {
        seccomp::enter(ThreadKind::Spawner);
        while let Ok(Request { name, body, reply }) = jobs.recv() {
            // The requester may be gone; the thread then runs unwatched,
            // as any retired worker does.
            let _ = reply.send(crate::vmm::thread(name).spawn(body));
        }
    })?;
    let _ = SPAWNER.set(requests);
    Ok(())
}

/// Starts `body` on a thread named `name`: by the spawner if it runs.
fn spawn_thread(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let Some(spawner) = SPAWNER.get() else {
        return crate::vmm::thread(name).spawn(body);
    };
    let (reply, started) = sync_channel(1);
    let gone = || std::io::Error::other("the worker spawner thread has ended");
    let body = Box::new(body);
    spawner
        .send(Request { name, body, reply })
        .map_err(|_| gone())?;
    started.recv().map_err(|_| gone())?
}

/// Token reserved for the stop eventfd.
const STOP_TOKEN: u64 = u64::MAX;

impl Worker {
    /// Starts `handler` on a thread named `name` under `kind`'s seccomp
    /// filter, woken for each fd in `sources` (with the fd's index) and,
    /// with `edge` set for that index, edge-triggered. The handler may
    /// pause and resume its sources through the [`Sources`] it is given.
    pub fn spawn<H>(
        name: String,
        kind: ThreadKind,
        sources: Vec<(RawFd, bool)>,
        mut handler: H,
    ) -> std::io::Result<Self>
    where
        H: FnMut(usize, &mut Sources) -> Flow + Send + 'static,
    {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP_TOKEN),
        )?;
        let mut sources = Sources {
            epoll,
            paused: vec![false; sources.len()],
            list: sources,
        };
        for index in 0..sources.list.len() {
            sources.register(ControlOperation::Add, index, true)?;
        }
        let (ended_tx, ended) = channel::<()>();
        let thread = spawn_thread(name, move || {
            seccomp::enter(kind);
            serve(&mut sources, &mut handler);
            // What the handler holds (a ring's transfers in flight) is
            // done with before the worker is seen to have ended.
            drop(handler);
            drop(ended_tx);
        })?;
        Ok(Self {
            stop,
            retired: Retired::default(),
            ended: Mutex::new(ended),
            thread: Some(thread),
        })
    }

    /// Starts the worker of `device`, as [`Worker::spawn`]: `pass` serves
    /// the source at the index it is given (and may pause or resume
    /// sources it cannot serve for now) and says whether the driver wants
    /// an interrupt; each pass ends with [`finish_pass`]. `retired` is the
    /// flag the device's queue loops check.
    pub fn start<P, E>(
        device: &str,
        kind: ThreadKind,
        sources: Vec<(RawFd, bool)>,
        interrupt: Arc<Interrupt>,
        retired: Retired,
        mut pass: P,
    ) -> Result<Self, ActivateError>
    where
        P: FnMut(usize, &mut Sources) -> Result<bool, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let name = device.to_string();
        let seen = retired.clone();
        let handler = move |source, sources: &mut Sources| {
            // Retired: the driver has let go of the queues; a pass would
            // touch them (notification flags) even with nothing to do.
            if seen.is_set() {
                return Flow::Stop;
            }
            finish_pass(&interrupt, &name, pass(source, sources))
        };
        let mut worker =
            Self::spawn(device.to_string(), kind, sources, handler).map_err(|source| {
                ActivateError::Worker {
                    device: device.to_string(),
                    source,
                }
            })?;
        worker.retired = retired;
        Ok(worker)
    }

    /// Tells the thread to stop after the request in hand, without
    /// waiting for it ([`Worker::join_until`] waits, within a bound).
    pub fn retire(&self) {
        self.retired.0.store(true, Ordering::SeqCst);
        // If the write fails the thread has already ended.
        let _ = self.stop.write(1);
    }

    /// Retires the worker and waits for its thread to end, after at most
    /// the request it was serving.
    pub fn join(mut self) {
        self.retire();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Retires the worker and waits until `deadline` for its thread to
    /// be done with everything its handler held; gives the worker back
    /// if it is not (its host I/O is stuck), so that a guest's reset
    /// never waits on the host forever.
    pub fn join_until(self, deadline: Instant) -> Result<(), Self> {
        self.retire();
        let left = deadline.saturating_duration_since(Instant::now());
        let ended = self
            .ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv_timeout(left);
        match ended {
            Err(RecvTimeoutError::Timeout) => Err(self),
            // Nothing is ever sent: the thread is past its handler.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                self.join();
                Ok(())
            }
        }
    }
}

/// How long a reset waits for a device's workers to end: far longer
/// than any sound host takes for a ring's worth of I/O (or a frame),
/// short of the guest's own lockup warnings.
pub const RESET_BOUND: Duration = Duration::from_secs(5);

/// The workers of one device. A reset, and the next activation, stop
/// them within a bound: once [`Workers::stop`] returns Ok none touches
/// the guest's queues or buffers, and two never serve a queue at once.
#[derive(Debug)]
pub struct Workers {
    /// Those started at the last activation; after a reset, those still
    /// finishing.
    pub(super) running: Vec<Worker>,
    /// [`RESET_BOUND`], shorter in tests.
    pub(super) bound: Duration,
}

impl Default for Workers {
    fn default() -> Self {
        Self {
            running: Vec::new(),
            bound: RESET_BOUND,
        }
    }
}

impl Workers {
    pub fn push(&mut self, worker: Worker) {
        self.running.push(worker);
    }

    /// Tells every worker to stop after the request in hand, without
    /// waiting.
    pub fn retire(&self) {
        self.running.iter().for_each(Worker::retire);
    }

    /// Retires the workers of `device` and waits, within the bound,
    /// until each has ended and dropped what its handler held. Those
    /// still running at the bound are kept, to be waited for again; the
    /// error says the device may still touch the guest's memory.
    pub fn stop(&mut self, device: &str) -> Result<(), ResetError> {
        // All at once: they wind down together.
        self.retire();
        let deadline = Instant::now() + self.bound;
        let stuck: Vec<Worker> = self
            .running
            .drain(..)
            .filter_map(|worker| worker.join_until(deadline).err())
            .collect();
        if stuck.is_empty() {
            return Ok(());
        }
        let workers = stuck.len();
        self.running = stuck;
        Err(ResetError::Stuck {
            device: device.to_string(),
            workers,
            waited: self.bound,
        })
    }
}

/// The worker's loop: waits for its sources and calls `handler` for
/// each that is ready, until the stop eventfd fires or the handler says
/// to stop.
fn serve<H>(sources: &mut Sources, handler: &mut H)
where
    H: FnMut(usize, &mut Sources) -> Flow,
{
    let mut events = vec![EpollEvent::default(); sources.list.len() + 1];
    loop {
        let n = match sources.epoll.wait(-1, &mut events) {
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
            if handler(index, sources) == Flow::Stop {
                return;
            }
        }
    }
}

/// A worker's event sources, as its handler sees them: one it cannot
/// serve for now (a tap while the guest gave no receive buffers) can be
/// paused, so that its events stop waking the worker, and resumed.
#[derive(Debug)]
pub struct Sources {
    epoll: Epoll,
    /// (fd, edge-triggered) by index.
    list: Vec<(RawFd, bool)>,
    paused: Vec<bool>,
}

impl Sources {
    fn register(
        &mut self,
        op: ControlOperation,
        index: usize,
        listen: bool,
    ) -> std::io::Result<()> {
        let (Some(&(fd, edge)), Some(paused)) = (self.list.get(index), self.paused.get_mut(index))
        else {
            return Err(std::io::ErrorKind::InvalidInput.into());
        };
        let mut events = if listen {
            EventSet::IN
        } else {
            EventSet::empty()
        };
        if edge {
            events |= EventSet::EDGE_TRIGGERED;
        }
        let token = u64::try_from(index).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        self.epoll.ctl(op, fd, EpollEvent::new(events, token))?;
        *paused = !listen;
        Ok(())
    }

    /// Stops waking the handler for source `index` (a no-op if paused).
    pub fn pause(&mut self, index: usize) -> std::io::Result<()> {
        if self.paused.get(index) == Some(&true) {
            return Ok(());
        }
        self.register(ControlOperation::Modify, index, false)
    }

    /// Wakes the handler for source `index` again (a no-op if not
    /// paused). A source that became ready while paused, edge-triggered
    /// or not, wakes it at once.
    pub fn resume(&mut self, index: usize) -> std::io::Result<()> {
        if self.paused.get(index) != Some(&true) {
            return Ok(());
        }
        self.register(ControlOperation::Modify, index, true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retiring_a_busy_worker_does_not_wait_for_it() {
        let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let interrupt = Arc::new(Interrupt::new(irq));
        let (started_tx, started) = channel();
        let (release, released) = channel::<()>();
        let retired = Retired::default();
        let seen = retired.clone();
        let kicked = kick.try_clone().unwrap();
        let worker = Worker::start(
            "virtio-test",
            ThreadKind::Worker,
            vec![(kick.as_raw_fd(), false)],
            interrupt,
            retired,
            move |_, _| {
                kicked.read().unwrap();
                started_tx.send(()).unwrap();
                // Busy: as a long request would be.
                released.recv().unwrap();
                Ok::<_, std::io::Error>(!seen.is_set())
            },
        )
        .unwrap();
        kick.write(1).unwrap();
        started.recv().unwrap();
        let mut workers = Workers::default();
        workers.push(worker);
        // Returns while the pass runs.
        workers.retire();
        assert!(workers.running[0].retired.is_set());
        release.send(()).unwrap();
        workers.stop("virtio-test").unwrap();
        assert!(workers.running.is_empty());
    }

    #[test]
    fn a_paused_source_wakes_nobody_until_resumed() {
        let [a, b] = [0, 1].map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let sources = vec![(a.as_raw_fd(), false), (b.as_raw_fd(), true)];
        let (seen_tx, seen) = channel();
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let mut woken = 0;
        let worker = Worker::spawn(
            "virtio-test".into(),
            ThreadKind::Worker,
            sources,
            move |index, sources| {
                woken += 1;
                match (index, woken) {
                    // `a` stays readable (level-triggered): without the pause
                    // it would wake the worker again at once.
                    (0, 1) => sources.pause(0).unwrap(),
                    (1, _) => {
                        b2.read().unwrap();
                        sources.resume(0).unwrap();
                    }
                    _ => drop(a2.read()),
                }
                seen_tx.send(index).unwrap();
                Flow::Continue
            },
        )
        .unwrap();
        a.write(1).unwrap();
        assert_eq!(seen.recv().unwrap(), 0);
        b.write(1).unwrap();
        // `a` was still readable: resuming it wakes the worker for it.
        assert_eq!(seen.recv().unwrap(), 1);
        assert_eq!(seen.recv().unwrap(), 0);
        worker.join();
    }

    /// Held by a handler: dropping it waits until the test says so, as
    /// a ring with transfers in flight waits for them.
    struct Held(Receiver<()>);

    impl Drop for Held {
        fn drop(&mut self) {
            let _ = self.0.recv();
        }
    }

    #[test]
    fn a_worker_is_joined_only_once_what_its_handler_held_is_done() {
        let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let (release, released) = channel::<()>();
        let held = Held(released);
        let worker = Worker::spawn(
            "virtio-test".into(),
            ThreadKind::Worker,
            vec![(kick.as_raw_fd(), false)],
            move |_, _| {
                let _ = &held;
                Flow::Continue
            },
        )
        .unwrap();
        // Stuck: the wait is bounded and gives the worker back.
        let soon = Instant::now() + Duration::from_millis(50);
        let worker = worker.join_until(soon).unwrap_err();
        assert!(worker.retired.is_set());
        release.send(()).unwrap();
        // A bound, not a speed check.
        let later = Instant::now() + Duration::from_secs(10);
        assert!(worker.join_until(later).is_ok());
    }

    #[test]
    fn a_retired_worker_serves_no_further_pass() {
        let [a, b] = [0, 1].map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let retired = Retired::default();
        let (passes_tx, passes) = channel();
        let worker = Worker::start(
            "virtio-test",
            ThreadKind::Worker,
            vec![(a.as_raw_fd(), false), (b.as_raw_fd(), false)],
            Arc::new(Interrupt::new(irq)),
            retired.clone(),
            move |index, _| {
                passes_tx.send(index).unwrap();
                Ok::<_, std::io::Error>(false)
            },
        )
        .unwrap();
        // Both ready, only then retired (the stop eventfd not yet
        // written): the worker must not pass over either again.
        retired.0.store(true, Ordering::SeqCst);
        a.write(1).unwrap();
        b.write(1).unwrap();
        let later = Instant::now() + Duration::from_secs(10);
        assert!(worker.join_until(later).is_ok());
        assert_eq!(passes.try_iter().count(), 0);
    }
}
