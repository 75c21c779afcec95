//! Ethernet (MAC) addresses: what the VMM gives a guest's NIC and what
//! the network layer pins to its port.

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// What `MacAddr`'s parser refuses.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a MAC address: write it as six hex pairs, like 02:00:00:00:00:01")]
pub struct BadMac(pub String);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl std::str::FromStr for MacAddr {
    type Err = BadMac;

    /// Parses `aa:bb:cc:dd:ee:ff`.
    fn from_str(text: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(text.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(Self(bytes)),
        }
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "02:00:0a:00:00:05".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 10, 0, 0, 5]);
        assert_eq!(mac.to_string(), "02:00:0a:00:00:05");
        for bad in [
            "",
            "02:00:0a:00:00",
            "02:00:0a:00:00:05:06",
            "zz:00:0a:00:00:05",
            "2:0:a:0:0:5",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
