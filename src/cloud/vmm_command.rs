//! The `gureum-vmm boot` command line (the arguments of `gureum boot`)
//! that runs an instance's VMM.

use std::ffi::OsString;
use std::path::Path;

use crate::vmm::sandbox::jail::Ids;

use super::image::Image;
use super::instance::Instance;
use super::instance_type::io_limits;
use super::state_dir::{InstanceFiles, StateDir};

/// `,key=value` for each limit that is set (0 is none).
fn limit_options(limits: &[(&str, u64)]) -> String {
    limits
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!(",{k}={v}"))
        .collect()
}

/// The system UUID instance `id`'s guest sees: "ec2" and the id's hex
/// digits, as stable as the id (EC2's begin with "ec2" too, which is how
/// cloud-init and others tell EC2 apart).
pub fn system_uuid(id: &str) -> String {
    let digits: String = "ec2"
        .chars()
        .chain(
            id.trim_start_matches("i-")
                .chars()
                .filter(char::is_ascii_hexdigit),
        )
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    let (a, rest) = digits.split_at(8);
    let (b, rest) = rest.split_at(4);
    let (c, rest) = rest.split_at(4);
    let (d, e) = rest.split_at(4);
    format!("{a}-{b}-{c}-{d}-{e}")
}

/// Arguments after the program name: `boot --kernel ...`; the instance
/// type sets the disks' and interfaces' rate limits, and the instance
/// its SMBIOS identity.
pub fn boot_args(
    state: &StateDir,
    image: &Image,
    instance: &Instance,
    files: &InstanceFiles,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["boot".into(), "--kernel".into()];
    args.push(image.file(state, &image.kernel).into());
    if let Some(initrd) = &image.initrd {
        args.push("--initrd".into());
        args.push(image.file(state, initrd).into());
    }
    args.extend([
        "--cmdline".into(),
        instance.cmdline.clone().into(),
        "--vcpus".into(),
        instance.vcpus.to_string().into(),
        "--memory".into(),
        instance.memory_mib.to_string().into(),
        "--uuid".into(),
        system_uuid(&instance.id).into(),
        "--product-name".into(),
        instance.instance_type.clone().into(),
        "--asset-tag".into(),
        instance.id.clone().into(),
    ]);
    if instance.cpu_options.nested_virtualization {
        args.push("--nested-virtualization".into());
    }
    let limits = io_limits(&instance.instance_type).with(&instance.limits);
    let disk_limit = limit_options(&[
        ("bw", limits.disk.bytes_per_sec),
        ("iops", limits.disk.ops_per_sec),
    ]);
    for disk in &instance.disks {
        let mut spec = disk.path.clone().into_os_string();
        if disk.read_only {
            spec.push(",ro");
        }
        spec.push(&disk_limit);
        args.push("--disk".into());
        args.push(spec);
    }
    let net_limit = limit_options(&[
        ("rx_bw", limits.net.rx.bytes_per_sec),
        ("rx_pps", limits.net.rx.ops_per_sec),
        ("tx_bw", limits.net.tx.bytes_per_sec),
        ("tx_pps", limits.net.tx.ops_per_sec),
    ]);
    for nic in &instance.network_interfaces {
        let mut spec = format!("tap={},mac={}", nic.tap, nic.mac);
        if let Some(netns) = &nic.netns {
            spec.push_str(&format!(",netns={netns}"));
        }
        spec.push_str(&net_limit);
        args.push("--net".into());
        args.push(spec.into());
    }
    args.push("--metrics".into());
    args.push(files.metrics.clone().into());
    args.push("--console-socket".into());
    args.push(files.console_socket.clone().into());
    args.push("--console-log".into());
    args.push(files.console_log.clone().into());
    args
}

