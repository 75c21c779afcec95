//! Network and application load balancers on the host, with no VM: each
//! "instance" is a network namespace whose eth0 is the far end of a veth
//! standing in for the instance's tap (its name, MAC and address; the
//! stand-in image's VMM never runs, so the instance stays stopped with
//! its port), running `busybox httpd` that answers with the instance's
//! address, or a tiny server of the test's that answers with a name and
//! the X-Forwarded-For it got. The daemon (tests/endpoint_support: its
//! own state directory and prefix) runs the health checks and the
//! application balancers' proxies; the fake internet is gureum's public
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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Puts namespace `name` on the port of stopped instance `id` (a veth in
/// place of its tap): the namespace and the instance's address.
fn plug(host: &Host, id: &str, name: &str) -> (String, String) {
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
    (netns, address)
}

impl WebServer {
    /// Puts a namespace on the port of stopped instance `id` and serves
    /// its address there.
    fn on(host: &Host, id: &str, name: &str) -> Self {
        let (netns, address) = plug(host, id, name);
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

/// Internet gateway "door" attached to VPC main, its main route table
/// routing 0.0.0.0/0 through it; VPC main's description.
fn internet_gateway(host: &Host) -> serde_json::Value {
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
    vpc
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

/// `net check` finds Linux as the records say.
fn assert_converged(host: &Host) {
    let check = host.run(&["net", "check"]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
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
    let vpc = internet_gateway(&host);
    let main_table = vpc["main_route_table"].as_str().unwrap().to_owned();
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
    assert_converged(&host);
}

/// A tiny HTTP server on `address:80` in namespace `netns`, answering
/// every request with `name` and the X-Forwarded-For it got, until
/// stopped (its socket closes then: connections are refused).
struct NamedServer {
    id: String,
    netns: String,
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NamedServer {
    /// Serves on the port of instance `id` in namespace `name`,
    /// answering "GROUP NAME xff=…".
    fn on(host: &Host, id: &str, name: &str, group: &str) -> Self {
        let (netns, address) = plug(host, id, name);
        let mut server = Self {
            id: id.to_owned(),
            netns,
            address,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        server.start(&format!("{group} {name}"));
        server
    }

    /// Serves, answering "ANSWER xff=…".
    fn start(&mut self, answer: &str) {
        let listener = Netns::open(&self.netns)
            .unwrap()
            .run(|| std::net::TcpListener::bind(format!("{}:80", self.address)))
            .unwrap()
            .unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (stop, answer) = (self.stop.clone(), answer.to_owned());
        self.thread = Some(std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve_one(stream, &answer);
                }
            }
        }));
    }

    /// Stops serving: the accept is woken by a connection of its own.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let address: SocketAddr = format!("{}:80", self.address).parse().unwrap();
            let _ = Netns::open(&self.netns)
                .unwrap()
                .run(|| TcpStream::connect_timeout(&address, Duration::from_secs(1)));
            thread.join().unwrap();
        }
    }
}

impl Drop for NamedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers one request on `stream`: "NAME xff=X-FORWARDED-FOR".
fn serve_one(mut stream: TcpStream, name: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let xff = head
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case("x-forwarded-for")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let body = format!("{name} xff={xff}");
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// `curl` of `url` from namespace `netns` with `headers`: the status
/// and the body ("000" when nothing answered).
fn request(netns: &str, url: &str, headers: &[&str]) -> (String, String) {
    let mut curl = Command::new("ip");
    curl.args(["netns", "exec", netns, "curl", "-s", "-m", "5"]);
    for header in headers {
        curl.args(["-H", header]);
    }
    let out = curl.args(["-w", "\n%{http_code}", url]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), body.to_owned())
}

/// Who answered `n` requests for `path` on `address` from `netns` (the
/// first word of each body, or the status).
fn routed(netns: &str, address: &str, path: &str, headers: &[&str], n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let (status, body) = request(netns, &format!("http://{address}{path}"), headers);
            if status == "200" {
                body.split(' ').next().unwrap_or_default().to_owned()
            } else {
                status
            }
        })
        .collect()
}

