//! Listing, checked against a naive model: random tokens, random filters
//! over every field and operator (negated or not), random pages. The model
//! re-implements the spec (section 6) from scratch; it does not call
//! `Filter::matches` or `listing_order`.

mod common;

use std::cmp::Ordering;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{user, Fixture, MANAGER};
use datahub_access_tokens::store::{ListQuery, MAX_COUNT};
use datahub_access_tokens::{
    DataHubAccessTokenInfo, Error, FacetFilterInput, ListAccessTokenInput, StoredAccessToken, TokenService,
    TokenStore,
};
use proptest::prelude::*;
use ring::digest;

const OWNERS: [&str; 3] = [
    "urn:li:corpuser:alice",
    "urn:li:corpuser:bob",
    "urn:li:corpuser:carol",
];
const NAMES: [&str; 4] = ["ci", "ci token", "nightly", "Nightly ingest"];
const DESCRIPTIONS: [&str; 3] = ["", "for ci", "ingest nightly"];
const FIELDS: [&str; 7] = [
    "name",
    "actorUrn",
    "ownerUrn",
    "createdAt",
    "expiresAt",
    "description",
    "lastUsedAt",
];
const CONDITIONS: [&str; 10] = [
    "EQUAL",
    "IN",
    "CONTAIN",
    "START_WITH",
    "END_WITH",
    "EXISTS",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL_TO",
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL_TO",
];
/// Text operands: every real value plus pieces of them and near misses.
const TEXTS: [&str; 16] = [
    "urn:li:corpuser:alice",
    "urn:li:corpuser:bob",
    "urn:li:corpuser:carol",
    "urn:li:corpuser:zed",
    "urn:li:corpuser:",
    "alice",
    "bob",
    "ci",
    "ci token",
    "nightly",
    "Nightly ingest",
    "ingest",
    "",
    "for ci",
    "ingest nightly",
    "token",
];

/// A realistic id (44 characters of base64, with `+ / =`), unrelated to `n`'s order.
fn token_id(n: usize) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, &(n as u64).to_be_bytes()))
}

/// Few owners, names and times, so ties and matches are common.
fn token_strategy() -> impl Strategy<Value = DataHubAccessTokenInfo> {
    (
        0..OWNERS.len(),
        0..OWNERS.len(),
        0..NAMES.len(),
        0i64..8,
        proptest::option::of(0i64..12),
        proptest::option::of(0..DESCRIPTIONS.len()),
        proptest::option::of(0i64..12),
    )
        .prop_map(|(owner, actor, name, created, expires, description, last_used)| {
            DataHubAccessTokenInfo {
                name: NAMES[name].into(),
                actor_urn: user(OWNERS[actor]),
                owner_urn: user(OWNERS[owner]),
                created_at: created * 1000,
                // Expiry may even precede creation: stores must not care.
                expires_at: expires.map(|e| e * 1000),
                description: description.map(|d| DESCRIPTIONS[d].to_owned()),
                last_used_at: last_used.map(|u| u * 1000),
            }
        })
}

