//! Key pairs: an Ed25519 SSH key whose private half is handed out once,
//! at creation, and never kept; the store holds the public key and its
//! fingerprint.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use super::ids::{self, Kind};
use super::names::{self, NameError};
use super::store::Resource;

/// A key pair as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPair {
    pub id: String,
    pub name: String,
    pub key_type: String,
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// OpenSSH one-line form, for authorized_keys.
    pub public_key: String,
    pub created: String,
}

impl Resource for KeyPair {
    const KIND: Kind = Kind::KeyPair;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// Errors of making or importing a key pair.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("cannot generate an Ed25519 key: {0}")]
    Generate(ssh_key::Error),
    #[error("cannot encode the new key: {0}")]
    Encode(ssh_key::Error),
    #[error("cannot read the public key {path}: {source}")]
    ReadPublicKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{from} is not an OpenSSH public key ({source}); give the one line of a .pub file, \
         e.g. ~/.ssh/id_ed25519.pub"
    )]
    BadPublicKey {
        /// The file, or "the key material".
        from: String,
        source: ssh_key::Error,
    },
    #[error(
        "{0} already exists; the private key is written only to a new file: \
         pass --out with another path or move that file away"
    )]
    OutExists(PathBuf),
    #[error("cannot write the private key to {path}: {source}")]
    WritePrivate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Random(#[from] ids::RandomError),
}

fn record(name: &str, public: &PublicKey) -> Result<KeyPair, Error> {
    Ok(KeyPair {
        id: ids::new_id(Kind::KeyPair)?,
        name: name.into(),
        key_type: public.algorithm().as_str().into(),
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
        public_key: public.to_openssh().map_err(Error::Encode)?,
        created: super::time::now(),
    })
}

/// A freshly generated key pair whose private half has not been written.
#[derive(Debug)]
pub struct NewKey {
    pub pair: KeyPair,
    // Zeroed on drop by ssh-key.
    private: PrivateKey,
}

impl NewKey {
    /// Generates a new Ed25519 key pair named `name`.
    pub fn generate(name: &str) -> Result<Self, Error> {
        names::check(Kind::KeyPair, name)?;
        let mut private =
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(Error::Generate)?;
        private.set_comment(name);
        let pair = record(name, private.public_key())?;
        Ok(Self { pair, private })
    }

    /// The private key in OpenSSH format, to hand out once.
    pub fn private_pem(&self) -> Result<String, Error> {
        Ok(self
            .private
            .to_openssh(LineEnding::LF)
            .map_err(Error::Encode)?
            .to_string())
    }

    /// Writes the private key in OpenSSH format to a new file `path`,
    /// readable by its owner only. Never overwrites.
    pub fn write_private(&self, path: &Path) -> Result<(), Error> {
        write_pem(open_private(path)?, path, &self.private_pem()?)
    }
}

/// Creates the new file `path` for a private key, readable by its owner
/// only; refuses an existing one.
pub fn open_private(path: &Path) -> Result<File, Error> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => Error::OutExists(path.into()),
            _ => Error::WritePrivate {
                path: path.into(),
                source,
            },
        })
}

/// Writes `pem` to `file` (made by `open_private` at `path`) and syncs it.
pub fn write_pem(mut file: File, path: &Path, pem: &str) -> Result<(), Error> {
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::WritePrivate {
            path: path.into(),
            source,
        })
}

/// Where an imported public key comes from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublicKeySource {
    /// An OpenSSH public key file (one line), absolute.
    File(PathBuf),
    /// The key's line itself (EC2's PublicKeyMaterial).
    Text(String),
}

/// A key pair from an existing OpenSSH public key.
pub fn import(name: &str, public_key: &PublicKeySource) -> Result<KeyPair, Error> {
    names::check(Kind::KeyPair, name)?;
    let (text, from) = match public_key {
        PublicKeySource::File(path) => (
            std::fs::read_to_string(path).map_err(|source| Error::ReadPublicKey {
                path: path.clone(),
                source,
            })?,
            path.display().to_string(),
        ),
        PublicKeySource::Text(text) => (text.clone(), "the key material".to_owned()),
    };
    let public = PublicKey::from_openssh(text.trim())
        .map_err(|source| Error::BadPublicKey { from, source })?;
    record(name, &public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_written_private_key_parses_back_and_matches_the_stored_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = NewKey::generate("web").unwrap();
        let path = dir.path().join("web.pem");
        key.write_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let private = PrivateKey::read_openssh_file(&path).unwrap();
        let public = private.public_key();
        assert_eq!(public.to_openssh().unwrap(), key.pair.public_key);
        assert_eq!(
            public.fingerprint(HashAlg::Sha256).to_string(),
            key.pair.fingerprint
        );
        assert!(key.pair.fingerprint.starts_with("SHA256:"));
        assert_eq!(key.pair.key_type, "ssh-ed25519");
        assert!(crate::cloud::ids::is_id(Kind::KeyPair, &key.pair.id));
    }

    #[test]
    fn the_private_key_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "mine").unwrap();
        let err = NewKey::generate("k")
            .unwrap()
            .write_private(&path)
            .unwrap_err();
        assert!(matches!(err, Error::OutExists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    }

    #[test]
    fn import_takes_a_public_key_and_refuses_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let key = NewKey::generate("orig").unwrap();
        let pub_file = dir.path().join("k.pub");
        std::fs::write(&pub_file, format!("{}\n", key.pair.public_key)).unwrap();
        let file = |p: &Path| PublicKeySource::File(p.to_owned());
        let imported = import("copy", &file(&pub_file)).unwrap();
        assert_eq!(imported.fingerprint, key.pair.fingerprint);
        assert_eq!(imported.name, "copy");

        std::fs::write(&pub_file, "not a key").unwrap();
        let err = import("copy", &file(&pub_file)).unwrap_err();
        assert!(matches!(err, Error::BadPublicKey { .. }), "{err}");
        let text = PublicKeySource::Text(key.pair.public_key.clone());
        assert_eq!(
            import("text", &text).unwrap().fingerprint,
            key.pair.fingerprint
        );
        assert!(matches!(
            import("copy", &file(&dir.path().join("missing"))),
            Err(Error::ReadPublicKey { .. })
        ));
    }
}
