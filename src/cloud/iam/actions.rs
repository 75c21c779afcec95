//! IAM's operations in the core API (`Action::Iam`): users, access keys
//! and user policies, each in one store transaction.

use serde::{Deserialize, Serialize};

use super::error::{Error, INLINE_BYTES_PER_USER, KEYS_PER_OWNER, POLICIES_PER_USER};
use super::managed;
use super::policy::Policy;
use super::records::{self, AccessKey, Attached, Inline, KeyStatus, Owner, User};
use super::{credentials, tables};
use crate::cloud::store::Store;
use crate::cloud::time;

/// The longest user name IAM takes.
const USER_NAME_MAX: usize = 64;
/// The longest policy name IAM takes.
const POLICY_NAME_MAX: usize = 128;

/// One IAM operation. A user is named by its name; `owner` is whose
/// keys are meant (the root account or a user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "iam", rename_all = "kebab-case")]
pub enum IamAction {
    CreateUser {
        name: String,
        /// `/` when not given.
        path: Option<String>,
    },
    DeleteUser {
        name: String,
    },
    GetUser {
        name: String,
    },
    ListUsers {
        path_prefix: Option<String>,
    },
    /// The secret is in the answer, this once.
    CreateAccessKey {
        owner: Owner,
    },
    /// `owner`, when given, must own the key.
    DeleteAccessKey {
        id: String,
        owner: Option<Owner>,
    },
    /// An inactive key authenticates nothing until made active again.
    UpdateAccessKey {
        id: String,
        owner: Option<Owner>,
        status: KeyStatus,
    },
    /// Every key when `owner` is not given.
    ListAccessKeys {
        owner: Option<Owner>,
    },
    AttachUserPolicy {
        user: String,
        arn: String,
    },
    DetachUserPolicy {
        user: String,
        arn: String,
    },
    ListAttachedUserPolicies {
        user: String,
    },
    /// Adds or replaces an inline policy; `document` is its JSON.
    PutUserPolicy {
        user: String,
        name: String,
        document: String,
    },
    GetUserPolicy {
        user: String,
        name: String,
    },
    DeleteUserPolicy {
        user: String,
        name: String,
    },
    ListUserPolicies {
        user: String,
    },
}

impl IamAction {
    /// Whether it changes the store.
    pub fn changes(&self) -> bool {
        !matches!(
            self,
            IamAction::GetUser { .. }
                | IamAction::ListUsers { .. }
                | IamAction::ListAccessKeys { .. }
                | IamAction::ListAttachedUserPolicies { .. }
                | IamAction::GetUserPolicy { .. }
                | IamAction::ListUserPolicies { .. }
        )
    }
}

/// What an IAM operation answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "iam", content = "value", rename_all = "kebab-case")]
pub enum IamResponse {
    Users(Vec<User>),
    /// A new access key and its secret, handed out this once.
    NewAccessKey {
        key: AccessKey,
        secret: String,
    },
    AccessKeys(Vec<AccessKey>),
    AttachedPolicies(Vec<Attached>),
    PolicyNames(Vec<String>),
    Policy(Inline),
    /// A change that answers nothing (IAM's empty results).
    Done,
}

