//! The supervisor: one small process per running instance that runs its
//! VMM (`gureum boot ...`), waits for it, restarts it when the guest
//! reboots, and records in the store how it ended.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::Signal;
use nix::unistd::pipe2;

use super::image::Image;
use super::instance::{Instance, ShutdownBehavior, State};
use super::lifecycle::{self, Context, USER_STOP, USER_TERMINATE};
use super::process::ProcessRef;
use super::store::Store;
use super::{Error, lookup, time, vmm_command};
use crate::vmm::exit::Status;
use crate::vmm::sandbox::cgroup;

/// How often the supervisor looks whether a VMM asked to shut down is
/// past its deadline.
const DEADLINE_CHECK: Duration = Duration::from_millis(500);

/// How one VMM run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    PowerOff,
    Reboot,
    Crash,
    Detached,
    /// Stopped at once by a signal it handled (SIGINT, SIGHUP, a second
    /// SIGTERM).
    Signalled,
    /// The VMM failed (message: the last line it printed).
    Failed(String),
    /// Killed by a signal it could not handle.
    Killed(i32),
    UnknownCode(i32),
}

impl Outcome {
    /// Reads an exit status; `last_words` is the VMM's last message.
    pub fn of(status: ExitStatus, last_words: impl FnOnce() -> String) -> Self {
        match (
            status.code().map(|c| (c, Status::of_code(c))),
            status.signal(),
        ) {
            (Some((_, Some(Status::PowerOff))), _) => Outcome::PowerOff,
            (Some((_, Some(Status::Reboot))), _) => Outcome::Reboot,
            (Some((_, Some(Status::Crash))), _) => Outcome::Crash,
            (Some((_, Some(Status::Detached))), _) => Outcome::Detached,
            (Some((_, Some(Status::Terminated))), _) => Outcome::Signalled,
            (Some((_, Some(Status::VmmError | Status::Usage))), _) => Outcome::Failed(last_words()),
            (Some((code, None)), _) => Outcome::UnknownCode(code),
            (None, Some(sig)) => Outcome::Killed(sig),
            (None, None) => Outcome::UnknownCode(-1),
        }
    }
}

/// What to do once the VMM has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Boot it again; the instance stays running.
    Restart,
    /// Record this state and reason, and end.
    Finish(State, String),
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// How a stop or terminate asked for by a person went, as far as the
/// VMM's end tells: the guest shut down on its power button, or it did
/// not and the VMM was killed (after the timeout, or with --force).
fn how_it_went(outcome: &Outcome) -> String {
    match outcome {
        Outcome::PowerOff => " (the guest shut down)".into(),
        Outcome::Killed(sig) => format!(
            " (the guest did not shut down; the VMM was killed by {})",
            signal_name(*sig)
        ),
        _ => String::new(),
    }
}

/// EC2's semantics for a VMM that ended with `outcome` while the
/// instance was in `state`; `behavior` says what a power-off from inside
/// the guest does.
/// `terminating` is why a shutting-down instance is being terminated.
pub fn decide(
    state: State,
    terminating: Option<&str>,
    reboot_requested: bool,
    behavior: ShutdownBehavior,
    outcome: &Outcome,
) -> Decision {
    let stopped = |reason: String| Decision::Finish(State::Stopped, reason);
    match state {
        State::ShuttingDown => {
            let why = terminating.unwrap_or(USER_TERMINATE);
            let reason = format!("{why}{}", how_it_went(outcome));
            return Decision::Finish(State::Terminated, reason);
        }
        State::Stopping => return stopped(format!("{USER_STOP}{}", how_it_went(outcome))),
        _ => {}
    }
    if reboot_requested || *outcome == Outcome::Reboot {
        return Decision::Restart;
    }
    if *outcome == Outcome::PowerOff && behavior == ShutdownBehavior::Terminate {
        return Decision::Finish(
            State::Terminated,
            "Client.InstanceInitiatedShutdown: the guest powered off (its shutdown behavior \
             is terminate)"
                .into(),
        );
    }
    stopped(match outcome {
        Outcome::PowerOff | Outcome::Reboot => {
            "Client.InstanceInitiatedShutdown: the guest powered off".into()
        }
        Outcome::Crash => {
            "Server.InternalError: the guest crashed (see `gureum instance logs`)".into()
        }
        Outcome::Detached => "Client.UserInitiatedShutdown: stopped from the console".into(),
        Outcome::Signalled => {
            "Client.UserInitiatedShutdown: the VMM was stopped by a signal from outside gureum"
                .into()
        }
        Outcome::Failed(why) => format!("Server.InternalError: the VMM failed: {why}"),
        Outcome::Killed(sig) => format!(
            "Server.InternalError: the VMM was killed by {}",
            signal_name(*sig)
        ),
        Outcome::UnknownCode(code) => {
            format!("Server.InternalError: the VMM exited with unexpected status {code}")
        }
    })
}

