//! Losing the database: connections killed, the server unreachable, and
//! the listener silently cut off.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datahub_access_tokens::store::postgres::{PostgresStoreOptions, PostgresTokenStore};
use datahub_access_tokens::store::ListQuery;
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, Error, RotateAccessTokenInput,
    TokenService, TokenServiceConfig, TokenStore, Urn,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::common::{
    admin, drop_schema, error_chain, eventually, fresh_schema, kill_connections, logs, options, service,
    store, url_named,
};
use crate::proxy::{Mode, Proxy};

const MAX_STALENESS: Duration = Duration::from_millis(500);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

async fn create(service: &DataHubTokenService, user: &Urn, n: usize) -> Result<(String, String), Error> {
    let input = CreateAccessTokenInput::personal(user.as_str(), format!("t{n}"), AccessTokenDuration::OneDay);
    let created = service.create_access_token(user, input).await?;
    let id = created.metadata.as_ref().unwrap().id.clone();
    Ok((created.expose_access_token().to_owned(), id))
}

fn logged(needle: &str) -> bool {
    logs().iter().any(|line| line.contains(needle))
}

const LOST: &str = "lost its revocation listener";
const BACK: &str = "listening for revocations again";

/// Replica B revokes tokens while replica A's connections (pool and
/// listener) are killed three times; A keeps validating throughout. No token
/// validates on A later than the staleness bound after B's revoke returned;
/// afterwards none validates at all, and A is back to serving from cache.
pub async fn connections_killed_mid_run(url: String) {
    const TOKENS: usize = 300;
    let admin = admin(&url).await;
    let schema = fresh_schema("kill");
    let a_name = format!("{schema}_a");
    // One owner holds all TOKENS: above the default per-owner limit.
    let config = TokenServiceConfig::generate()
        .unwrap()
        .with_max_tokens_per_owner(None)
        .unwrap();
    let opts = options(&schema).with_max_staleness(MAX_STALENESS);
    let store_a = store(&url_named(&url, &a_name), opts.clone()).await;
    let a = service(&config, store_a.clone());
    let b = service(&config, store(&url, opts).await);
    let alice = Urn::corp_user("alice").unwrap();
    let mut tokens = Vec::new();
    for n in 0..TOKENS {
        let (token, id) = create(&a, &alice, n).await.unwrap();
        a.validate_access_token(&token).await.unwrap();
        tokens.push((token, id));
    }
    let revoked_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();

    // B revokes every other token, one every 4 ms.
    let revoker = {
        let (b, alice, revoked_at) = (b.clone(), alice.clone(), revoked_at.clone());
        let doomed: Vec<_> = tokens.iter().step_by(2).cloned().collect();
        tokio::spawn(async move {
            for (token, id) in doomed {
                b.revoke_access_token(&alice, &id).await.expect("revoke on B");
                revoked_at.lock().unwrap().insert(token, Instant::now());
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        })
    };
    // A validates everything, over and over.
    let validator = {
        let (a, tokens, revoked_at) = (a.clone(), tokens.clone(), revoked_at.clone());
        tokio::spawn(async move {
            let (mut ok, mut storage_errors) = (0u64, 0u64);
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                for (token, _) in &tokens {
                    let started = Instant::now();
                    match a.validate_access_token(token).await {
                        Ok(_) => {
                            ok += 1;
                            if let Some(&revoked) = revoked_at.lock().unwrap().get(token) {
                                assert!(
                                    started < revoked + MAX_STALENESS,
                                    "a token revoked {:?} earlier validated on A",
                                    started - revoked
                                );
                            }
                        }
                        Err(Error::Revoked) => {}
                        Err(Error::Storage { .. }) => storage_errors += 1,
                        Err(other) => panic!("unexpected validation error: {other}"),
                    }
                }
            }
            (ok, storage_errors)
        })
    };
    let mut kills = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let reconnects = store_a.cache_stats().reconnects;
        assert!(
            kill_connections(&admin, &a_name).await >= 1,
            "A's connections were found"
        );
        kills += 1;
        eventually("A's listener reconnects", RECOVERY_LIMIT, async || {
            store_a.cache_stats().reconnects > reconnects
        })
        .await;
    }
    revoker.await.unwrap();
    let (ok, storage_errors) = validator.await.unwrap();
    println!("    {kills} kills; A validated {ok} times meanwhile, {storage_errors} storage errors");

    // Every revoked token fails on A, every other one still validates.
    for (n, (token, _)) in tokens.iter().enumerate() {
        let result = a.validate_access_token(token).await;
        if n % 2 == 0 {
            assert!(matches!(result, Err(Error::Revoked)), "token {n}: {result:?}");
        } else {
            result.expect("a live token validates after the kills");
        }
    }
    let stats = store_a.cache_stats();
    assert!(
        stats.listening && stats.trusted && stats.reconnects >= kills,
        "{stats:?}"
    );
    let hits = stats.hits;
    a.validate_access_token(&tokens[1].0).await.unwrap();
    assert!(store_a.cache_stats().hits > hits, "A serves from its cache again");
    assert!(
        logged(LOST) && logged(BACK),
        "the loss and the recovery are logged"
    );
    drop((a, b, store_a));
    drop_schema(&admin, &schema).await;
}

