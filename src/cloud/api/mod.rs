//! The one door to the control plane: typed actions in, typed results
//! or a categorised error out. Every front end calls `execute`: the CLI
//! (in its own process or through the daemon), the EC2 endpoint next.
//! Policy that is not about presentation lives here: list filters,
//! reconciling instances before they are read, the console only of a
//! running instance.

mod category;
mod reason;
mod records;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::autoscaling::group::{AutoScalingGroup, Member};
use super::autoscaling::{self, GroupRequest, GroupUpdate};
use super::control;
use super::cpu_metric::{self, CpuMinute};
use super::cpu_options::CpuOptions;
use super::elb::load_balancer::LoadBalancer;
use super::elb::target_group::TargetGroup;
use super::elb::{
    self, BalancerRequest, HealthReport, ListenerRuleRequest, TargetGroupRequest, TargetRef,
};
use super::iam::{self, IamAction, IamResponse};
use super::image::{self, Image};
use super::instance::{Instance, State};
use super::instance_type::{self, InstanceType};
use super::key_pair::{self, KeyPair, NewKey, PublicKeySource};
use super::launch::{self, LaunchRequest};
use super::lifecycle::{self, Context};
use super::metadata_options::MetadataChange;
use super::reconcile::{self, Report};
use super::store::{Resource, Store, Tx};
use super::tags::{Filter, Tags};
use super::template::{self, LaunchTemplate, TemplateRequest};
use super::vpc::default;
use super::vpc::elastic_ip::{self, ElasticIp};
use super::vpc::gateway::{self, InternetGateway};
use super::vpc::network::{self, Vpc};
use super::vpc::port::{self, PortChange};
use super::vpc::public::NetConfig;
use super::vpc::route_table::{self, RouteTable};
use super::vpc::security_group::{self, Direction, RuleRequest, SecurityGroup};
use super::vpc::subnet::{self, Subnet};
use super::{Error, lookup};
use crate::net::cidr::Ipv4Cidr;
use crate::net::reconcile::Mode;

pub use category::{ApiError, Category};
pub use reason::Reason;
pub use records::{Records, Tagged};

