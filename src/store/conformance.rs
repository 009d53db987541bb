//! The conformance suite every [`TokenStore`] must pass (feature `test-util`).
//!
//! Each check is a plain async function taking an **empty** store and
//! panicking with a message naming the broken clause of the trait's contract.
//! [`run_all`] runs every check, each on a fresh store from your factory:
//!
//! ```
//! use datahub_access_tokens::{store::conformance, MemoryTokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! conformance::run_all(|| async { MemoryTokenStore::new() }).await;
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::digest;

use super::{listing_order, Condition, Filter, ListQuery, OwnerLimit, TokenField, TokenStore, TokenUse};
use crate::error::Error;
use crate::model::{DataHubAccessTokenInfo, StoredAccessToken};
use crate::urn::Urn;

/// Runs every check of the suite, each on a fresh, empty store.
pub async fn run_all<F, Fut, S>(mut new_store: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
    S: TokenStore,
{
    insert_get_delete(&new_store().await).await;
    duplicate_ids_are_refused(&new_store().await).await;
    records_round_trip(&new_store().await).await;
    each_filter_matches_its_definition(&new_store().await).await;
    filters_and_values_combine(&new_store().await).await;
    values_are_literal_and_any_may_match(&new_store().await).await;
    order_breaks_ties_by_id(&new_store().await).await;
    pages_never_skip_or_repeat(&new_store().await).await;
    delete_expired_removes_exactly_the_expired(&new_store().await).await;
    concurrent_inserts(Arc::new(new_store().await)).await;
    owner_limit_is_respected(&new_store().await).await;
    replace_is_all_or_nothing(&new_store().await).await;
    concurrent_replaces_of_one_token(Arc::new(new_store().await)).await;
    replacing_is_never_seen_half_done(Arc::new(new_store().await)).await;
    concurrent_inserts_never_exceed_the_owner_limit(Arc::new(new_store().await)).await;
    last_use_is_recorded(&new_store().await).await;
    a_use_racing_a_revocation_never_revives(Arc::new(new_store().await)).await;
}

/// A realistic token id (44 characters of base64, may hold `+ / =`) for `n`.
pub fn token_id(n: u64) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, &n.to_le_bytes()))
}

fn user(name: &str) -> Urn {
    Urn::corp_user(name).expect("valid test urn")
}

/// A token record for tests: id from `n`, owned by and acting as `owner`.
pub fn sample_token(n: u64, owner: &str, created_at: i64, expires_at: Option<i64>) -> StoredAccessToken {
    StoredAccessToken {
        id: token_id(n),
        info: DataHubAccessTokenInfo {
            name: format!("token {n}"),
            actor_urn: user(owner),
            owner_urn: user(owner),
            created_at,
            expires_at,
            description: None,
            last_used_at: None,
        },
    }
}

async fn insert_all(store: &dyn TokenStore, tokens: &[StoredAccessToken]) {
    for token in tokens {
        store
            .insert(token.clone())
            .await
            .expect("insert of a new id succeeds");
    }
}

/// What `query` must return, computed naively from the filter definitions.
fn expected(tokens: &[StoredAccessToken], query: &ListQuery) -> (usize, Vec<String>) {
    let mut matching: Vec<_> = tokens.iter().filter(|t| query.matches(&t.info)).collect();
    matching.sort_by(|a, b| listing_order(a, b));
    let page = matching
        .iter()
        .skip(query.start)
        .take(query.count)
        .map(|t| t.id.clone())
        .collect();
    (matching.len(), page)
}

async fn assert_lists(store: &dyn TokenStore, tokens: &[StoredAccessToken], query: &ListQuery) {
    let page = store.list(query).await.expect("list succeeds");
    let ids: Vec<String> = page.tokens.iter().map(|t| t.id.clone()).collect();
    assert_eq!((page.total, ids), expected(tokens, query), "listing {query:?}");
    for token in &page.tokens {
        let original = tokens
            .iter()
            .find(|t| t.id == token.id)
            .expect("listed token was inserted");
        assert_eq!(token, original, "listing returns records as inserted");
    }
}

/// [`TokenStore::contains`], checked against
/// [`TokenStore::contains_now`] wherever the store answers at once.
async fn contains<S: TokenStore + ?Sized>(store: &S, id: &str) -> bool {
    let exists = store.contains(id).await.unwrap();
    if let Some(now) = store.contains_now(id) {
        assert_eq!(now, exists, "contains_now({id:?}) agrees with contains");
    }
    exists
}

