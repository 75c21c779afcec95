//! Differences between what the records say Linux should hold and what it
//! holds, found (and, when repairing, made good) one object at a time.
//!
//! A pass is level-triggered: it reads the namespace as it is, not a log
//! of changes, so it repairs whatever happened in between (a crash half
//! way through a change, a rule deleted by hand). A pass that finds
//! nothing changes nothing, so running it again is always safe.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a pass only reports, or also repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Repair,
}

/// How an object differs from what it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "found")]
pub enum Found {
    /// It should be there and is not.
    Missing,
    /// It is there and nothing owns it.
    Extra,
    /// It is there, but not as it should be.
    Wrong { have: String, want: String },
}

/// One difference, in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub netns: String,
    /// What it is: `bridge br-…`, `address 10.0.1.1/24 on br-…`, ….
    pub object: String,
    #[serde(flatten)]
    pub found: Found,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.found {
            Found::Missing => write!(f, "{}: {} is missing", self.netns, self.object),
            Found::Extra => write!(
                f,
                "{}: {} is not owned by any record",
                self.netns, self.object
            ),
            Found::Wrong { have, want } => write!(
                f,
                "{}: {} is {have}, should be {want}",
                self.netns, self.object
            ),
        }
    }
}

/// The differences one pass over one namespace found.
#[derive(Debug)]
pub struct Pass {
    netns: String,
    mode: Mode,
    found: Vec<Difference>,
}

impl Pass {
    pub fn new(netns: &str, mode: Mode) -> Self {
        Self {
            netns: netns.to_owned(),
            mode,
            found: Vec::new(),
        }
    }

    /// Notes a difference; says whether to repair it.
    pub fn note(&mut self, object: impl fmt::Display, found: Found) -> bool {
        self.found.push(Difference {
            netns: self.netns.clone(),
            object: object.to_string(),
            found,
        });
        self.mode == Mode::Repair
    }

    /// Notes that `object` is `have` where it should be `want`, if they
    /// differ; says whether to repair it.
    pub fn compare<T: PartialEq + fmt::Display>(
        &mut self,
        object: impl fmt::Display,
        have: &T,
        want: &T,
    ) -> bool {
        have != want
            && self.note(
                object,
                Found::Wrong {
                    have: have.to_string(),
                    want: want.to_string(),
                },
            )
    }

    pub fn repairs(&self) -> bool {
        self.mode == Mode::Repair
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn into_differences(self) -> Vec<Difference> {
        self.found
    }
}

/// What is in `want` but not in `have`, and what is in `have` but not in
/// `want`, each in the order given.
pub fn split<'a, T: PartialEq>(want: &'a [T], have: &'a [T]) -> (Vec<&'a T>, Vec<&'a T>) {
    let missing = want.iter().filter(|w| !have.contains(w)).collect();
    let extra = have.iter().filter(|h| !want.contains(h)).collect();
    (missing, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_what_is_missing_and_what_is_extra() {
        let (missing, extra) = split(&[1, 2, 3], &[3, 4, 2, 5]);
        assert_eq!(missing, [&1]);
        assert_eq!(extra, [&4, &5]);
        let (missing, extra) = split::<u8>(&[], &[]);
        assert!(missing.is_empty() && extra.is_empty());
    }

    #[test]
    fn a_check_notes_without_repairing_and_equal_values_note_nothing() {
        let mut pass = Pass::new("ns", Mode::Check);
        assert!(!pass.compare("sysctl x", &"0".to_string(), &"1".to_string()));
        assert!(!pass.compare("sysctl y", &1, &1));
        let found = pass.into_differences();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_string(), "ns: sysctl x is 0, should be 1");
        let mut pass = Pass::new("ns", Mode::Repair);
        assert!(pass.note("bridge br-a", Found::Missing));
    }
}
