//! The metadata tree of one instance, as EC2 serves it under
//! `/latest/`: `meta-data/…`, `user-data` and
//! `dynamic/instance-identity/document`. A directory answers with its
//! entries one per line, subdirectories with a trailing `/`; a file with
//! its contents. Pure: made from `Facts`, read by path.

use super::{Facts, private_name};
use crate::cloud::metadata_options::Switch;

/// A file or a directory of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir(Vec<Entry>),
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    name: String,
    /// How the listing shows it, when not as its name (`0=my-key` for
    /// `public-keys/0/`).
    listed_as: Option<String>,
    node: Node,
}

fn file(name: &str, text: impl ToString) -> Entry {
    Entry {
        name: name.to_owned(),
        listed_as: None,
        node: Node::File(text.to_string().into_bytes()),
    }
}

fn dir(name: &str, entries: Vec<Entry>) -> Entry {
    Entry {
        name: name.to_owned(),
        listed_as: None,
        node: Node::Dir(entries),
    }
}

/// The tree under `/latest/` (or a dated version) for `facts`.
pub fn build(facts: &Facts) -> Node {
    let mut top = vec![
        dir(
            "dynamic",
            vec![dir("instance-identity", vec![identity(facts)])],
        ),
        dir("meta-data", meta_data(facts)),
    ];
    if let Some(data) = &facts.instance.user_data {
        top.push(Entry {
            name: "user-data".into(),
            listed_as: None,
            node: Node::File(data.bytes().to_vec()),
        });
    }
    Node::Dir(top)
}

