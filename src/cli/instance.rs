//! `gureum run` and `gureum instance`: launching and managing instances.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use gureum::cloud::Error;
use gureum::cloud::api::{Action, Response};
use gureum::cloud::cpu_options::CpuOptions;
use gureum::cloud::instance::{Instance, ShutdownBehavior, State};
use gureum::cloud::instance_type::LimitOverrides;
use gureum::cloud::launch::{LaunchNetwork, LaunchRequest};
use gureum::cloud::launch_count::LaunchCount;
use gureum::cloud::metadata_options::MetadataChange;
use gureum::cloud::process::ProcessRef;
use gureum::cloud::tags::NAME;
use gureum::cloud::tap_network::TapNic;
use gureum::cloud::user_data::UserData;
use gureum::cloud::vpc::port::{PlacementRequest, PortChange};

use super::boot::{parse_bytes, parse_count};
use super::cloud::{
    CliError, Env, FilterArgs, TagArgs, change as change_one, list, parse_tags, unexpected,
};
use super::console_client;
use super::output::{self, Format};
use super::ssh;

/// Launch instances from an image or a launch template; prints their IDs.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image: ID or name [default: the only image, if there is one].
    #[arg(long)]
    image: Option<String>,
    /// Instance type [default: the template's, else t2.micro].
    #[arg(long = "type", value_name = "TYPE")]
    instance_type: Option<String>,
    /// The Name tag.
    #[arg(long)]
    name: Option<String>,
    /// Key pair name or ID.
    #[arg(long)]
    key: Option<String>,
    /// Launch template: ID or name; the other flags override it.
    #[arg(long)]
    template: Option<String>,
    /// Appended to the image's kernel command line.
    #[arg(long, value_name = "TEXT")]
    cmdline_append: Option<String>,
    #[command(flatten)]
    vpc: SubnetArgs,
    #[command(flatten)]
    network: TapArgs,
    /// How many instances to launch: N, or MIN:MAX for as many as can be
    /// made up to MAX, but at least MIN or none.
    #[arg(long, default_value = "1", value_name = "N|MIN:MAX")]
    count: LaunchCount,
    /// Device rate limits of its own, each replacing its type's (0 lifts
    /// one): disk bytes and requests per second, network bytes and frames
    /// per second to (rx) and from (tx) it; BYTES takes K, M or G.
    #[arg(
        long,
        value_name = "[disk_bw=BYTES][,disk_iops=N][,rx_bw=BYTES][,rx_pps=N][,tx_bw=BYTES][,tx_pps=N]",
        value_parser = parse_limits
    )]
    limits: Option<LimitOverrides>,
    #[command(flatten)]
    data: InstanceDataArgs,
    #[command(flatten)]
    tags: TagArgs,
    /// Terminate the instances (disk copy, port, addresses, files) when
    /// the process that ran this command ends, or is killed: a CI job's
    /// shell (run it as a simple command of that shell, not in a pipe).
    #[arg(long)]
    rm: bool,
    /// `--rm`, tied to process PID instead (e.g. `--rm-with $$` under sudo).
    #[arg(long, value_name = "PID", conflicts_with = "rm")]
    rm_with: Option<u32>,
    /// Return once the instances are running, or once their SSH servers
    /// answer where `gureum ssh` reaches them.
    #[arg(long, value_enum, value_name = "running|ssh")]
    wait: Option<WaitFor>,
    /// How long `--wait` waits for each instance, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS", requires = "wait")]
    wait_timeout: u64,
}

/// What `run --wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WaitFor {
    Running,
    Ssh,
}

fn parse_cpu_options(spec: &str) -> Result<CpuOptions, String> {
    CpuOptions::parse(spec).map_err(|e| e.to_string())
}

/// What `run` and templates give an instance besides its image and type:
/// CPU options, and what its metadata service serves and how.
#[derive(Debug, Args)]
pub struct InstanceDataArgs {
    /// CPU options: NestedVirtualization=enabled gives the instance the
    /// host's SVM or VMX, so that it runs VMs of its own (a /dev/kvm);
    /// c8i, m8i and r8i types only.
    #[arg(long, value_name = "NestedVirtualization=enabled|disabled", value_parser = parse_cpu_options)]
    pub cpu_options: Option<CpuOptions>,
    /// User data: this file's bytes (at most 16 KiB), served to the
    /// instance at http://169.254.169.254/latest/user-data.
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// The metadata service's options, as EC2's (defaults: HttpTokens=optional,
    /// HttpPutResponseHopLimit=1, HttpEndpoint=enabled, InstanceMetadataTags=disabled).
    #[arg(
        long,
        value_name = "HttpTokens=optional|required,HttpPutResponseHopLimit=N,HttpEndpoint=enabled|disabled,InstanceMetadataTags=enabled|disabled",
        value_parser = parse_metadata_options
    )]
    metadata_options: Option<MetadataChange>,
    /// What a shutdown from inside the guest does: stop the instance, or
    /// terminate it (its disk copy, port and files go) [default: stop].
    #[arg(long, value_name = "stop|terminate", value_parser = ShutdownBehavior::parse)]
    pub instance_initiated_shutdown_behavior: Option<ShutdownBehavior>,
}

