//! The embedded transactional store: every resource in one SQLite file.
//!
//! Each resource is a row (id, kind, unique name, JSON body) plus its tags.
//! Every change runs in one `BEGIN IMMEDIATE` transaction, so concurrent
//! `gureum` processes queue on SQLite's lock (with a busy timeout) rather
//! than interleave, and a failed operation leaves nothing behind.
//!
//! A `meta` table holds the schema version (older stores are migrated on
//! open, newer ones refused) and the store's identity. Opening never
//! makes a store over a file that is there (see `store_file`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ids::Kind;
use super::store_file;
use super::tags::Tags;

/// How long a command waits for another one holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema this binary reads and writes. Older stores are migrated up
/// to it when opened; newer ones are refused.
pub const SCHEMA_VERSION: u32 = 2;

/// `MIGRATIONS[i]` takes a store from schema version `i` to `i + 1`.
/// Version 0 is a store made before versioning (`resources` and `tags`,
/// no `meta`), or a new, empty one. Each runs in the transaction that
/// records the new version, so a crash leaves the old version whole.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: the resources and their tags; the store's own facts, among them
    // its identity, which marks what it made in Linux as its own.
    "
    CREATE TABLE IF NOT EXISTS resources (
        id   TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT,
        body TEXT NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS resources_kind_name
        ON resources (kind, name) WHERE name IS NOT NULL;
    CREATE TABLE IF NOT EXISTS tags (
        resource_id TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
        key   TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (resource_id, key)
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('identity', lower(hex(randomblob(16))));
    ",
    // 2: IAM (`cloud::iam::tables`): the account's 12-digit ID, made here
    // once; users (names unique whatever their case, as IAM's); access
    // keys, whose owner is a user or, when NULL, the root account; the
    // managed policies attached to users and their inline policies. A
    // user with keys or policies cannot be removed (IAM's DeleteConflict).
    "
    INSERT INTO meta (key, value)
        VALUES ('account_id', printf('%d', 100000000000 + abs(random() % 900000000000)));
    CREATE TABLE iam_users (
        name    TEXT PRIMARY KEY COLLATE NOCASE,
        id      TEXT NOT NULL UNIQUE,
        path    TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE iam_access_keys (
        id      TEXT PRIMARY KEY,
        secret  TEXT NOT NULL,
        user    TEXT REFERENCES iam_users (name),
        status  TEXT NOT NULL CHECK (status IN ('Active', 'Inactive')),
        created TEXT NOT NULL
    );
    CREATE INDEX iam_access_keys_user ON iam_access_keys (user);
    CREATE TABLE iam_attached_policies (
        user TEXT NOT NULL REFERENCES iam_users (name),
        arn  TEXT NOT NULL,
        PRIMARY KEY (user, arn)
    );
    CREATE TABLE iam_inline_policies (
        user     TEXT NOT NULL REFERENCES iam_users (name),
        name     TEXT NOT NULL COLLATE NOCASE,
        document TEXT NOT NULL,
        PRIMARY KEY (user, name)
    );
    ",
];

/// The `meta` keys.
const META_VERSION: &str = "schema_version";
const META_IDENTITY: &str = "identity";

/// A kind of row the store holds.
pub trait Resource: Serialize + DeserializeOwned {
    const KIND: Kind;
    fn id(&self) -> &str;
    /// The name that must be unique among resources of this kind, if the
    /// kind has one (key pairs, images, templates; not instances).
    fn unique_name(&self) -> Option<&str>;
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot open the store {path}: {source}; check that this user may read and write it \
         and its directory (or set another with --state-dir or GUREUM_STATE_DIR)"
    )]
    Permission {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {what} the store {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the store {path} for writing: {source}; check that this user may write \
         it and its directory (SQLite keeps its -wal and -shm files beside it)"
    )]
    NotWritable {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the store {path} is an empty (0-byte) file, not a gureum store; it was left as it is: \
         restore it from a backup, or if no resources were ever kept there, remove it and \
         gureum makes a new store"
    )]
    Empty { path: PathBuf },
    #[error(
        "the store {path} is not a file; move it away, or point --state-dir or \
         GUREUM_STATE_DIR at another directory"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "the store {path} is not an SQLite database (its first bytes are not SQLite's); it was \
         left as it is: restore it from a backup, or move it away to start a new store"
    )]
    NotSqlite { path: PathBuf },
    #[error(
        "the store {path} is truncated ({len} bytes, its header says {expected}); it was left \
         as it is: restore it from a backup"
    )]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error(
        "the store {path} is damaged ({detail}); it was left as it is: restore it from a \
         backup (sqlite3's .recover may save some of it)"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path} is an SQLite database but not a gureum store (its tables: {tables}); it was \
         left as it is: point --state-dir or GUREUM_STATE_DIR at another directory, or move \
         the file away"
    )]
    Foreign { path: PathBuf, tables: String },
    #[error(
        "the store {path} was made by a newer gureum (schema {found}, this one reads up to \
         {supported}): upgrade gureum"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("the store failed to {what}: {source}")]
    Sql {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Tag(#[from] super::tags::Error),
    #[error("the {noun} name '{name}' is taken; pick another name or remove that {noun} first")]
    NameTaken { noun: &'static str, name: String },
    #[error("stored {} {id} is unreadable ({source}); {}", kind.noun(), remedy(*kind, id))]
    Corrupt {
        kind: Kind,
        id: String,
        source: serde_json::Error,
    },
    #[error("cannot encode {noun} {id}: {source}")]
    Encode {
        noun: &'static str,
        id: String,
        source: serde_json::Error,
    },
}

/// What to do about an unreadable record.
fn remedy(kind: Kind, id: &str) -> String {
    let restore = "was the store edited by hand? restore it from a backup";
    match kind.remove_command() {
        Some(rm) => format!("{restore}, or remove the record with `{rm} {id}`"),
        None => restore.into(),
    }
}

/// A record a listing skipped because its body does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub kind: Kind,
    pub id: String,
    pub reason: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped stored {} {}: it is unreadable ({}); {}",
            self.kind.noun(),
            self.id,
            self.reason,
            remedy(self.kind, &self.id)
        )
    }
}

