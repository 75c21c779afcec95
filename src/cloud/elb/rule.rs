//! Listener rules of application load balancers: a priority, conditions
//! on the request (`path-pattern`, `host-header`, with ELBv2's `*` and
//! `?` wildcards) and the target group a matching request is forwarded
//! to. A request goes to the first rule by priority whose conditions all
//! match (any value of a condition matching it), else to the listener's
//! default action.

use serde::{Deserialize, Serialize};

use super::Error;
use crate::cloud::wildcard;

/// ELBv2's priorities: 1 (first) to 50000.
pub const MAX_PRIORITY: u32 = 50_000;
/// ELBv2's limit of condition values in one rule.
const MAX_VALUES: usize = 5;
/// ELBv2's longest pattern.
const MAX_PATTERN: usize = 128;

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    /// The request's path (not its query), case-sensitive.
    PathPattern,
    /// The request's Host header without a port, case-insensitive.
    HostHeader,
}

impl Field {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "path-pattern" => Ok(Self::PathPattern),
            "host-header" => Ok(Self::HostHeader),
            _ => Err(Error::Field(text.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PathPattern => "path-pattern",
            Self::HostHeader => "host-header",
        }
    }

    /// Whether `c` may be in a pattern of this field (ELBv2's sets).
    fn allows(self, c: char) -> bool {
        let common = c.is_ascii_alphanumeric() || "-.*?".contains(c);
        match self {
            Self::PathPattern => common || "_$/~\"'@:+&".contains(c),
            Self::HostHeader => common,
        }
    }
}

/// One condition: the request matches if `field` matches any of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub field: Field,
    pub values: Vec<String>,
}

impl Condition {
    /// Checks the values against ELBv2's rules for the field.
    pub fn checked(field: Field, values: Vec<String>) -> Result<Self, Error> {
        if values.is_empty() {
            return Err(Error::NoValues(field.as_str()));
        }
        for value in &values {
            let shaped = !value.is_empty()
                && value.len() <= MAX_PATTERN
                && value.chars().all(|c| field.allows(c));
            if !shaped {
                return Err(Error::BadPattern {
                    field: field.as_str(),
                    value: value.clone(),
                });
            }
        }
        Ok(Self { field, values })
    }

    fn matches(&self, request: &Asked<'_>) -> bool {
        match self.field {
            Field::PathPattern => self
                .values
                .iter()
                .any(|p| wildcard::matches(p, request.path, false)),
            Field::HostHeader => {
                // The port is not part of what a host condition sees.
                let host = request
                    .host
                    .rsplit_once(':')
                    .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(request.host, |(host, _)| host);
                self.values.iter().any(|p| wildcard::matches(p, host, true))
            }
        }
    }
}

/// What of a request the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub path: &'a str,
    pub host: &'a str,
}

/// A listener rule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// 16 hex digits, the last part of its ARN.
    pub id: String,
    pub arn: String,
    pub priority: u32,
    pub conditions: Vec<Condition>,
    pub target_group_id: String,
}

impl Rule {
    /// Whether every condition matches `request`.
    pub fn matches(&self, request: &Asked<'_>) -> bool {
        self.conditions.iter().all(|c| c.matches(request))
    }
}

/// Checks a rule's priority and conditions: at least one condition, one
/// of each field, at most five values in all.
pub fn check(priority: u32, conditions: &[Condition]) -> Result<(), Error> {
    check_priority(priority)?;
    if conditions.is_empty() {
        return Err(Error::NoConditions);
    }
    for (n, condition) in conditions.iter().enumerate() {
        if conditions
            .iter()
            .skip(n + 1)
            .any(|c| c.field == condition.field)
        {
            return Err(Error::RepeatedField(condition.field.as_str()));
        }
    }
    let values: usize = conditions.iter().map(|c| c.values.len()).sum();
    if values > MAX_VALUES {
        return Err(Error::TooManyValues(values));
    }
    Ok(())
}

pub fn check_priority(priority: u32) -> Result<(), Error> {
    if (1..=MAX_PRIORITY).contains(&priority) {
        Ok(())
    } else {
        Err(Error::Priority(priority))
    }
}

