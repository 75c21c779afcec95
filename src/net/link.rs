//! Links, addresses, routes and routing rules of one network namespace,
//! over rtnetlink.
//!
//! The netlink socket is opened by a thread inside the namespace, so every
//! request made through it acts there, whichever thread sends it. The
//! rtnetlink crate is asynchronous; the few requests gureum makes are
//! driven to completion one by one on a private single-thread runtime, so
//! callers stay synchronous.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoKind, InfoPortData, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::cidr::Ipv4Cidr;
use crate::host::mac::MacAddr;
use crate::host::netns::{self, Netns};

/// Longest interface name Linux accepts (IFNAMSIZ less the NUL).
pub const MAX_IFNAME_LEN: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {subject} in network namespace '{netns}': {source}")]
    Netlink {
        action: &'static str,
        subject: String,
        netns: String,
        // Boxed: rtnetlink's error is large, and errors travel far.
        source: Box<rtnetlink::Error>,
    },
    #[error("no link '{name}' in network namespace '{netns}'")]
    NoSuchLink { name: String, netns: String },
    #[error("cannot open a netlink socket in network namespace '{netns}': {source}")]
    Connect { netns: String, source: io::Error },
    #[error(transparent)]
    Netns(#[from] netns::Error),
}

/// A rtnetlink connection bound to one network namespace. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Rtnl {
    netns: String,
    runtime: Arc<tokio::runtime::Runtime>,
    handle: rtnetlink::Handle,
}

impl Rtnl {
    /// Opens a connection acting in the namespace the calling thread is
    /// in, named `netns` in messages (for a namespace being made).
    pub fn open_here(netns: &str) -> Result<Self, Error> {
        let connect = |source| Error::Connect {
            netns: netns.to_owned(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(connect)?;
        let (connection, handle) = {
            let _context = runtime.enter();
            rtnetlink::new_connection()
                .map(|(connection, handle, _)| (connection, handle))
                .map_err(connect)?
        };
        runtime.spawn(connection);
        Ok(Self {
            netns: netns.to_owned(),
            runtime: Arc::new(runtime),
            handle,
        })
    }

    /// Opens a connection acting in `netns`.
    pub fn open(netns: &Netns) -> Result<Self, Error> {
        // The socket acts in the namespace of the thread that makes it.
        netns.run(|| Self::open_here(netns.name()))?
    }

    fn request<T>(
        &self,
        action: &'static str,
        subject: &str,
        work: impl Future<Output = Result<T, rtnetlink::Error>>,
    ) -> Result<T, Error> {
        self.runtime
            .block_on(work)
            .map_err(|source| Error::Netlink {
                action,
                subject: subject.to_owned(),
                netns: self.netns.clone(),
                source: Box::new(source),
            })
    }

    /// The interface index of link `name`, if there is one.
    pub fn index(&self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.find(name)?.map(|link| link.header.index))
    }

    fn find(&self, name: &str) -> Result<Option<LinkMessage>, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match self.runtime.block_on(links.try_next()) {
            Ok(link) => Ok(link),
            Err(source) if no_such_device(&source) => Ok(None),
            Err(source) => Err(Error::Netlink {
                action: "look up",
                subject: format!("link {name}"),
                netns: self.netns.clone(),
                source: Box::new(source),
            }),
        }
    }

    fn require(&self, name: &str) -> Result<u32, Error> {
        self.index(name)?.ok_or_else(|| Error::NoSuchLink {
            name: name.to_owned(),
            netns: self.netns.clone(),
        })
    }

    /// Names and aliases (`ip link set alias`) of every link.
    pub fn links(&self) -> Result<Vec<(String, Option<String>)>, Error> {
        let links: Vec<LinkMessage> = self.request(
            "list",
            "links",
            self.handle.link().get().execute().try_collect(),
        )?;
        Ok(links
            .into_iter()
            .filter_map(|link| {
                let mut name = None;
                let mut alias = None;
                for attribute in link.attributes {
                    match attribute {
                        LinkAttribute::IfName(text) => name = Some(text),
                        LinkAttribute::IfAlias(text) => alias = Some(text),
                        _ => {}
                    }
                }
                Some((name?, alias))
            })
            .collect())
    }

    fn all_links(&self) -> Result<Vec<LinkMessage>, Error> {
        self.request(
            "list",
            "links",
            self.handle.link().get().execute().try_collect(),
        )
    }

    fn names_by_index(&self) -> Result<BTreeMap<u32, String>, Error> {
        Ok(index_names(&self.all_links()?))
    }