/// Insert, look up, delete; absence is `None`/`false`, not an error.
pub async fn insert_get_delete(store: &dyn TokenStore) {
    let token = sample_token(1, "alice", 1_000, Some(5_000));
    assert_eq!(
        store.get(&token.id).await.unwrap(),
        None,
        "get of an unknown id is Ok(None)"
    );
    assert!(
        !contains(store, &token.id).await,
        "contains of an unknown id is false"
    );
    assert!(
        !store.delete(&token.id).await.unwrap(),
        "delete of an unknown id is Ok(false)"
    );
    store.insert(token.clone()).await.unwrap();
    assert_eq!(store.get(&token.id).await.unwrap(), Some(token.clone()));
    assert!(contains(store, &token.id).await);
    assert!(
        store.delete(&token.id).await.unwrap(),
        "delete of a present id is Ok(true)"
    );
    assert_eq!(
        store.get(&token.id).await.unwrap(),
        None,
        "a deleted token is gone"
    );
    assert!(!contains(store, &token.id).await);
    assert!(
        !store.delete(&token.id).await.unwrap(),
        "a second delete finds nothing"
    );
    assert_eq!(store.list(&ListQuery::all(10)).await.unwrap().total, 0);
}

/// A second insert of an id fails with `AlreadyExists` and changes nothing.
pub async fn duplicate_ids_are_refused(store: &dyn TokenStore) {
    let first = sample_token(7, "alice", 1_000, None);
    let mut second = sample_token(7, "bob", 2_000, Some(9_000));
    second.info.name = "impostor".into();
    store.insert(first.clone()).await.unwrap();
    match store.insert(second).await {
        Err(Error::AlreadyExists { id }) => assert_eq!(id, first.id),
        other => panic!("duplicate insert must fail with AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get(&first.id).await.unwrap(),
        Some(first.clone()),
        "the original is unchanged"
    );
    assert_eq!(store.list(&ListQuery::all(10)).await.unwrap().total, 1);
}

/// Every field comes back exactly as stored, including absent ones,
/// unicode, long text and extreme times.
pub async fn records_round_trip(store: &dyn TokenStore) {
    let mut tokens = vec![
        sample_token(1, "alice", 0, None),
        sample_token(2, "bob", i64::MAX - 1, Some(i64::MAX)),
        sample_token(3, "carol", -5, Some(-1)),
    ];
    tokens[0].info.description = Some(String::new());
    tokens[1].info.name = "ünïcödé 🚀 \"quoted\" 'single' \\ back%slash_".into();
    tokens[1].info.description = Some("d".repeat(4096));
    tokens[2].info.actor_urn = user("service-account@example.com");
    tokens[2].info.last_used_at = Some(-3);
    tokens[1].info.last_used_at = Some(i64::MAX);
    insert_all(store, &tokens).await;
    for token in &tokens {
        assert_eq!(
            store.get(&token.id).await.unwrap().as_ref(),
            Some(token),
            "round trip of {}",
            token.id
        );
    }
    assert_lists(store, &tokens, &ListQuery::all(10)).await;
}

fn filter(field: TokenField, condition: Condition, values: &[&str], negated: bool) -> Filter {
    let values = values.iter().map(|v| v.to_string()).collect();
    Filter::new(field, condition, values, negated).expect("valid test filter")
}

/// Lists with one filter of each field, condition and list of values
/// given, plain and negated, checking every answer against `Filter::matches`.
async fn assert_each_filter(
    store: &dyn TokenStore,
    tokens: &[StoredAccessToken],
    fields: &[TokenField],
    conditions: &[Condition],
    value_lists: &[&[&str]],
) {
    for &field in fields {
        for &condition in conditions {
            for values in value_lists {
                for negated in [false, true] {
                    let query = ListQuery {
                        filters: vec![filter(field, condition, values, negated)],
                        start: 0,
                        count: 100,
                    };
                    assert_lists(store, tokens, &query).await;
                }
            }
        }
    }
}

fn fixture() -> Vec<StoredAccessToken> {
    let owners = ["alice", "bob", "carol"];
    (0..18u64)
        .map(|n| {
            let owner = owners[(n % 3) as usize];
            let expires = if n % 4 == 0 {
                None
            } else {
                Some(10_000 + (n as i64 % 5) * 1_000)
            };
            let mut token = sample_token(n, owner, 1_000 + (n as i64 % 6) * 100, expires);
            if n % 2 == 0 {
                token.info.actor_urn = user("robot");
            }
            token.info.name = ["ci deploy", "laptop", "CI nightly", "deploy-bot"][(n % 4) as usize].into();
            if n % 3 != 1 {
                token.info.description = Some(format!("used by pipeline {}", n % 5));
            }
            if n % 5 != 2 {
                token.info.last_used_at = Some(1_000 + (n as i64 % 7) * 100);
            }
            token
        })
        .collect()
}

/// The operators of text fields.
const TEXT_CONDITIONS: [Condition; 5] = [
    Condition::Equal,
    Condition::In,
    Condition::Contain,
    Condition::StartWith,
    Condition::EndWith,
];

/// The operators of time fields.
const TIME_CONDITIONS: [Condition; 6] = [
    Condition::Equal,
    Condition::In,
    Condition::GreaterThan,
    Condition::GreaterThanOrEqualTo,
    Condition::LessThan,
    Condition::LessThanOrEqualTo,
];

/// Each operator, on each field it applies to, plain and negated, returns
/// exactly the tokens `Filter::matches` selects.
pub async fn each_filter_matches_its_definition(store: &dyn TokenStore) {
    use Condition::*;
    use TokenField::*;
    let tokens = fixture();
    insert_all(store, &tokens).await;
    let text_cases: [(TokenField, &[&str]); 4] = [
        (Name, &["ci deploy", "deploy", "CI", "bot", "ci"]),
        (
            ActorUrn,
            &[
                "urn:li:corpuser:robot",
                "urn:li:corpuser:alice",
                "robot",
                "urn:li:",
            ],
        ),
        (
            OwnerUrn,
            &[
                "urn:li:corpuser:bob",
                "urn:li:corpuser:nobody",
                "carol",
                "urn:li:corpuser:a",
            ],
        ),
        (Description, &["used by pipeline 3", "pipeline", "used", "3"]),
    ];
    for (field, values) in text_cases {
        let one_each: Vec<&[&str]> = values.iter().map(std::slice::from_ref).collect();
        assert_each_filter(store, &tokens, &[field], &TEXT_CONDITIONS, &one_each).await;
    }
    // Several urns at once (a token matches any of them): a token owned by
    // one listed user for another comes back once.
    let several: [&[&str]; 3] = [
        &["urn:li:corpuser:alice", "urn:li:corpuser:robot"],
        &[
            "urn:li:corpuser:robot",
            "urn:li:corpuser:bob",
            "urn:li:corpuser:nobody",
        ],
        &["urn:li:corpuser:carol", "urn:li:corpuser:carol"],
    ];
    assert_each_filter(store, &tokens, &[ActorUrn, OwnerUrn], &[Equal, In], &several).await;
    let times: [&[&str]; 5] = [&["1200"], &["1300"], &["12000"], &["0"], &["99999"]];
    let time_fields = [CreatedAt, ExpiresAt, LastUsedAt];
    assert_each_filter(store, &tokens, &time_fields, &TIME_CONDITIONS, &times).await;
    assert_each_filter(store, &tokens, &TokenField::ALL, &[Exists], &[&[]]).await;
    // Spot checks that do not lean on `Filter::matches`.
    let count = |page: super::ListPage| page.total;
    let never = ListQuery {
        filters: vec![filter(ExpiresAt, Exists, &[], true)],
        start: 0,
        count: 100,
    };
    assert_eq!(
        count(store.list(&never).await.unwrap()),
        5,
        "NOT EXISTS expiresAt = the never-expiring tokens"
    );
    let cleanup = ListQuery {
        filters: vec![filter(ExpiresAt, LessThan, &["11000"], false)],
        start: 0,
        count: 100,
    };
    assert_eq!(
        count(store.list(&cleanup).await.unwrap()),
        3,
        "expiresAt LESS_THAN skips never-expiring tokens"
    );
    let bob = ListQuery {
        filters: vec![filter(OwnerUrn, Equal, &["urn:li:corpuser:bob"], false)],
        start: 0,
        count: 100,
    };
    assert_eq!(count(store.list(&bob).await.unwrap()), 6);
    let ci = ListQuery {
        filters: vec![filter(Name, StartWith, &["ci"], false)],
        start: 0,
        count: 100,
    };
    assert_eq!(
        count(store.list(&ci).await.unwrap()),
        5,
        "text matching is case-sensitive"
    );
}

/// Filters are AND-ed, the values of one filter OR-ed.
pub async fn filters_and_values_combine(store: &dyn TokenStore) {
    use Condition::*;
    use TokenField::*;
    let tokens = fixture();
    insert_all(store, &tokens).await;
    let owners = filter(
        OwnerUrn,
        Equal,
        &["urn:li:corpuser:alice", "urn:li:corpuser:carol"],
        false,
    );
    let robot = filter(ActorUrn, Equal, &["urn:li:corpuser:robot"], false);
    let late = filter(ExpiresAt, GreaterThanOrEqualTo, &["12000"], false);
    let not_laptop = filter(Name, Equal, &["laptop"], true);
    let queries = [
        vec![owners.clone()],
        vec![owners.clone(), robot.clone()],
        vec![robot.clone(), owners.clone(), late.clone()],
        vec![owners.clone(), not_laptop.clone(), late.clone(), robot.clone()],
        vec![
            filter(
                OwnerUrn,
                In,
                &["urn:li:corpuser:bob", "urn:li:corpuser:bob"],
                false,
            ),
            not_laptop,
        ],
        vec![robot, filter(OwnerUrn, Equal, &["urn:li:corpuser:nobody"], false)],
    ];
    for filters in queries {
        for (start, count) in [(0, 100), (1, 2), (3, 100)] {
            assert_lists(
                store,
                &tokens,
                &ListQuery {
                    filters: filters.clone(),
                    start,
                    count,
                },
            )
            .await;
        }
    }
    let both = ListQuery {
        filters: vec![owners, late],
        start: 0,
        count: 100,
    };
    let page = store.list(&both).await.unwrap();
    assert!(page
        .tokens
        .iter()
        .all(|t| t.info.owner_urn != user("bob") && t.info.expires_at >= Some(12_000)));
}

/// Text values are plain text (`%`, `_` and `\\` are not wildcards or
/// escapes, as they would be in SQL `LIKE`), and a filter with several
/// values matches a token that any one of them matches, for every operator.
pub async fn values_are_literal_and_any_may_match(store: &dyn TokenStore) {
    use Condition::*;
    use TokenField::*;
    let texts = ["100%", "a_b", "axb", "a\\b", "50% off", "_x_", "ab", "", "ünï"];
    let tokens: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(n, text)| {
            let mut token = sample_token(n as u64, "alice", 1_000 + n as i64 * 100, Some(10_000 + n as i64));
            token.info.name = format!("{text}!");
            token.info.description = (n % 3 != 0).then(|| text.to_string());
            token
        })
        .collect();
    insert_all(store, &tokens).await;
    let text_values: [&[&str]; 6] = [
        &["%"],
        &["_"],
        &["\\"],
        &["a_b", "a%b"],
        &["zzz", "b", "%"],
        &["ü", "x_", ""],
    ];
    assert_each_filter(
        store,
        &tokens,
        &[Name, Description],
        &TEXT_CONDITIONS,
        &text_values,
    )
    .await;
    let time_values: [&[&str]; 3] = [&["0", "1300"], &["1500", "99999", "1100"], &["10003", "10005"]];
    let time_fields = [CreatedAt, ExpiresAt];
    assert_each_filter(store, &tokens, &time_fields, &TIME_CONDITIONS, &time_values).await;
    // Spot checks that do not lean on `Filter::matches`.
    let total = |field, condition, values: &[&str]| {
        let query = ListQuery {
            filters: vec![filter(field, condition, values, false)],
            start: 0,
            count: 100,
        };
        async move { store.list(&query).await.unwrap().total }
    };
    assert_eq!(total(Name, Contain, &["_"]).await, 2, "`_` is no wildcard");
    assert_eq!(total(Name, StartWith, &["a%"]).await, 0, "`%` is no wildcard");
    assert_eq!(total(Name, EndWith, &["\\b!"]).await, 1, "`\\` is no escape");
    assert_eq!(
        total(Name, Contain, &["zzz", "off"]).await,
        1,
        "any value may match"
    );
    assert_eq!(
        total(CreatedAt, LessThan, &["0", "1200"]).await,
        2,
        "any time may match"
    );
}

