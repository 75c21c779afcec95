//! The Auto Scaling group controller: a thread of the daemon that keeps
//! every group at its desired capacity, level-triggered. Each pass reads
//! the groups, their instances (through the core API, which reconciles
//! their states first) and their target groups' health, asks `decide`
//! what to do, and does it through the executor: record who is in the
//! group, deregister leaving instances, terminate unhealthy ones and
//! those scale-in picks, register members in the group's target groups,
//! launch into the subnets with the fewest members.
//!
//! Nothing is remembered between passes but a backoff of launches that
//! failed: a daemon started again carries on from the store. Instances
//! are found by the group's record and by their `aws:autoscaling:
//! groupName` tag, written with their record at launch, so one launched
//! by a daemon killed before recording it is adopted by the next pass.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::Executor;
use crate::cloud::api::{Action, Response, Tagged};
use crate::cloud::autoscaling::GROUP_TAG;
use crate::cloud::autoscaling::group::{AutoScalingGroup, HealthCheckType, Member};
use crate::cloud::cpu_metric::{self, CpuMinute};
use crate::cloud::elb::TargetRef;
use crate::cloud::elb::target_group::{HealthState, TargetGroup};
use crate::cloud::instance::{Instance, State};
use crate::cloud::launch::{LaunchNetwork, LaunchRequest};
use crate::cloud::launch_count::LaunchCount;
use crate::cloud::lifecycle::Context;
use crate::cloud::store::Store;
use crate::cloud::vpc::port::PlacementRequest;

/// Time between two passes.
const TICK: Duration = Duration::from_secs(2);
/// How long a group waits after a launch failed, doubling while they
/// keep failing, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// What the guest of an instance the group terminates gets to shut down.
const TERMINATE_TIMEOUT_SECS: u64 = 30;

/// What the controller knows of one instance of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub instance_id: String,
    pub subnet_id: String,
    pub availability_zone: String,
    pub state: State,
    /// When it joined the group (seconds since the epoch).
    pub joined: u64,
    pub protected: bool,
    /// Its health in each of the group's target groups it is registered
    /// in and not draining from.
    pub registered: Vec<(String, HealthState)>,
}

/// What a pass does to one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Who is in the group after this pass (protection as seen).
    pub members: Vec<Member>,
    /// A subnet for each instance to launch.
    pub launch: Vec<String>,
    pub terminate: Vec<String>,
    /// (target group, instance).
    pub register: Vec<(String, String)>,
    pub deregister: Vec<(String, String)>,
}

