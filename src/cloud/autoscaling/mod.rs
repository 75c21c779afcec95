//! EC2 Auto Scaling groups: a launch template, one or more subnets, a
//! size (min, desired, max) and target groups, kept as records; the
//! daemon's group controller (`daemon::autoscaling`) keeps each group at
//! its desired capacity through the core API.
//!
//! Membership is crash-safe by construction: every instance a group
//! launches carries the tag `aws:autoscaling:groupName` (as AWS's do),
//! written in the same transaction as the instance's record, and the
//! controller adopts tagged instances the group's record does not list
//! yet. A daemon killed between a launch and recording it leaves no
//! instance untracked.

pub mod group;

use serde::{Deserialize, Serialize};

use crate::cloud::elb::target_group::{HealthState, TargetGroup};
use crate::cloud::elb::{self, TargetRef};
use crate::cloud::ids::{self, Kind};
use crate::cloud::instance::{Instance, State};
use crate::cloud::lifecycle::Context;
use crate::cloud::store::{Store, Tx};
use crate::cloud::tags::Tags;
use crate::cloud::template::LaunchTemplate;
use crate::cloud::vpc::public::NetConfig;
use crate::cloud::vpc::subnet::Subnet;
use crate::cloud::{self, control, lookup};

use group::{AutoScalingGroup, HealthCheckType, Member, ScalingPolicy};

/// The tag naming the group an instance belongs to (AWS's own key).
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// The largest group: one host runs every instance.
pub const MAX_SIZE: u32 = 64;

/// The longest health check grace period (AWS's bound: 7200 s).
const MAX_GRACE_SECS: u32 = 7200;

/// What went wrong with an Auto Scaling group.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "'{0}' is not a valid Auto Scaling group name: use 1 to 255 printable characters \
         without ':'"
    )]
    BadName(String),
    #[error(
        "the sizes must be min <= desired <= max (got min {min}, desired {desired}, max {max})"
    )]
    Sizes { min: u32, desired: u32, max: u32 },
    #[error("the largest group on one host has {MAX_SIZE} instances (got max {0})")]
    TooLarge(u32),
    #[error("the health check grace period must be 0 to {MAX_GRACE_SECS} s (got {0})")]
    BadGrace(u32),
    #[error("'{0}' is not a health check type: use EC2 or ELB")]
    HealthCheckType(String),
    #[error(
        "launch template version '{0}' does not exist: gureum's templates have one version \
         (use $Default, $Latest or 1)"
    )]
    TemplateVersion(String),
    #[error("an Auto Scaling group needs at least one subnet: pass --subnet")]
    NoSubnets,
    #[error("{noun} {id} is in VPC {its_vpc}, not in VPC {vpc} of the group's subnets")]
    OtherVpc {
        noun: &'static str,
        id: String,
        its_vpc: String,
        vpc: String,
    },
    #[error(
        "instance {instance} is not in Auto Scaling group {group} (`gureum asg describe \
         {group}`)"
    )]
    NotMember { group: String, instance: String },
    #[error("instance {0} is in no Auto Scaling group (`gureum asg list`)")]
    InNoGroup(String),
    #[error(
        "terminating {instance} without a replacement would take group {group} below its \
         minimum size {min}: lower the minimum first (`gureum asg update --min`)"
    )]
    BelowMin {
        group: String,
        instance: String,
        min: u32,
    },
    #[error("a target CPU utilization is 1 to 100 per cent (got {0})")]
    BadTarget(u16),
    #[error("'{0}' is not a valid policy name: use 1 to 255 printable characters without ':'")]
    BadPolicyName(String),
    #[error("Auto Scaling group {group} has no scaling policy '{policy}'")]
    NoPolicy { group: String, policy: String },
    #[error(
        "Auto Scaling group {group} still has instances ({instances}): delete it with \
         --force-delete to terminate them, or set its capacity to 0 and wait"
    )]
    HasInstances { group: String, instances: String },
}

/// What `asg create` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRequest {
    pub name: String,
    /// The launch template: ID or name.
    pub launch_template: String,
    /// [default: `$Default`]
    pub launch_template_version: Option<String>,
    /// IDs or Name tags, all of one VPC.
    pub subnets: Vec<String>,
    pub min_size: u32,
    pub max_size: u32,
    /// [default: the minimum]
    pub desired_capacity: Option<u32>,
    /// IDs, names or ARNs.
    pub target_groups: Vec<String>,
    /// EC2 or ELB [default: EC2].
    pub health_check_type: Option<String>,
    /// Seconds [default: 0, as the API's].
    pub health_check_grace_secs: Option<u32>,
    #[serde(default)]
    pub new_instances_protected: bool,
    pub tags: Tags,
}

