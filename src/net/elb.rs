//! Network load balancers in a VPC's namespace.
//!
//! A load balancer is a port of its own on each of its subnets' bridges,
//! like an instance's (anti-spoofing, a mark, its security groups), whose
//! far end is in a namespace of the balancer's: that is where its
//! addresses live and where its health checks start, so the checks cross
//! the VPC's router as any packet from the balancer does, and the targets'
//! security groups judge them.
//!
//! Its listeners are a DNAT in the VPC namespace's prerouting (`chains`):
//! a new flow to a balancer address and listener port goes to one of the
//! healthy targets, picked by a hash of the flow (`jhash` of source
//! address and port, as EC2's flow hash). The router sees both directions
//! of every flow, so replies are translated back by conntrack and targets
//! see the client's own address (EC2's client IP preservation). A flow
//! keeps its target in conntrack when the map changes, so a target taken
//! out of it (unhealthy, deregistered) drains: only new flows avoid it.

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::cidr::{self, Ipv4Cidr};
use super::link::{RouteState, Rtnl};
use super::nft::security_group::Protocol;
use super::port::Port;
use super::reconcile::{Difference, Found, Mode, Pass};
use super::vpc::{
    Error, Host, LOOPBACK, MAIN_TABLE, converge_addresses, converge_routes, create_owned,
    open_owned, updown,
};
use crate::host::mac::MacAddr;
use crate::host::netns::Netns;

/// The conntrack and packet mark of flows that came to a balancer's
/// public address: their replies are routed back through the internet
/// gateway from whatever subnet the target is in (a policy rule on the
/// mark), as EC2's NLB returns them itself. The bit is apart from the
/// ports' marks (small numbers, `nft::anti_spoof::mark`), and only
/// packets of flows already made carry it, which the forward chain
/// accepts before it looks at marks.
pub const REPLY_MARK: u32 = 0x8000_0000;

/// What a balancer's port links start with: `l-` in the VPC namespace,
/// `m-` (its far end) in the balancer's.
pub const LINK_PREFIX: &str = "l-";
const PEER_PREFIX: &str = "m-";

/// One load balancer of a VPC, as its records describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancer {
    pub id: String,
    /// Its namespace.
    pub netns: String,
    /// Its ports, one per subnet; each is also among the VPC's ports.
    pub ports: Vec<Port>,
    /// Its address from the public pool (internet-facing), reached through
    /// the VPC's internet gateway as elastic IPs are.
    pub public_ip: Option<Ipv4Addr>,
    pub listeners: Vec<Forward>,
    /// An application balancer's listener ports: its proxy (the
    /// daemon's) serves them in its namespace, reached on its private
    /// addresses by routing; only its public address is translated (to
    /// its first private one).
    pub proxied: Vec<u16>,
}

/// A listener: flows to `port` over `protocol` go to one of `targets`
/// (address and port; the healthy ones only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub protocol: Protocol,
    pub port: u16,
    pub targets: Vec<(Ipv4Addr, u16)>,
}

impl Balancer {
    /// Every address the balancer answers on.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        self.ports
            .iter()
            .map(|p| p.ip)
            .chain(self.public_ip)
            .collect()
    }
}

/// The port link of the balancer `id`'s port number `index` (from 0):
/// `l-`, the last 11 hex digits of its ID and the index, to fit an
/// interface name and differ from every instance tap (`t-`).
pub fn link_name(id: &str, index: usize) -> String {
    format!("{LINK_PREFIX}{}{index}", tail(id, 11))
}

/// The far end of port link `link`, in the balancer's namespace.
pub fn peer_name(link: &str) -> String {
    format!(
        "{PEER_PREFIX}{}",
        link.strip_prefix(LINK_PREFIX).unwrap_or(link)
    )
}

