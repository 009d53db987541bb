//! Audit events: each operation reports who did what to which token, and
//! no event ever carries a plaintext token.

mod common;

use common::*;
use datahub_access_tokens::{
    AccessTokenDuration, AuditEvent, AuditEventKind, ListAccessTokenInput, RecordingAuditSink, TokenService,
};

fn fixture_with_sink() -> (Fixture, RecordingAuditSink) {
    let sink = RecordingAuditSink::new();
    let mut f = Fixture::new();
    f.service = f.service.clone().with_audit_sink(sink.clone());
    (f, sink)
}

fn kinds(events: &[AuditEvent]) -> Vec<&'static str> {
    events.iter().map(AuditEvent::kind_name).collect()
}

#[tokio::test]
async fn every_operation_is_reported_with_caller_token_and_time() {
    let (f, sink) = fixture_with_sink();
    let token = f.create_own(ALICE, "laptop").await;
    let id = id_of(&token);
    f.service
        .validate_access_token(token.expose_access_token())
        .await
        .unwrap();
    f.clock.advance(5);
    f.service.revoke_access_token(&user(ALICE), &id).await.unwrap();

    let events = sink.events();
    assert_eq!(
        kinds(&events),
        ["CREATED", "REVOKED"],
        "a successful validation is not an event"
    );
    assert_eq!(events[0].caller, Some(user(ALICE)));
    assert_eq!(events[0].token_id.as_deref(), Some(id.as_str()));
    assert_eq!(events[0].at_ms, T0);
    assert_eq!(events[1].kind, AuditEventKind::Revoked);
    assert_eq!(events[1].at_ms, T0 + 5);
}

#[tokio::test]
async fn denials_name_the_operation_and_caller() {
    let (f, sink) = fixture_with_sink();
    let alices = id_of(&f.create_own(ALICE, "mine").await);
    let bob = user(BOB);
    assert!(f.service.revoke_access_token(&bob, &alices).await.is_err());
    assert!(f
        .service
        .list_access_tokens(&bob, &ListAccessTokenInput::default())
        .await
        .is_err());
    let denied: Vec<_> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            AuditEventKind::Denied { operation } => Some((operation, e.caller, e.token_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        denied,
        [
            ("revokeAccessToken", Some(bob.clone()), Some(alices)),
            ("listAccessTokens", Some(bob), None),
        ]
    );
}

#[tokio::test]
async fn failed_validations_and_purges_are_reported() {
    let (f, sink) = fixture_with_sink();
    let revoked = f.create_own(ALICE, "revoked").await;
    let expiring = f
        .create(ALICE, ALICE, "expiring", AccessTokenDuration::OneHour)
        .await;
    let purged = f.create(BOB, BOB, "purged", AccessTokenDuration::OneHour).await;
    f.service
        .revoke_access_token(&user(ALICE), &id_of(&revoked))
        .await
        .unwrap();
    assert!(f
        .service
        .validate_access_token(revoked.expose_access_token())
        .await
        .is_err());
    assert!(f.service.validate_access_token("not.a.token").await.is_err());
    f.clock.advance(2 * HOUR_MS);
    assert!(f
        .service
        .validate_access_token(expiring.expose_access_token())
        .await
        .is_err());
    assert_eq!(f.service.purge_expired().await.unwrap(), [id_of(&purged)]);

    let events = sink.events();
    assert_eq!(
        kinds(&events[3..]),
        [
            "REVOKED",
            "VALIDATION_FAILED",
            "VALIDATION_FAILED",
            "PURGED",
            "VALIDATION_FAILED",
            "PURGED"
        ]
    );
    let failure = |i: usize| match &events[i].kind {
        AuditEventKind::ValidationFailed { reason } => (reason.clone(), events[i].token_id.clone()),
        other => panic!("event {i} is {other:?}"),
    };
    assert_eq!(
        failure(4),
        (
            "Failed to validate DataHub token: Token has been revoked".into(),
            Some(id_of(&revoked))
        )
    );
    assert_eq!(failure(5).1, None, "a token that is not genuine has no id");
    assert_eq!(
        events[6].token_id,
        Some(id_of(&expiring)),
        "the expired token is deleted on validation"
    );
    assert_eq!(
        failure(7),
        (
            "Failed to validate DataHub token. Token has expired.".into(),
            Some(id_of(&expiring))
        )
    );
    assert_eq!(events[8].token_id, Some(id_of(&purged)));
    assert_eq!(events[8].caller, None, "purges are system jobs");
}

#[tokio::test]
async fn no_event_carries_a_plaintext_token() {
    let (f, sink) = fixture_with_sink();
    let mut tokens = Vec::new();
    for (who, name) in [(ALICE, "a"), (BOB, "b")] {
        tokens.push(f.create_own(who, name).await);
    }
    let forged = format!("{}x", tokens[0].expose_access_token());
    for token in &tokens {
        f.service
            .validate_access_token(token.expose_access_token())
            .await
            .unwrap();
    }
    let _ = f.service.validate_access_token(&forged).await;
    let _ = f
        .service
        .revoke_access_token(&user(BOB), tokens[0].expose_access_token())
        .await;
    f.service
        .revoke_access_token(&user(ALICE), &id_of(&tokens[0]))
        .await
        .unwrap();
    let _ = f
        .service
        .validate_access_token(tokens[0].expose_access_token())
        .await;

    let printed = format!("{:?}", sink.events());
    assert!(sink.events().len() >= 5);
    for token in &tokens {
        let plaintext = token.expose_access_token();
        let signature = plaintext.rsplit('.').next().unwrap();
        assert!(
            !printed.contains(plaintext) && !printed.contains(signature),
            "an event holds a token: {printed}"
        );
    }
}
