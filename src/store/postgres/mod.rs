//! [`PostgresTokenStore`]: token records in PostgreSQL, shared by every
//! replica of a service, with validation served from a cache that
//! `LISTEN/NOTIFY` keeps in step with revocations on every replica.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection as _, Postgres, Row, Transaction};
use tokio::task::JoinHandle;

use super::{ListPage, ListQuery, OwnerLimit, TokenStore, TokenUse};
use crate::error::{Error, Result};
use crate::model::{DataHubAccessTokenInfo, StoredAccessToken};
use crate::urn::Urn;

mod cache;
mod listener;
mod schema;
mod sql;

use cache::ExistsCache;
use listener::Shared;
use schema::{MigrateError, Names};

pub use schema::LATEST_VERSION as SCHEMA_VERSION;
/// The `sqlx` connection pool type [`PostgresTokenStore::from_pool`] takes.
pub use sqlx::postgres::PgPool;

/// Default schema of the token table.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default name of the token table.
pub const DEFAULT_TABLE: &str = "datahub_access_tokens";

/// Settings of a [`PostgresTokenStore`]; every one has a default.
#[derive(Debug, Clone)]
pub struct PostgresStoreOptions {
    schema: String,
    table: String,
    cache_capacity: usize,
    max_staleness: Duration,
    operation_timeout: Duration,
    max_connections: u32,
}

impl Default for PostgresStoreOptions {
    fn default() -> Self {
        PostgresStoreOptions {
            schema: DEFAULT_SCHEMA.to_owned(),
            table: DEFAULT_TABLE.to_owned(),
            cache_capacity: 100_000,
            max_staleness: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(5),
            max_connections: 10,
        }
    }
}

impl PostgresStoreOptions {
    /// The default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema holding the table (default `public`; created if missing).
    /// Lowercase ASCII letters, digits and `_`, at most 63 characters.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table name (default `datahub_access_tokens`). Lowercase ASCII
    /// letters, digits and `_`, at most 40 characters. The store also
    /// creates `<table>_migrations`, indexes `<table>_*_idx`, and the
    /// function and triggers `<table>_notify_*` in the same schema.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Most token ids the validation cache holds (default 100,000; 0 or 1
    /// disables the cache, so every validation asks the database).
    pub fn with_cache_capacity(mut self, ids: usize) -> Self {
        self.cache_capacity = ids;
        self
    }

    /// The longest a revoked token can still be accepted from the cache
    /// when revocation notices stop arriving (a dead or silent connection):
    /// the listener proves itself every quarter of this, and an unproven
    /// cache is bypassed. Default 1 s; 4 ms to a day. Normally notices
    /// arrive in milliseconds; this bounds the failure case.
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// How long one store operation may take before it fails with a storage
    /// error (default 5 s; at most a day); also the pool's connection
    /// acquire timeout for pools this store creates.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Size of the pool [`PostgresTokenStore::connect_with`] creates
    /// (default 10; pools passed in keep their own settings). The listener
    /// always uses one connection of its own besides.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }
}

/// The longest max staleness or operation timeout accepted.
const MAX_SETTING_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

impl PostgresStoreOptions {
    /// Refuses unusable settings before anything connects.
    fn check(&self) -> Result<Names> {
        if self.max_staleness < Duration::from_millis(4) {
            return Err(Error::Config(format!(
                "max staleness {:?} is too short: at least 4 ms",
                self.max_staleness
            )));
        }
        if self.operation_timeout.is_zero() || self.max_connections == 0 {
            return Err(Error::Config(
                "the operation timeout and the pool size of a PostgreSQL store must not be zero".into(),
            ));
        }
        // Deadlines are `Instant::now() + setting`, which would overflow (and
        // panic) near `Duration::MAX`; longer than a day is a slip anyway.
        for (name, setting) in [
            ("max staleness", self.max_staleness),
            ("operation timeout", self.operation_timeout),
        ] {
            if setting > MAX_SETTING_DURATION {
                return Err(Error::Config(format!(
                    "{name} {setting:?} is too long: at most a day ({MAX_SETTING_DURATION:?})"
                )));
            }
        }
        Names::new(&self.schema, &self.table)
    }
}

/// How the validation cache is doing (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Ids currently cached.
    pub entries: usize,
    /// Existence checks answered from the cache.
    pub hits: u64,
    /// Existence checks that asked the database.
    pub misses: u64,
    /// Whether the revocation listener is connected.
    pub listening: bool,
    /// How many times the listener has reconnected.
    pub reconnects: u64,
    /// Whether the cache may answer now (listening and recently proven).
    pub trusted: bool,
}

