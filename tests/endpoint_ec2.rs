//! The EC2 Query endpoint driven by the real aws CLI and boto3, against a
//! daemon the test starts (its own state directory, a free port of
//! 127.0.0.1). Needs root, `ip` and `nft` (VPCs are made in namespaces
//! with the test's prefix) and the aws CLI of `scripts/setup-deps`.
//! Instances use the stand-in image, whose VMM refuses its kernel on any
//! host: they go from pending to stopped with the reason; booting them
//! and SSH is the rig's (tests/rig_instances.rs).

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

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The IDs under `key` of each element of `list`.
fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| s(&v[key]).to_owned())
        .collect()
}

fn tag_spec(kind: &str, name: &str) -> String {
    format!("ResourceType={kind},Tags=[{{Key=Name,Value={name}}},{{Key=env,Value=test}}]")
}

/// Imports the stand-in image through the CLI; its ID.
fn image(host: &Host) -> String {
    let src = cli_support::image_source(host.work.path(), "tiny", "");
    host.ok(&["image", "import", src.to_str().unwrap()]);
    let images = host.ec2(&["describe-images", "--filters", "Name=name,Values=tiny"]);
    s(&images["Images"][0]["ImageId"]).to_owned()
}

#[test]
fn a_whole_vpc_and_its_instances_through_the_aws_cli() {
    let host = Host::start("eu-west-1");
    let vpc = host.ec2(&[
        "create-vpc",
        "--cidr-block",
        "10.20.0.0/16",
        "--tag-specifications",
        &tag_spec("vpc", "main"),
    ]);
    let vpc = s(&vpc["Vpc"]["VpcId"]).to_owned();
    let subnet = |cidr: &str, name: &str| {
        let out = host.ec2(&[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            cidr,
            "--tag-specifications",
            &tag_spec("subnet", name),
        ]);
        assert_eq!(out["Subnet"]["VpcId"], vpc.as_str());
        s(&out["Subnet"]["SubnetId"]).to_owned()
    };
    let public = subnet("10.20.1.0/24", "public");
    let private = subnet("10.20.2.0/24", "private");
    let listed = host.ec2(&[
        "describe-subnets",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
    ]);
    let mut both = ids(&listed["Subnets"], "SubnetId");
    both.sort();
    let mut want = vec![public.clone(), private.clone()];
    want.sort();
    assert_eq!(both, want);
    let named = host.ec2(&["describe-subnets", "--filters", "Name=tag:Name,Values=pub*"]);
    assert_eq!(
        ids(&named["Subnets"], "SubnetId"),
        std::slice::from_ref(&public)
    );

    // The internet gateway and a route table routing to it.
    let igw = host.ec2(&["create-internet-gateway"]);
    let igw = s(&igw["InternetGateway"]["InternetGatewayId"]).to_owned();
    host.ec2(&[
        "attach-internet-gateway",
        "--internet-gateway-id",
        &igw,
        "--vpc-id",
        &vpc,
    ]);
    let rtb = host.ec2(&["create-route-table", "--vpc-id", &vpc]);
    let rtb = s(&rtb["RouteTable"]["RouteTableId"]).to_owned();
    let assoc = host.ec2(&[
        "associate-route-table",
        "--route-table-id",
        &rtb,
        "--subnet-id",
        &public,
    ]);
    assert!(s(&assoc["AssociationId"]).starts_with("rtbassoc-"));
    let route = host.ec2(&[
        "create-route",
        "--route-table-id",
        &rtb,
        "--destination-cidr-block",
        "0.0.0.0/0",
        "--gateway-id",
        &igw,
    ]);
    assert_eq!(route["Return"], true);
    let tables = host.ec2(&["describe-route-tables", "--route-table-ids", &rtb]);
    let table = &tables["RouteTables"][0];
    let routes: Vec<(String, String)> = table["Routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                s(&r["DestinationCidrBlock"]).to_owned(),
                s(&r["GatewayId"]).to_owned(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("10.20.0.0/16".to_owned(), "local".to_owned()),
            ("0.0.0.0/0".to_owned(), igw.clone())
        ]
    );
    assert_eq!(table["Associations"][0]["SubnetId"], public.as_str());
    let igws = host.ec2(&[
        "describe-internet-gateways",
        "--filters",
        &format!("Name=attachment.vpc-id,Values={vpc}"),
    ]);
    assert_eq!(
        igws["InternetGateways"][0]["Attachments"][0]["VpcId"],
        vpc.as_str()
    );

    // A security group open to SSH from anywhere and to itself.
    let sg = host.ec2(&[
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "web servers",
        "--vpc-id",
        &vpc,
    ]);
    let sg = s(&sg["GroupId"]).to_owned();
    let by_cidr = host.ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &sg,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "0.0.0.0/0",
    ]);
    assert_eq!(by_cidr["Return"], true);
    assert_eq!(by_cidr["SecurityGroupRules"][0]["CidrIpv4"], "0.0.0.0/0");
    host.ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &sg,
        "--ip-permissions",
        &format!("IpProtocol=tcp,FromPort=8000,ToPort=8100,UserIdGroupPairs=[{{GroupId={sg}}}]"),
    ]);
    let groups = host.ec2(&["describe-security-groups", "--group-ids", &sg]);
    let perms = &groups["SecurityGroups"][0]["IpPermissions"];
    assert_eq!(perms[0]["FromPort"], 22);
    assert_eq!(perms[0]["IpRanges"][0]["CidrIp"], "0.0.0.0/0");
    assert_eq!(perms[1]["ToPort"], 8100);
    assert_eq!(perms[1]["UserIdGroupPairs"][0]["GroupId"], sg.as_str());
    assert_eq!(
        groups["SecurityGroups"][0]["IpPermissionsEgress"][0]["IpProtocol"],
        "-1"
    );
    let rules = host.ec2(&[
        "describe-security-group-rules",
        "--filters",
        &format!("Name=group-id,Values={sg}"),
    ]);
    assert_eq!(rules["SecurityGroupRules"].as_array().unwrap().len(), 3);
    let defaults = host.ec2(&[
        "describe-security-groups",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
        "Name=group-name,Values=default",
    ]);
    assert_eq!(defaults["SecurityGroups"].as_array().unwrap().len(), 1);

    // A key pair, handed out once.
    let key = host.ec2(&["create-key-pair", "--key-name", "deploy"]);
    assert!(s(&key["KeyMaterial"]).contains("PRIVATE KEY"), "{key}");
    let keys = host.ec2(&["describe-key-pairs", "--key-names", "deploy"]);
    assert_eq!(keys["KeyPairs"][0]["KeyFingerprint"], key["KeyFingerprint"]);
    let with_public = host.ec2(&[
        "describe-key-pairs",
        "--key-names",
        "deploy",
        "--include-public-key",
    ]);
    let pub_file = host.work.path().join("deploy.pub");
    std::fs::write(&pub_file, s(&with_public["KeyPairs"][0]["PublicKey"])).unwrap();
    let imported = host.ec2(&[
        "import-key-pair",
        "--key-name",
        "laptop",
        "--public-key-material",
        &format!("fileb://{}", pub_file.display()),
    ]);
    assert_eq!(imported["KeyFingerprint"], key["KeyFingerprint"]);
    host.ec2(&["delete-key-pair", "--key-name", "laptop"]);

    // An instance in the public subnet; the same client token answers
    // the same instance.
    let ami = image(&host);
    let run = |token: &str| {
        host.ec2(&[
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "t3.micro",
            "--key-name",
            "deploy",
            "--subnet-id",
            &public,
            "--security-group-ids",
            &sg,
            "--private-ip-address",
            "10.20.1.10",
            "--client-token",
            token,
            "--tag-specifications",
            &tag_spec("instance", "web-1"),
        ])
    };
    let first = run("launch-1");
    let instance = s(&first["Instances"][0]["InstanceId"]).to_owned();
    assert_eq!(first["Instances"][0]["PrivateIpAddress"], "10.20.1.10");
    let again = run("launch-1");
    assert_eq!(again["Instances"][0]["InstanceId"], instance.as_str());
    // The stand-in's VMM refuses its kernel: the waiter sees "stopped".
    host.ec2(&["wait", "instance-stopped", "--instance-ids", &instance]);
    let described = host.ec2(&[
        "describe-instances",
        "--filters",
        "Name=tag:Name,Values=web-*",
        &format!("Name=vpc-id,Values={vpc}"),
        "Name=instance-state-name,Values=stopped,running",
    ]);
    let found = &described["Reservations"][0]["Instances"][0];
    assert_eq!(found["InstanceId"], instance.as_str());
    assert_eq!(found["State"]["Code"], 80);
    assert_eq!(found["SubnetId"], public.as_str());
    assert_eq!(found["KeyName"], "deploy");
    assert_eq!(found["SecurityGroups"][0]["GroupId"], sg.as_str());
    assert!(
        found["StateReason"]["Message"]
            .as_str()
            .unwrap()
            .contains("VMM"),
        "{found}"
    );
    let none = host.ec2(&[
        "describe-instances",
        "--filters",
        "Name=tag:Name,Values=db-*",
    ]);
    assert_eq!(none["Reservations"], serde_json::json!([]));
    // The CLI reads the same store: the same instance, state and address.
    let cli: Value =
        serde_json::from_str(&host.ok(&["instance", "list", "--output", "json"])).unwrap();
    assert_eq!(cli[0]["id"], instance.as_str());
    assert_eq!(cli[0]["state"], "stopped");

    // A launch template, and an instance launched from it.
    let template = host.ec2(&[
        "create-launch-template",
        "--launch-template-name",
        "small",
        "--launch-template-data",
        &format!("{{\"ImageId\":\"{ami}\",\"InstanceType\":\"t3.nano\",\"KeyName\":\"deploy\"}}"),
    ]);
    let template = s(&template["LaunchTemplate"]["LaunchTemplateId"]).to_owned();
    let from_template = host.ec2(&[
        "run-instances",
        "--launch-template",
        "LaunchTemplateName=small",
        "--count",
        "1",
    ]);
    assert_eq!(from_template["Instances"][0]["InstanceType"], "t3.nano");
    assert_eq!(from_template["Instances"][0]["KeyName"], "deploy");
    let templated = s(&from_template["Instances"][0]["InstanceId"]).to_owned();
    let versions = host.ec2(&[
        "describe-launch-template-versions",
        "--launch-template-id",
        &template,
    ]);
    assert_eq!(
        versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"],
        ami.as_str()
    );
    host.ec2(&["terminate-instances", "--instance-ids", &templated]);
    host.ec2(&["delete-launch-template", "--launch-template-id", &template]);

    // Start (the VMM fails again: stopped), tags, an address, console.
    let started = host.ec2(&["start-instances", "--instance-ids", &instance]);
    assert_eq!(
        started["StartingInstances"][0]["PreviousState"]["Name"],
        "stopped"
    );
    host.ec2(&["wait", "instance-stopped", "--instance-ids", &instance]);
    host.ec2(&[
        "create-tags",
        "--resources",
        &vpc,
        &instance,
        "--tags",
        "Key=team,Value=blue",
    ]);
    let tagged = host.ec2(&["describe-tags", "--filters", "Name=key,Values=team"]);
    let mut resources = ids(&tagged["Tags"], "ResourceId");
    resources.sort();
    let mut want = vec![vpc.clone(), instance.clone()];
    want.sort();
    assert_eq!(resources, want);
    host.ec2(&["delete-tags", "--resources", &vpc, "--tags", "Key=team"]);
    let tagged = host.ec2(&["describe-tags", "--filters", "Name=key,Values=team"]);
    assert_eq!(
        ids(&tagged["Tags"], "ResourceId"),
        std::slice::from_ref(&instance)
    );
    assert_eq!(tagged["Tags"][0]["ResourceType"], "instance");

    let eip = host.ec2(&["allocate-address", "--domain", "vpc"]);
    let alloc = s(&eip["AllocationId"]).to_owned();
    let assoc = host.ec2(&[
        "associate-address",
        "--allocation-id",
        &alloc,
        "--instance-id",
        &instance,
    ]);
    let assoc = s(&assoc["AssociationId"]).to_owned();
    let addresses = host.ec2(&["describe-addresses", "--allocation-ids", &alloc]);
    assert_eq!(addresses["Addresses"][0]["InstanceId"], instance.as_str());
    assert_eq!(addresses["Addresses"][0]["PublicIp"], eip["PublicIp"]);
    host.ec2(&["disassociate-address", "--association-id", &assoc]);
    host.ec2(&["release-address", "--allocation-id", &alloc]);
    assert_eq!(
        host.ec2(&["describe-addresses"])["Addresses"],
        serde_json::json!([])
    );
    let console = host.ec2(&["get-console-output", "--instance-id", &instance]);
    assert_eq!(console["InstanceId"], instance.as_str());

    // Terminate, and take the network down again.
    let gone = host.ec2(&["terminate-instances", "--instance-ids", &instance]);
    assert_eq!(
        gone["TerminatingInstances"][0]["PreviousState"]["Name"],
        "stopped"
    );
    host.ec2(&["wait", "instance-terminated", "--instance-ids", &instance]);
    host.ec2(&[
        "delete-route",
        "--route-table-id",
        &rtb,
        "--destination-cidr-block",
        "0.0.0.0/0",
    ]);
    host.ec2(&[
        "disassociate-route-table",
        "--association-id",
        &format!("rtbassoc-{}", &public["subnet-".len()..]),
    ]);
    host.ec2(&["delete-route-table", "--route-table-id", &rtb]);
    host.ec2(&[
        "detach-internet-gateway",
        "--internet-gateway-id",
        &igw,
        "--vpc-id",
        &vpc,
    ]);
    host.ec2(&["delete-internet-gateway", "--internet-gateway-id", &igw]);
    host.ec2(&["delete-security-group", "--group-id", &sg]);
    host.ec2(&["delete-subnet", "--subnet-id", &public]);
    host.ec2(&["delete-subnet", "--subnet-id", &private]);
    host.ec2(&["delete-vpc", "--vpc-id", &vpc]);
    // What is left is the default VPC the launch from the template, which
    // named no subnet, went to.
    let left = host.ec2(&["describe-vpcs"])["Vpcs"].clone();
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["IsDefault"], true, "{left}");
}

