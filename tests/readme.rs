//! The README's Rust examples, compiled as written. Each region between the
//! `README: begin` and `README: end` markers below must equal one of the
//! README's `rust` code blocks, in order (`readme_examples_are_these`), so an
//! example that stops compiling, or a README edit not made here, fails a test.
//! They are compiled, not run: they need a server, a database or /var/lib.

#![allow(dead_code, unused_variables)]

type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

#[cfg(feature = "axum")]
mod axum_service {
    use datahub_access_tokens::DataHubTokenService;

    #[rustfmt::skip]
    fn router(service: DataHubTokenService) -> axum::Router {
        // README: begin
        use std::sync::Arc;
        use axum::{routing::get, Router};
        use datahub_access_tokens::axum::{Authenticated, BearerAuthenticator, GraphQlApi};

        let authenticator = BearerAuthenticator::new(Arc::new(service)); // any TokenService
        let app: Router = Router::new()
            .route("/reports", get(|who: Authenticated| async move { format!("hello {}", who.actor) }))
            .layer(authenticator.layer())                    // your routes, protected by the same tokens
            .merge(GraphQlApi::new(authenticator).router()); // POST /api/graphql, GET /api/graphiql
        // README: end
        app
    }
}

#[rustfmt::skip]
#[cfg(feature = "fs")]
async fn using_the_library() -> Outcome {
    // README: begin
    use datahub_access_tokens::*;

    let service = DataHubTokenService::new(
        TokenServiceConfig::from_env()?,          // DataHub's variables; or ::generate()? for tests
        FileTokenStore::open("./tokens").await?,  // or MemoryTokenStore::new(), store::PostgresTokenStore::connect(url).await?
        Policies::datahub_defaults(),             // or Policies::from_json(..), or your own PolicyEngine
    );
    let me = Urn::corp_user("datahub")?;
    let created = service
        .create_access_token(&me, CreateAccessTokenInput::personal(me.as_str(), "ci", AccessTokenDuration::OneMonth))
        .await?;
    let token = created.expose_access_token();           // shown once; never stored, logged or in Debug
    let who = service.validate_access_token(token).await?.actor;
    service.revoke_access_token(&me, &created.metadata.unwrap().id).await?;
    // README: end
    Ok(())
}

#[rustfmt::skip]
#[cfg(feature = "fs")]
async fn file_store() -> Outcome {
    // README: begin
    use datahub_access_tokens::{DataHubTokenService, FileTokenStore, Policies, TokenServiceConfig};

    let dir = "/var/lib/datahub-tokens";
    let config = TokenServiceConfig::load_or_generate_in(dir)?; // env key/salt, or generated once and kept (0600)
    let store = FileTokenStore::open(dir).await?;               // exclusive: a second opener gets a clear error
    let service = DataHubTokenService::new(config, store, Policies::datahub_defaults());
    // README: end
    Ok(())
}

#[cfg(feature = "postgres")]
mod postgres_store {
    use datahub_access_tokens::{DataHubTokenService, Policies, TokenServiceConfig};

    use super::Outcome;

    #[rustfmt::skip]
    async fn postgres_store(pool: sqlx::PgPool, config: TokenServiceConfig, policies: Policies) -> Outcome {
        // README: begin
        use datahub_access_tokens::store::postgres::{PostgresStoreOptions, PostgresTokenStore};

        // From a URL (add ?application_name=... to name this replica's connections) ...
        let store = PostgresTokenStore::connect("postgres://tokens@db.internal/app").await?;
        // ... or from the pool the service already has, in a schema and table of your choice.
        let store = PostgresTokenStore::from_pool_with(
            pool,
            PostgresStoreOptions::new().with_schema("auth").with_table("access_tokens"),
        ).await?;
        let service = DataHubTokenService::new(config, store, policies);
        // README: end
        Ok(())
    }
}

/// The short examples of "Beyond DataHub", over what they take as given.
mod beyond_datahub {
    use datahub_access_tokens::*;

