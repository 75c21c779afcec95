//! Host primitives the VMM and the network layer share: network
//! namespaces, Ethernet addresses, sysctls, the host's DNS resolvers.

pub mod mac;
pub mod netns;
pub mod resolvers;
pub mod sysctl;
