//! Error categories: what kind of failure an error is, for the caller
//! (an exit code now; an HTTP status and an EC2 error code later). Every
//! error enum's variants are matched exhaustively, so a new variant does
//! not compile until it is classified.

use serde::{Deserialize, Serialize};

use crate::cloud::{self, instance_type, key_pair, store, vpc};
use crate::net::{self, cidr, nft};
use crate::vmm::devices::virtio::net::tap;

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// The request is wrong: a malformed value, a flag that does not fit.
    InvalidInput,
    /// Something it names does not exist.
    NotFound,
    /// The resource is in a state or use that forbids it (in use, taken,
    /// attached, not stopped).
    Conflict,
    /// A pool or a subnet is full.
    LimitExceeded,
    /// The caller may not do it.
    Unauthorised,
    /// The host or gureum failed: I/O, netlink, nft, the store.
    Internal,
}

impl Category {
    /// The `gureum` exit status of a command that failed so (README
    /// "Exit status"); 2 stays clap's, for bad usage.
    pub fn exit_code(self) -> u8 {
        match self {
            Category::Internal => 1,
            Category::InvalidInput => 3,
            Category::NotFound => 4,
            Category::Conflict => 5,
            Category::LimitExceeded => 6,
            Category::Unauthorised => 7,
        }
    }
}

/// A failed action as front ends see it: its category and what to tell
/// the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub category: Category,
    pub message: String,
    /// What exactly failed, where a front end has a word for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<super::Reason>,
}

impl ApiError {
    pub fn new(category: Category, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
            reason: None,
        }
    }
}

impl From<cloud::Error> for ApiError {
    fn from(e: cloud::Error) -> Self {
        Self {
            reason: e.reason(),
            ..Self::new(e.category(), e.to_string())
        }
    }
}

use Category::{Conflict, Internal, InvalidInput, LimitExceeded, NotFound};

impl cloud::Error {
    pub fn category(&self) -> Category {
        use cloud::Error as E;
        match self {
            E::Store(e) => e.category(),
            E::KeyPair(e) => e.category(),
            E::Vpc(e) => e.category(),
            E::Elb(e) => e.category(),
            E::AutoScaling(e) => e.category(),
            E::InstanceType(e) => e.category(),
            E::Iam(e) => e.category(),
            E::Random(_)
            | E::Copy(_)
            | E::Io { .. }
            | E::SpawnSupervisor { .. }
            | E::SpawnVmm { .. }
            | E::BadMac(_)
            | E::Cgroup(_)
            // The VMM failed at once: a host that cannot run it (no
            // vmx/svm, a refused kernel), not the request.
            | E::DidNotStart(_) => Internal,
            E::Tag(_)
            | E::Name(_)
            | E::TapNetwork(_)
            | E::TapWithCount
            | E::OwnerNotRunning { .. }
            | E::AmbiguousName { .. }
            | E::ReadManifest { .. }
            | E::Manifest { .. }
            | E::MissingImageFile { .. }
            | E::ImageFileOutside { .. }
            | E::EmptyImageFile { .. }
            | E::Kernel(_)
            | E::NoImageName
            | E::NoImageChosen { .. }
            | E::TooLittleMemory { .. }
            | E::PrivateIpWithCount
            | E::UserData(_)
            | E::MetadataOptions(_)
            | E::ZeroCount => InvalidInput,
            E::CpuOptions(e) => match e {
                crate::cloud::cpu_options::Error::HostHasNoNesting => Conflict,
                _ => InvalidInput,
            },
            E::BelowMinCount { .. } => LimitExceeded,
            E::NotFound { .. } => NotFound,
            E::Transition(_)
            | E::ImageInUse { .. }
            | E::NotStopped { .. }
            | E::ChangedWhileSaving { .. }
            | E::Timeout { .. }
            | E::Settled { .. }
            | E::NotRunning { .. }
            | E::LeavingVpc { .. } => Conflict,
        }
    }
}

impl store::Error {
    pub fn category(&self) -> Category {
        use store::Error as E;
        match self {
            E::NameTaken { .. } => Conflict,
            E::Tag(_) => InvalidInput,
            E::NewerSchema { .. } => Conflict,
            E::Permission { .. }
            | E::Io { .. }
            | E::NotWritable { .. }
            | E::Open { .. }
            | E::Empty { .. }
            | E::NotAFile { .. }
            | E::NotSqlite { .. }
            | E::Truncated { .. }
            | E::Damaged { .. }
            | E::Foreign { .. }
            | E::Sql { .. }
            | E::Corrupt { .. }
            | E::Encode { .. } => Internal,
        }
    }
}

