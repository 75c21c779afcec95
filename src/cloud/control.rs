//! What people do to running instances: stop, start, reboot, terminate,
//! and wait for a state. Commands change the state in the store, signal
//! the VMM and return at once; the instance's supervisor kills a VMM that
//! outlives its deadline and records how the VMM ended (`wait_for` waits
//! for that).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::instance::{Instance, State};
use super::lifecycle::{
    Context, USER_STOP, USER_TERMINATE, await_start, clean_up, failed_at_start, reconcile,
    record_start_failure, spawn_supervisor,
};
use super::store::Store;
use super::vpc::public::NetConfig;
use super::vpc::realise;
use super::{Error, lookup};

/// How often waiting commands look at the store.
const POLL: Duration = Duration::from_millis(100);

/// Waits until instance `reference` is in `want`; fails after
/// `timeout`, or at once if the instance settled in another state it
/// cannot leave by itself.
pub fn wait_for(
    ctx: &Context,
    store: &mut Store,
    reference: &str,
    want: State,
    timeout: Duration,
) -> Result<Instance, Error> {
    wait_until(ctx, store, reference, want, |i| i.state == want, timeout)
}

/// `wait_for`, until `done` (in state `want`, for the errors).
pub(super) fn wait_until(
    ctx: &Context,
    store: &mut Store,
    reference: &str,
    want: State,
    done: impl Fn(&Instance) -> bool,
    timeout: Duration,
) -> Result<Instance, Error> {
    let id = store.read(|tx| lookup::find_instance(tx, reference))?.id;
    let start = Instant::now();
    loop {
        reconcile(ctx, store)?;
        let i = store.read(|tx| lookup::find_instance(tx, &id))?;
        if done(&i) {
            return Ok(i);
        }
        if !i.state.is_supervised() {
            return Err(Error::Settled {
                id: i.id,
                want,
                state: i.state,
                reason: i.state_reason.unwrap_or_default(),
            });
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(Error::Timeout {
                id: i.id,
                want,
                state: i.state,
                secs: elapsed.as_secs(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Asks the VMM of `i` to shut down: SIGTERM presses the guest's power
/// button (SIGKILL at once if `force`); its supervisor kills it after
/// `timeout` (`Instance::kill_after`). A VMM not started yet is stopped
/// by the supervisor when it starts it.
fn signal_halt(i: &Instance, force: bool) {
    if let Some(vmm) = i.vmm {
        vmm.signal(if force {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        });
    }
}

/// The deadline `timeout` from now, as `Instance::kill_after` keeps it:
/// whole seconds, rounded up, so that the guest gets at least `timeout`.
fn deadline(timeout: Duration) -> Option<u64> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(timeout);
    Some(at.as_secs() + u64::from(at.subsec_nanos() > 0))
}

/// Stops instance `reference`: returns at once, stopping (or stopped).
pub fn stop(
    ctx: &Context,
    store: &mut Store,
    reference: &str,
    force: bool,
    timeout: Duration,
) -> Result<Instance, Error> {
    reconcile(ctx, store)?;
    let (i, changed) = store.write(|tx| {
        let mut i = lookup::find_instance(tx, reference)?;
        if matches!(i.state, State::Stopped | State::Stopping) {
            return Ok::<_, Error>((i, false));
        }
        i.transition(State::Stopping, Some(USER_STOP.into()))?;
        i.kill_after = deadline(timeout);
        tx.update(&i)?;
        Ok((i, true))
    })?;
    // A second SIGTERM would stop the VM at once: only the stop that
    // changed the state presses the button.
    if changed || (force && i.state == State::Stopping) {
        signal_halt(&i, force);
    }
    Ok(i)
}

/// Starts stopped instance `reference` under a new supervisor.
pub fn start(ctx: &Context, store: &mut Store, reference: &str) -> Result<Instance, Error> {
    reconcile(ctx, store)?;
    // After a host reboot the VPC's namespace, with the instance's tap,
    // is gone: the VMM could not open its port.
    realise::converge_for_instance(store, reference)?;
    let (i, changed, given) = store.write(|tx| {
        let mut i = lookup::find_instance(tx, reference)?;
        if matches!(i.state, State::Pending | State::Running) {
            return Ok::<_, Error>((i, false, false));
        }
        i.transition(State::Pending, None)?;
        // As EC2's: a new public address at each start.
        let given = match i.placement.as_mut() {
            Some(placement) if placement.auto_public_ip => {
                placement.give_public_ip(tx, &NetConfig::from_env()?)?
            }
            _ => false,
        };
        tx.update(&i)?;
        Ok((i, true, given))
    })?;
    if !changed {
        return Ok(i);
    }
    if given {
        // Mapped at the gateway before the guest runs; if it cannot be,
        // the start fails and the address goes back.
        if let Err(e) = realise::converge_instance_vpc(store, &i.id) {
            record_start_failure(store, &i.id, &e)?;
            return Err(e);
        }
    }
    if let Err(e) = spawn_supervisor(ctx, store, &i.id) {
        record_start_failure(store, &i.id, &e)?;
    }
    let now = await_start(ctx, store, &i.id)?;
    match failed_at_start(&now) {
        Some(why) => Err(Error::DidNotStart(vec![why])),
        None => Ok(now),
    }
}

/// Reboots running instance `reference`: its guest shuts down on its
/// power button (its VMM is killed if it has not within `timeout`), the
/// supervisor boots it again, and the instance stays running (as in EC2).
/// Returns at once; the boot count (`boots`) grows when the new VMM runs.
pub fn reboot(
    ctx: &Context,
    store: &mut Store,
    reference: &str,
    timeout: Duration,
) -> Result<Instance, Error> {
    reconcile(ctx, store)?;
    let i = store.write(|tx| {
        let mut i = lookup::find_instance(tx, reference)?;
        if i.state != State::Running {
            return Err(Error::NotRunning {
                id: i.id,
                state: i.state,
            });
        }
        i.reboot_requested = true;
        i.kill_after = deadline(timeout);
        tx.update(&i)?;
        Ok(i)
    })?;
    // Between two boots there is no VMM: the supervisor starts the next
    // one anyway.
    signal_halt(&i, false);
    Ok(i)
}

/// Terminates instance `reference`: stops its VM and deletes its files;
/// the record stays, terminated. Returns at once, shutting down (or
/// terminated).
pub fn terminate(
    ctx: &Context,
    store: &mut Store,
    reference: &str,
    timeout: Duration,
) -> Result<Instance, Error> {
    reconcile(ctx, store)?;
    let (i, changed) = store.write(|tx| {
        let mut i = lookup::find_instance(tx, reference)?;
        match i.state {
            State::Terminated | State::ShuttingDown => return Ok::<_, Error>((i, false)),
            State::Stopped => i.transition(State::Terminated, Some(USER_TERMINATE.into()))?,
            _ => {
                i.transition(State::ShuttingDown, Some(USER_TERMINATE.into()))?;
                i.kill_after = deadline(timeout);
            }
        }
        tx.update(&i)?;
        Ok((i, true))
    })?;
    match i.state {
        State::Terminated => clean_up(ctx, &i),
        _ if changed => signal_halt(&i, false),
        _ => {}
    }
    Ok(i)
}
