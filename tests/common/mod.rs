//! Shared fixtures for the integration tests: a service on a [`ManualClock`]
//! over a [`MemoryTokenStore`] the test can inspect, and named users with
//! known privileges.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use datahub_access_tokens::store::{ListQuery, MAX_COUNT};
use datahub_access_tokens::{
    AccessToken, AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, DurationPolicy,
    ManualClock, MemoryTokenStore, Policies, Privilege, StoredAccessToken, TokenService, TokenServiceConfig,
    TokenStore, Urn, DEFAULT_ALLOWED_DURATIONS,
};

/// The time every fixture starts at: 2023-11-14T22:13:20Z, in ms.
pub const T0: i64 = 1_700_000_000_000;
pub const HOUR_MS: i64 = 60 * 60 * 1000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// A fixed key (44 bytes, like DataHub's) and salt, so failures reproduce.
pub const SIGNING_KEY: &str = "test-only-signing-key-4f1d9c2b7a8e6d5c3b2a19";
pub const SALT: &str = "test-only-salt-9e8d7c6b5a";

/// Holds "Manage All Access Tokens".
pub const MANAGER: &str = "urn:li:corpuser:admin";
/// Holds "Generate Personal Access Tokens".
pub const ALICE: &str = "urn:li:corpuser:alice";
/// Another generator.
pub const BOB: &str = "urn:li:corpuser:bob";
/// Holds neither privilege.
pub const NOBODY: &str = "urn:li:corpuser:nobody";

pub fn user(urn: &str) -> Urn {
    Urn::parse(urn).expect("test urns are valid")
}

/// Grants: [`MANAGER`] manages, [`ALICE`] and [`BOB`] generate, [`NOBODY`]
/// has nothing (no all-users grant, unlike DataHub's defaults).
pub fn policies() -> Policies {
    Policies::none()
        .with_grant(user(MANAGER), Privilege::ManageAccessTokens)
        .and_then(|p| p.with_grant(user(ALICE), Privilege::GeneratePersonalAccessTokens))
        .and_then(|p| p.with_grant(user(BOB), Privilege::GeneratePersonalAccessTokens))
        .expect("user urns")
}

/// The fixed test configuration; never-expiring tokens allowed.
pub fn config() -> TokenServiceConfig {
    TokenServiceConfig::new(SIGNING_KEY, SALT)
        .expect("test key and salt are valid")
        .with_duration_policy(
            DurationPolicy::parse(DEFAULT_ALLOWED_DURATIONS, true).expect("default durations parse"),
        )
}

/// A service with its clock and a handle on its store.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub service: DataHubTokenService,
    pub clock: ManualClock,
    pub store: MemoryTokenStore,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_config(config())
    }

    pub fn with_config(config: TokenServiceConfig) -> Self {
        let clock = ManualClock::new(T0);
        let store = MemoryTokenStore::new();
        let service = DataHubTokenService::new(config, store.clone(), policies()).with_clock(clock.clone());
        Fixture {
            service,
            clock,
            store,
        }
    }

    /// `caller` creates a token for `actor` lasting `duration`.
    pub async fn create(
        &self,
        caller: &str,
        actor: &str,
        name: &str,
        duration: AccessTokenDuration,
    ) -> AccessToken {
        self.service
            .create_access_token(
                &user(caller),
                CreateAccessTokenInput::personal(actor, name, duration),
            )
            .await
            .unwrap_or_else(|e| panic!("{caller} creating a token for {actor} failed: {e}"))
    }

    /// `who` creates a one-month token for themself.
    pub async fn create_own(&self, who: &str, name: &str) -> AccessToken {
        self.create(who, who, name, AccessTokenDuration::OneMonth).await
    }

    /// Every stored record, in listing order.
    pub async fn snapshot(&self) -> Vec<StoredAccessToken> {
        let page = self
            .store
            .list(&ListQuery::all(MAX_COUNT))
            .await
            .expect("memory store lists");
        assert!(page.total <= MAX_COUNT, "snapshot would be truncated");
        page.tokens
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// The id of a freshly created token (it always has metadata).
pub fn id_of(token: &AccessToken) -> String {
    token
        .metadata
        .as_ref()
        .expect("personal tokens have metadata")
        .id
        .clone()
}