/// The target group of the first rule of `rules` by priority that
/// matches `request`, if one does.
pub fn first_match<'r>(rules: &'r [Rule], request: &Asked<'_>) -> Option<&'r str> {
    rules
        .iter()
        .filter(|r| r.matches(request))
        .min_by_key(|r| r.priority)
        .map(|r| r.target_group_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u32, conditions: &[(Field, &[&str])], group: &str) -> Rule {
        Rule {
            id: String::new(),
            arn: String::new(),
            priority,
            conditions: conditions
                .iter()
                .map(|(field, values)| {
                    Condition::checked(*field, values.iter().map(|v| (*v).to_owned()).collect())
                        .unwrap()
                })
                .collect(),
            target_group_id: group.into(),
        }
    }

    fn asked<'a>(host: &'a str, path: &'a str) -> Asked<'a> {
        Asked { path, host }
    }

    #[test]
    fn paths_match_with_wildcards_and_case() {
        let rules = [
            rule(10, &[(Field::PathPattern, &["/a*"])], "A"),
            rule(20, &[(Field::PathPattern, &["/b?", "/img/*.png"])], "B"),
        ];
        let to = |path| first_match(&rules, &asked("x", path));
        assert_eq!(to("/a"), Some("A"));
        assert_eq!(to("/apple/pie"), Some("A"));
        assert_eq!(to("/bx"), Some("B"));
        assert_eq!(to("/b"), None, "? is exactly one character");
        assert_eq!(to("/bxy"), None);
        assert_eq!(to("/img/x/y.png"), Some("B"));
        assert_eq!(to("/A"), None, "paths are case-sensitive");
        assert_eq!(to("/"), None);
    }

    #[test]
    fn the_lowest_priority_wins_whatever_the_order() {
        let rules = [
            rule(30, &[(Field::PathPattern, &["*"])], "any"),
            rule(5, &[(Field::PathPattern, &["/api/*"])], "api"),
        ];
        assert_eq!(first_match(&rules, &asked("x", "/api/v1")), Some("api"));
        assert_eq!(first_match(&rules, &asked("x", "/")), Some("any"));
    }

    #[test]
    fn hosts_match_without_case_or_port_and_every_condition_must() {
        let rules = [rule(
            1,
            &[
                (Field::HostHeader, &["*.example.com"]),
                (Field::PathPattern, &["/shop*"]),
            ],
            "shop",
        )];
        let to = |host, path| first_match(&rules, &asked(host, path));
        assert_eq!(to("www.Example.COM", "/shop"), Some("shop"));
        assert_eq!(to("www.example.com:8080", "/shop/cart"), Some("shop"));
        assert_eq!(to("example.com", "/shop"), None);
        assert_eq!(to("www.example.com", "/"), None, "both conditions");
    }

    #[test]
    fn bad_rules_are_refused() {
        let path = |v: &str| Condition::checked(Field::PathPattern, vec![v.into()]);
        assert!(matches!(path("/a b"), Err(Error::BadPattern { .. })));
        assert!(matches!(path(""), Err(Error::BadPattern { .. })));
        assert!(matches!(
            path(&"x".repeat(129)),
            Err(Error::BadPattern { .. })
        ));
        assert!(matches!(
            Condition::checked(Field::HostHeader, vec!["a/b".into()]),
            Err(Error::BadPattern { .. })
        ));
        assert!(matches!(
            Condition::checked(Field::HostHeader, vec![]),
            Err(Error::NoValues(_))
        ));
        assert!(matches!(Field::parse("query-string"), Err(Error::Field(_))));
        let one = path("/a").unwrap();
        check(1, std::slice::from_ref(&one)).unwrap();
        assert!(matches!(
            check(0, std::slice::from_ref(&one)),
            Err(Error::Priority(0))
        ));
        assert!(matches!(
            check(50_001, std::slice::from_ref(&one)),
            Err(Error::Priority(_))
        ));
        assert!(matches!(check(1, &[]), Err(Error::NoConditions)));
        assert!(matches!(
            check(1, &[one.clone(), one]),
            Err(Error::RepeatedField(_))
        ));
        let six = Condition::checked(
            Field::PathPattern,
            (0..6).map(|n| format!("/{n}")).collect(),
        )
        .unwrap();
        assert!(matches!(check(1, &[six]), Err(Error::TooManyValues(6))));
    }
}
