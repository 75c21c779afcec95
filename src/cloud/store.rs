//! The embedded transactional store: every resource in one SQLite file.
//!
//! Each resource is a row (id, kind, unique name, JSON body) plus its tags.
//! Every change runs in one `BEGIN IMMEDIATE` transaction, so concurrent
//! `gureum` processes queue on SQLite's lock (with a busy timeout) rather
//! than interleave, and a failed operation leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ids::Kind;
use super::tags::Tags;

/// How long a command waits for another one holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
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
";

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
        "cannot open the store {path}: {source}; check that the state directory is writable \
         (set it with --state-dir or GUREUM_STATE_DIR)"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the store failed to {what}: {source}")]
    Sql {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("the {noun} name '{name}' is taken; pick another name or remove that {noun} first")]
    NameTaken { noun: &'static str, name: String },
    #[error("stored {noun} {id} is unreadable ({source}); was the store edited by hand?")]
    Corrupt {
        noun: &'static str,
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

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Sql { what, source }
}

fn kind_tag(kind: Kind) -> &'static str {
    kind.prefix()
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let open_err = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL: readers never block the writer, and a crash mid-write
        // leaves the last committed state.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        let mut store = Self { conn };
        store.write(|tx| tx.0.execute_batch(SCHEMA).map_err(sql("create its tables")))?;
        Ok(store)
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
        let tx = Tx(tx);
        let out = f(&tx)?;
        tx.0.commit().map_err(sql("commit"))?;
        Ok(out)
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
        f(&Tx(tx))
    }
}

/// One transaction. Dropped without commit, it rolls back.
#[derive(Debug)]
pub struct Tx<'a>(rusqlite::Transaction<'a>);

impl Tx<'_> {
    fn encode<R: Resource>(r: &R) -> Result<String, Error> {
        serde_json::to_string(r).map_err(|source| Error::Encode {
            noun: R::KIND.noun(),
            id: r.id().into(),
            source,
        })
    }

    fn decode<R: Resource>(id: &str, body: &str) -> Result<R, Error> {
        serde_json::from_str(body).map_err(|source| Error::Corrupt {
            noun: R::KIND.noun(),
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

    /// Every resource of kind `R`, in ID order.
    pub fn list<R: Resource>(&self) -> Result<Vec<R>, Error> {
        let mut stmt = self
            .0
            .prepare("SELECT id, body FROM resources WHERE kind = ?1 ORDER BY id")
            .map_err(sql("list resources"))?;
        let rows = stmt
            .query_map(params![kind_tag(R::KIND)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sql("list resources"))?;
        rows.map(|row| {
            let (id, body) = row.map_err(sql("list resources"))?;
            Self::decode(&id, &body)
        })
        .collect()
    }

    /// Removes resource `id` and its tags. Says whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool, Error> {
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

    /// Sets (adds or overwrites) tags on resource `id`.
    pub fn set_tags(&self, id: &str, tags: &Tags) -> Result<(), Error> {
        for (key, value) in tags {
            self.0
                .execute(
                    "INSERT INTO tags (resource_id, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value",
                    params![id, key, value],
                )
                .map_err(sql("write tags"))?;
        }
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
}