/// The first uid (and gid) of instances' jails; `GUREUM_JAIL_ID_BASE`
/// moves it. Far above the users and groups of a host and the ranges
/// user namespaces are usually given.
pub const JAIL_ID_BASE: u32 = 0x7000_0000;
/// Instances' ids spread over this many uids above the base.
const JAIL_ID_SPAN: u32 = 1 << 24;
/// Overrides [`JAIL_ID_BASE`].
pub const JAIL_ID_BASE_ENV: &str = "GUREUM_JAIL_ID_BASE";

/// The uid and gid instance `id`'s VMM runs as: the base plus the low 24
/// bits of the id's random hex digits, stable over the instance's life.
/// Two instances share one in about 1 in 16 million pairs; even then
/// neither can see the other (own PID and mount namespaces, no files).
pub fn jail_ids(id: &str, base: u32) -> Ids {
    let digits = id.trim_start_matches("i-");
    let offset = u64::from_str_radix(digits, 16).unwrap_or_else(|_| {
        digits
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    }) % u64::from(JAIL_ID_SPAN);
    let id = base.saturating_add(u32::try_from(offset).unwrap_or_default());
    Ids { uid: id, gid: id }
}

/// The base of jail ids on this host (see [`JAIL_ID_BASE_ENV`]).
pub fn jail_id_base() -> u32 {
    std::env::var(JAIL_ID_BASE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&b: &u32| b > 0 && b.checked_add(JAIL_ID_SPAN).is_some())
        .unwrap_or(JAIL_ID_BASE)
}

