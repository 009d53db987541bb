//! The Bearer authenticator: DataHub's `Authorization: Bearer <token>`
//! check as a tower layer, and the [`Authenticated`] extractor handlers use.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use ::axum::extract::FromRequestParts;
use ::axum::http::header::AUTHORIZATION;
use ::axum::http::request::Parts;
use ::axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use ::axum::response::{IntoResponse, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::response::error_response;
use crate::error::Error;
use crate::service::{TokenService, ValidatedAccessToken};
use crate::urn::Urn;

/// The header DataHub trusts for the actor when authentication is disabled.
pub const ACTOR_HEADER: &str = "X-DataHub-Actor";

const ACTOR_HEADER_LOWER: HeaderName = HeaderName::from_static("x-datahub-actor");

/// Checks `Authorization: Bearer <token>` headers against a [`TokenService`].
///
/// As in DataHub, the header name is case-insensitive, the prefix is
/// `Bearer ` or `bearer `, and failures are `401` with DataHub's messages
/// (`Request is missing 'Authorization' header.`, `Authorization header
/// missing 'Bearer' prefix.`, `Unable to verify the provided token.`). A
/// revoked token fails at once. Put [`layer`](Self::layer) in front of routes
/// and read the caller with the [`Authenticated`] extractor:
///
/// ```no_run
/// use std::sync::Arc;
/// use axum::{routing::get, Router};
/// use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator};
/// use datahub_access_tokens::{DataHubTokenService, MemoryTokenStore, Policies, TokenServiceConfig};
///
/// async fn whoami(Authenticated { actor, .. }: Authenticated) -> String {
///     actor.to_string()
/// }
///
/// # fn main() -> datahub_access_tokens::Result<()> {
/// let service = DataHubTokenService::new(
///     TokenServiceConfig::from_env()?,
///     MemoryTokenStore::new(),
///     Policies::datahub_defaults(),
/// );
/// let authenticator = BearerAuthenticator::new(Arc::new(service));
/// let app: Router = Router::new().route("/whoami", get(whoami)).layer(authenticator.layer());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BearerAuthenticator {
    service: Arc<dyn TokenService>,
    trust_actor_header: bool,
    /// Set once the log has said why a request carrying an untrusted
    /// [`ACTOR_HEADER`] was refused (shared by clones).
    untrusted_actor_header_noted: Arc<AtomicBool>,
}

impl BearerAuthenticator {
    /// Validates Bearer tokens with `service`.
    pub fn new(service: Arc<dyn TokenService>) -> Self {
        BearerAuthenticator {
            service,
            trust_actor_header: false,
            untrusted_actor_header_noted: Arc::default(),
        }
    }

    /// **INSECURE.** Trusts the [`ACTOR_HEADER`] (`X-DataHub-Actor: <user
    /// urn>`) when a request carries it, as DataHub does with authentication
    /// disabled: anyone who can reach the server can act as anyone. Requests
    /// without the header, or with it empty (as DataHub treats it), still
    /// need a Bearer token. Only for local trials.
    pub fn insecure_trust_actor_header(mut self) -> Self {
        self.trust_actor_header = true;
        self
    }

    /// Whether [`ACTOR_HEADER`] is trusted.
    pub fn trusts_actor_header(&self) -> bool {
        self.trust_actor_header
    }

    /// The service tokens are validated with.
    pub fn service(&self) -> &Arc<dyn TokenService> {
        &self.service
    }

    /// A tower layer that authenticates every request, rejects failures, and
    /// hands the handler an [`Authenticated`].
    pub fn layer(&self) -> RequireBearerLayer {
        RequireBearerLayer {
            authenticator: self.clone(),
        }
    }