/// The readable records of a kind, and those skipped.
#[derive(Debug)]
pub struct Listed<R> {
    pub items: Vec<R>,
    pub unreadable: Vec<Unreadable>,
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Sql { what, source }
}

/// An SQLite error while opening, told apart when it says what the file is.
fn damaged(path: &Path, source: rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotSqlite { path },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => Error::Damaged {
            path,
            detail: source.to_string(),
        },
        Some(
            rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::ReadOnly
            | rusqlite::ErrorCode::PermissionDenied,
        ) => Error::NotWritable { path, source },
        _ => Error::Open { path, source },
    }
}

/// A connection to an existing store file (never creating one).
fn connect(path: &Path) -> Result<Connection, Error> {
    let err = |source| damaged(path, source);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    // WAL: readers never block the writer, and a crash mid-write
    // leaves the last committed state.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(err)?;
    Ok(conn)
}

/// Refuses a store whose pages SQLite finds inconsistent.
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), Error> {
    let first: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(|e| damaged(path, e))?;
    if first == "ok" {
        Ok(())
    } else {
        Err(Error::Damaged {
            path: path.to_path_buf(),
            detail: first,
        })
    }
}

/// The store's schema version: from `meta`, or 0 for a store from before
/// versioning (or a new, empty file). Refuses a database that is neither.
fn schema_version(conn: &Connection, path: &Path) -> Result<u32, Error> {
    let err = |e| damaged(path, e);
    let tables = tables(conn).map_err(err)?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    if has("meta") {
        let text = meta(conn, META_VERSION).map_err(err)?;
        text.as_deref()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Damaged {
                path: path.to_path_buf(),
                detail: format!("its schema version is {text:?}"),
            })
    } else if has("resources") && has("tags") || tables.is_empty() {
        Ok(0)
    } else {
        Err(Error::Foreign {
            path: path.to_path_buf(),
            tables: tables.join(", "),
        })
    }
}

/// The names of the database's tables.
fn tables(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = stmt.query_map([], |row| row.get(0))?;
    names.collect()
}

