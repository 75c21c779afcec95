//! Where the control plane lives (`Context`), starting an instance's
//! supervisor, and reconciling instance records with the processes that
//! really run: when a supervisor is gone, the next command that looks
//! repairs the record.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::control::wait_until;
use super::instance::{Instance, State};
use super::process::ProcessRef;
use super::state_dir::StateDir;
use super::store::Store;
use super::vpc::public::NetConfig;
use super::vpc::{port, realise};
use super::{Error, lookup};
use crate::vmm::sandbox::cgroup;

/// A pending instance without a supervisor is given this long to get
/// one before it is declared failed (`gureum run` is starting it).
const SUPERVISOR_GRACE_SECS: u64 = 30;
/// How long `run` and `start` wait for a VMM to say its VM runs (or to
/// fail) before answering with the instance still pending.
const START_WAIT: Duration = Duration::from_secs(60);

/// The state reason of instances stopped with `gureum instance stop`.
pub const USER_STOP: &str = "Client.UserInitiatedShutdown: stopped by gureum instance stop";
/// The state reason of terminated instances.
pub const USER_TERMINATE: &str =
    "Client.UserInitiatedShutdown: terminated by gureum instance terminate";

/// The state reason of an instance terminated because the process it was
/// tied to (`run --rm`) ended.
pub fn owner_gone_reason(pid: i32) -> String {
    format!(
        "Client.UserInitiatedShutdown: process {pid}, whose end terminates it (run --rm), ended"
    )
}

/// The VMM's own program, beside `gureum`: `gureum-vmm boot` takes the
/// arguments of `gureum boot`, in a binary of the VMM alone.
pub const VMM_PROGRAM: &str = "gureum-vmm";

/// Where the control plane lives and which program is `gureum`.
#[derive(Debug, Clone)]
pub struct Context {
    pub state: StateDir,
    /// The `gureum` executable, run as `gureum supervise`.
    pub exe: PathBuf,
}

impl Context {
    /// The program every instance's VMM runs: [`VMM_PROGRAM`] in `exe`'s
    /// directory (cargo builds and installs both).
    pub fn vmm_exe(&self) -> PathBuf {
        self.exe.with_file_name(VMM_PROGRAM)
    }

    pub fn open_store(&self) -> Result<Store, Error> {
        self.state.create().map_err(Error::io(
            "cannot create the state directory (set --state-dir or GUREUM_STATE_DIR)",
            self.state.root(),
        ))?;
        Ok(Store::open(&self.state.store())?)
    }
}

/// Records that instance `id`'s supervisor could not be started.
pub(super) fn record_start_failure(store: &mut Store, id: &str, e: &Error) -> Result<(), Error> {
    let stopped = store.write(|tx| {
        let mut i = lookup::find_instance(tx, id)?;
        if i.state != State::Pending {
            return Ok::<_, Error>(None);
        }
        i.transition(State::Stopped, Some(format!("Server.InternalError: {e}")))?;
        tx.update(&i)?;
        Ok(Some(i))
    })?;
    if let Some(i) = stopped.filter(gave_back_public_ip) {
        tell_unmapped(realise::converge_instance_vpc(store, &i.id), &i);
    }
    Ok(())
}

/// Whether instance `i` is stopped and may have had a public address
/// given to it, which the change that stopped it gave back: its VPC is
/// converged then, so that its mapping at the gateway goes.
fn gave_back_public_ip(i: &Instance) -> bool {
    i.state == State::Stopped && i.placement.as_ref().is_some_and(|p| p.auto_public_ip)
}

/// Tells a failure to unmap instance `i`'s public address: whatever stays
/// is found by `gureum net check`.
fn tell_unmapped<T>(converged: Result<T, Error>, i: &Instance) {
    if let Err(error) = converged {
        eprintln!("gureum: cannot unmap {}'s public address: {error}", i.id);
    }
}

/// Waits until instance `id` is no longer pending: its VMM said its VM
/// runs, or it ended. One still pending after `START_WAIT` is returned as
/// it is (`gureum instance wait` waits on).
pub(super) fn await_start(ctx: &Context, store: &mut Store, id: &str) -> Result<Instance, Error> {
    let settled = |i: &Instance| i.state != State::Pending;
    match wait_until(ctx, store, id, State::Running, settled, START_WAIT) {
        Err(Error::Timeout { .. }) => Ok(store.read(|tx| lookup::find_instance(tx, id))?),
        other => other,
    }
}

/// Why instance `i` did not start, if it stopped without being asked to.
pub(super) fn failed_at_start(i: &Instance) -> Option<String> {
    let reason = i.state_reason.as_deref().unwrap_or_default();
    (matches!(i.state, State::Stopped | State::Terminated)
        && !reason.starts_with("Client.UserInitiatedShutdown"))
    .then(|| format!("instance {} did not start: {reason}", i.id))
}