/// expiresAt descending (never-expiring last), then createdAt descending,
/// then id ascending.
pub async fn order_breaks_ties_by_id(store: &dyn TokenStore) {
    let mut tokens: Vec<_> = (0..12u64)
        .map(|n| {
            sample_token(
                n,
                "alice",
                1_000 + (n as i64 % 2),
                if n % 3 == 0 { None } else { Some(5_000) },
            )
        })
        .collect();
    tokens.push(sample_token(100, "alice", 1, Some(6_000)));
    insert_all(store, &tokens).await;
    let page = store.list(&ListQuery::all(100)).await.unwrap();
    let listed: Vec<_> = page
        .tokens
        .iter()
        .map(|t| (t.info.expires_at, t.info.created_at, t.id.clone()))
        .collect();
    let mut sorted = tokens.clone();
    sorted.sort_by(listing_order);
    let want: Vec<_> = sorted
        .iter()
        .map(|t| (t.info.expires_at, t.info.created_at, t.id.clone()))
        .collect();
    assert_eq!(listed, want, "listing order");
    assert_eq!(listed[0].2, token_id(100), "the latest expiry comes first");
    assert_eq!(listed.last().unwrap().0, None, "never-expiring tokens come last");

    // Ties on both times between ids that share long prefixes, one id a
    // prefix of others: the whole id decides, byte by byte.
    let mut tied: Vec<_> = [
        "AAAAAAAAB",
        "AAAAAAAA",
        "AAAAAAAA+",
        "AAAAAAA",
        "AAAAAAAA0",
        "AAAAAAAB",
    ]
    .iter()
    .enumerate()
    .map(|(n, id)| StoredAccessToken {
        id: id.to_string(),
        ..sample_token(200 + n as u64, "alice", 2_000, Some(7_000))
    })
    .collect();
    insert_all(store, &tied).await;
    let page = store.list(&ListQuery::all(tied.len())).await.unwrap();
    tied.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(page.tokens, tied, "ties broken by the whole id");
}

