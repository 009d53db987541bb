//! The store on its own: the conformance suite, migrations, indexes, cache.

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datahub_access_tokens::store::conformance::{self, sample_token};
use datahub_access_tokens::store::postgres::{PgPool, PostgresTokenStore, SCHEMA_VERSION};
use datahub_access_tokens::store::{Condition, Filter, ListQuery, OwnerLimit, TokenField, TokenUse};
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, Error, TokenService, TokenServiceConfig, TokenStore, Urn,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::common::{
    admin, drop_schema, error_chain, eventually, fresh_schema, logs, options, service, store,
};

/// The suite every store must pass, unchanged, each check in a new schema;
/// then again with the cache disabled.
pub async fn conformance_suite(url: String) {
    let admin = admin(&url).await;
    for capacity in [100_000, 0] {
        let schemas = Arc::new(Mutex::new(Vec::new()));
        conformance::run_all(|| {
            let schema = fresh_schema("conf");
            schemas.lock().unwrap().push(schema.clone());
            let url = url.clone();
            async move { store(&url, options(&schema).with_cache_capacity(capacity)).await }
        })
        .await;
        let created = std::mem::take(&mut *schemas.lock().unwrap());
        for schema in created {
            drop_schema(&admin, &schema).await;
        }
    }
}

/// Stores of two tables opened together in a schema that does not exist yet
/// both start: one creates the schema, the other waits for it.
pub async fn two_tables_first_opened_together_in_a_new_schema(url: String) {
    let admin = admin(&url).await;
    for _ in 0..5 {
        let schema = fresh_schema("together");
        let (x, y) = tokio::join!(
            PostgresTokenStore::connect_with(&url, options(&schema).with_table("tokens_x")),
            PostgresTokenStore::connect_with(&url, options(&schema).with_table("tokens_y")),
        );
        let (x, y) = (x.expect("tokens_x opens"), y.expect("tokens_y opens"));
        drop((x, y));
        drop_schema(&admin, &schema).await;
    }
}

