//! `tokenctl`: an operator's tool for the tokens in a [`FileTokenStore`]
//! directory: bootstrap the first admin token, then list, validate, revoke,
//! rotate and purge, without writing code.
//!
//! ```sh
//! cargo run --example tokenctl -- create --actor urn:li:corpuser:datahub --name bootstrap --duration ONE_DAY
//! cargo run --example tokenctl -- list
//! cargo run --example tokenctl -- validate -            # the token on standard input
//! cargo run --example tokenctl -- revoke 'TOKEN_ID'
//! cargo run --example tokenctl -- rotate 'TOKEN_ID' [--duration ONE_MONTH]
//! cargo run --example tokenctl -- purge-expired
//! ```
//!
//! It acts with operator rights (it holds the key and the files), so no
//! policy applies. Output is JSON on standard output in DataHub's GraphQL
//! shapes; errors go to standard error with exit code 1 (2 for bad usage).
//! A new token (`create`, `rotate`) that cannot be written to standard
//! output is revoked at once, its id named in the error: nobody has it.
//! The key and salt come from `DATAHUB_TOKEN_SERVICE_SIGNING_KEY` and
//! `DATAHUB_TOKEN_SERVICE_SALT`, or when both are unset from a file in the
//! data directory, generated on first use (`TokenServiceConfig::load_or_generate_in`).
//!
//! With the `postgres` feature, `--postgres-url URL` keeps the tokens in
//! PostgreSQL instead (`PostgresTokenStore`, table in `--postgres-schema`,
//! default `public`); every process sharing that database must use the same
//! key and salt (set the two variables).

use std::error::Error;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{ArgGroup, Args, Parser, Subcommand};
use datahub_access_tokens::{
    AccessToken, AccessTokenDuration, AccessTokenType, CreateAccessTokenInput, DataHubTokenService,
    FacetFilterInput, FileTokenStore, ListAccessTokenInput, Policies, Privilege, TokenService,
    TokenServiceConfig, TokenStore, Urn, ROOT_USER,
};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "tokenctl",
    about = "Create, list, validate, revoke, rotate and purge DataHub access tokens kept in a local directory"
)]
struct Cli {
    /// Directory holding the tokens (and the generated key and salt, unless
    /// DATAHUB_TOKEN_SERVICE_SIGNING_KEY and DATAHUB_TOKEN_SERVICE_SALT are set).
    #[arg(long, global = true, value_name = "DIR", default_value = "./datahub-tokens")]
    data_dir: PathBuf,

    /// Keep the tokens in this PostgreSQL database instead of the data
    /// directory (e.g. postgres://user@host/db?application_name=tokenctl).
    #[cfg(feature = "postgres")]
    #[arg(long, global = true, value_name = "URL")]
    postgres_url: Option<String>,

