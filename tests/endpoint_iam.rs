//! IAM as the real aws CLI meets it: a user with AmazonEC2ReadOnlyAccess
//! describes but gets UnauthorizedOperation on create-vpc; a customer
//! policy allowing only `ec2:*SecurityGroup*` on one VPC's groups works
//! as written; a wrong secret gets SignatureDoesNotMatch, an old
//! timestamp is refused, an unknown key gets InvalidClientTokenId; `aws
//! sts get-caller-identity` names the user. Needs root, `ip` and `nft`
//! (VPCs are made, in namespaces with this test's prefix) and the aws CLI
//! virtualenv (`scripts/setup-deps`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod cli_support;
mod iam_support;

use iam_support::{Host, aws_venv_bin, botocore};

/// A daemon with its endpoint on a free port of 127.0.0.1, on a private
/// state directory and namespace prefix; ended and cleaned when dropped.
struct Endpoint {
    host: Host,
    prefix: String,
    url: String,
    daemon: Child,
}

impl Endpoint {
    fn start() -> Self {
        let host = Host::new();
        let prefix = cli_support::unique_prefix("gei");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(host.dir.path().join("daemon.log")).unwrap();
        let mut daemon = host
            .gureum(&["daemon", "--listen", &address])
            .env("GUREUM_NET_PREFIX", &prefix)
            .env("GUREUM_CGROUP_PARENT", "off")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(&address).is_err() {
            assert!(daemon.try_wait().unwrap().is_none(), "the daemon ended");
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the endpoint never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            host,
            prefix,
            url: format!("http://{address}"),
            daemon,
        }
    }

