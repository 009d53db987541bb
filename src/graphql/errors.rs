//! DataHub's GraphQL error shape: `extensions: {code, type, classification}`.

use async_graphql::{ErrorExtensionValues, ServerError};

use crate::error::{Error, UNAUTHORIZED_MESSAGE};

/// DataHub's message for a failure whose details stay in the server log.
pub const SERVER_ERROR_MESSAGE: &str = "An unknown error occurred.";

/// The `extensions.code` / `extensions.type` pairs DataHub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    BadRequest,
    Unauthenticated,
    Unauthorized,
    ServerError,
}

impl ErrorCode {
    pub(crate) fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::Unauthorized => 403,
            Self::ServerError => 500,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::ServerError => "SERVER_ERROR",
        }
    }

    fn set_on(self, extensions: &mut ErrorExtensionValues, classification: &str) {
        extensions.set("code", self.status());
        extensions.set("type", self.name());
        extensions.set("classification", classification);
    }
}

/// A resolver's error as DataHub reports it. Storage and configuration
/// failures are logged (with their source chain, never a token) and shown
/// only as [`SERVER_ERROR_MESSAGE`].
pub(crate) fn resolver_error(error: Error) -> async_graphql::Error {
    let (code, message) = match &error {
        Error::Unauthorized => (ErrorCode::Unauthorized, UNAUTHORIZED_MESSAGE.to_owned()),
        Error::InvalidInput(_)
        | Error::NotFound
        | Error::AlreadyExists { .. }
        | Error::InvalidToken(_)
        | Error::Expired
        | Error::Revoked
        | Error::LimitExceeded { .. } => (ErrorCode::BadRequest, error.to_string()),
        Error::Storage { .. } | Error::Config(_) => {
            tracing::error!(error = %error_chain(&error), "token operation failed");
            (ErrorCode::ServerError, SERVER_ERROR_MESSAGE.to_owned())
        }
    };
    coded_error(code, message)
}

/// An error with DataHub's extensions for `code`.
pub(crate) fn coded_error(code: ErrorCode, message: impl Into<String>) -> async_graphql::Error {
    let mut error = async_graphql::Error::new(message);
    code.set_on(
        error.extensions.get_or_insert_with(Default::default),
        "DataFetchingException",
    );
    error
}

/// Marks a request error (syntax, validation, variables) as DataHub's
/// `400 / BAD_REQUEST`, keeping any code already set.
pub(crate) fn mark_request_error(mut error: ServerError) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        ErrorCode::BadRequest.set_on(extensions, "ValidationError");
    }
    error
}

/// `error: source: source...`, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
