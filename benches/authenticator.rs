//! What the Bearer authenticator costs: requests per second of a no-op route
//! on loopback, with and without `BearerAuthenticator::layer()`, in one run.
//!
//! `cargo bench --bench authenticator --features axum`. Each iteration is one
//! HTTP/1 request over a kept-alive connection, with the same `Authorization`
//! header on both routes so that only the authenticator differs; `CONCURRENCY` clients send
//! in parallel, so the reported throughput is the server's requests per
//! second. The token is a stored (revocable) one, so each authenticated
//! request hashes the token id, finds it in the memo of verified tokens (the
//! HS256 signature and claims are checked on the first request only), and
//! checks expiry and revocation in the store. Compare the two `elem/s` figures as a ratio. A third
//! benchmark times `authenticate()` alone, the work the layer adds. Last, an
//! interleaved run (short rounds of both routes, alternating) prints the
//! median ratio, which holds up on a machine whose load drifts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, Criterion, Throughput};
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
async fn blast(client: &Client<HttpConnector, Empty<Bytes>>, uri: &str, auth: &str, total: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONCURRENCY {
        let share = total / CONCURRENCY + u64::from(c < total % CONCURRENCY);
        let (client, uri, auth) = (client.clone(), uri.to_owned(), auth.to_owned());
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                let request = Request::get(&uri).header("Authorization", &auth);
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
    let (addr, auth, client, authenticator) = runtime.block_on(async {
        let (token, service) = token_and_service().await;
        let authenticator = BearerAuthenticator::new(service);
        let addr = start_server(authenticator.clone()).await;
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        (addr, format!("Bearer {token}"), client, authenticator)
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
            .iter_custom(|iters| blast(&client, &plain, &auth, iters));
    });
    group.bench_function("noop route, Bearer authenticator", |b| {
        b.to_async(&runtime)
            .iter_custom(|iters| blast(&client, &guarded, &auth, iters));
    });
    // The authenticator's own work per request, without HTTP: what the
    // difference between the two routes should be, free of loopback noise.
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
    group.bench_function("authenticate() alone", |b| {
        b.to_async(&runtime)
            .iter(|| async { authenticator.authenticate(&headers).await.unwrap() });
    });
    group.finish();
}

/// Requests per round of the interleaved comparison.
const ROUND_REQUESTS: u64 = 3_000;
/// Rounds of the interleaved comparison (each: both routes, order alternating).
const ROUNDS: usize = 60;

/// The same comparison, robust to a machine whose load drifts (other builds
/// on the same cores): short rounds of both routes back to back, alternating
/// which goes first; the per-round throughput ratios' median and quartiles.
fn interleaved() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (token, service) = token_and_service().await;
        let addr = start_server(BearerAuthenticator::new(service)).await;
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let (plain, guarded, auth) = (
            format!("http://{addr}/noop"),
            format!("http://{addr}/noop-auth"),
            format!("Bearer {token}"),
        );
        blast(&client, &plain, &auth, ROUND_REQUESTS).await; // warm-up
        blast(&client, &guarded, &auth, ROUND_REQUESTS).await;
        let rps = |elapsed: Duration| ROUND_REQUESTS as f64 / elapsed.as_secs_f64();
        let (mut ratios, mut plain_rps, mut guarded_rps) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (p, g) = if round % 2 == 0 {
                let p = blast(&client, &plain, &auth, ROUND_REQUESTS).await;
                (p, blast(&client, &guarded, &auth, ROUND_REQUESTS).await)
            } else {
                let g = blast(&client, &guarded, &auth, ROUND_REQUESTS).await;
                (blast(&client, &plain, &auth, ROUND_REQUESTS).await, g)
            };
            plain_rps.push(rps(p));
            guarded_rps.push(rps(g));
            ratios.push(rps(g) / rps(p));
        }
        let quartiles = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
        };
        let (_, plain_median, _) = quartiles(&mut plain_rps);
        let (_, guarded_median, _) = quartiles(&mut guarded_rps);
        let (q1, median, q3) = quartiles(&mut ratios);
        println!(
            "authenticator/interleaved: {ROUNDS} rounds of {ROUND_REQUESTS} requests per route\n  \
             median requests/s: no authentication {plain_median:.0}, Bearer authenticator {guarded_median:.0}\n  \
             throughput ratio authenticated / unauthenticated: median {median:.3} (quartiles {q1:.3} .. {q3:.3}); \
             cost {:.1}% of throughput",
            (1.0 - median) * 100.0
        );
    });
}

criterion_group!(benches, authenticator);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved();
}
