//! Names of key pairs, images and templates: unique per kind, usable
//! wherever an ID is (so never shaped like one), and safe as file names
//! (a key pair's private key goes to NAME.pem).

use super::ids::{self, Kind};

const MAX_LEN: usize = 128;

/// A name that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error(
        "'{name}' is not a valid {noun} name: use 1 to {MAX_LEN} letters, digits, '.', '_', \
         '-', '(', ')' or '@', not starting with '.' or '-'"
    )]
    Invalid { noun: &'static str, name: String },
    #[error("'{name}' looks like a {noun} ID; pick a name that does not start with '{prefix}-'")]
    LooksLikeId {
        noun: &'static str,
        name: String,
        prefix: &'static str,
    },
}

/// Checks a new `kind` name.
pub fn check(kind: Kind, name: &str) -> Result<(), NameError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-()@".contains(&b));
    if !valid {
        return Err(NameError::Invalid {
            noun: kind.noun(),
            name: name.into(),
        });
    }
    if ids::is_id(kind, name) {
        return Err(NameError::LooksLikeId {
            noun: kind.noun(),
            name: name.into(),
            prefix: kind.prefix(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_file_safe_and_not_ids() {
        for ok in ["web", "my-key_1.prod", "busybox(2)"] {
            check(Kind::KeyPair, ok).unwrap();
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "sp ace",
            &"k".repeat(129),
        ] {
            assert!(
                matches!(check(Kind::KeyPair, bad), Err(NameError::Invalid { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            check(Kind::Image, "ami-0123456789abcdef0"),
            Err(NameError::LooksLikeId { .. })
        ));
    }
}
