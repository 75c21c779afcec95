//! Instances: the record of one VM, and EC2's instance state machine.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cpu_options::CpuOptions;
use super::ids::Kind;
use super::instance_type::LimitOverrides;
use super::metadata_options::MetadataOptions;
use super::process::ProcessRef;
use super::store::Resource;
use super::tap_network::StaticIp;
use super::user_data::UserData;

/// EC2's instance states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::ShuttingDown => "shutting-down",
            State::Terminated => "terminated",
        }
    }

    /// States in which a supervisor process owns the instance.
    pub fn is_supervised(self) -> bool {
        matches!(
            self,
            State::Pending | State::Running | State::Stopping | State::ShuttingDown
        )
    }

    /// States in which it holds the public address it was given: every
    /// one until it is stopped or terminated, when EC2 releases it.
    pub fn holds_public_ip(self) -> bool {
        self.is_supervised()
    }

    /// Whether EC2 allows going from `self` to `next`.
    pub fn can_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Pending, Running | Stopping | Stopped | ShuttingDown)
                | (Running, Stopping | Stopped | ShuttingDown)
                | (Stopping, Stopped | ShuttingDown)
                | (Stopped, Pending | ShuttingDown | Terminated)
                | (ShuttingDown, Terminated)
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change EC2 does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("instance {id} is {from}; it cannot become {to}{hint}")]
pub struct TransitionError {
    pub id: String,
    pub from: State,
    pub to: State,
    hint: &'static str,
}

/// A block device of the instance (`--disk` of the VMM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// The guest's name for it (`vda` is the first virtio disk).
    pub device: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// Removed with the instance (its own copy of the image's disk).
    pub delete_on_termination: bool,
}

/// A network interface (`--net` of the VMM). Until the VPC layer fills
/// these in, `gureum run --tap` adds one (`cloud::tap_network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub tap: String,
    pub mac: String,
    /// The address the guest is given: its port's in a VPC, or the one
    /// `--tap --ip` names. Absent in records made before it existed.
    #[serde(default)]
    pub static_ip: Option<StaticIp>,
    /// The network namespace the tap is in (a VPC's), if not the host's.
    #[serde(default)]
    pub netns: Option<String>,
}

/// What a shutdown from inside the guest does to its instance (EC2's
/// InstanceInitiatedShutdownBehavior): stop it, or terminate it (its disk
/// copy, port and files go), as a CI job's throwaway host wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownBehavior {
    #[default]
    Stop,
    Terminate,
}

impl ShutdownBehavior {
    pub fn parse(word: &str) -> Result<Self, String> {
        match word {
            "stop" => Ok(ShutdownBehavior::Stop),
            "terminate" => Ok(ShutdownBehavior::Terminate),
            other => Err(format!(
                "'{other}' is no shutdown behavior: write stop or terminate"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownBehavior::Stop => "stop",
            ShutdownBehavior::Terminate => "terminate",
        }
    }

    pub fn is_stop(&self) -> bool {
        *self == ShutdownBehavior::Stop
    }
}

/// One instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub image_id: String,
    pub instance_type: String,
    pub vcpus: u16,
    pub memory_mib: u64,
    pub key_name: Option<String>,
    pub template_id: Option<String>,
    /// The full kernel command line: the image's plus what the launch
    /// appended.
    pub cmdline: String,
    pub state: State,
    /// Why it is in its state (EC2's StateReason: `Code: message`).
    pub state_reason: Option<String>,
    /// Seconds since the epoch of the last state change.
    pub state_since: u64,
    pub launch_time: String,
    pub availability_zone: String,
    pub disks: Vec<Disk>,
    pub network_interfaces: Vec<NetworkInterface>,
    /// Its place in a VPC (`run --subnet`); absent for instances outside
    /// VPCs and in records made before VPCs existed.
    #[serde(default)]
    pub placement: Option<super::vpc::port::Placement>,
    pub supervisor: Option<ProcessRef>,
    pub vmm: Option<ProcessRef>,
    /// `gureum instance reboot` asked for the VMM to be restarted.
    pub reboot_requested: bool,
    /// Seconds since the epoch after which the supervisor kills a VMM
    /// that was asked to shut down (stop, reboot, terminate) and has not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_after: Option<u64>,
    /// How many times a VMM has been started for it.
    pub boots: u32,
    /// Its own device rate limits, over its type's.
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    /// The ClientToken it was launched with (`LaunchRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Its CPU options (nested virtualization).
    #[serde(default, skip_serializing_if = "CpuOptions::is_default")]
    pub cpu_options: CpuOptions,
    /// What `run --user-data` gave (base64 in JSON); served by IMDS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
    /// How its metadata service answers (EC2's defaults in older records).
    #[serde(default)]
    pub metadata_options: MetadataOptions,
    /// What a shutdown from inside the guest does.
    #[serde(default, skip_serializing_if = "ShutdownBehavior::is_stop")]
    pub shutdown_behavior: ShutdownBehavior,
    /// The process whose end terminates it (`run --rm`, `--rm-with PID`):
    /// a CI job's shell, so that a job that ends or is killed leaves
    /// nothing. Its supervisor watches it, and every reconcile pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_with: Option<ProcessRef>,
    /// Its VMM's CPU utilization, the last minutes' averages, as the
    /// daemon samples it (`cloud::cpu_metric`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_utilization: Vec<super::cpu_metric::CpuMinute>,
}

impl Resource for Instance {
    const KIND: Kind = Kind::Instance;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        // Name tags need not be unique, as in EC2.
        None
    }
}

