//! Issue, list, revoke and validate [DataHub](https://datahubproject.io)
//! access tokens from Rust, wire-compatible with DataHub.
//!
//! Tokens are DataHub's HS256 JWTs ([`TokenCodec`]); a token's record
//! ([`StoredAccessToken`]: its id `b64(sha256(token || salt))` and
//! [`DataHubAccessTokenInfo`]) lives in a pluggable [`TokenStore`]; the
//! plaintext token is returned once, at creation, and never stored.
//! [`DataHubTokenService`] implements DataHub's operations with its
//! authorization rules, asking a [`PolicyEngine`] who holds the privileges
//! "Generate Personal Access Tokens" and "Manage All Access Tokens".
//!
//! ```
//! use datahub_access_tokens::{
//!     AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, Error,
//!     ListAccessTokenInput, MemoryTokenStore, Policies, TokenService, TokenServiceConfig, Urn,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datahub_access_tokens::Result<()> {
//! let service = DataHubTokenService::new(
//!     TokenServiceConfig::generate()?, // or TokenServiceConfig::from_env()?
//!     MemoryTokenStore::new(),
//!     Policies::datahub_defaults(),
//! );
//! let me = Urn::corp_user("datahub")?;
//!
//! let input = CreateAccessTokenInput::personal(me.as_str(), "ci", AccessTokenDuration::OneMonth);
//! let created = service.create_access_token(&me, input).await?;
//! let token = created.expose_access_token(); // shown once: hand it to the user
//!
//! let validated = service.validate_access_token(token).await?;
//! assert_eq!(validated.actor, me);
//!
//! let mine = service.list_access_tokens(&me, &ListAccessTokenInput::owned_by(&me, 20)).await?;
//! assert_eq!(mine.total, 1);
//!
//! service.revoke_access_token(&me, &mine.tokens[0].id).await?;
//! assert!(matches!(service.validate_access_token(token).await, Err(Error::Revoked)));
//! # Ok(())
//! # }
//! ```
//!
//! # Beyond DataHub
//!
//! Also on every store: when each token was last used (`lastUsedAt`,
//! recorded off the validation path, throttled per token:
//! [`TokenServiceConfig::with_last_used_interval_ms`],
//! [`TokenService::flush_last_used`]), rotation
//! ([`TokenService::rotate_access_token`]), audit events ([`AuditSink`]),
//! signing-key rotation ([`TokenServiceConfig::with_previous_signing_keys`])
//! and a limit of live tokens per owner
//! ([`TokenServiceConfig::with_max_tokens_per_owner`]).
//!
//! # Features
//!
//! * `fs` (default): [`FileTokenStore`], a durable, crash-safe store in a
//!   local directory, and [`TokenServiceConfig::load_or_generate_in`] (or
//!   [`load_or_generate_for_store`](TokenServiceConfig::load_or_generate_for_store)
//!   for tokens kept elsewhere), which keeps a generated key and salt there.
//! * `test-util`: the store conformance suite ([`store::conformance`]) for
//!   testing your own [`TokenStore`].
//! * `graphql`: DataHub's GraphQL token API as an async-graphql schema
//!   ([`graphql`]).
//! * `axum`: a Bearer authenticator for axum services and the router of
//!   `POST /api/graphql` ([`axum`](mod@crate::axum)).
//! * `postgres`: [`PostgresTokenStore`](store::PostgresTokenStore), tokens in
//!   PostgreSQL shared by many replicas, revocations pushed to every replica
//!   by `LISTEN/NOTIFY` ([`store::postgres`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod clock;
mod codec;
mod config;
mod duration;
mod error;
#[cfg(feature = "graphql")]
#[cfg_attr(docsrs, doc(cfg(feature = "graphql")))]
pub mod graphql;
mod last_used;
mod model;
mod policy;
mod service;
pub mod store;
mod urn;
mod verified;

#[cfg(test)]
mod test_log;

/// What an `#[async_trait]` method returns, for the forwarding impls that
/// hand on the inner value's future instead of boxing another around it.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub use audit::{AuditEvent, AuditEventKind, AuditSink, RecordingAuditSink, TracingAuditSink};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{AccessTokenClaims, TokenCodec, MAX_TOKEN_BYTES, VERSION_STATEFUL, VERSION_STATELESS};
#[cfg(feature = "fs")]
pub use config::SECRETS_FILE_NAME;
pub use config::{
    TokenServiceConfig, DEFAULT_ISSUER, DEFAULT_LAST_USED_INTERVAL_MS, DEFAULT_MAX_TOKENS_PER_OWNER,
    DEFAULT_SESSION_DURATION_MS, DEFAULT_VERIFIED_TOKEN_CACHE, ENV_ALLOWED_DURATIONS, ENV_ALLOW_NO_EXPIRY,
    ENV_ISSUER, ENV_LAST_USED_INTERVAL_MS, ENV_MAX_TOKENS_PER_OWNER, ENV_PREVIOUS_SIGNING_KEYS, ENV_SALT,
    ENV_SESSION_DURATION_MS, ENV_SIGNING_KEY, MIN_SIGNING_KEY_BYTES,
};
pub use duration::{AccessTokenDuration, DurationPolicy, IsoDuration, DEFAULT_ALLOWED_DURATIONS};
pub use error::{BoxError, Error, Result, UNAUTHORIZED_MESSAGE};
pub use model::{
    access_token_urn, AccessToken, AccessTokenMetadata, AccessTokenType, CreateAccessTokenInput,
    DataHubAccessTokenInfo, EntityType, FacetFilterInput, ListAccessTokenInput, ListAccessTokenResult,
    RotateAccessTokenInput, StoredAccessToken,
};
pub use policy::{Policies, PolicyEngine, Privilege, ROLE_ADMIN, ROLE_EDITOR, ROLE_READER, ROOT_USER};
pub use service::{
    DataHubTokenService, TokenService, ValidatedAccessToken, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS,
};
#[cfg(feature = "fs")]
pub use store::FileTokenStore;
pub use store::{MemoryTokenStore, TokenStore};
pub use urn::Urn;

/// The attribute the crate's async traits ([`TokenService`], [`TokenStore`],
/// [`PolicyEngine`]) are declared with; implement them with it too.
pub use async_trait::async_trait;
