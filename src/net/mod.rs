//! The VPC model realised in Linux: network namespaces, bridges, veth and
//! tap links, routes and policy rules, and nftables with conntrack.
//!
//! `vpc` is the entry point: it brings one VPC in Linux in line with what
//! its records describe (`reconcile` says how a difference is noted). The
//! other modules are the pieces it is made of, each usable (and tested) on
//! its own.

pub mod cidr;
pub mod dnsmasq;
pub mod elb;
pub mod link;
pub mod nft;
pub mod port;
pub mod reconcile;
pub mod uplink;
pub mod vpc;
