//! The uplink: how the public side reaches the host and the world beyond.
//!
//! While some VPC has an internet gateway (so the public namespace is
//! there) and the host has a way out, a veth pair joins the public
//! namespace to the namespace gureum runs in ("the host"):
//! - the host routes the public pool through it, so the host reaches
//!   gateways' and elastic IPs' addresses (`ssh admin@EIP` works);
//! - the public namespace's default route goes through it, and gureum's
//!   own nft table in the host (`ip <prefix>uplink`) masquerades the
//!   pool's traffic out of the host's way out (the interface of its
//!   default route, or the one `GUREUM_UPLINK` names);
//! - forwarding is turned on for those two interfaces only (not host
//!   wide), and the way-out interface's setting is put back as it was
//!   when the uplink goes.
//!
//! Nothing of the host but what carries this store's mark (the veth's
//! alias, the table's name, the forwarding record) is ever changed.
//! `GUREUM_UPLINK=none` keeps a host that must not forward out of it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cidr::{self, Ipv4Cidr};
use super::link::{LinkKind, RouteState, Rtnl};
use super::nft;
use super::reconcile::{Difference, Found, Mode, Pass};
use super::vpc::{self, Error, Host, MAIN_TABLE};
use crate::host::netns::Netns;
use crate::host::sysctl;

/// The environment variable choosing the way out.
pub const VAR: &str = "GUREUM_UPLINK";
/// The veth pair's addresses (a link-local /30 of its own).
const TRANSIT_HOST: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
const TRANSIT_PUBLIC: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 2);
const TRANSIT_PREFIX: u8 = 30;

/// How the public side gets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Not at all: the public side is a world of its own.
    None,
    /// Through the interface of the host's default route, if it has one.
    Auto,
    /// Through this interface.
    Interface(String),
}

impl Setting {
    /// `auto` (also the empty text), `none`, or an interface name.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "" | "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            name => {
                vpc::check_link_name(name)?;
                Ok(Self::Interface(name.to_owned()))
            }
        }
    }
}

/// Brings the uplink in `here` (the host's namespace) in line with
/// `setting`: there when `public` is and the host has a way out, gone
/// otherwise.
pub fn converge(
    host: &Host,
    setting: &Setting,
    pool: Ipv4Cidr,
    here: &Netns,
    public: Option<&Netns>,
    mode: Mode,
) -> Result<Vec<Difference>, Error> {
    let mut pass = Pass::new(here.name(), mode);
    let rtnl = Rtnl::open(here)?;
    let link = link_name(host);
    let way_out = match public {
        Some(_) => way_out(&rtnl, setting, &link)?,
        None => None,
    };
    let record = host.cache.join("uplink-forwarding");
    let recorded = read_record(&record)?;
    // A way out that changed (or went) gets its forwarding back first.
    if let Some((device, before)) = &recorded {
        if way_out.as_deref() != Some(device.as_str()) {
            let key = forwarding(device);
            let now = sysctl::get_all(here, std::slice::from_ref(&key))?;
            let now = now.into_iter().flatten().next();
            // A device that is gone took its setting with it.
            let repair = match &now {
                Some(now) => pass.compare(format_args!("sysctl {key}"), now, before),
                None => pass.note(format_args!("the record of {device}"), Found::Extra),
            };
            if repair {
                if now.is_some() {
                    sysctl::set(here, &key, before)?;
                }
                remove_record(&record)?;
            }
        }
    }
    let table = table_name(host);
    let (Some(public), Some(device)) = (public, way_out) else {
        remove(host, here, &rtnl, &table, &mut pass)?;
        return Ok(pass.into_differences());
    };
    let peer = peer_name(host);
    let ours = owned_links(host, &rtnl)?;
    for extra in ours.iter().filter(|name| **name != link) {
        if pass.note(format_args!("link {extra}"), Found::Extra) {
            rtnl.delete(extra)?;
        }
    }
    let public_rtnl = Rtnl::open(public)?;
    let whole = ours.contains(&link) && public_rtnl.index(&peer)?.is_some();
    if !whole && pass.note(format_args!("link {link}"), Found::Missing) {
        rtnl.delete(&link)?;
        rtnl.add_veth(&link, &peer)?;
        let made = rtnl
            .set_alias(&link, &owner_alias(host))
            .and_then(|()| rtnl.move_to(&peer, public));
        if let Err(error) = made {
            let _ = rtnl.delete(&link);
            return Err(error.into());
        }
    }
    if rtnl.index(&link)?.is_none() {
        // A check of a missing link: nothing more to compare.
        return Ok(pass.into_differences());
    }
    // Each end: up, its transit address, its route through the other.
    let ends = [
        (&rtnl, &link, TRANSIT_HOST, pool, TRANSIT_PUBLIC),
        (&public_rtnl, &peer, TRANSIT_PUBLIC, cidr::ANY, TRANSIT_HOST),
    ];
    for (rtnl, name, address, destination, gateway) in ends {
        let up = rtnl.link_states()?.iter().any(|l| l.name == *name && l.up);
        if pass.compare(
            format_args!("link {name}"),
            &vpc::updown(up),
            &vpc::updown(true),
        ) {
            rtnl.set_up(name)?;
        }
        let on_this_end = |device: &str| device == name;
        vpc::converge_addresses(
            rtnl,
            &[(name.clone(), address, TRANSIT_PREFIX)],
            |device, _| on_this_end(device),
            &mut pass,
        )?;
        let route = RouteState {
            destination,
            gateway: Some(gateway),
            device: name.clone(),
            table: MAIN_TABLE,
        };
        vpc::converge_routes(rtnl, MAIN_TABLE, &[route], on_this_end, &mut pass)?;
    }
    if recorded.is_none() || recorded.as_ref().is_some_and(|(d, _)| *d != device) {
        // Kept before the change, so a crash right after it still knows
        // what to put back.
        let key = forwarding(&device);
        if let Some(before) = sysctl::get_all(here, std::slice::from_ref(&key))?
            .into_iter()
            .flatten()
            .next()
        {
            if pass.note(format_args!("the record of {device}"), Found::Missing) {
                write_record(&record, &device, &before)?;
            }
        }
    }
    vpc::converge_sysctls(
        here,
        &[(forwarding(&link), "1"), (forwarding(&device), "1")],
        &mut pass,
    )?;
    let script = nat_script(&table, pool, &device);
    vpc::converge_table(host, here, "ip", &table, &script, &mut pass)?;
    Ok(pass.into_differences())
}