    /// `gureum ARGS` (through the daemon), which must succeed.
    fn gureum(&self, args: &[&str]) -> String {
        let out = self
            .host
            .gureum(args)
            .env("GUREUM_NET_PREFIX", &self.prefix)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gureum {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A user with `managed` policies and `inline` documents, and its key.
    fn user(&self, name: &str, managed: &[&str], inline: &[&str]) -> (String, String) {
        self.gureum(&["iam", "create-user", name]);
        for arn in managed {
            self.gureum(&[
                "iam",
                "attach-user-policy",
                "--user",
                name,
                "--policy-arn",
                arn,
            ]);
        }
        for (i, doc) in inline.iter().enumerate() {
            let path = self.host.dir.path().join(format!("{name}-{i}.json"));
            std::fs::write(&path, doc).unwrap();
            self.gureum(&[
                "iam",
                "put-user-policy",
                "--user",
                name,
                "--name",
                &format!("p{i}"),
                "--document",
                path.to_str().unwrap(),
            ]);
        }
        self.host.access_key(Some(name))
    }

    /// `aws ARGS` against the endpoint with `key` and `secret`, and
    /// nothing else of this machine's AWS settings.
    fn aws(&self, (key, secret): &(String, String), args: &[&str]) -> Output {
        let empty = self.host.dir.path().join("no-aws-config");
        std::process::Command::new(aws_venv_bin().join("aws"))
            .args(args)
            .args([
                "--endpoint-url",
                &self.url,
                "--region",
                "us-east-1",
                "--output",
                "json",
            ])
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_DEFAULT_REGION")
            .output()
            .unwrap()
    }

    /// `aws ARGS`, which must succeed: its JSON output.
    fn aws_ok(&self, key: &(String, String), args: &[&str]) -> Value {
        let out = self.aws(key, args);
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `aws ARGS`, which must fail: the AWS error code it printed.
    fn aws_error(&self, key: &(String, String), args: &[&str]) -> String {
        let out = self.aws(key, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "aws {args:?} succeeded");
        err.split_once("An error occurred (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(code, _)| code.to_owned())
            .unwrap_or_else(|| panic!("aws {args:?}: no error code in: {err}"))
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        cli_support::end_dns_servers(&self.host.state());
        cli_support::remove_namespaces(&self.prefix);
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess";

#[test]
fn a_read_only_user_describes_but_may_not_create() {
    let ep = Endpoint::start();
    let root = ep.host.access_key(None);
    let reader = ep.user("reader", &[READ_ONLY], &[]);
    ep.aws_ok(
        &root,
        &["ec2", "create-vpc", "--cidr-block", "10.70.0.0/16"],
    );
    let vpcs = ep.aws_ok(&reader, &["ec2", "describe-vpcs"]);
    assert_eq!(vpcs["Vpcs"].as_array().unwrap().len(), 1, "{vpcs}");
    assert_eq!(
        ep.aws_error(
            &reader,
            &["ec2", "create-vpc", "--cidr-block", "10.71.0.0/16"]
        ),
        "UnauthorizedOperation"
    );
    // DryRun answers with the same decision.
    assert_eq!(
        ep.aws_error(
            &reader,
            &[
                "ec2",
                "create-vpc",
                "--cidr-block",
                "10.71.0.0/16",
                "--dry-run"
            ]
        ),
        "UnauthorizedOperation"
    );
    assert_eq!(
        ep.aws_error(
            &root,
            &[
                "ec2",
                "create-vpc",
                "--cidr-block",
                "10.71.0.0/16",
                "--dry-run"
            ]
        ),
        "DryRunOperation"
    );
    assert_eq!(
        ep.aws_error(&reader, &["iam", "create-user", "--user-name", "x"]),
        "AccessDenied"
    );
    let users = ep.aws_ok(&root, &["iam", "list-users"]);
    assert_eq!(users["Users"][0]["UserName"], "reader");
}

#[test]
fn a_customer_policy_on_one_vpc_s_groups_works_as_written() {
    let ep = Endpoint::start();
    let root = ep.host.access_key(None);
    let vpc = |cidr: &str| {
        ep.aws_ok(&root, &["ec2", "create-vpc", "--cidr-block", cidr])["Vpc"]["VpcId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (mine, other) = (vpc("10.72.0.0/16"), vpc("10.73.0.0/16"));
    let group = |vpc: &str, name: &str| {
        ep.aws_ok(
            &root,
            &[
                "ec2",
                "create-security-group",
                "--vpc-id",
                vpc,
                "--group-name",
                name,
                "--description",
                name,
            ],
        )["GroupId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (my_group, other_group) = (group(&mine, "web"), group(&other, "web"));
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OneVpcsGroups",
            "Effect": "Allow",
            "Action": "ec2:*SecurityGroup*",
            "Resource": [
                format!("arn:aws:ec2:*:*:vpc/{mine}"),
                format!("arn:aws:ec2:*:*:security-group/{my_group}"),
            ],
        }],
    })
    .to_string();
    let user = ep.user("netadmin", &[], &[&policy]);
    let ingress = |group: &str| {
        vec![
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            group,
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--cidr",
            "10.0.0.0/8",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    ep.aws_ok(&user, &strs(&ingress(&my_group)));
    assert_eq!(
        ep.aws_error(&user, &strs(&ingress(&other_group))),
        "UnauthorizedOperation"
    );
    ep.aws_ok(
        &user,
        &[
            "ec2",
            "create-security-group",
            "--vpc-id",
            &mine,
            "--group-name",
            "db",
            "--description",
            "db",
        ],
    );
    for denied in [
        vec![
            "ec2",
            "create-security-group",
            "--vpc-id",
            &other,
            "--group-name",
            "db",
            "--description",
            "db",
        ],
        vec!["ec2", "delete-security-group", "--group-id", &other_group],
        vec!["ec2", "delete-vpc", "--vpc-id", &mine],
        vec!["ec2", "create-vpc", "--cidr-block", "10.74.0.0/16"],
        vec!["ec2", "describe-vpcs"],
    ] {
        assert_eq!(
            ep.aws_error(&user, &denied),
            "UnauthorizedOperation",
            "{denied:?}"
        );
    }
}

#[test]
fn bad_signatures_old_requests_and_unknown_keys_are_refused_and_sts_names_the_caller() {
    let ep = Endpoint::start();
    let root = ep.host.access_key(None);
    let user = ep.user("ann", &[READ_ONLY], &[]);
    let me = ep.aws_ok(&user, &["sts", "get-caller-identity"]);
    let account = me["Account"].as_str().unwrap().to_owned();
    assert_eq!(me["Arn"], format!("arn:aws:iam::{account}:user/ann"));
    assert!(me["UserId"].as_str().unwrap().starts_with("AIDA"));
    let me = ep.aws_ok(&root, &["sts", "get-caller-identity"]);
    assert_eq!(me["Arn"], format!("arn:aws:iam::{account}:root"));

    let mut wrong = user.1.clone();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
    let wrong = (user.0.clone(), wrong);
    assert_eq!(
        ep.aws_error(&wrong, &["ec2", "describe-vpcs"]),
        "SignatureDoesNotMatch"
    );
    assert_eq!(
        ep.aws_error(&wrong, &["sts", "get-caller-identity"]),
        "SignatureDoesNotMatch"
    );
    let unknown = ("AKIAAAAAAAAAAAAAAAAA".to_owned(), user.1.clone());
    assert_eq!(
        ep.aws_error(&unknown, &["ec2", "describe-vpcs"]),
        "InvalidClientTokenId"
    );
    assert_eq!(
        ep.aws_error(&unknown, &["sts", "get-caller-identity"]),
        "InvalidClientTokenId"
    );

    // Signed (by botocore, as the aws CLI signs) 20 minutes ago.
    let twenty_minutes_ago = (gureum::cloud::time::now_secs() - 20 * 60).to_string();
    let old = |service: &str, operation: &str| {
        let out = std::process::Command::new(aws_venv_bin().join("python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/iam_support/botocore_tool.py"
            ))
            .args(["call", service, operation, "{}", &user.0, &user.1, &ep.url])
            .env("GUREUM_SIGN_AT", &twenty_minutes_ago)
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        answer["error"]["Code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(old("ec2", "describe_vpcs"), "RequestExpired");
    assert_eq!(old("sts", "get_caller_identity"), "SignatureDoesNotMatch");
    // The same call signed now passes.
    let now = botocore(
        &[
            "call",
            "sts",
            "get_caller_identity",
            "{}",
            &user.0,
            &user.1,
            &ep.url,
        ],
        "",
    );
    assert_eq!(
        now["result"]["Arn"],
        format!("arn:aws:iam::{account}:user/ann")
    );
}
