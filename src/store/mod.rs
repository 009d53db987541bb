//! Where token records live: the [`TokenStore`] trait and its backends.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::StoredAccessToken;
use crate::BoxFuture;

#[cfg(feature = "fs")]
pub mod file;
mod memory;
mod query;

#[cfg(feature = "test-util")]
pub mod conformance;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

#[cfg(feature = "fs")]
pub use file::{FileStoreOptions, FileStoreStats, FileTokenStore};
pub use memory::MemoryTokenStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresTokenStore;
pub use query::{
    listing_order, Condition, Filter, FilterValues, ListPage, ListQuery, ListingKey, TokenField,
    DEFAULT_COUNT, MAX_COUNT, MAX_FILTERS, MAX_FILTER_VALUES,
};

/// Persistence for token records ([`StoredAccessToken`]: id plus
/// `DataHubAccessTokenInfo`). The plaintext token never reaches a store.
///
/// Implement it with [`#[async_trait]`](crate::async_trait), as the methods
/// are declared, and check the implementation with the conformance suite
/// (`store::conformance`, feature `test-util`).
///
/// # Contract
///
/// Every implementation guarantees, and the conformance suite
/// (`store::conformance`, feature `test-util`) checks:
///
/// * **Atomic operations.** Each call takes effect entirely or not at all,
///   and once it returns `Ok` every later call (on any handle to the same
///   store) observes it. Concurrent calls behave as if run in some order.
/// * **Per-owner limits.** [`insert_within_limit`](Self::insert_within_limit)
///   with `Some(limit)` inserts only if the owner has fewer than
///   `limit.max_live` tokens live at `limit.now_ms` (`expiresAt` absent or
///   `>= now_ms`: expired but unpurged tokens do not count), checked
///   atomically with the insert, so concurrent inserts for one owner never
///   exceed it; otherwise it fails with
///   [`Error::LimitExceeded`](crate::Error::LimitExceeded) and changes nothing.
///   A duplicate id is `AlreadyExists` whatever the count.
/// * **Atomic replacement.** [`replace`](Self::replace)`(old, new)` deletes
///   `old` and inserts `new` as one step: no observer (and no crash) ever
///   sees both or neither. It fails with [`Error::NotFound`](crate::Error::NotFound)
///   if `old` is missing and `AlreadyExists` if `new`'s id is taken, and then
///   changes nothing. `new` with `old`'s own id counts as taken: a record is
///   never replaced in place (`AlreadyExists`, or `NotFound` if `old` is missing).
/// * **Unique ids.** [`insert`](Self::insert) of an id already present fails
///   with [`Error::AlreadyExists`](crate::Error::AlreadyExists) and changes
///   nothing.
/// * **Absence is normal on lookup.** [`get`](Self::get) and
///   [`contains`](Self::contains) return `Ok(None)` / `Ok(false)` for an
///   unknown id; [`delete`](Self::delete) returns `Ok(false)`. Deciding whether
///   absence is an error is the caller's business. A `Some` from
///   [`contains_now`](Self::contains_now) is what `contains` would answer.
/// * **Listing.** [`list`](Self::list) returns the tokens matching every
///   filter of the query, in [`ListingKey`] order, skipping `start` and
///   returning at most `count`, with `total` the number matching in all.
///   Filter semantics are [`Filter::matches`]'s. Paging through a store that
///   does not change meanwhile visits every matching token exactly once.
/// * **Expiry.** [`delete_expired`](Self::delete_expired)`(now)` deletes
///   exactly the tokens whose `expiresAt < now` and returns their ids.
/// * **Last use.** [`record_last_used`](Self::record_last_used) sets each
///   named token's `lastUsedAt` to the later of its current value and the
///   use's time, and changes nothing else. Ids not present are skipped (the
///   token may have been revoked since it was used): it never creates a
///   record. A token inserted or replaced in carries the `lastUsedAt` it
///   was given.
/// * **Faithful round trip.** A record comes back exactly as inserted.
/// * Failures of the backend are [`Error::Storage`](crate::Error::Storage),
///   never a panic, and leave no partial change behind.
#[async_trait]
pub trait TokenStore: Debug + Send + Sync + 'static {
    /// Stores a new record; fails with `AlreadyExists` if the id is taken.
    /// The same as [`insert_within_limit`](Self::insert_within_limit) with no limit.
    async fn insert(&self, token: StoredAccessToken) -> Result<()> {
        self.insert_within_limit(token, None).await
    }

    /// Stores a new record if its owner is within `limit` (see the
    /// contract); fails with `AlreadyExists` if the id is taken and with
    /// `LimitExceeded` if the owner already has `limit.max_live` live tokens.
    async fn insert_within_limit(&self, token: StoredAccessToken, limit: Option<OwnerLimit>) -> Result<()>;

    /// Deletes `old_id` and inserts `new` atomically (see the contract).
    async fn replace(&self, old_id: &str, new: StoredAccessToken) -> Result<()>;

    /// The record with this id, if any.
    async fn get(&self, id: &str) -> Result<Option<StoredAccessToken>>;

    /// Whether a record with this id exists. This is on the validation hot
    /// path; the default calls [`get`](Self::get), backends may do better.
    async fn contains(&self, id: &str) -> Result<bool> {
        Ok(self.get(id).await?.is_some())
    }

    /// What [`contains`](Self::contains) would answer, if the store knows it
    /// at once: from memory, without I/O or waiting on anything slow.
    /// `None` (the default) means "call `contains`". Validation asks this
    /// first: an `async` call costs a boxed future, a sizeable share of
    /// validating a token already in memory.
    fn contains_now(&self, id: &str) -> Option<bool> {
        let _ = id;
        None
    }

    /// Deletes the record with this id; `Ok(false)` if there was none.
    async fn delete(&self, id: &str) -> Result<bool>;

    /// One page of the records matching `query` (see the contract).
    async fn list(&self, query: &ListQuery) -> Result<ListPage>;

    /// Deletes every record with `expiresAt < now_ms`; returns their ids.
    async fn delete_expired(&self, now_ms: i64) -> Result<Vec<String>>;

    /// Records that tokens were used (see the contract). The service calls
    /// this off the validation path, batched and throttled per token.
    async fn record_last_used(&self, uses: &[TokenUse]) -> Result<()>;
}

