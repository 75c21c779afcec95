//! Crash consistency of the control plane: hundreds of changes of every
//! kind, each killed with SIGKILL at a random instant (some before they
//! commit, some between their commit and Linux, some half way through
//! Linux, some after), reconcile passes killed half way too, and the
//! daemon killed during its first pass; then one reconcile pass. Afterwards Linux (links, addresses, routes, rules,
//! sysctls, nft rulesets of this store's namespaces) and the state
//! directory's files equal a fresh realisation of the same store, `net
//! check` finds nothing, and a second pass changes nothing.
//!
//! Needs root, `ip` and `nft`. Every namespace has the test's own prefix
//! and is removed at the end; no traffic is sent. The seed is printed
//! (set GUREUM_CHAOS_SEED to replay a run; GUREUM_CHAOS_CHANGES for more
//! changes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gureum::host::netns::{self, Netns};
use gureum::host::sysctl;
use gureum::net::link::Rtnl;
use gureum::net::nft;
use serde_json::Value;

mod cli_support;

use cli_support::Gureum;

/// The test's private store and namespace prefix.
struct Chaos {
    state: tempfile::TempDir,
    prefix: String,
}

impl Gureum for Chaos {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = cli_support::gureum(self.state.path(), args);
        command
            .env("GUREUM_NET_PREFIX", &self.prefix)
            .env_remove("GUREUM_PUBLIC_POOL")
            .env_remove("GUREUM_PUBLIC_ROUTER");
        command
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        for name in netns::list(&self.prefix).unwrap_or_default() {
            let _ = netns::remove(&name);
        }
    }
}

/// A small, seedable random source (xorshift64*): the run can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}