/// What `asg update` may change; `None` leaves it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupUpdate {
    pub launch_template: Option<String>,
    pub launch_template_version: Option<String>,
    pub subnets: Option<Vec<String>>,
    pub min_size: Option<u32>,
    pub max_size: Option<u32>,
    pub desired_capacity: Option<u32>,
    pub health_check_type: Option<String>,
    pub health_check_grace_secs: Option<u32>,
    pub new_instances_protected: Option<bool>,
}

/// AWS's group names: 1 to 255 characters, printable, no ':' (ARNs use
/// it); not shaped as a gureum ID.
fn check_name(name: &str) -> Result<(), Error> {
    let shaped = (1..=255).contains(&name.chars().count())
        && !name.contains(':')
        && name.chars().all(|c| !c.is_control());
    if shaped && !ids::is_id(Kind::AutoScalingGroup, name) {
        Ok(())
    } else {
        Err(Error::BadName(name.to_owned()))
    }
}

/// Checks min <= desired <= max <= `MAX_SIZE`.
fn check_sizes(min: u32, desired: u32, max: u32) -> Result<(), Error> {
    if max > MAX_SIZE {
        return Err(Error::TooLarge(max));
    }
    if min > desired || desired > max {
        return Err(Error::Sizes { min, desired, max });
    }
    Ok(())
}

fn check_grace(secs: u32) -> Result<u32, Error> {
    if secs > MAX_GRACE_SECS {
        return Err(Error::BadGrace(secs));
    }
    Ok(secs)
}

fn check_version(version: Option<&str>) -> Result<String, Error> {
    match version.unwrap_or("$Default") {
        v @ ("$Default" | "$Latest" | "1") => Ok(v.to_owned()),
        other => Err(Error::TemplateVersion(other.to_owned())),
    }
}

/// The subnets `references` name, all in one VPC; that VPC's ID.
fn subnets(tx: &Tx<'_>, references: &[String]) -> Result<(Vec<String>, String), cloud::Error> {
    let mut found: Vec<Subnet> = Vec::new();
    for reference in references {
        let subnet: Subnet = lookup::find_tagged(tx, reference, |_| true)?;
        if found.iter().any(|s| s.id == subnet.id) {
            continue;
        }
        if let Some(first) = found.first() {
            if first.vpc_id != subnet.vpc_id {
                return Err(Error::OtherVpc {
                    noun: "subnet",
                    id: subnet.id,
                    its_vpc: subnet.vpc_id,
                    vpc: first.vpc_id.clone(),
                }
                .into());
            }
        }
        found.push(subnet);
    }
    let vpc = found
        .first()
        .map(|s| s.vpc_id.clone())
        .ok_or(Error::NoSubnets)?;
    Ok((found.into_iter().map(|s| s.id).collect(), vpc))
}

/// The target group `reference` names (ID, name or ELBv2 ARN), checked to
/// be in VPC `vpc`.
fn target_group(tx: &Tx<'_>, reference: &str, vpc: &str) -> Result<TargetGroup, cloud::Error> {
    let group: TargetGroup = match tx
        .list::<TargetGroup>()?
        .into_iter()
        .find(|g| g.arn == reference)
    {
        Some(group) => group,
        None => lookup::find(tx, reference)?,
    };
    if group.vpc_id != vpc {
        return Err(Error::OtherVpc {
            noun: "target group",
            id: group.id,
            its_vpc: group.vpc_id,
            vpc: vpc.to_owned(),
        }
        .into());
    }
    Ok(group)
}

fn arn(tx: &Tx<'_>, id: &str, name: &str) -> Result<String, cloud::Error> {
    let account = tx
        .fact("account_id")?
        .unwrap_or_else(|| "000000000000".into());
    // AWS's carries a UUID where this carries the group's ID.
    Ok(format!(
        "arn:aws:autoscaling:{}:{account}:autoScalingGroup:{id}:autoScalingGroupName/{name}",
        crate::cloud::iam::arn::REGION
    ))
}

