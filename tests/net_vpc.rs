//! VPC networking on real Linux: namespaces, bridges, routes and nftables,
//! with "instances" that are namespaces holding one end of a veth pair (a
//! guest's stand-in) and a "public" namespace as the fake internet.
//!
//! Needs root, `nft` (package nftables) and `busybox` (for ping). Every
//! namespace a test makes starts with a prefix unique to the test, and a
//! guard removes them all, even when the test fails. Traffic goes only to
//! addresses inside those namespaces.
//!
//! The restore tests at the end also run the real binary (`gureum net
//! restore`) on a private state directory with the test's prefix.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use gureum::net::cidr::Ipv4Cidr;
use gureum::net::cleanup;
use gureum::net::link::{MacAddr, Route, Rtnl};
use gureum::net::netns::{self, Netns};
use gureum::net::nft;
use gureum::net::nft::security_group::{Peer, PortRange, Protocol, Rule, SecurityGroup};
use gureum::net::port::Port;
use gureum::net::vpc::{self, Holdings, Vpc};
use serde_json::{Value, json};

mod cli_support;

use cli_support::Gureum;

const PUBLIC_ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const TIMEOUT: Duration = Duration::from_millis(700);

/// A test's namespaces: all of them are removed when it is dropped.
struct Lab {
    prefix: String,
}

impl Lab {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "grt{}x{}-",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Self { prefix }
    }

    fn vpc(&self, id: &str, cidr: &str) -> Vpc {
        Vpc::create(&self.prefix, id, cidr.parse().unwrap()).unwrap()
    }

    /// A VPC 10.0.0.0/16 with subnet "subnet-a", 10.0.1.0/24.
    fn vpc_with_subnet(&self, id: &str) -> Vpc {
        let mut vpc = self.vpc(id, "10.0.0.0/16");
        vpc.add_subnet("subnet-a", "10.0.1.0/24".parse().unwrap())
            .unwrap();
        vpc
    }

    fn netns(&self, name: &str) -> Netns {
        let netns = Netns::create(&format!("{}{name}", self.prefix)).unwrap();
        Rtnl::open(&netns).unwrap().set_up("lo").unwrap();
        netns
    }

    /// An instance: a namespace whose eth0 is the far end of a veth whose
    /// near end is the port `t-NAME` in the VPC namespace.
    fn instance(
        &self,
        vpc: &mut Vpc,
        name: &str,
        subnet: &str,
        ip: Ipv4Addr,
        groups: &[&str],
    ) -> Netns {
        let netns = self.netns(name);
        let port = port(name, subnet, ip, groups);
        plug(vpc.netns(), &netns, &port);
        vpc.attach_port(port).unwrap();
        netns
    }

    fn public(&self) -> Netns {
        self.netns("pub")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in netns::list(&self.prefix).unwrap_or_default() {
            let _ = netns::remove(&name);
        }
    }
}

/// The port of instance `name` ("i-NAME" on link "t-NAME"), with a MAC
/// made from its address.
fn port(name: &str, subnet: &str, ip: Ipv4Addr, groups: &[&str]) -> Port {
    let [_, b, c, d] = ip.octets();
    Port {
        id: format!("i-{name}"),
        link: format!("t-{name}"),
        subnet: subnet.to_owned(),
        mac: MacAddr([0x02, 0, b, c, d, 0x01]),
        ip,
        groups: groups.iter().map(|group| (*group).to_owned()).collect(),
        source_dest_check: true,
    }
}

/// Makes `port`'s link in namespace `vpc`: a veth whose far end is eth0
/// of instance namespace `netns`, with the port's MAC and address and a
/// default route to its subnet's router.
fn plug(vpc: &Netns, netns: &Netns, port: &Port) {
    let vpc_rtnl = Rtnl::open(vpc).unwrap();
    vpc_rtnl.add_veth(&port.link, "eth0").unwrap();
    vpc_rtnl.move_to("eth0", netns).unwrap();
    let rtnl = Rtnl::open(netns).unwrap();
    rtnl.set_mac("eth0", port.mac).unwrap();
    let subnet_cidr = Ipv4Cidr::containing(port.ip, 24).unwrap();
    rtnl.add_address("eth0", port.ip, 24).unwrap();
    rtnl.set_up("eth0").unwrap();
    rtnl.add_route(&Route {
        destination: gureum::net::cidr::ANY,
        gateway: gureum::net::cidr::router(subnet_cidr),
        device: "eth0",
        table: 254,
    })
    .unwrap();
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Peer {
    Peer::Cidr(text.parse().unwrap())
}

/// Asserts that gureum left no link in `netns`.
fn assert_only_loopback(netns: &Netns) {
    let links = Rtnl::open(netns).unwrap().links().unwrap();
    let names: Vec<&str> = links.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["lo"]);
}

fn ping(from: &Netns, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            from.name(),
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
        ])
        .arg(to.to_string())
        .output()
        .unwrap()
        .status
        .success()
}

/// A TCP server in a namespace that answers each connection with the
/// address it came from, until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(netns: &Netns, address: Ipv4Addr, port: u16) -> Self {
        // A socket stays in the namespace it was made in, whichever thread
        // then uses it.
        let listener = netns
            .run(|| TcpListener::bind((address, port)))
            .unwrap()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.write_all(peer.ip().to_string().as_bytes());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connects from `from` (optionally from source address `source`) and
