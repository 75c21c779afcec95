//! What an application load balancer's proxy serves, as the store has
//! it now: the namespace and addresses it listens in, each listener's
//! rules in priority order and default group, and the healthy targets of
//! those groups. The daemon's proxy (`daemon::proxy`) reads it afresh
//! every moment, so that rule and health changes take effect at once.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::load_balancer::{BalancerType, LoadBalancer};
use super::rule::{self, Asked, Rule};
use crate::cloud;
use crate::cloud::store::Tx;

/// One application load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub id: String,
    pub netns: String,
    /// Its private addresses, one per subnet.
    pub addresses: Vec<Ipv4Addr>,
    pub listeners: Vec<Route>,
    /// The healthy targets of each group its listeners use.
    pub groups: BTreeMap<String, Vec<SocketAddrV4>>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub port: u16,
    /// By priority, lowest first.
    pub rules: Vec<Rule>,
    pub default_group: String,
}

impl Proxy {
    /// The target group a request to listener `port` goes to, with its
    /// healthy targets (maybe none); None for a port with no listener.
    pub fn route(&self, port: u16, asked: &Asked<'_>) -> Option<(&str, &[SocketAddrV4])> {
        let listener = self.listeners.iter().find(|l| l.port == port)?;
        let group = rule::first_match(&listener.rules, asked).unwrap_or(&listener.default_group);
        let targets = self.groups.get(group).map_or(&[][..], Vec::as_slice);
        Some((group, targets))
    }

    /// Where it listens: each address with each listener port.
    pub fn sockets(&self) -> Vec<SocketAddrV4> {
        self.addresses
            .iter()
            .flat_map(|a| self.listeners.iter().map(|l| SocketAddrV4::new(*a, l.port)))
            .collect()
    }
}

/// Every application load balancer of the store.
pub fn proxies(tx: &Tx<'_>) -> Result<Vec<Proxy>, cloud::Error> {
    let mut healthy: BTreeMap<String, BTreeMap<String, Vec<(Ipv4Addr, u16)>>> = BTreeMap::new();
    let mut all = Vec::new();
    for balancer in tx.list::<LoadBalancer>()? {
        if balancer.balancer_type != BalancerType::Application {
            continue;
        }
        if !healthy.contains_key(&balancer.vpc_id) {
            let found = super::healthy_targets(tx, &balancer.vpc_id)?;
            healthy.insert(balancer.vpc_id.clone(), found);
        }
        let in_vpc = healthy.get(&balancer.vpc_id);
        let mut groups = BTreeMap::new();
        for group in balancer.listeners.iter().flat_map(|l| l.groups()) {
            let targets = in_vpc
                .and_then(|h| h.get(group))
                .into_iter()
                .flatten()
                .map(|(address, port)| SocketAddrV4::new(*address, *port))
                .collect();
            groups.insert(group.to_owned(), targets);
        }
        all.push(Proxy {
            id: balancer.id.clone(),
            netns: balancer.netns.clone(),
            addresses: balancer.ports.iter().map(|p| p.private_ip).collect(),
            listeners: balancer
                .listeners
                .iter()
                .map(|l| {
                    let mut rules = l.rules.clone();
                    rules.sort_by_key(|r| r.priority);
                    Route {
                        port: l.port,
                        rules,
                        default_group: l.target_group_id.clone(),
                    }
                })
                .collect(),
            groups,
        });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::elb::rule::{Condition, Field};

    #[test]
    fn requests_go_by_rule_else_to_the_default_with_its_healthy_targets() {
        let target = |n| SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, n), 80);
        let proxy = Proxy {
            id: "elb-1".into(),
            netns: "ns".into(),
            addresses: vec![Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(10, 0, 2, 4)],
            listeners: vec![Route {
                port: 80,
                rules: vec![Rule {
                    id: "1".into(),
                    arn: String::new(),
                    priority: 1,
                    conditions: vec![
                        Condition::checked(Field::PathPattern, vec!["/a*".into()]).unwrap(),
                    ],
                    target_group_id: "tg-a".into(),
                }],
                default_group: "tg-d".into(),
            }],
            groups: [
                ("tg-a".to_owned(), vec![target(10)]),
                ("tg-d".to_owned(), vec![]),
            ]
            .into(),
        };
        let asked = |path| Asked { path, host: "h" };
        assert_eq!(
            proxy.route(80, &asked("/a")),
            Some(("tg-a", &[target(10)][..]))
        );
        assert_eq!(proxy.route(80, &asked("/z")), Some(("tg-d", &[][..])));
        assert_eq!(proxy.route(81, &asked("/a")), None);
        assert_eq!(
            proxy.sockets(),
            [
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 4), 80),
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 4), 80)
            ]
        );
    }
}
