//! The Bearer authenticator in front of a service's own routes, over real
//! HTTP: DataHub's header rules and messages, 401s, and revocation seen at once.

mod support_http;
mod support_store;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator};
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, ManualClock, MemoryTokenStore,
    Policies, TokenService, TokenServiceConfig,
};
use support_http::{bootstrap_token, memory_service, serve, user, Http};
use support_store::{BrokenStore, SECRET_DETAILS};

async fn whoami(who: Authenticated) -> String {
    let via = if who.token.is_some() { "token" } else { "header" };
    format!("{} via {via}", who.actor)
}

/// `/whoami` behind the authenticator, `/open` not, `/forgot` extracting
/// `Authenticated` without the layer (a wiring mistake).
async fn start(authenticator: BearerAuthenticator) -> Http {
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(authenticator.layer())
        .route("/open", get(|| async { "open" }))
        .route("/forgot", get(whoami));
    Http::new(serve(app).await)
}

fn assert_401(reply: &support_http::Reply, message: &str) {
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.error_message(), message);
    assert_eq!(reply.error_code(), 401);
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn bearer_tokens_authenticate_and_failures_get_datahubs_messages() {
    let service = memory_service(Policies::datahub_defaults());
    let http = start(BearerAuthenticator::new(service.clone())).await;
    let token = bootstrap_token(&service, "alice").await;

    let ok = http
        .get("/whoami", &[("Authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, "urn:li:corpuser:alice via token")
    );
    let ok = http
        .get("/whoami", &[("authorization", &format!("bearer {token}"))])
        .await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, "urn:li:corpuser:alice via token")
    );

    assert_401(
        &http.get("/whoami", &[]).await,
        "Request is missing 'Authorization' header.",
    );
    for value in [
        format!("Basic {token}"),
        format!("BEARER {token}"),
        token.clone(),
        "Bearer".into(),
    ] {
        assert_401(
            &http.get("/whoami", &[("Authorization", &value)]).await,
            "Authorization header missing 'Bearer' prefix.",
        );
    }
    for garbage in [
        "Bearer abc",
        "Bearer  a b",
        "Bearer a.b.c",
        &format!("Bearer {token}x"),
    ] {
        let reply = http.get("/whoami", &[("Authorization", garbage)]).await;
        assert_401(&reply, "Unable to verify the provided token.");
        let reason = reply.json()["errors"][0]["extensions"]["reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(reason.starts_with("Failed to validate DataHub token"), "{reason}");
    }
    // A genuine token from another deployment (other key) is refused too.
    let stranger = bootstrap_token(&memory_service(Policies::datahub_defaults()), "alice").await;
    assert_401(
        &http
            .get("/whoami", &[("Authorization", &format!("Bearer {stranger}"))])
            .await,
        "Unable to verify the provided token.",
    );
    // Unprotected routes stay open; the server still serves.
    assert_eq!(http.get("/open", &[]).await.body, "open");
}

#[tokio::test]
async fn header_name_is_case_insensitive_and_garbled_headers_are_refused() {
    let service = memory_service(Policies::datahub_defaults());
    let http = start(BearerAuthenticator::new(service.clone())).await;
    let token = bootstrap_token(&service, "alice").await;
    for name in ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"] {
        let request =
            format!("GET /whoami HTTP/1.1\r\nHost: x\r\n{name}: Bearer {token}\r\nConnection: close\r\n\r\n");
        let (status, body) = http.raw(request.as_bytes()).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "urn:li:corpuser:alice via token"),
            "{name}"
        );
    }
    let mut garbled =
        b"GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x80\r\nConnection: close\r\n\r\n"
            .to_vec();
    let (status, body) = http.raw(&garbled).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("Authorization header is not printable ASCII text."),
        "{body}"
    );
    garbled = format!(
        "GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nauthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let (status, body) = http.raw(&garbled).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("more than one 'Authorization' header"), "{body}");
    // Still serving.
    assert_eq!(
        http.get("/whoami", &[("Authorization", &format!("Bearer {token}"))])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_an_expired_one_too() {
    let clock = ManualClock::new(1_700_000_000_000);
    let service: Arc<dyn TokenService> = Arc::new(
        DataHubTokenService::new(
            TokenServiceConfig::generate().unwrap(),
            MemoryTokenStore::new(),
            Policies::datahub_defaults(),
        )
        .with_clock(clock.clone()),
    );
    let http = start(BearerAuthenticator::new(service.clone())).await;
    let alice = user("alice");
    let created = service
        .create_access_token(
            &alice,
            CreateAccessTokenInput::personal(alice.as_str(), "t", AccessTokenDuration::OneHour),
        )
        .await
        .unwrap();
    let auth = format!("Bearer {}", created.expose_access_token());
    assert_eq!(http.get("/whoami", &[("Authorization", &auth)]).await.status, 200);
    service
        .revoke_access_token(&alice, &created.metadata.unwrap().id)
        .await
        .unwrap();
    let reply = http.get("/whoami", &[("Authorization", &auth)]).await;
    assert_401(&reply, "Unable to verify the provided token.");
    assert!(reply.body.contains("Token has been revoked"), "{}", reply.body);

    let token = bootstrap_token(&service, "alice").await;
    let auth = format!("Bearer {token}");
    assert_eq!(http.get("/whoami", &[("Authorization", &auth)]).await.status, 200);
    clock.advance(25 * 60 * 60 * 1000);
    let reply = http.get("/whoami", &[("Authorization", &auth)]).await;
    assert_401(&reply, "Unable to verify the provided token.");
    assert!(reply.body.contains("Token has expired"), "{}", reply.body);
}

#[tokio::test]
async fn the_actor_header_is_trusted_only_when_asked() {
    let service = memory_service(Policies::datahub_defaults());
    let strict = start(BearerAuthenticator::new(service.clone())).await;
    let header = [("X-DataHub-Actor", "urn:li:corpuser:datahub")];
    assert_401(
        &strict.get("/whoami", &header).await,
        "Request is missing 'Authorization' header.",
    );

    let trusting = start(BearerAuthenticator::new(service.clone()).insecure_trust_actor_header()).await;
    let reply = trusting.get("/whoami", &header).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "urn:li:corpuser:datahub via header")
    );
    let reply = trusting
        .get("/whoami", &[("x-datahub-actor", " urn:li:corpuser:bob ")])
        .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "urn:li:corpuser:bob via header")
    );
    for bad in ["datahub", "urn:li:dataset:x", "urn:li:corpuser:"] {
        let reply = trusting.get("/whoami", &[("X-DataHub-Actor", bad)]).await;
        assert_eq!(reply.status, 401, "{bad}: {}", reply.body);
        assert!(
            reply
                .error_message()
                .starts_with("X-DataHub-Actor header must be a user urn"),
            "{}",
            reply.body
        );
    }
    // Without the header, Bearer tokens still work (and are still required).
    let token = bootstrap_token(&service, "alice").await;
    let reply = trusting
        .get("/whoami", &[("Authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(reply.body, "urn:li:corpuser:alice via token");
    assert_401(
        &trusting.get("/whoami", &[]).await,
        "Request is missing 'Authorization' header.",
    );
    // An empty header is no header, as in DataHub: the Bearer token decides.
    let empty = ("X-DataHub-Actor", "");
    let reply = trusting
        .get("/whoami", &[empty, ("Authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(reply.body, "urn:li:corpuser:alice via token");
    assert_401(
        &trusting.get("/whoami", &[empty]).await,
        "Request is missing 'Authorization' header.",
    );
}

#[tokio::test]
async fn extracting_without_the_layer_is_a_server_error() {
    let http = start(BearerAuthenticator::new(memory_service(
        Policies::datahub_defaults(),
    )))
    .await;
    let reply = http
        .get("/forgot", &[("X-DataHub-Actor", "urn:li:corpuser:datahub")])
        .await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.error_message(),
        "This route is not behind the Bearer authenticator."
    );
}

#[tokio::test]
async fn a_failing_store_is_a_500_without_details() {
    let config = TokenServiceConfig::generate().unwrap();
    // A genuine token for this key, whose record cannot be read.
    let working = DataHubTokenService::new(
        config.clone(),
        MemoryTokenStore::new(),
        Policies::datahub_defaults(),
    );
    let alice = user("alice");
    let token = working
        .create_access_token(
            &alice,
            CreateAccessTokenInput::personal(alice.as_str(), "t", AccessTokenDuration::OneDay),
        )
        .await
        .unwrap();
    let service: Arc<dyn TokenService> = Arc::new(DataHubTokenService::new(
        config,
        BrokenStore,
        Policies::datahub_defaults(),
    ));
    let http = start(BearerAuthenticator::new(service)).await;
    let reply = http
        .get(
            "/whoami",
            &[(
                "Authorization",
                &format!("Bearer {}", token.expose_access_token()),
            )],
        )
        .await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(reply.error_message(), "An unknown error occurred.");
    assert!(
        !SECRET_DETAILS.iter().any(|s| reply.body.contains(s)),
        "{}",
        reply.body
    );
}