/// A replica behind a proxy, and that proxy's upstream address.
async fn replica_behind_proxy(url: &str, schema: &str) -> (Proxy, PostgresTokenStore) {
    let direct = PgConnectOptions::from_str(url).unwrap();
    let upstream: SocketAddr = (direct.get_host(), direct.get_port())
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(OPERATION_TIMEOUT)
        .connect_lazy_with(direct.host("127.0.0.1").port(proxy.port));
    let opts = PostgresStoreOptions::new()
        .with_schema(schema)
        .with_max_staleness(MAX_STALENESS)
        .with_operation_timeout(OPERATION_TIMEOUT);
    let store = PostgresTokenStore::from_pool_with(pool, opts).await.unwrap();
    (proxy, store)
}

fn is_storage(result: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::Storage { .. }))
}

/// The database goes away for replica A: its calls fail with storage
/// errors (never a success for a token revoked meanwhile), nothing is
/// half-written, and when the database is back A recovers by itself.
pub async fn database_outage_fails_cleanly_and_recovers(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("outage");
    let config = TokenServiceConfig::generate().unwrap();
    let (proxy, store_a) = replica_behind_proxy(&url, &schema).await;
    let a = service(&config, store_a.clone());
    let b = service(&config, store(&url, options(&schema)).await);
    let alice = Urn::corp_user("alice").unwrap();
    let (kept, kept_id) = create(&a, &alice, 1).await.unwrap();
    let (doomed, doomed_id) = create(&a, &alice, 2).await.unwrap();
    a.validate_access_token(&doomed).await.unwrap();

    proxy.set(Mode::Refuse);
    eventually("A notices the outage", RECOVERY_LIMIT, async || {
        !store_a.cache_stats().listening
    })
    .await;
    b.revoke_access_token(&alice, &doomed_id).await.unwrap();
    let started = Instant::now();
    for n in 10..13 {
        let result = create(&a, &alice, n).await;
        assert!(is_storage(&result), "create during the outage: {result:?}");
    }
    let message = create(&a, &alice, 13).await.unwrap_err().to_string();
    assert!(
        message.starts_with("token storage failed: PostgreSQL: inserting a token"),
        "{message}"
    );
    assert!(is_storage(&a.revoke_access_token(&alice, &kept_id).await));
    assert!(is_storage(&a.store().list(&ListQuery::all(10)).await));
    let doomed_on_a = a.validate_access_token(&doomed).await;
    assert!(
        is_storage(&doomed_on_a),
        "a token revoked during the outage must not validate: {doomed_on_a:?}"
    );
    assert!(
        started.elapsed() < 8 * (OPERATION_TIMEOUT + Duration::from_millis(500)),
        "calls fail within the operation timeout instead of hanging"
    );
    assert!(logged(LOST));

    proxy.set(Mode::Forward);
    eventually("A recovers", RECOVERY_LIMIT, async || {
        let stats = store_a.cache_stats();
        stats.listening && stats.trusted
    })
    .await;
    assert!(matches!(
        a.validate_access_token(&doomed).await,
        Err(Error::Revoked)
    ));
    a.validate_access_token(&kept)
        .await
        .expect("the kept token validates again");
    let (fresh, _) = create(&a, &alice, 20).await.expect("A writes again");
    b.validate_access_token(&fresh).await.unwrap();
    // Exactly the acknowledged tokens exist: the failed creates left nothing.
    let names: Vec<String> = b
        .store()
        .list(&ListQuery::all(100))
        .await
        .unwrap()
        .tokens
        .into_iter()
        .map(|t| t.info.name)
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["t1", "t20"]);
    drop((a, b, store_a));
    drop_schema(&admin, &schema).await;
}

/// The network goes silent under replica A's listener (no error, no
/// close): A stops answering from its cache within the staleness bound, so
/// a token revoked meanwhile never validates after it; then A recovers.
pub async fn silent_listener_stops_cache_within_bound(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("silent");
    let config = TokenServiceConfig::generate().unwrap();
    let (proxy, store_a) = replica_behind_proxy(&url, &schema).await;
    let a = service(&config, store_a.clone());
    let b = service(&config, store(&url, options(&schema)).await);
    let alice = Urn::corp_user("alice").unwrap();
    let (token, id) = create(&a, &alice, 1).await.unwrap();
    a.validate_access_token(&token).await.unwrap();
    assert!(store_a.cache_stats().trusted);

    proxy.set(Mode::Blackhole);
    let silenced = Instant::now();
    b.revoke_access_token(&alice, &id).await.unwrap();
    tokio::time::sleep(MAX_STALENESS.saturating_sub(silenced.elapsed()) + Duration::from_millis(50)).await;
    assert!(
        !store_a.cache_stats().trusted,
        "the cache is distrusted once the bound has passed"
    );
    let result = a.validate_access_token(&token).await;
    assert!(
        is_storage(&result),
        "the revoked token must not validate after the bound: {result:?}"
    );
    eventually(
        "A's listener gives up on the silent connection",
        RECOVERY_LIMIT,
        async || !store_a.cache_stats().listening,
    )
    .await;

    proxy.set(Mode::Refuse);
    proxy.set(Mode::Forward);
    eventually("A recovers", RECOVERY_LIMIT, async || {
        let stats = store_a.cache_stats();
        stats.listening && stats.trusted
    })
    .await;
    assert!(matches!(
        a.validate_access_token(&token).await,
        Err(Error::Revoked)
    ));
    drop((a, b, store_a));
    drop_schema(&admin, &schema).await;
}

