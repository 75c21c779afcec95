//! IAM's records as the core API hands them out (never a secret, but
//! the one a new key is created with), and the rules their names follow.

use serde::{Deserialize, Serialize};

use super::error::Error;

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// `AIDA` and 17 characters.
    pub id: String,
    /// `/`, or `/a/b/`.
    pub path: String,
    pub arn: String,
    pub created: String,
}

/// Whose an access key is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// The account's root identity, which may do everything.
    Root,
    User(String),
}

impl Owner {
    pub fn user(&self) -> Option<&str> {
        match self {
            Owner::Root => None,
            Owner::User(name) => Some(name),
        }
    }

    /// `--user NAME`, or root without one.
    pub fn from_user(user: Option<String>) -> Self {
        user.map_or(Owner::Root, Owner::User)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Root => f.write_str("the root account"),
            Owner::User(name) => write!(f, "user {name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// An access key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// `AKIA` and 16 characters.
    pub id: String,
    pub owner: Owner,
    pub status: KeyStatus,
    pub created: String,
}

/// A managed policy attached to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    pub name: String,
    pub arn: String,
}

/// An inline policy of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inline {
    pub user: String,
    pub name: String,
    pub document: String,
}

/// IAM's rule for user and policy names: 1 to `max` characters among
/// letters, digits and `+=,.@_-`.
pub fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), Error> {
    let ok = (1..=max).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what,
            value: name.to_owned(),
            rule: format!("1 to {max} letters, digits and +=,.@_-"),
        })
    }
}

/// IAM's rule for paths: `/`, or `/` then printable ASCII ending in `/`.
pub fn check_path(path: &str) -> Result<(), Error> {
    let ok = path == "/"
        || (path.len() >= 3
            && path.len() <= 512
            && path.starts_with('/')
            && path.ends_with('/')
            && path.chars().all(|c| ('!'..='~').contains(&c)));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "path",
            value: path.to_owned(),
            rule: "\"/\" or /TEXT/ in printable ASCII without spaces".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_follow_iam_s_rules() {
        for good in ["bob", "a.b@c-d_e+f=g,h", &"x".repeat(64)] {
            check_name("user name", good, 64).unwrap();
        }
        for bad in ["", "has space", "slash/", "é", &"x".repeat(65)] {
            let err = check_name("user name", bad, 64).unwrap_err();
            assert_eq!(err.code(), "ValidationError", "{bad}");
        }
        for good in ["/", "/dev/", "/a/b/"] {
            check_path(good).unwrap();
        }
        for bad in ["", "dev", "/dev", "//x y/"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