/// A [`TokenStore`] in PostgreSQL, for services running as several replicas.
/// Needs PostgreSQL 11 or later (its triggers use `EXECUTE FUNCTION`; the
/// in-doubt `COMMIT` check uses `txid_status`, from 10); tested on 15.
///
/// * **One table for every replica.** Created on first use by versioned,
///   idempotent migrations ([`SCHEMA_VERSION`]) run in one transaction under
///   an advisory lock; the schema and table names are options
///   ([`PostgresStoreOptions`]). Filters, order and pages run in SQL on
///   indexes for listing order, owner, actor and creation time.
/// * **Validation without a round trip.** [`contains`](TokenStore::contains)
///   answers from a bounded cache of ids known to exist. Every removal
///   (revoke, delete, purge, even a hand-written `DELETE`) fires a trigger
///   that `NOTIFY`s the removed ids in the same transaction; each replica's
///   listener drops them from its cache when the removal commits. A
///   revocation here is seen here before the call returns, and on other
///   replicas within milliseconds.
/// * **Failure is bounded.** If the listener loses its connection the cache
///   is cleared and bypassed (a `tracing` warning says so) until it has
///   reconnected and cleared again; if notices silently stop, the cache is
///   bypassed at most [`max staleness`](PostgresStoreOptions::with_max_staleness)
///   after the last proof that they flow.
/// * **Database outages** make calls fail with [`Error::Storage`] within the
///   operation timeout; each call is one transaction, so nothing is ever
///   half-written, and the pool and listener recover by themselves. A
///   [`replace`](TokenStore::replace), or an insert within an owner's
///   limit, whose `COMMIT` goes unanswered (the connection drops, the
///   timeout passes) asks the server whether its transaction committed
///   before it reports failure, for at most one more operation timeout; a
///   transaction still committing after that is reported as failed, and
///   may yet commit. An insert without a limit is not checked so: a lost
///   answer there is reported as a failure.
/// * **Any default isolation.** Writes run at `READ COMMITTED` whatever
///   `default_transaction_isolation` the server, role or pool sets. Where
///   that is already the default (PostgreSQL's own), as checked when the
///   store opens, a write of one statement runs on its own; elsewhere in a
///   transaction, two round trips more.
///
/// Clones share the pool, the cache and the listener; dropping the last
/// clone stops the listener.
///
/// # Panics
///
/// The constructors spawn the listener task and time their statements
/// with Tokio: awaited outside a Tokio runtime, or in one built without
/// its time driver (`enable_time`), they panic.
///
/// ```no_run
/// use datahub_access_tokens::store::postgres::{PostgresStoreOptions, PostgresTokenStore};
///
/// # async fn demo() -> datahub_access_tokens::Result<()> {
/// let store = PostgresTokenStore::connect("postgres://tokens@db.internal/app").await?;
/// // or share the service's pool, in a schema of your choice:
/// # let pool = store.pool().clone();
/// let store = PostgresTokenStore::from_pool_with(
///     pool,
///     PostgresStoreOptions::new().with_schema("auth"),
/// )
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresTokenStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    names: Names,
    statements: Statements,
    shared: Arc<Shared>,
    operation_timeout: Duration,
    listener_task: JoinHandle<()>,
    /// Whether the pool's connections run a lone statement at READ
    /// COMMITTED (checked when the store opened), so that a write of one
    /// statement needs no transaction of its own (see [`BEGIN_WRITE`]).
    read_committed_by_default: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener_task.abort();
    }
}

/// Begins every transaction that writes. A write can wait for a lock (the
/// owner's, a row's, the migrations') and must then see what its holder
/// committed; under repeatable read or serializable, which a server, database,
/// role or pool may make the default, its snapshot predates the wait and it
/// would count too few rows or fail with a serialization error.
pub(super) const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// A connection for a write of one statement: a bare one where connections
/// default to READ COMMITTED, else a READ COMMITTED transaction (two round
/// trips more, paid only where a stricter default is set).
enum WriteConnection {
    Bare(PoolConnection<Postgres>),
    Transaction(Transaction<'static, Postgres>),
}

impl WriteConnection {
    /// Commits, if there is a transaction to commit.
    async fn finish(self) -> sqlx::Result<()> {
        match self {
            WriteConnection::Bare(_) => Ok(()),
            WriteConnection::Transaction(tx) => tx.commit().await,
        }
    }
}

impl std::ops::Deref for WriteConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            WriteConnection::Bare(conn) => conn,
            WriteConnection::Transaction(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            WriteConnection::Bare(conn) => conn,
            WriteConnection::Transaction(tx) => tx,
        }
    }
}

