//! Listing queries: validated filters, DataHub's result order, and pages.
//!
//! Stores receive a [`ListQuery`] whose filters are already checked, so a
//! backend only translates them (to SQL, say) or evaluates them with
//! [`Filter::matches`]; the order they must return is [`ListingKey`]'s.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{DataHubAccessTokenInfo, FacetFilterInput, ListAccessTokenInput, StoredAccessToken};

/// Page size when the request gives none (DataHub's default).
pub const DEFAULT_COUNT: usize = 20;
/// Largest page a request may ask for.
pub const MAX_COUNT: usize = 10_000;
/// Most filters one request may carry.
pub const MAX_FILTERS: usize = 64;
/// Most values one filter may carry.
pub const MAX_FILTER_VALUES: usize = 1024;

/// A filterable field of [`DataHubAccessTokenInfo`].
///
/// Non-exhaustive: fields may be added (`lastUsedAt` was). A store that
/// translates filters into its own queries can answer a field it does not
/// know by filtering in memory with [`Filter::matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenField {
    /// `name` (text).
    Name,
    /// `actorUrn` (text).
    ActorUrn,
    /// `ownerUrn` (text).
    OwnerUrn,
    /// `createdAt` (ms).
    CreatedAt,
    /// `expiresAt` (ms, may be absent).
    ExpiresAt,
    /// `description` (text, may be absent).
    Description,
    /// `lastUsedAt` (ms, absent until the token first validates; our
    /// addition): `LESS_THAN` finds stale tokens, negated `EXISTS` unused ones.
    LastUsedAt,
}

impl TokenField {
    /// Every field.
    pub const ALL: [TokenField; 7] = [
        Self::Name,
        Self::ActorUrn,
        Self::OwnerUrn,
        Self::CreatedAt,
        Self::ExpiresAt,
        Self::Description,
        Self::LastUsedAt,
    ];

    /// DataHub's JSON name, e.g. `ownerUrn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::ActorUrn => "actorUrn",
            Self::OwnerUrn => "ownerUrn",
            Self::CreatedAt => "createdAt",
            Self::ExpiresAt => "expiresAt",
            Self::Description => "description",
            Self::LastUsedAt => "lastUsedAt",
        }
    }

    /// Whether the field holds milliseconds rather than text.
    pub fn is_time(self) -> bool {
        matches!(self, Self::CreatedAt | Self::ExpiresAt | Self::LastUsedAt)
    }

    fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name).ok_or_else(|| {
            Error::invalid_input(format!(
                "unknown filter field {name:?}; filterable fields: {}",
                Self::ALL.map(Self::as_str).join(", ")
            ))
        })
    }
}

impl fmt::Display for TokenField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter operator (DataHub's `FilterOperator`).
///
/// Non-exhaustive: DataHub has more operators than these, and they may be
/// added. A store can answer one it does not know with [`Filter::matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Condition {
    /// Equal to any value.
    Equal,
    /// Same as `Equal` (any of the values).
    In,
    /// Text contains a value.
    Contain,
    /// Text starts with a value.
    StartWith,
    /// Text ends with a value.
    EndWith,
    /// The field is present (values are ignored).
    Exists,
    /// Time is greater than a value.
    GreaterThan,
    /// Time is greater than or equal to a value.
    GreaterThanOrEqualTo,
    /// Time is less than a value.
    LessThan,
    /// Time is less than or equal to a value.
    LessThanOrEqualTo,
}

impl Condition {
    /// Every operator.
    pub const ALL: [Condition; 10] = [
        Self::Equal,
        Self::In,
        Self::Contain,
        Self::StartWith,
        Self::EndWith,
        Self::Exists,
        Self::GreaterThan,
        Self::GreaterThanOrEqualTo,
        Self::LessThan,
        Self::LessThanOrEqualTo,
    ];

    /// DataHub's name, e.g. `LESS_THAN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "EQUAL",
            Self::In => "IN",
            Self::Contain => "CONTAIN",
            Self::StartWith => "START_WITH",
            Self::EndWith => "END_WITH",
            Self::Exists => "EXISTS",
            Self::GreaterThan => "GREATER_THAN",
            Self::GreaterThanOrEqualTo => "GREATER_THAN_OR_EQUAL_TO",
            Self::LessThan => "LESS_THAN",
            Self::LessThanOrEqualTo => "LESS_THAN_OR_EQUAL_TO",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name).ok_or_else(|| {
            Error::invalid_input(format!(
                "unsupported filter condition {name:?}; supported: {}",
                Self::ALL.map(Self::as_str).join(", ")
            ))
        })
    }

    fn applies_to(self, field: TokenField) -> bool {
        match self {
            Self::Equal | Self::In | Self::Exists => true,
            Self::Contain | Self::StartWith | Self::EndWith => !field.is_time(),
            Self::GreaterThan | Self::GreaterThanOrEqualTo | Self::LessThan | Self::LessThanOrEqualTo => {
                field.is_time()
            }
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter's operands, typed by the field they apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterValues {
    /// Values for a text field.
    Text(Vec<String>),
    /// Values for a time field, ms since the epoch.
    Millis(Vec<i64>),
}

/// One validated filter: `field condition any-of(values)`, optionally negated.
///
/// A token whose field is absent (`expiresAt`, `description`, `lastUsedAt`) matches no
/// condition, so a negated filter selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    field: TokenField,
    condition: Condition,
    values: FilterValues,
    negated: bool,
}

