//! `rotate_access_token`: a new token with the same actor, owner, name and
//! description replaces the old one atomically; who may rotate; durations.

mod common;

use common::*;
use datahub_access_tokens::{
    AccessToken, AccessTokenDuration, AuditEventKind, CreateAccessTokenInput, DurationPolicy, Error,
    RecordingAuditSink, RotateAccessTokenInput, TokenService, DEFAULT_ALLOWED_DURATIONS,
};

#[tokio::test]
async fn rotation_swaps_tokens_keeping_identity_and_duration() {
    let sink = RecordingAuditSink::new();
    let mut f = Fixture::new();
    f.service = f.service.clone().with_audit_sink(sink.clone());
    let mut input = CreateAccessTokenInput::personal(ALICE, "laptop", AccessTokenDuration::OneWeek);
    input.description = Some("my laptop".into());
    let old = f.service.create_access_token(&user(ALICE), input).await.unwrap();
    let old_id = id_of(&old);
    f.clock.advance(DAY_MS);

    let new = f
        .service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(&old_id))
        .await
        .unwrap();
    let new_id = id_of(&new);
    assert_ne!(new_id, old_id);
    let (before, after) = (old.metadata.as_ref().unwrap(), new.metadata.as_ref().unwrap());
    assert_eq!(after.name, before.name);
    assert_eq!(after.description.as_deref(), Some("my laptop"));
    assert_eq!(after.actor_urn, before.actor_urn);
    assert_eq!(after.owner_urn, before.owner_urn);
    assert_eq!(after.created_at, T0 + DAY_MS);
    assert_eq!(
        after.expires_at,
        Some(T0 + DAY_MS + 7 * DAY_MS),
        "a fresh expiry from the original duration"
    );

    // Exactly one of the two is valid: the new one.
    let err = f
        .service
        .validate_access_token(old.expose_access_token())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Revoked), "{err}");
    let validated = f
        .service
        .validate_access_token(new.expose_access_token())
        .await
        .unwrap();
    assert_eq!(validated.token_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(f.snapshot().await.len(), 1);

    let events = sink.events();
    let rotated = events
        .iter()
        .find(|e| e.kind_name() == "ROTATED")
        .expect("a ROTATED event");
    assert_eq!(
        rotated.kind,
        AuditEventKind::Rotated {
            new_token_id: new_id.clone()
        }
    );
    assert_eq!(rotated.token_id.as_deref(), Some(old_id.as_str()));
    assert_eq!(rotated.caller, Some(user(ALICE)));
    assert_eq!(rotated.kind_name(), "ROTATED");

    // Rotating the old id again: it no longer exists, which only a manager
    // is told (as for revoke); to its owner it is a token they do not own.
    let err = f
        .service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(&old_id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized), "{err}");
    let err = f
        .service
        .rotate_access_token(&user(MANAGER), &RotateAccessTokenInput::keep_lifetime(&old_id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound), "{err}");
}

#[tokio::test]
async fn a_given_duration_goes_through_the_policy() {
    let f = Fixture::new();
    let old = f.create_own(ALICE, "t").await;
    let new = f
        .service
        .rotate_access_token(
            &user(ALICE),
            &RotateAccessTokenInput::with_duration(id_of(&old), AccessTokenDuration::OneHour),
        )
        .await
        .unwrap();
    assert_eq!(new.metadata.unwrap().expires_at, Some(T0 + HOUR_MS));

    let strict = Fixture::with_config(
        config().with_duration_policy(DurationPolicy::parse(DEFAULT_ALLOWED_DURATIONS, false).unwrap()),
    );
    let old = strict.create_own(ALICE, "t").await;
    let err = strict
        .service
        .rotate_access_token(
            &user(ALICE),
            &RotateAccessTokenInput::with_duration(id_of(&old), AccessTokenDuration::NoExpiry),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(strict.snapshot().await.len(), 1, "nothing changed");
}

#[tokio::test]
async fn an_iso_duration_sets_the_new_lifetime() {
    let f = Fixture::with_config(
        config().with_duration_policy(DurationPolicy::parse("P1D,P2D,P30D", false).unwrap()),
    );
    let old = f.create_own(ALICE, "t").await;
    f.clock.advance(HOUR_MS);
    let new = f
        .service
        .rotate_access_token(
            &user(ALICE),
            &RotateAccessTokenInput::with_duration_iso(id_of(&old), "P2D"),
        )
        .await
        .unwrap();
    let metadata = new.metadata.as_ref().unwrap();
    assert_eq!(metadata.created_at, T0 + HOUR_MS);
    assert_eq!(
        metadata.expires_at.map(|at| at - metadata.created_at),
        Some(2 * DAY_MS)
    );
    let snapshot = f.snapshot().await;
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].id, id_of(&new));
}

