//! The per-owner limit through the service: the owner's next create past the
//! limit fails naming it, expired and revoked tokens make room, other owners
//! are unaffected, and concurrent creates never exceed it.

mod common;

use common::*;
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, Error, TokenService, DEFAULT_MAX_TOKENS_PER_OWNER,
};

fn limited(max: usize) -> Fixture {
    Fixture::with_config(config().with_max_tokens_per_owner(Some(max)).unwrap())
}

async fn try_create(f: &Fixture, who: &str, duration: AccessTokenDuration) -> Result<String, Error> {
    f.service
        .create_access_token(&user(who), CreateAccessTokenInput::personal(who, "t", duration))
        .await
        .map(|t| id_of(&t))
}

#[tokio::test]
async fn creates_past_the_limit_fail_naming_it() {
    let f = limited(2);
    let short = try_create(&f, ALICE, AccessTokenDuration::OneHour).await.unwrap();
    let long = try_create(&f, ALICE, AccessTokenDuration::OneMonth)
        .await
        .unwrap();
    let err = try_create(&f, ALICE, AccessTokenDuration::OneDay)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded { owner, limit: 2 } if owner == ALICE),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("limit 2") && message.contains(ALICE),
        "{message}"
    );
    assert_eq!(f.snapshot().await.len(), 2, "the refused create stored nothing");

    // Bob has his own count.
    try_create(&f, BOB, AccessTokenDuration::OneDay).await.unwrap();
    try_create(&f, BOB, AccessTokenDuration::OneDay).await.unwrap();

    // An expired token, even one not yet purged, makes room.
    f.clock.advance(HOUR_MS + 1000);
    assert!(f.snapshot().await.iter().any(|t| t.id == short), "not purged yet");
    try_create(&f, ALICE, AccessTokenDuration::OneDay).await.unwrap();
    assert!(try_create(&f, ALICE, AccessTokenDuration::OneDay).await.is_err());
    // So does revoking one.
    f.service.revoke_access_token(&user(ALICE), &long).await.unwrap();
    try_create(&f, ALICE, AccessTokenDuration::OneDay).await.unwrap();
}

#[tokio::test]
async fn default_limit_and_no_limit() {
    assert_eq!(
        config().max_tokens_per_owner(),
        Some(DEFAULT_MAX_TOKENS_PER_OWNER)
    );
    let f = Fixture::with_config(config().with_max_tokens_per_owner(None).unwrap());
    for _ in 0..DEFAULT_MAX_TOKENS_PER_OWNER + 5 {
        try_create(&f, ALICE, AccessTokenDuration::OneDay).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_the_limit() {
    let f = limited(10);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let f = f.clone();
        tasks.spawn(async move { try_create(&f, ALICE, AccessTokenDuration::OneDay).await });
    }
    let mut created = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => created += 1,
            Err(Error::LimitExceeded { limit: 10, .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(created, 10);
    assert_eq!(f.snapshot().await.len(), 10);
}
