//! Auto Scaling groups on the host: the daemon (tests/endpoint_support:
//! its own state directory and prefix) runs the group controller, which
//! launches real instances from a launch template into real subnets.
//! This machine's KVM cannot run a guest, so each instance's VMM fails
//! at start and the instance stops; the test makes the instances the
//! controller launched running by giving each a live process of its own
//! as supervisor and VMM (as tests/daemon.rs adopts one), so that killing
//! that process by its PID is an instance death the daemon sees, as
//! killing a VMM is. A stopped instance counts as healthy within the
//! group's grace period, which is how long the test has to do that.
//! Needs root, `ip` and `nft`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gureum::cloud::process::ProcessRef;
use serde_json::Value;

mod cli_support;
mod endpoint_support;

use cli_support::Gureum;
use endpoint_support::Host;

/// Seconds a new instance has before its state counts.
const GRACE: u64 = 25;

/// Waits (90 s at most) until `ok` gives a value, showing `what` and
/// the last failure otherwise.
fn wait_for<T>(host: &Host, what: &str, mut ok: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match ok() {
            Ok(value) => return value,
            Err(now) => assert!(
                start.elapsed() < Duration::from_secs(90),
                "never {what}: {now}\ndaemon: {}",
                host.daemon_log()
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The group's members: instance ID to subnet ID.
fn members(host: &Host, group: &str) -> BTreeMap<String, String> {
    let described = host.json(&["asg", "describe", group]);
    described["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["instance_id"].as_str().unwrap().to_owned(),
                m["subnet_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The instances registered (and not draining) in target group `group`.
fn registered(host: &Host, group: &str) -> Vec<String> {
    let targets = host.json(&["target-group", "health", group]);
    let mut ids: Vec<String> = targets
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] != "draining")
        .map(|t| t["instance_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Waits until the group has `n` members, all registered in target
/// group `tg`; they.
fn settled(host: &Host, group: &str, tg: &str, n: usize) -> BTreeMap<String, String> {
    wait_for(host, &format!("{n} members registered"), || {
        let now = members(host, group);
        let ids: Vec<String> = now.keys().cloned().collect();
        if now.len() == n && registered(host, tg) == ids {
            Ok(now)
        } else {
            Err(format!(
                "members {now:?}, registered {:?}",
                registered(host, tg)
            ))
        }
    })
}

/// Live processes standing in for instances' VMMs (and supervisors).
#[derive(Default)]
struct StandIns(BTreeMap<String, Child>);

impl StandIns {
    /// Makes stopped instance `id` running, with a process of its own.
    fn run(&mut self, host: &Host, id: &str) {
        self.run_as(host, id, Command::new("sleep").arg("600"));
    }

    /// `run` with `command` standing in for its VMM.
    fn run_as(&mut self, host: &Host, id: &str, command: &mut Command) {
        let child = command.spawn().unwrap();
        let live = serde_json::to_value(ProcessRef::of(child.id()).unwrap()).unwrap();
        cli_support::edit_record(host.state.path(), id, |v| {
            assert_eq!(v["state"], "stopped", "{v}");
            v["state"] = "running".into();
            v["state_reason"] = Value::Null;
            v["supervisor"] = live.clone();
            v["vmm"] = live;
        });
        self.0.insert(id.to_owned(), child);
    }

    /// Kills the stand-in of `id` by its PID: the instance's death.
    fn kill(&mut self, id: &str) {
        let mut child = self.0.remove(id).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn state(host: &Host, id: &str) -> String {
    host.json(&["instance", "describe", id])[0]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `asg create` of group front from template small over subnets a and
/// b into target group web, with `extra` flags.
fn create<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "asg",
        "create",
        "--name",
        "front",
        "--template",
        "small",
        "--subnet",
        "a",
        "--subnet",
        "b",
        "--target-group",
        "web",
    ];
    args.extend(extra);
    args
}

/// A VPC with subnets a and b, a template and a target group `web`.
fn setup(host: &Host) -> (String, String) {
    let src = cli_support::image_source(host.work.path(), "tiny", "");
    host.ok(&["image", "import", src.to_str().unwrap()]);
    host.ok(&["template", "create", "--name", "small", "--image", "tiny"]);
    host.ok(&["vpc", "create", "--cidr", "10.41.0.0/16", "--name", "main"]);
    for (name, cidr) in [("a", "10.41.1.0/24"), ("b", "10.41.2.0/24")] {
        host.ok(&[
            "subnet", "create", "--vpc", "main", "--cidr", cidr, "--name", name,
        ]);
    }
    host.ok(&[
        "target-group",
        "create",
        "--name",
        "web",
        "--vpc",
        "main",
        "--port",
        "80",
        "--deregistration-delay",
        "0",
    ]);
    let subnet = |name: &str| {
        host.json(&["subnet", "describe", name])["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    (subnet("a"), subnet("b"))
}

#[test]
fn a_group_keeps_its_size_over_two_subnets_replaces_the_dead_and_scales_in_unprotected() {
    let host = Host::start("local-1");
    let (a, b) = setup(&host);
    let mut stand_ins = StandIns::default();

    // Bad input is refused, saying what is wrong.
    let grace = GRACE.to_string();
    let err = host.fails_with(3, &create(&["--min", "3", "--max", "2"]));
    assert!(err.contains("min <= desired <= max"), "{err}");
    let err = host.fails_with(6, &create(&["--min", "1", "--max", "1000"]));
    assert!(err.contains("largest group"), "{err}");
    let mut no_template = create(&["--min", "1", "--max", "2"]);
    no_template[5] = "nope";
    let err = host.fails_with(4, &no_template);
    assert!(err.contains("no launch template 'nope'"), "{err}");
    let mut no_subnet = create(&["--min", "1", "--max", "2"]);
    no_subnet[7] = "nowhere";
    host.fails_with(4, &no_subnet);

    // A group of 2 over two subnets: one instance in each, registered in
    // the target group, tagged with the group's name.
    host.ok(&create(&[
        "--min",
        "1",
        "--max",
        "4",
        "--desired",
        "2",
        "--health-check-grace-period",
        &grace,
    ]));
    let two = settled(&host, "front", "web", 2);
    let mut subnets: Vec<&String> = two.values().collect();
    subnets.sort();
    let mut both = vec![&a, &b];
    both.sort();
    assert_eq!(subnets, both, "one per subnet");
    for id in two.keys() {
        let tags = &host.json(&["instance", "describe", id])[0]["tags"];
        assert_eq!(tags["aws:autoscaling:groupName"], "front", "{tags}");
        stand_ins.run(&host, id);
    }
    let started = Instant::now();

    // Past the grace period, killing one instance's VMM (by its PID)
    // brings a replacement in its subnet, registered in its stead.
    std::thread::sleep(Duration::from_secs(GRACE + 1).saturating_sub(started.elapsed()));
    let (dead, dead_subnet) = two
        .iter()
        .next()
        .map(|(i, s)| (i.clone(), s.clone()))
        .unwrap();
    stand_ins.kill(&dead);
    let killed = Instant::now();
    let replaced = wait_for(&host, "the dead instance replaced", || {
        let now = settled(&host, "front", "web", 2);
        if now.contains_key(&dead) {
            return Err(format!("{dead} is still a member: {now:?}"));
        }
        Ok(now)
    });
    // A figure for the record: from the death to the replacement
    // registered (the controller's 2 s pass, one launch).
    println!(
        "replacement registered {:.1} s after the VMM was killed",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(state(&host, &dead), "terminated");
    let new: Vec<&String> = replaced.keys().filter(|i| !two.contains_key(*i)).collect();
    assert_eq!(new.len(), 1, "{replaced:?}");
    assert_eq!(replaced[new[0]], dead_subnet, "the subnet it left");
    stand_ins.run(&host, new[0]);

    // Growing to 3 launches one more; the oldest two are protected.
    host.ok(&["asg", "set-desired-capacity", "front", "--desired", "3"]);
    let three = settled(&host, "front", "web", 3);
    let third = three
        .keys()
        .find(|i| !replaced.contains_key(*i))
        .unwrap()
        .clone();
    stand_ins.run(&host, &third);
    let mut protect = vec!["asg", "set-protection", "front"];
    for id in replaced.keys() {
        protect.extend(["--instance", id]);
    }
    host.ok(&protect);
    let err = host.fails_with(4, &["asg", "set-protection", "front", "--instance", &dead]);
    assert!(err.contains("is not in Auto Scaling group"), "{err}");

    // Shrinking to 1 takes the unprotected one only: the protected two
    // stay, above the desired capacity, as AWS's do.
    host.ok(&["asg", "set-desired-capacity", "front", "--desired", "1"]);
    wait_for(
        &host,
        "the unprotected instance scaled in",
        || match state(&host, &third).as_str() {
            "shutting-down" | "terminated" => Ok(()),
            other => Err(other.to_owned()),
        },
    );
    stand_ins.kill(&third);
    let kept = settled(&host, "front", "web", 2);
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        replaced.keys().collect::<Vec<_>>()
    );
    let err = host.fails_with(5, &["asg", "delete", "front"]);
    assert!(err.contains("--force-delete"), "{err}");
    assert_eq!(
        registered(&host, "web").len(),
        2,
        "refused: nothing changed"
    );
    // The target group is the group's: not deleted under it.
    let err = host.fails_with(5, &["target-group", "delete", "web"]);
    assert!(err.contains("Auto Scaling groups"), "{err}");

    // Deleted with its instances: they shut down and leave the target group.
    host.ok(&["asg", "delete", "front", "--force-delete", "--timeout", "1"]);
    for id in kept.keys() {
        stand_ins.kill(id);
    }
    wait_for(&host, "the group's instances terminated", || {
        let states: Vec<String> = kept.keys().map(|i| state(&host, i)).collect();
        if states.iter().all(|s| s == "terminated") {
            Ok(())
        } else {
            Err(format!("{states:?}"))
        }
    });
    assert!(registered(&host, "web").is_empty());
    assert_eq!(host.json(&["asg", "list"]), Value::Array(Vec::new()));
}

/// `aws autoscaling ARGS` against the host's endpoint.
fn aws_autoscaling(host: &Host, args: &[&str]) -> std::process::Output {
    host.tool("aws")
        .args([
            "--endpoint-url",
            &host.endpoint(),
            "--output",
            "json",
            "autoscaling",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// An `aws autoscaling` command that must succeed; its JSON (Null when
/// it prints none).
fn autoscaling(host: &Host, args: &[&str]) -> Value {
    let out = aws_autoscaling(host, args);
    assert!(
        out.status.success(),
        "aws autoscaling {args:?} failed: {}\ndaemon: {}",
        String::from_utf8_lossy(&out.stderr),
        host.daemon_log()
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An `aws autoscaling` command that must fail; the error code it names.
fn autoscaling_error(host: &Host, args: &[&str]) -> String {
    let out = aws_autoscaling(host, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "aws autoscaling {args:?} should fail"
    );
    stderr
        .split_once("An error occurred (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(code, _)| code.to_owned())
        .unwrap_or_else(|| panic!("aws autoscaling {args:?}: no error code in: {stderr}"))
}

/// Group `name` as `aws autoscaling describe-auto-scaling-groups` shows it.
fn described(host: &Host, name: &str) -> Value {
    let all = autoscaling(
        host,
        &[
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            name,
        ],
    );
    all["AutoScalingGroups"][0].clone()
}

#[test]
fn the_aws_cli_drives_the_same_groups() {
    let host = Host::start("local-1");
    let (a, b) = setup(&host);
    let arn = host.json(&["target-group", "describe", "web"])["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let zones = format!("{a},{b}");
    let create = [
        "create-auto-scaling-group",
        "--auto-scaling-group-name",
        "api",
        "--launch-template",
        "LaunchTemplateName=small",
        "--min-size",
        "1",
        "--max-size",
        "3",
        "--desired-capacity",
        "2",
        "--vpc-zone-identifier",
        &zones,
        "--target-group-arns",
        &arn,
        "--health-check-type",
        "ELB",
        "--health-check-grace-period",
        "600",
        "--tags",
        "Key=team,Value=web",
    ];
    assert_eq!(autoscaling(&host, &create), Value::Null);
    assert_eq!(autoscaling_error(&host, &create), "AlreadyExists");
    let mut bad = create;
    bad[2] = "bad";
    bad[6] = "9";
    assert_eq!(autoscaling_error(&host, &bad), "ValidationError");

    // The same group through the CLI.
    let group = host.json(&["asg", "describe", "api"]);
    assert_eq!(group["desired_capacity"], 2, "{group}");
    assert_eq!(group["health_check_type"], "ELB", "{group}");
    assert_eq!(group["tags"]["team"], "web", "{group}");
    let tg = host.json(&["target-group", "describe", "web"])["id"].clone();
    assert_eq!(group["target_groups"], Value::Array(vec![tg]), "{group}");

    // The controller launches its two; botocore reads them back.
    let shown = wait_for(&host, "two instances", || {
        let g = described(&host, "api");
        match g["Instances"].as_array() {
            Some(i) if i.len() == 2 => Ok(g),
            _ => Err(g.to_string()),
        }
    });
    assert_eq!(shown["LaunchTemplate"]["LaunchTemplateName"], "small");
    assert_eq!(shown["VPCZoneIdentifier"], zones.as_str());
    assert_eq!(shown["TargetGroupARNs"][0], arn.as_str());
    assert_eq!(shown["HealthCheckGracePeriod"], 600);
    assert_eq!(shown["Tags"][0]["Key"], "team");
    let ids: Vec<String> = shown["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_owned())
        .collect();
    let listed = autoscaling(&host, &["describe-auto-scaling-instances"]);
    let listed = listed["AutoScalingInstances"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|i| i["AutoScalingGroupName"] == "api"));

    // Protection, capacity and sizes, seen by the CLI.
    autoscaling(
        &host,
        &[
            "set-instance-protection",
            "--auto-scaling-group-name",
            "api",
            "--instance-ids",
            &ids[0],
            "--protected-from-scale-in",
        ],
    );
    let group = host.json(&["asg", "describe", "api"]);
    let protected: Vec<&Value> = group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["protected"] == true)
        .collect();
    assert_eq!(protected.len(), 1);
    assert_eq!(protected[0]["instance_id"], ids[0].as_str());
    autoscaling(
        &host,
        &[
            "set-desired-capacity",
            "--auto-scaling-group-name",
            "api",
            "--desired-capacity",
            "3",
        ],
    );
    wait_for(&host, "three instances", || {
        let n = members(&host, "api").len();
        if n == 3 { Ok(()) } else { Err(n.to_string()) }
    });
    let bad_sizes = [
        "update-auto-scaling-group",
        "--auto-scaling-group-name",
        "api",
        "--min-size",
        "5",
    ];
    assert_eq!(autoscaling_error(&host, &bad_sizes), "ValidationError");
    // A lower max drags the desired capacity down with it: scale-in keeps
    // the protected one.
    autoscaling(
        &host,
        &[
            "update-auto-scaling-group",
            "--auto-scaling-group-name",
            "api",
            "--max-size",
            "2",
        ],
    );
    assert_eq!(
        host.json(&["asg", "describe", "api"])["desired_capacity"],
        2
    );
    let two = wait_for(&host, "scale-in to two", || {
        let now = members(&host, "api");
        if now.len() == 2 {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    });
    assert!(two.contains_key(&ids[0]), "{two:?}");

    // Terminating one with a decrement shrinks the group to 1.
    let other = two.keys().find(|i| **i != ids[0]).unwrap().clone();
    let activity = autoscaling(
        &host,
        &[
            "terminate-instance-in-auto-scaling-group",
            "--instance-id",
            &other,
            "--should-decrement-desired-capacity",
        ],
    );
    assert_eq!(
        activity["Activity"]["AutoScalingGroupName"], "api",
        "{activity}"
    );
    assert_eq!(activity["Activity"]["StatusCode"], "InProgress");
    assert_eq!(
        host.json(&["asg", "describe", "api"])["desired_capacity"],
        1
    );
    assert_eq!(state(&host, &other), "terminated");
    // At the minimum, a decrement is refused.
    assert_eq!(
        autoscaling_error(
            &host,
            &[
                "terminate-instance-in-auto-scaling-group",
                "--instance-id",
                &ids[0],
                "--should-decrement-desired-capacity",
            ],
        ),
        "ValidationError"
    );

    // Detaching the target group deregisters the group's instances.
    let detach = [
        "detach-load-balancer-target-groups",
        "--auto-scaling-group-name",
        "api",
        "--target-group-arns",
        &arn,
    ];
    autoscaling(&host, &detach);
    assert_eq!(
        described(&host, "api")["TargetGroupARNs"],
        Value::Array(Vec::new())
    );
    assert!(registered(&host, "web").is_empty());
    let mut attach = detach;
    attach[0] = "attach-load-balancer-target-groups";
    autoscaling(&host, &attach);
    wait_for(&host, "registered again", || {
        let now = registered(&host, "web");
        if now == [ids[0].clone()] {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });

    // A user with AmazonEC2ReadOnlyAccess (autoscaling:Describe*) may
    // look, not change.
    host.ok(&["iam", "create-user", "reader"]);
    host.ok(&[
        "iam",
        "attach-user-policy",
        "--user",
        "reader",
        "--policy-arn",
        "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess",
    ]);
    let key = host.json(&["iam", "create-access-key", "--user", "reader"]);
    let as_reader = |args: &[&str]| {
        host.tool("aws")
            .env(
                "AWS_ACCESS_KEY_ID",
                key["AccessKey"]["AccessKeyId"].as_str().unwrap(),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                key["AccessKey"]["SecretAccessKey"].as_str().unwrap(),
            )
            .args(["--endpoint-url", &host.endpoint(), "autoscaling"])
            .args(args)
            .output()
            .unwrap()
    };
    let looked = as_reader(&["describe-auto-scaling-groups"]);
    assert!(
        looked.status.success(),
        "{}",
        String::from_utf8_lossy(&looked.stderr)
    );
    let changed = as_reader(&[
        "set-desired-capacity",
        "--auto-scaling-group-name",
        "api",
        "--desired-capacity",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(stderr.contains("(AccessDenied)"), "{stderr}");
    assert_eq!(
        host.json(&["asg", "describe", "api"])["desired_capacity"],
        1
    );

    // Unknown names describe nothing; a group with instances is deleted
    // only by force, with them.
    let none = autoscaling(
        &host,
        &[
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            "nope",
        ],
    );
    assert_eq!(none["AutoScalingGroups"], Value::Array(Vec::new()));
    let delete = [
        "delete-auto-scaling-group",
        "--auto-scaling-group-name",
        "api",
    ];
    assert_eq!(autoscaling_error(&host, &delete), "ResourceInUse");
    let mut forced = delete.to_vec();
    forced.push("--force-delete");
    autoscaling(&host, &forced);
    assert_eq!(host.json(&["asg", "list"]), Value::Array(Vec::new()));
    assert_eq!(state(&host, &ids[0]), "terminated");
}

/// An instance carrying a group's tag that the group's record does not
/// list (a daemon killed between the launch and recording it) is adopted
/// by the next pass: a member, registered in the group's target groups.
#[test]
fn an_instance_launched_with_the_group_tag_but_not_recorded_is_adopted() {
    let host = Host::start("local-1");
    setup(&host);
    // New instances protected: the adopted one is not scaled in.
    host.ok(&create(&[
        "--min",
        "1",
        "--max",
        "2",
        "--health-check-grace-period",
        "600",
        "--new-instances-protected",
    ]));
    let first = settled(&host, "front", "web", 1);
    let orphan = host.run_stand_in(&["--image", "tiny", "--subnet", "b"]);
    // What the launch's transaction writes with the record: the tag.
    let db = rusqlite::Connection::open(host.state.path().join("gureum.db")).unwrap();
    db.execute(
        "INSERT INTO tags (resource_id, key, value) VALUES (?1, 'aws:autoscaling:groupName', 'front')",
        [&orphan],
    )
    .unwrap();
    let adopted = settled(&host, "front", "web", 2);
    assert!(adopted.contains_key(&orphan), "{adopted:?}");
    assert!(first.keys().all(|i| adopted.contains_key(i)));
    let group = host.json(&["asg", "describe", "front"]);
    assert!(
        group["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["protected"] == true),
        "{group}"
    );
    host.ok(&["asg", "delete", "front", "--force-delete", "--timeout", "1"]);
}

/// The daemon samples each running instance's VMM CPU time into
/// averages (every 5 s here, a minute by default), and a target-tracking policy on the group's
/// average scales it out and back in: a VMM stand-in that keeps a CPU
/// busy is ~100 % of its one vCPU, against a target of 20 %, then idles.
#[test]
fn a_busy_instance_shows_its_cpu_and_target_tracking_scales_the_group_out_and_back() {
    let host = Host::start("local-1");
    setup(&host);
    let mut stand_ins = StandIns::default();
    host.ok(&create(&[
        "--min",
        "1",
        "--max",
        "3",
        "--health-check-grace-period",
        "600",
    ]));
    let one = settled(&host, "front", "web", 1);
    let busy = one.keys().next().unwrap().clone();
    stand_ins.run_as(
        &host,
        &busy,
        // Busy for its first 15 s, then idle (the same process).
        Command::new("bash").args([
            "-c",
            "while [ $SECONDS -lt 15 ]; do :; done; exec sleep 600",
        ]),
    );
    let policy = [
        "put-scaling-policy",
        "--auto-scaling-group-name",
        "front",
        "--policy-name",
        "cpu20",
        "--policy-type",
        "TargetTrackingScaling",
        "--target-tracking-configuration",
        "PredefinedMetricSpecification={PredefinedMetricType=ASGAverageCPUUtilization},TargetValue=20",
    ];
    let put = autoscaling(&host, &policy);
    assert!(
        put["PolicyARN"]
            .as_str()
            .unwrap()
            .contains("policyName/cpu20"),
        "{put}"
    );
    let listed = autoscaling(
        &host,
        &["describe-policies", "--auto-scaling-group-name", "front"],
    );
    let p = &listed["ScalingPolicies"][0];
    assert_eq!(
        p["TargetTrackingConfiguration"]["TargetValue"], 20.0,
        "{listed}"
    );
    assert_eq!(
        host.json(&["asg", "describe", "front"])["policies"][0]["target_cpu"],
        20
    );

    // A period after it started running, its first average.
    let percent = wait_for(&host, "a minute of CPU utilization", || {
        let i = host.json(&["instance", "describe", &busy]);
        match i[0]["cpu_utilization"].as_array().and_then(|r| r.last()) {
            Some(m) => Ok(m["percent"].as_u64().unwrap()),
            None => Err(i[0]["cpu_utilization"].to_string()),
        }
    });
    assert!(percent > 20, "a busy CPU shows {percent} %");
    // Its average over the target: more instances, up to the maximum.
    let grown = wait_for(&host, "the group scaled out", || {
        let g = host.json(&["asg", "describe", "front"]);
        match g["desired_capacity"].as_u64().unwrap() {
            n if n > 1 => Ok(n),
            n => Err(format!("desired {n}: {}", host.daemon_log())),
        }
    });
    assert!(grown <= 3);
    settled(&host, "front", "web", usize::try_from(grown).unwrap());
    // Its load over, the next period's average takes the group back to
    // its minimum.
    wait_for(&host, "the group scaled back in", || {
        let g = host.json(&["asg", "describe", "front"]);
        match g["desired_capacity"].as_u64().unwrap() {
            1 => Ok(()),
            n => Err(format!("desired {n}")),
        }
    });
    settled(&host, "front", "web", 1);

    autoscaling(
        &host,
        &[
            "delete-policy",
            "--auto-scaling-group-name",
            "front",
            "--policy-name",
            "cpu20",
        ],
    );
    let listed = autoscaling(&host, &["describe-policies"]);
    assert_eq!(listed["ScalingPolicies"], Value::Array(Vec::new()));
    host.ok(&["asg", "delete", "front", "--force-delete", "--timeout", "1"]);
}
