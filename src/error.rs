//! The crate's one error type.

use std::error::Error as StdError;

/// A boxed error from a store backend, kept as the [`Error::Storage`] source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, named for what the caller can do about it.
///
/// Messages DataHub users already know are kept word for word: see
/// [`UNAUTHORIZED_MESSAGE`], [`Error::NotFound`], [`Error::Revoked`] and
/// [`Error::Expired`]. No message ever contains a token, a key or a salt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller lacks the privilege the operation needs (GraphQL code 403).
    #[error("Unauthorized to perform this action. Please contact your DataHub administrator.")]
    Unauthorized,

    /// The request itself is wrong; the message names what (GraphQL code 400).
    #[error("{0}")]
    InvalidInput(String),

    /// The access token the caller named (by id) does not exist.
    #[error("Access token no longer exists")]
    NotFound,

    /// A store was asked to insert a token whose id it already holds.
    #[error("an access token with id {id} already exists")]
    AlreadyExists {
        /// The token id (a hash, not the token).
        id: String,
    },

    /// The owner already holds as many live tokens as allowed; revoking one
    /// (or letting one expire) makes room.
    #[error(
        "{owner} already has {limit} live access tokens, the most allowed per owner \
         (limit {limit}); revoke one before creating another"
    )]
    LimitExceeded {
        /// The owner's urn.
        owner: String,
        /// The configured maximum of live tokens per owner.
        limit: usize,
    },

    /// The presented token is malformed, forged or unsupported.
    #[error("Failed to validate DataHub token: {0}")]
    InvalidToken(String),

    /// The presented token's `exp` has passed. A stored token is deleted.
    /// (DataHub's own words, with their full stop.)
    #[error("Failed to validate DataHub token. Token has expired.")]
    Expired,

    /// The presented token is genuine but no longer in the store.
    #[error("Failed to validate DataHub token: Token has been revoked")]
    Revoked,

    /// The service configuration is unusable (key, salt, durations, ...).
    #[error("invalid token service configuration: {0}")]
    Config(String),

    /// The token store or policy backend failed; the source says why.
    #[error("token storage failed: {context}")]
    Storage {
        /// What the store was doing.
        context: String,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

/// DataHub's message for a denied operation, word for word.
pub const UNAUTHORIZED_MESSAGE: &str =
    "Unauthorized to perform this action. Please contact your DataHub administrator.";

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// Shorthand for [`Error::InvalidToken`].
    pub fn invalid_token(reason: impl Into<String>) -> Self {
        Error::InvalidToken(reason.into())
    }

    /// Wraps a backend error as [`Error::Storage`], keeping it as the source.
    pub fn storage(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Storage {
            context: context.into(),
            source: source.into(),
        }
    }
}
