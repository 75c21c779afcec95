//! IAM's Query API (version 2010-05-08): the request's parameters to an
//! `IamAction`, checked by `authorize` as `iam:ACTION` on the user's ARN,
//! and the answer in the XML botocore parses
//! (`<XResponse><XResult>…</XResult><ResponseMetadata>…`), or IAM's error
//! envelope (`<ErrorResponse><Error><Type>…<Code>…`).

use percent_encoding::utf8_percent_encode;
use quick_xml::escape::escape;

use super::Reply;
use crate::cloud::api::Category;
use crate::cloud::iam::records::{AccessKey, KeyStatus, Owner, User};
use crate::cloud::iam::sigv4::UNRESERVED;
use crate::cloud::iam::{self, AuthError, Caller, IamAction, IamResponse, arn, tables};
use crate::cloud::lifecycle::Context;

const NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// An XML document under construction; text is escaped.
#[derive(Debug, Default)]
pub(super) struct Xml(String);

impl Xml {
    pub(super) fn open(&mut self, tag: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    pub(super) fn close(&mut self, tag: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    pub(super) fn leaf(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        self.0.push_str(&escape(text));
        self.close(tag)
    }
}

/// A Query API error as IAM and STS answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The error envelope of the service whose namespace is `namespace`.
    pub(super) fn reply(&self, namespace: &str, request_id: &str) -> Reply {
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        let mut x = Xml::default();
        x.0.push_str(&format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{namespace}\">"
        ));
        x.open("Error")
            .leaf("Type", kind)
            .leaf("Code", self.code)
            .leaf("Message", &self.message)
            .close("Error")
            .leaf("RequestId", request_id)
            .close("ErrorResponse");
        Reply {
            status: self.status,
            body: x.0,
        }
    }

    pub(super) fn invalid_action(action: &str) -> Self {
        Self::new(
            400,
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        )
    }
}

impl From<&AuthError> for Failure {
    fn from(e: &AuthError) -> Self {
        Self::new(e.status(), e.code(), e.to_string())
    }
}

impl From<iam::Error> for Failure {
    fn from(e: iam::Error) -> Self {
        Self::new(e.status(), e.code(), e.to_string())
    }
}

impl From<crate::cloud::Error> for Failure {
    fn from(e: crate::cloud::Error) -> Self {
        match e {
            crate::cloud::Error::Iam(e) => e.into(),
            other => Self::new(500, "ServiceFailure", other.to_string()),
        }
    }
}

/// The answer to `action` of the service whose namespace is `namespace`:
/// its result, or its error.
pub(super) fn answer(
    namespace: &str,
    action: &str,
    request_id: &str,
    outcome: Result<Option<Xml>, Failure>,
) -> Reply {
    match outcome {
        Ok(result) => success(namespace, action, request_id, result),
        Err(failure) => failure.reply(namespace, request_id),
    }
}

/// The successful answer to `action`: `result` fills `<ACTIONResult>`,
/// or there is none.
fn success(namespace: &str, action: &str, request_id: &str, result: Option<Xml>) -> Reply {
    let mut x = Xml::default();
    x.0.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{namespace}\">"
    ));
    if let Some(result) = result {
        let tag = format!("{action}Result");
        x.open(&tag);
        x.0.push_str(&result.0);
        x.close(&tag);
    }
    x.open("ResponseMetadata")
        .leaf("RequestId", request_id)
        .close("ResponseMetadata")
        .close(&format!("{action}Response"));
    Reply {
        status: 200,
        body: x.0,
    }
}

/// The request's parameters, by name.
pub(super) struct Params<'a>(pub &'a [(String, String)]);

impl<'a> Params<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn need(&self, name: &'static str) -> Result<String, Failure> {
        self.get(name)
            .map(str::to_owned)
            .ok_or_else(|| iam::Error::Missing(name).into())
    }
}

/// IAM's answer to a request that failed authentication.
pub fn refused(e: &AuthError, request_id: &str) -> Reply {
    Failure::from(e).reply(NAMESPACE, request_id)
}

/// Answers the IAM request `params` from `caller`.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    params: &[(String, String)],
    request_id: &str,
) -> Reply {
    let params = Params(params);
    let action = params.get("Action").unwrap_or_default();
    answer(
        NAMESPACE,
        action,
        request_id,
        run(ctx, caller, &params, action),
    )
}

