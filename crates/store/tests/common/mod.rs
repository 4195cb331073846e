//! What the store's integration tests share: throw-away PostgreSQL
//! databases.

use headway_store::PostgresOptions;
use sqlx::Connection;

pub fn pg_admin_url() -> String {
    std::env::var("HEADWAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A throw-away PostgreSQL database, dropped when the guard goes.
pub struct PgDb {
    name: String,
}

impl PgDb {
    pub async fn create() -> Option<(PgDb, PostgresOptions)> {
        if std::env::var("HEADWAY_TEST_POSTGRES").as_deref() == Ok("off") {
            eprintln!("HEADWAY_TEST_POSTGRES=off: PostgreSQL half of the store suite not run");
            return None;
        }
        let url = pg_admin_url();
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL not reachable at {url}: {e}; start it, point HEADWAY_TEST_POSTGRES_URL at one, or set HEADWAY_TEST_POSTGRES=off")
        });
        let name = format!("headway_test_{}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let u = url::Url::parse(&url).unwrap();
        let opts = PostgresOptions {
            host: u.host_str().unwrap_or("127.0.0.1").into(),
            port: u.port().unwrap_or(5432),
            database: name.clone(),
            user: if u.username().is_empty() {
                "postgres".into()
            } else {
                u.username().into()
            },
            password: u.password().map(String::from),
            ssl_mode: "disable".into(),
            ssl_root_cert: None,
            max_connections: 4,
        };
        Some((PgDb { name }, opts))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = pg_admin_url();
        // Drop from a fresh runtime on another thread: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}
