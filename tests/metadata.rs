//! The instance metadata service of `gureum daemon`, from where an
//! instance asks: a network namespace per "instance" whose eth0 is the
//! far end of a veth standing in for the instance's tap (same name, MAC
//! and address; the VMM of the stand-in image never runs, its stopped
//! instance keeps its port), fetching http://169.254.169.254 with curl.
//! Needs root, `ip`, `nft` and `curl`; the daemon is
//! tests/endpoint_support's (its own state directory and prefix).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod cli_support;
mod endpoint_support;

use cli_support::{Gureum, ip};
use endpoint_support::Host;

const IMDS: &str = "http://169.254.169.254";

/// An instance as the metadata service sees it: its namespace, ID and
/// address.
struct Guest {
    netns: String,
    vpc_netns: String,
    id: String,
    address: String,
}

impl Guest {
    /// Replaces the tap of stopped instance `id` with a veth whose far
    /// end is eth0 of a new namespace, configured as the guest would be.
    fn attach(host: &Host, id: &str, name: &str) -> Self {
        let guest = Self::plug(host, id, name);
        guest.configure(&format!("{}/24", guest.address), &guest.router());
        guest
    }

    /// As `attach`, with eth0 up but without an address.
    fn plug(host: &Host, id: &str, name: &str) -> Self {
        let described = host.json(&["instance", "describe", id]);
        let place = &described[0]["placement"];
        let tap = place["tap"].as_str().unwrap();
        let mac = place["mac"].as_str().unwrap();
        let address = place["private_ip"].as_str().unwrap().to_owned();
        let vpc_netns = format!("{}{}", host.prefix, place["vpc_id"].as_str().unwrap());
        let netns = format!("{}{name}", host.prefix);
        ip(&["netns", "add", &netns]);
        ip(&["-n", &vpc_netns, "link", "del", tap]);
        ip(&[
            "-n", &vpc_netns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "address", mac]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        Self {
            netns,
            vpc_netns,
            id: id.to_owned(),
            address,
        }
    }

    /// The router of the guest's /24.
    fn router(&self) -> String {
        format!("{}.1", self.address.rsplit_once('.').unwrap().0)
    }

    fn configure(&self, address: &str, router: &str) {
        ip(&["-n", &self.netns, "addr", "add", address, "dev", "eth0"]);
        ip(&["-n", &self.netns, "route", "add", "default", "via", router]);
    }

    /// `busybox ARGS` in the guest's namespace.
    fn busybox(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "busybox"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Asks for a DHCP lease (busybox udhcpc, as the busybox image does)
    /// until the daemon's server answers; returns what the lease says.
    fn dhcp(&self, dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
        let out = dir.join(format!("{}.lease", self.netns));
        let script = dir.join("udhcpc.script");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nenv > \"$LEASE_FILE\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let start = Instant::now();
        loop {
            let run = Command::new("ip")
                .args(["netns", "exec", &self.netns, "env"])
                .arg(format!("LEASE_FILE={}", out.display()))
                .args(["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f"])
                .args(["-t", "3", "-T", "1", "-s"])
                .arg(&script)
                .output()
                .unwrap();
            if run.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no DHCP lease for {}: {}",
                self.netns,
                String::from_utf8_lossy(&run.stderr)
            );
        }
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// `curl ARGS` in the guest's namespace.
    fn curl(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "curl", "-sS", "-m", "3"])
            .args(args)
            .output()
            .unwrap()
    }

    /// The status and body of a request with `args`.
    fn fetch(&self, args: &[&str]) -> (u16, String) {
        let mut all = vec!["-w", "\n%{http_code}"];
        all.extend(args);
        let out = self.curl(&all);
        assert!(
            out.status.success(),
            "curl {args:?} in {}: {}",
            self.netns,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_owned())
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let url = format!("{IMDS}{path}");
        match token {
            Some(t) => self.fetch(&["-H", &format!("X-aws-ec2-metadata-token: {t}"), &url]),
            None => self.fetch(&[&url]),
        }
    }

