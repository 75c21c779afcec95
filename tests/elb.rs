//! Network load balancers on the host, with no VM: each "instance" is a
//! network namespace whose eth0 is the far end of a veth standing in
//! for the instance's tap (its name, MAC and address; the stand-in
//! image's VMM never runs, so the instance stays stopped with its port),
//! running `busybox httpd` that answers with the instance's address. The
//! daemon (tests/endpoint_support: its own state directory and prefix)
//! runs the health checks; the fake internet is gureum's public
//! namespace. Needs root, `ip`, `nft`, `curl` and `busybox`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gureum::host::netns::Netns;

mod cli_support;
mod endpoint_support;

use cli_support::{Gureum, ip};
use endpoint_support::Host;

/// A web server standing in for an instance: its namespace on the
/// instance's port, and `busybox httpd` there while it runs.
struct WebServer {
    id: String,
    netns: String,
    address: String,
    root: std::path::PathBuf,
    httpd: Option<Child>,
}

impl WebServer {
    /// Puts a namespace on the port of stopped instance `id` (a veth in
    /// place of its tap) and serves its address there.
    fn on(host: &Host, id: &str, name: &str) -> Self {
        let place = host.json(&["instance", "describe", id])[0]["placement"].clone();
        let field = |key: &str| place[key].as_str().unwrap().to_owned();
        let vpc_netns = format!("{}{}", host.prefix, field("vpc_id"));
        let netns = format!("{}{name}", host.prefix);
        let (tap, address) = (field("tap"), field("private_ip"));
        ip(&["netns", "add", &netns]);
        ip(&["-n", &vpc_netns, "link", "del", &tap]);
        ip(&[
            "-n", &vpc_netns, "link", "add", &tap, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ]);
        let router = format!("{}.1", address.rsplit_once('.').unwrap().0);
        for args in [
            vec!["link", "set", "eth0", "address", &field("mac")],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{address}/24"), "dev", "eth0"],
            vec!["route", "add", "default", "via", &router],
        ] {
            let mut all = vec!["-n", netns.as_str()];
            all.extend(args);
            ip(&all);
        }
        let root = host.work.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), &address).unwrap();
        let mut server = Self {
            id: id.to_owned(),
            netns,
            address,
            root,
            httpd: None,
        };
        server.start();
        server
    }

    fn start(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "busybox", "httpd", "-f"])
            .arg("-p")
            .arg(format!("{}:80", self.address))
            .arg("-h")
            .arg(&self.root)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.httpd = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut httpd) = self.httpd.take() {
            let _ = httpd.kill();
            let _ = httpd.wait();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `curl http://ADDRESS/` from namespace `netns`: the body, or None.
fn fetch(netns: &str, address: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "curl", "-sf", "-m", "3"])
        .arg(format!("http://{address}/"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// `n` requests from `netns` to `address`, each a new connection (a new
/// source port): who answered each, or "failed".
fn spread(netns: &str, address: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| fetch(netns, address).unwrap_or_else(|| "failed".into()))
        .collect()
}

/// Waits (60 s at most) until `ok` holds, showing `what` otherwise.
fn wait_until(what: &str, mut ok: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match ok() {
            Ok(()) => return,
            Err(now) => assert!(
                start.elapsed() < Duration::from_secs(60),
                "never {what}: {now}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each target of group `group` with its state.
fn health(host: &Host, group: &str) -> Vec<(String, String)> {
    let targets = host.json(&["target-group", "health", group]);
    targets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["instance_id"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until every target of `group` is in the state `want` gives it.
fn wait_for_states(host: &Host, group: &str, want: impl Fn(&str) -> &'static str) {
    wait_until("the targets' states", || {
        let now = health(host, group);
        let right = !now.is_empty() && now.iter().all(|(id, state)| state == want(id));
        if right {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
}

/// Security group `name` of VPC main, letting TCP 80 in from `cidr`.
fn web_group(host: &Host, name: &str, cidr: &str) {
    host.ok(&[
        "sg",
        "create",
        "--vpc",
        "main",
        "--name",
        name,
        "--description",
        name,
    ]);
    let rule = ["--protocol", "tcp", "--port", "80", "--cidr", cidr];
    let mut authorize = vec!["sg", "authorize-ingress", name];
    authorize.extend(rule);
    host.ok(&authorize);
}

/// `target-group create` of TCP 80 target group `name` in VPC main, with
/// `extra` flags.
fn create_group<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "target-group",
        "create",
        "--name",
        name,
        "--vpc",
        "main",
        "--port",
        "80",
    ];
    args.extend(extra);
    args
}

fn answered(replies: &[String]) -> BTreeSet<String> {
    replies.iter().cloned().collect()
}

#[test]
fn an_internet_facing_nlb_spreads_flows_over_healthy_targets_only() {
    let host = Host::start("local-1");
    let src = cli_support::image_source(host.work.path(), "tiny", "");
    host.ok(&["image", "import", src.to_str().unwrap()]);
    host.ok(&["vpc", "create", "--cidr", "10.40.0.0/16", "--name", "main"]);
    for (name, cidr) in [("a", "10.40.1.0/24"), ("b", "10.40.2.0/24")] {
        host.ok(&[
            "subnet", "create", "--vpc", "main", "--cidr", cidr, "--name", name,
        ]);
    }
    // b is private: its own table, with no route to the gateway.
    host.ok(&[
        "route-table",
        "create",
        "--vpc",
        "main",
        "--name",
        "private",
    ]);
    host.ok(&["route-table", "associate", "private", "--subnet", "b"]);
    let vpc = host.json(&["vpc", "describe", "main"]);
    let main_table = vpc["main_route_table"].as_str().unwrap().to_owned();
    host.ok(&["igw", "create", "--name", "door"]);
    host.ok(&["igw", "attach", "door", "--vpc", "main"]);
    host.ok(&[
        "route-table",
        "create-route",
        &main_table,
        "--destination",
        "0.0.0.0/0",
        "--gateway",
        "door",
    ]);
    web_group(&host, "web", "0.0.0.0/0");
    // web-4 is in the private subnet: its replies to the internet go back
    // through the gateway all the same, as EC2's NLB returns them.
    let placed = [
        ("web-1", "a"),
        ("web-2", "a"),
        ("web-3", "a"),
        ("web-4", "b"),
        ("client", "a"),
    ];
    let mut servers: Vec<WebServer> = placed
        .iter()
        .map(|(name, subnet)| {
            let id = host.run_stand_in(&[
                "--image", "tiny", "--subnet", subnet, "--sg", "web", "--name", name,
            ]);
            host.ok(&["instance", "wait", &id, "--state", "stopped"]);
            WebServer::on(&host, &id, name)
        })
        .collect();
    let client = servers.pop().unwrap();
    host.ok(&["net", "reconcile"]);

    // Bad input is refused, saying what is wrong.
    let bad = host.fails_with(3, &create_group("web_1", &[]));
    assert!(bad.contains("not a valid"), "{bad}");
    let slow = ["--health-interval", "2", "--health-timeout", "3"];
    let bad = host.fails_with(3, &create_group("web", &slow));
    assert!(bad.contains("must not exceed its interval"), "{bad}");

    host.ok(&create_group(
        "web",
        &[
            "--health-protocol",
            "http",
            "--health-path",
            "/index.html",
            // Short, for the test; 2 s of timeout so that a loaded
            // machine does not make healthy targets flap.
            "--health-interval",
            "2",
            "--health-timeout",
            "2",
            "--healthy-threshold",
            "2",
            "--unhealthy-threshold",
            "2",
            "--deregistration-delay",
            "4",
        ],
    ));
    let mut register = vec!["target-group", "register", "web"];
    for server in &servers {
        register.extend(["--target", server.id.as_str()]);
    }
    host.ok(&register);
    // Not used by a listener yet: unused.
    wait_for_states(&host, "web", |_| "unused");
    host.ok(&[
        "sg",
        "create",
        "--vpc",
        "main",
        "--name",
        "lb",
        "--description",
        "lb",
    ]);
    host.ok(&[
        "elb",
        "create",
        "--name",
        "front",
        "--subnet",
        "a",
        "--sg",
        "lb",
        "--scheme",
        "internet-facing",
    ]);
    let duplicate = host.fails_with(5, &["elb", "create", "--name", "front", "--subnet", "a"]);
    assert!(duplicate.contains("taken"), "{duplicate}");
    host.ok(&[
        "elb",
        "listener",
        "create",
        "front",
        "--port",
        "80",
        "--target-group",
        "web",
    ]);
    let front = host.json(&["elb", "describe", "front"]);
    let public = front["public_ip"].as_str().unwrap().to_owned();
    let private = front["ports"][0]["private_ip"].as_str().unwrap().to_owned();
    assert!(
        front["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:elasticloadbalancing:local-1:")
    );
    assert!(
        front["arn"]
            .as_str()
            .unwrap()
            .contains(":loadbalancer/net/front/"),
        "{front}"
    );
    // Its address is taken in the subnet: nor instance nor balancer get it.
    assert!(servers.iter().all(|s| s.address != private));

    // Health checks from the balancer's own address pass: all healthy.
    wait_for_states(&host, "web", |_| "healthy");
    let everyone: BTreeSet<String> = servers.iter().map(|s| s.address.clone()).collect();
    let internet = format!("{}public", host.prefix);
    let replies = spread(&internet, &public, 30);
    assert_eq!(answered(&replies), everyone, "{replies:?}");
    // From inside the VPC, through its private address, too.
    let replies = spread(&client.netns, &private, 30);
    assert_eq!(answered(&replies), everyone, "{replies:?}");

    // web-1's server stops: unhealthy after its threshold, and then no
    // request fails.
    servers[0].stop();
    let down = servers[0].id.clone();
    wait_for_states(&host, "web", |id| {
        if id == down { "unhealthy" } else { "healthy" }
    });
    let rest: BTreeSet<String> = servers[1..].iter().map(|s| s.address.clone()).collect();
    let replies = spread(&internet, &public, 30);
    assert_eq!(answered(&replies), rest, "{replies:?}");
    let why = host.json(&["target-group", "health", "web"]);
    let reason = why
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["instance_id"] == down.as_str())
        .unwrap()["reason"]
        .clone();
    assert_eq!(reason, "Target.FailedHealthChecks", "{why}");
    // Started again, it comes back.
    servers[0].start();
    wait_for_states(&host, "web", |_| "healthy");
    let replies = spread(&internet, &public, 30);
    assert_eq!(answered(&replies), everyone, "{replies:?}");

    // The balancer's namespace gone behind gureum's back (its ports'
    // far ends with it): the next pass makes both again, and it serves.
    let lb_netns = front["netns"].as_str().unwrap().to_owned();
    ip(&["netns", "del", &lb_netns]);
    host.ok(&["net", "reconcile"]);
    assert!(cli_support::namespaces(&lb_netns).contains(&lb_netns));
    wait_for_states(&host, "web", |_| "healthy");
    wait_until("the repaired balancer serving", || {
        let replies = spread(&internet, &public, 30);
        if answered(&replies) == everyone {
            Ok(())
        } else {
            Err(format!("{replies:?}"))
        }
    });

    // A security group that does not admit the balancer makes its target
    // unhealthy: the checks cross the VPC's router from its address.
    web_group(&host, "narrow", &format!("{}/32", client.address));
    let fenced = servers[2].id.clone();
    host.ok(&["instance", "modify", &fenced, "--sg", "narrow"]);
    wait_for_states(&host, "web", |id| {
        if id == fenced { "unhealthy" } else { "healthy" }
    });
    let direct = Instant::now();
    let mut tries = Vec::new();
    wait_until("the group admitting the client", || {
        let got = fetch(&client.netns, &servers[2].address);
        tries.push((direct.elapsed().as_millis(), got.clone()));
        match got {
            Some(said) if said == servers[2].address => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    eprintln!("direct fetches after the fence: {tries:?}");
    host.ok(&["instance", "modify", &fenced, "--sg", "web"]);
    wait_for_states(&host, "web", |_| "healthy");

    // Deregistered targets drain: a flow opened before goes on (conntrack
    // keeps its target when the map changes), new ones find no target.
    let mut open = Netns::open(&internet)
        .unwrap()
        .run(|| {
            let address: SocketAddr = format!("{public}:80").parse().unwrap();
            TcpStream::connect_timeout(&address, Duration::from_secs(3))
        })
        .unwrap()
        .unwrap();
    let mut deregister = vec!["target-group", "deregister", "web"];
    for server in &servers {
        deregister.extend(["--target", server.id.as_str()]);
    }
    host.ok(&deregister);
    let states = health(&host, "web");
    assert!(
        states.iter().all(|(_, state)| state == "draining"),
        "{states:?}"
    );
    assert_eq!(fetch(&internet, &public), None, "no target for a new flow");
    open.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    open.read_to_string(&mut reply).unwrap();
    assert!(
        everyone.iter().any(|a| reply.ends_with(a.as_str())),
        "the drained flow got: {reply}"
    );
    // After the delay, they are gone.
    wait_until("the drained targets gone", || {
        let now = health(&host, "web");
        if now.is_empty() {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });

    // A terminated instance is deregistered at once, as ELBv2 does.
    host.ok(&["target-group", "register", "web", "--target", &client.id]);
    assert_eq!(health(&host, "web").len(), 1);
    host.ok(&["instance", "terminate", &client.id]);
    host.ok(&["instance", "wait", &client.id, "--state", "terminated"]);
    wait_until("the terminated target deregistered", || {
        let now = health(&host, "web");
        if now.is_empty() {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });

    // What uses something cannot be deleted from under it.
    let used = host.fails_with(5, &["target-group", "delete", "web"]);
    assert!(used.contains("listener"), "{used}");
    let used = host.fails_with(5, &["sg", "delete", "lb"]);
    assert!(used.contains("load balancers"), "{used}");
    host.ok(&[
        "route-table",
        "delete-route",
        &main_table,
        "--destination",
        "0.0.0.0/0",
    ]);
    let used = host.fails_with(5, &["igw", "detach", "door"]);
    assert!(used.contains("internet-facing load balancers"), "{used}");

    // Deleting leaves nothing: no namespace of the balancer, no rule.
    assert!(cli_support::namespaces(&lb_netns).contains(&lb_netns));
    host.ok(&["elb", "delete", "front"]);
    host.ok(&["target-group", "delete", "web"]);
    assert!(cli_support::namespaces(&lb_netns).is_empty());
    let vpc_netns = format!("{}{}", host.prefix, vpc["id"].as_str().unwrap());
    let ruleset = Command::new("ip")
        .args(["netns", "exec", &vpc_netns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    let ruleset = String::from_utf8(ruleset.stdout).unwrap();
    assert!(!ruleset.contains("chain elb_in"), "{ruleset}");
    assert!(!ruleset.contains(&public), "{ruleset}");
    let check = host.run(&["net", "check"]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