    /// The schema holding the PostgreSQL table (created if missing); only
    /// with --postgres-url.
    #[cfg(feature = "postgres")]
    #[arg(long, global = true, value_name = "NAME", default_value = datahub_access_tokens::store::postgres::DEFAULT_SCHEMA, requires = "postgres_url")]
    postgres_schema: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a personal access token; prints it once (GraphQL `AccessToken`).
    Create(CreateArgs),
    /// List token metadata (GraphQL `ListAccessTokenResult`).
    List {
        /// Only tokens created by this urn.
        #[arg(long, value_name = "URN")]
        owner: Option<String>,
        /// Only tokens acting as this urn.
        #[arg(long, value_name = "URN")]
        actor: Option<String>,
        /// Offset of the first token.
        #[arg(long, value_name = "N", default_value_t = 0)]
        start: i64,
        /// Most tokens to print.
        #[arg(long, value_name = "N", default_value_t = 20)]
        count: i64,
    },
    /// Revoke (delete) a token by its id; prints `true`.
    Revoke {
        /// The token id, as `list` shows it.
        token_id: String,
    },
    /// Replace a token by a new one (same actor, owner, name, description)
    /// in one step; prints the new token once (GraphQL `AccessToken`).
    Rotate {
        /// The token id, as `list` shows it.
        token_id: String,
        /// The new token's lifetime (as for `create`); default: the old
        /// token's original lifetime, counted from now.
        #[arg(long, value_name = "ENUM", value_parser = parse_duration)]
        duration: Option<AccessTokenDuration>,
    },
    /// Check a token: signature, expiry, not revoked; prints its claims. Not
    /// recorded as a use of the token (lastUsedAt).
    Validate {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
    /// Delete every expired token and compact the files; prints their ids.
    PurgeExpired,
}

#[derive(Args)]
#[command(group(ArgGroup::new("lifetime").required(true).args(["duration", "duration_iso"])))]
struct CreateArgs {
    /// The user the token acts as, e.g. urn:li:corpuser:datahub.
    #[arg(long, value_name = "URN")]
    actor: String,
    /// Name of the token.
    #[arg(long)]
    name: String,
    /// ONE_HOUR, ONE_DAY, ONE_WEEK, ONE_MONTH, THREE_MONTHS, SIX_MONTHS,
    /// ONE_YEAR or NO_EXPIRY (if ACCESS_TOKEN_ALLOW_NO_EXPIRY=true).
    #[arg(long, value_name = "ENUM", value_parser = parse_duration)]
    duration: Option<AccessTokenDuration>,
    /// An ISO-8601 lifetime such as P30D or PT1H.
    #[arg(long, value_name = "ISO")]
    duration_iso: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// Who is recorded as the creator; defaults to the actor.
    #[arg(long, value_name = "URN")]
    owner: Option<String>,
}

fn parse_duration(text: &str) -> Result<AccessTokenDuration, String> {
    text.parse()
        .map_err(|e: datahub_access_tokens::Error| e.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Standard error may be gone too: then there is nobody to tell.
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "tokenctl: error: {error}");
            let mut last = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                let text = cause.to_string();
                if text != last {
                    let _ = writeln!(err, "  caused by: {text}");
                }
                last = text;
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// What a command leaves to print once the store is closed.
enum Outcome {
    /// Print this (its failure is reported, but undoes nothing).
    Print(Value),
    /// A new token, already printed while it could still be revoked.
    Printed,
}

/// Writes `value` as JSON to standard output, reporting failure rather than
/// panicking as `println!` does.
fn write_json(value: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Prints the output of a command that changed nothing it would need to undo.
/// A reader that went away (`tokenctl list | head`) ends it quietly.
fn print(value: &Value) -> Result<(), Box<dyn Error>> {
    match write_json(value) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing the result to standard output: {e}").into())
        }
        _ => Ok(()),
    }
}

/// Prints a token just created (by `create`, or by `rotate` in place of
/// `replaced`). Its plaintext exists nowhere else, so if it cannot be
/// printed nobody can use it: revoke it rather than leave it live, and say
/// which token it was.
async fn deliver(
    service: &DataHubTokenService,
    caller: &Urn,
    created: &AccessToken,
    replaced: Option<&str>,
) -> Result<Outcome, Box<dyn Error>> {
    let value = serde_json::to_value(created)?;
    let Err(error) = write_json(&value) else {
        return Ok(Outcome::Printed);
    };
    let mut message = format!("could not write the new token to standard output ({error})");
    match created.metadata.as_ref().map(|m| m.id.as_str()) {
        Some(id) => match service.revoke_access_token(caller, id).await {
            Ok(_) => message += &format!(", so it was revoked (token id {id})"),
            Err(e) => message += &format!(" and revoking it failed ({e}): revoke token id {id} yourself"),
        },
        None => message += "; it has no id to revoke",
    }
    match replaced {
        Some(old) => {
            message +=
                &format!("; the rotation already revoked the token it replaced ({old}): create a new one")
        }
        None => message += "; create it again",
    }
    Err(message.into())
}

async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let config = TokenServiceConfig::load_or_generate_in(&cli.data_dir)?;
    #[cfg(feature = "postgres")]
    if let Some(url) = &cli.postgres_url {
        use datahub_access_tokens::store::postgres::{PostgresStoreOptions, PostgresTokenStore};
        let options = PostgresStoreOptions::new().with_schema(&cli.postgres_schema);
        let store = PostgresTokenStore::connect_with(url, options).await?;
        return finish(execute(cli.command, config, Arc::new(store)).await?);
    }
    let store = FileTokenStore::open(&cli.data_dir).await?;
    let purging = matches!(cli.command, Command::PurgeExpired);
    let output = execute(cli.command, config, Arc::new(store.clone())).await;
    // A purge leaves dead records behind: rewrite the log without them.
    if purging && output.is_ok() {
        store.compact().await?;
    }
    store.close().await?;
    finish(output?)
}

