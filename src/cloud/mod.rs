//! The EC2 control plane: key pairs, images, instance types, launch
//! templates and instances, kept in one transactional store, with each
//! instance's VMM run detached under a supervisor process.

pub mod api;
pub mod autoscaling;
pub mod children;
pub mod control;
pub mod cpu_metric;
pub mod cpu_options;
pub mod disk_copy;
pub mod elb;
pub mod iam;
pub mod ids;
pub mod image;
pub mod instance;
pub mod instance_type;
pub mod key_pair;
pub mod launch;
pub mod launch_count;
pub mod lifecycle;
pub mod lookup;
pub mod manifest;
pub mod metadata;
pub mod metadata_options;
pub mod names;
pub mod process;
pub mod reconcile;
pub mod staging;
pub mod state_dir;
pub mod store;
pub mod store_file;
pub mod supervisor;
pub mod tags;
pub mod tap_network;
pub mod template;
pub mod time;
pub mod user_data;
pub mod vmm_command;
pub mod vpc;
pub mod wildcard;

use std::path::PathBuf;

/// Errors of control-plane operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Random(#[from] ids::RandomError),
    #[error(transparent)]
    InstanceType(#[from] instance_type::Error),
    #[error(transparent)]
    Tag(#[from] tags::Error),
    #[error(transparent)]
    KeyPair(#[from] key_pair::Error),
    #[error(transparent)]
    Name(#[from] names::NameError),
    #[error(transparent)]
    Transition(#[from] instance::TransitionError),
    #[error(transparent)]
    Copy(#[from] disk_copy::Error),
    #[error(transparent)]
    TapNetwork(#[from] tap_network::Error),
    #[error(transparent)]
    Vpc(#[from] vpc::Error),
    #[error(transparent)]
    Elb(#[from] elb::Error),
    #[error(transparent)]
    AutoScaling(#[from] autoscaling::Error),
    #[error(transparent)]
    Iam(#[from] iam::Error),
    #[error(transparent)]
    UserData(#[from] user_data::Error),
    #[error(transparent)]
    MetadataOptions(#[from] metadata_options::Error),
    #[error(
        "--tap names one interface, so it launches one instance: drop --count or launch them \
         one by one, each with its own tap"
    )]
    TapWithCount,
    #[error(
        "process {pid}, whose end would terminate the instance (--rm), does not run (as seen \
         by whoever launches: the daemon, if one answers, sees its own processes): name a \
         running one with --rm-with PID"
    )]
    OwnerNotRunning { pid: i32 },
    #[error("no {noun} '{reference}'; `{list}` shows them")]
    NotFound {
        noun: &'static str,
        reference: String,
        list: &'static str,
    },
    #[error("{count} {noun}s are named '{name}' ({ids}); name one by its ID")]
    AmbiguousName {
        noun: &'static str,
        name: String,
        count: usize,
        ids: String,
    },
    #[error("cannot read the image manifest {path}: {source}")]
    ReadManifest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image manifest {path}: {source}")]
    Manifest {
        path: PathBuf,
        source: manifest::Error,
    },
    #[error("the image's {role} {path} does not exist{hint}")]
    MissingImageFile {
        role: &'static str,
        path: PathBuf,
        hint: String,
    },
    #[error(
        "the image's {role} '{name}' {why}: an image's files must be inside its manifest's \
         directory {base}"
    )]
    ImageFileOutside {
        role: &'static str,
        name: String,
        base: PathBuf,
        why: String,
    },
    #[error("the image's {role} {path} is empty; rebuild the image")]
    EmptyImageFile { role: &'static str, path: PathBuf },
    #[error("the image's kernel is not one gureum boots: {0}")]
    Kernel(#[from] crate::vmm::boot::kernel::Error),
    #[error("the image has no name: pass --name NAME (its manifest has no name= line)")]
    NoImageName,
    #[error(
        "image {id} is used by {instances}; terminate them first (an instance boots from its \
         image's kernel)"
    )]
    ImageInUse { id: String, instances: String },
    #[error("instance {id} is {state}; stop it first (`gureum instance stop {id}`): {what}")]
    NotStopped {
        id: String,
        state: instance::State,
        /// What is done to stopped instances only, and why.
        what: &'static str,
    },
    #[error("instance {id} changed state while its image was being saved; try again")]
    ChangedWhileSaving { id: String },
    #[error(
        "no image given and {count} images exist: pass --image ID-or-NAME (`gureum image list`)"
    )]
    NoImageChosen { count: usize },
    #[error(
        "image {image} needs at least {min} MiB; instance type {instance_type} has {has} MiB: \
         pick a larger type"
    )]
    TooLittleMemory {
        image: String,
        min: u64,
        instance_type: String,
        has: u64,
    },
    #[error(transparent)]
    CpuOptions(#[from] cpu_options::Error),
    #[error("--private-ip names one address, so it launches one instance: drop --count")]
    PrivateIpWithCount,
    #[error("instance MAC {0} is malformed")]
    BadMac(String),
    #[error("--count must be at least 1")]
    ZeroCount,
    #[error(
        "only {made} of --count {count} instances could be made, fewer than the minimum, so \
         none were launched{not_undone}: {source}"
    )]
    BelowMinCount {
        made: usize,
        count: launch_count::LaunchCount,
        source: Box<Error>,
        not_undone: String,
    },
    #[error("{}; `gureum instance logs ID` shows the console", .0.join("; "))]
    DidNotStart(Vec<String>),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] crate::vmm::sandbox::cgroup::Error),
    #[error("cannot start the supervisor of {id} ({exe}): {source}")]
    SpawnSupervisor {
        id: String,
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot start the VMM of {id} ({exe}): {source}; gureum-vmm belongs beside gureum \
         (`cargo build --release` builds both, `cargo install --path .` installs both)"
    )]
    SpawnVmm {
        id: String,
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "instance {id} did not reach {want} within {secs} s (it is {state}); see \
         `gureum instance describe {id}`"
    )]
    Timeout {
        id: String,
        want: instance::State,
        state: instance::State,
        secs: u64,
    },
    #[error("instance {id} is {state}, not {want}: {reason}")]
    Settled {
        id: String,
        want: instance::State,
        state: instance::State,
        reason: String,
    },
    #[error("instance {id} is {state}, not running; start it with `gureum instance start {id}`")]
    NotRunning { id: String, state: instance::State },
    #[error(
        "instance {id} is {state}: it is leaving its VPC, so its network settings stay as they are"
    )]
    LeavingVpc { id: String, state: instance::State },
}

impl Error {
    /// An I/O error on `path` while doing `what`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
