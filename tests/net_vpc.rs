//! VPC networking on real Linux: namespaces, bridges, routes and nftables,
//! made by the reconciler (`net::vpc::converge`) from descriptions of what
//! each VPC holds, with "instances" that are namespaces holding one end of
//! a veth pair (a guest's stand-in) and gureum's public namespace as the
//! fake internet.
//!
//! Needs root, `nft` (package nftables) and `busybox` (for ping). Every
//! namespace a test makes starts with a prefix unique to the test, and a
//! guard removes them all, even when the test fails. Traffic goes only to
//! addresses inside those namespaces.
//!
//! The CLI tests at the end also run the real binary (`gureum net
//! reconcile`, `net restore`, `net check`) on a private state directory
//! with the test's prefix.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use gureum::host::mac::MacAddr;
use gureum::host::netns::{self, Netns};
use gureum::net::cidr::Ipv4Cidr;
use gureum::net::link::{Route, Rtnl};
use gureum::net::nft;
use gureum::net::nft::security_group::{Peer, PortRange, Protocol, Rule, SecurityGroup};
use gureum::net::port::Port;
use gureum::net::reconcile::{Difference, Found, Mode};
use gureum::net::uplink;
use gureum::net::vpc::{self, SubnetSpec, VpcSpec};
use serde_json::{Value, json};

mod cli_support;

use cli_support::Gureum;

const PUBLIC_ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const TIMEOUT: Duration = Duration::from_millis(700);
/// The store identity the tests' namespaces are marked with.
const OWNER: &str = "net-vpc-test";

type LinkResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A test's VPCs as the control plane holds them: the records (one
/// description per VPC) and the host they are realised on. Every change
/// converges all of them, as `cloud::vpc::realise` does; all namespaces
/// with the test's prefix are removed when it is dropped.
struct Lab {
    host: vpc::Host,
    specs: BTreeMap<String, VpcSpec>,
    /// A namespace playing the host, and how the public side leaves it;
    /// without one, no pass looks at an uplink.
    uplink: Option<(Netns, uplink::Setting)>,
    _cache: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "grt{}x{}-",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let cache = tempfile::tempdir().unwrap();
        let host = vpc::Host {
            prefix,
            owner: OWNER.to_owned(),
            router: PUBLIC_ROUTER,
            cache: cache.path().join("net"),
        };
        Self {
            host,
            specs: BTreeMap::new(),
            uplink: None,
            _cache: cache,
        }
    }

    fn prefix(&self) -> &str {
        &self.host.prefix
    }

    /// Records VPC `id` and converges.
    fn vpc(&mut self, id: &str, block: &str) {
        self.try_vpc(id, block).unwrap();
    }

    fn try_vpc(&mut self, id: &str, block: &str) -> Result<(), vpc::Error> {
        let spec = VpcSpec::new(id, block.parse()?);
        self.apply(|specs| {
            specs.insert(id.to_owned(), spec);
        })
    }

    /// A VPC 10.0.0.0/16 with subnet "subnet-a", 10.0.1.0/24.
    fn vpc_with_subnet(&mut self, id: &str) {
        self.vpc(id, "10.0.0.0/16");
        self.change(id, |spec| {
            spec.subnets.push(subnet("subnet-a", "10.0.1.0/24"));
        })
        .unwrap();
    }

    /// Edits VPC `id`'s description and converges (see `apply`).
    fn change(&mut self, id: &str, edit: impl FnOnce(&mut VpcSpec)) -> Result<(), vpc::Error> {
        self.apply(|specs| edit(specs.get_mut(id).unwrap()))
    }

    /// Edits the descriptions and converges everything, every port link
    /// being plugged in beforehand. If that fails, the descriptions go
    /// back as they were, everything is converged again and the error is
    /// returned (as `realise::change` does). Either way, a second pass
    /// finds nothing to do.
    fn apply(
        &mut self,
        edit: impl FnOnce(&mut BTreeMap<String, VpcSpec>),
    ) -> Result<(), vpc::Error> {
        let before = self.specs.clone();
        edit(&mut self.specs);
        if let Err(error) = self.converge(Mode::Repair, &mut refuse) {
            self.specs = before;
            self.converge(Mode::Repair, &mut refuse).unwrap();
            self.assert_converged();
            return Err(error);
        }
        self.assert_converged();
        Ok(())
    }

    /// Forgets VPC `id`, which converging removes (as an orphan).
    fn delete(&mut self, id: &str) {
        self.apply(|specs| {
            specs.remove(id).unwrap();
        })
        .unwrap();
    }

    fn assert_converged(&self) {
        let found = self.converge(Mode::Check, &mut refuse).unwrap();
        assert_eq!(found, [], "a second pass found differences");
    }

    /// One pass over everything, as `realise::converge` makes it: the
    /// public namespace, each VPC, the public ends, this store's orphans.
    fn converge(
        &self,
        mode: Mode,
        make_link: &mut vpc::MakeLink<'_>,
    ) -> Result<Vec<Difference>, vpc::Error> {
        let specs: Vec<VpcSpec> = self.specs.values().cloned().collect();
        let (public, mut found) = vpc::converge_public(&self.host, &specs, mode)?;
        for spec in &specs {
            found.extend(vpc::converge(
                &self.host,
                spec,
                public.as_ref(),
                mode,
                make_link,
            )?);
        }
        if let Some(public) = &public {
            found.extend(vpc::converge_public_links(
                &self.host, &specs, public, mode,
            )?);
        }
        if let Some((here, setting)) = &self.uplink {
            found.extend(uplink::converge(
                &self.host,
                setting,
                "203.0.113.0/24".parse()?,
                here,
                public.as_ref(),
                mode,
            )?);
        }
        let recorded: Vec<String> = self
            .specs
            .keys()
            .map(|id| self.host.vpc_netns(id))
            .collect();
        let orphans: Vec<String> = netns::list(self.prefix())?
            .into_iter()
            .filter(|name| !recorded.contains(name))
            .collect();
        found.extend(vpc::converge_orphans(&self.host, &orphans, mode)?);
        Ok(found)
    }

    /// The namespace of VPC `id`.
    fn netns_of(&self, id: &str) -> Netns {
        Netns::open(&self.host.vpc_netns(id)).unwrap()
    }

    /// The public namespace ("the internet"), which is there while some
    /// VPC has a gateway.
    fn public(&self) -> Netns {
        Netns::open(&self.host.public_netns()).unwrap()
    }

    /// A namespace of the test's own (no store's mark), loopback up.
    fn netns(&self, name: &str) -> Netns {
        let netns = Netns::create(&format!("{}{name}", self.prefix())).unwrap();
        Rtnl::open(&netns).unwrap().set_up("lo").unwrap();
        netns
    }

    /// An instance: a namespace whose eth0 is the far end of a veth whose
    /// near end, plugged into the VPC's namespace first, is the port
    /// `t-NAME` then added to the VPC.
    fn instance(
        &mut self,
        vpc: &str,
        name: &str,
        subnet: &str,
        ip: Ipv4Addr,
        groups: &[&str],
    ) -> Netns {
        let netns = self.netns(name);
        let port = port(name, subnet, ip, groups);
        plug(&self.netns_of(vpc), &netns, &port);
        self.change(vpc, |spec| spec.ports.push(port)).unwrap();
        netns
    }

    /// VPC "vpc-a" with instance "one" at 10.0.1.4, serving port 22 to
    /// anyone.
    fn ssh_server_in_vpc_a(&mut self) -> (Netns, Server) {
        self.vpc_with_subnet("vpc-a");
        self.put_group(
            "vpc-a",
            allowing("sg-ssh", Protocol::Tcp, Some(22), cidr("0.0.0.0/0")),
        );
        let one = self.instance("vpc-a", "one", "subnet-a", ip("10.0.1.4"), &["sg-ssh"]);
        let ssh = Server::start(&one, ip("10.0.1.4"), 22);
        (one, ssh)
    }

    /// Puts `group` in VPC `vpc`, replacing the one of the same ID.
    fn put_group(&mut self, vpc: &str, group: SecurityGroup) {
        self.change(vpc, |spec| {
            spec.groups.retain(|g| g.id != group.id);
            spec.groups.push(group);
        })
        .unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in netns::list(&self.host.prefix).unwrap_or_default() {
            let _ = netns::remove(&name);
        }
    }
}