impl key_pair::Error {
    pub fn category(&self) -> Category {
        use key_pair::Error as E;
        match self {
            E::Name(_) | E::ReadPublicKey { .. } | E::BadPublicKey { .. } => InvalidInput,
            E::OutExists(_) => Conflict,
            E::Generate(_) | E::Encode(_) | E::WritePrivate { .. } | E::Random(_) => Internal,
        }
    }
}

impl instance_type::Error {
    pub fn category(&self) -> Category {
        use instance_type::Error as E;
        match self {
            E::Malformed { .. } | E::Arm { .. } => InvalidInput,
            E::Unknown { .. } => NotFound,
        }
    }
}

impl vpc::Error {
    pub fn category(&self) -> Category {
        use vpc::Error as E;
        match self {
            E::Net(e) => e.category(),
            E::Cidr(e) => e.category(),
            E::Rule(_)
            | E::BadConfig { .. }
            | E::OtherVpc { .. }
            | E::OwnedByVpc { .. }
            | E::UnsupportedRoute { .. }
            | E::LocalRoute { .. }
            | E::BadPorts(_)
            | E::NotInSubnet { .. }
            | E::PrefixChanged { .. } => InvalidInput,
            E::NoRoute { .. }
            | E::NotAssociated { .. }
            | E::NoSuchRule { .. }
            | E::NoDefaultVpc { .. }
            | E::NoDefaultSubnet { .. } => NotFound,
            E::InUse { .. }
            | E::GroupNameTaken { .. }
            | E::RouteExists { .. }
            | E::GatewayNotAttached { .. }
            | E::NoGatewayForPublicIp { .. }
            | E::GatewayAlreadyAttached { .. }
            | E::GatewayDetached { .. }
            | E::VpcHasGateway { .. }
            | E::RuleExists { .. }
            | E::Associated { .. }
            | E::NotAssociatedEip { .. }
            | E::DefaultVpcExists { .. } => Conflict,
            E::PoolExhausted { .. } => LimitExceeded,
            E::Netns(e) => host(e),
            E::Link(e) => host(e),
            E::Sysctl(e) => host(e),
            E::Tap(e) => host(e),
            E::NotConverged { .. } => Internal,
        }
    }
}

impl cloud::elb::Error {
    pub fn category(&self) -> Category {
        use cloud::elb::Error as E;
        match self {
            E::BadName(_)
            | E::Protocol { .. }
            | E::Scheme(_)
            | E::BadPort { .. }
            | E::OutOfRange { .. }
            | E::TimeoutOverInterval { .. }
            | E::PathWithoutHttp
            | E::BadPath(_)
            | E::BadDelay(_)
            | E::NoSubnets
            | E::SameZone { .. }
            | E::OtherVpc { .. }
            | E::NotInVpc { .. }
            | E::ProtocolMismatch { .. }
            | E::BalancerType(_)
            | E::ListenerProtocol { .. }
            | E::Field(_)
            | E::NoValues(_)
            | E::BadPattern { .. }
            | E::NoConditions
            | E::RepeatedField(_)
            | E::TooManyValues(_)
            | E::Priority(_)
            | E::RulesOnNetwork { .. }
            | E::NoRuleGroup => InvalidInput,
            E::NotRegistered { .. } | E::NoListener { .. } | E::NoRule { .. } => NotFound,
            E::NoGateway { .. }
            | E::Terminated { .. }
            | E::ListenerExists { .. }
            | E::PriorityTaken { .. }
            | E::InUse { .. } => Conflict,
        }
    }
}

impl cloud::autoscaling::Error {
    pub fn category(&self) -> Category {
        use cloud::autoscaling::Error as E;
        match self {
            E::BadName(_)
            | E::Sizes { .. }
            | E::BadGrace(_)
            | E::HealthCheckType(_)
            | E::TemplateVersion(_)
            | E::NoSubnets
            | E::OtherVpc { .. }
            | E::BelowMin { .. }
            | E::BadTarget(_)
            | E::BadPolicyName(_) => InvalidInput,
            E::TooLarge(_) => LimitExceeded,
            E::NotMember { .. } | E::InNoGroup(_) | E::NoPolicy { .. } => NotFound,
            E::HasInstances { .. } => Conflict,
        }
    }
}

