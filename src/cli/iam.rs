//! `gureum iam`: users, access keys and user policies. Local commands act
//! as the root account (through the daemon's socket when one runs).

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use gureum::cloud::Error;
use gureum::cloud::api::{Action, Response};
use gureum::cloud::iam::records::{AccessKey, KeyStatus, Owner, User};
use gureum::cloud::iam::{IamAction, IamResponse};

use super::cloud::{CliError, Env, unexpected};
use super::output::{self, Format};

/// Users, access keys and policies for the EC2/IAM/STS API.
#[derive(Debug, Subcommand)]
pub enum IamCommand {
    /// Create an access key for the root account, or for --user; the
    /// secret is shown this once.
    CreateAccessKey {
        #[arg(long)]
        user: Option<String>,
    },
    /// List access keys: every one, or --user's (--root: the root
    /// account's).
    ListAccessKeys {
        #[arg(long, conflicts_with = "root")]
        user: Option<String>,
        #[arg(long)]
        root: bool,
    },
    /// Delete an access key (of --user only, if given).
    DeleteAccessKey {
        id: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Make an access key inactive (it authenticates nothing) or active.
    UpdateAccessKey {
        id: String,
        #[arg(long, value_parser = ["Active", "Inactive"])]
        status: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Create a user (who may do nothing until a policy allows it).
    CreateUser {
        name: String,
        /// The user's path, as /team/ [default: /].
        #[arg(long)]
        path: Option<String>,
    },
    /// Delete a user without access keys or policies.
    DeleteUser { name: String },
    /// List users.
    ListUsers,
    /// Attach a managed policy (AdministratorAccess, AmazonEC2FullAccess,
    /// AmazonEC2ReadOnlyAccess) to a user.
    AttachUserPolicy {
        #[arg(long)]
        user: String,
        /// As arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess.
        #[arg(long)]
        policy_arn: String,
    },
    /// Detach a managed policy from a user.
    DetachUserPolicy {
        #[arg(long)]
        user: String,
        #[arg(long)]
        policy_arn: String,
    },
    /// List the managed policies attached to a user.
    ListAttachedUserPolicies {
        #[arg(long)]
        user: String,
    },
    /// Add or replace a user's inline policy from a JSON document.
    PutUserPolicy {
        #[arg(long)]
        user: String,
        /// The policy's name.
        #[arg(long)]
        name: String,
        /// A file with the policy document (IAM's JSON).
        #[arg(long)]
        document: PathBuf,
    },
    /// List a user's inline policies.
    ListUserPolicies {
        #[arg(long)]
        user: String,
    },
    /// Delete a user's inline policy.
    DeleteUserPolicy {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
    },
}

pub fn run(env: &Env, command: IamCommand) -> Result<(), CliError> {
    use IamCommand as C;
    match command {
        C::CreateAccessKey { user } => {
            let owner = Owner::from_user(user);
            let IamResponse::NewAccessKey { key, secret } =
                call(env, IamAction::CreateAccessKey { owner })?
            else {
                return Err(wrong());
            };
            new_key(env.format, &key, &secret)?;
        }
        C::ListAccessKeys { user, root } => {
            let owner = if root {
                Some(Owner::Root)
            } else {
                user.map(Owner::User)
            };
            let IamResponse::AccessKeys(keys) = call(env, IamAction::ListAccessKeys { owner })?
            else {
                return Err(wrong());
            };
            list_keys(env.format, &keys)?;
        }
        C::DeleteAccessKey { id, user } => {
            let owner = user.map(Owner::User);
            done(
                env,
                IamAction::DeleteAccessKey {
                    id: id.clone(),
                    owner,
                },
                &id,
            )?;
        }
        C::UpdateAccessKey { id, status, user } => {
            let status = if status == "Active" {
                KeyStatus::Active
            } else {
                KeyStatus::Inactive
            };
            let owner = user.map(Owner::User);
            let action = IamAction::UpdateAccessKey {
                id: id.clone(),
                owner,
                status,
            };
            done(env, action, &id)?;
        }
        C::CreateUser { name, path } => {
            let IamResponse::Users(users) = call(env, IamAction::CreateUser { name, path })? else {
                return Err(wrong());
            };
            list_users(env.format, &users)?;
        }
        C::DeleteUser { name } => done(env, IamAction::DeleteUser { name: name.clone() }, &name)?,
        C::ListUsers => {
            let IamResponse::Users(users) = call(env, IamAction::ListUsers { path_prefix: None })?
            else {
                return Err(wrong());
            };
            list_users(env.format, &users)?;
        }
        C::AttachUserPolicy { user, policy_arn } => done(
            env,
            IamAction::AttachUserPolicy {
                user,
                arn: policy_arn.clone(),
            },
            &policy_arn,
        )?,
        C::DetachUserPolicy { user, policy_arn } => done(
            env,
            IamAction::DetachUserPolicy {
                user,
                arn: policy_arn.clone(),
            },
            &policy_arn,
        )?,
        C::ListAttachedUserPolicies { user } => {
            let IamResponse::AttachedPolicies(policies) =
                call(env, IamAction::ListAttachedUserPolicies { user })?
            else {
                return Err(wrong());
            };
            show(env.format, &policies, &["NAME", "ARN"], |p| {
                vec![p.name.clone(), p.arn.clone()]
            })?;
        }
        C::PutUserPolicy {
            user,
            name,
            document,
        } => {
            let text = std::fs::read_to_string(&document)
                .map_err(Error::io("cannot read the policy document", &document))?;
            done(
                env,
                IamAction::PutUserPolicy {
                    user,
                    name: name.clone(),
                    document: text,
                },
                &name,
            )?;
        }
        C::ListUserPolicies { user } => {
            let IamResponse::PolicyNames(names) = call(env, IamAction::ListUserPolicies { user })?
            else {
                return Err(wrong());
            };
            show(env.format, &names, &["NAME"], |n| vec![n.clone()])?;
        }
        C::DeleteUserPolicy { user, name } => done(
            env,
            IamAction::DeleteUserPolicy {
                user,
                name: name.clone(),
            },
            &name,
        )?,
    }
    Ok(())
}

/// Runs `action` through the core API.
fn call(env: &Env, action: IamAction) -> Result<IamResponse, CliError> {
    match env.call(Action::Iam(action))? {
        Response::Iam(answer) => Ok(answer),
        other => Err(unexpected(&other)),
    }
}

/// Runs a change that answers nothing and prints what it was about.
fn done(env: &Env, action: IamAction, what: &str) -> Result<(), CliError> {
    call(env, action)?;
    println!("{what}");
    Ok(())
}

/// A new key: as `aws iam create-access-key` prints it with `-o json`,
/// so that scripts read `.AccessKey.AccessKeyId` either way.
fn new_key(format: Format, key: &AccessKey, secret: &str) -> Result<(), CliError> {
    match format {
        Format::Json => {
            let mut access_key = json!({
                "AccessKeyId": key.id,
                "SecretAccessKey": secret,
                "Status": key.status.as_str(),
                "CreateDate": key.created,
            });
            if let (Some(user), Some(fields)) = (key.owner.user(), access_key.as_object_mut()) {
                fields.insert("UserName".into(), json!(user));
            }
            output::json(&json!({ "AccessKey": access_key }))?;
        }
        Format::Table => {
            println!("AccessKeyId:     {}", key.id);
            println!("SecretAccessKey: {secret}");
        }
    }
    eprintln!(
        "gureum: access key {} of {}; its secret is shown this once and cannot be fetched again",
        key.id, key.owner
    );
    Ok(())
}

/// Prints `items`: JSON, or a table with `headers` and one `row` each.
fn show<T: serde::Serialize>(
    format: Format,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> Result<(), CliError> {
    match format {
        Format::Json => output::json(items)?,
        Format::Table => output::table(headers, &items.iter().map(row).collect::<Vec<_>>()),
    }
    Ok(())
}

/// An answer of another kind than the action's.
fn wrong() -> CliError {
    CliError::Unexpected("IAM answer of another kind".into())
}

fn list_keys(format: Format, keys: &[AccessKey]) -> Result<(), CliError> {
    show(
        format,
        keys,
        &["ACCESS-KEY-ID", "OWNER", "STATUS", "CREATED"],
        |k| {
            vec![
                k.id.clone(),
                k.owner.user().unwrap_or("(root)").to_owned(),
                k.status.as_str().to_owned(),
                k.created.clone(),
            ]
        },
    )
}

fn list_users(format: Format, users: &[User]) -> Result<(), CliError> {
    show(format, users, &["NAME", "ID", "ARN", "CREATED"], |u| {
        vec![
            u.name.clone(),
            u.id.clone(),
            u.arn.clone(),
            u.created.clone(),
        ]
    })
}