/// Starts `gureum supervise ID` in its own session, its output going to
/// the instance's VMM log.
pub(super) fn spawn_supervisor(ctx: &Context, store: &mut Store, id: &str) -> Result<(), Error> {
    let files = ctx.state.instance_files(id);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.vmm_log)
        .map_err(Error::io("cannot open", &files.vmm_log))?;
    let log2 = log
        .try_clone()
        .map_err(Error::io("cannot open", &files.vmm_log))?;
    let spawn_err = |source| Error::SpawnSupervisor {
        id: id.into(),
        exe: ctx.exe.clone(),
        source,
    };
    // Not waited for: the supervisor outlives this command by design;
    // `children` reaps it in a process that lives longer than it.
    let child = Command::new(&ctx.exe)
        .arg("--state-dir")
        .arg(ctx.state.root())
        .arg("supervise")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(spawn_err)?;
    // The supervisor records itself too; whoever is first, the same
    // process is recorded, so that a supervisor dying before it gets to
    // run is noticed.
    let me = ProcessRef::of(child.id());
    super::children::keep(child);
    if let Some(me) = me {
        store.write(|tx| {
            if let Some(mut i) = tx.get::<Instance>(id)? {
                if i.state.is_supervised() && i.supervisor.is_none() {
                    i.supervisor = Some(me);
                    tx.update(&i)?;
                }
            }
            Ok::<_, Error>(())
        })?;
    }
    Ok(())
}

/// Starts terminating `i` if the process it is tied to (`run --rm`) has
/// ended: a stopped one is terminated at once; a running one is shutting
/// down with its VMM killed now (its disk copy goes: there is nothing to
/// shut down gracefully for), and its supervisor, or the next pass if
/// that is gone too, records it terminated. Says whether it changed `i`.
pub(super) fn end_if_owner_gone(i: &mut Instance) -> bool {
    let Some(owner) = i.terminate_with else {
        return false;
    };
    if owner.is_alive() || matches!(i.state, State::ShuttingDown | State::Terminated) {
        return false;
    }
    let to = match i.state {
        State::Stopped => State::Terminated,
        _ => State::ShuttingDown,
    };
    if i.transition(to, Some(owner_gone_reason(owner.pid)))
        .is_err()
    {
        return false;
    }
    if to == State::ShuttingDown {
        i.kill_after = Some(super::time::now_secs());
        if let Some(vmm) = i.vmm {
            vmm.signal(Signal::SIGKILL);
        }
    }
    true
}

/// Repairs `i` if its supervisor is gone: kills a VMM left behind and
/// records the instance as stopped (or terminated, if it was being
/// terminated). Says whether it changed anything.
fn reconcile_one(i: &mut Instance, now: u64) -> bool {
    if !i.state.is_supervised() || i.supervisor.is_some_and(|s| s.is_alive()) {
        return false;
    }
    if i.supervisor.is_none()
        && i.state == State::Pending
        && now.saturating_sub(i.state_since) < SUPERVISOR_GRACE_SECS
    {
        return false;
    }
    if let Some(vmm) = i.vmm {
        vmm.signal(Signal::SIGKILL);
    }
    let what = match i.supervisor {
        // Its PID may be another process's now: not worth naming.
        Some(s) if s.from_another_boot() => "the host restarted".to_string(),
        Some(s) => format!("the instance's supervisor (pid {}) is gone", s.pid),
        None => "the instance's supervisor never started".to_string(),
    };
    let (to, reason) = match i.state {
        // Terminated for the reason it was being terminated.
        State::ShuttingDown => (
            State::Terminated,
            i.state_reason
                .clone()
                .unwrap_or_else(|| USER_TERMINATE.into()),
        ),
        State::Stopping => (State::Stopped, USER_STOP.to_string()),
        _ => (
            State::Stopped,
            format!("Server.InternalError: {what}; the VM was stopped"),
        ),
    };
    // Every supervised state may become stopped or terminated as chosen.
    i.transition(to, Some(reason)).is_ok()
}

/// Removes what a stopped instance no longer needs: its runtime files,
/// and everything once it is terminated (its port in its VPC included).
pub fn clean_up(ctx: &Context, i: &Instance) {
    if i.state == State::Terminated && i.placement.is_some() {
        let released = ctx
            .open_store()
            .and_then(|mut store| port::release(&mut store, &NetConfig::from_env()?, &i.id));
        if let Err(error) = released {
            // Whatever stays is found by `gureum net check`.
            eprintln!("gureum: cannot take {} out of its VPC: {error}", i.id);
        }
    }
    if gave_back_public_ip(i) {
        let converged = ctx
            .open_store()
            .and_then(|mut store| realise::converge_instance_vpc(&mut store, &i.id));
        tell_unmapped(converged, i);
    }
    let files = ctx.state.instance_files(&i.id);
    let dir = if i.state == State::Terminated {
        files.dir
    } else {
        files.run_dir
    };
    // Already gone is fine; anything else leaves files a later terminate
    // removes.
    let _ = std::fs::remove_dir_all(dir);
}