    /// Every link as it is: what the reconciler compares with what
    /// should be.
    pub fn link_states(&self) -> Result<Vec<LinkState>, Error> {
        let links = self.all_links()?;
        let names = index_names(&links);
        Ok(links
            .iter()
            .filter_map(|link| {
                let mut state = LinkState {
                    name: link_name(link)?,
                    up: link.header.flags.contains(LinkFlags::Up),
                    ..LinkState::default()
                };
                for attribute in &link.attributes {
                    match attribute {
                        LinkAttribute::IfAlias(text) => state.alias = Some(text.clone()),
                        LinkAttribute::Controller(index) => {
                            state.controller = names.get(index).cloned();
                        }
                        LinkAttribute::LinkInfo(infos) => read_link_info(infos, &mut state),
                        _ => {}
                    }
                }
                Some(state)
            })
            .collect())
    }

    /// Every IPv4 address, as (link, address, prefix length).
    pub fn addresses(&self) -> Result<Vec<(String, Ipv4Addr, u8)>, Error> {
        let names = self.names_by_index()?;
        let found: Vec<_> = self.request(
            "list",
            "addresses",
            self.handle.address().get().execute().try_collect(),
        )?;
        Ok(found
            .into_iter()
            .filter_map(|message| {
                let name = names.get(&message.header.index)?.clone();
                let address = message.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(address)) => Some(*address),
                    _ => None,
                })?;
                Some((name, address, message.header.prefix_len))
            })
            .collect())
    }

    /// The IPv4 routes gureum may have made: every route of `table`
    /// except those the kernel adds for local addresses.
    pub fn routes(&self, table: u32) -> Result<Vec<RouteState>, Error> {
        let names = self.names_by_index()?;
        let found: Vec<_> = self.request(
            "list",
            "routes",
            self.handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect(),
        )?;
        Ok(found
            .into_iter()
            .filter(|message| message.header.protocol != RouteProtocol::Kernel)
            .filter_map(|message| {
                let mut route_table = u32::from(message.header.table);
                let mut destination = Ipv4Addr::UNSPECIFIED;
                let mut gateway = None;
                let mut device = None;
                for attribute in &message.attributes {
                    match attribute {
                        RouteAttribute::Table(id) => route_table = *id,
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => destination = *a,
                        RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
                        RouteAttribute::Oif(index) => device = names.get(index).cloned(),
                        _ => {}
                    }
                }
                let destination =
                    Ipv4Cidr::new(destination, message.header.destination_prefix_length)?;
                (route_table == table).then_some(RouteState {
                    destination,
                    gateway,
                    device: device?,
                    table,
                })
            })
            .collect())
    }

    fn rule_messages(&self) -> Result<Vec<RuleMessage>, Error> {
        self.request(
            "list",
            "routing rules",
            self.handle
                .rule()
                .get(rtnetlink::IpVersion::V4)
                .execute()
                .try_collect(),
        )
    }

    /// The IPv4 routing rules, but the three every namespace starts with
    /// (local, main, default).
    pub fn rules(&self) -> Result<Vec<RuleState>, Error> {
        Ok(self
            .rule_messages()?
            .into_iter()
            .filter_map(|message| {
                let mut rule = RuleState {
                    priority: 0,
                    input: None,
                    table: u32::from(message.header.table),
                    suppress_default: false,
                    fwmark: None,
                };
                for attribute in &message.attributes {
                    match attribute {
                        RuleAttribute::Priority(p) => rule.priority = *p,
                        RuleAttribute::Iifname(name) => rule.input = Some(name.clone()),
                        RuleAttribute::Table(id) => rule.table = *id,
                        RuleAttribute::SuppressPrefixLen(0) => rule.suppress_default = true,
                        RuleAttribute::FwMark(mark) => rule.fwmark = Some(*mark),
                        _ => {}
                    }
                }
                (!BUILTIN_RULE_PRIORITIES.contains(&rule.priority)).then_some(rule)
            })
            .collect())
    }

    /// Takes link `name` down.
    pub fn set_down(&self, name: &str) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(self.require(name)?)
            .down()
            .build();
        self.request(
            "take down",
            &format!("link {name}"),
            self.handle.link().set(message).execute(),
        )
    }

    pub fn add_bridge(&self, name: &str) -> Result<(), Error> {
        self.request(
            "create",
            &format!("bridge {name}"),
            self.handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute(),
        )
    }

    /// Creates the veth pair `name` / `peer`, both ends here.
    pub fn add_veth(&self, name: &str, peer: &str) -> Result<(), Error> {
        self.request(
            "create",
            &format!("veth pair {name}/{peer}"),
            self.handle
                .link()
                .add(LinkVeth::new(name, peer).build())
                .execute(),
        )
    }

    /// Deletes link `name` (both ends, for a veth); a missing link is fine.
    pub fn delete(&self, name: &str) -> Result<(), Error> {
        let Some(index) = self.index(name)? else {
            return Ok(());
        };
        let deleted = self.request(
            "delete",
            &format!("link {name}"),
            self.handle.link().del(index).execute(),
        );
        match deleted {
            // Gone since it was looked up: its veth peer was deleted.
            Err(Error::Netlink { source, .. }) if no_such_device(&source) => Ok(()),
            other => other,
        }
    }

    /// Moves link `name` into another namespace, where it keeps its name
    /// and is down.
    pub fn move_to(&self, name: &str, target: &Netns) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(self.require(name)?)
            .setns_by_fd(target.as_fd().as_raw_fd())
            .build();
        self.request(
            "move",
            &format!("link {name} to namespace {}", target.name()),
            self.handle.link().set(message).execute(),
        )
    }

    pub fn set_up(&self, name: &str) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(self.require(name)?).up().build();
        self.request(
            "bring up",
            &format!("link {name}"),
            self.handle.link().set(message).execute(),
        )
    }

    pub fn set_mac(&self, name: &str, mac: MacAddr) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(self.require(name)?)
            .address(mac.0.to_vec())
            .build();
        self.request(
            "set the MAC address of",
            &format!("link {name}"),
            self.handle.link().set(message).execute(),
        )
    }

    /// Sets the alias, which gureum uses to note who owns a link.
    pub fn set_alias(&self, name: &str, alias: &str) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(self.require(name)?)
            .alias(alias)
            .build();
        self.request(
            "label",
            &format!("link {name}"),
            self.handle.link().set(message).execute(),
        )
    }

    /// Makes link `name` a port of `bridge` (or of none), isolated from the
    /// bridge's other isolated ports: everything a port sends reaches only
    /// the bridge's own address (the router), which is where filtering is.
    pub fn set_bridge(&self, name: &str, bridge: Option<&str>) -> Result<(), Error> {
        let index = self.require(name)?;
        let builder = LinkUnspec::new_with_index(index);
        let message = match bridge {
            Some(bridge) => builder.controller(self.require(bridge)?).build(),
            None => builder.nocontroller().build(),
        };
        self.request(
            "attach",
            &format!("link {name} to bridge {}", bridge.unwrap_or("(none)")),
            self.handle.link().set(message).execute(),
        )?;
        if bridge.is_some() {
            let port = LinkBridgePort::new(index)
                .append_info_data(InfoBridgePort::Isolated(true))
                .build();
            self.request(
                "isolate",
                &format!("bridge port {name}"),
                self.handle.link().set_port(port).execute(),
            )?;
        }
        Ok(())
    }

    pub fn add_address(&self, name: &str, address: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let index = self.require(name)?;
        self.request(
            "add",
            &format!("address {address}/{prefix} to {name}"),
            self.handle
                .address()
                .add(index, IpAddr::V4(address), prefix)
                .execute(),
        )
    }

    pub fn delete_address(&self, name: &str, address: Ipv4Addr) -> Result<(), Error> {
        let index = self.require(name)?;
        let subject = format!("address {address} of {name}");
        let found: Vec<_> = self.request(
            "look up",
            &subject,
            self.handle
                .address()
                .get()
                .set_link_index_filter(index)
                .set_address_filter(IpAddr::V4(address))
                .execute()
                .try_collect(),
        )?;
        for message in found {
            self.request(
                "delete",
                &subject,
                self.handle.address().del(message).execute(),
            )?;
        }
        Ok(())
    }

    /// Adds a route; a gateway is taken as on-link (it need not be in a
    /// local subnet).
    pub fn add_route(&self, route: &Route<'_>) -> Result<(), Error> {
        let message = route.message(self.require(route.device)?);
        self.request(
            "add",
            &route.to_string(),
            self.handle.route().add(message).execute(),
        )
    }

    pub fn delete_route(&self, route: &Route<'_>) -> Result<(), Error> {
        let message = route.message(self.require(route.device)?);
        self.request(
            "delete",
            &route.to_string(),
            self.handle.route().del(message).execute(),
        )
    }

    /// Adds a routing rule.
    pub fn add_rule(&self, rule: &Rule<'_>) -> Result<(), Error> {
        let mut request = self
            .handle
            .rule()
            .add()
            .action(RuleAction::ToTable)
            .table_id(rule.table)
            .priority(rule.priority);
        if let Some(input) = rule.input {
            request = request.input_interface(input);
        }
        let mut request = request.v4();
        if rule.suppress_default {
            request
                .message_mut()
                .attributes
                .push(RuleAttribute::SuppressPrefixLen(0));
        }
        if let Some(mark) = rule.fwmark {
            let attributes = &mut request.message_mut().attributes;
            attributes.push(RuleAttribute::FwMark(mark));
            attributes.push(RuleAttribute::FwMask(mark));
        }
        self.request("add", &rule.to_string(), request.execute())
    }

    pub fn delete_rule(&self, rule: &Rule<'_>) -> Result<(), Error> {
        for message in self.rule_messages()? {
            let same_priority = message.attributes.iter().any(
                |attribute| matches!(attribute, RuleAttribute::Priority(p) if *p == rule.priority),
            );
            let input = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    RuleAttribute::Iifname(name) => Some(name.as_str()),
                    _ => None,
                });
            if same_priority && input == rule.input {
                self.request(
                    "delete",
                    &rule.to_string(),
                    self.handle.rule().del(message).execute(),
                )?;
            }
        }
        Ok(())
    }
}