    /// Authenticates a request by its headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, AuthRejection> {
        if self.trust_actor_header {
            // Empty counts as absent, as in DataHub's `NoOpAuthenticator`
            // (a proxy may set the header to nothing).
            let actor = single_header(headers, &ACTOR_HEADER_LOWER, ACTOR_HEADER)?;
            if let Some(value) = actor.filter(|value| !value.is_empty()) {
                return trusted_actor(value);
            }
        }
        let Some(value) = single_header(headers, &AUTHORIZATION, "Authorization")? else {
            self.note_untrusted_actor_header(headers);
            return Err(AuthRejection::new(Kind::MissingHeader));
        };
        let value = value.to_str().map_err(|_| {
            AuthRejection::new(Kind::Malformed(
                "Authorization header is not printable ASCII text.".into(),
            ))
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AuthRejection::new(Kind::MissingBearerPrefix))?;
        match self.service.validate_access_token(token.trim()).await {
            Ok(validated) => Ok(Authenticated {
                actor: validated.actor.clone(),
                token: Some(validated),
            }),
            Err(error @ (Error::Storage { .. } | Error::Config(_))) => {
                tracing::error!(error = %error, "token validation failed");
                Err(AuthRejection::with_source(Kind::Internal, error))
            }
            Err(error) => Err(AuthRejection::with_source(Kind::InvalidToken, error)),
        }
    }
}

impl BearerAuthenticator {
    /// Says once in the log why a request carrying [`ACTOR_HEADER`] but no
    /// token was refused: the answer is DataHub's, which does not mention
    /// the header, and DataHub's documentation sends it in every example.
    fn note_untrusted_actor_header(&self, headers: &HeaderMap) {
        if !self.trust_actor_header
            && headers.contains_key(&ACTOR_HEADER_LOWER)
            && !self.untrusted_actor_header_noted.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "a request carried {ACTOR_HEADER} and no Bearer token: refused with DataHub's \
                 \"Request is missing 'Authorization' header.\", since this server does not trust \
                 the header. DataHub trusts it only with authentication disabled; the same here is \
                 BearerAuthenticator::insecure_trust_actor_header, for local trials only. Said once."
            );
        }
    }
}

/// The one value of a header; more than one is refused as ambiguous.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    display: &str,
) -> Result<Option<&'h HeaderValue>, AuthRejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthRejection::new(Kind::Malformed(format!(
            "Request has more than one '{display}' header."
        ))));
    }
    Ok(first)
}

fn trusted_actor(value: &HeaderValue) -> Result<Authenticated, AuthRejection> {
    let invalid = |why: String| {
        AuthRejection::new(Kind::Malformed(format!(
            "{ACTOR_HEADER} header must be a user urn (urn:li:corpuser:<id>): {why}"
        )))
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("it is not printable ASCII text".into()))?;
    let actor = Urn::parse(text.trim()).map_err(|e| invalid(e.to_string()))?;
    if !actor.is_corp_user() {
        return Err(invalid(format!("got {actor}")));
    }
    Ok(Authenticated { actor, token: None })
}

/// The authenticated caller of a request, put there by
/// [`BearerAuthenticator::layer`]. Use it as an extractor. Non-exhaustive,
/// so fields can be added; build one with [`Authenticated::new`] (to test
/// a handler, say).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The user the request acts as.
    pub actor: Urn,
    /// The validated token; `None` when the actor came from a trusted
    /// [`ACTOR_HEADER`].
    pub token: Option<ValidatedAccessToken>,
}

impl Authenticated {
    /// A caller with these fields.
    pub fn new(actor: Urn, token: Option<ValidatedAccessToken>) -> Self {
        Authenticated { actor, token }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Authenticated>().cloned().ok_or_else(|| {
            // A wiring mistake in the service, not the client's fault.
            tracing::error!("Authenticated extracted on a route without BearerAuthenticator::layer()");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SERVER_ERROR",
                "This route is not behind the Bearer authenticator.",
                None,
            )
        })
    }
}

#[derive(Debug)]
enum Kind {
    MissingHeader,
    MissingBearerPrefix,
    Malformed(String),
    InvalidToken,
    Internal,
}

/// Why a request was not authenticated: `401` (or `500` if the store
/// failed) with DataHub's message, as a JSON `errors` body and a
/// `WWW-Authenticate: Bearer` header.
#[derive(Debug)]
pub struct AuthRejection {
    kind: Kind,
    source: Option<Error>,
}