/// Creates that wait on an owner's lock held elsewhere (a replica frozen
/// between its lock and its commit) time out, and their statements stop on
/// the server too: the pool is not drained, so other owners' calls go on.
pub async fn a_stuck_owner_lock_does_not_drain_the_pool(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("stuck");
    let opts = options(&schema)
        .with_max_connections(3)
        .with_operation_timeout(OPERATION_TIMEOUT);
    let replica = store(&url, opts).await;
    let a = service(&TokenServiceConfig::generate().unwrap(), replica.clone());
    let (alice, bob) = (Urn::corp_user("alice").unwrap(), Urn::corp_user("bob").unwrap());
    let (_, bobs) = create(&a, &bob, 0).await.unwrap();
    let mut holder = admin.acquire().await.unwrap();
    let key = format!("{} {alice}", replica.qualified_table());
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(&key)
        .execute(&mut *holder)
        .await
        .unwrap();
    for n in 0..3 {
        let err = create(&a, &alice, n).await.unwrap_err();
        assert!(matches!(err, Error::Storage { .. }), "{err}");
    }
    eventually("the waits stop on the server", RECOVERY_LIMIT, async || {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '%pg_advisory_xact_lock%'",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        waiting == 0
    })
    .await;
    a.revoke_access_token(&bob, &bobs)
        .await
        .expect("another owner's revoke");
    create(&a, &bob, 1).await.expect("another owner's create");
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *holder)
        .await
        .unwrap();
    drop((holder, a, replica));
    drop_schema(&admin, &schema).await;
}

/// The server commits a write but its answer to the `COMMIT` is lost (the
/// connection drops at that moment). The write happened, so it must not be
/// reported failed: a creation's caller would never get a token that exists
/// (and counts against the owner's limit); a rotation's would keep the old
/// token, now revoked, and never get the new one.
pub async fn writes_whose_commit_answer_is_lost_are_not_reported_failed(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("commit_lost");
    let config = TokenServiceConfig::generate().unwrap();
    let (proxy, store_a) = replica_behind_proxy(&url, &schema).await;
    let a = service(&config, store_a.clone());
    let b = service(&config, store(&url, options(&schema)).await);
    let alice = Urn::corp_user("alice").unwrap();

    // Each step must meet a lost answer, or it tests nothing.
    let answers_lost = || {
        logs()
            .iter()
            .filter(|line| line.contains("the answer to a COMMIT was lost"))
            .count()
    };
    let lost_before = answers_lost();

    // A creation within the owner's limit (the default).
    proxy.cut_after_next_commit();
    let (old, old_id) = create(&a, &alice, 1)
        .await
        .expect("the creation committed, so it succeeded");
    assert_eq!(
        answers_lost(),
        lost_before + 1,
        "the proxy cut the creation's answer"
    );
    b.validate_access_token(&old)
        .await
        .expect("the created token validates");

    proxy.cut_after_next_commit();
    let rotated = a
        .rotate_access_token(&alice, &RotateAccessTokenInput::keep_lifetime(&old_id))
        .await;
    let new = rotated.expect("the rotation committed, so it succeeded");
    assert_eq!(
        answers_lost(),
        lost_before + 2,
        "the proxy cut the rotation's answer"
    );
    b.validate_access_token(new.expose_access_token())
        .await
        .expect("the new token validates");
    // B had the old token cached as live: the rotation's revocation reaches
    // it by notification, milliseconds later, not by the time A answered.
    eventually("B sees the old token revoked", RECOVERY_LIMIT, async || {
        matches!(b.validate_access_token(&old).await, Err(Error::Revoked))
    })
    .await;
    drop((a, b, store_a));
    drop_schema(&admin, &schema).await;
}

/// A server that cannot be reached is named as such when the store opens,
/// not as the pool's "timed out while waiting for an open connection".
pub async fn an_unreachable_server_is_named_at_connect(_url: String) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let options = PostgresStoreOptions::new().with_operation_timeout(OPERATION_TIMEOUT);
    let err = PostgresTokenStore::connect_with(&url, options).await.unwrap_err();
    let chain = error_chain(&err);
    assert!(matches!(err, Error::Storage { .. }), "{chain}");
    assert!(chain.contains("Connection refused"), "{chain}");
}