/// Mostly filters that fit their field (so listings really get filtered),
/// sometimes ones that must be refused.
fn filter_strategy() -> impl Strategy<Value = FacetFilterInput> {
    let field = prop_oneof![12 => 0..FIELDS.len(), 1 => Just(FIELDS.len())];
    field
        .prop_flat_map(|field| {
            let name = FIELDS.get(field).copied().unwrap_or("colour");
            let is_time = matches!(name, "createdAt" | "expiresAt" | "lastUsedAt");
            let suitable: Vec<&str> = if is_time {
                vec![
                    "EQUAL",
                    "IN",
                    "EXISTS",
                    "GREATER_THAN",
                    "GREATER_THAN_OR_EQUAL_TO",
                    "LESS_THAN",
                    "LESS_THAN_OR_EQUAL_TO",
                ]
            } else {
                vec!["EQUAL", "IN", "EXISTS", "CONTAIN", "START_WITH", "END_WITH"]
            };
            let condition = prop_oneof![
                2 => Just(None),
                8 => proptest::sample::select(suitable).prop_map(|c| Some(c.to_owned())),
                1 => (0..CONDITIONS.len() + 1)
                    .prop_map(|c| Some(CONDITIONS.get(c).copied().unwrap_or("LIKE").to_owned())),
            ];
            let text = (0..TEXTS.len()).prop_map(|i| TEXTS[i].to_owned());
            let time = prop_oneof![
                3 => (-1i64..13).prop_map(|t| (t * 1000).to_string()),
                1 => (-1i64..13000).prop_map(|t| t.to_string()),
            ];
            let operand = if is_time {
                prop_oneof![12 => time, 1 => text, 1 => Just("soon".to_owned())].boxed()
            } else {
                prop_oneof![8 => text, 1 => time].boxed()
            };
            let len = prop_oneof![1 => Just(0usize), 12 => 1usize..4];
            let values = len.prop_flat_map(move |n| proptest::collection::vec(operand.clone(), n));
            (
                Just(name),
                condition,
                values,
                any::<bool>(),
                proptest::option::of(any::<bool>()),
            )
        })
        .prop_map(|(field, condition, values, as_single_value, negated)| {
            // The deprecated single `value` form, when there is one value.
            let (value, values) = if as_single_value && values.len() == 1 {
                (values.into_iter().next(), None)
            } else {
                (None, Some(values))
            };
            FacetFilterInput {
                field: field.into(),
                value,
                values,
                negated,
                condition,
            }
        })
}

// ---- The model: the spec's semantics, written out plainly. ----

enum FieldValue<'a> {
    Text(&'a str),
    Time(i64),
}

fn field_value<'a>(info: &'a DataHubAccessTokenInfo, field: &str) -> Option<FieldValue<'a>> {
    match field {
        "name" => Some(FieldValue::Text(&info.name)),
        "actorUrn" => Some(FieldValue::Text(info.actor_urn.as_str())),
        "ownerUrn" => Some(FieldValue::Text(info.owner_urn.as_str())),
        "description" => info.description.as_deref().map(FieldValue::Text),
        "createdAt" => Some(FieldValue::Time(info.created_at)),
        "expiresAt" => info.expires_at.map(FieldValue::Time),
        "lastUsedAt" => info.last_used_at.map(FieldValue::Time),
        _ => unreachable!("validity is checked first"),
    }
}

/// Whether the filter is acceptable, per the spec and the crate's
/// documented checks; `None` means it must be refused.
fn model_operands(f: &FacetFilterInput) -> Option<Vec<String>> {
    let is_time = matches!(f.field.as_str(), "createdAt" | "expiresAt" | "lastUsedAt");
    if !FIELDS.contains(&f.field.as_str()) {
        return None;
    }
    let condition = f.condition.as_deref().unwrap_or("EQUAL");
    let fits = match condition {
        "EQUAL" | "IN" | "EXISTS" => true,
        "CONTAIN" | "START_WITH" | "END_WITH" => !is_time,
        "GREATER_THAN" | "GREATER_THAN_OR_EQUAL_TO" | "LESS_THAN" | "LESS_THAN_OR_EQUAL_TO" => is_time,
        _ => false,
    };
    let values = match (&f.values, &f.value) {
        (Some(values), None) => values.clone(),
        (None, Some(value)) => vec![value.clone()],
        (None, None) => vec![],
        (Some(_), Some(_)) => unreachable!("the strategy sends one form"),
    };
    let numeric = values.iter().all(|v| v.parse::<i64>().is_ok());
    let ok = fits && (condition == "EXISTS" || !values.is_empty()) && (!is_time || numeric);
    ok.then_some(values)
}

