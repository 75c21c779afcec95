//! The public side every internet gateway opens onto, and where gureum's
//! namespaces are: the namespace prefix, the public namespace with its
//! router, and the pool public addresses (gateway NAT addresses and
//! elastic IPs) come from.
//!
//! Configured by environment (`GUREUM_NET_PREFIX`, `GUREUM_PUBLIC_POOL`,
//! `GUREUM_PUBLIC_ROUTER`, `GUREUM_UPLINK`), like `GUREUM_STATE_DIR`: a setting of the
//! host, not a resource. The addresses handed out are kept in their
//! records, so changing the pool later never moves an address in use.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::host::netns::{self, Netns};
use crate::host::sysctl;
use crate::net::cidr::Ipv4Cidr;
use crate::net::link::Rtnl;
use crate::net::uplink;
use crate::net::vpc;

use super::Error;

pub const PREFIX_VAR: &str = "GUREUM_NET_PREFIX";
pub const POOL_VAR: &str = "GUREUM_PUBLIC_POOL";
pub const ROUTER_VAR: &str = "GUREUM_PUBLIC_ROUTER";
/// TEST-NET-3 (RFC 5737): never routed on the real internet, so the
/// public side cannot be mistaken for (or leak into) the host's network.
const DEFAULT_POOL: &str = "203.0.113.0/24";
/// The public namespace is the prefix followed by this.
const PUBLIC_SUFFIX: &str = "public";

/// The network settings of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// What every namespace gureum makes is named with.
    pub prefix: String,
    /// The public side's router: every gateway's next hop.
    pub router: Ipv4Addr,
    /// Where gateway and elastic addresses come from.
    pub pool: Ipv4Cidr,
    /// How the public side gets out of the host (`GUREUM_UPLINK`).
    pub uplink: uplink::Setting,
}

impl NetConfig {
    /// The settings from the environment, with the defaults.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = Self::new(
            var(PREFIX_VAR).as_deref(),
            var(POOL_VAR).as_deref(),
            var(ROUTER_VAR).as_deref(),
        )?;
        if let Some(text) = var(uplink::VAR) {
            config.uplink = uplink::Setting::parse(&text).map_err(|_| {
                bad_config(
                    uplink::VAR,
                    &text,
                    "write auto (the default route's interface), none, or an interface name",
                )
            })?;
        }
        Ok(config)
    }

    pub(crate) fn new(
        prefix: Option<&str>,
        pool: Option<&str>,
        router: Option<&str>,
    ) -> Result<Self, Error> {
        let prefix = prefix.unwrap_or(vpc::DEFAULT_PREFIX).to_owned();
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 24
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !prefix_ok {
            return Err(bad_config(
                PREFIX_VAR,
                &prefix,
                "use 1 to 24 of a-z, 0-9 and '-'",
            ));
        }
        let pool_text = pool.unwrap_or(DEFAULT_POOL);
        let pool: Ipv4Cidr = pool_text.parse().map_err(|e: crate::net::cidr::Error| {
            bad_config(POOL_VAR, pool_text, &e.to_string())
        })?;
        if pool.prefix() > 29 {
            return Err(bad_config(
                POOL_VAR,
                pool_text,
                "give a block of /29 or larger",
            ));
        }
        let router = match router {
            Some(text) => text
                .parse()
                .map_err(|_| bad_config(ROUTER_VAR, text, "write an IPv4 address"))?,
            None => pool.nth(1).unwrap_or(pool.network()),
        };
        if !pool.contains(router) {
            return Err(bad_config(
                ROUTER_VAR,
                &router.to_string(),
                &format!("it must lie inside {POOL_VAR} ({pool})"),
            ));
        }
        Ok(Self {
            prefix,
            router,
            pool,
            uplink: uplink::Setting::Auto,
        })
    }

    /// The namespace of VPC `id`.
    pub fn vpc_netns(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The public namespace's name.
    pub fn public_netns(&self) -> String {
        format!("{}{PUBLIC_SUFFIX}", self.prefix)
    }

    /// Opens the public namespace, making it (a router with forwarding on)
    /// when it does not exist yet.
    pub fn open_public(&self) -> Result<Netns, Error> {
        let name = self.public_netns();
        match Netns::open(&name) {
            Ok(netns) => return Ok(netns),
            Err(netns::Error::Missing(_)) => {}
            Err(error) => return Err(error.into()),
        }
        let netns = Netns::create(&name)?;
        let made = Rtnl::open(&netns)
            .map_err(Error::from)
            .and_then(|rtnl| Ok(rtnl.set_up("lo")?))
            .and_then(|()| Ok(sysctl::set(&netns, "net.ipv4.ip_forward", "1")?));
        if let Err(error) = made {
            let _ = netns.delete();
            return Err(error);
        }
        Ok(netns)
    }

    /// The lowest pool address that is not the network, broadcast or
    /// router address and not in `used`.
    pub fn allocate(&self, used: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, Error> {
        let first = u32::from(self.pool.network()) + 1;
        let last = u32::from(self.pool.last());
        (first..last)
            .map(Ipv4Addr::from)
            .find(|a| *a != self.router && !used.contains(a))
            .ok_or(Error::PoolExhausted { pool: self.pool })
    }
}

fn bad_config(var: &'static str, value: &str, fix: &str) -> Error {
    Error::BadConfig {
        var,
        value: value.to_owned(),
        fix: fix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = NetConfig::new(None, None, None).unwrap();
        assert_eq!(config.prefix, "gureum-");
        assert_eq!(config.router, Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(config.public_netns(), "gureum-public");
        assert_eq!(config.vpc_netns("vpc-1"), "gureum-vpc-1");
        let config =
            NetConfig::new(Some("t1-"), Some("198.51.100.0/28"), Some("198.51.100.14")).unwrap();
        assert_eq!(config.router, Ipv4Addr::new(198, 51, 100, 14));
        for (prefix, pool, router) in [
            (Some("UP"), None, None),
            (None, Some("10.0.0.1/24"), None),
            (None, Some("10.0.0.0/30"), None),
            (None, None, Some("10.0.0.1")),
            (None, None, Some("x")),
        ] {
            assert!(
                matches!(
                    NetConfig::new(prefix, pool, router),
                    Err(Error::BadConfig { .. })
                ),
                "{prefix:?} {pool:?} {router:?}"
            );
        }
    }

    #[test]
    fn the_pool_skips_network_router_broadcast_and_used() {
        let config = NetConfig::new(None, Some("198.51.100.0/29"), None).unwrap();
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Ok(address) = config.allocate(&used) {
            used.insert(address);
            got.push(address.octets()[3]);
        }
        assert_eq!(got, [2, 3, 4, 5, 6]);
        assert!(matches!(
            config.allocate(&used),
            Err(Error::PoolExhausted { .. })
        ));
    }
}