impl Filter {
    /// Builds and checks a filter: the condition must suit the field, every
    /// condition but `EXISTS` needs at least one value, and values of time
    /// fields must be whole milliseconds.
    pub fn new(field: TokenField, condition: Condition, values: Vec<String>, negated: bool) -> Result<Self> {
        if !condition.applies_to(field) {
            let kind = if field.is_time() { "a time" } else { "a text" };
            return Err(Error::invalid_input(format!(
                "filter condition {condition} does not apply to {field}, which is {kind} field"
            )));
        }
        if condition != Condition::Exists && values.is_empty() {
            return Err(Error::invalid_input(format!(
                "filter on {field} with condition {condition} needs at least one value"
            )));
        }
        if values.len() > MAX_FILTER_VALUES {
            return Err(Error::invalid_input(format!(
                "filter on {field} has {} values; at most {MAX_FILTER_VALUES} are allowed",
                values.len()
            )));
        }
        let values = if field.is_time() {
            let millis = values.iter().map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    Error::invalid_input(format!(
                        "filter on {field}: value {v:?} is not a number of milliseconds since the epoch"
                    ))
                })
            });
            FilterValues::Millis(millis.collect::<Result<_>>()?)
        } else {
            FilterValues::Text(values)
        };
        Ok(Filter {
            field,
            condition,
            values,
            negated,
        })
    }

    /// Reads a GraphQL `FacetFilterInput`: `value` is taken as `[value]`,
    /// `condition` defaults to `EQUAL`, `negated` to false.
    pub fn from_input(input: &FacetFilterInput) -> Result<Self> {
        let field = TokenField::parse(&input.field)?;
        let condition = match &input.condition {
            Some(c) => Condition::parse(c)?,
            None => Condition::Equal,
        };
        let values = match (&input.values, &input.value) {
            (Some(values), Some(value)) if values.as_slice() != std::slice::from_ref(value) => {
                return Err(Error::invalid_input(format!(
                    "filter on {field} gives both value and values, and they differ; give values only"
                )))
            }
            (Some(values), _) => values.clone(),
            (None, Some(value)) => vec![value.clone()],
            (None, None) => Vec::new(),
        };
        Self::new(field, condition, values, input.negated.unwrap_or(false))
    }

    /// The field filtered on.
    pub fn field(&self) -> TokenField {
        self.field
    }

    /// The operator.
    pub fn condition(&self) -> Condition {
        self.condition
    }

    /// The operands (ignored for `EXISTS`).
    pub fn values(&self) -> &FilterValues {
        &self.values
    }

    /// Whether the filter is inverted.
    pub fn negated(&self) -> bool {
        self.negated
    }

    /// If this filter selects exactly the tokens whose `field` equals one of
    /// a set of texts (a non-negated `EQUAL`/`IN` on a text field), that set:
    /// what an index on the field can answer.
    pub fn equal_texts(&self, field: TokenField) -> Option<&[String]> {
        match (&self.values, self.condition) {
            (FilterValues::Text(values), Condition::Equal | Condition::In)
                if self.field == field && !self.negated =>
            {
                Some(values)
            }
            _ => None,
        }
    }

    /// Whether `info` passes this filter.
    pub fn matches(&self, info: &DataHubAccessTokenInfo) -> bool {
        self.matches_unnegated(info) != self.negated
    }

    // `new` pairs each field with values of its kind and conditions that
    // apply to it. Any other pair would match nothing, not panic.
    fn matches_unnegated(&self, info: &DataHubAccessTokenInfo) -> bool {
        match &self.values {
            FilterValues::Text(values) => {
                let text = match self.field {
                    TokenField::Name => Some(info.name.as_str()),
                    TokenField::ActorUrn => Some(info.actor_urn.as_str()),
                    TokenField::OwnerUrn => Some(info.owner_urn.as_str()),
                    TokenField::Description => info.description.as_deref(),
                    TokenField::CreatedAt | TokenField::ExpiresAt | TokenField::LastUsedAt => None,
                };
                let Some(text) = text else { return false };
                let test: fn(&str, &str) -> bool = match self.condition {
                    Condition::Exists => return true,
                    Condition::Equal | Condition::In => |t, v| t == v,
                    Condition::Contain => |t, v| t.contains(v),
                    Condition::StartWith => |t, v| t.starts_with(v),
                    Condition::EndWith => |t, v| t.ends_with(v),
                    _ => return false,
                };
                values.iter().any(|v| test(text, v))
            }
            FilterValues::Millis(values) => {
                let millis = match self.field {
                    TokenField::CreatedAt => Some(info.created_at),
                    TokenField::ExpiresAt => info.expires_at,
                    TokenField::LastUsedAt => info.last_used_at,
                    _ => None,
                };
                let Some(millis) = millis else { return false };
                let test: fn(i64, i64) -> bool = match self.condition {
                    Condition::Exists => return true,
                    Condition::Equal | Condition::In => |t, v| t == v,
                    Condition::GreaterThan => |t, v| t > v,
                    Condition::GreaterThanOrEqualTo => |t, v| t >= v,
                    Condition::LessThan => |t, v| t < v,
                    Condition::LessThanOrEqualTo => |t, v| t <= v,
                    _ => return false,
                };
                values.iter().any(|&v| test(millis, v))
            }
        }
    }
}

