//! The GraphQL types of DataHub's `auth.graphql`, with DataHub's names, and
//! their conversions to and from the crate's model.

use async_graphql::{
    Enum, InputObject, InputValueError, InputValueResult, Scalar, ScalarType, SimpleObject, Value,
};

use crate::duration::AccessTokenDuration as Duration;
use crate::model;

/// A 64-bit integer, here milliseconds since the epoch (DataHub's `Long`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Long(pub(crate) i64);

#[Scalar(name = "Long")]
impl ScalarType for Long {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n.as_i64().map(Long).ok_or_else(|| {
                InputValueError::custom(format!("Long must be a whole number of 64 bits, got {n}"))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

/// The kind of access token (GraphQL `AccessTokenType`). DataHub's enum has
/// PERSONAL only: session tokens are minted at login, never requested here,
/// so `type: SESSION` is refused as the document error it is in DataHub.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "AccessTokenType")]
pub(crate) enum AccessTokenType {
    /// Generates a personal access token.
    Personal,
}

impl From<AccessTokenType> for model::AccessTokenType {
    fn from(t: AccessTokenType) -> Self {
        match t {
            AccessTokenType::Personal => model::AccessTokenType::Personal,
        }
    }
}

/// How long a new access token stays valid (GraphQL `AccessTokenDuration`).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "AccessTokenDuration")]
pub(crate) enum AccessTokenDuration {
    /// 1 hour.
    OneHour,
    /// 1 day.
    OneDay,
    /// 1 week.
    OneWeek,
    /// 1 month (30 days).
    OneMonth,
    /// 3 months (90 days).
    ThreeMonths,
    /// 6 months (180 days).
    SixMonths,
    /// 1 year (365 days).
    OneYear,
    /// No expiry, where the deployment allows it.
    NoExpiry,
}

impl From<AccessTokenDuration> for Duration {
    fn from(d: AccessTokenDuration) -> Self {
        match d {
            AccessTokenDuration::OneHour => Duration::OneHour,
            AccessTokenDuration::OneDay => Duration::OneDay,
            AccessTokenDuration::OneWeek => Duration::OneWeek,
            AccessTokenDuration::OneMonth => Duration::OneMonth,
            AccessTokenDuration::ThreeMonths => Duration::ThreeMonths,
            AccessTokenDuration::SixMonths => Duration::SixMonths,
            AccessTokenDuration::OneYear => Duration::OneYear,
            AccessTokenDuration::NoExpiry => Duration::NoExpiry,
        }
    }
}

/// The kind of entity (GraphQL `EntityType`; tokens are ACCESS_TOKEN).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "EntityType")]
pub(crate) enum EntityType {
    /// A DataHub access token.
    AccessToken,
}

/// How a filter compares (GraphQL `FilterOperator`, DataHub's whole enum).
/// Operators that make no sense for token fields are rejected with a message
/// naming the supported ones.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "FilterOperator")]
pub(crate) enum FilterOperator {
    /// Text contains a value.
    Contain,
    /// Equal to any of the values (the default).
    Equal,
    /// Case-insensitive equality (not supported for tokens).
    Iequal,
    /// Equal to any of the values.
    In,
    /// The field is present.
    Exists,
    /// Greater than a value.
    GreaterThan,
    /// Greater than or equal to a value.
    GreaterThanOrEqualTo,
    /// Less than a value.
    LessThan,
    /// Less than or equal to a value.
    LessThanOrEqualTo,
    /// Text starts with a value.
    StartWith,
    /// Text ends with a value.
    EndWith,
    /// Graph operator (not supported for tokens).
    DescendantsIncl,
    /// Graph operator (not supported for tokens).
    AncestorsIncl,
    /// Graph operator (not supported for tokens).
    RelatedIncl,
}

impl FilterOperator {
    fn as_str(self) -> &'static str {
        match self {
            Self::Contain => "CONTAIN",
            Self::Equal => "EQUAL",
            Self::Iequal => "IEQUAL",
            Self::In => "IN",
            Self::Exists => "EXISTS",
            Self::GreaterThan => "GREATER_THAN",
            Self::GreaterThanOrEqualTo => "GREATER_THAN_OR_EQUAL_TO",
            Self::LessThan => "LESS_THAN",
            Self::LessThanOrEqualTo => "LESS_THAN_OR_EQUAL_TO",
            Self::StartWith => "START_WITH",
            Self::EndWith => "END_WITH",
            Self::DescendantsIncl => "DESCENDANTS_INCL",
            Self::AncestorsIncl => "ANCESTORS_INCL",
            Self::RelatedIncl => "RELATED_INCL",
        }
    }
}

/// What token to generate (GraphQL `CreateAccessTokenInput`).
#[derive(InputObject, Debug, Clone)]
#[graphql(name = "CreateAccessTokenInput")]
pub(crate) struct CreateAccessTokenInput {
    /// The type of token; only PERSONAL can be created.
    #[graphql(name = "type")]
    token_type: AccessTokenType,
    /// The user the token acts as.
    actor_urn: String,
    /// A fixed lifetime; give this or `durationIso`.
    duration: Option<AccessTokenDuration>,
    /// An ISO-8601 lifetime such as `P30D`; give this or `duration`.
    duration_iso: Option<String>,
    /// The token's name.
    name: String,
    /// An optional description.
    description: Option<String>,
}

impl From<CreateAccessTokenInput> for model::CreateAccessTokenInput {
    fn from(i: CreateAccessTokenInput) -> Self {
        model::CreateAccessTokenInput {
            token_type: i.token_type.into(),
            actor_urn: i.actor_urn,
            duration: i.duration.map(Into::into),
            duration_iso: i.duration_iso,
            name: i.name,
            description: i.description,
        }
    }
}

/// One listing filter (GraphQL `FacetFilterInput`).
#[derive(InputObject, Debug, Clone)]
#[graphql(name = "FacetFilterInput")]
pub(crate) struct FacetFilterInput {
    /// A field of `DataHubAccessTokenInfo`, e.g. `ownerUrn`.
    field: String,
    /// Deprecated single value; read as `values: [value]`.
    value: Option<String>,
    /// Values, any of which may match.
    values: Option<Vec<String>>,
    /// Inverts the filter.
    negated: Option<bool>,
    /// The operator, default EQUAL.
    condition: Option<FilterOperator>,
}

/// Which tokens to list (GraphQL `ListAccessTokenInput`).
#[derive(InputObject, Debug, Clone)]
#[graphql(name = "ListAccessTokenInput")]
pub(crate) struct ListAccessTokenInput {
    /// Offset of the first result, default 0.
    start: Option<i32>,
    /// Page size, default 20.
    count: Option<i32>,
    /// Filters, AND-ed together.
    filters: Option<Vec<FacetFilterInput>>,
}

impl ListAccessTokenInput {
    /// The most tokens its page can hold: the query's complexity counts the
    /// selection once for each (a count out of range is refused later). At
    /// least one, so a listing of no tokens still costs its query.
    pub(crate) fn page_size(&self) -> usize {
        self.count
            .map_or(crate::store::DEFAULT_COUNT, |count| {
                usize::try_from(count).unwrap_or(0).min(crate::store::MAX_COUNT)
            })
            .max(1)
    }
}

impl From<ListAccessTokenInput> for model::ListAccessTokenInput {
    fn from(i: ListAccessTokenInput) -> Self {
        model::ListAccessTokenInput {
            start: i.start.map(i64::from),
            count: i.count.map(i64::from),
            filters: i.filters.map(|filters| {
                filters
                    .into_iter()
                    .map(|f| model::FacetFilterInput {
                        field: f.field,
                        value: f.value,
                        values: f.values,
                        negated: f.negated,
                        condition: f.condition.map(|c| c.as_str().to_owned()),
                    })
                    .collect()
            }),
        }
    }
}

/// What is known about a token, never the token itself (GraphQL `AccessTokenMetadata`).
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "AccessTokenMetadata")]
pub(crate) struct AccessTokenMetadata {
    /// `urn:li:dataHubAccessToken:<id>`.
    urn: String,
    /// Always ACCESS_TOKEN.
    #[graphql(name = "type")]
    entity_type: EntityType,
    /// The token id.
    id: String,
    /// The token's name.
    name: String,
    /// The token's description.
    description: Option<String>,
    /// Whose identity the token carries.
    actor_urn: String,
    /// Who created the token.
    owner_urn: String,
    /// Creation time, ms since the epoch.
    created_at: Long,
    /// Expiry time, ms since the epoch; null = never expires.
    expires_at: Option<Long>,
    /// Last successful validation, ms since the epoch; null = never used.
    /// Not in DataHub's schema: an addition of this crate.
    last_used_at: Option<Long>,
}

