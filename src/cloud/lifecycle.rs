//! What people do to instances: launch, start, stop, reboot, terminate;
//! and reconciling the store with the processes that really run.
//!
//! Commands change the state in the store, signal the VMM and return at
//! once; the instance's supervisor process kills a VMM that outlives its
//! deadline and records how the VMM ended (`wait_for` waits for that).
//! When the supervisor itself is gone, the next command that looks
//! repairs the record.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::ids::{self, Kind};
use super::image::Image;
use super::instance::{Disk, Instance, NetworkInterface, State};
use super::key_pair::KeyPair;
use super::launch_count::LaunchCount;
use super::process::ProcessRef;
use super::seed::{self, Seed};
use super::staging::Staging;
use super::state_dir::StateDir;
use super::store::{Store, Tx};
use super::tags::{NAME, Tags};
use super::tap_network::StaticIp;
use super::tap_network::{self, TapNic};
use super::template::LaunchTemplate;
use super::vpc::port::{self, PlacementRequest};
use super::vpc::public::NetConfig;
use super::vpc::realise;
use super::{Error, disk_copy, instance_type, lookup};
use crate::vmm::sandbox::cgroup;

/// A pending instance without a supervisor is given this long to get
/// one before it is declared failed (`gureum run` is starting it).
const SUPERVISOR_GRACE_SECS: u64 = 30;
/// How long `run` and `start` wait for a VMM to say its VM runs (or to
/// fail) before answering with the instance still pending.
const START_WAIT: Duration = Duration::from_secs(60);
/// How often waiting commands look at the store.
const POLL: Duration = Duration::from_millis(100);

/// The state reason of instances stopped with `gureum instance stop`.
pub const USER_STOP: &str = "Client.UserInitiatedShutdown: stopped by gureum instance stop";
/// The state reason of terminated instances.
pub const USER_TERMINATE: &str =
    "Client.UserInitiatedShutdown: terminated by gureum instance terminate";

/// Where the control plane lives and which program is `gureum`.
#[derive(Debug, Clone)]
pub struct Context {
    pub state: StateDir,
    /// The `gureum` executable, run as `gureum supervise` and `gureum boot`.
    pub exe: PathBuf,
}

impl Context {
    pub fn open_store(&self) -> Result<Store, Error> {
        self.state.create().map_err(Error::io(
            "cannot create the state directory (set --state-dir or GUREUM_STATE_DIR)",
            self.state.root(),
        ))?;
        Ok(Store::open(&self.state.store())?)
    }
}

/// What `gureum run` asks for. Unset fields come from the template, then
/// from defaults.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LaunchRequest {
    pub image: Option<String>,
    pub instance_type: Option<String>,
    pub key: Option<String>,
    pub template: Option<String>,
    pub cmdline_append: Option<String>,
    /// The pre-VPC network interface (`--tap`, `--ip`, `--gateway`).
    pub nic: Option<TapNic>,
    /// A place in a VPC subnet (`--subnet`, `--sg`, ...).
    pub placement: Option<PlacementRequest>,
    pub tags: Tags,
    pub count: LaunchCount,
}

/// A launch with every reference resolved.
#[derive(Debug)]
struct Plan {
    image: Image,
    instance_type: instance_type::InstanceType,
    key: Option<KeyPair>,
    template_id: Option<String>,
    cmdline: String,
    nic: Option<TapNic>,
    placement: Option<PlacementRequest>,
    tags: Tags,
}

