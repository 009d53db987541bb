//! Another crate's `TokenService` (here a test double): implemented with the
//! re-exported `async_trait`, answering with the public constructors, and
//! used wherever the crate takes a service.

use std::sync::Arc;

use datahub_access_tokens::{
    async_trait, AccessToken, AccessTokenClaims, AccessTokenMetadata, AccessTokenType,
    CreateAccessTokenInput, Error, ListAccessTokenInput, ListAccessTokenResult, Result,
    RotateAccessTokenInput, TokenService, Urn, ValidatedAccessToken,
};

/// Accepts the token "good" as alice; knows nothing else.
#[derive(Debug)]
struct FakeService;

#[async_trait]
impl TokenService for FakeService {
    async fn create_access_token(&self, _: &Urn, _: CreateAccessTokenInput) -> Result<AccessToken> {
        Ok(AccessToken::new("good", None))
    }
    async fn list_access_tokens(&self, _: &Urn, _: &ListAccessTokenInput) -> Result<ListAccessTokenResult> {
        Err(Error::Unauthorized)
    }
    async fn revoke_access_token(&self, _: &Urn, _: &str) -> Result<()> {
        Err(Error::Unauthorized)
    }
    async fn rotate_access_token(&self, _: &Urn, _: &RotateAccessTokenInput) -> Result<AccessToken> {
        Err(Error::Unauthorized)
    }
    async fn get_access_token_metadata(&self, _: &Urn, _: &str) -> Result<AccessTokenMetadata> {
        Err(Error::Unauthorized)
    }
    async fn validate_access_token(&self, token: &str) -> Result<ValidatedAccessToken> {
        if token != "good" {
            return Err(Error::invalid_token("not the good token"));
        }
        let actor = Urn::corp_user("alice")?;
        let claims = AccessTokenClaims::new("1", AccessTokenType::Session, actor.id());
        Ok(ValidatedAccessToken::new(actor, claims, None))
    }
    async fn create_session_token(&self, _: &Urn) -> Result<AccessToken> {
        Ok(AccessToken::new("good", None))
    }
    async fn purge_expired(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_test_double_serves_as_the_service() {
    let service: Arc<dyn TokenService> = Arc::new(FakeService);
    let alice = Urn::corp_user("alice").unwrap();
    let token = service.create_session_token(&alice).await.unwrap();
    let validated = service
        .validate_access_token(token.expose_access_token())
        .await
        .unwrap();
    assert_eq!(validated.actor, alice);
    assert_eq!(validated.claims.token_type(), AccessTokenType::Session);
    assert!(service.validate_access_token("bad").await.is_err());
    // The trait's default: nothing deferred to write.
    service.flush_last_used().await.unwrap();
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn a_test_double_authenticates_axum_requests() {
    use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator};

    let authenticator = BearerAuthenticator::new(Arc::new(FakeService));
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", "Bearer good".parse().unwrap());
    let caller = authenticator.authenticate(&headers).await.unwrap();
    let validated = FakeService.validate_access_token("good").await.unwrap();
    assert_eq!(
        caller,
        Authenticated::new(validated.actor.clone(), Some(validated))
    );
    headers.insert("authorization", "Bearer bad".parse().unwrap());
    assert!(authenticator.authenticate(&headers).await.is_err());
}
