//! Names of key pairs, images and templates: unique per kind, usable
//! wherever an ID is (so never shaped like one), and safe as file names
//! (a key pair's private key goes to NAME.pem). And the free text people
//! give (descriptions, zones): bounded as EC2 bounds it, and without
//! control characters, which would forge lines in listings.

use super::ids::{self, Kind};

const MAX_LEN: usize = 128;
/// EC2's limit on descriptions (images, security groups).
pub const MAX_DESCRIPTION: usize = 255;
/// EC2's limit on an availability zone's name.
pub const MAX_ZONE: usize = 255;

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
    #[error("the {field} is empty")]
    Empty { field: &'static str },
    #[error("the {field} has {len} characters; at most {max} are allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "the {field} contains the control character {found:?}; newlines, tabs and the like \
         are not allowed"
    )]
    ControlCharacter { field: &'static str, found: char },
}

/// The first control character in `text` (newline, tab, escape, ...).
pub fn control_character(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control())
}

/// Checks free text: at most `max` characters, none of them control
/// characters.
pub fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), NameError> {
    let len = text.chars().count();
    if len > max {
        return Err(NameError::TooLong { field, len, max });
    }
    match control_character(text) {
        Some(found) => Err(NameError::ControlCharacter { field, found }),
        None => Ok(()),
    }
}

/// Checks an availability zone's name.
pub fn check_zone(zone: &str) -> Result<(), NameError> {
    let field = "availability zone";
    if zone.is_empty() {
        return Err(NameError::Empty { field });
    }
    check_text(field, zone, MAX_ZONE)
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

    #[test]
    fn text_is_bounded_and_has_no_control_characters() {
        check_text("description", "A web server (port 80), ünïcode", 255).unwrap();
        check_text("description", "", 255).unwrap();
        check_text("description", &"é".repeat(255), 255).unwrap();
        assert_eq!(
            check_text("description", &"x".repeat(256), 255),
            Err(NameError::TooLong {
                field: "description",
                len: 256,
                max: 255
            })
        );
        for (bad, found) in [("a\nb", '\n'), ("tab\t", '\t'), ("\u{1b}[31m", '\u{1b}')] {
            assert_eq!(
                check_text("description", bad, 255),
                Err(NameError::ControlCharacter {
                    field: "description",
                    found
                })
            );
        }
        check_zone("local-1a").unwrap();
        assert!(matches!(check_zone(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            check_zone("a\nb"),
            Err(NameError::ControlCharacter { .. })
        ));
    }
}
