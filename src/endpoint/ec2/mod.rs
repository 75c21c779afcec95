//! EC2's operations: each one reads its parameters, runs core actions
//! and writes EC2's answer. The table of operations names, per operation,
//! the IAM action (`ec2:` + the operation) and the resource whose ARN a
//! policy is checked against, so that authorization is one call.

mod addresses;
mod filter;
mod gateways;
mod images;
mod instances;
mod key_pairs;
mod regions;
mod route_tables;
mod security_groups;
mod subnets;
mod tags;
mod templates;
mod vpcs;

use crate::cloud::api::{Action, Records, Response, Tagged};
use crate::cloud::iam;
use crate::cloud::ids::Kind;
use crate::cloud::lifecycle::Context;
use crate::cloud::tags::Tags;
use crate::daemon::Executor;

use super::Reply;
use super::error::Ec2Error;
use super::params::Params;
use super::xml::Xml;
pub use filter::Filters;

pub use crate::cloud::iam::Caller;

/// One request being answered.
#[derive(Debug)]
pub struct Call<'a> {
    pub params: &'a Params,
    pub region: &'a str,
    pub account: &'a str,
    executor: &'a Executor,
}

impl Call<'_> {
    /// Runs one core action.
    pub fn run(&self, action: Action) -> Result<Response, Ec2Error> {
        Ok(self.executor.run(action)?)
    }

    /// Runs an action that answers records of kind `R`.
    pub fn records<R: Records>(&self, action: Action) -> Result<Vec<Tagged<R>>, Ec2Error> {
        R::from_response(self.run(action)?).ok_or_else(unexpected)
    }

    /// The one record an action that makes or changes one answers.
    pub fn one<R: Records>(&self, action: Action) -> Result<Tagged<R>, Ec2Error> {
        self.records::<R>(action)?
            .into_iter()
            .next()
            .ok_or_else(unexpected)
    }

    /// The records of kind `R` a Describe operation asks for: those named
    /// in the list `ids` (each looked up with `describe`, so an unknown ID
    /// gets its NotFound code) or every one `list` gives, then filtered
    /// by `Filter.N` through `field`.
    pub fn describe<R: Records>(
        &self,
        ids: &str,
        list: Action,
        describe: impl Fn(String) -> Action,
        field: impl Fn(&R, &str) -> Option<Vec<String>>,
    ) -> Result<Vec<Tagged<R>>, Ec2Error> {
        let named = self.params.list(ids);
        let found = if named.is_empty() {
            self.records(list)?
        } else {
            let mut all = Vec::new();
            for id in named {
                all.extend(self.records::<R>(describe(id))?);
            }
            all
        };
        Filters::of(self.params).keep(found, field)
    }

    /// The tags `TagSpecification.N` gives resources of `resource_type`.
    pub fn tag_spec(&self, resource_type: &str) -> Result<Tags, Ec2Error> {
        tag_specifications(self.params, resource_type)
    }
}

/// The tags of `TagSpecification.N` for `resource_type` in `params`.
pub fn tag_specifications(params: &Params, resource_type: &str) -> Result<Tags, Ec2Error> {
    let mut out = Tags::new();
    for spec in params.members("TagSpecification") {
        let kind = spec.get("ResourceType").unwrap_or("");
        if kind != resource_type {
            return Err(Ec2Error::client(
                "InvalidParameterValue",
                format!(
                    "'{kind}' is not a valid taggable resource type for this operation \
                     (it makes a {resource_type})"
                ),
            ));
        }
        out.extend(tag_list(&spec, "Tag")?);
    }
    Ok(out)
}