impl InstanceDataArgs {
    /// The user data file, read and checked against EC2's limit.
    pub fn user_data(&self) -> Result<Option<UserData>, CliError> {
        let Some(path) = &self.user_data else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).map_err(|source| CliError::UserDataFile {
            path: path.clone(),
            source,
        })?;
        Ok(Some(
            UserData::new(bytes, &path.display().to_string()).map_err(Error::from)?,
        ))
    }

    pub fn metadata_options(&self) -> MetadataChange {
        self.metadata_options.unwrap_or_default()
    }
}

fn parse_metadata_options(spec: &str) -> Result<MetadataChange, String> {
    MetadataChange::parse(spec).map_err(|e| e.to_string())
}

type ParseFigure = fn(&str) -> Result<u64, String>;

fn parse_limits(spec: &str) -> Result<LimitOverrides, String> {
    let mut o = LimitOverrides::default();
    for part in spec.split(',') {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let (figure, parse): (&mut Option<u64>, ParseFigure) = match key {
            "disk_bw" => (&mut o.disk_bw, parse_bytes),
            "disk_iops" => (&mut o.disk_iops, parse_count),
            "rx_bw" => (&mut o.rx_bw, parse_bytes),
            "rx_pps" => (&mut o.rx_pps, parse_count),
            "tx_bw" => (&mut o.tx_bw, parse_bytes),
            "tx_pps" => (&mut o.tx_pps, parse_count),
            _ => {
                return Err(format!(
                    "unexpected {part:?}; expected KEY=VALUE pairs with the keys disk_bw, \
                     disk_iops, rx_bw, rx_pps, tx_bw, tx_pps"
                ));
            }
        };
        *figure = Some(parse(value)?);
    }
    Ok(o)
}

/// A place in a VPC: without these flags, the default VPC's default
/// subnet (made on first use), as EC2's.
#[derive(Debug, Args)]
#[command(next_help_heading = "VPC network [default: the default VPC]")]
pub struct SubnetArgs {
    /// Launch into this subnet (ID or Name tag): a port on its bridge,
    /// filtered by the security groups from the first packet [default:
    /// the default VPC's default subnet].
    #[arg(long, conflicts_with_all = ["tap", "no_network"])]
    subnet: Option<String>,
    /// Security group (ID or Name tag; repeatable) [default: the VPC's default group].
    #[arg(long = "sg", value_name = "SG", conflicts_with_all = ["tap", "no_network"])]
    groups: Vec<String>,
    /// The private address [default: the lowest free one of the subnet].
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["tap", "no_network"])]
    private_ip: Option<std::net::Ipv4Addr>,
    /// Let the instance send from addresses not its own (NAT instances).
    #[arg(long, conflicts_with_all = ["tap", "no_network"])]
    no_source_dest_check: bool,
    /// Give it a public address from the pool while it runs, mapped 1:1
    /// at its VPC's internet gateway (a new one at each start) [default:
    /// as its subnet's MapPublicIpOnLaunch says: yes in the default VPC].
    #[arg(long, conflicts_with_all = ["tap", "no_network"])]
    associate_public_ip_address: bool,
    /// Give it no public address, whatever its subnet says.
    #[arg(long, conflicts_with_all = ["tap", "no_network", "associate_public_ip_address"])]
    no_associate_public_ip_address: bool,
}

/// Instead of a VPC: no interface, or the pre-VPC one on a tap.
#[derive(Debug, Args)]
#[command(next_help_heading = "Other networks (instead of a VPC)")]
pub struct TapArgs {
    /// No network interface at all: nothing made in any VPC, the fastest
    /// launch (a console-only VM, a build with no network).
    #[arg(long, conflicts_with = "tap")]
    no_network: bool,
    /// Expert: put the instance's interface on this tap, which you made
    /// and address yourself (an existing one is used, a missing one
    /// lives as long as the VM); no VPC, no security groups.
    #[arg(long, value_name = "NAME")]
    tap: Option<String>,
    /// The instance's address on the tap, on its kernel command line
    /// (`gureum.ip=`, which the busybox image applies).
    #[arg(long, value_name = "ADDR/PREFIX", requires = "tap")]
    ip: Option<String>,
    /// The instance's default gateway, on the --ip subnet.
    #[arg(long, value_name = "ADDR", requires = "ip")]
    gateway: Option<String>,
}

