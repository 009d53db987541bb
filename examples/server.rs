//! `server`: DataHub's token API over HTTP, ready to run.
//!
//! ```sh
//! cargo run --example server --features axum -- --insecure-trust-actor-header   # try it with the docs' curl commands
//! cargo run --example server --features axum                                    # Bearer tokens only
//! ```
//!
//! Serves on `127.0.0.1:8080` (`--listen ADDR`):
//!
//! * `POST /api/graphql`: DataHub's GraphQL token API (`createAccessToken`,
//!   `revokeAccessToken`, `listAccessTokens`, `getAccessTokenMetadata`,
//!   and our `rotateAccessToken`), bodies up to 1 MiB;
//! * `GET /api/graphiql`: a GraphiQL page for trying it in a browser;
//! * `GET /api/whoami`: a route of "your own service" behind the same Bearer
//!   authenticator, answering the caller's urn;
//! * `GET /health`: `{"status":"ok"}`, unauthenticated.
//!
//! Requests authenticate with `Authorization: Bearer <token>`. Tokens live
//! in a `FileTokenStore` in `./datahub-tokens` (`--data-dir DIR`); the key
//! and salt come from `DATAHUB_TOKEN_SERVICE_SIGNING_KEY` and
//! `DATAHUB_TOKEN_SERVICE_SALT`, or when both are unset from a file in the
//! data directory generated on first start, exactly as `tokenctl` does, so
//! `tokenctl create` (with the server stopped: the store is locked while
//! open) mints the first token. Who may do what follows DataHub's default
//! policies, or a JSON file (`--policies FILE`, format of `Policies::from_json`).
//!
//! With the `postgres` feature, `--postgres-url URL` keeps the tokens in
//! PostgreSQL instead (`PostgresTokenStore`, table in `--postgres-schema`,
//! default `public`), so several servers on different ports or machines
//! share them and a token revoked on one fails on all within milliseconds.
//! They must share the key and salt too: set the two variables, or give
//! them the same `--data-dir`.
//!
//! ```sh
//! cargo run --example server --features axum,postgres -- --listen 127.0.0.1:8080 \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! `--insecure-trust-actor-header` trusts `X-DataHub-Actor: <user urn>` as
//! DataHub does with authentication disabled: anyone who can reach the port
//! can act as anyone. It prints a warning at start. Expired tokens are
//! purged hourly, like DataHub's cleanup job.
//!
//! A client gets 30 s to send a request's headers and 30 s for the whole
//! request, so a stalled or slow client cannot hold a connection forever.
//! Ctrl-C (or SIGTERM, what `docker stop` and systemd send) stops the
//! server: it stops accepting, waits for open requests at most 10 s
//! (`--grace-period SECONDS`; a second Ctrl-C stops waiting), then records
//! when tokens were last used and closes the store (its lock released).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator, GraphQlApi, DEFAULT_BODY_LIMIT};
use datahub_access_tokens::{
    DataHubTokenService, FileTokenStore, Policies, TokenService, TokenServiceConfig, TokenStore,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The command line. No `Debug`: `--postgres-url` may hold a password.
#[derive(Parser, Clone)]
#[command(
    name = "server",
    about = "Serve DataHub's GraphQL access token API (POST /api/graphql) with Bearer authentication"
)]
pub struct Options {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the tokens (and the generated key and salt, unless
    /// DATAHUB_TOKEN_SERVICE_SIGNING_KEY and DATAHUB_TOKEN_SERVICE_SALT are set).
    #[arg(long, value_name = "DIR", default_value = "./datahub-tokens")]
    pub data_dir: PathBuf,
    /// JSON file of privileges (see Policies::from_json); default: DataHub's
    /// default policies.
    #[arg(long, value_name = "FILE")]
    pub policies: Option<PathBuf>,
    /// INSECURE: trust the X-DataHub-Actor header as the caller, as DataHub
    /// does with authentication disabled. Only on a machine you trust.
    #[arg(long)]
    pub insecure_trust_actor_header: bool,
    /// At a stop, how long to wait for open requests before closing the
    /// store anyway.
    #[arg(long, value_name = "SECONDS", default_value_t = GRACE_PERIOD.as_secs())]
    pub grace_period: u64,
    /// Keep the tokens in this PostgreSQL database instead of the data
    /// directory (e.g. postgres://user@host/db?application_name=server-1).
    #[cfg(feature = "postgres")]
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// The schema holding the PostgreSQL table (created if missing).
    #[cfg(feature = "postgres")]
    #[arg(long, value_name = "NAME", default_value = datahub_access_tokens::store::postgres::DEFAULT_SCHEMA, requires = "postgres_url")]
    pub postgres_schema: String,
}

/// Where the tokens live, and what to let go of at shutdown.
enum Storage {
    File(FileTokenStore),
    #[cfg(feature = "postgres")]
    Postgres(datahub_access_tokens::store::PostgresTokenStore),
}

impl Storage {
    async fn open(options: &Options) -> Result<Self, Box<dyn Error>> {
        #[cfg(feature = "postgres")]
        if let Some(url) = &options.postgres_url {
            use datahub_access_tokens::store::postgres::{PostgresStoreOptions, PostgresTokenStore};
            let settings = PostgresStoreOptions::new().with_schema(&options.postgres_schema);
            return Ok(Storage::Postgres(
                PostgresTokenStore::connect_with(url, settings).await?,
            ));
        }
        Ok(Storage::File(FileTokenStore::open(&options.data_dir).await?))
    }

