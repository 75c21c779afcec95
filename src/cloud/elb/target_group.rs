//! Target groups: instances and a port, and the health check that decides
//! which of them a load balancer sends new flows to. Each target's health
//! is kept in the record: the daemon's checker (`daemon::health`) writes
//! its changes, the realisation sends flows to the healthy ones only.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cloud::ids::Kind;
use crate::cloud::store::Resource;
use crate::cloud::vpc::InVpc;

use super::Error;

/// What a target group carries: TCP or UDP flows for network load
/// balancers, HTTP requests for application ones (ELBv2's TLS, TCP_UDP
/// and HTTPS not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficProtocol {
    Tcp,
    Udp,
    Http,
}

impl TrafficProtocol {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            "http" => Ok(Self::Http),
            _ => Err(Error::Protocol {
                what: "a target group or listener",
                got: text.to_owned(),
                allowed: "TCP or UDP (network), HTTP (application)",
            }),
        }
    }

    /// The protocol as the VPC's firewall names it.
    pub fn realised(self) -> crate::net::nft::security_group::Protocol {
        use crate::net::nft::security_group::Protocol;
        match self {
            Self::Tcp | Self::Http => Protocol::Tcp,
            Self::Udp => Protocol::Udp,
        }
    }

    /// Whether a load balancer of `kind` carries it.
    pub fn carried_by(self, kind: super::load_balancer::BalancerType) -> bool {
        use super::load_balancer::BalancerType;
        match self {
            Self::Tcp | Self::Udp => kind == BalancerType::Network,
            Self::Http => kind == BalancerType::Application,
        }
    }
}

impl fmt::Display for TrafficProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Http => "HTTP",
        })
    }
}

/// How a target is checked: a TCP connection, or an HTTP GET whose status
/// must be 200-399 (ELBv2's default matcher for network load balancers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckProtocol {
    Tcp,
    Http,
}

impl CheckProtocol {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "http" => Ok(Self::Http),
            _ => Err(Error::Protocol {
                what: "a health check",
                got: text.to_owned(),
                allowed: "TCP or HTTP",
            }),
        }
    }
}

/// A target group's health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub protocol: CheckProtocol,
    /// None: the port traffic goes to (ELBv2's `traffic-port`).
    pub port: Option<u16>,
    /// The path of an HTTP check.
    pub path: Option<String>,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// What `target-group create` may say of the check; `None` takes ELBv2's
/// default for a network load balancer's target group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthCheckRequest {
    pub protocol: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub interval_secs: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

/// ELBv2's defaults for a TCP or UDP target group.
const DEFAULT_INTERVAL: u32 = 30;
const DEFAULT_TIMEOUT: u32 = 10;
const DEFAULT_HEALTHY: u32 = 5;
const DEFAULT_UNHEALTHY: u32 = 2;

impl HealthCheck {
    /// The check `request` asks for, checked. Intervals go down to 1 s
    /// (ELBv2's least is 5), so that tests and small setups react fast.
    pub fn from_request(request: &HealthCheckRequest) -> Result<Self, Error> {
        let protocol = match &request.protocol {
            Some(text) => CheckProtocol::parse(text)?,
            None => CheckProtocol::Tcp,
        };
        let check = Self {
            protocol,
            port: request.port,
            path: match protocol {
                CheckProtocol::Http => Some(request.path.clone().unwrap_or_else(|| "/".into())),
                CheckProtocol::Tcp => None,
            },
            interval_secs: request.interval_secs.unwrap_or(DEFAULT_INTERVAL),
            timeout_secs: request.timeout_secs.unwrap_or(DEFAULT_TIMEOUT),
            healthy_threshold: request.healthy_threshold.unwrap_or(DEFAULT_HEALTHY),
            unhealthy_threshold: request.unhealthy_threshold.unwrap_or(DEFAULT_UNHEALTHY),
        };
        if protocol == CheckProtocol::Tcp && request.path.is_some() {
            return Err(Error::PathWithoutHttp);
        }
        if let Some(path) = &check.path {
            let ok = path.starts_with('/')
                && path.len() <= 1024
                && path.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(Error::BadPath(path.clone()));
            }
        }
        if request.port == Some(0) {
            return Err(Error::BadPort {
                what: "health check",
            });
        }
        range("interval", check.interval_secs, 1, 300)?;
        range("timeout", check.timeout_secs, 1, 120)?;
        range("healthy threshold", check.healthy_threshold, 2, 10)?;
        range("unhealthy threshold", check.unhealthy_threshold, 2, 10)?;
        if check.timeout_secs > check.interval_secs {
            return Err(Error::TimeoutOverInterval {
                timeout: check.timeout_secs,
                interval: check.interval_secs,
            });
        }
        Ok(check)
    }
}