/// Seconds flag with the default `stop`, `reboot` and `terminate` use.
#[derive(Debug, Args)]
pub struct TimeoutArgs {
    /// Seconds the guest gets to shut down on its power button (SIGTERM
    /// to the VMM) before the VMM is killed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
}

/// Instances: the VMs.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List instances.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show instances in full, or one attribute of one.
    Describe {
        instances: Vec<String>,
        /// Print only this attribute: user-data (in base64, as EC2's
        /// DescribeInstanceAttribute shows it: user data may be binary;
        /// `| base64 -d` gives the bytes).
        #[arg(long, value_enum, requires = "instances")]
        attribute: Option<Attribute>,
    },
    /// Change how an instance's metadata service answers (EC2's
    /// ModifyInstanceMetadataOptions); it applies from the next request.
    ModifyMetadataOptions {
        instance: String,
        /// The options to change; the others stay.
        #[arg(
            long,
            required = true,
            value_name = "HttpTokens=optional|required,HttpPutResponseHopLimit=N,HttpEndpoint=enabled|disabled,InstanceMetadataTags=enabled|disabled",
            value_parser = parse_metadata_options
        )]
        metadata_options: MetadataChange,
    },
    /// Stop instances: the guest shuts down on its ACPI power button
    /// (SIGTERM to the VMM); SIGKILL after --timeout. Returns at once
    /// (`instance wait ID --state stopped` waits).
    Stop {
        #[arg(required = true)]
        instances: Vec<String>,
        /// Kill the VMM at once.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        timeout: TimeoutArgs,
    },
    /// Start stopped instances.
    Start {
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Reboot running instances (they stay running): the guest shuts down
    /// on its power button and boots again; SIGKILL after --timeout.
    /// Returns at once.
    Reboot {
        #[arg(required = true)]
        instances: Vec<String>,
        #[command(flatten)]
        timeout: TimeoutArgs,
    },
    /// Terminate instances: stop them and delete their disks and files.
    /// Returns at once (`instance wait ID --state terminated` waits).
    #[command(visible_alias = "rm")]
    Terminate {
        #[arg(required = true)]
        instances: Vec<String>,
        #[command(flatten)]
        timeout: TimeoutArgs,
    },
    /// Wait until an instance is in a state (as `aws ec2 wait`); fails
    /// at once if it settles in another one.
    Wait {
        instance: String,
        /// pending, running, stopping, stopped, shutting-down or terminated.
        #[arg(long, value_parser = parse_state, default_value = "running")]
        state: State,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        timeout: u64,
    },
    /// Attach this terminal to an instance's serial console; Ctrl-A x
    /// detaches and leaves it running.
    Console { instance: String },
    /// Print what an instance's console has shown.
    Logs { instance: String },
    /// Print an instance's device counters (requests, bytes, errors,
    /// dropped frames, rate-limit throttles), as its VMM last wrote them.
    Metrics { instance: String },
    /// Change a stopped instance's CPU options (nested virtualization:
    /// c8i, m8i and r8i types only); they apply from its next start.
    ModifyCpuOptions {
        instance: String,
        #[arg(long, value_name = "NestedVirtualization=enabled|disabled", value_parser = parse_cpu_options)]
        cpu_options: CpuOptions,
    },
    /// Change the security groups or the source/destination check of an
    /// instance in a VPC, running or stopped (its firewall changes at once).
    Modify {
        instance: String,
        #[command(flatten)]
        change: ModifyArgs,
    },
}

/// An attribute `instance describe --attribute` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Attribute {
    UserData,
}

/// What `instance modify` changes: at least one of them.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct ModifyArgs {
    /// Security group (ID or Name tag; repeatable): these replace the
    /// instance's groups.
    #[arg(long = "sg", value_name = "SG")]
    groups: Vec<String>,
    /// Let the instance send only from its own address (the default).
    #[arg(long, conflicts_with = "no_source_dest_check")]
    source_dest_check: bool,
    /// Let the instance send from addresses not its own (NAT instances).
    #[arg(long)]
    no_source_dest_check: bool,
}