impl AuthRejection {
    fn new(kind: Kind) -> Self {
        AuthRejection { kind, source: None }
    }

    fn with_source(kind: Kind, source: Error) -> Self {
        AuthRejection {
            kind,
            source: Some(source),
        }
    }

    /// The HTTP status: `401 Unauthorized`, or `500` when the token store failed.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        match &self.kind {
            Kind::MissingHeader => "Request is missing 'Authorization' header.",
            Kind::MissingBearerPrefix => "Authorization header missing 'Bearer' prefix.",
            Kind::Malformed(message) => message,
            Kind::InvalidToken => "Unable to verify the provided token.",
            Kind::Internal => crate::graphql::SERVER_ERROR_MESSAGE,
        }
    }

    /// Why the token failed validation (e.g. [`Error::Revoked`]), if it did.
    pub fn token_error(&self) -> Option<&Error> {
        self.source.as_ref()
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AuthRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        if let Kind::Internal = self.kind {
            return error_response(self.status(), "SERVER_ERROR", self.message(), None);
        }
        // The validation failure's reason (revoked, expired, bad signature) helps
        // the token's holder and tells an attacker nothing they did not send.
        let reason = self.source.as_ref().map(ToString::to_string);
        let mut response = error_response(
            self.status(),
            "UNAUTHENTICATED",
            self.message(),
            reason.as_deref(),
        );
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        response
    }
}

/// The layer made by [`BearerAuthenticator::layer`].
#[derive(Debug, Clone)]
pub struct RequireBearerLayer {
    authenticator: BearerAuthenticator,
}

impl<S> Layer<S> for RequireBearerLayer {
    type Service = RequireBearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireBearer {
            authenticator: self.authenticator.clone(),
            inner,
        }
    }
}

/// The service made by [`RequireBearerLayer`]: authenticates, then calls
/// the inner service with [`Authenticated`] in the request extensions.
#[derive(Debug, Clone)]
pub struct RequireBearer<S> {
    authenticator: BearerAuthenticator,
    inner: S,
}

impl<S, B> Service<Request<B>> for RequireBearer<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service that was polled ready is the one to call; keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            match authenticator.authenticate(request.headers()).await {
                Ok(authenticated) => {
                    request.extensions_mut().insert(authenticated);
                    inner.call(request).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::Warnings;
    use crate::{DataHubTokenService, MemoryTokenStore, Policies, TokenServiceConfig};

    #[tokio::test]
    async fn an_untrusted_actor_header_is_explained_once_in_the_log() {
        let service: Arc<dyn TokenService> = Arc::new(DataHubTokenService::new(
            TokenServiceConfig::generate().unwrap(),
            MemoryTokenStore::new(),
            Policies::datahub_defaults(),
        ));
        let strict = BearerAuthenticator::new(service.clone());
        let mut with_actor = HeaderMap::new();
        with_actor.insert(
            ACTOR_HEADER_LOWER,
            HeaderValue::from_static("urn:li:corpuser:datahub"),
        );
        let warnings = Warnings::capture();
        for _ in 0..3 {
            // The answer stays DataHub's; clones share the "said once".
            let refused = strict.clone().authenticate(&with_actor).await.unwrap_err();
            assert_eq!(refused.message(), "Request is missing 'Authorization' header.");
        }
        let logged = warnings.text();
        assert_eq!(logged.matches("WARN").count(), 1, "{logged}");
        assert!(
            logged.contains(ACTOR_HEADER) && logged.contains("insecure_trust_actor_header"),
            "{logged}"
        );
        drop(warnings);

        // Nothing to explain without the header, or where it is trusted.
        let warnings = Warnings::capture();
        let fresh = BearerAuthenticator::new(service.clone());
        assert!(fresh.authenticate(&HeaderMap::new()).await.is_err());
        let trusting = BearerAuthenticator::new(service).insecure_trust_actor_header();
        assert!(trusting.authenticate(&with_actor).await.is_ok());
        assert_eq!(warnings.text(), "");
    }
}
