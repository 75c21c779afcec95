//! The whole firewall of one VPC namespace as one nft script: both gureum
//! tables are dropped and rebuilt in the same transaction, so the kernel
//! holds either the old ruleset or the new one, never a mix.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::nat::{self, Nat};
use super::security_group::{self, SecurityGroup};
use super::{TABLE, anti_spoof};
use crate::net::port::Port;
use crate::net::vpc::METADATA_ADDRESS;

/// Everything the firewall of a VPC is compiled from.
#[derive(Debug, Clone)]
pub struct Firewall<'a> {
    pub ports: &'a BTreeMap<String, Port>,
    pub groups: &'a BTreeMap<String, SecurityGroup>,
    /// The internet gateway's translations, when one is attached.
    pub nat: Option<Nat<'a>>,
    /// The network load balancers' listeners.
    pub balancers: &'a [crate::net::elb::Balancer],
}

/// The nft script that replaces gureum's tables with `firewall`.
pub fn script(firewall: &Firewall<'_>) -> String {
    let ports: Vec<&Port> = firewall.ports.values().collect();
    let mut out = String::new();
    for family in ["inet", "bridge"] {
        // "add" first, so that "delete" finds a table on the first run too.
        let _ = writeln!(out, "add table {family} {TABLE}");
        let _ = writeln!(out, "delete table {family} {TABLE}");
    }
    let _ = writeln!(out, "table inet {TABLE} {{");
    security_group::member_sets(&mut out, firewall.groups, firewall.ports);
    forward_chain(&mut out, firewall, &ports);
    input_chain(&mut out, firewall, &ports);
    for port in &ports {
        security_group::port_chains(&mut out, port, firewall.groups);
    }
    if let Some(nat) = &firewall.nat {
        nat::chains(&mut out, nat);
    }
    crate::net::elb::chains(&mut out, firewall.balancers);
    let _ = writeln!(out, "}}");
    let _ = writeln!(out, "table bridge {TABLE} {{");
    anti_spoof::table_body(&mut out, &ports);
    let _ = writeln!(out, "}}");
    out
}

/// Routed traffic: between subnets, between instances of one subnet (the
/// ports are isolated, so that goes through the router too), and through
/// the gateway. The sender's outbound rules, then the receiver's inbound
/// rules, judge the first packet of a connection.
fn forward_chain(out: &mut String, firewall: &Firewall<'_>, ports: &[&Port]) {
    let _ = writeln!(out, "  chain forward {{");
    let _ = writeln!(
        out,
        "    type filter hook forward priority filter; policy drop;"
    );
    let _ = writeln!(out, "    ct state established,related accept");
    let _ = writeln!(out, "    ct state invalid drop");
    if let Some(nat) = &firewall.nat {
        // From the internet, only connections to an elastic IP come in.
        let _ = writeln!(
            out,
            "    iifname \"{}\" ct status & dnat == 0 drop",
            nat.link
        );
    }
    if !ports.is_empty() {
        let senders = by_mark(ports, |mark, port| {
            format!("{mark} : jump {}", security_group::outbound_chain(port))
        });
        let _ = writeln!(out, "    meta mark vmap {{ {} }}", senders.join(", "));
        let receivers: Vec<String> = ports
            .iter()
            .map(|port| format!("{} : jump {}", port.ip, security_group::inbound_chain(port)))
            .collect();
        let _ = writeln!(out, "    ip daddr vmap {{ {} }}", receivers.join(", "));
    }
    let _ = writeln!(out, "    accept");
    let _ = writeln!(out, "  }}");
}

/// One map element per port, keyed by the mark anti-spoofing gives its
/// packets (written as nft reads it).
fn by_mark(ports: &[&Port], element: impl Fn(&str, &Port) -> String) -> Vec<String> {
    ports
        .iter()
        .enumerate()
        .map(|(position, port)| element(&format!("{:#010x}", anti_spoof::mark(position)), port))
        .collect()
}