impl Instance {
    /// Moves to `to` with `reason`, if EC2 allows it.
    pub fn transition(&mut self, to: State, reason: Option<String>) -> Result<(), TransitionError> {
        if !self.state.can_become(to) {
            let hint = match self.state {
                State::Terminated => "; terminated instances stay listed but are gone",
                State::ShuttingDown => "; it is being terminated",
                State::Stopping => "; wait for it to stop",
                State::Stopped => "; start it first with `gureum instance start`",
                State::Pending | State::Running => "; stop it first with `gureum instance stop`",
            };
            return Err(TransitionError {
                id: self.id.clone(),
                from: self.state,
                to,
                hint,
            });
        }
        self.state = to;
        self.state_reason = reason;
        self.state_since = super::time::now_secs();
        // As EC2's: a stopped or terminated instance's public address goes
        // back to the pool in the change that says so; the next start
        // gives a new one. Its elastic IP stays.
        if !to.holds_public_ip() {
            if let Some(placement) = self.placement.as_mut() {
                placement.public_ip = None;
            }
        }
        if !to.is_supervised() {
            self.supervisor = None;
            self.vmm = None;
            self.reboot_requested = false;
            self.kill_after = None;
        }
        Ok(())
    }
}

/// Where this host reaches an instance's guest (`gureum ssh`): its VPC
/// address from inside the VPC's namespace, or its `--tap` address from
/// here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub address: Ipv4Addr,
    /// The network namespace to connect from; `None` is the host's.
    pub netns: Option<String>,
}

/// Why an instance cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReachError {
    #[error(
        "{id} is {state}, not running: `gureum instance wait {id}` waits for a pending one, \
         `gureum instance start {id}` starts a stopped one"
    )]
    NotRunning { id: String, state: State },
    #[error(
        "{id} has no address this host reaches: launch it into a VPC (`gureum run --subnet`) \
         or on a tap with an address (`gureum run --tap NAME --ip ADDR/LEN`)"
    )]
    NoAddress { id: String },
}