pub async fn migrations_are_idempotent_and_versioned(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("migr");
    let versions_table = format!("\"{schema}\".\"datahub_access_tokens_migrations\"");
    let versions = || async {
        sqlx::query_scalar::<_, i32>(&format!("SELECT version FROM {versions_table} ORDER BY version"))
            .fetch_all(&admin)
            .await
            .unwrap()
    };

    // Replicas starting together: one creates, the others find it done.
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let (url, options) = (url.clone(), options(&schema));
            tokio::spawn(async move { PostgresTokenStore::connect_with(&url, options).await })
        })
        .collect();
    let mut stores = Vec::new();
    for handle in opening {
        stores.push(handle.await.unwrap().expect("concurrent opens all succeed"));
    }
    assert_eq!(versions().await, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    stores[0].insert(sample_token(1, "alice", 1, None)).await.unwrap();
    drop(stores);

    let again = store(&url, options(&schema)).await;
    // Nor does it log the server's "already exists, skipping" notices.
    assert!(
        !logs().iter().any(|line| line.contains("already exists")),
        "{:#?}",
        logs()
    );
    assert_eq!(
        versions().await,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "reopening applies nothing"
    );
    assert!(
        again.contains(&conformance::token_id(1)).await.unwrap(),
        "data survives reopening"
    );
    assert_eq!(
        again.qualified_table(),
        format!("\"{schema}\".\"datahub_access_tokens\"")
    );
    drop(again);

    // A table written by a newer library is refused, not mangled.
    sqlx::query(&format!(
        "INSERT INTO {versions_table} (version, description) VALUES (99, 'future')"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let err = PostgresTokenStore::connect_with(&url, options(&schema))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(
        error_chain(&err).contains("version 99, newer than"),
        "{}",
        error_chain(&err)
    );

    // Another table in the same schema is independent.
    let other = store(&url, options(&schema).with_table("tokens_b")).await;
    assert_eq!(other.list(&ListQuery::all(10)).await.unwrap().total, 0);
    assert_ne!(other.channel(), format!("{schema}.datahub_access_tokens"));

    // Bad names and URLs are refused before touching the database.
    for (opts, needle) in [
        (
            options(&schema).with_table("Tokens"),
            "PostgreSQL table name \"Tokens\"",
        ),
        (options("bad-schema"), "PostgreSQL schema name \"bad-schema\""),
        (
            options(&schema).with_max_staleness(Duration::ZERO),
            "max staleness",
        ),
        (
            options(&schema).with_max_staleness(Duration::MAX),
            "max staleness 18446744073709551615.999999999s is too long",
        ),
        (
            options(&schema).with_operation_timeout(Duration::from_secs(86_401)),
            "operation timeout 86401s is too long: at most a day",
        ),
    ] {
        let err = PostgresTokenStore::connect_with(&url, opts).await.unwrap_err();
        assert!(
            matches!(err, Error::Config(_)) && err.to_string().contains(needle),
            "{err}"
        );
    }
    for bad_url in ["mysql://nope", "postgres://host:notaport/db"] {
        let err = PostgresTokenStore::connect(bad_url).await.unwrap_err();
        assert!(err.to_string().contains("invalid PostgreSQL URL"), "{err}");
    }
    drop(other);
    drop_schema(&admin, &schema).await;
}

/// With realistic data, each listing the service makes reads an index that
/// fits it instead of scanning the table.
pub async fn listings_run_on_indexes(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("idx");
    let store = store(&url, options(&schema)).await;
    // 50,000 tokens of 500 owners, inserted in one statement.
    sqlx::query(&format!(
        "INSERT INTO {} (id, name, actor_urn, owner_urn, created_at, expires_at, description)
         SELECT 'id' || n, 'token ' || n, 'urn:li:corpuser:actor' || (n % 700),
                'urn:li:corpuser:user' || (n % 500), n, CASE WHEN n % 10 = 0 THEN NULL ELSE n + 1000000 END, NULL
         FROM generate_series(1, 50000) AS n",
        store.qualified_table()
    ))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::raw_sql(&format!("ANALYZE {}", store.qualified_table()))
        .execute(&admin)
        .await
        .unwrap();
    let query = |field, condition, value: &str| ListQuery {
        filters: vec![Filter::new(field, condition, vec![value.to_owned()], false).unwrap()],
        start: 0,
        count: 20,
    };
    for (query, index) in [
        (
            query(TokenField::OwnerUrn, Condition::Equal, "urn:li:corpuser:user7"),
            "owner_idx",
        ),
        (
            query(TokenField::ActorUrn, Condition::Equal, "urn:li:corpuser:actor7"),
            "actor_idx",
        ),
        (
            query(TokenField::ExpiresAt, Condition::LessThan, "1000100"),
            "listing_idx",
        ),
        (
            query(TokenField::CreatedAt, Condition::GreaterThan, "49900"),
            "created_idx",
        ),
        (ListQuery::all(20), "listing_idx"),
    ] {
        let plan = store.explain_list(&query).await.unwrap();
        assert!(plan.contains(index), "{query:?} should use {index}:\n{plan}");
        let page = store.list(&query).await.unwrap();
        assert!(page.tokens.len() <= 20 && page.total > 0, "{query:?}");
    }
    let owner7 = query(TokenField::OwnerUrn, Condition::Equal, "urn:li:corpuser:user7");
    assert_eq!(store.list(&owner7).await.unwrap().total, 100);
    drop(store);
    drop_schema(&admin, &schema).await;
}

/// Validation on the hot path asks the cache, not the database; a replica
/// learns of another's revocation by notification.
pub async fn validation_is_served_from_cache(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("cache");
    let config = TokenServiceConfig::generate().unwrap();
    // Counts of cache hits are asserted below: a staleness bound no stall
    // of a busy machine reaches, so the cache stays trusted throughout.
    let patient = || options(&schema).with_max_staleness(Duration::from_secs(30));
    let (store_a, store_b) = (store(&url, patient()).await, store(&url, patient()).await);
    let (a, b) = (
        service(&config, store_a.clone()),
        service(&config, store_b.clone()),
    );
    let alice = Urn::corp_user("alice").unwrap();
    let input = CreateAccessTokenInput::personal(alice.as_str(), "t", AccessTokenDuration::OneDay);
    let created = a.create_access_token(&alice, input).await.unwrap();
    let token = created.expose_access_token();
    let id = created.metadata.as_ref().unwrap().id.clone();

    assert!(store_a.cache_stats().trusted && store_a.cache_stats().listening);
    let before = store_a.cache_stats();
    for _ in 0..100 {
        a.validate_access_token(token).await.unwrap();
    }
    let after = store_a.cache_stats();
    assert_eq!(
        after.hits - before.hits,
        100,
        "the creating replica cached the new id"
    );
    assert_eq!(after.misses, before.misses, "no database lookups");

    b.validate_access_token(token).await.unwrap();
    b.validate_access_token(token).await.unwrap();
    let stats = store_b.cache_stats();
    assert_eq!(
        (stats.misses, stats.hits),
        (1, 1),
        "B asked the database once, then its cache"
    );

    a.revoke_access_token(&alice, &id).await.unwrap();
    assert!(
        matches!(a.validate_access_token(token).await, Err(Error::Revoked)),
        "revoked at once where revoked"
    );
    eventually("B sees the revocation", Duration::from_secs(5), async || {
        matches!(b.validate_access_token(token).await, Err(Error::Revoked))
    })
    .await;
    assert_eq!(store_b.cache_stats().entries, 0);
    drop((a, b, store_a, store_b));
    drop_schema(&admin, &schema).await;
}

/// Deleting, updating or truncating rows by hand, and a purge by another
/// replica, reach every replica's cache: the trigger notifies whoever
/// removes rows.
pub async fn removals_by_hand_reach_every_replica(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("hand");
    let replica = store(&url, options(&schema)).await;
    for n in 0..1200 {
        replica
            .insert(sample_token(n, "bob", n as i64, Some(10_000)))
            .await
            .unwrap();
    }
    for n in 0..1200 {
        assert!(replica.contains(&conformance::token_id(n)).await.unwrap());
    }
    let table = replica.qualified_table().to_owned();
    let removals = [
        format!("DELETE FROM {table} WHERE id = '{}'", conformance::token_id(0)),
        format!(
            "UPDATE {table} SET id = 'renamed' WHERE id = '{}'",
            conformance::token_id(1)
        ),
        // More than a notification can name: listeners forget everything.
        format!("DELETE FROM {table} WHERE created_at BETWEEN 2 AND 1100"),
        format!("TRUNCATE {table}"),
    ];
    let gone = [vec![0], vec![1], vec![2, 750, 1100], vec![1101, 1199]];
    // A purge by another replica, through the store API.
    let other = store(&url, options(&schema)).await;
    let expired = sample_token(5000, "bob", 1, Some(5));
    other.insert(expired.clone()).await.unwrap();
    assert!(replica.contains(&expired.id).await.unwrap());
    assert_eq!(other.delete_expired(6).await.unwrap(), vec![expired.id.clone()]);
    eventually("a purge on another replica", Duration::from_secs(5), async || {
        !replica.contains(&expired.id).await.unwrap()
    })
    .await;
    drop(other);
    for (sql, ids) in removals.iter().zip(gone) {
        sqlx::raw_sql(sql).execute(&admin).await.unwrap();
        for n in ids {
            let id = conformance::token_id(n);
            eventually(sql, Duration::from_secs(5), async || {
                !replica.contains(&id).await.unwrap()
            })
            .await;
        }
    }
    drop(replica);
    drop_schema(&admin, &schema).await;
}

/// After `ALTER SCHEMA .. RENAME`, stores opened under the new name still
/// hear each other's removals: the trigger functions, which named the old
/// channel, are pointed at the new one on open.
pub async fn a_renamed_schema_still_carries_removals(url: String) {
    let admin = admin(&url).await;
    let (old, new) = (fresh_schema("renamed_from"), fresh_schema("renamed_to"));
    drop(store(&url, options(&old)).await);
    sqlx::raw_sql(&format!("ALTER SCHEMA \"{old}\" RENAME TO \"{new}\""))
        .execute(&admin)
        .await
        .unwrap();
    let (listener, remover) = (store(&url, options(&new)).await, store(&url, options(&new)).await);
    let token = sample_token(1, "alice", 1, None);
    listener.insert(token.clone()).await.unwrap();
    assert!(listener.contains(&token.id).await.unwrap(), "cached");
    assert!(remover.delete(&token.id).await.unwrap());
    eventually(
        "a removal under the new schema name",
        Duration::from_secs(5),
        async || !listener.contains(&token.id).await.unwrap(),
    )
    .await;
    drop((listener, remover));
    drop_schema(&admin, &new).await;
}

/// PostgreSQL text cannot hold NUL: storing one is a clear bad request,
/// and looking one up simply finds nothing.
pub async fn nul_characters_are_handled(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("nul");
    let store = store(&url, options(&schema)).await;
    let mut token = sample_token(1, "alice", 1, None);
    token.info.description = Some("a\0b".into());
    let err = store.insert(token).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("description contains a NUL character")),
        "{err:?}"
    );
    assert_eq!(store.get("a\0b").await.unwrap(), None);
    assert!(!store.contains("a\0b").await.unwrap());
    assert!(!store.delete("a\0b").await.unwrap());
    store.insert(sample_token(2, "alice", 1, None)).await.unwrap();
    let query = |condition, value: &str| ListQuery {
        filters: vec![Filter::new(TokenField::Name, condition, vec![value.into()], false).unwrap()],
        start: 0,
        count: 10,
    };
    assert_eq!(
        store.list(&query(Condition::Contain, "\0")).await.unwrap().total,
        0
    );
    assert_eq!(
        store
            .list(&query(Condition::Equal, "token 2\0"))
            .await
            .unwrap()
            .total,
        0
    );
    let negated = ListQuery {
        filters: vec![Filter::new(TokenField::Name, Condition::Contain, vec!["\0".into()], true).unwrap()],
        start: 0,
        count: 10,
    };
    assert_eq!(store.list(&negated).await.unwrap().total, 1);
    drop(store);
    drop_schema(&admin, &schema).await;
}

