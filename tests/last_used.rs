//! Last-used tracking through the service, on every store: a validation
//! records `lastUsedAt` (throttled per token, written off the caller's
//! path), listing shows it and filters on it (stale and never-used tokens),
//! and it can be configured or turned off.

mod common;

use std::time::{Duration, Instant};

use common::*;
use datahub_access_tokens::{
    AccessToken, AccessTokenDuration, AccessTokenMetadata, DataHubTokenService, Error, FacetFilterInput,
    FileTokenStore, ListAccessTokenInput, ManualClock, MemoryTokenStore, TokenService, TokenServiceConfig,
    TokenStore, DEFAULT_LAST_USED_INTERVAL_MS, ENV_LAST_USED_INTERVAL_MS, ENV_SALT, ENV_SIGNING_KEY,
};

fn service(store: impl TokenStore, clock: &ManualClock) -> DataHubTokenService {
    DataHubTokenService::new(config(), store, policies()).with_clock(clock.clone())
}

async fn create(service: &DataHubTokenService, name: &str) -> AccessToken {
    service
        .create_access_token(
            &user(ALICE),
            datahub_access_tokens::CreateAccessTokenInput::personal(
                ALICE,
                name,
                AccessTokenDuration::OneMonth,
            ),
        )
        .await
        .unwrap()
}

async fn validate(service: &DataHubTokenService, token: &AccessToken) {
    service
        .validate_access_token(token.expose_access_token())
        .await
        .expect("the token validates");
}

/// The manager's listing with these filters, as (name, lastUsedAt).
async fn list(service: &DataHubTokenService, filters: Vec<FacetFilterInput>) -> Vec<(String, Option<i64>)> {
    let input = ListAccessTokenInput {
        start: Some(0),
        count: Some(100),
        filters: Some(filters),
    };
    let page = service.list_access_tokens(&user(MANAGER), &input).await.unwrap();
    let mut tokens: Vec<_> = page
        .tokens
        .into_iter()
        .map(|t: AccessTokenMetadata| (t.name, t.last_used_at))
        .collect();
    tokens.sort();
    tokens
}

fn last_used(condition: &str, values: &[&str], negated: bool) -> FacetFilterInput {
    FacetFilterInput {
        field: "lastUsedAt".into(),
        values: Some(values.iter().map(|v| v.to_string()).collect()),
        negated: Some(negated),
        condition: Some(condition.into()),
        ..FacetFilterInput::default()
    }
}

/// The whole behaviour, on one store.
async fn records_uses_on(store: impl TokenStore + Clone) {
    let clock = ManualClock::new(T0);
    let service = service(store.clone(), &clock);
    let (ci, laptop, spare) = (
        create(&service, "ci").await,
        create(&service, "laptop").await,
        create(&service, "spare").await,
    );
    assert_eq!(
        list(&service, vec![]).await,
        [
            ("ci".into(), None),
            ("laptop".into(), None),
            ("spare".into(), None)
        ],
        "a new token has never been used"
    );

    validate(&service, &ci).await;
    validate(&service, &laptop).await;
    service.flush_last_used().await.unwrap();
    let used = list(&service, vec![]).await;
    assert_eq!(used[0], ("ci".into(), Some(T0)));
    assert_eq!(used[1], ("laptop".into(), Some(T0)));

    // Within the interval the store is not written again.
    clock.advance(DEFAULT_LAST_USED_INTERVAL_MS / 2);
    validate(&service, &ci).await;
    service.flush_last_used().await.unwrap();
    assert_eq!(
        list(&service, vec![]).await[0],
        ("ci".into(), Some(T0)),
        "throttled"
    );
    // An interval after the recorded use, it is.
    clock.advance(DEFAULT_LAST_USED_INTERVAL_MS / 2);
    validate(&service, &ci).await;
    service.flush_last_used().await.unwrap();
    let later = T0 + DEFAULT_LAST_USED_INTERVAL_MS;
    assert_eq!(list(&service, vec![]).await[0], ("ci".into(), Some(later)));

    // Stale and never-used tokens, as an operator cleaning up would ask.
    let cutoff = (T0 + 1).to_string();
    assert_eq!(
        list(&service, vec![last_used("LESS_THAN", &[&cutoff], false)]).await,
        [("laptop".into(), Some(T0))],
        "lastUsedAt LESS_THAN: used, but not lately"
    );
    assert_eq!(
        list(&service, vec![last_used("EXISTS", &[], true)]).await,
        [("spare".into(), None)],
        "negated EXISTS lastUsedAt: never used"
    );
    let metadata = service
        .get_access_token_metadata(&user(MANAGER), ci.expose_access_token())
        .await
        .unwrap();
    assert_eq!(metadata.last_used_at, Some(later));

    // Without a flush, the writer task records the use shortly after.
    validate(&service, &spare).await;
    let started = Instant::now();
    while list(&service, vec![]).await[2].1.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the deferred write never landed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    // A revoked token is not brought back by a use noted before the revoke.
    clock.advance(DEFAULT_LAST_USED_INTERVAL_MS);
    validate(&service, &laptop).await;
    let laptop_id = laptop.metadata.as_ref().unwrap().id.clone();
    service
        .revoke_access_token(&user(ALICE), &laptop_id)
        .await
        .unwrap();
    service.flush_last_used().await.unwrap();
    assert!(matches!(
        service.validate_access_token(laptop.expose_access_token()).await,
        Err(Error::Revoked)
    ));
    assert_eq!(list(&service, vec![]).await.len(), 2);
}

