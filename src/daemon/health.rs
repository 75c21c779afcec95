//! Health checks of load balancers' targets: a thread of the daemon that
//! checks every target of every target group a listener uses, at the
//! group's interval, from inside the load balancer's namespace (so from
//! its own address, through the VPC's router: the targets' security
//! groups judge the checks as EC2's do). A TCP check connects; an HTTP
//! check also sends a GET of its path and wants a status of 200-399.
//!
//! Consecutive results count towards the group's thresholds; a target
//! that crosses one changes state, which is reported to the executor as
//! an action (`ReportTargetHealth`): the record changes and the VPC's
//! datapath follows, sending new flows to healthy targets only. Targets
//! whose deregistration delay ended are dropped the same way. Counts live
//! here: a daemon started again starts counting afresh from the states
//! in the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Executor;
use crate::cloud::Error;
use crate::cloud::api::Action;
use crate::cloud::elb::HealthReport;
use crate::cloud::elb::load_balancer::LoadBalancer;
use crate::cloud::elb::target_group::{CheckProtocol, HealthCheck, HealthState, TargetGroup};
use crate::cloud::lifecycle::Context;
use crate::cloud::store::Store;
use crate::cloud::vpc::port;
use crate::host::netns::Netns;

/// How often results are collected and due checks started.
const TICK: Duration = Duration::from_millis(200);

/// One target of one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    group: String,
    instance: String,
    port: u16,
}

/// A target to check, as the store has it now.
#[derive(Debug, Clone)]
struct Wanted {
    key: Key,
    state: HealthState,
    /// The load balancer's namespace the check starts from.
    netns: String,
    address: SocketAddrV4,
    check: HealthCheck,
}

/// What is known of a target between checks.
#[derive(Debug)]
struct Tracked {
    wanted: Wanted,
    next: Instant,
    passes: u32,
    fails: u32,
    checking: bool,
}

/// Why a check failed: ELBv2's reason code and description.
type Failure = (&'static str, String);

/// Checks targets for as long as the daemon runs, on a thread of its own;
/// changes go to the executor through `jobs`.
pub fn start(ctx: Context, jobs: Executor) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || serve(&ctx, &jobs))
        .map(drop)
}

fn serve(ctx: &Context, jobs: &Executor) {
    let mut store = match ctx.open_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gureum daemon: no health checks: {e}");
            return;
        }
    };
    let mut tracked: HashMap<Key, Tracked> = HashMap::new();
    let (done, results) = mpsc::channel::<(Key, Result<(), Failure>)>();
    let mut told = None;
    loop {
        let mut reports: BTreeMap<String, Vec<HealthReport>> = BTreeMap::new();
        while let Ok((key, result)) = results.try_recv() {
            if let Some(target) = tracked.get_mut(&key) {
                target.checking = false;
                if let Some(report) = judge(target, result) {
                    reports.entry(key.group.clone()).or_default().push(report);
                }
            }
        }
        match wanted(&mut store) {
            Ok((targets, expired)) => {
                told = None;
                let now = Instant::now();
                let keys: HashSet<Key> = targets.iter().map(|w| w.key.clone()).collect();
                tracked.retain(|key, _| keys.contains(key));
                for wanted in targets {
                    let target = tracked.entry(wanted.key.clone()).or_insert(Tracked {
                        wanted: wanted.clone(),
                        next: now,
                        passes: 0,
                        fails: 0,
                        checking: false,
                    });
                    target.wanted = wanted;
                    if !target.checking && target.next <= now {
                        target.checking = true;
                        let interval = u64::from(target.wanted.check.interval_secs);
                        target.next = now + Duration::from_secs(interval);
                        let wanted = target.wanted.clone();
                        let done = done.clone();
                        let started = std::thread::Builder::new()
                            .name("health-check".into())
                            .spawn(move || {
                                let result = probe(&wanted);
                                let _ = done.send((wanted.key, result));
                            });
                        if let Err(e) = started {
                            target.checking = false;
                            eprintln!("gureum daemon: health: cannot start a check: {e}");
                        }
                    }
                }
                for group in expired {
                    reports.entry(group).or_default();
                }
            }
            Err(e) => {
                let e = e.to_string();
                if told.as_ref() != Some(&e) {
                    eprintln!("gureum daemon: health: cannot read the target groups: {e}");
                    told = Some(e);
                }
            }
        }
        for (group, reports) in reports {
            let action = Action::ReportTargetHealth {
                target_group: group.clone(),
                reports,
            };
            if let Err(e) = jobs.run(action) {
                eprintln!("gureum daemon: health: cannot record the health of {group}: {e}");
            }
        }
        std::thread::sleep(TICK);
    }
}

/// Counts `result` for `target`; the report of its new state when it
/// crossed a threshold.
fn judge(target: &mut Tracked, result: Result<(), Failure>) -> Option<HealthReport> {
    let check = &target.wanted.check;
    let state = target.wanted.state;
    let report = |state, reason: Option<&str>, description: Option<String>| HealthReport {
        instance: target.wanted.key.instance.clone(),
        port: target.wanted.key.port,
        state,
        reason: reason.map(str::to_owned),
        description,
    };
    match result {
        Ok(()) => {
            target.passes += 1;
            target.fails = 0;
            (state != HealthState::Healthy && target.passes >= check.healthy_threshold).then(|| {
                target.wanted.state = HealthState::Healthy;
                report(HealthState::Healthy, None, None)
            })
        }
        Err((reason, description)) => {
            target.fails += 1;
            target.passes = 0;
            (state != HealthState::Unhealthy && target.fails >= check.unhealthy_threshold).then(
                || {
                    target.wanted.state = HealthState::Unhealthy;
                    report(HealthState::Unhealthy, Some(reason), Some(description))
                },
            )
        }
    }
}