/// Rotating `old` with `input` fails with `expected`'s text and leaves the
/// store as it was, the old token still validating.
async fn refused_changing_nothing(
    f: &Fixture,
    old: &AccessToken,
    input: RotateAccessTokenInput,
    expected: &Error,
) {
    let before = f.snapshot().await;
    let err = f
        .service
        .rotate_access_token(&user(ALICE), &input)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{input:?}: {err}");
    assert_eq!(err.to_string(), expected.to_string(), "{input:?}");
    assert_eq!(f.snapshot().await, before, "{input:?}: nothing changed");
    let validated = f
        .service
        .validate_access_token(old.expose_access_token())
        .await
        .unwrap();
    assert_eq!(validated.token_id, Some(id_of(old)));
}

#[tokio::test]
async fn an_iso_duration_is_refused_as_create_refuses_it() {
    // The default policy: P2D is well formed but not allowed.
    let f = Fixture::new();
    let old = f.create_own(ALICE, "t").await;
    for iso in ["P2D", "P0D", "P1.5D", "PT", "two days", "P99999999999999999999D"] {
        let create = CreateAccessTokenInput::personal_iso(ALICE, "t", iso);
        let expected = f
            .service
            .create_access_token(&user(ALICE), create)
            .await
            .unwrap_err();
        let input = RotateAccessTokenInput::with_duration_iso(id_of(&old), iso);
        refused_changing_nothing(&f, &old, input, &expected).await;
    }
}

#[tokio::test]
async fn both_durations_at_once_are_refused() {
    let f = Fixture::new();
    let old = f.create_own(ALICE, "t").await;
    let mut create = CreateAccessTokenInput::personal(ALICE, "t", AccessTokenDuration::OneDay);
    create.duration_iso = Some("P1D".into());
    let expected = f
        .service
        .create_access_token(&user(ALICE), create)
        .await
        .unwrap_err();
    let text = expected.to_string();
    assert!(
        text.contains("duration ") && text.contains("durationIso"),
        "{text}"
    );
    let mut input = RotateAccessTokenInput::with_duration(id_of(&old), AccessTokenDuration::OneDay);
    input.duration_iso = Some("P1D".into());
    refused_changing_nothing(&f, &old, input, &expected).await;
}

#[tokio::test]
async fn never_expiring_tokens_rotate_only_while_allowed() {
    let f = Fixture::new();
    let old = f
        .create(ALICE, ALICE, "forever", AccessTokenDuration::NoExpiry)
        .await;
    // Same store, a policy that no longer allows NO_EXPIRY.
    let strict =
        config().with_duration_policy(DurationPolicy::parse(DEFAULT_ALLOWED_DURATIONS, false).unwrap());
    let service = datahub_access_tokens::DataHubTokenService::new(strict, f.store.clone(), policies())
        .with_clock(f.clock.clone());
    let err = service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(id_of(&old)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("never-expiring tokens are no longer allowed"),
        "{err}"
    );
    assert_eq!(f.snapshot().await.len(), 1);
    // Still allowed where the policy allows it.
    let new = f
        .service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(id_of(&old)))
        .await
        .unwrap();
    assert_eq!(new.metadata.unwrap().expires_at, None);
}

