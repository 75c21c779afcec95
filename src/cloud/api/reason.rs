//! What exactly failed, where a front end has a more specific word for it
//! than the category: EC2's error codes tell an unknown VPC from an
//! unknown subnet, a duplicate rule from a taken group name. Only the
//! errors such a word exists for have a reason; the rest have none.

use serde::{Deserialize, Serialize};

use crate::cloud::{self, store, vpc};
use crate::net::cidr;

/// A failure more precise than its `Category`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Reason {
    /// No resource of this kind ("VPC", "subnet", ... as `ids::Kind::noun`)
    /// has the reference.
    NotFound { noun: String },
    /// Another resource still depends on it.
    InUse,
    /// The same rule is already in the group.
    RuleExists,
    /// The group has no such rule.
    NoSuchRule,
    /// The VPC already has a group of that name.
    GroupNameTaken,
    /// A resource of this kind already has the name.
    NameTaken { noun: String },
    /// The block overlaps another subnet's.
    CidrOverlap,
    /// The block's size or place is not allowed.
    CidrRange,
    /// The address is taken in its subnet.
    AddressInUse,
    /// The subnet has no free address.
    SubnetFull,
    /// The route table already routes the destination.
    RouteExists,
    /// The route table has no route to the destination.
    NoRoute,
    /// The public address pool is used up.
    AddressPoolExhausted,
    /// The instance is in a state that forbids it.
    InstanceState,
    /// The gateway is attached already, or the VPC has one.
    AlreadyAttached,
    /// The gateway is not attached (to that VPC).
    NotAttached,
    /// There is a default VPC already.
    DefaultVpcExists,
    /// A launch named no network and there is no default VPC.
    NoDefaultVpc,
    /// A launch named no network and the default VPC has no default subnet.
    NoDefaultSubnet,
    /// The instance's VMM failed at once: the instance is stopped again,
    /// with the reason in its record.
    DidNotStart,
}

impl cloud::Error {
    /// The precise reason, where one is known.
    pub fn reason(&self) -> Option<Reason> {
        use cloud::Error as E;
        match self {
            E::NotFound { noun, .. } => Some(Reason::NotFound {
                noun: (*noun).to_owned(),
            }),
            E::Store(e) => e.reason(),
            E::Vpc(e) => e.reason(),
            E::Transition(_) | E::NotStopped { .. } | E::NotRunning { .. } => {
                Some(Reason::InstanceState)
            }
            E::ImageInUse { .. }
            | E::Elb(crate::cloud::elb::Error::InUse { .. })
            | E::AutoScaling(crate::cloud::autoscaling::Error::HasInstances { .. }) => {
                Some(Reason::InUse)
            }
            E::DidNotStart(_) => Some(Reason::DidNotStart),
            _ => None,
        }
    }
}

impl store::Error {
    fn reason(&self) -> Option<Reason> {
        match self {
            store::Error::NameTaken { noun, .. } => Some(Reason::NameTaken {
                noun: (*noun).to_owned(),
            }),
            _ => None,
        }
    }
}

impl vpc::Error {
    fn reason(&self) -> Option<Reason> {
        use vpc::Error as E;
        Some(match self {
            E::Cidr(e) | E::Net(crate::net::vpc::Error::Cidr(e)) => return cidr_reason(e),
            E::InUse { .. } => Reason::InUse,
            E::RuleExists { .. } => Reason::RuleExists,
            E::NoSuchRule { .. } => Reason::NoSuchRule,
            E::GroupNameTaken { .. } => Reason::GroupNameTaken,
            E::RouteExists { .. } => Reason::RouteExists,
            E::NoRoute { .. } => Reason::NoRoute,
            E::PoolExhausted { .. } => Reason::AddressPoolExhausted,
            E::GatewayAlreadyAttached { .. } | E::VpcHasGateway { .. } => Reason::AlreadyAttached,
            E::GatewayNotAttached { .. }
            | E::GatewayDetached { .. }
            | E::NoGatewayForPublicIp { .. } => Reason::NotAttached,
            E::DefaultVpcExists { .. } => Reason::DefaultVpcExists,
            E::NoDefaultVpc { .. } => Reason::NoDefaultVpc,
            E::NoDefaultSubnet { .. } => Reason::NoDefaultSubnet,
            _ => return None,
        })
    }
}

fn cidr_reason(e: &cidr::Error) -> Option<Reason> {
    use cidr::Error as E;
    Some(match e {
        E::Overlap { .. } => Reason::CidrOverlap,
        E::PrefixOutOfRange { .. } | E::NotInside { .. } => Reason::CidrRange,
        E::InUse { .. } => Reason::AddressInUse,
        E::Full { .. } => Reason::SubnetFull,
        E::Syntax(_) | E::HostBits { .. } | E::NotAssignable { .. } => return None,
    })
}
