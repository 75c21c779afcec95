//! How read commands print: an aligned table (or `key: value` lines for
//! one resource) for people, JSON for scripts.

use std::collections::BTreeMap;

use clap::ValueEnum;
use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<(), serde_json::Error> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under headers, columns padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Flattens a JSON value into `path: value` lines (`tags.Name: web-1`).
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&join(k), v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&join(&i.to_string()), v, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            out.insert(prefix.into(), s.clone());
        }
        other => {
            out.insert(prefix.into(), other.to_string());
        }
    }
}

/// Prints one resource in `format`: JSON, or its fields one per line.
pub fn describe<T: Serialize>(format: Format, value: &T) -> Result<(), serde_json::Error> {
    match format {
        Format::Json => json(value),
        Format::Table => {
            let mut fields = BTreeMap::new();
            flatten("", &serde_json::to_value(value)?, &mut fields);
            let width = fields.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            for (k, v) in fields {
                println!("{:width$}  {v}", format!("{k}:"), width = width + 1);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values_flatten_to_dotted_keys() {
        let v = serde_json::json!({"id": "i-1", "disks": [{"path": "/d"}], "tags": {"Name": "web"}, "n": 2, "none": null});
        let mut out = BTreeMap::new();
        flatten("", &v, &mut out);
        assert_eq!(out["id"], "i-1");
        assert_eq!(out["disks.0.path"], "/d");
        assert_eq!(out["tags.Name"], "web");
        assert_eq!(out["n"], "2");
        assert!(!out.contains_key("none"));
    }
}