fn model_matches(info: &DataHubAccessTokenInfo, f: &FacetFilterInput, values: &[String]) -> bool {
    let condition = f.condition.as_deref().unwrap_or("EQUAL");
    let hit = match field_value(info, &f.field) {
        // An absent field matches nothing (so only a negated filter selects it).
        None => false,
        Some(_) if condition == "EXISTS" => true,
        Some(FieldValue::Text(text)) => values.iter().any(|v| match condition {
            "EQUAL" | "IN" => text == v,
            "CONTAIN" => text.contains(v.as_str()),
            "START_WITH" => text.starts_with(v.as_str()),
            "END_WITH" => text.ends_with(v.as_str()),
            _ => unreachable!(),
        }),
        Some(FieldValue::Time(t)) => values.iter().any(|v| {
            let v: i64 = v.parse().unwrap();
            match condition {
                "EQUAL" | "IN" => t == v,
                "GREATER_THAN" => t > v,
                "GREATER_THAN_OR_EQUAL_TO" => t >= v,
                "LESS_THAN" => t < v,
                "LESS_THAN_OR_EQUAL_TO" => t <= v,
                _ => unreachable!(),
            }
        }),
    };
    hit != f.negated.unwrap_or(false)
}

/// expiresAt descending with never-expiring tokens last, then createdAt
/// descending, then id ascending.
fn model_order(a: &StoredAccessToken, b: &StoredAccessToken) -> Ordering {
    let expiry = match (a.info.expires_at, b.info.expires_at) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    expiry
        .then(b.info.created_at.cmp(&a.info.created_at))
        .then(a.id.cmp(&b.id))
}

/// Every matching token, in order; `None` if the filters must be refused.
fn model_list(tokens: &[StoredAccessToken], filters: &[FacetFilterInput]) -> Option<Vec<StoredAccessToken>> {
    let checked: Vec<(&FacetFilterInput, Vec<String>)> = filters
        .iter()
        .map(|f| model_operands(f).map(|values| (f, values)))
        .collect::<Option<_>>()?;
    let mut matching: Vec<StoredAccessToken> = tokens
        .iter()
        .filter(|t| {
            checked
                .iter()
                .all(|(f, values)| model_matches(&t.info, f, values))
        })
        .cloned()
        .collect();
    matching.sort_by(model_order);
    Some(matching)
}