/// The value of `key` in `meta`.
fn meta(conn: &Connection, key: &str) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .optional()
}

/// Brings the store to [`SCHEMA_VERSION`] in one transaction (another
/// process may be doing the same: the second finds nothing to do).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let err = |e| damaged(path, e);
    if schema_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let found = schema_version(&tx, path)?;
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for step in MIGRATIONS.iter().skip(found as usize) {
        tx.execute_batch(step).map_err(err)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![META_VERSION, SCHEMA_VERSION.to_string()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

fn kind_tag(kind: Kind) -> &'static str {
    kind.prefix()
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    identity: String,
    path: PathBuf,
}

impl Store {
    /// Opens the store file at `path`, creating it only if nothing is
    /// there, and migrates it to [`SCHEMA_VERSION`]. A file that is not a
    /// whole gureum store is refused and left as it is.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if !store_file::exists(path)? {
            store_file::create(path, |new| {
                let mut conn = connect(new)?;
                migrate(&mut conn, new)?;
                // Closing folds the write-ahead log into the file.
                conn.close().map_err(|(_, source)| Error::Open {
                    path: new.to_path_buf(),
                    source,
                })
            })?;
        }
        store_file::check(path)?;
        let mut conn = connect(path)?;
        check_integrity(&conn, path)?;
        // A database with no tables holds nothing of gureum's: only
        // `create` starts a store from nothing.
        if tables(&conn).map_err(|e| damaged(path, e))?.is_empty() {
            return Err(Error::Foreign {
                path: path.to_path_buf(),
                tables: "none".into(),
            });
        }
        migrate(&mut conn, path)?;
        let identity = meta(&conn, META_IDENTITY)
            .map_err(|e| damaged(path, e))?
            .ok_or_else(|| Error::Damaged {
                path: path.to_path_buf(),
                detail: "its meta table has no identity".into(),
            })?;
        Ok(Self {
            conn,
            identity,
            path: path.to_path_buf(),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory the store file is in (the state directory).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// This store's identity: 32 hex digits (128 random bits) chosen when
    /// the store was made, never changed. What gureum makes outside the
    /// store carries it, so that each store touches only its own.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Runs `f` in a write transaction: committed if it returns `Ok`,
    /// rolled back otherwise.
    pub fn write<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("start a write transaction"))?;
        let tx = Tx(tx, None);
        let out = f(&tx)?;
        tx.0.commit().map_err(sql("commit"))?;
        Ok(out)
    }

    /// Like [`Store::write`], and also returns how to put every row the
    /// transaction touched back as it was: for a change whose effect
    /// outside the store fails after the commit.
    pub fn write_undoable<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<(T, Undo), E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("start a write transaction"))?;
        let mut tx = Tx(tx, Some(RefCell::new(Vec::new())));
        let out = f(&tx)?;
        let rows = tx.1.take().map(RefCell::into_inner).unwrap_or_default();
        tx.0.commit().map_err(sql("commit"))?;
        Ok((out, Undo { rows }))
    }

    /// Puts the rows `undo` names back as they were before its
    /// transaction, in one transaction.
    pub fn undo(&mut self, undo: Undo) -> Result<(), Error> {
        self.write(|tx| {
            for before in undo.rows.into_iter().rev() {
                match before {
                    Before::Row { id, row, tags } => {
                        tx.0.execute("DELETE FROM resources WHERE id = ?1", params![id])
                            .map_err(sql("undo a change"))?;
                        if let Some((kind, name, body)) = row {
                            tx.0.execute(
                                "INSERT INTO resources (id, kind, name, body) VALUES (?1, ?2, ?3, ?4)",
                                params![id, kind, name, body],
                            )
                            .map_err(sql("undo a change"))?;
                            tx.set_tags(&id, &tags)?;
                        }
                    }
                    Before::Fact { key, value } => {
                        tx.0.execute("DELETE FROM meta WHERE key = ?1", params![key])
                            .map_err(sql("undo a change"))?;
                        if let Some(value) = value {
                            tx.0.execute(
                                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                                params![key, value],
                            )
                            .map_err(sql("undo a change"))?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// Runs `f` on one consistent snapshot.
    pub fn read<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(sql("start a read transaction"))?;
        f(&Tx(tx, None))
    }
}

/// How to put back the rows a committed transaction changed.
#[derive(Debug)]
pub struct Undo {
    rows: Vec<Before>,
}

/// A row as it was before a transaction first touched it (`row` is `None`
/// for a row the transaction added), or a fact of `meta` (`value` is
/// `None` for one the transaction set first).
#[derive(Debug)]
enum Before {
    Row {
        id: String,
        row: Option<(String, Option<String>, String)>,
        tags: Tags,
    },
    Fact {
        key: String,
        value: Option<String>,
    },
}

/// One transaction. Dropped without commit, it rolls back. It keeps the
/// rows' earlier versions when it was opened by `write_undoable`.
#[derive(Debug)]
pub struct Tx<'a>(rusqlite::Transaction<'a>, Option<RefCell<Vec<Before>>>);

impl Tx<'_> {
    /// The transaction's connection, for modules that keep tables of
    /// their own (IAM's).
    pub(crate) fn connection(&self) -> &Connection {
        &self.0
    }

    /// Keeps row `id` as it is now, the first time this transaction is
    /// about to change it, when it keeps earlier versions at all.
    fn remember(&self, id: &str) -> Result<(), Error> {
        let Some(journal) = &self.1 else {
            return Ok(());
        };
        if journal
            .borrow()
            .iter()
            .any(|before| matches!(before, Before::Row { id: seen, .. } if seen == id))
        {
            return Ok(());
        }
        let row = self
            .0
            .query_row(
                "SELECT kind, name, body FROM resources WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(sql("read a resource"))?;
        let tags = self.tags(id)?;
        journal.borrow_mut().push(Before::Row {
            id: id.to_owned(),
            row,
            tags,
        });
        Ok(())
    }

    /// The value of fact `key` of the store's `meta`, if it is set.
    pub fn fact(&self, key: &str) -> Result<Option<String>, Error> {
        meta(&self.0, key).map_err(sql("read a fact of the store"))
    }

    /// Sets fact `key` of the store's `meta`; undone with the
    /// transaction's rows, so that a fact never outlives what it is about.
    pub fn set_fact(&self, key: &str, value: &str) -> Result<(), Error> {
        if let Some(journal) = &self.1 {
            let seen = journal
                .borrow()
                .iter()
                .any(|before| matches!(before, Before::Fact { key: k, .. } if k == key));
            if !seen {
                let value = self.fact(key)?;
                journal.borrow_mut().push(Before::Fact {
                    key: key.to_owned(),
                    value,
                });
            }
        }
        self.0
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(sql("write a fact of the store"))?;
        Ok(())
    }

    fn encode<R: Resource>(r: &R) -> Result<String, Error> {
        serde_json::to_string(r).map_err(|source| Error::Encode {
            noun: R::KIND.noun(),
            id: r.id().into(),
            source,
        })
    }

    fn decode<R: Resource>(id: &str, body: &str) -> Result<R, Error> {
        serde_json::from_str(body).map_err(|source| Error::Corrupt {
            kind: R::KIND,
            id: id.into(),
            source,
        })
    }

    fn name_taken<R: Resource>(r: &R, source: rusqlite::Error, what: &'static str) -> Error {
        match (&source, r.unique_name()) {
            (rusqlite::Error::SqliteFailure(e, _), Some(name))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::NameTaken {
                    noun: R::KIND.noun(),
                    name: name.into(),
                }
            }
            _ => Error::Sql { what, source },
        }
    }

    /// Adds a new resource with its tags.
    pub fn insert<R: Resource>(&self, r: &R, tags: &Tags) -> Result<(), Error> {
        self.remember(r.id())?;
        self.0
            .execute(
                "INSERT INTO resources (id, kind, name, body) VALUES (?1, ?2, ?3, ?4)",
                params![r.id(), kind_tag(R::KIND), r.unique_name(), Self::encode(r)?],
            )
            .map_err(|e| Self::name_taken(r, e, "add a resource"))?;
        self.set_tags(r.id(), tags)
    }

    /// Replaces a stored resource's body.
    pub fn update<R: Resource>(&self, r: &R) -> Result<(), Error> {
        self.remember(r.id())?;
        self.0
            .execute(
                "UPDATE resources SET name = ?2, body = ?3 WHERE id = ?1",
                params![r.id(), r.unique_name(), Self::encode(r)?],
            )
            .map_err(|e| Self::name_taken(r, e, "update a resource"))?;
        Ok(())
    }

    /// The resource `id` of kind `R`, if there is one.
    pub fn get<R: Resource>(&self, id: &str) -> Result<Option<R>, Error> {
        self.0
            .query_row(
                "SELECT body FROM resources WHERE id = ?1 AND kind = ?2",
                params![id, kind_tag(R::KIND)],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(sql("read a resource"))?
            .map(|body| Self::decode(id, &body))
            .transpose()
    }

    /// The resource of kind `R` with unique name `name`, if there is one.
    pub fn by_name<R: Resource>(&self, name: &str) -> Result<Option<R>, Error> {
        self.0
            .query_row(
                "SELECT id, body FROM resources WHERE name = ?1 AND kind = ?2",
                params![name, kind_tag(R::KIND)],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(sql("read a resource"))?
            .map(|(id, body)| Self::decode(&id, &body))
            .transpose()
    }

    /// Every resource of kind `R`, in ID order. One unreadable record
    /// fails the whole listing: for callers that must see everything (an
    /// address allocation, a check of what uses what).
    pub fn list<R: Resource>(&self) -> Result<Vec<R>, Error> {
        self.rows(R::KIND)?
            .into_iter()
            .map(|(id, body)| Self::decode(&id, &body))
            .collect()
    }

    /// Every readable resource of kind `R`, in ID order, and the IDs of
    /// those whose records do not parse: for listings shown to people,
    /// which one damaged record must not hide.
    pub fn list_readable<R: Resource>(&self) -> Result<Listed<R>, Error> {
        let mut listed = Listed {
            items: Vec::new(),
            unreadable: Vec::new(),
        };
        for (id, body) in self.rows(R::KIND)? {
            match serde_json::from_str(&body) {
                Ok(item) => listed.items.push(item),
                Err(e) => listed.unreadable.push(Unreadable {
                    kind: R::KIND,
                    id,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(listed)
    }

    /// The IDs and bodies of every record of `kind`, in ID order.
    fn rows(&self, kind: Kind) -> Result<Vec<(String, String)>, Error> {
        let mut stmt = self
            .0
            .prepare("SELECT id, body FROM resources WHERE kind = ?1 ORDER BY id")
            .map_err(sql("list resources"))?;
        let rows = stmt
            .query_map(params![kind_tag(kind)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sql("list resources"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list resources"))
    }

    /// Removes resource `id` and its tags. Says whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool, Error> {
        self.remember(id)?;
        let n = self
            .0
            .execute("DELETE FROM resources WHERE id = ?1", params![id])
            .map_err(sql("remove a resource"))?;
        Ok(n > 0)
    }

    /// The tags of resource `id`.
    pub fn tags(&self, id: &str) -> Result<Tags, Error> {
        let mut stmt = self
            .0
            .prepare("SELECT key, value FROM tags WHERE resource_id = ?1")
            .map_err(sql("read tags"))?;
        let rows = stmt
            .query_map(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql("read tags"))?;
        rows.collect::<Result<Tags, _>>().map_err(sql("read tags"))
    }

    /// Whether a resource `id` is stored (whatever its kind).
    pub fn exists(&self, id: &str) -> Result<bool, Error> {
        self.0
            .query_row("SELECT 1 FROM resources WHERE id = ?1", params![id], |_| {
                Ok(())
            })
            .optional()
            .map(|found| found.is_some())
            .map_err(sql("read a resource"))
    }

    /// Every tag of every resource: (resource ID, key, value), sorted.
    pub fn all_tags(&self) -> Result<Vec<(String, String, String)>, Error> {
        let mut stmt = self
            .0
            .prepare("SELECT resource_id, key, value FROM tags ORDER BY resource_id, key")
            .map_err(sql("read tags"))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(sql("read tags"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(sql("read tags"))
    }

    /// Removes tag `key` from resource `id`; only if its value is
    /// `value` when one is given (as EC2's DeleteTags).
    pub fn remove_tag(&self, id: &str, key: &str, value: Option<&str>) -> Result<(), Error> {
        self.remember(id)?;
        self.0
            .execute(
                "DELETE FROM tags WHERE resource_id = ?1 AND key = ?2 AND (?3 IS NULL OR value = ?3)",
                params![id, key, value],
            )
            .map_err(sql("remove a tag"))?;
        Ok(())
    }

    /// Sets (adds or overwrites) tags on resource `id`. Every tag is
    /// checked here, however it was made (`--tag`, `--name`, a template).
    pub fn set_tags(&self, id: &str, tags: &Tags) -> Result<(), Error> {
        super::tags::check_all(tags)?;
        self.remember(id)?;
        for (key, value) in tags {
            self.write_tag(id, key, value)?;
        }
        Ok(())
    }

    /// Sets a tag under the reserved `aws:` prefix, which only gureum
    /// itself sets (`aws:autoscaling:groupName`), never a request.
    pub fn set_reserved_tag(&self, id: &str, key: &str, value: &str) -> Result<(), Error> {
        self.remember(id)?;
        self.write_tag(id, key, value)
    }

    fn write_tag(&self, id: &str, key: &str, value: &str) -> Result<(), Error> {
        self.0
            .execute(
                "INSERT INTO tags (resource_id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value",
                params![id, key, value],
            )
            .map_err(sql("write tags"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Thing {
        id: String,
        name: String,
        n: u32,
    }

    impl Resource for Thing {
        const KIND: Kind = Kind::KeyPair;
        fn id(&self) -> &str {
            &self.id
        }
        fn unique_name(&self) -> Option<&str> {
            Some(&self.name)
        }
    }

    fn thing(i: u32) -> Thing {
        Thing {
            id: format!("key-{i:017x}"),
            name: format!("thing-{i}"),
            n: i,
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Store(#[from] Error),
        #[error("the operation failed half-way")]
        HalfWay,
    }

    #[test]
    fn resources_and_tags_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        let tags: Tags = [("Name".to_string(), "a".to_string())].into();
        store
            .write(|tx| tx.insert(&thing(1), &tags))
            .map_err(|e: Error| e)
            .unwrap();
        let (got, by_name, got_tags) = store
            .read(|tx| {
                Ok::<_, Error>((
                    tx.get::<Thing>(&thing(1).id)?,
                    tx.by_name::<Thing>("thing-1")?,
                    tx.tags(&thing(1).id)?,
                ))
            })
            .unwrap();
        assert_eq!(got, Some(thing(1)));
        assert_eq!(by_name, Some(thing(1)));
        assert_eq!(got_tags, tags);
        store
            .write(|tx| tx.delete(&thing(1).id))
            .map_err(|e: Error| e)
            .unwrap();
        let left = store
            .read(|tx| Ok::<_, Error>((tx.list::<Thing>()?, tx.tags(&thing(1).id)?)))
            .unwrap();
        assert!(left.0.is_empty() && left.1.is_empty(), "{left:?}");
    }

    #[test]
    fn names_are_unique_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        store
            .write(|tx| tx.insert(&thing(1), &Tags::new()))
            .map_err(|e: Error| e)
            .unwrap();
        let mut twin = thing(2);
        twin.name = "thing-1".into();
        let err = store
            .write(|tx| tx.insert(&twin, &Tags::new()))
            .map_err(|e: Error| e)
            .unwrap_err();
        assert!(
            matches!(&err, Error::NameTaken { name, .. } if name == "thing-1"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_operation_leaves_nothing_half_created() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        let tags: Tags = [("env".to_string(), "dev".to_string())].into();
        let result: Result<(), TestError> = store.write(|tx| {
            tx.insert(&thing(7), &tags)?;
            Err(TestError::HalfWay)
        });
        assert!(matches!(result, Err(TestError::HalfWay)));
        let (things, tags) = store
            .read(|tx| Ok::<_, Error>((tx.list::<Thing>()?, tx.tags(&thing(7).id)?)))
            .unwrap();
        assert!(things.is_empty(), "{things:?}");
        assert!(tags.is_empty(), "{tags:?}");
    }

    #[test]
    fn concurrent_writers_never_lose_or_corrupt_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        Store::open(&path).unwrap();
        // Each thread is its own connection, as separate processes are;
        // each does read-modify-write increments on a shared counter row
        // as well, which only serialised transactions keep exact.
        let counter = Thing {
            id: format!("key-{:017x}", 0xc0_u32),
            name: "counter".into(),
            n: 0,
        };
        Store::open(&path)
            .unwrap()
            .write(|tx| tx.insert(&counter, &Tags::new()))
            .map_err(|e: Error| e)
            .unwrap();
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let path = path.clone();
                let counter_id = counter.id.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open(&path).unwrap();
                    for i in 0..25u32 {
                        store
                            .write(|tx| {
                                tx.insert(&thing(1000 + t * 100 + i), &Tags::new())?;
                                let mut c: Thing = tx.get(&counter_id)?.unwrap();
                                c.n += 1;
                                tx.update(&c)
                            })
                            .map_err(|e: Error| e)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let things = store
            .read(|tx| tx.list::<Thing>())
            .map_err(|e: Error| e)
            .unwrap();
        assert_eq!(things.len(), 101);
        let c = things.iter().find(|t| t.name == "counter").unwrap();
        assert_eq!(c.n, 100);
        let integrity: String = store
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
    }

    /// The schema today's stores had before versioning.
    const UNVERSIONED: &str = "
        CREATE TABLE resources (id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT,
            body TEXT NOT NULL);
        CREATE UNIQUE INDEX resources_kind_name ON resources (kind, name)
            WHERE name IS NOT NULL;
        CREATE TABLE tags (resource_id TEXT NOT NULL REFERENCES resources (id)
            ON DELETE CASCADE, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (resource_id, key));
    ";

    fn raw(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn
    }

    #[test]
    fn a_new_store_has_an_identity_that_stays() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let first = Store::open(&path).unwrap().identity().to_string();
        assert_eq!(first.len(), 32, "{first}");
        assert!(
            first
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(Store::open(&path).unwrap().identity(), first);
        let other = Store::open(&dir.path().join("other")).unwrap();
        assert_ne!(other.identity(), first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let version: String = Store::open(&path)
            .unwrap()
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        // Only the store is left in the directory (and SQLite's files).
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn an_unversioned_store_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let conn = raw(&path);
            conn.execute_batch(UNVERSIONED).unwrap();
            conn.execute(
                "INSERT INTO resources (id, kind, name, body) VALUES (?1, ?2, ?3, ?4)",
                params![
                    thing(3).id,
                    kind_tag(Kind::KeyPair),
                    "thing-3",
                    serde_json::to_string(&thing(3)).unwrap()
                ],
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let identity = store.identity().to_string();
        assert_eq!(identity.len(), 32);
        let got = store
            .read(|tx| tx.get::<Thing>(&thing(3).id))
            .map_err(|e: Error| e)
            .unwrap();
        assert_eq!(got, Some(thing(3)));
        drop(store);
        assert_eq!(Store::open(&path).unwrap().identity(), identity);
    }

    #[test]
    fn a_store_from_a_newer_gureum_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        Store::open(&path).unwrap();
        raw(&path)
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [(SCHEMA_VERSION + 1).to_string()],
            )
            .unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, Error::NewerSchema { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("newer gureum") && text.contains("upgrade gureum"),
            "{text}"
        );
    }

    /// The store file at `path` after `damage`, and the error opening it.
    fn refused(damage: impl FnOnce(&Path)) -> (Vec<u8>, Error) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        damage(&path);
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was changed"
        );
        assert!(!err.to_string().contains("check that this user"), "{err}");
        (before, err)
    }

    /// A store with some rows, closed (its log folded into the file).
    fn filled(path: &Path) {
        let mut store = Store::open(path).unwrap();
        for i in 0..200 {
            store
                .write(|tx| tx.insert(&thing(i), &Tags::new()))
                .map_err(|e: Error| e)
                .unwrap();
        }
    }

    #[test]
    fn an_empty_store_file_is_refused_not_recreated() {
        let (_, err) = refused(|p| std::fs::write(p, b"").unwrap());
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        assert!(err.to_string().contains("0-byte"), "{err}");
    }

    #[test]
    fn a_garbage_store_file_is_refused() {
        let (_, err) = refused(|p| std::fs::write(p, vec![0x5a; 8192]).unwrap());
        assert!(matches!(err, Error::NotSqlite { .. }), "{err}");
        let (_, err) = refused(|p| std::fs::write(p, b"hello").unwrap());
        assert!(matches!(err, Error::NotSqlite { .. }), "{err}");
    }

    #[test]
    fn a_truncated_store_file_is_refused() {
        for keep in [50, 4096, 4096 + 1000] {
            let (_, err) = refused(|p| {
                filled(p);
                let bytes = std::fs::read(p).unwrap();
                assert!(bytes.len() > 3 * 4096, "{}", bytes.len());
                std::fs::write(p, &bytes[..keep]).unwrap();
            });
            assert!(matches!(err, Error::Truncated { .. }), "{keep}: {err}");
            assert!(err.to_string().contains("truncated"), "{err}");
        }
    }

    #[test]
    fn a_store_with_damaged_pages_is_refused() {
        let (_, err) = refused(|p| {
            filled(p);
            let mut bytes = std::fs::read(p).unwrap();
            let n = bytes.len();
            bytes[4096..n].fill(0xa5);
            std::fs::write(p, &bytes).unwrap();
        });
        assert!(matches!(err, Error::Damaged { .. }), "{err}");
    }

    #[test]
    fn a_foreign_database_is_refused() {
        let (_, err) = refused(|p| {
            raw(p)
                .execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY, jpeg BLOB)")
                .unwrap();
        });
        assert!(
            matches!(&err, Error::Foreign { tables, .. } if tables == "photos"),
            "{err}"
        );
        assert!(err.to_string().contains("not a gureum store"), "{err}");
        let (_, err) = refused(|p| {
            raw(p).pragma_update(None, "user_version", 7).unwrap();
        });
        assert!(matches!(err, Error::Foreign { .. }), "{err}");
    }

    #[test]
    fn a_directory_in_the_store_s_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::create_dir(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, Error::NotAFile { .. }), "{err}");
    }

    #[test]
    fn one_unreadable_record_is_skipped_by_listings_and_named_by_get() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = Store::open(&path).unwrap();
        for i in 1..=3 {
            store
                .write(|tx| tx.insert(&thing(i), &Tags::new()))
                .map_err(|e: Error| e)
                .unwrap();
        }
        store
            .conn
            .execute(
                "UPDATE resources SET body = '{\"id\": 3, trunc' WHERE id = ?1",
                [&thing(2).id],
            )
            .unwrap();
        let listed = store
            .read(|tx| tx.list_readable::<Thing>())
            .map_err(|e: Error| e)
            .unwrap();
        assert_eq!(listed.items, [thing(1), thing(3)]);
        assert_eq!(listed.unreadable.len(), 1);
        let skipped = listed.unreadable[0].to_string();
        assert!(
            skipped.contains(&thing(2).id) && skipped.contains("gureum key rm"),
            "{skipped}"
        );
        let err = store
            .read(|tx| tx.get::<Thing>(&thing(2).id))
            .map_err(|e: Error| e)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { id, .. } if *id == thing(2).id),
            "{err}"
        );
        assert!(
            store
                .read(|tx| tx.list::<Thing>())
                .map_err(|e: Error| e)
                .is_err()
        );
        let gone = store
            .write(|tx| tx.delete(&thing(2).id))
            .map_err(|e: Error| e)
            .unwrap();
        assert!(gone);
        let all = store
            .read(|tx| tx.list::<Thing>())
            .map_err(|e: Error| e)
            .unwrap();
        assert_eq!(all, [thing(1), thing(3)]);
    }
}