/// A validated listing request: filters (AND-ed) and the page to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// All must match.
    pub filters: Vec<Filter>,
    /// Offset of the first token to return, in [`ListingKey`] order.
    pub start: usize,
    /// Most tokens to return.
    pub count: usize,
}

impl ListQuery {
    /// Every token, first page of `count`.
    pub fn all(count: usize) -> Self {
        ListQuery {
            filters: Vec::new(),
            start: 0,
            count,
        }
    }

    /// Reads a GraphQL `ListAccessTokenInput`, checking every part.
    pub fn from_input(input: &ListAccessTokenInput) -> Result<Self> {
        let start = match input.start {
            None => 0,
            Some(s) if s < 0 => {
                return Err(Error::invalid_input(format!(
                    "start must not be negative (got {s})"
                )))
            }
            Some(s) => usize::try_from(s).map_err(|_| Error::invalid_input("start is too large"))?,
        };
        let count = match input.count {
            None => DEFAULT_COUNT,
            Some(c) if !(0..=MAX_COUNT as i64).contains(&c) => {
                return Err(Error::invalid_input(format!(
                    "count must be between 0 and {MAX_COUNT} (got {c})"
                )))
            }
            Some(c) => c as usize,
        };
        let inputs = input.filters.as_deref().unwrap_or_default();
        if inputs.len() > MAX_FILTERS {
            return Err(Error::invalid_input(format!(
                "{} filters given; at most {MAX_FILTERS} are allowed",
                inputs.len()
            )));
        }
        let filters = inputs.iter().map(Filter::from_input).collect::<Result<_>>()?;
        Ok(ListQuery {
            filters,
            start,
            count,
        })
    }

    /// Whether `info` passes every filter.
    pub fn matches(&self, info: &DataHubAccessTokenInfo) -> bool {
        self.filters.iter().all(|f| f.matches(info))
    }
}

/// One page of a listing, as a store returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// How many tokens match the filters in all.
    pub total: usize,
    /// The requested page of them, in [`ListingKey`] order.
    pub tokens: Vec<StoredAccessToken>,
}

/// DataHub's listing order as a sortable key: `expiresAt` descending with
/// never-expiring tokens last, then `createdAt` descending, then id
/// ascending. Ids are unique, so the order is total and pages never skip or
/// repeat.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListingKey {
    // `Reverse(None)` sorts after every `Reverse(Some(_))`.
    expires_at: Reverse<Option<i64>>,
    created_at: Reverse<i64>,
    // Shared: a store may index each token under several keys.
    id: Arc<str>,
}

impl ListingKey {
    /// The key of a stored token.
    pub fn of(token: &StoredAccessToken) -> Self {
        ListingKey {
            expires_at: Reverse(token.info.expires_at),
            created_at: Reverse(token.info.created_at),
            id: token.id.as_str().into(),
        }
    }