    fn put_token(&self, ttl: &str, extra: &[&str]) -> (u16, String) {
        let url = format!("{IMDS}/latest/api/token");
        let header = format!("X-aws-ec2-metadata-token-ttl-seconds: {ttl}");
        let mut args = vec!["-X", "PUT", "-H", &header];
        args.extend(extra);
        args.push(&url);
        self.fetch(&args)
    }

    /// Waits until the service answers this guest (the daemon binds a
    /// VPC's socket within seconds of the VPC appearing).
    fn await_service(&self) {
        let start = Instant::now();
        loop {
            let out = self.curl(&[&format!("{IMDS}/")]);
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the metadata service never answered {}: {}",
                self.netns,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn each_instance_reads_its_own_metadata_with_the_token_rules_ec2_has() {
    let host = Host::start("eu-west-1");
    let src = cli_support::image_source(host.work.path(), "tiny", "");
    host.ok(&["image", "import", src.to_str().unwrap()]);
    host.ok(&["key", "create", "deploy"]);
    host.ok(&["vpc", "create", "--cidr", "10.30.0.0/16", "--name", "main"]);
    host.ok(&[
        "subnet",
        "create",
        "--vpc",
        "main",
        "--cidr",
        "10.30.1.0/24",
        "--name",
        "a",
    ]);
    let script = "#!/bin/sh\necho configured by user data\n";
    let file = host.work.path().join("boot.sh");
    std::fs::write(&file, script).unwrap();
    let a = host.run_stand_in(&[
        "--image",
        "tiny",
        "--subnet",
        "a",
        "--key",
        "deploy",
        "--name",
        "alpha",
        "--user-data",
        file.to_str().unwrap(),
    ]);
    let b = host.run_stand_in(&[
        "--image",
        "tiny",
        "--subnet",
        "a",
        "--name",
        "beta",
        "--metadata-options",
        "HttpTokens=required,HttpPutResponseHopLimit=2",
    ]);
    for id in [&a, &b] {
        host.ok(&["instance", "wait", id, "--state", "stopped"]);
    }
    let a = Guest::attach(&host, &a, "guest-a");
    let b = Guest::attach(&host, &b, "guest-b");
    // The reconciler puts the stand-ins on the bridge, as it would a tap.
    host.ok(&["net", "reconcile"]);
    a.await_service();

    // IMDSv1 (tokens optional): alpha's own facts.
    assert_eq!(
        a.get("/latest/meta-data/instance-id", None),
        (200, a.id.clone())
    );
    assert_eq!(
        a.get("/latest/meta-data/local-ipv4", None),
        (200, a.address.clone())
    );
    assert_eq!(a.get("/latest/user-data", None), (200, script.to_owned()));
    let key: Value = host.json(&["key", "describe", "deploy"]);
    let public_key = key["public_key"]
        .as_str()
        .unwrap_or_else(|| panic!("{key}"));
    assert_eq!(
        a.get("/latest/meta-data/public-keys/0/openssh-key", None),
        (200, public_key.to_owned())
    );
    let (code, listing) = a.get("/latest/meta-data/", None);
    assert_eq!(code, 200);
    assert!(listing.lines().any(|l| l == "placement/"), "{listing}");
    // IMDSv2 works too; a token request through a proxy or without a
    // valid TTL does not.
    let (code, token_a) = a.put_token("60", &[]);
    assert_eq!(code, 200);
    assert_eq!(
        a.get("/latest/meta-data/instance-id", Some(&token_a)),
        (200, a.id.clone())
    );
    assert_eq!(
        a.put_token("60", &["-H", "X-Forwarded-For: 10.0.0.9"]).0,
        403
    );
    assert_eq!(a.put_token("0", &[]).0, 400);
    assert_eq!(a.put_token("21601", &[]).0, 400);

    // beta requires tokens: none, or alpha's, is refused; its own works.
    assert_eq!(b.get("/latest/meta-data/instance-id", None).0, 401);
    assert_eq!(
        b.get("/latest/meta-data/instance-id", Some(&token_a)).0,
        401
    );
    assert_eq!(b.get("/latest/user-data", None).0, 401);
    // Its token comes in packets whose TTL is its hop limit, 2 (counted
    // in its namespace: no router lies between it and the service).
    let hops = "table ip hops {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ip saddr 169.254.169.254 ip ttl 2 counter\n }\n}\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &b.netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut nft.stdin.take().unwrap(), hops.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success(), "nft in {}", b.netns);
    let (code, token_b) = b.put_token("30", &[]);
    assert_eq!(code, 200);
    let out = Command::new("ip")
        .args([
            "netns", "exec", &b.netns, "nft", "list", "table", "ip", "hops",
        ])
        .output()
        .unwrap();
    let counted = String::from_utf8(out.stdout).unwrap();
    assert!(
        counted.contains("counter packets") && !counted.contains("packets 0 "),
        "no packet came with TTL 2: {counted}"
    );
    let (code, document) = b.get("/latest/dynamic/instance-identity/document", Some(&token_b));
    assert_eq!(code, 200);
    let document: Value = serde_json::from_str(&document).unwrap();
    assert_eq!(document["instanceId"], b.id.as_str());
    assert_eq!(document["privateIp"], b.address.as_str());
    assert_eq!(
        b.get("/latest/user-data", Some(&token_b)).0,
        404,
        "no user data"
    );
    assert_eq!(
        a.get("/latest/meta-data/instance-id", Some(&token_b)).0,
        401
    );

    // alpha, allowed to send from any address, still cannot pass for
    // beta: the service is reached from a port's own address only. (With
    // beta's link down and the router's neighbours forgotten, alpha alone
    // answers ARP for beta's address, so replies would reach it.)
    host.ok(&["instance", "modify", &a.id, "--no-source-dest-check"]);
    ip(&["-n", &b.netns, "link", "set", "eth0", "down"]);
    ip(&["-n", &a.vpc_netns, "neigh", "flush", "all"]);
    ip(&[
        "-n",
        &a.netns,
        "addr",
        "add",
        &format!("{}/32", b.address),
        "dev",
        "eth0",
    ]);
    let spoofed = a.curl(&[
        "--interface",
        &b.address,
        &format!("{IMDS}/latest/meta-data/instance-id"),
    ]);
    assert!(
        !spoofed.status.success(),
        "{}",
        String::from_utf8_lossy(&spoofed.stdout)
    );
    assert_eq!(
        a.get("/latest/meta-data/instance-id", None),
        (200, a.id.clone())
    );
    ip(&[
        "-n",
        &a.netns,
        "addr",
        "del",
        &format!("{}/32", b.address),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &a.vpc_netns, "neigh", "flush", "all"]);
    ip(&["-n", &b.netns, "link", "set", "eth0", "up"]);
    ip(&[
        "-n",
        &b.netns,
        "route",
        "replace",
        "default",
        "via",
        &format!("{}.1", b.address.rsplit_once('.').unwrap().0),
    ]);

    // A disabled endpoint answers nothing; enabled again, it answers.
    host.ok(&[
        "instance",
        "modify-metadata-options",
        &b.id,
        "--metadata-options",
        "HttpEndpoint=disabled",
    ]);
    let silent = b.curl(&[
        "-H",
        &format!("X-aws-ec2-metadata-token: {token_b}"),
        &format!("{IMDS}/latest/meta-data/instance-id"),
    ]);
    assert!(
        !silent.status.success(),
        "{}",
        String::from_utf8_lossy(&silent.stdout)
    );
    host.ok(&[
        "instance",
        "modify-metadata-options",
        &b.id,
        "--metadata-options",
        "HttpEndpoint=enabled,HttpTokens=optional",
    ]);
    assert_eq!(
        b.get("/latest/meta-data/instance-id", None),
        (200, b.id.clone())
    );
}

#[test]
fn dhcp_gives_each_instance_its_own_address_and_the_resolver_names_them() {
    let host = Host::start("eu-west-1");
    let src = cli_support::image_source(host.work.path(), "tiny", "");
    host.ok(&["image", "import", src.to_str().unwrap()]);
    host.ok(&["vpc", "create", "--cidr", "10.31.0.0/16", "--name", "main"]);
    for (name, cidr) in [("a", "10.31.1.0/24"), ("b", "10.31.2.0/28")] {
        host.ok(&[
            "subnet", "create", "--vpc", "main", "--cidr", cidr, "--name", name,
        ]);
    }
    let a = host.run_stand_in(&["--image", "tiny", "--subnet", "a", "--name", "alpha"]);
    let b = host.run_stand_in(&["--image", "tiny", "--subnet", "b", "--name", "beta"]);
    for id in [&a, &b] {
        host.ok(&["instance", "wait", id, "--state", "stopped"]);
    }
    let a = Guest::plug(&host, &a, "dhcp-a");
    let b = Guest::plug(&host, &b, "dhcp-b");
    host.ok(&["net", "reconcile"]);

    // Each gets the store's address for its MAC, its subnet's router and
    // mask, the VPC resolver (base + 2) and EC2's domain and names.
    let work = host.work.path();
    for (guest, router, mask) in [
        (&a, "10.31.1.1", "255.255.255.0"),
        (&b, "10.31.2.1", "255.255.255.240"),
    ] {
        let lease = guest.dhcp(work);
        let got = |key: &str| lease.get(key).map_or("", String::as_str);
        assert_eq!(got("ip"), guest.address, "{lease:?}");
        assert_eq!(got("router"), router, "{lease:?}");
        assert_eq!(got("subnet"), mask, "{lease:?}");
        assert_eq!(got("dns"), "10.31.0.2", "{lease:?}");
        assert_eq!(got("domain"), "ec2.internal", "{lease:?}");
        assert_eq!(got("lease"), "3600", "{lease:?}");
        let name = format!("ip-{}", guest.address.replace('.', "-"));
        assert_eq!(got("hostname"), name, "{lease:?}");
        guest.configure(&format!("{}/{}", got("ip"), got("mask")), router);
    }

    // The resolver names the other instance, across subnets, and says
    // whose an address is.
    let name_b = format!("ip-{}.ec2.internal", b.address.replace('.', "-"));
    let out = a.busybox(&["nslookup", &name_b, "10.31.0.2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("Address: {}", b.address)),
        "nslookup {name_b}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = b.busybox(&["nslookup", &a.address, "10.31.0.2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let name_a = format!("ip-{}.ec2.internal", a.address.replace('.', "-"));
    assert!(text.contains(&name_a), "reverse of {}: {text}", a.address);

    // An address the store does not hold for a MAC is never leased: a
    // third namespace with a MAC of its own on alpha's port gets nothing
    // (anti-spoofing drops it, and the server knows only the store's MACs).
    ip(&["-n", &a.netns, "link", "set", "eth0", "down"]);
    ip(&[
        "-n",
        &a.netns,
        "link",
        "set",
        "eth0",
        "address",
        "02:99:00:00:00:01",
    ]);
    ip(&["-n", &a.netns, "addr", "flush", "dev", "eth0"]);
    ip(&["-n", &a.netns, "link", "set", "eth0", "up"]);
    let stranger = a.busybox(&[
        "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "2", "-T", "1",
    ]);
    assert!(
        !stranger.status.success(),
        "a foreign MAC got a lease: {}",
        String::from_utf8_lossy(&stranger.stderr)
    );

    // The VPC's server runs while it does, and goes when it is deleted.
    let dns = host.state.path().join("dns");
    assert_eq!(servers_running(&dns), 1, "one server for the VPC");
    for id in [&a.id, &b.id] {
        host.ok(&["instance", "terminate", id]);
        host.ok(&["instance", "wait", id, "--state", "terminated"]);
    }
    for subnet in ["a", "b"] {
        host.ok(&["subnet", "delete", subnet]);
    }
    host.ok(&["vpc", "delete", "main"]);
    assert_eq!(servers_running(&dns), 0, "a server outlived its VPC");
}

/// The processes whose command line names a configuration in `dir`.
fn servers_running(dir: &std::path::Path) -> usize {
    let wanted = format!("--conf-file={}/", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg.starts_with(wanted.as_bytes()))
        })
        .count()
}
