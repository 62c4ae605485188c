//! The control plane's database: redb (copy-on-write B-trees, every commit
//! durable before it returns), one table per kind of record, values stored
//! as JSON so the records can grow fields without migrations.

use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

pub const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");
pub const WORKSPACES: TableDefinition<&str, &str> = TableDefinition::new("workspaces");
pub const LINKS: TableDefinition<&str, &str> = TableDefinition::new("links");
pub const APPROVALS: TableDefinition<&str, &str> = TableDefinition::new("approvals");
/// Every table, for a backup's snapshot and its restore.
pub const ALL_TABLES: [TableDefinition<&str, &str>; 4] = [TOKENS, WORKSPACES, LINKS, APPROVALS];

/// A table's name as a snapshot keys it.
pub fn name_of(table: TableDefinition<&str, &str>) -> String {
    redb::TableHandle::name(&table).to_string()
}

/// Every table's records as stored (key → JSON text), by table name.
pub type Snapshot = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(Box<redb::Error>),
    #[error("record {key} in {table} is unreadable: {detail}")]
    Corrupt {
        table: String,
        key: String,
        detail: String,
    },
    #[error("encoding a record: {0}")]
    Encode(String),
    #[error("the database is closed (the box is shutting down)")]
    Closed,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub struct Store {
    /// None once closed for shutdown, so /data can be unmounted cleanly.
    db: std::sync::RwLock<Option<Database>>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let w = db.begin_write()?;
        w.open_table(TOKENS)?;
        w.open_table(WORKSPACES)?;
        w.open_table(LINKS)?;
        w.open_table(APPROVALS)?;
        w.commit()?;
        Ok(Store {
            db: std::sync::RwLock::new(Some(db)),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&Database) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let g = self.db.read().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Closed),
        }
    }

    /// Closes the database file; every later call fails with `Closed`.
    pub fn close(&self) {
        self.db.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.with(|db| {
            let w = db.begin_write()?;
            {
                let mut t = w.open_table(table)?;
                t.insert(key, json.as_str())?;
            }
            w.commit()?;
            Ok(())
        })
    }

    /// Reads `key`, lets `change` check and change it, and writes it back,
    /// all in one write transaction: nothing written in between is lost.
    /// `change` answers Err to leave the record as it was; None: no record.
    pub fn update<T: Serialize + DeserializeOwned, E>(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
        change: impl FnOnce(&mut T) -> Result<(), E>,
    ) -> Result<Option<Result<T, E>>, StoreError> {
        self.with(|db| {
            let w = db.begin_write()?;
            let out = {
                let mut t = w.open_table(table)?;
                let current = match t.get(key)? {
                    None => return Ok(None),
                    Some(v) => v.value().to_string(),
                };
                let mut value: T =
                    serde_json::from_str(&current).map_err(|e| StoreError::Corrupt {
                        table: table.to_string(),
                        key: key.to_string(),
                        detail: e.to_string(),
                    })?;
                match change(&mut value) {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let json = serde_json::to_string(&value)
                            .map_err(|e| StoreError::Encode(e.to_string()))?;
                        t.insert(key, json.as_str())?;
                        Ok(value)
                    }
                }
            };
            if out.is_ok() {
                w.commit()?;
            }
            Ok(Some(out))
        })
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.with(|db| {
            let r = db.begin_read()?;
            let t = r.open_table(table)?;
            let Some(v) = t.get(key)? else {
                return Ok(None);
            };
            serde_json::from_str(v.value())
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    table: table.to_string(),
                    key: key.to_string(),
                    detail: e.to_string(),
                })
        })
    }

    pub fn list<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &str>,
    ) -> Result<Vec<T>, StoreError> {
        self.scan(table, true)
    }

    /// Every record of `table` that reads as a `T`; one that does not is
    /// left out and logged, so one bad record cannot stop a sweep over the
    /// others (the approvals' expiry, say).
    pub fn list_readable<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &str>,
    ) -> Result<Vec<T>, StoreError> {
        self.scan(table, false)
    }

    /// Every record of `table` as a `T`; one that does not read is an error
    /// (`strict`) or left out and logged.
    fn scan<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &str>,
        strict: bool,
    ) -> Result<Vec<T>, StoreError> {
        self.with(|db| {
            let r = db.begin_read()?;
            let t = r.open_table(table)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                match serde_json::from_str(v.value()) {
                    Ok(x) => out.push(x),
                    Err(e) if strict => {
                        return Err(StoreError::Corrupt {
                            table: table.to_string(),
                            key: k.value().to_string(),
                            detail: e.to_string(),
                        })
                    }
                    Err(e) => log::warn!(
                        "state database: {table} {} does not read ({e}); left out",
                        k.value()
                    ),
                }
            }
            Ok(out)
        })
    }

    /// Every table as of one read transaction: a consistent snapshot,
    /// whatever is written meanwhile.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.with(|db| {
            let r = db.begin_read()?;
            let mut out = Snapshot::new();
            for table in ALL_TABLES {
                let t = r.open_table(table)?;
                let mut records = std::collections::BTreeMap::new();
                for item in t.iter()? {
                    let (k, v) = item?;
                    records.insert(k.value().to_string(), v.value().to_string());
                }
                out.insert(name_of(table), records);
            }
            Ok(out)
        })
    }

    /// Replaces every table with `snapshot`'s records in one write
    /// transaction: all of it or, on any error, none. A table the snapshot
    /// does not name ends empty; a name it has that is no table here is
    /// an error (the snapshot is from a box that knows tables this one
    /// does not).
    pub fn replace_all(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let known: Vec<String> = ALL_TABLES.iter().map(|t| name_of(*t)).collect();
        if let Some(other) = snapshot.keys().find(|k| !known.contains(k)) {
            return Err(StoreError::Encode(format!(
                "the snapshot has a table {other:?} this version does not know"
            )));
        }
        self.with(|db| {
            let w = db.begin_write()?;
            for table in ALL_TABLES {
                w.delete_table(table)?;
                let mut t = w.open_table(table)?;
                if let Some(records) = snapshot.get(&name_of(table)) {
                    for (k, v) in records {
                        t.insert(k.as_str(), v.as_str())?;
                    }
                }
            }
            w.commit()?;
            Ok(())
        })
    }

    pub fn delete(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
    ) -> Result<bool, StoreError> {
        self.with(|db| {
            let w = db.begin_write()?;
            let existed = {
                let mut t = w.open_table(table)?;
                let old = t.remove(key)?;
                old.is_some()
            };
            w.commit()?;
            Ok(existed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("paddock-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("state.redb");
        {
            let s = Store::open(&path).expect("open");
            s.put(TOKENS, "a", &vec![1, 2]).expect("put");
            s.put(TOKENS, "b", &vec![3]).expect("put");
            assert!(s.delete(TOKENS, "b").expect("delete"));
            assert!(!s.delete(TOKENS, "zz").expect("delete missing"));
        }
        let s = Store::open(&path).expect("reopen");
        let snap = s.snapshot().expect("snapshot");
        assert_eq!(snap["tokens"].len(), 1);
        s.put(TOKENS, "c", &vec![9]).expect("put");
        s.put(WORKSPACES, "w", &vec![5]).expect("put");
        s.replace_all(&snap).expect("replace");
        assert_eq!(s.snapshot().expect("snapshot"), snap, "back as it was");
        let mut alien = snap.clone();
        alien.insert("nope".into(), Default::default());
        assert!(
            s.replace_all(&alien).is_err(),
            "an unknown table is refused"
        );
        assert_eq!(s.snapshot().expect("snapshot"), snap, "and nothing changed");
        s.close();
        assert!(matches!(
            s.get::<Vec<i32>>(TOKENS, "a"),
            Err(StoreError::Closed)
        ));
        let s = Store::open(&path).expect("reopen after close");
        assert_eq!(
            s.get::<Vec<i32>>(TOKENS, "a").expect("get"),
            Some(vec![1, 2])
        );
        assert_eq!(s.list::<Vec<i32>>(TOKENS).expect("list").len(), 1);
        assert!(
            s.get::<String>(TOKENS, "a").is_err(),
            "a wrong shape is an error, not a panic"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