/// Why an instance leaves the group, if it does.
fn judge(group: &AutoScalingGroup, seen: &Seen, now: u64) -> Verdict {
    if matches!(seen.state, State::ShuttingDown | State::Terminated) {
        return Verdict::Gone;
    }
    // New instances get the grace period to come up, whatever their
    // state: an instance whose VMM fails at once is replaced after it,
    // which also paces a group that cannot launch.
    let in_grace = now < seen.joined + u64::from(group.health_check_grace_secs);
    if in_grace {
        return Verdict::Healthy;
    }
    let down = matches!(seen.state, State::Stopping | State::Stopped);
    let failing = group.health_check_type == HealthCheckType::Elb
        && seen
            .registered
            .iter()
            .any(|(_, state)| *state == HealthState::Unhealthy);
    if down || failing {
        Verdict::Unhealthy
    } else {
        Verdict::Healthy
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Healthy,
    Unhealthy,
    /// Shutting down or terminated: no longer a member.
    Gone,
}

/// Given a group, the state of its instances and their target health at
/// `now`, what to launch, terminate, register and deregister. Unhealthy
/// instances are terminated and replaced; the healthy ones are brought to
/// the desired capacity by launching into the subnets with the fewest
/// (in the group's order on a tie), or by scale-in, which picks among
/// unprotected instances the oldest of the subnet with the most (AWS's
/// default: balance the zones, then the oldest). `may_launch` is false
/// while launches back off.
pub fn decide(group: &AutoScalingGroup, seen: &[Seen], now: u64, may_launch: bool) -> Decision {
    let mut decision = Decision::default();
    let mut healthy: Vec<&Seen> = Vec::new();
    for s in seen {
        let verdict = judge(group, s, now);
        if verdict != Verdict::Healthy {
            for (target_group, _) in &s.registered {
                decision
                    .deregister
                    .push((target_group.clone(), s.instance_id.clone()));
            }
        }
        match verdict {
            Verdict::Gone => continue,
            Verdict::Unhealthy => decision.terminate.push(s.instance_id.clone()),
            Verdict::Healthy => healthy.push(s),
        }
        decision.members.push(Member {
            instance_id: s.instance_id.clone(),
            subnet_id: s.subnet_id.clone(),
            availability_zone: s.availability_zone.clone(),
            joined: s.joined,
            protected: s.protected,
        });
    }
    let desired = usize::try_from(group.desired_capacity).unwrap_or(usize::MAX);
    let count =
        |pool: &[&Seen], subnet: &str| pool.iter().filter(|s| s.subnet_id == subnet).count();
    if healthy.len() > desired {
        for _ in desired..healthy.len() {
            let Some(victim) = scale_in_pick(&healthy) else {
                break;
            };
            healthy.retain(|s| s.instance_id != victim.instance_id);
            decision.terminate.push(victim.instance_id.clone());
            for (target_group, _) in &victim.registered {
                decision
                    .deregister
                    .push((target_group.clone(), victim.instance_id.clone()));
            }
        }
    } else if may_launch {
        let mut per_subnet: Vec<(usize, &String)> = group
            .subnets
            .iter()
            .map(|subnet| (count(&healthy, subnet), subnet))
            .collect();
        for _ in healthy.len()..desired {
            // The first of the least filled: min_by_key keeps the first.
            let Some(least) = per_subnet.iter_mut().min_by_key(|(n, _)| *n) else {
                break;
            };
            least.0 += 1;
            decision.launch.push(least.1.clone());
        }
    }
    for s in &healthy {
        for target_group in &group.target_groups {
            if !s.registered.iter().any(|(g, _)| g == target_group) {
                decision
                    .register
                    .push((target_group.clone(), s.instance_id.clone()));
            }
        }
    }
    decision
}

/// The desired capacity the group's target-tracking policies ask for,
/// given the fresh CPU averages (per cent) of its instances in service,
/// `in_service` of them; none when it stays or there is nothing to go
/// on. The instances needed are the summed utilization over the target,
/// rounded up (the average brought to the target); the policy asking
/// for the most wins, and scale-in happens only when every instance in
/// service has a figure and no policy disables it. Within min and max.
pub fn tracked_capacity(group: &AutoScalingGroup, cpu: &[u16], in_service: usize) -> Option<u32> {
    if cpu.is_empty() {
        return None;
    }
    let sum: u32 = cpu.iter().map(|p| u32::from(*p)).sum();
    let wanted = group
        .policies
        .iter()
        .map(|p| sum.div_ceil(u32::from(p.target_cpu.max(1))))
        .max()?
        .clamp(group.min_size, group.max_size.max(group.min_size));
    let may_scale_in =
        cpu.len() == in_service && group.policies.iter().all(|p| !p.disable_scale_in);
    let change =
        wanted > group.desired_capacity || (wanted < group.desired_capacity && may_scale_in);
    change.then_some(wanted)
}

/// The instance scale-in takes from `pool`: of the subnets with an
/// unprotected instance, the one with the most instances; of its
/// unprotected instances, the oldest (then the lowest ID).
fn scale_in_pick<'a>(pool: &[&'a Seen]) -> Option<&'a Seen> {
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for s in pool {
        *sizes.entry(s.subnet_id.as_str()).or_default() += 1;
    }
    let subnet = pool
        .iter()
        .filter(|s| !s.protected)
        .map(|s| s.subnet_id.as_str())
        .max_by_key(|subnet| sizes.get(subnet).copied().unwrap_or(0))?;
    pool.iter()
        .filter(|s| !s.protected && s.subnet_id == subnet)
        .min_by(|a, b| (a.joined, &a.instance_id).cmp(&(b.joined, &b.instance_id)))
        .copied()
}