fn ids(tokens: &[StoredAccessToken]) -> Vec<&str> {
    tokens.iter().map(|t| t.id.as_str()).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

/// Inserts the tokens, then deletes those marked, so the store's indexes
/// have seen removals too. Returns what is left.
async fn populate(
    f: &Fixture,
    infos: Vec<DataHubAccessTokenInfo>,
    deleted: &[bool],
) -> Vec<StoredAccessToken> {
    let mut kept = Vec::new();
    for (n, info) in infos.into_iter().enumerate() {
        let token = StoredAccessToken {
            id: token_id(n),
            info,
        };
        f.store.insert(token.clone()).await.unwrap();
        if deleted.get(n).copied().unwrap_or(false) {
            assert!(f.store.delete(&token.id).await.unwrap());
        } else {
            kept.push(token);
        }
    }
    kept
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn listing_matches_the_model(
        infos in proptest::collection::vec(token_strategy(), 0..40),
        deleted in proptest::collection::vec(proptest::bool::weighted(0.15), 40),
        filters in proptest::collection::vec(filter_strategy(), 0..4),
        start in 0usize..45,
        count in 0usize..45,
    ) {
        runtime().block_on(async {
            let f = Fixture::new();
            let tokens = populate(&f, infos, &deleted).await;
            let input = ListAccessTokenInput {
                start: Some(start as i64),
                count: Some(count as i64),
                filters: Some(filters.clone()),
            };
            let expected = model_list(&tokens, &filters);
            let query = ListQuery::from_input(&input);
            let Some(expected) = expected else {
                prop_assert!(
                    matches!(query, Err(Error::InvalidInput(_))),
                    "filters {:?} should be refused, got {:?}", filters, query
                );
                let listed = f.service.list_access_tokens(&user(MANAGER), &input).await;
                prop_assert!(matches!(listed, Err(Error::InvalidInput(_))));
                return Ok(());
            };
            let query = query.map_err(|e| TestCaseError::fail(format!("{filters:?} refused: {e}")))?;
            let page: Vec<StoredAccessToken> = expected.iter().skip(start).take(count).cloned().collect();

            // The store ...
            let listed = f.store.list(&query).await.unwrap();
            prop_assert_eq!(listed.total, expected.len());
            prop_assert_eq!(ids(&listed.tokens), ids(&page));
            prop_assert_eq!(&listed.tokens, &page, "records come back as stored");

            // ... and the service, as a manager.
            let result = f.service.list_access_tokens(&user(MANAGER), &input).await.unwrap();
            prop_assert_eq!(result.start, start);
            prop_assert_eq!(result.total, expected.len());
            prop_assert_eq!(result.count, page.len());
            let listed_ids: Vec<&str> = result.tokens.iter().map(|t| t.id.as_str()).collect();
            prop_assert_eq!(listed_ids, ids(&page));
            for (metadata, token) in result.tokens.iter().zip(&page) {
                prop_assert_eq!(metadata, &token.clone().into());
            }
            Ok(())
        })?;
    }

    #[test]
    fn generators_own_listing_matches_the_model(
        infos in proptest::collection::vec(token_strategy(), 0..40),
        owner in 0..2usize,
        extra in proptest::collection::vec(filter_strategy(), 0..2),
        start in 0usize..20,
        count in 0usize..20,
    ) {
        runtime().block_on(async {
            // alice and bob generate (see tests/common); carol cannot.
            let f = Fixture::new();
            let tokens = populate(&f, infos, &[]).await;
            let me = OWNERS[owner];
            let mut filters = extra;
            filters.push(FacetFilterInput::equal("ownerUrn", &[me]));
            let Some(expected) = model_list(&tokens, &filters) else { return Ok(()) };
            prop_assert!(expected.iter().all(|t| t.info.owner_urn.as_str() == me));
            let input = ListAccessTokenInput {
                start: Some(start as i64),
                count: Some(count as i64),
                filters: Some(filters),
            };
            let result = f.service.list_access_tokens(&user(me), &input).await.unwrap();
            prop_assert_eq!(result.total, expected.len());
            let listed: Vec<&str> = result.tokens.iter().map(|t| t.id.as_str()).collect();
            let page: Vec<&str> = ids(&expected).into_iter().skip(start).take(count).collect();
            prop_assert_eq!(listed, page);
            Ok(())
        })?;
    }

    #[test]
    fn paging_visits_every_match_once(
        infos in proptest::collection::vec(token_strategy(), 0..40),
        filters in proptest::collection::vec(filter_strategy(), 0..3),
        page_size in 1usize..7,
    ) {
        runtime().block_on(async {
            let f = Fixture::new();
            let tokens = populate(&f, infos, &[]).await;
            let Some(expected) = model_list(&tokens, &filters) else { return Ok(()) };
            let mut seen = Vec::new();
            let mut start = 0;
            loop {
                let input = ListAccessTokenInput {
                    start: Some(start as i64),
                    count: Some(page_size as i64),
                    filters: Some(filters.clone()),
                };
                let page = f.service.list_access_tokens(&user(MANAGER), &input).await.unwrap();
                prop_assert_eq!(page.total, expected.len());
                prop_assert!(page.count <= page_size);
                if page.tokens.is_empty() {
                    break;
                }
                start += page.count;
                seen.extend(page.tokens.into_iter().map(|t| t.id));
            }
            prop_assert_eq!(seen, ids(&expected));
            Ok(())
        })?;
    }

    #[test]
    fn delete_expired_matches_the_model(
        infos in proptest::collection::vec(token_strategy(), 0..40),
        now in -1i64..14,
    ) {
        runtime().block_on(async {
            let f = Fixture::new();
            let tokens = populate(&f, infos, &[]).await;
            let now = now * 1000 + if now % 2 == 0 { 0 } else { 1 };
            let mut expected: Vec<&str> = tokens
                .iter()
                .filter(|t| t.info.expires_at.is_some_and(|at| at < now))
                .map(|t| t.id.as_str())
                .collect();
            expected.sort_unstable();
            let mut deleted = f.store.delete_expired(now).await.unwrap();
            deleted.sort_unstable();
            prop_assert_eq!(&deleted, &expected);
            let left = f.store.list(&ListQuery::all(MAX_COUNT)).await.unwrap();
            prop_assert_eq!(left.total, tokens.len() - expected.len());
            prop_assert!(left.tokens.iter().all(|t| !deleted.contains(&t.id)));
            Ok(())
        })?;
    }
}
