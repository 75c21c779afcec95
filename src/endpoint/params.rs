//! A Query API request's parameters as botocore sends them: `Name=value`
//! pairs from the query string and the form body, with lists and
//! structures flattened into dotted names (`InstanceId.1`,
//! `Filter.1.Value.2`, `IpPermissions.1.IpRanges.1.CidrIp`).

use std::collections::BTreeMap;

use super::error::Ec2Error;

/// The parameters of one request (or of one member of a flattened list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The pairs of a query string and of a form body (either may be
    /// empty); a name given twice keeps its last value.
    pub fn parse(query: &[u8], body: &[u8]) -> Self {
        let pairs = form_urlencoded::parse(query)
            .chain(form_urlencoded::parse(body))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self { pairs }
    }

    /// Every pair, in the order received.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or EC2's `MissingParameter`.
    pub fn required(&self, name: &str) -> Result<&str, Ec2Error> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Ec2Error::missing(name))
    }

    /// `name` as a boolean (`true`/`false`), if given.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, Ec2Error> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Ec2Error::invalid(name, v, "true or false")),
            })
            .transpose()
    }

    /// `name` as an integer, if given.
    pub fn int<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Ec2Error> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| Ec2Error::invalid(name, v, "an integer"))
            })
            .transpose()
    }

    /// A parsed value of `name`, if given.
    pub fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, Ec2Error> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| Ec2Error::invalid(name, v, what)))
            .transpose()
    }

    /// The flattened list `prefix.1`, `prefix.2`, ... in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indexed(prefix)
            .into_values()
            .filter_map(|member| member.get("").map(str::to_owned))
            .collect()
    }

    /// The members of the flattened list of structures `prefix.N.*`, in
    /// index order, each with its own names (`prefix.N.` removed).
    pub fn members(&self, prefix: &str) -> Vec<Params> {
        self.indexed(prefix).into_values().collect()
    }

    /// The structure `prefix.*` (names with `prefix.` removed).
    pub fn nested(&self, prefix: &str) -> Params {
        let dotted = format!("{prefix}.");
        Params {
            pairs: self
                .pairs
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&dotted)?.to_owned(), v.clone())))
                .collect(),
        }
    }

    /// Groups `prefix.N[.rest]` by N; a member's scalar value is under "".
    fn indexed(&self, prefix: &str) -> BTreeMap<u32, Params> {
        let dotted = format!("{prefix}.");
        let mut out: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in &self.pairs {
            let Some(rest) = k.strip_prefix(&dotted) else {
                continue;
            };
            let (index, name) = rest.split_once('.').unwrap_or((rest, ""));
            let Ok(index) = index.parse::<u32>() else {
                continue;
            };
            out.entry(index)
                .or_default()
                .pairs
                .push((name.to_owned(), v.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_lists_and_structures_come_back_in_index_order() {
        let p = Params::parse(
            b"Action=DescribeInstances",
            b"InstanceId.2=i-b&InstanceId.1=i-a&InstanceId.10=i-c&Filter.1.Name=tag%3AName\
              &Filter.1.Value.1=web*&Filter.1.Value.2=db&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8\
              &LaunchTemplate.Version=2",
        );
        assert_eq!(p.get("Action"), Some("DescribeInstances"));
        assert_eq!(p.list("InstanceId"), ["i-a", "i-b", "i-c"]);
        let filters = p.members("Filter");
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].get("Name"), Some("tag:Name"));
        assert_eq!(filters[0].list("Value"), ["web*", "db"]);
        let perms = p.members("IpPermissions");
        assert_eq!(
            perms[0].members("IpRanges")[0].get("CidrIp"),
            Some("10.0.0.0/8")
        );
        assert_eq!(p.nested("LaunchTemplate").get("Version"), Some("2"));
        assert!(p.required("VpcId").is_err());
        assert_eq!(
            p.int::<u32>("InstanceId.1").unwrap_err().code,
            "InvalidParameterValue"
        );
    }
}
