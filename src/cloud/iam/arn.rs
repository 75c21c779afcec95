//! ARNs of gureum's resources and principals, in AWS's shapes, for
//! policies to name them: `arn:aws:ec2:REGION:ACCOUNT:vpc/vpc-…`,
//! `arn:aws:iam::ACCOUNT:user/NAME`, `arn:aws:iam::ACCOUNT:root`.

use crate::cloud::ids::Kind;

/// The partition every ARN names.
pub const PARTITION: &str = "aws";
/// The region of ARNs made without a request's: the host is one region
/// whose one zone is `local-1a` (the zone of gureum's subnets). The
/// endpoint answers as the region a request is signed for, and names
/// that one.
pub const REGION: &str = "local-1";

/// The ARN of EC2 resource `id` of resource type `kind` (`vpc`,
/// `security-group`, `instance`, ... as AWS names them; `id` may be `*`
/// for one not made yet) in `region`. Images belong to no account in
/// their ARN, as AWS's public images do.
pub fn ec2(account: &str, region: &str, kind: &str, id: &str) -> String {
    let account = if kind == "image" { "" } else { account };
    format!("arn:{PARTITION}:ec2:{region}:{account}:{kind}/{id}")
}

/// The ARN of IAM user `name` under `path` (`/` or `/a/b/`).
pub fn user(account: &str, path: &str, name: &str) -> String {
    format!("arn:{PARTITION}:iam::{account}:user{path}{name}")
}

/// The ARN of the account's root identity.
pub fn root(account: &str) -> String {
    format!("arn:{PARTITION}:iam::{account}:root")
}

/// The ARN resource type of a gureum resource kind.
pub fn resource_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Instance => "instance",
        Kind::Image => "image",
        Kind::KeyPair => "key-pair",
        Kind::LaunchTemplate => "launch-template",
        Kind::Vpc => "vpc",
        Kind::Subnet => "subnet",
        Kind::RouteTable => "route-table",
        Kind::InternetGateway => "internet-gateway",
        Kind::ElasticIp => "elastic-ip",
        Kind::SecurityGroup => "security-group",
        // ELBv2's, under elasticloadbalancing (`cloud::elb`).
        Kind::TargetGroup => "targetgroup",
        Kind::LoadBalancer => "loadbalancer",
        // Auto Scaling's, under autoscaling (`cloud::autoscaling`).
        Kind::AutoScalingGroup => "autoScalingGroup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_have_aws_shapes() {
        let acct = "123456789012";
        assert_eq!(
            ec2(acct, REGION, "vpc", "vpc-0123456789abcdef0"),
            "arn:aws:ec2:local-1:123456789012:vpc/vpc-0123456789abcdef0"
        );
        assert_eq!(
            ec2(
                acct,
                "us-east-1",
                resource_type(Kind::SecurityGroup),
                "sg-1"
            ),
            "arn:aws:ec2:us-east-1:123456789012:security-group/sg-1"
        );
        assert_eq!(
            ec2(acct, REGION, "image", "ami-1"),
            "arn:aws:ec2:local-1::image/ami-1"
        );
        assert_eq!(
            ec2(acct, REGION, "instance", "*"),
            "arn:aws:ec2:local-1:123456789012:instance/*"
        );
        assert_eq!(user(acct, "/", "bob"), "arn:aws:iam::123456789012:user/bob");
        assert_eq!(
            user(acct, "/dev/", "bob"),
            "arn:aws:iam::123456789012:user/dev/bob"
        );
        assert_eq!(root(acct), "arn:aws:iam::123456789012:root");
    }
}