/// The sandbox of an instance's VMM: its jail, and its cgroup if any.
pub fn sandbox_args(instance: &Instance, cgroup: Option<&Path>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--jail".into(),
        jail_ids(&instance.id, jail_id_base()).to_string().into(),
    ];
    if let Some(dir) = cgroup {
        args.push("--cgroup".into());
        args.push(dir.into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::instance::tests::instance;
    use crate::cloud::instance::{Disk, NetworkInterface, State};

    fn image() -> Image {
        Image {
            id: "ami-0123456789abcdef0".into(),
            name: "busybox".into(),
            description: String::new(),
            architecture: "x86_64".into(),
            kernel: "kernel".into(),
            initrd: Some("initrd".into()),
            root_disk: None,
            cmdline: "console=ttyS0".into(),
            default_user: None,
            min_memory_mib: 128,
            source_instance: None,
            created: String::new(),
        }
    }

    #[test]
    fn the_vmm_gets_the_image_files_the_type_and_the_instance_devices() {
        let state = StateDir::resolve(Some("/s".into()));
        let mut inst = instance(State::Pending);
        inst.cmdline = "console=ttyS0 rig.scenario=idle".into();
        inst.disks.push(Disk {
            device: "vda".into(),
            path: "/s/instances/i-1/root.img".into(),
            read_only: false,
            delete_on_termination: true,
        });
        inst.network_interfaces.push(NetworkInterface {
            tap: "tap0".into(),
            mac: "02:00:00:00:00:01".into(),
            static_ip: None,
            netns: Some("gureum-vpc-1".into()),
        });
        let files = state.instance_files(&inst.id);
        let args: Vec<String> = boot_args(&state, &image(), &inst, &files)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let sock = format!("/s/instances/{}/run/console.sock", inst.id);
        let log = format!("/s/instances/{}/console.log", inst.id);
        let metrics = format!("/s/instances/{}/metrics.json", inst.id);
        assert_eq!(
            args,
            [
                "boot",
                "--kernel",
                "/s/images/ami-0123456789abcdef0/kernel",
                "--initrd",
                "/s/images/ami-0123456789abcdef0/initrd",
                "--cmdline",
                "console=ttyS0 rig.scenario=idle",
                "--vcpus",
                "1",
                "--memory",
                "1024",
                "--uuid",
                "ec201234-5678-9abc-def0-000000000000",
                "--product-name",
                "t2.micro",
                "--asset-tag",
                &inst.id,
                "--disk",
                "/s/instances/i-1/root.img,bw=260625000,iops=11800",
                "--net",
                "tap=tap0,mac=02:00:00:00:00:01,netns=gureum-vpc-1,\
                 rx_bw=625000000,tx_bw=625000000",
                "--metrics",
                &metrics,
                "--console-socket",
                &sock,
                "--console-log",
                &log,
            ]
        );
    }

    #[test]
    fn an_instances_own_limits_reach_its_vmm() {
        let state = StateDir::resolve(Some("/s".into()));
        let mut inst = instance(State::Pending);
        inst.disks.push(Disk {
            device: "vda".into(),
            path: "/d.img".into(),
            read_only: false,
            delete_on_termination: true,
        });
        inst.limits.disk_iops = Some(5);
        let files = state.instance_files(&inst.id);
        let args = boot_args(&state, &image(), &inst, &files);
        assert!(
            args.iter().any(|a| a == "/d.img,bw=260625000,iops=5"),
            "{args:?}"
        );
    }

    #[test]
    fn nested_virtualization_reaches_the_vmm_only_when_asked() {
        let state = StateDir::resolve(Some("/s".into()));
        let mut inst = instance(State::Pending);
        let files = state.instance_files(&inst.id);
        let flag = |inst: &Instance| {
            boot_args(&state, &image(), inst, &files)
                .iter()
                .any(|a| a == "--nested-virtualization")
        };
        assert!(!flag(&inst));
        inst.cpu_options.nested_virtualization = true;
        assert!(flag(&inst));
    }

    #[test]
    fn an_instances_system_uuid_is_ec2_and_its_id() {
        assert_eq!(
            system_uuid("i-0123456789abcdef0"),
            "ec201234-5678-9abc-def0-000000000000"
        );
        for id in ["", "i-", "i-zz", "i-0123456789abcdef0123456789abcdef"] {
            let uuid = system_uuid(id);
            assert!(
                crate::vmm::boot::smbios::Uuid::parse(&uuid).is_ok(),
                "{id}: {uuid}"
            );
        }
    }

    #[test]
    fn each_instance_gets_its_own_stable_unprivileged_ids_and_its_cgroup() {
        let a = jail_ids("i-0123456789abcdef0", JAIL_ID_BASE);
        assert_eq!(a, jail_ids("i-0123456789abcdef0", JAIL_ID_BASE));
        assert_eq!(a.uid, a.gid);
        assert_eq!(a.uid, JAIL_ID_BASE + 0xbcdef0);
        assert_ne!(a, jail_ids("i-0123456789abcdef1", JAIL_ID_BASE));
        let b = jail_ids("not-hex", 1000);
        assert!(b.uid >= 1000 && b.uid < 1000 + JAIL_ID_SPAN);
        let mut inst = instance(State::Pending);
        inst.id = "i-0123456789abcdef0".into();
        let args: Vec<String> = sandbox_args(&inst, Some(Path::new("/cg/gureum/i-1")))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(args[..2], ["--jail".to_string(), a.to_string()]);
        assert_eq!(args[2..], ["--cgroup", "/cg/gureum/i-1"]);
        assert_eq!(sandbox_args(&inst, None).len(), 2);
    }

    #[test]
    fn the_instances_disks_carry_its_types_limits() {
        let state = StateDir::resolve(Some("/s".into()));
        let mut inst = instance(State::Pending);
        inst.disks.push(Disk {
            device: "vda".into(),
            path: "/s/instances/i-1/root.img".into(),
            read_only: false,
            delete_on_termination: true,
        });
        let files = state.instance_files(&inst.id);
        let disks: Vec<String> = boot_args(&state, &image(), &inst, &files)
            .windows(2)
            .filter(|w| w[0] == "--disk")
            .map(|w| w[1].clone().into_string().unwrap())
            .collect();
        assert_eq!(disks, ["/s/instances/i-1/root.img,bw=260625000,iops=11800"]);
    }
}
