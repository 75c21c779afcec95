//! Tags: key=value labels on every resource (`Name` names things), and
//! the filters that select resources by them.

use std::collections::BTreeMap;

use super::names::control_character;

/// The tag that names a resource in listings.
pub const NAME: &str = "Name";

// AWS's limits, so tags move between here and EC2 unchanged.
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// Tags of one resource, sorted by key.
pub type Tags = BTreeMap<String, String>;

/// Why a tag or filter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("tag '{0}' has no '=': write it as KEY=VALUE, e.g. --tag env=dev")]
    NoEquals(String),
    #[error("tag '{0}' has an empty key: write it as KEY=VALUE")]
    EmptyKey(String),
    #[error("tag key '{0}' is longer than {MAX_KEY} characters")]
    KeyTooLong(String),
    #[error("the value of tag '{0}' is longer than {MAX_VALUE} characters")]
    ValueTooLong(String),
    #[error(
        "tag '{key}' contains the control character {found:?}; newlines, tabs and the like are \
         not allowed in tag keys or values"
    )]
    ControlCharacter { key: String, found: char },
    #[error("tag key '{0}' starts with 'aws:', which is reserved")]
    Reserved(String),
    #[error(
        "filter '{0}' is not understood: use Name=VALUE, tag:KEY=VALUE or state=STATE \
         (e.g. --filter Name=web-1)"
    )]
    BadFilter(String),
}

/// Parses `KEY=VALUE` (the value may be empty, as in AWS).
pub fn parse(text: &str) -> Result<(String, String), Error> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| Error::NoEquals(text.into()))?;
    check(key, value)?;
    Ok((key.into(), value.into()))
}

/// Checks one tag as EC2 does (lengths, reserved prefix), and that it
/// has no control characters.
pub fn check(key: &str, value: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::EmptyKey(format!("={value}")));
    }
    if key.chars().count() > MAX_KEY {
        return Err(Error::KeyTooLong(key.into()));
    }
    if value.chars().count() > MAX_VALUE {
        return Err(Error::ValueTooLong(key.into()));
    }
    if key.starts_with("aws:") {
        return Err(Error::Reserved(key.into()));
    }
    match control_character(key).or_else(|| control_character(value)) {
        Some(found) => Err(Error::ControlCharacter {
            key: key.escape_debug().to_string(),
            found,
        }),
        None => Ok(()),
    }
}

/// Checks every tag of `tags`.
pub fn check_all(tags: &Tags) -> Result<(), Error> {
    tags.iter().try_for_each(|(k, v)| check(k, v))
}

/// Parses every `--tag`; a later tag of the same key wins.
pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Tags, Error> {
    texts.iter().map(|t| parse(t.as_ref())).collect()
}

/// One condition of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The resource has tag `key` with `value`.
    Tag { key: String, value: String },
    /// The instance is in this state (e.g. `running`).
    State(String),
}

impl Filter {
    /// Parses `Name=V`, `tag:K=V` or `state=S` (`instance-state-name=S`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || Error::BadFilter(text.into());
        let (key, value) = text.split_once('=').ok_or_else(bad)?;
        match key {
            NAME => Ok(Filter::Tag {
                key: NAME.into(),
                value: value.into(),
            }),
            "state" | "instance-state-name" if !value.is_empty() => Ok(Filter::State(value.into())),
            _ => match key.strip_prefix("tag:") {
                Some(tag) if !tag.is_empty() => Ok(Filter::Tag {
                    key: tag.into(),
                    value: value.into(),
                }),
                _ => Err(bad()),
            },
        }
    }

    /// Whether a resource with `tags` in `state` passes.
    pub fn matches(&self, tags: &Tags, state: Option<&str>) -> bool {
        match self {
            Filter::Tag { key, value } => tags.get(key) == Some(value),
            Filter::State(want) => state == Some(want.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_with_clear_errors() {
        assert_eq!(parse("env=dev").unwrap(), ("env".into(), "dev".into()));
        assert_eq!(parse("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse("empty=").unwrap(), ("empty".into(), String::new()));
        assert_eq!(parse("env"), Err(Error::NoEquals("env".into())));
        assert_eq!(parse("=x"), Err(Error::EmptyKey("=x".into())));
        assert!(matches!(parse("aws:x=1"), Err(Error::Reserved(_))));
        assert!(matches!(
            parse(&format!("{}=v", "k".repeat(129))),
            Err(Error::KeyTooLong(_))
        ));
        assert!(matches!(
            parse("Name=web\nfake-row"),
            Err(Error::ControlCharacter { found: '\n', .. })
        ));
        assert!(matches!(
            parse(&format!("Name={}", "n".repeat(257))),
            Err(Error::ValueTooLong(_))
        ));
        let tags = parse_all(&["a=1", "a=2", "b=3"]).unwrap();
        assert_eq!(tags.get("a").map(String::as_str), Some("2"));
    }

    #[test]
    fn filters_select_by_tag_and_state() {
        let tags: Tags = [("Name".to_string(), "web-1".to_string())].into();
        let f = Filter::parse("Name=web-1").unwrap();
        assert!(f.matches(&tags, None));
        assert!(!Filter::parse("Name=web-2").unwrap().matches(&tags, None));
        assert!(
            Filter::parse("tag:Name=web-1")
                .unwrap()
                .matches(&tags, None)
        );
        let running = Filter::parse("state=running").unwrap();
        assert!(running.matches(&tags, Some("running")));
        assert!(!running.matches(&tags, Some("stopped")));
        for bad in ["Name", "foo=bar", "tag:=x", "state="] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
