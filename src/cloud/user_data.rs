//! User data: bytes given at launch (a script, a cloud-config), kept with
//! the instance and served by its metadata service. Stored and shown in
//! base64, as EC2's API carries it, so that binary user data (gzip) goes
//! through JSON unchanged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// EC2's limit, on the raw bytes (before base64).
pub const MAX_BYTES: usize = 16 * 1024;

/// User data that is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "{source_name} holds {size} bytes of user data; EC2's limit is {MAX_BYTES} bytes \
         (16 KiB): move the bulk into a file the script downloads, or gzip it"
    )]
    TooLarge { source_name: String, size: usize },
    #[error("the user data in {source_name} is not valid base64: {reason}")]
    NotBase64 { source_name: String, reason: String },
}

/// At most `MAX_BYTES` of user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData(Vec<u8>);

impl UserData {
    /// `bytes`, if within the limit; `source_name` names where they came
    /// from in the error (a file, a request parameter).
    pub fn new(bytes: Vec<u8>, source_name: &str) -> Result<Self, Error> {
        if bytes.len() > MAX_BYTES {
            return Err(Error::TooLarge {
                source_name: source_name.to_owned(),
                size: bytes.len(),
            });
        }
        Ok(Self(bytes))
    }

    /// Decodes base64 `text` (the API's form), then checks the limit.
    pub fn from_base64(text: &str, source_name: &str) -> Result<Self, Error> {
        let bytes = BASE64.decode(text.trim()).map_err(|e| Error::NotBase64 {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        Self::new(bytes, source_name)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }
}

impl Serialize for UserData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for UserData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_base64(&text, "the record").map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_kib_is_accepted_and_one_byte_more_refused() {
        assert!(UserData::new(vec![b'x'; MAX_BYTES], "f").is_ok());
        let err = UserData::new(vec![b'x'; MAX_BYTES + 1], "script.sh").unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                source_name: "script.sh".into(),
                size: MAX_BYTES + 1
            }
        );
        assert!(err.to_string().contains("script.sh"), "{err}");
        assert!(err.to_string().contains("16384"), "{err}");
    }

    #[test]
    fn it_travels_as_base64_and_binary_survives() {
        let data = UserData::new(vec![0x1f, 0x8b, 0, 0xff], "f").unwrap();
        let json = serde_json::to_string(&data).unwrap();
        assert_eq!(json, "\"H4sA/w==\"");
        assert_eq!(serde_json::from_str::<UserData>(&json).unwrap(), data);
        assert!(matches!(
            UserData::from_base64("not base64!", "UserData"),
            Err(Error::NotBase64 { .. })
        ));
    }
}
