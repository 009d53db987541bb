//! The PostgreSQL store next to the memory store, in the same run:
//! hot validation (a cached token), and create (without and with the
//! per-owner limit), revoke and one owner's page with 1,000,000 tokens stored. Needs `DATAHUB_TOKENS_TEST_POSTGRES_URL`
//! (works in a schema of its own, dropped at the end); without it, says so
//! and measures nothing.
//!
//! `cargo bench --features postgres --bench postgres`
//! (`DATAHUB_TOKENS_BENCH_ROWS=100000` for a quicker, smaller run.)

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use datahub_access_tokens::store::postgres::{PostgresStoreOptions, PostgresTokenStore};
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, ListAccessTokenInput, MemoryTokenStore,
    Policies, TokenService, TokenServiceConfig, TokenStore, Urn,
};
use datahub_access_tokens::{DataHubAccessTokenInfo, StoredAccessToken};
use tokio::runtime::Runtime;

const URL_VAR: &str = "DATAHUB_TOKENS_TEST_POSTGRES_URL";
/// Tokens per owner in the big store: a page of 20 out of 100.
const PER_OWNER: u64 = 100;

fn owner(n: u64) -> String {
    format!("urn:li:corpuser:owner{}", n / PER_OWNER)
}

fn record(n: u64) -> StoredAccessToken {
    let created_at = 1_700_000_000_000 + n as i64;
    StoredAccessToken {
        id: format!("bench-token-{n:012}"),
        info: DataHubAccessTokenInfo {
            name: format!("token {n}"),
            actor_urn: Urn::parse(owner(n)).unwrap(),
            owner_urn: Urn::parse(owner(n)).unwrap(),
            created_at,
            expires_at: (!n.is_multiple_of(10)).then_some(created_at + 86_400_000),
            description: None,
            last_used_at: None,
        },
    }
}

/// Loads `rows` records into the PostgreSQL table in batches of one
/// multi-row `INSERT ... SELECT FROM unnest(...)` each.
async fn load_postgres(store: &PostgresTokenStore, rows: u64) {
    const BATCH: u64 = 20_000;
    let sql = format!(
        "INSERT INTO {} (id, name, actor_urn, owner_urn, created_at, expires_at, description)
         SELECT id, name, owner, owner, created_at, expires_at, NULL
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[])
           AS batch(id, name, owner, created_at, expires_at)",
        store.qualified_table()
    );
    for start in (0..rows).step_by(BATCH as usize) {
        let batch: Vec<StoredAccessToken> = (start..(start + BATCH).min(rows)).map(record).collect();
        sqlx::query(&sql)
            .bind(batch.iter().map(|t| t.id.clone()).collect::<Vec<_>>())
            .bind(batch.iter().map(|t| t.info.name.clone()).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|t| t.info.owner_urn.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|t| t.info.created_at).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|t| t.info.expires_at)
                    .collect::<Vec<Option<i64>>>(),
            )
            .execute(store.pool())
            .await
            .expect("bulk insert");
    }
    sqlx::raw_sql(&format!("ANALYZE {}", store.qualified_table()))
        .execute(store.pool())
        .await
        .unwrap();
}

