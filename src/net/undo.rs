//! All-or-nothing changes: each step that made something registers how to
//! unmake it; unless the change commits, the steps are undone in reverse
//! order when the guard is dropped (an early `?` return included).
//!
//! Undoing is best effort: a step that fails to undo leaves something
//! behind that `gureum net check` (see `cleanup`) finds and removes.

/// The undo steps of a change in progress.
#[derive(Default)]
pub struct Undo {
    steps: Vec<Box<dyn FnOnce()>>,
}

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Undo({} steps)", self.steps.len())
    }
}

impl Undo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers how to unmake what the step just made. Its error, if any,
    /// is dropped: see the module comment.
    pub fn push<E>(&mut self, step: impl FnOnce() -> Result<(), E> + 'static) {
        self.steps.push(Box::new(move || {
            let _ = step();
        }));
    }

    /// The change succeeded: keep everything.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::Undo;

    type Log = Rc<RefCell<Vec<u8>>>;

    /// An undo step that records `n` in `log` and then fails.
    fn step(log: &Log, n: u8) -> impl FnOnce() -> Result<(), ()> + 'static {
        let log = log.clone();
        move || {
            log.borrow_mut().push(n);
            Err(())
        }
    }

    #[test]
    fn a_failed_change_is_undone_in_reverse_even_past_failing_steps() {
        let log = Log::default();
        {
            let mut undo = Undo::new();
            undo.push(step(&log, 1));
            undo.push(step(&log, 2));
            undo.push(step(&log, 3));
        }
        assert_eq!(*log.borrow(), vec![3, 2, 1]);
    }

    #[test]
    fn a_committed_change_is_kept() {
        let log = Log::default();
        let mut undo = Undo::new();
        undo.push(step(&log, 1));
        undo.commit();
        assert!(log.borrow().is_empty());
    }
}
