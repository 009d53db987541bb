//! Signing-key rotation through the service: tokens signed by a previous key
//! validate while it is listed and fail once it is removed; new tokens are
//! signed by the current key.

mod common;

use common::*;
use datahub_access_tokens::{
    AccessTokenDuration, DataHubTokenService, Error, TokenCodec, TokenService, TokenServiceConfig,
};

const NEW_KEY: &str = "test-only-next-signing-key-0a9b8c7d6e5f4a3b2c";

/// A service over `f`'s store and clock with the current key `key` and these
/// previous keys.
fn service_over(f: &Fixture, key: &str, previous: &[&str]) -> DataHubTokenService {
    let config = TokenServiceConfig::new(key, SALT)
        .unwrap()
        .with_duration_policy(config().duration_policy().clone())
        .with_previous_signing_keys(previous.iter().copied())
        .unwrap();
    DataHubTokenService::new(config, f.store.clone(), policies()).with_clock(f.clock.clone())
}

#[tokio::test]
async fn rolling_the_key_keeps_old_tokens_until_the_old_key_is_removed() {
    let f = Fixture::new();
    let old_token = f.create_own(ALICE, "before the roll").await;
    let old_plain = old_token.expose_access_token();

    // Roll: the new key signs, the old one still verifies.
    let rolled = service_over(&f, NEW_KEY, &[SIGNING_KEY]);
    let validated = rolled.validate_access_token(old_plain).await.unwrap();
    assert_eq!(
        validated.token_id,
        Some(id_of(&old_token)),
        "stored record still found"
    );
    let new_token = rolled
        .create_access_token(
            &user(BOB),
            datahub_access_tokens::CreateAccessTokenInput::personal(
                BOB,
                "after",
                AccessTokenDuration::OneDay,
            ),
        )
        .await
        .unwrap();
    let new_plain = new_token.expose_access_token();
    rolled.validate_access_token(new_plain).await.unwrap();
    // Signed by the new key: a codec knowing only the old key refuses it.
    let err = f.service.validate_access_token(new_plain).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidToken(m) if m == "invalid signature"),
        "{err}"
    );
    let only_new = TokenCodec::new(&TokenServiceConfig::new(NEW_KEY, SALT).unwrap());
    only_new.verify(new_plain).unwrap();

    // Remove the old key: exactly its tokens stop validating.
    let finished = service_over(&f, NEW_KEY, &[]);
    let err = finished.validate_access_token(old_plain).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Failed to validate DataHub token: invalid signature"
    );
    finished.validate_access_token(new_plain).await.unwrap();
    // The old record is untouched (a forged-looking token deletes nothing) and
    // can still be listed and revoked by id.
    assert_eq!(f.snapshot().await.len(), 2);
    finished
        .revoke_access_token(&user(ALICE), &id_of(&old_token))
        .await
        .unwrap();
}

#[tokio::test]
async fn debug_of_service_and_config_never_prints_a_key() {
    let f = Fixture::new();
    let rolled = service_over(&f, NEW_KEY, &[SIGNING_KEY]);
    let config = TokenServiceConfig::new(NEW_KEY, SALT)
        .unwrap()
        .with_previous_signing_keys([SIGNING_KEY])
        .unwrap();
    for printed in [
        format!("{rolled:?}"),
        format!("{config:?}"),
        format!("{:?}", rolled.codec()),
    ] {
        for secret in [NEW_KEY, SIGNING_KEY, SALT] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
