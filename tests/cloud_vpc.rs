//! The VPC commands run as a user runs them: the real binary, a private
//! state directory, and a namespace prefix unique to each test, with the
//! real outcome checked in Linux (`ip -n NS ...`, `nft`).
//!
//! Needs root, `ip` and `nft`. A guard removes every namespace with the
//! test's prefix, even when the test fails. Nothing here touches the
//! host's own namespace: every check runs inside the test's namespaces.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::{Command, Stdio};

use serde_json::Value;

mod cli_support;

use cli_support::Gureum;

/// A private state directory and namespace prefix; the namespaces with
/// the prefix are removed when it is dropped.
struct Cloud {
    state: tempfile::TempDir,
    prefix: String,
    pool: Option<&'static str>,
}

impl Cloud {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().unwrap(),
            prefix: cli_support::unique_prefix("gvt"),
            pool: None,
        }
    }

    fn netns(&self, vpc: &str) -> String {
        format!("{}{vpc}", self.prefix)
    }

    fn public(&self) -> String {
        format!("{}public", self.prefix)
    }

    /// The namespaces with this test's prefix.
    fn namespaces(&self) -> Vec<String> {
        cli_support::namespaces(&self.prefix)
    }

    /// A VPC 10.0.0.0/16 named `name`; its ID.
    fn vpc(&self, name: &str) -> String {
        self.ok(&["vpc", "create", "--cidr", "10.0.0.0/16", "--name", name])
    }

    /// A subnet of VPC `v` with block `cidr` named `name`; its ID.
    fn subnet(&self, cidr: &str, name: &str) -> String {
        self.ok(&[
            "subnet", "create", "--vpc", "v", "--cidr", cidr, "--name", name,
        ])
    }

    /// The number of records `list` shows.
    fn count(&self, noun: &str) -> usize {
        self.json(&[noun, "list"]).as_array().unwrap().len()
    }
}

impl Gureum for Cloud {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = cli_support::gureum(self.state.path(), args);
        command
            .env("GUREUM_NET_PREFIX", &self.prefix)
            .env_remove("GUREUM_PUBLIC_ROUTER");
        match self.pool {
            Some(pool) => command.env("GUREUM_PUBLIC_POOL", pool),
            None => command.env_remove("GUREUM_PUBLIC_POOL"),
        };
        command
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        cli_support::remove_namespaces(&self.prefix);
    }
}

/// `ip -n NETNS ARGS...`'s output.
fn ip(netns: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", netns];
    all.extend(args);
    ip_cmd(&all)
}