#[tokio::test]
async fn memory_store() {
    records_uses_on(MemoryTokenStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(dir.path()).await.unwrap();
    records_uses_on(store.clone()).await;
    store.close().await.unwrap();
    // What was recorded is durable.
    let store = FileTokenStore::open(dir.path()).await.unwrap();
    let page = store
        .list(&datahub_access_tokens::store::ListQuery::all(10))
        .await
        .unwrap();
    assert_eq!(page.tokens.len(), 2);
    assert!(page.tokens.iter().all(|t| t.info.last_used_at.is_some()));
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    use datahub_access_tokens::store::postgres::{PgPool, PostgresStoreOptions, PostgresTokenStore};
    const URL_VAR: &str = "DATAHUB_TOKENS_TEST_POSTGRES_URL";
    let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) else {
        println!("NOT RUN: {URL_VAR} is not set (see README, \"PostgreSQL store\")");
        return;
    };
    let schema = format!(
        "dhat_last_used_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let store = PostgresTokenStore::connect_with(&url, PostgresStoreOptions::new().with_schema(&schema))
        .await
        .unwrap();
    records_uses_on(store).await;
    let admin = PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn recording_can_be_turned_off_or_tuned() {
    let clock = ManualClock::new(T0);
    let store = MemoryTokenStore::new();
    let off = config().with_last_used_interval_ms(None).unwrap();
    let service = DataHubTokenService::new(off, store.clone(), policies()).with_clock(clock.clone());
    let token = create(&service, "quiet").await;
    validate(&service, &token).await;
    service.flush_last_used().await.unwrap();
    assert_eq!(list(&service, vec![]).await, [("quiet".into(), None)]);

    let every_second = config().with_last_used_interval_ms(Some(1_000)).unwrap();
    let service = DataHubTokenService::new(every_second, store, policies()).with_clock(clock.clone());
    clock.advance(1_000);
    validate(&service, &token).await;
    clock.advance(1_000);
    validate(&service, &token).await;
    service.flush_last_used().await.unwrap();
    assert_eq!(list(&service, vec![]).await, [("quiet".into(), Some(T0 + 2_000))]);

    for bad in [Some(0), Some(-5)] {
        let err = config().with_last_used_interval_ms(bad).unwrap_err();
        assert!(
            err.to_string().contains("last-used interval must be positive"),
            "{err}"
        );
    }
}

/// Create, validate, flush and list through any `TokenService`.
async fn last_used_through<S: TokenService>(service: S) -> Vec<Option<i64>> {
    let input =
        datahub_access_tokens::CreateAccessTokenInput::personal(ALICE, "ci", AccessTokenDuration::OneMonth);
    let token = service.create_access_token(&user(ALICE), input).await.unwrap();
    service
        .validate_access_token(token.expose_access_token())
        .await
        .unwrap();
    // Not forwarded, this would be the trait's default, which writes nothing.
    service.flush_last_used().await.unwrap();
    let input = ListAccessTokenInput::default();
    let page = service.list_access_tokens(&user(MANAGER), &input).await.unwrap();
    page.tokens.into_iter().map(|t| t.last_used_at).collect()
}

#[tokio::test]
async fn an_arc_or_box_of_a_service_is_a_service_that_flushes() {
    let clock = ManualClock::new(T0);
    let shared = std::sync::Arc::new(service(MemoryTokenStore::new(), &clock));
    assert_eq!(last_used_through(shared).await, [Some(T0)]);
    let boxed: Box<dyn TokenService> = Box::new(service(MemoryTokenStore::new(), &clock));
    assert_eq!(last_used_through(boxed).await, [Some(T0)]);
}

#[test]
fn the_interval_comes_from_the_environment() {
    let from = |value: &str| {
        TokenServiceConfig::from_lookup(|name| match name {
            ENV_SIGNING_KEY => Some(SIGNING_KEY.into()),
            ENV_SALT => Some(SALT.into()),
            ENV_LAST_USED_INTERVAL_MS => Some(value.into()),
            _ => None,
        })
    };
    assert_eq!(from("5000").unwrap().last_used_interval_ms(), Some(5000));
    assert_eq!(from(" OFF ").unwrap().last_used_interval_ms(), None);
    for bad in ["soon", "0", "-1"] {
        let err = from(bad).unwrap_err().to_string();
        assert!(err.contains(ENV_LAST_USED_INTERVAL_MS), "{bad}: {err}");
    }
    assert_eq!(
        config().last_used_interval_ms(),
        Some(DEFAULT_LAST_USED_INTERVAL_MS),
        "on by default, once a minute"
    );
}