/// One control-plane operation, with everything it needs. References
/// (`instance`, `vpc`, ...) are an ID or a name, as the CLI takes them;
/// `filters` are `Name=V`, `tag:K=V` or `state=S`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    RunInstances {
        request: Box<LaunchRequest>,
    },
    ListInstances {
        filters: Vec<String>,
    },
    /// Every instance when `instances` is empty.
    DescribeInstances {
        instances: Vec<String>,
    },
    StopInstances {
        instances: Vec<String>,
        /// SIGKILL at once instead of the power button.
        force: bool,
        /// Seconds the guest gets to shut down before its VMM is killed.
        timeout_secs: u64,
    },
    StartInstances {
        instances: Vec<String>,
    },
    RebootInstances {
        instances: Vec<String>,
        timeout_secs: u64,
    },
    TerminateInstances {
        instances: Vec<String>,
        timeout_secs: u64,
    },
    /// Returns once the instance is in `state` (as `aws ec2 wait`).
    WaitInstance {
        instance: String,
        state: State,
        timeout_secs: u64,
    },
    ModifyInstance {
        instance: String,
        change: PortChange,
    },
    /// Sets some of an instance's metadata options; its metadata service
    /// answers by them from its next request.
    ModifyInstanceMetadataOptions {
        instance: String,
        change: MetadataChange,
    },
    /// A stopped instance's CPU options (EC2's ModifyInstanceCpuOptions):
    /// they apply from its next start.
    ModifyInstanceCpuOptions {
        instance: String,
        cpu_options: CpuOptions,
    },
    /// Where a running instance's serial console is served.
    GetConsole {
        instance: String,
    },
    GetConsoleLog {
        instance: String,
    },
    /// The device counters its VMM last wrote (every 5 s while it runs).
    GetInstanceMetrics {
        instance: String,
    },
    CreateKeyPair {
        name: String,
        tags: Tags,
    },
    ImportKeyPair {
        name: String,
        public_key: PublicKeySource,
        tags: Tags,
    },
    ListKeyPairs {
        filters: Vec<String>,
    },
    DescribeKeyPair {
        key: String,
    },
    DeleteKeyPair {
        key: String,
    },
    ImportImage {
        /// A directory with a `manifest`, or the manifest; absolute.
        source: PathBuf,
        name: Option<String>,
        description: Option<String>,
        tags: Tags,
    },
    CreateImage {
        instance: String,
        name: String,
        description: Option<String>,
        tags: Tags,
    },
    ListImages {
        filters: Vec<String>,
    },
    DescribeImage {
        image: String,
    },
    DeleteImage {
        image: String,
    },
    CreateLaunchTemplate {
        request: TemplateRequest,
    },
    ListLaunchTemplates {
        filters: Vec<String>,
    },
    DescribeLaunchTemplate {
        template: String,
    },
    DeleteLaunchTemplate {
        template: String,
    },
    ListInstanceTypes,
    CreateVpc {
        cidr: Ipv4Cidr,
        tags: Tags,
    },
    /// The default VPC, when there is none (EC2's CreateDefaultVpc).
    CreateDefaultVpc,
    ListVpcs {
        filters: Vec<String>,
    },
    DescribeVpc {
        vpc: String,
    },
    DeleteVpc {
        vpc: String,
    },
    CreateSubnet {
        vpc: String,
        cidr: Ipv4Cidr,
        zone: Option<String>,
        tags: Tags,
    },
    ListSubnets {
        filters: Vec<String>,
    },
    DescribeSubnet {
        subnet: String,
    },
    DeleteSubnet {
        subnet: String,
    },
    /// EC2's ModifySubnetAttribute MapPublicIpOnLaunch.
    SetMapPublicIpOnLaunch {
        subnet: String,
        on: bool,
    },
    CreateRouteTable {
        vpc: String,
        tags: Tags,
    },
    ListRouteTables {
        filters: Vec<String>,
    },
    DescribeRouteTable {
        table: String,
    },
    DeleteRouteTable {
        table: String,
    },
    AssociateRouteTable {
        table: String,
        subnet: String,
    },
    DisassociateRouteTable {
        table: String,
        subnet: String,
    },
    CreateRoute {
        table: String,
        destination: Ipv4Cidr,
        gateway: String,
    },
    DeleteRoute {
        table: String,
        destination: Ipv4Cidr,
    },
    CreateInternetGateway {
        tags: Tags,
    },
    AttachInternetGateway {
        igw: String,
        vpc: String,
    },
    DetachInternetGateway {
        igw: String,
    },
    DeleteInternetGateway {
        igw: String,
    },
    ListInternetGateways {
        filters: Vec<String>,
    },
    DescribeInternetGateway {
        igw: String,
    },
    AllocateAddress {
        tags: Tags,
    },
    AssociateAddress {
        eip: String,
        instance: String,
    },
    DisassociateAddress {
        eip: String,
    },
    ReleaseAddress {
        eip: String,
    },
    ListAddresses {
        filters: Vec<String>,
    },
    DescribeAddress {
        eip: String,
    },
    CreateSecurityGroup {
        vpc: String,
        name: String,
        description: String,
        tags: Tags,
    },
    ListSecurityGroups {
        filters: Vec<String>,
    },
    DescribeSecurityGroup {
        group: String,
    },
    DeleteSecurityGroup {
        group: String,
    },
    AuthorizeSecurityGroupRule {
        group: String,
        direction: Direction,
        rule: RuleRequest,
    },
    RevokeSecurityGroupRule {
        group: String,
        direction: Direction,
        rule: RuleRequest,
    },
    /// Adds or overwrites `tags` on each resource (by ID).
    CreateTags {
        resources: Vec<String>,
        tags: Tags,
    },
    /// Removes each key of `tags` from each resource (by ID); a key with
    /// a value only if it has that value.
    DeleteTags {
        resources: Vec<String>,
        tags: Vec<(String, Option<String>)>,
    },
    /// Every tag of every resource.
    ListTags,
    CreateTargetGroup {
        request: TargetGroupRequest,
    },
    RegisterTargets {
        target_group: String,
        targets: Vec<TargetRef>,
    },
    /// Deregistered targets drain for the group's delay, then go.
    DeregisterTargets {
        target_group: String,
        targets: Vec<TargetRef>,
    },
    ListTargetGroups {
        filters: Vec<String>,
    },
    /// The group with its targets' health (ELBv2's DescribeTargetHealth).
    DescribeTargetGroup {
        target_group: String,
    },
    DeleteTargetGroup {
        target_group: String,
    },
    /// What the daemon's health checker found (`daemon::health`).
    ReportTargetHealth {
        target_group: String,
        reports: Vec<HealthReport>,
    },
    CreateLoadBalancer {
        request: BalancerRequest,
    },
    ListLoadBalancers {
        filters: Vec<String>,
    },
    DescribeLoadBalancer {
        load_balancer: String,
    },
    /// Deletes it with its listeners.
    DeleteLoadBalancer {
        load_balancer: String,
    },
    CreateListener {
        load_balancer: String,
        /// None: the balancer's (TCP, or HTTP on an application one).
        protocol: Option<String>,
        port: u16,
        target_group: String,
    },
    /// `listener`: its port, ID or ARN.
    DeleteListener {
        load_balancer: String,
        listener: String,
    },
    /// A rule of an application load balancer's listener (its port, ID
    /// or ARN).
    CreateRule {
        load_balancer: String,
        listener: String,
        priority: u32,
        request: ListenerRuleRequest,
    },
    /// `rule`: its ID or ARN. The request's conditions replace those of
    /// their field; its target group, if any, the rule's.
    ModifyRule {
        load_balancer: String,
        rule: String,
        request: ListenerRuleRequest,
    },
    /// New priorities of rules (ID or ARN), set at once.
    SetRulePriorities {
        load_balancer: String,
        priorities: Vec<(String, u32)>,
    },
    DeleteRule {
        load_balancer: String,
        rule: String,
    },
    CreateAutoScalingGroup {
        request: GroupRequest,
    },
    ListAutoScalingGroups {
        filters: Vec<String>,
    },
    DescribeAutoScalingGroup {
        group: String,
    },
    UpdateAutoScalingGroup {
        group: String,
        change: GroupUpdate,
    },
    SetDesiredCapacity {
        group: String,
        desired: u32,
    },
    /// Scale-in protection of some of the group's instances.
    SetInstanceProtection {
        group: String,
        instances: Vec<String>,
        protected: bool,
    },
    /// Takes the instance out of its group and terminates it; without
    /// `decrement`, the group launches a replacement.
    TerminateInstanceInAutoScalingGroup {
        instance: String,
        decrement: bool,
        timeout_secs: u64,
    },
    /// Attaches target groups (the controller registers the group's
    /// instances) or detaches them (its instances are deregistered).
    ChangeAutoScalingTargetGroups {
        group: String,
        target_groups: Vec<String>,
        attach: bool,
    },
    /// A group with instances only with `force`, which terminates them.
    DeleteAutoScalingGroup {
        group: String,
        force: bool,
        timeout_secs: u64,
    },
    /// Adds or replaces a target-tracking policy on average CPU.
    PutScalingPolicy {
        group: String,
        name: String,
        target_cpu: u16,
        disable_scale_in: bool,
    },
    DeleteScalingPolicy {
        group: String,
        name: String,
    },
    /// Who is in the group now, as the group controller found them
    /// (`daemon::autoscaling`).
    RecordAutoScalingMembers {
        group: String,
        members: Vec<Member>,
    },
    /// Minutes of CPU utilization the daemon measured (`daemon::cpu`),
    /// by instance ID.
    RecordCpuUtilization {
        samples: Vec<(String, CpuMinute)>,
    },
    /// One pass comparing Linux and the state directory with the records
    /// (`cloud::reconcile`); with `repair`, making them match.
    Reconcile {
        repair: bool,
    },
    /// Users, access keys and their policies.
    Iam(IamAction),
}

