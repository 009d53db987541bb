//! DataHub's GraphQL token API (`auth.graphql`) as an
//! [async-graphql](https://docs.rs/async-graphql) schema (feature `graphql`).
//!
//! ```graphql
//! type Mutation {
//!   createAccessToken(input: CreateAccessTokenInput!): AccessToken
//!   revokeAccessToken(tokenId: String!): Boolean!
//!   # Ours, beyond DataHub's schema:
//!   rotateAccessToken(tokenId: String!, duration: AccessTokenDuration, durationIso: String): AccessToken
//! }
//! type Query {
//!   listAccessTokens(input: ListAccessTokenInput!): ListAccessTokenResult!
//!   getAccessTokenMetadata(token: String!): AccessTokenMetadata!
//! }
//! ```
//!
//! `AccessTokenMetadata` also has our `lastUsedAt: Long`.
//!
//! Build the schema over any [`TokenService`] with [`schema`], and give each
//! request the authenticated user as a [`Caller`]. Errors carry DataHub's
//! `extensions`: `{code: 403, type: "UNAUTHORIZED"}` for a denied operation,
//! `{code: 400, type: "BAD_REQUEST"}` for bad input (and for syntax or
//! validation errors in the query document), and `{code: 500, type:
//! "SERVER_ERROR"}` with the message [`SERVER_ERROR_MESSAGE`] when the store
//! fails (the details go to the `tracing` log). A query document that calls a
//! mutation field without the `mutation` keyword is rejected with a message
//! saying so.
//!
//! ```
//! use std::sync::Arc;
//! use datahub_access_tokens::graphql::{schema, Caller};
//! use datahub_access_tokens::{DataHubTokenService, MemoryTokenStore, Policies, TokenServiceConfig, Urn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = DataHubTokenService::new(
//!     TokenServiceConfig::generate()?,
//!     MemoryTokenStore::new(),
//!     Policies::datahub_defaults(),
//! );
//! let schema = schema(Arc::new(service));
//! let request = async_graphql::Request::new(
//!     r#"mutation { createAccessToken(input: {type: PERSONAL, actorUrn: "urn:li:corpuser:datahub",
//!          duration: ONE_HOUR, name: "ci"}) { accessToken metadata { id } } }"#,
//! )
//! .data(Caller(Urn::corp_user("datahub")?));
//! let response = schema.execute(request).await;
//! assert!(response.errors.is_empty());
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use async_graphql::{EmptySubscription, Schema};

use crate::service::TokenService;
use crate::urn::Urn;

mod errors;
mod extension;
mod resolvers;
mod types;

pub use errors::SERVER_ERROR_MESSAGE;
pub use resolvers::{MutationRoot, QueryRoot};

/// The token API schema.
pub type AccessTokenSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Deepest selection nesting accepted (GraphiQL's introspection query needs 13).
pub const MAX_QUERY_DEPTH: usize = 32;

/// Most work one request may ask for, in async-graphql's complexity: one
/// per field selected, and a listing's selection once per token its page
/// may hold. One page of the largest count with every field (about
/// 140,000) fits; aliases that repeat a listing do not multiply the
/// response beyond that.
pub const MAX_QUERY_COMPLEXITY: usize = 20 * crate::store::MAX_COUNT;

/// Most fields one request may select, counting each fragment spread as the
/// fragment's fields (GraphiQL's introspection query selects about 200).
/// Bounds what aliases and fragments can multiply: the engine's own checks
/// walk every spread again, and introspection fields cost no complexity.
pub const MAX_QUERY_FIELDS: usize = 1_000;

/// The authenticated user a request runs as; put it in the request's data
/// (`async_graphql::Request::data`). The HTTP router does this for you.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Urn);

/// The schema of DataHub's token API, resolving over `service`.
pub fn schema(service: Arc<dyn TokenService>) -> AccessTokenSchema {
    schema_builder(service).finish()
}

/// The builder of [`schema`], for adding extensions, data or tighter limits
/// of your own before `finish()`. It already holds `service`, DataHub's
/// error shape and the limits above (the field count among them, which
/// guards against fragments that multiply work); a schema built from
/// [`QueryRoot`] and [`MutationRoot`] alone would lack them.
pub fn schema_builder(
    service: Arc<dyn TokenService>,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(service)
        .extension(extension::RequestErrorsFactory)
        .limit_depth(MAX_QUERY_DEPTH)
        .limit_recursive_depth(MAX_QUERY_DEPTH)
        .limit_complexity(MAX_QUERY_COMPLEXITY)
}