fn range(what: &'static str, got: u32, min: u32, max: u32) -> Result<(), Error> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            what,
            got,
            min,
            max,
        })
    }
}

/// A target's health, as ELBv2's DescribeTargetHealth names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Registered, not yet checked enough times.
    Initial,
    Healthy,
    Unhealthy,
    /// Deregistered: no new flows; existing ones go on until the delay ends.
    Draining,
    /// No load balancer's listener uses its target group.
    Unused,
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
            Self::Unused => "unused",
        })
    }
}

/// One registered instance and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub instance_id: String,
    pub port: u16,
    pub state: HealthState,
    /// ELBv2's reason code (`Target.FailedHealthChecks`, ...).
    pub reason: Option<String>,
    pub description: Option<String>,
    /// While draining: when the deregistration delay ends (seconds since
    /// the epoch); the target is gone after it.
    #[serde(default)]
    pub drain_until: Option<u64>,
}

impl Target {
    pub fn new(instance_id: &str, port: u16) -> Self {
        Self {
            instance_id: instance_id.to_owned(),
            port,
            state: HealthState::Initial,
            reason: Some("Elb.RegistrationInProgress".into()),
            description: Some("Target registration is in progress".into()),
            drain_until: None,
        }
    }
}

/// A target group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub vpc_id: String,
    pub protocol: TrafficProtocol,
    pub port: u16,
    pub health_check: HealthCheck,
    /// How long a deregistered target drains (ELBv2's default: 300 s).
    pub deregistration_delay_secs: u32,
    pub targets: Vec<Target>,
    pub created: String,
}