/// The last line the VMM printed to its log, for a failure's reason.
fn last_words(log: &std::path::Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| l.starts_with("gureum"))
                .map(|l| l.trim_start_matches("gureum: ").to_string())
        })
        .unwrap_or_else(|| "no message (see the instance's vmm.log)".into())
}

/// Supervises instance `id` until its VMM ends for good. Runs as the
/// hidden `gureum supervise ID` command, detached from any terminal.
pub fn run(ctx: &Context, id: &str) -> Result<(), Error> {
    // Its own session: no terminal's hangup or Ctrl-C reaches it. Fails
    // only if already a session leader, which is as good.
    let _ = nix::unistd::setsid();
    let me = ProcessRef::of(std::process::id());
    let mut store = ctx.open_store()?;
    let claimed = store.write(|tx| {
        let mut i = lookup::find_instance(tx, id)?;
        // Terminated or stopped before this process got to run: nothing
        // to supervise.
        if !i.state.is_supervised() {
            return Ok::<_, Error>(false);
        }
        i.supervisor = me;
        tx.update(&i)?;
        Ok(true)
    })?;
    if !claimed {
        return Ok(());
    }
    let finished = loop {
        match boot_once(ctx, &mut store, id) {
            Ok(Decision::Restart) => {}
            Ok(Decision::Finish(..)) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = &finished {
        // Never leave the instance looking alive.
        record_failure(&mut store, id, &e.to_string())?;
    }
    let final_record = store.read(|tx| lookup::find_instance(tx, id))?;
    lifecycle::clean_up(ctx, &final_record);
    finished
}

/// Runs the VMM once and records how it ended.
fn boot_once(ctx: &Context, store: &mut Store, id: &str) -> Result<Decision, Error> {
    let (instance, image) = store.write(|tx| {
        let mut i = lookup::find_instance(tx, id)?;
        // Its owner (`run --rm`) gone before this boot: it boots no more.
        if lifecycle::end_if_owner_gone(&mut i) {
            tx.update(&i)?;
        }
        let image: Image = lookup::find(tx, &i.image_id)?;
        Ok::<_, Error>((i, image))
    })?;
    if matches!(instance.state, State::Stopping | State::ShuttingDown) {
        // Stopped before its VMM was started.
        return finish(store, id, &Outcome::Signalled);
    }
    let files = ctx.state.instance_files(id);
    std::fs::create_dir_all(&files.run_dir).map_err(Error::io("cannot create", &files.run_dir))?;
    // A socket left by a VMM that was killed would refuse the new bind.
    let _ = std::fs::remove_file(&files.console_socket);
    // Its cgroup exists before it starts and goes when it ends.
    let cgroups = cgroup::Parent::from_env()?;
    let limits = cgroup::Limits {
        vcpus: instance.vcpus,
        memory_mib: instance.memory_mib,
    };
    let cgroup = match &cgroups {
        Some(parent) => Some(parent.create(id, limits)?),
        None => {
            eprintln!(
                "gureum: {}=off: the VMM runs without CPU and memory limits",
                cgroup::PARENT_ENV
            );
            None
        }
    };
    let (mut ready, ready_end) = match ready_pipe() {
        Ok(pipe) => pipe,
        Err(source) => {
            remove_cgroup(cgroups.as_ref(), id);
            return Err(Error::io("cannot make a pipe for the VMM of", &files.dir)(
                source,
            ));
        }
    };
    let vmm_exe = ctx.vmm_exe();
    let spawned = Command::new(&vmm_exe)
        .args(vmm_command::boot_args(
            &ctx.state, &image, &instance, &files,
        ))
        .args(vmm_command::sandbox_args(&instance, cgroup.as_deref()))
        .arg("--ready-fd")
        .arg(ready_end.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn();
    // Only the VMM holds the write end now: its end closes it.
    drop(ready_end);
    let child = match spawned {
        Ok(child) => child,
        Err(source) => {
            remove_cgroup(cgroups.as_ref(), id);
            return Err(Error::SpawnVmm {
                id: id.into(),
                exe: vmm_exe,
                source,
            });
        }
    };
    let vmm = ProcessRef::of(child.id());
    let stop_now = store.write(|tx| {
        let mut i: Instance = lookup::find_instance(tx, id)?;
        i.vmm = vmm;
        i.boots += 1;
        i.reboot_requested = false;
        i.kill_after = None;
        tx.update(&i)?;
        Ok::<_, Error>(matches!(i.state, State::Stopping | State::ShuttingDown))
    })?;
    if stop_now {
        // A stop arrived before the VMM existed to be signalled. Its guest
        // has not booted and cannot shut down: its power button would
        // only make the stop wait for the timeout.
        if let Some(vmm) = vmm {
            vmm.signal(Signal::SIGKILL);
        }
    }
    // Pending until the VMM says its VM runs, so that `run` and `start`
    // can tell a VMM that failed at once (stopped, with its reason).
    if vm_started(&mut ready) {
        store.write(|tx| {
            let mut i: Instance = lookup::find_instance(tx, id)?;
            if i.state == State::Pending {
                i.transition(State::Running, None)?;
                tx.update(&i)?;
            }
            Ok::<_, Error>(())
        })?;
    }
    drop(ready);
    let status = wait_vmm(store, id, child, vmm)
        .map_err(Error::io("cannot wait for the VMM of", &files.dir))?;
    remove_cgroup(cgroups.as_ref(), id);
    let outcome = Outcome::of(status, || last_words(&files.vmm_log));
    let _ = std::fs::remove_dir_all(&files.run_dir);
    finish(store, id, &outcome)
}

/// A pipe the VMM writes a byte to once its VM runs (`gureum boot
/// --ready-fd`): the end to read, and the end the VMM inherits.
fn ready_pipe() -> std::io::Result<(File, OwnedFd)> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    fcntl(&write, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok((File::from(read), write))
}

/// Whether the VMM said its VM runs; false once it ended without saying.
fn vm_started(ready: &mut File) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match ready.read(&mut byte) {
            Ok(n) => return n == 1,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Waits for the VMM to end, killing it once the instance's
/// `kill_after` deadline has passed (a stop, reboot or terminate whose
/// guest did not shut down in time).
fn wait_vmm(
    store: &mut Store,
    id: &str,
    mut child: Child,
    vmm: Option<ProcessRef>,
) -> std::io::Result<ExitStatus> {
    let (done, ended) = mpsc::channel();
    // The waiting thread owns the child; this one watches the deadline.
    std::thread::Builder::new()
        .name("vmm-wait".into())
        .spawn(move || {
            // The receiver lives until a status arrives.
            let _ = done.send(child.wait());
        })?;
    let mut killed = false;
    loop {
        match ended.recv_timeout(DEADLINE_CHECK) {
            Ok(status) => return status,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(std::io::Error::other("the VMM's waiting thread ended"));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if killed {
            continue;
        }
        // A store that cannot be read now is read again at the next look.
        let Some(i) = store.read(|tx| tx.get::<Instance>(id)).ok().flatten() else {
            continue;
        };
        // The process it is tied to (`run --rm`) ended: terminate it
        // (which kills the VMM).
        if i.state != State::ShuttingDown && i.terminate_with.is_some_and(|o| !o.is_alive()) {
            let _ = store.write(|tx| {
                let mut i = lookup::find_instance(tx, id)?;
                if lifecycle::end_if_owner_gone(&mut i) {
                    tx.update(&i)?;
                }
                Ok::<_, Error>(())
            });
            continue;
        }
        let due = i.kill_after.is_some_and(|at| time::now_secs() >= at);
        if let Some(vmm) = vmm.filter(|_| due) {
            killed = vmm.signal(Signal::SIGKILL);
        }
    }
}

/// Removes instance `id`'s cgroup; one left behind is removed by the
/// next reconcile (`lifecycle::reconcile`), so a failure is only told.
fn remove_cgroup(parent: Option<&cgroup::Parent>, id: &str) {
    if let Some(Err(e)) = parent.map(|p| p.remove(id)) {
        eprintln!("gureum: {e}");
    }
}

/// Records how a VMM run ended and what comes next.
fn finish(store: &mut Store, id: &str, outcome: &Outcome) -> Result<Decision, Error> {
    store.write(|tx| {
        let mut i: Instance = lookup::find_instance(tx, id)?;
        let decision = decide(
            i.state,
            i.state_reason.as_deref(),
            i.reboot_requested,
            i.shutdown_behavior,
            outcome,
        );
        match &decision {
            Decision::Restart => i.vmm = None,
            Decision::Finish(state, reason) => {
                // EC2 goes through shutting-down to terminated.
                if *state == State::Terminated && i.state != State::ShuttingDown {
                    i.transition(State::ShuttingDown, None)?;
                }
                i.transition(*state, Some(reason.clone()))?;
            }
        }
        tx.update(&i)?;
        Ok(decision)
    })
}

fn record_failure(store: &mut Store, id: &str, why: &str) -> Result<(), Error> {
    store.write(|tx| {
        let mut i = lookup::find_instance(tx, id)?;
        if i.state.is_supervised() {
            let to = if i.state == State::ShuttingDown {
                State::Terminated
            } else {
                State::Stopped
            };
            i.transition(to, Some(format!("Server.InternalError: {why}")))?;
            tx.update(&i)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: i32) -> ExitStatus {
        ExitStatus::from_raw(c << 8)
    }

    #[test]
    fn exit_statuses_map_to_outcomes() {
        let words = || "bad kernel".to_string();
        assert_eq!(Outcome::of(code(0), words), Outcome::PowerOff);
        assert_eq!(Outcome::of(code(3), words), Outcome::Reboot);
        assert_eq!(Outcome::of(code(4), words), Outcome::Crash);
        assert_eq!(Outcome::of(code(6), words), Outcome::Signalled);
        assert_eq!(
            Outcome::of(code(1), words),
            Outcome::Failed("bad kernel".into())
        );
        assert_eq!(
            Outcome::of(ExitStatus::from_raw(9), words),
            Outcome::Killed(9)
        );
    }

    #[test]
    fn ec2_semantics_after_the_vmm_ends() {
        use ShutdownBehavior::*;
        use State::*;
        assert_eq!(
            decide(Running, None, false, Stop, &Outcome::Reboot),
            Decision::Restart
        );
        assert_eq!(
            decide(Running, None, true, Stop, &Outcome::Signalled),
            Decision::Restart
        );
        let Decision::Finish(Stopped, reason) =
            decide(Running, None, false, Stop, &Outcome::Killed(9))
        else {
            panic!("a killed VMM stops the instance")
        };
        assert!(reason.contains("killed by SIGKILL"), "{reason}");
        let Decision::Finish(Stopped, reason) =
            decide(Running, None, false, Stop, &Outcome::PowerOff)
        else {
            panic!("poweroff stops the instance")
        };
        assert!(reason.contains("InstanceInitiatedShutdown"), "{reason}");
        // A stop or terminate in progress wins over a reboot.
        assert_eq!(
            decide(Stopping, None, true, Stop, &Outcome::Reboot),
            Decision::Finish(Stopped, USER_STOP.into())
        );
        // Its reason tells whether the guest shut down or was killed.
        assert_eq!(
            decide(Stopping, None, false, Stop, &Outcome::PowerOff),
            Decision::Finish(Stopped, format!("{USER_STOP} (the guest shut down)"))
        );
        assert_eq!(
            decide(ShuttingDown, None, false, Stop, &Outcome::Killed(9)),
            Decision::Finish(
                Terminated,
                format!(
                    "{USER_TERMINATE} (the guest did not shut down; the VMM was killed by SIGKILL)"
                )
            )
        );
        let Decision::Finish(Stopped, reason) = decide(
            Pending,
            None,
            false,
            Stop,
            &Outcome::Failed("no KVM".into()),
        ) else {
            panic!("a failed first boot stops the instance")
        };
        assert!(reason.ends_with("the VMM failed: no KVM"), "{reason}");
    }

    /// The supervisor's watch over the process an instance is tied to
    /// (`run --rm`): once it is gone, the VMM (a stand-in) is killed and
    /// the instance ends terminated, saying why.
    #[test]
    fn the_vmm_of_an_instance_whose_owner_ended_is_killed_and_it_is_terminated() {
        use crate::cloud::instance::tests::instance;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("gureum.db")).unwrap();
        let mut owner = Command::new("sleep").arg("60").spawn().unwrap();
        let vmm = Command::new("sleep").arg("60").spawn().unwrap();
        let mut i = instance(State::Running);
        i.terminate_with = ProcessRef::of(owner.id());
        i.vmm = ProcessRef::of(vmm.id());
        store
            .write(|tx| tx.insert(&i, &Default::default()))
            .unwrap();
        owner.kill().unwrap();
        owner.wait().unwrap();
        let status = wait_vmm(&mut store, &i.id, vmm, i.vmm).unwrap();
        assert_eq!(status.signal(), Some(9), "the VMM was killed");
        let pid = i.terminate_with.unwrap().pid;
        let now = store.read(|tx| tx.get::<Instance>(&i.id)).unwrap().unwrap();
        assert_eq!(now.state, State::ShuttingDown);
        assert_eq!(finish(&mut store, &i.id, &Outcome::Killed(9)).unwrap(), {
            Decision::Finish(
                State::Terminated,
                format!(
                    "{} (the guest did not shut down; the VMM was killed by SIGKILL)",
                    lifecycle::owner_gone_reason(pid)
                ),
            )
        });
    }

    #[test]
    fn a_guest_power_off_terminates_an_instance_whose_behavior_says_so() {
        use ShutdownBehavior::*;
        use State::*;
        let Decision::Finish(Terminated, reason) =
            decide(Running, None, false, Terminate, &Outcome::PowerOff)
        else {
            panic!("poweroff terminates it")
        };
        assert!(reason.contains("InstanceInitiatedShutdown"), "{reason}");
        // A crash, a reboot or a stop asked from outside are not a
        // shutdown from inside.
        assert!(matches!(
            decide(Running, None, false, Terminate, &Outcome::Crash),
            Decision::Finish(Stopped, _)
        ));
        assert_eq!(
            decide(Running, None, false, Terminate, &Outcome::Reboot),
            Decision::Restart
        );
        assert!(matches!(
            decide(Stopping, None, false, Terminate, &Outcome::PowerOff),
            Decision::Finish(Stopped, _)
        ));
    }
}