/// returns what the server said: the address it saw us come from.
fn connect(from: &Netns, source: Option<Ipv4Addr>, to: Ipv4Addr, port: u16) -> Option<String> {
    from.run(move || {
        let target = SocketAddr::V4(SocketAddrV4::new(to, port));
        let mut stream = match source {
            None => TcpStream::connect_timeout(&target, TIMEOUT).ok()?,
            Some(source) => {
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                        .ok()?;
                socket
                    .bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
                    .ok()?;
                socket.connect_timeout(&target.into(), TIMEOUT).ok()?;
                TcpStream::from(socket)
            }
        };
        stream.set_read_timeout(Some(TIMEOUT)).ok()?;
        let mut said = String::new();
        stream.read_to_string(&mut said).ok()?;
        Some(said)
    })
    .unwrap()
}

/// A new group (all outbound) that also allows one kind of inbound traffic.
fn allowing(id: &str, protocol: Protocol, port: Option<u16>, peer: Peer) -> SecurityGroup {
    let mut group = SecurityGroup::new(id);
    let ports = port.map(PortRange::single);
    group
        .inbound
        .push(Rule::new(protocol, ports, peer).unwrap());
    group
}

#[test]
fn instances_ping_within_a_subnet_and_across_subnets() {
    let lab = Lab::new();
    let mut vpc = lab.vpc_with_subnet("vpc-a");
    vpc.add_subnet("subnet-b", "10.0.2.0/24".parse().unwrap())
        .unwrap();
    vpc.put_group(allowing("sg-a", Protocol::Icmp, None, cidr("10.0.0.0/16")))
        .unwrap();
    let one = lab.instance(&mut vpc, "one", "subnet-a", ip("10.0.1.4"), &["sg-a"]);
    let _two = lab.instance(&mut vpc, "two", "subnet-a", ip("10.0.1.5"), &["sg-a"]);
    let three = lab.instance(&mut vpc, "three", "subnet-b", ip("10.0.2.4"), &["sg-a"]);
    assert!(ping(&one, ip("10.0.1.1")), "router");
    assert!(ping(&one, ip("10.0.1.5")), "same subnet");
    assert!(ping(&one, ip("10.0.2.4")), "other subnet");
    assert!(ping(&three, ip("10.0.1.4")), "back");
    assert!(!ping(&one, ip("10.0.1.9")), "no such instance");
    vpc.delete().unwrap();
}

#[test]
fn security_groups_allow_one_port_statefully_and_change_at_once() {
    let lab = Lab::new();
    let mut vpc = lab.vpc_with_subnet("vpc-a");
    let mut web = allowing("sg-web", Protocol::Tcp, Some(8080), cidr("10.0.0.0/16"));
    vpc.put_group(web.clone()).unwrap();
    vpc.put_group(SecurityGroup::new("sg-client")).unwrap();
    let client = lab.instance(
        &mut vpc,
        "client",
        "subnet-a",
        ip("10.0.1.4"),
        &["sg-client"],
    );
    let server = lab.instance(&mut vpc, "server", "subnet-a", ip("10.0.1.5"), &["sg-web"]);
    let _open = Server::start(&server, ip("10.0.1.5"), 8080);
    let _closed = Server::start(&server, ip("10.0.1.5"), 8081);

    // The reply comes back although the client's group allows no inbound.
    assert_eq!(
        connect(&client, None, ip("10.0.1.5"), 8080).as_deref(),
        Some("10.0.1.4")
    );
    assert_eq!(connect(&client, None, ip("10.0.1.5"), 8081), None);
    // Nothing comes in to the client, whose group allows no inbound.
    let _client_server = Server::start(&client, ip("10.0.1.4"), 8080);
    assert_eq!(connect(&server, None, ip("10.0.1.4"), 8080), None);

    // A rule change applies to the running port.
    web.inbound.push(
        Rule::new(
            Protocol::Tcp,
            Some(PortRange::single(8081)),
            Peer::Group("sg-client".into()),
        )
        .unwrap(),
    );
    vpc.put_group(web).unwrap();
    assert!(connect(&client, None, ip("10.0.1.5"), 8081).is_some());

    // "Denying" outbound: remove the client group's allow-all egress.
    let mut silent = SecurityGroup::new("sg-client");
    silent.outbound.clear();
    vpc.put_group(silent).unwrap();
    assert_eq!(connect(&client, None, ip("10.0.1.5"), 8080), None);
    vpc.delete().unwrap();
}

#[test]
fn a_spoofed_source_gets_nothing_through_unless_the_check_is_off() {
    let lab = Lab::new();
    let mut vpc = lab.vpc_with_subnet("vpc-a");
    vpc.put_group(allowing(
        "sg-open",
        Protocol::All,
        None,
        cidr("10.0.0.0/16"),
    ))
    .unwrap();
    let liar = lab.instance(&mut vpc, "liar", "subnet-a", ip("10.0.1.4"), &["sg-open"]);
    let server = lab.instance(&mut vpc, "server", "subnet-a", ip("10.0.1.5"), &["sg-open"]);
    let _server = Server::start(&server, ip("10.0.1.5"), 80);
    Rtnl::open(&liar)
        .unwrap()
        .add_address("eth0", ip("10.0.1.9"), 24)
        .unwrap();

    assert_eq!(
        connect(&liar, Some(ip("10.0.1.4")), ip("10.0.1.5"), 80).as_deref(),
        Some("10.0.1.4")
    );
    assert_eq!(
        connect(&liar, Some(ip("10.0.1.9")), ip("10.0.1.5"), 80),
        None
    );
    assert!(!ping(&server, ip("10.0.1.9")));

    vpc.set_source_dest_check("i-liar", false).unwrap();
    // The router's neighbour entry for .9 failed while the check was on;
    // it takes a retry for the next ARP exchange to settle it.
    let spoofed = (0..3).find_map(|_| connect(&liar, Some(ip("10.0.1.9")), ip("10.0.1.5"), 80));
    assert_eq!(spoofed.as_deref(), Some("10.0.1.9"));
    vpc.delete().unwrap();
}