fn run(
    ctx: &Context,
    caller: &Caller,
    params: &Params<'_>,
    name: &str,
) -> Result<Option<Xml>, Failure> {
    let request = request(caller, params, name)?;
    let resource = resource(ctx, caller, &request)?;
    iam::authorize(ctx, caller, &format!("iam:{name}"), &resource).map_err(|e| {
        if e.category == Category::Unauthorised {
            Failure::new(403, "AccessDenied", e.message)
        } else {
            Failure::new(500, "ServiceFailure", e.message)
        }
    })?;
    let result = match &request {
        Request::Root => Some(root_user(caller)),
        Request::Act(act) => {
            let mut store = ctx.open_store()?;
            render(name, &iam::execute(&mut store, act)?)
        }
    };
    Ok(result)
}

/// What the request asks: an IAM action, or the root identity itself
/// (GetUser without a user name, by root).
enum Request {
    Act(IamAction),
    Root,
}

/// The user the request names, else the caller (root or a user).
fn owner(caller: &Caller, params: &Params<'_>) -> Owner {
    Owner::from_user(
        params
            .get("UserName")
            .map(str::to_owned)
            .or_else(|| caller.user.clone()),
    )
}

fn request(caller: &Caller, params: &Params<'_>, action: &str) -> Result<Request, Failure> {
    let user = || params.need("UserName");
    let act = Request::Act;
    Ok(match action {
        "CreateUser" => act(IamAction::CreateUser {
            name: user()?,
            path: params.get("Path").map(str::to_owned),
        }),
        "DeleteUser" => act(IamAction::DeleteUser { name: user()? }),
        "GetUser" => match owner(caller, params) {
            Owner::Root => Request::Root,
            Owner::User(name) => act(IamAction::GetUser { name }),
        },
        "ListUsers" => act(IamAction::ListUsers {
            path_prefix: params.get("PathPrefix").map(str::to_owned),
        }),
        "CreateAccessKey" => act(IamAction::CreateAccessKey {
            owner: owner(caller, params),
        }),
        "DeleteAccessKey" => act(IamAction::DeleteAccessKey {
            id: params.need("AccessKeyId")?,
            owner: Some(owner(caller, params)),
        }),
        "UpdateAccessKey" => act(IamAction::UpdateAccessKey {
            id: params.need("AccessKeyId")?,
            owner: Some(owner(caller, params)),
            status: status(&params.need("Status")?)?,
        }),
        "ListAccessKeys" => act(IamAction::ListAccessKeys {
            owner: Some(owner(caller, params)),
        }),
        "AttachUserPolicy" => act(IamAction::AttachUserPolicy {
            user: user()?,
            arn: params.need("PolicyArn")?,
        }),
        "DetachUserPolicy" => act(IamAction::DetachUserPolicy {
            user: user()?,
            arn: params.need("PolicyArn")?,
        }),
        "ListAttachedUserPolicies" => act(IamAction::ListAttachedUserPolicies { user: user()? }),
        "PutUserPolicy" => act(IamAction::PutUserPolicy {
            user: user()?,
            name: params.need("PolicyName")?,
            document: params.need("PolicyDocument")?,
        }),
        "GetUserPolicy" => act(IamAction::GetUserPolicy {
            user: user()?,
            name: params.need("PolicyName")?,
        }),
        "DeleteUserPolicy" => act(IamAction::DeleteUserPolicy {
            user: user()?,
            name: params.need("PolicyName")?,
        }),
        "ListUserPolicies" => act(IamAction::ListUserPolicies { user: user()? }),
        other => return Err(Failure::invalid_action(other)),
    })
}

/// `Active` or `Inactive`.
fn status(text: &str) -> Result<KeyStatus, Failure> {
    match text {
        "Active" => Ok(KeyStatus::Active),
        "Inactive" => Ok(KeyStatus::Inactive),
        other => Err(iam::Error::Invalid {
            what: "status",
            value: other.to_owned(),
            rule: "Active or Inactive".into(),
        }
        .into()),
    }
}

