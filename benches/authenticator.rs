//! What the Bearer authenticator costs: requests per second of a no-op route
//! on loopback, with and without `BearerAuthenticator::layer()`, in one run.
//!
//! `cargo bench --bench authenticator --features axum`. Each iteration is one
//! HTTP/1 request over a kept-alive connection; `CONCURRENCY` clients send
//! in parallel, so the reported throughput is the server's requests per
//! second. The token is a stored (revocable) one, so each authenticated
//! request verifies the HS256 signature, hashes the token id and looks it up
//! in the store. Compare the two `elem/s` figures as a ratio.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datahub_access_tokens::axum::BearerAuthenticator;
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, MemoryTokenStore, Policies,
    TokenService, TokenServiceConfig, Urn,
};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const CONCURRENCY: u64 = 8;
/// Tokens in the store besides the one used, so the lookup is not trivially small.
const OTHER_TOKENS: usize = 10_000;

async fn start_server(authenticator: BearerAuthenticator) -> SocketAddr {
    let app = Router::new()
        .route("/noop-auth", get(|| async { "ok" }))
        .layer(authenticator.layer())
        .route("/noop", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn token_and_service() -> (String, Arc<dyn TokenService>) {
    let service: Arc<dyn TokenService> = Arc::new(DataHubTokenService::new(
        TokenServiceConfig::generate().unwrap(),
        MemoryTokenStore::new(),
        Policies::datahub_defaults(),
    ));
    let me = Urn::corp_user("bench").unwrap();
    for i in 0..OTHER_TOKENS {
        let input =
            CreateAccessTokenInput::personal(me.as_str(), format!("t{i}"), AccessTokenDuration::OneDay);
        service.create_access_token(&me, input).await.unwrap();
    }
    let input = CreateAccessTokenInput::personal(me.as_str(), "bench", AccessTokenDuration::OneDay);
    let token = service.create_access_token(&me, input).await.unwrap();
    (token.expose_access_token().to_owned(), service)
}

/// Sends `total` GETs from `CONCURRENCY` clients; returns the elapsed time.
async fn blast(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: &str,
    auth: Option<&str>,
    total: u64,
) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONCURRENCY {
        let share = total / CONCURRENCY + u64::from(c < total % CONCURRENCY);
        let (client, uri, auth) = (client.clone(), uri.to_owned(), auth.map(str::to_owned));
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                let mut request = Request::get(&uri);
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                let response = client.request(request.body(Empty::new()).unwrap()).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn authenticator(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (addr, auth, client) = runtime.block_on(async {
        let (token, service) = token_and_service().await;
        let addr = start_server(BearerAuthenticator::new(service)).await;
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        (addr, format!("Bearer {token}"), client)
    });
    let plain = format!("http://{addr}/noop");
    let guarded = format!("http://{addr}/noop-auth");
    // Make sure the guarded route really refuses strangers before measuring it.
    runtime.block_on(async {
        let response = client
            .request(Request::get(&guarded).body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    });

    let mut group = c.benchmark_group("authenticator");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("noop route, no authentication", |b| {
        b.to_async(&runtime)
            .iter_custom(|iters| blast(&client, &plain, None, iters));
    });
    group.bench_function("noop route, Bearer authenticator", |b| {
        b.to_async(&runtime)
            .iter_custom(|iters| blast(&client, &guarded, Some(&auth), iters));
    });
    group.finish();
}

criterion_group!(benches, authenticator);
criterion_main!(benches);