    fn shared(&self) -> Arc<dyn TokenStore> {
        match self {
            Storage::File(store) => Arc::new(store.clone()),
            #[cfg(feature = "postgres")]
            Storage::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Flushes and unlocks the file store; closes the database pool.
    async fn close(self) -> Result<(), String> {
        match self {
            Storage::File(store) => store
                .close()
                .await
                .map_err(|e| format!("closing the token store failed: {e}")),
            #[cfg(feature = "postgres")]
            Storage::Postgres(store) => {
                store.pool().close().await;
                Ok(())
            }
        }
    }

    fn describe(&self, options: &Options) -> String {
        match self {
            Storage::File(_) => format!("tokens in {}", options.data_dir.display()),
            #[cfg(feature = "postgres")]
            Storage::Postgres(store) => format!("tokens in PostgreSQL table {}", store.qualified_table()),
        }
    }
}

/// What `--insecure-trust-actor-header` prints at start.
pub const INSECURE_WARNING: &str = "WARNING: --insecure-trust-actor-header: requests carrying \
    'X-DataHub-Actor: <urn>' act as that user without any token. Anyone who can reach this \
    port can create, list and revoke tokens as anyone. Use only on a machine you trust.";

/// How often expired tokens are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);

/// How long a client may take to send a request's headers (hyper's default,
/// which applies only once hyper has a timer).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request may take, its body included; then `408 Request Timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// At a stop, how long open requests get to finish (`--grace-period`).
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Where a server is in stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Stop accepting; give open requests the grace period.
    Gracefully,
    /// Stop waiting for open requests.
    Now,
}

/// A running server.
pub struct Server {
    /// Where it listens (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// The token service behind the API.
    pub service: Arc<dyn TokenService>,
    /// Where the tokens are kept, for people.
    pub storage: String,
    stop: watch::Sender<Stop>,
    task: JoinHandle<Result<(), String>>,
}

impl Server {
    /// Stops accepting, waits for open requests at most the grace period,
    /// records when tokens were last used, closes the store.
    pub async fn stop(self) -> Result<(), String> {
        let Server { stop, task, .. } = self;
        stop.send_replace(Stop::Gracefully);
        task.await.map_err(|e| e.to_string())?
    }