/// The tests plug every port link in before the port is recorded: a
/// missing one is refused, as a tap that cannot be made would be.
fn refuse(_: &Netns, port: &Port) -> LinkResult {
    Err(format!("the test did not plug {} in", port.link).into())
}

fn subnet(id: &str, block: &str) -> SubnetSpec {
    SubnetSpec {
        id: id.to_owned(),
        cidr: block.parse().unwrap(),
        internet: false,
    }
}

/// Sets whether subnet `id` of `spec` routes to the gateway.
fn set_internet(spec: &mut VpcSpec, id: &str, internet: bool) {
    spec.subnets
        .iter_mut()
        .find(|s| s.id == id)
        .unwrap()
        .internet = internet;
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

/// The names of the links in `netns`.
fn link_names(netns: &Netns) -> Vec<String> {
    let links = Rtnl::open(netns).unwrap().links().unwrap();
    links.into_iter().map(|(name, _)| name).collect()
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

/// `connect`, tried up to three times until it gets through: for the
/// first connection over a link just made (the kernel may drop what is
/// sent before it has turned the link's carrier on, and neither ARP nor
/// TCP tries again within `TIMEOUT`), or over a neighbour entry that
/// failed.
fn connect_first(
    from: &Netns,
    source: Option<Ipv4Addr>,
    to: Ipv4Addr,
    port: u16,
) -> Option<String> {
    (0..3).find_map(|_| connect(from, source, to, port))
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
    let mut lab = Lab::new();
    lab.vpc_with_subnet("vpc-a");
    lab.change("vpc-a", |spec| {
        spec.subnets.push(subnet("subnet-b", "10.0.2.0/24"))
    })
    .unwrap();
    lab.put_group(
        "vpc-a",
        allowing("sg-a", Protocol::Icmp, None, cidr("10.0.0.0/16")),
    );
    let one = lab.instance("vpc-a", "one", "subnet-a", ip("10.0.1.4"), &["sg-a"]);
    let _two = lab.instance("vpc-a", "two", "subnet-a", ip("10.0.1.5"), &["sg-a"]);
    let three = lab.instance("vpc-a", "three", "subnet-b", ip("10.0.2.4"), &["sg-a"]);
    assert!(ping(&one, ip("10.0.1.1")), "router");
    assert!(ping(&one, ip("10.0.1.5")), "same subnet");
    assert!(ping(&one, ip("10.0.2.4")), "other subnet");
    assert!(ping(&three, ip("10.0.1.4")), "back");
    assert!(!ping(&one, ip("10.0.1.9")), "no such instance");
    lab.delete("vpc-a");
}

#[test]
fn security_groups_allow_one_port_statefully_and_change_at_once() {
    let mut lab = Lab::new();
    lab.vpc_with_subnet("vpc-a");
    let mut web = allowing("sg-web", Protocol::Tcp, Some(8080), cidr("10.0.0.0/16"));
    lab.put_group("vpc-a", web.clone());
    lab.put_group("vpc-a", SecurityGroup::new("sg-client"));
    let client = lab.instance(
        "vpc-a",
        "client",
        "subnet-a",
        ip("10.0.1.4"),
        &["sg-client"],
    );
    let server = lab.instance("vpc-a", "server", "subnet-a", ip("10.0.1.5"), &["sg-web"]);
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
    lab.put_group("vpc-a", web);
    assert!(connect(&client, None, ip("10.0.1.5"), 8081).is_some());

    // "Denying" outbound: remove the client group's allow-all egress.
    let mut silent = SecurityGroup::new("sg-client");
    silent.outbound.clear();
    lab.put_group("vpc-a", silent);
    assert_eq!(connect(&client, None, ip("10.0.1.5"), 8080), None);
    lab.delete("vpc-a");
}

#[test]
fn a_spoofed_source_gets_nothing_through_unless_the_check_is_off() {
    let mut lab = Lab::new();
    lab.vpc_with_subnet("vpc-a");
    lab.put_group(
        "vpc-a",
        allowing("sg-open", Protocol::All, None, cidr("10.0.0.0/16")),
    );
    let liar = lab.instance("vpc-a", "liar", "subnet-a", ip("10.0.1.4"), &["sg-open"]);
    let server = lab.instance("vpc-a", "server", "subnet-a", ip("10.0.1.5"), &["sg-open"]);
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

    lab.change("vpc-a", |spec| spec.ports[0].source_dest_check = false)
        .unwrap();
    // The router's neighbour entry for .9 failed while the check was on;
    // it takes a retry for the next ARP exchange to settle it.
    let spoofed = connect_first(&liar, Some(ip("10.0.1.9")), ip("10.0.1.5"), 80);
    assert_eq!(spoofed.as_deref(), Some("10.0.1.9"));
    lab.delete("vpc-a");
}

#[test]
fn the_internet_gateway_nats_public_subnets_and_elastic_ips() {
    let mut lab = Lab::new();
    let (one, _ssh) = lab.ssh_server_in_vpc_a();
    assert!(!netns::exists(&lab.host.public_netns()), "no gateway yet");

    // A gateway alone does not make the subnet public: its route does.
    lab.change("vpc-a", |spec| spec.gateway = Some(ip("203.0.113.2")))
        .unwrap();
    let public = lab.public();
    // The public end holds the next hop's address: a server there is "the
    // internet".
    let _web = Server::start(&public, PUBLIC_ROUTER, 80);
    assert_eq!(connect(&one, None, PUBLIC_ROUTER, 80), None);
    lab.change("vpc-a", |spec| set_internet(spec, "subnet-a", true))
        .unwrap();
    assert_eq!(
        connect_first(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.2")
    );
    // Nothing comes in unasked, even to the gateway address.
    assert_eq!(connect(&public, None, ip("203.0.113.2"), 22), None);

    lab.change("vpc-a", |spec| {
        spec.elastic.push((ip("203.0.113.10"), "i-one".into()));
    })
    .unwrap();
    assert_eq!(
        connect(&public, None, ip("203.0.113.10"), 22).as_deref(),
        Some(PUBLIC_ROUTER.to_string().as_str())
    );
    assert_eq!(
        connect(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.10")
    );
    // An elastic IP needs the gateway: detaching it first is refused.
    let error = lab.change("vpc-a", |spec| spec.gateway = None).unwrap_err();
    assert!(matches!(error, vpc::Error::NoGateway { .. }), "{error}");
    assert_eq!(
        connect(&public, None, ip("203.0.113.10"), 22).as_deref(),
        Some(PUBLIC_ROUTER.to_string().as_str())
    );
    // Such records (a store edited by hand) leave the VPC's public end as
    // it is, in a pass that does not get to the VPC too.
    let mut broken: Vec<VpcSpec> = lab.specs.values().cloned().collect();
    broken[0].gateway = None;
    for mode in [Mode::Check, Mode::Repair] {
        let found = vpc::converge_public_links(&lab.host, &broken, &public, mode).unwrap();
        assert_eq!(found, []);
    }
    assert_eq!(
        connect(&public, None, ip("203.0.113.10"), 22).as_deref(),
        Some(PUBLIC_ROUTER.to_string().as_str())
    );

    lab.change("vpc-a", |spec| spec.elastic.clear()).unwrap();
    assert_eq!(connect(&public, None, ip("203.0.113.10"), 22), None);
    lab.change("vpc-a", |spec| set_internet(spec, "subnet-a", false))
        .unwrap();
    assert_eq!(connect(&one, None, PUBLIC_ROUTER, 80), None);
    drop(_web);
    drop(public);
    lab.change("vpc-a", |spec| spec.gateway = None).unwrap();
    // The last gateway gone, so is the public namespace.
    assert!(!netns::exists(&lab.host.public_netns()));
    assert_eq!(
        link_names(&lab.netns_of("vpc-a")),
        ["lo", "br-subnet-a", "t-one"]
    );
    lab.delete("vpc-a");
}

#[test]
fn two_vpcs_with_one_block_work_and_cannot_reach_each_other() {
    let mut lab = Lab::new();
    for (id, gateway) in [("vpc-a", "203.0.113.2"), ("vpc-b", "203.0.113.3")] {
        lab.vpc(id, "10.0.0.0/16");
        lab.change(id, |spec| {
            let mut public = subnet("subnet-a", "10.0.1.0/24");
            public.internet = true;
            spec.subnets.push(public);
            spec.groups
                .push(allowing("sg-open", Protocol::All, None, cidr("0.0.0.0/0")));
            spec.gateway = Some(ip(gateway));
        })
        .unwrap();
    }
    let in_a = lab.instance("vpc-a", "a1", "subnet-a", ip("10.0.1.4"), &["sg-open"]);
    let in_b = lab.instance("vpc-b", "b1", "subnet-a", ip("10.0.1.5"), &["sg-open"]);
    let b_neighbour = lab.instance("vpc-b", "b2", "subnet-a", ip("10.0.1.4"), &["sg-open"]);
    let public = lab.public();
    let _server = Server::start(&in_b, ip("10.0.1.5"), 80);
    let _web = Server::start(&public, PUBLIC_ROUTER, 80);

    assert_eq!(
        connect(&b_neighbour, None, ip("10.0.1.5"), 80).as_deref(),
        Some("10.0.1.4")
    );
    assert_eq!(connect(&in_a, None, ip("10.0.1.5"), 80), None);
    assert_eq!(
        connect_first(&in_a, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.2")
    );
    assert_eq!(
        connect_first(&b_neighbour, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.3")
    );
    // Nor through the internet side: a gateway address lets nothing in.
    assert_eq!(connect(&in_a, None, ip("203.0.113.3"), 80), None);
    // One VPC's deletion leaves the other's gateway and the public side.
    lab.delete("vpc-a");
    assert_eq!(
        connect(&b_neighbour, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.3")
    );
    drop((_web, public));
    lab.delete("vpc-b");
    assert!(!netns::exists(&lab.host.public_netns()));
}

/// The last gateway detached, the public namespace goes, and with it the
/// far end of each VPC's gateway link at once: were that left to the
/// kernel's lazy freeing of the namespace, the link would vanish under
/// the pass over the VPC that deletes it (CI saw "No such device").
#[test]
fn removing_the_public_namespace_takes_the_gateway_links_with_it_at_once() {
    let mut lab = Lab::new();
    lab.vpc_with_subnet("vpc-a");
    lab.change("vpc-a", |spec| spec.gateway = Some(ip("203.0.113.2")))
        .unwrap();
    assert!(link_names(&lab.netns_of("vpc-a")).contains(&"igw".to_owned()));
    let mut specs: Vec<VpcSpec> = lab.specs.values().cloned().collect();
    specs[0].gateway = None;
    let (public, _) = vpc::converge_public(&lab.host, &specs, Mode::Repair).unwrap();
    assert!(public.is_none());
    assert_eq!(
        link_names(&lab.netns_of("vpc-a")),
        ["lo", "br-subnet-a"],
        "the gateway link outlived its public end"
    );
    lab.change("vpc-a", |spec| spec.gateway = None).unwrap();
    lab.delete("vpc-a");
}

/// With the uplink, an instance reaches the world beyond the host as the
/// host, and the host reaches elastic IPs; without it (turned off, or no
/// way out), neither, and nothing of it is left in the host, whose way-out
/// interface forwards again only if it did before.
#[test]
fn the_uplink_takes_the_public_side_out_through_the_host_and_back() {
    let mut lab = Lab::new();
    let host = lab.netns("host");
    let isp = lab.netns("isp");
    let rtnl = Rtnl::open(&host).unwrap();
    rtnl.add_veth("wan0", "isp0").unwrap();
    rtnl.move_to("isp0", &isp).unwrap();
    rtnl.add_address("wan0", ip("192.0.2.1"), 24).unwrap();
    rtnl.set_up("wan0").unwrap();
    let isp_rtnl = Rtnl::open(&isp).unwrap();
    isp_rtnl.add_address("isp0", ip("192.0.2.254"), 24).unwrap();
    isp_rtnl.set_up("isp0").unwrap();
    rtnl.add_route(&Route {
        destination: gureum::net::cidr::ANY,
        gateway: Some(ip("192.0.2.254")),
        device: "wan0",
        table: 254,
    })
    .unwrap();
    let host_name = host.name().to_owned();
    let wan_forwarding = || {
        run_in(
            &host_name,
            &["cat", "/proc/sys/net/ipv4/conf/wan0/forwarding"],
        )
    };
    assert_eq!(wan_forwarding().trim(), "0");
    lab.uplink = Some((host.try_clone().unwrap(), uplink::Setting::Auto));

    let (one, _ssh) = lab.ssh_server_in_vpc_a();
    let _web = Server::start(&isp, ip("192.0.2.254"), 80);
    let public_side = |lab: &mut Lab, on: bool| {
        lab.change("vpc-a", |spec| {
            spec.gateway = on.then(|| ip("203.0.113.2"));
            set_internet(spec, "subnet-a", on);
            spec.elastic = if on {
                vec![(ip("203.0.113.10"), "i-one".into())]
            } else {
                Vec::new()
            };
        })
        .unwrap();
    };
    let host_only = ["lo", "wan0"];
    // No gateway, no public side: nothing in the host.
    assert_eq!(link_names(&host), host_only);

    public_side(&mut lab, true);
    assert_eq!(
        connect_first(&one, None, ip("192.0.2.254"), 80).as_deref(),
        Some("192.0.2.1"),
        "the instance reaches the ISP as the host"
    );
    assert_eq!(
        connect_first(&host, None, ip("203.0.113.10"), 22).as_deref(),
        Some("169.254.77.1"),
        "the host reaches the elastic IP"
    );
    assert_eq!(wan_forwarding().trim(), "1");
    let tables = nft::tables(&host).unwrap();
    assert_eq!(
        tables,
        [(
            "ip".to_owned(),
            format!("{}uplink", nft::ident(lab.prefix()))
        )]
    );

    // Turned off: both ways cut, the host as it was.
    lab.uplink = Some((host.try_clone().unwrap(), uplink::Setting::None));
    lab.apply(|_| {}).unwrap();
    assert_eq!(connect(&one, None, ip("192.0.2.254"), 80), None);
    assert_eq!(connect(&host, None, ip("203.0.113.10"), 22), None);
    assert_eq!(link_names(&host), host_only);
    assert_eq!(nft::tables(&host).unwrap(), []);
    assert_eq!(wan_forwarding().trim(), "0");

    // On again, then the host loses its way out: the uplink goes with it.
    lab.uplink = Some((host.try_clone().unwrap(), uplink::Setting::Auto));
    lab.apply(|_| {}).unwrap();
    assert_eq!(
        connect_first(&one, None, ip("192.0.2.254"), 80).as_deref(),
        Some("192.0.2.1")
    );
    ip_in(&host_name, &["route", "del", "default"]);
    lab.apply(|_| {}).unwrap();
    assert_eq!(link_names(&host), host_only);
    assert_eq!(nft::tables(&host).unwrap(), []);
    assert_eq!(wan_forwarding().trim(), "0");

    // Named, the interface is used even without a default route; the
    // last gateway gone, so is the uplink.
    lab.uplink = Some((
        host.try_clone().unwrap(),
        uplink::Setting::Interface("wan0".into()),
    ));
    lab.apply(|_| {}).unwrap();
    assert_eq!(wan_forwarding().trim(), "1");
    let error = uplink::converge(
        &lab.host,
        &uplink::Setting::Interface("wan9".into()),
        "203.0.113.0/24".parse().unwrap(),
        &host,
        Some(&lab.public()),
        Mode::Check,
    )
    .unwrap_err();
    assert!(matches!(error, vpc::Error::NoUplink(_)), "{error}");
    lab.uplink = Some((host.try_clone().unwrap(), uplink::Setting::Auto));
    public_side(&mut lab, false);
    assert_eq!(link_names(&host), host_only);
    assert_eq!(nft::tables(&host).unwrap(), []);
    assert_eq!(wan_forwarding().trim(), "0");
    lab.delete("vpc-a");
}

/// What namespace `netns` holds, for comparing before and after: links
/// (name, kind, bridge, up), addresses, rules, routes of both tables and
/// the ruleset.
fn snapshot(netns: &Netns) -> String {
    let rtnl = Rtnl::open(netns).unwrap();
    let mut links: Vec<String> = rtnl
        .link_states()
        .unwrap()
        .into_iter()
        .map(|l| {
            format!(
                "{} {:?} {:?} {} {}",
                l.name, l.kind, l.controller, l.isolated, l.up
            )
        })
        .collect();
    links.sort();
    let mut addresses = rtnl.addresses().unwrap();
    addresses.sort();
    let mut rules = rtnl.rules().unwrap();
    rules.sort();
    let mut routes = rtnl.routes(100).unwrap();
    routes.extend(rtnl.routes(254).unwrap());
    routes.sort();
    format!(
        "{links:?}\n{addresses:?}\n{rules:?}\n{routes:?}\n{}",
        nft::list_ruleset(netns).unwrap()
    )
}

#[test]
fn a_failing_change_leaves_nothing_behind() {
    let mut lab = Lab::new();
    lab.vpc_with_subnet("vpc-a");
    lab.put_group("vpc-a", SecurityGroup::new("sg-a"));
    lab.vpc("vpc-b", "10.0.0.0/16");
    lab.change("vpc-b", |spec| spec.gateway = Some(ip("203.0.113.3")))
        .unwrap();
    let vpc_a = lab.netns_of("vpc-a");
    let public = lab.public();
    let before = [snapshot(&vpc_a), snapshot(&public)];
    let records = lab.specs.clone();

    // One change that makes a subnet, then the gateway, then fails at the
    // port, whose link the test did not plug in.
    let error = lab
        .change("vpc-a", |spec| {
            let mut b = subnet("subnet-b", "10.0.2.0/24");
            b.internet = true;
            spec.subnets.push(b);
            spec.gateway = Some(ip("203.0.113.2"));
            spec.ports
                .push(port("ghost", "subnet-b", ip("10.0.2.9"), &["sg-a"]));
        })
        .unwrap_err();
    assert!(matches!(error, vpc::Error::PortLink { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cannot make link t-ghost of port i-ghost: the test did not plug t-ghost in"
    );
    assert_eq!(lab.specs, records);
    assert_eq!([snapshot(&vpc_a), snapshot(&public)], before);

    // The gateway's public end cannot go into the public namespace: a
    // link there has its name. It was made after the veth pair.
    let peer = vpc::gateway_peer_name(&lab.host.vpc_netns("vpc-a"));
    let public_rtnl = Rtnl::open(&public).unwrap();
    public_rtnl.add_bridge(&peer).unwrap();
    let before = snapshot(&vpc_a);
    let error = lab
        .change("vpc-a", |spec| spec.gateway = Some(ip("203.0.113.2")))
        .unwrap_err();
    assert!(error.to_string().contains("cannot move link"), "{error}");
    assert_eq!(snapshot(&vpc_a), before);
    let vpc_rtnl = Rtnl::open(&vpc_a).unwrap();
    assert_eq!(vpc_rtnl.index(vpc::GATEWAY_LINK).unwrap(), None);
    assert_eq!(vpc_rtnl.index(&peer).unwrap(), None);
    // Undoing it converged the public side too: a "gp" link no VPC of
    // this store has is its leftover, and went.
    assert_eq!(public_rtnl.index(&peer).unwrap(), None);
    // So the same change works now.
    lab.change("vpc-a", |spec| spec.gateway = Some(ip("203.0.113.2")))
        .unwrap();
    assert!(public_rtnl.index(&peer).unwrap().is_some());
    drop((public_rtnl, public, vpc_rtnl, vpc_a));
    lab.delete("vpc-a");
    lab.delete("vpc-b");
    assert_eq!(netns::list(lab.prefix()).unwrap(), Vec::<String>::new());
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let mut lab = Lab::new();
    let err = lab.try_vpc("vpc-a", "10.0.0.0/8").unwrap_err();
    assert_eq!(
        err.to_string(),
        "10.0.0.0/8: a VPC netmask must be /16 to /28"
    );
    assert!(!netns::exists(&lab.host.vpc_netns("vpc-a")));
    assert!(lab.specs.is_empty());
    lab.vpc_with_subnet("vpc-a");
    let before = snapshot(&lab.netns_of("vpc-a"));
    let err = lab
        .change("vpc-a", |spec| {
            spec.subnets.push(subnet("subnet-b", "10.0.1.128/25"));
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "subnet 10.0.1.128/25 overlaps subnet 10.0.1.0/24 of the same VPC: pick a block that does not"
    );
    let err = lab
        .change("vpc-a", |spec| set_internet(spec, "subnet-a", true))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "VPC vpc-a has no internet gateway attached: attach one first"
    );
    let err = lab
        .change("vpc-a", |spec| {
            spec.ports
                .push(port("x", "subnet-a", ip("10.0.1.9"), &["sg-none"]));
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "VPC vpc-a has no security group sg-none");
    let err = lab
        .change("vpc-a", |spec| spec.subnets[0].id = "Subnet A".into())
        .unwrap_err();
    assert!(matches!(err, vpc::Error::BadId(_)), "{err}");
    assert_eq!(snapshot(&lab.netns_of("vpc-a")), before);

    // A namespace of that name another store made is not taken over.
    let other = lab.netns("vpc-b");
    Rtnl::open(&other)
        .unwrap()
        .set_alias("lo", "gureum-store:another")
        .unwrap();
    let err = lab.try_vpc("vpc-b", "10.0.0.0/16").unwrap_err();
    assert!(matches!(err, vpc::Error::Foreign { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("belongs to gureum-store:another, not to this store"),
        "{err}"
    );
    assert_eq!(link_names(&other), ["lo"]);
    assert!(!lab.specs.contains_key("vpc-b"));
    lab.delete("vpc-a");
    assert_eq!(netns::list(lab.prefix()).unwrap(), [other.name()]);
}

#[test]
fn deleting_everything_leaves_nothing_and_orphans_of_this_store_are_removed() {
    let mut lab = Lab::new();
    // Namespaces with the prefix that are not this store's: another
    // store's, and one nobody marked.
    let foreign = lab.netns("vpc-foreign");
    Rtnl::open(&foreign)
        .unwrap()
        .set_alias("lo", "gureum-store:another")
        .unwrap();
    let unmarked = lab.netns("vpc-unmarked");
    lab.vpc_with_subnet("vpc-kept");
    lab.change("vpc-kept", |spec| spec.gateway = Some(ip("203.0.113.2")))
        .unwrap();
    lab.vpc("vpc-lost", "10.0.0.0/16");
    lab.change("vpc-lost", |spec| spec.gateway = Some(ip("203.0.113.3")))
        .unwrap();
    let lost = lab.host.vpc_netns("vpc-lost");
    let lost_peer = vpc::gateway_peer_name(&lost);
    let tables = nft::tables(&lab.netns_of("vpc-lost")).unwrap();
    assert!(
        tables.contains(&("inet".into(), "gureum".into())),
        "{tables:?}"
    );
    // Forget the VPC without converging, as a control plane that crashed
    // after committing its deletion would.
    lab.specs.remove("vpc-lost");

    let found = lab.converge(Mode::Check, &mut refuse).unwrap();
    let public = lab.host.public_netns();
    assert_eq!(
        found,
        [
            Difference {
                netns: public.clone(),
                object: format!("link {lost_peer}"),
                found: Found::Extra,
            },
            Difference {
                netns: lost.clone(),
                object: "the namespace".into(),
                found: Found::Extra,
            },
        ]
    );
    assert!(netns::exists(&lost), "a check changes nothing");
    assert_eq!(lab.converge(Mode::Repair, &mut refuse).unwrap(), found);
    lab.assert_converged();
    assert!(!netns::exists(&lost));
    assert_eq!(
        link_names(&lab.public()),
        [
            "lo",
            &vpc::gateway_peer_name(&lab.host.vpc_netns("vpc-kept"))
        ]
    );

    lab.delete("vpc-kept");
    let mut left = vec![foreign.name().to_owned(), unmarked.name().to_owned()];
    left.sort();
    assert_eq!(netns::list(lab.prefix()).unwrap(), left);
    assert_eq!(link_names(&foreign), ["lo"]);
    assert_eq!(link_names(&unmarked), ["lo"]);
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

/// What the records of the rebuild tests' VPC `vpc-a` say, bar its
/// ports: subnet-a (public), subnet-b, the groups, the gateway at
/// 203.0.113.2.
fn described(lab: &mut Lab) {
    lab.vpc("vpc-a", "10.0.0.0/16");
    lab.change("vpc-a", |spec| {
        let mut a = subnet("subnet-a", "10.0.1.0/24");
        a.internet = true;
        spec.subnets = vec![a, subnet("subnet-b", "10.0.2.0/24")];
        spec.groups = groups_naming_each_other();
        spec.gateway = Some(ip("203.0.113.2"));
    })
    .unwrap();
}

/// The rebuild tests' instances: i-one in subnet-a with elastic IP
/// 203.0.113.10, i-two in subnet-b.
fn with_instances(lab: &mut Lab) -> (Netns, Netns) {
    let one = lab.instance("vpc-a", "one", "subnet-a", ip("10.0.1.4"), &["sg-one"]);
    let two = lab.instance("vpc-a", "two", "subnet-b", ip("10.0.2.4"), &["sg-two"]);
    lab.change("vpc-a", |spec| {
        spec.elastic.push((ip("203.0.113.10"), "i-one".into()));
    })
    .unwrap();
    (one, two)
}

/// Deletes VPC `id`'s namespace by hand while something still holds it
/// (returned): its gateway link's public end and the instances' eth0
/// outlive the name, as they do until the kernel frees a deleted
/// namespace.
fn vanish(lab: &Lab, id: &str) -> Netns {
    let held = lab.netns_of(id);
    netns::remove(held.name()).unwrap();
    held
}

#[test]
fn a_vpc_rebuilt_from_its_description_after_its_namespace_vanished_works_as_it_did() {
    let mut lab = Lab::new();
    described(&mut lab);
    let (one, two) = with_instances(&mut lab);
    let ruleset = nft::list_ruleset(&lab.netns_of("vpc-a")).unwrap();
    let name = lab.host.vpc_netns("vpc-a");
    let peer = vpc::gateway_peer_name(&name);

    let held = vanish(&lab, "vpc-a");
    let found = lab.converge(Mode::Check, &mut refuse).unwrap();
    assert_eq!(
        found,
        [Difference {
            netns: name.clone(),
            object: "the namespace".into(),
            found: Found::Missing,
        }]
    );
    let instances = [("i-one", &one), ("i-two", &two)];
    let mut replug = |vpc_netns: &Netns, port: &Port| -> LinkResult {
        let (_, netns) = instances.iter().find(|(id, _)| *id == port.id).unwrap();
        // The guest gets a new NIC; the old one serves the old namespace.
        Rtnl::open(netns).unwrap().delete("eth0").unwrap();
        plug(vpc_netns, netns, port);
        Ok(())
    };
    let repaired = lab.converge(Mode::Repair, &mut replug).unwrap();
    assert_eq!(repaired[0], found[0]);
    assert!(repaired.len() > 20, "{repaired:?}");
    assert!(
        repaired.iter().all(|d| d.found != Found::Extra),
        "{repaired:?}"
    );
    drop(held);
    lab.assert_converged();
    assert_eq!(nft::list_ruleset(&lab.netns_of("vpc-a")).unwrap(), ruleset);
    // The stale public end was replaced, not kept beside the new one.
    let public = lab.public();
    assert_eq!(link_names(&public), ["lo".to_owned(), peer]);

    let _web = Server::start(&public, PUBLIC_ROUTER, 80);
    let _ssh = Server::start(&one, ip("10.0.1.4"), 22);
    assert!(ping(&one, ip("10.0.2.4")), "across subnets, by group");
    assert!(ping(&two, ip("10.0.1.4")), "back");
    assert_eq!(
        connect_first(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.10")
    );
    assert_eq!(
        connect(&public, None, ip("203.0.113.10"), 22).as_deref(),
        Some(PUBLIC_ROUTER.to_string().as_str())
    );
    assert_eq!(connect(&two, None, PUBLIC_ROUTER, 80), None, "private");
    drop((_web, public));
    lab.delete("vpc-a");
    assert!(!netns::exists(&lab.host.public_netns()));
}

#[test]
fn a_rebuild_that_fails_halfway_is_finished_by_the_next_pass() {
    let mut lab = Lab::new();
    described(&mut lab);
    let (_one, _two) = with_instances(&mut lab);
    let name = lab.host.vpc_netns("vpc-a");
    // Held through the first pass, so that the old gateway link's public
    // end is there for it to replace, rather than being freed by the
    // kernel at some point during it.
    let held = vanish(&lab, "vpc-a");
    // A port's link stands in for its tap: a veth whose other end is
    // in a namespace of the test's (a link in the VPC's namespace that no
    // record owns would go).
    let guests = lab.netns("guests");
    let mut veth = |vpc_netns: &Netns, port: &Port| -> LinkResult {
        let peer = format!("x{}", port.link);
        let rtnl = Rtnl::open(vpc_netns)?;
        rtnl.add_veth(&port.link, &peer)?;
        rtnl.move_to(&peer, &guests)?;
        Ok(())
    };

    // The second port's link cannot be made: after the subnets, the
    // gateway and the first port.
    let mut no_second = |vpc_netns: &Netns, port: &Port| -> LinkResult {
        if port.id == "i-two" {
            return Err("no tap today".into());
        }
        veth(vpc_netns, port)
    };
    let error = lab.converge(Mode::Repair, &mut no_second).unwrap_err();
    assert!(matches!(error, vpc::Error::PortLink { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cannot make link t-two of port i-two: no tap today"
    );
    drop(held);
    // What was made is the records', and stays: a check finds only what
    // the pass did not get to, nothing extra.
    assert!(netns::exists(&name));
    let left = lab.converge(Mode::Check, &mut refuse).unwrap();
    assert!(
        left.contains(&Difference {
            netns: name.clone(),
            object: "link t-two".into(),
            found: Found::Missing,
        }),
        "{left:?}"
    );
    assert!(left.iter().all(|d| d.found != Found::Extra), "{left:?}");

    // A broken record (an elastic IP of a port the VPC does not hold) is
    // refused before anything is touched.
    let mut broken = lab.specs["vpc-a"].clone();
    broken.elastic.push((ip("203.0.113.11"), "i-nobody".into()));
    let public = lab.public();
    let error =
        vpc::converge(&lab.host, &broken, Some(&public), Mode::Repair, &mut veth).unwrap_err();
    assert_eq!(error.to_string(), "VPC vpc-a has no port i-nobody");
    assert_eq!(lab.converge(Mode::Check, &mut refuse).unwrap(), left);

    // The next pass that can make the link finishes the job.
    // (and then what the new link needs: it joins its bridge, goes up).
    let repaired = lab.converge(Mode::Repair, &mut veth).unwrap();
    assert!(left.iter().all(|d| repaired.contains(d)), "{repaired:?}");
    lab.assert_converged();
    drop(public);
    lab.delete("vpc-a");
    assert!(!netns::exists(&name));
    assert!(!netns::exists(&lab.host.public_netns()));
}

/// `nft -a list ruleset` in `netns`: with the handles, which a ruleset
/// applied again renews.
fn ruleset_with_handles(netns: &Netns) -> String {
    run_in(netns.name(), &["nft", "-a", "list", "ruleset"])
}

/// Each link of `netns` with its index, which a link made again renews.
fn link_indexes(netns: &Netns) -> Vec<(String, Option<u32>)> {
    let rtnl = Rtnl::open(netns).unwrap();
    link_names(netns)
        .into_iter()
        .map(|name| {
            let index = rtnl.index(&name).unwrap();
            (name, index)
        })
        .collect()
}

#[test]
fn a_pass_over_what_is_in_place_changes_nothing() {
    let mut lab = Lab::new();
    described(&mut lab);
    let _instances = with_instances(&mut lab);
    let (vpc_a, public) = (lab.netns_of("vpc-a"), lab.public());
    let before = (
        link_indexes(&vpc_a),
        link_indexes(&public),
        ruleset_with_handles(&vpc_a),
        snapshot(&vpc_a),
        snapshot(&public),
    );
    for _ in 0..2 {
        assert_eq!(lab.converge(Mode::Repair, &mut refuse).unwrap(), []);
    }
    let after = (
        link_indexes(&vpc_a),
        link_indexes(&public),
        ruleset_with_handles(&vpc_a),
        snapshot(&vpc_a),
        snapshot(&public),
    );
    assert_eq!(after, before);
}

#[test]
fn drift_is_reported_by_a_check_and_undone_by_a_repair() {
    let mut lab = Lab::new();
    described(&mut lab);
    let (one, _two) = with_instances(&mut lab);
    let public = lab.public();
    let _web = Server::start(&public, PUBLIC_ROUTER, 80);
    assert_eq!(
        connect_first(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.10")
    );
    let name = lab.host.vpc_netns("vpc-a");
    let before = snapshot(&lab.netns_of("vpc-a"));

    // By hand: subnet-a's internet rule deleted, the firewall flushed,
    // subnet-b's bridge taken down.
    ip_in(&name, &["rule", "del", "priority", "2000"]);
    run_in(&name, &["nft", "flush", "ruleset"]);
    ip_in(&name, &["link", "set", "br-subnet-b", "down"]);
    assert_eq!(connect(&one, None, PUBLIC_ROUTER, 80), None);

    let wrong = |object: &str, have: &str, want: &str| Difference {
        netns: name.clone(),
        object: object.into(),
        found: Found::Wrong {
            have: have.into(),
            want: want.into(),
        },
    };
    let expected = vec![
        wrong("link br-subnet-b", "down", "up"),
        Difference {
            netns: name.clone(),
            object: "rule 2000: iif br-subnet-a lookup 100".into(),
            found: Found::Missing,
        },
        Difference {
            netns: name.clone(),
            object: "the firewall (nft tables)".into(),
            found: Found::Missing,
        },
    ];
    let found = lab.converge(Mode::Check, &mut refuse).unwrap();
    assert_eq!(found, expected);
    // A check repairs nothing: the next finds the same.
    assert_eq!(lab.converge(Mode::Check, &mut refuse).unwrap(), expected);
    assert_eq!(connect(&one, None, PUBLIC_ROUTER, 80), None);

    // A table emptied rather than dropped is another ruleset.
    assert_eq!(lab.converge(Mode::Repair, &mut refuse).unwrap(), expected);
    lab.assert_converged();
    assert_eq!(snapshot(&lab.netns_of("vpc-a")), before);
    assert_eq!(
        connect(&one, None, PUBLIC_ROUTER, 80).as_deref(),
        Some("203.0.113.10")
    );
    run_in(&name, &["nft", "flush", "table", "inet", "gureum"]);
    let found = lab.converge(Mode::Check, &mut refuse).unwrap();
    assert_eq!(
        found,
        [wrong(
            "the firewall (nft tables)",
            "changed by hand",
            "the one its records compile to"
        )]
    );
    assert_eq!(lab.converge(Mode::Repair, &mut refuse).unwrap(), found);
    lab.assert_converged();
    assert_eq!(snapshot(&lab.netns_of("vpc-a")), before);
}

/// What `gureum net check` says when there is no difference.
const IN_STEP: &str = "Linux and the state directory match the records";

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
        format!("{}{vpc}", self.lab.prefix())
    }

    fn public(&self) -> String {
        format!("{}public", self.lab.prefix())
    }

    fn namespaces(&self) -> Vec<String> {
        netns::list(self.lab.prefix()).unwrap()
    }

    /// What a host reboot does to this test: its namespaces go, and with
    /// them every link, address, route and nft table in them.
    fn reboot(&self) {
        for name in self.namespaces() {
            let deleted = Command::new("ip").args(["netns", "del", &name]).status();
            assert!(deleted.unwrap().success(), "ip netns del {name}");
        }
    }

    /// `gureum net check -o json`, which exits with 1 when it finds
    /// anything.
    fn check(&self) -> Value {
        let out = self.run(&["net", "check", "--output", "json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let clean = report
            .as_object()
            .unwrap()
            .values()
            .all(|list| list == &json!([]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if clean { 0 } else { 1 }),
            "{stderr}"
        );
        report
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
            .env("GUREUM_NET_PREFIX", self.lab.prefix())
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
fn net_reconcile_brings_back_the_vpcs_of_a_rebooted_host_from_the_records() {
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
    let missing =
        |netns: &str| json!({ "netns": netns, "object": "the namespace", "found": "missing" });
    assert_eq!(
        host.check(),
        json!({ "ports": [], "network": [missing(&public), missing(&ns)], "files": [] })
    );
    let out = host.run(&["net", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{public}: the namespace is missing\n{ns}: the namespace is missing\n")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "2 differences between the records and Linux (listed above); \
             `gureum net reconcile` repairs them"
        ),
        "{stderr}"
    );

    let said = host.ok(&["net", "restore"]);
    for netns in [&public, &ns] {
        let line = format!("repaired: {netns}: the namespace is missing");
        assert!(said.lines().any(|l| l == line), "{said}");
    }
    assert!(said.lines().all(|l| l.starts_with("repaired: ")), "{said}");
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
    assert_eq!(host.ok(&["net", "check"]), IN_STEP);
    assert_eq!(
        host.check(),
        json!({ "ports": [], "network": [], "files": [] })
    );
    assert_eq!(
        host.json(&["instance", "describe", &id])[0]["state"],
        "stopped"
    );

    // Again: nothing to do, and nothing changes (not even a link's index).
    let links = ip_in(&ns, &["-o", "link"]);
    assert_eq!(host.ok(&["net", "reconcile"]), IN_STEP);
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
        said.contains(&format!("VPC {vpc} differed from its records in"))
            && said.contains("repaired it first"),
        "{said}"
    );
    stopped();
    assert_eq!([linux_state(&ns), linux_state(&public)], before);
    host.ok(&["instance", "terminate", &id]);
    assert_eq!(host.ok(&["net", "check"]), IN_STEP);
}

#[test]
fn a_vpc_whose_records_cannot_be_realised_is_refused_and_the_others_still_work() {
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
    // A broken record: the rule names a group the VPC does not have.
    let set_peer = |peer: &str| {
        host.edit_record(&web, |body| {
            body["inbound"][0]["peer"]["group"] = json!(peer)
        });
    };
    set_peer("sg-00000000000000000");
    let broken = format!(
        "security group {web} names group sg-00000000000000000 as a peer, which this VPC does \
         not have"
    );

    // Neither a check nor a repair gets past it, and neither makes its
    // namespace.
    for args in [
        &["net", "check"][..],
        &["net", "reconcile"],
        &["net", "restore"],
    ] {
        let stderr = host.fails(args);
        assert!(stderr.contains(&broken), "{args:?}: {stderr}");
        assert!(!host.namespaces().contains(&host.netns(&bad)), "{args:?}");
    }
    // A change to it is refused with the reason, and makes nothing.
    let stderr = host.fails(&["subnet", "create", "--vpc", "bad", "--cidr", "10.0.2.0/24"]);
    assert!(stderr.contains(&broken), "{stderr}");
    assert!(!host.namespaces().contains(&host.netns(&bad)));
    // A change to another VPC converges that one, and leaves it alone.
    host.ok(&["subnet", "create", "--vpc", "good", "--cidr", "10.0.2.0/24"]);
    assert!(host.namespaces().contains(&host.netns(&good)));
    assert!(!host.namespaces().contains(&host.netns(&bad)));

    // Mended, it comes back, and everything is in step.
    set_peer(&web);
    let said = host.ok(&["net", "reconcile"]);
    let line = format!("repaired: {}: the namespace is missing", host.netns(&bad));
    assert!(said.lines().any(|l| l == line), "{said}");
    let mut all = vec![host.public(), host.netns(&bad), host.netns(&good)];
    all.sort();
    assert_eq!(host.namespaces(), all);
    let ruleset = run_in(&host.netns(&bad), &["nft", "list", "ruleset"]);
    let members = format!("members_{}", web.replace('-', "_"));
    assert!(ruleset.contains(&members), "{ruleset}");
    assert!(ruleset.contains("snat ip to 203.0.113.2"), "{ruleset}");
    assert_eq!(host.ok(&["net", "check"]), IN_STEP);
}

#[test]
fn run_into_a_subnet_brings_back_its_vpc_after_a_reboot_as_start_does() {
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

    // By ID this time (by name below). The launch is a change to the
    // VPC, which converges it whole: its namespace comes back first.
    let out = host.run(&["run", "--subnet", &b, "--private-ip", "10.0.2.20"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the VMM refuses the stand-in");
    assert!(said.contains("did not start"), "{said}");
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
    assert_eq!(host.ok(&["net", "check"]), IN_STEP);
}
