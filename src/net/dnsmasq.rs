//! What a VPC's DHCP and DNS server is told: the configuration of the
//! dnsmasq (Debian's) that `gureum daemon` runs in the VPC's namespace.
//!
//! - DHCP on every subnet's bridge, static only: a port's MAC gets the
//!   port's address (the store's), its subnet's router, the VPC resolver
//!   and the domain, for an hour, as EC2's DHCP options give them. A MAC
//!   the store does not know gets nothing.
//! - DNS on the VPC resolver (the block's base + 2, on the namespace's
//!   loopback, reached through each subnet's router): EC2's private names,
//!   `ip-10-0-1-10.ec2.internal`, for every address of the block, forward
//!   and reverse. Other names go to the host's resolvers when the VPC has
//!   an internet gateway (the namespace's own traffic leaves through it),
//!   as the AWS resolver answers public names; without one, nothing
//!   outside the VPC is reachable and other names are refused.
//! - The VPC's load balancers' DNS names (under gureum's own domain,
//!   kept local): an internet-facing one's public address, as ELB's
//!   resolve to public addresses from inside the VPC too; an internal
//!   one's private addresses.
//!
//! The text is a pure function of the VPC's description, so the daemon
//! restarts a server exactly when what it must serve changed.

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::cidr;
use super::vpc::{VpcSpec, bridge_name};

/// The domain of instances' private names, as EC2 names them in its
/// first region (gureum's in every region).
pub const DOMAIN: &str = "ec2.internal";
/// The domain of the names gureum gives (load balancers'): answered by
/// the VPC resolver, never forwarded.
pub const GUREUM_DOMAIN: &str = "gureum.internal";
/// What EC2's DHCP leases last.
const LEASE: &str = "1h";

/// The private name of `address`, without the domain: `ip-10-0-1-10`.
pub fn private_name(address: Ipv4Addr) -> String {
    format!("ip-{}", address.to_string().replace('.', "-"))
}