/// Paging with every page size visits each match once, in order, with a
/// constant total; pages past the end are empty.
pub async fn pages_never_skip_or_repeat(store: &dyn TokenStore) {
    let tokens: Vec<_> = (0..25u64)
        .map(|n| {
            sample_token(
                n,
                if n % 5 == 0 { "bob" } else { "alice" },
                1_000 + (n as i64 % 3),
                Some(9_000 + (n as i64 % 2)),
            )
        })
        .collect();
    insert_all(store, &tokens).await;
    let alice = filter(
        TokenField::OwnerUrn,
        Condition::Equal,
        &["urn:li:corpuser:alice"],
        false,
    );
    for filters in [vec![], vec![alice]] {
        let all = store
            .list(&ListQuery {
                filters: filters.clone(),
                start: 0,
                count: 100,
            })
            .await
            .unwrap();
        for size in [1, 3, 7, 20] {
            let mut seen = Vec::new();
            let mut start = 0;
            loop {
                let page = store
                    .list(&ListQuery {
                        filters: filters.clone(),
                        start,
                        count: size,
                    })
                    .await
                    .unwrap();
                assert_eq!(page.total, all.total, "total does not depend on the page");
                assert!(page.tokens.len() <= size, "a page holds at most count tokens");
                if page.tokens.is_empty() {
                    break;
                }
                start += page.tokens.len();
                seen.extend(page.tokens);
            }
            assert_eq!(
                seen, all.tokens,
                "pages of {size} concatenate to the whole listing"
            );
        }
        let past = store
            .list(&ListQuery {
                filters: filters.clone(),
                start: 1_000,
                count: 5,
            })
            .await
            .unwrap();
        assert!(past.tokens.is_empty());
        assert_eq!(past.total, all.total);
        let zero = store
            .list(&ListQuery {
                filters,
                start: 0,
                count: 0,
            })
            .await
            .unwrap();
        assert!(zero.tokens.is_empty(), "count 0 returns no tokens");
        assert_eq!(zero.total, all.total, "count 0 still counts");
    }
}

