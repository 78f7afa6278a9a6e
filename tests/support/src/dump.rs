//! Every byte a database holds, for the tests that check no card number or CVC was
//! written to it.
//!
//! SQLite: the database file with its `-wal` and `-shm` files, byte for byte (what an
//! attacker who copies the files gets, free pages included). PostgreSQL: every row of
//! every table in the `public` schema as text (`SELECT t::text`), one row a line; a
//! `bytea` column reads as `\x` and the hex of its bytes.

use sqlx::{Connection, Row};

/// The contents of the database at `url` (`sqlite:PATH` or `postgres://…`), as described
/// in the module doc. Panics when a PostgreSQL database has no table at all (the scan
/// would prove nothing).
pub async fn database_dump(url: &str) -> Vec<u8> {
    match url.strip_prefix("sqlite:") {
        Some(path) => sqlite_file_bytes(path),
        None => postgres_rows(url).await,
    }
}

/// The names of the tables in the `public` schema of the PostgreSQL database at `url`.
pub async fn postgres_tables(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables = sqlx::query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let _ = conn.close().await;
    tables
}

fn sqlite_file_bytes(path: &str) -> Vec<u8> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
            bytes.extend(b);
        }
    }
    bytes
}

async fn postgres_rows(url: &str) -> Vec<u8> {
    let tables = postgres_tables(url).await;
    assert!(!tables.is_empty(), "no table to scan in the PostgreSQL database");
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut text = Vec::new();
    for table in tables {
        for row in sqlx::query(&format!("SELECT t::text FROM {table} t")).fetch_all(&mut conn).await.unwrap() {
            text.extend(row.get::<String, _>(0).into_bytes());
            text.push(b'\n');
        }
    }
    let _ = conn.close().await;
    text
}
