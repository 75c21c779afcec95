//! Bounded byte queues between the UART and whatever is on the other end
//! of the console, so that neither side ever waits on the other: a vCPU
//! writing to the UART only appends to the output queue, which a thread
//! of its own drains into the terminal, log or socket; console input is
//! queued and fed to the UART by another thread as the guest reads it,
//! so a guest that does not read never blocks the person's keys
//! (Ctrl-A x in particular).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use vmm_sys_util::eventfd::EventFd;

use super::devices::serial::{self, SerialPort};
use super::sandbox::seccomp::{self, ThreadKind};

/// Guest output held while the console end is slow: 1 MiB. Past it the
/// oldest output is dropped (the newest is what a person wants to see).
pub const OUTPUT_CAPACITY: usize = 1 << 20;
/// Console input held while the guest does not read: 64 KiB. Past it
/// new input is dropped, as a UART overruns.
pub const INPUT_CAPACITY: usize = 64 << 10;

/// Which bytes a full queue gives up.
#[derive(Debug, Clone, Copy)]
enum Overflow {
    DropOldest,
    DropNewest,
}

#[derive(Debug, Default)]
struct Inner {
    bytes: VecDeque<u8>,
    dropped: u64,
    /// The consumer holds bytes it has not finished with.
    busy: bool,
}

/// A bounded byte queue with one consumer.
#[derive(Debug)]
struct ByteQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    idle: Condvar,
    capacity: usize,
    overflow: Overflow,
}

impl ByteQueue {
    fn new(capacity: usize, overflow: Overflow) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            ready: Condvar::new(),
            idle: Condvar::new(),
            capacity,
            overflow,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `data`, giving up bytes as the queue's overflow says.
    fn push(&self, data: &[u8]) {
        let mut inner = self.lock();
        let room = self.capacity.saturating_sub(inner.bytes.len());
        let (keep, lost) = match self.overflow {
            Overflow::DropNewest => (data.get(..room.min(data.len())).unwrap_or_default(), 0),
            Overflow::DropOldest => {
                let tail = data.len().min(self.capacity);
                let keep = data.get(data.len() - tail..).unwrap_or_default();
                let excess = keep.len().saturating_sub(room);
                let old = excess.min(inner.bytes.len());
                inner.bytes.drain(..old);
                (keep, excess)
            }
        };
        let lost = lost + (data.len() - keep.len());
        inner.dropped = inner.dropped.saturating_add(lost as u64);
        inner.bytes.extend(keep);
        drop(inner);
        self.ready.notify_one();
    }

    /// Waits for bytes and moves all of them into `out`.
    fn take(&self, out: &mut Vec<u8>) {
        let mut inner = self.lock();
        while inner.bytes.is_empty() {
            inner = self
                .ready
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
        }
        out.clear();
        out.extend(inner.bytes.drain(..));
        inner.busy = true;
    }

    /// The consumer is done with what it took.
    fn done(&self) {
        let mut inner = self.lock();
        inner.busy = false;
        if inner.bytes.is_empty() {
            self.idle.notify_all();
        }
    }

    /// Waits until the consumer has handled everything pushed, or for
    /// `timeout`; returns whether it has.
    fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let inner = self.lock();
        let (inner, _) = self
            .idle
            .wait_timeout_while(inner, timeout, |i| i.busy || !i.bytes.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        !inner.busy && inner.bytes.is_empty()
    }

    fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// A queue and its consumer `name`, a thread (started later, see
    /// [`Consumer::start`]) that hands everything pushed into it to
    /// `consume`, until `consume` says to stop.
    fn with_consumer(
        name: &'static str,
        kind: ThreadKind,
        capacity: usize,
        overflow: Overflow,
        mut consume: impl FnMut(&[u8]) -> bool + Send + 'static,
    ) -> (Arc<Self>, Consumer) {
        let queue = Self::new(capacity, overflow);
        let taken = queue.clone();
        let run = Box::new(move || {
            seccomp::enter(kind);
            let mut chunk = Vec::new();
            loop {
                taken.take(&mut chunk);
                let go_on = consume(&chunk);
                taken.done();
                if !go_on {
                    return;
                }
            }
        });
        (queue, Consumer { name, run })
    }
}

/// A queue's consumer thread, not started yet: the VMM's threads start
/// only once its sandbox is locked down (the jail needs a process of one
/// thread), while the queues exist before, as the devices are built.
pub struct Consumer {
    name: &'static str,
    run: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish()
    }
}

