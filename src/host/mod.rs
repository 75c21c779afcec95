//! Host primitives the VMM and the network layer share: network
//! namespaces, Ethernet addresses, sysctls.

pub mod mac;
pub mod netns;
pub mod sysctl;