/// Creates a group; the controller launches its instances.
pub fn create(store: &mut Store, request: &GroupRequest) -> Result<AutoScalingGroup, cloud::Error> {
    check_name(&request.name)?;
    let desired = request.desired_capacity.unwrap_or(request.min_size);
    check_sizes(request.min_size, desired, request.max_size)?;
    let grace = check_grace(request.health_check_grace_secs.unwrap_or(0))?;
    let health_check_type = request
        .health_check_type
        .as_deref()
        .map(HealthCheckType::parse)
        .transpose()?
        .unwrap_or_default();
    let version = check_version(request.launch_template_version.as_deref())?;
    crate::cloud::tags::check_all(&request.tags)?;
    let id = ids::new_id(Kind::AutoScalingGroup)?;
    store.write(|tx| {
        let template: LaunchTemplate = lookup::find(tx, &request.launch_template)?;
        let (subnets, vpc_id) = subnets(tx, &request.subnets)?;
        let mut target_groups = Vec::new();
        for reference in &request.target_groups {
            let group = target_group(tx, reference, &vpc_id)?;
            if !target_groups.contains(&group.id) {
                target_groups.push(group.id);
            }
        }
        let group = AutoScalingGroup {
            arn: arn(tx, &id, &request.name)?,
            id,
            name: request.name.clone(),
            launch_template_id: template.id,
            launch_template_name: template.name,
            launch_template_version: version,
            vpc_id,
            subnets,
            min_size: request.min_size,
            max_size: request.max_size,
            desired_capacity: desired,
            target_groups,
            health_check_type,
            health_check_grace_secs: grace,
            new_instances_protected: request.new_instances_protected,
            instances: Vec::new(),
            created: cloud::time::now(),
            policies: Vec::new(),
        };
        tx.insert(&group, &request.tags)?;
        Ok(group)
    })
}

/// Changes a group; sizes are checked together, as they end up.
pub fn update(
    store: &mut Store,
    reference: &str,
    change: &GroupUpdate,
) -> Result<AutoScalingGroup, cloud::Error> {
    let version = change
        .launch_template_version
        .as_deref()
        .map(|v| check_version(Some(v)))
        .transpose()?;
    let health_check_type = change
        .health_check_type
        .as_deref()
        .map(HealthCheckType::parse)
        .transpose()?;
    let grace = change
        .health_check_grace_secs
        .map(check_grace)
        .transpose()?;
    store.write(|tx| {
        let mut group: AutoScalingGroup = lookup::find(tx, reference)?;
        if let Some(reference) = &change.launch_template {
            let template: LaunchTemplate = lookup::find(tx, reference)?;
            group.launch_template_id = template.id;
            group.launch_template_name = template.name;
        }
        if let Some(version) = version {
            group.launch_template_version = version;
        }
        if let Some(references) = &change.subnets {
            let (subnets, vpc) = subnets(tx, references)?;
            if vpc != group.vpc_id && !group.target_groups.is_empty() {
                return Err(Error::OtherVpc {
                    noun: "subnet",
                    id: subnets.first().cloned().unwrap_or_default(),
                    its_vpc: vpc,
                    vpc: group.vpc_id,
                }
                .into());
            }
            group.subnets = subnets;
            group.vpc_id = vpc;
        }
        let min = change.min_size.unwrap_or(group.min_size);
        let max = change.max_size.unwrap_or(group.max_size);
        // As AWS: a new min or max alone drags the desired capacity in.
        let desired = change
            .desired_capacity
            .unwrap_or_else(|| group.desired_capacity.clamp(min, max.max(min)));
        check_sizes(min, desired, max)?;
        (group.min_size, group.desired_capacity, group.max_size) = (min, desired, max);
        if let Some(kind) = health_check_type {
            group.health_check_type = kind;
        }
        if let Some(grace) = grace {
            group.health_check_grace_secs = grace;
        }
        if let Some(protected) = change.new_instances_protected {
            group.new_instances_protected = protected;
        }
        tx.update(&group)?;
        Ok(group)
    })
}

/// Sets the desired capacity, within min and max.
pub fn set_desired(
    store: &mut Store,
    reference: &str,
    desired: u32,
) -> Result<AutoScalingGroup, cloud::Error> {
    update(
        store,
        reference,
        &GroupUpdate {
            desired_capacity: Some(desired),
            ..GroupUpdate::default()
        },
    )
}

