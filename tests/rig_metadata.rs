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
