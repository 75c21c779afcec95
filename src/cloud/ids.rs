//! Resource IDs in EC2's shape: a kind prefix, a dash, 17 hex digits
//! (`i-0123456789abcdef0`).

use ssh_key::rand_core::{OsRng, RngCore};

/// Hex digits after the prefix, as EC2's long IDs have.
const HEX_DIGITS: usize = 17;

/// The kinds of resources the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Instance,
    Image,
    KeyPair,
    LaunchTemplate,
    Vpc,
    Subnet,
    RouteTable,
    InternetGateway,
    ElasticIp,
    SecurityGroup,
    TargetGroup,
    LoadBalancer,
    AutoScalingGroup,
}

impl Kind {
    /// The ID prefix before the dash.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Instance => "i",
            Kind::Image => "ami",
            Kind::KeyPair => "key",
            Kind::LaunchTemplate => "lt",
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "rtb",
            Kind::InternetGateway => "igw",
            Kind::ElasticIp => "eipalloc",
            Kind::SecurityGroup => "sg",
            Kind::TargetGroup => "tg",
            Kind::LoadBalancer => "elb",
            Kind::AutoScalingGroup => "asg",
        }
    }

    /// How people call this kind in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::Image => "image",
            Kind::KeyPair => "key pair",
            Kind::LaunchTemplate => "launch template",
            Kind::Vpc => "VPC",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "route table",
            Kind::InternetGateway => "internet gateway",
            Kind::ElasticIp => "elastic IP",
            Kind::SecurityGroup => "security group",
            Kind::TargetGroup => "target group",
            Kind::LoadBalancer => "load balancer",
            Kind::AutoScalingGroup => "Auto Scaling group",
        }
    }

    /// The command that removes a record of this kind by its ID even when
    /// the record is unreadable, if there is one (the others read the
    /// record to undo what it made).
    pub fn remove_command(self) -> Option<&'static str> {
        match self {
            Kind::Image => Some("gureum image rm"),
            Kind::KeyPair => Some("gureum key rm"),
            Kind::LaunchTemplate => Some("gureum template rm"),
            _ => None,
        }
    }

    /// The command that lists this kind, for hints in errors.
    pub fn list_command(self) -> &'static str {
        match self {
            Kind::Instance => "gureum instance list",
            Kind::Image => "gureum image list",
            Kind::KeyPair => "gureum key list",
            Kind::LaunchTemplate => "gureum template list",
            Kind::Vpc => "gureum vpc list",
            Kind::Subnet => "gureum subnet list",
            Kind::RouteTable => "gureum route-table list",
            Kind::InternetGateway => "gureum igw list",
            Kind::ElasticIp => "gureum eip list",
            Kind::SecurityGroup => "gureum sg list",
            Kind::TargetGroup => "gureum target-group list",
            Kind::LoadBalancer => "gureum elb list",
            Kind::AutoScalingGroup => "gureum asg list",
        }
    }
}

/// The system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read random bytes for a new {kind} ID: {reason}")]
pub struct RandomError {
    kind: &'static str,
    // rand_core's error implements std's Error only with a feature
    // ssh-key does not enable.
    reason: String,
}

/// A new random ID of `kind`.
pub fn new_id(kind: Kind) -> Result<String, RandomError> {
    let mut bytes = [0u8; HEX_DIGITS.div_ceil(2)];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| RandomError {
        kind: kind.noun(),
        reason: e.to_string(),
    })?;
    let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(HEX_DIGITS);
    Ok(format!("{}-{hex}", kind.prefix()))
}

/// Every kind, for finding the kind of an ID.
pub const ALL: [Kind; 13] = [
    Kind::Instance,
    Kind::Image,
    Kind::KeyPair,
    Kind::LaunchTemplate,
    Kind::Vpc,
    Kind::Subnet,
    Kind::RouteTable,
    Kind::InternetGateway,
    Kind::ElasticIp,
    Kind::SecurityGroup,
    Kind::TargetGroup,
    Kind::LoadBalancer,
    Kind::AutoScalingGroup,
];

/// The kind whose IDs look like `id`, if any.
pub fn kind_of(id: &str) -> Option<Kind> {
    ALL.into_iter().find(|k| is_id(*k, id))
}

/// Whether `text` has the shape of an ID of `kind`. Names never do, so
/// this tells an ID from a name.
pub fn is_id(kind: Kind, text: &str) -> bool {
    text.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == HEX_DIGITS
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_17_lowercase_hex_digits() {
        for kind in ALL {
            let id = new_id(kind).unwrap();
            assert!(is_id(kind, &id), "{id}");
            assert_eq!(kind_of(&id), Some(kind));
            let (prefix, hex) = id.split_once('-').unwrap();
            assert_eq!(prefix, kind.prefix());
            assert_eq!(hex.len(), 17);
        }
        assert_ne!(
            new_id(Kind::Instance).unwrap(),
            new_id(Kind::Instance).unwrap()
        );
    }

    #[test]
    fn names_and_malformed_ids_are_not_ids() {
        assert!(is_id(Kind::Image, "ami-0123456789abcdef0"));
        assert!(!is_id(Kind::Image, "ami-0123456789ABCDEF0"));
        assert!(!is_id(Kind::Image, "ami-0123"));
        assert!(!is_id(Kind::Image, "busybox"));
        assert!(!is_id(Kind::Instance, "ami-0123456789abcdef0"));
        assert!(!is_id(Kind::Instance, "i-0123456789abcdefg"));
    }
}