fn plan(store: &mut Store, req: &LaunchRequest) -> Result<Plan, Error> {
    store.read(|tx| {
        let template: Option<LaunchTemplate> = req
            .template
            .as_deref()
            .map(|t| lookup::find(tx, t))
            .transpose()?;
        let t = template.as_ref();
        let image: Image = match req.image.as_deref().or(t.map(|t| t.image_id.as_str())) {
            Some(image) => lookup::find(tx, image)?,
            None => {
                let mut all = tx.list::<Image>()?;
                if all.len() != 1 {
                    return Err(Error::NoImageChosen { count: all.len() });
                }
                all.swap_remove(0)
            }
        };
        let type_name = req
            .instance_type
            .as_deref()
            .or(t.and_then(|t| t.instance_type.as_deref()))
            .unwrap_or(instance_type::DEFAULT);
        let instance_type = instance_type::lookup(type_name)?;
        if instance_type.memory_mib < image.min_memory_mib {
            return Err(Error::TooLittleMemory {
                image: image.name,
                min: image.min_memory_mib,
                instance_type: instance_type.name,
                has: instance_type.memory_mib,
            });
        }
        let key = match req.key.as_deref().or(t.and_then(|t| t.key_name.as_deref())) {
            Some(key) => Some(lookup::find::<KeyPair>(tx, key)?),
            None => None,
        };
        if !image.seed && req.nic.as_ref().is_some_and(|n| n.static_ip.is_some()) {
            return Err(Error::IpWithoutSeed { image: image.name });
        }
        let append = req
            .cmdline_append
            .as_deref()
            .or(t.and_then(|t| t.cmdline_append.as_deref()));
        let cmdline = match append {
            Some(extra) if !extra.trim().is_empty() => {
                format!("{} {}", image.cmdline, extra.trim())
            }
            _ => image.cmdline.clone(),
        };
        let mut tags = t.map(|t| t.instance_tags.clone()).unwrap_or_default();
        tags.extend(req.tags.clone());
        Ok(Plan {
            image,
            instance_type,
            key,
            template_id: t.map(|t| t.id.clone()),
            cmdline,
            nic: req.nic.clone(),
            placement: req.placement.clone(),
            tags,
        })
    })
}

/// Creates one instance's record and files, all or nothing.
fn create_instance(ctx: &Context, store: &mut Store, plan: &Plan) -> Result<Instance, Error> {
    let id = ids::new_id(Kind::Instance)?;
    let files = ctx.state.instance_files(&id);
    let mut staging = Staging::create(ctx.state.staging(&id), files.dir.clone())
        .map_err(Error::io("cannot create", ctx.state.staging(&id)))?;
    // Where a file of the instance directory is while it is staged.
    let staged = |file: &Path| {
        staging
            .path()
            .join(file.file_name().map(PathBuf::from).unwrap_or_default())
    };
    let mut disks = Vec::new();
    if let Some(root) = &plan.image.root_disk {
        disk_copy::copy(
            &plan.image.file(&ctx.state, root),
            &staged(&files.root_disk),
        )?;
        disks.push(Disk {
            device: "vda".into(),
            path: files.root_disk.clone(),
            read_only: false,
            delete_on_termination: true,
        });
    }
    let mac = tap_network::mac_for(&id);
    let network_interfaces: Vec<NetworkInterface> = plan
        .nic
        .iter()
        .map(|nic| NetworkInterface {
            tap: nic.tap.clone(),
            mac: mac.clone(),
            static_ip: nic.static_ip,
            netns: None,
        })
        .collect();
    let net_config = match plan.placement {
        Some(_) => Some(NetConfig::from_env()?),
        None => None,
    };
    let now = super::time::now_secs();
    let mut instance = Instance {
        id: id.clone(),
        image_id: plan.image.id.clone(),
        instance_type: plan.instance_type.name.clone(),
        vcpus: plan.instance_type.vcpus,
        memory_mib: plan.instance_type.memory_mib,
        key_name: plan.key.as_ref().map(|k| k.name.clone()),
        template_id: plan.template_id.clone(),
        cmdline: plan.cmdline.clone(),
        state: State::Pending,
        state_reason: None,
        state_since: now,
        launch_time: super::time::format_utc(now),
        availability_zone: "local-1a".into(),
        disks,
        network_interfaces,
        placement: None,
        supervisor: None,
        vmm: None,
        reboot_requested: false,
        kill_after: None,
        boots: 0,
    };
    // One transaction: the record, the instance's place in its VPC and its
    // files appear together, or none of them; the VPC then gets its port
    // (a failure there takes the record and the files away again).
    let seed_disk = staged(&files.seed_disk);
    let record = |tx: &Tx<'_>| {
        let mut touched = Vec::new();
        if let Some(request) = &plan.placement {
            let guest_mac = mac.parse().map_err(|_| Error::BadMac(mac.clone()))?;
            let placed = port::place(tx, &id, guest_mac, request)?;
            touched.push(placed.placement.vpc_id.clone());
            let address = placed.placement.private_ip;
            instance.network_interfaces.push(NetworkInterface {
                tap: placed.placement.tap.clone(),
                mac: mac.clone(),
                static_ip: Some(StaticIp {
                    address,
                    prefix_len: placed.prefix_len,
                    gateway: Some(placed.router),
                }),
                netns: Some(placed.netns),
            });
            if !plan.image.seed {
                // Images without a seed read it from the kernel command
                // line (images/busybox/init).
                instance.cmdline.push_str(&format!(
                    " gureum.ip={address}/{} gureum.gw={}",
                    placed.prefix_len, placed.router
                ));
            }
            instance.placement = Some(placed.placement);
        }
        if plan.image.seed {
            // Written once: like EC2's instance data, it keeps the key and
            // name the instance was launched with.
            Seed {
                instance_id: id.clone(),
                hostname: seed::hostname(plan.tags.get(NAME).map(String::as_str), &id),
                user: plan.image.default_user.clone(),
                authorized_key: plan.key.as_ref().map(|k| k.public_key.clone()),
                interface: instance.network_interfaces.first().cloned(),
            }
            .write(&seed_disk)?;
        }
        tx.insert(&instance, &plan.tags)?;
        staging
            .publish()
            .map_err(Error::io("cannot move into place", &files.dir))?;
        Ok((instance, touched))
    };
    let instance = match &net_config {
        Some(config) => realise::change(store, config, record)?,
        None => store.write(|tx| record(tx).map(|(instance, _)| instance))?,
    };
    staging.keep();
    Ok(instance)
}

