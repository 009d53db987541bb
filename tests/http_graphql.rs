//! DataHub's GraphQL token API over real HTTP with Bearer tokens: the token
//! life cycle, the authorization matrix, and bad requests.

mod support_http;

use axum::routing::get;
use axum::Router;
use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator, GraphQlApi, DEFAULT_BODY_LIMIT};
use datahub_access_tokens::{Policies, UNAUTHORIZED_MESSAGE};
use serde_json::{json, Value};
use support_http::{bootstrap_token, matrix_policies, memory_service, serve, Http, Reply};

const CREATE: &str = "mutation($input: CreateAccessTokenInput!) { createAccessToken(input: $input) {
    accessToken metadata { id actorUrn ownerUrn } } }";
const REVOKE: &str = "mutation($id: String!) { revokeAccessToken(tokenId: $id) }";
const LIST: &str = "query($input: ListAccessTokenInput!) { listAccessTokens(input: $input) {
    start count total tokens { id actorUrn ownerUrn } } }";
const METADATA: &str = "query($token: String!) { getAccessTokenMetadata(token: $token) { id } }";

/// The API plus `/whoami`, a service route behind the same authenticator.
async fn start(policies: Policies) -> (Http, std::sync::Arc<dyn datahub_access_tokens::TokenService>) {
    let service = memory_service(policies);
    let authenticator = BearerAuthenticator::new(service.clone());
    let app = Router::new()
        .route(
            "/whoami",
            get(|who: Authenticated| async move { who.actor.to_string() }),
        )
        .layer(authenticator.layer())
        .merge(GraphQlApi::new(authenticator).router());
    (Http::new(serve(app).await), service)
}

fn create_vars(actor: &str, name: &str) -> Value {
    json!({"input": {"type": "PERSONAL", "actorUrn": format!("urn:li:corpuser:{actor}"),
                     "duration": "ONE_HOUR", "name": name}})
}

fn list_vars(owners: Option<&[&str]>) -> Value {
    let filters = match owners {
        Some(owners) => {
            let urns: Vec<String> = owners.iter().map(|o| format!("urn:li:corpuser:{o}")).collect();
            json!([{"field": "ownerUrn", "values": urns}])
        }
        None => json!([]),
    };
    json!({"input": {"start": 0, "count": 100, "filters": filters}})
}

/// Creates a token for `actor` as the holder of `token`; returns (token, id).
async fn create(http: &Http, token: &str, actor: &str) -> (String, String) {
    let data = http.graphql(token, CREATE, create_vars(actor, "t")).await.data();
    let created = &data["createAccessToken"];
    (
        created["accessToken"].as_str().unwrap().to_owned(),
        created["metadata"]["id"].as_str().unwrap().to_owned(),
    )
}

fn assert_denied(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.error_message(), UNAUTHORIZED_MESSAGE);
    assert_eq!(
        (reply.error_code(), reply.error_type().as_str()),
        (403, "UNAUTHORIZED")
    );
}

#[tokio::test]
async fn a_token_created_over_graphql_works_at_once_and_dies_at_once() {
    let (http, service) = start(Policies::datahub_defaults()).await;
    let bootstrap = bootstrap_token(&service, "alice").await;

    let (token, id) = create(&http, &bootstrap, "alice").await;
    let auth = format!("Bearer {token}");
    assert_eq!(
        http.get("/whoami", &[("Authorization", &auth)]).await.body,
        "urn:li:corpuser:alice"
    );
    let listed = http
        .graphql(&token, LIST, list_vars(Some(&["alice"])))
        .await
        .data();
    assert_eq!(
        listed["listAccessTokens"]["total"], 1,
        "the bootstrap token's owner is datahub"
    );
    assert_eq!(listed["listAccessTokens"]["tokens"][0]["id"], id.as_str());

    // The new token revokes itself; its very next use is refused.
    let revoked = http.graphql(&token, REVOKE, json!({"id": id})).await.data();
    assert_eq!(revoked, json!({"revokeAccessToken": true}));
    let reply = http.get("/whoami", &[("Authorization", &auth)]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error_message(), "Unable to verify the provided token.");
    let reply = http.graphql(&token, LIST, list_vars(Some(&["alice"]))).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("Token has been revoked"), "{}", reply.body);

    // Revoking it again: as in DataHub, alice owns no such token (only a
    // manager is told that it no longer exists).
    let reply = http.graphql(&bootstrap, REVOKE, json!({"id": id})).await;
    assert_denied(&reply);
}

