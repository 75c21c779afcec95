//! An instance's port on its subnet: the tap (or, in tests, a veth) in the
//! VPC namespace, with the addresses it may use and the security groups
//! that filter it.

use std::net::Ipv4Addr;

use crate::host::mac::MacAddr;

/// One network interface of an instance, as the VPC realisation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The owner's ID (an instance or network interface ID).
    pub id: String,
    /// The link's name in the VPC namespace.
    pub link: String,
    /// The ID of the subnet whose bridge the link joins.
    pub subnet: String,
    /// The only MAC address the port may send from.
    pub mac: MacAddr,
    /// The private address; the only source address the port may use
    /// while `source_dest_check` is on.
    pub ip: Ipv4Addr,
    /// IDs of the security groups filtering the port (at least one).
    pub groups: Vec<String>,
    /// Off for instances that forward others' traffic (NAT instances).
    pub source_dest_check: bool,
}