/// Runs the controller for as long as the daemon runs, on a thread of
/// its own; changes go to the executor through `jobs`.
pub fn start(ctx: Context, jobs: Executor) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("autoscaling".into())
        .spawn(move || serve(&ctx, &jobs))
        .map(drop)
}

/// A group's launches waiting after a failure.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Instant,
    delay: Duration,
}

fn serve(ctx: &Context, jobs: &Executor) {
    let mut store = match ctx.open_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gureum daemon: no Auto Scaling: {e}");
            return;
        }
    };
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
    let mut tracked: HashMap<String, u64> = HashMap::new();
    let mut told = super::Told::default();
    loop {
        let result = pass(&mut store, jobs, &mut backoff, &mut tracked);
        told.outcome("autoscaling: cannot run a pass over", "the groups", result);
        std::thread::sleep(TICK);
    }
}

/// One pass over every group.
fn pass(
    store: &mut Store,
    jobs: &Executor,
    backoff: &mut HashMap<String, Backoff>,
    tracked: &mut HashMap<String, u64>,
) -> Result<(), String> {
    let read = |store: &mut Store| {
        store
            .read(|tx| {
                Ok::<_, crate::cloud::Error>((
                    tx.list::<AutoScalingGroup>()?,
                    tx.list::<TargetGroup>()?,
                ))
            })
            .map_err(|e| e.to_string())
    };
    if read(store)?.0.is_empty() {
        backoff.clear();
        return Ok(());
    }
    // Through the core API: the instances' states reconciled first.
    let instances = match jobs.run(Action::ListInstances {
        filters: Vec::new(),
    }) {
        Ok(Response::Instances(instances)) => instances,
        Ok(_) => return Err("the core API answered with another kind of record".into()),
        Err(e) => return Err(e.to_string()),
    };
    // Read after the listing, which may have waited behind other actions:
    // a capacity set meanwhile is the one acted on.
    let (groups, target_groups) = read(store)?;
    backoff.retain(|id, _| groups.iter().any(|g| g.id == *id));
    let now = crate::cloud::time::now_secs();
    for group in &groups {
        let mut group = group.clone();
        track(&mut group, &instances, now, jobs, tracked);
        let group = &group;
        let seen = observe(group, &instances, &target_groups, now);
        let may_launch = backoff
            .get(&group.id)
            .is_none_or(|b| b.until <= Instant::now());
        let decision = decide(group, &seen, now, may_launch);
        apply(group, &decision, jobs, backoff);
    }
    Ok(())
}

/// Applies the group's target-tracking policies once per new minute of
/// CPU figures (`tracked` holds the last minute acted on): the desired
/// capacity they ask for is set through the executor, and in `group`.
fn track(
    group: &mut AutoScalingGroup,
    instances: &[Tagged<Instance>],
    now: u64,
    jobs: &Executor,
    tracked: &mut HashMap<String, u64>,
) {
    if group.policies.is_empty() {
        tracked.remove(&group.id);
        return;
    }
    let in_service: Vec<&Instance> = instances
        .iter()
        .map(|i| &i.item)
        .filter(|i| group.member(&i.id).is_some() && i.state == State::Running)
        .collect();
    let minutes: Vec<CpuMinute> = in_service
        .iter()
        .filter_map(|i| cpu_metric::fresh(&i.cpu_utilization, now))
        .collect();
    let Some(latest) = minutes.iter().map(|m| m.at).max() else {
        return;
    };
    if tracked.get(&group.id).is_some_and(|at| *at >= latest) {
        return;
    }
    tracked.insert(group.id.clone(), latest);
    let cpu: Vec<u16> = minutes.iter().map(|m| m.percent).collect();
    let Some(desired) = tracked_capacity(group, &cpu, in_service.len()) else {
        return;
    };
    eprintln!(
        "gureum daemon: autoscaling: group {}: CPU {cpu:?} % against its target: desired \
         capacity {} -> {desired}",
        group.name, group.desired_capacity
    );
    match jobs.run(Action::SetDesiredCapacity {
        group: group.id.clone(),
        desired,
    }) {
        Ok(_) => group.desired_capacity = desired,
        Err(e) => eprintln!(
            "gureum daemon: autoscaling: group {}: cannot set the desired capacity: {e}",
            group.name
        ),
    }
}