#[tokio::test]
async fn the_authorization_matrix_over_http() {
    let (http, service) = start(support_http::matrix_policies()).await;
    let admin = bootstrap_token(&service, "admin").await; // Manage All Access Tokens
    let alice = bootstrap_token(&service, "alice").await; // Generate Personal Access Tokens
    let reader = bootstrap_token(&service, "reader").await; // neither

    // Create: for oneself with generate, for anyone with manage, never without either.
    let (_, alice_own) = create(&http, &alice, "alice").await;
    let (bob_token, by_admin_for_bob) = create(&http, &admin, "bob").await;
    let created = http.graphql(&admin, CREATE, create_vars("bob", "x")).await.data();
    assert_eq!(
        created["createAccessToken"]["metadata"]["ownerUrn"],
        "urn:li:corpuser:admin"
    );
    assert_eq!(
        created["createAccessToken"]["metadata"]["actorUrn"],
        "urn:li:corpuser:bob"
    );
    let reply = http.graphql(&alice, CREATE, create_vars("bob", "x")).await;
    assert_denied(&reply);
    assert_eq!(reply.json()["data"], json!({"createAccessToken": null}));
    assert_denied(&http.graphql(&reader, CREATE, create_vars("reader", "x")).await);

    // List: own tokens only with the ownerUrn self-filter; everything with manage.
    let mine = http
        .graphql(&alice, LIST, list_vars(Some(&["alice"])))
        .await
        .data();
    let ids: Vec<&str> = mine["listAccessTokens"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alice_own.as_str()]);
    assert_denied(&http.graphql(&alice, LIST, list_vars(None)).await);
    assert_denied(&http.graphql(&alice, LIST, list_vars(Some(&["bob"]))).await);
    assert_denied(
        &http
            .graphql(&alice, LIST, list_vars(Some(&["alice", "bob"])))
            .await,
    );
    let no_filters = json!({"input": {}});
    assert_denied(&http.graphql(&alice, LIST, no_filters.clone()).await);
    assert_denied(&http.graphql(&reader, LIST, list_vars(Some(&["reader"]))).await);
    // bob was given a token by admin, but bob's token is owned by admin: bob sees none.
    let bobs = http
        .graphql(&bob_token, LIST, list_vars(Some(&["bob"])))
        .await
        .data();
    assert_eq!(bobs["listAccessTokens"]["total"], 0);
    let all = http.graphql(&admin, LIST, no_filters).await.data();
    // 3 bootstrap tokens + alice's + admin's two for bob.
    assert_eq!(all["listAccessTokens"]["total"], 6);

    // Metadata of a raw token: managers only.
    let meta = http
        .graphql(&admin, METADATA, json!({"token": bob_token}))
        .await
        .data();
    assert_eq!(meta["getAccessTokenMetadata"]["id"], by_admin_for_bob.as_str());
    assert_denied(&http.graphql(&alice, METADATA, json!({"token": bob_token})).await);

    // Revoke: one's own (as owner) or anything with manage; not someone else's.
    assert_denied(
        &http
            .graphql(&alice, REVOKE, json!({"id": by_admin_for_bob}))
            .await,
    );
    assert_denied(
        &http
            .graphql(&bob_token, REVOKE, json!({"id": by_admin_for_bob}))
            .await,
    );
    assert_denied(&http.graphql(&reader, REVOKE, json!({"id": alice_own})).await);
    assert_eq!(
        http.graphql(&alice, REVOKE, json!({"id": alice_own}))
            .await
            .data(),
        json!({"revokeAccessToken": true})
    );
    assert_eq!(
        http.graphql(&admin, REVOKE, json!({"id": by_admin_for_bob}))
            .await
            .data(),
        json!({"revokeAccessToken": true})
    );
    assert_eq!(
        http.get("/whoami", &[("Authorization", &format!("Bearer {bob_token}"))])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let (http, service) = start(matrix_policies()).await;
    let token = bootstrap_token(&service, "admin").await;
    let auth = format!("Bearer {token}");
    let bearer = [("Authorization", auth.as_str())];
    let good = r#"{"query":"{ listAccessTokens(input: {}) { total } }"}"#;
    let big = format!(
        r#"{{"query":"{{ listAccessTokens(input: {{}}) {{ total }} }}","x":"{}"}}"#,
        "a".repeat(DEFAULT_BODY_LIMIT)
    );

    // (content type, body, status, error type, words the message must hold)
    let json = Some("application/json");
    #[rustfmt::skip]
    let cases: Vec<(Option<&str>, String, u16, &str, &str)> = vec![
        (json, "{\"query\": ".into(), 400, "BAD_REQUEST", "not a valid GraphQL request: EOF while parsing"),
        (json, "hello".into(), 400, "BAD_REQUEST", "not a valid GraphQL request: expected value"),
        (json, "".into(), 400, "BAD_REQUEST", "The request body is empty"),
        (json, "  \n".into(), 400, "BAD_REQUEST", "The request body is empty"),
        (json, "[]".into(), 400, "BAD_REQUEST", "a JSON array: batched requests are not supported"),
        (json, r#" ["{ listAccessTokens(input: {}) { total } }"]"#.into(), 400, "BAD_REQUEST", "batched requests are not supported"),
        (json, r#"{"variables":{}}"#.into(), 400, "BAD_REQUEST", "missing field `query`"),
        (json, r#"{"querry":"{ x }"}"#.into(), 400, "BAD_REQUEST", "unknown field `querry`"),
        (json, r#"{"query":"{ listAccessTokens(input: {}) { total } }","variables":[1]}"#.into(), 400, "BAD_REQUEST", "\"variables\" must be a JSON object"),
        (json, big.clone(), 413, "PAYLOAD_TOO_LARGE", "larger than the limit of 1048576 bytes"),
        (Some("text/plain"), good.into(), 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json, got \"text/plain\""),
        (Some("application/x-www-form-urlencoded"), good.into(), 415, "UNSUPPORTED_MEDIA_TYPE", "application/x-www-form-urlencoded"),
        (None, good.into(), 415, "UNSUPPORTED_MEDIA_TYPE", "no Content-Type header"),
    ];
    for (content_type, body, status, kind, words) in cases {
        let mut headers = bearer.to_vec();
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        let reply = http.send("POST", "/api/graphql", &headers, body.clone()).await;
        let shown = &body[..body.len().min(100)];
        assert_eq!(reply.status, status, "{shown}: {}", reply.body);
        assert_eq!(reply.error_type(), kind, "{shown}: {}", reply.body);
        assert_eq!(reply.error_code(), i64::from(status), "{shown}: {}", reply.body);
        assert!(
            reply.error_message().contains(words),
            "{shown}: {:?} lacks {words:?}",
            reply.error_message()
        );
        // Still serving, on the same connection pool.
        let ok = http.post_graphql(&bearer, good).await;
        assert_eq!(ok.status, 200, "after {shown}: {}", ok.body);
    }
    // What follows the body's JSON object is not read, as DataHub's Jackson
    // does not read it: the request runs.
    let expected = http.post_graphql(&bearer, good).await;
    for trailing in ["}", "} junk", " [1,"] {
        let reply = http.post_graphql(&bearer, format!("{good}{trailing}")).await;
        assert_eq!((reply.status, &reply.body), (200, &expected.body), "{trailing:?}");
    }

    // GraphQL documents that cannot run: 200, as DataHub answers, with the
    // error (code 400) in `errors`. (body, words the message must hold)
    #[rustfmt::skip]
    let documents = [
        (r#"{"query":"{ listAccessTokens(input: {}) { colour } }"}"#, "Unknown field \"colour\""),
        (r#"{"query":"{ listAccessTokens(input: {sort: 1}) { total } }"}"#, "sort"),
        (r#"{"query":"{ deleteEverything }"}"#, "deleteEverything"),
        (r#"{"query":"query($n: Int) { listAccessTokens(input: {count: $n}) { total } }","variables":{"n":"ten"}}"#, "\"input.count\", expected type \"Int\""),
        (r#"{"query":"mutation($id: String!) { revokeAccessToken(tokenId: $id) }","variables":{"id":7}}"#, "\"tokenId\", expected type \"String\""),
        (r#"{"query":"mutation($id: String!) { revokeAccessToken(tokenId: $id) }"}"#, "Variable $id is declared non-null"),
        (r#"{"query":"{ listAccessTokens(input: {}) { total "}"#, "Syntax error in the GraphQL query at line 1"),
    ];
    for (body, words) in documents {
        let reply = http.post_graphql(&bearer, body).await;
        assert_eq!(reply.status, 200, "{body}: {}", reply.body);
        assert_eq!(reply.error_code(), 400, "{body}: {}", reply.body);
        assert_eq!(reply.error_type(), "BAD_REQUEST", "{body}: {}", reply.body);
        assert!(
            reply.error_message().contains(words),
            "{body}: {:?} lacks {words:?}",
            reply.error_message()
        );
    }

    // Authentication comes first, before the body is even read.
    for (headers, message) in [
        (vec![], "Request is missing 'Authorization' header."),
        (
            vec![("Authorization", "Basic YWxpY2U6cHc=")],
            "Authorization header missing 'Bearer' prefix.",
        ),
        (
            vec![("Authorization", "Bearer not-a-token")],
            "Unable to verify the provided token.",
        ),
    ] {
        let reply = http.post_graphql(&headers, good).await;
        assert_eq!(
            (reply.status, reply.error_message().as_str()),
            (401, message),
            "{}",
            reply.body
        );
        let reply = http.post_graphql(&headers, big.clone()).await;
        assert_eq!(reply.status, 401);
    }
    let reply = http.get("/api/graphql", &bearer).await;
    assert_eq!(reply.status, 405);
    assert_eq!(
        http.post_graphql(&bearer, good).await.data(),
        json!({"listAccessTokens": {"total": 1}})
    );
}

#[tokio::test]
async fn graphiql_is_served_for_browsers() {
    let (http, _) = start(Policies::datahub_defaults()).await;
    let reply = http.get("/api/graphiql", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(reply.body.contains("GraphiQL.createFetcher"), "{}", reply.body);
    // The page handles tokens: every script and style it loads from elsewhere
    // is an exact version, pinned by its hash.
    let loads: Vec<&str> = reply.body.split("https://").skip(1).collect();
    assert_eq!(loads.len(), 4, "{}", reply.body);
    for load in loads {
        let (url, rest) = load.split_once('"').unwrap();
        let version = url
            .split('@')
            .nth(1)
            .and_then(|v| v.split('/').next())
            .unwrap_or("");
        assert_eq!(
            version.split('.').filter(|n| n.parse::<u32>().is_ok()).count(),
            3,
            "{url}"
        );
        let tag = rest.split('>').next().unwrap();
        assert!(tag.contains(r#"integrity="sha384-"#), "{url}: {tag}");
        assert!(tag.contains(r#"crossorigin="anonymous""#), "{url}: {tag}");
    }
}