/// A table made by the previous release (schema version 2: no
/// `last_used_at`, and an update trigger that reports every updated id as
/// removed) is brought to the current version in place, keeps its tokens,
/// and from then on a last-use update leaves other replicas' caches alone.
pub async fn a_version_2_table_is_upgraded_in_place(url: String) {
    let admin = admin(&url).await;
    let schema = fresh_schema("upgrade");
    let first = store(&url, options(&schema)).await;
    first.insert(sample_token(1, "alice", 1, None)).await.unwrap();
    first.insert(sample_token(2, "alice", 2, None)).await.unwrap();
    drop(first);
    // Undo migration 3 exactly, leaving what migrations 1 and 2 made.
    let (t, s) = (format!("\"{schema}\".\"datahub_access_tokens\""), &schema);
    sqlx::raw_sql(&format!(
        r#"
        DROP TRIGGER "datahub_access_tokens_notify_update" ON {t};
        DROP FUNCTION "{s}"."datahub_access_tokens_notify_id_changed"();
        DROP INDEX "{s}"."datahub_access_tokens_last_used_idx";
        ALTER TABLE {t} DROP COLUMN last_used_at;
        CREATE TRIGGER "datahub_access_tokens_notify_update" AFTER UPDATE ON {t}
            REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT
            EXECUTE FUNCTION "{s}"."datahub_access_tokens_notify_removed"();
        DELETE FROM "{s}"."datahub_access_tokens_migrations" WHERE version = 3;
        "#
    ))
    .execute(&admin)
    .await
    .expect("a version 2 table");

    let writer = store(&url, options(&schema)).await;
    let versions: Vec<i32> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{s}\".\"datahub_access_tokens_migrations\" ORDER BY version"
    ))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let page = writer.list(&ListQuery::all(10)).await.unwrap();
    assert_eq!(page.total, 2, "the tokens survive the upgrade");
    assert!(page.tokens.iter().all(|t| t.info.last_used_at.is_none()));

    // Its misses are counted: trusted throughout, whatever the machine's stalls.
    let reader = store(&url, options(&schema).with_max_staleness(Duration::from_secs(30))).await;
    let id = conformance::token_id(1);
    assert!(reader.contains(&id).await.unwrap());
    let misses = reader.cache_stats().misses;
    writer
        .record_last_used(&[TokenUse {
            id: id.clone(),
            at_ms: 7,
        }])
        .await
        .unwrap();
    assert_eq!(writer.get(&id).await.unwrap().unwrap().info.last_used_at, Some(7));
    // A removal notice would arrive in milliseconds (see the revocation
    // delay test); give it far longer, then check the cache still answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reader.contains(&id).await.unwrap());
    assert_eq!(
        reader.cache_stats().misses,
        misses,
        "a last-use update must not evict the id from other replicas' caches"
    );
    drop((writer, reader));
    drop_schema(&admin, &schema).await;
}

