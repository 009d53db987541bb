//! The data DataHub keeps and returns, with DataHub's JSON field names:
//! the stored `DataHubAccessTokenInfo` aspect and the GraphQL input and
//! output shapes of `auth.graphql`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::AccessTokenDuration;
use crate::urn::Urn;

/// The kind of token (claim `type`, GraphQL enum `AccessTokenType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive] // DataHub has added types before (SERVICE_ACCOUNT)
pub enum AccessTokenType {
    /// A revocable token a user generates for themself (or an admin for them).
    Personal,
    /// A stateless token minted at UI login; not stored, not revocable.
    Session,
    /// A token for a service account (newer DataHub); accepted on validation.
    ServiceAccount,
}

impl AccessTokenType {
    /// DataHub's name for the value, e.g. `PERSONAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Personal => "PERSONAL",
            Self::Session => "SESSION",
            Self::ServiceAccount => "SERVICE_ACCOUNT",
        }
    }
}

impl fmt::Display for AccessTokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What DataHub stores about a token (the `dataHubAccessTokenInfo` aspect).
///
/// The token itself is never stored: only its id and this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataHubAccessTokenInfo {
    /// Name given by the creator (1 to 256 characters).
    pub name: String,
    /// Whose identity the token carries.
    pub actor_urn: Urn,
    /// Who created it.
    pub owner_urn: Urn,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// Expiry time in milliseconds since the epoch; absent = never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Optional free text (up to 4096 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the token last validated, ms since the epoch; absent = never
    /// (or not since this crate began recording). Our addition: DataHub's
    /// aspect has no such field, and JSON of an unused token is DataHub's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

impl DataHubAccessTokenInfo {
    /// Whether the token has expired at `now_ms` (DataHub: `expiresAt < now`).
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at < now_ms)
    }
}

/// One stored token: its id (`b64(sha256(token || salt))`) and its info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccessToken {
    /// The token id, 44 characters of standard base64.
    pub id: String,
    /// What DataHub stores about the token.
    pub info: DataHubAccessTokenInfo,
}

/// The urn of the access token with this id: `urn:li:dataHubAccessToken:<id>`.
pub fn access_token_urn(id: &str) -> String {
    const PREFIX: &str = "urn:li:dataHubAccessToken:";
    // Sized up front: `format!` grows the string as it goes, a reallocation
    // per urn, twenty of them on every page listed.
    let mut urn = String::with_capacity(PREFIX.len() + id.len());
    urn.push_str(PREFIX);
    urn.push_str(id);
    urn
}

/// GraphQL `EntityType` of token metadata: always `ACCESS_TOKEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    /// The access token entity.
    #[default]
    AccessToken,
}

/// A token's metadata as the GraphQL API returns it (`AccessTokenMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenMetadata {
    /// `urn:li:dataHubAccessToken:<id>`.
    pub urn: String,
    /// Always [`EntityType::AccessToken`].
    #[serde(rename = "type")]
    pub entity_type: EntityType,
    /// The token id.
    pub id: String,
    /// Name given by the creator.
    pub name: String,
    /// Optional free text.
    pub description: Option<String>,
    /// Whose identity the token carries.
    pub actor_urn: Urn,
    /// Who created it.
    pub owner_urn: Urn,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Expiry, ms since the epoch; `null` = never expires.
    pub expires_at: Option<i64>,
    /// Last successful validation, ms since the epoch; `null` = never used.
    /// Our addition to DataHub's type (see [`DataHubAccessTokenInfo::last_used_at`]).
    #[serde(default)]
    pub last_used_at: Option<i64>,
}

impl From<StoredAccessToken> for AccessTokenMetadata {
    fn from(token: StoredAccessToken) -> Self {
        let info = token.info;
        AccessTokenMetadata {
            urn: access_token_urn(&token.id),
            entity_type: EntityType::AccessToken,
            id: token.id,
            name: info.name,
            description: info.description,
            actor_urn: info.actor_urn,
            owner_urn: info.owner_urn,
            created_at: info.created_at,
            expires_at: info.expires_at,
            last_used_at: info.last_used_at,
        }
    }
}

/// A freshly minted token (GraphQL `AccessToken`): the only time the
/// plaintext exists. `Debug` redacts it; [`expose_access_token`] reads it.
///
/// Serializing writes the plaintext (`accessToken`), since that is the
/// GraphQL answer to `createAccessToken`; do not log the serialized form.
///
/// [`expose_access_token`]: AccessToken::expose_access_token
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    access_token: String,
    /// The token's metadata; `None` for stateless session tokens.
    pub metadata: Option<AccessTokenMetadata>,
}