impl Action {
    /// Whether it may change Linux or the records Linux is made from (a
    /// reconcile pass follows it in the daemon). CPU figures, written by
    /// the daemon every metrics period, change neither.
    pub fn changes(&self) -> bool {
        if let Action::Iam(iam) = self {
            return iam.changes();
        }
        !matches!(
            self,
            Action::ListInstances { .. }
                | Action::DescribeInstances { .. }
                | Action::WaitInstance { .. }
                | Action::GetConsole { .. }
                | Action::GetConsoleLog { .. }
                | Action::GetInstanceMetrics { .. }
                | Action::ListKeyPairs { .. }
                | Action::DescribeKeyPair { .. }
                | Action::ListImages { .. }
                | Action::DescribeImage { .. }
                | Action::ListLaunchTemplates { .. }
                | Action::DescribeLaunchTemplate { .. }
                | Action::ListInstanceTypes
                | Action::ListVpcs { .. }
                | Action::DescribeVpc { .. }
                | Action::ListSubnets { .. }
                | Action::DescribeSubnet { .. }
                | Action::ListRouteTables { .. }
                | Action::DescribeRouteTable { .. }
                | Action::ListInternetGateways { .. }
                | Action::DescribeInternetGateway { .. }
                | Action::ListAddresses { .. }
                | Action::DescribeAddress { .. }
                | Action::ListSecurityGroups { .. }
                | Action::DescribeSecurityGroup { .. }
                | Action::ListTags
                | Action::ListTargetGroups { .. }
                | Action::DescribeTargetGroup { .. }
                | Action::ListLoadBalancers { .. }
                | Action::DescribeLoadBalancer { .. }
                | Action::ListAutoScalingGroups { .. }
                | Action::DescribeAutoScalingGroup { .. }
                | Action::RecordCpuUtilization { .. }
        ) && !matches!(self, Action::Reconcile { repair: false })
    }
}

