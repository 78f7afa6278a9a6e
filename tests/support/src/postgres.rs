//! A PostgreSQL database of its own for one test.
//!
//! Tests run on PostgreSQL only when `PAYSYS_TEST_POSTGRES_URL` names a server (CI sets
//! it; `postgres://postgres@127.0.0.1:5432/test` on a developer machine). Each test then
//! creates a database with a random name there and drops it when it is done, so tests
//! run in parallel without seeing each other's rows.

use sqlx::Connection;

/// The variable that names the PostgreSQL server the tests may use.
pub const URL_VARIABLE: &str = "PAYSYS_TEST_POSTGRES_URL";

/// The server's admin URL from [`URL_VARIABLE`], or `None` when it is unset or empty
/// (the PostgreSQL variants are then skipped).
pub fn admin_url() -> Option<String> {
    std::env::var(URL_VARIABLE).ok().filter(|url| !url.is_empty())
}

/// A fresh database on the test server. Drop it with [`PostgresDatabase::drop_database`]
/// at the end of the test; a test that fails before leaves it behind for inspection.
#[derive(Debug, Clone)]
pub struct PostgresDatabase {
    /// The URL of the new database (the admin URL with its database name replaced).
    pub url: String,
    /// The database's name: `{prefix}_{random}`.
    pub name: String,
    admin_url: String,
}

impl PostgresDatabase {
    /// A new database named `{prefix}_{random hex}` on the server of [`admin_url`];
    /// `None` when no server is configured.
    pub async fn create(prefix: &str) -> Option<PostgresDatabase> {
        Some(PostgresDatabase::create_on(&admin_url()?, prefix).await)
    }

    /// A new database named `{prefix}_{random hex}` on the server of `admin_url`.
    pub async fn create_on(admin_url: &str, prefix: &str) -> PostgresDatabase {
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        let _ = admin.close().await;
        PostgresDatabase { url: with_database(admin_url, &name), name, admin_url: admin_url.to_owned() }
    }

    /// Drop the database, closing any connection still open on it (best effort: a
    /// server that went away leaves nothing to clean).
    pub async fn drop_database(&self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ =
                sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut admin).await;
            let _ = admin.close().await;
        }
    }
}

/// `url` with its database name replaced by `name` (a query string is kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(with_database("postgres://u@h:5432/test", "t_1"), "postgres://u@h:5432/t_1");
        assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "t_1"), "postgres://u@h/t_1?sslmode=disable");
        assert_eq!(with_database("postgres://u@h", "t_1"), "postgres://u@h/t_1");
    }
}