impl Resource for TargetGroup {
    const KIND: Kind = Kind::TargetGroup;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl InVpc for TargetGroup {
    fn vpc_id(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}

impl TargetGroup {
    /// Drops the targets whose drain ended by `now`; says whether any did.
    pub fn expire(&mut self, now: u64) -> bool {
        let before = self.targets.len();
        self.targets
            .retain(|t| t.drain_until.is_none_or(|until| until > now));
        self.targets.len() != before
    }

    /// The port a check of `target` goes to.
    pub fn check_port(&self, target: &Target) -> u16 {
        self.health_check.port.unwrap_or(target.port)
    }

    /// Starts `target` draining (or removes it at once with no delay).
    pub fn drain(&mut self, instance: &str, port: u16, now: u64) -> Result<(), Error> {
        let Some(index) = self
            .targets
            .iter()
            .position(|t| t.instance_id == instance && t.port == port)
        else {
            return Err(Error::NotRegistered {
                group: self.id.clone(),
                instance: instance.to_owned(),
                port,
            });
        };
        if self.deregistration_delay_secs == 0 {
            self.targets.remove(index);
            return Ok(());
        }
        if let Some(target) = self.targets.get_mut(index) {
            if target.state != HealthState::Draining {
                target.state = HealthState::Draining;
                target.reason = Some("Target.DeregistrationInProgress".into());
                target.description = Some("Target deregistration is in progress".into());
                target.drain_until = Some(now + u64::from(self.deregistration_delay_secs));
            }
        }
        Ok(())
    }

    /// Registers `instance` on `port`: a new target starts `initial`; one
    /// draining is taken back.
    pub fn register(&mut self, instance: &str, port: u16) {
        match self
            .targets
            .iter_mut()
            .find(|t| t.instance_id == instance && t.port == port)
        {
            Some(target) if target.state == HealthState::Draining => {
                *target = Target::new(instance, port);
            }
            Some(_) => {}
            None => self.targets.push(Target::new(instance, port)),
        }
    }

    /// Puts every target that is not draining back to `initial`: when a
    /// listener starts using the group, its targets are checked afresh.
    pub fn restart_checks(&mut self) {
        for target in &mut self.targets {
            if target.state != HealthState::Draining {
                *target = Target::new(&target.instance_id, target.port);
            }
        }
    }

    /// The targets as shown: `unused` (Target.NotInUse) for a group no
    /// listener uses, as ELBv2 says.
    pub fn shown(mut self, in_use: bool) -> Self {
        if !in_use {
            for target in &mut self.targets {
                if target.state != HealthState::Draining {
                    target.state = HealthState::Unused;
                    target.reason = Some("Target.NotInUse".into());
                    target.description = Some(
                        "Target group is not configured to receive traffic from the load balancer"
                            .into(),
                    );
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp() -> HealthCheckRequest {
        HealthCheckRequest::default()
    }

    #[test]
    fn checks_default_as_elbv2_and_refuse_nonsense() {
        let check = HealthCheck::from_request(&tcp()).unwrap();
        assert_eq!(check.protocol, CheckProtocol::Tcp);
        assert_eq!(
            (check.interval_secs, check.timeout_secs),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT)
        );
        let http = HealthCheckRequest {
            protocol: Some("HTTP".into()),
            ..tcp()
        };
        let check = HealthCheck::from_request(&http).unwrap();
        assert_eq!(check.path.as_deref(), Some("/"));
        for bad in [
            HealthCheckRequest {
                interval_secs: Some(0),
                ..tcp()
            },
            HealthCheckRequest {
                healthy_threshold: Some(11),
                ..tcp()
            },
            HealthCheckRequest {
                interval_secs: Some(5),
                timeout_secs: Some(6),
                ..tcp()
            },
            HealthCheckRequest {
                path: Some("/x".into()),
                ..tcp()
            },
            HealthCheckRequest {
                protocol: Some("http".into()),
                path: Some("no-slash".into()),
                ..tcp()
            },
            HealthCheckRequest {
                protocol: Some("icmp".into()),
                ..tcp()
            },
        ] {
            assert!(HealthCheck::from_request(&bad).is_err(), "{bad:?}");
        }
    }

    fn group() -> TargetGroup {
        TargetGroup {
            id: "tg-1".into(),
            name: "web".into(),
            arn: String::new(),
            vpc_id: "vpc-1".into(),
            protocol: TrafficProtocol::Tcp,
            port: 80,
            health_check: HealthCheck::from_request(&tcp()).unwrap(),
            deregistration_delay_secs: 30,
            targets: Vec::new(),
            created: String::new(),
        }
    }

    #[test]
    fn a_deregistered_target_drains_for_the_delay_then_goes() {
        let mut group = group();
        group.register("i-1", 80);
        group.register("i-1", 80);
        group.register("i-2", 80);
        assert_eq!(group.targets.len(), 2);
        group.drain("i-1", 80, 1000).unwrap();
        assert_eq!(group.targets[0].state, HealthState::Draining);
        assert_eq!(group.targets[0].drain_until, Some(1030));
        assert!(!group.expire(1029));
        assert!(group.expire(1030));
        assert_eq!(group.targets.len(), 1);
        assert!(matches!(
            group.drain("i-1", 80, 1000),
            Err(Error::NotRegistered { .. })
        ));
        // Registered again while draining: back to initial.
        group.drain("i-2", 80, 1000).unwrap();
        group.register("i-2", 80);
        assert_eq!(group.targets[0].state, HealthState::Initial);
        group.deregistration_delay_secs = 0;
        group.drain("i-2", 80, 1000).unwrap();
        assert!(group.targets.is_empty());
    }

    #[test]
    fn a_group_no_listener_uses_shows_unused_targets() {
        let mut group = group();
        group.register("i-1", 80);
        let shown = group.clone().shown(false);
        assert_eq!(shown.targets[0].state, HealthState::Unused);
        assert_eq!(group.shown(true).targets[0].state, HealthState::Initial);
    }
}