/// Protects instances of a group from scale-in, or lifts it.
pub fn set_protection(
    store: &mut Store,
    reference: &str,
    instances: &[String],
    protected: bool,
) -> Result<AutoScalingGroup, cloud::Error> {
    store.write(|tx| {
        let mut group: AutoScalingGroup = lookup::find(tx, reference)?;
        for instance in instances {
            let id = lookup::find_instance(tx, instance)?.id;
            let member = group
                .instances
                .iter_mut()
                .find(|m| m.instance_id == id)
                .ok_or_else(|| Error::NotMember {
                    group: group.id.clone(),
                    instance: id.clone(),
                })?;
            member.protected = protected;
        }
        tx.update(&group)?;
        Ok(group)
    })
}

/// Attaches target groups to a group (the controller registers its
/// instances), or detaches them, deregistering its instances at once.
pub fn change_target_groups(
    store: &mut Store,
    reference: &str,
    target_groups: &[String],
    attach: bool,
) -> Result<(AutoScalingGroup, Vec<String>), cloud::Error> {
    store.write(|tx| {
        let mut group: AutoScalingGroup = lookup::find(tx, reference)?;
        let mut detached = Vec::new();
        for reference in target_groups {
            let found = target_group(tx, reference, &group.vpc_id)?;
            if attach {
                if !group.target_groups.contains(&found.id) {
                    group.target_groups.push(found.id);
                }
            } else if group.target_groups.contains(&found.id) {
                group.target_groups.retain(|g| *g != found.id);
                detached.push(found.id);
            }
        }
        tx.update(&group)?;
        Ok((group, detached))
    })
}

/// The group whose member `instance` is.
pub fn group_of(tx: &Tx<'_>, instance: &str) -> Result<AutoScalingGroup, cloud::Error> {
    tx.list::<AutoScalingGroup>()?
        .into_iter()
        .find(|g| g.member(instance).is_some())
        .ok_or_else(|| Error::InNoGroup(instance.to_owned()).into())
}

/// Takes `instance` out of its group before it is terminated: with
/// `decrement`, the desired capacity goes down by one (not below the
/// minimum); without, the controller launches a replacement.
pub fn leave(
    store: &mut Store,
    instance: &str,
    decrement: bool,
) -> Result<AutoScalingGroup, cloud::Error> {
    store.write(|tx| {
        let id = lookup::find_instance(tx, instance)?.id;
        let mut group = group_of(tx, &id)?;
        if decrement {
            if group.desired_capacity <= group.min_size {
                return Err(Error::BelowMin {
                    group: group.id,
                    instance: id,
                    min: group.min_size,
                }
                .into());
            }
            group.desired_capacity -= 1;
        }
        group.instances.retain(|m| m.instance_id != id);
        tx.update(&group)?;
        Ok(group)
    })
}

/// The instances carrying group `name`'s tag that are not terminated.
fn tagged_instances(tx: &Tx<'_>, name: &str) -> Result<Vec<Instance>, cloud::Error> {
    let mut found = Vec::new();
    for instance in tx.list_readable::<Instance>()?.items {
        if instance.state == State::Terminated {
            continue;
        }
        if tx.tags(&instance.id)?.get(GROUP_TAG).map(String::as_str) == Some(name) {
            found.push(instance);
        }
    }
    Ok(found)
}

