//! Errors of IAM's operations, each with the IAM error code and HTTP
//! status AWS answers it with, and the core API's category.

use std::path::PathBuf;

use super::policy;
use crate::cloud::api::Category;
use crate::cloud::store;

/// Access keys one owner may have, as IAM's quota.
pub const KEYS_PER_OWNER: usize = 2;
/// Managed policies one user may have attached, as IAM's default quota.
pub const POLICIES_PER_USER: usize = 10;
/// Characters (white space aside) of one user's inline policies together.
pub const INLINE_BYTES_PER_USER: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("the store failed to {what}: {source}")]
    Sql {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("the store's {what} is unreadable ({detail}); restore the store from a backup")]
    Corrupt { what: &'static str, detail: String },
    #[error("cannot read random bytes for a new {what}: {reason}")]
    Random { what: &'static str, reason: String },
    #[error(
        "the store {path} holds secret access keys but its mode is {mode:03o}: make it readable \
         by its owner only (`chmod 600 {}`)",
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("The user with name {0} cannot be found; `gureum iam list-users` shows the users")]
    NoSuchUser(String),
    #[error(
        "The Access Key with id {id} cannot be found{owner}; `gureum iam list-access-keys` \
         shows the keys"
    )]
    NoSuchAccessKey { id: String, owner: String },
    #[error(
        "Policy {arn} does not exist or is not attachable: gureum has the AWS managed policies \
         {}; give a policy of your own with put-user-policy",
        super::managed::arns().collect::<Vec<_>>().join(", ")
    )]
    NoSuchPolicy { arn: String },
    #[error(
        "Policy {arn} was not found attached to user {user}; `gureum iam \
         list-attached-user-policies --user {user}` shows its policies"
    )]
    NotAttached { user: String, arn: String },
    #[error(
        "The user policy with name {name} cannot be found for user {user}; `aws iam \
         list-user-policies --user-name {user}` shows its policies"
    )]
    NoSuchInline { user: String, name: String },
    #[error("User with name {0} already exists; pick another name")]
    UserExists(String),
    #[error("Cannot delete entity, must {0} first.")]
    DeleteConflict(String),
    #[error(
        "Cannot exceed quota for AccessKeysPerUser: {KEYS_PER_OWNER}; {owner} has that many: \
         delete one of its keys first (`gureum iam list-access-keys`)"
    )]
    TooManyKeys { owner: String },
    #[error(
        "Cannot exceed quota for PoliciesPerUser: {POLICIES_PER_USER}; detach one of user \
         {user}'s policies first"
    )]
    TooManyPolicies { user: String },
    #[error(
        "Maximum policy size of {INLINE_BYTES_PER_USER} bytes exceeded for user {user} (its \
         inline policies would have {size}, white space aside): make them shorter or use a \
         managed policy"
    )]
    PolicyTooLarge { user: String, size: usize },
    #[error(
        "1 validation error detected: Value '{value}' at '{what}' failed to satisfy constraint: \
         Member must be {rule}"
    )]
    Invalid {
        what: &'static str,
        value: String,
        rule: String,
    },
    #[error(
        "1 validation error detected: Value null at '{0}' failed to satisfy constraint: Member \
         must not be null"
    )]
    Missing(&'static str),
    #[error("the root account has no {0}: it may do everything; name a user (--user NAME)")]
    Root(&'static str),
    #[error("The policy document is malformed: {0}")]
    Malformed(#[from] policy::Error),
    #[error(
        "user {user}'s stored policy {name} is unreadable ({source}); put it again with \
         put-user-policy, or delete it"
    )]
    StoredPolicy {
        user: String,
        name: String,
        source: policy::Error,
    },
}

impl Error {
    /// IAM's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Store(_)
            | Error::Sql { .. }
            | Error::Corrupt { .. }
            | Error::Random { .. }
            | Error::Exposed { .. }
            | Error::StoredPolicy { .. } => "ServiceFailure",
            Error::NoSuchUser(_)
            | Error::NoSuchAccessKey { .. }
            | Error::NoSuchPolicy { .. }
            | Error::NotAttached { .. }
            | Error::NoSuchInline { .. } => "NoSuchEntity",
            Error::UserExists(_) => "EntityAlreadyExists",
            Error::DeleteConflict(_) => "DeleteConflict",
            Error::TooManyKeys { .. }
            | Error::TooManyPolicies { .. }
            | Error::PolicyTooLarge { .. } => "LimitExceeded",
            Error::Invalid { .. } | Error::Missing(_) | Error::Root(_) => "ValidationError",
            Error::Malformed(_) => "MalformedPolicyDocument",
        }
    }

    /// The HTTP status IAM answers the error with.
    pub fn status(&self) -> u16 {
        match self.category() {
            Category::NotFound => 404,
            Category::Conflict | Category::LimitExceeded => 409,
            Category::InvalidInput => 400,
            Category::Unauthorised => 403,
            Category::Internal => 500,
        }
    }

    /// The core API's category.
    pub fn category(&self) -> Category {
        match self.code() {
            "NoSuchEntity" => Category::NotFound,
            "EntityAlreadyExists" | "DeleteConflict" => Category::Conflict,
            "LimitExceeded" => Category::LimitExceeded,
            "ValidationError" | "MalformedPolicyDocument" => Category::InvalidInput,
            _ => Category::Internal,
        }
    }
}

/// An SQL failure while doing `what`.
pub fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Sql { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_statuses_and_categories_agree() {
        let cases = [
            (Error::NoSuchUser("bob".into()), "NoSuchEntity", 404),
            (Error::UserExists("bob".into()), "EntityAlreadyExists", 409),
            (Error::DeleteConflict("x".into()), "DeleteConflict", 409),
            (
                Error::TooManyKeys {
                    owner: "user bob".into(),
                },
                "LimitExceeded",
                409,
            ),
            (Error::Missing("UserName"), "ValidationError", 400),
            (
                Error::Malformed(policy::Error::NoStatement),
                "MalformedPolicyDocument",
                400,
            ),
            (
                Error::Random {
                    what: "x",
                    reason: "y".into(),
                },
                "ServiceFailure",
                500,
            ),
        ];
        for (e, code, status) in cases {
            assert_eq!((e.code(), e.status()), (code, status), "{e}");
        }
    }
}