/// What an action answers: the records it listed, made or changed, with
/// their tags (a deleted one's are gone), or what it found.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum Response {
    Instances(Vec<Tagged<Instance>>),
    Images(Vec<Tagged<Image>>),
    KeyPairs(Vec<Tagged<KeyPair>>),
    LaunchTemplates(Vec<Tagged<LaunchTemplate>>),
    InstanceTypes(Vec<InstanceType>),
    Vpcs(Vec<Tagged<Vpc>>),
    Subnets(Vec<Tagged<Subnet>>),
    RouteTables(Vec<Tagged<RouteTable>>),
    InternetGateways(Vec<Tagged<InternetGateway>>),
    Addresses(Vec<Tagged<ElasticIp>>),
    SecurityGroups(Vec<Tagged<SecurityGroup>>),
    TargetGroups(Vec<Tagged<TargetGroup>>),
    LoadBalancers(Vec<Tagged<LoadBalancer>>),
    AutoScalingGroups(Vec<Tagged<AutoScalingGroup>>),
    /// A new key pair and its private key, handed out this once.
    NewKeyPair {
        key: Tagged<KeyPair>,
        private_key: String,
    },
    /// A new VPC; `not_private` when its block is outside RFC 1918.
    NewVpc {
        vpc: Tagged<Vpc>,
        not_private: bool,
    },
    Console {
        instance: String,
        socket: PathBuf,
    },
    /// What the instance's console printed (lossy UTF-8); none yet if
    /// `None`.
    ConsoleLog {
        instance: String,
        log: Option<String>,
    },
    /// An instance's device counters as its VMM wrote them (`gureum boot
    /// --metrics`); none if its VMM never ran.
    Metrics {
        instance: String,
        metrics: Option<serde_json::Value>,
    },
    /// The instances `run` made (all of them, whether their VMM started),
    /// why fewer than the maximum were made, and which VMMs failed at once
    /// and why.
    Launched {
        instances: Vec<Tagged<Instance>>,
        short: Option<String>,
        failed: Vec<String>,
    },
    /// Tags as (resource ID, key, value).
    Tags(Vec<(String, String, String)>),
    /// What a reconcile pass found (and, repairing, made good).
    Reconciled(Report),
    /// The ID of what was removed (a record that could not be read can be
    /// removed too).
    Removed {
        id: String,
    },
    Iam(IamResponse),
}

/// The contents of `path`, or none if it does not exist.
fn read_if_any(path: &std::path::Path, what: &'static str) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(what, path)(e)),
    }
}

/// Runs `action` against the control plane in `ctx`.
pub fn execute(ctx: &Context, action: &Action) -> Result<Response, ApiError> {
    run(ctx, action).map_err(ApiError::from)
}