/// A token validated at a time, for [`TokenStore::record_last_used`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    /// The token's id.
    pub id: String,
    /// When it validated, ms since the epoch.
    pub at_ms: i64,
}

/// A bound on one owner's live tokens, for
/// [`TokenStore::insert_within_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerLimit {
    /// The most tokens the owner may hold live; an insert that would make
    /// one more is refused.
    pub max_live: usize,
    /// The time at which "live" is judged: a token whose `expiresAt` is
    /// before it does not count.
    pub now_ms: i64,
}

impl OwnerLimit {
    /// Whether a token expiring at `expires_at` counts as live.
    pub fn counts(&self, expires_at: Option<i64>) -> bool {
        expires_at.is_none_or(|at| at >= self.now_ms)
    }
}

/// The first text field of `token` that holds a NUL character, if any:
/// PostgreSQL cannot store one, and the file store refuses them (they are
/// what would let text pass for the log's own framing; see `store::file`).
#[cfg(any(feature = "fs", feature = "postgres"))]
pub(crate) fn field_with_nul(token: &StoredAccessToken) -> Option<&'static str> {
    let info = &token.info;
    let fields = [
        ("id", Some(token.id.as_str())),
        ("name", Some(info.name.as_str())),
        ("actorUrn", Some(info.actor_urn.as_str())),
        ("ownerUrn", Some(info.owner_urn.as_str())),
        ("description", info.description.as_deref()),
    ];
    fields
        .into_iter()
        .find(|(_, text)| text.is_some_and(|t| t.contains('\0')))
        .map(|(field, _)| field)
}

/// Forwards every method to the store inside. Written out rather than with
/// `#[async_trait]`, which would box a second future around the inner
/// store's on every call: each method returns the inner one as it is. The
/// signatures are the ones `#[async_trait]` gives the trait's methods.
macro_rules! forward_token_store {
    ($wrapper:ident) => {
        impl<T: TokenStore + ?Sized> TokenStore for $wrapper<T> {
            fn insert<'s, 'f>(&'s self, token: StoredAccessToken) -> BoxFuture<'f, Result<()>>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).insert(token)
            }
            fn insert_within_limit<'s, 'f>(
                &'s self,
                token: StoredAccessToken,
                limit: Option<OwnerLimit>,
            ) -> BoxFuture<'f, Result<()>>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).insert_within_limit(token, limit)
            }
            fn replace<'s, 'a, 'f>(
                &'s self,
                old_id: &'a str,
                new: StoredAccessToken,
            ) -> BoxFuture<'f, Result<()>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).replace(old_id, new)
            }
            fn get<'s, 'a, 'f>(&'s self, id: &'a str) -> BoxFuture<'f, Result<Option<StoredAccessToken>>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).get(id)
            }
            fn contains<'s, 'a, 'f>(&'s self, id: &'a str) -> BoxFuture<'f, Result<bool>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).contains(id)
            }
            fn contains_now(&self, id: &str) -> Option<bool> {
                (**self).contains_now(id)
            }
            fn delete<'s, 'a, 'f>(&'s self, id: &'a str) -> BoxFuture<'f, Result<bool>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).delete(id)
            }
            fn list<'s, 'a, 'f>(&'s self, query: &'a ListQuery) -> BoxFuture<'f, Result<ListPage>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).list(query)
            }
            fn delete_expired<'s, 'f>(&'s self, now_ms: i64) -> BoxFuture<'f, Result<Vec<String>>>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).delete_expired(now_ms)
            }
            fn record_last_used<'s, 'a, 'f>(&'s self, uses: &'a [TokenUse]) -> BoxFuture<'f, Result<()>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).record_last_used(uses)
            }
        }
    };
}

forward_token_store!(Arc);
forward_token_store!(Box);
