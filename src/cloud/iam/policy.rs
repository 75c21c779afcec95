//! IAM's JSON policy language, as far as identity-based policies use it:
//! `Version`, `Id`, `Statement` (one or a list) with `Sid`, `Effect`,
//! `Action`/`NotAction` and `Resource`/`NotResource` (a string or a list,
//! with `*` and `?` wildcards). A document is checked whole when it is
//! parsed, and every refusal names the statement and the element at
//! fault, as IAM's MalformedPolicyDocument does.
//!
//! `Condition` is refused rather than ignored: gureum cannot evaluate
//! condition keys, and dropping one would grant more than it says.

use serde_json::{Map, Value};

use crate::cloud::wildcard;

/// The version strings IAM accepts; a document without one is "2008-10-17".
const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// A parsed, checked policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `Action` (`Only`) or `NotAction` (`AllBut`).
    pub actions: Patterns,
    /// `Resource` (`Only`) or `NotResource` (`AllBut`).
    pub resources: Patterns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// The patterns of an element, and whether it names what it covers or
/// what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    Only(Vec<String>),
    AllBut(Vec<String>),
}

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the policy document is not valid JSON ({0}); check its quotes, commas and brackets")]
    NotJson(String),
    #[error(
        "the policy document must be a JSON object with \"Version\" and \"Statement\", not {0}"
    )]
    NotAnObject(&'static str),
    #[error(
        "the policy document has an unknown element \"{0}\"; a policy has only Version, Id and \
         Statement"
    )]
    UnknownElement(String),
    #[error("the policy's Version {0} is not one IAM knows; use \"2012-10-17\" (or leave it out)")]
    BadVersion(String),
    #[error("the policy document has no Statement; add one with Effect, Action and Resource")]
    NoStatement,
    #[error("{at}: {problem}")]
    Statement { at: String, problem: Problem },
}

/// What is wrong with one statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("a statement must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("it has no Effect; add \"Effect\": \"Allow\" or \"Deny\"")]
    NoEffect,
    #[error("its Effect {0} is neither \"Allow\" nor \"Deny\" (they are case-sensitive)")]
    BadEffect(String),
    #[error("it has no Action or NotAction; name the actions it allows or denies")]
    NoAction,
    #[error("it has both {0} and Not{0}; keep one of them")]
    Both(&'static str),
    #[error("it has no Resource or NotResource; use \"Resource\": \"*\" for every resource")]
    NoResource,
    #[error(
        "it has {0}, but a policy attached to a user names no principal (the user is the \
         principal); remove it"
    )]
    Principal(&'static str),
    #[error(
        "it has a Condition, which gureum does not evaluate; remove it and narrow the \
         statement's Action and Resource instead"
    )]
    Condition,
    #[error(
        "it has an unknown element \"{0}\"; a statement has Sid, Effect, Action or NotAction, \
         Resource or NotResource"
    )]
    UnknownElement(String),
    #[error("its {field} must be a string or a list of strings, not {found}")]
    NotStrings {
        field: &'static str,
        found: &'static str,
    },
    #[error("its {0} is an empty list; name at least one")]
    Empty(&'static str),
    #[error(
        "action \"{0}\" must be \"*\" or a service prefix and an action, as \"ec2:DescribeVpcs\" \
         or \"ec2:Describe*\""
    )]
    BadAction(String),
    #[error(
        "resource \"{0}\" must be \"*\" or an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE), \
         as \"arn:aws:ec2:*:*:vpc/*\""
    )]
    BadResource(String),
    #[error("its Sid \"{0}\" must be letters and digits only")]
    BadSid(String),
}

impl Policy {
    /// Parses and checks a document.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::NotJson(e.to_string()))?;
        let Value::Object(top) = value else {
            return Err(Error::NotAnObject(kind(&value)));
        };
        for key in top.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(Error::UnknownElement(key.clone()));
            }
        }
        match top.get("Version") {
            None => {}
            Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => {}
            Some(other) => return Err(Error::BadVersion(other.to_string())),
        }
        let listed: Vec<&Value> = match top.get("Statement") {
            None => return Err(Error::NoStatement),
            Some(Value::Array(items)) if items.is_empty() => return Err(Error::NoStatement),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one) => vec![one],
        };
        let statements = listed
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Statement::parse(v).map_err(|problem| Error::Statement {
                    at: label(i, v),
                    problem,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }
}