fn run(ctx: &Context, action: &Action) -> Result<Response, Error> {
    if let Action::ListInstanceTypes = action {
        // A table in the program: no store needed (nor made).
        return Ok(types());
    }
    let store = &mut ctx.open_store()?;
    let net = || NetConfig::from_env().map_err(Error::from);
    let secs = Duration::from_secs;
    Ok(match action {
        Action::RunInstances { request } => {
            let launched = launch::launch(ctx, store, request)?;
            Response::Launched {
                instances: with_tags(store, launched.instances)?,
                short: launched.short.map(|why| why.to_string()),
                failed: launched.failed,
            }
        }
        Action::ListInstances { filters } => {
            lifecycle::reconcile(ctx, store)?;
            Response::Instances(list(store, filters, |i: &Instance| Some(i.state.as_str()))?)
        }
        Action::DescribeInstances { instances } => {
            lifecycle::reconcile(ctx, store)?;
            let chosen = store.read(|tx| {
                if instances.is_empty() {
                    Ok(tx.list::<Instance>()?)
                } else {
                    instances
                        .iter()
                        .map(|r| lookup::find_instance(tx, r))
                        .collect()
                }
            })?;
            Response::Instances(with_tags(store, chosen)?)
        }
        Action::StopInstances {
            instances,
            force,
            timeout_secs,
        } => each(store, instances, |store, r| {
            control::stop(ctx, store, r, *force, secs(*timeout_secs))
        })?,
        Action::StartInstances { instances } => {
            each(store, instances, |store, r| control::start(ctx, store, r))?
        }
        Action::RebootInstances {
            instances,
            timeout_secs,
        } => each(store, instances, |store, r| {
            control::reboot(ctx, store, r, secs(*timeout_secs))
        })?,
        Action::TerminateInstances {
            instances,
            timeout_secs,
        } => each(store, instances, |store, r| {
            control::terminate(ctx, store, r, secs(*timeout_secs))
        })?,
        Action::WaitInstance {
            instance,
            state,
            timeout_secs,
        } => {
            let i = control::wait_for(ctx, store, instance, *state, secs(*timeout_secs))?;
            Response::Instances(with_tags(store, vec![i])?)
        }
        Action::ModifyInstance { instance, change } => {
            lifecycle::reconcile(ctx, store)?;
            let i = port::modify(store, &net()?, instance, change)?;
            Response::Instances(with_tags(store, vec![i])?)
        }
        Action::ModifyInstanceMetadataOptions { instance, change } => {
            let i = store.write(|tx| {
                let mut i = lookup::find_instance(tx, instance)?;
                i.metadata_options = i.metadata_options.with(change);
                tx.update(&i)?;
                Ok::<_, Error>(i)
            })?;
            Response::Instances(with_tags(store, vec![i])?)
        }
        Action::ModifyInstanceCpuOptions {
            instance,
            cpu_options,
        } => {
            lifecycle::reconcile(ctx, store)?;
            let i = store.write(|tx| {
                let mut i = lookup::find_instance(tx, instance)?;
                if i.state != State::Stopped {
                    return Err(Error::NotStopped {
                        id: i.id,
                        state: i.state,
                        what: "its CPU options change while it is stopped (the VMM gives \
                               them to the guest at start)",
                    });
                }
                cpu_options.check(&i.instance_type)?;
                cpu_options.check_host()?;
                i.cpu_options = *cpu_options;
                tx.update(&i)?;
                Ok::<_, Error>(i)
            })?;
            Response::Instances(with_tags(store, vec![i])?)
        }
        Action::GetConsole { instance } => {
            lifecycle::reconcile(ctx, store)?;
            let i = store.read(|tx| lookup::find_instance(tx, instance))?;
            if i.state != State::Running {
                return Err(Error::NotRunning {
                    id: i.id,
                    state: i.state,
                });
            }
            let socket = ctx.state.instance_files(&i.id).console_socket;
            Response::Console {
                instance: i.id,
                socket,
            }
        }
        Action::GetConsoleLog { instance } => {
            let i = store.read(|tx| lookup::find_instance(tx, instance))?;
            let path = ctx.state.instance_files(&i.id).console_log;
            let log = read_if_any(&path, "cannot read the console log")?;
            Response::ConsoleLog {
                instance: i.id,
                log: log.map(|l| String::from_utf8_lossy(&l).into_owned()),
            }
        }
        Action::GetInstanceMetrics { instance } => {
            let i = store.read(|tx| lookup::find_instance(tx, instance))?;
            let path = ctx.state.instance_files(&i.id).metrics;
            let metrics = match read_if_any(&path, "cannot read the metrics file")? {
                // Replaced whole (rename), so never seen half written.
                Some(text) => Some(serde_json::from_slice(&text).map_err(|e| {
                    Error::io("cannot read the metrics file", path)(std::io::Error::other(e))
                })?),
                None => None,
            };
            Response::Metrics {
                instance: i.id,
                metrics,
            }
        }
        Action::CreateKeyPair { name, tags } => {
            let key = NewKey::generate(name)?;
            let private_key = key.private_pem()?;
            store.write(|tx| tx.insert(&key.pair, tags))?;
            Response::NewKeyPair {
                key: Tagged::new(key.pair, tags.clone()),
                private_key,
            }
        }
        Action::ImportKeyPair {
            name,
            public_key,
            tags,
        } => {
            let pair = key_pair::import(name, public_key)?;
            store.write(|tx| tx.insert(&pair, tags))?;
            KeyPair::records(vec![Tagged::new(pair, tags.clone())])
        }
        Action::ListKeyPairs { filters } => KeyPair::records(list_plain(store, filters)?),
        Action::DescribeKeyPair { key } => describe::<KeyPair>(store, key)?,
        Action::DeleteKeyPair { key } => Response::Removed {
            id: store.write(|tx| lookup::remove::<KeyPair>(tx, key))?,
        },
        Action::ImportImage {
            source,
            name,
            description,
            tags,
        } => one(
            image::import(
                &ctx.state,
                store,
                source,
                name.as_deref(),
                description.as_deref(),
                tags,
            )?,
            store,
        )?,
        Action::CreateImage {
            instance,
            name,
            description,
            tags,
        } => one(
            image::create_from_instance(
                &ctx.state,
                store,
                instance,
                name,
                description.as_deref(),
                tags,
            )?,
            store,
        )?,
        Action::ListImages { filters } => Image::records(list_plain(store, filters)?),
        Action::DescribeImage { image } => describe::<Image>(store, image)?,
        Action::DeleteImage { image } => Response::Removed {
            id: image::remove(&ctx.state, store, image)?,
        },
        Action::CreateLaunchTemplate { request } => {
            one(template::create(store, request.clone())?, store)?
        }
        Action::ListLaunchTemplates { filters } => {
            LaunchTemplate::records(list_plain(store, filters)?)
        }
        Action::DescribeLaunchTemplate { template } => describe::<LaunchTemplate>(store, template)?,
        Action::DeleteLaunchTemplate { template } => Response::Removed {
            id: store.write(|tx| lookup::remove::<LaunchTemplate>(tx, template))?,
        },
        Action::ListInstanceTypes => types(),
        Action::CreateVpc { cidr, tags } => {
            let created = network::create(store, &net()?, *cidr, tags)?;
            Response::NewVpc {
                vpc: Tagged::read(store, created.vpc)?,
                not_private: created.not_private,
            }
        }
        Action::CreateDefaultVpc => {
            let vpc = default::create(store, &net()?)?;
            Response::NewVpc {
                vpc: Tagged::read(store, vpc)?,
                not_private: false,
            }
        }
        Action::ListVpcs { filters } => Vpc::records(list_plain(store, filters)?),
        Action::DescribeVpc { vpc } => describe_tagged::<Vpc>(store, vpc)?,
        Action::DeleteVpc { vpc } => gone(network::delete(store, &net()?, vpc)?),
        Action::CreateSubnet {
            vpc,
            cidr,
            zone,
            tags,
        } => one(
            subnet::create(store, &net()?, vpc, *cidr, zone.as_deref(), tags)?,
            store,
        )?,
        Action::ListSubnets { filters } => Subnet::records(list_plain(store, filters)?),
        Action::DescribeSubnet { subnet } => describe_tagged::<Subnet>(store, subnet)?,
        Action::DeleteSubnet { subnet } => gone(subnet::delete(store, &net()?, subnet)?),
        Action::SetMapPublicIpOnLaunch { subnet, on } => one(
            subnet::set_map_public_ip_on_launch(store, subnet, *on)?,
            store,
        )?,
        Action::CreateRouteTable { vpc, tags } => {
            one(route_table::create(store, vpc, tags)?, store)?
        }
        Action::ListRouteTables { filters } => RouteTable::records(list_plain(store, filters)?),
        Action::DescribeRouteTable { table } => describe_tagged::<RouteTable>(store, table)?,
        Action::DeleteRouteTable { table } => gone(route_table::delete(store, table)?),
        Action::AssociateRouteTable { table, subnet } => one(
            route_table::associate(store, &net()?, table, subnet)?,
            store,
        )?,
        Action::DisassociateRouteTable { table, subnet } => one(
            route_table::disassociate(store, &net()?, table, subnet)?,
            store,
        )?,
        Action::CreateRoute {
            table,
            destination,
            gateway,
        } => one(
            route_table::create_route(store, &net()?, table, *destination, gateway)?,
            store,
        )?,
        Action::DeleteRoute { table, destination } => one(
            route_table::delete_route(store, &net()?, table, *destination)?,
            store,
        )?,
        Action::CreateInternetGateway { tags } => one(gateway::create(store, tags)?, store)?,
        Action::AttachInternetGateway { igw, vpc } => {
            one(gateway::attach(store, &net()?, igw, vpc)?, store)?
        }
        Action::DetachInternetGateway { igw } => one(gateway::detach(store, &net()?, igw)?, store)?,
        Action::DeleteInternetGateway { igw } => gone(gateway::delete(store, igw)?),
        Action::ListInternetGateways { filters } => {
            InternetGateway::records(list_plain(store, filters)?)
        }
        Action::DescribeInternetGateway { igw } => describe_tagged::<InternetGateway>(store, igw)?,
        Action::AllocateAddress { tags } => {
            one(elastic_ip::allocate(store, &net()?, tags)?, store)?
        }
        Action::AssociateAddress { eip, instance } => {
            one(elastic_ip::associate(store, &net()?, eip, instance)?, store)?
        }
        Action::DisassociateAddress { eip } => {
            one(elastic_ip::disassociate(store, &net()?, eip)?, store)?
        }
        Action::ReleaseAddress { eip } => gone(elastic_ip::release(store, eip)?),
        Action::ListAddresses { filters } => ElasticIp::records(list_plain(store, filters)?),
        Action::DescribeAddress { eip } => describe_tagged::<ElasticIp>(store, eip)?,
        Action::CreateSecurityGroup {
            vpc,
            name,
            description,
            tags,
        } => one(
            security_group::create(store, &net()?, vpc, name, description, tags)?,
            store,
        )?,
        Action::ListSecurityGroups { filters } => {
            SecurityGroup::records(list_plain(store, filters)?)
        }
        Action::DescribeSecurityGroup { group } => describe_tagged::<SecurityGroup>(store, group)?,
        Action::DeleteSecurityGroup { group } => {
            gone(security_group::delete(store, &net()?, group)?)
        }
        Action::AuthorizeSecurityGroupRule {
            group,
            direction,
            rule,
        } => one(
            security_group::change_rule(store, &net()?, group, *direction, rule, true)?,
            store,
        )?,
        Action::RevokeSecurityGroupRule {
            group,
            direction,
            rule,
        } => one(
            security_group::change_rule(store, &net()?, group, *direction, rule, false)?,
            store,
        )?,
        Action::CreateTags { resources, tags } => {
            store.write(|tx| {
                for id in resources {
                    existing(tx, id)?;
                    tx.set_tags(id, tags)?;
                }
                Ok::<_, Error>(())
            })?;
            Response::Tags(Vec::new())
        }
        Action::DeleteTags { resources, tags } => {
            store.write(|tx| {
                for id in resources {
                    existing(tx, id)?;
                    for (key, value) in tags {
                        tx.remove_tag(id, key, value.as_deref())?;
                    }
                }
                Ok::<_, Error>(())
            })?;
            Response::Tags(Vec::new())
        }
        Action::ListTags => Response::Tags(store.read(|tx| tx.all_tags())?),
        Action::CreateTargetGroup { request } => {
            one(elb::create_target_group(store, request)?, store)?
        }
        Action::RegisterTargets {
            target_group,
            targets,
        } => one(
            elb::change_targets(store, &net()?, target_group, targets, true)?,
            store,
        )?,
        Action::DeregisterTargets {
            target_group,
            targets,
        } => one(
            elb::change_targets(store, &net()?, target_group, targets, false)?,
            store,
        )?,
        Action::ListTargetGroups { filters } => {
            let groups = list_plain::<TargetGroup>(store, filters)?;
            Response::TargetGroups(store.read(|tx| shown(tx, groups))?)
        }
        Action::DescribeTargetGroup { target_group } => {
            let found =
                store.read(|tx| tagged(tx, lookup::find::<TargetGroup>(tx, target_group)?))?;
            Response::TargetGroups(store.read(|tx| shown(tx, vec![found]))?)
        }
        Action::DeleteTargetGroup { target_group } => {
            gone(elb::delete_target_group(store, target_group)?)
        }
        Action::ReportTargetHealth {
            target_group,
            reports,
        } => one(
            elb::report_health(store, &net()?, target_group, reports)?,
            store,
        )?,
        Action::CreateLoadBalancer { request } => {
            one(elb::create_load_balancer(store, &net()?, request)?, store)?
        }
        Action::ListLoadBalancers { filters } => LoadBalancer::records(list_plain(store, filters)?),
        Action::DescribeLoadBalancer { load_balancer } => {
            describe::<LoadBalancer>(store, load_balancer)?
        }
        Action::DeleteLoadBalancer { load_balancer } => {
            gone(elb::delete_load_balancer(store, &net()?, load_balancer)?)
        }
        Action::CreateListener {
            load_balancer,
            protocol,
            port,
            target_group,
        } => one(
            elb::create_listener(
                store,
                &net()?,
                load_balancer,
                protocol.as_deref(),
                *port,
                target_group,
            )?,
            store,
        )?,
        Action::DeleteListener {
            load_balancer,
            listener,
        } => one(
            elb::delete_listener(store, &net()?, load_balancer, listener)?,
            store,
        )?,
        Action::CreateRule {
            load_balancer,
            listener,
            priority,
            request,
        } => one(
            elb::create_rule(store, &net()?, load_balancer, listener, *priority, request)?,
            store,
        )?,
        Action::ModifyRule {
            load_balancer,
            rule,
            request,
        } => one(
            elb::modify_rule(store, &net()?, load_balancer, rule, request)?,
            store,
        )?,
        Action::SetRulePriorities {
            load_balancer,
            priorities,
        } => one(
            elb::set_rule_priorities(store, &net()?, load_balancer, priorities)?,
            store,
        )?,
        Action::DeleteRule {
            load_balancer,
            rule,
        } => one(
            elb::delete_rule(store, &net()?, load_balancer, rule)?,
            store,
        )?,
        Action::CreateAutoScalingGroup { request } => {
            one(autoscaling::create(store, request)?, store)?
        }
        Action::ListAutoScalingGroups { filters } => {
            AutoScalingGroup::records(list_plain(store, filters)?)
        }
        Action::DescribeAutoScalingGroup { group } => describe::<AutoScalingGroup>(store, group)?,
        Action::UpdateAutoScalingGroup { group, change } => {
            one(autoscaling::update(store, group, change)?, store)?
        }
        Action::SetDesiredCapacity { group, desired } => {
            one(autoscaling::set_desired(store, group, *desired)?, store)?
        }
        Action::SetInstanceProtection {
            group,
            instances,
            protected,
        } => one(
            autoscaling::set_protection(store, group, instances, *protected)?,
            store,
        )?,
        Action::TerminateInstanceInAutoScalingGroup {
            instance,
            decrement,
            timeout_secs,
        } => {
            let group = autoscaling::leave(store, instance, *decrement)?;
            autoscaling::deregister(store, &net()?, &group.target_groups, instance)?;
            let i = control::terminate(ctx, store, instance, secs(*timeout_secs))?;
            Response::Instances(with_tags(store, vec![i])?)
        }
        Action::ChangeAutoScalingTargetGroups {
            group,
            target_groups,
            attach,
        } => {
            let (group, detached) =
                autoscaling::change_target_groups(store, group, target_groups, *attach)?;
            for member in &group.instances {
                autoscaling::deregister(store, &net()?, &detached, &member.instance_id)?;
            }
            one(group, store)?
        }
        Action::DeleteAutoScalingGroup {
            group,
            force,
            timeout_secs,
        } => gone(autoscaling::delete(
            ctx,
            store,
            &net()?,
            group,
            *force,
            secs(*timeout_secs),
        )?),
        Action::PutScalingPolicy {
            group,
            name,
            target_cpu,
            disable_scale_in,
        } => one(
            autoscaling::put_policy(store, group, name, *target_cpu, *disable_scale_in)?,
            store,
        )?,
        Action::DeleteScalingPolicy { group, name } => {
            one(autoscaling::delete_policy(store, group, name)?, store)?
        }
        Action::RecordAutoScalingMembers { group, members } => {
            one(autoscaling::record_members(store, group, members)?, store)?
        }
        Action::RecordCpuUtilization { samples } => {
            let changed = store.write(|tx| {
                let mut changed = Vec::new();
                for (id, minute) in samples {
                    // One terminated or deleted meanwhile has no use for it.
                    let Some(mut i) = tx.get::<Instance>(id)? else {
                        continue;
                    };
                    if i.state == State::Terminated {
                        continue;
                    }
                    cpu_metric::push(&mut i.cpu_utilization, *minute);
                    tx.update(&i)?;
                    changed.push(i);
                }
                Ok::<_, Error>(changed)
            })?;
            Response::Instances(with_tags(store, changed)?)
        }
        Action::Reconcile { repair } => {
            let mode = if *repair { Mode::Repair } else { Mode::Check };
            Response::Reconciled(reconcile::run(ctx, store, mode)?)
        }
        Action::Iam(iam) => Response::Iam(iam::execute(store, iam)?),
    })
}

