//! The seed disk: what an image's first-boot service needs to make an
//! instance its own (instance ID, hostname, the key pair's public key
//! for the default user, network settings), written by the control plane
//! at launch into the instance's directory and attached read-only after
//! its other disks.
//!
//! It stands in for cloud-init's NoCloud seed: cloud-init is a large
//! Python program whose start-up alone takes tens of seconds under nested
//! emulation, and a NoCloud seed is a vfat or ISO 9660 file system the
//! control plane would have to build. This is plain text a shell script
//! reads straight from the block device.
//!
//! Format (version 1): UTF-8, a first line `gureum-seed 1`, then
//! `key=value` lines, NUL-padded to whole 4 KiB blocks (a disk's size is
//! a whole number of sectors). Keys: `instance_id`, `hostname`, `user`,
//! `ssh_authorized_key`, `mac`, `address` (ADDR/PREFIX), `gateway`; a
//! key with no value is left out. The guest reads it with
//! `tr -d '\0' </dev/vdX` (images/debian/overlay/usr/local/sbin/gureum-seed).

use std::path::{Path, PathBuf};

use super::instance::NetworkInterface;

/// The first line of every seed.
pub const MAGIC: &str = "gureum-seed 1";
const BLOCK: usize = 4096;
/// Linux host names are at most 64 bytes; one DNS label is at most 63.
const MAX_HOSTNAME: usize = 63;

/// One instance's seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub instance_id: String,
    pub hostname: String,
    /// The image's default user, who gets `authorized_key`.
    pub user: Option<String>,
    /// OpenSSH one-line public key of the instance's key pair.
    pub authorized_key: Option<String>,
    pub interface: Option<NetworkInterface>,
}

/// A seed that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the seed's {key} holds a line break or NUL byte, which the seed format cannot carry; \
         re-import the key pair from a one-line OpenSSH public key"
    )]
    BadValue { key: &'static str },
    #[error("cannot write the seed disk {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The instance's host name: its Name tag when that is a valid host name
/// (one DNS label), else its ID.
pub fn hostname(name_tag: Option<&str>, instance_id: &str) -> String {
    let valid = |n: &str| {
        !n.is_empty()
            && n.len() <= MAX_HOSTNAME
            && !n.starts_with('-')
            && !n.ends_with('-')
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    match name_tag {
        Some(name) if valid(name) => name.to_ascii_lowercase(),
        _ => instance_id.into(),
    }
}

impl Seed {
    /// The seed disk's bytes.
    pub fn render(&self) -> Result<Vec<u8>, Error> {
        let ip = self.interface.as_ref().and_then(|n| n.static_ip);
        let lines: [(&'static str, Option<String>); 7] = [
            ("instance_id", Some(self.instance_id.clone())),
            ("hostname", Some(self.hostname.clone())),
            ("user", self.user.clone()),
            ("ssh_authorized_key", self.authorized_key.clone()),
            ("mac", self.interface.as_ref().map(|n| n.mac.clone())),
            ("address", ip.map(|ip| ip.cidr())),
            (
                "gateway",
                ip.and_then(|ip| ip.gateway).map(|g| g.to_string()),
            ),
        ];
        let mut text = format!("{MAGIC}\n");
        for (key, value) in lines {
            let Some(value) = value else { continue };
            if value.contains(['\n', '\r', '\0']) {
                return Err(Error::BadValue { key });
            }
            text.push_str(&format!("{key}={value}\n"));
        }
        let mut bytes = text.into_bytes();
        bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
        Ok(bytes)
    }

    /// Writes the seed disk to `path`.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.render()?).map_err(|source| Error::Write {
            path: path.into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::tap_network::StaticIp;

    fn seed() -> Seed {
        Seed {
            instance_id: "i-0123456789abcdef0".into(),
            hostname: "web-1".into(),
            user: Some("admin".into()),
            authorized_key: Some("ssh-ed25519 AAAAC3Nza web".into()),
            interface: Some(NetworkInterface {
                tap: "gtap0".into(),
                mac: "02:01:23:45:67:89".into(),
                static_ip: Some(StaticIp::parse("10.0.0.2/24", Some("10.0.0.1")).unwrap()),
                netns: None,
            }),
        }
    }

    #[test]
    fn the_seed_is_key_value_text_padded_to_whole_blocks() {
        let bytes = seed().render().unwrap();
        assert_eq!(bytes.len(), BLOCK);
        let text = String::from_utf8(bytes).unwrap();
        let text = text.trim_end_matches('\0');
        assert_eq!(
            text,
            "gureum-seed 1\ninstance_id=i-0123456789abcdef0\nhostname=web-1\nuser=admin\n\
             ssh_authorized_key=ssh-ed25519 AAAAC3Nza web\nmac=02:01:23:45:67:89\n\
             address=10.0.0.2/24\ngateway=10.0.0.1\n"
        );
    }

    #[test]
    fn absent_values_are_left_out_and_line_breaks_refused() {
        let mut s = seed();
        s.interface = None;
        s.authorized_key = None;
        let text = String::from_utf8(s.render().unwrap()).unwrap();
        assert!(!text.contains("mac=") && !text.contains("ssh_authorized_key="));
        s.authorized_key = Some("ssh-ed25519 AAAA\nevil=1".into());
        assert!(matches!(
            s.render(),
            Err(Error::BadValue {
                key: "ssh_authorized_key"
            })
        ));
    }

    #[test]
    fn the_name_tag_is_the_hostname_when_it_can_be_one() {
        let id = "i-0123456789abcdef0";
        assert_eq!(hostname(Some("Web-1"), id), "web-1");
        assert_eq!(hostname(Some("web 1"), id), id);
        assert_eq!(hostname(Some("-web"), id), id);
        assert_eq!(hostname(None, id), id);
    }
}
