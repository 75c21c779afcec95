//! Anti-spoofing on the bridge: a port may send only from its own MAC
//! address, and only from its own IP address unless its source/destination
//! check is off. The same chain marks each port's packets, because once a
//! packet is routed only its mark still tells which port it came from.

use std::fmt::Write;

use super::ident;
use crate::net::port::Port;

/// The mark of the packets of the port at `position` (from 0) in the
/// VPC's sorted port list; 0 means "not from a port".
pub fn mark(position: usize) -> u32 {
    u32::try_from(position).map_or(u32::MAX, |position| position.saturating_add(1))
}

fn chain(port: &Port) -> String {
    format!("from_{}", ident(&port.id))
}

/// The `bridge gureum` table's body: a dispatch on the ingress port and one
/// chain per port.
pub fn table_body(out: &mut String, ports: &[&Port]) {
    let _ = writeln!(out, "  chain prerouting {{");
    let _ = writeln!(
        out,
        "    type filter hook prerouting priority filter; policy accept;"
    );
    if !ports.is_empty() {
        let entries: Vec<String> = ports
            .iter()
            .map(|port| format!("\"{}\" : jump {}", port.link, chain(port)))
            .collect();
        let _ = writeln!(out, "    iifname vmap {{ {} }}", entries.join(", "));
    }
    let _ = writeln!(out, "  }}");
    for (position, port) in ports.iter().enumerate() {
        let _ = writeln!(out, "  chain {} {{", chain(port));
        let _ = writeln!(out, "    ether saddr != {} drop", port.mac);
        let _ = writeln!(out, "    meta mark set {:#010x}", mark(position));
        if port.source_dest_check {
            // 0.0.0.0 is the sender of ARP probes (address conflict detection).
            let _ = writeln!(
                out,
                "    ether type arp arp saddr ether {} arp saddr ip {{ 0.0.0.0, {} }} return",
                port.mac, port.ip
            );
            let _ = writeln!(out, "    ether type ip ip saddr {} return", port.ip);
            // A DHCP client asks before it has an address (the reply it
            // gets is the port's own address: anti-spoofing pins that).
            let _ = writeln!(
                out,
                "    ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return"
            );
        } else {
            let _ = writeln!(out, "    ether type {{ arp, ip }} return");
        }
        // Everything else (IPv6, other ethertypes) has no policy yet: drop.
        let _ = writeln!(out, "    drop");
        let _ = writeln!(out, "  }}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mac::MacAddr;
    use std::net::Ipv4Addr;

    fn port(check: bool) -> Port {
        Port {
            id: "i-1".into(),
            link: "tap1".into(),
            subnet: "subnet-a".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ip: Ipv4Addr::new(10, 0, 1, 4),
            groups: vec![],
            source_dest_check: check,
        }
    }

    #[test]
    fn a_checked_port_may_send_only_its_own_addresses() {
        let port = port(true);
        let mut out = String::new();
        table_body(&mut out, &[&port]);
        let expected = "  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    iifname vmap { \"tap1\" : jump from_i_1 }
  }
  chain from_i_1 {
    ether saddr != 02:00:00:00:00:01 drop
    meta mark set 0x00000001
    ether type arp arp saddr ether 02:00:00:00:00:01 arp saddr ip { 0.0.0.0, 10.0.1.4 } return
    ether type ip ip saddr 10.0.1.4 return
    ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return
    drop
  }
";
        assert_eq!(out, expected);
    }

    #[test]
    fn an_unchecked_port_may_send_any_ip_but_not_any_mac() {
        let port = port(false);
        let mut out = String::new();
        table_body(&mut out, &[&port]);
        assert!(out.contains("ether saddr != 02:00:00:00:00:01 drop"));
        assert!(out.contains("ether type { arp, ip } return"));
        assert!(!out.contains("ip saddr 10.0.1.4"));
    }

    #[test]
    fn marks_start_at_one() {
        assert_eq!(mark(0), 1);
        assert_eq!(mark(9), 10);
    }
}