/// The dnsmasq configuration of VPC `spec`, forwarding other names to
/// `upstreams` if it has a gateway; none if its block has no resolver
/// address (it always has: a VPC is at least a /28).
pub fn config(spec: &VpcSpec, upstreams: &[Ipv4Addr]) -> Option<String> {
    let resolver = cidr::resolver(spec.cidr)?;
    let mut out = String::new();
    let _ = writeln!(out, "# gureum: DHCP and DNS of VPC {}", spec.id);
    // Nothing of the host's: no /etc/hosts, /etc/resolv.conf, pid or
    // lease file (leases are the store's, static).
    for line in [
        "no-hosts",
        "no-resolv",
        "pid-file=",
        "leasefile-ro",
        "dhcp-authoritative",
        // A guest asking in a loop must not fill the host's disk.
        "quiet-dhcp",
        "log-facility=-",
        "domain-needed",
        "bogus-priv",
    ] {
        let _ = writeln!(out, "{line}");
    }
    if spec.gateway.is_some() {
        for server in upstreams {
            let _ = writeln!(out, "server={server}");
        }
    }
    let _ = writeln!(out, "local=/{DOMAIN}/");
    let _ = writeln!(out, "local=/{GUREUM_DOMAIN}/");
    for balancer in &spec.balancers {
        let addresses: Vec<Ipv4Addr> = match balancer.public_ip {
            Some(public) => vec![public],
            None => balancer.ports.iter().map(|p| p.ip).collect(),
        };
        for address in addresses {
            let _ = writeln!(out, "address=/{}/{address}", balancer.dns_name);
        }
    }
    let _ = writeln!(out, "domain={DOMAIN}");
    let _ = writeln!(out, "synth-domain={DOMAIN},{},ip-", spec.cidr);
    let _ = writeln!(out, "listen-address={resolver}");
    let _ = writeln!(out, "dhcp-option=option:dns-server,{resolver}");
    let _ = writeln!(out, "dhcp-option=option:domain-name,{DOMAIN}");
    for subnet in &spec.subnets {
        let Some(router) = cidr::router(subnet.cidr) else {
            continue;
        };
        let tag = &subnet.id;
        let _ = writeln!(out, "interface={}", bridge_name(&subnet.id));
        let _ = writeln!(
            out,
            "dhcp-range=set:{tag},{},static,{},{LEASE}",
            subnet.cidr.network(),
            subnet.cidr.netmask()
        );
        let _ = writeln!(out, "dhcp-option=tag:{tag},option:router,{router}");
    }
    for port in &spec.ports {
        let _ = writeln!(
            out,
            "dhcp-host={},{},{}",
            port.mac,
            port.ip,
            private_name(port.ip)
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mac::MacAddr;
    use crate::net::cidr::Ipv4Cidr;
    use crate::net::port::Port;
    use crate::net::vpc::SubnetSpec;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn names_and_masks_are_ec2s() {
        assert_eq!(private_name(Ipv4Addr::new(10, 0, 1, 10)), "ip-10-0-1-10");
        assert_eq!(
            cidr("10.0.1.0/24").netmask(),
            Ipv4Addr::new(255, 255, 255, 0)
        );
        assert_eq!(
            cidr("172.31.0.0/20").netmask(),
            Ipv4Addr::new(255, 255, 240, 0)
        );
        assert_eq!(cidr("0.0.0.0/0").netmask(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn every_subnet_is_served_and_every_port_has_its_address() {
        let mut spec = VpcSpec::new("vpc-1", cidr("10.0.0.0/16"));
        for (id, block) in [("subnet-a", "10.0.1.0/24"), ("subnet-b", "10.0.2.0/28")] {
            spec.subnets.push(SubnetSpec {
                id: id.into(),
                cidr: cidr(block),
                internet: false,
            });
        }
        spec.ports.push(Port {
            id: "i-1".into(),
            link: "t-1".into(),
            subnet: "subnet-b".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ip: Ipv4Addr::new(10, 0, 2, 4),
            groups: vec!["sg-1".into()],
            source_dest_check: true,
        });
        let upstream = [Ipv4Addr::new(192, 0, 2, 53)];
        let text = config(&spec, &upstream).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for line in [
            "listen-address=10.0.0.2",
            "dhcp-option=option:dns-server,10.0.0.2",
            "synth-domain=ec2.internal,10.0.0.0/16,ip-",
            "interface=br-subnet-a",
            "dhcp-range=set:subnet-a,10.0.1.0,static,255.255.255.0,1h",
            "dhcp-option=tag:subnet-a,option:router,10.0.1.1",
            "interface=br-subnet-b",
            "dhcp-range=set:subnet-b,10.0.2.0,static,255.255.255.240,1h",
            "dhcp-option=tag:subnet-b,option:router,10.0.2.1",
            "dhcp-host=02:00:00:00:00:01,10.0.2.4,ip-10-0-2-4",
            "no-resolv",
            "leasefile-ro",
        ] {
            assert!(lines.contains(&line), "no '{line}' in\n{text}");
        }
        // The same VPC gives the same text: the daemon compares them.
        assert_eq!(config(&spec, &upstream).unwrap(), text);
        // Without a gateway nothing outside the VPC is reached: no upstream.
        assert!(!text.contains("server="));
        spec.gateway = Some(Ipv4Addr::new(203, 0, 113, 2));
        let text = config(&spec, &upstream).unwrap();
        assert!(text.lines().any(|l| l == "server=192.0.2.53"), "{text}");
        // Private names never leave: EC2's domain stays local.
        assert!(text.lines().any(|l| l == "local=/ec2.internal/"), "{text}");
    }

    #[test]
    fn load_balancers_names_answer_their_public_or_private_addresses() {
        let mut spec = VpcSpec::new("vpc-1", cidr("10.0.0.0/16"));
        let port = |ip: [u8; 4]| Port {
            id: "elb-1-0".into(),
            link: "l-1".into(),
            subnet: "subnet-a".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            ip: Ipv4Addr::from(ip),
            groups: vec!["sg-1".into()],
            source_dest_check: true,
        };
        let balancer = |name: &str, public: Option<Ipv4Addr>, ports| crate::net::elb::Balancer {
            id: format!("elb-{name}"),
            dns_name: format!("{name}-1.elb.local-1.gureum.internal"),
            netns: format!("gureum-elb-{name}"),
            ports,
            public_ip: public,
            listeners: Vec::new(),
            proxied: Vec::new(),
        };
        spec.balancers.push(balancer(
            "front",
            Some(Ipv4Addr::new(203, 0, 113, 9)),
            vec![port([10, 0, 1, 5])],
        ));
        spec.balancers.push(balancer(
            "internal-back",
            None,
            vec![port([10, 0, 1, 6]), port([10, 0, 2, 6])],
        ));
        let text = config(&spec, &[]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for line in [
            "local=/gureum.internal/",
            "address=/front-1.elb.local-1.gureum.internal/203.0.113.9",
            "address=/internal-back-1.elb.local-1.gureum.internal/10.0.1.6",
            "address=/internal-back-1.elb.local-1.gureum.internal/10.0.2.6",
        ] {
            assert!(lines.contains(&line), "no '{line}' in\n{text}");
        }
        // The internet-facing one's private address is not its name's.
        assert!(!text.contains("10.0.1.5"), "{text}");
    }
}
