//! EC2's errors: a code botocore raises as `ClientError`, a message and
//! an HTTP status, in EC2's envelope
//! (`<Response><Errors><Error><Code>…</Code>…`). Codes come from the core
//! API's error categories, refined by what exactly failed (`Reason`).

use crate::cloud::api::{ApiError, Category, Reason};
use crate::cloud::ids;

use super::xml;

/// The code of an instance whose VMM failed at once: EC2's state reason
/// code for a launch or start that failed on the host's side.
pub const DID_NOT_START: &str = "Server.InternalError";

/// One failed EC2 request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    pub code: String,
    pub message: String,
    pub status: u16,
}

impl Ec2Error {
    pub fn new(code: impl Into<String>, message: impl Into<String>, status: u16) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status,
        }
    }

    /// A request the caller must fix (HTTP 400).
    pub fn client(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(code, message, 400)
    }

    pub fn missing(name: &str) -> Self {
        Self::client(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `value` of `name` is not `what` it should be.
    pub fn invalid(name: &str, value: &str, what: &str) -> Self {
        Self::client(
            "InvalidParameterValue",
            format!("Value ({value}) for parameter {name} is invalid: expected {what}"),
        )
    }

    /// A parameter gureum does not implement, refused rather than ignored.
    pub fn unsupported(what: &str) -> Self {
        Self::client("Unsupported", format!("{what} is not supported by gureum"))
    }

    /// The answer to a DryRun request that would have succeeded.
    pub fn dry_run() -> Self {
        Self::new(
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
            412,
        )
    }

    /// EC2's whole error document.
    pub fn document(&self, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
             <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
            xml::escape(&self.code),
            xml::escape(&self.message),
            xml::escape(request_id)
        )
    }
}

impl From<ApiError> for Ec2Error {
    fn from(e: ApiError) -> Self {
        let status = match e.category {
            Category::Unauthorised => 403,
            Category::Internal => 500,
            Category::InvalidInput
            | Category::NotFound
            | Category::Conflict
            | Category::LimitExceeded => 400,
        };
        let code = match &e.reason {
            Some(reason) => reason_code(reason),
            None => match e.category {
                Category::InvalidInput | Category::NotFound => "InvalidParameterValue",
                Category::Conflict => "IncorrectState",
                Category::LimitExceeded => "ResourceLimitExceeded",
                Category::Unauthorised => "UnauthorizedOperation",
                Category::Internal => "InternalError",
            },
        };
        Self::new(code, e.message, status)
    }
}

fn reason_code(reason: &Reason) -> &'static str {
    match reason {
        Reason::NotFound { noun } => ids::ALL
            .into_iter()
            .find(|k| k.noun() == noun)
            .map_or("InvalidID", not_found_code),
        Reason::InUse => "DependencyViolation",
        Reason::RuleExists => "InvalidPermission.Duplicate",
        Reason::NoSuchRule => "InvalidPermission.NotFound",
        Reason::GroupNameTaken => "InvalidGroup.Duplicate",
        Reason::NameTaken { noun } if noun == ids::Kind::KeyPair.noun() => {
            "InvalidKeyPair.Duplicate"
        }
        Reason::NameTaken { noun } if noun == ids::Kind::LaunchTemplate.noun() => {
            "InvalidLaunchTemplateName.AlreadyExistsException"
        }
        Reason::NameTaken { .. } => "InvalidParameterValue",
        Reason::CidrOverlap => "InvalidSubnet.Conflict",
        Reason::CidrRange => "InvalidSubnet.Range",
        Reason::AddressInUse => "InvalidIPAddress.InUse",
        Reason::SubnetFull => "InsufficientFreeAddressesInSubnet",
        Reason::RouteExists => "RouteAlreadyExists",
        Reason::NoRoute => "InvalidRoute.NotFound",
        Reason::AddressPoolExhausted => "AddressLimitExceeded",
        Reason::InstanceState => "IncorrectInstanceState",
        Reason::AlreadyAttached => "Resource.AlreadyAssociated",
        Reason::NotAttached => "Gateway.NotAttached",
        Reason::DefaultVpcExists => "DefaultVpcAlreadyExists",
        Reason::NoDefaultVpc => "VPCIdNotSpecified",
        Reason::NoDefaultSubnet => "MissingInput",
        Reason::DidNotStart => DID_NOT_START,
    }
}

/// EC2's code for an unknown ID of `kind`.
pub fn not_found_code(kind: ids::Kind) -> &'static str {
    use ids::Kind as K;
    match kind {
        K::Instance => "InvalidInstanceID.NotFound",
        K::Image => "InvalidAMIID.NotFound",
        K::KeyPair => "InvalidKeyPair.NotFound",
        K::LaunchTemplate => "InvalidLaunchTemplateId.NotFound",
        K::Vpc => "InvalidVpcID.NotFound",
        K::Subnet => "InvalidSubnetID.NotFound",
        K::RouteTable => "InvalidRouteTableID.NotFound",
        K::InternetGateway => "InvalidInternetGatewayID.NotFound",
        K::ElasticIp => "InvalidAllocationID.NotFound",
        K::SecurityGroup => "InvalidGroup.NotFound",
        // ELBv2's codes, for its API.
        K::TargetGroup => "TargetGroupNotFound",
        K::LoadBalancer => "LoadBalancerNotFound",
        // Auto Scaling answers an unknown group with a ValidationError.
        K::AutoScalingGroup => "ValidationError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud;

    #[test]
    fn core_errors_become_ec2_codes_by_what_failed() {
        let missing = |noun| {
            Ec2Error::from(ApiError::from(cloud::Error::NotFound {
                noun,
                reference: "x".into(),
                list: "gureum vpc list",
            }))
        };
        assert_eq!(missing("VPC").code, "InvalidVpcID.NotFound");
        assert_eq!(missing("subnet").code, "InvalidSubnetID.NotFound");
        assert_eq!(missing("security group").code, "InvalidGroup.NotFound");
        assert_eq!(missing("VPC").status, 400);
        let internal = Ec2Error::from(ApiError::new(Category::Internal, "disk <full>"));
        assert_eq!(
            (internal.code.as_str(), internal.status),
            ("InternalError", 500)
        );
        let doc = internal.document("r-1");
        assert!(doc.contains("<Code>InternalError</Code><Message>disk &lt;full&gt;</Message>"));
        assert!(doc.contains("<RequestID>r-1</RequestID>"));
    }
}
