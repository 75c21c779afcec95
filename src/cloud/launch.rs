//! Launching instances: a request resolved against the store (image,
//! type, key, template, place in a VPC), each instance's record, files
//! and port made in one change, and its supervisor started; `run` waits
//! until each VMM says its VM runs or fails.

use std::path::{Path, PathBuf};

use super::cpu_options::CpuOptions;
use super::ids::{self, Kind};
use super::image::Image;
use super::instance::{Disk, Instance, NetworkInterface, ShutdownBehavior, State};
use super::instance_type::LimitOverrides;
use super::key_pair::KeyPair;
use super::launch_count::LaunchCount;
use super::lifecycle::{
    Context, await_start, failed_at_start, record_start_failure, spawn_supervisor,
};
use super::metadata_options::{MetadataChange, MetadataOptions};
use super::process::ProcessRef;
use super::staging::Staging;
use super::store::{Store, Tx};
use super::tags::Tags;
use super::tap_network::StaticIp;
use super::tap_network::{self, TapNic};
use super::template::LaunchTemplate;
use super::user_data::UserData;
use super::vpc::port::{self, PlacementRequest};
use super::vpc::public::NetConfig;
use super::vpc::{default, realise};
use super::{Error, disk_copy, instance_type, lookup};

/// What `gureum run` asks for. Unset fields come from the template, then
/// from defaults.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LaunchRequest {
    pub image: Option<String>,
    pub instance_type: Option<String>,
    pub key: Option<String>,
    pub template: Option<String>,
    pub cmdline_append: Option<String>,
    /// Where its network interface is [default: the default VPC].
    #[serde(default)]
    pub network: LaunchNetwork,
    pub tags: Tags,
    pub count: LaunchCount,
    /// Rate limits of its own, over its type's.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Makes the launch idempotent (EC2's ClientToken): a launch with a
    /// token instances already have answers those instances.
    #[serde(default)]
    pub client_token: Option<String>,
    /// `--cpu-options` (nested virtualization), over the template's;
    /// neither given: EC2's default.
    #[serde(default)]
    pub cpu_options: Option<CpuOptions>,
    /// What a shutdown from inside the guest does (EC2's
    /// InstanceInitiatedShutdownBehavior), over the template's; neither
    /// given: stop.
    #[serde(default)]
    pub shutdown_behavior: Option<ShutdownBehavior>,
    /// The process whose end terminates the instances (`run --rm`).
    #[serde(default)]
    pub terminate_with: Option<ProcessRef>,
    /// Over the template's.
    #[serde(default)]
    pub user_data: Option<UserData>,
    /// Over the template's, over EC2's defaults.
    #[serde(default)]
    pub metadata_options: MetadataChange,
    /// The Auto Scaling group launching it: its instances carry the
    /// reserved tag `aws:autoscaling:groupName`, in the same transaction
    /// as their records. Set by the group controller only: no front end
    /// can send it.
    #[serde(skip)]
    pub auto_scaling_group: Option<String>,
}

/// Where a launched instance's network interface is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchNetwork {
    /// A port in a VPC subnet (`--subnet`, `--sg`, ...); with no subnet
    /// named, the default VPC's, as EC2's.
    Vpc(PlacementRequest),
    /// The pre-VPC interface on a tap the user made (`--tap`, `--ip`,
    /// `--gateway`).
    Tap(TapNic),
    /// No interface at all (`--no-network`).
    None,
}