/// Takes away what an uplink leaves in the host: the table, then the
/// veth (its other end goes with it). The host's tables are listed only
/// when something says there may be one (a veth of this store's, or the
/// listing kept when the table was applied), so that a host without an
/// uplink never pays for an `nft` run.
fn remove(
    host: &Host,
    here: &Netns,
    rtnl: &Rtnl,
    table: &str,
    pass: &mut Pass,
) -> Result<(), Error> {
    let links = owned_links(host, rtnl)?;
    let listing = vpc::table_listing(host, here, "ip", table);
    if !links.is_empty() || listing.exists() {
        let tables = nft::tables(here)?;
        let there = tables.iter().any(|(f, name)| f == "ip" && name == table);
        if there && pass.note(format_args!("nft table ip {table}"), Found::Extra) {
            nft::apply(here, &format!("delete table ip {table}\n"))?;
        }
        if pass.repairs() && listing.exists() {
            remove_record(&listing)?;
        }
    }
    for link in links {
        if pass.note(format_args!("link {link}"), Found::Extra) {
            rtnl.delete(&link)?;
        }
    }
    Ok(())
}

/// The interface traffic leaves the host by: the one named, or that of
/// the host's default route (none without one).
fn way_out(rtnl: &Rtnl, setting: &Setting, link: &str) -> Result<Option<String>, Error> {
    match setting {
        Setting::None => Ok(None),
        Setting::Interface(name) => match rtnl.index(name)? {
            Some(_) => Ok(Some(name.clone())),
            None => Err(Error::NoUplink(name.clone())),
        },
        Setting::Auto => Ok(rtnl
            .routes(MAIN_TABLE)?
            .into_iter()
            .find(|route| route.destination == cidr::ANY && route.device != link)
            .map(|route| route.device)),
    }
}

/// The veths of this store's uplinks in the host (by their alias).
fn owned_links(host: &Host, rtnl: &Rtnl) -> Result<Vec<String>, Error> {
    let alias = owner_alias(host);
    Ok(rtnl
        .link_states()?
        .into_iter()
        .filter(|l| l.kind == LinkKind::Veth && l.alias.as_deref() == Some(alias.as_str()))
        .map(|l| l.name)
        .collect())
}

/// The masquerade of the pool out of `device`, as one table of gureum's.
pub fn nat_script(table: &str, pool: Ipv4Cidr, device: &str) -> String {
    format!(
        "table ip {table} {{\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {pool} oifname \"{device}\" masquerade\n\
         \x20 }}\n\
         }}\n"
    )
}

fn owner_alias(host: &Host) -> String {
    format!("{} uplink", host.owner_alias())
}

/// The host's end: "gu" and a hash of the public namespace's name (so two
/// stores' uplinks differ), short enough for a link name.
fn link_name(host: &Host) -> String {
    format!("gu{:08x}", vpc::short_hash(&host.public_netns()))
}

/// The public namespace's end, named likewise ("gv"); never "gp…", which
/// are gateway ends.
fn peer_name(host: &Host) -> String {
    format!("gv{:08x}", vpc::short_hash(&host.public_netns()))
}

fn table_name(host: &Host) -> String {
    format!("{}uplink", nft::ident(&host.prefix))
}

fn forwarding(device: &str) -> String {
    format!("net.ipv4.conf.{device}.forwarding")
}

/// The way-out interface and its forwarding setting before the uplink.
fn read_record(path: &Path) -> Result<Option<(String, String)>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .split_once(' ')
            .map(|(device, value)| (device.to_owned(), value.trim().to_owned()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(cache_error("read", path, source)),
    }
}

fn write_record(path: &Path, device: &str, value: &str) -> Result<(), Error> {
    vpc::write_cache(path, &format!("{device} {value}\n"))
}

fn remove_record(path: &Path) -> Result<(), Error> {
    std::fs::remove_file(path).map_err(|source| cache_error("remove", path, source))
}

fn cache_error(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Cache {
        what,
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_names_are_refused() {
        assert_eq!(Setting::parse("").ok(), Some(Setting::Auto));
        assert_eq!(Setting::parse("auto").ok(), Some(Setting::Auto));
        assert_eq!(Setting::parse("none").ok(), Some(Setting::None));
        assert_eq!(
            Setting::parse("eth0").ok(),
            Some(Setting::Interface("eth0".into()))
        );
        assert!(Setting::parse("a name with spaces").is_err());
        assert!(Setting::parse("much-too-long-a-link-name").is_err());
    }

    #[test]
    fn the_table_masquerades_only_the_pool_out_of_the_way_out() {
        let pool: Ipv4Cidr = "203.0.113.0/24".parse().unwrap_or(cidr::ANY);
        let script = nat_script("gureum_uplink", pool, "eth0");
        assert!(script.starts_with("table ip gureum_uplink {"));
        assert!(script.contains("ip saddr 203.0.113.0/24 oifname \"eth0\" masquerade"));
    }
}