impl From<ModifyArgs> for PortChange {
    fn from(args: ModifyArgs) -> Self {
        Self {
            groups: (!args.groups.is_empty()).then_some(args.groups),
            source_dest_check: (args.source_dest_check || args.no_source_dest_check)
                .then_some(args.source_dest_check),
        }
    }
}

fn parse_state(text: &str) -> Result<State, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| {
        "expected pending, running, stopping, stopped, shutting-down or terminated".into()
    })
}

/// The process `--rm` (this command's parent) or `--rm-with PID` names,
/// identified by its start time too.
fn owner(rm: bool, rm_with: Option<u32>) -> Result<Option<ProcessRef>, CliError> {
    let pid = match (rm, rm_with) {
        (_, Some(pid)) => pid,
        (true, None) => std::os::unix::process::parent_id(),
        (false, None) => return Ok(None),
    };
    ProcessRef::of(pid)
        .map(Some)
        .ok_or_else(|| Error::OwnerNotRunning {
            pid: i32::try_from(pid).unwrap_or(i32::MAX),
        })
        .map_err(CliError::from)
}

pub fn launch(env: &Env, args: RunArgs) -> Result<(), CliError> {
    let mut tags = parse_tags(&args.tags.tags)?;
    if let Some(name) = args.name {
        tags.insert(NAME.into(), name);
    }
    let net = &args.network;
    let nic = TapNic::from_flags(
        net.tap.as_deref(),
        net.ip.as_deref(),
        net.gateway.as_deref(),
    )
    .map_err(Error::from)?;
    let request = LaunchRequest {
        image: args.image,
        instance_type: args.instance_type,
        key: args.key,
        template: args.template,
        cmdline_append: args.cmdline_append,
        network: match nic {
            Some(nic) => LaunchNetwork::Tap(nic),
            None if net.no_network => LaunchNetwork::None,
            None => LaunchNetwork::Vpc(PlacementRequest {
                subnet: args.vpc.subnet,
                groups: args.vpc.groups,
                private_ip: args.vpc.private_ip,
                source_dest_check: !args.vpc.no_source_dest_check,
                associate_public_ip: (args.vpc.associate_public_ip_address
                    || args.vpc.no_associate_public_ip_address)
                    .then_some(args.vpc.associate_public_ip_address),
            }),
        },
        tags,
        count: args.count,
        limits: args.limits.unwrap_or_default(),
        client_token: None,
        cpu_options: args.data.cpu_options,
        shutdown_behavior: args.data.instance_initiated_shutdown_behavior,
        terminate_with: owner(args.rm, args.rm_with)?,
        user_data: args.data.user_data()?,
        metadata_options: args.data.metadata_options(),
        auto_scaling_group: None,
    };
    let max = request.count.max;
    let response = env.call(Action::RunInstances {
        request: Box::new(request),
    })?;
    let Response::Launched {
        instances,
        short,
        failed,
    } = response
    else {
        return Err(unexpected(&response));
    };
    match env.format {
        Format::Json => output::json(&instances)?,
        Format::Table => {
            for i in &instances {
                println!("{}", i.item.id);
            }
        }
    }
    if let Some(short) = short {
        eprintln!(
            "gureum: launched {} of up to {max}: {short}",
            instances.len()
        );
    }
    if !failed.is_empty() {
        return Err(Error::DidNotStart(failed).into());
    }
    if let Some(wait) = args.wait {
        for i in &instances {
            let deadline = Instant::now() + Duration::from_secs(args.wait_timeout);
            env.records::<Instance>(Action::WaitInstance {
                instance: i.item.id.clone(),
                state: State::Running,
                timeout_secs: args.wait_timeout,
            })?;
            if wait == WaitFor::Ssh {
                ssh::wait_until_it_answers(env, &i.item.id, deadline)?;
            }
        }
    }
    Ok(())
}

/// Prints `id state` for each instance acted on.
fn report(env: &Env, action: Action) -> Result<(), CliError> {
    for i in env.records::<Instance>(action)? {
        println!("{} {}", i.item.id, i.item.state);
    }
    Ok(())
}