/// The group's instances: those its record lists, and those carrying its
/// tag that are not leaving (adopted, new ones with the group's default
/// protection).
fn observe(
    group: &AutoScalingGroup,
    instances: &[Tagged<Instance>],
    target_groups: &[TargetGroup],
    now: u64,
) -> Vec<Seen> {
    let tagged = |i: &Tagged<Instance>| {
        i.tags.get(GROUP_TAG).map(String::as_str) == Some(group.name.as_str())
            && !matches!(i.item.state, State::ShuttingDown | State::Terminated)
    };
    instances
        .iter()
        .filter_map(|i| {
            let member = group.member(&i.item.id);
            if member.is_none() && !tagged(i) {
                return None;
            }
            let subnet_id = i
                .item
                .placement
                .as_ref()
                .map(|p| p.subnet_id.clone())
                .unwrap_or_default();
            let registered = target_groups
                .iter()
                .filter(|g| group.target_groups.contains(&g.id))
                .filter_map(|g| {
                    g.targets
                        .iter()
                        .find(|t| t.instance_id == i.item.id && t.state != HealthState::Draining)
                        .map(|t| (g.id.clone(), t.state))
                })
                .collect();
            Some(Seen {
                instance_id: i.item.id.clone(),
                subnet_id,
                availability_zone: i.item.availability_zone.clone(),
                state: i.item.state,
                joined: member.map_or(now, |m| m.joined),
                protected: member.map_or(group.new_instances_protected, |m| m.protected),
                registered,
            })
        })
        .collect()
}

/// Does `decision` for `group` through the executor; what fails is
/// logged and tried again by the next pass.
fn apply(
    group: &AutoScalingGroup,
    decision: &Decision,
    jobs: &Executor,
    backoff: &mut HashMap<String, Backoff>,
) {
    let run = |what: &str, action: Action| match jobs.run(action) {
        Ok(response) => Some(response),
        Err(e) => {
            eprintln!(
                "gureum daemon: autoscaling: group {}: {what}: {e}",
                group.name
            );
            None
        }
    };
    let ids = |members: &[Member]| -> Vec<(String, String)> {
        members
            .iter()
            .map(|m| (m.instance_id.clone(), m.subnet_id.clone()))
            .collect()
    };
    if ids(&decision.members) != ids(&group.instances) {
        run(
            "cannot record its instances",
            Action::RecordAutoScalingMembers {
                group: group.id.clone(),
                members: decision.members.clone(),
            },
        );
    }
    for (target_group, targets) in by_group(&decision.deregister) {
        run(
            "cannot deregister targets",
            Action::DeregisterTargets {
                target_group,
                targets,
            },
        );
    }
    if !decision.terminate.is_empty() {
        eprintln!(
            "gureum daemon: autoscaling: group {}: terminating {}",
            group.name,
            decision.terminate.join(", ")
        );
        run(
            "cannot terminate instances",
            Action::TerminateInstances {
                instances: decision.terminate.clone(),
                timeout_secs: TERMINATE_TIMEOUT_SECS,
            },
        );
    }
    for (target_group, targets) in by_group(&decision.register) {
        run(
            "cannot register targets",
            Action::RegisterTargets {
                target_group,
                targets,
            },
        );
    }
    let mut failed = false;
    for subnet in &decision.launch {
        let request = LaunchRequest {
            template: Some(group.launch_template_id.clone()),
            network: LaunchNetwork::Vpc(PlacementRequest {
                subnet: Some(subnet.clone()),
                ..PlacementRequest::default()
            }),
            count: LaunchCount { min: 1, max: 1 },
            auto_scaling_group: Some(group.name.clone()),
            ..LaunchRequest::default()
        };
        let launched = run(
            "cannot launch an instance",
            Action::RunInstances {
                request: Box::new(request),
            },
        );
        match launched {
            Some(Response::Launched {
                instances,
                failed: f,
                ..
            }) => {
                let ids: Vec<&str> = instances.iter().map(|i| i.item.id.as_str()).collect();
                eprintln!(
                    "gureum daemon: autoscaling: group {}: launched {} in {subnet}",
                    group.name,
                    ids.join(", ")
                );
                for why in &f {
                    eprintln!("gureum daemon: autoscaling: group {}: {why}", group.name);
                }
                failed |= !f.is_empty();
            }
            _ => failed = true,
        }
    }
    if failed {
        let delay = backoff
            .get(&group.id)
            .map_or(FIRST_BACKOFF, |b| (b.delay * 2).min(MAX_BACKOFF));
        backoff.insert(
            group.id.clone(),
            Backoff {
                until: Instant::now() + delay,
                delay,
            },
        );
    } else if !decision.launch.is_empty() {
        backoff.remove(&group.id);
    }
}

