//! VPC networking on real Linux: namespaces, bridges, routes and nftables,
//! with "instances" that are namespaces holding one end of a veth pair (a
//! guest's stand-in) and a "public" namespace as the fake internet.
//!
//! Needs root, `nft` (package nftables) and `busybox` (for ping). Every
//! namespace a test makes starts with a prefix unique to the test, and a
//! guard removes them all, even when the test fails. Traffic goes only to
//! addresses inside those namespaces.

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
use gureum::net::vpc::{self, Vpc};

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
        let link = format!("t-{name}");
        let vpc_rtnl = Rtnl::open(vpc.netns()).unwrap();
        vpc_rtnl.add_veth(&link, "eth0").unwrap();
        vpc_rtnl.move_to("eth0", &netns).unwrap();
        let mac = MacAddr([
            0x02,
            0,
            ip.octets()[1],
            ip.octets()[2],
            ip.octets()[3],
            0x01,
        ]);
        let rtnl = Rtnl::open(&netns).unwrap();
        rtnl.set_mac("eth0", mac).unwrap();
        let subnet_cidr = Ipv4Cidr::containing(ip, 24).unwrap();
        rtnl.add_address("eth0", ip, 24).unwrap();
        rtnl.set_up("eth0").unwrap();
        rtnl.add_route(&Route {
            destination: gureum::net::cidr::ANY,
            gateway: gureum::net::cidr::router(subnet_cidr),
            device: "eth0",
            table: 254,
        })
        .unwrap();
        vpc.attach_port(Port {
            id: format!("i-{name}"),
            link,
            subnet: subnet.to_owned(),
            mac,
            ip,
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            source_dest_check: true,
        })
        .unwrap();
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