/// A pool whose connections start every transaction at `isolation`, as a
/// `default_transaction_isolation` set on the server, database or role
/// would; checked, so a test using it cannot pass for the wrong reason.
async fn pool_defaulting_to(url: &str, isolation: &str) -> PgPool {
    let connect = PgConnectOptions::from_str(url)
        .unwrap()
        // The startup packet splits options at spaces unless escaped.
        .options([("default_transaction_isolation", isolation.replace(' ', "\\ "))]);
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect_lazy_with(connect);
    let default: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(default, isolation, "the test pool's default isolation");
    pool
}

/// Stores whose pool defaults to repeatable read (or serializable) keep
/// every guarantee: the store must not depend on the pool's default.
/// Under repeatable read a transaction's snapshot is taken by its first
/// statement, so one that waits for a lock and then reads would miss
/// what the lock's previous holder committed.
pub async fn stricter_default_isolation_changes_nothing(url: String) {
    let admin = admin(&url).await;
    for isolation in ["repeatable read", "serializable"] {
        let schemas = Arc::new(Mutex::new(Vec::new()));
        conformance::run_all(|| {
            let schema = fresh_schema("iso");
            schemas.lock().unwrap().push(schema.clone());
            let url = url.clone();
            async move {
                let pool = pool_defaulting_to(&url, isolation).await;
                PostgresTokenStore::from_pool_with(pool, options(&schema))
                    .await
                    .expect("open the PostgreSQL store")
            }
        })
        .await;
        let created = std::mem::take(&mut *schemas.lock().unwrap());
        for schema in created {
            drop_schema(&admin, &schema).await;
        }
    }
}