/// The list of `prefix.N.Key` / `prefix.N.Value`, checked as tags.
pub fn tag_list(params: &Params, prefix: &str) -> Result<Tags, Ec2Error> {
    let mut out = Tags::new();
    for tag in params.members(prefix) {
        let key = tag.required("Key")?;
        let value = tag.get("Value").unwrap_or("");
        crate::cloud::tags::check(key, value)
            .map_err(|e| Ec2Error::client("InvalidParameterValue", e.to_string()))?;
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

fn unexpected() -> Ec2Error {
    Ec2Error::new(
        "InternalError",
        "the core API answered with a record of another kind",
        500,
    )
}

/// `items` from `NextToken` on, at most `MaxResults` of them, and the
/// token of the rest.
pub fn page<T>(params: &Params, items: Vec<T>) -> Result<(Vec<T>, Option<String>), Ec2Error> {
    let start: usize = params.int("NextToken")?.unwrap_or(0);
    let max: Option<usize> = params.int("MaxResults")?;
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = match max {
        Some(max) if max < rest.len() => {
            rest.truncate(max);
            Some((start + max).to_string())
        }
        _ => None,
    };
    Ok((rest, next))
}

/// What a policy is checked against for an operation: the ARN of the
/// resource named by one of its parameters, or every resource.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// `"*"`: the operation names no one resource (describe, create).
    Any,
    /// The resource of `kind` whose ID is parameter `param`.
    Named { kind: Kind, param: &'static str },
    /// Each resource of `kind` in the list `list.N` (e.g. `InstanceId.N`).
    Each { kind: Kind, list: &'static str },
}

/// One EC2 operation.
#[derive(Debug)]
pub struct Operation {
    pub name: &'static str,
    pub target: Target,
    run: fn(&Call<'_>) -> Result<Xml, Ec2Error>,
}

impl Operation {
    const fn new(
        name: &'static str,
        target: Target,
        run: fn(&Call<'_>) -> Result<Xml, Ec2Error>,
    ) -> Self {
        Self { name, target, run }
    }

    /// Its IAM action name.
    pub fn iam_action(&self) -> String {
        format!("ec2:{}", self.name)
    }

    /// The kind and ID of each resource it is authorized on; none for
    /// `"*"`.
    pub fn resources(&self, params: &Params) -> Vec<(Kind, String)> {
        match self.target {
            Target::Any => Vec::new(),
            Target::Named { kind, param } => params
                .get(param)
                .map(|id| (kind, id.to_owned()))
                .into_iter()
                .collect(),
            Target::Each { kind, list } => {
                params.list(list).into_iter().map(|id| (kind, id)).collect()
            }
        }
    }
}

const fn named(kind: Kind, param: &'static str) -> Target {
    Target::Named { kind, param }
}

/// Every operation, by family.
fn operations() -> impl Iterator<Item = &'static Operation> {
    [
        vpcs::OPERATIONS,
        subnets::OPERATIONS,
        security_groups::OPERATIONS,
        gateways::OPERATIONS,
        route_tables::OPERATIONS,
        addresses::OPERATIONS,
        key_pairs::OPERATIONS,
        instances::OPERATIONS,
        images::OPERATIONS,
        tags::OPERATIONS,
        regions::OPERATIONS,
        templates::OPERATIONS,
    ]
    .into_iter()
    .flatten()
}

/// The operation named `name` (an `Action` parameter).
pub fn operation(name: &str) -> Option<&'static Operation> {
    operations().find(|o| o.name == name)
}

/// Answers one EC2 request (on a thread that may block).
pub fn handle(
    ctx: &Context,
    executor: &Executor,
    caller: &Caller,
    region: &str,
    params: &Params,
    request_id: &str,
) -> Reply {
    match answer(ctx, executor, caller, region, params) {
        Ok((name, body)) => Reply {
            status: 200,
            body: body.document(name, request_id),
        },
        Err(e) => Reply::error(&e, request_id),
    }
}

fn answer(
    ctx: &Context,
    executor: &Executor,
    caller: &Caller,
    region: &str,
    params: &Params,
) -> Result<(&'static str, Xml), Ec2Error> {
    let action = params.required("Action")?;
    let operation = operation(action).ok_or_else(|| {
        Ec2Error::client(
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        )
    })?;
    // Before DryRun: a dry run answers whether the caller may.
    let resources = operation.resources(params);
    let arns: Vec<String> = if resources.is_empty() {
        vec!["*".to_owned()]
    } else {
        resources
            .iter()
            .map(|(kind, id)| {
                iam::arn::ec2(&caller.account, region, iam::arn::resource_type(*kind), id)
            })
            .collect()
    };
    for arn in &arns {
        iam::authorize(ctx, caller, &operation.iam_action(), arn)?;
    }
    if params.bool("DryRun")? == Some(true) {
        return Err(Ec2Error::dry_run());
    }
    let call = Call {
        params,
        region,
        account: &caller.account,
        executor,
    };
    Ok((operation.name, (operation.run)(&call)?))
}

/// `<return>true</return>`: the answer of operations that only succeed.
fn done() -> Result<Xml, Ec2Error> {
    let mut x = Xml::new();
    x.leaf("return", true);
    Ok(x)
}

/// An ID's hex part under another prefix: EC2's
/// association IDs are made from the ID of what is associated.
fn derived_id(prefix: &str, id: &str) -> String {
    let hex = id.rsplit_once('-').map_or(id, |(_, hex)| hex);
    format!("{prefix}-{hex}")
}

/// The reverse of `derived_id`: the `kind` ID an association ID was made
/// from, if it has the shape.
fn origin_id(association: &str, prefix: &str, kind: Kind) -> Option<String> {
    let hex = association.strip_prefix(prefix)?.strip_prefix('-')?;
    let id = format!("{}-{hex}", kind.prefix());
    crate::cloud::ids::is_id(kind, &id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_named_once_and_association_ids_go_both_ways() {
        let mut names: Vec<&str> = operations().map(|o| o.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        let vpc = operations().find(|o| o.name == "DeleteVpc").unwrap();
        assert_eq!(vpc.iam_action(), "ec2:DeleteVpc");
        let params = Params::parse(b"VpcId=vpc-0123456789abcdef0", b"");
        assert_eq!(
            vpc.resources(&params),
            [(Kind::Vpc, "vpc-0123456789abcdef0".to_owned())]
        );
        let stop = operation("StopInstances").unwrap();
        let params = Params::parse(b"InstanceId.1=i-a&InstanceId.2=i-b", b"");
        assert_eq!(stop.resources(&params).len(), 2);
        let assoc = derived_id("eipassoc", "eipalloc-0123456789abcdef0");
        assert_eq!(assoc, "eipassoc-0123456789abcdef0");
        assert_eq!(
            origin_id(&assoc, "eipassoc", Kind::ElasticIp).as_deref(),
            Some("eipalloc-0123456789abcdef0")
        );
        assert_eq!(origin_id("eipassoc-zz", "eipassoc", Kind::ElasticIp), None);
    }

    #[test]
    fn pages_follow_next_token() {
        let params = Params::parse(b"MaxResults=2", b"");
        let (first, next) = page(&params, vec![1, 2, 3]).unwrap();
        assert_eq!((first, next.as_deref()), (vec![1, 2], Some("2")));
        let params = Params::parse(b"MaxResults=2&NextToken=2", b"");
        assert_eq!(page(&params, vec![1, 2, 3]).unwrap(), (vec![3], None));
    }
}