/// `ip ARGS...`'s output; it must succeed.
fn ip_cmd(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The ruleset of gureum's tables in `netns`.
fn nft(netns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `gureum route-table create-route TABLE --destination DESTINATION
/// --gateway IGW`.
fn create_route<'a>(table: &'a str, destination: &'a str, igw: &'a str) -> [&'a str; 7] {
    [
        "route-table",
        "create-route",
        table,
        "--destination",
        destination,
        "--gateway",
        igw,
    ]
}

fn field(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_vpc_is_a_namespace_with_a_main_table_a_default_group_and_gureums_tables() {
    let cloud = Cloud::new();
    let vpc = cloud.vpc("web");
    assert!(vpc.starts_with("vpc-"), "{vpc}");
    assert_eq!(cloud.namespaces(), [cloud.netns(&vpc)]);
    let ruleset = nft(&cloud.netns(&vpc));
    assert!(ruleset.contains("table inet gureum"), "{ruleset}");
    assert!(ruleset.contains("table bridge gureum"), "{ruleset}");

    let shown = cloud.json(&["vpc", "describe", "web"]);
    assert_eq!(field(&shown, "id"), vpc);
    assert_eq!(field(&shown, "cidr"), "10.0.0.0/16");
    assert_eq!(shown["tags"]["Name"], "web");
    let tables = cloud.json(&["route-table", "list"]);
    assert_eq!(tables[0]["id"], shown["main_route_table"]);
    assert_eq!(tables[0]["main"], true);
    assert_eq!(tables[0]["routes"][0]["destination"], "10.0.0.0/16");
    assert_eq!(tables[0]["routes"][0]["target"], "local");
    let groups = cloud.json(&["sg", "list"]);
    assert_eq!(groups[0]["id"], shown["default_security_group"]);
    assert_eq!(groups[0]["group_name"], "default");
    let default_group = field(&groups[0], "id");
    assert!(ruleset.contains(&format!("members_{}", default_group.replace('-', "_"))));

    // Filters by tag, as instance list does.
    cloud.vpc("other");
    assert_eq!(cloud.count("vpc"), 2);
    let web = cloud.json(&["vpc", "list", "--filter", "Name=web"]);
    assert_eq!(web.as_array().unwrap().len(), 1);
    assert_eq!(web[0]["id"], vpc.as_str());

    assert_eq!(cloud.ok(&["vpc", "delete", &vpc]), vpc);
    assert_eq!(
        cloud.json(&["vpc", "list", "--tag", "Name=web"]),
        Value::Array(vec![])
    );
    assert_eq!(cloud.namespaces().len(), 1);
    assert_eq!(cloud.count("route-table"), 1);
    assert_eq!(cloud.count("sg"), 1);
}

#[test]
fn bad_vpc_blocks_are_refused_and_leave_nothing_while_public_ones_are_warned_about() {
    let cloud = Cloud::new();
    for (cidr, says) in [
        ("10.0.0.0/8", "netmask must be /16 to /28"),
        ("10.0.0.0/29", "netmask must be /16 to /28"),
        ("10.0.0.1/16", "host bits set"),
        ("ten/16", "is not an IPv4 CIDR"),
    ] {
        let out = cloud.run(&["vpc", "create", "--cidr", cidr]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cidr}");
        assert!(stderr.contains(says), "{cidr}: {stderr}");
    }
    assert_eq!(cloud.count("vpc"), 0);
    assert!(cloud.namespaces().is_empty());

    let out = cloud.run(&["vpc", "create", "--cidr", "8.8.0.0/16"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in an RFC 1918"));
    // Two VPCs may share a block: each is its own namespace.
    let a = cloud.vpc("a");
    let b = cloud.vpc("b");
    assert_ne!(a, b);
    assert_eq!(cloud.namespaces().len(), 3);
}

#[test]
fn subnets_are_bridges_holding_the_router_inside_their_vpc_without_overlap() {
    let cloud = Cloud::new();
    let vpc = cloud.vpc("v");
    let ns = cloud.netns(&vpc);
    let subnet = cloud.subnet("10.0.1.0/24", "s1");
    let shown = cloud.json(&["subnet", "describe", "s1"]);
    assert_eq!(field(&shown, "vpc_id"), vpc);
    assert_eq!(field(&shown, "router"), "10.0.1.1");
    assert_eq!(field(&shown, "availability_zone"), "local-1a");
    assert_eq!(shown["capacity"], 251);
    let bridge = format!("br-{}", &subnet[subnet.len() - 12..]);
    let addresses = ip(&ns, &["-4", "addr", "show", "dev", &bridge]);
    assert!(addresses.contains("10.0.1.1/24"), "{addresses}");
    assert!(ip(&ns, &["link", "show", &bridge]).contains("UP"));

    for (cidr, says) in [
        ("10.0.1.128/25", "overlaps subnet 10.0.1.0/24"),
        ("10.1.0.0/24", "is not inside its VPC's block 10.0.0.0/16"),
        ("10.0.2.0/29", "netmask must be /16 to /28"),
    ] {
        let stderr = cloud.fails(&["subnet", "create", "--vpc", &vpc, "--cidr", cidr]);
        assert!(stderr.contains(says), "{cidr}: {stderr}");
    }
    let stderr = cloud.fails(&["subnet", "create", "--vpc", "nope", "--cidr", "10.0.3.0/24"]);
    assert!(stderr.contains("no VPC 'nope'"), "{stderr}");
    assert_eq!(cloud.count("subnet"), 1);
    let bridges = ip(&ns, &["-br", "link", "show", "type", "bridge"]);
    assert_eq!(bridges.lines().count(), 1, "{bridges}");

    let stderr = cloud.fails(&["vpc", "delete", &vpc]);
    assert!(
        stderr.contains(&format!("still has subnets {subnet}")),
        "{stderr}"
    );
    assert!(stderr.contains("subnet delete"), "{stderr}");

    cloud.ok(&["subnet", "delete", "s1"]);
    assert!(ip(&ns, &["-br", "link", "show", "type", "bridge"]).is_empty());
    cloud.ok(&["vpc", "delete", &vpc]);
    assert!(cloud.namespaces().is_empty());
}

#[test]
fn a_route_to_the_attached_gateway_makes_a_subnet_public_and_everything_unwinds() {
    let cloud = Cloud::new();
    let vpc = cloud.vpc("v");
    let ns = cloud.netns(&vpc);
    let subnet = cloud.ok(&["subnet", "create", "--vpc", "v", "--cidr", "10.0.1.0/24"]);
    let bridge = format!("br-{}", &subnet[subnet.len() - 12..]);
    let main = field(&cloud.json(&["vpc", "describe", &vpc]), "main_route_table");
    let igw = cloud.ok(&["igw", "create", "--name", "door"]);

    let stderr = cloud.fails(&create_route(&main, "0.0.0.0/0", &igw));
    assert!(stderr.contains("is not attached to VPC"), "{stderr}");

    cloud.ok(&["igw", "attach", "door", "--vpc", "v"]);
    let shown = cloud.json(&["igw", "describe", &igw]);
    assert_eq!(field(&shown, "vpc_id"), vpc);
    assert_eq!(field(&shown, "public_ip"), "203.0.113.2");
    assert!(ip(&ns, &["-4", "addr", "show", "dev", "igw"]).contains("203.0.113.2/32"));
    let public = ip(&cloud.public(), &["-4", "addr"]);
    assert!(public.contains("203.0.113.1/32"), "{public}");
    assert!(nft(&ns).contains("snat ip to 203.0.113.2"));
    let other = cloud.vpc("w");
    let stderr = cloud.fails(&["igw", "attach", &igw, "--vpc", &other]);
    assert!(stderr.contains("already attached"), "{stderr}");

    let rule = format!("iif {bridge} lookup 100");
    assert!(!ip(&ns, &["rule"]).contains(&rule));
    let stderr = cloud.fails(&create_route(&main, "10.9.0.0/16", &igw));
    assert!(stderr.contains("only a 0.0.0.0/0 route"), "{stderr}");
    cloud.ok(&create_route(&main, "0.0.0.0/0", &igw));
    assert!(ip(&ns, &["rule"]).contains(&rule));
    assert!(ip(&ns, &["route", "show", "table", "100"]).contains("default via 203.0.113.1"));

    // A custom table without the route makes the subnet private again.
    let custom = cloud.ok(&["route-table", "create", "--vpc", &vpc, "--name", "private"]);
    cloud.ok(&["route-table", "associate", "private", "--subnet", &subnet]);
    assert!(!ip(&ns, &["rule"]).contains(&rule));
    let stderr = cloud.fails(&["route-table", "delete", &custom]);
    assert!(stderr.contains("disassociate"), "{stderr}");
    cloud.ok(&["route-table", "disassociate", &custom, "--subnet", &subnet]);
    assert!(ip(&ns, &["rule"]).contains(&rule));
    cloud.ok(&["route-table", "delete", &custom]);
    let stderr = cloud.fails(&["route-table", "delete", &main]);
    assert!(stderr.contains("deleted with its VPC"), "{stderr}");

    let stderr = cloud.fails(&["igw", "detach", &igw]);
    assert!(stderr.contains("delete-route"), "{stderr}");
    let stderr = cloud.fails(&["vpc", "delete", &vpc]);
    assert!(stderr.contains("still has subnets"), "{stderr}");
    cloud.ok(&[
        "route-table",
        "delete-route",
        &main,
        "--destination",
        "0.0.0.0/0",
    ]);
    assert!(!ip(&ns, &["rule"]).contains(&rule));
    let stderr = cloud.fails(&["igw", "delete", &igw]);
    assert!(stderr.contains("igw detach"), "{stderr}");
    cloud.ok(&["igw", "detach", &igw]);
    assert!(!ip(&ns, &["link"]).contains("igw"));
    assert!(!nft(&ns).contains("snat"));
    cloud.ok(&["igw", "delete", &igw]);
    cloud.ok(&["subnet", "delete", &subnet]);
    cloud.ok(&["vpc", "delete", &vpc]);
    cloud.ok(&["vpc", "delete", &other]);
    assert!(cloud.namespaces().is_empty(), "{:?}", cloud.namespaces());
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);
}

#[test]
fn security_groups_hold_allow_rules_by_protocol_port_and_peer() {
    let cloud = Cloud::new();
    let vpc = cloud.vpc("v");
    let ns = cloud.netns(&vpc);
    let web = cloud.ok(&[
        "sg",
        "create",
        "--vpc",
        "v",
        "--name",
        "web",
        "--description",
        "w",
    ]);
    let shown = cloud.json(&["sg", "describe", "web"]);
    assert_eq!(shown["inbound"], Value::Array(vec![]));
    assert_eq!(shown["outbound"][0]["protocol"], "all");
    assert_eq!(shown["outbound"][0]["peer"]["cidr"], "0.0.0.0/0");
    assert!(nft(&ns).contains(&format!("members_{}", web.replace('-', "_"))));
    let stderr = cloud.fails(&["sg", "create", "--vpc", "v", "--name", "web"]);
    assert!(
        stderr.contains("already has a security group named 'web'"),
        "{stderr}"
    );

    let db = cloud.ok(&["sg", "create", "--vpc", "v", "--name", "db"]);
    cloud.ok(&[
        "sg",
        "authorize-ingress",
        "web",
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "10.0.0.0/16",
    ]);
    cloud.ok(&[
        "sg",
        "authorize-ingress",
        "web",
        "--protocol",
        "udp",
        "--port",
        "8000-8100",
        "--cidr",
        "0.0.0.0/0",
    ]);
    cloud.ok(&[
        "sg",
        "authorize-ingress",
        "db",
        "--protocol",
        "tcp",
        "--port",
        "5432",
        "--source-group",
        "web",
    ]);
    let shown = cloud.json(&["sg", "describe", &web]);
    assert_eq!(shown["inbound"][0]["protocol"], "tcp");
    assert_eq!(shown["inbound"][0]["ports"]["from"], 22);
    assert_eq!(shown["inbound"][1]["ports"]["to"], 8100);
    assert_eq!(
        cloud.json(&["sg", "describe", "db"])["inbound"][0]["peer"]["group"],
        web.as_str()
    );

    for (args, says) in [
        (
            vec!["--protocol", "icmp", "--port", "22", "--cidr", "0.0.0.0/0"],
            "cannot have a port range",
        ),
        (
            vec![
                "--protocol",
                "tcp",
                "--port",
                "90-80",
                "--cidr",
                "0.0.0.0/0",
            ],
            "backwards",
        ),
        (
            vec!["--protocol", "tcp", "--port", "http", "--cidr", "0.0.0.0/0"],
            "not a port",
        ),
        (
            vec!["--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/16"],
            "already in security group",
        ),
        (
            vec!["--protocol", "tcp", "--source-group", "nope"],
            "no security group 'nope'",
        ),
    ] {
        let mut all = vec!["sg", "authorize-ingress", "web"];
        all.extend(args);
        let stderr = cloud.fails(&all);
        assert!(stderr.contains(says), "{all:?}: {stderr}");
    }
    let out = cloud.run(&[
        "sg",
        "authorize-ingress",
        "web",
        "--protocol",
        "gre",
        "--cidr",
        "0.0.0.0/0",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // A group of another VPC is no peer.
    let other = cloud.vpc("w");
    cloud.ok(&["sg", "create", "--vpc", &other, "--name", "far"]);
    let stderr = cloud.fails(&[
        "sg",
        "authorize-ingress",
        "web",
        "--protocol",
        "all",
        "--source-group",
        "far",
    ]);
    assert!(stderr.contains("not in VPC"), "{stderr}");

    // Revoking the allow-all egress rule leaves the group denying outbound;
    // revoking it again finds no rule.
    let revoke_all_out = [
        "sg",
        "revoke-egress",
        "web",
        "--protocol",
        "all",
        "--cidr",
        "0.0.0.0/0",
    ];
    cloud.ok(&revoke_all_out);
    assert_eq!(
        cloud.json(&["sg", "describe", &web])["outbound"],
        Value::Array(vec![])
    );
    let stderr = cloud.fails(&revoke_all_out);
    assert!(stderr.contains("has no such rule"), "{stderr}");

    let stderr = cloud.fails(&["sg", "delete", "web"]);
    assert!(
        stderr.contains(&format!("a rule of group {db}")),
        "{stderr}"
    );
    let default_group = field(
        &cloud.json(&["vpc", "describe", &vpc]),
        "default_security_group",
    );
    let stderr = cloud.fails(&["sg", "delete", &default_group]);
    assert!(stderr.contains("deleted with its VPC"), "{stderr}");
    let stderr = cloud.fails(&["vpc", "delete", &vpc]);
    assert!(stderr.contains("still has security groups"), "{stderr}");
    cloud.ok(&["sg", "delete", "db"]);
    cloud.ok(&["sg", "delete", "web"]);
    assert!(!nft(&ns).contains(&format!("members_{}", web.replace('-', "_"))));
    cloud.ok(&["vpc", "delete", &vpc]);
}

#[test]
fn elastic_ips_come_from_the_pool_and_unassociated_ones_are_held() {
    let mut cloud = Cloud::new();
    cloud.pool = Some("198.51.100.0/29");
    let first = cloud.ok(&["eip", "allocate", "--name", "one"]);
    assert_eq!(
        field(&cloud.json(&["eip", "describe", "one"]), "public_ip"),
        "198.51.100.2"
    );
    let mut addresses = Vec::new();
    for _ in 0..4 {
        let id = cloud.ok(&["eip", "allocate"]);
        addresses.push(field(&cloud.json(&["eip", "describe", &id]), "public_ip"));
    }
    assert_eq!(
        addresses,
        [
            "198.51.100.3",
            "198.51.100.4",
            "198.51.100.5",
            "198.51.100.6"
        ]
    );
    let stderr = cloud.fails(&["eip", "allocate"]);
    assert!(stderr.contains("198.51.100.0/29 is used up"), "{stderr}");

    let out = cloud.run(&["eip", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("held, unassociated"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("keep costing until released"));

    let stderr = cloud.fails(&[
        "eip",
        "associate",
        &first,
        "--instance",
        "i-0123456789abcdef0",
    ]);
    assert!(stderr.contains("no instance"), "{stderr}");
    let stderr = cloud.fails(&["eip", "disassociate", &first]);
    assert!(stderr.contains("is not associated"), "{stderr}");
    // Released addresses go back to the pool; by address works too.
    cloud.ok(&["eip", "release", "198.51.100.2"]);
    assert_eq!(cloud.count("eip"), 4);
    let again = cloud.ok(&["eip", "allocate"]);
    assert_eq!(
        field(&cloud.json(&["eip", "describe", &again]), "public_ip"),
        "198.51.100.2"
    );

    cloud.pool = Some("198.51.100.0/33");
    let stderr = cloud.fails(&["eip", "allocate"]);
    assert!(
        stderr.contains("GUREUM_PUBLIC_POOL=198.51.100.0/33 is not usable"),
        "{stderr}"
    );
}

#[test]
fn a_change_linux_refuses_leaves_no_record_and_nothing_half_made() {
    let cloud = Cloud::new();
    let vpc = cloud.vpc("v");
    let ns = cloud.netns(&vpc);
    let ruleset = nft(&ns);
    let igw = cloud.ok(&["igw", "create"]);
    // The public namespace, the gateway link, its address and route are
    // made, then nft refuses the NAT: the attachment goes from the record
    // and the next pass takes all of it away again.
    let path = nft_failing_second_run(cloud.state.path());
    let out = cloud
        .command(&["igw", "attach", &igw, "--vpc", "v"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("planted failure"), "{stderr}");
    assert_eq!(
        cloud.json(&["igw", "describe", &igw])["vpc_id"],
        Value::Null
    );
    assert!(
        !ip(&ns, &["link"]).contains("igw"),
        "{}",
        ip(&ns, &["link"])
    );
    assert_eq!(cloud.namespaces(), std::slice::from_ref(&ns));
    assert_eq!(nft(&ns), ruleset);
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);
}

#[test]
fn a_vpc_whose_namespace_was_deleted_is_rebuilt_by_the_next_change() {
    let cloud = Cloud::new();
    let vpc = cloud.vpc("v");
    let ns = cloud.netns(&vpc);
    ip_cmd(&["netns", "del", &ns]);
    let stderr = cloud.fails(&["net", "check"]);
    assert!(
        stderr.contains("differences between the records and Linux"),
        "{stderr}"
    );
    let subnet = cloud.ok(&["subnet", "create", "--vpc", "v", "--cidr", "10.0.1.0/24"]);
    assert_eq!(cloud.namespaces(), std::slice::from_ref(&ns));
    assert!(ip(&ns, &["-4", "addr"]).contains("10.0.1.1/24"));
    assert!(nft(&ns).contains("table inet gureum"));
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);
    cloud.ok(&["subnet", "delete", &subnet]);
    cloud.ok(&["vpc", "delete", &vpc]);
    assert!(cloud.namespaces().is_empty());
}

/// Instances terminated at once each release their port in their own
/// process, all into one VPC: every release lands (passes over a VPC take
/// turns), and the subnet can go. In CI's rig a release whose pass
/// tripped over another's was rolled back and left its port behind.
#[test]
fn ports_released_at_once_by_several_processes_all_go() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let vpc = cloud.vpc("v");
    let subnet = cloud.subnet("10.0.1.0/24", "s");
    cloud.ok(&["sg", "create", "--vpc", "v", "--name", "web"]);
    let ids: Vec<String> = (0..6)
        .map(|_| {
            cloud
                .run_stand_in(&["--subnet", "s", "--sg", "web"])
                .trim()
                .to_owned()
        })
        .collect();
    let terminating: Vec<_> = ids
        .iter()
        .map(|id| {
            cloud
                .command(&["instance", "terminate", id])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in terminating {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ns = cloud.netns(&vpc);
    assert_eq!(ip(&ns, &["-br", "link", "show", "type", "tun"]), "");
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);
    cloud.ok(&["sg", "delete", "web"]);
    cloud.ok(&["subnet", "delete", &subnet]);
    cloud.ok(&["vpc", "delete", &vpc]);
}

/// What `net check` prints when Linux matches the records.
const NOTHING_DIFFERS: &str = "Linux and the state directory match the records";

/// The alias that marks the namespaces of the store behind `cloud`.
fn owner_mark(cloud: &Cloud, vpc: &str) -> String {
    let link = ip(&cloud.netns(vpc), &["-o", "link", "show", "lo"]);
    link.split("alias ")
        .nth(1)
        .map(|alias| alias.trim().to_owned())
        .expect("lo carries the store's mark")
}

#[test]
fn net_check_finds_and_reconcile_removes_only_what_this_store_made() {
    let cloud = Cloud::new();
    let vpc = cloud.vpc("v");
    let igw = cloud.ok(&["igw", "create"]);
    cloud.ok(&["igw", "attach", &igw, "--vpc", &vpc]);
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);

    // A namespace with the prefix that nobody marked, and one marked as
    // another store's: neither is ours to touch.
    let foreign = cloud.netns("vpc-00000000000000000");
    ip_cmd(&["netns", "add", &foreign]);
    let other = cloud.netns("vpc-00000000000000001");
    ip_cmd(&["netns", "add", &other]);
    ip(&other, &["link", "set", "lo", "alias", "gureum-store:0123"]);
    // One of ours that no record has (a crash after its record went).
    let orphan = cloud.netns("vpc-00000000000000002");
    ip_cmd(&["netns", "add", &orphan]);
    ip(
        &orphan,
        &["link", "set", "lo", "alias", &owner_mark(&cloud, &vpc)],
    );
    // A stray gateway link on the public side (a bridge stands in for
    // the veth end: only its name counts).
    let public = cloud.public();
    ip(&public, &["link", "add", "gp0badbad0", "type", "bridge"]);
    // A tap in the VPC that no instance has, an address nothing owns, a
    // rule deleted by hand and a sysctl turned off.
    let ns = cloud.netns(&vpc);
    ip(
        &ns,
        &["tuntap", "add", "dev", "t-0000000000000", "mode", "tap"],
    );
    ip(&ns, &["addr", "add", "10.9.9.9/32", "dev", "igw"]);
    ip(&ns, &["rule", "del", "priority", "1000"]);
    ip_cmd(&[
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=0",
    ]);
    let out = cloud.run(&["-o", "json", "net", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects: Vec<String> = found["network"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                d["netns"].as_str().unwrap(),
                d["object"].as_str().unwrap(),
                d["found"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        format!("{orphan} the namespace extra"),
        format!("{public} link gp0badbad0 extra"),
        format!("{ns} link t-0000000000000 extra"),
        format!("{ns} address 10.9.9.9/32 on igw extra"),
        format!("{ns} rule 1000: iif any lookup 254 suppress_prefixlength 0 missing"),
        format!("{ns} sysctl net.ipv4.ip_forward wrong"),
    ] {
        assert!(objects.contains(&want), "{want} not in {objects:#?}");
    }
    assert_eq!(objects.len(), 6, "{objects:#?}");

    let repaired = cloud.ok(&["net", "reconcile"]);
    assert!(
        repaired.contains(&format!("repaired: {orphan}: the namespace")),
        "{repaired}"
    );
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);
    let mut left = vec![cloud.public(), ns.clone(), foreign.clone(), other.clone()];
    left.sort();
    assert_eq!(cloud.namespaces(), left);
    assert!(!ip(&cloud.public(), &["link"]).contains("gp0badbad0"));
    assert_eq!(ip(&ns, &["-br", "link", "show", "type", "tun"]), "");
    assert!(ip(&ns, &["rule"]).contains("1000:"));
    // A second pass finds nothing to do.
    assert_eq!(cloud.ok(&["net", "reconcile"]), NOTHING_DIFFERS);

    cloud.ok(&["igw", "detach", &igw]);
    cloud.ok(&["vpc", "delete", &vpc]);
    assert_eq!(
        cloud.namespaces(),
        [foreign, other],
        "foreign namespaces stay"
    );
}

#[test]
fn a_second_state_directory_with_the_same_prefix_keeps_its_vpcs() {
    let first = Cloud::new();
    let mut second = Cloud::new();
    second.prefix = first.prefix.clone();
    let mine = first.vpc("v");
    let theirs = second.vpc("v");
    second.subnet("10.0.1.0/24", "s");
    // The other store's namespace has the prefix, but not this store's
    // mark: this store's check does not count it, and its reconcile
    // leaves it alone.
    let theirs_ns = second.netns(&theirs);
    assert_eq!(first.ok(&["net", "check"]), NOTHING_DIFFERS);
    assert_eq!(first.ok(&["net", "reconcile"]), NOTHING_DIFFERS);
    assert!(first.namespaces().contains(&theirs_ns));
    assert_eq!(second.ok(&["net", "check"]), NOTHING_DIFFERS);
    assert_eq!(first.ok(&["net", "check"]), NOTHING_DIFFERS);
    first.ok(&["vpc", "delete", &mine]);
    assert_eq!(first.namespaces(), [theirs_ns]);
    // Both cannot have the public namespace of one prefix: the second
    // store is told so, and nothing of the first's is touched.
    let igw = first.ok(&["igw", "create"]);
    let again = first.vpc("w");
    first.ok(&["igw", "attach", &igw, "--vpc", &again]);
    let other_igw = second.ok(&["igw", "create"]);
    let stderr = second.fails(&["igw", "attach", &other_igw, "--vpc", &theirs]);
    assert!(
        stderr.contains("another gureum state directory"),
        "{stderr}"
    );
    assert_eq!(first.ok(&["net", "check"]), NOTHING_DIFFERS);
}

/// An image whose kernel the VMM refuses: instances fail at VMM start on
/// any host, after the control plane has placed them.
fn import_stand_in_image(cloud: &Cloud) {
    let dir = cli_support::image_source(cloud.state.path(), "stand-in", "");
    cloud.ok(&["image", "import", dir.to_str().unwrap()]);
}

#[test]
fn an_instance_in_a_subnet_is_a_filtered_port_until_terminated() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let vpc = cloud.vpc("v");
    let ns = cloud.netns(&vpc);
    cloud.subnet("10.0.1.0/24", "s");
    cloud.ok(&["sg", "create", "--vpc", "v", "--name", "web"]);
    let other = cloud.vpc("w");
    cloud.ok(&["sg", "create", "--vpc", &other, "--name", "far"]);

    // Bad placements leave no instance and no tap.
    for (args, says) in [
        (vec!["--subnet", "nope"], "no subnet 'nope'"),
        (
            vec!["--subnet", "s", "--sg", "nope"],
            "no security group 'nope'",
        ),
        (vec!["--subnet", "s", "--sg", "far"], "not in VPC"),
        (
            vec!["--subnet", "s", "--private-ip", "10.0.1.1"],
            "first four and last are reserved",
        ),
        (
            vec!["--subnet", "s", "--private-ip", "10.0.2.9"],
            "not a usable host address",
        ),
        (
            vec!["--subnet", "s", "--private-ip", "10.0.1.9", "--count", "2"],
            "drop --count",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend(args);
        let stderr = cloud.fails(&all);
        assert!(stderr.contains(says), "{all:?}: {stderr}");
    }
    assert_eq!(cloud.count("instance"), 0);
    assert_eq!(ip(&ns, &["-br", "link", "show", "type", "tun"]), "");

    let id = cloud.run_stand_in(&[
        "--subnet",
        "s",
        "--sg",
        "web",
        "--name",
        "a",
        "--private-ip",
        "10.0.1.10",
    ]);
    let tap = format!("t-{}", &id[id.len() - 13..]);
    let i = cloud.json(&["instance", "describe", "a"])[0].clone();
    assert_eq!(i["placement"]["private_ip"], "10.0.1.10");
    assert_eq!(i["placement"]["tap"], tap.as_str());
    assert_eq!(i["network_interfaces"][0]["netns"], ns.as_str());
    assert!(field(&i, "cmdline").ends_with("gureum.ip=10.0.1.10/24 gureum.gw=10.0.1.1"));
    let mac = i["placement"]["mac"].as_str().unwrap().to_owned();
    // The port is on the bridge and filtered before any VMM opens it.
    assert!(ip(&ns, &["link", "show", &tap]).contains("master br-"));
    let ruleset = nft(&ns);
    let chain = format!("port_in_{}", id.replace('-', "_"));
    assert!(ruleset.contains(&chain), "{ruleset}");
    assert!(
        ruleset.contains(&format!("ether saddr != {mac} drop")),
        "{ruleset}"
    );
    assert!(ruleset.contains("ip saddr 10.0.1.10 return"), "{ruleset}");
    // The next instance gets the lowest free address (the first four are reserved).
    let second = cloud.run_stand_in(&["--subnet", "s"]);
    let placed = cloud.json(&["instance", "describe", &second])[0]["placement"].clone();
    assert_eq!(placed["private_ip"], "10.0.1.4");
    assert_eq!(
        placed["security_groups"][0],
        cloud.json(&["vpc", "describe", "v"])["default_security_group"]
    );

    // This host cannot boot the stand-in kernel: the instance stops, and
    // like an EC2 instance keeps its interface while stopped.
    cloud.ok(&[
        "instance",
        "wait",
        &id,
        "--state",
        "stopped",
        "--timeout",
        "60",
    ]);
    assert!(ip(&ns, &["link", "show", &tap]).contains("master br-"));
    let stderr = cloud.fails(&["subnet", "delete", "s"]);
    assert!(stderr.contains(&id), "{stderr}");
    let stderr = cloud.fails(&["sg", "delete", "web"]);
    assert!(stderr.contains(&id), "{stderr}");

    // An elastic IP needs the VPC's gateway, and then maps both ways.
    let eip = cloud.ok(&["eip", "allocate"]);
    let stderr = cloud.fails(&["eip", "associate", &eip, "--instance", "a"]);
    assert!(stderr.contains("no internet gateway attached"), "{stderr}");
    let igw = cloud.ok(&["igw", "create"]);
    cloud.ok(&["igw", "attach", &igw, "--vpc", "v"]);
    cloud.ok(&["eip", "associate", &eip, "--instance", "a"]);
    let address = field(&cloud.json(&["eip", "describe", &eip]), "public_ip");
    assert_eq!(
        cloud.json(&["instance", "describe", "a"])[0]["placement"]["elastic_ip"],
        address.as_str()
    );
    assert!(ip(&ns, &["-4", "addr", "show", "dev", "igw"]).contains(&format!("{address}/32")));
    assert!(nft(&ns).contains("dnat ip to 10.0.1.10"), "{}", nft(&ns));

    cloud.ok(&["instance", "terminate", &id]);
    cloud.ok(&["instance", "terminate", &second]);
    assert_eq!(ip(&ns, &["-br", "link", "show", "type", "tun"]), "");
    assert!(!nft(&ns).contains("port_in_"));
    // The elastic IP is held again, not released.
    assert_eq!(
        cloud.json(&["eip", "describe", &eip])["instance_id"],
        Value::Null
    );
    assert!(!ip(&ns, &["-4", "addr", "show", "dev", "igw"]).contains(&format!("{address}/32")));
    cloud.ok(&["igw", "detach", &igw]);
    cloud.ok(&["subnet", "delete", "s"]);
    cloud.ok(&["sg", "delete", "web"]);
    cloud.ok(&["vpc", "delete", &vpc]);
}

/// The lines of the block `header` opens in an `nft list` listing (a set
/// or a chain), up to its closing brace.
fn nft_block(ruleset: &str, header: &str) -> String {
    let mut lines = ruleset.lines().skip_while(|line| line.trim() != header);
    assert!(lines.next().is_some(), "no {header} in {ruleset}");
    lines
        .take_while(|line| line.trim() != "}")
        .collect::<Vec<_>>()
        .join("\n")
}

/// The member set of security group `group` in the firewall of `netns`.
fn members_of(netns: &str, group: &str) -> String {
    let header = format!("set members_{} {{", group.replace('-', "_"));
    nft_block(&nft(netns), &header)
}

/// The anti-spoofing chain of instance `id`'s port in `netns`.
fn anti_spoof_of(netns: &str, id: &str) -> String {
    let header = format!("chain from_{} {{", id.replace('-', "_"));
    nft_block(&nft(netns), &header)
}

/// Instance `reference`'s placement as `instance describe` shows it.
fn placement_of(cloud: &Cloud, reference: &str) -> Value {
    cloud.json(&["instance", "describe", reference])[0]["placement"].clone()
}

/// VPC "v" with subnet "s" (10.0.1.0/24) and group "web", and instance
/// "a" in them at 10.0.1.4, stopped: the stand-in kernel does not boot,
/// and a stopped instance keeps its port. The IDs of the VPC, the group
/// and the instance.
fn stopped_instance_a(cloud: &Cloud) -> (String, String, String) {
    import_stand_in_image(cloud);
    let vpc = cloud.vpc("v");
    cloud.subnet("10.0.1.0/24", "s");
    let web = cloud.ok(&["sg", "create", "--vpc", "v", "--name", "web"]);
    let id = cloud.run_stand_in(&["--subnet", "s", "--sg", "web", "--name", "a"]);
    cloud.ok(&["instance", "wait", &id, "--state", "stopped"]);
    (vpc, web, id)
}

#[test]
fn instance_modify_replaces_the_groups_and_source_dest_check_in_the_firewall() {
    let cloud = Cloud::new();
    let (vpc, web, id) = stopped_instance_a(&cloud);
    let ns = cloud.netns(&vpc);
    let db = cloud.ok(&["sg", "create", "--vpc", "v", "--name", "db"]);
    assert!(members_of(&ns, &web).contains("10.0.1.4"));
    assert!(!members_of(&ns, &db).contains("10.0.1.4"));

    // The groups are replaced, as AWS's --groups does: in the store, in
    // the member sets and in the port's chains.
    assert_eq!(cloud.ok(&["instance", "modify", "a", "--sg", "db"]), id);
    let placed = placement_of(&cloud, "a");
    assert_eq!(placed["security_groups"], serde_json::json!([db]));
    assert_eq!(placed["source_dest_check"], true);
    assert!(members_of(&ns, &db).contains("10.0.1.4"));
    assert!(!members_of(&ns, &web).contains("10.0.1.4"));
    // The old group has no member left, the new one has.
    let stderr = cloud.fails(&["sg", "delete", "db"]);
    assert!(stderr.contains(&id), "{stderr}");
    cloud.ok(&["sg", "delete", "web"]);

    // Off, the check lets the port send from any address (its MAC still
    // checked); the groups stay.
    let spoof_rule = "ip saddr 10.0.1.4 return";
    assert!(anti_spoof_of(&ns, &id).contains(spoof_rule));
    cloud.ok(&["instance", "modify", &id, "--no-source-dest-check"]);
    let placed = placement_of(&cloud, &id);
    assert_eq!(placed["source_dest_check"], false);
    assert_eq!(placed["security_groups"], serde_json::json!([db]));
    let chain = anti_spoof_of(&ns, &id);
    assert!(!chain.contains(spoof_rule), "{chain}");
    assert!(chain.contains("ether saddr !="), "{chain}");
    let out = cloud.run(&["instance", "describe", "a"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().any(|line| line
            .starts_with("placement.source_dest_check:")
            && line.ends_with("false")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("placement.security_groups.0:") && line.ends_with(&db)),
        "{table}"
    );

    // Both at once; a group named twice is there once.
    let default_group = field(
        &cloud.json(&["vpc", "describe", "v"]),
        "default_security_group",
    );
    // The default group's rule (its members reach each other) joins the
    // port's inbound chain.
    let inbound = format!("chain port_in_{} {{", id.replace('-', "_"));
    let rule = format!("@members_{}", default_group.replace('-', "_"));
    assert!(!nft_block(&nft(&ns), &inbound).contains(&rule));
    cloud.ok(&[
        "instance",
        "modify",
        "a",
        "--sg",
        &default_group,
        "--sg",
        "db",
        "--sg",
        &db,
        "--source-dest-check",
    ]);
    let placed = placement_of(&cloud, "a");
    assert_eq!(
        placed["security_groups"],
        serde_json::json!([default_group, db])
    );
    assert_eq!(placed["source_dest_check"], true);
    assert!(anti_spoof_of(&ns, &id).contains(spoof_rule));
    assert!(members_of(&ns, &default_group).contains("10.0.1.4"));
    assert!(nft_block(&nft(&ns), &inbound).contains(&rule));
    assert!(members_of(&ns, &db).contains("10.0.1.4"));

    // A terminated instance has left its VPC.
    cloud.ok(&["instance", "terminate", &id]);
    let stderr = cloud.fails(&["instance", "modify", &id, "--sg", "db"]);
    assert!(stderr.contains("is terminated"), "{stderr}");
    assert!(!nft(&ns).contains("port_in_"));
    cloud.ok(&["subnet", "delete", "s"]);
    cloud.ok(&["sg", "delete", "db"]);
    cloud.ok(&["vpc", "delete", &vpc]);
}

/// A directory holding an `nft` that fails its second run (and runs the
/// real one otherwise), to make the second Linux step of a change fail.
fn nft_failing_second_run(parent: &std::path::Path) -> String {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("nft"))
        .find(|path| path.is_file())
        .expect("nft in PATH");
    let dir = parent.join("failing-nft");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("nft");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             n=$(( $(cat \"$0.runs\" 2>/dev/null || echo 0) + 1 ))\n\
             echo $n > \"$0.runs\"\n\
             if [ $n = 2 ]; then echo 'planted failure' >&2; exit 1; fi\n\
             exec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();
    let path = std::env::var_os("PATH").unwrap();
    let mut dirs = vec![dir];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap().into_string().unwrap()
}

#[test]
fn a_refused_instance_modify_changes_nothing() {
    let cloud = Cloud::new();
    let (vpc, web, id) = stopped_instance_a(&cloud);
    let ns = cloud.netns(&vpc);
    cloud.ok(&["sg", "create", "--vpc", "v", "--name", "db"]);
    let other = cloud.vpc("w");
    let far = cloud.ok(&["sg", "create", "--vpc", &other, "--name", "far"]);
    let plain = cloud.run_stand_in(&["--name", "plain", "--no-network"]);
    let before = placement_of(&cloud, "a");
    let ruleset = nft(&ns);

    for (args, says) in [
        (vec!["--sg", "nope"], "no security group 'nope'".to_owned()),
        (
            vec!["--sg", "db", "--sg", "nope"],
            "no security group 'nope'".to_owned(),
        ),
        (
            vec!["--sg", "far", "--no-source-dest-check"],
            format!("security group {far} is in VPC {other}, not in VPC {vpc}"),
        ),
    ] {
        let mut all = vec!["instance", "modify", "a"];
        all.extend(args);
        let stderr = cloud.fails(&all);
        assert!(stderr.contains(&says), "{all:?}: {stderr}");
    }
    let stderr = cloud.fails(&["instance", "modify", "plain", "--sg", "web"]);
    assert!(
        stderr.contains(&format!("instance {plain} is not in a subnet")),
        "{stderr}"
    );
    assert_eq!(
        cloud.json(&["instance", "describe", "plain"])[0]["placement"],
        Value::Null
    );
    // Nothing to change is a usage error.
    let out = cloud.run(&["instance", "modify", "a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("required arguments"));
    let out = cloud.run(&[
        "instance",
        "modify",
        "a",
        "--source-dest-check",
        "--no-source-dest-check",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // nft takes the new ruleset (run 1), then fails (run 2, its listing):
    // the record goes back, and the next pass finds the ruleset changed
    // (run 3), puts the old one back (4) and lists it (5).
    let path = nft_failing_second_run(cloud.state.path());
    let out = cloud
        .command(&[
            "instance",
            "modify",
            "a",
            "--sg",
            "db",
            "--no-source-dest-check",
        ])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("planted failure"), "{stderr}");
    let runs = std::fs::read_to_string(cloud.state.path().join("failing-nft/nft.runs")).unwrap();
    assert_eq!(runs.trim(), "5", "the groups were set, then set back");

    assert_eq!(placement_of(&cloud, "a"), before);
    assert_eq!(before["security_groups"], serde_json::json!([web]));
    assert_eq!(nft(&ns), ruleset);
    assert!(members_of(&ns, &web).contains(&field(&before, "private_ip")));
    cloud.ok(&["instance", "terminate", &id]);
    cloud.ok(&["instance", "terminate", &plain]);
}

#[test]
fn sg_default_is_the_default_group_of_the_subnet_s_vpc() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let first = cloud.vpc("v");
    let second = cloud.ok(&["vpc", "create", "--cidr", "10.1.0.0/16", "--name", "w"]);
    cloud.ok(&[
        "subnet",
        "create",
        "--vpc",
        "w",
        "--cidr",
        "10.1.1.0/24",
        "--name",
        "s",
    ]);
    let id = cloud.run_stand_in(&["--subnet", "s", "--sg", "default"]);
    let default_of = |vpc: &str| {
        field(
            &cloud.json(&["vpc", "describe", vpc]),
            "default_security_group",
        )
    };
    let groups = placement_of(&cloud, &id)["security_groups"].clone();
    assert_eq!(groups, serde_json::json!([default_of(&second)]));
    assert_ne!(default_of(&first), default_of(&second));
}

#[test]
fn a_count_is_all_of_its_minimum_or_nothing_and_every_id_made_is_printed() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let vpc = cloud.vpc("v");
    let ns = cloud.netns(&vpc);
    // 16 addresses, the first four and the last reserved: 11 for instances.
    cloud.subnet("10.0.1.0/28", "s");
    cloud.run_stand_in(&["--subnet", "s"]);
    let taps = || {
        ip(&ns, &["-br", "link", "show", "type", "tun"])
            .lines()
            .count()
    };
    assert_eq!(taps(), 1);

    // 10 free, 12 asked for: none made, the 10 made on the way taken back.
    let out = cloud.run(&["run", "--subnet", "s", "--count", "12"]);
    assert_eq!(out.status.code(), Some(6), "a limit exceeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only 10 of --count 12 instances could be made") && err.contains("none were"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing made, nothing printed");
    assert_eq!(cloud.count("instance"), 1);
    assert_eq!(taps(), 1);
    assert!(
        std::fs::read_dir(cloud.state.path().join("instances"))
            .unwrap()
            .count()
            == 1
    );

    // At least 1, up to 12: the 10 that fit, each printed.
    let out = cloud.run(&["run", "--subnet", "s", "--count", "1:12"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("launched 10 of up to 12"), "{err}");
    let ids = String::from_utf8(out.stdout).unwrap();
    assert_eq!(ids.lines().count(), 10, "{ids}");
    assert_eq!(cloud.count("instance"), 11);
    assert_eq!(taps(), 11);
}

/// The records of `noun list`.
fn records(cloud: &Cloud, noun: &str) -> Vec<Value> {
    cloud.json(&[noun, "list"]).as_array().unwrap().clone()
}

/// The one record of `noun list`; there must be exactly one.
fn only(cloud: &Cloud, noun: &str) -> Value {
    let all = records(cloud, noun);
    assert_eq!(all.len(), 1, "{noun}s: {all:?}");
    all[0].clone()
}

/// Checks that the store holds exactly one default VPC, as AWS makes it,
/// realised in Linux; its ID and its subnet's.
fn the_default_vpc(cloud: &Cloud) -> (String, String) {
    let vpc = only(cloud, "vpc");
    assert_eq!(vpc["is_default"], true, "{vpc}");
    assert_eq!(vpc["cidr"], "172.31.0.0/16");
    assert_eq!(vpc["tags"], serde_json::json!({}), "no Name tag, as AWS's");
    let id = field(&vpc, "id");
    let subnet = only(cloud, "subnet");
    assert_eq!(subnet["default_for_az"], true, "{subnet}");
    assert_eq!(subnet["cidr"], "172.31.0.0/20");
    assert_eq!(subnet["vpc_id"], id.as_str());
    assert_eq!(subnet["availability_zone"], "local-1a");
    assert_eq!(subnet["map_public_ip_on_launch"], true, "as AWS's");
    let igw = only(cloud, "igw");
    assert_eq!(igw["vpc_id"], id.as_str());
    let table = only(cloud, "route-table");
    assert_eq!(table["main"], true);
    assert_eq!(
        table["routes"],
        serde_json::json!([
            {"destination": "172.31.0.0/16", "target": "local"},
            {"destination": "0.0.0.0/0", "target": field(&igw, "id")},
        ])
    );
    let group = only(cloud, "sg");
    assert_eq!(group["group_name"], "default");
    assert_eq!(group["vpc_id"], id.as_str());
    // Realised: the subnet's router on its bridge, the gateway's link,
    // and nothing differs from the records.
    let ns = cloud.netns(&id);
    assert!(ip(&ns, &["-4", "addr"]).contains("172.31.0.1/20"));
    assert!(ip(&ns, &["link"]).contains("igw"));
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);
    (id, field(&subnet, "id"))
}

#[test]
fn a_launch_that_names_no_network_makes_one_default_vpc_and_the_next_reuses_it() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    assert!(records(&cloud, "vpc").is_empty());
    let a = cloud.run_stand_in(&["--name", "a"]);
    let (vpc, subnet) = the_default_vpc(&cloud);
    let i = cloud.json(&["instance", "describe", &a])[0].clone();
    let placed = &i["placement"];
    assert_eq!(placed["vpc_id"], vpc.as_str());
    assert_eq!(placed["subnet_id"], subnet.as_str());
    // The lowest free address (the first four are reserved), the VPC's
    // default group, as a --subnet launch gets.
    assert_eq!(placed["private_ip"], "172.31.0.4");
    assert_eq!(
        placed["security_groups"],
        serde_json::json!([field(&only(&cloud, "sg"), "id")])
    );
    assert!(field(&i, "cmdline").ends_with("gureum.ip=172.31.0.4/20 gureum.gw=172.31.0.1"));
    let tap = field(placed, "tap");
    assert!(ip(&cloud.netns(&vpc), &["link", "show", &tap]).contains("master br-"));

    // The next launch with no network, and one with a group of the
    // default VPC named but no subnet, go to the same default subnet.
    let b = cloud.run_stand_in(&[]);
    let c = cloud.run_stand_in(&["--sg", "default", "--private-ip", "172.31.0.9"]);
    assert_eq!(the_default_vpc(&cloud), (vpc.clone(), subnet.clone()));
    assert_eq!(placement_of(&cloud, &b)["private_ip"], "172.31.0.5");
    assert_eq!(placement_of(&cloud, &c)["private_ip"], "172.31.0.9");

    // There is one: making another is refused, as AWS's
    // DefaultVpcAlreadyExists.
    let stderr = cloud.fails_with(5, &["vpc", "create-default"]);
    assert!(
        stderr.contains(&format!("default VPC {vpc} already exists")),
        "{stderr}"
    );
    assert_eq!(records(&cloud, "vpc").len(), 1);
    let table = cloud.ok(&["vpc", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&vpc) && l.contains(" yes ")),
        "{table}"
    );

    // --tap and --no-network are not VPC launches.
    let usage = cloud.run(&["run", "--no-network", "--sg", "default"]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = cloud.run(&["run", "--no-network", "--tap", "x"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn two_launches_at_once_make_one_default_vpc() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let launches: Vec<_> = (0..2)
        .map(|_| {
            cloud
                .command(&["run"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut addresses = Vec::new();
    for launch in launches {
        let out = launch.wait_with_output().unwrap();
        // Each made its instance; the stand-in kernel then fails to boot.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("did not start"), "{stderr}");
        let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        addresses.push(placement_of(&cloud, &id)["private_ip"].clone());
    }
    the_default_vpc(&cloud);
    addresses.sort_by_key(Value::to_string);
    assert_eq!(addresses, ["172.31.0.4", "172.31.0.5"]);
}

#[test]
fn a_default_vpc_linux_refuses_is_not_recorded_and_the_retry_makes_it() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let path = nft_failing_second_run(cloud.state.path());
    let out = cloud.command(&["run"]).env("PATH", &path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("planted failure"), "{stderr}");
    // Neither its records nor the fact that it was made stay: the retry
    // makes it, rather than taking it for deleted.
    for noun in ["vpc", "subnet", "igw", "route-table", "sg", "instance"] {
        assert!(records(&cloud, noun).is_empty(), "{noun}");
    }
    cloud.run_stand_in(&[]);
    the_default_vpc(&cloud);
}

#[test]
fn a_default_vpc_whose_namespace_is_gone_is_rebuilt_by_the_next_launch_not_made_again() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    cloud.run_stand_in(&[]);
    let (vpc, _) = the_default_vpc(&cloud);
    // As after a crash between the commit and Linux, or a host reboot.
    ip_cmd(&["netns", "del", &cloud.netns(&vpc)]);
    let second = cloud.run_stand_in(&[]);
    assert_eq!(the_default_vpc(&cloud).0, vpc);
    assert_eq!(placement_of(&cloud, &second)["private_ip"], "172.31.0.5");
}

#[test]
fn a_deleted_default_vpc_is_not_made_again_until_create_default() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let first = cloud.run_stand_in(&[]);
    let (vpc, subnet) = the_default_vpc(&cloud);
    let igw = field(&only(&cloud, "igw"), "id");
    let table = field(&only(&cloud, "route-table"), "id");
    // Deleted as any VPC is, after what is in it.
    cloud.ok(&["instance", "terminate", &first]);
    cloud.ok(&["subnet", "delete", &subnet]);
    cloud.ok(&[
        "route-table",
        "delete-route",
        &table,
        "--destination",
        "0.0.0.0/0",
    ]);
    cloud.ok(&["igw", "detach", &igw]);
    cloud.ok(&["igw", "delete", &igw]);
    cloud.ok(&["vpc", "delete", &vpc]);
    assert!(cloud.namespaces().is_empty(), "{:?}", cloud.namespaces());

    // A launch with no network says what to do, and makes nothing.
    let instances = records(&cloud, "instance").len();
    let stderr = cloud.fails_with(4, &["run"]);
    assert!(
        stderr.contains(&format!("default VPC {vpc} was deleted"))
            && stderr.contains("gureum vpc create-default"),
        "{stderr}"
    );
    assert_eq!(records(&cloud, "instance").len(), instances);
    assert!(records(&cloud, "vpc").is_empty());
    assert!(cloud.namespaces().is_empty());

    // An instance with no interface needs no VPC.
    let plain = cloud.run_stand_in(&["--no-network"]);
    let i = cloud.json(&["instance", "describe", &plain])[0].clone();
    assert_eq!(i["network_interfaces"], serde_json::json!([]));
    assert_eq!(i["placement"], Value::Null);
    assert!(records(&cloud, "vpc").is_empty());

    // create-default makes a new one, which launches use again.
    let made = cloud.ok(&["vpc", "create-default"]);
    let (again, _) = the_default_vpc(&cloud);
    assert_eq!(made, again);
    assert_ne!(again, vpc);
    let next = cloud.run_stand_in(&[]);
    assert_eq!(placement_of(&cloud, &next)["vpc_id"], again.as_str());
}

/// Waits until Linux matches the records (`net check`): an instance's
/// supervisor converges its VPC after recording it stopped, so a command
/// that saw it stopped may return before.
fn settled(cloud: &Cloud) {
    let start = std::time::Instant::now();
    while !cloud.run(&["net", "check"]).status.success() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "Linux never matched the records: {}",
            cloud.run(&["net", "check"]).stdout.escape_ascii()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The pool's lowest free address, as the next elastic IP takes it
/// (released again).
fn next_free_public_address(cloud: &Cloud) -> String {
    let eip = cloud.ok(&["eip", "allocate"]);
    let address = field(&cloud.json(&["eip", "describe", &eip]), "public_ip");
    cloud.ok(&["eip", "release", &eip]);
    address
}

#[test]
fn instances_get_public_addresses_as_their_subnet_says_and_give_them_back_at_stop() {
    let cloud = Cloud::new();
    import_stand_in_image(&cloud);
    let a = cloud.run_stand_in(&["--name", "a"]);
    let (vpc, subnet) = the_default_vpc(&cloud);
    let ns = cloud.netns(&vpc);
    // Given one at launch (the default subnet maps them); the stand-in
    // kernel stopped it, and the change that did gave it back: its
    // mapping goes, and the pool has nothing but the gateway's (.2).
    let placed = placement_of(&cloud, &a);
    assert_eq!(placed["auto_public_ip"], true, "{placed}");
    assert_eq!(placed["public_ip"], Value::Null, "{placed}");
    settled(&cloud);
    assert!(!nft(&ns).contains("dnat ip to 172.31.0.4"), "{}", nft(&ns));
    assert_eq!(next_free_public_address(&cloud), "203.0.113.3");
    // Each start gives one and each stop takes it back.
    let start = cloud.run(&["instance", "start", "a"]);
    assert!(!start.status.success(), "the stand-in kernel cannot run");
    cloud.ok(&["instance", "wait", "a", "--state", "stopped"]);
    assert_eq!(placement_of(&cloud, &a)["public_ip"], Value::Null);
    settled(&cloud);
    assert_eq!(next_free_public_address(&cloud), "203.0.113.3");

    // An elastic IP is its public address, mapped while it is stopped.
    let eip = cloud.ok(&["eip", "allocate"]);
    let address = field(&cloud.json(&["eip", "describe", &eip]), "public_ip");
    cloud.ok(&["eip", "associate", &eip, "--instance", "a"]);
    let list = cloud.ok(&["instance", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&a) && l.ends_with(&format!(" {address}"))),
        "{list}"
    );
    assert!(nft(&ns).contains("dnat ip to 172.31.0.4"), "{}", nft(&ns));
    // Taken off a stopped instance, it leaves none: the next start gives one.
    cloud.ok(&["eip", "disassociate", &eip]);
    assert_eq!(placement_of(&cloud, &a)["public_ip"], Value::Null);
    assert!(!nft(&ns).contains("dnat ip to 172.31.0.4"), "{}", nft(&ns));
    cloud.ok(&["eip", "release", &eip]);

    // The launch decides over the subnet.
    let b = cloud.run_stand_in(&["--no-associate-public-ip-address"]);
    assert_eq!(placement_of(&cloud, &b)["auto_public_ip"], false);
    let both = cloud.run(&[
        "run",
        "--associate-public-ip-address",
        "--no-associate-public-ip-address",
    ]);
    assert_eq!(both.status.code(), Some(2));
    cloud.ok(&["subnet", "modify", &subnet, "--no-map-public-ip-on-launch"]);
    assert_eq!(
        cloud.json(&["subnet", "describe", &subnet])["map_public_ip_on_launch"],
        false
    );
    let c = cloud.run_stand_in(&[]);
    assert_eq!(placement_of(&cloud, &c)["auto_public_ip"], false);
    let d = cloud.run_stand_in(&["--associate-public-ip-address"]);
    assert_eq!(placement_of(&cloud, &d)["auto_public_ip"], true);
    cloud.ok(&["subnet", "modify", &subnet, "--map-public-ip-on-launch"]);
    let table = cloud.ok(&["subnet", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&subnet) && l.ends_with("on launch")),
        "{table}"
    );
    let usage = cloud.run(&["subnet", "modify", &subnet]);
    assert_eq!(usage.status.code(), Some(2));

    // A created subnet maps none. Asked for where the VPC has no gateway,
    // an address is refused (it would lead nowhere) and nothing is made;
    // the subnet's own setting gives none there.
    cloud.vpc("v");
    let s = cloud.subnet("10.0.1.0/24", "s");
    assert_eq!(
        cloud.json(&["subnet", "describe", "s"])["map_public_ip_on_launch"],
        false
    );
    let before = cloud.count("instance");
    let stderr = cloud.fails(&["run", "--subnet", "s", "--associate-public-ip-address"]);
    assert!(stderr.contains("has no internet gateway"), "{stderr}");
    assert_eq!(cloud.count("instance"), before);
    cloud.ok(&["subnet", "modify", &s, "--map-public-ip-on-launch"]);
    let e = cloud.run_stand_in(&["--subnet", "s"]);
    let placed = placement_of(&cloud, &e);
    assert_eq!(placed["auto_public_ip"], true, "{placed}");
    assert_eq!(placed["public_ip"], Value::Null, "{placed}");
    settled(&cloud);
    // Terminated, they leave nothing; the pool has the gateway's only.
    for id in [&a, &b, &c, &d, &e] {
        cloud.ok(&["instance", "terminate", id]);
    }
    assert_eq!(cloud.ok(&["net", "check"]), NOTHING_DIFFERS);
    assert_eq!(next_free_public_address(&cloud), "203.0.113.3");
}
