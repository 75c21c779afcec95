//! An instance's CPU options (EC2's `CpuOptions`): for now, nested
//! virtualization, which EC2 offers on its 8th-generation Intel types
//! (c8i, m8i, r8i) and gureum offers there too, when the host's KVM lets
//! its guests run VMs of their own.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The families whose instances may have nested virtualization.
pub const NESTED_FAMILIES: &[&str] = &["c8i", "m8i", "r8i"];

/// Where KVM says whether its guests may run VMs of their own.
const NESTED_PARAMETERS: &[&str] = &[
    "/sys/module/kvm_amd/parameters/nested",
    "/sys/module/kvm_intel/parameters/nested",
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuOptions {
    /// The guest sees the host's SVM or VMX and can run VMs (a /dev/kvm
    /// of its own).
    #[serde(default)]
    pub nested_virtualization: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "'{0}' is not a CPU option: write NestedVirtualization=enabled or \
         NestedVirtualization=disabled"
    )]
    Syntax(String),
    #[error(
        "instance type {instance_type} does not offer nested virtualization: choose a {} type \
         (e.g. c8i.large)",
        NESTED_FAMILIES.join(", ")
    )]
    NotOffered { instance_type: String },
    #[error(
        "this host's KVM does not let its guests run VMs of their own: turn on the nested \
         parameter of kvm_amd or kvm_intel (nested=1, e.g. in /etc/modprobe.d, then reload the \
         module with no VM running)"
    )]
    HostHasNoNesting,
}

impl CpuOptions {
    /// `NestedVirtualization=enabled|disabled` (the aws CLI's shorthand
    /// for `--cpu-options`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut options = Self::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            options.nested_virtualization = match part.split_once('=') {
                Some(("NestedVirtualization", "enabled")) => true,
                Some(("NestedVirtualization", "disabled")) => false,
                _ => return Err(Error::Syntax(part.to_owned())),
            };
        }
        Ok(options)
    }

    /// Whether type `instance_type` may have these options.
    pub fn check(&self, instance_type: &str) -> Result<(), Error> {
        if !self.nested_virtualization {
            return Ok(());
        }
        let family = instance_type.split('.').next().unwrap_or_default();
        if !NESTED_FAMILIES.contains(&family) {
            return Err(Error::NotOffered {
                instance_type: instance_type.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether this host can give instances these options.
    pub fn check_host(&self) -> Result<(), Error> {
        if !self.nested_virtualization {
            return Ok(());
        }
        let on = NESTED_PARAMETERS
            .iter()
            .any(|path| nesting_on(Path::new(path)));
        if on {
            Ok(())
        } else {
            Err(Error::HostHasNoNesting)
        }
    }

    /// EC2's word for the option's state.
    pub fn nested_virtualization_word(&self) -> &'static str {
        if self.nested_virtualization {
            "enabled"
        } else {
            "disabled"
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A module parameter file saying `Y` or `1`.
fn nesting_on(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|value| matches!(value.trim(), "Y" | "y" | "1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_the_aws_cli_writes_them() {
        assert_eq!(
            CpuOptions::parse("NestedVirtualization=enabled"),
            Ok(CpuOptions {
                nested_virtualization: true
            })
        );
        assert_eq!(
            CpuOptions::parse("NestedVirtualization=disabled"),
            Ok(CpuOptions::default())
        );
        assert!(matches!(
            CpuOptions::parse("NestedVirtualization=yes"),
            Err(Error::Syntax(_))
        ));
        assert!(matches!(
            CpuOptions::parse("CoreCount=2"),
            Err(Error::Syntax(_))
        ));
    }

    #[test]
    fn only_the_eighth_generation_intel_types_offer_nesting() {
        let nested = CpuOptions {
            nested_virtualization: true,
        };
        assert_eq!(nested.check("c8i.large"), Ok(()));
        assert_eq!(nested.check("m8i.xlarge"), Ok(()));
        assert!(matches!(
            nested.check("t3.micro"),
            Err(Error::NotOffered { .. })
        ));
        assert_eq!(CpuOptions::default().check("t3.micro"), Ok(()));
    }

    #[test]
    fn a_parameter_says_y_or_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested");
        for (value, on) in [("Y\n", true), ("1\n", true), ("N\n", false), ("0", false)] {
            std::fs::write(&path, value).unwrap();
            assert_eq!(nesting_on(&path), on, "{value:?}");
        }
        assert!(!nesting_on(&dir.path().join("missing")));
    }
}