fn main() {
    let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) else {
        println!(
            "benches/postgres: NOT RUN: set {URL_VAR}=postgres://postgres@127.0.0.1:5432/test to \
             compare the PostgreSQL store with the memory store (see README, \"PostgreSQL store\")."
        );
        return;
    };
    let rows: u64 = std::env::var("DATAHUB_TOKENS_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let rt = Runtime::new().unwrap();
    let schema = format!("dhat_bench_{}", std::process::id());
    // One creator makes every token here and the create benches keep them.
    let config = TokenServiceConfig::generate()
        .unwrap()
        .with_max_tokens_per_owner(None)
        .unwrap();
    let postgres = rt.block_on(async {
        PostgresTokenStore::connect_with(&url, PostgresStoreOptions::new().with_schema(&schema))
            .await
            .expect("open the PostgreSQL store")
    });
    let memory = MemoryTokenStore::new();

    let loading = Instant::now();
    rt.block_on(async {
        for n in 0..rows {
            memory.insert(record(n)).await.unwrap();
        }
    });
    println!(
        "loaded {rows} tokens into the memory store in {:.1?}",
        loading.elapsed()
    );
    let loading = Instant::now();
    rt.block_on(load_postgres(&postgres, rows));
    println!(
        "loaded {rows} tokens into PostgreSQL in {:.1?}",
        loading.elapsed()
    );

    // The same stores behind services with a per-owner limit too high to
    // reach: the limited path costs the same whatever the number.
    let limited = config
        .clone()
        .with_max_tokens_per_owner(Some(usize::MAX))
        .unwrap();
    let policies = Policies::datahub_defaults;
    let services = [
        (
            "memory",
            DataHubTokenService::new(config.clone(), memory.clone(), policies()),
            DataHubTokenService::new(limited.clone(), memory, policies()),
        ),
        (
            "postgres",
            DataHubTokenService::new(config.clone(), postgres.clone(), policies()),
            DataHubTokenService::new(limited, postgres.clone(), policies()),
        ),
    ];
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();

    let creator = Urn::corp_user("bench-creator").unwrap();
    let create_input =
        || CreateAccessTokenInput::personal(creator.as_str(), "bench", AccessTokenDuration::OneMonth);
    let mut group = c.benchmark_group(format!("tokens_{rows}"));
    for (name, service, limited) in &services {
        // A token validated once is in the PostgreSQL store's cache.
        let token = rt.block_on(async {
            let created = service
                .create_access_token(&creator, create_input())
                .await
                .unwrap();
            let token = created.expose_access_token().to_owned();
            service.validate_access_token(&token).await.unwrap();
            token
        });
        group.bench_function(BenchmarkId::new("validate_hot", name), |b| {
            b.to_async(&rt).iter(|| service.validate_access_token(&token))
        });
        // The store's share of validation alone: is this (cached) id stored?
        let id = service.codec().token_id(&token);
        let store = service.store();
        group.bench_function(BenchmarkId::new("contains_hot", name), |b| {
            b.to_async(&rt).iter(|| store.contains(&id))
        });
        group.bench_function(BenchmarkId::new("create", name), |b| {
            b.to_async(&rt)
                .iter(|| service.create_access_token(&creator, create_input()))
        });
        // With the per-owner limit (on by default): the store counts the
        // owner's live tokens and inserts under the owner's lock. Each owner
        // of the loaded rows in turn creates one.
        group.bench_function(BenchmarkId::new("create_limited", name), |b| {
            let mut n = 0;
            b.to_async(&rt).iter(|| {
                n = (n + PER_OWNER) % rows;
                let owner = Urn::parse(owner(n)).unwrap();
                async move {
                    let input = CreateAccessTokenInput::personal(
                        owner.as_str(),
                        "bench",
                        AccessTokenDuration::OneMonth,
                    );
                    limited.create_access_token(&owner, input).await.unwrap()
                }
            })
        });
        group.bench_function(BenchmarkId::new("revoke", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut ids = Vec::new();
                    for _ in 0..iters {
                        let created = service
                            .create_access_token(&creator, create_input())
                            .await
                            .unwrap();
                        ids.push(created.metadata.unwrap().id);
                    }
                    let started = Instant::now();
                    for id in &ids {
                        service.revoke_access_token(&creator, id).await.unwrap();
                    }
                    started.elapsed()
                })
            })
        });
        let someone = Urn::parse(owner(rows / 2)).unwrap();
        let page = ListAccessTokenInput::owned_by(&someone, 20);
        group.bench_function(BenchmarkId::new("owner_page_20_of_100", name), |b| {
            b.to_async(&rt)
                .iter(|| service.list_access_tokens(&someone, &page))
        });
    }
    group.finish();
    let stats = postgres.cache_stats();
    println!("PostgreSQL store cache after the run: {stats:?}");
    drop(services);
    rt.block_on(async {
        sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(postgres.pool())
            .await
            .unwrap();
    });
    c.final_summary();
}
