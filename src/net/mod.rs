//! The VPC model realised in Linux: network namespaces, bridges, veth and
//! tap links, routes and policy rules, and nftables with conntrack.
//!
//! `vpc` is the entry point: it realises one VPC and keeps it in step with
//! the control plane's changes, all or nothing. The other modules are the
//! pieces it is made of, each usable (and tested) on its own.

pub mod cidr;
pub mod cleanup;
pub mod link;
pub mod netns;
pub mod nft;
pub mod port;
pub mod sysctl;
pub mod undo;
pub mod vpc;