impl Consumer {
    /// Starts the thread.
    pub fn start(self) -> std::io::Result<()> {
        crate::vmm::thread(self.name).spawn(self.run).map(drop)
    }
}

/// The UART's output end: appends to a queue a thread drains into `sink`.
#[derive(Debug, Clone)]
pub struct BufferedOutput {
    queue: Arc<ByteQueue>,
}

impl BufferedOutput {
    /// The output and its thread (not started) that writes it into
    /// `sink`.
    pub fn new(mut sink: Box<dyn Write + Send>) -> (Self, Consumer) {
        let (queue, consumer) = ByteQueue::with_consumer(
            "console-out",
            ThreadKind::ConsoleOut,
            OUTPUT_CAPACITY,
            Overflow::DropOldest,
            move |chunk| {
                // A sink that fails (closed stdout) loses the output, as a
                // UART with nothing attached would.
                let _ = sink.write_all(chunk).and_then(|()| sink.flush());
                true
            },
        );
        (Self { queue }, consumer)
    }

    /// As [`BufferedOutput::new`], with the thread started.
    pub fn start(sink: Box<dyn Write + Send>) -> std::io::Result<Self> {
        let (out, consumer) = Self::new(sink);
        consumer.start()?;
        Ok(out)
    }

    /// Waits until the sink has taken all output so far, or for
    /// `timeout` (a stalled sink): what a stopping VM printed last is
    /// not lost when the process ends.
    pub fn drain(&self, timeout: std::time::Duration) -> bool {
        self.queue.wait_idle(timeout)
    }

    /// Bytes given up because the sink did not keep up.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }
}

impl Write for BufferedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.queue.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Console input on its way to the UART.
#[derive(Debug, Clone)]
pub struct QueuedInput {
    queue: Arc<ByteQueue>,
}

impl QueuedInput {
    /// The input and its thread (not started) that feeds it into `port`
    /// as the guest drains its receive FIFO (`drained` signals that).
    pub fn new(port: Arc<Mutex<SerialPort>>, drained: EventFd) -> (Self, Consumer) {
        let (queue, consumer) = ByteQueue::with_consumer(
            "console-feed",
            ThreadKind::Console,
            INPUT_CAPACITY,
            Overflow::DropNewest,
            move |chunk| serial::feed(&port, &drained, chunk).is_ok(),
        );
        (Self { queue }, consumer)
    }

    /// Queues `bytes` for the guest; never waits.
    pub fn send(&self, bytes: &[u8]) {
        self.queue.push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_output_queue_keeps_the_newest_bytes() {
        let q = ByteQueue::new(8, Overflow::DropOldest);
        q.push(b"abcdef");
        q.push(b"ghijk");
        let mut out = Vec::new();
        q.take(&mut out);
        assert_eq!(out, b"defghijk");
        assert_eq!(q.dropped(), 3);
        q.push(b"0123456789");
        q.take(&mut out);
        assert_eq!(out, b"23456789");
        assert_eq!(q.dropped(), 5);
    }

    #[test]
    fn drain_waits_for_the_sink_to_take_everything() {
        let (tx, rx) = std::sync::mpsc::channel();
        struct Slow(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(20));
                self.0.send(buf.to_vec()).unwrap();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = BufferedOutput::start(Box::new(Slow(tx))).unwrap();
        out.write_all(b"last words").unwrap();
        assert!(out.drain(std::time::Duration::from_secs(60)));
        let got: Vec<u8> = rx.try_iter().flatten().collect();
        assert_eq!(got, b"last words");
    }

    #[test]
    fn a_full_input_queue_keeps_the_oldest_bytes() {
        let q = ByteQueue::new(8, Overflow::DropNewest);
        q.push(b"abcdef");
        q.push(b"ghijk");
        let mut out = Vec::new();
        q.take(&mut out);
        assert_eq!(out, b"abcdefgh");
        assert_eq!(q.dropped(), 3);
    }

    /// A sink that never returns, as a console client that stopped reading.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_never_blocks_the_writer() {
        let (_keep, rx) = std::sync::mpsc::channel();
        let mut out = BufferedOutput::start(Box::new(Stalled(rx))).unwrap();
        let line = [b'x'; 4096];
        // Four times the queue's capacity: every write returns at once.
        for _ in 0..(4 * OUTPUT_CAPACITY / line.len()) {
            out.write_all(&line).unwrap();
        }
        // All but the queue and the one chunk the stalled sink holds.
        assert!(out.dropped() >= (2 * OUTPUT_CAPACITY) as u64);
    }
}
