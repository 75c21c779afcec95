//! Kernel network settings (`/proc/sys/net`) of one namespace.
//!
//! `/proc/sys/net` shows the namespace of the thread that opens it, so the
//! write happens on a thread inside the namespace.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::host::netns::{self, Netns};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set {key} = {value} in network namespace '{netns}': {source}")]
    Write {
        key: String,
        value: String,
        netns: String,
        source: io::Error,
    },
    #[error(transparent)]
    Netns(#[from] netns::Error),
}

/// Sets `key` (dotted, as `sysctl` names it, e.g. `net.ipv4.ip_forward`).
pub fn set(netns: &Netns, key: &str, value: &str) -> Result<(), Error> {
    netns
        .run(|| fs::write(path_of(key), value))?
        .map_err(|source| Error::Write {
            key: key.to_owned(),
            value: value.to_owned(),
            netns: netns.name().to_owned(),
            source,
        })
}

/// The values of `keys` (`None` for a key that does not exist, as for a
/// link that is not there), read on one thread inside `netns`.
pub fn get_all(netns: &Netns, keys: &[String]) -> Result<Vec<Option<String>>, Error> {
    Ok(netns.run(|| {
        keys.iter()
            .map(|key| {
                fs::read_to_string(path_of(key))
                    .ok()
                    .map(|value| value.trim().to_owned())
            })
            .collect()
    })?)
}

fn path_of(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dotted_keys_become_paths() {
        assert_eq!(
            super::path_of("net.ipv4.conf.gb-a.proxy_arp_pvlan").to_str(),
            Some("/proc/sys/net/ipv4/conf/gb-a/proxy_arp_pvlan")
        );
    }
}