#[test]
fn bad_requests_get_ec2_error_codes() {
    let host = Host::start("us-east-1");
    let unknown_vpc = "vpc-0000000000000000a";
    let vpc = host.ec2(&["create-vpc", "--cidr-block", "10.30.0.0/16"]);
    let vpc = s(&vpc["Vpc"]["VpcId"]).to_owned();
    host.ec2(&[
        "create-subnet",
        "--vpc-id",
        &vpc,
        "--cidr-block",
        "10.30.1.0/24",
    ]);
    let sg = host.ec2(&[
        "create-security-group",
        "--group-name",
        "a",
        "--description",
        "a",
        "--vpc-id",
        &vpc,
    ]);
    let sg = s(&sg["GroupId"]).to_owned();
    let ssh = [
        "--group-id",
        &sg,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "10.0.0.0/8",
    ];
    host.ec2(&[&["authorize-security-group-ingress"][..], &ssh].concat());
    let igw = host.ec2(&["create-internet-gateway"]);
    let igw = s(&igw["InternetGateway"]["InternetGatewayId"]).to_owned();
    host.ec2(&[
        "attach-internet-gateway",
        "--internet-gateway-id",
        &igw,
        "--vpc-id",
        &vpc,
    ]);
    host.ec2(&["create-key-pair", "--key-name", "k"]);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["describe-vpcs", "--vpc-ids", unknown_vpc],
            "InvalidVpcID.NotFound",
        ),
        (
            vec![
                "create-subnet",
                "--vpc-id",
                unknown_vpc,
                "--cidr-block",
                "10.0.0.0/24",
            ],
            "InvalidVpcID.NotFound",
        ),
        (
            vec!["delete-subnet", "--subnet-id", "subnet-0000000000000000a"],
            "InvalidSubnetID.NotFound",
        ),
        (
            vec![
                "terminate-instances",
                "--instance-ids",
                "i-0000000000000000a",
            ],
            "InvalidInstanceID.NotFound",
        ),
        (
            vec![
                "delete-security-group",
                "--group-id",
                "sg-0000000000000000a",
            ],
            "InvalidGroup.NotFound",
        ),
        (
            vec![
                "create-subnet",
                "--vpc-id",
                &vpc,
                "--cidr-block",
                "10.30.1.128/25",
            ],
            "InvalidSubnet.Conflict",
        ),
        (
            vec![
                "create-subnet",
                "--vpc-id",
                &vpc,
                "--cidr-block",
                "10.31.0.0/24",
            ],
            "InvalidSubnet.Range",
        ),
        (vec!["delete-vpc", "--vpc-id", &vpc], "DependencyViolation"),
        (
            [&["authorize-security-group-ingress"][..], &ssh].concat(),
            "InvalidPermission.Duplicate",
        ),
        (
            vec![
                "revoke-security-group-ingress",
                "--group-id",
                &sg,
                "--protocol",
                "udp",
                "--port",
                "53",
                "--cidr",
                "10.0.0.0/8",
            ],
            "InvalidPermission.NotFound",
        ),
        (
            vec![
                "create-security-group",
                "--group-name",
                "a",
                "--description",
                "b",
                "--vpc-id",
                &vpc,
            ],
            "InvalidGroup.Duplicate",
        ),
        (
            vec!["create-vpc", "--cidr-block", "10.0.0.0/33"],
            "InvalidParameterValue",
        ),
        (
            vec!["create-vpc", "--cidr-block", "10.0.0.0/8"],
            "InvalidVpc.Range",
        ),
        (
            vec!["create-key-pair", "--key-name", "k"],
            "InvalidKeyPair.Duplicate",
        ),
        (
            vec!["describe-vpcs", "--filters", "Name=colour,Values=red"],
            "InvalidParameterValue",
        ),
        (
            vec!["create-vpc", "--cidr-block", "10.40.0.0/16", "--dry-run"],
            "DryRunOperation",
        ),
        (
            vec![
                "attach-internet-gateway",
                "--internet-gateway-id",
                &igw,
                "--vpc-id",
                &vpc,
            ],
            "Resource.AlreadyAssociated",
        ),
        (
            vec!["delete-internet-gateway", "--internet-gateway-id", &igw],
            "DependencyViolation",
        ),
        (
            vec![
                "create-tags",
                "--resources",
                "nonsense",
                "--tags",
                "Key=a,Value=b",
            ],
            "InvalidID",
        ),
        (
            vec![
                "release-address",
                "--allocation-id",
                "eipalloc-0000000000000000a",
            ],
            "InvalidAllocationID.NotFound",
        ),
    ];
    let mut wrong = Vec::new();
    for (args, code) in &cases {
        let got = host.ec2_error(args);
        if got != *code {
            wrong.push(format!("{args:?}: {got}, not {code}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Nothing was made by the dry run.
    assert_eq!(
        host.ec2(&["describe-vpcs"])["Vpcs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// boto3's client, its paginator over NextToken, and the HTTP status
/// of an error.
#[test]
fn boto3_pages_describe_instances_and_sees_http_400() {
    let host = Host::start("ap-northeast-2");
    let ami = image(&host);
    let script = r#"
import json, os, boto3, botocore.exceptions
ec2 = boto3.client("ec2", endpoint_url=os.environ["GUREUM_ENDPOINT"])
out = {}
ran = ec2.run_instances(ImageId=os.environ["AMI"], MinCount=3, MaxCount=3,
    TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "b"}]}])
out["ran"] = sorted(i["InstanceId"] for i in ran["Instances"])
pages = ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 2})
out["pages"] = [[i["InstanceId"] for r in p["Reservations"] for i in r["Instances"]] for p in pages]
out["regions"] = [r["RegionName"] for r in ec2.describe_regions()["Regions"]]
out["zones"] = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
types = ec2.describe_instance_types(InstanceTypes=["t3.micro"])["InstanceTypes"]
out["t3.micro"] = [types[0]["VCpuInfo"]["DefaultVCpus"], types[0]["MemoryInfo"]["SizeInMiB"]]
try:
    ec2.delete_vpc(VpcId="vpc-0000000000000000b")
except botocore.exceptions.ClientError as e:
    out["error"] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
print(json.dumps(out))
"#;
    let out = host
        .tool("python")
        .args(["-c", script])
        .env("AMI", &ami)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.daemon_log()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pages = v["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2, "{v}");
    let mut seen: Vec<String> = pages.iter().flat_map(ids_of).collect();
    seen.sort();
    assert_eq!(Value::from(seen), v["ran"]);
    assert_eq!(v["regions"], serde_json::json!(["ap-northeast-2"]));
    assert_eq!(v["zones"], serde_json::json!(["local-1a"]));
    assert_eq!(v["t3.micro"], serde_json::json!([2, 1024]));
    assert_eq!(
        v["error"],
        serde_json::json!(["InvalidVpcID.NotFound", 400])
    );
}

fn ids_of(page: &Value) -> Vec<String> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|i| s(i).to_owned())
        .collect()
}

