//! STS's Query API (version 2011-06-15): GetCallerIdentity, which needs
//! no permission (as in AWS): who signed the request.

use super::Reply;
use super::iam::{Failure, Params, Xml, answer};
use crate::cloud::iam::{AuthError, Caller, tables};
use crate::cloud::lifecycle::Context;

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// STS's answer to a request that failed authentication.
pub fn refused(e: &AuthError, request_id: &str) -> Reply {
    Failure::from(e).reply(NAMESPACE, request_id)
}

/// Answers the STS request `params` from `caller`.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    params: &[(String, String)],
    request_id: &str,
) -> Reply {
    let action = Params(params).get("Action").unwrap_or_default();
    let outcome = match action {
        "GetCallerIdentity" => caller_identity(ctx, caller).map(Some),
        other => Err(Failure::invalid_action(other)),
    };
    answer(NAMESPACE, action, request_id, outcome)
}

/// The caller's account, ARN and ID: a user's `AIDA…`, or the account's
/// for root.
fn caller_identity(ctx: &Context, caller: &Caller) -> Result<Xml, Failure> {
    let user_id = match &caller.user {
        None => caller.account.clone(),
        Some(name) => {
            let mut store = ctx.open_store()?;
            store
                .read(|tx| tables::existing_user(tx, name))
                .map_err(Failure::from)?
                .id
        }
    };
    let mut x = Xml::default();
    x.leaf("Arn", &caller.arn)
        .leaf("UserId", &user_id)
        .leaf("Account", &caller.account);
    Ok(x)
}
