//! IAM's tables in the store (made by schema migration 2, see
//! `cloud::store`): reading and writing users, access keys and user
//! policies inside a store transaction.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::{OptionalExtension, Row, params};

use super::arn;
use super::error::{Error, sql};
use super::records::{AccessKey, KeyStatus, Owner, User};
use crate::cloud::store::Tx;

/// The account's 12-digit ID, made when the store was.
pub fn account_id(tx: &Tx<'_>) -> Result<String, Error> {
    let id: Option<String> = tx
        .connection()
        .query_row("SELECT value FROM meta WHERE key = 'account_id'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("read the account ID"))?;
    match id {
        Some(id) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        other => Err(Error::Corrupt {
            what: "account ID",
            detail: format!("{other:?}"),
        }),
    }
}

fn user_from_row(account: &str, row: &Row<'_>) -> rusqlite::Result<User> {
    let name: String = row.get(0)?;
    let path: String = row.get(2)?;
    Ok(User {
        arn: arn::user(account, &path, &name),
        name,
        id: row.get(1)?,
        path,
        created: row.get(3)?,
    })
}

/// User `name` (in any case), if there is one.
pub fn user(tx: &Tx<'_>, name: &str) -> Result<Option<User>, Error> {
    let account = account_id(tx)?;
    tx.connection()
        .query_row(
            "SELECT name, id, path, created FROM iam_users WHERE name = ?1",
            [name],
            |r| user_from_row(&account, r),
        )
        .optional()
        .map_err(sql("read a user"))
}

/// User `name`, or NoSuchEntity.
pub fn existing_user(tx: &Tx<'_>, name: &str) -> Result<User, Error> {
    user(tx, name)?.ok_or_else(|| Error::NoSuchUser(name.to_owned()))
}

/// Every user whose path starts with `prefix`, by name.
pub fn users(tx: &Tx<'_>, prefix: &str) -> Result<Vec<User>, Error> {
    let account = account_id(tx)?;
    let mut stmt = tx
        .connection()
        .prepare("SELECT name, id, path, created FROM iam_users ORDER BY name")
        .map_err(sql("list users"))?;
    let rows = stmt
        .query_map([], |r| user_from_row(&account, r))
        .map_err(sql("list users"))?;
    let all = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("list users"))?;
    Ok(all
        .into_iter()
        .filter(|u| u.path.starts_with(prefix))
        .collect())
}

pub fn insert_user(tx: &Tx<'_>, user: &User) -> Result<(), Error> {
    tx.connection()
        .execute(
            "INSERT INTO iam_users (name, id, path, created) VALUES (?1, ?2, ?3, ?4)",
            params![user.name, user.id, user.path, user.created],
        )
        .map_err(sql("add a user"))?;
    Ok(())
}

pub fn delete_user(tx: &Tx<'_>, name: &str) -> Result<(), Error> {
    tx.connection()
        .execute("DELETE FROM iam_users WHERE name = ?1", [name])
        .map_err(sql("remove a user"))?;
    Ok(())
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<(AccessKey, String)> {
    let user: Option<String> = row.get(2)?;
    let status: String = row.get(3)?;
    Ok((
        AccessKey {
            id: row.get(0)?,
            owner: Owner::from_user(user),
            status: if status == "Active" {
                KeyStatus::Active
            } else {
                KeyStatus::Inactive
            },
            created: row.get(4)?,
        },
        row.get(1)?,
    ))
}

const KEY_COLUMNS: &str = "SELECT id, secret, user, status, created FROM iam_access_keys";

/// Access key `id` and its secret, if there is one.
pub fn access_key(tx: &Tx<'_>, id: &str) -> Result<Option<(AccessKey, String)>, Error> {
    tx.connection()
        .query_row(&format!("{KEY_COLUMNS} WHERE id = ?1"), [id], key_from_row)
        .optional()
        .map_err(sql("read an access key"))
}

/// The access keys of `owner`, or every one, by creation.
pub fn access_keys(tx: &Tx<'_>, owner: Option<&Owner>) -> Result<Vec<AccessKey>, Error> {
    let (filter, user) = match owner {
        None => ("", None),
        Some(Owner::Root) => (" WHERE user IS NULL", None),
        Some(Owner::User(name)) => (" WHERE user = ?1", Some(name.as_str())),
    };
    let mut stmt = tx
        .connection()
        .prepare(&format!("{KEY_COLUMNS}{filter} ORDER BY created, id"))
        .map_err(sql("list access keys"))?;
    let rows = match user {
        Some(name) => stmt.query_map([name], key_from_row),
        None => stmt.query_map([], key_from_row),
    }
    .map_err(sql("list access keys"))?;
    let keys = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("list access keys"))?;
    Ok(keys.into_iter().map(|(key, _)| key).collect())
}

