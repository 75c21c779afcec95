//! Create/Import/Delete/DescribeKeyPairs.

use crate::cloud::api::{Action, Response, Tagged};
use crate::cloud::ids::Kind;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::cloud::key_pair::{KeyPair, PublicKeySource};

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target, done, named};

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateKeyPair", Target::Any, create),
    Operation::new("ImportKeyPair", Target::Any, import),
    Operation::new("DeleteKeyPair", named(Kind::KeyPair, "KeyName"), delete),
    Operation::new("DescribeKeyPairs", Target::Any, describe),
];

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    if call.params.get("KeyType").is_some_and(|t| t != "ed25519") {
        return Err(Ec2Error::unsupported("key types other than ed25519"));
    }
    if call.params.get("KeyFormat").is_some_and(|f| f != "pem") {
        return Err(Ec2Error::unsupported("key formats other than pem"));
    }
    let made = call.run(Action::CreateKeyPair {
        name: call.params.required("KeyName")?.to_owned(),
        tags: call.tag_spec("key-pair")?,
    })?;
    let Response::NewKeyPair { key, private_key } = made else {
        return Err(super::unexpected());
    };
    let mut x = Xml::new();
    x.leaf("keyName", &key.item.name)
        .leaf("keyFingerprint", &key.item.fingerprint)
        .leaf("keyMaterial", private_key)
        .leaf("keyPairId", &key.item.id)
        .tags(&key.tags);
    Ok(x)
}

/// `PublicKeyMaterial`: the base64 of the OpenSSH public key line.
fn import(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let material = call.params.required("PublicKeyMaterial")?;
    let bad = || {
        Ec2Error::invalid(
            "PublicKeyMaterial",
            "(key)",
            "the base64 of an OpenSSH public key",
        )
    };
    let text = BASE64.decode(material).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let key = call.one::<KeyPair>(Action::ImportKeyPair {
        name: call.params.required("KeyName")?.to_owned(),
        public_key: PublicKeySource::Text(text),
        tags: call.tag_spec("key-pair")?,
    })?;
    let mut x = Xml::new();
    x.leaf("keyFingerprint", &key.item.fingerprint)
        .leaf("keyName", &key.item.name)
        .leaf("keyPairId", &key.item.id)
        .tags(&key.tags);
    Ok(x)
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let key = match call.params.get("KeyPairId") {
        Some(id) => id,
        None => call.params.required("KeyName")?,
    };
    call.run(Action::DeleteKeyPair {
        key: key.to_owned(),
    })?;
    let mut x = done()?;
    x.leaf("keyPairId", key);
    Ok(x)
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let mut keys = call.describe(
        "KeyPairId",
        Action::ListKeyPairs { filters: vec![] },
        |key| Action::DescribeKeyPair { key },
        field,
    )?;
    let names = call.params.list("KeyName");
    for name in &names {
        if !keys.iter().any(|k| &k.item.name == name) {
            return Err(Ec2Error::client(
                "InvalidKeyPair.NotFound",
                format!("The key pair '{name}' does not exist"),
            ));
        }
    }
    if !names.is_empty() {
        keys.retain(|k| names.contains(&k.item.name));
    }
    let include_public = call.params.bool("IncludePublicKey")? == Some(true);
    let mut x = Xml::new();
    x.list("keySet", &keys, |x, k| write(x, k, include_public));
    Ok(x)
}

fn field(k: &KeyPair, name: &str) -> Option<Vec<String>> {
    Some(vec![match name {
        "key-name" => k.name.clone(),
        "key-pair-id" => k.id.clone(),
        "fingerprint" => k.fingerprint.clone(),
        "key-type" => k.key_type.clone(),
        _ => return None,
    }])
}

fn write(x: &mut Xml, k: &Tagged<KeyPair>, include_public: bool) {
    let key = &k.item;
    x.leaf("keyPairId", &key.id)
        .leaf("keyName", &key.name)
        .leaf("keyFingerprint", &key.fingerprint)
        .leaf("keyType", key.key_type.trim_start_matches("ssh-"))
        .leaf("createTime", &key.created)
        .opt("publicKey", include_public.then_some(&key.public_key))
        .tags(&k.tags);
}