fn finish(outcome: Outcome) -> Result<(), Box<dyn Error>> {
    match outcome {
        Outcome::Print(value) => print(&value),
        Outcome::Printed => Ok(()),
    }
}

/// A service in which `operator` may do anything: the tool holds the key and
/// the store, so a policy could not stop its user anyway.
fn service(
    config: TokenServiceConfig,
    store: Arc<dyn TokenStore>,
    operator: &Urn,
) -> datahub_access_tokens::Result<DataHubTokenService> {
    let policies = Policies::none().with_grant(operator.clone(), Privilege::ManageAccessTokens)?;
    Ok(DataHubTokenService::new(config, store, policies))
}

async fn execute(
    command: Command,
    config: TokenServiceConfig,
    store: Arc<dyn TokenStore>,
) -> Result<Outcome, Box<dyn Error>> {
    let operator = Urn::parse(ROOT_USER)?;
    Ok(Outcome::Print(match command {
        Command::Create(args) => {
            // Errors name the option given (the owner defaults to the actor).
            let actor = Urn::parse(&args.actor).map_err(|e| format!("--actor: {e}"))?;
            let owner = match &args.owner {
                Some(owner) => Urn::parse(owner).map_err(|e| format!("--owner: {e}"))?,
                None => actor,
            };
            let input = CreateAccessTokenInput {
                token_type: AccessTokenType::Personal,
                actor_urn: args.actor,
                duration: args.duration,
                duration_iso: args.duration_iso,
                name: args.name,
                description: args.description,
            };
            let service = service(config, store, &owner)?;
            let created = service.create_access_token(&owner, input).await?;
            return deliver(&service, &owner, &created, None).await;
        }
        Command::List {
            owner,
            actor,
            start,
            count,
        } => {
            let mut filters = Vec::new();
            for (field, urn) in [("ownerUrn", owner), ("actorUrn", actor)] {
                if let Some(urn) = urn {
                    let urn = Urn::parse(urn).map_err(|e| format!("--{}: {e}", &field[..5]))?;
                    filters.push(FacetFilterInput::equal(field, &[urn.as_str()]));
                }
            }
            let input = ListAccessTokenInput {
                start: Some(start),
                count: Some(count),
                filters: Some(filters),
            };
            let listed = service(config, store, &operator)?
                .list_access_tokens(&operator, &input)
                .await?;
            serde_json::to_value(&listed)?
        }
        Command::Revoke { token_id } => {
            let revoked = service(config, store, &operator)?
                .revoke_access_token(&operator, &token_id)
                .await?;
            json!(revoked)
        }
        Command::Rotate { token_id, duration } => {
            let service = service(config, store, &operator)?;
            let rotated = service
                .rotate_access_token(&operator, &token_id, duration)
                .await?;
            return deliver(&service, &operator, &rotated, Some(&token_id)).await;
        }
        Command::Validate { token } => {
            let token = if token == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| format!("reading the token from standard input: {e}"))?;
                let text = text.trim().to_owned();
                if text.is_empty() {
                    return Err("no token on standard input".into());
                }
                text
            } else {
                token
            };
            // An operator's check is not a use: it must not make a stale token look used.
            let config = config.with_last_used_interval_ms(None)?;
            let validated = service(config, store, &operator)?
                .validate_access_token(&token)
                .await?;
            json!({
                "actorUrn": validated.actor,
                "tokenId": validated.token_id,
                "claims": validated.claims,
            })
        }
        Command::PurgeExpired => {
            let purged = service(config, store, &operator)?.purge_expired().await?;
            json!({ "purged": purged.len(), "tokenIds": purged })
        }
    }))
}
