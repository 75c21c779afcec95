//! Address translation at the internet gateway: outbound traffic takes the
//! gateway's public address, and each elastic IP maps 1:1 to one private
//! address in both directions.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// The translations at one gateway link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nat<'a> {
    /// The gateway link in the VPC namespace.
    pub link: &'a str,
    /// The public address ordinary outbound traffic leaves with.
    pub address: Ipv4Addr,
    /// Elastic IPs: (public, private) pairs.
    pub elastic: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// The nat chains. An instance with an elastic IP leaves with that
/// address; every other one with the gateway's.
pub fn chains(out: &mut String, nat: &Nat<'_>) {
    let link = nat.link;
    let _ = writeln!(out, "  chain prerouting {{");
    let _ = writeln!(
        out,
        "    type nat hook prerouting priority dstnat; policy accept;"
    );
    for (public, private) in &nat.elastic {
        let _ = writeln!(
            out,
            "    iifname \"{link}\" ip daddr {public} dnat ip to {private}"
        );
    }
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  chain postrouting {{");
    let _ = writeln!(
        out,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    for (public, private) in &nat.elastic {
        let _ = writeln!(
            out,
            "    oifname \"{link}\" ip saddr {private} snat ip to {public}"
        );
    }
    let _ = writeln!(out, "    oifname \"{link}\" snat ip to {}", nat.address);
    let _ = writeln!(out, "  }}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elastic_ips_translate_both_ways_before_the_gateway_address() {
        let mut out = String::new();
        chains(
            &mut out,
            &Nat {
                link: "gw",
                address: Ipv4Addr::new(203, 0, 113, 2),
                elastic: vec![(Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(10, 0, 1, 4))],
            },
        );
        let expected = "  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"gw\" ip daddr 203.0.113.10 dnat ip to 10.0.1.4
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"gw\" ip saddr 10.0.1.4 snat ip to 203.0.113.10
    oifname \"gw\" snat ip to 203.0.113.2
  }
";
        assert_eq!(out, expected);
    }
}
