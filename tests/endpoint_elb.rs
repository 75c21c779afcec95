//! The ELBv2 Query API of `gureum daemon`, driven by the real aws CLI
//! (`aws elbv2 …`) from the virtualenv `scripts/setup-deps` makes: target
//! groups, targets and their health, a network load balancer and its
//! listener, an application one with listener rules, and ELBv2's error
//! codes. Needs root, `ip` and `nft` (the
//! load balancer is realised in its VPC's namespace).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde_json::Value;

mod cli_support;
mod endpoint_support;

use cli_support::Gureum;
use endpoint_support::Host;

/// `aws elbv2 ARGS`: its JSON, or the error code it printed.
fn elbv2(host: &Host, args: &[&str]) -> Result<Value, String> {
    let out = host
        .tool("aws")
        .args([
            "--endpoint-url",
            &host.endpoint(),
            "--output",
            "json",
            "elbv2",
        ])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(stderr
            .split_once("An error occurred (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map_or_else(|| stderr.to_string(), |(code, _)| code.to_owned()));
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn ok(host: &Host, args: &[&str]) -> Value {
    elbv2(host, args).unwrap_or_else(|e| panic!("aws elbv2 {args:?}: {e}\n{}", host.daemon_log()))
}

/// `create-target-group` of TCP 80 group `name` in `vpc`, with `extra`.
fn create_group<'a>(name: &'a str, vpc: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "create-target-group",
        "--name",
        name,
        "--protocol",
        "TCP",
        "--port",
        "80",
        "--vpc-id",
        vpc,
    ];
    args.extend(extra);
    args
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value}"))
        .to_owned()
}

