//! `gureum key`: key pairs.

use std::path::PathBuf;

use clap::Subcommand;

use gureum::cloud::Error;
use gureum::cloud::key_pair::{self, KeyPair, NewKey};

use super::cloud::{CliError, Env, FilterArgs, TagArgs, describe, list, remove};

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
    let mut store = env.store()?;
    match command {
        KeyCommand::Create { name, out, tags } => {
            let tags = tags.named(&name)?;
            let key = NewKey::generate(&name).map_err(Error::from)?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.pem")));
            // The private key is written inside the transaction: if the
            // name is taken or the file cannot be made, nothing is kept.
            let written = std::cell::Cell::new(false);
            let result = store.write(|tx| {
                tx.insert(&key.pair, &tags)?;
                key.write_private(&out).map_err(Error::from)?;
                written.set(true);
                Ok::<_, Error>(())
            });
            if let Err(e) = result {
                if written.get() {
                    let _ = std::fs::remove_file(&out);
                }
                return Err(e.into());
            }
            eprintln!(
                "gureum: wrote the private key to {} (mode 0600); it cannot be fetched again",
                out.display()
            );
            println!("{}", key.pair.id);
        }
        KeyCommand::Import {
            name,
            public_key,
            tags,
        } => {
            let tags = tags.named(&name)?;
            let pair = key_pair::import(&name, &public_key).map_err(Error::from)?;
            store.write(|tx| tx.insert(&pair, &tags))?;
            println!("{}", pair.id);
        }
        KeyCommand::List(filter) => {
            list::<KeyPair>(
                env,
                &mut store,
                &filter,
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
        KeyCommand::Describe { key } => describe::<KeyPair>(env, &mut store, &key)?,
        KeyCommand::Rm { key } => remove::<KeyPair>(&mut store, &key)?,
    }
    Ok(())
}
