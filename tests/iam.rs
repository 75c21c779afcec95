//! IAM end to end without the HTTP server: `gureum iam` (in-process and
//! through the daemon), SigV4 against requests botocore signed (a stored
//! fixture, with one of curl's, and live ones), policy evaluation through
//! `authenticate` and `authorize`, and the IAM and STS handlers' XML as
//! botocore parses it.
//! Needs the aws CLI virtualenv (`scripts/setup-deps`); not root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gureum::cloud::api::Category;
use gureum::cloud::iam::records::{AccessKey, KeyStatus, Owner};
use gureum::cloud::iam::{self, Caller, arn, authenticate, authorize, tables};
use gureum::endpoint::{self, Reply};
use serde_json::{Value, json};

mod cli_support;
mod iam_support;

use iam_support::{Host, Raw, parse, sign};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess";

#[test]
fn the_cli_makes_keys_users_and_policies_and_keeps_secrets_private() {
    let host = Host::new();
    let (root_key, root_secret) = host.access_key(None);
    assert!(root_key.starts_with("AKIA") && root_key.len() == 20);
    assert_eq!(root_secret.len(), 40);
    let table = host.ok(&["iam", "create-user", "bob"]);
    assert!(table.contains(":user/bob"), "{table}");
    let err = host.fails(&["iam", "create-user", "BOB"], 5);
    assert!(err.contains("already exists"), "{err}");
    let (bob_key, _) = host.access_key(Some("bob"));
    host.ok(&[
        "iam",
        "attach-user-policy",
        "--user",
        "bob",
        "--policy-arn",
        READ_ONLY,
    ]);
    let doc = host.dir.path().join("deny.json");
    std::fs::write(
        &doc,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoDelete","Effect":"Deny","Action":"ec2:Delete*","Resource":"*"}]}"#,
    )
    .unwrap();
    let doc = doc.to_str().unwrap();
    host.ok(&[
        "iam",
        "put-user-policy",
        "--user",
        "bob",
        "--name",
        "no-delete",
        "--document",
        doc,
    ]);
    let bad = host.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"Statement":{"Effect":"Allow","Action":"ec2:*"}}"#).unwrap();
    let err = host.fails(
        &[
            "iam",
            "put-user-policy",
            "--user",
            "bob",
            "--name",
            "x",
            "--document",
            bad.to_str().unwrap(),
        ],
        3,
    );
    assert!(
        err.contains("malformed") && err.contains("no Resource"),
        "{err}"
    );
    let attached = host.ok(&[
        "iam",
        "list-attached-user-policies",
        "--user",
        "bob",
        "-o",
        "json",
    ]);
    let attached: Value = serde_json::from_str(&attached).unwrap();
    assert_eq!(
        attached,
        json!([{"name": "AmazonEC2ReadOnlyAccess", "arn": READ_ONLY}])
    );
    assert_eq!(
        host.ok(&["iam", "list-user-policies", "--user", "bob"])
            .lines()
            .nth(1),
        Some("no-delete")
    );
    // Listings never show a secret.
    let keys = host.ok(&["iam", "list-access-keys", "-o", "json"]);
    assert!(!keys.contains(&root_secret), "{keys}");
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let bobs = host.ok(&["iam", "list-access-keys", "--user", "bob"]);
    assert!(
        bobs.contains(&bob_key) && !bobs.contains(&root_key),
        "{bobs}"
    );
    // A user with keys or policies is not deleted; one without is.
    let err = host.fails(&["iam", "delete-user", "bob"], 5);
    assert!(err.contains("delete its access keys"), "{err}");
    host.ok(&["iam", "delete-access-key", &bob_key, "--user", "bob"]);
    host.ok(&[
        "iam",
        "detach-user-policy",
        "--user",
        "bob",
        "--policy-arn",
        READ_ONLY,
    ]);
    host.ok(&[
        "iam",
        "delete-user-policy",
        "--user",
        "bob",
        "--name",
        "no-delete",
    ]);
    host.ok(&["iam", "delete-user", "bob"]);
    host.fails(&["iam", "delete-user", "bob"], 4);
    assert_eq!(host.ok(&["iam", "list-users", "-o", "json"]).trim(), "[]");
    // The secrets are in the store, which is its owner's alone.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&host.state()), 0o700);
    assert_eq!(mode(&host.state().join("gureum.db")), 0o600);
}

