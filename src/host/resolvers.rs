//! The host's DNS resolvers, as its resolver configuration names them:
//! where a VPC's resolver sends the names it does not answer itself.
//!
//! A VPC's namespace cannot reach the host's loopback, so a local stub
//! (systemd-resolved's 127.0.0.53, a dnsmasq on 127.0.0.1) is replaced by
//! what the stub itself forwards to, where systemd-resolved says so.

use std::net::Ipv4Addr;
use std::path::Path;

/// The host's resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the upstream servers its stub uses.
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// The IPv4 resolvers another network namespace of this host can reach:
/// `/etc/resolv.conf`'s, or, when that names only a local stub,
/// systemd-resolved's upstreams. Empty when there are none (or the files
/// cannot be read): the VPC resolver then answers only its own names.
pub fn reachable() -> Vec<Ipv4Addr> {
    let read = |path: &str| std::fs::read_to_string(Path::new(path)).unwrap_or_default();
    let (remote, stub) = nameservers(&read(RESOLV_CONF));
    if remote.is_empty() && stub {
        return nameservers(&read(RESOLVED_UPSTREAMS)).0;
    }
    remote
}

/// The non-loopback IPv4 `nameserver` addresses of a resolv.conf text, in
/// order, and whether it also named a loopback one.
fn nameservers(text: &str) -> (Vec<Ipv4Addr>, bool) {
    let mut remote = Vec::new();
    let mut stub = false;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // IPv6 resolvers (and anything unreadable) are out of a VPC's reach.
        let Some(address) = words.next().and_then(|w| w.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        if address.is_loopback() {
            stub = true;
        } else if !address.is_unspecified() && !remote.contains(&address) {
            remote.push(address);
        }
    }
    (remote, stub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_ipv4_resolvers_are_kept_in_order_and_a_stub_is_noticed() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.53\n\
                    nameserver 2001:db8::1\nnameserver 127.0.0.53\n  nameserver   198.51.100.7 # x\n\
                    nameserver 192.0.2.53\nnameserver\nnameserver not-an-address\n";
        let (remote, stub) = nameservers(text);
        assert_eq!(
            remote,
            [Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(198, 51, 100, 7)]
        );
        assert!(stub);
        assert_eq!(
            nameservers("nameserver 10.0.0.2\n"),
            (vec![Ipv4Addr::new(10, 0, 0, 2)], false)
        );
        assert_eq!(nameservers(""), (vec![], false));
    }
}
