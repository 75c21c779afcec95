//! The daemon's executor: one thread that runs actions and reconcile
//! passes one after the other, so that no two changes to the store and
//! to Linux interleave.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{Config, Reply};
use crate::cloud::api::{self, Action, ApiError, Category, Response};
use crate::cloud::lifecycle::Context;
use crate::cloud::{self, children};
use crate::net::reconcile::Mode;

/// Work for the executor.
#[derive(Debug)]
enum Job {
    /// Run the action and send its reply.
    Execute(Box<Action>, oneshot::Sender<Reply>),
    /// Reconcile (the periodic pass).
    Reconcile,
}

/// Where front ends send actions: the executor's queue.
#[derive(Debug, Clone)]
pub struct Executor(mpsc::Sender<Job>);

impl Executor {
    /// Has the executor run `action`; its reply.
    pub async fn execute(&self, action: Action) -> Reply {
        let (done, reply) = oneshot::channel();
        if self.0.send(Job::Execute(Box::new(action), done)).is_err() {
            return stopped();
        }
        reply.await.unwrap_or_else(|_| stopped())
    }

    /// `execute` from a thread outside the runtime (one that may block).
    pub fn run(&self, action: Action) -> Result<Response, ApiError> {
        let (done, reply) = oneshot::channel();
        if self.0.send(Job::Execute(Box::new(action), done)).is_err() {
            return stopped().into();
        }
        reply.blocking_recv().unwrap_or_else(|_| stopped()).into()
    }

    /// Queues a periodic reconcile pass; false once the executor is gone.
    pub fn reconcile(&self) -> bool {
        self.0.send(Job::Reconcile).is_ok()
    }
}

fn stopped() -> Reply {
    Reply::Error(ApiError::new(
        Category::Internal,
        "the daemon's executor has stopped; restart the daemon",
    ))
}

/// Starts the executor thread; actions sent through the returned handle
/// run in order. The thread ends when every handle is gone.
pub fn start(config: &Config) -> Result<Executor, super::Error> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let ctx = config.ctx.clone();
    std::thread::Builder::new()
        .name("executor".into())
        .spawn(move || {
            for job in queue {
                match job {
                    Job::Execute(action, reply) => run(&ctx, *action, reply),
                    Job::Reconcile => reconcile(&ctx),
                }
            }
        })
        .map_err(super::Error::Thread)?;
    Ok(Executor(jobs))
}

fn run(ctx: &Context, action: Action, reply: oneshot::Sender<Reply>) {
    if matches!(action, Action::WaitInstance { .. }) {
        // Waiting changes nothing and may take minutes: its own thread.
        let ctx = ctx.clone();
        let waiting = std::thread::Builder::new()
            .name("wait".into())
            .spawn(move || answer(reply, api::execute(&ctx, &action).into()));
        if let Err(e) = waiting {
            eprintln!("gureum daemon: cannot start a thread to wait: {e}");
        }
        return;
    }
    let result = api::execute(ctx, &action);
    if result.is_ok() && action.changes() {
        reconcile(ctx);
    }
    children::reap();
    answer(reply, result.into());
}

fn answer(reply: oneshot::Sender<Reply>, result: Reply) {
    // A client that hung up has no use for the answer.
    let _ = reply.send(result);
}

/// One repairing pass of `cloud::reconcile`; what it repaired and a
/// failure are logged, and the next pass tries again.
pub fn reconcile(ctx: &Context) {
    let passed = ctx
        .open_store()
        .and_then(|mut store| cloud::reconcile::run(ctx, &mut store, Mode::Repair));
    match passed {
        Ok(report) => {
            for difference in &report.network {
                eprintln!("gureum daemon: repaired: {difference}");
            }
            for path in &report.files {
                eprintln!(
                    "gureum daemon: removed {}, owned by no record",
                    path.display()
                );
            }
        }
        Err(e) => eprintln!("gureum daemon: reconcile failed (the next pass tries again): {e}"),
    }
    children::reap();
}
