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
        let child = Command::new("sleep").arg("600").spawn().unwrap();
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
    let replaced = wait_for(&host, "the dead instance replaced", || {
        let now = settled(&host, "front", "web", 2);
        if now.contains_key(&dead) {
            return Err(format!("{dead} is still a member: {now:?}"));
        }
        Ok(now)
    });
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
