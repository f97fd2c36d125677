//! Making a test database unavailable and back, the same way for the writer in
//! process and for the real daemon.
//!
//! PostgreSQL: the client connects through a [`TcpProxy`] that is cut (every
//! connection reset, new ones refused) and restored. SQLite: another connection holds
//! `BEGIN EXCLUSIVE`, so every write waits out `busy_timeout` and fails; committing
//! ends it.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use wsvault::sim::proxy::TcpProxy;

use super::db::{TestDb, pg_addr, url_via};

/// The switch that takes `db` away from whoever connects through [`Outage::url`].
pub struct Outage {
    url: String,
    kind: Kind,
}

enum Kind {
    Proxy(TcpProxy),
    Lock {
        path: PathBuf,
        holder: Option<SqliteConnection>,
    },
}

impl Outage {
    /// An outage switch for `db`, off until [`Outage::begin`].
    pub async fn for_db(db: &TestDb) -> Outage {
        match db.sqlite_path() {
            Some(path) => Outage {
                url: db.cfg.url.clone(),
                kind: Kind::Lock { path, holder: None },
            },
            None => {
                let proxy = TcpProxy::start(pg_addr(&db.cfg.url))
                    .await
                    .expect("start the database proxy");
                Outage {
                    url: url_via(&db.cfg.url, proxy.addr()),
                    kind: Kind::Proxy(proxy),
                }
            }
        }
    }

    /// The storage URL that the outage affects (PostgreSQL: the proxy's address; the
    /// test's own checks keep using `db.cfg.url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes the database unavailable.
    pub async fn begin(&mut self) {
        match &mut self.kind {
            Kind::Proxy(p) => p.cut(),
            Kind::Lock { path, holder } => {
                let opts = SqliteConnectOptions::new()
                    .filename(&*path)
                    .busy_timeout(Duration::from_secs(10));
                let mut c = SqliteConnection::connect_with(&opts).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                *holder = Some(c);
            }
        }
    }

    /// Makes the database available again.
    pub async fn end(&mut self) {
        match &mut self.kind {
            Kind::Proxy(p) => p.restore(),
            Kind::Lock { holder, .. } => {
                let mut c = holder.take().expect("outage started");
                sqlx::query("COMMIT").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}