/// Runs `action` on `store`.
pub fn execute(store: &mut Store, action: &IamAction) -> Result<IamResponse, Error> {
    use IamAction as A;
    Ok(match action {
        A::CreateUser { name, path } => {
            records::check_name("userName", name, USER_NAME_MAX)?;
            let path = path.as_deref().unwrap_or("/");
            records::check_path(path)?;
            let id = credentials::user_id()?;
            let user = store.write(|tx| {
                if tables::user(tx, name)?.is_some() {
                    return Err(Error::UserExists(name.clone()));
                }
                let account = tables::account_id(tx)?;
                let user = User {
                    arn: super::arn::user(&account, path, name),
                    name: name.clone(),
                    id,
                    path: path.to_owned(),
                    created: time::now(),
                };
                tables::insert_user(tx, &user)?;
                Ok(user)
            })?;
            IamResponse::Users(vec![user])
        }
        A::DeleteUser { name } => {
            store.write(|tx| {
                let user = tables::existing_user(tx, name)?;
                let blockers = [
                    (
                        !tables::access_keys(tx, Some(&Owner::User(user.name.clone())))?.is_empty(),
                        "delete its access keys (delete-access-key)",
                    ),
                    (
                        !tables::attached(tx, &user.name)?.is_empty(),
                        "detach its managed policies (detach-user-policy)",
                    ),
                    (
                        !tables::inline(tx, &user.name)?.is_empty(),
                        "delete its inline policies (delete-user-policy)",
                    ),
                ];
                let todo: Vec<&str> = blockers
                    .iter()
                    .filter(|(blocks, _)| *blocks)
                    .map(|(_, what)| *what)
                    .collect();
                if !todo.is_empty() {
                    return Err(Error::DeleteConflict(todo.join(" and ")));
                }
                tables::delete_user(tx, &user.name)
            })?;
            IamResponse::Done
        }
        A::GetUser { name } => {
            IamResponse::Users(vec![store.read(|tx| tables::existing_user(tx, name))?])
        }
        A::ListUsers { path_prefix } => {
            let prefix = path_prefix.as_deref().unwrap_or("/");
            IamResponse::Users(store.read(|tx| tables::users(tx, prefix))?)
        }
        A::CreateAccessKey { owner } => {
            let id = credentials::access_key_id()?;
            let secret = credentials::secret()?;
            tables::check_private(store.path())?;
            let key = store.write(|tx| {
                let owner = canonical_owner(tx, owner)?;
                if tables::access_keys(tx, Some(&owner))?.len() >= KEYS_PER_OWNER {
                    return Err(Error::TooManyKeys {
                        owner: owner.to_string(),
                    });
                }
                let key = AccessKey {
                    id,
                    owner,
                    status: KeyStatus::Active,
                    created: time::now(),
                };
                tables::insert_key(tx, &key, &secret)?;
                Ok(key)
            })?;
            IamResponse::NewAccessKey { key, secret }
        }
        A::DeleteAccessKey { id, owner } => {
            store.write(|tx| {
                owned_key(tx, id, owner.as_ref())?;
                tables::delete_key(tx, id)
            })?;
            IamResponse::Done
        }
        A::UpdateAccessKey { id, owner, status } => {
            store.write(|tx| {
                owned_key(tx, id, owner.as_ref())?;
                tables::set_key_status(tx, id, *status)
            })?;
            IamResponse::Done
        }
        A::ListAccessKeys { owner } => IamResponse::AccessKeys(store.read(|tx| {
            let owner = owner.as_ref().map(|o| canonical_owner(tx, o)).transpose()?;
            tables::access_keys(tx, owner.as_ref())
        })?),
        A::AttachUserPolicy { user, arn } => {
            if managed::document(arn).is_none() {
                return Err(Error::NoSuchPolicy { arn: arn.clone() });
            }
            store.write(|tx| {
                let user = tables::existing_user(tx, user)?;
                let attached = tables::attached(tx, &user.name)?;
                if !attached.contains(arn) && attached.len() >= POLICIES_PER_USER {
                    return Err(Error::TooManyPolicies { user: user.name });
                }
                tables::attach(tx, &user.name, arn).map(drop)
            })?;
            IamResponse::Done
        }
        A::DetachUserPolicy { user, arn } => {
            store.write(|tx| {
                let user = tables::existing_user(tx, user)?;
                if tables::detach(tx, &user.name, arn)? {
                    Ok(())
                } else {
                    Err(Error::NotAttached {
                        user: user.name,
                        arn: arn.clone(),
                    })
                }
            })?;
            IamResponse::Done
        }
        A::ListAttachedUserPolicies { user } => {
            IamResponse::AttachedPolicies(store.read(|tx| {
                let user = tables::existing_user(tx, user)?;
                Ok::<_, Error>(
                    tables::attached(tx, &user.name)?
                        .into_iter()
                        .map(|arn| Attached {
                            name: managed::name(&arn).to_owned(),
                            arn,
                        })
                        .collect(),
                )
            })?)
        }
        A::PutUserPolicy {
            user,
            name,
            document,
        } => {
            records::check_name("policyName", name, POLICY_NAME_MAX)?;
            Policy::parse(document)?;
            store.write(|tx| {
                let user = tables::existing_user(tx, user)?;
                let size: usize = tables::inline(tx, &user.name)?
                    .iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
                    .map(|(_, doc)| significant(doc))
                    .sum::<usize>()
                    + significant(document);
                if size > INLINE_BYTES_PER_USER {
                    return Err(Error::PolicyTooLarge {
                        user: user.name,
                        size,
                    });
                }
                tables::put_inline(tx, &user.name, name, document)
            })?;
            IamResponse::Done
        }
        A::GetUserPolicy { user, name } => IamResponse::Policy(store.read(|tx| {
            let user = tables::existing_user(tx, user)?;
            tables::inline(tx, &user.name)?
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(name, document)| Inline {
                    user: user.name.clone(),
                    name,
                    document,
                })
                .ok_or_else(|| Error::NoSuchInline {
                    user: user.name.clone(),
                    name: name.clone(),
                })
        })?),
        A::DeleteUserPolicy { user, name } => {
            store.write(|tx| {
                let user = tables::existing_user(tx, user)?;
                if tables::delete_inline(tx, &user.name, name)? {
                    Ok(())
                } else {
                    Err(Error::NoSuchInline {
                        user: user.name,
                        name: name.clone(),
                    })
                }
            })?;
            IamResponse::Done
        }
        A::ListUserPolicies { user } => IamResponse::PolicyNames(store.read(|tx| {
            let user = tables::existing_user(tx, user)?;
            Ok::<_, Error>(
                tables::inline(tx, &user.name)?
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect(),
            )
        })?),
    })
}

/// `owner` with the user's name as stored (names match whatever their
/// case); NoSuchEntity for a user that does not exist.
fn canonical_owner(tx: &crate::cloud::store::Tx<'_>, owner: &Owner) -> Result<Owner, Error> {
    match owner {
        Owner::Root => Ok(Owner::Root),
        Owner::User(name) => Ok(Owner::User(tables::existing_user(tx, name)?.name)),
    }
}

/// Access key `id`, which must be `owner`'s when an owner is named;
/// NoSuchEntity otherwise.
fn owned_key(
    tx: &crate::cloud::store::Tx<'_>,
    id: &str,
    owner: Option<&Owner>,
) -> Result<AccessKey, Error> {
    let owner = owner.map(|o| canonical_owner(tx, o)).transpose()?;
    match tables::access_key(tx, id)? {
        Some((key, _)) if owner.as_ref().is_none_or(|o| key.owner == *o) => Ok(key),
        _ => Err(Error::NoSuchAccessKey {
            id: id.to_owned(),
            owner: owner.map(|o| format!(" for {o}")).unwrap_or_default(),
        }),
    }
}

/// A policy's size as IAM counts it: white space aside.
fn significant(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

#[cfg(test)]
mod tests;