/// User data and metadata options through RunInstances, launch templates,
/// DescribeInstanceAttribute, DescribeInstances and
/// ModifyInstanceMetadataOptions, and `gureum` reading the same store.
#[test]
fn user_data_and_metadata_options_through_the_aws_cli() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let host = Host::start("eu-west-1");
    let ami = image(&host);
    let user_data_of = |id: &str| {
        host.ec2(&[
            "describe-instance-attribute",
            "--instance-id",
            id,
            "--attribute",
            "userData",
        ])
    };
    let script = "#!/bin/sh\necho hello from user data\n";
    let file = host.work.path().join("user-data.sh");
    std::fs::write(&file, script).unwrap();
    let run = host.ec2(&[
        "run-instances",
        "--image-id",
        &ami,
        "--user-data",
        &format!("file://{}", file.display()),
        "--metadata-options",
        "HttpTokens=required,HttpPutResponseHopLimit=2",
    ]);
    let instance = s(&run["Instances"][0]["InstanceId"]).to_owned();
    let options = &run["Instances"][0]["MetadataOptions"];
    assert_eq!(options["HttpTokens"], "required");
    assert_eq!(options["HttpPutResponseHopLimit"], 2);
    assert_eq!(options["HttpEndpoint"], "enabled");
    assert_eq!(options["InstanceMetadataTags"], "disabled");
    let attribute = user_data_of(&instance);
    assert_eq!(attribute["InstanceId"], instance.as_str());
    let value = s(&attribute["UserData"]["Value"]);
    assert_eq!(b64.decode(value).unwrap(), script.as_bytes());
    // gureum shows it the same way.
    assert_eq!(
        host.ok(&[
            "instance",
            "describe",
            &instance,
            "--attribute",
            "user-data"
        ]),
        value
    );

    let modified = host.ec2(&[
        "modify-instance-metadata-options",
        "--instance-id",
        &instance,
        "--http-endpoint",
        "disabled",
        "--instance-metadata-tags",
        "enabled",
    ]);
    let now = &modified["InstanceMetadataOptions"];
    assert_eq!(now["HttpEndpoint"], "disabled");
    assert_eq!(now["InstanceMetadataTags"], "enabled");
    assert_eq!(now["HttpTokens"], "required", "the others stay");
    let described = host.ec2(&["describe-instances", "--instance-ids", &instance]);
    let options = &described["Reservations"][0]["Instances"][0]["MetadataOptions"];
    assert_eq!(options["HttpEndpoint"], "disabled");
    assert_eq!(options["HttpPutResponseHopLimit"], 2);

    // A template's user data and options reach its instances; the run's
    // own options go over the template's.
    let data = serde_json::json!({
        "ImageId": ami,
        "UserData": b64.encode("#cloud-config\n"),
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 3},
    });
    host.ec2(&[
        "create-launch-template",
        "--launch-template-name",
        "with-data",
        "--launch-template-data",
        &data.to_string(),
    ]);
    let templated = host.ec2(&[
        "run-instances",
        "--launch-template",
        "LaunchTemplateName=with-data",
        "--metadata-options",
        "HttpPutResponseHopLimit=5",
    ]);
    let options = &templated["Instances"][0]["MetadataOptions"];
    assert_eq!(options["HttpTokens"], "required");
    assert_eq!(options["HttpPutResponseHopLimit"], 5);
    let templated = s(&templated["Instances"][0]["InstanceId"]).to_owned();
    let attribute = user_data_of(&templated);
    assert_eq!(
        b64.decode(s(&attribute["UserData"]["Value"])).unwrap(),
        b"#cloud-config\n"
    );

    // A template's CPU options are kept and shown as EC2 shows them.
    let data = serde_json::json!({
        "ImageId": ami,
        "InstanceType": "c8i.large",
        "CpuOptions": {"NestedVirtualization": "enabled"},
    });
    host.ec2(&[
        "create-launch-template",
        "--launch-template-name",
        "nested",
        "--launch-template-data",
        &data.to_string(),
    ]);
    let versions = host.ec2(&[
        "describe-launch-template-versions",
        "--launch-template-name",
        "nested",
    ]);
    assert_eq!(
        versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]["CpuOptions"]["NestedVirtualization"],
        "enabled",
        "{versions}"
    );

    // A template's shutdown behavior too; its instances take it unless
    // the run names its own.
    let data = serde_json::json!({
        "ImageId": ami,
        "InstanceInitiatedShutdownBehavior": "terminate",
    });
    host.ec2(&[
        "create-launch-template",
        "--launch-template-name",
        "throwaway",
        "--launch-template-data",
        &data.to_string(),
    ]);
    let versions = host.ec2(&[
        "describe-launch-template-versions",
        "--launch-template-name",
        "throwaway",
    ]);
    assert_eq!(
        versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]["InstanceInitiatedShutdownBehavior"],
        "terminate",
        "{versions}"
    );
    let behavior_of = |extra: &[&str]| {
        let run = host.ec2(
            &[
                &[
                    "run-instances",
                    "--launch-template",
                    "LaunchTemplateName=throwaway",
                ][..],
                extra,
            ]
            .concat(),
        );
        let id = s(&run["Instances"][0]["InstanceId"]).to_owned();
        let attribute = host.ec2(&[
            "describe-instance-attribute",
            "--instance-id",
            &id,
            "--attribute",
            "instanceInitiatedShutdownBehavior",
        ]);
        attribute["InstanceInitiatedShutdownBehavior"]["Value"].clone()
    };
    assert_eq!(behavior_of(&[]), "terminate");
    assert_eq!(
        behavior_of(&["--instance-initiated-shutdown-behavior", "stop"]),
        "stop"
    );
    assert_eq!(
        host.ec2_error(&[
            "create-launch-template",
            "--launch-template-name",
            "bad",
            "--launch-template-data",
            &serde_json::json!({"ImageId": ami, "InstanceInitiatedShutdownBehavior": "hibernate"})
                .to_string(),
        ]),
        "InvalidParameterValue"
    );

    // EC2's limits: 16 KiB of user data, hop limits 1 to 64.
    let big = host.work.path().join("big");
    std::fs::write(&big, vec![b'#'; 16 * 1024 + 1]).unwrap();
    let big_arg = format!("file://{}", big.display());
    assert_eq!(
        host.ec2_error(&["run-instances", "--image-id", &ami, "--user-data", &big_arg]),
        "InvalidParameterValue"
    );
    assert_eq!(
        host.ec2_error(&[
            "modify-instance-metadata-options",
            "--instance-id",
            &instance,
            "--http-put-response-hop-limit",
            "65",
        ]),
        "InvalidParameterValue"
    );
    let refused = host.fails_with(
        3,
        &["run", "--image", &ami, "--user-data", big.to_str().unwrap()],
    );
    assert!(
        refused.contains(big.to_str().unwrap()) && refused.contains("16384"),
        "{refused}"
    );
    let missing = host.fails_with(3, &["run", "--image", &ami, "--user-data", "/nonexistent"]);
    assert!(
        missing.contains("cannot read the user data file /nonexistent"),
        "{missing}"
    );
    // The table shows its size, not the data.
    let table = host.ok(&["instance", "describe", &instance]);
    assert!(
        table.contains(&format!("{} bytes", script.len())),
        "{table}"
    );
    assert!(!table.contains(value), "{table}");
    // No user data: the attribute is there, empty.
    let plain = host.ec2(&["run-instances", "--image-id", &ami]);
    // No SubnetId: the default VPC's default subnet, as EC2's, made by
    // the first such launch.
    let vpcs =
        host.ec2(&["describe-vpcs", "--filters", "Name=is-default,Values=true"])["Vpcs"].clone();
    assert_eq!(vpcs.as_array().unwrap().len(), 1, "{vpcs}");
    assert_eq!(vpcs[0]["IsDefault"], true);
    assert_eq!(vpcs[0]["CidrBlock"], "172.31.0.0/16");
    let subnets = host.ec2(&[
        "describe-subnets",
        "--filters",
        "Name=default-for-az,Values=true",
    ])["Subnets"]
        .clone();
    assert_eq!(subnets.as_array().unwrap().len(), 1, "{subnets}");
    assert_eq!(subnets[0]["DefaultForAz"], true);
    // As AWS makes it: its instances get public addresses.
    assert_eq!(subnets[0]["MapPublicIpOnLaunch"], true);
    assert_eq!(subnets[0]["VpcId"], vpcs[0]["VpcId"]);
    assert_eq!(plain["Instances"][0]["SubnetId"], subnets[0]["SubnetId"]);
    public_addresses_at_launch(&host, &ami, s(&subnets[0]["SubnetId"]));
    assert_eq!(
        host.ec2_error(&["create-default-vpc"]),
        "DefaultVpcAlreadyExists"
    );
    let plain = s(&plain["Instances"][0]["InstanceId"]).to_owned();
    let attribute = user_data_of(&plain);
    assert!(attribute["UserData"].get("Value").is_none(), "{attribute}");

    // What a shutdown from inside the guest does, as EC2 names it.
    let halting = host.ec2(&[
        "run-instances",
        "--image-id",
        &ami,
        "--instance-initiated-shutdown-behavior",
        "terminate",
    ]);
    let halting = s(&halting["Instances"][0]["InstanceId"]).to_owned();
    let behavior = host.ec2(&[
        "describe-instance-attribute",
        "--instance-id",
        &halting,
        "--attribute",
        "instanceInitiatedShutdownBehavior",
    ]);
    assert_eq!(
        behavior["InstanceInitiatedShutdownBehavior"]["Value"], "terminate",
        "{behavior}"
    );
    assert_eq!(
        host.ec2_error(&[
            "run-instances",
            "--image-id",
            &ami,
            "--instance-initiated-shutdown-behavior",
            "hibernate",
        ]),
        "InvalidParameterValue"
    );

    // CPU options change on a stopped instance, nested virtualization
    // only on the types that offer it (the stand-in kernel stops it).
    host.ok(&[
        "instance",
        "wait",
        &plain,
        "--state",
        "stopped",
        "--timeout",
        "60",
    ]);
    let cpu = host.ec2(&[
        "modify-instance-cpu-options",
        "--instance-id",
        &plain,
        "--nested-virtualization",
        "disabled",
    ]);
    assert_eq!(cpu["InstanceId"], plain.as_str());
    assert_eq!(cpu["NestedVirtualization"], "disabled");
    let refused = host.ec2_error(&[
        "modify-instance-cpu-options",
        "--instance-id",
        &plain,
        "--nested-virtualization",
        "enabled",
    ]);
    assert_eq!(refused, "InvalidParameterValue");
}