/// Target groups as shown, with their tags: a group no listener uses
/// has unused targets.
fn shown(tx: &Tx<'_>, groups: Vec<Tagged<TargetGroup>>) -> Result<Vec<Tagged<TargetGroup>>, Error> {
    let (items, tags): (Vec<TargetGroup>, Vec<Tags>) =
        groups.into_iter().map(|g| (g.item, g.tags)).unzip();
    Ok(elb::shown(tx, items)?
        .into_iter()
        .zip(tags)
        .map(|(item, tags)| Tagged::new(item, tags))
        .collect())
}

/// Refuses an ID no resource has.
fn existing(tx: &Tx<'_>, id: &str) -> Result<(), Error> {
    if tx.exists(id)? {
        return Ok(());
    }
    let kind = super::ids::kind_of(id);
    Err(Error::NotFound {
        noun: kind.map_or("resource", |k| k.noun()),
        reference: id.to_owned(),
        list: kind.map_or("gureum instance list", |k| k.list_command()),
    })
}

fn types() -> Response {
    Response::InstanceTypes(instance_type::all())
}

/// Runs `act` on each referenced instance in turn; stops at the first
/// error, as the CLI always did.
fn each(
    store: &mut Store,
    references: &[String],
    mut act: impl FnMut(&mut Store, &str) -> Result<Instance, Error>,
) -> Result<Response, Error> {
    let mut done = Vec::new();
    for r in references {
        done.push(act(store, r)?);
    }
    Ok(Response::Instances(with_tags(store, done)?))
}

