//! Images (AMIs): a directory under the state dir holding a kernel, an
//! optional initrd and root disk, and `image.json`, its manifest.
//! Instances never write to an image: each gets its own copy of the root
//! disk.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ids::{self, Kind};
use super::instance::{Instance, State};
use super::lookup;
use super::manifest::{self, Manifest};
use super::staging::Staging;
use super::state_dir::StateDir;
use super::store::{Resource, Store};
use super::tags::{NAME, Tags};
use super::{Error, disk_copy, names};
use crate::vmm::boot::kernel::KernelImage;

/// File names inside an image directory.
pub const KERNEL: &str = "kernel";
pub const INITRD: &str = "initrd";
pub const ROOT_DISK: &str = "root.img";
pub const MANIFEST: &str = "image.json";

/// An image as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub description: String,
    pub architecture: String,
    /// File names inside the image directory.
    pub kernel: String,
    pub initrd: Option<String>,
    pub root_disk: Option<String>,
    pub cmdline: String,
    pub default_user: Option<String>,
    pub min_memory_mib: u64,
    /// The instance this image was saved from, if any.
    pub source_instance: Option<String>,
    pub created: String,
}

impl Resource for Image {
    const KIND: Kind = Kind::Image;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Image {
    /// The path of one of the image's files.
    pub fn file(&self, state: &StateDir, name: &str) -> PathBuf {
        state.image(&self.id).join(name)
    }
}

/// The manifest file and the directory its paths are relative to.
fn locate_manifest(source: &Path) -> (PathBuf, PathBuf) {
    if source.is_dir() {
        (source.join("manifest"), source.to_path_buf())
    } else {
        let base = source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (source.to_path_buf(), base.to_path_buf())
    }
}

/// A file the manifest names: it must exist inside the manifest's
/// directory `base` (no absolute path, no `..`, no symlink out of it),
/// be readable and not empty. Returns where it really is.
fn manifest_file(
    base: &Path,
    role: &'static str,
    name: &str,
    m: &Manifest,
) -> Result<PathBuf, Error> {
    let outside = |why: String| Error::ImageFileOutside {
        role,
        name: name.into(),
        base: base.to_path_buf(),
        why,
    };
    for part in Path::new(name).components() {
        match part {
            Component::RootDir | Component::Prefix(_) => {
                return Err(outside("is an absolute path".into()));
            }
            Component::ParentDir => return Err(outside("climbs out with '..'".into())),
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    let path = base.join(name);
    let real = match path.canonicalize() {
        Ok(real) if real.is_file() => real,
        _ => {
            let hint = match &m.output {
                Some(output) => format!(
                    "; this manifest's files are built into {output} (run its image recipe \
                     under scripts/images/, then import that directory)"
                ),
                None => "; the manifest's paths are relative to its own directory".into(),
            };
            return Err(Error::MissingImageFile { role, path, hint });
        }
    };
    let real_base = base
        .canonicalize()
        .map_err(Error::io("cannot resolve the image directory", base))?;
    if !real.starts_with(&real_base) {
        return Err(outside(format!("leads to {}, outside it", real.display())));
    }
    let mut file = std::fs::File::open(&real).map_err(Error::io("cannot read", &real))?;
    let mut first = [0u8; 1];
    let read = file
        .read(&mut first)
        .map_err(Error::io("cannot read", &real))?;
    if read == 0 {
        return Err(Error::EmptyImageFile { role, path: real });
    }
    Ok(real)
}

/// Refuses a kernel the VMM would not boot, with the VMM's own reading of
/// it (an ELF vmlinux or a 64-bit bzImage, whole).
fn check_kernel(path: &Path) -> Result<(), Error> {
    let mut kernel = KernelImage::open(path)?;
    kernel.footprint_end()?;
    Ok(())
}

/// Copies `files` (source, name in the image) into a new image directory
/// and records `image` with `tags` (and its Name tag), all or nothing.
fn publish(
    state: &StateDir,
    store: &mut Store,
    image: &Image,
    files: &[(PathBuf, &str)],
    tags: &Tags,
    check: impl FnOnce(&super::store::Tx<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    names::check(Kind::Image, &image.name)?;
    names::check_text(
        "image description",
        &image.description,
        names::MAX_DESCRIPTION,
    )?;
    let mut staging = Staging::create(state.staging(&image.id), state.image(&image.id))
        .map_err(Error::io("cannot create", state.staging(&image.id)))?;
    for (from, name) in files {
        disk_copy::copy(from, &staging.path().join(name))?;
    }
    let manifest_path = staging.path().join(MANIFEST);
    let json = serde_json::to_vec_pretty(image).map_err(|e| super::store::Error::Encode {
        noun: Kind::Image.noun(),
        id: image.id.clone(),
        source: e,
    })?;
    std::fs::write(&manifest_path, json).map_err(Error::io("cannot write", &manifest_path))?;
    let mut tags = tags.clone();
    tags.entry(NAME.into())
        .or_insert_with(|| image.name.clone());
    store.write(|tx| {
        check(tx)?;
        tx.insert(image, &tags)?;
        staging
            .publish()
            .map_err(Error::io("cannot move into place", state.image(&image.id)))
    })?;
    staging.keep();
    Ok(())
}

/// Imports the image described by `source` (a directory with a
/// `manifest`, or the manifest file itself).
pub fn import(
    state: &StateDir,
    store: &mut Store,
    source: &Path,
    name: Option<&str>,
    description: Option<&str>,
    tags: &Tags,
) -> Result<Image, Error> {
    let (manifest_path, base) = locate_manifest(source);
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| Error::ReadManifest {
        path: manifest_path.clone(),
        source,
    })?;
    let m = manifest::parse(&text).map_err(|source| Error::Manifest {
        path: manifest_path.clone(),
        source,
    })?;
    let kernel = manifest_file(&base, "kernel", &m.kernel, &m)?;
    check_kernel(&kernel)?;
    let mut files = vec![(kernel, KERNEL)];
    if let Some(initrd) = &m.initrd {
        files.push((manifest_file(&base, "initrd", initrd, &m)?, INITRD));
    }
    if let Some(disk) = &m.root_disk {
        files.push((manifest_file(&base, "root disk", disk, &m)?, ROOT_DISK));
    }
    let image = Image {
        id: ids::new_id(Kind::Image)?,
        name: name
            .map(str::to_string)
            .or(m.name.clone())
            .ok_or(Error::NoImageName)?,
        description: description.map_or(m.description.clone(), str::to_string),
        architecture: m.architecture.clone(),
        kernel: KERNEL.into(),
        initrd: m.initrd.as_ref().map(|_| INITRD.into()),
        root_disk: m.root_disk.as_ref().map(|_| ROOT_DISK.into()),
        cmdline: m.cmdline.clone(),
        default_user: m.default_user.clone(),
        min_memory_mib: m.min_memory_mib,
        source_instance: None,
        created: super::time::now(),
    };
    publish(state, store, &image, &files, tags, |_| Ok(()))?;
    Ok(image)
}

/// Saves stopped instance `reference` as a new image: its image's kernel
/// and initrd, and the instance's own root disk as it is now.
pub fn create_from_instance(
    state: &StateDir,
    store: &mut Store,
    reference: &str,
    name: &str,
    description: Option<&str>,
    tags: &Tags,
) -> Result<Image, Error> {
    let (instance, source) = store.read(|tx| {
        let instance = lookup::find_instance(tx, reference)?;
        let source: Image = lookup::find(tx, &instance.image_id)?;
        Ok::<_, Error>((instance, source))
    })?;
    if instance.state != State::Stopped {
        return Err(Error::NotStopped {
            id: instance.id,
            state: instance.state,
            what: "an image is saved from a stopped instance only",
        });
    }
    let mut files = vec![(source.file(state, &source.kernel), KERNEL)];
    if let Some(initrd) = &source.initrd {
        files.push((source.file(state, initrd), INITRD));
    }
    if let Some(disk) = instance.disks.first() {
        files.push((disk.path.clone(), ROOT_DISK));
    }
    let image = Image {
        id: ids::new_id(Kind::Image)?,
        name: name.into(),
        description: description.map_or_else(
            || format!("saved from {} ({})", instance.id, source.name),
            str::to_string,
        ),
        kernel: KERNEL.into(),
        initrd: source.initrd.as_ref().map(|_| INITRD.into()),
        root_disk: instance.disks.first().map(|_| ROOT_DISK.into()),
        source_instance: Some(instance.id.clone()),
        created: super::time::now(),
        ..source
    };
    let saved = instance.clone();
    publish(state, store, &image, &files, tags, |tx| {
        // The disk must not have changed under the copy.
        match tx.get::<Instance>(&saved.id)? {
            Some(now) if now == saved => Ok(()),
            _ => Err(Error::ChangedWhileSaving {
                id: saved.id.clone(),
            }),
        }
    })?;
    Ok(image)
}

/// Removes image `reference` and its files, unless an instance uses it
/// (also when its record is unreadable). Returns its ID.
pub fn remove(state: &StateDir, store: &mut Store, reference: &str) -> Result<String, Error> {
    let id = store.write(|tx| {
        let id = lookup::find_id::<Image>(tx, reference)?;
        let users: Vec<String> = tx
            .list::<Instance>()?
            .into_iter()
            .filter(|i| i.image_id == id && i.state != State::Terminated)
            .map(|i| i.id)
            .collect();
        if !users.is_empty() {
            return Err(Error::ImageInUse {
                id,
                instances: users.join(", "),
            });
        }
        tx.delete(&id)?;
        Ok(id)
    })?;
    let dir = state.image(&id);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            what: "removed from the store, but cannot delete",
            path: dir,
            source: e,
        }),
        _ => Ok(id),
    }
}