impl From<model::AccessTokenMetadata> for AccessTokenMetadata {
    fn from(m: model::AccessTokenMetadata) -> Self {
        AccessTokenMetadata {
            urn: m.urn,
            entity_type: EntityType::AccessToken,
            id: m.id,
            name: m.name,
            description: m.description,
            actor_urn: m.actor_urn.to_string(),
            owner_urn: m.owner_urn.to_string(),
            created_at: Long(m.created_at),
            expires_at: m.expires_at.map(Long),
            last_used_at: m.last_used_at.map(Long),
        }
    }
}

/// A newly generated token, returned this once (GraphQL `AccessToken`).
#[derive(SimpleObject, Clone)]
#[graphql(name = "AccessToken")]
pub(crate) struct AccessToken {
    /// The access token itself.
    access_token: String,
    /// Metadata to identify the token later.
    metadata: Option<AccessTokenMetadata>,
}

// Written by hand so the plaintext token never reaches a log.
impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"<redacted>")
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl From<model::AccessToken> for AccessToken {
    fn from(t: model::AccessToken) -> Self {
        AccessToken {
            access_token: t.expose_access_token().to_owned(),
            metadata: t.metadata.map(Into::into),
        }
    }
}

/// One page of token metadata (GraphQL `ListAccessTokenResult`).
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ListAccessTokenResult")]
pub(crate) struct ListAccessTokenResult {
    /// Offset of the first returned token.
    start: i32,
    /// Number of tokens returned.
    count: i32,
    /// Number of tokens matching the filters.
    total: i32,
    /// The page of tokens.
    tokens: Vec<AccessTokenMetadata>,
}

impl From<model::ListAccessTokenResult> for ListAccessTokenResult {
    fn from(r: model::ListAccessTokenResult) -> Self {
        // GraphQL Int is 32 bits; stores never hold 2^31 tokens, but clamp rather than wrap.
        let int = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        ListAccessTokenResult {
            start: int(r.start),
            count: int(r.count),
            total: int(r.total),
            tokens: r.tokens.into_iter().map(Into::into).collect(),
        }
    }
}