    /// Runs until the server fails or a stop signal arrives, then stops it
    /// as [`Server::stop`] does; a second signal stops waiting for open
    /// requests (the store is still closed).
    pub async fn run_until_signalled(self, mut signals: StopSignals) -> Result<(), String> {
        let Server { stop, mut task, .. } = self;
        for (next, said) in [
            (
                Stop::Gracefully,
                "stopping (Ctrl-C again to stop without waiting for open requests)",
            ),
            (Stop::Now, "stopping now"),
        ] {
            tokio::select! {
                result = &mut task => return result.map_err(|e| e.to_string())?,
                () = signals.recv() => {
                    eprintln!("{said}");
                    stop.send_replace(next);
                }
            }
        }
        task.await.map_err(|e| e.to_string())?
    }
}

/// Ctrl-C, and on Unix SIGTERM too (what `docker stop` and systemd send).
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening: from now on the signals no longer kill the process.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// The next signal.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds, opens the store, builds the app and starts serving in the background.
pub async fn start(options: Options) -> Result<Server, Box<dyn Error>> {
    // Read and bind before the store is opened: a bad file or a taken port
    // then leaves no store to close (dropped unclosed, a file store lets go
    // of its lock only later).
    let policies = match &options.policies {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the policies file {}: {e}", path.display()))?;
            Policies::from_json(&text)?
        }
        None => Policies::datahub_defaults(),
    };
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener.local_addr()?;
    let storage = Storage::open(&options).await?;
    // After the store: a key is generated only while the store is empty.
    let config =
        match TokenServiceConfig::load_or_generate_for_store(&options.data_dir, &*storage.shared()).await {
            Ok(config) => config,
            Err(error) => {
                if let Err(closing) = storage.close().await {
                    tracing::warn!("{closing}");
                }
                return Err(error.into());
            }
        };
    let description = storage.describe(&options);
    let service: Arc<dyn TokenService> =
        Arc::new(DataHubTokenService::new(config, storage.shared(), policies));

    let mut authenticator = BearerAuthenticator::new(service.clone());
    if options.insecure_trust_actor_header {
        eprintln!("{INSECURE_WARNING}");
        authenticator = authenticator.insecure_trust_actor_header();
    }
    let app = Router::new()
        .route("/api/whoami", get(whoami))
        .layer(authenticator.layer())
        .merge(
            GraphQlApi::new(authenticator)
                .with_body_limit(DEFAULT_BODY_LIMIT)
                .router(),
        )
        .route(
            "/health",
            get(|| async { json_response(json!({"status": "ok"})) }),
        )
        .layer(middleware::from_fn(time_limit));

    let (stop, stopping) = watch::channel(Stop::Running);
    let grace = Duration::from_secs(options.grace_period);
    let purger = tokio::spawn(purge_expired_forever(service.clone()));
    let serving = service.clone();
    let task = tokio::spawn(async move {
        serve(listener, app, stopping, grace).await;
        purger.abort();
        // The last uses noted before the stop, then the store.
        if let Err(error) = serving.flush_last_used().await {
            tracing::warn!(%error, "recording when tokens were last used failed at shutdown");
        }
        storage.close().await
    });
    Ok(Server {
        addr,
        service,
        storage: description,
        stop,
        task,
    })
}

/// Serves `app` until told to stop, then waits for open requests at most
/// `grace` (or until told to stop now).
///
/// Not `axum::serve`: it gives hyper no timer, so hyper's header read
/// timeout never applies and a client that stops mid-request keeps its
/// connection, and any stop waiting for it, forever.
async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<Stop>, grace: Duration) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = async { stop.wait_for(|now| *now != Stop::Running).await.is_ok() } => break,
        };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "connections still open after the grace period: stopping without them");
        }
        true = async { stop.wait_for(|now| *now == Stop::Now).await.is_ok() } => {}
    }
}

/// Answers `408 Request Timeout` to a request (its body included) that takes
/// longer than [`REQUEST_TIMEOUT`].
async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// A service's own route, protected by the same tokens.
async fn whoami(who: Authenticated) -> Response {
    json_response(json!({ "actorUrn": who.actor.as_str(), "tokenId": who.token.and_then(|t| t.token_id) }))
}

fn json_response(value: Value) -> Response {
    ([(CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn purge_expired_forever(service: Arc<dyn TokenService>) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        every.tick().await;
        match service.purge_expired().await {
            Ok(ids) if !ids.is_empty() => tracing::info!(count = ids.len(), "purged expired tokens"),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "purging expired tokens failed"),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing::Level::INFO)
        .init();
    let options = Options::parse();
    let signals = match StopSignals::listen() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("server: cannot listen for signals: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let server = match start(options).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("server: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "serving DataHub's token API on http://{}/api/graphql (GraphiQL: http://{}/api/graphiql), {}",
        server.addr, server.addr, server.storage
    );
    match server.run_until_signalled(signals).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
