//! Create, list, validate and revoke a DataHub personal access token, with
//! no setup: an in-memory store and a freshly generated signing key.
//!
//! Run with `cargo run --example quickstart`.

use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, ListAccessTokenInput, MemoryTokenStore,
    Policies, TokenService, TokenServiceConfig, Urn,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = DataHubTokenService::new(
        TokenServiceConfig::generate()?,
        MemoryTokenStore::new(),
        Policies::datahub_defaults(),
    );
    let datahub = Urn::corp_user("datahub")?;

    println!("# createAccessToken (the token is shown this once)");
    let input = CreateAccessTokenInput::personal(
        datahub.as_str(),
        "my personal token",
        AccessTokenDuration::OneHour,
    )
    .with_description("made by the quickstart example");
    let created = service.create_access_token(&datahub, input).await?;
    println!("{}", serde_json::to_string_pretty(&created)?);
    let token = created.expose_access_token();

    println!("\n# listAccessTokens (ownerUrn = {datahub})");
    let listed = service
        .list_access_tokens(&datahub, &ListAccessTokenInput::owned_by(&datahub, 100))
        .await?;
    println!("{}", serde_json::to_string_pretty(&listed)?);

    println!("\n# validate the token");
    let validated = service.validate_access_token(token).await?;
    println!(
        "valid: acts as {} (token id {})",
        validated.actor,
        validated.token_id.as_deref().unwrap_or("-")
    );

    let token_id = &listed.tokens[0].id;
    println!("\n# revokeAccessToken(tokenId: {token_id:?})");
    service.revoke_access_token(&datahub, token_id).await?;
    println!("true"); // GraphQL's answer: any failure is an error instead

    println!("\n# validate again");
    match service.validate_access_token(token).await {
        Ok(_) => return Err("a revoked token validated".into()),
        Err(error) => println!("rejected: {error}"),
    }
    Ok(())
}
