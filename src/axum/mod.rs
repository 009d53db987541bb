//! axum integration (feature `axum`): the Bearer authenticator any service
//! can put in front of its own routes, and the router serving DataHub's
//! GraphQL token API at `POST /api/graphql`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator, GraphQlApi};
//! use datahub_access_tokens::{DataHubTokenService, MemoryTokenStore, Policies, TokenServiceConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let service = DataHubTokenService::new(
//!     TokenServiceConfig::from_env()?,
//!     MemoryTokenStore::new(),
//!     Policies::datahub_defaults(),
//! );
//! let authenticator = BearerAuthenticator::new(Arc::new(service));
//! let app = Router::new()
//!     // The service's own routes, protected by the same tokens.
//!     .route("/reports", get(|who: Authenticated| async move { format!("hello {}", who.actor) }))
//!     .layer(authenticator.layer())
//!     // POST /api/graphql (authenticated) and GET /api/graphiql.
//!     .merge(GraphQlApi::new(authenticator).router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

use ::axum::extract::DefaultBodyLimit;
use ::axum::response::Html;
use ::axum::routing::{get, post};
use ::axum::Router;

mod auth;
mod graphql;
mod response;

pub use auth::{
    AuthRejection, Authenticated, BearerAuthenticator, RequireBearer, RequireBearerLayer, ACTOR_HEADER,
};

/// Largest request body `/api/graphql` reads by default: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The GraphiQL page served at `GET /api/graphiql`.
const GRAPHIQL_HTML: &str = include_str!("graphiql.html");

/// Builds the router of DataHub's GraphQL token API.
///
/// * `POST /api/graphql`: requests authenticate with the
///   [`BearerAuthenticator`]; the body is a JSON GraphQL request of at most
///   the body limit ([`DEFAULT_BODY_LIMIT`]). As in DataHub, errors of the
///   document (resolvers, syntax, validation) come back with `200` and
///   DataHub's `errors[].extensions` (`403 UNAUTHORIZED`, `400
///   BAD_REQUEST`, `500 SERVER_ERROR`); a body that is not a GraphQL
///   request is `400`, a body over the limit `413`, a body that is not
///   `application/json` `415`, and a failed authentication `401`.
/// * `GET /api/graphiql`: a GraphiQL page for trying the API in a browser
///   (it loads exact versions of GraphiQL and React from unpkg.com, each
///   pinned by its hash); [`with_graphiql`](Self::with_graphiql) turns it off.
#[derive(Debug, Clone)]
pub struct GraphQlApi {
    authenticator: BearerAuthenticator,
    body_limit: usize,
    graphiql: bool,
}

impl GraphQlApi {
    /// The API over the authenticator's token service.
    pub fn new(authenticator: BearerAuthenticator) -> Self {
        GraphQlApi {
            authenticator,
            body_limit: DEFAULT_BODY_LIMIT,
            graphiql: true,
        }
    }

    /// Sets the largest request body read, in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Serves (the default) or omits the GraphiQL page.
    pub fn with_graphiql(mut self, enabled: bool) -> Self {
        self.graphiql = enabled;
        self
    }

    /// The routes, ready to merge or nest into a service's app.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let state = graphql::GraphQlState {
            schema: crate::graphql::schema(self.authenticator.service().clone()),
            body_limit: self.body_limit,
        };
        // Authenticate before reading the body: strangers cannot make us buffer 1 MiB.
        let endpoint = post(graphql::post_graphql)
            .route_layer(DefaultBodyLimit::max(self.body_limit))
            .route_layer(self.authenticator.layer())
            .with_state(state);
        let router = Router::new().route("/api/graphql", endpoint);
        if self.graphiql {
            router.route("/api/graphiql", get(|| async { Html(GRAPHIQL_HTML) }))
        } else {
            router
        }
    }
}