/// `delete_expired(now)` deletes exactly `expiresAt < now`, returning the ids.
pub async fn delete_expired_removes_exactly_the_expired(store: &dyn TokenStore) {
    let now = 50_000;
    let tokens = [
        sample_token(1, "alice", 1, Some(now - 10_000)),
        sample_token(2, "bob", 1, Some(now - 1)),
        sample_token(3, "alice", 1, Some(now)),
        sample_token(4, "alice", 1, Some(now + 1)),
        sample_token(5, "carol", 1, None),
    ];
    insert_all(store, &tokens).await;
    let mut deleted = store.delete_expired(now).await.unwrap();
    deleted.sort();
    let mut want = vec![token_id(1), token_id(2)];
    want.sort();
    assert_eq!(deleted, want, "exactly the tokens with expiresAt < now");
    for n in 3..=5 {
        assert!(contains(store, &token_id(n)).await, "token {n} is kept");
    }
    assert!(!contains(store, &token_id(1)).await);
    assert_eq!(store.list(&ListQuery::all(10)).await.unwrap().total, 3);
    assert!(
        store.delete_expired(now).await.unwrap().is_empty(),
        "a second purge finds nothing"
    );
}

/// Many tasks inserting at once: every distinct id lands once, and of racing
/// inserts of one id exactly one wins.
pub async fn concurrent_inserts<S: TokenStore + ?Sized>(store: Arc<S>) {
    const TASKS: u64 = 16;
    const PER_TASK: u64 = 25;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut won_race = 0;
            for i in 0..PER_TASK {
                let n = task * PER_TASK + i;
                store
                    .insert(sample_token(n, &format!("user{}", task % 4), n as i64, None))
                    .await
                    .expect("distinct id");
                // Every task also races for the same few ids.
                match store.insert(sample_token(1_000_000 + i, "racer", 0, None)).await {
                    Ok(()) => won_race += 1,
                    Err(Error::AlreadyExists { .. }) => {}
                    Err(e) => panic!("racing insert failed with {e}"),
                }
            }
            won_race
        });
    }
    let mut races_won = 0;
    while let Some(result) = tasks.join_next().await {
        races_won += result.expect("task did not panic");
    }
    assert_eq!(races_won, PER_TASK, "each raced id is inserted exactly once");
    let page = store.list(&ListQuery::all(10_000)).await.unwrap();
    assert_eq!(page.total as u64, TASKS * PER_TASK + PER_TASK);
    let mut ids: Vec<_> = page.tokens.iter().map(|t| t.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), page.tokens.len(), "no duplicates");
    let user0 = filter(
        TokenField::OwnerUrn,
        Condition::Equal,
        &["urn:li:corpuser:user0"],
        false,
    );
    let page = store
        .list(&ListQuery {
            filters: vec![user0],
            start: 0,
            count: 1_000,
        })
        .await
        .unwrap();
    assert_eq!(page.total as u64, TASKS / 4 * PER_TASK);
}

fn owner_total(owner: &str) -> ListQuery {
    ListQuery {
        filters: vec![filter(
            TokenField::OwnerUrn,
            Condition::Equal,
            &[&format!("urn:li:corpuser:{owner}")],
            false,
        )],
        start: 0,
        count: 1_000,
    }
}