impl Instance {
    /// Where its guest is reached, if it is running and has an address.
    pub fn reach(&self) -> Result<Reach, ReachError> {
        if self.state != State::Running {
            return Err(ReachError::NotRunning {
                id: self.id.clone(),
                state: self.state,
            });
        }
        if let Some(placement) = &self.placement {
            let netns = self
                .network_interfaces
                .iter()
                .find(|nic| nic.tap == placement.tap)
                .and_then(|nic| nic.netns.clone());
            if let Some(netns) = netns {
                return Ok(Reach {
                    address: placement.private_ip,
                    netns: Some(netns),
                });
            }
        }
        self.network_interfaces
            .iter()
            .find_map(|nic| match (&nic.static_ip, &nic.netns) {
                (Some(ip), None) => Some(Reach {
                    address: ip.address,
                    netns: None,
                }),
                _ => None,
            })
            .ok_or_else(|| ReachError::NoAddress {
                id: self.id.clone(),
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn instance(state: State) -> Instance {
        Instance {
            id: "i-0123456789abcdef0".into(),
            image_id: "ami-0123456789abcdef0".into(),
            instance_type: "t2.micro".into(),
            vcpus: 1,
            memory_mib: 1024,
            key_name: None,
            template_id: None,
            cmdline: "console=ttyS0".into(),
            state,
            state_reason: None,
            state_since: 0,
            launch_time: "2026-01-01T00:00:00Z".into(),
            availability_zone: "local-1a".into(),
            disks: Vec::new(),
            network_interfaces: Vec::new(),
            placement: None,
            supervisor: None,
            vmm: None,
            reboot_requested: false,
            kill_after: None,
            boots: 0,
            limits: LimitOverrides::default(),
            client_token: None,
            cpu_options: CpuOptions::default(),
            user_data: None,
            metadata_options: MetadataOptions::default(),
            shutdown_behavior: ShutdownBehavior::Stop,
            terminate_with: None,
            cpu_utilization: Vec::new(),
        }
    }

    #[test]
    fn a_vpc_instance_is_reached_at_its_private_address_in_the_vpc_namespace() {
        let mut i = instance(State::Running);
        i.network_interfaces.push(NetworkInterface {
            tap: "t-1".into(),
            mac: "02:00:00:00:00:01".into(),
            static_ip: None,
            netns: Some("gureum-vpc-1".into()),
        });
        i.placement = Some(super::super::vpc::port::Placement {
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            private_ip: Ipv4Addr::new(10, 0, 1, 10),
            mac: crate::host::mac::MacAddr([2, 0, 0, 0, 0, 1]),
            tap: "t-1".into(),
            security_groups: Vec::new(),
            source_dest_check: true,
            elastic_ip: None,
            auto_public_ip: false,
            public_ip: None,
        });
        assert_eq!(
            i.reach(),
            Ok(Reach {
                address: Ipv4Addr::new(10, 0, 1, 10),
                netns: Some("gureum-vpc-1".into()),
            })
        );
    }

    #[test]
    fn a_tap_instance_is_reached_at_its_address_from_the_host() {
        let mut i = instance(State::Running);
        i.network_interfaces.push(NetworkInterface {
            tap: "gtap0".into(),
            mac: "02:00:00:00:00:02".into(),
            static_ip: Some(StaticIp {
                address: Ipv4Addr::new(10, 77, 0, 2),
                prefix_len: 24,
                gateway: None,
            }),
            netns: None,
        });
        assert_eq!(
            i.reach(),
            Ok(Reach {
                address: Ipv4Addr::new(10, 77, 0, 2),
                netns: None,
            })
        );
        i.state = State::Stopped;
        let err = i.reach().unwrap_err();
        assert!(err.to_string().contains("gureum instance start"), "{err}");
    }

    #[test]
    fn an_instance_without_an_address_says_how_to_give_it_one() {
        let err = instance(State::Running).reach().unwrap_err();
        assert!(matches!(err, ReachError::NoAddress { .. }));
        assert!(err.to_string().contains("--subnet"), "{err}");
    }

    #[test]
    fn ec2_lifecycle_is_allowed() {
        let mut i = instance(State::Pending);
        for next in [
            State::Running,
            State::Stopping,
            State::Stopped,
            State::Pending,
            State::Running,
            State::ShuttingDown,
            State::Terminated,
        ] {
            i.transition(next, None).unwrap();
            assert_eq!(i.state, next);
        }
    }

    #[test]
    fn impossible_transitions_are_refused_with_a_hint() {
        let mut i = instance(State::Terminated);
        let err = i.transition(State::Pending, None).unwrap_err();
        assert!(
            err.to_string().contains("terminated instances stay listed"),
            "{err}"
        );
        assert_eq!(i.state, State::Terminated);
        assert!(!State::Running.can_become(State::Pending));
        assert!(!State::Running.can_become(State::Terminated));
        assert!(!State::Stopped.can_become(State::Running));
        assert!(!State::ShuttingDown.can_become(State::Stopped));
    }

    #[test]
    fn leaving_the_supervised_states_forgets_the_processes() {
        let mut i = instance(State::Running);
        i.supervisor = Some(ProcessRef {
            pid: 1,
            start_ticks: 1,
            boot: None,
        });
        i.vmm = i.supervisor;
        i.reboot_requested = true;
        i.transition(State::Stopped, Some("why".into())).unwrap();
        assert_eq!(
            (i.supervisor, i.vmm, i.reboot_requested),
            (None, None, false)
        );
        assert_eq!(i.state_reason.as_deref(), Some("why"));
        assert!(i.state_since > 0);
    }

    #[test]
    fn records_made_before_user_data_load_with_ec2_defaults() {
        let mut old = serde_json::to_value(instance(State::Stopped)).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("user_data");
        fields.remove("metadata_options");
        let loaded: Instance = serde_json::from_value(old).unwrap();
        assert_eq!(loaded.user_data, None);
        assert_eq!(loaded.metadata_options, MetadataOptions::default());
    }

    #[test]
    fn states_serialize_as_ec2_names() {
        assert_eq!(
            serde_json::to_string(&State::ShuttingDown).unwrap(),
            "\"shutting-down\""
        );
    }
}
