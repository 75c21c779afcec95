//! Policy evaluation as IAM does it for one principal's identity-based
//! policies: an explicit deny in any statement wins, else an allow in
//! any statement, else the request is denied implicitly.

use super::policy::{Effect, Policy};

/// The outcome for one action on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A statement with `"Effect": "Deny"` covers the request.
    ExplicitDeny,
    /// No statement allows it.
    ImplicitDeny,
}

/// The decision of `policies` together on `action` (`service:Name`) on
/// `resource` (an ARN, or `*` for actions that take none).
pub fn decide<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    action: &str,
    resource: &str,
) -> Decision {
    let mut allowed = false;
    for statement in policies.into_iter().flat_map(|p| &p.statements) {
        if statement.applies(action, resource) {
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::iam::managed;

    const VPC: &str = "arn:aws:ec2:local-1:123456789012:vpc/vpc-0123456789abcdef0";

    fn policy(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    #[test]
    fn nothing_attached_denies_implicitly() {
        assert_eq!(decide([], "ec2:DescribeVpcs", "*"), Decision::ImplicitDeny);
    }

    #[test]
    fn an_explicit_deny_wins_over_any_allow_in_any_order() {
        let admin = managed::policy(managed::ADMINISTRATOR_ACCESS)
            .unwrap()
            .unwrap();
        let deny = policy(
            r#"{"Statement":{"Effect":"Deny","Action":"ec2:DeleteVpc","Resource":"arn:aws:ec2:*:*:vpc/*"}}"#,
        );
        assert_eq!(
            decide([&admin, &deny], "ec2:DeleteVpc", VPC),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide([&deny, &admin], "ec2:DeleteVpc", VPC),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide([&deny, &admin], "ec2:CreateVpc", VPC),
            Decision::Allow
        );
        assert_eq!(
            decide([&deny], "ec2:CreateVpc", VPC),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn read_only_describes_but_does_not_create() {
        let ro = managed::policy(managed::EC2_READ_ONLY).unwrap().unwrap();
        assert_eq!(decide([&ro], "ec2:DescribeVpcs", "*"), Decision::Allow);
        assert_eq!(decide([&ro], "ec2:describeinstances", "*"), Decision::Allow);
        assert_eq!(
            decide([&ro], "ec2:GetSecurityGroupsForVpc", VPC),
            Decision::Allow
        );
        assert_eq!(decide([&ro], "ec2:CreateVpc", VPC), Decision::ImplicitDeny);
        assert_eq!(
            decide([&ro], "ec2:GetConsoleOutput", "*"),
            Decision::ImplicitDeny
        );
        assert_eq!(decide([&ro], "iam:CreateUser", "*"), Decision::ImplicitDeny);
    }

    #[test]
    fn full_access_is_every_ec2_action_and_no_iam_one() {
        let full = managed::policy(managed::EC2_FULL_ACCESS).unwrap().unwrap();
        assert_eq!(decide([&full], "ec2:RunInstances", "*"), Decision::Allow);
        assert_eq!(decide([&full], "ec2:DeleteVpc", VPC), Decision::Allow);
        assert_eq!(
            decide([&full], "iam:CreateUser", "*"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide([&full], "iam:CreateAccessKey", "*"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn a_customer_policy_on_one_vpc_s_groups_works_as_written() {
        let p = policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*SecurityGroup*",
              "Resource":["arn:aws:ec2:*:*:vpc/vpc-0123456789abcdef0",
                          "arn:aws:ec2:*:*:security-group/sg-0aaaaaaaaaaaaaaaa"]}]}"#,
        );
        let sg = "arn:aws:ec2:local-1:123456789012:security-group/sg-0aaaaaaaaaaaaaaaa";
        let other = "arn:aws:ec2:local-1:123456789012:security-group/sg-0bbbbbbbbbbbbbbbb";
        assert_eq!(
            decide([&p], "ec2:CreateSecurityGroup", VPC),
            Decision::Allow
        );
        assert_eq!(
            decide([&p], "ec2:AuthorizeSecurityGroupIngress", sg),
            Decision::Allow
        );
        assert_eq!(
            decide([&p], "ec2:AuthorizeSecurityGroupIngress", other),
            Decision::ImplicitDeny
        );
        assert_eq!(decide([&p], "ec2:DeleteVpc", VPC), Decision::ImplicitDeny);
        assert_eq!(
            decide([&p], "ec2:CreateSubnet", VPC),
            Decision::ImplicitDeny
        );
    }
}
