//! Finding, and on request removing, what gureum made in Linux that no
//! resource owns any more: VPC namespaces (and everything in them: bridges,
//! gateway links, nft tables, routes go with the namespace), and public-side
//! gateway links whose VPC is not among the owned ones.

use std::collections::BTreeSet;

use super::link::{self, Rtnl};
use super::netns::{self, Netns};
use super::vpc::GATEWAY_PEER_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error(transparent)]
    Link(#[from] link::Error),
}

/// What no resource owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Leftovers {
    /// VPC namespaces.
    pub namespaces: Vec<String>,
    /// Gateway links in the public namespace.
    pub public_links: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.public_links.is_empty()
    }
}

/// Lists the namespaces named `prefix`... that are not in `owned`, and the
/// gateway links in `public` that serve one that is not.
pub fn find(
    prefix: &str,
    owned: &BTreeSet<String>,
    public: Option<&Netns>,
) -> Result<Leftovers, Error> {
    let namespaces = netns::list(prefix)?
        .into_iter()
        .filter(|name| !owned.contains(name))
        .collect();
    let public_links = match public {
        Some(public) => Rtnl::open(public)?
            .links()?
            .into_iter()
            .filter(|(name, alias)| {
                name.starts_with(GATEWAY_PEER_PREFIX)
                    && alias
                        .as_deref()
                        .is_some_and(|vpc| vpc.starts_with(prefix) && !owned.contains(vpc))
            })
            .map(|(name, _)| name)
            .collect(),
        None => Vec::new(),
    };
    Ok(Leftovers {
        namespaces,
        public_links,
    })
}

/// Removes `leftovers`; the public links first, as the namespaces would
/// take them along only once the kernel gets round to freeing them.
pub fn remove(leftovers: &Leftovers, public: Option<&Netns>) -> Result<(), Error> {
    if let Some(public) = public {
        let rtnl = Rtnl::open(public)?;
        for link in &leftovers.public_links {
            rtnl.delete(link)?;
        }
    }
    for name in &leftovers.namespaces {
        match netns::remove(name) {
            Ok(()) | Err(netns::Error::Missing(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