/// (target group, instance) pairs gathered by target group.
fn by_group(pairs: &[(String, String)]) -> BTreeMap<String, Vec<TargetRef>> {
    let mut all: BTreeMap<String, Vec<TargetRef>> = BTreeMap::new();
    for (target_group, instance) in pairs {
        all.entry(target_group.clone())
            .or_default()
            .push(TargetRef {
                instance: instance.clone(),
                port: None,
            });
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(desired: u32) -> AutoScalingGroup {
        AutoScalingGroup {
            id: "asg-1".into(),
            name: "web".into(),
            arn: String::new(),
            launch_template_id: "lt-1".into(),
            launch_template_name: "t".into(),
            launch_template_version: "$Default".into(),
            vpc_id: "vpc-1".into(),
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            min_size: 0,
            max_size: 8,
            desired_capacity: desired,
            target_groups: vec!["tg-1".into()],
            health_check_type: HealthCheckType::Ec2,
            health_check_grace_secs: 60,
            new_instances_protected: false,
            instances: Vec::new(),
            created: String::new(),
            policies: Vec::new(),
        }
    }

    fn seen(id: &str, subnet: &str, state: State, joined: u64) -> Seen {
        Seen {
            instance_id: id.into(),
            subnet_id: subnet.into(),
            availability_zone: "local-1a".into(),
            state,
            joined,
            protected: false,
            registered: vec![("tg-1".into(), HealthState::Healthy)],
        }
    }

    const NOW: u64 = 10_000;

    #[test]
    fn an_empty_group_launches_spread_over_its_subnets() {
        let d = decide(&group(3), &[], NOW, true);
        assert_eq!(d.launch, ["subnet-a", "subnet-b", "subnet-a"]);
        assert!(d.terminate.is_empty() && d.members.is_empty());
        // One already in subnet a: the next go to b first.
        let one = [seen("i-1", "subnet-a", State::Running, 0)];
        assert_eq!(
            decide(&group(3), &one, NOW, true).launch,
            ["subnet-b", "subnet-a"]
        );
        assert!(decide(&group(3), &one, NOW, false).launch.is_empty());
    }

    #[test]
    fn dead_instances_are_replaced_after_their_grace_period() {
        let now = [
            seen("i-1", "subnet-a", State::Running, 0),
            seen("i-2", "subnet-b", State::Stopped, 0),
        ];
        let d = decide(&group(2), &now, NOW, true);
        assert_eq!(d.terminate, ["i-2"]);
        assert_eq!(d.deregister, [("tg-1".to_owned(), "i-2".to_owned())]);
        assert_eq!(d.launch, ["subnet-b"], "the replacement goes where it was");
        // Still a member until it is gone.
        assert_eq!(d.members.len(), 2);
        // Within its grace period it is left to come up.
        let young = [
            seen("i-1", "subnet-a", State::Running, 0),
            seen("i-2", "subnet-b", State::Stopped, NOW - 30),
        ];
        let d = decide(&group(2), &young, NOW, true);
        assert!(d.terminate.is_empty() && d.launch.is_empty() && d.deregister.is_empty());
        // Gone: no longer a member, deregistered, replaced.
        let gone = [
            seen("i-1", "subnet-a", State::Running, 0),
            seen("i-2", "subnet-b", State::Terminated, 0),
        ];
        let d = decide(&group(2), &gone, NOW, true);
        assert!(d.terminate.is_empty());
        assert_eq!(d.members.len(), 1);
        assert_eq!(d.launch, ["subnet-b"]);
        assert_eq!(d.deregister, [("tg-1".to_owned(), "i-2".to_owned())]);
    }

    #[test]
    fn failing_target_health_counts_only_for_elb_checks() {
        let mut sick = seen("i-1", "subnet-a", State::Running, 0);
        sick.registered = vec![("tg-1".into(), HealthState::Unhealthy)];
        let now = [sick];
        assert!(decide(&group(1), &now, NOW, true).terminate.is_empty());
        let mut elb = group(1);
        elb.health_check_type = HealthCheckType::Elb;
        let d = decide(&elb, &now, NOW, true);
        assert_eq!(d.terminate, ["i-1"]);
        assert_eq!(d.launch, ["subnet-a"]);
    }

    #[test]
    fn members_join_the_target_groups_they_are_missing_from() {
        let mut new = seen("i-1", "subnet-a", State::Pending, NOW);
        new.registered.clear();
        let d = decide(&group(1), &[new], NOW, true);
        assert_eq!(d.register, [("tg-1".to_owned(), "i-1".to_owned())]);
        assert!(d.launch.is_empty());
    }

    #[test]
    fn target_tracking_brings_the_average_to_the_target_within_the_sizes() {
        use crate::cloud::autoscaling::group::ScalingPolicy;
        let mut g = group(2);
        g.min_size = 1;
        g.max_size = 4;
        assert_eq!(tracked_capacity(&g, &[90, 90], 2), None, "no policy");
        g.policies.push(ScalingPolicy {
            name: "cpu".into(),
            arn: String::new(),
            target_cpu: 50,
            disable_scale_in: false,
        });
        // 180 % of work at 50 % each: 4 instances.
        assert_eq!(tracked_capacity(&g, &[90, 90], 2), Some(4));
        assert_eq!(tracked_capacity(&g, &[100, 100], 2), Some(4), "max");
        assert_eq!(tracked_capacity(&g, &[40, 50], 2), None, "on target");
        assert_eq!(tracked_capacity(&g, &[0, 0], 2), Some(1), "min");
        // Scale-in waits for every instance's figure.
        assert_eq!(tracked_capacity(&g, &[0], 2), None);
        assert_eq!(tracked_capacity(&g, &[], 2), None);
        g.policies[0].disable_scale_in = true;
        assert_eq!(tracked_capacity(&g, &[0, 0], 2), None);
        assert_eq!(tracked_capacity(&g, &[90, 90], 2), Some(4));
    }

    #[test]
    fn scale_in_balances_subnets_then_takes_the_oldest_unprotected() {
        let mut now = vec![
            seen("i-1", "subnet-a", State::Running, 100),
            seen("i-2", "subnet-a", State::Running, 200),
            seen("i-3", "subnet-b", State::Running, 50),
            seen("i-4", "subnet-a", State::Running, 300),
        ];
        // a has 3, b has 1: the oldest of a goes, then a and b are even.
        let d = decide(&group(3), &now, NOW, true);
        assert_eq!(d.terminate, ["i-1"]);
        assert_eq!(d.deregister, [("tg-1".to_owned(), "i-1".to_owned())]);
        assert!(d.launch.is_empty());
        // Protected ones stay, even when it leaves the group above desired.
        for s in &mut now {
            s.protected = s.instance_id != "i-4";
        }
        let d = decide(&group(1), &now, NOW, true);
        assert_eq!(d.terminate, ["i-4"]);
        assert!(d.launch.is_empty());
    }
}
