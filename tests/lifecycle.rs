//! A token's life through the service, on a manual clock: creation,
//! validation, revocation, expiry, purging, session tokens, metadata, and
//! DataHub's messages along the way. Also: secrets never reach `Debug`.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::*;
use datahub_access_tokens::{
    access_token_urn, AccessTokenDuration, AccessTokenType, EntityType, Error, ListAccessTokenInput,
    TokenCodec, TokenService, TokenServiceConfig, TokenStore, VERSION_STATEFUL, VERSION_STATELESS,
};
use ring::digest;

/// The claims of a token, read without verifying (to see what was signed).
fn claims_json(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

#[tokio::test]
async fn created_token_record_and_claims() {
    let f = Fixture::new();
    let created = f
        .service
        .create_access_token(
            &user(ALICE),
            datahub_access_tokens::CreateAccessTokenInput::personal(
                ALICE,
                "nightly",
                AccessTokenDuration::ThreeMonths,
            )
            .with_description("ingestion"),
        )
        .await
        .unwrap();
    let token = created.expose_access_token();
    let metadata = created.metadata.clone().unwrap();

    // id = b64(sha256(token || salt)), computed independently here.
    let mut hashed = token.as_bytes().to_vec();
    hashed.extend_from_slice(SALT.as_bytes());
    let expected_id = STANDARD.encode(digest::digest(&digest::SHA256, &hashed));
    assert_eq!(metadata.id, expected_id);
    assert_eq!(metadata.urn, format!("urn:li:dataHubAccessToken:{expected_id}"));
    assert_eq!(metadata.urn, access_token_urn(&expected_id));
    assert_eq!(metadata.entity_type, EntityType::AccessToken);
    assert_eq!(metadata.name, "nightly");
    assert_eq!(metadata.description.as_deref(), Some("ingestion"));
    assert_eq!(metadata.created_at, T0);
    assert_eq!(metadata.expires_at, Some(T0 + 90 * DAY_MS));

    // The plaintext is nowhere in the store.
    let stored = f.store.get(&metadata.id).await.unwrap().unwrap();
    let stored_json = serde_json::to_string(&stored).unwrap();
    assert!(!stored_json.contains(token));
    assert!(!stored_json.contains(token.split('.').nth(2).unwrap()));

    // DataHub's version-2 claim set.
    assert!(
        token.starts_with("eyJhbGciOiJIUzI1NiJ9."),
        "header is exactly {{\"alg\":\"HS256\"}}"
    );
    let claims = claims_json(token);
    assert_eq!(claims["version"], "2");
    assert_eq!(claims["type"], "PERSONAL");
    assert_eq!(claims["actorType"], "USER");
    assert_eq!(claims["actorId"], "alice");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "datahub-metadata-service");
    assert_eq!(claims["exp"], (T0 + 90 * DAY_MS) / 1000);
    let jti = claims["jti"].as_str().unwrap();
    assert!(
        jti.len() == 36 && jti.as_bytes()[14] == b'4',
        "jti {jti} is a UUID v4"
    );
    // Two tokens with the same input differ (jti), and so do their ids.
    let again = f
        .create(ALICE, ALICE, "nightly", AccessTokenDuration::ThreeMonths)
        .await;
    assert_ne!(again.expose_access_token(), token);
    assert_ne!(id_of(&again), metadata.id);
}

#[tokio::test]
async fn a_configured_issuer_is_the_iss_claim() {
    let f = Fixture::with_config(config().with_issuer("acme-datahub").unwrap());
    let personal = f.create_own(ALICE, "ci").await;
    assert_eq!(claims_json(personal.expose_access_token())["iss"], "acme-datahub");
    let session = f.service.create_session_token(&user(ALICE)).await.unwrap();
    assert_eq!(claims_json(session.expose_access_token())["iss"], "acme-datahub");
}