/// `insert_within_limit`: refuses the token past the limit with
/// `LimitExceeded` naming it and changes nothing; expired tokens do not
/// count (live means `expiresAt >= now`); other owners are unaffected; a
/// duplicate id is `AlreadyExists`; `None` means no limit.
pub async fn owner_limit_is_respected(store: &dyn TokenStore) {
    const NOW: i64 = 1_000_000;
    let limit = Some(OwnerLimit {
        max_live: 3,
        now_ms: NOW,
    });
    // Two expired tokens, one expiring exactly now (still live), one never.
    for (n, expires_at) in [(1, Some(NOW - 1)), (2, Some(0)), (3, Some(NOW)), (4, None)] {
        store
            .insert_within_limit(sample_token(n, "alice", 0, expires_at), limit)
            .await
            .unwrap_or_else(|e| panic!("insert {n} within the limit failed: {e}"));
    }
    store
        .insert_within_limit(sample_token(5, "alice", 0, Some(NOW + 1)), limit)
        .await
        .expect("expired tokens must not count toward the limit: 2 live before this insert");
    match store
        .insert_within_limit(sample_token(6, "alice", 0, None), limit)
        .await
    {
        Err(Error::LimitExceeded { owner, limit: 3 }) => {
            assert_eq!(owner, "urn:li:corpuser:alice")
        }
        other => panic!("the 4th live token of an owner with limit 3 must be LimitExceeded, got {other:?}"),
    }
    assert_eq!(
        store.get(&token_id(6)).await.unwrap(),
        None,
        "a refused insert changes nothing"
    );
    let error = store
        .insert_within_limit(sample_token(6, "alice", 0, None), limit)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("limit 3"), "the error names the limit: {error}");
    match store
        .insert_within_limit(sample_token(5, "alice", 0, None), limit)
        .await
    {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a duplicate id is AlreadyExists even at the limit, got {other:?}"),
    }
    // Another owner has its own count.
    for n in 10..13 {
        store
            .insert_within_limit(sample_token(n, "bob", 0, None), limit)
            .await
            .expect("other owners are unaffected by alice's tokens");
    }
    // Later, when more of alice's tokens have expired, there is room again.
    let later = Some(OwnerLimit {
        max_live: 3,
        now_ms: NOW + 1,
    });
    store
        .insert_within_limit(sample_token(7, "alice", 0, None), later)
        .await
        .expect("token 3 expired at now and no longer counts one ms later");
    assert!(
        matches!(
            store
                .insert_within_limit(sample_token(8, "alice", 0, None), later)
                .await,
            Err(Error::LimitExceeded { .. })
        ),
        "tokens 4, 5 and 7 are live: alice is at her limit again"
    );
    // Deleting makes room; no limit means no limit.
    assert!(store.delete(&token_id(4)).await.unwrap());
    store
        .insert_within_limit(sample_token(8, "alice", 0, None), later)
        .await
        .expect("a deleted token no longer counts");
    store
        .insert_within_limit(sample_token(9, "alice", 0, None), None)
        .await
        .expect("no limit");
    assert_eq!(store.list(&owner_total("alice")).await.unwrap().total, 7);
    assert_eq!(store.list(&owner_total("bob")).await.unwrap().total, 3);
}

/// Many tasks creating tokens for one owner at once never take it past its
/// limit, and exactly the limit's worth succeed; another owner racing
/// alongside fills its own limit.
pub async fn concurrent_inserts_never_exceed_the_owner_limit<S: TokenStore + ?Sized>(store: Arc<S>) {
    const TASKS: u64 = 16;
    const PER_TASK: u64 = 8;
    const MAX: usize = 20;
    let limit = Some(OwnerLimit {
        max_live: MAX,
        now_ms: 0,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut inserted = [0usize; 2];
            for i in 0..PER_TASK {
                for (k, owner) in ["crowded", "busy"].into_iter().enumerate() {
                    let n = 10_000 * (k as u64 + 1) + task * PER_TASK + i;
                    match store
                        .insert_within_limit(sample_token(n, owner, 0, None), limit)
                        .await
                    {
                        Ok(()) => inserted[k] += 1,
                        Err(Error::LimitExceeded { .. }) => {}
                        Err(e) => panic!("limited insert failed with {e}"),
                    }
                }
            }
            inserted
        });
    }
    let mut inserted = [0usize; 2];
    while let Some(result) = tasks.join_next().await {
        let counts = result.expect("task did not panic");
        inserted[0] += counts[0];
        inserted[1] += counts[1];
    }
    assert_eq!(
        inserted,
        [MAX, MAX],
        "exactly the limit's worth of racing inserts succeed"
    );
    for owner in ["crowded", "busy"] {
        assert_eq!(
            store.list(&owner_total(owner)).await.unwrap().total,
            MAX,
            "{owner} holds exactly its limit"
        );
    }
}

