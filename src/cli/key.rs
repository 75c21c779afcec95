//! `gureum key`: key pairs.

use std::path::PathBuf;

use clap::Subcommand;

use gureum::cloud::Error;
use gureum::cloud::api::{Action, Response};
use gureum::cloud::key_pair::{self, KeyPair, PublicKeySource};

use super::cloud::{
    CliError, Env, FilterArgs, TagArgs, change, describe, list, removed, unexpected,
};

/// Key pairs for SSH into instances.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key pair; the private key is written once and never shown
    /// again.
    Create {
        name: String,
        /// Where to write the private key [default: ./NAME.pem]; never
        /// overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// Register an existing OpenSSH public key.
    Import {
        name: String,
        /// The public key file (one line, e.g. ~/.ssh/id_ed25519.pub).
        #[arg(long)]
        public_key: PathBuf,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// List key pairs.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one key pair.
    Describe { key: String },
    /// Delete a key pair (instances launched with it keep running).
    #[command(visible_alias = "remove")]
    Rm { key: String },
}

pub fn run(env: &Env, command: KeyCommand) -> Result<(), CliError> {
    match command {
        KeyCommand::Create { name, out, tags } => {
            let tags = tags.named(&name)?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.pem")));
            // The file is made first and the key recorded after: if the
            // file cannot be made or the name is taken, nothing is kept.
            let file = key_pair::open_private(&out).map_err(Error::from)?;
            let response = env.call(Action::CreateKeyPair { name, tags });
            let written = match response {
                Ok(Response::NewKeyPair { key, private_key }) => {
                    key_pair::write_pem(file, &out, &private_key)
                        .map(|()| key)
                        .map_err(|e| CliError::from(Error::from(e)))
                }
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(e),
            };
            let key = written.inspect_err(|_| {
                // Nothing was written to it that anyone could use.
                let _ = std::fs::remove_file(&out);
            })?;
            eprintln!(
                "gureum: wrote the private key to {} (mode 0600); it cannot be fetched again",
                out.display()
            );
            println!("{}", key.item.id);
        }
        KeyCommand::Import {
            name,
            public_key,
            tags,
        } => {
            let tags = tags.named(&name)?;
            let public_key =
                std::path::absolute(&public_key).map_err(Error::io("cannot find", &public_key))?;
            change::<KeyPair>(
                env,
                Action::ImportKeyPair {
                    name,
                    public_key: PublicKeySource::File(public_key),
                    tags,
                },
            )?;
        }
        KeyCommand::List(filter) => {
            list::<KeyPair>(
                env,
                Action::ListKeyPairs {
                    filters: filter.filters()?,
                },
                &["NAME", "ID", "TYPE", "FINGERPRINT", "CREATED"],
                |k| {
                    let k = &k.item;
                    vec![
                        k.name.clone(),
                        k.id.clone(),
                        k.key_type.clone(),
                        k.fingerprint.clone(),
                        k.created.clone(),
                    ]
                },
            )?;
        }
        KeyCommand::Describe { key } => describe::<KeyPair>(env, Action::DescribeKeyPair { key })?,
        KeyCommand::Rm { key } => removed(env, Action::DeleteKeyPair { key })?,
    }
    Ok(())
}
