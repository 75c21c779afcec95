//! The control-plane commands run as a user runs them: the real binary,
//! a private state directory, real files. Instances here use a kernel
//! file the VMM refuses, so their lifecycle (supervisor, failure reason,
//! terminate) is exercised on any host; booting real guests is
//! tests/rig_instances.rs.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gureum::cloud::process::ProcessRef;
use serde_json::Value;

mod cli_support;

use cli_support::Gureum;

/// A private state directory and the commands run against it. Its
/// instances need no network (`run --no-network`); a launch that forgot
/// to say so would make a default VPC in namespaces of its own prefix,
/// removed when it is dropped, never in the machine's.
struct Cloud {
    state: tempfile::TempDir,
    work: tempfile::TempDir,
    prefix: String,
}

impl Cloud {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            prefix: cli_support::unique_prefix("gct"),
        }
    }

    /// A new one with the stand-in image `tiny` imported.
    fn with_tiny_image() -> Self {
        let cloud = Self::new();
        let src = cloud.image_source("tiny", "");
        cloud.ok(&["image", "import", src.to_str().unwrap()]);
        cloud
    }

    /// An image source directory with a manifest and stand-in files.
    fn image_source(&self, name: &str, extra: &str) -> PathBuf {
        cli_support::image_source(self.work.path(), name, extra)
    }

    fn dir_entries(&self, sub: &str) -> Vec<String> {
        match std::fs::read_dir(self.state.path().join(sub)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Gureum for Cloud {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = cli_support::gureum(self.state.path(), args);
        c.current_dir(self.work.path())
            .env("GUREUM_NET_PREFIX", &self.prefix);
        c
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        cli_support::remove_namespaces(&self.prefix);
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect()
}

#[test]
fn types_are_listed_as_a_table_and_as_json() {
    let cloud = Cloud::new();
    let table = cloud.ok(&["types"]);
    assert!(table.lines().next().unwrap().starts_with("TYPE"), "{table}");
    assert!(table.contains("t2.micro"));
    for args in [&["types", "list"][..], &["instance-types"]] {
        let types = cloud.json(args);
        let micro = types
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "t2.micro")
            .expect("t2.micro listed");
        assert_eq!(micro["vcpus"], 1);
        assert_eq!(micro["memory_mib"], 1024);
        assert!(names(&types).contains(&"r7i.2xlarge"));
    }
}

#[test]
fn key_create_writes_the_private_key_once_and_stores_only_the_public_key() {
    let cloud = Cloud::new();
    let id = cloud.ok(&["key", "create", "web", "--tag", "env=dev"]);
    assert!(id.trim().starts_with("key-"), "{id}");
    let pem = cloud.work.path().join("web.pem");
    let mode = std::fs::metadata(&pem).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The private key parses back and matches what the store keeps.
    let private = ssh_key::PrivateKey::read_openssh_file(&pem).unwrap();
    let shown = cloud.json(&["key", "describe", "web"]);
    assert_eq!(
        shown["public_key"].as_str().unwrap(),
        private.public_key().to_openssh().unwrap()
    );
    assert_eq!(shown["tags"]["env"], "dev");
    assert_eq!(shown["tags"]["Name"], "web");
    let store = std::fs::read(cloud.state.path().join("gureum.db")).unwrap();
    let needle = b"OPENSSH PRIVATE KEY";
    assert!(
        !store.windows(needle.len()).any(|w| w == needle),
        "the store must not hold the private key"
    );

    // Same name again: refused, and the existing file is untouched.
    let before = std::fs::read(&pem).unwrap();
    let err = cloud.fails(&["key", "create", "web", "--out", "other.pem"]);
    assert!(err.contains("key pair name 'web' is taken"), "{err}");
    assert!(!cloud.work.path().join("other.pem").exists());
    // Existing output file: refused, and no key is recorded.
    let err = cloud.fails(&["key", "create", "db", "--out", "web.pem"]);
    assert!(err.contains("web.pem already exists"), "{err}");
    assert_eq!(std::fs::read(&pem).unwrap(), before);
    assert_eq!(names(&cloud.json(&["key", "list"])), ["web"]);

    // Import a public key, filter by tag, remove.
    let pub_file = cloud.work.path().join("web.pub");
    std::fs::write(&pub_file, shown["public_key"].as_str().unwrap()).unwrap();
    cloud.ok(&[
        "key",
        "import",
        "copy",
        "--public-key",
        pub_file.to_str().unwrap(),
    ]);
    let copy = cloud.json(&["key", "describe", "copy"]);
    assert_eq!(copy["fingerprint"], shown["fingerprint"]);
    assert_eq!(
        names(&cloud.json(&["key", "list", "--tag", "env=dev"])),
        ["web"]
    );
    cloud.ok(&["key", "rm", "web"]);
    assert_eq!(names(&cloud.json(&["key", "list"])), ["copy"]);
    let err = cloud.fails(&["key", "rm", "web"]);
    assert!(
        err.contains("no key pair 'web'") && err.contains("gureum key list"),
        "{err}"
    );
    let err = cloud.fails(&["key", "create", "../evil"]);
    assert!(err.contains("not a valid key pair name"), "{err}");
}

#[test]
fn concurrent_commands_never_corrupt_the_store() {
    let cloud = Cloud::new();
    cloud.ok(&["types"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            cloud
                .command(&["key", "create", &format!("k{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut listed = cloud
        .json(&["key", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    listed.sort();
    assert_eq!(listed, (0..8).map(|i| format!("k{i}")).collect::<Vec<_>>());
}

#[test]
fn images_import_list_describe_and_remove() {
    let cloud = Cloud::new();
    let src = cloud.image_source("tiny", "");
    let id = cloud.ok(&[
        "image",
        "import",
        src.to_str().unwrap(),
        "--tag",
        "os=busybox",
    ]);
    let id = id.trim();
    assert!(id.starts_with("ami-") && id.len() == 21, "{id}");
    // The files are copied in: the source can go away.
    let stored = cloud.state.path().join("images").join(id);
    assert_eq!(std::fs::read(stored.join("initrd")).unwrap(), b"initrd");
    assert!(stored.join("kernel").is_file() && stored.join("image.json").is_file());

    let list = cloud.json(&["image", "list"]);
    assert_eq!(names(&list), ["tiny"]);
    let shown = cloud.json(&["image", "describe", "tiny"]);
    assert_eq!(shown["id"], id);
    assert_eq!(shown["architecture"], "x86_64");
    assert_eq!(shown["cmdline"], "console=ttyS0");
    assert_eq!(shown["min_memory_mib"], 128);
    assert_eq!(shown["tags"]["os"], "busybox");
    let by_id = cloud.json(&["image", "describe", id]);
    assert_eq!(by_id["name"], "tiny");
    assert!(cloud.ok(&["image", "describe", "tiny"]).contains("name:"));

    // A second import under the same name fails and leaves nothing.
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(err.contains("image name 'tiny' is taken"), "{err}");
    assert_eq!(cloud.dir_entries("images"), [id]);
    assert!(cloud.dir_entries("staging").is_empty());
    // ... but under another name it works, from the manifest file too.
    cloud.ok(&[
        "image",
        "import",
        src.join("manifest").to_str().unwrap(),
        "--name",
        "tiny2",
    ]);

    cloud.ok(&["image", "rm", "tiny"]);
    assert!(!stored.exists());
    assert_eq!(names(&cloud.json(&["image", "list"])), ["tiny2"]);
}

#[test]
fn bad_images_are_refused_with_what_is_wrong() {
    let cloud = Cloud::new();
    let src = cloud.image_source("bad", "junk line\n");
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(
        err.contains("line 9: 'junk line' is not KEY=VALUE"),
        "{err}"
    );

    let src = cloud.image_source("arm", "arch=arm64\n");
    std::fs::write(
        src.join("manifest"),
        "name=arm\nkernel=vmlinuz\narch=arm64\n",
    )
    .unwrap();
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(err.contains("arm64") && err.contains("x86_64"), "{err}");

    let src = cloud.image_source("gone", "");
    std::fs::remove_file(src.join("initrd.cpio.gz")).unwrap();
    let err = cloud.fails(&["image", "import", src.to_str().unwrap()]);
    assert!(
        err.contains("initrd") && err.contains("does not exist"),
        "{err}"
    );

    let err = cloud.fails(&["image", "import", "/nonexistent/dir"]);
    assert!(err.contains("cannot read the image manifest"), "{err}");
    assert!(
        cloud
            .json(&["image", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(cloud.dir_entries("staging").is_empty());
}

#[test]
fn templates_check_what_they_name() {
    let cloud = Cloud::with_tiny_image();
    cloud.ok(&["key", "create", "k"]);
    let err = cloud.fails(&["template", "create", "--name", "t", "--image", "nope"]);
    assert!(err.contains("no image 'nope'"), "{err}");
    let err = cloud.fails(&[
        "template",
        "create",
        "--name",
        "t",
        "--image",
        "tiny",
        "--type",
        "c7gn.xlarge",
    ]);
    assert!(err.contains("arm64") && err.contains("c7i.xlarge"), "{err}");
    let err = cloud.fails(&[
        "template", "create", "--name", "t", "--image", "tiny", "--key", "x",
    ]);
    assert!(err.contains("no key pair 'x'"), "{err}");

    let id = cloud.ok(&[
        "template", "create", "--name", "web", "--image", "tiny", "--type", "t3.small", "--key",
        "k", "--tag", "role=web",
    ]);
    assert!(id.trim().starts_with("lt-"), "{id}");
    let t = cloud.json(&["template", "describe", "web"]);
    assert_eq!(t["instance_type"], "t3.small");
    assert_eq!(t["key_name"], "k");
    assert_eq!(t["instance_tags"]["role"], "web");
    assert_eq!(names(&cloud.json(&["template", "list"])), ["web"]);
    cloud.ok(&["template", "rm", id.trim()]);
    assert!(
        cloud
            .json(&["template", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn run_refuses_bad_input_before_creating_anything() {
    let cloud = Cloud::new();
    let err = cloud.fails(&["run"]);
    assert!(err.contains("no image given and 0 images exist"), "{err}");
    let src = cloud.image_source("tiny", "");
    cloud.ok(&["image", "import", src.to_str().unwrap()]);
    let err = cloud.fails(&["run", "--type", "t2.huge"]);
    assert!(
        err.contains("unknown instance type 't2.huge'") && err.contains("t2.micro"),
        "{err}"
    );
    let err = cloud.fails(&["run", "--type", "c7gn.xlarge"]);
    assert!(err.contains("arm64"), "{err}");
    let err = cloud.fails(&["run", "--tag", "novalue"]);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let err = cloud.fails(&["run", "--key", "missing"]);
    assert!(err.contains("no key pair 'missing'"), "{err}");
    let err = cloud.fails_with(2, &["run", "--limits", "speed=1"]);
    assert!(err.contains("disk_bw, disk_iops"), "{err}");
    let err = cloud.fails_with(2, &["run", "--limits", "disk_bw=fast"]);
    assert!(err.contains("not a rate"), "{err}");
    let err = cloud.fails_with(2, &["run", "--wait", "forever"]);
    assert!(err.contains("running") && err.contains("ssh"), "{err}");
    let err = cloud.fails_with(2, &["run", "--wait-timeout", "5"]);
    assert!(err.contains("--wait"), "{err}");
    let err = cloud.fails_with(
        2,
        &["run", "--instance-initiated-shutdown-behavior", "hibernate"],
    );
    assert!(err.contains("write stop or terminate"), "{err}");
    let err = cloud.fails(&["instance", "stop", "i-0123456789abcdef0"]);
    assert!(err.contains("no instance 'i-0123456789abcdef0'"), "{err}");
    assert!(
        cloud
            .json(&["instance", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(cloud.dir_entries("instances").is_empty());
}

#[test]
fn an_instance_keeps_its_own_rate_limits() {
    let cloud = Cloud::with_tiny_image();
    let id = cloud.run_stand_in(&["--no-network", "--limits", "disk_bw=1M,tx_pps=100,rx_bw=0"]);
    let i = cloud.json(&["instance", "describe", id.trim()]);
    let limits = &i[0]["limits"];
    assert_eq!(limits["disk_bw"], 1 << 20, "{i}");
    assert_eq!(limits["tx_pps"], 100, "{i}");
    assert_eq!(limits["rx_bw"], 0, "{i}");
    assert!(limits.get("disk_iops").is_none(), "{i}");
}

#[test]
fn an_address_on_a_tap_reaches_the_guest_on_its_kernel_command_line() {
    let cloud = Cloud::new();
    let src = cloud.image_source("plain", "");
    cloud.ok(&["image", "import", src.to_str().unwrap()]);
    let id = cloud.run_stand_in(&[
        "--tap",
        "gtap-none",
        "--ip",
        "10.0.0.2/24",
        "--gateway",
        "10.0.0.1",
    ]);
    let described = cloud.json(&["instance", "describe", id.trim()]);
    let cmdline = described[0]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.ends_with(" gureum.ip=10.0.0.2/24 gureum.gw=10.0.0.1"),
        "{cmdline}"
    );
}

#[test]
fn bad_network_flags_are_refused_before_creating_anything() {
    let cloud = Cloud::new();
    let src = cloud.image_source("deb", "");
    cloud.ok(&["image", "import", src.to_str().unwrap()]);
    let usage = cloud.run(&["run", "--image", "deb", "--ip", "10.0.0.2/24"]);
    assert_eq!(usage.status.code(), Some(2), "--ip needs --tap");
    for (args, want) in [
        (&["--tap", "tap,0"][..], "not a usable interface name"),
        (
            &["--tap", "t0", "--ip", "10.0.0.0/24"],
            "network or broadcast",
        ),
        (&["--tap", "t0", "--ip", "10.0.0.2"], "ADDRESS/PREFIX"),
        (
            &[
                "--tap",
                "t0",
                "--ip",
                "10.0.0.2/24",
                "--gateway",
                "10.9.0.1",
            ],
            "not inside 10.0.0.2/24",
        ),
        (&["--tap", "t0", "--count", "2"], "launches one instance"),
    ] {
        let mut all = vec!["run", "--image", "deb"];
        all.extend(args);
        let err = cloud.fails(&all);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(cloud.dir_entries("instances").is_empty());
}

/// Nested virtualization is a c8i/m8i/r8i option and says so; a
/// malformed option names the accepted ones. Nothing is made either way.
#[test]
fn bad_cpu_options_are_refused_before_creating_anything() {
    let cloud = Cloud::new();
    let plain = cloud.image_source("plain", "");
    cloud.ok(&["image", "import", plain.to_str().unwrap()]);
    let nested = ["--cpu-options", "NestedVirtualization=enabled"];
    let err = cloud.fails(&[&["run", "--type", "t3.micro"][..], &nested].concat());
    assert!(
        err.contains("t3.micro does not offer nested virtualization: choose a c8i, m8i, r8i type"),
        "{err}"
    );
    let usage = cloud.run(&["run", "--cpu-options", "NestedVirtualization=on"]);
    assert_eq!(usage.status.code(), Some(2));
    let err = String::from_utf8_lossy(&usage.stderr);
    assert!(err.contains("write NestedVirtualization=enabled"), "{err}");
    // A template keeps the option, checked against the type it names;
    // its instances take it unless the launch says otherwise.
    let err = cloud.fails(
        &[
            &["template", "create", "--name", "t", "--image", "plain"][..],
            &nested,
        ]
        .concat(),
    );
    assert!(
        err.contains("t2.micro does not offer nested virtualization"),
        "{err}"
    );
    cloud.ok(&[
        &[
            "template",
            "create",
            "--name",
            "ci",
            "--image",
            "plain",
            "--type",
            "c8i.large",
        ][..],
        &nested,
    ]
    .concat());
    let template = cloud.json(&["template", "describe", "ci"]);
    assert_eq!(
        template["cpu_options"]["nested_virtualization"], true,
        "{template}"
    );
    // This machine's KVM offers no nesting (it is checked, as in EC2, at
    // launch): the template's option is what refuses the run.
    let nesting = ["kvm_amd", "kvm_intel"].iter().any(|m| {
        std::fs::read_to_string(format!("/sys/module/{m}/parameters/nested"))
            .is_ok_and(|v| matches!(v.trim(), "1" | "Y"))
    });
    if !nesting {
        let err = cloud.fails(&["run", "--template", "ci"]);
        assert!(
            err.contains("nested parameter of kvm_amd or kvm_intel"),
            "{err}"
        );
        let plain_run = cloud.run(&[
            "run",
            "--no-network",
            "--template",
            "ci",
            "--cpu-options",
            "NestedVirtualization=disabled",
        ]);
        let err = String::from_utf8_lossy(&plain_run.stderr);
        assert!(
            err.contains("did not start") && !err.contains("nested parameter"),
            "the launch's option goes over the template's: {err}"
        );
    }
    assert!(
        cloud
            .json(&["instance", "list"])
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["cpu_options"].is_null()),
        "no instance with nesting was made"
    );
}

/// Polls `instance describe` until `pred` holds.
fn wait_until(cloud: &Cloud, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = cloud.json(&["instance", "describe", id]);
        let one = v[0].clone();
        if pred(&one) {
            return one;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {one}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pids_of(instance: &Value) -> Vec<i32> {
    ["supervisor", "vmm"]
        .iter()
        .filter_map(|k| instance[k]["pid"].as_i64())
        .map(|p| i32::try_from(p).unwrap())
        .collect()
}

#[test]
fn a_vmm_that_fails_leaves_the_instance_stopped_with_its_reason_and_terminate_cleans_up() {
    let cloud = Cloud::with_tiny_image();
    cloud.ok(&[
        "template",
        "create",
        "--name",
        "lt",
        "--image",
        "tiny",
        "--type",
        "t3.small",
        "--cmdline-append",
        "quiet",
        "--tag",
        "role=web",
    ]);
    let out: Value = serde_json::from_str(&cloud.run_stand_in(&[
        "--no-network",
        "--template",
        "lt",
        "--type",
        "t2.nano",
        "--name",
        "web-1",
        "--output",
        "json",
    ]))
    .unwrap();
    let id = out[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("i-") && id.len() == 19, "{id}");

    // The stand-in kernel is refused by the VMM (or, before it is loaded,
    // a KVM without vmx/svm is): the supervisor records why, and nothing
    // keeps running.
    let i = wait_until(&cloud, &id, |i| i["state"] == "stopped");
    let reason = i["state_reason"].as_str().unwrap();
    assert!(
        reason.contains("the VMM failed")
            && (reason.contains("cannot load kernel") || reason.contains("no vmx/svm")),
        "{reason}"
    );
    assert_eq!(
        i["instance_type"], "t2.nano",
        "the flag overrides the template"
    );
    assert_eq!(i["memory_mib"], 512);
    assert_eq!(i["cmdline"], "console=ttyS0 quiet");
    assert_eq!(i["tags"]["role"], "web");
    assert_eq!(i["tags"]["Name"], "web-1");
    assert!(i["template_id"].as_str().unwrap().starts_with("lt-"));
    assert!(pids_of(&i).is_empty(), "{i}");
    let files = cloud.state.path().join("instances").join(&id);
    assert!(!files.join("run").exists(), "runtime files removed");
    let err = cloud.fails(&[
        "instance",
        "wait",
        &id,
        "--state",
        "running",
        "--timeout",
        "5",
    ]);
    assert!(err.contains("is stopped, not running"), "{err}");
    // `gureum ssh` needs it running, and says how to get there.
    let err = cloud.fails(&["ssh", "web-1", "--", "true"]);
    assert!(
        err.contains("is stopped, not running") && err.contains("gureum instance start"),
        "{err}"
    );
    let err = cloud.fails(&["ssh", "i-0000000000000dead", "--", "true"]);
    assert!(err.contains("i-0000000000000dead"), "{err}");
    // CPU options change while stopped; nesting only on c8i, m8i, r8i.
    let err = cloud.fails(&[
        "instance",
        "modify-cpu-options",
        "web-1",
        "--cpu-options",
        "NestedVirtualization=enabled",
    ]);
    assert!(err.contains("c8i"), "{err}");
    cloud.ok(&[
        "instance",
        "modify-cpu-options",
        "web-1",
        "--cpu-options",
        "NestedVirtualization=disabled",
    ]);
    // `gureum cp` as well, and it wants one side on each end.
    let err = cloud.fails(&["cp", "Cargo.toml", "web-1:/tmp/"]);
    assert!(err.contains("is stopped, not running"), "{err}");
    let err = cloud.fails(&["cp", "a", "b"]);
    assert!(
        err.contains("no side names an instance") && err.contains("INSTANCE:PATH"),
        "{err}"
    );
    let err = cloud.fails(&["cp", "web-1:/a", "web-2:/b"]);
    assert!(err.contains("more than one instance"), "{err}");
    let err = cloud.fails(&["cp", "web-1:/a", "b", "web-1:/c"]);
    assert!(err.contains("one side must be the instance's"), "{err}");

    // Filters by Name tag and by state.
    let listed = cloud.json(&["instance", "list", "--filter", "Name=web-1"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        cloud
            .json(&["instance", "list", "--filter", "state=running"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        cloud
            .json(&["instance", "list", "--tag", "role=db"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // An image in use cannot go; a stopped instance can be saved as one.
    let err = cloud.fails(&["image", "rm", "tiny"]);
    assert!(err.contains("is used by") && err.contains(&id), "{err}");
    let saved = cloud.json(&[
        "image",
        "create",
        "--instance",
        "web-1",
        "--name",
        "web-saved",
    ]);
    assert_eq!(saved["source_instance"], id.as_str());

    // Terminate: the record stays, the files go.
    assert!(
        cloud
            .ok(&["instance", "terminate", "web-1"])
            .contains("terminated")
    );
    let i = wait_until(&cloud, &id, |i| i["state"] == "terminated");
    assert!(
        i["state_reason"]
            .as_str()
            .unwrap()
            .contains("UserInitiatedShutdown")
    );
    assert!(!files.exists(), "instance files removed");
    let err = cloud.fails(&["instance", "start", &id]);
    assert!(err.contains("terminated instances stay listed"), "{err}");
    cloud.ok(&["image", "rm", "tiny"]);
}

#[test]
fn an_instance_whose_supervisor_vanished_is_reconciled_to_stopped() {
    let cloud = Cloud::with_tiny_image();
    let id = cloud.run_stand_in(&["--no-network"]);
    wait_until(&cloud, &id, |i| i["state"] == "stopped");
    // Forge what a killed supervisor leaves: "running" with a dead PID.
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    cli_support::edit_record(cloud.state.path(), &id, |v| {
        v["state"] = "running".into();
        v["supervisor"] = serde_json::json!({"pid": pid, "start_ticks": 1});
    });
    let i = cloud.json(&["instance", "describe", &id]);
    assert_eq!(i[0]["state"], "stopped");
    let reason = i[0]["state_reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("supervisor (pid {pid}) is gone")),
        "{reason}"
    );
}

#[test]
fn processes_recorded_before_a_host_restart_are_gone_whatever_their_pids_name_now() {
    let cloud = Cloud::with_tiny_image();
    let id = cloud.run_stand_in(&["--no-network"]);
    wait_until(&cloud, &id, |i| i["state"] == "stopped");
    // A live process stands in for one of the new boot that got the PID
    // and start time a supervisor and VMM had before the restart.
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    let process = serde_json::to_value(ProcessRef::of(bystander.id()).unwrap()).unwrap();
    assert!(process["boot"].is_string(), "{process}");
    let forge = |boot: Option<&str>| {
        let mut process = process.clone();
        match boot {
            Some(boot) => process["boot"] = boot.into(),
            None => drop(process.as_object_mut().unwrap().remove("boot")),
        }
        cli_support::edit_record(cloud.state.path(), &id, |v| {
            v["state"] = "running".into();
            v["supervisor"] = process.clone();
            v["vmm"] = process;
        });
    };

    // A record made before boot ids were kept: PID and start time decide.
    forge(None);
    assert_eq!(
        cloud.json(&["instance", "describe", &id])[0]["state"],
        "running"
    );

    forge(Some("00000000-0000-0000-0000-000000000000"));
    let i = cloud.json(&["instance", "describe", &id]);
    assert_eq!(i[0]["state"], "stopped");
    assert_eq!(
        i[0]["state_reason"],
        "Server.InternalError: the host restarted; the VM was stopped"
    );
    assert_eq!(bystander.try_wait().unwrap(), None, "it was not signalled");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

/// A process of its own, killed and reaped when the test is done with it.
fn sleeper() -> std::process::Child {
    Command::new("sleep").arg("600").spawn().unwrap()
}

fn kill(child: &mut std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What `gureum net check` says when nothing differs.
const CLEAN: &str = "Linux and the state directory match the records";

#[test]
fn an_instance_tied_to_a_process_is_terminated_with_nothing_left_when_it_is_killed() {
    let cloud = Cloud::new();
    let src = cloud.image_source("tiny", "root_disk=root.img\n");
    std::fs::write(src.join("root.img"), vec![1u8; 1 << 20]).unwrap();
    cloud.ok(&["image", "import", src.to_str().unwrap()]);

    // One already gone is refused before anything is made.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id().to_string();
    gone.wait().unwrap();
    let err = cloud.fails_with(3, &["run", "--rm-with", &gone_pid]);
    assert!(
        err.contains(&format!("process {gone_pid}")) && err.contains("--rm-with PID"),
        "{err}"
    );
    let err = cloud.fails_with(2, &["run", "--rm", "--rm-with", "1"]);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(
        cloud
            .json(&["instance", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // In the default VPC (its port and address), with its disk copy: the
    // VMM refuses the stand-in kernel, so it is stopped, and its owner's
    // SIGKILL terminates it at the next look.
    let mut owner = sleeper();
    let id = cloud.run_stand_in(&["--rm-with", &owner.id().to_string(), "--name", "job"]);
    let i = wait_until(&cloud, &id, |i| i["state"] == "stopped");
    assert_eq!(i["terminate_with"]["pid"], owner.id(), "{i}");
    assert!(i["terminate_with"]["start_ticks"].as_u64().is_some(), "{i}");
    assert!(i["placement"]["private_ip"].is_string(), "{i}");
    let files = cloud.state.path().join("instances").join(&id);
    assert!(files.join("root.img").exists());
    let table = cloud.ok(&["instance", "describe", &id]);
    assert!(
        table.contains("terminate_with.pid:") && table.contains(&owner.id().to_string()),
        "{table}"
    );
    assert_eq!(cloud.ok(&["net", "check"]), CLEAN);
    let pid = owner.id();
    kill(&mut owner);
    let i = &cloud.json(&["instance", "describe", &id])[0];
    assert_eq!(i["state"], "terminated", "{i}");
    assert_eq!(
        i["state_reason"],
        format!(
            "Client.UserInitiatedShutdown: process {pid}, whose end terminates it (run --rm), ended"
        )
    );
    assert!(!files.exists(), "its files and disk copy are gone");
    assert_eq!(cloud.ok(&["net", "check"]), CLEAN);
    assert!(cloud.dir_entries("instances").is_empty());
}

/// `--rm` ties the instance to the process that ran `gureum run`: a
/// job's shell, which here ends right after it.
#[test]
fn run_rm_ties_the_instance_to_its_parent() {
    let cloud = Cloud::with_tiny_image();
    let gureum = cloud.command(&[]);
    // Not the shell's last command, so that it is not exec'd in its place.
    let script = format!(
        "echo $$; {} run --no-network --rm; echo done",
        env!("CARGO_BIN_EXE_gureum")
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .envs(gureum.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(cloud.work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let shell: u64 = lines.next().unwrap().parse().unwrap();
    let id = lines.next().unwrap().to_owned();
    assert_eq!(lines.next(), Some("done"), "{stdout}");
    assert_eq!(
        cli_support::read_record(cloud.state.path(), &id)["terminate_with"]["pid"],
        shell
    );
    // The shell has ended: the next look terminates it.
    let i = wait_until(&cloud, &id, |i| i["state"] == "terminated");
    assert!(
        i["state_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("process {shell}, whose end")),
        "{i}"
    );
}

/// The owner and the supervisor killed together (a CI job's whole
/// process tree): the next reconcile pass kills the VMM and terminates
/// the instance; none of them is left.
#[test]
fn an_instance_whose_owner_and_supervisor_were_killed_together_is_terminated() {
    let cloud = Cloud::with_tiny_image();
    let mut owner = sleeper();
    let id = cloud.run_stand_in(&["--no-network", "--rm-with", &owner.id().to_string()]);
    wait_until(&cloud, &id, |i| i["state"] == "stopped");
    // Live stand-ins for the supervisor and the VMM, as they run.
    let mut supervisor = sleeper();
    let mut vmm = sleeper();
    let as_json =
        |c: &std::process::Child| serde_json::to_value(ProcessRef::of(c.id()).unwrap()).unwrap();
    let (s, v) = (as_json(&supervisor), as_json(&vmm));
    cli_support::edit_record(cloud.state.path(), &id, |r| {
        r["state"] = "running".into();
        r["supervisor"] = s;
        r["vmm"] = v;
    });
    assert_eq!(
        cloud.json(&["instance", "describe", &id])[0]["state"],
        "running"
    );
    let pid = owner.id();
    kill(&mut owner);
    kill(&mut supervisor);
    let i = &cloud.json(&["instance", "describe", &id])[0];
    assert_eq!(i["state"], "terminated", "{i}");
    assert!(
        i["state_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("process {pid}, whose end terminates it")),
        "{i}"
    );
    let status = vmm.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the VMM was killed"
    );
    assert!(cloud.dir_entries("instances").is_empty());
}

/// A template keeps what a shutdown from inside its instances' guests
/// does; its launches take it unless they name their own.
#[test]
fn a_templates_shutdown_behavior_reaches_its_instances() {
    let cloud = Cloud::with_tiny_image();
    let err = cloud.fails_with(
        2,
        &[
            "template",
            "create",
            "--name",
            "bad",
            "--image",
            "tiny",
            "--instance-initiated-shutdown-behavior",
            "hibernate",
        ],
    );
    assert!(err.contains("write stop or terminate"), "{err}");
    cloud.ok(&[
        "template",
        "create",
        "--name",
        "throwaway",
        "--image",
        "tiny",
        "--instance-initiated-shutdown-behavior",
        "terminate",
    ]);
    let t = cloud.json(&["template", "describe", "throwaway"]);
    assert_eq!(t["shutdown_behavior"], "terminate", "{t}");
    let behavior_of = |extra: &[&str]| {
        let id =
            cloud.run_stand_in(&[&["--no-network", "--template", "throwaway"][..], extra].concat());
        // EC2's default, stop, is not written in the record.
        cli_support::read_record(cloud.state.path(), &id)["shutdown_behavior"].clone()
    };
    assert_eq!(behavior_of(&[]), "terminate");
    assert_eq!(
        behavior_of(&["--instance-initiated-shutdown-behavior", "stop"]),
        Value::Null
    );
    cloud.ok(&["template", "create", "--name", "plain", "--image", "tiny"]);
    let t = cloud.json(&["template", "describe", "plain"]);
    assert!(t["shutdown_behavior"].is_null(), "{t}");
}