fn meta_data(facts: &Facts) -> Vec<Entry> {
    let i = &facts.instance;
    let p = &facts.placement;
    let name = private_name(p.private_ip);
    let mac = p.mac.to_string();
    let groups = facts.group_names.join("\n");
    let mut interface = vec![
        file("device-number", 0),
        file("interface-id", format!("eni-{}", id_digits(&i.id))),
        file("local-hostname", &name),
        file("local-ipv4s", p.private_ip),
        file("mac", &mac),
        file("owner-id", &facts.account_id),
        file("security-group-ids", p.security_groups.join("\n")),
        file("security-groups", &groups),
        file("subnet-id", &p.subnet_id),
        file("subnet-ipv4-cidr-block", facts.subnet_cidr),
        file("vpc-id", &p.vpc_id),
        file("vpc-ipv4-cidr-block", facts.vpc_cidr),
        file("vpc-ipv4-cidr-blocks", facts.vpc_cidr),
    ];
    let mut entries = vec![
        file("ami-id", &i.image_id),
        file("ami-launch-index", 0),
        file("hostname", &name),
        file("instance-id", &i.id),
        file("instance-type", &i.instance_type),
        file("local-hostname", &name),
        file("local-ipv4", p.private_ip),
        file("mac", &mac),
        dir(
            "placement",
            vec![
                file("availability-zone", &i.availability_zone),
                file("region", &facts.region),
            ],
        ),
        file("reservation-id", format!("r-{}", id_digits(&i.id))),
        file("security-groups", &groups),
    ];
    if let Some(public) = p.public_address() {
        interface.push(file("public-ipv4s", public));
        entries.push(file("public-ipv4", public));
    }
    interface.sort_by(|a, b| a.name.cmp(&b.name));
    entries.push(dir(
        "network",
        vec![dir(
            "interfaces",
            vec![dir("macs", vec![dir(&mac, interface)])],
        )],
    ));
    if let Some((key_name, public_key)) = &facts.key {
        entries.push(dir(
            "public-keys",
            vec![Entry {
                name: "0".into(),
                listed_as: Some(format!("0={key_name}")),
                node: Node::Dir(vec![file("openssh-key", public_key)]),
            }],
        ));
    }
    if i.metadata_options.instance_metadata_tags == Switch::Enabled {
        // EC2 refuses to serve tags whose keys are not path segments.
        let tags = facts
            .tags
            .iter()
            .filter(|(k, _)| !k.is_empty() && !k.contains('/') && *k != "." && *k != "..")
            .map(|(k, v)| file(k, v))
            .collect();
        entries.push(dir("tags", vec![dir("instance", tags)]));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// The hex digits of an ID (`i-0abc…` → `0abc…`), for IDs derived from it.
fn id_digits(id: &str) -> &str {
    id.split_once('-').map_or(id, |(_, digits)| digits)
}

/// `dynamic/instance-identity/document`, in EC2's shape.
fn identity(facts: &Facts) -> Entry {
    let i = &facts.instance;
    let document = serde_json::json!({
        "accountId": facts.account_id,
        "architecture": "x86_64",
        "availabilityZone": i.availability_zone,
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": i.image_id,
        "instanceId": i.id,
        "instanceType": i.instance_type,
        "kernelId": null,
        "pendingTime": i.launch_time,
        "privateIp": facts.placement.private_ip.to_string(),
        "ramdiskId": null,
        "region": facts.region,
        "version": "2017-09-30",
    });
    let text = serde_json::to_string_pretty(&document).unwrap_or_default();
    file("document", text)
}

/// What `path` (below the version, e.g. `meta-data/local-ipv4`; empty
/// for the top) holds in `root`: a file's bytes or a directory's
/// listing; none if there is nothing there.
pub fn read(root: &Node, path: &str) -> Option<Vec<u8>> {
    let mut node = root;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let Node::Dir(entries) = node else {
            return None;
        };
        node = &entries.iter().find(|e| e.name == part)?.node;
    }
    Some(match node {
        Node::File(bytes) => bytes.clone(),
        Node::Dir(entries) => entries
            .iter()
            .map(|e| match (&e.listed_as, &e.node) {
                (Some(shown), _) => shown.clone(),
                (None, Node::Dir(_)) => format!("{}/", e.name),
                (None, Node::File(_)) => e.name.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::instance::State;
    use crate::cloud::instance::tests::instance;
    use crate::cloud::metadata_options::MetadataOptions;
    use crate::cloud::user_data::UserData;
    use crate::cloud::vpc::port::Placement;
    use crate::host::mac::MacAddr;
    use crate::net::cidr::Ipv4Cidr;
    use std::net::Ipv4Addr;

    fn facts() -> Facts {
        let mut i = instance(State::Running);
        i.key_name = Some("deploy".into());
        Facts {
            instance: i,
            tags: [("Name".to_owned(), "web-1".to_owned())].into(),
            placement: Placement {
                vpc_id: "vpc-0aaaaaaaaaaaaaaaa".into(),
                subnet_id: "subnet-0bbbbbbbbbbbbbbbb".into(),
                private_ip: Ipv4Addr::new(10, 0, 1, 10),
                mac: MacAddr([0x02, 0, 0, 0, 0, 0x0a]),
                tap: "t-0123".into(),
                security_groups: vec!["sg-1".into(), "sg-2".into()],
                source_dest_check: true,
                elastic_ip: None,
                auto_public_ip: false,
                public_ip: None,
            },
            key: Some(("deploy".into(), "ssh-ed25519 AAAA deploy".into())),
            subnet_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 0, 1, 0), 24).unwrap(),
            vpc_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 16).unwrap(),
            group_names: vec!["web".into(), "admin".into()],
            account_id: "123456789012".into(),
            region: "local-1".into(),
        }
    }

    fn text(root: &Node, path: &str) -> String {
        String::from_utf8(read(root, path).unwrap_or_else(|| panic!("{path}: none"))).unwrap()
    }

    #[test]
    fn the_instance_reads_its_own_facts() {
        let root = build(&facts());
        assert_eq!(text(&root, "meta-data/instance-id"), "i-0123456789abcdef0");
        assert_eq!(text(&root, "meta-data/ami-id"), "ami-0123456789abcdef0");
        assert_eq!(text(&root, "meta-data/instance-type"), "t2.micro");
        assert_eq!(text(&root, "meta-data/local-ipv4"), "10.0.1.10");
        assert_eq!(
            text(&root, "meta-data/hostname"),
            "ip-10-0-1-10.ec2.internal"
        );
        assert_eq!(
            text(&root, "meta-data/local-hostname"),
            "ip-10-0-1-10.ec2.internal"
        );
        assert_eq!(text(&root, "meta-data/mac"), "02:00:00:00:00:0a");
        assert_eq!(
            text(&root, "meta-data/placement/availability-zone"),
            "local-1a"
        );
        assert_eq!(text(&root, "meta-data/placement/region"), "local-1");
        assert_eq!(text(&root, "meta-data/security-groups"), "web\nadmin");
        let nic = "meta-data/network/interfaces/macs/02:00:00:00:00:0a/";
        assert_eq!(
            text(&root, &format!("{nic}subnet-id")),
            "subnet-0bbbbbbbbbbbbbbbb"
        );
        assert_eq!(
            text(&root, &format!("{nic}vpc-id")),
            "vpc-0aaaaaaaaaaaaaaaa"
        );
        assert_eq!(
            text(&root, &format!("{nic}subnet-ipv4-cidr-block")),
            "10.0.1.0/24"
        );
        assert_eq!(
            text(&root, &format!("{nic}security-group-ids")),
            "sg-1\nsg-2"
        );
        assert_eq!(text(&root, &format!("{nic}local-ipv4s")), "10.0.1.10");
        assert_eq!(
            text(&root, "meta-data/public-keys/0/openssh-key"),
            "ssh-ed25519 AAAA deploy"
        );
    }

    #[test]
    fn directories_list_as_ec2_lists_them() {
        let root = build(&facts());
        assert_eq!(text(&root, ""), "dynamic/\nmeta-data/");
        let listing = text(&root, "meta-data/");
        assert_eq!(text(&root, "meta-data"), listing);
        let names: Vec<&str> = listing.lines().collect();
        for expected in [
            "ami-id",
            "hostname",
            "instance-id",
            "local-ipv4",
            "mac",
            "network/",
            "placement/",
            "public-keys/",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        assert!(!names.contains(&"public-ipv4"), "no EIP, no public-ipv4");
        assert!(!names.contains(&"tags/"), "tags are off by default");
        assert_eq!(text(&root, "meta-data/public-keys/"), "0=deploy");
        assert_eq!(text(&root, "meta-data/public-keys/0/"), "openssh-key");
        assert_eq!(
            text(&root, "meta-data/network/interfaces/macs/"),
            "02:00:00:00:00:0a/"
        );
        assert!(read(&root, "meta-data/nothing").is_none());
        assert!(read(&root, "meta-data/instance-id/more").is_none());
        assert!(read(&root, "user-data").is_none(), "no user data: 404");
    }

    #[test]
    fn user_data_public_address_and_tags_appear_when_there() {
        let mut f = facts();
        f.instance.user_data = Some(UserData::new(b"#!/bin/sh\necho hi\n".to_vec(), "t").unwrap());
        f.placement.elastic_ip = Some(Ipv4Addr::new(203, 0, 113, 7));
        f.instance.metadata_options = MetadataOptions {
            instance_metadata_tags: Switch::Enabled,
            ..MetadataOptions::default()
        };
        f.tags.insert("a/b".into(), "unservable".into());
        let root = build(&f);
        assert_eq!(text(&root, ""), "dynamic/\nmeta-data/\nuser-data");
        assert_eq!(text(&root, "user-data"), "#!/bin/sh\necho hi\n");
        assert_eq!(text(&root, "meta-data/public-ipv4"), "203.0.113.7");
        assert_eq!(text(&root, "meta-data/tags/instance/"), "Name");
        assert_eq!(text(&root, "meta-data/tags/instance/Name"), "web-1");
    }

    #[test]
    fn an_address_given_at_launch_is_the_public_ipv4() {
        let mut f = facts();
        f.placement.auto_public_ip = true;
        f.placement.public_ip = Some(Ipv4Addr::new(203, 0, 113, 9));
        let root = build(&f);
        assert_eq!(text(&root, "meta-data/public-ipv4"), "203.0.113.9");
        assert_eq!(
            text(
                &root,
                "meta-data/network/interfaces/macs/02:00:00:00:00:0a/public-ipv4s"
            ),
            "203.0.113.9"
        );
    }

    #[test]
    fn the_identity_document_is_ec2s_json() {
        let root = build(&facts());
        assert_eq!(text(&root, "dynamic/"), "instance-identity/");
        assert_eq!(text(&root, "dynamic/instance-identity/"), "document");
        let doc: serde_json::Value =
            serde_json::from_str(&text(&root, "dynamic/instance-identity/document")).unwrap();
        assert_eq!(doc["instanceId"], "i-0123456789abcdef0");
        assert_eq!(doc["privateIp"], "10.0.1.10");
        assert_eq!(doc["accountId"], "123456789012");
        assert_eq!(doc["region"], "local-1");
        assert_eq!(doc["availabilityZone"], "local-1a");
        assert_eq!(doc["version"], "2017-09-30");
        assert!(doc["kernelId"].is_null());
    }
}