/// What the store holds, read straight from it: (id, kind, body).
fn inventory(state: &Path) -> Vec<(String, String, Value)> {
    let db = rusqlite::Connection::open(state.join("gureum.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut statement = db
        .prepare("SELECT id, kind, body FROM resources ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .unwrap()
        .map(|row| {
            let (id, kind, body) = row.unwrap();
            (id, kind, serde_json::from_str(&body).unwrap())
        })
        .collect()
}

/// The IDs of records of kind `kind` that `keep` picks.
fn ids(all: &[(String, String, Value)], kind: &str, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    all.iter()
        .filter(|(_, k, body)| k == kind && keep(body))
        .map(|(id, _, _)| id.clone())
        .collect()
}

/// One random change, as the arguments of a `gureum` command.
fn change(random: &mut Random, all: &[(String, String, Value)]) -> Vec<String> {
    let vpcs = ids(all, "vpc", |_| true);
    let subnets = ids(all, "subnet", |_| true);
    let attached = ids(all, "igw", |g| !g["vpc_id"].is_null());
    let detached = ids(all, "igw", |g| g["vpc_id"].is_null());
    let tables = ids(all, "rtb", |_| true);
    let groups = ids(all, "sg", |_| true);
    let eips = ids(all, "eipalloc", |_| true);
    let placed = ids(all, "i", |i| {
        !i["placement"].is_null() && i["state"] != "terminated"
    });
    let pick = |random: &mut Random, items: &[String]| {
        random.pick(items).cloned().unwrap_or_else(|| "none".into())
    };
    let words: Vec<String> = match random.below(22) {
        0 if vpcs.len() < 3 => vec!["vpc", "create", "--cidr", "10.0.0.0/16"]
            .into_iter()
            .map(String::from)
            .collect(),
        0 | 1 => vec!["vpc".into(), "delete".into(), pick(random, &vpcs)],
        2 | 3 => {
            let block = format!("10.0.{}.0/24", random.below(4));
            vec![
                "subnet".into(),
                "create".into(),
                "--vpc".into(),
                pick(random, &vpcs),
                "--cidr".into(),
                block,
            ]
        }
        4 => vec!["subnet".into(), "delete".into(), pick(random, &subnets)],
        5 if detached.len() < 2 => vec!["igw".into(), "create".into()],
        5 => vec!["igw".into(), "delete".into(), pick(random, &detached)],
        6 => vec![
            "igw".into(),
            "attach".into(),
            pick(random, &detached),
            "--vpc".into(),
            pick(random, &vpcs),
        ],
        7 => vec!["igw".into(), "detach".into(), pick(random, &attached)],
        8 => vec![
            "route-table".into(),
            "create-route".into(),
            pick(random, &tables),
            "--destination".into(),
            "0.0.0.0/0".into(),
            "--gateway".into(),
            pick(random, &attached),
        ],
        9 => vec![
            "route-table".into(),
            "delete-route".into(),
            pick(random, &tables),
            "--destination".into(),
            "0.0.0.0/0".into(),
        ],
        10 => vec![
            "sg".into(),
            "create".into(),
            "--vpc".into(),
            pick(random, &vpcs),
            "--name".into(),
            format!("g{}", random.below(3)),
        ],
        11 => vec!["sg".into(), "delete".into(), pick(random, &groups)],
        12 | 13 => {
            let verb = if random.below(2) == 0 {
                "authorize-ingress"
            } else {
                "revoke-ingress"
            };
            let mut words = vec![
                "sg".into(),
                verb.into(),
                pick(random, &groups),
                "--protocol".into(),
                "tcp".into(),
                "--port".into(),
                format!("{}", 20 + random.below(4)),
            ];
            if random.below(2) == 0 {
                words.extend(["--source-group".into(), pick(random, &groups)]);
            } else {
                words.extend(["--cidr".into(), "0.0.0.0/0".into()]);
            }
            words
        }
        14 if eips.len() < 3 => vec!["eip".into(), "allocate".into()],
        14 => vec!["eip".into(), "release".into(), pick(random, &eips)],
        15 => vec![
            "eip".into(),
            "associate".into(),
            pick(random, &eips),
            "--instance".into(),
            pick(random, &placed),
        ],
        16 => vec!["eip".into(), "disassociate".into(), pick(random, &eips)],
        17 | 18 if placed.len() < 4 => vec![
            "run".into(),
            "--image".into(),
            "stand-in".into(),
            "--subnet".into(),
            pick(random, &subnets),
        ],
        17 | 18 => vec!["instance".into(), "terminate".into(), pick(random, &placed)],
        19 => {
            let mut words = vec![
                "instance".into(),
                "modify".into(),
                pick(random, &placed),
                "--sg".into(),
                pick(random, &groups),
            ];
            if random.below(2) == 0 {
                words.push("--no-source-dest-check".into());
            }
            words
        }
        20 => vec![
            "instance".into(),
            "modify".into(),
            pick(random, &placed),
            "--source-dest-check".into(),
        ],
        _ => vec!["net".into(), "reconcile".into()],
    };
    words
}

/// Everything this store made in Linux, in a form two realisations of one
/// store share: what differs between them by chance (interface indexes,
/// the MACs the kernel picks for bridges and veths) is left out.
fn linux(prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for name in netns::list(prefix).unwrap() {
        let netns = Netns::open(&name).unwrap();
        let rtnl = Rtnl::open(&netns).unwrap();
        let mut lines = Vec::new();
        let mut keys = vec!["net.ipv4.ip_forward".to_owned()];
        let mut links = rtnl.link_states().unwrap();
        links.sort_by(|a, b| a.name.cmp(&b.name));
        for link in links {
            lines.push(format!("{link:?}"));
            keys.push(format!("net.ipv4.conf.{}.proxy_arp_pvlan", link.name));
            keys.push(format!("net.ipv4.conf.{}.send_redirects", link.name));
        }
        let values = sysctl::get_all(&netns, &keys).unwrap();
        for (key, value) in keys.iter().zip(values) {
            lines.push(format!("{key}={value:?}"));
        }
        let mut addresses: Vec<String> = rtnl
            .addresses()
            .unwrap()
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        addresses.sort();
        lines.extend(addresses);
        for table in [100, 254] {
            let mut routes: Vec<String> = rtnl
                .routes(table)
                .unwrap()
                .iter()
                .map(|r| format!("{r:?}"))
                .collect();
            routes.sort();
            lines.extend(routes);
        }
        let mut rules: Vec<String> = rtnl
            .rules()
            .unwrap()
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        rules.sort();
        lines.extend(rules);
        lines.extend(nft::list_ruleset(&netns).unwrap().lines().map(String::from));
        all.insert(name, lines);
    }
    all
}

/// The state directory's files (but the store itself) with their sizes,
/// and the text of the firewall listings kept for checks.
fn files(state: &Path) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    let mut stack = vec![state.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(state).unwrap().display().to_string();
            if relative.starts_with("gureum.db") || relative.contains("/run") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if relative.starts_with("net/") {
                all.insert(relative, std::fs::read_to_string(&path).unwrap());
            } else {
                let size = std::fs::metadata(&path).unwrap().len();
                all.insert(relative, size.to_string());
            }
        }
    }
    all
}

#[test]
fn changes_killed_at_random_instants_leave_nothing_one_pass_does_not_repair() {
    let seed = std::env::var("GUREUM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (now.as_secs() << 30) ^ u64::from(now.subsec_nanos()) | 1
        });
    let changes: usize = std::env::var("GUREUM_CHAOS_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240);
    eprintln!("chaos: seed {seed}, {changes} changes");
    let mut random = Random(seed);
    let chaos = Chaos {
        state: tempfile::tempdir().unwrap(),
        prefix: format!("gch{}-", std::process::id()),
    };
    let source = cli_support::image_source(chaos.state.path(), "stand-in", "");
    chaos.ok(&["image", "import", source.to_str().unwrap()]);
    chaos.ok(&["vpc", "create", "--cidr", "10.0.0.0/16"]);

    let (mut killed, mut finished) = (0, 0);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    // How long each kind of change took when it last ran to its end: the
    // instant it is killed at is drawn from that span, so that kills land
    // all over it; one change in four is left to finish.
    let mut took: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..changes {
        let all = inventory(chaos.state.path());
        let words = change(&mut random, &all);
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let kind = format!("{} {}", args[0], args[1]);
        *kinds.entry(kind.clone()).or_default() += 1;
        let span = took.get(&kind).copied().unwrap_or(100);
        let wait = if random.below(4) == 0 {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(random.below(usize::try_from(span).unwrap() + 1) as u64)
        };
        let started = Instant::now();
        let mut child = chaos
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = started + wait;
        loop {
            if child.try_wait().unwrap().is_some() {
                finished += 1;
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap();
                took.insert(kind, ms);
                break;
            }
            if Instant::now() >= deadline {
                // SIGKILL: nothing of the process gets to run after it.
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    eprintln!("chaos: {killed} killed, {finished} finished; {kinds:?}");
    // Three in four are meant to be killed; many end before their
    // instant comes (a refused change is quick), so about half are.
    assert!(
        killed >= changes / 4,
        "too few changes were killed to prove anything"
    );

    let found = chaos.run(&["net", "check"]);
    eprintln!(
        "chaos: the storm left {} differences",
        String::from_utf8_lossy(&found.stdout).lines().count()
    );
    // The daemon reconciles as it starts: killed at random instants, its
    // passes stop half way too.
    for _ in 0..5 {
        let mut daemon = chaos
            .command(&["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(random.below(300) as u64));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
    }

    let repaired = chaos.ok(&["net", "reconcile"]);
    eprintln!("chaos: the pass after the storm repaired:\n{repaired}");
    assert_eq!(chaos.ok(&["net", "check"]), NOTHING_DIFFERS);
    let after_pass = (linux(&chaos.prefix), files(chaos.state.path()));
    assert!(
        !after_pass.0.is_empty(),
        "the store holds VPCs: Linux has them"
    );

    // A fresh realisation of the same store: everything of this store's in
    // Linux, and the kept listings, gone; one pass makes it all again.
    for name in netns::list(&chaos.prefix).unwrap() {
        netns::remove(&name).unwrap();
    }
    std::fs::remove_dir_all(chaos.state.path().join("net")).unwrap();
    chaos.ok(&["net", "reconcile"]);
    let fresh = (linux(&chaos.prefix), files(chaos.state.path()));
    assert_eq!(
        after_pass.0, fresh.0,
        "Linux differs from a fresh realisation"
    );
    assert_eq!(
        after_pass.1, fresh.1,
        "files differ from a fresh realisation"
    );
    // A second pass finds nothing to do.
    assert_eq!(chaos.ok(&["net", "reconcile"]), NOTHING_DIFFERS);
}

/// What `net check` and `net reconcile` print when Linux matches.
const NOTHING_DIFFERS: &str = "Linux and the state directory match the records";