/// Brings every record in line with the processes that exist.
pub fn reconcile(ctx: &Context, store: &mut Store) -> Result<(), Error> {
    let now = super::time::now_secs();
    let fixed = store.write(|tx| {
        let mut fixed = Vec::new();
        // An unreadable record is left for the listing to report.
        for mut i in tx.list_readable::<Instance>()?.items {
            // Both may apply: an owner and a supervisor killed together.
            let owner_gone = end_if_owner_gone(&mut i);
            if reconcile_one(&mut i, now) | owner_gone {
                tx.update(&i)?;
                fixed.push(i);
            }
        }
        Ok::<_, Error>(fixed)
    })?;
    // One shutting down is its supervisor's to clean up.
    for i in fixed.iter().filter(|i| !i.state.is_supervised()) {
        clean_up(ctx, i);
    }
    remove_stale_cgroups(store)
}

/// Removes the cgroups of instances no supervisor owns any more (left
/// when everything was killed at once, or the host crashed). The next
/// pass retries what fails; only gureum's own parent is looked at.
fn remove_stale_cgroups(store: &mut Store) -> Result<(), Error> {
    let Ok(Some(parent)) = cgroup::Parent::from_env() else {
        return Ok(());
    };
    let owned: Vec<String> = store.read(|tx| {
        Ok::<_, Error>(
            // An unreadable record's cgroup is never empty while its VMM
            // runs, and only empty ones are removed.
            tx.list_readable::<Instance>()?
                .items
                .into_iter()
                .filter(|i| i.state.is_supervised())
                .map(|i| i.id)
                .collect(),
        )
    })?;
    let _ = parent.remove_stale(|name| owned.iter().any(|id| id == name));
    Ok(())
}

/// The program path for `Context::exe` when running as `gureum` itself.
pub fn current_exe() -> Result<PathBuf, Error> {
    std::env::current_exe().map_err(Error::io(
        "cannot find this program",
        Path::new("/proc/self/exe"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::instance::tests::instance;
    use crate::cloud::process::BootId;

    fn dead_process() -> ProcessRef {
        let mut child = Command::new("true").spawn().unwrap();
        let me = ProcessRef::of(child.id()).unwrap();
        child.wait().unwrap();
        me
    }

    #[test]
    fn an_instance_whose_supervisor_died_is_stopped_with_a_reason() {
        let mut i = instance(State::Running);
        i.supervisor = Some(dead_process());
        assert!(reconcile_one(&mut i, super::super::time::now_secs()));
        assert_eq!(i.state, State::Stopped);
        let reason = i.state_reason.clone().unwrap();
        assert!(
            reason.contains("supervisor (pid") && reason.contains("is gone"),
            "{reason}"
        );
        assert_eq!(i.supervisor, None);

        let mut i = instance(State::ShuttingDown);
        i.supervisor = Some(dead_process());
        assert!(reconcile_one(&mut i, 0));
        assert_eq!(i.state, State::Terminated);
    }

    #[test]
    fn live_supervisors_and_fresh_launches_are_left_alone() {
        let mut i = instance(State::Running);
        i.supervisor = ProcessRef::of(std::process::id());
        assert!(!reconcile_one(&mut i, 0));

        let mut i = instance(State::Pending);
        i.state_since = 1000;
        assert!(!reconcile_one(&mut i, 1000 + SUPERVISOR_GRACE_SECS - 1));
        assert!(reconcile_one(&mut i, 1000 + SUPERVISOR_GRACE_SECS));
        assert!(i.state_reason.unwrap().contains("never started"));

        let mut i = instance(State::Stopped);
        assert!(!reconcile_one(&mut i, u64::MAX));
    }

    #[test]
    fn after_a_host_restart_the_reason_says_so_and_no_process_is_signalled() {
        let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
        // What a reboot leaves: processes of the last boot whose PIDs and
        // start times name live processes of this one.
        let last_boot = |p: ProcessRef| ProcessRef {
            boot: BootId::try_from("00000000-0000-0000-0000-000000000000".to_owned()).ok(),
            ..p
        };
        let mut i = instance(State::Running);
        i.supervisor = ProcessRef::of(std::process::id()).map(last_boot);
        i.vmm = ProcessRef::of(bystander.id()).map(last_boot);
        assert!(reconcile_one(&mut i, 0));
        assert_eq!(i.state, State::Stopped);
        assert_eq!(
            i.state_reason.as_deref(),
            Some("Server.InternalError: the host restarted; the VM was stopped")
        );
        assert_eq!(
            bystander.try_wait().unwrap(),
            None,
            "the VMM's PID was left alone"
        );
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }
}