pub fn insert_key(tx: &Tx<'_>, key: &AccessKey, secret: &str) -> Result<(), Error> {
    tx.connection()
        .execute(
            "INSERT INTO iam_access_keys (id, secret, user, status, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                key.id,
                secret,
                key.owner.user(),
                key.status.as_str(),
                key.created
            ],
        )
        .map_err(sql("add an access key"))?;
    Ok(())
}

pub fn set_key_status(tx: &Tx<'_>, id: &str, status: KeyStatus) -> Result<(), Error> {
    tx.connection()
        .execute(
            "UPDATE iam_access_keys SET status = ?2 WHERE id = ?1",
            [id, status.as_str()],
        )
        .map_err(sql("change an access key's status"))?;
    Ok(())
}

pub fn delete_key(tx: &Tx<'_>, id: &str) -> Result<(), Error> {
    tx.connection()
        .execute("DELETE FROM iam_access_keys WHERE id = ?1", [id])
        .map_err(sql("remove an access key"))?;
    Ok(())
}

/// The ARNs of the managed policies attached to `user`, sorted.
pub fn attached(tx: &Tx<'_>, user: &str) -> Result<Vec<String>, Error> {
    let mut stmt = tx
        .connection()
        .prepare("SELECT arn FROM iam_attached_policies WHERE user = ?1 ORDER BY arn")
        .map_err(sql("list attached policies"))?;
    let rows = stmt
        .query_map([user], |r| r.get(0))
        .map_err(sql("list attached policies"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("list attached policies"))
}

/// Attaches `arn` to `user`; says whether it was not attached before.
pub fn attach(tx: &Tx<'_>, user: &str, arn: &str) -> Result<bool, Error> {
    let n = tx
        .connection()
        .execute(
            "INSERT OR IGNORE INTO iam_attached_policies (user, arn) VALUES (?1, ?2)",
            [user, arn],
        )
        .map_err(sql("attach a policy"))?;
    Ok(n > 0)
}

/// Detaches `arn` from `user`; says whether it was attached.
pub fn detach(tx: &Tx<'_>, user: &str, arn: &str) -> Result<bool, Error> {
    let n = tx
        .connection()
        .execute(
            "DELETE FROM iam_attached_policies WHERE user = ?1 AND arn = ?2",
            [user, arn],
        )
        .map_err(sql("detach a policy"))?;
    Ok(n > 0)
}

/// `user`'s inline policies: name and document, by name.
pub fn inline(tx: &Tx<'_>, user: &str) -> Result<Vec<(String, String)>, Error> {
    let mut stmt = tx
        .connection()
        .prepare("SELECT name, document FROM iam_inline_policies WHERE user = ?1 ORDER BY name")
        .map_err(sql("list inline policies"))?;
    let rows = stmt
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql("list inline policies"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("list inline policies"))
}

/// Adds or replaces `user`'s inline policy `name`.
pub fn put_inline(tx: &Tx<'_>, user: &str, name: &str, document: &str) -> Result<(), Error> {
    tx.connection()
        .execute(
            "INSERT INTO iam_inline_policies (user, name, document) VALUES (?1, ?2, ?3)
             ON CONFLICT (user, name) DO UPDATE SET document = excluded.document",
            [user, name, document],
        )
        .map_err(sql("put an inline policy"))?;
    Ok(())
}

/// Removes `user`'s inline policy `name`; says whether it existed.
pub fn delete_inline(tx: &Tx<'_>, user: &str, name: &str) -> Result<bool, Error> {
    let n = tx
        .connection()
        .execute(
            "DELETE FROM iam_inline_policies WHERE user = ?1 AND name = ?2",
            [user, name],
        )
        .map_err(sql("delete an inline policy"))?;
    Ok(n > 0)
}

/// Refuses to keep secrets in a store file others may read (the state
/// directory gureum makes is 0700 and the store 0600; a store copied or
/// restored by hand may not be).
pub fn check_private(store: &Path) -> Result<(), Error> {
    let mode = std::fs::metadata(store)
        .map_err(|e| Error::Corrupt {
            what: "file",
            detail: format!("{}: {e}", store.display()),
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(Error::Exposed {
            path: store.to_path_buf(),
            mode,
        })
    }
}
