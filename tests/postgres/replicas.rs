//! Two replicas (each its own pool and listener) sharing one table.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use datahub_access_tokens::store::ListQuery;
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, Error, ListAccessTokenInput,
    TokenService, TokenServiceConfig, TokenStore, Urn,
};

use crate::common::{admin, drop_schema, fresh_schema, options, percentile, service, store, url_named};

/// How long a revocation may take to reach the other replica before the
/// test calls it lost. A correctness bound, far above the measured delay.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

async fn create(service: &DataHubTokenService, user: &Urn, name: &str) -> (String, String) {
    let input = CreateAccessTokenInput::personal(user.as_str(), name, AccessTokenDuration::OneDay);
    let created = service.create_access_token(user, input).await.expect("create");
    let id = created.metadata.as_ref().expect("stored token").id.clone();
    (created.expose_access_token().to_owned(), id)
}

/// Revokes 1000 tokens on replica A, each already cached as valid on B, and
/// measures from the revoke's return to B's first failing validation.
pub async fn revocation_delay_between_replicas(url: String) {
    const REVOCATIONS: usize = 1000;
    let admin = admin(&url).await;
    let schema = fresh_schema("delay");
    let config = TokenServiceConfig::generate().unwrap();
    let store_a = store(&url_named(&url, "dhat-delay-a"), options(&schema)).await;
    let store_b = store(&url_named(&url, "dhat-delay-b"), options(&schema)).await;
    let (a, b) = (service(&config, store_a), service(&config, store_b.clone()));
    let alice = Urn::corp_user("alice").unwrap();
    let mut delays = Vec::with_capacity(REVOCATIONS);
    let mut polls = 0u64;
    for n in 0..REVOCATIONS {
        let (token, id) = create(&a, &alice, &format!("delay {n}")).await;
        b.validate_access_token(&token)
            .await
            .expect("valid on B (asks the database)");
        b.validate_access_token(&token)
            .await
            .expect("valid on B (from B's cache)");
        a.revoke_access_token(&alice, &id).await.expect("revoke on A");
        let revoked = Instant::now();
        loop {
            polls += 1;
            match b.validate_access_token(&token).await {
                Err(Error::Revoked) => break,
                Ok(_) => {}
                Err(other) => panic!("validation on B failed oddly: {other}"),
            }
            assert!(
                revoked.elapsed() < PROPAGATION_LIMIT,
                "revocation {n} did not reach B within {PROPAGATION_LIMIT:?}"
            );
            tokio::task::yield_now().await;
        }
        delays.push(revoked.elapsed());
    }
    let stats = store_b.cache_stats();
    assert!(
        stats.hits >= REVOCATIONS as u64,
        "B validated from its cache: {stats:?}"
    );
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "    revocation delay A -> B over {REVOCATIONS} revocations: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         ({polls} validations on B while waiting; target p99 < 100 ms)",
        ms(percentile(&delays, 50.0)),
        ms(percentile(&delays, 99.0)),
        ms(*delays.last().unwrap()),
    );
    drop((a, b, store_b));
    drop_schema(&admin, &schema).await;
}

