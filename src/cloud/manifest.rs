//! Image manifests as image recipes write them (`images/*/manifest`):
//! `key=value` lines, `#` comments, file paths relative to the manifest's
//! directory.
//!
//! Unknown keys are ignored so that recipes can grow (e.g. `kernel_elf`,
//! `output`) without breaking imports.

/// The command line images get when their manifest names none, and
/// `gureum boot` without `--cmdline`.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
/// Smallest memory an image may ask for when it names none.
pub const DEFAULT_MIN_MEMORY_MIB: u64 = 128;

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: Option<String>,
    pub description: String,
    pub architecture: String,
    pub kernel: String,
    pub initrd: Option<String>,
    pub root_disk: Option<String>,
    pub cmdline: String,
    pub default_user: Option<String>,
    pub min_memory_mib: u64,
    /// Where the recipe puts the built files, relative to the repository
    /// (a hint for the error when the files are not beside the manifest).
    pub output: Option<String>,
}

/// What is wrong with a manifest. Line numbers count from 1.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("line {line}: '{text}' is not KEY=VALUE")]
    NotKeyValue { line: usize, text: String },
    #[error("line {line}: '{key}' is given twice")]
    Duplicate { line: usize, key: String },
    #[error("line {line}: '{key}' is empty")]
    Empty { line: usize, key: String },
    #[error("line {line}: {key}={value} is not a whole number of MiB")]
    BadNumber {
        line: usize,
        key: String,
        value: String,
    },
    #[error("it names no kernel: add a line kernel=FILE")]
    NoKernel,
    #[error(
        "architecture '{0}' cannot run here: this host runs x86_64 guests only \
         (arch=x86_64)"
    )]
    Architecture(String),
}

/// Parses manifest text.
pub fn parse(text: &str) -> Result<Manifest, Error> {
    let mut seen = std::collections::BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (key, value) = trimmed.split_once('=').ok_or_else(|| Error::NotKeyValue {
            line,
            text: trimmed.into(),
        })?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(Error::NotKeyValue {
                line,
                text: trimmed.into(),
            });
        }
        if value.is_empty() {
            return Err(Error::Empty {
                line,
                key: key.into(),
            });
        }
        if seen
            .insert(key.to_string(), (line, value.to_string()))
            .is_some()
        {
            return Err(Error::Duplicate {
                line,
                key: key.into(),
            });
        }
    }
    let mut take = |key: &str| seen.remove(key);
    let architecture = match take("arch").or_else(|| take("architecture")) {
        None => "x86_64".to_string(),
        Some((_, a)) if a == "x86_64" || a == "amd64" => "x86_64".to_string(),
        Some((_, other)) => return Err(Error::Architecture(other)),
    };
    let min_memory_mib = match take("min_memory_mib") {
        None => DEFAULT_MIN_MEMORY_MIB,
        Some((line, value)) => value.parse().map_err(|_| Error::BadNumber {
            line,
            key: "min_memory_mib".into(),
            value,
        })?,
    };
    let value = |entry: Option<(usize, String)>| entry.map(|(_, v)| v);
    Ok(Manifest {
        kernel: value(take("kernel")).ok_or(Error::NoKernel)?,
        name: value(take("name")),
        description: value(take("description")).unwrap_or_default(),
        architecture,
        initrd: value(take("initrd")),
        root_disk: value(take("root_disk")),
        cmdline: value(take("cmdline")).unwrap_or_else(|| DEFAULT_CMDLINE.into()),
        default_user: value(take("default_user")),
        min_memory_mib,
        output: value(take("output")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSYBOX: &str = include_str!("../../images/busybox/manifest");
    const DEBIAN: &str = include_str!("../../images/debian/manifest");

    #[test]
    fn the_busybox_recipe_manifest_parses() {
        let m = parse(BUSYBOX).unwrap();
        assert_eq!(m.name.as_deref(), Some("busybox"));
        assert_eq!(m.kernel, "vmlinuz");
        assert_eq!(m.initrd.as_deref(), Some("initrd.cpio.gz"));
        assert_eq!(m.root_disk, None);
        assert_eq!(m.cmdline, "console=ttyS0 reboot=k panic=-1");
        assert_eq!(m.min_memory_mib, 128);
        assert_eq!(m.architecture, "x86_64");
        assert_eq!(m.output.as_deref(), Some("target/images/busybox"));
    }

    #[test]
    fn the_debian_recipe_manifest_parses() {
        let m = parse(DEBIAN).unwrap();
        assert_eq!(m.name.as_deref(), Some("debian-12"));
        assert_eq!(m.root_disk.as_deref(), Some("root.img"));
        assert!(m.cmdline.contains("root=/dev/vda"), "{}", m.cmdline);
        assert_eq!(m.default_user.as_deref(), Some("admin"));
    }

    #[test]
    fn values_may_hold_equals_signs_and_defaults_apply() {
        let m =
            parse("kernel=k\ncmdline=console=ttyS0 root=/dev/vda\nroot_disk=disk.img\n").unwrap();
        assert_eq!(m.cmdline, "console=ttyS0 root=/dev/vda");
        assert_eq!(m.root_disk.as_deref(), Some("disk.img"));
        assert_eq!(m.min_memory_mib, DEFAULT_MIN_MEMORY_MIB);
        assert_eq!(m.name, None);
    }

    #[test]
    fn bad_manifests_say_which_line_and_what() {
        assert_eq!(
            parse("# c\nkernel=k\njunk\n"),
            Err(Error::NotKeyValue {
                line: 3,
                text: "junk".into()
            })
        );
        assert_eq!(
            parse("kernel=a\nkernel=b\n"),
            Err(Error::Duplicate {
                line: 2,
                key: "kernel".into()
            })
        );
        assert_eq!(
            parse("kernel=\n"),
            Err(Error::Empty {
                line: 1,
                key: "kernel".into()
            })
        );
        assert_eq!(parse("name=x\n"), Err(Error::NoKernel));
        assert!(matches!(
            parse("kernel=k\nmin_memory_mib=lots\n"),
            Err(Error::BadNumber { line: 2, .. })
        ));
        let err = parse("kernel=k\narch=arm64\n").unwrap_err();
        assert_eq!(err, Error::Architecture("arm64".into()));
        assert!(err.to_string().contains("x86_64"));
    }
}