    use super::Outcome;

    #[rustfmt::skip]
    fn key_rotation(new_key: &str, salt: &str, old_key: &str) -> Outcome {
        // README: begin
        let config = TokenServiceConfig::new(new_key, salt)?
            .with_previous_signing_keys([old_key])?; // each at least 32 bytes, like the key
        // README: end
        Ok(())
    }

    #[rustfmt::skip]
    fn owner_limit() -> Outcome {
        // README: begin
        let config = TokenServiceConfig::generate()?.with_max_tokens_per_owner(Some(20))?; // None: no limit
        // README: end
        Ok(())
    }

    #[rustfmt::skip]
    fn audit(service: DataHubTokenService, my_sink: RecordingAuditSink) {
        // README: begin
        let service = service.with_audit_sink(my_sink); // impl AuditSink { fn record(&self, event: AuditEvent) }
        // README: end
    }

    #[rustfmt::skip]
    async fn rotation(service: DataHubTokenService, caller: Urn, token_id: String) -> Outcome {
        // README: begin
        let input = RotateAccessTokenInput::keep_lifetime(&token_id); // or ::with_duration_iso(&token_id, "P14D"), ::with_duration
        let fresh = service.rotate_access_token(&caller, &input).await?; // fresh.expose_access_token()
        // README: end
        Ok(())
    }

    #[rustfmt::skip]
    async fn last_used(service: DataHubTokenService, ninety_days_ago: i64) -> Outcome {
        // README: begin
        let config = TokenServiceConfig::generate()?.with_last_used_interval_ms(Some(300_000))?; // None: off
        // Stale tokens: used, but not in 90 days. Never used: negated EXISTS.
        let stale = FacetFilterInput { field: "lastUsedAt".into(), condition: Some("LESS_THAN".into()),
            values: Some(vec![ninety_days_ago.to_string()]), ..Default::default() };
        let never = FacetFilterInput { field: "lastUsedAt".into(), condition: Some("EXISTS".into()),
            negated: Some(true), ..Default::default() };
        service.flush_last_used().await?; // before shutdown: write what is still deferred
        // README: end
        Ok(())
    }
}

/// The README's `rust` code blocks, each without its fences.
fn readme_blocks() -> Vec<String> {
    let readme = include_str!("../README.md");
    let mut blocks = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for line in readme.lines() {
        match &mut open {
            None if line.starts_with("```rust") => open = Some(Vec::new()),
            None => {}
            Some(block) if line.starts_with("```") => {
                blocks.push(block.join("\n"));
                open = None;
            }
            Some(block) => block.push(line),
        }
    }
    assert!(open.is_none(), "a rust block in README.md is never closed");
    blocks
}

/// The regions of this file between the markers, unindented.
fn compiled_blocks() -> Vec<String> {
    let source = include_str!("readme.rs");
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for line in source.lines() {
        let marker = line.trim_start();
        match &mut open {
            None if marker == "// README: begin" => open = Some((line.len() - marker.len(), Vec::new())),
            None => {}
            Some((indent, block)) if marker == "// README: end" => {
                let indent = *indent;
                blocks.push(
                    block
                        .iter()
                        .map(|l| l.get(indent..).unwrap_or_else(|| l.trim_start()))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                open = None;
            }
            Some((_, block)) => block.push(line),
        }
    }
    assert!(open.is_none(), "a README region in this file is never closed");
    blocks
}

#[test]
fn readme_examples_are_these() {
    let (readme, compiled) = (readme_blocks(), compiled_blocks());
    assert_eq!(
        readme.len(),
        9,
        "README.md has a rust block more or less: update this file"
    );
    for (n, (written, checked)) in readme.iter().zip(&compiled).enumerate() {
        assert_eq!(
            written,
            checked,
            "README rust block {} differs from its compiled copy here",
            n + 1
        );
    }
    assert_eq!(compiled.len(), readme.len());
}
