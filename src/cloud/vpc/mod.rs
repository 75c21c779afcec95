//! The VPC control plane: VPCs, subnets, route tables, internet gateways,
//! security groups and elastic IPs as records in the store. A change is
//! committed as intent, then Linux is converged to the records
//! (`realise`, through `crate::net`).

/// Makes a VPC record (with an `id` field) a store `Resource` of kind
/// `$kind`: VPC resources are found by ID or Name tag, so none has a
/// unique name. With `in_vpc`, it also always lives in the VPC its
/// `vpc_id` names.
macro_rules! vpc_record {
    ($record:ty, $kind:expr) => {
        impl crate::cloud::store::Resource for $record {
            const KIND: crate::cloud::ids::Kind = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn unique_name(&self) -> Option<&str> {
                None
            }
        }
    };
    ($record:ty, $kind:expr, in_vpc) => {
        vpc_record!($record, $kind);
        impl super::InVpc for $record {
            fn vpc_id(&self) -> Option<&str> {
                Some(&self.vpc_id)
            }
        }
    };
}

pub mod default;
pub mod dns_server;
pub mod elastic_ip;
pub mod gateway;
pub mod network;
pub mod port;
pub mod public;
pub mod realise;
pub mod route_table;
pub mod security_group;
pub mod subnet;

use crate::net::{self, cidr::Ipv4Cidr};

/// What went wrong with a VPC resource, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Net(#[from] net::vpc::Error),
    #[error(transparent)]
    Cidr(#[from] net::cidr::Error),
    #[error(transparent)]
    Rule(#[from] net::nft::security_group::Error),
    #[error(transparent)]
    Netns(#[from] crate::host::netns::Error),
    #[error(transparent)]
    Link(#[from] net::link::Error),
    #[error(transparent)]
    Sysctl(#[from] crate::host::sysctl::Error),
    #[error(transparent)]
    Tap(crate::vmm::devices::virtio::net::tap::Error),
    #[error("{var}={value} is not usable: {fix}")]
    BadConfig {
        var: &'static str,
        value: String,
        fix: String,
    },
    #[error(
        "the public address pool {pool} is used up: release elastic IPs (`gureum eip list`), \
         launch with --no-associate-public-ip-address, or set a larger GUREUM_PUBLIC_POOL"
    )]
    PoolExhausted { pool: Ipv4Cidr },
    #[error("{noun} {id} still has {what}: {fix}")]
    InUse {
        noun: &'static str,
        id: String,
        what: String,
        fix: String,
    },
    #[error("{noun} {id} is in VPC {its_vpc}, not in VPC {vpc}")]
    OtherVpc {
        noun: &'static str,
        id: String,
        its_vpc: String,
        vpc: String,
    },
    #[error("VPC {vpc} already has a security group named '{name}'; pick another name")]
    GroupNameTaken { vpc: String, name: String },
    #[error("{what} {id} is deleted with its VPC, not on its own")]
    OwnedByVpc { what: &'static str, id: String },
    #[error(
        "only a 0.0.0.0/0 route to an internet gateway can be added (got {destination}); \
         routes inside the VPC are the `local` route, always there"
    )]
    UnsupportedRoute { destination: Ipv4Cidr },
    #[error("route table {table} already has a route to {destination}; delete it first")]
    RouteExists {
        table: String,
        destination: Ipv4Cidr,
    },
    #[error(
        "route table {table} has no route to {destination} (`gureum route-table describe {table}`)"
    )]
    NoRoute {
        table: String,
        destination: Ipv4Cidr,
    },
    #[error("the local route of route table {table} cannot be deleted")]
    LocalRoute { table: String },
    #[error(
        "internet gateway {igw} is not attached to VPC {vpc}: `gureum igw attach {igw} --vpc {vpc}` first"
    )]
    GatewayNotAttached { igw: String, vpc: String },
    #[error("internet gateway {igw} is already attached to VPC {vpc}; detach it first")]
    GatewayAlreadyAttached { igw: String, vpc: String },
    #[error("internet gateway {igw} is not attached to any VPC")]
    GatewayDetached { igw: String },
    #[error("VPC {vpc} already has internet gateway {igw} attached; a VPC has at most one")]
    VpcHasGateway { vpc: String, igw: String },
    #[error("subnet {subnet} is not associated with route table {table}")]
    NotAssociated { subnet: String, table: String },
    #[error("the rule is already in security group {group}")]
    RuleExists { group: String },
    #[error(
        "security group {group} has no such rule (`gureum sg describe {group}` shows its rules)"
    )]
    NoSuchRule { group: String },
    #[error("'{0}' is not a port or port range: write 22 or 8000-8100")]
    BadPorts(String),
    #[error("elastic IP {id} is associated with instance {instance}: disassociate it first")]
    Associated { id: String, instance: String },
    #[error("elastic IP {id} is not associated with an instance")]
    NotAssociatedEip { id: String },
    #[error(
        "VPC {vpc} has no internet gateway, so a public address would lead nowhere: \
         `gureum igw attach` one first, or launch without --associate-public-ip-address"
    )]
    NoGatewayForPublicIp { vpc: String },
    #[error("instance {instance} is not in a subnet (launch it with --subnet); {what}")]
    NotInSubnet {
        instance: String,
        what: &'static str,
    },
    #[error(
        "VPC {vpc} was made as network namespace '{recorded}', but {var} now names it \
         '{now}': set {var} back to the prefix it was made with"
    )]
    PrefixChanged {
        vpc: String,
        recorded: String,
        now: String,
        var: &'static str,
    },
    #[error(
        "default VPC {vpc} already exists, and there is at most one: launch into it, or \
         `gureum vpc delete` it first"
    )]
    DefaultVpcExists { vpc: String },
    #[error(
        "there is no default VPC for a launch that names no network: default VPC {deleted} \
         was deleted, and is not made again on its own; `gureum vpc create-default` makes a \
         new one, or launch with --subnet (or --no-network for no interface)"
    )]
    NoDefaultVpc { deleted: String },
    #[error(
        "default VPC {vpc} has no default subnet left for a launch that names no network: \
         launch with --subnet"
    )]
    NoDefaultSubnet { vpc: String },
    #[error(
        "these VPCs could not be made to match their records (the others were): {vpcs}; \
         fix that, then `gureum net reconcile`"
    )]
    NotConverged { vpcs: String },
}

/// A resource that lives in one VPC.
pub trait InVpc {
    fn vpc_id(&self) -> Option<&str>;
}

/// Refuses `noun` `id`, which is in VPC `its_vpc`, where one of VPC `vpc`
/// is needed: resources of different VPCs never refer to each other.
fn same_vpc(noun: &'static str, id: &str, its_vpc: &str, vpc: &str) -> Result<(), Error> {
    if its_vpc == vpc {
        Ok(())
    } else {
        Err(Error::OtherVpc {
            noun,
            id: id.to_owned(),
            its_vpc: its_vpc.to_owned(),
            vpc: vpc.to_owned(),
        })
    }
}

/// Every `R` in VPC `vpc`.
pub fn in_vpc<R: crate::cloud::store::Resource + InVpc>(
    tx: &crate::cloud::store::Tx<'_>,
    vpc: &str,
) -> Result<Vec<R>, crate::cloud::store::Error> {
    Ok(tx
        .list::<R>()?
        .into_iter()
        .filter(|r| r.vpc_id() == Some(vpc))
        .collect())
}
