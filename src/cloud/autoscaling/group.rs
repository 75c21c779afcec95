//! An Auto Scaling group as stored: where and from what its instances
//! are launched, how many, which target groups they join, how their
//! health is judged, and who they are (with their scale-in protection).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cloud::ids::Kind;
use crate::cloud::store::Resource;
use crate::cloud::vpc::InVpc;

use super::Error;

/// What decides that a member is unhealthy: its state alone (EC2), or
/// also its target groups' health checks (ELB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthCheckType {
    #[default]
    Ec2,
    Elb,
}

impl HealthCheckType {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.to_ascii_uppercase().as_str() {
            "EC2" => Ok(Self::Ec2),
            "ELB" => Ok(Self::Elb),
            _ => Err(Error::HealthCheckType(text.to_owned())),
        }
    }
}

impl fmt::Display for HealthCheckType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ec2 => "EC2",
            Self::Elb => "ELB",
        })
    }
}

/// One instance of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: String,
    pub subnet_id: String,
    pub availability_zone: String,
    /// Seconds since the epoch when it joined (launched, or adopted by
    /// its tag): its grace period and its age for scale-in count from it.
    pub joined: u64,
    /// Scale-in never picks it (it is still replaced when unhealthy).
    pub protected: bool,
}

/// An Auto Scaling group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingGroup {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub launch_template_id: String,
    pub launch_template_name: String,
    /// As asked (`$Default`, `$Latest` or `1`): gureum's templates have
    /// one version.
    pub launch_template_version: String,
    pub vpc_id: String,
    /// Subnet IDs (EC2's VPCZoneIdentifier), in the order given.
    pub subnets: Vec<String>,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    /// Target group IDs its instances are registered in.
    pub target_groups: Vec<String>,
    pub health_check_type: HealthCheckType,
    pub health_check_grace_secs: u32,
    /// Whether new members start protected from scale-in.
    pub new_instances_protected: bool,
    pub instances: Vec<Member>,
    pub created: String,
    /// Target-tracking scaling policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ScalingPolicy>,
}

/// A target-tracking policy on the group's average CPU utilization
/// (AWS's ASGAverageCPUUtilization): the controller sets the desired
/// capacity that brings the average to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    pub name: String,
    pub arn: String,
    /// Per cent, 1 to 100.
    pub target_cpu: u16,
    /// It only ever scales out.
    pub disable_scale_in: bool,
}

impl Resource for AutoScalingGroup {
    const KIND: Kind = Kind::AutoScalingGroup;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl InVpc for AutoScalingGroup {
    fn vpc_id(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}

impl AutoScalingGroup {
    pub fn member(&self, instance: &str) -> Option<&Member> {
        self.instances.iter().find(|m| m.instance_id == instance)
    }
}
