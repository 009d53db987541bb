//! Shared helpers: a schema per test, replicas, admin SQL, captured logs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use datahub_access_tokens::store::postgres::{PgPool, PostgresStoreOptions, PostgresTokenStore};
use datahub_access_tokens::{DataHubTokenService, Error, Policies, TokenServiceConfig};

/// The variable naming the test database.
pub const URL_VAR: &str = "DATAHUB_TOKENS_TEST_POSTGRES_URL";

/// A schema name no other test or run uses.
pub fn fresh_schema(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "dhat_{tag}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with an `application_name`, so a test can find and kill exactly
/// this replica's connections.
pub fn url_named(url: &str, application_name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={application_name}")
}

/// A pool for the test's own SQL (dropping schemas, killing connections).
pub async fn admin(url: &str) -> PgPool {
    PgPool::connect(&url_named(url, "dhat-test-admin"))
        .await
        .expect("the test database is reachable")
}

pub async fn drop_schema(admin: &PgPool, schema: &str) {
    // One transaction, so SET LOCAL keeps "drop cascades to ..." out of the log.
    let drop = format!(
        "BEGIN; SET LOCAL client_min_messages = warning; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; COMMIT"
    );
    sqlx::raw_sql(&drop)
        .execute(admin)
        .await
        .expect("drop the test schema");
}

/// Terminates every connection of the replica named `application_name`
/// (its pool and its listener); returns how many.
pub async fn kill_connections(admin: &PgPool, application_name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) AS killed",
    )
    .bind(application_name)
    .fetch_one(admin)
    .await
    .expect("pg_terminate_backend")
}

pub fn options(schema: &str) -> PostgresStoreOptions {
    PostgresStoreOptions::new().with_schema(schema)
}

pub async fn store(url: &str, options: PostgresStoreOptions) -> PostgresTokenStore {
    PostgresTokenStore::connect_with(url, options)
        .await
        .expect("open the PostgreSQL store")
}

/// One replica: a service with its own pool and listener over the shared table.
pub fn service(config: &TokenServiceConfig, store: PostgresTokenStore) -> DataHubTokenService {
    DataHubTokenService::new(config.clone(), store, Policies::datahub_defaults())
}

/// Waits until `condition` holds, failing the test after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Log events of this crate seen so far, as `LEVEL message fields`.
pub fn logs() -> Vec<String> {
    LOGS.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Installs a `tracing` subscriber that records the PostgreSQL store's events,
/// and the server's notices as sqlx logs them, at INFO and above (and prints
/// them), so tests can check what was logged.
pub fn capture_logs() {
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    struct Capture;
    struct Fields(String);
    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.0, "{value:?}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
    }
    impl Subscriber for Capture {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            let target = metadata.target();
            (target.starts_with("datahub_access_tokens::store::postgres")
                || target == "sqlx::postgres::notice")
                && *metadata.level() <= Level::INFO
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            let line = format!("{} {}", event.metadata().level(), fields.0);
            println!("    log: {line}");
            LOGS.lock().unwrap_or_else(PoisonError::into_inner).push(line);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
    let _ = tracing::subscriber::set_global_default(Capture);
}

/// The `p`th percentile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `error` and its causes, joined by ": ".
pub fn error_chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
