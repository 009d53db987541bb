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
//!   `revokeAccessToken`, `listAccessTokens`, `getAccessTokenMetadata`),
//!   bodies up to 1 MiB;
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
//! purged hourly, like DataHub's cleanup job. Ctrl-C stops the server
//! cleanly (the store is closed and its lock released).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator, GraphQlApi, DEFAULT_BODY_LIMIT};
use datahub_access_tokens::{
    DataHubTokenService, FileTokenStore, Policies, TokenService, TokenServiceConfig, TokenStore,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The command line.
#[derive(Parser, Debug, Clone)]
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

/// A running server.
pub struct Server {
    /// Where it listens (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// The token service behind the API.
    pub service: Arc<dyn TokenService>,
    /// Where the tokens are kept, for people.
    pub storage: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), String>>,
}

impl Server {
    /// Stops accepting, finishes open requests, closes the store.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.task.await.map_err(|e| e.to_string())?
    }

    /// Runs until the server fails or `shutdown` completes, then stops it.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
        let Server { stop, mut task, .. } = self;
        tokio::select! {
            _ = shutdown => {
                let _ = stop.send(());
                task.await.map_err(|e| e.to_string())?
            }
            result = &mut task => result.map_err(|e| e.to_string())?,
        }
    }
}

/// Opens the store, builds the app and starts serving in the background.
pub async fn start(options: Options) -> Result<Server, Box<dyn Error>> {
    let config = TokenServiceConfig::load_or_generate_in(&options.data_dir)?;
    // Read before the store is opened: a bad file then leaves no store to
    // close (dropped unclosed, a file store lets go of its lock only later).
    let policies = match &options.policies {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the policies file {}: {e}", path.display()))?;
            Policies::from_json(&text)?
        }
        None => Policies::datahub_defaults(),
    };
    let storage = Storage::open(&options).await?;
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
        );

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let purger = tokio::spawn(purge_expired_forever(service.clone()));
    let serving = service.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| format!("server failed: {e}"));
        purger.abort();
        // The last uses noted before the stop, then the store.
        if let Err(error) = serving.flush_last_used().await {
            tracing::warn!(%error, "recording when tokens were last used failed at shutdown");
        }
        let closed = storage.close().await;
        served.and(closed)
    });
    Ok(Server {
        addr,
        service,
        storage: description,
        stop,
        task,
    })
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
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping");
    };
    match server.run_until(ctrl_c).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
