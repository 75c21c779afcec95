//! Running a test script inside the nested KVM rig (`scripts/rig/run`)
//! and reading back the cases it reports on L1's serial console.
//!
//! A rig script prints, per case, `@@CASE <name> BEGIN`, whatever the
//! case shows, and `@@CASE <name> RC <status>`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One case's console output and exit status.
#[derive(Debug, Clone)]
pub struct Case {
    pub output: String,
    pub rc: i32,
}

/// The whole console of one rig run, split into cases.
#[derive(Debug)]
pub struct RigRun {
    pub console: String,
    pub cases: HashMap<String, Case>,
    pub rig_status: Option<i32>,
}

impl Case {
    /// The rest of the first line holding the marker `key`, e.g.
    /// `@@VDB-RO 1` gives "1". The marker may follow a guest console line
    /// the VMM's exit cut short, so it is looked for anywhere in a line.
    pub fn marker(&self, key: &str) -> Option<&str> {
        self.output
            .lines()
            .find_map(|l| l.find(key).map(|at| &l[at + key.len()..]))
            .map(str::trim)
    }

    /// The values of the `key=value` lines the case printed.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }
}

impl RigRun {
    /// The case `name`, which must have passed all its checks (no
    /// `@@FAIL` line, status 0).
    pub fn passed(&self, name: &str) -> &Case {
        let case = self.case(name);
        assert!(
            !case.output.contains("@@FAIL"),
            "case {name} failed a check:\n{}",
            case.output
        );
        assert_eq!(case.rc, 0, "case {name}:\n{}", case.output);
        case
    }

    /// The case `name`, which must have passed all its checks and printed
    /// exactly `key=value` for each pair.
    pub fn passed_with(&self, name: &str, pairs: &[(&str, &str)]) -> &Case {
        let case = self.passed(name);
        for (key, want) in pairs {
            assert_eq!(
                case.values(key),
                [*want],
                "{key} in {name}:\n{}",
                case.output
            );
        }
        case
    }

    /// The case `name`, or a panic that shows the console tail.
    pub fn case(&self, name: &str) -> &Case {
        self.cases.get(name).unwrap_or_else(|| {
            let tail: String = self
                .console
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "rig case {name} did not complete (rig exit {:?}); console tail:\n{tail}",
                self.rig_status
            )
        })
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the consoles of `script`'s rig runs are kept:
/// target/rig/NAME.console for tests/rig/NAME.sh.
fn kept_console(script: &str) -> PathBuf {
    let name = Path::new(script)
        .file_stem()
        .map_or_else(|| script.into(), |stem| stem.to_string_lossy());
    repo_root().join(format!("target/rig/{name}.console"))
}

/// Splits a console transcript into cases.
pub fn parse_cases(console: &str) -> HashMap<String, Case> {
    let mut cases = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        let mut words = line.split_whitespace();
        if words.next() == Some("@@CASE") {
            match (words.next(), words.next(), words.next()) {
                (Some(name), Some("BEGIN"), None) => {
                    current = Some((name.to_string(), String::new()));
                    continue;
                }
                (Some(name), Some("RC"), Some(rc)) => {
                    if let Some((open, output)) = current.take() {
                        if open == name {
                            let rc = rc.parse().unwrap_or(-1);
                            cases.insert(open, Case { output, rc });
                        }
                    }
                    continue;
                }
                _ => {}
            }
        }
        if let Some((_, output)) = current.as_mut() {
            output.push_str(line);
            output.push('\n');
        }
    }
    cases
}

/// Defines `fn rig() -> &'static RigRun`: the one run of `script` in the
/// rig, with `args` for `scripts/rig/run`, that all tests of a binary
/// read their cases from. `args` is evaluated only when a test first asks.
macro_rules! rig_run {
    ($script:expr, $args:expr $(,)?) => {
        fn rig() -> &'static $crate::common::RigRun {
            static RUN: std::sync::OnceLock<$crate::common::RigRun> = std::sync::OnceLock::new();
            RUN.get_or_init(|| $crate::common::run($script, $args))
        }
    };
}
pub(crate) use rig_run;

/// `scripts/rig/run`'s status when L1 itself ended without reporting or
/// stopped writing its heartbeat: its kernel crashed or wedged, which is
/// the rig's failure, not the test's.
const RIG_L1_CRASHED: i32 = 125;

/// How many times a script is run when L1 keeps crashing.
const RIG_TRIES: u32 = 4;