/// `items` with their tags.
fn with_tags<R: Resource>(store: &mut Store, items: Vec<R>) -> Result<Vec<Tagged<R>>, Error> {
    store.read(|tx| items.into_iter().map(|item| tagged(tx, item)).collect())
}

fn tagged<R: Resource>(tx: &Tx<'_>, item: R) -> Result<Tagged<R>, Error> {
    let tags = tx.tags(item.id())?;
    Ok(Tagged::new(item, tags))
}

/// The record an action made or changed, with its tags.
fn one<R: Records>(item: R, store: &mut Store) -> Result<Response, Error> {
    Ok(R::records(vec![Tagged::read(store, item)?]))
}

/// The record an action deleted (its tags went with it).
fn gone<R: Records>(item: R) -> Response {
    R::records(vec![Tagged::new(item, Tags::new())])
}

/// Every `R` with its tags that passes every filter; `state` gives a
/// record's state for state filters.
fn list<R: Resource>(
    store: &mut Store,
    filters: &[String],
    state: impl Fn(&R) -> Option<&str>,
) -> Result<Vec<Tagged<R>>, Error> {
    let filters = filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    store.read(|tx| {
        let mut out = Vec::new();
        let listed = tx.list_readable::<R>()?;
        // Told where the action runs (the CLI, or the daemon's log); the
        // listing goes on without them.
        for skipped in &listed.unreadable {
            eprintln!("gureum: warning: {skipped}");
        }
        for item in listed.items {
            let tags = tx.tags(item.id())?;
            if filters.iter().all(|f| f.matches(&tags, state(&item))) {
                out.push(Tagged::new(item, tags));
            }
        }
        Ok(out)
    })
}

/// `list` of a kind without states: state filters match none.
fn list_plain<R: Resource>(store: &mut Store, filters: &[String]) -> Result<Vec<Tagged<R>>, Error> {
    list(store, filters, |_: &R| None)
}

/// The `R` named `reference` (by ID or unique name) with its tags.
fn describe<R: Records>(store: &mut Store, reference: &str) -> Result<Response, Error> {
    let found = store.read(|tx| tagged(tx, lookup::find::<R>(tx, reference)?))?;
    Ok(R::records(vec![found]))
}

/// The `R` named `reference` (by ID or Name tag) with its tags.
fn describe_tagged<R: Records>(store: &mut Store, reference: &str) -> Result<Response, Error> {
    let found = store.read(|tx| tagged(tx, lookup::find_tagged::<R>(tx, reference, |_| true)?))?;
    Ok(R::records(vec![found]))
}
