//! An instance's metadata options (EC2's `MetadataOptions`): whether its
//! metadata service answers, whether it needs IMDSv2 tokens, how far the
//! token's packets travel, and whether its tags are in the tree.

use serde::{Deserialize, Serialize};

/// EC2's highest `HttpPutResponseHopLimit`.
pub const MAX_HOP_LIMIT: u8 = 64;

/// Options that cannot be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "unexpected metadata option {0:?}; expected KEY=VALUE pairs with the keys HttpTokens, \
         HttpPutResponseHopLimit, HttpEndpoint, InstanceMetadataTags"
    )]
    UnknownKey(String),
    #[error("{key}={value:?} is not valid; {key} takes {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// `HttpTokens`: whether a GET needs a session token (IMDSv2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokens {
    /// IMDSv1 and v2 both answer (EC2's default for images that do not
    /// say they support v2 only).
    #[default]
    Optional,
    Required,
}

/// `HttpEndpoint`, `InstanceMetadataTags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Enabled,
    Disabled,
}

/// The options an instance has. Defaults are EC2's: tokens optional, hop
/// limit 1, endpoint enabled, tags not in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataOptions {
    pub http_tokens: Tokens,
    pub http_put_response_hop_limit: u8,
    pub http_endpoint: Switch,
    pub instance_metadata_tags: Switch,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        Self {
            http_tokens: Tokens::Optional,
            http_put_response_hop_limit: 1,
            http_endpoint: Switch::Enabled,
            instance_metadata_tags: Switch::Disabled,
        }
    }
}

impl MetadataOptions {
    /// These options with what `change` sets.
    pub fn with(self, change: &MetadataChange) -> Self {
        Self {
            http_tokens: change.http_tokens.unwrap_or(self.http_tokens),
            http_put_response_hop_limit: change
                .http_put_response_hop_limit
                .unwrap_or(self.http_put_response_hop_limit),
            http_endpoint: change.http_endpoint.unwrap_or(self.http_endpoint),
            instance_metadata_tags: change
                .instance_metadata_tags
                .unwrap_or(self.instance_metadata_tags),
        }
    }
}

/// Some of the options: what `run --metadata-options`, a template or
/// ModifyInstanceMetadataOptions sets; the rest stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_tokens: Option<Tokens>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_put_response_hop_limit: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<Switch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_metadata_tags: Option<Switch>,
}

impl MetadataChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Sets option `key` (EC2's name) from `value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let bad = |key, expected| Error::BadValue {
            key,
            value: value.to_owned(),
            expected,
        };
        let switch = |key| match value {
            "enabled" => Ok(Switch::Enabled),
            "disabled" => Ok(Switch::Disabled),
            _ => Err(bad(key, "enabled or disabled")),
        };
        match key {
            "HttpTokens" => {
                self.http_tokens = Some(match value {
                    "optional" => Tokens::Optional,
                    "required" => Tokens::Required,
                    _ => return Err(bad("HttpTokens", "optional or required")),
                });
            }
            "HttpPutResponseHopLimit" => {
                let limit = value
                    .parse::<u8>()
                    .ok()
                    .filter(|n| (1..=MAX_HOP_LIMIT).contains(n))
                    .ok_or_else(|| bad("HttpPutResponseHopLimit", "a number from 1 to 64"))?;
                self.http_put_response_hop_limit = Some(limit);
            }
            "HttpEndpoint" => self.http_endpoint = Some(switch("HttpEndpoint")?),
            "InstanceMetadataTags" => {
                self.instance_metadata_tags = Some(switch("InstanceMetadataTags")?);
            }
            _ => return Err(Error::UnknownKey(key.to_owned())),
        }
        Ok(())
    }

    /// Parses `HttpTokens=required,HttpPutResponseHopLimit=2,...`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let mut change = Self::default();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| Error::UnknownKey(part.to_owned()))?;
            change.set(key.trim(), value.trim())?;
        }
        Ok(change)
    }

    /// `later` over this change.
    pub fn then(self, later: &MetadataChange) -> Self {
        Self {
            http_tokens: later.http_tokens.or(self.http_tokens),
            http_put_response_hop_limit: later
                .http_put_response_hop_limit
                .or(self.http_put_response_hop_limit),
            http_endpoint: later.http_endpoint.or(self.http_endpoint),
            instance_metadata_tags: later.instance_metadata_tags.or(self.instance_metadata_tags),
        }
    }
}

impl Tokens {
    pub fn as_str(self) -> &'static str {
        match self {
            Tokens::Optional => "optional",
            Tokens::Required => "required",
        }
    }
}

impl Switch {
    pub fn as_str(self) -> &'static str {
        match self {
            Switch::Enabled => "enabled",
            Switch::Disabled => "disabled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_parses_over_the_defaults() {
        let change =
            MetadataChange::parse("HttpTokens=required,HttpPutResponseHopLimit=2").unwrap();
        let options = MetadataOptions::default().with(&change);
        assert_eq!(
            options,
            MetadataOptions {
                http_tokens: Tokens::Required,
                http_put_response_hop_limit: 2,
                http_endpoint: Switch::Enabled,
                instance_metadata_tags: Switch::Disabled,
            }
        );
        let later = MetadataChange::parse("HttpEndpoint=disabled,HttpTokens=optional").unwrap();
        let both = change.then(&later);
        assert_eq!(both.http_tokens, Some(Tokens::Optional));
        assert_eq!(both.http_put_response_hop_limit, Some(2));
        assert_eq!(both.http_endpoint, Some(Switch::Disabled));
    }

    #[test]
    fn bad_options_say_what_is_expected() {
        for (spec, expected) in [
            ("HttpTokens=maybe", "optional or required"),
            ("HttpPutResponseHopLimit=0", "1 to 64"),
            ("HttpPutResponseHopLimit=65", "1 to 64"),
            ("InstanceMetadataTags=on", "enabled or disabled"),
            ("Colour=blue", "expected KEY=VALUE"),
            ("HttpTokens", "expected KEY=VALUE"),
        ] {
            let err = MetadataChange::parse(spec).unwrap_err().to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
    }
}