/// Traffic to the VPC router itself: instances may reach it, the internet
/// may not. The metadata service tells instances apart by source
/// address, so only a port's own address reaches it from that port
/// (even with its source/destination check off), whatever its security
/// groups say, as on EC2.
fn input_chain(out: &mut String, firewall: &Firewall<'_>, ports: &[&Port]) {
    let _ = writeln!(out, "  chain input {{");
    let _ = writeln!(
        out,
        "    type filter hook input priority filter; policy accept;"
    );
    let _ = writeln!(out, "    ct state established,related accept");
    if let Some(nat) = &firewall.nat {
        let _ = writeln!(out, "    iifname \"{}\" drop", nat.link);
    }
    if !ports.is_empty() {
        let owners = by_mark(ports, |mark, port| format!("{mark} . {} : accept", port.ip));
        let _ = writeln!(
            out,
            "    ip daddr {METADATA_ADDRESS} meta mark . ip saddr vmap {{ {} }}",
            owners.join(", ")
        );
    }
    let _ = writeln!(out, "    ip daddr {METADATA_ADDRESS} drop");
    let _ = writeln!(out, "  }}");
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::host::mac::MacAddr;
    use crate::net::nft::security_group::{Peer, PortRange, Protocol, Rule};

    fn port(id: &str, ip: [u8; 4], groups: &[&str]) -> (String, Port) {
        let port = Port {
            id: id.into(),
            link: format!("tap-{id}"),
            subnet: "subnet-a".into(),
            mac: MacAddr([2, 0, 0, 0, 0, ip[3]]),
            ip: Ipv4Addr::from(ip),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            source_dest_check: true,
        };
        (id.to_owned(), port)
    }

    #[test]
    fn a_vpc_compiles_to_both_tables_in_one_script() {
        let mut web = SecurityGroup::new("sg-web");
        web.inbound.push(
            Rule::new(
                Protocol::Tcp,
                Some(PortRange::single(80)),
                Peer::Group("sg-web".into()),
            )
            .unwrap(),
        );
        let groups = BTreeMap::from([("sg-web".to_owned(), web)]);
        let ports = BTreeMap::from([
            port("i-a", [10, 0, 1, 4], &["sg-web"]),
            port("i-b", [10, 0, 1, 5], &["sg-web"]),
        ]);
        let script = script(&Firewall {
            ports: &ports,
            groups: &groups,
            nat: Some(Nat {
                link: "gw",
                address: Ipv4Addr::new(203, 0, 113, 2),
                elastic: vec![],
            }),
            balancers: &[],
        });
        let expected_forward = "  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    iifname \"gw\" ct status & dnat == 0 drop
    meta mark vmap { 0x00000001 : jump port_out_i_a, 0x00000002 : jump port_out_i_b }
    ip daddr vmap { 10.0.1.4 : jump port_in_i_a, 10.0.1.5 : jump port_in_i_b }
    accept
  }
";
        assert!(script.starts_with(
            "add table inet gureum\ndelete table inet gureum\nadd table bridge gureum\ndelete table bridge gureum\n"
        ));
        assert!(script.contains(expected_forward), "{script}");
        assert!(script.contains("    elements = { 10.0.1.4, 10.0.1.5 }\n"));
        assert!(script.contains(
            "  chain port_in_i_a {\n    ip saddr @members_sg_web meta l4proto tcp th dport 80 accept\n    drop\n  }\n"
        ));
        assert!(script.contains("  chain port_out_i_b {\n    return\n    drop\n  }\n"));
        assert!(script.contains("table bridge gureum {"));
        assert!(script.contains(
            "    ip daddr 169.254.169.254 meta mark . ip saddr vmap { 0x00000001 . 10.0.1.4 : accept, 0x00000002 . 10.0.1.5 : accept }\n    ip daddr 169.254.169.254 drop\n"
        ), "{script}");
    }

    #[test]
    fn an_empty_vpc_has_empty_tables_without_nat() {
        let script = script(&Firewall {
            ports: &BTreeMap::new(),
            groups: &BTreeMap::new(),
            nat: None,
            balancers: &[],
        });
        assert!(!script.contains("vmap"));
        assert!(!script.contains("nat"));
    }
}