/// Instance `reference`'s placement as `gureum instance describe` shows it.
fn placement(host: &Host, reference: &str) -> Value {
    host.json(&["instance", "describe", reference])[0]["placement"].clone()
}

/// MapPublicIpOnLaunch through ModifySubnetAttribute and DescribeSubnets,
/// and AssociatePublicIpAddress as the aws CLI sends it (on the primary
/// network interface, with the subnet and groups moved there).
fn public_addresses_at_launch(host: &Host, ami: &str, default_subnet: &str) {
    let map = |subnet: &str| {
        host.ec2(&["describe-subnets", "--subnet-ids", subnet])["Subnets"][0]["MapPublicIpOnLaunch"]
            .clone()
    };
    let set_map = |flag: &str| {
        host.ec2(&[
            "modify-subnet-attribute",
            "--subnet-id",
            default_subnet,
            flag,
        ]);
    };
    // An instance launched into the default subnet with `flag`: its ID.
    let launch = |flag: &str| {
        let launched = host.ec2(&[
            "run-instances",
            "--image-id",
            ami,
            "--subnet-id",
            default_subnet,
            flag,
        ]);
        s(&launched["Instances"][0]["InstanceId"]).to_owned()
    };
    set_map("--no-map-public-ip-on-launch");
    assert_eq!(map(default_subnet), false);
    let filtered = host.ec2(&[
        "describe-subnets",
        "--filters",
        "Name=map-public-ip-on-launch,Values=false",
    ]);
    assert_eq!(ids(&filtered["Subnets"], "SubnetId"), [default_subnet]);
    // Off in the subnet, asked for by the launch.
    let asked = launch("--associate-public-ip-address");
    assert_eq!(placement(host, &asked)["auto_public_ip"], true);
    set_map("--map-public-ip-on-launch");
    assert_eq!(map(default_subnet), true);
    // On in the subnet, refused by the launch.
    let refused = launch("--no-associate-public-ip-address");
    assert_eq!(placement(host, &refused)["auto_public_ip"], false);
    // The stand-in kernel stopped both: their addresses went back.
    for id in [&asked, &refused] {
        host.ok(&[
            "instance",
            "wait",
            id,
            "--state",
            "stopped",
            "--timeout",
            "60",
        ]);
        assert_eq!(placement(host, id)["public_ip"], Value::Null);
        let shown = host.ec2(&["describe-instances", "--instance-ids", id]);
        let instance = &shown["Reservations"][0]["Instances"][0];
        assert!(instance.get("PublicIpAddress").is_none(), "{instance}");
    }
    // A created subnet maps none; asking in a VPC with no gateway is an
    // error, not an address that leads nowhere.
    let vpc = host.ec2(&["create-vpc", "--cidr-block", "10.9.0.0/16"])["Vpc"]["VpcId"].clone();
    let subnet = host.ec2(&[
        "create-subnet",
        "--vpc-id",
        s(&vpc),
        "--cidr-block",
        "10.9.1.0/24",
    ])["Subnet"]
        .clone();
    assert_eq!(subnet["MapPublicIpOnLaunch"], false);
    assert_eq!(
        host.ec2_error(&[
            "run-instances",
            "--image-id",
            ami,
            "--subnet-id",
            s(&subnet["SubnetId"]),
            "--associate-public-ip-address",
        ]),
        "Gateway.NotAttached"
    );
    assert_eq!(
        host.ec2_error(&[
            "modify-subnet-attribute",
            "--subnet-id",
            s(&subnet["SubnetId"]),
            "--assign-ipv6-address-on-creation",
        ]),
        "Unsupported"
    );
    for id in [&asked, &refused] {
        host.ec2(&["terminate-instances", "--instance-ids", id]);
    }
    host.ec2(&["delete-subnet", "--subnet-id", s(&subnet["SubnetId"])]);
    host.ec2(&["delete-vpc", "--vpc-id", s(&vpc)]);
}