/// The fixed statements, with the table name filled in once.
struct Statements {
    insert: String,
    lock_owner: String,
    insert_within_limit: String,
    get: String,
    exists: String,
    delete: String,
    delete_for_replace: String,
    delete_expired: String,
    record_last_used: String,
}

impl Statements {
    fn new(table: &str) -> Self {
        let columns = sql::COLUMNS;
        Statements {
            insert: format!(
                "INSERT INTO {table} ({columns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO NOTHING"
            ),
            // Serializes the limited inserts of one owner (of this table)
            // across every replica, until the transaction ends.
            lock_owner: "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))".to_owned(),
            // After `lock_owner`, in the same transaction: one statement
            // (one round trip) checks the id and the owner's live tokens
            // and inserts only if both allow it, saying which stopped it.
            insert_within_limit: format!(
                "WITH state AS (\
                   SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1) AS taken, \
                   (SELECT count(*) FROM {table} WHERE owner_urn = $4 \
                    AND (expires_at IS NULL OR expires_at >= $9)) AS live), \
                 inserted AS (\
                   INSERT INTO {table} ({columns}) \
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM state WHERE NOT taken AND live < $10 \
                   ON CONFLICT (id) DO NOTHING RETURNING 1) \
                 SELECT taken, live, EXISTS (SELECT 1 FROM inserted), txid_current() FROM state"
            ),
            get: format!("SELECT {columns} FROM {table} WHERE id = $1"),
            exists: format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"),
            delete: format!("DELETE FROM {table} WHERE id = $1"),
            // The transaction's id, to learn later whether it committed
            // should the answer to its COMMIT be lost (see `replace`).
            delete_for_replace: format!("DELETE FROM {table} WHERE id = $1 RETURNING txid_current()"),
            delete_expired: format!("DELETE FROM {table} WHERE expires_at < $1 RETURNING id"),
            // Forward only; one row write per token however often it appears.
            record_last_used: format!(
                "UPDATE {table} AS t SET last_used_at = u.at \
                 FROM (SELECT id, max(at) AS at FROM unnest($1::text[], $2::bigint[]) AS u(id, at) \
                       GROUP BY id) AS u \
                 WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)"
            ),
        }
    }
}