/// The priorities of the rules every namespace is made with.
const BUILTIN_RULE_PRIORITIES: [u32; 3] = [0, 32766, 32767];

fn index_names(links: &[LinkMessage]) -> BTreeMap<u32, String> {
    links
        .iter()
        .filter_map(|link| Some((link.header.index, link_name(link)?)))
        .collect()
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

fn read_link_info(infos: &[LinkInfo], state: &mut LinkState) {
    for info in infos {
        match info {
            LinkInfo::Kind(kind) => {
                state.kind = match kind {
                    InfoKind::Bridge => LinkKind::Bridge,
                    InfoKind::Veth => LinkKind::Veth,
                    InfoKind::Tun => LinkKind::Tun,
                    _ => LinkKind::Other,
                };
            }
            LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                state.isolated = port
                    .iter()
                    .any(|attribute| matches!(attribute, InfoBridgePort::Isolated(true)));
            }
            _ => {}
        }
    }
}

/// What kind of link a link is, as far as gureum cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Bridge,
    Veth,
    Tun,
    #[default]
    Other,
}

/// ENODEV: the kernel's answer for a link it does not know (any more).
fn no_such_device(error: &rtnetlink::Error) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(message) if message.raw_code() == -libc::ENODEV)
}

/// A link as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    pub name: String,
    pub kind: LinkKind,
    pub alias: Option<String>,
    /// The bridge it is a port of.
    pub controller: Option<String>,
    /// Isolated from the bridge's other isolated ports.
    pub isolated: bool,
    pub up: bool,
}