/// `replace(old, new)`: swaps the records; `NotFound` for a missing old id
/// and `AlreadyExists` for a taken new id (old's own id included), changing
/// nothing either way.
pub async fn replace_is_all_or_nothing(store: &dyn TokenStore) {
    let (one, two, three) = (
        sample_token(1, "alice", 10, Some(1_000)),
        sample_token(2, "alice", 20, None),
        sample_token(3, "alice", 30, Some(5_000)),
    );
    insert_all(store, &[one.clone(), two.clone()]).await;
    store
        .replace(&one.id, three.clone())
        .await
        .expect("replace of a present id by a new one");
    assert_eq!(store.get(&one.id).await.unwrap(), None, "the old record is gone");
    assert_eq!(
        store.get(&three.id).await.unwrap(),
        Some(three.clone()),
        "the new record round-trips"
    );
    assert!(!contains(store, &one.id).await);
    assert!(contains(store, &three.id).await);

    let four = sample_token(4, "alice", 40, None);
    match store.replace(&one.id, four.clone()).await {
        Err(Error::NotFound) => {}
        other => panic!("replacing a missing id must be NotFound, got {other:?}"),
    }
    assert_eq!(
        store.get(&four.id).await.unwrap(),
        None,
        "a failed replace inserts nothing"
    );
    match store.replace(&three.id, two.clone()).await {
        Err(Error::AlreadyExists { id }) => assert_eq!(id, two.id),
        other => panic!("replacing by a taken id must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get(&three.id).await.unwrap(),
        Some(three.clone()),
        "a failed replace deletes nothing"
    );
    let mut renamed = three.clone();
    renamed.info.name = "renamed in place".into();
    match store.replace(&three.id, renamed).await {
        Err(Error::AlreadyExists { id }) => assert_eq!(id, three.id),
        other => panic!("replacing a token by one with its own id must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get(&three.id).await.unwrap(),
        Some(three.clone()),
        "a replace by the same id changes nothing"
    );
    match store.replace(&four.id, four.clone()).await {
        Err(Error::NotFound) => {}
        other => panic!("replacing a missing id by itself must be NotFound, got {other:?}"),
    }
    assert_eq!(store.get(&four.id).await.unwrap(), None);
    let page = store.list(&ListQuery::all(100)).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(
        store.delete_expired(2_000).await.unwrap(),
        Vec::<String>::new(),
        "the replaced token's expiry is gone with it"
    );
    assert_eq!(store.delete_expired(6_000).await.unwrap(), vec![three.id.clone()]);
}

/// Many tasks rotating the same token at once: exactly one replace wins,
/// the rest see `NotFound`, and exactly one record is left of the lineage.
pub async fn concurrent_replaces_of_one_token<S: TokenStore + ?Sized>(store: Arc<S>) {
    const TASKS: u64 = 16;
    let original = sample_token(1, "alice", 0, None);
    store.insert(original.clone()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (store, old) = (store.clone(), original.id.clone());
        tasks.spawn(async move {
            match store
                .replace(&old, sample_token(100 + task, "alice", 0, None))
                .await
            {
                Ok(()) => Some(100 + task),
                Err(Error::NotFound) => None,
                Err(e) => panic!("racing replace failed with {e}"),
            }
        });
    }
    let mut winners = Vec::new();
    while let Some(result) = tasks.join_next().await {
        winners.extend(result.expect("task did not panic"));
    }
    assert_eq!(winners.len(), 1, "exactly one racing replace wins: {winners:?}");
    let page = store.list(&ListQuery::all(100)).await.unwrap();
    assert_eq!(page.total, 1, "never both, never neither");
    assert_eq!(page.tokens[0].id, token_id(winners[0]));
}

/// While a token is replaced again and again, every listing sees exactly
/// one token of its lineage: never both the old and the new, never neither.
pub async fn replacing_is_never_seen_half_done<S: TokenStore + ?Sized>(store: Arc<S>) {
    const REPLACES: u64 = 100;
    const OBSERVERS: usize = 4;
    store.insert(sample_token(0, "alice", 0, None)).await.unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut observers = tokio::task::JoinSet::new();
    for _ in 0..OBSERVERS {
        let (store, done) = (store.clone(), done.clone());
        observers.spawn(async move {
            let mut looks = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let page = store.list(&ListQuery::all(10)).await.expect("list succeeds");
                assert_eq!(
                    (page.total, page.tokens.len()),
                    (1, 1),
                    "a replace is seen whole: never both tokens, never neither"
                );
                looks += 1;
                // A store that answers at once must not starve the replaces.
                tokio::task::yield_now().await;
            }
            looks
        });
    }
    for n in 1..=REPLACES {
        store
            .replace(&token_id(n - 1), sample_token(n, "alice", n as i64, None))
            .await
            .expect("replace of the latest token");
        tokio::task::yield_now().await;
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    while let Some(looks) = observers.join_next().await {
        looks.expect("observer did not panic");
    }
    let page = store.list(&ListQuery::all(10)).await.unwrap();
    assert_eq!(page.tokens.len(), 1);
    assert_eq!(page.tokens[0].id, token_id(REPLACES));
}

/// `record_last_used` moves `lastUsedAt` forward only, touches nothing
/// else, skips unknown and deleted ids, and the field lists and filters
/// like any other time, whichever filter finds the token.
pub async fn last_use_is_recorded(store: &dyn TokenStore) {
    let mut tokens: Vec<StoredAccessToken> = (1..=4)
        .map(|n| sample_token(n, "alice", n as i64, None))
        .collect();
    tokens[2].info.last_used_at = Some(500);
    // One of alice's tokens acts as bob.
    let mut delegated = sample_token(6, "alice", 6, None);
    delegated.info.actor_urn = user("bob");
    tokens.push(delegated);
    insert_all(store, &tokens).await;
    let used = |n: u64, at_ms: i64| TokenUse {
        id: token_id(n),
        at_ms,
    };
    store
        .record_last_used(&[
            used(1, 1_000),
            used(3, 400),
            used(99, 900),
            used(1, 800),
            used(6, 900),
        ])
        .await
        .expect("record_last_used succeeds");
    store.record_last_used(&[]).await.expect("an empty batch is fine");
    tokens[0].info.last_used_at = Some(1_000);
    tokens[4].info.last_used_at = Some(900);
    for token in &tokens {
        assert_eq!(
            store.get(&token.id).await.unwrap().as_ref(),
            Some(token),
            "lastUsedAt moves forward only (the latest use wins, even within one batch) and nothing else changes"
        );
    }
    assert_eq!(
        store.get(&token_id(99)).await.unwrap(),
        None,
        "a use of an unknown id creates nothing"
    );
    store.record_last_used(&[used(3, 600)]).await.unwrap();
    tokens[2].info.last_used_at = Some(600);
    assert_lists(store, &tokens, &ListQuery::all(10)).await;
    for (field, name) in [
        (TokenField::OwnerUrn, "alice"),
        (TokenField::ActorUrn, "alice"),
        (TokenField::ActorUrn, "bob"),
    ] {
        let urn = user(name);
        let query = ListQuery {
            filters: vec![filter(field, Condition::Equal, &[urn.as_str()], false)],
            start: 0,
            count: 10,
        };
        assert_lists(store, &tokens, &query).await;
    }

    let stale = ListQuery {
        filters: vec![filter(
            TokenField::LastUsedAt,
            Condition::LessThan,
            &["700"],
            false,
        )],
        start: 0,
        count: 10,
    };
    let ids = |page: super::ListPage| page.tokens.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list(&stale).await.unwrap()),
        vec![token_id(3)],
        "lastUsedAt LESS_THAN finds stale tokens (never-used ones excluded)"
    );
    let never_used = ListQuery {
        filters: vec![filter(TokenField::LastUsedAt, Condition::Exists, &[], true)],
        start: 0,
        count: 10,
    };
    assert_eq!(
        ids(store.list(&never_used).await.unwrap()),
        vec![token_id(4), token_id(2)],
        "negated EXISTS lastUsedAt finds never-used tokens"
    );

    assert!(store.delete(&token_id(2)).await.unwrap());
    store.record_last_used(&[used(2, 2_000)]).await.unwrap();
    assert!(
        !contains(store, &token_id(2)).await,
        "a use recorded after revocation never brings the token back"
    );
    let fresh = sample_token(5, "alice", 5, None);
    store.replace(&token_id(1), fresh.clone()).await.unwrap();
    assert_eq!(
        store.get(&fresh.id).await.unwrap(),
        Some(fresh),
        "a replacement carries its own lastUsedAt, not the old token's"
    );
    let mut used_before = sample_token(7, "alice", 7, None);
    used_before.info.last_used_at = Some(300);
    store.replace(&token_id(3), used_before.clone()).await.unwrap();
    assert_eq!(
        store.get(&used_before.id).await.unwrap(),
        Some(used_before),
        "a replacement keeps the lastUsedAt it was given"
    );
}