#[test]
fn the_aws_cli_drives_target_groups_load_balancers_and_listeners() {
    let host = Host::start("local-1");
    let src = cli_support::image_source(host.work.path(), "tiny", "");
    host.ok(&["image", "import", src.to_str().unwrap()]);
    let vpc = host.ok(&["vpc", "create", "--cidr", "10.41.0.0/16", "--name", "main"]);
    let subnet = host.ok(&[
        "subnet",
        "create",
        "--vpc",
        "main",
        "--cidr",
        "10.41.1.0/24",
        "--name",
        "a",
    ]);
    let instance = host.run_stand_in(&["--image", "tiny", "--subnet", "a", "--name", "web-1"]);
    host.ok(&["instance", "wait", &instance, "--state", "stopped"]);

    let http = [
        "--health-check-protocol",
        "HTTP",
        "--health-check-path",
        "/up",
        "--health-check-interval-seconds",
        "5",
        "--health-check-timeout-seconds",
        "2",
    ];
    let made = ok(&host, &create_group("web", &vpc, &http));
    let group = &made["TargetGroups"][0];
    let group_arn = text(&group["TargetGroupArn"]);
    assert!(
        group_arn.starts_with("arn:aws:elasticloadbalancing:local-1:")
            && group_arn.contains(":targetgroup/web/"),
        "{made}"
    );
    assert_eq!(group["HealthCheckPath"], "/up");
    assert_eq!(group["HealthCheckPort"], "traffic-port");
    assert_eq!(group["HealthyThresholdCount"], 5, "ELBv2's default");
    assert_eq!(
        elbv2(&host, &create_group("web", &vpc, &[])).unwrap_err(),
        "DuplicateTargetGroupName"
    );
    assert_eq!(
        elbv2(
            &host,
            &create_group("bad", &vpc, &["--health-check-interval-seconds", "500"])
        )
        .unwrap_err(),
        "ValidationError"
    );
    ok(
        &host,
        &[
            "register-targets",
            "--target-group-arn",
            &group_arn,
            "--targets",
            &format!("Id={instance}"),
        ],
    );
    let health = ok(
        &host,
        &["describe-target-health", "--target-group-arn", &group_arn],
    );
    let first = &health["TargetHealthDescriptions"][0];
    assert_eq!(first["Target"]["Id"], instance.as_str(), "{health}");
    assert_eq!(first["Target"]["Port"], 80);
    assert_eq!(first["TargetHealth"]["State"], "unused", "no listener yet");
    assert_eq!(first["TargetHealth"]["Reason"], "Target.NotInUse");

    let made = ok(
        &host,
        &[
            "create-load-balancer",
            "--name",
            "front",
            "--type",
            "network",
            "--scheme",
            "internal",
            "--subnets",
            &subnet,
        ],
    );
    let balancer = &made["LoadBalancers"][0];
    let balancer_arn = text(&balancer["LoadBalancerArn"]);
    assert!(balancer_arn.contains(":loadbalancer/net/front/"), "{made}");
    assert_eq!(balancer["Type"], "network");
    assert_eq!(balancer["Scheme"], "internal");
    assert_eq!(balancer["State"]["Code"], "active");
    assert_eq!(balancer["VpcId"], vpc.as_str());
    let zone = &balancer["AvailabilityZones"][0];
    assert_eq!(zone["SubnetId"], subnet.as_str());
    assert_eq!(zone["ZoneName"], "local-1a");
    let address = text(&zone["LoadBalancerAddresses"][0]["PrivateIPv4Address"]);
    assert!(address.starts_with("10.41.1."), "{made}");
    assert!(text(&balancer["DNSName"]).starts_with("internal-front-"));
    assert_eq!(
        elbv2(
            &host,
            &[
                "create-load-balancer",
                "--name",
                "other",
                "--type",
                "gateway",
                "--subnets",
                &subnet
            ]
        )
        .unwrap_err(),
        "ValidationError"
    );

    let made = ok(
        &host,
        &[
            "create-listener",
            "--load-balancer-arn",
            &balancer_arn,
            "--protocol",
            "TCP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={group_arn}"),
        ],
    );
    let listener_arn = text(&made["Listeners"][0]["ListenerArn"]);
    assert!(listener_arn.contains(":listener/net/front/"), "{made}");
    let listed = ok(
        &host,
        &["describe-listeners", "--load-balancer-arn", &balancer_arn],
    );
    assert_eq!(listed["Listeners"][0]["Port"], 80);
    assert_eq!(
        listed["Listeners"][0]["DefaultActions"][0]["TargetGroupArn"],
        group_arn.as_str()
    );
    let groups = ok(&host, &["describe-target-groups", "--names", "web"]);
    assert_eq!(
        groups["TargetGroups"][0]["LoadBalancerArns"][0],
        balancer_arn.as_str()
    );
    // Used by a listener: its target is checked now (nothing answers on
    // the stand-in's address: it never becomes healthy).
    let health = ok(
        &host,
        &["describe-target-health", "--target-group-arn", &group_arn],
    );
    let state = text(&health["TargetHealthDescriptions"][0]["TargetHealth"]["State"]);
    assert!(state == "initial" || state == "unhealthy", "{health}");
    assert_eq!(
        elbv2(
            &host,
            &["delete-target-group", "--target-group-arn", &group_arn]
        )
        .unwrap_err(),
        "ResourceInUse"
    );
    assert_eq!(
        elbv2(&host, &["describe-target-groups", "--names", "nosuch"]).unwrap_err(),
        "TargetGroupNotFound"
    );
    assert_eq!(
        elbv2(&host, &["describe-load-balancers", "--names", "nosuch"]).unwrap_err(),
        "LoadBalancerNotFound"
    );

    ok(
        &host,
        &[
            "deregister-targets",
            "--target-group-arn",
            &group_arn,
            "--targets",
            &format!("Id={instance}"),
        ],
    );
    let health = ok(
        &host,
        &["describe-target-health", "--target-group-arn", &group_arn],
    );
    assert_eq!(
        health["TargetHealthDescriptions"][0]["TargetHealth"]["State"],
        "draining"
    );
    ok(&host, &["delete-listener", "--listener-arn", &listener_arn]);
    ok(
        &host,
        &["delete-load-balancer", "--load-balancer-arn", &balancer_arn],
    );
    ok(
        &host,
        &["delete-target-group", "--target-group-arn", &group_arn],
    );
    let left = ok(&host, &["describe-load-balancers"]);
    assert_eq!(left["LoadBalancers"], Value::Array(Vec::new()), "{left}");
    let check = host.run(&["net", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// The priorities of listener `listener`'s rules as DescribeRules lists
/// them, with the target group each forwards to.
fn rules_of(host: &Host, listener: &str) -> Vec<(String, String)> {
    let rules = ok(host, &["describe-rules", "--listener-arn", listener]);
    rules["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                text(&r["Priority"]),
                text(&r["Actions"][0]["TargetGroupArn"]),
            )
        })
        .collect()
}