/// A route as observed (owned names, unlike [`Route`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteState {
    pub destination: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub device: String,
    pub table: u32,
}

impl RouteState {
    pub fn route(&self) -> Route<'_> {
        Route {
            destination: self.destination,
            gateway: self.gateway,
            device: &self.device,
            table: self.table,
        }
    }
}

/// A routing rule as observed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleState {
    pub priority: u32,
    pub input: Option<String>,
    pub table: u32,
    pub suppress_default: bool,
    pub fwmark: Option<u32>,
}

impl RuleState {
    pub fn rule(&self) -> Rule<'_> {
        Rule {
            priority: self.priority,
            input: self.input.as_deref(),
            table: self.table,
            suppress_default: self.suppress_default,
            fwmark: self.fwmark,
        }
    }
}

/// An IPv4 route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub destination: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub device: &'a str,
    pub table: u32,
}

impl Route<'_> {
    fn message(&self, device: u32) -> rtnetlink::packet_route::route::RouteMessage {
        let builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.destination.network(), self.destination.prefix())
            .output_interface(device)
            .table_id(self.table);
        match self.gateway {
            Some(gateway) => builder.gateway(gateway).onlink().build(),
            None => builder.build(),
        }
    }
}

impl std::fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "route {}", self.destination)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        write!(f, " dev {} table {}", self.device, self.table)
    }
}

/// A policy-routing rule (`ip rule`), identified by its priority and
/// input link: traffic arriving on `input` (any link when `None`) looks up
/// routing table `table`; with `suppress_default`, a default route found
/// there is ignored and the next rule is tried; with `fwmark`, only
/// packets whose mark has those bits set match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    pub priority: u32,
    pub input: Option<&'a str>,
    pub table: u32,
    pub suppress_default: bool,
    pub fwmark: Option<u32>,
}

impl std::fmt::Display for Rule<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rule {}: iif {} lookup {}",
            self.priority,
            self.input.unwrap_or("any"),
            self.table
        )?;
        if self.suppress_default {
            write!(f, " suppress_prefixlength 0")?;
        }
        if let Some(mark) = self.fwmark {
            write!(f, " fwmark {mark:#x}/{mark:#x}")?;
        }
        Ok(())
    }
}