/// A daemon on `host`'s state directory, ended when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_daemon_makes_the_account_at_its_first_start_and_serves_the_same_commands() {
    let host = Host::new();
    let socket = host.state().join("gureum.sock");
    let mut daemon = Daemon(
        host.gureum(&["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon ended");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Made before any IAM command.
    let mut store = host.ctx().open_store().unwrap();
    let account = store.read(tables::account_id).unwrap();
    drop(store);
    assert_eq!(account.len(), 12);
    let table = host.ok(&["iam", "create-user", "ann"]);
    assert!(
        table.contains(&format!("arn:aws:iam::{account}:user/ann")),
        "{table}"
    );
    let (key, _) = host.access_key(Some("ann"));
    // What the daemon wrote, this process reads: one store, one API.
    let keys = iam::execute(
        &mut host.ctx().open_store().unwrap(),
        &iam::IamAction::ListAccessKeys {
            owner: Some(Owner::User("ann".into())),
        },
    )
    .unwrap();
    assert!(
        matches!(&keys, iam::IamResponse::AccessKeys(k) if k[0].id == key),
        "{keys:?}"
    );
}

/// Keeps `key` with `secret` for the root account (the fixture's key).
fn keep_root_key(host: &Host, key: &str, secret: &str) {
    let mut store = host.ctx().open_store().unwrap();
    store
        .write(|tx| {
            tables::insert_key(
                tx,
                &AccessKey {
                    id: key.into(),
                    owner: Owner::Root,
                    status: KeyStatus::Active,
                    created: "2026-12-03T00:00:00Z".into(),
                },
                secret,
            )
        })
        .unwrap();
}

fn fixture() -> Value {
    let text = include_str!("iam_support/signed_requests.json");
    serde_json::from_str(text).unwrap()
}

#[test]
fn requests_botocore_signed_are_authenticated_and_changed_ones_are_not() {
    let fixture = fixture();
    let (key, secret) = (
        fixture["key"].as_str().unwrap(),
        fixture["secret"].as_str().unwrap(),
    );
    let host = Host::new();
    keep_root_key(&host, key, secret);
    let ctx = host.ctx();
    let account = host
        .ctx()
        .open_store()
        .unwrap()
        .read(tables::account_id)
        .unwrap();
    for case in fixture["requests"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let service = case["service"].as_str().unwrap();
        let raw = Raw::from_json(&case["request"]);
        let at = raw.signed_at();
        let who = authenticate(&ctx, &raw.signed(), at + Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(who.service, service, "{name}");
        assert_eq!(who.region, "us-east-1", "{name}");
        assert_eq!(
            who.caller,
            Caller {
                account: account.clone(),
                user: None,
                arn: format!("arn:aws:iam::{account}:root"),
                access_key: key.into(),
            }
        );
        // Old: refused as AWS refuses it.
        let late = at + Duration::from_secs(16 * 60);
        let err = authenticate(&ctx, &raw.signed(), late).unwrap_err();
        let expected = if service == "ec2" {
            "RequestExpired"
        } else {
            "SignatureDoesNotMatch"
        };
        assert_eq!(err.code(), expected, "{name}: {err}");
        // Changed: a parameter, or a header it signed.
        let mut changed = raw.clone();
        if changed.body.is_empty() {
            changed.query = changed.query.replace("Action=", "Action=X");
        } else {
            changed.body.push_str("&Extra=1");
        }
        let err = authenticate(&ctx, &changed.signed(), at).unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch", "{name}: {err}");
        let mut changed = raw.clone();
        for (k, v) in &mut changed.headers {
            if k == "Host" {
                *v = "127.0.0.1:8774".into();
            }
        }
        let err = authenticate(&ctx, &changed.signed(), at).unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch", "{name}: {err}");
    }
    // The same requests against a store with another secret for the key,
    // and against one without the key.
    let other = Host::new();
    keep_root_key(&other, key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ");
    let nobody = Host::new();
    for case in fixture["requests"].as_array().unwrap() {
        let raw = Raw::from_json(&case["request"]);
        let err = authenticate(&other.ctx(), &raw.signed(), raw.signed_at()).unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch", "{err}");
        let err = authenticate(&nobody.ctx(), &raw.signed(), raw.signed_at()).unwrap_err();
        assert_eq!(err.code(), "InvalidClientTokenId", "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn a_fixture_request_runs_through_the_iam_handler_as_its_signer() {
    let fixture = fixture();
    let host = Host::new();
    keep_root_key(
        &host,
        fixture["key"].as_str().unwrap(),
        fixture["secret"].as_str().unwrap(),
    );
    let ctx = host.ctx();
    let requests = fixture["requests"].as_array().unwrap();
    let mut replies = Vec::new();
    for name in ["iam-create-user", "iam-put-user-policy"] {
        let case = requests.iter().find(|c| c["name"] == name).unwrap();
        let raw = Raw::from_json(&case["request"]);
        let who = authenticate(&ctx, &raw.signed(), raw.signed_at()).unwrap();
        replies.push(endpoint::iam::handle(
            &ctx,
            &who.caller,
            &raw.params(),
            "req-1",
        ));
    }
    let parsed = parse(&[
        ("iam", "CreateUser", &replies[0]),
        ("iam", "PutUserPolicy", &replies[1]),
    ]);
    assert_eq!(replies[0].status, 200, "{}", replies[0].body);
    assert_eq!(parsed[0]["User"]["UserName"], "bob");
    // Its policy name has a space (to sign a `+` in the body), which IAM
    // refuses.
    assert_eq!(replies[1].status, 400, "{}", replies[1].body);
    assert_eq!(
        parsed[1]["Error"]["Code"], "ValidationError",
        "{}",
        replies[1].body
    );
}

/// A user with a key and the given managed policies and inline
/// documents; the caller it signs as.
fn user(host: &Host, name: &str, managed: &[&str], inline: &[&str]) -> (Caller, String, String) {
    host.ok(&["iam", "create-user", name]);
    for arn in managed {
        host.ok(&[
            "iam",
            "attach-user-policy",
            "--user",
            name,
            "--policy-arn",
            arn,
        ]);
    }
    for (i, doc) in inline.iter().enumerate() {
        let path = host.dir.path().join(format!("{name}-{i}.json"));
        std::fs::write(&path, doc).unwrap();
        host.ok(&[
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
    let (key, secret) = host.access_key(Some(name));
    // Signed by botocore now, verified now.
    let raw = sign("ec2", "describe_vpcs", &json!({}), &key, &secret);
    let who = authenticate(&host.ctx(), &raw.signed(), std::time::SystemTime::now()).unwrap();
    assert_eq!(who.caller.user.as_deref(), Some(name));
    (who.caller, key, secret)
}

#[test]
fn policies_decide_what_signed_callers_may_do() {
    let host = Host::new();
    let ctx = host.ctx();
    let vpc = arn(&ctx, "vpc", "vpc-0123456789abcdef0");
    let any_vpc = arn(&ctx, "vpc", "*");
    let sg = |id: &str| arn(&ctx, "security-group", id);
    let (reader, ..) = user(&host, "reader", &[READ_ONLY], &[]);
    assert_eq!(authorize(&ctx, &reader, "ec2:DescribeVpcs", "*"), Ok(()));
    let err = authorize(&ctx, &reader, "ec2:CreateVpc", &any_vpc).unwrap_err();
    assert_eq!(err.category, Category::Unauthorised);
    assert!(
        err.message.contains(&format!(
            "User: {} is not authorized to perform: ec2:CreateVpc on resource: {any_vpc}",
            reader.arn
        )),
        "{}",
        err.message
    );
    // IAM's own actions are checked as well.
    let err = authorize(&ctx, &reader, "iam:CreateUser", "*").unwrap_err();
    assert_eq!(err.category, Category::Unauthorised);

    // Only the security groups of one VPC, as written.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*SecurityGroup*",
            "Resource":["arn:aws:ec2:*:*:vpc/vpc-0123456789abcdef0",
                        "arn:aws:ec2:*:*:security-group/sg-0aaaaaaaaaaaaaaaa"]}]}"#;
    let (groups, ..) = user(&host, "groups", &[], &[policy]);
    assert_eq!(
        authorize(&ctx, &groups, "ec2:CreateSecurityGroup", &vpc),
        Ok(())
    );
    assert_eq!(
        authorize(
            &ctx,
            &groups,
            "ec2:AuthorizeSecurityGroupIngress",
            &sg("sg-0aaaaaaaaaaaaaaaa")
        ),
        Ok(())
    );
    for (action, resource) in [
        (
            "ec2:AuthorizeSecurityGroupIngress",
            sg("sg-0bbbbbbbbbbbbbbbb"),
        ),
        (
            "ec2:CreateSecurityGroup",
            arn(&ctx, "vpc", "vpc-0ffffffffffffffff"),
        ),
        ("ec2:DeleteVpc", vpc.clone()),
        ("ec2:DescribeVpcs", "*".to_owned()),
    ] {
        let err = authorize(&ctx, &groups, action, &resource).unwrap_err();
        assert_eq!(err.category, Category::Unauthorised, "{action} {resource}");
    }

    // An explicit deny beats AdministratorAccess.
    let deny = r#"{"Statement":{"Effect":"Deny","Action":"ec2:DeleteVpc","Resource":"*"}}"#;
    let (admin, ..) = user(
        &host,
        "admin",
        &["arn:aws:iam::aws:policy/AdministratorAccess"],
        &[deny],
    );
    assert_eq!(authorize(&ctx, &admin, "iam:CreateUser", "*"), Ok(()));
    let err = authorize(&ctx, &admin, "ec2:DeleteVpc", &vpc).unwrap_err();
    assert!(err.message.contains("explicit deny"), "{}", err.message);

    // Root may do everything.
    let root = Caller {
        account: reader.account.clone(),
        user: None,
        arn: format!("arn:aws:iam::{}:root", reader.account),
        access_key: String::new(),
    };
    assert_eq!(authorize(&ctx, &root, "ec2:DeleteVpc", &vpc), Ok(()));

    // An inactive key does not authenticate; active again, it does.
    let (_, key, secret) = user(&host, "paused", &[], &[]);
    host.ok(&["iam", "update-access-key", &key, "--status", "Inactive"]);
    let raw = sign("sts", "get_caller_identity", &json!({}), &key, &secret);
    let err = authenticate(&ctx, &raw.signed(), std::time::SystemTime::now()).unwrap_err();
    assert_eq!(err.code(), "InvalidClientTokenId");
    assert!(err.to_string().contains("inactive"), "{err}");
    host.ok(&[
        "iam",
        "update-access-key",
        &key,
        "--status",
        "Active",
        "--user",
        "paused",
    ]);
    authenticate(&ctx, &raw.signed(), std::time::SystemTime::now()).unwrap();

    // A deleted user's key no longer authenticates.
    let (_, key, secret) = user(&host, "gone", &[], &[]);
    host.ok(&["iam", "delete-access-key", &key]);
    host.ok(&["iam", "delete-user", "gone"]);
    let raw = sign("sts", "get_caller_identity", &json!({}), &key, &secret);
    let err = authenticate(&ctx, &raw.signed(), std::time::SystemTime::now()).unwrap_err();
    assert_eq!(err.code(), "InvalidClientTokenId");
}

fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_iam_and_sts_handlers_answer_what_botocore_parses() {
    let host = Host::new();
    let ctx = host.ctx();
    let (key, secret) = host.access_key(None);
    let raw = sign("iam", "list_users", &json!({}), &key, &secret);
    let root = authenticate(&ctx, &raw.signed(), std::time::SystemTime::now())
        .unwrap()
        .caller;
    let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}}"#;
    let iam = |caller: &Caller, p: &[(&str, &str)]| {
        endpoint::iam::handle(&ctx, caller, &params(p), "rid-7")
    };
    let calls: Vec<(&str, Reply)> = vec![
        (
            "CreateUser",
            iam(
                &root,
                &[
                    ("Action", "CreateUser"),
                    ("UserName", "eve"),
                    ("Path", "/ops/"),
                ],
            ),
        ),
        (
            "GetUser",
            iam(&root, &[("Action", "GetUser"), ("UserName", "eve")]),
        ),
        ("GetUser", iam(&root, &[("Action", "GetUser")])),
        ("ListUsers", iam(&root, &[("Action", "ListUsers")])),
        (
            "CreateAccessKey",
            iam(&root, &[("Action", "CreateAccessKey"), ("UserName", "eve")]),
        ),
        (
            "ListAccessKeys",
            iam(&root, &[("Action", "ListAccessKeys"), ("UserName", "eve")]),
        ),
        (
            "AttachUserPolicy",
            iam(
                &root,
                &[
                    ("Action", "AttachUserPolicy"),
                    ("UserName", "eve"),
                    ("PolicyArn", READ_ONLY),
                ],
            ),
        ),
        (
            "ListAttachedUserPolicies",
            iam(
                &root,
                &[("Action", "ListAttachedUserPolicies"), ("UserName", "eve")],
            ),
        ),
        (
            "PutUserPolicy",
            iam(
                &root,
                &[
                    ("Action", "PutUserPolicy"),
                    ("UserName", "eve"),
                    ("PolicyName", "describe"),
                    ("PolicyDocument", policy),
                ],
            ),
        ),
        (
            "GetUserPolicy",
            iam(
                &root,
                &[
                    ("Action", "GetUserPolicy"),
                    ("UserName", "eve"),
                    ("PolicyName", "describe"),
                ],
            ),
        ),
        (
            "ListUserPolicies",
            iam(
                &root,
                &[("Action", "ListUserPolicies"), ("UserName", "eve")],
            ),
        ),
        (
            "GetUser",
            iam(&root, &[("Action", "GetUser"), ("UserName", "nobody")]),
        ),
        (
            "CreateUser",
            iam(&root, &[("Action", "CreateUser"), ("UserName", "EVE")]),
        ),
        (
            "DeleteUser",
            iam(&root, &[("Action", "DeleteUser"), ("UserName", "eve")]),
        ),
        (
            "PutUserPolicy",
            iam(
                &root,
                &[
                    ("Action", "PutUserPolicy"),
                    ("UserName", "eve"),
                    ("PolicyName", "bad"),
                    ("PolicyDocument", "{\"Statement\": 5}"),
                ],
            ),
        ),
        ("CreateUser", iam(&root, &[("Action", "CreateUser")])),
        ("CreateUser", iam(&root, &[("Action", "FlyToTheMoon")])),
    ];
    let jobs: Vec<(&str, &str, &Reply)> = calls.iter().map(|(op, r)| ("iam", *op, r)).collect();
    let parsed = parse(&jobs);
    let status: Vec<u16> = calls.iter().map(|(_, r)| r.status).collect();
    assert_eq!(
        status,
        [
            200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 404, 409, 409, 400, 400, 400
        ]
    );
    let account = &root.account;
    assert_eq!(
        parsed[0]["User"]["Arn"],
        format!("arn:aws:iam::{account}:user/ops/eve")
    );
    assert_eq!(parsed[0]["User"]["Path"], "/ops/");
    let eve_id = parsed[0]["User"]["UserId"].as_str().unwrap().to_owned();
    assert!(eve_id.starts_with("AIDA"));
    assert_eq!(parsed[1]["User"]["UserId"], eve_id.as_str());
    assert_eq!(
        parsed[2]["User"]["Arn"],
        format!("arn:aws:iam::{account}:root")
    );
    assert_eq!(parsed[3]["Users"][0]["UserName"], "eve");
    assert_eq!(parsed[3]["IsTruncated"], false);
    let new_key = &parsed[4]["AccessKey"];
    assert_eq!(new_key["UserName"], "eve");
    assert_eq!(new_key["Status"], "Active");
    assert_eq!(new_key["SecretAccessKey"].as_str().unwrap().len(), 40);
    let eve_key = new_key["AccessKeyId"].as_str().unwrap().to_owned();
    assert_eq!(
        parsed[5]["AccessKeyMetadata"][0]["AccessKeyId"],
        eve_key.as_str()
    );
    assert!(
        parsed[5]["AccessKeyMetadata"][0]
            .get("SecretAccessKey")
            .is_none()
    );
    assert_eq!(
        parsed[7]["AttachedPolicies"],
        json!([{"PolicyName": "AmazonEC2ReadOnlyAccess", "PolicyArn": READ_ONLY}])
    );
    // botocore decodes the URL-encoded document into JSON.
    assert_eq!(
        parsed[9]["PolicyDocument"],
        serde_json::from_str::<Value>(policy).unwrap()
    );
    assert_eq!(parsed[10]["PolicyNames"], json!(["describe"]));
    for (i, code) in [
        (11, "NoSuchEntity"),
        (12, "EntityAlreadyExists"),
        (13, "DeleteConflict"),
        (14, "MalformedPolicyDocument"),
        (15, "ValidationError"),
        (16, "InvalidAction"),
    ] {
        assert_eq!(parsed[i]["Error"]["Code"], code, "{}", calls[i].1.body);
        assert_eq!(parsed[i]["Error"]["Type"], "Sender");
    }
    assert!(calls[11].1.body.contains("<RequestId>rid-7</RequestId>"));

    // Eve, read-only, may not manage IAM (AccessDenied), nor make keys
    // for others; STS names her.
    let eve_secret = new_key["SecretAccessKey"].as_str().unwrap();
    let raw = sign(
        "sts",
        "get_caller_identity",
        &json!({}),
        &eve_key,
        eve_secret,
    );
    let eve = authenticate(&ctx, &raw.signed(), std::time::SystemTime::now())
        .unwrap()
        .caller;
    let denied = [
        iam(&eve, &[("Action", "CreateUser"), ("UserName", "mallory")]),
        iam(&eve, &[("Action", "CreateAccessKey")]),
        iam(&eve, &[("Action", "ListUsers")]),
    ];
    let sts = endpoint::sts::handle(
        &ctx,
        &eve,
        &params(&[("Action", "GetCallerIdentity")]),
        "rid-8",
    );
    let sts_root = endpoint::sts::handle(
        &ctx,
        &root,
        &params(&[("Action", "GetCallerIdentity")]),
        "rid-9",
    );
    let sts_bad =
        endpoint::sts::handle(&ctx, &root, &params(&[("Action", "AssumeRole")]), "rid-10");
    let parsed = parse(&[
        ("iam", "CreateUser", &denied[0]),
        ("iam", "CreateAccessKey", &denied[1]),
        ("iam", "ListUsers", &denied[2]),
        ("sts", "GetCallerIdentity", &sts),
        ("sts", "GetCallerIdentity", &sts_root),
        ("sts", "AssumeRole", &sts_bad),
    ]);
    for (i, reply) in denied.iter().enumerate() {
        assert_eq!(reply.status, 403);
        assert_eq!(parsed[i]["Error"]["Code"], "AccessDenied");
    }
    assert!(
        parsed[0]["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "iam:CreateUser on resource: arn:aws:iam::{account}:user/mallory"
            )),
        "{}",
        parsed[0]
    );
    assert_eq!(
        parsed[3],
        json!({"Arn": format!("arn:aws:iam::{account}:user/ops/eve"), "UserId": eve_id, "Account": account})
    );
    assert_eq!(
        parsed[4],
        json!({"Arn": format!("arn:aws:iam::{account}:root"), "UserId": account, "Account": account})
    );
    assert_eq!(parsed[5]["Error"]["Code"], "InvalidAction");
    assert!(
        sts.body
            .contains("xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"")
    );
    // Root makes Eve's key inactive through the API; it no longer
    // authenticates.
    let update = iam(
        &root,
        &[
            ("Action", "UpdateAccessKey"),
            ("UserName", "eve"),
            ("AccessKeyId", &eve_key),
            ("Status", "Inactive"),
        ],
    );
    let bad_status = iam(
        &root,
        &[
            ("Action", "UpdateAccessKey"),
            ("UserName", "eve"),
            ("AccessKeyId", &eve_key),
            ("Status", "Paused"),
        ],
    );
    let parsed = parse(&[
        ("iam", "UpdateAccessKey", &update),
        ("iam", "UpdateAccessKey", &bad_status),
    ]);
    assert_eq!(update.status, 200, "{}", update.body);
    assert_eq!(parsed[1]["Error"]["Code"], "ValidationError");
    let err = authenticate(&ctx, &raw.signed(), std::time::SystemTime::now()).unwrap_err();
    assert_eq!(err.code(), "InvalidClientTokenId");

    // A request that fails authentication, in each service's envelope.
    let mut unknown = sign(
        "sts",
        "get_caller_identity",
        &json!({}),
        "AKIAAAAAAAAAAAAAAAAA",
        eve_secret,
    );
    let err = authenticate(&ctx, &unknown.signed(), std::time::SystemTime::now()).unwrap_err();
    let (iam_refused, sts_refused) = (
        endpoint::iam::refused(&err, "rid-11"),
        endpoint::sts::refused(&err, "rid-12"),
    );
    unknown.headers.retain(|(k, _)| k != "Authorization");
    let missing = authenticate(&ctx, &unknown.signed(), std::time::SystemTime::now()).unwrap_err();
    let missing = endpoint::sts::refused(&missing, "rid-13");
    let parsed = parse(&[
        ("iam", "ListUsers", &iam_refused),
        ("sts", "GetCallerIdentity", &sts_refused),
        ("sts", "GetCallerIdentity", &missing),
    ]);
    assert_eq!(
        (iam_refused.status, sts_refused.status, missing.status),
        (403, 403, 403)
    );
    assert_eq!(parsed[0]["Error"]["Code"], "InvalidClientTokenId");
    assert_eq!(parsed[1]["Error"]["Code"], "InvalidClientTokenId");
    assert_eq!(parsed[2]["Error"]["Code"], "MissingAuthenticationToken");
}
