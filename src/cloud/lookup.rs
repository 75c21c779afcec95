//! Finding resources the way people name them: by ID or by name.

use super::Error;
use super::ids;
use super::instance::Instance;
use super::store::{self, Resource, Tx};
use super::tags::NAME;

/// The `R` with ID or unique name `reference`.
pub fn find<R: Resource>(tx: &Tx<'_>, reference: &str) -> Result<R, Error> {
    let found = if ids::is_id(R::KIND, reference) {
        tx.get(reference)?
    } else {
        tx.by_name(reference)?
    };
    found.ok_or_else(|| Error::NotFound {
        noun: R::KIND.noun(),
        reference: reference.into(),
        list: R::KIND.list_command(),
    })
}

/// The ID of the `R` with ID or unique name `reference`, also when its
/// record is unreadable (named by its ID): for removing it.
pub fn find_id<R: Resource>(tx: &Tx<'_>, reference: &str) -> Result<String, Error> {
    match find::<R>(tx, reference) {
        Ok(found) => Ok(found.id().into()),
        Err(Error::Store(store::Error::Corrupt { kind, id, .. }))
            if kind == R::KIND && id == reference =>
        {
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// Deletes the `R` with ID or unique name `reference` and its tags, even
/// if its record is unreadable. Returns its ID.
pub fn remove<R: Resource>(tx: &Tx<'_>, reference: &str) -> Result<String, Error> {
    let id = find_id::<R>(tx, reference)?;
    tx.delete(&id)?;
    Ok(id)
}

/// The instance with ID `reference`, or the one instance whose Name tag
/// it is. A terminated instance keeps its name; a live one wins over it.
pub fn find_instance(tx: &Tx<'_>, reference: &str) -> Result<Instance, Error> {
    find_tagged(tx, reference, |i: &Instance| {
        i.state != super::instance::State::Terminated
    })
}

/// The `R` with ID `reference`, or the one `R` whose Name tag it is (Name
/// tags need not be unique). Among several, those `preferred` win.
pub fn find_tagged<R: Resource>(
    tx: &Tx<'_>,
    reference: &str,
    preferred: impl Fn(&R) -> bool,
) -> Result<R, Error> {
    if ids::is_id(R::KIND, reference) {
        return find(tx, reference);
    }
    let mut named = Vec::new();
    for item in tx.list::<R>()? {
        if tx.tags(item.id())?.get(NAME).map(String::as_str) == Some(reference) {
            named.push(item);
        }
    }
    if named.len() > 1 && named.iter().any(&preferred) {
        named.retain(&preferred);
    }
    match named.len() {
        0 => Err(Error::NotFound {
            noun: R::KIND.noun(),
            reference: reference.into(),
            list: R::KIND.list_command(),
        }),
        1 => Ok(named.swap_remove(0)),
        count => Err(Error::AmbiguousName {
            noun: R::KIND.noun(),
            name: reference.into(),
            count,
            ids: named.iter().map(|i| i.id()).collect::<Vec<_>>().join(", "),
        }),
    }
}