/// The MAC of the balancer `id`'s port number `index`: locally
/// administered, `02:eb`, three bytes of its ID and the index.
pub fn mac(id: &str, index: usize) -> MacAddr {
    let hex = tail(id, 6);
    let byte = |at: usize| {
        hex.get(at..at + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    MacAddr([
        0x02,
        0xeb,
        byte(0),
        byte(2),
        byte(4),
        u8::try_from(index).unwrap_or(u8::MAX),
    ])
}

fn tail(id: &str, n: usize) -> &str {
    id.get(id.len().saturating_sub(n)..).unwrap_or(id)
}

/// The chains of the VPC's `inet gureum` table for its balancers: the
/// listeners' translations in `elb_in`, and an empty `elb_out` at
/// postrouting. Both are there whatever the targets: a NAT hook is what
/// translates the packets of flows already made (replies back to the
/// balancer's address on postrouting), so a flow drains even once no
/// rule would send a new one to its target.
pub fn chains(out: &mut String, balancers: &[Balancer]) {
    if balancers.is_empty() {
        return;
    }
    let public: Vec<Ipv4Addr> = balancers.iter().filter_map(|b| b.public_ip).collect();
    if !public.is_empty() {
        let _ = writeln!(out, "  chain elb_mark {{");
        let _ = writeln!(
            out,
            "    type filter hook prerouting priority mangle; policy accept;"
        );
        let _ = writeln!(
            out,
            "    ct mark & {REPLY_MARK:#x} == {REPLY_MARK:#x} meta mark set meta mark | {REPLY_MARK:#x}"
        );
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "  chain elb_in {{");
    let _ = writeln!(
        out,
        "    type nat hook prerouting priority dstnat; policy accept;"
    );
    for address in &public {
        let _ = writeln!(
            out,
            "    ip daddr {address} ct mark set ct mark | {REPLY_MARK:#x}"
        );
    }
    for rule in balancers.iter().flat_map(rules) {
        let _ = writeln!(out, "    {rule}");
    }
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  chain elb_out {{");
    let _ = writeln!(
        out,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    let _ = writeln!(out, "  }}");
}

/// One DNAT rule per listener with targets and address of the balancer;
/// for a proxied listener, one from its public address to its proxy.
fn rules(balancer: &Balancer) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(public), Some(first)) = (balancer.public_ip, balancer.ports.first()) {
        for port in &balancer.proxied {
            out.push(format!(
                "ip daddr {public} tcp dport {port} dnat ip to {}",
                first.ip
            ));
        }
    }
    for listener in &balancer.listeners {
        if listener.targets.is_empty() {
            // Flows reach the balancer's own namespace, where nothing
            // listens: refused at once rather than sent nowhere.
            continue;
        }
        let proto = listener.protocol;
        let map: Vec<String> = listener
            .targets
            .iter()
            .enumerate()
            .map(|(n, (address, port))| format!("{n} : {address} . {port}"))
            .collect();
        // The seed is the balancer's: stable across reloads, so that a
        // flow whose conntrack entry expired comes back to its target.
        let seed = super::vpc::short_hash(&balancer.id);
        for address in balancer.addresses() {
            out.push(format!(
                "ip daddr {address} {proto} dport {} dnat ip to jhash ip saddr . {proto} sport mod {} seed {seed:#010x} map {{ {} }}",
                listener.port,
                listener.targets.len(),
                map.join(", ")
            ));
        }
    }
    out
}

/// Where the host loaded `br_netfilter`, frames entering a bridge pass
/// the IP hooks as they are bridged, and a flow DNATed back onto the
/// bridge it came from (a client in a target's subnet) would be bridged
/// straight to the target's port, which isolation drops. A VPC with
/// balancers routes it instead: the setting (per namespace, when the
/// module is there at all) is off in its namespace.
pub fn converge_bridge_netfilter(netns: &Netns, pass: &mut Pass) -> Result<(), Error> {
    let key = "net.bridge.bridge-nf-call-iptables".to_owned();
    let have = crate::host::sysctl::get_all(netns, std::slice::from_ref(&key))?;
    if let Some(Some(now)) = have.first() {
        if pass.compare(format_args!("sysctl {key}"), now, &"0".to_owned()) {
            crate::host::sysctl::set(netns, &key, "0")?;
        }
    }
    Ok(())
}

/// Makes the link of balancer port `port` in VPC namespace `vpc`: a veth
/// whose far end, with the port's MAC, goes into the balancer's namespace.
pub fn make_port_link(vpc: &Netns, balancer: &Netns, port: &Port) -> Result<(), Error> {
    let rtnl = Rtnl::open(vpc)?;
    let peer = peer_name(&port.link);
    rtnl.add_veth(&port.link, &peer)?;
    let moved = rtnl
        .set_mac(&peer, port.mac)
        .and_then(|()| rtnl.move_to(&peer, balancer));
    if let Err(error) = moved {
        // Deleting one end deletes both.
        let _ = rtnl.delete(&port.link);
        return Err(error.into());
    }
    Ok(())
}

/// Opens the balancer's namespace, making it (marked as this store's)
/// when it is missing and the pass repairs.
pub fn converge_namespace(
    host: &Host,
    balancer: &Balancer,
    mode: Mode,
) -> Result<(Option<Netns>, Vec<Difference>), Error> {
    let mut pass = Pass::new(&balancer.netns, mode);
    let netns = match open_owned(host, &balancer.netns, true, &mut pass)? {
        Some((netns, _)) => Some(netns),
        None if pass.note("the namespace", Found::Missing) => {
            Some(create_owned(host, &balancer.netns)?.0)
        }
        None => None,
    };
    Ok((netns, pass.into_differences()))
}

/// Inside the balancer's namespace, once the VPC's pass has made its port
/// links: each far end up with the port's address, and a default route
/// through the first port's subnet router.
pub fn converge_inside(
    balancer: &Balancer,
    netns: &Netns,
    subnets: &[(String, Ipv4Cidr)],
    mode: Mode,
) -> Result<Vec<Difference>, Error> {
    let mut pass = Pass::new(&balancer.netns, mode);
    let rtnl = Rtnl::open(netns)?;
    let links = rtnl.link_states()?;
    let mut addresses = Vec::new();
    let mut routes = Vec::new();
    for port in &balancer.ports {
        let peer = peer_name(&port.link);
        let Some(state) = links.iter().find(|l| l.name == peer) else {
            // Made with the VPC's port link; the VPC's pass says why not.
            pass.note(format_args!("link {peer}"), Found::Missing);
            continue;
        };
        if pass.compare(
            format_args!("link {peer}"),
            &updown(state.up),
            &updown(true),
        ) {
            rtnl.set_up(&peer)?;
        }
        let Some((_, block)) = subnets.iter().find(|(id, _)| *id == port.subnet) else {
            continue;
        };
        addresses.push((peer.clone(), port.ip, block.prefix()));
        if routes.is_empty() {
            routes.push(RouteState {
                destination: cidr::ANY,
                gateway: cidr::router(*block),
                device: peer,
                table: MAIN_TABLE,
            });
        }
    }
    let lo = links.iter().find(|l| l.name == LOOPBACK);
    if pass.compare("link lo", &updown(lo.is_some_and(|l| l.up)), &updown(true)) {
        rtnl.set_up(LOOPBACK)?;
    }
    converge_addresses(&rtnl, &addresses, |link, _| link != LOOPBACK, &mut pass)?;
    converge_routes(&rtnl, MAIN_TABLE, &routes, |_| true, &mut pass)?;
    Ok(pass.into_differences())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer() -> Balancer {
        let id = "elb-0123456789abcdef0";
        Balancer {
            id: id.into(),
            netns: format!("gureum-{id}"),
            ports: vec![Port {
                id: format!("{id}-0"),
                link: link_name(id, 0),
                subnet: "subnet-a".into(),
                mac: mac(id, 0),
                ip: Ipv4Addr::new(10, 0, 1, 4),
                groups: vec!["sg-1".into()],
                source_dest_check: true,
            }],
            public_ip: Some(Ipv4Addr::new(203, 0, 113, 9)),
            listeners: vec![
                Forward {
                    protocol: Protocol::Tcp,
                    port: 80,
                    targets: vec![
                        (Ipv4Addr::new(10, 0, 1, 10), 8080),
                        (Ipv4Addr::new(10, 0, 2, 10), 8080),
                    ],
                },
                Forward {
                    protocol: Protocol::Udp,
                    port: 53,
                    targets: vec![],
                },
            ],
            proxied: vec![],
        }
    }

    #[test]
    fn names_fit_and_differ_from_taps() {
        let link = link_name("elb-0123456789abcdef0", 0);
        assert_eq!(link, "l-6789abcdef00");
        assert!(link.len() <= crate::net::link::MAX_IFNAME_LEN);
        assert_eq!(peer_name(&link), "m-6789abcdef00");
        assert_eq!(
            mac("elb-0123456789abcdef0", 1).to_string(),
            "02:eb:bc:de:f0:01"
        );
    }

    #[test]
    fn listeners_compile_to_one_hashed_dnat_per_address() {
        let mut out = String::new();
        chains(&mut out, &[balancer()]);
        let seed = crate::net::vpc::short_hash("elb-0123456789abcdef0");
        let rule = |address: &str| {
            format!(
                "    ip daddr {address} tcp dport 80 dnat ip to jhash ip saddr . tcp sport mod 2 seed {seed:#010x} map {{ 0 : 10.0.1.10 . 8080, 1 : 10.0.2.10 . 8080 }}\n"
            )
        };
        let expected = format!(
            "  chain elb_mark {{\n    type filter hook prerouting priority mangle; policy accept;\n    ct mark & 0x80000000 == 0x80000000 meta mark set meta mark | 0x80000000\n  }}\n  chain elb_in {{\n    type nat hook prerouting priority dstnat; policy accept;\n    ip daddr 203.0.113.9 ct mark set ct mark | 0x80000000\n{}{}  }}\n{OUT}",
            rule("10.0.1.4"),
            rule("203.0.113.9")
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn a_proxied_listener_is_translated_from_the_public_address_only() {
        let mut app = balancer();
        app.listeners.clear();
        app.proxied = vec![80, 8080];
        assert_eq!(
            rules(&app),
            [
                "ip daddr 203.0.113.9 tcp dport 80 dnat ip to 10.0.1.4",
                "ip daddr 203.0.113.9 tcp dport 8080 dnat ip to 10.0.1.4"
            ]
        );
        app.public_ip = None;
        assert!(rules(&app).is_empty());
    }

    const OUT: &str =
        "  chain elb_out {\n    type nat hook postrouting priority srcnat; policy accept;\n  }\n";

    #[test]
    fn no_healthy_target_no_rule_but_the_hooks_stay() {
        let mut lonely = balancer();
        lonely.public_ip = None;
        for listener in &mut lonely.listeners {
            listener.targets.clear();
        }
        let mut out = String::new();
        chains(&mut out, &[lonely]);
        assert_eq!(
            out,
            format!(
                "  chain elb_in {{\n    type nat hook prerouting priority dstnat; policy accept;\n  }}\n{OUT}"
            )
        );
        let mut none = String::new();
        chains(&mut none, &[]);
        assert_eq!(none, "");
    }
}