/// The mean time of `n` HTTP/1.0 GETs of `path` on `address`:80 from
/// namespace `netns`, one after the other, each on a new connection.
fn mean_request_time(netns: &str, address: &str, path: &str, n: u32) -> Duration {
    let target: SocketAddr = format!("{address}:80").parse().unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    Netns::open(netns)
        .unwrap()
        .run(|| {
            let start = Instant::now();
            for _ in 0..n {
                let mut stream =
                    TcpStream::connect_timeout(&target, Duration::from_secs(3)).unwrap();
                stream.write_all(request.as_bytes()).unwrap();
                let mut reply = String::new();
                stream.read_to_string(&mut reply).unwrap();
                assert_eq!(reply.split(' ').nth(1), Some("200"), "{reply}");
            }
            start.elapsed() / n
        })
        .unwrap()
}

#[test]
fn an_application_load_balancer_routes_requests_by_rule_to_healthy_targets() {
    let mut host = Host::start("local-1");
    let src = cli_support::image_source(host.work.path(), "tiny", "");
    host.ok(&["image", "import", src.to_str().unwrap()]);
    host.ok(&["vpc", "create", "--cidr", "10.41.0.0/16", "--name", "main"]);
    host.ok(&[
        "subnet",
        "create",
        "--vpc",
        "main",
        "--cidr",
        "10.41.1.0/24",
        "--name",
        "a",
    ]);
    internet_gateway(&host);
    web_group(&host, "web", "0.0.0.0/0");
    web_group(&host, "lb", "0.0.0.0/0");
    // Two servers in group alpha, one in beta, one in home (the
    // listener's default), and a client.
    let placed = [
        ("alpha-1", "alpha"),
        ("alpha-2", "alpha"),
        ("beta-1", "beta"),
        ("home-1", "home"),
    ];
    let mut servers: Vec<NamedServer> = placed
        .iter()
        .map(|(name, answer)| {
            let id = host.run_stand_in(&[
                "--image", "tiny", "--subnet", "a", "--sg", "web", "--name", name,
            ]);
            host.ok(&["instance", "wait", &id, "--state", "stopped"]);
            NamedServer::on(&host, &id, name, answer)
        })
        .collect();
    let client_id = host.run_stand_in(&[
        "--image", "tiny", "--subnet", "a", "--sg", "web", "--name", "client",
    ]);
    host.ok(&["instance", "wait", &client_id, "--state", "stopped"]);
    let (client, client_address) = plug(&host, &client_id, "client");
    host.ok(&["net", "reconcile"]);

    let quick = [
        "--health-interval",
        "2",
        "--health-timeout",
        "2",
        "--healthy-threshold",
        "2",
        "--unhealthy-threshold",
        "2",
    ];
    for group in ["alpha", "beta", "home"] {
        let mut args = create_group(group, &["--protocol", "http"]);
        args.extend(quick);
        host.ok(&args);
        let mut register = vec!["target-group", "register", group];
        for (server, _) in servers
            .iter()
            .zip(placed)
            .filter(|(_, (_, answer))| *answer == group)
        {
            register.extend(["--target", server.id.as_str()]);
        }
        host.ok(&register);
    }
    let http = host.json(&["target-group", "describe", "alpha"]);
    assert_eq!(http["health_check"]["protocol"], "http", "{http}");

    host.ok(&[
        "elb",
        "create",
        "--name",
        "app",
        "--type",
        "application",
        "--subnet",
        "a",
        "--sg",
        "lb",
        "--scheme",
        "internet-facing",
    ]);
    // A TCP listener is a network balancer's; an HTTP group is not.
    let bad = host.fails_with(
        3,
        &[
            "elb",
            "listener",
            "create",
            "app",
            "--protocol",
            "tcp",
            "--port",
            "81",
            "--target-group",
            "home",
        ],
    );
    assert!(bad.contains("not for application"), "{bad}");
    host.ok(&[
        "elb",
        "listener",
        "create",
        "app",
        "--port",
        "80",
        "--target-group",
        "home",
    ]);
    fn rule<'a>(priority: &'a str, condition: &[&'a str], group: &'a str) -> Vec<&'a str> {
        let mut args = vec![
            "elb",
            "rule",
            "create",
            "app",
            "--listener",
            "80",
            "--priority",
            priority,
            "--target-group",
            group,
        ];
        args.extend(condition);
        args
    }
    let bad = host.fails_with(3, &rule("0", &["--path", "/a*"], "alpha"));
    assert!(bad.contains("priority 0 is out of range"), "{bad}");
    let bad = host.fails_with(3, &rule("10", &["--path", "/a b"], "alpha"));
    assert!(bad.contains("not a path-pattern pattern"), "{bad}");
    let bad = host.fails_with(3, &rule("10", &[], "alpha"));
    assert!(bad.contains("needs a condition"), "{bad}");
    host.ok(&rule("10", &["--path", "/a*"], "alpha"));
    host.ok(&rule("20", &["--path", "/b*"], "beta"));
    let taken = host.fails_with(5, &rule("20", &["--path", "/c"], "alpha"));
    assert!(
        taken.contains("already has a rule of priority 20"),
        "{taken}"
    );

    let app = host.json(&["elb", "describe", "app"]);
    let arn = app["arn"].as_str().unwrap();
    assert!(arn.contains(":loadbalancer/app/app/"), "{app}");
    let listener_arn = app["listeners"][0]["arn"].as_str().unwrap();
    assert!(listener_arn.contains(":listener/app/app/"), "{app}");
    let rules = host.json(&["elb", "rule", "list", "app"]);
    let priorities: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["priority"].as_str().unwrap())
        .collect();
    assert_eq!(priorities, ["10", "20", "default"], "{rules}");
    let private = app["ports"][0]["private_ip"].as_str().unwrap().to_owned();
    let public = app["public_ip"].as_str().unwrap().to_owned();

    // Checked from the balancer's address (its health checks run in its
    // namespace), every target turns healthy.
    for group in ["alpha", "beta", "home"] {
        wait_for_states(&host, group, |_| "healthy");
    }
    // The proxy follows the store within a moment.
    wait_until("the proxy answering", || {
        let got: Vec<String> = ["/a", "/b", "/c"]
            .iter()
            .flat_map(|path| routed(&client, &private, path, &[], 1))
            .collect();
        if got == ["alpha", "beta", "home"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    let all = |answers: &[String], who: &str| answers.iter().all(|a| a == who);
    let to_a = routed(&client, &private, "/a", &[], 6);
    assert!(all(&to_a, "alpha"), "{to_a:?}");
    assert!(all(
        &routed(&client, &private, "/apple/pie", &[], 2),
        "alpha"
    ));
    let to_b = routed(&client, &private, "/b", &[], 4);
    assert!(all(&to_b, "beta"), "{to_b:?}");
    let other = routed(&client, &private, "/c", &[], 4);
    assert!(all(&other, "home"), "{other:?}");
    assert!(all(&routed(&client, &private, "/", &[], 2), "home"));
    // From the fake internet through the public address, too.
    let internet = format!("{}public", host.prefix);
    let from_outside = routed(&internet, &public, "/b", &[], 3);
    assert!(all(&from_outside, "beta"), "{from_outside:?}");

    // The two alpha servers take turns: both answer.
    let servers_of_a: BTreeSet<String> = (0..4)
        .map(|_| {
            let (_, body) = request(&client, &format!("http://{private}/a"), &[]);
            body.split(' ').nth(1).unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        servers_of_a,
        BTreeSet::from(["alpha-1".to_owned(), "alpha-2".to_owned()])
    );
    // X-Forwarded-For carries the client's address, after any it sent.
    let (_, body) = request(&client, &format!("http://{private}/c"), &[]);
    assert_eq!(body, format!("home home-1 xff={client_address}"));
    let (_, body) = request(
        &client,
        &format!("http://{private}/c"),
        &["X-Forwarded-For: 198.51.100.7"],
    );
    assert_eq!(
        body,
        format!("home home-1 xff=198.51.100.7, {client_address}")
    );

    // What the proxy adds to a request, against the same server
    // directly (a figure, not a test: debug builds, a shared machine).
    let home_address = servers[3].address.clone();
    let direct = mean_request_time(&client, &home_address, "/c", 200);
    let proxied = mean_request_time(&client, &private, "/c", 200);
    eprintln!(
        "mean request time from an instance: direct {direct:?}, through the application load balancer {proxied:?}"
    );

    // The balancer's security groups judge what comes to its listeners:
    // without the rule admitting TCP 80, nothing gets through.
    let admit = ["--protocol", "tcp", "--port", "80", "--cidr", "0.0.0.0/0"];
    let mut revoke = vec!["sg", "revoke-ingress", "lb"];
    revoke.extend(admit);
    host.ok(&revoke);
    assert_eq!(routed(&client, &private, "/a", &[], 1), ["000"]);
    let mut authorize = vec!["sg", "authorize-ingress", "lb"];
    authorize.extend(admit);
    host.ok(&authorize);
    assert_eq!(routed(&client, &private, "/a", &[], 1), ["alpha"]);

    // A host rule of a lower priority goes first; deleted, the path
    // rules route again.
    host.ok(&rule("5", &["--host", "*.example.com"], "beta"));
    let rules = host.json(&["elb", "rule", "list", "app"]);
    let host_rule = rules[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(rules[0]["priority"], "5", "{rules}");
    wait_until("the host rule routing", || {
        let got = routed(&client, &private, "/a", &["Host: www.Example.com"], 1);
        if got == ["beta"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    assert!(all(
        &routed(&client, &private, "/a", &["Host: example.org"], 2),
        "alpha"
    ));
    // Behind the path rules, it takes what they do not.
    host.ok(&[
        "elb",
        "rule",
        "modify",
        "app",
        &host_rule,
        "--priority",
        "30",
    ]);
    let named = ["Host: www.example.com"];
    wait_until("the host rule last", || {
        let got = (
            routed(&client, &private, "/a", &named, 1),
            routed(&client, &private, "/c", &named, 1),
        );
        if got == (vec!["alpha".to_owned()], vec!["beta".to_owned()]) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    host.ok(&["elb", "rule", "delete", "app", &host_rule]);
    wait_until("the host rule gone", || {
        let got = routed(&client, &private, "/c", &named, 1);
        if got == ["home"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });

    // A target that fails before its checks say so: 502 for the request
    // sent to it, the other alpha server answers the rest.
    servers[1].stop();
    let answers = routed(&client, &private, "/a", &[], 2);
    assert!(answers.contains(&"502".to_owned()), "{answers:?}");
    assert!(answers.contains(&"alpha".to_owned()), "{answers:?}");
    let down = servers[1].id.clone();
    wait_for_states(&host, "alpha", |id| {
        if id == down { "unhealthy" } else { "healthy" }
    });
    // The proxy reads the store twice a second: after that, no request
    // goes to the dead server.
    std::thread::sleep(Duration::from_secs(1));
    let after = routed(&client, &private, "/a", &[], 6);
    assert!(all(&after, "alpha"), "{after:?}");

    // beta's only server gone: once unhealthy, its requests get 503.
    servers[2].stop();
    wait_for_states(&host, "beta", |_| "unhealthy");
    wait_until("503 for a group with no healthy target", || {
        let got = routed(&client, &private, "/b", &[], 1);
        if got == ["503"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    // Started again, it serves again.
    servers[2].start("beta beta-1");
    wait_for_states(&host, "beta", |_| "healthy");
    wait_until("beta back", || {
        let got = routed(&client, &private, "/b", &[], 1);
        if got == ["beta"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });

    // A daemon killed takes its proxies with it (nothing listens: the
    // balancer's namespace refuses at once); the next one serves at once.
    host.kill_daemon();
    assert_eq!(routed(&client, &private, "/b", &[], 1), ["000"]);
    host.restart_daemon();
    wait_until("the proxy back with the daemon", || {
        let got = routed(&client, &private, "/b", &[], 1);
        if got == ["beta"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });

    // Linux is as the records say, balancer and all.
    assert_converged(&host);

    // Groups a rule uses are in use; deleting the balancer leaves nothing.
    let used = host.fails_with(5, &["target-group", "delete", "beta"]);
    assert!(used.contains("listener"), "{used}");
    let lb_netns = app["netns"].as_str().unwrap().to_owned();
    host.ok(&["elb", "delete", "app"]);
    for group in ["alpha", "beta", "home"] {
        host.ok(&["target-group", "delete", group]);
    }
    assert!(cli_support::namespaces(&lb_netns).is_empty());
    assert_converged(&host);
}