impl AccessToken {
    /// A token as a [`TokenService`](crate::TokenService) hands it out: for
    /// other implementations of the trait, such as a test double.
    ///
    /// ```
    /// use datahub_access_tokens::AccessToken;
    ///
    /// let session = AccessToken::new("eyJhbGciOiJIUzI1NiJ9.e30.c2ln", None);
    /// assert_eq!(session.expose_access_token(), "eyJhbGciOiJIUzI1NiJ9.e30.c2ln");
    /// assert_eq!(format!("{session:?}"), r#"AccessToken { access_token: "<redacted>", metadata: None }"#);
    /// ```
    pub fn new(access_token: impl Into<String>, metadata: Option<AccessTokenMetadata>) -> Self {
        AccessToken {
            access_token: access_token.into(),
            metadata,
        }
    }

    /// The plaintext token, to hand to its user once. Never store or log it.
    pub fn expose_access_token(&self) -> &str {
        &self.access_token
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"<redacted>")
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// GraphQL `CreateAccessTokenInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAccessTokenInput {
    /// Must be [`AccessTokenType::Personal`].
    #[serde(rename = "type")]
    pub token_type: AccessTokenType,
    /// The user the token acts as, e.g. `urn:li:corpuser:datahub`.
    pub actor_urn: String,
    /// A fixed lifetime; give this or `duration_iso`.
    #[serde(default)]
    pub duration: Option<AccessTokenDuration>,
    /// An ISO-8601 lifetime such as `P30D`; give this or `duration`.
    #[serde(default)]
    pub duration_iso: Option<String>,
    /// Name of the token, 1 to 256 characters.
    pub name: String,
    /// Optional description, up to 4096 characters.
    #[serde(default)]
    pub description: Option<String>,
}

impl CreateAccessTokenInput {
    /// A personal token request for `actor_urn` with a fixed duration.
    pub fn personal(
        actor_urn: impl Into<String>,
        name: impl Into<String>,
        duration: AccessTokenDuration,
    ) -> Self {
        CreateAccessTokenInput {
            token_type: AccessTokenType::Personal,
            actor_urn: actor_urn.into(),
            duration: Some(duration),
            duration_iso: None,
            name: name.into(),
            description: None,
        }
    }

    /// A personal token request for `actor_urn` with an ISO-8601 lifetime
    /// such as `P14D` (checked against the duration policy on create).
    ///
    /// ```
    /// use datahub_access_tokens::CreateAccessTokenInput;
    ///
    /// let input = CreateAccessTokenInput::personal_iso("urn:li:corpuser:datahub", "ci", "P14D");
    /// assert_eq!((input.duration, input.duration_iso.as_deref()), (None, Some("P14D")));
    /// ```
    pub fn personal_iso(
        actor_urn: impl Into<String>,
        name: impl Into<String>,
        duration_iso: impl Into<String>,
    ) -> Self {
        CreateAccessTokenInput {
            duration: None,
            duration_iso: Some(duration_iso.into()),
            ..Self::personal(actor_urn, name, AccessTokenDuration::OneHour)
        }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A rotation request (ours, beyond DataHub): which token to replace and
/// the new token's lifetime, as `rotateAccessToken`'s arguments give it.
///
/// Give at most one of `duration` and `duration_iso`; with neither, the new
/// token lasts as long as the old one was made to last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateAccessTokenInput {
    /// The id of the token to replace.
    pub token_id: String,
    /// A fixed lifetime for the new token; or give `duration_iso`, or neither.
    #[serde(default)]
    pub duration: Option<AccessTokenDuration>,
    /// An ISO-8601 lifetime such as `P30D`; or give `duration`, or neither.
    #[serde(default)]
    pub duration_iso: Option<String>,
}

impl RotateAccessTokenInput {
    /// Rotates `token_id` keeping its lifetime: the new token lasts as long
    /// as the old one was made to last (`expiresAt - createdAt`).
    ///
    /// ```
    /// use datahub_access_tokens::RotateAccessTokenInput;
    ///
    /// let id = "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=";
    /// let input = RotateAccessTokenInput::keep_lifetime(id);
    /// assert_eq!((input.duration, input.duration_iso), (None, None));
    /// ```
    pub fn keep_lifetime(token_id: impl Into<String>) -> Self {
        RotateAccessTokenInput {
            token_id: token_id.into(),
            duration: None,
            duration_iso: None,
        }
    }

    /// Rotates `token_id` to a new token with a fixed lifetime.
    ///
    /// ```
    /// use datahub_access_tokens::{AccessTokenDuration, RotateAccessTokenInput};
    ///
    /// let id = "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=";
    /// let input = RotateAccessTokenInput::with_duration(id, AccessTokenDuration::OneDay);
    /// assert_eq!(input.token_id, id);
    /// assert_eq!((input.duration, input.duration_iso), (Some(AccessTokenDuration::OneDay), None));
    /// ```
    pub fn with_duration(token_id: impl Into<String>, duration: AccessTokenDuration) -> Self {
        RotateAccessTokenInput {
            duration: Some(duration),
            ..Self::keep_lifetime(token_id)
        }
    }