#[tokio::test]
async fn a_kept_lifetime_goes_through_the_policy_too() {
    let f = Fixture::new();
    let old = f
        .create(ALICE, ALICE, "yearly", AccessTokenDuration::OneYear)
        .await;
    // Same store, a policy narrowed since: a year is no longer allowed, so
    // keeping it needs asking for it, which is refused as creating it is.
    let narrowed = config().with_duration_policy(DurationPolicy::parse("PT1H,P30D", false).unwrap());
    let service = datahub_access_tokens::DataHubTokenService::new(narrowed, f.store.clone(), policies())
        .with_clock(f.clock.clone());
    let err = service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(id_of(&old)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(
        err.to_string()
            .contains("lifetime (ONE_YEAR) is no longer allowed")
            && err.to_string().contains("ONE_MONTH (P30D)"),
        "{err}"
    );
    assert_eq!(f.snapshot().await.len(), 1, "nothing changed");
    // An allowed duration, given, is what the rotation then takes.
    let new = service
        .rotate_access_token(
            &user(ALICE),
            &RotateAccessTokenInput::with_duration(id_of(&old), AccessTokenDuration::OneMonth),
        )
        .await
        .unwrap();
    assert_eq!(new.metadata.unwrap().expires_at, Some(T0 + 30 * DAY_MS));
}

#[tokio::test]
async fn who_may_rotate() {
    let f = Fixture::new();
    let alices = id_of(&f.create_own(ALICE, "a").await);
    for intruder in [BOB, NOBODY] {
        let err = f
            .service
            .rotate_access_token(&user(intruder), &RotateAccessTokenInput::keep_lifetime(&alices))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unauthorized), "{intruder}: {err}");
    }
    // A manager may rotate anyone's token; the owner stays alice.
    let rotated = f
        .service
        .rotate_access_token(&user(MANAGER), &RotateAccessTokenInput::keep_lifetime(&alices))
        .await
        .unwrap();
    assert_eq!(rotated.metadata.as_ref().unwrap().owner_urn, user(ALICE));
    // A token the manager made for bob is owned by the manager: bob (the
    // actor) may not rotate it, as he may not revoke it.
    let for_bob = id_of(&f.create(MANAGER, BOB, "b", AccessTokenDuration::OneDay).await);
    let err = f
        .service
        .rotate_access_token(&user(BOB), &RotateAccessTokenInput::keep_lifetime(&for_bob))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized), "{err}");
    // Bad ids and expired tokens.
    let err = f
        .service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime("nope"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a token id"), "{err}");
    let short = id_of(&f.create(ALICE, ALICE, "s", AccessTokenDuration::OneHour).await);
    f.clock.advance(HOUR_MS + 1);
    let err = f
        .service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(&short))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expired), "{err}");
}

#[tokio::test]
async fn a_token_is_not_rotated_once_it_stops_validating() {
    // Made half a second into a second: its `exp` (whole seconds) falls
    // 500 ms before its stored `expiresAt`.
    let f = Fixture::new();
    f.clock.set(T0 + 500);
    let token = f.create(ALICE, ALICE, "t", AccessTokenDuration::OneHour).await;
    let id = id_of(&token);
    f.clock.set(T0 + HOUR_MS);
    f.service
        .validate_access_token(token.expose_access_token())
        .await
        .unwrap();
    f.clock.set(T0 + HOUR_MS + 300);
    let err = f
        .service
        .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(&id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expired), "{err}");
    let err = f
        .service
        .validate_access_token(token.expose_access_token())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expired), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_leave_exactly_one_token() {
    let f = Fixture::new();
    let id = id_of(&f.create_own(ALICE, "hot").await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (f, id) = (f.clone(), id.clone());
        tasks.spawn(async move {
            f.service
                .rotate_access_token(&user(ALICE), &RotateAccessTokenInput::keep_lifetime(&id))
                .await
        });
    }
    let mut won = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => won += 1,
            // Lost the race: the token was gone at the swap (NotFound) or
            // already at the lookup (not hers any more, as for revoke).
            Err(Error::NotFound | Error::Unauthorized) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(f.snapshot().await.len(), 1);
}