/// Runs `script` (relative to the repo) in the rig with this build's
/// `gureum` binary. A run whose L1 kernel crashed or wedged is reported
/// and made again, up to [`RIG_TRIES`] runs in all; the cases every run
/// completed are kept, so a case counts once some run got through it (a
/// completed case's result is its own: L1 was alive until its RC line).
/// A case that failed in any run fails. Seen: L1's kernel running with
/// an L2 guest's GS base after a VM exit (nested SVM under QEMU's TCG),
/// its page fault handler faulting until the stack overflows; under QEMU
/// microvm as the L2 VMM as under gureum (`scripts/rig/soak`), most
/// often while guests move traffic; once in CI, no output for 15 minutes.
pub fn run(script: &str, extra: &[&str]) -> RigRun {
    let _ = std::fs::remove_file(kept_console(script));
    let mut tries = 1;
    let mut run = run_once(script, extra);
    while run.rig_status == Some(RIG_L1_CRASHED) && tries < RIG_TRIES {
        say(&format!(
            "rig: L1 crashed (status {RIG_L1_CRASHED}, run {tries} of {RIG_TRIES}, {} cases completed so far); running {script} again",
            run.cases.len()
        ));
        tries += 1;
        let next = run_once(script, extra);
        run = merge(run, next);
    }
    run
}

/// `later`'s console and status, with the cases of both runs: where both
/// completed a case, a failure in either is kept.
fn merge(earlier: RigRun, later: RigRun) -> RigRun {
    let mut cases = earlier.cases;
    for (name, case) in later.cases {
        match cases.get(&name) {
            Some(kept) if kept.rc != 0 || kept.output.contains("@@FAIL") => {}
            _ => {
                cases.insert(name, case);
            }
        }
    }
    RigRun {
        console: format!(
            "{}\n--- the next rig run ---\n{}",
            earlier.console, later.console
        ),
        cases,
        rig_status: later.rig_status,
    }
}

/// Writes `line` to the test process's standard error past the test
/// harness's capture (which takes `eprintln!` only), so that retries
/// (and figures a suite prints) show in a passing run's output too.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn run_once(script: &str, extra: &[&str]) -> RigRun {
    let root = repo_root();
    let runner = root.join("scripts/rig/run");
    assert!(
        runner.exists(),
        "{} is missing; the rig is part of this repo",
        runner.display()
    );
    let out = Command::new(&runner)
        .arg("--gureum")
        .arg(env!("CARGO_BIN_EXE_gureum"))
        .args(extra)
        .arg(Path::new(&root).join(script))
        .current_dir(&root)
        .output()
        .expect("start scripts/rig/run");
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    // Kept whole for reading later (where a passing suite spends its time,
    // what a guest printed), a retried run after the one before.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(kept_console(script))
        .and_then(|mut file| std::io::Write::write_all(&mut file, console.as_bytes()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- rig stderr ---\n{stderr}");
    // A crash the rig script retried (scripts/rig/cases.sh) stays visible.
    for retry in console.lines().filter(|l| l.contains("@@RETRY")) {
        say(&format!("rig: {script}: {retry}"));
    }
    let times: Vec<String> = console
        .lines()
        .filter_map(|l| {
            l.split_once("@@CASE-TIME ")
                .map(|(_, t)| t.trim().to_string())
        })
        .collect();
    if !times.is_empty() {
        say(&format!(
            "rig: {script}: L1 seconds per case: {}",
            times.join(", ")
        ));
    }
    RigRun {
        cases: parse_cases(&console),
        console,
        rig_status: out.status.code(),
    }
}

#[test]
fn a_retried_run_keeps_completed_cases_and_any_failure() {
    let run = |console: &str, status| RigRun {
        cases: parse_cases(console),
        console: console.to_string(),
        rig_status: Some(status),
    };
    let first = run(
        "@@CASE a BEGIN\n@@CASE a RC 0\n@@CASE b BEGIN\n@@FAIL x\n@@CASE b RC 1\n@@CASE c BEGIN\n",
        RIG_L1_CRASHED,
    );
    let second = run(
        "@@CASE a BEGIN\n@@CASE a RC 0\n@@CASE b BEGIN\n@@CASE b RC 0\n@@CASE c BEGIN\n@@CASE c RC 0\n",
        0,
    );
    let merged = merge(first, second);
    assert_eq!(merged.rig_status, Some(0));
    assert_eq!(merged.cases["a"].rc, 0);
    assert_eq!(
        merged.cases["b"].rc, 1,
        "the failure in the first run stays"
    );
    assert_eq!(merged.cases["c"].rc, 0, "completed only by the second run");
}

#[test]
fn cases_are_split_by_markers() {
    let console = "noise\n@@CASE a BEGIN\nhello\r\n@@CASE a RC 3\n@@CASE b BEGIN\nlost\n";
    let cases = parse_cases(console);
    assert_eq!(cases["a"].output, "hello\n");
    assert_eq!(cases["a"].rc, 3);
    assert!(
        !cases.contains_key("b"),
        "an unfinished case is not reported"
    );
}