#[tokio::test]
async fn revocation_takes_effect_at_once() {
    let f = Fixture::new();
    let created = f.create_own(ALICE, "to revoke").await;
    let token = created.expose_access_token();
    let id = id_of(&created);

    let validated = f.service.validate_access_token(token).await.unwrap();
    assert_eq!(validated.actor, user(ALICE));
    assert_eq!(validated.token_id.as_deref(), Some(id.as_str()));
    assert_eq!(validated.claims.version(), VERSION_STATEFUL);

    f.service.revoke_access_token(&user(ALICE), &id).await.unwrap();
    // No time passes: the very next validation fails.
    let err = f.service.validate_access_token(token).await.unwrap_err();
    assert!(matches!(err, Error::Revoked), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Failed to validate DataHub token: Token has been revoked"
    );
    // Also through another handle on the same service.
    let other_handle = f.service.clone();
    assert!(matches!(
        other_handle.validate_access_token(token).await,
        Err(Error::Revoked)
    ));

    // Revoking again: as in DataHub, the owner now owns no such token, and
    // only a manager learns that it no longer exists.
    let err = f
        .service
        .revoke_access_token(&user(ALICE), &id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized), "{err:?}");
    let err = f
        .service
        .revoke_access_token(&user(MANAGER), &id)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Access token no longer exists");

    // Other tokens are untouched.
    let survivor = f.create_own(ALICE, "survivor").await;
    f.service
        .validate_access_token(survivor.expose_access_token())
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_stored_token_is_deleted_and_rejected() {
    let f = Fixture::new();
    let hour = f.create(ALICE, ALICE, "hour", AccessTokenDuration::OneHour).await;
    let day = f.create(ALICE, ALICE, "day", AccessTokenDuration::OneDay).await;
    let hour_id = id_of(&hour);

    // Good through its last millisecond ...
    f.clock.set(T0 + HOUR_MS);
    f.service
        .validate_access_token(hour.expose_access_token())
        .await
        .unwrap();
    // ... and expired one after.
    f.clock.set(T0 + HOUR_MS + 1);
    let err = f
        .service
        .validate_access_token(hour.expose_access_token())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expired), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Failed to validate DataHub token. Token has expired."
    );
    assert!(
        !f.store.contains(&hour_id).await.unwrap(),
        "the expired record was kept"
    );
    assert_eq!(f.store.len(), 1);
    // Presented again it is still expired (not "revoked").
    assert!(matches!(
        f.service.validate_access_token(hour.expose_access_token()).await,
        Err(Error::Expired)
    ));
    // The other token is unaffected.
    f.service
        .validate_access_token(day.expose_access_token())
        .await
        .unwrap();
}

#[tokio::test]
async fn never_expiring_token_stays_valid() {
    let f = Fixture::new();
    let forever = f
        .create(ALICE, ALICE, "forever", AccessTokenDuration::NoExpiry)
        .await;
    assert_eq!(forever.metadata.as_ref().unwrap().expires_at, None);
    assert!(claims_json(forever.expose_access_token()).get("exp").is_none());
    f.clock.advance(100 * 365 * DAY_MS);
    f.service
        .validate_access_token(forever.expose_access_token())
        .await
        .unwrap();
    assert!(f.service.purge_expired().await.unwrap().is_empty());
}

#[tokio::test]
async fn iso_durations_set_the_expiry() {
    let f = Fixture::new();
    for (iso, ms) in [
        ("PT1H", HOUR_MS),
        ("P1W", 7 * DAY_MS),
        ("p30d", 30 * DAY_MS),
        ("P1Y", 365 * DAY_MS),
    ] {
        let input = datahub_access_tokens::CreateAccessTokenInput::personal_iso(ALICE, iso, iso);
        let created = f.service.create_access_token(&user(ALICE), input).await.unwrap();
        assert_eq!(created.metadata.unwrap().expires_at, Some(T0 + ms), "{iso}");
    }
}