#[test]
fn the_internet_gateway_nats_public_subnets_and_elastic_ips() {
    let lab = Lab::new();
    let public = lab.public();
    let mut vpc = lab.vpc_with_subnet("vpc-a");
    vpc.put_group(allowing(
        "sg-ssh",
        Protocol::Tcp,
        Some(22),
        cidr("0.0.0.0/0"),
    ))
    .unwrap();
    let one = lab.instance(&mut vpc, "one", "subnet-a", ip("10.0.1.4"), &["sg-ssh"]);
    let _ssh = Server::start(&one, ip("10.0.1.4"), 22);

    // A gateway alone does not make the subnet public: its route does.
    vpc.attach_gateway(&public, ip("203.0.113.2"), PUBLIC_ROUTER)
        .unwrap();
    // The public end holds the next hop's address: a server there is "the
    // internet".
    let _web = Server::start(&public, PUBLIC_ROUTER, 80);
    assert_eq!(connect(&one, None, PUBLIC_ROUTER, 80), None);
    vpc.set_subnet_internet("subnet-a", true).unwrap();
    assert_eq!(
        connect(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.2")
    );
    // Nothing comes in unasked, even to the gateway address.
    assert_eq!(connect(&public, None, ip("203.0.113.2"), 22), None);

    vpc.associate_address(ip("203.0.113.10"), "i-one").unwrap();
    assert_eq!(
        connect(&public, None, ip("203.0.113.10"), 22).as_deref(),
        Some(PUBLIC_ROUTER.to_string().as_str())
    );
    assert_eq!(
        connect(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.10")
    );
    assert!(matches!(
        vpc.detach_gateway(),
        Err(vpc::Error::InUse { .. })
    ));

    vpc.disassociate_address(ip("203.0.113.10")).unwrap();
    assert_eq!(connect(&public, None, ip("203.0.113.10"), 22), None);
    vpc.set_subnet_internet("subnet-a", false).unwrap();
    assert_eq!(connect(&one, None, PUBLIC_ROUTER, 80), None);
    vpc.detach_gateway().unwrap();
    assert_only_loopback(&public);
    vpc.delete().unwrap();
}

#[test]
fn two_vpcs_with_one_block_work_and_cannot_reach_each_other() {
    let lab = Lab::new();
    let public = lab.public();
    let mut a = lab.vpc("vpc-a", "10.0.0.0/16");
    let mut b = lab.vpc("vpc-b", "10.0.0.0/16");
    for (vpc, gateway) in [(&mut a, "203.0.113.2"), (&mut b, "203.0.113.3")] {
        vpc.add_subnet("subnet-a", "10.0.1.0/24".parse().unwrap())
            .unwrap();
        vpc.put_group(allowing("sg-open", Protocol::All, None, cidr("0.0.0.0/0")))
            .unwrap();
        vpc.attach_gateway(&public, ip(gateway), PUBLIC_ROUTER)
            .unwrap();
        vpc.set_subnet_internet("subnet-a", true).unwrap();
    }
    let in_a = lab.instance(&mut a, "a1", "subnet-a", ip("10.0.1.4"), &["sg-open"]);
    let in_b = lab.instance(&mut b, "b1", "subnet-a", ip("10.0.1.5"), &["sg-open"]);
    let b_neighbour = lab.instance(&mut b, "b2", "subnet-a", ip("10.0.1.4"), &["sg-open"]);
    let _server = Server::start(&in_b, ip("10.0.1.5"), 80);
    let _web = Server::start(&public, PUBLIC_ROUTER, 80);

    assert_eq!(
        connect(&b_neighbour, None, ip("10.0.1.5"), 80).as_deref(),
        Some("10.0.1.4")
    );
    assert_eq!(connect(&in_a, None, ip("10.0.1.5"), 80), None);
    assert_eq!(
        connect(&in_a, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.2")
    );
    assert_eq!(
        connect(&b_neighbour, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.3")
    );
    // Nor through the internet side: a gateway address lets nothing in.
    assert_eq!(connect(&in_a, None, ip("203.0.113.3"), 80), None);
    a.delete().unwrap();
    b.delete().unwrap();
}

#[test]
fn a_failing_change_leaves_nothing_behind() {
    let lab = Lab::new();
    let public = lab.public();
    let mut vpc = lab.vpc("vpc-a", "10.0.0.0/16");
    let before = vpc.firewall_script();
    // Inject a failure halfway: the public end's name is taken there, so
    // moving it fails after the veth pair was made.
    let public_rtnl = Rtnl::open(&public).unwrap();
    public_rtnl.add_bridge(&vpc.gateway_peer_name()).unwrap();
    let error = vpc
        .attach_gateway(&public, ip("203.0.113.2"), PUBLIC_ROUTER)
        .unwrap_err();
    assert!(error.to_string().contains("cannot move link"), "{error}");
    let vpc_rtnl = Rtnl::open(vpc.netns()).unwrap();
    assert_eq!(vpc_rtnl.index(vpc::GATEWAY_LINK).unwrap(), None);
    assert_eq!(vpc_rtnl.index(&vpc.gateway_peer_name()).unwrap(), None);
    assert_eq!(vpc.firewall_script(), before);
    // Once the obstacle is gone, the same change works.
    public_rtnl.delete(&vpc.gateway_peer_name()).unwrap();
    vpc.attach_gateway(&public, ip("203.0.113.2"), PUBLIC_ROUTER)
        .unwrap();

    // A refused firewall (a port whose link does not exist) changes nothing.
    vpc.add_subnet("subnet-a", "10.0.1.0/24".parse().unwrap())
        .unwrap();
    vpc.put_group(SecurityGroup::new("sg-a")).unwrap();
    let before = vpc.firewall_script();
    let port = Port {
        id: "i-ghost".into(),
        link: "t-ghost".into(),
        subnet: "subnet-a".into(),
        mac: MacAddr([2, 0, 0, 0, 0, 9]),
        ip: ip("10.0.1.9"),
        groups: vec!["sg-a".into()],
        source_dest_check: true,
    };
    assert!(vpc.attach_port(port).is_err());
    assert_eq!(vpc.firewall_script(), before);
    vpc.delete().unwrap();
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let lab = Lab::new();
    let err = Vpc::create(&lab.prefix, "vpc-a", "10.0.0.0/8".parse().unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "10.0.0.0/8: a VPC netmask must be /16 to /28"
    );
    let mut vpc = lab.vpc_with_subnet("vpc-a");
    let err = vpc
        .add_subnet("subnet-b", "10.0.1.128/25".parse().unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "subnet 10.0.1.128/25 overlaps subnet 10.0.1.0/24 of the same VPC: pick a block that does not"
    );
    assert!(matches!(
        vpc.set_subnet_internet("subnet-a", true),
        Err(vpc::Error::NoGateway { .. })
    ));
    let err = Vpc::create(&lab.prefix, "vpc-a", "10.0.0.0/16".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    vpc.delete().unwrap();
}

#[test]
fn deleting_everything_leaves_nothing_and_the_check_finds_orphans() {
    let lab = Lab::new();
    let public = lab.public();
    let mut kept = lab.vpc("vpc-kept", "10.0.0.0/16");
    kept.add_subnet("subnet-a", "10.0.1.0/24".parse().unwrap())
        .unwrap();
    kept.attach_gateway(&public, ip("203.0.113.2"), PUBLIC_ROUTER)
        .unwrap();
    let mut lost = lab.vpc("vpc-lost", "10.0.0.0/16");
    lost.attach_gateway(&public, ip("203.0.113.3"), PUBLIC_ROUTER)
        .unwrap();
    let lost_name = lost.netns().name().to_owned();
    let lost_peer = lost.gateway_peer_name();
    assert!(
        nft::tables(lost.netns())
            .unwrap()
            .contains(&("inet".into(), "gureum".into()))
    );
    // Forget the VPC, as a crashed control plane would.
    drop(lost);

    let owned = BTreeSet::from([kept.netns().name().to_owned(), public.name().to_owned()]);
    let leftovers = cleanup::find(&lab.prefix, &owned, Some(&public)).unwrap();
    assert_eq!(leftovers.namespaces, vec![lost_name.clone()]);
    assert_eq!(leftovers.public_links, vec![lost_peer]);
    cleanup::remove(&leftovers, Some(&public)).unwrap();
    assert!(
        cleanup::find(&lab.prefix, &owned, Some(&public))
            .unwrap()
            .is_empty()
    );
    assert!(!netns::exists(&lost_name));

    kept.delete().unwrap();
    assert_only_loopback(&public);
    assert!(nft::tables(&public).unwrap().is_empty());
    public.delete().unwrap();
    assert!(netns::list(&lab.prefix).unwrap().is_empty());
}

/// Groups that name each other, so that neither can be put before the
/// other: one lets SSH in from anywhere and ping from two's members, two
/// lets ping in from one's.
fn groups_naming_each_other() -> Vec<SecurityGroup> {
    let mut one = allowing("sg-one", Protocol::Tcp, Some(22), cidr("0.0.0.0/0"));
    one.inbound
        .push(Rule::new(Protocol::Icmp, None, Peer::Group("sg-two".into())).unwrap());
    let two = allowing("sg-two", Protocol::Icmp, None, Peer::Group("sg-one".into()));
    vec![one, two]
}

/// What the records of the rebuild tests' VPC say: subnet-a (public)
/// with i-one, subnet-b with i-two, the groups, the gateway at
/// 203.0.113.2 and i-one's elastic IP 203.0.113.10.
fn holdings(public: &Netns) -> Holdings {
    Holdings {
        subnets: vec![
            ("subnet-a".into(), "10.0.1.0/24".parse().unwrap(), true),
            ("subnet-b".into(), "10.0.2.0/24".parse().unwrap(), false),
        ],
        gateway: Some((public.try_clone().unwrap(), ip("203.0.113.2"))),
        groups: groups_naming_each_other(),
        ports: vec![
            port("one", "subnet-a", ip("10.0.1.4"), &["sg-one"]),
            port("two", "subnet-b", ip("10.0.2.4"), &["sg-two"]),
        ],
        elastic: vec![(ip("203.0.113.10"), "i-one".into())],
    }
}

/// Rebuilds the rebuild tests' VPC as `vpc-a`, making each port's link
/// with `make_link`.
fn rebuild(
    lab: &Lab,
    holds: Holdings,
    make_link: impl FnMut(&Netns, &Port) -> Result<(), std::io::Error>,
) -> Result<Vpc, vpc::Error> {
    let block = "10.0.0.0/16".parse().unwrap();
    Vpc::rebuild(&lab.prefix, "vpc-a", block, holds, PUBLIC_ROUTER, make_link)
}

/// The names of the links in `netns`.
fn link_names(netns: &Netns) -> Vec<String> {
    let links = Rtnl::open(netns).unwrap().links().unwrap();
    links.into_iter().map(|(name, _)| name).collect()
}

#[test]
fn a_vpc_rebuilt_from_what_it_holds_works_as_it_did() {
    let lab = Lab::new();
    let public = lab.public();
    // Made change by change, as the control plane makes it.
    let mut vpc = lab.vpc_with_subnet("vpc-a");
    vpc.add_subnet("subnet-b", "10.0.2.0/24".parse().unwrap())
        .unwrap();
    vpc.put_group(SecurityGroup::new("sg-one")).unwrap();
    vpc.put_group(SecurityGroup::new("sg-two")).unwrap();
    for group in groups_naming_each_other() {
        vpc.put_group(group).unwrap();
    }
    vpc.attach_gateway(&public, ip("203.0.113.2"), PUBLIC_ROUTER)
        .unwrap();
    vpc.set_subnet_internet("subnet-a", true).unwrap();
    let one = lab.instance(&mut vpc, "one", "subnet-a", ip("10.0.1.4"), &["sg-one"]);
    let two = lab.instance(&mut vpc, "two", "subnet-b", ip("10.0.2.4"), &["sg-two"]);
    vpc.associate_address(ip("203.0.113.10"), "i-one").unwrap();
    let script = vpc.firewall_script();

    // The namespace's name goes while something still holds it: its
    // gateway link's public end and the instances' eth0 outlive the name,
    // as they do until the kernel frees a deleted namespace.
    let held = vpc.netns().try_clone().unwrap();
    let name = vpc.netns().name().to_owned();
    drop(vpc);
    netns::remove(&name).unwrap();

    let instances = [("i-one", &one), ("i-two", &two)];
    let vpc = rebuild(&lab, holdings(&public), |vpc_netns, port| {
        let (_, netns) = instances.iter().find(|(id, _)| *id == port.id).unwrap();
        // The guest gets a new NIC; the old one serves the old namespace.
        Rtnl::open(netns).unwrap().delete("eth0").unwrap();
        plug(vpc_netns, netns, port);
        Ok(())
    })
    .unwrap();
    drop(held);
    assert_eq!(vpc.firewall_script(), script);
    // The stale public end was replaced, not kept beside the new one.
    assert_eq!(
        link_names(&public),
        ["lo".to_owned(), vpc.gateway_peer_name()]
    );

    let _web = Server::start(&public, PUBLIC_ROUTER, 80);
    let _ssh = Server::start(&one, ip("10.0.1.4"), 22);
    assert!(ping(&one, ip("10.0.2.4")), "across subnets, by group");
    assert!(ping(&two, ip("10.0.1.4")), "back");
    assert_eq!(
        connect(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.10")
    );
    assert_eq!(
        connect(&public, None, ip("203.0.113.10"), 22).as_deref(),
        Some(PUBLIC_ROUTER.to_string().as_str())
    );
    assert_eq!(connect(&two, None, PUBLIC_ROUTER, 80), None, "private");
    vpc.delete().unwrap();
    assert_only_loopback(&public);
}

#[test]
fn a_rebuild_that_fails_halfway_leaves_no_namespace_and_no_gateway_link() {
    let lab = Lab::new();
    let public = lab.public();
    let vpc_name = format!("{}vpc-a", lab.prefix);
    // A port's link stands in for its tap: a veth whose peer is also there.
    let veth = |vpc_netns: &Netns, port: &Port| {
        let peer = format!("x{}", port.link);
        Rtnl::open(vpc_netns)
            .unwrap()
            .add_veth(&port.link, &peer)
            .unwrap();
        Ok(())
    };

    // The second port's link cannot be made: after the subnets, the
    // gateway, the groups and the first port.
    let error = rebuild(&lab, holdings(&public), |vpc_netns, port| {
        if port.id == "i-two" {
            return Err(std::io::Error::other("no tap today"));
        }
        veth(vpc_netns, port)
    })
    .unwrap_err();
    assert!(matches!(error, vpc::Error::PortLink { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cannot make link t-two of port i-two: no tap today"
    );
    assert!(!netns::exists(&vpc_name));
    assert_only_loopback(&public);

    // A broken record: an elastic IP of a port the VPC does not hold,
    // found at the very last step.
    let mut broken = holdings(&public);
    broken.elastic.push((ip("203.0.113.11"), "i-nobody".into()));
    let error = rebuild(&lab, broken, veth).unwrap_err();
    assert!(error.to_string().contains("no port i-nobody"), "{error}");
    assert!(!netns::exists(&vpc_name));
    assert_only_loopback(&public);

    // Nothing stands in the way of the same rebuild once it can work.
    let vpc = rebuild(&lab, holdings(&public), veth).unwrap();
    assert!(netns::exists(&vpc_name));
    vpc.delete().unwrap();
    assert_only_loopback(&public);
}

/// The control plane as a user runs it: the real binary on a private
/// state directory, with a Lab's prefix (which removes the namespaces).
struct Host {
    lab: Lab,
    state: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        Self {
            lab: Lab::new(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// A host with the stand-in image and VPC "v" (10.0.0.0/16) holding
    /// subnets "a" (10.0.1.0/24) and "b" (10.0.2.0/24); with their IDs.
    fn with_vpc() -> (Self, String, String, String) {
        let host = Self::new();
        let image = cli_support::image_source(host.state.path(), "stand-in", "");
        host.ok(&["image", "import", image.to_str().unwrap()]);
        let vpc = host.ok(&["vpc", "create", "--cidr", "10.0.0.0/16", "--name", "v"]);
        let subnet = |cidr: &str, name: &str| {
            host.ok(&[
                "subnet", "create", "--vpc", "v", "--cidr", cidr, "--name", name,
            ])
        };
        let (a, b) = (subnet("10.0.1.0/24", "a"), subnet("10.0.2.0/24", "b"));
        (host, vpc, a, b)
    }

    fn netns(&self, vpc: &str) -> String {
        format!("{}{vpc}", self.lab.prefix)
    }

    fn public(&self) -> String {
        format!("{}public", self.lab.prefix)
    }

    fn namespaces(&self) -> Vec<String> {
        netns::list(&self.lab.prefix).unwrap()
    }

    /// What a host reboot does to this test: its namespaces go, and with
    /// them every link, address, route and nft table in them.
    fn reboot(&self) {
        for name in self.namespaces() {
            let deleted = Command::new("ip").args(["netns", "del", &name]).status();
            assert!(deleted.unwrap().success(), "ip netns del {name}");
        }
    }

    /// Rewrites the stored body of resource `id` with `edit`, as a store
    /// edited by hand (or damaged) has it.
    fn edit_record(&self, id: &str, edit: impl FnOnce(&mut Value)) {
        cli_support::edit_record(self.state.path(), id, edit);
    }
}

impl Gureum for Host {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = cli_support::gureum(self.state.path(), args);
        command
            .env("GUREUM_NET_PREFIX", &self.lab.prefix)
            .env_remove("GUREUM_PUBLIC_POOL")
            .env_remove("GUREUM_PUBLIC_ROUTER");
        command
    }
}

/// The output of `COMMAND...` run in namespace `netns` (by `ip netns
/// exec`); it must succeed.
fn run_in(netns: &str, command: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(command)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{command:?} in {netns}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// `ip ARGS...` in namespace `netns`.
fn ip_in(netns: &str, args: &[&str]) -> String {
    run_in(netns, &[&["ip"], args].concat())
}

/// The lines of `text`, sorted.
fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// What namespace `netns` holds that a restore must bring back:
/// addresses, policy rules, routes, forwarding settings and nft tables.
/// What a rebuild may renew or reorder is left out: interface indexes
/// and MACs, the order links were made in, that of rules of one
/// priority, and whether a bridge has carrier (the kernel's to say,
/// from its ports, when it gets round to it).
fn linux_state(netns: &str) -> String {
    let addresses: String = ip_in(netns, &["-br", "-4", "addr"])
        .lines()
        .map(|line| {
            // "igw@if12  UP  203.0.113.2/32": name and addresses only.
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default().split('@').next();
            let addresses: Vec<&str> = words.skip(1).collect();
            format!("{} {}\n", name.unwrap_or_default(), addresses.join(" "))
        })
        .collect();
    let routes = ip_in(netns, &["-4", "route", "show", "table", "all"]).replace(" linkdown", "");
    let bridges: Vec<String> = ip_in(netns, &["-br", "link", "show", "type", "bridge"])
        .lines()
        .filter_map(|line| Some(line.split_whitespace().next()?.to_owned()))
        .collect();
    let mut sysctls = vec![
        "/proc/sys/net/ipv4/ip_forward".to_owned(),
        "/proc/sys/net/ipv4/conf/all/send_redirects".to_owned(),
    ];
    for bridge in &bridges {
        sysctls.push(format!("/proc/sys/net/ipv4/conf/{bridge}/proxy_arp_pvlan"));
        sysctls.push(format!("/proc/sys/net/ipv4/neigh/{bridge}/proxy_delay"));
    }
    let mut cat = vec!["cat"];
    cat.extend(sysctls.iter().map(String::as_str));
    [
        sorted_lines(&addresses),
        sorted_lines(&ip_in(netns, &["rule"])),
        routes,
        run_in(netns, &cat),
        run_in(netns, &["nft", "list", "ruleset"]),
    ]
    .join("---\n")
}

fn field(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

/// The bridge of subnet `id`.
fn bridge_of(id: &str) -> String {
    format!("br-{}", &id[id.len() - 12..])
}

#[test]
fn net_restore_brings_back_the_vpcs_of_a_rebooted_host_from_the_records() {
    let (host, vpc, a, b) = Host::with_vpc();
    let igw = host.ok(&["igw", "create"]);
    host.ok(&["igw", "attach", &igw, "--vpc", "v"]);
    let main = field(&host.json(&["vpc", "describe", "v"]), "main_route_table");
    host.ok(&[
        "route-table",
        "create-route",
        &main,
        "--destination",
        "0.0.0.0/0",
        "--gateway",
        &igw,
    ]);
    // Subnet b keeps a table of its own without the route: private.
    host.ok(&["route-table", "create", "--vpc", "v", "--name", "private"]);
    host.ok(&["route-table", "associate", "private", "--subnet", "b"]);
    let db = host.ok(&["sg", "create", "--vpc", "v", "--name", "db"]);
    host.ok(&["sg", "create", "--vpc", "v", "--name", "web"]);
    for (group, port, peer) in [
        ("web", "22", ["--cidr", "0.0.0.0/0"]),
        ("db", "5432", ["--source-group", "web"]),
        ("web", "8080", ["--source-group", "db"]),
    ] {
        let mut args = vec!["sg", "authorize-ingress", group, "--protocol", "tcp"];
        args.extend(["--port", port]);
        args.extend(peer);
        host.ok(&args);
    }
    // The stand-in kernel does not boot: the instance stops, keeping its
    // port, as after a reboot.
    let id = host.run_stand_in(&["--subnet", "a", "--sg", "web", "--private-ip", "10.0.1.10"]);
    let tap = format!("t-{}", &id[id.len() - 13..]);
    let stopped = || host.ok(&["instance", "wait", &id, "--state", "stopped"]);
    stopped();
    let eip = host.ok(&["eip", "allocate"]);
    host.ok(&["eip", "associate", &eip, "--instance", &id]);
    let (ns, public) = (host.netns(&vpc), host.public());
    let before = [linux_state(&ns), linux_state(&public)];

    host.reboot();
    assert!(host.namespaces().is_empty());
    assert_eq!(
        host.json(&["net", "check"])["missing"],
        json!([{ "vpc": vpc, "netns": ns }])
    );
    let out = host.run(&["net", "check"]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), format!("missing namespace {ns} of VPC {vpc}"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`gureum net restore` rebuilds"));

    assert_eq!(
        host.ok(&["net", "restore"]),
        format!("restored VPC {vpc} (namespace {ns})")
    );
    let mut both = vec![public.clone(), ns.clone()];
    both.sort();
    assert_eq!(host.namespaces(), both);
    assert_eq!([linux_state(&ns), linux_state(&public)], before);
    // What that comes to, spelled out.
    for (subnet, router) in [(&a, "10.0.1.1/24"), (&b, "10.0.2.1/24")] {
        let addresses = ip_in(&ns, &["-4", "addr", "show", "dev", &bridge_of(subnet)]);
        assert!(addresses.contains(router), "{addresses}");
    }
    let rules = ip_in(&ns, &["rule"]);
    assert!(rules.contains(&format!("iif {} lookup 100", bridge_of(&a))));
    assert!(!rules.contains(&bridge_of(&b)), "{rules}");
    assert!(ip_in(&ns, &["route", "show", "table", "100"]).contains("default via 203.0.113.1"));
    let address = field(&host.json(&["eip", "describe", &eip]), "public_ip");
    let gateway = ip_in(&ns, &["-4", "addr", "show", "dev", "igw"]);
    assert!(gateway.contains("203.0.113.2/32"), "{gateway}");
    assert!(gateway.contains(&format!("{address}/32")), "{gateway}");
    assert!(ip_in(&public, &["-4", "addr"]).contains("203.0.113.1/32"));
    assert!(ip_in(&ns, &["link", "show", &tap]).contains(&format!("master {}", bridge_of(&a))));
    let ruleset = run_in(&ns, &["nft", "list", "ruleset"]);
    for wanted in [
        // Web's rules, on the instance's port; db's set, for web's rule.
        "tcp dport 22",
        "tcp dport 8080",
        &format!("members_{}", db.replace('-', "_")),
        "snat ip to 203.0.113.2",
        "dnat ip to 10.0.1.10",
        &format!("port_in_{}", id.replace('-', "_")),
    ] {
        assert!(ruleset.contains(wanted), "{wanted}: {ruleset}");
    }
    assert_eq!(host.ok(&["net", "check"]), "nothing left over");
    assert_eq!(
        host.json(&["instance", "describe", &id])[0]["state"],
        "stopped"
    );

    // Again: nothing to do, and nothing changes (not even a link's index).
    let links = ip_in(&ns, &["-o", "link"]);
    assert_eq!(
        host.ok(&["net", "restore"]),
        format!("VPC {vpc} is in place (namespace {ns} exists): left alone")
    );
    assert_eq!(ip_in(&ns, &["-o", "link"]), links);
    assert_eq!([linux_state(&ns), linux_state(&public)], before);

    // After another reboot, starting the instance restores its VPC first,
    // so that its port is there for its VMM (which then refuses the
    // stand-in kernel).
    host.reboot();
    let out = host.run(&["instance", "start", &id]);
    assert_eq!(out.status.code(), Some(1), "the VMM refuses the stand-in");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("instance {id} did not start")),
        "{said}"
    );
    assert!(
        said.contains(&format!("VPC {vpc} had lost its network namespace")),
        "{said}"
    );
    stopped();
    assert_eq!([linux_state(&ns), linux_state(&public)], before);
    host.ok(&["instance", "terminate", &id]);
    assert_eq!(host.ok(&["net", "check"]), "nothing left over");
}

#[test]
fn net_restore_undoes_a_vpc_it_cannot_rebuild_and_restores_the_others() {
    let host = Host::new();
    let bad = host.ok(&["vpc", "create", "--cidr", "10.0.0.0/16", "--name", "bad"]);
    host.ok(&["subnet", "create", "--vpc", "bad", "--cidr", "10.0.1.0/24"]);
    let igw = host.ok(&["igw", "create"]);
    host.ok(&["igw", "attach", &igw, "--vpc", "bad"]);
    let web = host.ok(&["sg", "create", "--vpc", "bad", "--name", "web"]);
    // SSH from its own members.
    let mut authorize: Vec<&str> = "sg authorize-ingress web --protocol tcp --port 22"
        .split(' ')
        .collect();
    authorize.extend(["--source-group", &web]);
    host.ok(&authorize);
    let good = host.ok(&["vpc", "create", "--cidr", "10.0.0.0/16", "--name", "good"]);
    host.ok(&["subnet", "create", "--vpc", "good", "--cidr", "10.0.1.0/24"]);
    host.reboot();
    // A broken record: the rule names a group the VPC does not have. It is
    // found after the namespace, the subnet and the gateway (and the
    // public namespace for it) were made.
    let set_peer = |peer: &str| {
        host.edit_record(&web, |body| {
            body["inbound"][0]["peer"]["group"] = json!(peer)
        });
    };
    set_peer("sg-00000000000000000");

    let out = host.run(&["net", "restore"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains(&format!("restored VPC {good}")), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "cannot restore VPC {bad}: security group {web} names group sg-00000000000000000 \
             as a peer, which this VPC does not have; what was made for it was undone"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("VPCs {bad} could not be restored")),
        "{stderr}"
    );
    assert_eq!(host.namespaces(), [host.netns(&good)]);
    let found = host.json(&["net", "check"]);
    assert_eq!(
        found["missing"],
        json!([{ "vpc": bad, "netns": host.netns(&bad) }])
    );
    assert_eq!(found["namespaces"], json!([]));
    // Meanwhile, a change to it says how to get it back, and makes nothing.
    let stderr = host.fails(&["subnet", "create", "--vpc", "bad", "--cidr", "10.0.2.0/24"]);
    assert!(
        stderr.contains("`gureum net restore` rebuilds it from its records"),
        "{stderr}"
    );
    assert_eq!(host.namespaces(), [host.netns(&good)]);

    // Repaired, it comes back; the other is left alone.
    set_peer(&web);
    let said = host.ok(&["net", "restore"]);
    assert!(said.contains(&format!("restored VPC {bad}")), "{said}");
    assert!(said.contains(&format!("VPC {good} is in place")), "{said}");
    let mut all = vec![host.public(), host.netns(&bad), host.netns(&good)];
    all.sort();
    assert_eq!(host.namespaces(), all);
    let ruleset = run_in(&host.netns(&bad), &["nft", "list", "ruleset"]);
    let members = format!("members_{}", web.replace('-', "_"));
    assert!(ruleset.contains(&members), "{ruleset}");
    assert!(ruleset.contains("snat ip to 203.0.113.2"), "{ruleset}");
    assert_eq!(host.ok(&["net", "check"]), "nothing left over");
}

#[test]
fn run_into_a_subnet_restores_its_vpc_after_a_reboot_as_start_does() {
    let (host, vpc, a, b) = Host::with_vpc();
    // The stand-in kernel does not boot: instances stop, keeping their
    // ports.
    let first = host.run_stand_in(&["--subnet", "a"]);
    host.ok(&["instance", "wait", &first, "--state", "stopped"]);
    let ns = host.netns(&vpc);

    host.reboot();
    // A subnet that does not exist is refused, and restores nothing.
    let stderr = host.fails(&["run", "--subnet", "nowhere"]);
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(host.namespaces().is_empty());

    // By ID this time (by name below).
    let out = host.run(&["run", "--subnet", &b, "--private-ip", "10.0.2.20"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the VMM refuses the stand-in");
    assert!(said.contains("did not start"), "{said}");
    assert!(
        said.contains(&format!(
            "VPC {vpc} had lost its network namespace: restored it first"
        )),
        "{said}"
    );
    let second = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(host.namespaces(), std::slice::from_ref(&ns));
    // Both ports are there: the one restored, and the one the launch made
    // in the restored VPC.
    for (id, subnet) in [(&first, &a), (&second, &b)] {
        let tap = format!("t-{}", &id[id.len() - 13..]);
        let link = ip_in(&ns, &["link", "show", &tap]);
        assert!(
            link.contains(&format!("master {}", bridge_of(subnet))),
            "{link}"
        );
    }
    let ruleset = run_in(&ns, &["nft", "list", "ruleset"]);
    assert!(
        ruleset.contains(&format!("port_in_{}", second.replace('-', "_"))),
        "{ruleset}"
    );

    // In place, the next launch says nothing about it.
    host.ok(&["instance", "wait", &second, "--state", "stopped"]);
    let out = host.run(&["run", "--subnet", "a"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the VMM refuses the stand-in");
    assert!(!said.contains("network namespace"), "{said}");
    let third = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    for id in [&first, &second, &third] {
        host.ok(&["instance", "terminate", id]);
    }
    assert_eq!(host.ok(&["net", "check"]), "nothing left over");
}