/// Two replicas x 8 tasks for 20 s: each task creates, lists, validates
/// (on both replicas) and revokes its own user's tokens, checking every
/// listing against what it knows was acknowledged; at the end the table
/// holds exactly the acknowledged, unrevoked tokens, once each.
pub async fn two_replicas_eight_tasks_each(url: String) {
    const TASKS: usize = 8;
    const RUN: Duration = Duration::from_secs(20);
    let admin = admin(&url).await;
    let schema = fresh_schema("conc");
    let config = TokenServiceConfig::generate().unwrap();
    let replicas = [
        service(
            &config,
            store(&url_named(&url, "dhat-conc-a"), options(&schema)).await,
        ),
        service(
            &config,
            store(&url_named(&url, "dhat-conc-b"), options(&schema)).await,
        ),
    ];
    let deadline = Instant::now() + RUN;
    let mut tasks = tokio::task::JoinSet::new();
    for replica in 0..2 {
        for task in 0..TASKS {
            let here = replicas[replica].clone();
            let there = replicas[1 - replica].clone();
            tasks.spawn(async move {
                let user = Urn::corp_user(&format!("worker{replica}x{task}")).unwrap();
                let mut live: Vec<(String, String)> = Vec::new();
                let mut revoked: Vec<String> = Vec::new();
                let mut step = 0u64;
                while Instant::now() < deadline {
                    step += 1;
                    let (token, id) = create(&here, &user, &format!("step {step}")).await;
                    live.push((token, id));
                    // Listing (sometimes in pages of 7) = exactly the acknowledged live set.
                    let want: BTreeSet<&String> = live.iter().map(|(_, id)| id).collect();
                    let lister = if step.is_multiple_of(2) { &here } else { &there };
                    let mut seen = Vec::new();
                    let page_size = if step.is_multiple_of(3) { 7 } else { 100 };
                    loop {
                        let input = ListAccessTokenInput {
                            start: Some(seen.len() as i64),
                            ..ListAccessTokenInput::owned_by(&user, page_size)
                        };
                        let page = lister.list_access_tokens(&user, &input).await.expect("list");
                        assert_eq!(page.total, want.len(), "{user}: total after step {step}");
                        if page.tokens.is_empty() {
                            break;
                        }
                        seen.extend(page.tokens.into_iter().map(|t| t.id));
                    }
                    let seen_set: BTreeSet<&String> = seen.iter().collect();
                    assert_eq!(seen.len(), seen_set.len(), "{user}: a listing repeated a token");
                    assert_eq!(seen_set, want, "{user}: listing after step {step}");
                    // Validate a live token on the other replica.
                    let (token, _) = &live[step as usize % live.len()];
                    there
                        .validate_access_token(token)
                        .await
                        .expect("a live token validates on both");
                    // Keep about 20 live: revoke the oldest on one replica.
                    if live.len() > 20 || step.is_multiple_of(4) {
                        let (token, id) = live.remove(0);
                        here.revoke_access_token(&user, &id).await.expect("revoke");
                        assert!(matches!(
                            here.validate_access_token(&token).await,
                            Err(Error::Revoked)
                        ));
                        let started = Instant::now();
                        while there.validate_access_token(&token).await.is_ok() {
                            assert!(
                                started.elapsed() < PROPAGATION_LIMIT,
                                "revocation lost on the other replica"
                            );
                            tokio::task::yield_now().await;
                        }
                        revoked.push(token);
                    }
                }
                // No revoked token validates anywhere.
                for token in &revoked {
                    for replica in [&here, &there] {
                        assert!(matches!(
                            replica.validate_access_token(token).await,
                            Err(Error::Revoked)
                        ));
                    }
                }
                (step, live.into_iter().map(|(_, id)| id).collect::<Vec<_>>())
            });
        }
    }
    let mut expected = BTreeSet::new();
    let mut operations = 0;
    while let Some(result) = tasks.join_next().await {
        let (steps, live) = result.expect("worker task");
        operations += steps;
        expected.extend(live);
    }
    let store = replicas[0].store();
    let mut listed = Vec::new();
    loop {
        let page = store
            .list(&ListQuery {
                filters: vec![],
                start: listed.len(),
                count: 1000,
            })
            .await
            .unwrap();
        if page.tokens.is_empty() {
            break;
        }
        listed.extend(page.tokens.into_iter().map(|t| t.id));
    }
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), listed_set.len(), "no duplicated records");
    assert_eq!(
        listed_set, expected,
        "exactly the acknowledged, unrevoked tokens: none lost"
    );
    println!(
        "    {operations} create/list/validate rounds by {} tasks on 2 replicas in {RUN:?}; {} tokens remain",
        2 * TASKS,
        expected.len()
    );
    drop(replicas);
    drop_schema(&admin, &schema).await;
}