#[tokio::test]
async fn purge_expired_deletes_exactly_the_expired() {
    let f = Fixture::new();
    let hour = f.create(ALICE, ALICE, "hour", AccessTokenDuration::OneHour).await;
    f.clock.advance(10);
    let hour_later = f
        .create(BOB, BOB, "hour later", AccessTokenDuration::OneHour)
        .await;
    let day = f.create(ALICE, ALICE, "day", AccessTokenDuration::OneDay).await;
    let forever = f
        .create(MANAGER, BOB, "forever", AccessTokenDuration::NoExpiry)
        .await;

    // At the expiry instant nothing has expired yet (expiresAt < now).
    f.clock.set(T0 + HOUR_MS);
    assert!(f.service.purge_expired().await.unwrap().is_empty());
    assert_eq!(f.store.len(), 4);

    f.clock.set(T0 + HOUR_MS + 1);
    assert_eq!(f.service.purge_expired().await.unwrap(), vec![id_of(&hour)]);

    f.clock.set(T0 + 2 * DAY_MS);
    let mut purged = f.service.purge_expired().await.unwrap();
    purged.sort();
    let mut expected = vec![id_of(&hour_later), id_of(&day)];
    expected.sort();
    assert_eq!(purged, expected);
    assert!(
        f.service.purge_expired().await.unwrap().is_empty(),
        "purge is idempotent"
    );

    let left = f.snapshot().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, id_of(&forever));
    // Purged tokens no longer validate; they are expired anyway.
    assert!(matches!(
        f.service.validate_access_token(day.expose_access_token()).await,
        Err(Error::Expired)
    ));
}

#[tokio::test]
async fn datahub_cleanup_listing_finds_the_expired() {
    // DataHub's cleanup job lists {expiresAt LESS_THAN now}.
    let f = Fixture::new();
    let hour = f.create(ALICE, ALICE, "hour", AccessTokenDuration::OneHour).await;
    f.create(ALICE, ALICE, "day", AccessTokenDuration::OneDay).await;
    f.create(ALICE, ALICE, "forever", AccessTokenDuration::NoExpiry)
        .await;
    f.clock.set(T0 + 2 * HOUR_MS);
    let input: ListAccessTokenInput = serde_json::from_value(serde_json::json!({
        "start": 0, "count": 100,
        "filters": [{"field": "expiresAt", "values": [(T0 + 2 * HOUR_MS).to_string()], "condition": "LESS_THAN"}]
    }))
    .unwrap();
    let result = f
        .service
        .list_access_tokens(&user(MANAGER), &input)
        .await
        .unwrap();
    assert_eq!(result.total, 1);
    assert_eq!(result.tokens[0].id, id_of(&hour));
}

#[tokio::test]
async fn session_tokens() {
    let config = config().with_session_duration_ms(5_000).unwrap();
    let f = Fixture::with_config(config);
    let session = f.service.create_session_token(&user(BOB)).await.unwrap();
    assert!(session.metadata.is_none(), "session tokens have no metadata");
    assert!(f.store.is_empty(), "session tokens are not stored");

    let claims = claims_json(session.expose_access_token());
    assert_eq!(claims["version"], "1");
    assert_eq!(claims["type"], "SESSION");
    assert_eq!(claims["actorId"], "bob");
    assert_eq!(claims["exp"], (T0 + 5_000) / 1000);

    let validated = f
        .service
        .validate_access_token(session.expose_access_token())
        .await
        .unwrap();
    assert_eq!(validated.actor, user(BOB));
    assert_eq!(validated.token_id, None);
    assert_eq!(validated.claims.version(), VERSION_STATELESS);
    assert_eq!(validated.claims.token_type(), AccessTokenType::Session);

    // Not revocable: its hash is no stored id.
    let id = f.service.codec().token_id(session.expose_access_token());
    assert!(matches!(
        f.service.revoke_access_token(&user(MANAGER), &id).await,
        Err(Error::NotFound)
    ));
    // No metadata, even for a manager.
    let err = f
        .service
        .get_access_token_metadata(&user(MANAGER), session.expose_access_token())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("session tokens are not stored")),
        "{err:?}"
    );

    // Expires after the session lifetime.
    f.clock.set(T0 + 5_000);
    f.service
        .validate_access_token(session.expose_access_token())
        .await
        .unwrap();
    f.clock.set(T0 + 5_001);
    let err = f
        .service
        .validate_access_token(session.expose_access_token())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expired), "{err:?}");
    assert!(f.store.is_empty());
}

