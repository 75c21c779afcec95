//! New IAM identifiers and secrets, from the operating system's random
//! source: user IDs `AIDA…` (21 characters), access key IDs `AKIA…` (20)
//! and 40-character secret access keys, in the alphabets AWS uses.

use ssh_key::rand_core::{OsRng, RngCore};

use super::error::Error;

/// Upper-case letters and digits 2-7 (RFC 4648 base32): 32 symbols, so
/// a random byte's low five bits pick one without bias.
const ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Base64's symbols: 64, so the low six bits pick one without bias.
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `len` random symbols of `alphabet` (whose size divides 256).
fn random(alphabet: &[u8], len: usize, what: &'static str) -> Result<String, Error> {
    let mut bytes = vec![0u8; len];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Random {
            what,
            reason: e.to_string(),
        })?;
    let mask = alphabet.len() - 1;
    Ok(bytes
        .iter()
        .filter_map(|b| alphabet.get(usize::from(*b) & mask))
        .map(|&c| char::from(c))
        .collect())
}

/// A new user ID.
pub fn user_id() -> Result<String, Error> {
    Ok(format!("AIDA{}", random(ID_ALPHABET, 17, "user ID")?))
}

/// A new access key ID.
pub fn access_key_id() -> Result<String, Error> {
    Ok(format!("AKIA{}", random(ID_ALPHABET, 16, "access key ID")?))
}

/// A new secret access key.
pub fn secret() -> Result<String, Error> {
    random(SECRET_ALPHABET, 40, "secret access key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_secrets_have_aws_shapes() {
        let id = user_id().unwrap();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("AIDA"));
        let key = access_key_id().unwrap();
        assert_eq!(key.len(), 20);
        assert!(key.starts_with("AKIA"));
        assert!(key.bytes().all(|b| ID_ALPHABET.contains(&b)));
        let secret = secret().unwrap();
        assert_eq!(secret.len(), 40);
        assert!(secret.bytes().all(|b| SECRET_ALPHABET.contains(&b)));
        assert_ne!(super::secret().unwrap(), secret);
    }
}
