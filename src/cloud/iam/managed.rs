//! The AWS managed policies gureum knows, as built-in documents. Their
//! statements are AWS's own for the services gureum has (EC2); AWS's
//! AmazonEC2FullAccess also lets EC2 make its service-linked roles
//! (`iam:CreateServiceLinkedRole` under a Condition), which gureum has
//! none of, so that statement is left out.

use super::policy::{self, Policy};

pub const ADMINISTRATOR_ACCESS: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
pub const EC2_FULL_ACCESS: &str = "arn:aws:iam::aws:policy/AmazonEC2FullAccess";
pub const EC2_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess";

const ADMINISTRATOR_ACCESS_DOC: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
}"#;

const EC2_FULL_ACCESS_DOC: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Action": "ec2:*", "Effect": "Allow", "Resource": "*"},
    {"Effect": "Allow", "Action": "elasticloadbalancing:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "cloudwatch:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "autoscaling:*", "Resource": "*"}
  ]
}"#;

const EC2_READ_ONLY_DOC: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["ec2:Describe*", "ec2:GetSecurityGroupsForVpc"], "Resource": "*"},
    {"Effect": "Allow", "Action": "elasticloadbalancing:Describe*", "Resource": "*"},
    {"Effect": "Allow",
     "Action": ["cloudwatch:ListMetrics", "cloudwatch:GetMetricStatistics", "cloudwatch:Describe*"],
     "Resource": "*"},
    {"Effect": "Allow", "Action": "autoscaling:Describe*", "Resource": "*"}
  ]
}"#;

/// Every managed policy: its ARN and document.
const ALL: [(&str, &str); 3] = [
    (ADMINISTRATOR_ACCESS, ADMINISTRATOR_ACCESS_DOC),
    (EC2_FULL_ACCESS, EC2_FULL_ACCESS_DOC),
    (EC2_READ_ONLY, EC2_READ_ONLY_DOC),
];

/// The ARNs of the managed policies, for messages.
pub fn arns() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|(arn, _)| *arn)
}

/// The document of the managed policy `arn`, if gureum has it.
pub fn document(arn: &str) -> Option<&'static str> {
    ALL.iter().find(|(a, _)| *a == arn).map(|(_, doc)| *doc)
}

/// The managed policy `arn` parsed, if gureum has it.
pub fn policy(arn: &str) -> Option<Result<Policy, policy::Error>> {
    document(arn).map(Policy::parse)
}

/// The name of a policy: the last part of its ARN.
pub fn name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_document_parses() {
        for arn in arns() {
            let p = policy(arn).unwrap().unwrap();
            assert!(!p.statements.is_empty(), "{arn}");
        }
        assert!(policy("arn:aws:iam::aws:policy/NoSuchPolicy").is_none());
        assert_eq!(name(EC2_READ_ONLY), "AmazonEC2ReadOnlyAccess");
    }
}
