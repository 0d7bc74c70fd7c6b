//! The context's SQLite file, `<state-dir>/recommendations.db`, shared with the Python engine:
//! same schema, same msgpack baskets, same pragmas and write transactions as
//! `workloads/shop/db.py`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use crate::log::warning;
use crate::model::Baskets;

pub const BUSY_TIMEOUT: Duration = Duration::from_millis(10_000);

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens the existing file (the dataset created it; a missing file is an error here,
    /// not an empty store).
    pub fn open(path: &Path) -> rusqlite::Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warning!("{}: journal_mode stays {} (not wal)", path.display(), mode);
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL")?;
        Ok(Store { conn })
    }

    pub fn baskets(&self) -> rusqlite::Result<Baskets> {
        let mut stmt = self.conn.prepare("SELECT items FROM baskets ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut baskets = Baskets::default();
        while let Some(row) = rows.next()? {
            let blob = row.get_ref(0)?.as_blob()?;
            let items: Vec<i64> = rmp_serde::from_slice(blob).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                )
            })?;
            baskets.push(&items);
        }
        Ok(baskets)
    }

    pub fn last_order_id(&self) -> rusqlite::Result<i64> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM state WHERE key = 'last_order_id'")?;
        let mut rows = stmt.query([])?;
        match rows.next()? {
            Some(row) => row.get(0),
            None => Ok(0),
        }
    }

    /// One write transaction (`BEGIN IMMEDIATE`, as `Database.write`): the baskets of a batch
    /// of orders and the new high-water mark, together or not at all.
    pub fn append(&mut self, batch: &[(i64, Vec<i64>)], last: i64) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO baskets (order_id, items) VALUES (?, ?)")?;
            for (order_id, items) in batch {
                let blob = rmp_serde::to_vec(items).expect("a list of ints encodes");
                insert.execute(params![order_id, blob])?;
            }
            tx.execute(
                "INSERT INTO state (key, value) VALUES ('last_order_id', ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![last],
            )?;
        }
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE baskets (id INTEGER PRIMARY KEY, order_id INTEGER UNIQUE, \
                          items BLOB NOT NULL); \
                          CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

    #[test]
    fn round_trips_baskets_and_state() {
        let dir = std::env::temp_dir().join(format!("rs-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("recommendations.db");
        let _ = std::fs::remove_file(&path);
        Connection::open(&path)
            .unwrap()
            .execute_batch(SCHEMA)
            .unwrap();
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.last_order_id().unwrap(), 0);
        store
            .append(&[(7, vec![1, 300, 70_000]), (8, vec![2])], 8)
            .unwrap();
        store.append(&[(8, vec![9])], 8).unwrap(); // a replayed order is ignored
        assert_eq!(store.last_order_id().unwrap(), 8);
        let baskets = store.baskets().unwrap();
        assert_eq!(baskets.len(), 2);
        assert_eq!(baskets.get(0), &[1, 300, 70_000]);
        let blob: Vec<u8> = store
            .conn
            .query_row("SELECT items FROM baskets WHERE order_id = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(blob, b"\x93\x01\xcd\x01\x2c\xce\x00\x01\x11\x70"); // as msgspec encodes
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
