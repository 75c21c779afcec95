//! Who is calling and what they may do: `authenticate` checks a request's
//! SigV4 signature against the access key it names, `authorize` evaluates
//! the caller's policies for one action on one resource. Every front end
//! calls them in front of the core API (local `gureum` commands act as
//! root through the socket).

use std::time::SystemTime;

use super::error::Error;
use super::evaluate::{self, Decision};
use super::policy::Policy;
use super::records::{KeyStatus, Owner};
use super::sigv4::{AuthError, Signature, SignedRequest};
use super::{arn as arns, managed, tables};
use crate::cloud::api::{ApiError, Category};
use crate::cloud::lifecycle::Context;
use crate::cloud::store::Tx;

/// Who signed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account's 12-digit ID.
    pub account: String,
    /// The user, or `None` for the root account.
    pub user: Option<String>,
    pub arn: String,
    pub access_key: String,
}

/// An authenticated request: its caller, and the service and region of
/// its credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub caller: Caller,
    pub service: String,
    pub region: String,
}

/// Checks `request`'s signature and time (against `now`) and names its
/// caller.
pub fn authenticate(
    ctx: &Context,
    request: &SignedRequest<'_>,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    let signature = Signature::parse(request)?;
    let internal = |e: &dyn std::fmt::Display| AuthError::Internal(e.to_string());
    let mut store = ctx.open_store().map_err(|e| internal(&e))?;
    let found = store
        .read(|tx| {
            let Some((key, secret)) = tables::access_key(tx, &signature.access_key)? else {
                return Ok(None);
            };
            let account = tables::account_id(tx)?;
            let arn = match &key.owner {
                Owner::Root => arns::root(&account),
                Owner::User(name) => tables::existing_user(tx, name)?.arn,
            };
            Ok::<_, Error>(Some((key, secret, account, arn)))
        })
        .map_err(|e| internal(&e))?;
    let Some((key, secret, account, arn)) = found else {
        return Err(AuthError::UnknownKey(signature.access_key));
    };
    if key.status != KeyStatus::Active {
        return Err(AuthError::InactiveKey(key.id));
    }
    signature.verify(request, &secret, now)?;
    Ok(Authenticated {
        caller: Caller {
            account,
            user: key.owner.user().map(str::to_owned),
            arn,
            access_key: key.id,
        },
        service: signature.scope.service,
        region: signature.scope.region,
    })
}

/// Whether `caller` may do `action` (`ec2:CreateVpc`) on `resource` (an
/// ARN, or `*` for actions without a resource). Root may do all.
pub fn authorize(
    ctx: &Context,
    caller: &Caller,
    action: &str,
    resource: &str,
) -> Result<(), ApiError> {
    let Some(user) = &caller.user else {
        return Ok(());
    };
    let mut store = ctx.open_store()?;
    let policies = store
        .read(|tx| policies_of(tx, user))
        .map_err(|e| ApiError::new(e.category(), e.to_string()))?;
    let why = match evaluate::decide(&policies, action, resource) {
        Decision::Allow => return Ok(()),
        Decision::ExplicitDeny => "with an explicit deny in an identity-based policy",
        Decision::ImplicitDeny => "because no identity-based policy allows the action",
    };
    Err(ApiError::new(
        Category::Unauthorised,
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} {why}; \
             root can grant it (`gureum iam attach-user-policy` or `put-user-policy`)",
            caller.arn
        ),
    ))
}

/// Every policy of `user`: the managed ones attached and its inline ones.
/// A user deleted since it was authenticated has none.
fn policies_of(tx: &Tx<'_>, user: &str) -> Result<Vec<Policy>, Error> {
    let mut out = Vec::new();
    for arn in tables::attached(tx, user)? {
        match managed::policy(&arn) {
            Some(parsed) => out.push(parsed?),
            None => return Err(Error::NoSuchPolicy { arn }),
        }
    }
    for (name, document) in tables::inline(tx, user)? {
        let parsed = Policy::parse(&document).map_err(|source| Error::StoredPolicy {
            user: user.to_owned(),
            name,
            source,
        })?;
        out.push(parsed);
    }
    Ok(out)
}

/// The ARN of a gureum EC2 resource, for `authorize`: `kind` is its ARN
/// resource type (`vpc`, `security-group`, `instance`, ...; see
/// `arn::resource_type`), `id` its ID or `*`, in gureum's own region
/// (`arn::REGION`). Without a readable store the account part is empty,
/// which no policy naming the account matches. (The endpoint knows the
/// caller's account and the region the request is signed for, and calls
/// `arn::ec2` with them instead, without opening the store.)
pub fn arn(ctx: &Context, kind: &str, id: &str) -> String {
    let account = ctx
        .open_store()
        .ok()
        .and_then(|mut store| store.read(tables::account_id).ok())
        .unwrap_or_default();
    arns::ec2(&account, arns::REGION, kind, id)
}