impl net::vpc::Error {
    pub fn category(&self) -> Category {
        use net::vpc::Error as E;
        match self {
            E::Cidr(e) => e.category(),
            E::NoGroups { .. } => InvalidInput,
            // Rules are checked where a request names them; one that does
            // not compile here comes from a broken record.
            E::SecurityGroup(_) => Internal,
            E::BridgeNameClash { .. } | E::NoGateway { .. } | E::PortClash { .. } => Conflict,
            // Another store's namespace has the name.
            E::Foreign { .. } => Conflict,
            // The host's setting names what the host does not have.
            E::NoUplink(_) => InvalidInput,
            E::Netns(e) => host(e),
            E::Link(e) => host(e),
            E::Sysctl(e) => host(e),
            E::Nft(e) => host(e),
            // Store and Linux disagree, or gureum made a bad name: ours.
            E::BadId(_)
            | E::BadLinkName(_)
            | E::Missing { .. }
            | E::Duplicate { .. }
            | E::PortLink { .. }
            | E::Cache { .. } => Internal,
        }
    }
}

impl cidr::Error {
    pub fn category(&self) -> Category {
        use cidr::Error as E;
        match self {
            E::Syntax(_)
            | E::HostBits { .. }
            | E::PrefixOutOfRange { .. }
            | E::NotInside { .. }
            | E::NotAssignable { .. } => InvalidInput,
            E::Overlap { .. } | E::InUse { .. } => Conflict,
            E::Full { .. } => LimitExceeded,
        }
    }
}

/// Errors of the host's primitives (namespaces, links, nft, sysctls,
/// taps): whatever the request, the host failed.
trait HostError {
    /// Every variant, matched so that a new one is looked at here.
    fn is_host_failure(&self) -> bool;
}

fn host(e: &impl HostError) -> Category {
    if e.is_host_failure() {
        Internal
    } else {
        Conflict
    }
}

impl HostError for crate::host::netns::Error {
    fn is_host_failure(&self) -> bool {
        use crate::host::netns::Error as E;
        match self {
            // Made by another owner, or gone under gureum.
            E::Exists(_) | E::Missing(_) => false,
            E::BadName(_)
            | E::Io { .. }
            | E::Sys { .. }
            | E::ThreadPanicked(_)
            | E::NotANamespace(_)
            | E::Init { .. } => true,
        }
    }
}

impl HostError for net::link::Error {
    fn is_host_failure(&self) -> bool {
        use net::link::Error as E;
        match self {
            E::Netns(e) => e.is_host_failure(),
            E::Netlink { .. } | E::NoSuchLink { .. } | E::Connect { .. } => true,
        }
    }
}

impl HostError for nft::Error {
    fn is_host_failure(&self) -> bool {
        match self {
            nft::Error::Netns(e) => e.is_host_failure(),
            nft::Error::Spawn { .. } | nft::Error::Refused { .. } => true,
        }
    }
}

impl HostError for crate::host::sysctl::Error {
    fn is_host_failure(&self) -> bool {
        match self {
            crate::host::sysctl::Error::Netns(e) => e.is_host_failure(),
            crate::host::sysctl::Error::Write { .. } => true,
        }
    }
}

impl HostError for tap::Error {
    fn is_host_failure(&self) -> bool {
        use tap::Error as E;
        match self {
            E::Netns(e) => e.is_host_failure(),
            // The VPC's namespace or the instance's tap is not there.
            E::NoNetns(_) | E::NoTap { .. } => false,
            E::InvalidName(_)
            | E::OpenTun(_)
            | E::Attach { .. }
            | E::Persist { .. }
            | E::Offload { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_have_distinct_exit_codes_apart_from_success_and_usage() {
        let all = [
            Category::InvalidInput,
            Category::NotFound,
            Category::Conflict,
            Category::LimitExceeded,
            Category::Unauthorised,
            Category::Internal,
        ];
        let codes: std::collections::BTreeSet<u8> = all.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes.len(), all.len());
        assert!(!codes.contains(&0) && !codes.contains(&2));
    }

    #[test]
    fn errors_carry_their_category_across_the_wire() {
        let e: ApiError = cloud::Error::NotFound {
            noun: "instance",
            reference: "web".into(),
            list: "gureum instance list",
        }
        .into();
        assert_eq!(e.category, Category::NotFound);
        let wire = serde_json::to_string(&e).unwrap();
        assert!(wire.contains("\"not-found\""), "{wire}");
        assert_eq!(serde_json::from_str::<ApiError>(&wire).unwrap(), e);
        let full = cloud::Error::Vpc(vpc::Error::Cidr(cidr::Error::Full {
            subnet: "10.0.1.0/28".parse().unwrap(),
            capacity: 11,
        }));
        assert_eq!(full.category(), Category::LimitExceeded);
    }
}