pub fn run(env: &Env, command: InstanceCommand) -> Result<(), CliError> {
    match command {
        InstanceCommand::List(filter) => {
            list::<Instance>(
                env,
                Action::ListInstances {
                    filters: filter.filters()?,
                },
                &[
                    "ID",
                    "NAME",
                    "STATE",
                    "TYPE",
                    "IMAGE",
                    "LAUNCHED",
                    "PUBLIC IP",
                ],
                |t| {
                    let i = &t.item;
                    vec![
                        i.id.clone(),
                        t.tags.get(NAME).cloned().unwrap_or_else(|| "-".into()),
                        i.state.to_string(),
                        i.instance_type.clone(),
                        i.image_id.clone(),
                        i.launch_time.clone(),
                        i.placement
                            .as_ref()
                            .and_then(|p| p.public_address())
                            .map_or_else(|| "-".into(), |a| a.to_string()),
                    ]
                },
            )?;
        }
        InstanceCommand::Describe {
            instances,
            attribute,
        } => {
            let shown = env.records::<Instance>(Action::DescribeInstances { instances })?;
            if let Some(Attribute::UserData) = attribute {
                for one in &shown {
                    let data = one.item.user_data.as_ref().map(|d| d.to_base64());
                    match env.format {
                        Format::Json => output::json(&serde_json::json!({
                            "InstanceId": one.item.id,
                            "UserData": data.map(|value| serde_json::json!({"Value": value})),
                        }))?,
                        Format::Table => println!("{}", data.unwrap_or_default()),
                    }
                }
                return Ok(());
            }
            match (env.format, shown.as_slice()) {
                (Format::Table, many) => {
                    for (n, one) in many.iter().enumerate() {
                        if n > 0 {
                            println!();
                        }
                        // Up to 16 KiB of base64 would drown the rest.
                        let mut shown = serde_json::to_value(one)?;
                        if let (Some(field), Some(data)) =
                            (shown.get_mut("user_data"), &one.item.user_data)
                        {
                            *field = format!(
                                "{} bytes (`--attribute user-data` prints them)",
                                data.bytes().len()
                            )
                            .into();
                        }
                        output::describe(env.format, &shown)?;
                    }
                }
                (Format::Json, all) => output::json(all)?,
            }
        }
        InstanceCommand::Stop {
            instances,
            force,
            timeout,
        } => report(
            env,
            Action::StopInstances {
                instances,
                force,
                timeout_secs: timeout.timeout,
            },
        )?,
        InstanceCommand::Start { instances } => {
            report(env, Action::StartInstances { instances })?;
        }
        InstanceCommand::Reboot { instances, timeout } => report(
            env,
            Action::RebootInstances {
                instances,
                timeout_secs: timeout.timeout,
            },
        )?,
        InstanceCommand::Terminate { instances, timeout } => report(
            env,
            Action::TerminateInstances {
                instances,
                timeout_secs: timeout.timeout,
            },
        )?,
        InstanceCommand::Wait {
            instance,
            state,
            timeout,
        } => report(
            env,
            Action::WaitInstance {
                instance,
                state,
                timeout_secs: timeout,
            },
        )?,
        InstanceCommand::Console { instance } => {
            let response = env.call(Action::GetConsole { instance })?;
            let Response::Console { instance, socket } = response else {
                return Err(unexpected(&response));
            };
            console_client::attach(&instance, &socket).map_err(|source| CliError::Console {
                id: instance.clone(),
                path: socket,
                source,
            })?;
        }
        InstanceCommand::Logs { instance } => {
            let response = env.call(Action::GetConsoleLog { instance })?;
            let Response::ConsoleLog { instance, log } = response else {
                return Err(unexpected(&response));
            };
            match log {
                Some(log) => std::io::stdout()
                    .write_all(log.as_bytes())
                    .map_err(CliError::Logs)?,
                None => eprintln!("gureum: {instance} has no console output (yet)"),
            }
        }
        InstanceCommand::Metrics { instance } => {
            let response = env.call(Action::GetInstanceMetrics { instance })?;
            let Response::Metrics { instance, metrics } = response else {
                return Err(unexpected(&response));
            };
            match metrics {
                Some(metrics) => output::describe(env.format, &metrics)?,
                None => eprintln!("gureum: {instance} has no metrics (its VMM never ran)"),
            }
        }
        InstanceCommand::ModifyMetadataOptions {
            instance,
            metadata_options,
        } => change_one::<Instance>(
            env,
            Action::ModifyInstanceMetadataOptions {
                instance,
                change: metadata_options,
            },
        )?,
        InstanceCommand::ModifyCpuOptions {
            instance,
            cpu_options,
        } => change_one::<Instance>(
            env,
            Action::ModifyInstanceCpuOptions {
                instance,
                cpu_options,
            },
        )?,
        InstanceCommand::Modify { instance, change } => change_one::<Instance>(
            env,
            Action::ModifyInstance {
                instance,
                change: change.into(),
            },
        )?,
    }
    Ok(())
}