/// Deletes a group. One with instances is refused unless `force`, which
/// deregisters and terminates them first.
pub fn delete(
    ctx: &Context,
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    force: bool,
    timeout: std::time::Duration,
) -> Result<AutoScalingGroup, cloud::Error> {
    let (group, instances) = store.read(|tx| {
        let group: AutoScalingGroup = lookup::find(tx, reference)?;
        let mut ids: Vec<String> = group
            .instances
            .iter()
            .map(|m| m.instance_id.clone())
            .collect();
        for instance in tagged_instances(tx, &group.name)? {
            if !ids.contains(&instance.id) && instance.state != State::ShuttingDown {
                ids.push(instance.id);
            }
        }
        Ok::<_, cloud::Error>((group, ids))
    })?;
    if !instances.is_empty() && !force {
        return Err(Error::HasInstances {
            group: group.id,
            instances: instances.join(", "),
        }
        .into());
    }
    // Emptied first, so that no controller pass replaces what is being
    // terminated; a crash before the record goes leaves an empty group
    // that a second delete removes.
    if !instances.is_empty() {
        store.write(|tx| {
            let mut emptied: AutoScalingGroup = lookup::find(tx, &group.id)?;
            (emptied.min_size, emptied.desired_capacity) = (0, 0);
            tx.update(&emptied)?;
            Ok::<_, cloud::Error>(())
        })?;
    }
    for instance in &instances {
        deregister(store, config, &group.target_groups, instance)?;
        match control::terminate(ctx, store, instance, timeout) {
            Ok(_) | Err(cloud::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    store.write(|tx| {
        tx.delete(&group.id)?;
        Ok::<_, cloud::Error>(())
    })?;
    Ok(group)
}

/// The controller's record of who is in the group now: `members`, each
/// keeping the protection the record gives it (set meanwhile by a user)
/// and new ones taking the group's default.
pub fn record_members(
    store: &mut Store,
    reference: &str,
    members: &[Member],
) -> Result<AutoScalingGroup, cloud::Error> {
    store.write(|tx| {
        let mut group: AutoScalingGroup = lookup::find(tx, reference)?;
        let now: Vec<Member> = members
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.protected = group
                    .member(&m.instance_id)
                    .map_or(group.new_instances_protected, |old| old.protected);
                m
            })
            .collect();
        if now != group.instances {
            group.instances = now;
            tx.update(&group)?;
        }
        Ok(group)
    })
}

/// Adds a target-tracking policy on average CPU utilization to a group,
/// or replaces the one of that name (as PutScalingPolicy does).
pub fn put_policy(
    store: &mut Store,
    reference: &str,
    name: &str,
    target_cpu: u16,
    disable_scale_in: bool,
) -> Result<AutoScalingGroup, cloud::Error> {
    let shaped = (1..=255).contains(&name.chars().count())
        && !name.contains(':')
        && name.chars().all(|c| !c.is_control());
    if !shaped {
        return Err(Error::BadPolicyName(name.to_owned()).into());
    }
    if !(1..=100).contains(&target_cpu) {
        return Err(Error::BadTarget(target_cpu).into());
    }
    store.write(|tx| {
        let mut group: AutoScalingGroup = lookup::find(tx, reference)?;
        let account = tx
            .fact("account_id")?
            .unwrap_or_else(|| "000000000000".into());
        let policy = ScalingPolicy {
            name: name.to_owned(),
            arn: format!(
                "arn:aws:autoscaling:{}:{account}:scalingPolicy:{}:autoScalingGroupName/{}:policyName/{name}",
                crate::cloud::iam::arn::REGION,
                group.id,
                group.name
            ),
            target_cpu,
            disable_scale_in,
        };
        group.policies.retain(|p| p.name != name);
        group.policies.push(policy);
        tx.update(&group)?;
        Ok(group)
    })
}

/// Removes a group's scaling policy.
pub fn delete_policy(
    store: &mut Store,
    reference: &str,
    name: &str,
) -> Result<AutoScalingGroup, cloud::Error> {
    store.write(|tx| {
        let mut group: AutoScalingGroup = lookup::find(tx, reference)?;
        if !group.policies.iter().any(|p| p.name == name) {
            return Err(Error::NoPolicy {
                group: group.id,
                policy: name.to_owned(),
            }
            .into());
        }
        group.policies.retain(|p| p.name != name);
        tx.update(&group)?;
        Ok(group)
    })
}

/// Deregisters `instance` from those of `target_groups` it is registered
/// in (and not draining already).
pub fn deregister(
    store: &mut Store,
    config: &NetConfig,
    target_groups: &[String],
    instance: &str,
) -> Result<(), cloud::Error> {
    let id = match store.read(|tx| lookup::find_instance(tx, instance)) {
        Ok(found) => found.id,
        // An instance gone is in no target group.
        Err(cloud::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    for group in target_groups {
        let ports: Vec<u16> = store.read(|tx| {
            Ok::<_, cloud::Error>(
                lookup::find::<TargetGroup>(tx, group)?
                    .targets
                    .iter()
                    .filter(|t| t.instance_id == id && t.state != HealthState::Draining)
                    .map(|t| t.port)
                    .collect(),
            )
        })?;
        if ports.is_empty() {
            continue;
        }
        let targets: Vec<TargetRef> = ports
            .into_iter()
            .map(|port| TargetRef {
                instance: id.clone(),
                port: Some(port),
            })
            .collect();
        elb::change_targets(store, config, group, &targets, false)?;
    }
    Ok(())
}

/// The groups using subnet or target group `id`, for refusing to delete
/// it.
pub fn users_of(tx: &Tx<'_>, id: &str) -> Result<Vec<String>, cloud::Error> {
    Ok(tx
        .list::<AutoScalingGroup>()?
        .into_iter()
        .filter(|g| g.subnets.iter().any(|s| s == id) || g.target_groups.iter().any(|t| t == id))
        .map(|g| g.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_ordered_and_bounded() {
        check_sizes(0, 0, 0).unwrap();
        check_sizes(2, 2, 4).unwrap();
        check_sizes(1, 3, MAX_SIZE).unwrap();
        assert!(matches!(check_sizes(2, 1, 4), Err(Error::Sizes { .. })));
        assert!(matches!(check_sizes(1, 5, 4), Err(Error::Sizes { .. })));
        assert!(matches!(check_sizes(3, 3, 2), Err(Error::Sizes { .. })));
        assert!(matches!(
            check_sizes(1, 1, MAX_SIZE + 1),
            Err(Error::TooLarge(_))
        ));
    }

    fn member(id: &str, protected: bool) -> Member {
        Member {
            instance_id: id.into(),
            subnet_id: "subnet-a".into(),
            availability_zone: "local-1a".into(),
            joined: 1,
            protected,
        }
    }

    #[test]
    fn recording_members_keeps_their_protection_and_gives_new_ones_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("gureum.db")).unwrap();
        let group = AutoScalingGroup {
            id: "asg-0123456789abcdef0".into(),
            name: "web".into(),
            arn: String::new(),
            launch_template_id: "lt-1".into(),
            launch_template_name: "t".into(),
            launch_template_version: "$Default".into(),
            vpc_id: "vpc-1".into(),
            subnets: vec!["subnet-a".into()],
            min_size: 0,
            max_size: 4,
            desired_capacity: 2,
            target_groups: Vec::new(),
            health_check_type: HealthCheckType::Ec2,
            health_check_grace_secs: 0,
            new_instances_protected: true,
            instances: vec![member("i-1", false)],
            created: String::new(),
            policies: Vec::new(),
        };
        store.write(|tx| tx.insert(&group, &Tags::new())).unwrap();
        // The controller saw i-1 protected (a stale read) and i-2 new.
        let recorded = record_members(
            &mut store,
            "web",
            &[member("i-1", true), member("i-2", false)],
        )
        .unwrap();
        assert_eq!(
            recorded.instances,
            [member("i-1", false), member("i-2", true)]
        );
        put_policy(&mut store, "web", "cpu", 50, false).unwrap();
        put_policy(&mut store, "web", "cpu", 60, true).unwrap();
        let group = put_policy(&mut store, "web", "other", 70, false).unwrap();
        assert_eq!(group.policies.len(), 2, "one of a name");
        assert_eq!(group.policies[0].target_cpu, 60);
        assert!(
            group.policies[0]
                .arn
                .ends_with(":autoScalingGroupName/web:policyName/cpu")
        );
        assert!(put_policy(&mut store, "web", "x", 0, false).is_err());
        assert!(put_policy(&mut store, "web", "a:b", 50, false).is_err());
        delete_policy(&mut store, "web", "cpu").unwrap();
        assert!(matches!(
            delete_policy(&mut store, "web", "cpu"),
            Err(cloud::Error::AutoScaling(Error::NoPolicy { .. }))
        ));
    }

    #[test]
    fn names_versions_grace_and_check_types_are_checked() {
        check_name("web-asg_1.x").unwrap();
        for bad in ["", "a:b", "x\ny", "asg-0123456789abcdef0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
        assert_eq!(check_version(None).unwrap(), "$Default");
        assert_eq!(check_version(Some("$Latest")).unwrap(), "$Latest");
        assert!(matches!(
            check_version(Some("2")),
            Err(Error::TemplateVersion(_))
        ));
        assert!(check_grace(7200).is_ok());
        assert!(check_grace(7201).is_err());
        assert_eq!(HealthCheckType::parse("elb").unwrap(), HealthCheckType::Elb);
        assert!(HealthCheckType::parse("http").is_err());
    }
}
