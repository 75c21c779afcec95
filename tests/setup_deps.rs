//! scripts/setup-deps takes the Debian mirror from the machine's own apt
//! sources (scripts/lib/apt-sources.sh), run here against sample source
//! trees in both formats apt reads.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// `backports_line ROOT bookworm-backports` with `files` (path under
/// ROOT, content) written into a fresh root.
fn backports_line(files: &[(&str, &str)]) -> Output {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/apt/sources.list.d")).unwrap();
    for (path, text) in files {
        std::fs::write(root.path().join(path), text).unwrap();
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/apt-sources.sh");
    Command::new("bash")
        .arg("-c")
        .arg("source \"$1\" && backports_line \"$2\" bookworm-backports")
        .arg("bash")
        .arg(lib)
        .arg(root.path())
        .output()
        .unwrap()
}

fn line(files: &[(&str, &str)]) -> String {
    let out = backports_line(files);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_mirror_comes_from_a_deb822_source() {
    let debian = "\
# Written by the installer.
Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.net/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.net/debian-security
Suites: bookworm-security
Components: main
";
    assert_eq!(
        line(&[("etc/apt/sources.list.d/debian.sources", debian)]),
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://mirror.example.net/debian bookworm-backports main"
    );
}

#[test]
fn disabled_source_only_and_other_release_stanzas_are_passed_over() {
    let sources = "\
Types: deb
URIs: http://off.example.net/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://src.example.net/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://old.example.net/debian
Suites: bullseye
Components: main

types: deb deb-src
uris:
 http://first.example.net/debian
 http://second.example.net/debian
suites: bookworm
components: main
signed-by:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
";
    assert_eq!(
        line(&[("etc/apt/sources.list.d/x.sources", sources)]),
        "deb http://first.example.net/debian bookworm-backports main"
    );
}

#[test]
fn the_mirror_comes_from_one_line_sources() {
    let list = "\
# deb cdrom:[Debian GNU/Linux 12.0.0 _Bookworm_ - Official amd64 DVD]/ bookworm main
deb cdrom:[Debian GNU/Linux 12.0.0 _Bookworm_ - Official amd64 DVD]/ bookworm main
deb http://security.example.net/debian-security bookworm-security main
deb-src http://src.example.net/debian bookworm main
deb [ arch=amd64 signed-by=/etc/apt/keyrings/debian.gpg ] http://mirror.example.net/debian/ bookworm main contrib # main archive
";
    assert_eq!(
        line(&[("etc/apt/sources.list", list)]),
        "deb [signed-by=/etc/apt/keyrings/debian.gpg] http://mirror.example.net/debian/ \
         bookworm-backports main"
    );
    // sources.list comes before sources.list.d.
    let later = "deb [arch=amd64] http://later.example.net/debian bookworm main\n";
    assert_eq!(
        line(&[
            (
                "etc/apt/sources.list",
                "deb http://first.example.net/debian bookworm main\n"
            ),
            ("etc/apt/sources.list.d/later.list", later),
        ]),
        "deb http://first.example.net/debian bookworm-backports main"
    );
    assert_eq!(
        line(&[("etc/apt/sources.list.d/later.list", later)]),
        "deb http://later.example.net/debian bookworm-backports main"
    );
}

#[test]
fn no_source_for_the_release_fails_saying_so() {
    let out = backports_line(&[(
        "etc/apt/sources.list",
        "deb http://old.example.net/debian bullseye main\n",
    )]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no apt source for Debian bookworm") && err.contains("sources.list"),
        "{err}"
    );
}

#[test]
fn setup_deps_names_no_mirror_host() {
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-deps"))
            .unwrap();
    assert!(!script.contains("http://") && !script.contains("https://"));
}
