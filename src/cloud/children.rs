//! Children this process started and does not wait for (instance
//! supervisors, which outlive the command that starts them). A one-shot
//! command exits before they end and init reaps them; a long-running
//! process (the daemon) keeps them here and reaps those that ended, so
//! that they do not stay zombies.

use std::process::Child;
use std::sync::{Mutex, PoisonError};

static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Keeps `child` until `reap` sees it end.
pub fn keep(child: Child) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(child);
}

/// Reaps the kept children that have ended; returns how many still run.
pub fn reap() -> usize {
    let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
    // A child whose status cannot be read is kept and asked again later.
    children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    children.len()
}
