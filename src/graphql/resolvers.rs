//! The `Query` and `Mutation` roots: DataHub's token operations over the
//! [`TokenService`] in the schema data, as the request's [`Caller`].

use std::sync::Arc;

use async_graphql::{Context, Object};

use super::errors::{coded_error, resolver_error, ErrorCode};
use super::types::{
    AccessToken, AccessTokenDuration, AccessTokenMetadata, CreateAccessTokenInput, ListAccessTokenInput,
    ListAccessTokenResult,
};
use super::Caller;
use crate::model::RotateAccessTokenInput;
use crate::service::TokenService;
use crate::urn::Urn;

/// The service and the authenticated caller of this request.
fn service_and_caller<'c>(
    ctx: &'c Context<'_>,
) -> async_graphql::Result<(&'c Arc<dyn TokenService>, &'c Urn)> {
    let service = ctx.data::<Arc<dyn TokenService>>().map_err(|_| {
        coded_error(
            ErrorCode::ServerError,
            "the schema was built without a TokenService (use graphql::schema)",
        )
    })?;
    let caller = ctx.data::<Caller>().map_err(|_| {
        coded_error(
            ErrorCode::Unauthenticated,
            "the request has no authenticated caller (add a graphql::Caller to the request data)",
        )
    })?;
    Ok((service, &caller.0))
}

/// DataHub's token queries: `listAccessTokens`, `getAccessTokenMetadata`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// Lists access tokens. Without "Manage All Access Tokens", the filters
    /// must include `ownerUrn` equal to exactly the caller.
    #[graphql(complexity = "input.page_size() * child_complexity")]
    async fn list_access_tokens(
        &self,
        ctx: &Context<'_>,
        input: ListAccessTokenInput,
    ) -> async_graphql::Result<ListAccessTokenResult> {
        let (service, caller) = service_and_caller(ctx)?;
        let result = service
            .list_access_tokens(caller, &input.into())
            .await
            .map_err(resolver_error)?;
        Ok(result.into())
    }

    /// The stored metadata of a token (needs "Manage All Access Tokens").
    async fn get_access_token_metadata(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> async_graphql::Result<AccessTokenMetadata> {
        let (service, caller) = service_and_caller(ctx)?;
        let metadata = service
            .get_access_token_metadata(caller, &token)
            .await
            .map_err(resolver_error)?;
        Ok(metadata.into())
    }
}

/// DataHub's token mutations (`createAccessToken`, `revokeAccessToken`) and
/// `rotateAccessToken`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Generates an access token; the token is in the answer and nowhere else.
    async fn create_access_token(
        &self,
        ctx: &Context<'_>,
        input: CreateAccessTokenInput,
    ) -> async_graphql::Result<Option<AccessToken>> {
        let (service, caller) = service_and_caller(ctx)?;
        match service.create_access_token(caller, input.into()).await {
            Ok(token) => Ok(Some(token.into())),
            Err(error) => {
                // The field is nullable: answer `{"createAccessToken": null}` plus the
                // error, as DataHub (graphql-java) does, rather than nulling all `data`.
                let error = resolver_error(error).into_server_error(ctx.item.pos);
                ctx.add_error(ctx.set_error_path(error));
                Ok(None)
            }
        }
    }

    /// Revokes a token by id; true on success (DataHub's answer: its
    /// errors are the only other outcome).
    async fn revoke_access_token(&self, ctx: &Context<'_>, token_id: String) -> async_graphql::Result<bool> {
        let (service, caller) = service_and_caller(ctx)?;
        service
            .revoke_access_token(caller, &token_id)
            .await
            .map(|()| true)
            .map_err(resolver_error)
    }
    /// Beyond DataHub: replaces a token by a new one with the same actor,
    /// owner, name and description, atomically; the old one stops working.
    /// The new token lasts `duration` or `durationIso` (at most one), or as
    /// long as the old one was made to last.
    async fn rotate_access_token(
        &self,
        ctx: &Context<'_>,
        token_id: String,
        duration: Option<AccessTokenDuration>,
        duration_iso: Option<String>,
    ) -> async_graphql::Result<Option<AccessToken>> {
        let (service, caller) = service_and_caller(ctx)?;
        let input = RotateAccessTokenInput {
            token_id,
            duration: duration.map(Into::into),
            duration_iso,
        };
        match service.rotate_access_token(caller, &input).await {
            Ok(rotated) => Ok(Some(rotated.into())),
            // Nullable, as createAccessToken: `{"rotateAccessToken": null}` plus the error.
            Err(error) => {
                let error = resolver_error(error).into_server_error(ctx.item.pos);
                ctx.add_error(ctx.set_error_path(error));
                Ok(None)
            }
        }
    }
}