/// What a launch made.
#[derive(Debug)]
pub struct Launched {
    /// Every instance made, as it was once its VMM started or failed.
    pub instances: Vec<Instance>,
    /// Why fewer than the maximum were made (at least the minimum were).
    pub short: Option<Error>,
    /// Of those made, the ones whose VMM failed at once, and why.
    pub failed: Vec<String>,
}

impl Launched {
    /// An error if a VMM failed at once: what `run` ends with, after
    /// printing every ID.
    pub fn failures(&self) -> Result<(), Error> {
        if self.failed.is_empty() {
            Ok(())
        } else {
            Err(Error::DidNotStart(self.failed.clone()))
        }
    }
}

/// Launches up to `req.count.max` instances, each started detached under
/// its own supervisor, and waits until each VMM started or failed. Fewer
/// than `req.count.min` made: the ones made are taken back and the launch
/// fails, as EC2's MinCount.
pub fn launch(ctx: &Context, store: &mut Store, req: &LaunchRequest) -> Result<Launched, Error> {
    let count = req.count;
    if count.min == 0 {
        return Err(Error::ZeroCount);
    }
    if count.max > 1 && req.nic.is_some() {
        return Err(Error::TapWithCount);
    }
    if count.max > 1
        && req
            .placement
            .as_ref()
            .is_some_and(|p| p.private_ip.is_some())
    {
        return Err(Error::PrivateIpWithCount);
    }
    let plan = plan(store, req)?;
    // Checked before anything is made (the store checks them again).
    super::tags::check_all(&plan.tags)?;
    // All made before any starts, so that falling short of the minimum
    // takes back instances that never ran.
    let mut made = Vec::new();
    let mut short = None;
    for _ in 0..count.max {
        match create_instance(ctx, store, &plan) {
            Ok(instance) => made.push(instance),
            Err(e) => {
                short = Some(e);
                break;
            }
        }
    }
    if let Some(cause) = short.take_if(|_| made.len() < count.min as usize) {
        if made.is_empty() {
            return Err(cause);
        }
        let not_undone: Vec<String> = made
            .iter()
            .filter_map(|i| {
                unmake(ctx, store, i)
                    .err()
                    .map(|e| format!("{}: {e}", i.id))
            })
            .collect();
        return Err(Error::BelowMinCount {
            made: made.len(),
            count,
            source: Box::new(cause),
            not_undone: if not_undone.is_empty() {
                String::new()
            } else {
                format!(" (could not take back {})", not_undone.join("; "))
            },
        });
    }
    // Their grace for getting a supervisor runs from now, not from when
    // each was made (the first may have waited on the others' disks).
    let now = super::time::now_secs();
    store.write(|tx| {
        for made in &made {
            if let Some(mut i) = tx.get::<Instance>(&made.id)? {
                if i.state == State::Pending && i.supervisor.is_none() {
                    i.state_since = now;
                    tx.update(&i)?;
                }
            }
        }
        Ok::<_, Error>(())
    })?;
    for instance in &made {
        if let Err(e) = spawn_supervisor(ctx, store, &instance.id) {
            record_start_failure(store, &instance.id, &e)?;
        }
    }
    let mut launched = Launched {
        instances: Vec::new(),
        short,
        failed: Vec::new(),
    };
    for instance in made {
        let now = await_start(ctx, store, &instance.id)?;
        launched.failed.extend(failed_at_start(&now));
        launched.instances.push(now);
    }
    Ok(launched)
}

