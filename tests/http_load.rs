//! Load: 16 concurrent clients x 500 mixed requests (create, list, a
//! protected call, revoke) against a real server. No request may fail, and
//! the final listing holds exactly the tokens created and not revoked.

mod support_http;

use std::collections::BTreeSet;

use axum::routing::get;
use axum::Router;
use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator, GraphQlApi};
use datahub_access_tokens::{Policies, TokenServiceConfig};
use serde_json::json;
use support_http::{bootstrap_token, memory_service_with, serve, Http};

const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 500;
/// One round: 3 creates, 2 lists, 3 protected calls, 1 revoke, and 1 call with the revoked token.
const ROUND: usize = 10;

const CREATE: &str = "mutation($input: CreateAccessTokenInput!) { createAccessToken(input: $input) {
    accessToken metadata { id } } }";
const REVOKE: &str = "mutation($id: String!) { revokeAccessToken(tokenId: $id) }";
const LIST: &str = "query($input: ListAccessTokenInput!) { listAccessTokens(input: $input) {
    total tokens { id } } }";

/// One client's run; returns the ids it left alive.
async fn client(http: Http, n: usize, bootstrap: String) -> BTreeSet<String> {
    let me = format!("urn:li:corpuser:load{n}");
    let mut live: Vec<(String, String)> = Vec::new(); // (token, id)
    let mut revoked: Option<String> = None;
    let mut sent = 0;
    for round in 0..REQUESTS_PER_CLIENT / ROUND {
        for step in 0..ROUND {
            // Use the newest live token for most requests, the bootstrap one otherwise.
            let token = live
                .last()
                .map_or(bootstrap.as_str(), |(t, _)| t.as_str())
                .to_owned();
            match step {
                0..=2 => {
                    let name = format!("c{n}r{round}s{step}");
                    let input = json!({"input": {"type": "PERSONAL", "actorUrn": me, "duration": "ONE_DAY", "name": name}});
                    let data = http.graphql(&token, CREATE, input).await.data();
                    let created = &data["createAccessToken"];
                    live.push((
                        created["accessToken"].as_str().unwrap().to_owned(),
                        created["metadata"]["id"].as_str().unwrap().to_owned(),
                    ));
                }
                3 | 4 => {
                    let input =
                        json!({"input": {"count": 1000, "filters": [{"field": "ownerUrn", "value": me}]}});
                    let data = http.graphql(&token, LIST, input).await.data();
                    let listed: BTreeSet<&str> = data["listAccessTokens"]["tokens"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["id"].as_str().unwrap())
                        .collect();
                    let expected: BTreeSet<&str> = live.iter().map(|(_, id)| id.as_str()).collect();
                    assert_eq!(listed, expected, "client {n} sees exactly its live tokens");
                }
                5..=7 => {
                    let pick = &live[(round * 7 + step) % live.len()].0;
                    let reply = http
                        .get("/whoami", &[("Authorization", &format!("Bearer {pick}"))])
                        .await;
                    assert_eq!((reply.status, reply.body.as_str()), (200, me.as_str()));
                }
                8 => {
                    let (token, id) = live.remove((round * 5) % live.len());
                    let data = http.graphql(&bootstrap, REVOKE, json!({"id": id})).await.data();
                    assert_eq!(data, json!({"revokeAccessToken": true}));
                    revoked = Some(token);
                }
                _ => {
                    let gone = revoked.take().unwrap();
                    let reply = http
                        .get("/whoami", &[("Authorization", &format!("Bearer {gone}"))])
                        .await;
                    assert_eq!(
                        reply.status, 401,
                        "a revoked token is refused at once: {}",
                        reply.body
                    );
                }
            }
            sent += 1;
        }
    }
    assert_eq!(sent, REQUESTS_PER_CLIENT);
    live.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_times_five_hundred_mixed_requests() {
    // Each client keeps more than the default 100 live tokens at its peak:
    // this test is about concurrency, not the per-owner limit.
    let config = TokenServiceConfig::generate()
        .unwrap()
        .with_max_tokens_per_owner(None)
        .unwrap();
    let service = memory_service_with(config, Policies::datahub_defaults());
    let authenticator = BearerAuthenticator::new(service.clone());
    let app = Router::new()
        .route(
            "/whoami",
            get(|who: Authenticated| async move { who.actor.to_string() }),
        )
        .layer(authenticator.layer())
        .merge(GraphQlApi::new(authenticator).router());
    let http = Http::new(serve(app).await);

    let mut expected = BTreeSet::new();
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        // The bootstrap tokens are owned by the root user, so they stay out of each client's own listing.
        let bootstrap = bootstrap_token(&service, &format!("load{n}")).await;
        tasks.push(tokio::spawn(client(http.clone(), n, bootstrap)));
    }
    for task in tasks {
        expected.extend(task.await.expect("a client failed"));
    }
    assert_eq!(expected.len(), CLIENTS * (REQUESTS_PER_CLIENT / ROUND) * 2);

    let root = bootstrap_token(&service, "datahub").await;
    let all = http
        .graphql(&root, LIST, json!({"input": {"count": 10000, "filters": [{"field": "name", "value": "bootstrap", "negated": true}]}}))
        .await
        .data();
    let listed: BTreeSet<String> = all["listAccessTokens"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all["listAccessTokens"]["total"], expected.len());
    assert_eq!(listed, expected);
}
