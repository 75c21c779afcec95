//! End-to-end: VPC networking with real guests on real KVM, inside the
//! nested KVM rig (see scripts/rig/run). Busybox instances in two subnets
//! of a VPC, security groups, an internet gateway to a fake internet (a
//! namespace the test makes on gureum's public side), an elastic IP, a
//! second VPC with the same block, anti-spoofing, and a teardown that
//! leaves nothing behind. (The uplink through the host is proven with the
//! default VPC and the daemon in tests/rig_metadata.rs.)
//!
//! One rig run executes every case of tests/rig/vpc.sh in order; each
//! test below asserts on its own case. The guests' answers are the client
//! address the server saw, or FAILED when no connection was made.

#![allow(clippy::indexing_slicing)]

mod common;

use common::Case;

common::rig_run!(
    "tests/rig/vpc.sh",
    &["--timeout", "1200", "--with-tools", "ip nft"]
);

fn passed_with(name: &str, pairs: &[(&str, &str)]) -> &'static Case {
    rig().passed_with(name, pairs)
}

/// The one value of `key` in case `case`.
fn value<'a>(case: &'a Case, key: &str) -> &'a str {
    let values = case.values(key);
    assert_eq!(values.len(), 1, "{key}:\n{}", case.output);
    values[0]
}

#[test]
fn instances_in_one_subnet_and_across_subnets_reach_each_other() {
    passed_with("setup", &[]);
    // c1's group has no inbound rule: the answer is let in as the reply
    // to c1's own connection (stateful).
    passed_with("same-subnet", &[("same_subnet", "10.0.1.11")]);
    passed_with("cross-subnet", &[("cross_subnet", "10.0.2.10")]);
}

#[test]
fn an_instance_sees_its_id_and_type_in_its_smbios_tables() {
    passed_with(
        "identity",
        &[
            ("asset_tag_is_id", "yes"),
            ("product_name", "t2.nano"),
            ("vendor", "Amazon EC2"),
        ],
    );
}

#[test]
fn a_port_without_a_rule_does_not_connect() {
    passed_with(
        "no-rule",
        &[("no_rule_port", "FAILED"), ("no_inbound", "FAILED")],
    );
}

#[test]
fn a_rule_naming_a_group_admits_exactly_its_members() {
    passed_with(
        "source-group",
        &[("member", "10.0.1.11"), ("non_member", "FAILED")],
    );
}

#[test]
fn changing_a_running_instances_groups_applies_at_once() {
    passed_with(
        "modify-groups",
        &[("moved_out", "FAILED"), ("moved_back", "10.0.1.11")],
    );
}

#[test]
fn rule_changes_apply_to_running_instances() {
    passed_with(
        "rule-change",
        &[("after_authorize", "10.0.1.10"), ("after_revoke", "FAILED")],
    );
}

#[test]
fn an_outbound_deny_works() {
    passed_with(
        "egress",
        &[("egress_denied", "FAILED"), ("egress_allowed", "10.0.2.10")],
    );
}

/// Two guests on one bridge each download the other's random data at
/// the same time (4 MiB each way: the rig's nested networking is slow,
/// and at 16 its guests crash too often, see tests/rig/vpc.sh); both
/// copies have their source's checksum.
#[test]
fn a_stream_each_way_arrives_intact() {
    let case = passed_with("stream", &[("stream_mib", "64")]);
    common::say(&format!(
        "rig_vpc: stream: 64 MiB each way in {} s (L1 time)",
        value(case, "stream_seconds")
    ));
}

#[test]
fn forged_source_addresses_get_nothing_through() {
    passed_with(
        "spoof",
        &[
            ("own", "ok"),
            ("forged_ip", "FAILED"),
            ("forged_ip_unchecked", "ok"),
            ("forged_ip_checked_again", "FAILED"),
            ("forged_mac", "FAILED"),
            ("restored", "ok"),
        ],
    );
}

#[test]
fn only_a_subnet_routed_to_the_gateway_reaches_the_internet_behind_nat() {
    let case = passed_with(
        "internet",
        &[("before_route", "FAILED"), ("private_subnet", "FAILED")],
    );
    let gateway = value(case, "gateway_ip");
    assert!(gateway.starts_with("203.0.113."), "{}", case.output);
    assert_eq!(value(case, "via_gateway"), gateway, "{}", case.output);
}

#[test]
fn an_elastic_ip_maps_both_ways_and_survives_stop_and_start() {
    let case = passed_with(
        "eip",
        &[
            ("inbound_seen_as", "198.51.100.2"),
            ("after_restart_seen_as", "198.51.100.2"),
        ],
    );
    let eip = value(case, "eip");
    assert_eq!(value(case, "outbound_from_eip"), eip, "{}", case.output);
}

#[test]
fn two_vpcs_with_the_same_block_work_and_are_isolated() {
    let case = passed_with("two-vpcs", &[("w_to_v", "FAILED")]);
    let (w, v) = (value(case, "w_internet"), value(case, "v_internet"));
    assert!(
        w.starts_with("203.0.113.") && v.starts_with("203.0.113."),
        "{}",
        case.output
    );
    assert_ne!(w, v, "each VPC leaves by its own gateway:\n{}", case.output);
}

#[test]
fn deleting_everything_leaves_nothing_of_gureum() {
    let case = passed_with("teardown", &[]);
    assert!(
        case.output
            .contains("Linux and the state directory match the records"),
        "{}",
        case.output
    );
}