    /// Rotates `token_id` to a new token with an ISO-8601 lifetime such as
    /// `P14D` (checked against the duration policy on rotate, as on create).
    ///
    /// ```
    /// use datahub_access_tokens::RotateAccessTokenInput;
    ///
    /// let id = "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=";
    /// let input = RotateAccessTokenInput::with_duration_iso(id, "P14D");
    /// assert_eq!((input.duration, input.duration_iso.as_deref()), (None, Some("P14D")));
    /// ```
    pub fn with_duration_iso(token_id: impl Into<String>, duration_iso: impl Into<String>) -> Self {
        RotateAccessTokenInput {
            duration_iso: Some(duration_iso.into()),
            ..Self::keep_lifetime(token_id)
        }
    }
}

/// GraphQL `FacetFilterInput`: one listing filter, as sent by clients.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FacetFilterInput {
    /// A field of `DataHubAccessTokenInfo`, e.g. `ownerUrn`.
    pub field: String,
    /// Deprecated single value; read as `values: [value]`.
    #[serde(default)]
    pub value: Option<String>,
    /// The values, any of which may match.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Inverts the filter.
    #[serde(default)]
    pub negated: Option<bool>,
    /// The operator, default `EQUAL`.
    #[serde(default)]
    pub condition: Option<String>,
}

impl FacetFilterInput {
    /// `field EQUAL any of values`.
    pub fn equal(field: impl Into<String>, values: &[&str]) -> Self {
        FacetFilterInput {
            field: field.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
            ..Default::default()
        }
    }
}

/// GraphQL `ListAccessTokenInput`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListAccessTokenInput {
    /// Offset of the first result, default 0.
    #[serde(default)]
    pub start: Option<i64>,
    /// Page size, default 20, at most 10000.
    #[serde(default)]
    pub count: Option<i64>,
    /// Filters, AND-ed together.
    #[serde(default)]
    pub filters: Option<Vec<FacetFilterInput>>,
}

impl ListAccessTokenInput {
    /// The tokens `owner` created, first page of `count`.
    pub fn owned_by(owner: &Urn, count: i64) -> Self {
        ListAccessTokenInput {
            start: Some(0),
            count: Some(count),
            filters: Some(vec![FacetFilterInput::equal("ownerUrn", &[owner.as_str()])]),
        }
    }
}

/// GraphQL `ListAccessTokenResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAccessTokenResult {
    /// Offset of the first returned token.
    pub start: usize,
    /// Number of tokens returned.
    pub count: usize,
    /// Number of tokens matching the filters.
    pub total: usize,
    /// The page.
    pub tokens: Vec<AccessTokenMetadata>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Serializes to exactly `expected` and reads back from it.
    fn round_trip<T>(value: &T, expected: serde_json::Value)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
    {
        assert_eq!(serde_json::to_value(value).unwrap(), expected);
        assert_eq!(&serde_json::from_value::<T>(expected).unwrap(), value);
    }

    #[test]
    fn json_keys_are_datahubs() {
        let urn = |s: &str| Urn::parse(s).unwrap();
        let info = DataHubAccessTokenInfo {
            name: "ci".into(),
            actor_urn: urn("urn:li:corpuser:alice"),
            owner_urn: urn("urn:li:corpuser:admin"),
            created_at: 1,
            expires_at: Some(2),
            description: Some("for CI".into()),
            last_used_at: None,
        };
        round_trip(
            &info,
            json!({"name": "ci", "actorUrn": "urn:li:corpuser:alice", "ownerUrn": "urn:li:corpuser:admin",
                   "createdAt": 1, "expiresAt": 2, "description": "for CI"}),
        );
        let never = DataHubAccessTokenInfo {
            expires_at: None,
            description: None,
            ..info.clone()
        };
        round_trip(
            &never,
            json!({"name": "ci", "actorUrn": "urn:li:corpuser:alice", "ownerUrn": "urn:li:corpuser:admin",
                   "createdAt": 1}),
        );
        let metadata = AccessTokenMetadata::from(StoredAccessToken {
            id: "abc=".into(),
            info,
        });
        round_trip(
            &metadata,
            json!({"urn": "urn:li:dataHubAccessToken:abc=", "type": "ACCESS_TOKEN", "id": "abc=",
                   "name": "ci", "description": "for CI", "actorUrn": "urn:li:corpuser:alice",
                   "ownerUrn": "urn:li:corpuser:admin", "createdAt": 1, "expiresAt": 2,
                   "lastUsedAt": null}),
        );
        round_trip(
            &RotateAccessTokenInput::with_duration_iso("abc=", "P2D"),
            json!({"tokenId": "abc=", "duration": null, "durationIso": "P2D"}),
        );
        let kept: RotateAccessTokenInput = serde_json::from_value(json!({"tokenId": "abc="})).unwrap();
        assert_eq!(kept, RotateAccessTokenInput::keep_lifetime("abc="));
    }
}
