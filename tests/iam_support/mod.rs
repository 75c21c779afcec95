//! What tests/iam.rs shares: a private state directory and the core API's
//! context over it, `gureum` run against it, and botocore (from the aws
//! CLI's virtualenv) as the reference client that signs requests and
//! parses answers (`botocore_tool.py`).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gureum::cloud::lifecycle::Context;
use gureum::cloud::state_dir::StateDir;
use serde_json::Value;

/// A private state directory.
pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The core API's context over the state directory.
    pub fn ctx(&self) -> Context {
        Context {
            state: StateDir::resolve(Some(self.state())),
            exe: PathBuf::from(env!("CARGO_BIN_EXE_gureum")),
        }
    }

    /// `gureum ARGS` on this state directory (no daemon unless the
    /// test started one on its socket).
    pub fn gureum(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gureum"));
        command
            .args(args)
            .env("GUREUM_STATE_DIR", self.state())
            // The machine's network is never the tests' (cli_support::gureum).
            .env("GUREUM_UPLINK", "none")
            .env_remove("GUREUM_SOCKET");
        command
    }

    /// Runs `gureum ARGS`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.gureum(args).output().unwrap();
        assert!(
            out.status.success(),
            "gureum {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `gureum ARGS`, which must fail with `code`; its standard error.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.gureum(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "gureum {args:?}: {err}");
        err
    }

    /// A new access key (root's without a user): its ID and secret.
    pub fn access_key(&self, user: Option<&str>) -> (String, String) {
        let mut args = vec!["iam", "create-access-key", "-o", "json"];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        let out: Value = serde_json::from_str(&self.ok(&args)).unwrap();
        let key = &out["AccessKey"];
        (
            key["AccessKeyId"].as_str().unwrap().to_owned(),
            key["SecretAccessKey"].as_str().unwrap().to_owned(),
        )
    }
}

/// The aws CLI virtualenv's bin directory (`ensure_aws_cli` makes it).
pub fn aws_venv_bin() -> PathBuf {
    crate::cli_support::aws_bin_dir()
}

/// Runs botocore_tool.py with `args`, `input` on its standard input;
/// its JSON answer.
pub fn botocore(args: &[&str], input: &str) -> Value {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iam_support/botocore_tool.py");
    let mut child = Command::new(aws_venv_bin().join("python"))
        .arg(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "botocore_tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A request as botocore signs it (see botocore_tool.py).
#[derive(Debug, Clone)]
pub struct Raw {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn from_json(v: &Value) -> Self {
        Self {
            method: v["method"].as_str().unwrap().into(),
            path: v["path"].as_str().unwrap().into(),
            query: v["query"].as_str().unwrap().into(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
            body: v["body"].as_str().unwrap().into(),
        }
    }

    pub fn signed(&self) -> gureum::cloud::iam::SignedRequest<'_> {
        gureum::cloud::iam::SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: self.body.as_bytes(),
        }
    }

    /// When it was signed: its X-Amz-Date (header or query).
    pub fn signed_at(&self) -> std::time::SystemTime {
        let date = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-date"))
            .map(|(_, v)| v.clone())
            .or_else(|| {
                self.query
                    .split('&')
                    .find_map(|p| p.strip_prefix("X-Amz-Date="))
                    .map(str::to_owned)
            })
            .unwrap();
        let secs = gureum::cloud::time::parse_basic_utc(&date).unwrap();
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    /// The request's parameters: its form body and query, decoded as an
    /// HTTP server does.
    pub fn params(&self) -> Vec<(String, String)> {
        let decode = |t: &str| {
            percent_encoding::percent_decode_str(&t.replace('+', " "))
                .decode_utf8()
                .unwrap()
                .into_owned()
        };
        self.query
            .split('&')
            .chain(self.body.split('&'))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }
}

/// A request botocore signs now with `key` and `secret`.
pub fn sign(service: &str, operation: &str, params: &Value, key: &str, secret: &str) -> Raw {
    let params = params.to_string();
    Raw::from_json(&botocore(
        &["sign", service, operation, &params, key, secret],
        "",
    ))
}

/// What botocore's parser makes of each (service, operation, reply).
pub fn parse(replies: &[(&str, &str, &gureum::endpoint::Reply)]) -> Vec<Value> {
    let jobs: Vec<Value> = replies
        .iter()
        .map(|(service, operation, reply)| {
            serde_json::json!({
                "service": service,
                "operation": operation,
                "status": reply.status,
                "body": reply.body,
            })
        })
        .collect();
    let parsed = botocore(&["parse"], &Value::Array(jobs).to_string());
    parsed.as_array().unwrap().clone()
}
