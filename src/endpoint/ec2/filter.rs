//! EC2's `Filter.N.Name` / `Filter.N.Value.M`: a record passes when, for
//! every filter, one of its values matches one of the filter's values
//! (`*` and `?` as wildcards). `tag:KEY`, `tag-key` and `tag-value` work on
//! every kind; the other names are each family's fields.

use crate::cloud::api::Tagged;
use crate::cloud::tags::Tags;
use crate::cloud::wildcard;

use super::super::error::Ec2Error;
use super::super::params::Params;

/// The filters of a request.
#[derive(Debug, Default)]
pub struct Filters(Vec<(String, Vec<String>)>);

impl Filters {
    pub fn of(params: &Params) -> Self {
        Self(
            params
                .members("Filter")
                .into_iter()
                .map(|f| (f.get("Name").unwrap_or("").to_owned(), f.list("Value")))
                .collect(),
        )
    }

    /// The records of `items` that pass; `field` gives a record's values
    /// of a filter name, `None` for a name its kind does not have.
    pub fn keep<T>(
        &self,
        items: Vec<Tagged<T>>,
        field: impl Fn(&T, &str) -> Option<Vec<String>>,
    ) -> Result<Vec<Tagged<T>>, Ec2Error> {
        let mut out = Vec::new();
        for item in items {
            let mut pass = true;
            for (name, wanted) in &self.0 {
                let have = match tag_values(&item.tags, name) {
                    Some(have) => have,
                    None => field(&item.item, name).ok_or_else(|| {
                        Ec2Error::client(
                            "InvalidParameterValue",
                            format!("The filter '{name}' is invalid"),
                        )
                    })?,
                };
                pass &= have.iter().any(|h| wanted.iter().any(|w| matches(w, h)));
            }
            if pass {
                out.push(item);
            }
        }
        Ok(out)
    }
}

fn tag_values(tags: &Tags, name: &str) -> Option<Vec<String>> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(tags.get(key).cloned().into_iter().collect());
    }
    match name {
        "tag-key" => Some(tags.keys().cloned().collect()),
        "tag-value" => Some(tags.values().cloned().collect()),
        _ => None,
    }
}

/// Whether `text` matches `pattern` (`*` any run, `?` any one character),
/// as EC2 compares filter values: case and all.
pub fn matches(pattern: &str, text: &str) -> bool {
    wildcard::matches(pattern, text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_in_ec2() {
        assert!(matches("web-*", "web-1"));
        assert!(matches("*", ""));
        assert!(matches("w?b*1", "web-01"));
        assert!(!matches("web-?", "web-10"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("exact", "exact"));
    }

    #[test]
    fn every_filter_must_pass_and_unknown_names_are_refused() {
        let params = Params::parse(
            b"",
            b"Filter.1.Name=tag:env&Filter.1.Value.1=prod&Filter.1.Value.2=dev\
              &Filter.2.Name=cidr&Filter.2.Value.1=10.*",
        );
        let item = |env: &str, cidr: &str| {
            Tagged::new(
                cidr.to_owned(),
                Tags::from([("env".to_owned(), env.to_owned())]),
            )
        };
        let items = vec![
            item("prod", "10.0.0.0/16"),
            item("test", "10.1.0.0/16"),
            item("dev", "192.168.0.0/16"),
        ];
        let field = |c: &String, name: &str| (name == "cidr").then(|| vec![c.clone()]);
        let kept = Filters::of(&params).keep(items, field).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].item, "10.0.0.0/16");
        let bad = Params::parse(b"", b"Filter.1.Name=colour&Filter.1.Value.1=red");
        let err = Filters::of(&bad)
            .keep(vec![item("a", "b")], field)
            .unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
    }
}