/// Holds `n` connections of `pool` at once, so the racing calls that
/// follow find them open instead of connecting one after another.
async fn warm(pool: &PgPool, n: usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.unwrap());
    }
}

/// Eight limited inserts for one owner racing, ten times over, on a store
/// whose pool defaults to repeatable read: exactly one wins each round.
/// (Before the fix every round let all eight in: the transaction's first
/// statement waited for the owner's lock with a snapshot already taken.)
pub async fn owner_limit_holds_under_repeatable_read(url: String) {
    const RACERS: u64 = 8;
    let admin = admin(&url).await;
    let schema = fresh_schema("rrlimit");
    let pool = pool_defaulting_to(&url, "repeatable read").await;
    let store = PostgresTokenStore::from_pool_with(pool.clone(), options(&schema))
        .await
        .unwrap();
    warm(&pool, RACERS as usize).await;
    let limit = Some(OwnerLimit {
        max_live: 1,
        now_ms: 0,
    });
    for round in 0..10u64 {
        let owner = format!("owner{round}");
        let start = Arc::new(tokio::sync::Barrier::new(RACERS as usize));
        let mut racers = tokio::task::JoinSet::new();
        for n in 0..RACERS {
            let (store, owner, start) = (store.clone(), owner.clone(), start.clone());
            racers.spawn(async move {
                start.wait().await;
                let token = sample_token(round * RACERS + n, &owner, 0, None);
                match store.insert_within_limit(token, limit).await {
                    Ok(()) => true,
                    Err(Error::LimitExceeded { .. }) => false,
                    Err(e) => panic!("a limited insert failed with {}", error_chain(&e)),
                }
            });
        }
        let won = racers.join_all().await.into_iter().filter(|&won| won).count();
        assert_eq!(won, 1, "round {round}: racing inserts past a limit of 1");
        let query = ListQuery {
            filters: vec![Filter::new(
                TokenField::OwnerUrn,
                Condition::Equal,
                vec![format!("urn:li:corpuser:{owner}")],
                false,
            )
            .unwrap()],
            start: 0,
            count: 100,
        };
        assert_eq!(store.list(&query).await.unwrap().total, 1, "round {round}");
    }
    drop(store);
    drop_schema(&admin, &schema).await;
}