/// The ARN `authorize` checks the request on: the user it is about (the
/// root account for root's own keys), or the users for ListUsers.
fn resource(ctx: &Context, caller: &Caller, request: &Request) -> Result<String, Failure> {
    let account = &caller.account;
    let user_named = |name: &str, path: Option<&str>| -> Result<String, Failure> {
        let path = match path {
            Some(path) => path.to_owned(),
            None => {
                let mut store = ctx.open_store()?;
                store
                    .read(|tx| tables::user(tx, name))?
                    .map_or_else(|| "/".to_owned(), |u| u.path)
            }
        };
        Ok(arn::user(account, &path, name))
    };
    let of_owner = |owner: &Owner| match owner {
        Owner::Root => Ok(arn::root(account)),
        Owner::User(name) => user_named(name, None),
    };
    use IamAction as A;
    match request {
        Request::Root => Ok(arn::root(account)),
        Request::Act(action) => match action {
            A::CreateUser { name, path } => user_named(name, Some(path.as_deref().unwrap_or("/"))),
            A::ListUsers { .. } => Ok(arn::user(account, "/", "")),
            A::CreateAccessKey { owner } => of_owner(owner),
            A::DeleteAccessKey { owner, .. }
            | A::UpdateAccessKey { owner, .. }
            | A::ListAccessKeys { owner } => of_owner(owner.as_ref().unwrap_or(&Owner::Root)),
            A::DeleteUser { name } | A::GetUser { name } => user_named(name, None),
            A::AttachUserPolicy { user, .. }
            | A::DetachUserPolicy { user, .. }
            | A::ListAttachedUserPolicies { user }
            | A::PutUserPolicy { user, .. }
            | A::GetUserPolicy { user, .. }
            | A::DeleteUserPolicy { user, .. }
            | A::ListUserPolicies { user } => user_named(user, None),
        },
    }
}

fn user_xml(x: &mut Xml, tag: &str, u: &User) {
    x.open(tag)
        .leaf("Path", &u.path)
        .leaf("UserName", &u.name)
        .leaf("UserId", &u.id)
        .leaf("Arn", &u.arn)
        .leaf("CreateDate", &u.created)
        .close(tag);
}

/// The root identity, as GetUser shows it.
fn root_user(caller: &Caller) -> Xml {
    let mut x = Xml::default();
    x.open("User")
        .leaf("UserId", &caller.account)
        .leaf("Arn", &arn::root(&caller.account))
        .close("User");
    x
}

fn key_xml(x: &mut Xml, tag: &str, k: &AccessKey, secret: Option<&str>) {
    x.open(tag);
    if let Owner::User(name) = &k.owner {
        x.leaf("UserName", name);
    }
    x.leaf("AccessKeyId", &k.id)
        .leaf("Status", k.status.as_str());
    if let Some(secret) = secret {
        x.leaf("SecretAccessKey", secret);
    }
    x.leaf("CreateDate", &k.created).close(tag);
}

/// The `<ACTIONResult>` content of `action`'s response, if it has one.
fn render(action: &str, response: &IamResponse) -> Option<Xml> {
    let mut x = Xml::default();
    let not_truncated = |x: &mut Xml| {
        x.leaf("IsTruncated", "false");
    };
    match response {
        IamResponse::Done => return None,
        IamResponse::Users(users) if action == "ListUsers" => {
            x.open("Users");
            for u in users {
                user_xml(&mut x, "member", u);
            }
            x.close("Users");
            not_truncated(&mut x);
        }
        // CreateUser and GetUser: the one user.
        IamResponse::Users(users) => {
            for u in users {
                user_xml(&mut x, "User", u);
            }
        }
        IamResponse::NewAccessKey { key, secret } => {
            key_xml(&mut x, "AccessKey", key, Some(secret))
        }
        IamResponse::AccessKeys(keys) => {
            x.open("AccessKeyMetadata");
            for k in keys {
                key_xml(&mut x, "member", k, None);
            }
            x.close("AccessKeyMetadata");
            not_truncated(&mut x);
        }
        IamResponse::AttachedPolicies(policies) => {
            x.open("AttachedPolicies");
            for p in policies {
                x.open("member")
                    .leaf("PolicyName", &p.name)
                    .leaf("PolicyArn", &p.arn)
                    .close("member");
            }
            x.close("AttachedPolicies");
            not_truncated(&mut x);
        }
        IamResponse::PolicyNames(names) => {
            x.open("PolicyNames");
            for n in names {
                x.leaf("member", n);
            }
            x.close("PolicyNames");
            not_truncated(&mut x);
        }
        IamResponse::Policy(p) => {
            x.leaf("UserName", &p.user)
                .leaf("PolicyName", &p.name)
                .leaf(
                    "PolicyDocument",
                    &utf8_percent_encode(&p.document, UNRESERVED).to_string(),
                );
        }
    }
    Some(x)
}