#[test]
fn the_aws_cli_drives_application_load_balancers_and_their_rules() {
    let host = Host::start("local-1");
    let vpc = host.ok(&["vpc", "create", "--cidr", "10.42.0.0/16", "--name", "main"]);
    let subnet = host.ok(&[
        "subnet",
        "create",
        "--vpc",
        "main",
        "--cidr",
        "10.42.1.0/24",
        "--name",
        "a",
    ]);
    let mut groups = Vec::new();
    for name in ["alpha", "beta", "home"] {
        let mut args = create_group(name, &vpc, &[]);
        args[4] = "HTTP";
        let made = ok(&host, &args);
        let group = &made["TargetGroups"][0];
        assert_eq!(group["Protocol"], "HTTP", "{made}");
        assert_eq!(group["HealthCheckProtocol"], "HTTP", "{made}");
        groups.push(text(&group["TargetGroupArn"]));
    }
    let (alpha, beta, home) = (&groups[0], &groups[1], &groups[2]);

    // ELBv2's default type is application.
    let made = ok(
        &host,
        &[
            "create-load-balancer",
            "--name",
            "app",
            "--scheme",
            "internal",
            "--subnets",
            &subnet,
        ],
    );
    let balancer = &made["LoadBalancers"][0];
    assert_eq!(balancer["Type"], "application", "{made}");
    let balancer_arn = text(&balancer["LoadBalancerArn"]);
    assert!(balancer_arn.contains(":loadbalancer/app/app/"), "{made}");
    let listener = |protocol: &str| {
        elbv2(
            &host,
            &[
                "create-listener",
                "--load-balancer-arn",
                &balancer_arn,
                "--protocol",
                protocol,
                "--port",
                "80",
                "--default-actions",
                &format!("Type=forward,TargetGroupArn={home}"),
            ],
        )
    };
    assert_eq!(listener("TCP").unwrap_err(), "ValidationError");
    let made = listener("HTTP").unwrap();
    let listener_arn = text(&made["Listeners"][0]["ListenerArn"]);
    assert!(listener_arn.contains(":listener/app/app/"), "{made}");
    assert_eq!(made["Listeners"][0]["Protocol"], "HTTP");

    let rule = |priority: &str, conditions: &str, group: &str| {
        elbv2(
            &host,
            &[
                "create-rule",
                "--listener-arn",
                &listener_arn,
                "--priority",
                priority,
                "--conditions",
                conditions,
                "--actions",
                &format!("Type=forward,TargetGroupArn={group}"),
            ],
        )
    };
    let made = rule("10", "Field=path-pattern,Values=/a*", alpha).unwrap();
    let first = &made["Rules"][0];
    let first_arn = text(&first["RuleArn"]);
    assert!(first_arn.contains(":listener-rule/app/app/"), "{made}");
    assert_eq!(first["Priority"], "10");
    assert_eq!(first["Conditions"][0]["Field"], "path-pattern");
    assert_eq!(first["Conditions"][0]["Values"][0], "/a*");
    assert_eq!(first["IsDefault"], false);
    // The newer shape of a condition, with its config.
    let made = rule(
        "20",
        r#"[{"Field":"path-pattern","PathPatternConfig":{"Values":["/b*"]}}]"#,
        beta,
    )
    .unwrap();
    let second_arn = text(&made["Rules"][0]["RuleArn"]);
    assert_eq!(
        made["Rules"][0]["Conditions"][0]["PathPatternConfig"]["Values"][0],
        "/b*"
    );
    assert_eq!(
        rule("20", "Field=host-header,Values=x.example", alpha).unwrap_err(),
        "PriorityInUse"
    );
    assert_eq!(
        rule("30", "Field=path-pattern,Values=/a b", alpha).unwrap_err(),
        "ValidationError"
    );
    assert_eq!(
        rule("30", "Field=query-string,Values=x", alpha).unwrap_err(),
        "ValidationError"
    );
    assert_eq!(
        rules_of(&host, &listener_arn),
        [
            ("10".to_owned(), alpha.clone()),
            ("20".to_owned(), beta.clone()),
            ("default".to_owned(), home.clone())
        ]
    );

    // The conditions given replace the rule's; the target group changes.
    let made = ok(
        &host,
        &[
            "modify-rule",
            "--rule-arn",
            &first_arn,
            "--conditions",
            "Field=host-header,Values=*.example.com",
            "--actions",
            &format!("Type=forward,TargetGroupArn={home}"),
        ],
    );
    let conditions = &made["Rules"][0]["Conditions"];
    assert_eq!(conditions.as_array().unwrap().len(), 1, "{made}");
    assert_eq!(conditions[0]["Field"], "host-header", "{made}");
    assert_eq!(
        made["Rules"][0]["Actions"][0]["TargetGroupArn"],
        home.as_str()
    );
    // Priorities swap at once.
    ok(
        &host,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={first_arn},Priority=20"),
            &format!("RuleArn={second_arn},Priority=10"),
        ],
    );
    assert_eq!(
        rules_of(&host, &listener_arn),
        [
            ("10".to_owned(), beta.clone()),
            ("20".to_owned(), home.clone()),
            ("default".to_owned(), home.clone())
        ]
    );
    let one = ok(&host, &["describe-rules", "--rule-arns", &first_arn]);
    assert_eq!(one["Rules"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["Rules"][0]["Priority"], "20");
    // A rule's group is in use.
    assert_eq!(
        elbv2(&host, &["delete-target-group", "--target-group-arn", beta]).unwrap_err(),
        "ResourceInUse"
    );
    ok(&host, &["delete-rule", "--rule-arn", &first_arn]);
    assert_eq!(
        elbv2(&host, &["delete-rule", "--rule-arn", &first_arn]).unwrap_err(),
        "RuleNotFound"
    );
    assert_eq!(rules_of(&host, &listener_arn).len(), 2);

    ok(
        &host,
        &["delete-load-balancer", "--load-balancer-arn", &balancer_arn],
    );
    for group in &groups {
        ok(&host, &["delete-target-group", "--target-group-arn", group]);
    }
    let check = host.run(&["net", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