/// A use recorded while the token is being revoked never brings it back,
/// whichever of the two runs first: a revoked token stays revoked.
pub async fn a_use_racing_a_revocation_never_revives<S: TokenStore + ?Sized>(store: Arc<S>) {
    const ROUNDS: u64 = 50;
    for n in 0..ROUNDS {
        let token = sample_token(n, "alice", n as i64, None);
        store.insert(token.clone()).await.unwrap();
        let use_of = |store: Arc<S>| async move {
            let used = [TokenUse {
                id: token_id(n),
                at_ms: 1_000,
            }];
            store
                .record_last_used(&used)
                .await
                .expect("record_last_used succeeds");
            None
        };
        let revocation =
            |store: Arc<S>| async move { Some(store.delete(&token_id(n)).await.expect("delete succeeds")) };
        let mut tasks = tokio::task::JoinSet::new();
        // Either may start first.
        if n % 2 == 0 {
            tasks.spawn(use_of(store.clone()));
            tasks.spawn(revocation(store.clone()));
        } else {
            tasks.spawn(revocation(store.clone()));
            tasks.spawn(use_of(store.clone()));
        }
        let mut deleted = None;
        while let Some(result) = tasks.join_next().await {
            deleted = deleted.or(result.expect("task did not panic"));
        }
        assert_eq!(deleted, Some(true), "the token was there to delete");
        assert!(
            !contains(&*store, &token.id).await,
            "a use recorded during a revocation never brings the token back"
        );
        assert_eq!(store.get(&token.id).await.unwrap(), None);
    }
    assert_eq!(store.list(&ListQuery::all(10)).await.unwrap().total, 0);
}