/// Takes back instance `i`, made by a launch that fell short and never
/// started: its port in its VPC, its files and its record.
fn unmake(ctx: &Context, store: &mut Store, i: &Instance) -> Result<(), Error> {
    let forget = |tx: &Tx<'_>| Ok::<_, Error>(tx.delete(&i.id).map(drop)?);
    match &i.placement {
        // The record goes, and its VPC converges without the port.
        Some(placement) => realise::change(store, &NetConfig::from_env()?, |tx| {
            forget(tx)?;
            Ok(((), vec![placement.vpc_id.clone()]))
        })?,
        None => store.write(forget)?,
    }
    let dir = ctx.state.instance_files(&i.id).dir;
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove", dir)(e))
        }
        _ => Ok(()),
    }
}

/// Records that instance `id`'s supervisor could not be started.
fn record_start_failure(store: &mut Store, id: &str, e: &Error) -> Result<(), Error> {
    store.write(|tx| {
        let mut i = lookup::find_instance(tx, id)?;
        if i.state == State::Pending {
            i.transition(State::Stopped, Some(format!("Server.InternalError: {e}")))?;
            tx.update(&i)?;
        }
        Ok(())
    })
}

/// Waits until instance `id` is no longer pending: its VMM said its VM
/// runs, or it ended. One still pending after `START_WAIT` is returned as
/// it is (`gureum instance wait` waits on).
fn await_start(ctx: &Context, store: &mut Store, id: &str) -> Result<Instance, Error> {
    let settled = |i: &Instance| i.state != State::Pending;
    match wait_until(ctx, store, id, State::Running, settled, START_WAIT) {
        Err(Error::Timeout { .. }) => Ok(store.read(|tx| lookup::find_instance(tx, id))?),
        other => other,
    }
}

/// Why instance `i` did not start, if it stopped without being asked to.
fn failed_at_start(i: &Instance) -> Option<String> {
    let reason = i.state_reason.as_deref().unwrap_or_default();
    (matches!(i.state, State::Stopped | State::Terminated)
        && !reason.starts_with("Client.UserInitiatedShutdown"))
    .then(|| format!("instance {} did not start: {reason}", i.id))
}

/// Starts `gureum supervise ID` in its own session, its output going to
/// the instance's VMM log.
fn spawn_supervisor(ctx: &Context, store: &mut Store, id: &str) -> Result<(), Error> {
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
        State::ShuttingDown => (State::Terminated, USER_TERMINATE.to_string()),
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
            if reconcile_one(&mut i, now) {
                tx.update(&i)?;
                fixed.push(i);
            }
        }
        Ok::<_, Error>(fixed)
    })?;
    for i in &fixed {
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
fn wait_until(
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
    let (i, changed) = store.write(|tx| {
        let mut i = lookup::find_instance(tx, reference)?;
        if matches!(i.state, State::Pending | State::Running) {
            return Ok::<_, Error>((i, false));
        }
        i.transition(State::Pending, None)?;
        tx.update(&i)?;
        Ok((i, true))
    })?;
    if !changed {
        return Ok(i);
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