impl Default for LaunchNetwork {
    fn default() -> Self {
        Self::Vpc(PlacementRequest::default())
    }
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
    /// The subnet's reference, and the rest of the request.
    placement: Option<(String, PlacementRequest)>,
    tags: Tags,
    limits: LimitOverrides,
    client_token: Option<String>,
    cpu_options: CpuOptions,
    shutdown_behavior: ShutdownBehavior,
    terminate_with: Option<ProcessRef>,
    user_data: Option<UserData>,
    metadata_options: MetadataOptions,
    auto_scaling_group: Option<String>,
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
        let cpu_options = req
            .cpu_options
            .or(t.map(|t| t.cpu_options))
            .unwrap_or_default();
        cpu_options.check(&instance_type.name)?;
        cpu_options.check_host()?;
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
            nic: match &req.network {
                LaunchNetwork::Tap(nic) => Some(nic.clone()),
                LaunchNetwork::Vpc(_) | LaunchNetwork::None => None,
            },
            // Resolved by `launch`, which may make the default VPC.
            placement: None,
            tags,
            limits: req.limits,
            client_token: req.client_token.clone(),
            cpu_options,
            shutdown_behavior: req
                .shutdown_behavior
                .or(t.map(|t| t.shutdown_behavior))
                .unwrap_or_default(),
            terminate_with: req.terminate_with,
            user_data: req
                .user_data
                .clone()
                .or_else(|| t.and_then(|t| t.user_data.clone())),
            metadata_options: MetadataOptions::default().with(
                &t.map(|t| t.metadata_options)
                    .unwrap_or_default()
                    .then(&req.metadata_options),
            ),
            auto_scaling_group: req.auto_scaling_group.clone(),
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
    let mut cmdline = plan.cmdline.clone();
    // On a tap, nothing but the command line gives the guest its address.
    if let Some(ip) = plan.nic.as_ref().and_then(|nic| nic.static_ip) {
        cmdline.push_str(&ip.kernel_args());
    }
    let now = super::time::now_secs();
    let mut instance = Instance {
        id: id.clone(),
        image_id: plan.image.id.clone(),
        instance_type: plan.instance_type.name.clone(),
        vcpus: plan.instance_type.vcpus,
        memory_mib: plan.instance_type.memory_mib,
        key_name: plan.key.as_ref().map(|k| k.name.clone()),
        template_id: plan.template_id.clone(),
        cmdline,
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
        limits: plan.limits,
        client_token: plan.client_token.clone(),
        cpu_options: plan.cpu_options,
        user_data: plan.user_data.clone(),
        metadata_options: plan.metadata_options,
        shutdown_behavior: plan.shutdown_behavior,
        terminate_with: plan.terminate_with,
        cpu_utilization: Vec::new(),
    };
    // One transaction: the record, the instance's place in its VPC and its
    // files appear together, or none of them; the VPC then gets its port
    // (a failure there takes the record and the files away again).
    let record = |tx: &Tx<'_>| {
        let mut touched = Vec::new();
        if let (Some((subnet, request)), Some(config)) = (&plan.placement, &net_config) {
            let guest_mac = mac.parse().map_err(|_| Error::BadMac(mac.clone()))?;
            let placed = port::place(tx, &id, guest_mac, subnet, request, config)?;
            touched.push(placed.placement.vpc_id.clone());
            let static_ip = StaticIp {
                address: placed.placement.private_ip,
                prefix_len: placed.prefix_len,
                gateway: Some(placed.router),
            };
            // The DHCP server gives the same address; without a daemon,
            // the command line is how the guest learns it.
            instance.cmdline.push_str(&static_ip.kernel_args());
            instance.network_interfaces.push(NetworkInterface {
                tap: placed.placement.tap.clone(),
                mac: mac.clone(),
                static_ip: Some(static_ip),
                netns: Some(placed.netns),
            });
            instance.placement = Some(placed.placement);
        }
        tx.insert(&instance, &plan.tags)?;
        if let Some(group) = &plan.auto_scaling_group {
            tx.set_reserved_tag(&instance.id, super::autoscaling::GROUP_TAG, group)?;
        }
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
    match &req.network {
        LaunchNetwork::Tap(_) if count.max > 1 => return Err(Error::TapWithCount),
        LaunchNetwork::Vpc(p) if count.max > 1 && p.private_ip.is_some() => {
            return Err(Error::PrivateIpWithCount);
        }
        _ => {}
    }
    if let Some(token) = &req.client_token {
        let earlier: Vec<Instance> = store.read(|tx| {
            Ok::<_, Error>(
                tx.list::<Instance>()?
                    .into_iter()
                    .filter(|i| i.client_token.as_ref() == Some(token))
                    .collect(),
            )
        })?;
        if !earlier.is_empty() {
            return Ok(Launched {
                instances: earlier,
                short: None,
                failed: Vec::new(),
            });
        }
    }
    // One already gone would be terminated as soon as it is made.
    if let Some(owner) = req.terminate_with.filter(|owner| !owner.is_alive()) {
        return Err(Error::OwnerNotRunning { pid: owner.pid });
    }
    let mut plan = plan(store, req)?;
    // Checked before anything is made (the store checks them again).
    super::tags::check_all(&plan.tags)?;
    // Only once the request is known to be good may it make the default
    // VPC.
    if let LaunchNetwork::Vpc(request) = &req.network {
        let subnet = match &request.subnet {
            Some(subnet) => subnet.clone(),
            None => default::subnet_for_launch(store, &NetConfig::from_env()?)?,
        };
        plan.placement = Some((subnet, request.clone()));
    }
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