/// On pools defaulting to repeatable read, writers that wait for one
/// another (replicas migrating one table, revoking or purging the same
/// tokens, recording uses of the same token) still behave as if run one
/// after another, instead of failing with serialization errors.
pub async fn racing_writers_under_repeatable_read(url: String) {
    const RACERS: usize = 8;
    let admin = admin(&url).await;
    let schema = fresh_schema("rrrace");
    let pool = pool_defaulting_to(&url, "repeatable read").await;
    warm(&pool, RACERS).await;
    let start = Arc::new(tokio::sync::Barrier::new(4));
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let (pool, schema, start) = (pool.clone(), schema.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                PostgresTokenStore::from_pool_with(pool, options(&schema)).await
            })
        })
        .collect();
    let mut stores = Vec::new();
    for handle in opening {
        match handle.await.unwrap() {
            Ok(store) => stores.push(store),
            Err(e) => panic!("replicas opening one new table: {}", error_chain(&e)),
        }
    }
    let store = stores.pop().unwrap();
    drop(stores);

    async fn race<T, F>(store: &PostgresTokenStore, call: fn(PostgresTokenStore) -> F) -> Vec<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..RACERS {
            let (store, start) = (store.clone(), start.clone());
            racers.spawn(async move {
                start.wait().await;
                call(store).await
            });
        }
        let results = racers.join_all().await;
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|e| panic!("a racing call failed: {}", error_chain(&e))))
            .collect()
    }

    for n in 0..3 {
        store.insert(sample_token(n, "alice", 0, Some(10))).await.unwrap();
    }
    let deleted = race(&store, |store| async move {
        store.delete(&conformance::token_id(0)).await
    })
    .await;
    assert_eq!(
        deleted.iter().filter(|&&d| d).count(),
        1,
        "one delete finds the token"
    );

    let purged = race(&store, |store| async move { store.delete_expired(100).await }).await;
    let mut purged: Vec<String> = purged.into_iter().flatten().collect();
    purged.sort();
    let mut want = vec![conformance::token_id(1), conformance::token_id(2)];
    want.sort();
    assert_eq!(purged, want, "each expired token is purged exactly once");

    let token = sample_token(3, "alice", 0, None);
    store.insert(token.clone()).await.unwrap();
    race(&store, |store| async move {
        let (id, at_ms) = (conformance::token_id(3), 1_000);
        store.record_last_used(&[TokenUse { id, at_ms }]).await
    })
    .await;
    let stored = store.get(&token.id).await.unwrap().unwrap();
    assert_eq!(stored.info.last_used_at, Some(1_000));
    drop(store);
    drop_schema(&admin, &schema).await;
}
