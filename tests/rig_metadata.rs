//! End-to-end: the instance metadata service with a real guest on real
//! KVM, inside the nested KVM rig (see scripts/rig/run). A busybox
//! instance whose metadata options require tokens does the IMDSv2 flow
//! from its init (tests/rig/metadata.sh, scenario "imds" of
//! images/busybox/init) and prints what the service told it; it got its
//! address from the daemon's DHCP server and resolves its own name.

mod common;

common::rig_run!(
    "tests/rig/metadata.sh",
    &["--timeout", "900", "--with-tools", "ip nft dnsmasq"]
);

#[test]
fn a_guest_reads_its_own_id_and_user_data_with_an_imdsv2_token() {
    let case = rig().passed("imds");
    let one = |key: &str| {
        let values = case.values(key);
        assert_eq!(values.len(), 1, "{key}:\n{}", case.output);
        values.first().copied().unwrap_or_default()
    };
    let store_id = one("store_id");
    assert!(store_id.starts_with("i-"), "{}", case.output);
    assert_eq!(one("ID"), store_id, "{}", case.output);
    assert_eq!(one("DOC-ID"), store_id, "{}", case.output);
    assert_eq!(one("USER-DATA"), "hello-from-user-data", "{}", case.output);
    assert_eq!(one("NO-TOKEN"), "refused", "{}", case.output);
}

#[test]
fn a_guest_takes_its_address_by_dhcp_and_resolves_its_private_name() {
    let case = rig().passed("imds");
    let one = |key: &str| case.values(key).first().copied().unwrap_or_default();
    let address = one("store_ip");
    assert!(address.starts_with("10.0.1."), "{}", case.output);
    assert_eq!(
        one("lease"),
        format!("{address}/24 gw 10.0.1.1 by dhcp"),
        "{}",
        case.output
    );
    let name = format!("ip-{}", address.replace('.', "-"));
    assert_eq!(one("HOSTNAME"), name, "{}", case.output);
    assert_eq!(one("DNS"), address, "{}", case.output);
}

/// `gureum run` with no network flags: the default VPC, whose gateway
/// reaches the world through the host (L1), whose resolver forwards to
/// the host's; the host reaches the instance at the public address it was
/// given at launch, then at its elastic IP, which replaces that one; the
/// uplink turned off (a daemon started with `GUREUM_UPLINK=none`) cuts
/// all of it.
#[test]
fn the_default_vpc_reaches_the_world_through_the_host_and_the_host_its_public_addresses() {
    let case = rig().passed_with(
        "default-vpc",
        &[
            // The ISP's DNS server, through the VPC resolver.
            ("resolved", "192.0.2.254"),
            // The ISP sees L1's uplink address (masqueraded).
            ("via_uplink", "192.0.2.1"),
            // L1 reaches the address given at launch, then the elastic
            // IP, through the uplink's veth.
            ("host_to_public_seen_as", "169.254.77.1"),
            ("host_to_eip_seen_as", "169.254.77.1"),
            // The elastic IP replaced the address given at launch.
            ("public_ip_with_eip", ""),
            ("host_to_released", "FAILED"),
        ],
    );
    let one = |key: &str| case.values(key).first().copied().unwrap_or_default();
    let address = one("default_ip");
    assert!(address.starts_with("172.31."), "{}", case.output);
    // From the pool (203.0.113.0/24), and the guest sees it as EC2's do.
    let public = one("public_ip");
    assert!(public.starts_with("203.0.113."), "{}", case.output);
    assert_eq!(one("imds_public_ipv4"), public, "{}", case.output);
    let eip = one("eip");
    assert!(
        eip.starts_with("203.0.113.") && eip != public,
        "{}",
        case.output
    );
    assert_eq!(one("imds_public_ipv4_with_eip"), eip, "{}", case.output);
    assert_eq!(
        one("default_lease"),
        format!("{address}/20 gw 172.31.0.1 by dhcp"),
        "{}",
        case.output
    );
}

#[test]
fn the_uplink_turned_off_cuts_the_way_out_the_way_in_and_resolution() {
    rig().passed_with(
        "uplink-off",
        &[
            ("uplink_off", "FAILED"),
            ("uplink_off_host_to_eip", "FAILED"),
            ("uplink_off_resolved", "FAILED"),
        ],
    );
}