/// How an error names statement `i`: by its Sid when it has one.
fn label(i: usize, v: &Value) -> String {
    match v.get("Sid").and_then(Value::as_str) {
        Some(sid) if !sid.is_empty() => format!("statement \"{sid}\""),
        _ => format!("statement {}", i + 1),
    }
}

impl Statement {
    fn parse(value: &Value) -> Result<Self, Problem> {
        let Value::Object(map) = value else {
            return Err(Problem::NotAnObject(kind(value)));
        };
        for key in map.keys() {
            match key.as_str() {
                "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource" => {}
                "Principal" => return Err(Problem::Principal("Principal")),
                "NotPrincipal" => return Err(Problem::Principal("NotPrincipal")),
                "Condition" => return Err(Problem::Condition),
                other => return Err(Problem::UnknownElement(other.to_owned())),
            }
        }
        let sid = match map.get("Sid") {
            None => None,
            Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(s.clone())
            }
            Some(Value::String(s)) => return Err(Problem::BadSid(s.clone())),
            Some(other) => return Err(Problem::BadSid(other.to_string())),
        };
        let effect = match map.get("Effect") {
            None => return Err(Problem::NoEffect),
            Some(Value::String(s)) if s == "Allow" => Effect::Allow,
            Some(Value::String(s)) if s == "Deny" => Effect::Deny,
            Some(other) => return Err(Problem::BadEffect(other.to_string())),
        };
        let actions = patterns(map, "Action", "NotAction", Problem::NoAction)?;
        for a in actions.list() {
            if !is_action(a) {
                return Err(Problem::BadAction(a.clone()));
            }
        }
        let resources = patterns(map, "Resource", "NotResource", Problem::NoResource)?;
        for r in resources.list() {
            if !is_resource(r) {
                return Err(Problem::BadResource(r.clone()));
            }
        }
        Ok(Self {
            sid,
            effect,
            actions,
            resources,
        })
    }

    /// Whether the statement covers `action` on `resource`.
    pub fn applies(&self, action: &str, resource: &str) -> bool {
        self.actions.admits(|p| action_matches(p, action))
            && self.resources.admits(|p| resource_matches(p, resource))
    }
}

impl Patterns {
    fn list(&self) -> &[String] {
        match self {
            Patterns::Only(l) | Patterns::AllBut(l) => l,
        }
    }

    /// Whether the element lets through what `hit` says a pattern matches.
    fn admits(&self, hit: impl Fn(&str) -> bool) -> bool {
        match self {
            Patterns::Only(l) => l.iter().any(|p| hit(p)),
            Patterns::AllBut(l) => !l.iter().any(|p| hit(p)),
        }
    }
}

/// The element `yes` or `not` of a statement (exactly one of them).
fn patterns(
    map: &Map<String, Value>,
    yes: &'static str,
    not: &'static str,
    missing: Problem,
) -> Result<Patterns, Problem> {
    match (map.get(yes), map.get(not)) {
        (Some(_), Some(_)) => Err(Problem::Both(yes)),
        (Some(v), None) => Ok(Patterns::Only(strings(yes, v)?)),
        (None, Some(v)) => Ok(Patterns::AllBut(strings(not, v)?)),
        (None, None) => Err(missing),
    }
}

fn strings(field: &'static str, value: &Value) -> Result<Vec<String>, Problem> {
    let not_strings = |v: &Value| Problem::NotStrings {
        field,
        found: kind(v),
    };
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => Err(Problem::Empty(field)),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| not_strings(v)))
            .collect(),
        other => Err(not_strings(other)),
    }
}

/// `*`, or `prefix:action` with a service prefix of letters, digits and
/// dashes.
fn is_action(a: &str) -> bool {
    a == "*"
        || a.split_once(':').is_some_and(|(service, name)| {
            !service.is_empty()
                && service
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !name.is_empty()
                && !name.contains(':')
        })
}