impl PostgresTokenStore {
    /// Connects to the database at `url` (`postgres://user:password@host/db`;
    /// add `?application_name=...` to name this replica's connections) with
    /// the default options, creating the table if needed.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresStoreOptions::default()).await
    }

    /// Like [`connect`](Self::connect), with options.
    pub async fn connect_with(url: &str, options: PostgresStoreOptions) -> Result<Self> {
        // Messages never repeat the URL, which may hold a password.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Config(
                "invalid PostgreSQL URL: it must start with postgres:// or postgresql://".into(),
            ));
        }
        options.check()?;
        let mut connect_options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("invalid PostgreSQL URL: {e}")))?;
        // A statement the store stops waiting for must stop on the server
        // too: otherwise it keeps its connection (say, waiting for an
        // owner's lock that a frozen replica holds), and enough of them
        // drain the pool for every other call. A statement_timeout in the
        // URL (`?options=-c statement_timeout=...`) wins.
        if !connect_options
            .get_options()
            .is_some_and(|set| set.contains("statement_timeout"))
        {
            let timeout_ms = options.operation_timeout.as_millis();
            connect_options = connect_options.options([("statement_timeout", format!("{timeout_ms}ms"))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.operation_timeout)
            .connect_lazy_with(connect_options);
        Self::from_pool_with(pool, options).await
    }

    /// Uses a pool the service already has, with the default options.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        Self::from_pool_with(pool, PostgresStoreOptions::default()).await
    }

    /// Uses a pool the service already has. Brings the table up to
    /// [`SCHEMA_VERSION`] and starts listening for revocations before it
    /// returns. Give the pool's connections a `statement_timeout` (as
    /// [`connect_with`](Self::connect_with) does, equal to the operation
    /// timeout): a statement the store has given up on otherwise runs on,
    /// holding its connection, until the server ends it.
    pub async fn from_pool_with(pool: PgPool, options: PostgresStoreOptions) -> Result<Self> {
        let names = options.check()?;
        let timeout = options.operation_timeout;
        let context = format!("PostgreSQL: creating or upgrading the table {}", names.qualified);
        match tokio::time::timeout(timeout, schema::migrate(&pool, &names)).await {
            Ok(Ok(())) => {}
            Ok(Err(MigrateError::Database(e))) if !matches!(e, sqlx::Error::PoolTimedOut) => {
                return Err(Error::storage(context, e))
            }
            Ok(Err(too_new @ MigrateError::TooNew { .. })) => return Err(Error::storage(context, too_new)),
            // No connection within the timeout (the pool's or ours), which
            // says nothing of why: one connection of our own says it, if it
            // fails too (refused, unknown host, TLS required, ...).
            Ok(Err(_)) | Err(_) => {
                let connect_options = pool.connect_options();
                let why = tokio::time::timeout(timeout, PgConnection::connect_with(&connect_options));
                return Err(match why.await {
                    Ok(Err(e)) => Error::storage(context, e),
                    _ => Error::storage(context, TimedOut(timeout)),
                });
            }
        }
        let shared = Arc::new(Shared {
            cache: ExistsCache::new(options.cache_capacity),
            channel: names.channel.clone(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            connect_options: (*pool.connect_options()).clone(),
            max_staleness: options.max_staleness,
            connect_timeout: timeout,
            listening: Default::default(),
            reconnects: Default::default(),
        });
        let listener = listener::connect(&shared).await.map_err(|e| {
            Error::storage(format!("PostgreSQL: listening on channel {:?}", names.channel), e)
        })?;
        // What a lone statement runs at; checked once, as it is set on the
        // server, database or role, or by the pool's connect options.
        let context = "PostgreSQL: reading the default isolation level";
        let isolation = sqlx::query_scalar("SELECT current_setting('default_transaction_isolation')");
        let isolation: String = match tokio::time::timeout(timeout, isolation.fetch_one(&pool)).await {
            Ok(Ok(isolation)) => isolation,
            Ok(Err(e)) => return Err(Error::storage(context, e)),
            Err(_) => return Err(Error::storage(context, TimedOut(timeout))),
        };
        listener::resynchronized(&shared);
        let listener_task = tokio::spawn(listener::run(shared.clone(), listener));
        Ok(PostgresTokenStore {
            inner: Arc::new(Inner {
                statements: Statements::new(&names.qualified),
                pool,
                names,
                shared,
                operation_timeout: timeout,
                listener_task,
                read_committed_by_default: isolation == "read committed",
            }),
        })
    }

    /// A connection for a write of one statement (see [`WriteConnection`]);
    /// call [`WriteConnection::finish`] after the statement.
    async fn write_connection(&self) -> sqlx::Result<WriteConnection> {
        Ok(if self.inner.read_committed_by_default {
            WriteConnection::Bare(self.inner.pool.acquire().await?)
        } else {
            WriteConnection::Transaction(self.inner.pool.begin_with(BEGIN_WRITE).await?)
        })
    }

    /// The connection pool (shared with the caller if it came from one).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The `"schema"."table"` holding the tokens.
    pub fn qualified_table(&self) -> &str {
        &self.inner.names.qualified
    }

    /// The `LISTEN/NOTIFY` channel carrying removals: `<schema>.<table>`, or
    /// `datahub_tokens_<hash>` when that would exceed 63 bytes.
    pub fn channel(&self) -> &str {
        &self.inner.names.channel
    }

    /// The validation cache's counters and state.
    pub fn cache_stats(&self) -> CacheStats {
        let shared = &self.inner.shared;
        CacheStats {
            entries: shared.cache.len(),
            hits: shared.cache.hits.load(Ordering::Relaxed),
            misses: shared.cache.misses.load(Ordering::Relaxed),
            listening: shared.listening.load(Ordering::Acquire),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            trusted: shared.cache.is_trusted(),
        }
    }

    /// PostgreSQL's plan for a listing (`EXPLAIN`), to check which indexes
    /// a query of yours uses.
    pub async fn explain_list(&self, query: &ListQuery) -> Result<String> {
        let context = "PostgreSQL: explaining a listing";
        let mut builder = sql::list("EXPLAIN ", &self.inner.names.qualified, query);
        let rows = self
            .timed(context, builder.build().fetch_all(&self.inner.pool))
            .await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()
            .map(|lines| lines.join("\n"))
            .map_err(|e| Error::storage(context, e))
    }

    /// Whether the transaction `xid` committed, waiting (up to the
    /// operation timeout) for it to end if it is still in progress. `false`
    /// if it aborted or this cannot be learned.
    async fn committed(&self, xid: i64) -> bool {
        let deadline = tokio::time::Instant::now() + self.inner.operation_timeout;
        loop {
            let status = sqlx::query_scalar::<_, Option<String>>("SELECT txid_status($1)")
                .bind(xid)
                .fetch_one(&self.inner.pool);
            match tokio::time::timeout_at(deadline, status).await {
                Ok(Ok(Some(status))) if status == "committed" => return true,
                Ok(Ok(Some(status))) if status == "in progress" => {}
                _ => return false,
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The outcome of a write whose transaction put its id in `committing`
    /// just before sending `COMMIT`: a failure after that (the answer lost,
    /// the timeout passed) is checked against the server, and if the
    /// transaction committed, the outcome is `committed`, what the write
    /// gives when answered. Reporting a write that committed as failed
    /// would lose a token: a rotation's caller keeps the old one, revoked,
    /// and a creation's never sees the new one (which still counts against
    /// its owner's limit).
    async fn settled<T>(&self, outcome: Result<T>, committing: &OnceLock<i64>, committed: T) -> Result<T> {
        match (outcome, committing.get()) {
            (Err(error), Some(&xid)) if self.committed(xid).await => {
                tracing::warn!(%error, "PostgreSQL: the answer to a COMMIT was lost, but the transaction committed");
                Ok(committed)
            }
            (outcome, _) => outcome,
        }
    }

    async fn timed<T>(
        &self,
        context: &str,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T> {
        let timeout = self.inner.operation_timeout;
        match tokio::time::timeout(timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Error::storage(context, e)),
            Err(_) => Err(Error::storage(context, TimedOut(timeout))),
        }
    }
}

impl fmt::Debug for PostgresTokenStore {
    // Never the connect options: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTokenStore")
            .field("table", &self.inner.names.qualified)
            .field("channel", &self.inner.names.channel)
            .field("cache", &self.cache_stats())
            .finish()
    }
}

/// An operation that did not finish within the operation timeout.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL did not answer within {0:?}")]
struct TimedOut(Duration);

/// A stored value this store cannot have written.
#[derive(Debug, thiserror::Error)]
#[error("the row for token {id} holds an invalid {column}: {reason}")]
struct CorruptRow {
    id: String,
    column: &'static str,
    reason: Error,
}

/// PostgreSQL text cannot hold NUL, so an id containing one is never stored.
fn storable(id: &str) -> bool {
    !id.contains('\0')
}

fn check_storable(token: &StoredAccessToken) -> Result<()> {
    match super::field_with_nul(token) {
        Some(field) => Err(Error::invalid_input(format!(
            "{field} contains a NUL character, which PostgreSQL cannot store"
        ))),
        None => Ok(()),
    }
}

/// `sql` with a record's columns bound as `$1` to `$8`, in [`sql::COLUMNS`] order.
fn bind_record<'q>(sql: &'q str, token: &'q StoredAccessToken) -> Query<'q, Postgres, PgArguments> {
    let info = &token.info;
    sqlx::query(sql)
        .bind(&token.id)
        .bind(&info.name)
        .bind(info.actor_urn.as_str())
        .bind(info.owner_urn.as_str())
        .bind(info.created_at)
        .bind(info.expires_at)
        .bind(info.description.as_deref())
        .bind(info.last_used_at)
}

fn decode(row: &PgRow) -> Result<StoredAccessToken, Box<dyn std::error::Error + Send + Sync>> {
    let id: String = row.try_get("id")?;
    let urn = |column: &'static str| -> Result<Urn, Box<dyn std::error::Error + Send + Sync>> {
        let text: String = row.try_get(column)?;
        Urn::parse(text).map_err(|reason| {
            CorruptRow {
                id: id.clone(),
                column,
                reason,
            }
            .into()
        })
    };
    Ok(StoredAccessToken {
        info: DataHubAccessTokenInfo {
            name: row.try_get("name")?,
            actor_urn: urn("actor_urn")?,
            owner_urn: urn("owner_urn")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            description: row.try_get("description")?,
            last_used_at: row.try_get("last_used_at")?,
        },
        id,
    })
}

/// How a limited insert's transaction ended.
enum LimitedInsert {
    Done,
    Exists,
    Full,
}

#[async_trait]
impl TokenStore for PostgresTokenStore {
    async fn insert_within_limit(&self, token: StoredAccessToken, limit: Option<OwnerLimit>) -> Result<()> {
        check_storable(&token)?;
        let cache = &self.inner.shared.cache;
        let ticket = cache.ticket(&token.id);
        let statements = &self.inner.statements;
        let Some(limit) = limit else {
            let inserted = self
                .timed("PostgreSQL: inserting a token", async {
                    let mut conn = self.write_connection().await?;
                    let inserted = bind_record(&statements.insert, &token)
                        .execute(&mut *conn)
                        .await?;
                    conn.finish().await?;
                    Ok(inserted)
                })
                .await?;
            if inserted.rows_affected() == 0 {
                return Err(Error::AlreadyExists { id: token.id });
            }
            cache.insert(&token.id, ticket);
            return Ok(());
        };
        // One transaction: take the owner's lock, then count (at read
        // committed, a statement after the lock sees every insert committed
        // before it) and insert, in one statement.
        let owner = &token.info.owner_urn;
        let lock_key = format!("{} {owner}", self.inner.names.qualified);
        let max_live = i64::try_from(limit.max_live).unwrap_or(i64::MAX);
        let committing = OnceLock::new();
        let outcome = self
            .timed("PostgreSQL: inserting a token within its owner's limit", async {
                let mut tx = self.inner.pool.begin_with(BEGIN_WRITE).await?;
                sqlx::query(&statements.lock_owner)
                    .bind(&lock_key)
                    .execute(&mut *tx)
                    .await?;
                let row = bind_record(&statements.insert_within_limit, &token)
                    .bind(limit.now_ms)
                    .bind(max_live)
                    .fetch_one(&mut *tx)
                    .await?;
                let (taken, live, inserted, xid): (bool, i64, bool, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                if live >= max_live && !taken {
                    return Ok(LimitedInsert::Full);
                }
                // Taken before, or by an insert racing this one.
                if !inserted {
                    return Ok(LimitedInsert::Exists);
                }
                let _ = committing.set(xid);
                tx.commit().await?;
                Ok(LimitedInsert::Done)
            })
            .await;
        let outcome = self.settled(outcome, &committing, LimitedInsert::Done).await?;
        match outcome {
            LimitedInsert::Done => {
                cache.insert(&token.id, ticket);
                Ok(())
            }
            LimitedInsert::Exists => Err(Error::AlreadyExists { id: token.id }),
            LimitedInsert::Full => Err(Error::LimitExceeded {
                owner: token.info.owner_urn.to_string(),
                limit: limit.max_live,
            }),
        }
    }

    async fn replace(&self, old_id: &str, new: StoredAccessToken) -> Result<()> {
        check_storable(&new)?;
        if !storable(old_id) {
            return Err(Error::NotFound);
        }
        if new.id == old_id {
            // Its id is taken by the record it would replace (the contract);
            // deleting and reinserting would succeed.
            let exists: bool = self
                .timed(
                    "PostgreSQL: replacing a token",
                    sqlx::query_scalar(&self.inner.statements.exists)
                        .bind(old_id)
                        .fetch_one(&self.inner.pool),
                )
                .await?;
            return Err(if exists {
                Error::AlreadyExists { id: new.id }
            } else {
                Error::NotFound
            });
        }
        let cache = &self.inner.shared.cache;
        let ticket = cache.ticket(&new.id);
        let statements = &self.inner.statements;
        // Set once the COMMIT is sent: from then on a failure (a lost
        // answer, a timeout) does not mean the replacement did not happen.
        let committing = OnceLock::new();
        let outcome = self
            .timed("PostgreSQL: replacing a token", async {
                let mut tx = self.inner.pool.begin_with(BEGIN_WRITE).await?;
                let deleted: Option<i64> = sqlx::query_scalar(&statements.delete_for_replace)
                    .bind(old_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(xid) = deleted else {
                    return Ok(Err(Error::NotFound));
                };
                let inserted = bind_record(&statements.insert, &new).execute(&mut *tx).await?;
                if inserted.rows_affected() == 0 {
                    // Dropping the transaction rolls the delete back.
                    return Ok(Err(Error::AlreadyExists { id: new.id.clone() }));
                }
                let _ = committing.set(xid);
                tx.commit().await?;
                Ok(Ok(()))
            })
            .await;
        let outcome = self.settled(outcome, &committing, Ok(())).await;
        // Even a failed commit may have landed: forget the old id either
        // way. The delete trigger tells the other replicas.
        cache.remove([old_id]);
        outcome??;
        cache.insert(&new.id, ticket);
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredAccessToken>> {
        if !storable(id) {
            return Ok(None);
        }
        let cache = &self.inner.shared.cache;
        let ticket = cache.ticket(id);
        let context = "PostgreSQL: reading a token";
        let row = self
            .timed(
                context,
                sqlx::query(&self.inner.statements.get)
                    .bind(id)
                    .fetch_optional(&self.inner.pool),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let token = decode(&row).map_err(|e| Error::storage(context, e))?;
        cache.insert(id, ticket);
        Ok(Some(token))
    }

    async fn contains(&self, id: &str) -> Result<bool> {
        let cache = &self.inner.shared.cache;
        if cache.contains(id) {
            return Ok(true);
        }
        if !storable(id) {
            return Ok(false);
        }
        cache.misses.fetch_add(1, Ordering::Relaxed);
        let ticket = cache.ticket(id);
        let exists: bool = self
            .timed(
                "PostgreSQL: checking that a token exists",
                sqlx::query_scalar(&self.inner.statements.exists)
                    .bind(id)
                    .fetch_one(&self.inner.pool),
            )
            .await?;
        if exists {
            cache.insert(id, ticket);
        }
        Ok(exists)
    }

    fn contains_now(&self, id: &str) -> Option<bool> {
        // Only a cached id is known at once; its absence needs the database.
        self.inner.shared.cache.contains(id).then_some(true)
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        if !storable(id) {
            return Ok(false);
        }
        let deleted = self
            .timed("PostgreSQL: deleting a token", async {
                let mut conn = self.write_connection().await?;
                let deleted = sqlx::query(&self.inner.statements.delete)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                conn.finish().await?;
                Ok(deleted)
            })
            .await;
        // Even a failed delete may have committed: forget the id either way.
        // The trigger tells the other replicas.
        self.inner.shared.cache.remove([id]);
        Ok(deleted?.rows_affected() > 0)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let context = "PostgreSQL: listing tokens";
        let mut builder = sql::list("", &self.inner.names.qualified, query);
        let rows = self
            .timed(context, builder.build().fetch_all(&self.inner.pool))
            .await?;
        let mut page = ListPage::default();
        for row in &rows {
            let total: i64 = row.try_get("total").map_err(|e| Error::storage(context, e))?;
            page.total = usize::try_from(total).unwrap_or(usize::MAX);
            let id: Option<String> = row.try_get("id").map_err(|e| Error::storage(context, e))?;
            if id.is_some() {
                page.tokens
                    .push(decode(row).map_err(|e| Error::storage(context, e))?);
            }
        }
        Ok(page)
    }

    async fn delete_expired(&self, now_ms: i64) -> Result<Vec<String>> {
        let deleted: Result<Vec<String>> = self
            .timed("PostgreSQL: deleting expired tokens", async {
                let mut conn = self.write_connection().await?;
                let deleted = sqlx::query_scalar(&self.inner.statements.delete_expired)
                    .bind(now_ms)
                    .fetch_all(&mut *conn)
                    .await?;
                conn.finish().await?;
                Ok(deleted)
            })
            .await;
        let cache = &self.inner.shared.cache;
        match &deleted {
            Ok(ids) => cache.remove(ids.iter().map(String::as_str)),
            // Unknown what committed: forget everything rather than guess.
            Err(_) => cache.clear(),
        }
        deleted
    }

    async fn record_last_used(&self, uses: &[TokenUse]) -> Result<()> {
        let (ids, times): (Vec<&str>, Vec<i64>) = uses
            .iter()
            .filter(|used| storable(&used.id))
            .map(|used| (used.id.as_str(), used.at_ms))
            .unzip();
        if ids.is_empty() {
            return Ok(());
        }
        self.timed("PostgreSQL: recording when tokens were last used", async {
            let mut conn = self.write_connection().await?;
            sqlx::query(&self.inner.statements.record_last_used)
                .bind(ids)
                .bind(times)
                .execute(&mut *conn)
                .await?;
            conn.finish().await
        })
        .await?;
        Ok(())
    }
}