    /// The token id this key belongs to.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Compares two tokens in listing order (see [`ListingKey`]).
pub fn listing_order(a: &StoredAccessToken, b: &StoredAccessToken) -> Ordering {
    let key = |t: &StoredAccessToken| (Reverse(t.info.expires_at), Reverse(t.info.created_at));
    key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::urn::Urn;

    fn info(expires_at: Option<i64>, description: Option<&str>) -> DataHubAccessTokenInfo {
        DataHubAccessTokenInfo {
            name: "ci token".into(),
            actor_urn: Urn::corp_user("alice").unwrap(),
            owner_urn: Urn::corp_user("admin").unwrap(),
            created_at: 1_000,
            expires_at,
            description: description.map(Into::into),
            last_used_at: None,
        }
    }

    fn filter(field: &str, condition: &str, values: &[&str], negated: bool) -> Result<Filter> {
        Filter::from_input(&FacetFilterInput {
            field: field.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
            condition: Some(condition.into()),
            negated: Some(negated),
            value: None,
        })
    }

    #[test]
    fn absent_fields_match_only_when_negated() {
        let never = info(None, None);
        let lt = filter("expiresAt", "LESS_THAN", &["5000"], false).unwrap();
        assert!(!lt.matches(&never));
        assert!(filter("expiresAt", "LESS_THAN", &["5000"], true)
            .unwrap()
            .matches(&never));
        assert!(lt.matches(&info(Some(4000), None)));
        assert!(!filter("description", "EXISTS", &[], false)
            .unwrap()
            .matches(&never));
        assert!(filter("description", "EXISTS", &[], false)
            .unwrap()
            .matches(&info(None, Some("x"))));
    }

    #[test]
    fn text_conditions() {
        let i = info(None, Some("nightly build"));
        for (cond, value, expected) in [
            ("EQUAL", "ci token", true),
            ("EQUAL", "ci", false),
            ("CONTAIN", "i t", true),
            ("START_WITH", "ci", true),
            ("END_WITH", "token", true),
            ("END_WITH", "ci", false),
        ] {
            assert_eq!(
                filter("name", cond, &[value], false).unwrap().matches(&i),
                expected,
                "{cond} {value}"
            );
        }
        assert!(filter("name", "IN", &["x", "ci token"], false)
            .unwrap()
            .matches(&i));
    }

    #[test]
    fn rejects_bad_filters_with_clear_messages() {
        let msg = |r: Result<Filter>| r.unwrap_err().to_string();
        assert!(msg(filter("colour", "EQUAL", &["x"], false)).contains("unknown filter field \"colour\""));
        assert!(msg(filter("name", "LIKE", &["x"], false)).contains("unsupported filter condition \"LIKE\""));
        assert!(msg(filter("createdAt", "EQUAL", &["yesterday"], false)).contains("not a number"));
        assert!(msg(filter("name", "LESS_THAN", &["x"], false)).contains("does not apply to name"));
        assert!(msg(filter("createdAt", "CONTAIN", &["1"], false)).contains("does not apply to createdAt"));
        assert!(msg(filter("name", "EQUAL", &[], false)).contains("needs at least one value"));
        let both = FacetFilterInput {
            field: "name".into(),
            value: Some("a".into()),
            values: Some(vec!["b".into()]),
            ..Default::default()
        };
        assert!(Filter::from_input(&both)
            .unwrap_err()
            .to_string()
            .contains("both value and values"));
    }

    #[test]
    fn deprecated_value_is_accepted() {
        let f = Filter::from_input(&FacetFilterInput {
            field: "ownerUrn".into(),
            value: Some("urn:li:corpuser:admin".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            f.equal_texts(TokenField::OwnerUrn),
            Some(&["urn:li:corpuser:admin".to_string()][..])
        );
        assert!(f.matches(&info(None, None)));
    }

    #[test]
    fn paging_bounds() {
        let q = |start, count| {
            ListQuery::from_input(&ListAccessTokenInput {
                start,
                count,
                filters: None,
            })
        };
        assert_eq!(q(None, None).unwrap().count, 20, "DataHub's default page size");
        assert!(q(Some(-1), None)
            .unwrap_err()
            .to_string()
            .contains("start must not be negative"));
        assert!(q(None, Some(10_001))
            .unwrap_err()
            .to_string()
            .contains("count must be between 0 and 10000"));
        assert!(q(None, Some(-5)).is_err());
        assert_eq!(q(Some(3), Some(0)).unwrap().count, 0);
    }

    #[test]
    fn order_puts_never_expiring_last() {
        let t = |id: &str, exp, created| StoredAccessToken {
            id: id.into(),
            info: DataHubAccessTokenInfo {
                expires_at: exp,
                created_at: created,
                ..info(None, None)
            },
        };
        let mut tokens = [
            t("a", None, 5),
            t("b", Some(10), 1),
            t("c", Some(20), 1),
            t("d", Some(10), 2),
            t("e", Some(10), 2),
        ];
        tokens.sort_by(listing_order);
        let ids: Vec<_> = tokens.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "e", "b", "a"]);
        let mut keys: Vec<_> = tokens.iter().map(ListingKey::of).collect();
        keys.reverse();
        keys.sort();
        assert_eq!(keys.iter().map(|k| k.id()).collect::<Vec<_>>(), ids);
    }
}
