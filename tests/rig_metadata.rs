//! End-to-end: the instance metadata service with a real guest on real
//! KVM, inside the nested KVM rig (see scripts/rig/run). A busybox
//! instance whose metadata options require tokens does the IMDSv2 flow
//! from its init (tests/rig/metadata.sh, scenario "imds" of
//! images/busybox/init) and prints what the service told it; it got its
//! address from the daemon's DHCP server and resolves its own name.

mod common;

common::rig_run!(
    "tests/rig/metadata.sh",
    &["--timeout", "600", "--with-tools", "ip nft dnsmasq"]
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
/// the host's, and whose elastic IP the host reaches; the uplink turned
/// off cuts all of it.
#[test]
fn the_default_vpc_reaches_the_world_through_the_host_and_the_host_its_elastic_ip() {
    let case = rig().passed_with(
        "default-vpc",
        &[
            // The ISP's DNS server, through the VPC resolver.
            ("resolved", "192.0.2.254"),
            // The ISP sees L1's uplink address (masqueraded).
            ("via_uplink", "192.0.2.1"),
            // L1 reaches the elastic IP through the uplink's veth.
            ("host_to_eip_seen_as", "169.254.77.1"),
            ("uplink_off", "FAILED"),
            ("uplink_off_host_to_eip", "FAILED"),
            ("uplink_off_resolved", "FAILED"),
        ],
    );
    let one = |key: &str| case.values(key).first().copied().unwrap_or_default();
    let address = one("default_ip");
    assert!(address.starts_with("172.31."), "{}", case.output);
    assert_eq!(
        one("default_lease"),
        format!("{address}/20 gw 172.31.0.1 by dhcp"),
        "{}",
        case.output
    );
}