/// Three busybox web servers behind an internet-facing network load
/// balancer, asked from the fake internet: spread over all three; one
/// whose VMM is stopped leaves the rotation and no request fails after;
/// started again it comes back; a security group that does not admit
/// the balancer makes its target unhealthy.
#[test]
fn an_internet_facing_nlb_spreads_requests_over_healthy_busybox_servers_only() {
    let case = rig().passed("nlb");
    let one = |key: &str| case.values(key).first().copied().unwrap_or_default();
    let servers: Vec<&str> = one("servers").split_whitespace().collect();
    assert_eq!(servers.len(), 3, "{}", case.output);
    assert!(
        one("lb_public").starts_with("203.0.113."),
        "{}",
        case.output
    );
    assert_eq!(one("lb_name_resolved"), one("lb_public"), "{}", case.output);
    let answered = |key: &str| one(key).split_whitespace().collect::<Vec<_>>();
    assert_eq!(answered("spread_all"), servers, "{}", case.output);
    // Client IP preservation: the server sees the ISP's own address.
    assert_eq!(one("client_seen_as"), "192.0.2.254", "{}", case.output);
    let without = |ip: &str| {
        let mut rest = servers.clone();
        rest.retain(|s| *s != ip);
        rest
    };
    // Once web-2 is unhealthy no request fails: the other two answer all.
    assert_eq!(
        answered("spread_without_web2"),
        without(one("web2_ip")),
        "{}",
        case.output
    );
    assert_eq!(answered("spread_back"), servers, "{}", case.output);
    assert_eq!(
        answered("spread_fenced"),
        without(one("web3_ip")),
        "{}",
        case.output
    );
    let ms: u64 = one("unhealthy_after_ms").parse().unwrap_or(u64::MAX);
    common::say(&format!(
        "nlb: a stopped target left the rotation after {ms} ms (interval 2 s x threshold 2)"
    ));
}

/// An internet-facing application load balancer: its listener's default
/// action sends to group "a" (web, web-2), its rule `/b/*` to group "b"
/// (web-3), and the servers see the client in `X-Forwarded-For`.
#[test]
fn an_application_load_balancer_routes_paths_to_their_target_groups() {
    let nlb = rig().passed("nlb");
    let case = rig().passed("alb");
    let one = |key: &str| case.values(key).first().copied().unwrap_or_default();
    let answered = |key: &str| one(key).split_whitespace().collect::<Vec<_>>();
    let servers = nlb.values("servers").first().copied().unwrap_or_default();
    let web3 = nlb.values("web3_ip").first().copied().unwrap_or_default();
    let mut group_a: Vec<&str> = servers.split_whitespace().collect();
    group_a.retain(|s| *s != web3);
    assert!(
        one("app_public").starts_with("203.0.113."),
        "{}",
        case.output
    );
    assert_eq!(answered("alb_default"), group_a, "{}", case.output);
    assert_eq!(answered("alb_rule_b"), [web3], "{}", case.output);
    assert_eq!(answered("alb_xff"), ["192.0.2.254"], "{}", case.output);
}

/// An Auto Scaling group of 2 over two subnets of the default VPC, from
/// a launch template, under the daemon: one member in each subnet; a
/// member whose VMM is killed is replaced, in the group and its target
/// group; its desired capacity grows and shrinks it; a target-tracking
/// policy on CPU scales it out to 4 under a load in its guests and back
/// to 2 when idle; a forced delete takes its instances.
#[test]
fn an_auto_scaling_group_replaces_a_killed_instance_and_follows_its_capacity_and_load() {
    let case = rig().passed_with(
        "asg",
        &[
            ("subnets_used", "2"),
            ("members_after", "2 kept=yes"),
            ("grown_to", "3"),
            ("shrunk_to", "2"),
            ("scaled_out_to", "4"),
            ("scaled_in_to", "2"),
        ],
    );
    let one = |key: &str| case.values(key).first().copied().unwrap_or_default();
    assert_ne!(one("victim_vmm"), "none", "{}", case.output);
    assert!(
        ["shutting-down", "terminated"].contains(&one("victim_state")),
        "{}",
        case.output
    );
    common::say(&format!(
        "asg: a killed member was replaced (running, registered) after {} s; a CPU load \
         scaled the group out to 4 in {} s, idleness back to 2 in {} s (CPU figures every 10 s)",
        one("replaced_after_s"),
        one("scaled_out_after_s"),
        one("scaled_in_after_s")
    ));
}