#[tokio::test]
async fn session_tokens_default_to_one_day() {
    let f = Fixture::new();
    let session = f.service.create_session_token(&user(ALICE)).await.unwrap();
    f.clock.set(T0 + DAY_MS);
    f.service
        .validate_access_token(session.expose_access_token())
        .await
        .unwrap();
    f.clock.set(T0 + DAY_MS + 1000);
    assert!(matches!(
        f.service
            .validate_access_token(session.expose_access_token())
            .await,
        Err(Error::Expired)
    ));
    // Only users get session tokens.
    let err = f
        .service
        .create_session_token(&user("urn:li:corpGroup:admins"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be a user urn"), "{err}");
}

#[tokio::test]
async fn metadata_of_a_raw_token() {
    let f = Fixture::new();
    let created = f
        .create(MANAGER, ALICE, "for alice", AccessTokenDuration::OneWeek)
        .await;
    let token = created.expose_access_token();
    let metadata = f
        .service
        .get_access_token_metadata(&user(MANAGER), token)
        .await
        .unwrap();
    assert_eq!(Some(metadata.clone()), created.metadata);
    assert_eq!(metadata.owner_urn, user(MANAGER));
    assert_eq!(metadata.actor_urn, user(ALICE));

    // Managers only: not even the token's actor may ask.
    assert!(matches!(
        f.service.get_access_token_metadata(&user(ALICE), token).await,
        Err(Error::Unauthorized)
    ));
    // A forged or garbled token is an invalid token, not a lookup.
    let err = f
        .service
        .get_access_token_metadata(&user(MANAGER), "not.a.token")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidToken(_)), "{err:?}");
    assert!(err.to_string().starts_with("Failed to validate DataHub token: "));
    // Once revoked: DataHub's not-found message.
    f.service
        .revoke_access_token(&user(MANAGER), &metadata.id)
        .await
        .unwrap();
    let err = f
        .service
        .get_access_token_metadata(&user(MANAGER), token)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Access token no longer exists");
}

#[tokio::test]
async fn invalid_tokens_name_the_problem() {
    let f = Fixture::new();
    let created = f.create_own(ALICE, "x").await;
    let token = created.expose_access_token();
    // Signed with another key.
    let other = Fixture::with_config(
        TokenServiceConfig::new("another-signing-key-of-more-than-32-bytes", SALT).unwrap(),
    );
    let foreign = other.create_own(ALICE, "x").await;
    let err = f
        .service
        .validate_access_token(foreign.expose_access_token())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Failed to validate DataHub token: invalid signature"
    );
    // The error never echoes the token.
    for bad in [
        format!("{token}x"),
        token.replacen('.', "", 1),
        token.to_uppercase(),
    ] {
        let err = f.service.validate_access_token(&bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidToken(_)), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&bad) && !shown.contains(token), "{shown}");
    }
}

#[tokio::test]
async fn debug_never_shows_secrets() {
    let f = Fixture::new();
    let created = f.create_own(ALICE, "secret-holder").await;
    let session = f.service.create_session_token(&user(ALICE)).await.unwrap();
    let validated = f
        .service
        .validate_access_token(created.expose_access_token())
        .await
        .unwrap();
    let config = config();
    let codec = TokenCodec::new(&config);
    let printed = [
        format!("{created:?}"),
        format!("{created:#?}"),
        format!("{session:?}"),
        format!("{:?}", f.service),
        format!("{:#?}", f.service),
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{codec:?}"),
        format!("{:?}", f.store),
        format!("{validated:?}"),
        format!("{:?}", TokenServiceConfig::insecure_datahub_defaults()),
    ];
    let secrets = [
        created.expose_access_token(),
        session.expose_access_token(),
        // The signature alone is as good as the token for a replay.
        created.expose_access_token().rsplit('.').next().unwrap(),
        SIGNING_KEY,
        SALT,
        "WnEdIeTG/VVCLQqGwC/BAkqyY0k+H8NEAtWGejrBI94=",
        "ohDVbJBvHHVJh9S/UA4BYF9COuNnqqVhr9MLKEGXk1O=",
    ];
    for text in &printed {
        for secret in secrets {
            assert!(!text.contains(secret), "Debug output shows a secret: {text}");
        }
    }
    assert!(printed[0].contains("<redacted>"), "{}", printed[0]);
    assert!(printed[5].contains("<redacted>"), "{}", printed[5]);
}