/// The targets to check (those of groups a listener or rule uses, not
/// draining), and the groups with targets whose drain has ended.
fn wanted(store: &mut Store) -> Result<(Vec<Wanted>, Vec<String>), Error> {
    let now = crate::cloud::time::now_secs();
    store.read(|tx| {
        let balancers = tx.list::<LoadBalancer>()?;
        let mut targets = Vec::new();
        let mut expired = Vec::new();
        for group in tx.list::<TargetGroup>()? {
            if group
                .targets
                .iter()
                .any(|t| t.drain_until.is_some_and(|u| u <= now))
            {
                expired.push(group.id.clone());
            }
            let Some(balancer) = balancers.iter().find(|b| b.uses(&group.id)) else {
                continue;
            };
            let addresses: HashMap<String, Ipv4Addr> = port::instances_in(tx, &group.vpc_id)?
                .into_iter()
                .map(|(id, placement)| (id, placement.private_ip))
                .collect();
            for target in &group.targets {
                if target.state == HealthState::Draining {
                    continue;
                }
                let Some(address) = addresses.get(&target.instance_id) else {
                    continue;
                };
                targets.push(Wanted {
                    key: Key {
                        group: group.id.clone(),
                        instance: target.instance_id.clone(),
                        port: target.port,
                    },
                    state: target.state,
                    netns: balancer.netns.clone(),
                    address: SocketAddrV4::new(*address, group.check_port(target)),
                    check: group.health_check.clone(),
                });
            }
        }
        Ok((targets, expired))
    })
}

/// One check of `wanted`, from its load balancer's namespace.
fn probe(wanted: &Wanted) -> Result<(), Failure> {
    let timeout = Duration::from_secs(u64::from(wanted.check.timeout_secs));
    let netns = Netns::open(&wanted.netns).map_err(|e| {
        (
            "Elb.InternalError",
            format!("the load balancer's namespace is not there: {e}"),
        )
    })?;
    let address = SocketAddr::V4(wanted.address);
    // A socket stays in the namespace it was made in.
    let stream = netns
        .run(|| TcpStream::connect_timeout(&address, timeout))
        .map_err(|e| ("Elb.InternalError", e.to_string()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                ("Target.Timeout", "Request timed out".to_owned())
            }
            _ => (
                "Target.FailedHealthChecks",
                "Health checks failed".to_owned(),
            ),
        })?;
    match (&wanted.check.protocol, &wanted.check.path) {
        (CheckProtocol::Http, Some(path)) => http(stream, &wanted.address, path, timeout),
        _ => Ok(()),
    }
}

/// An HTTP GET of `path` on `stream`: its status must be 200-399.
fn http(
    mut stream: TcpStream,
    address: &SocketAddrV4,
    path: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let timed_out = || ("Target.Timeout", "Request timed out".to_owned());
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|_| timed_out())?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n",
        address.ip()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|_| timed_out())?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match stream.read(head.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return Err(timed_out()),
        }
    }
    let line = String::from_utf8_lossy(head.get(..got).unwrap_or_default());
    let code = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match code {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err((
            "Target.ResponseCodeMismatch",
            format!("Health checks failed with these codes: [{code}]"),
        )),
        None => Err((
            "Target.FailedHealthChecks",
            "Health checks failed".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::elb::target_group::HealthCheckRequest;

    fn tracked(state: HealthState) -> Tracked {
        let check = HealthCheck::from_request(&HealthCheckRequest {
            healthy_threshold: Some(3),
            unhealthy_threshold: Some(2),
            ..HealthCheckRequest::default()
        })
        .unwrap();
        Tracked {
            wanted: Wanted {
                key: Key {
                    group: "tg-1".into(),
                    instance: "i-1".into(),
                    port: 80,
                },
                state,
                netns: String::new(),
                address: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80),
                check,
            },
            next: Instant::now(),
            passes: 0,
            fails: 0,
            checking: true,
        }
    }

    fn failed() -> Result<(), Failure> {
        Err(("Target.FailedHealthChecks", "Health checks failed".into()))
    }

    #[test]
    fn states_change_after_consecutive_results_cross_a_threshold() {
        let mut target = tracked(HealthState::Initial);
        assert_eq!(judge(&mut target, Ok(())), None);
        assert_eq!(judge(&mut target, Ok(())), None);
        let healthy = judge(&mut target, Ok(())).unwrap();
        assert_eq!(healthy.state, HealthState::Healthy);
        assert_eq!(
            judge(&mut target, Ok(())),
            None,
            "no report without a change"
        );
        assert_eq!(judge(&mut target, failed()), None);
        // A pass in between starts the count again.
        assert_eq!(judge(&mut target, Ok(())), None);
        assert_eq!(judge(&mut target, failed()), None);
        let unhealthy = judge(&mut target, failed()).unwrap();
        assert_eq!(unhealthy.state, HealthState::Unhealthy);
        assert_eq!(
            unhealthy.reason.as_deref(),
            Some("Target.FailedHealthChecks")
        );
        assert_eq!(judge(&mut target, failed()), None);
    }
}