/// `*`, or an ARN: `arn:` and five more colon-separated parts.
fn is_resource(r: &str) -> bool {
    r == "*" || (r.starts_with("arn:") && r.splitn(6, ':').count() == 6)
}

/// Actions match without regard to case, the service prefix included.
fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard::matches(pattern, action, true)
}

/// ARNs match part by part (a wildcard does not reach across the colons
/// between partition, service, region, account and resource), case
/// kept; `*` alone matches every resource.
fn resource_matches(pattern: &str, resource: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let r: Vec<&str> = resource.splitn(6, ':').collect();
    p.len() == r.len()
        && p.iter()
            .zip(&r)
            .all(|(p, r)| wildcard::matches(p, r, false))
}

/// How an error names a JSON value's type.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> Error {
        Policy::parse(text).unwrap_err()
    }

    fn problem(text: &str) -> Problem {
        match err(text) {
            Error::Statement { problem, .. } => problem,
            other => panic!("not a statement problem: {other}"),
        }
    }

    #[test]
    fn a_single_statement_and_single_strings_are_accepted() {
        let p = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}}"#,
        )
        .unwrap();
        assert_eq!(p.statements.len(), 1);
        let s = &p.statements[0];
        assert_eq!(s.effect, Effect::Allow);
        assert_eq!(s.actions, Patterns::Only(vec!["ec2:Describe*".into()]));
        assert_eq!(s.resources, Patterns::Only(vec!["*".into()]));
    }

    #[test]
    fn lists_sids_not_elements_and_no_version_are_accepted() {
        let p = Policy::parse(
            r#"{"Id":"x","Statement":[
                {"Sid":"One1","Effect":"Deny","NotAction":["ec2:Describe*","iam:*"],"NotResource":["arn:aws:ec2:*:*:vpc/*"]},
                {"Effect":"Allow","Action":["*"],"Resource":["arn:aws:ec2:local-1:123456789012:instance/i-?"]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(p.statements.len(), 2);
        assert_eq!(p.statements[0].sid.as_deref(), Some("One1"));
        assert!(matches!(p.statements[0].actions, Patterns::AllBut(ref l) if l.len() == 2));
        assert!(matches!(p.statements[0].resources, Patterns::AllBut(_)));
    }

    #[test]
    fn malformed_documents_say_what_is_wrong() {
        assert!(matches!(err("{"), Error::NotJson(_)));
        assert_eq!(err("[]"), Error::NotAnObject("a list"));
        assert_eq!(err(r#"{"Version":"2012-10-17"}"#), Error::NoStatement);
        assert_eq!(err(r#"{"Statement":[]}"#), Error::NoStatement);
        assert_eq!(
            err(r#"{"Version":"2020-01-01","Statement":[]}"#),
            Error::BadVersion("\"2020-01-01\"".into())
        );
        assert_eq!(
            err(r#"{"Statment":[]}"#),
            Error::UnknownElement("Statment".into())
        );
        let base = |extra: &str| {
            format!(
                r#"{{"Statement":[{{"Effect":"Allow","Action":"ec2:*","Resource":"*"{extra}}}]}}"#
            )
        };
        assert_eq!(
            problem(&base(
                r#","Condition":{"Bool":{"aws:SecureTransport":"true"}}"#
            )),
            Problem::Condition
        );
        assert_eq!(
            problem(&base(r#","Principal":"*""#)),
            Problem::Principal("Principal")
        );
        assert_eq!(
            problem(&base(r#","NotAction":"iam:*""#)),
            Problem::Both("Action")
        );
        assert_eq!(
            problem(&base(r#","Sid":"has space""#)),
            Problem::BadSid("has space".into())
        );
        assert_eq!(
            problem(&base(r#","Actions":"x""#)),
            Problem::UnknownElement("Actions".into())
        );
        assert_eq!(
            problem(r#"{"Statement":{"Effect":"allow","Action":"*","Resource":"*"}}"#),
            Problem::BadEffect("\"allow\"".into())
        );
        assert_eq!(
            problem(r#"{"Statement":{"Action":"*","Resource":"*"}}"#),
            Problem::NoEffect
        );
        assert_eq!(
            problem(r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#),
            Problem::NoAction
        );
        assert_eq!(
            problem(r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#),
            Problem::NoResource
        );
        assert_eq!(
            problem(r#"{"Statement":{"Effect":"Allow","Action":"DescribeVpcs","Resource":"*"}}"#),
            Problem::BadAction("DescribeVpcs".into())
        );
        assert_eq!(
            problem(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"vpc-1"}}"#),
            Problem::BadResource("vpc-1".into())
        );
        assert_eq!(
            problem(r#"{"Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}"#),
            Problem::Empty("Action")
        );
        assert_eq!(
            problem(r#"{"Statement":{"Effect":"Allow","Action":[1],"Resource":"*"}}"#),
            Problem::NotStrings {
                field: "Action",
                found: "a number"
            }
        );
        assert_eq!(
            problem(r#"{"Statement":["x"]}"#),
            Problem::NotAnObject("a string")
        );
    }

    #[test]
    fn errors_name_the_statement_by_sid_or_position() {
        let text = r#"{"Statement":[
            {"Effect":"Allow","Action":"*","Resource":"*"},
            {"Effect":"Allow","Action":"*"},
            {"Sid":"Third","Effect":"Allow","Action":"*"}]}"#;
        assert!(
            err(text).to_string().starts_with("statement 2: "),
            "{}",
            err(text)
        );
        let text = r#"{"Statement":[{"Sid":"Third","Effect":"Allow","Action":"*"}]}"#;
        assert!(err(text).to_string().starts_with("statement \"Third\": "));
    }

    #[test]
    fn statements_apply_by_action_and_resource() {
        let p = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"EC2:*securitygroup*",
                "Resource":["arn:aws:ec2:*:*:security-group/sg-1","arn:aws:ec2:*:*:vpc/vpc-?"]}]}"#,
        )
        .unwrap();
        let s = &p.statements[0];
        let sg = "arn:aws:ec2:local-1:123456789012:security-group/sg-1";
        assert!(s.applies("ec2:AuthorizeSecurityGroupIngress", sg));
        assert!(s.applies("ec2:CreateSecurityGroup", "arn:aws:ec2:r:1:vpc/vpc-7"));
        assert!(!s.applies("ec2:CreateVpc", sg));
        assert!(!s.applies(
            "ec2:DeleteSecurityGroup",
            "arn:aws:ec2:r:1:security-group/sg-2"
        ));
        // Case is kept for resources, and a wildcard stays in its part.
        assert!(!s.applies(
            "ec2:DeleteSecurityGroup",
            "arn:aws:ec2:r:1:security-group/SG-1"
        ));
        assert!(!resource_matches(
            "arn:aws:ec2:*",
            "arn:aws:ec2:r:1:vpc/vpc-1"
        ));
        assert!(resource_matches(
            "arn:aws:ec2:*:*:*",
            "arn:aws:ec2:r:1:vpc/vpc-1"
        ));
        assert!(!resource_matches(
            "arn:aws:ec2:r*1:vpc/vpc-1",
            "arn:aws:ec2:r:1:vpc/vpc-1"
        ));
    }

    #[test]
    fn not_elements_cover_everything_else() {
        let p = Policy::parse(
            r#"{"Statement":{"Effect":"Deny","NotAction":"ec2:Describe*","NotResource":"arn:aws:ec2:*:*:vpc/*"}}"#,
        )
        .unwrap();
        let s = &p.statements[0];
        assert!(s.applies("ec2:CreateSubnet", "arn:aws:ec2:r:1:subnet/subnet-1"));
        assert!(!s.applies("ec2:DescribeSubnets", "arn:aws:ec2:r:1:subnet/subnet-1"));
        assert!(!s.applies("ec2:CreateSubnet", "arn:aws:ec2:r:1:vpc/vpc-1"));
    }
}
