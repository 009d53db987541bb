//! [`MemoryTokenStore`]: tokens in process memory, indexed for listing.

use std::collections::{hash_map, HashMap};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use rustc_hash::FxHashMap;

use super::{ListPage, ListQuery, OwnerLimit, TokenField, TokenStore, TokenUse};
use crate::error::{Error, Result};
use crate::model::StoredAccessToken;
use crate::urn::Urn;

mod listing;

use listing::{Listed, Listing};

/// Records in listing order per user.
type ByUrn = HashMap<Urn, Listing>;

/// A [`TokenStore`] in process memory: fast, and gone when the process ends.
///
/// Clones share the same tokens. Besides the id map it keeps every record in
/// listing order, overall and per owner (and per actor where the actor is
/// not the owner), so a page of one owner's or actor's tokens costs time in
/// proportion to that user's tokens, not to the whole store. Locks are
/// never held across an `.await`.
#[derive(Clone, Default)]
pub struct MemoryTokenStore {
    index: Arc<RwLock<Index>>,
}

/// The indexes behind [`MemoryTokenStore`], also the in-RAM state of the
/// file store (which changes it only after its log record is durable).
#[derive(Default)]
pub(crate) struct Index {
    // FxHash: ids are SHA-256 digests made by the service, not chosen by
    // callers, so the faster unkeyed hash cannot be flooded with collisions.
    by_id: FxHashMap<IdKey, Arc<StoredAccessToken>>,
    all: Listing,
    by_owner: ByUrn,
    // Only tokens whose actor is not their owner: most tokens are a user's
    // own, found under their actor in `by_owner`, and one ordered entry
    // less per token is one insert and a few cold cache lines less.
    by_actor: ByUrn,
}

/// A token id as the id map's key. Ids of up to [`IdKey::INLINE`] bytes
/// (DataHub's are 44) sit in the table itself, so a lookup on the validation
/// hot path compares bytes it has already loaded instead of chasing a pointer
/// to a cold heap string. Longer ids are boxed; the two never compare equal
/// because an id's length alone decides which form it takes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum IdKey {
    Inline { len: u8, bytes: [u8; IdKey::INLINE] },
    Boxed(Box<str>),
}

impl IdKey {
    const INLINE: usize = 44;

    pub(crate) fn new(id: &str) -> Self {
        if id.len() <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            IdKey::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            IdKey::Boxed(id.into())
        }
    }
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg_attr(not(feature = "fs"), allow(dead_code))]
    pub(crate) fn from_index(index: Index) -> Self {
        MemoryTokenStore {
            index: Arc::new(RwLock::new(index)),
        }
    }

    /// Number of stored tokens.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the store holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic elsewhere cannot leave the index half-updated (every update
    // below is infallible once started), so a poisoned lock is still sound.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTokenStore")
            .field("tokens", &self.len())
            .finish()
    }
}

impl Index {
    /// The index of the records in `by_id`, built in bulk: one sort, then
    /// trees built from sorted runs without searching them, several times
    /// faster than inserting a million tokens one by one (the file store's
    /// open). `tokens` holds the same records, best in memory order, which
    /// makes the passes over them sequential.
    #[cfg_attr(not(feature = "fs"), allow(dead_code))]
    pub(crate) fn from_map(
        by_id: FxHashMap<IdKey, Arc<StoredAccessToken>>,
        tokens: Vec<Arc<StoredAccessToken>>,
    ) -> Self {
        debug_assert_eq!(by_id.len(), tokens.len());
        // Number the owners and actors, so grouping needs no hashing and
        // never touches the records again. The map is temporary and keyed
        // by our own records, so a fast unkeyed hash is safe.
        let mut numbers: FxHashMap<&Urn, usize> = FxHashMap::default();
        let mut urns: Vec<&Urn> = Vec::new();
        let mut number = |urn| {
            *numbers.entry(urn).or_insert_with(|| {
                urns.push(urn);
                urns.len() - 1
            })
        };
        let mut entries = Vec::with_capacity(tokens.len());
        for token in &tokens {
            let owner = number(&token.info.owner_urn);
            let actor = number(&token.info.actor_urn);
            entries.push((Listed::of(token), owner, actor));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut sizes = vec![[0usize; 2]; urns.len()];
        for (_, owner, actor) in &entries {
            sizes[*owner][0] += 1;
            sizes[*actor][1] += usize::from(actor != owner);
        }
        let mut owners: Vec<Vec<Listed>> = sizes.iter().map(|s| Vec::with_capacity(s[0])).collect();
        let mut actors: Vec<Vec<Listed>> = sizes.iter().map(|s| Vec::with_capacity(s[1])).collect();
        // Pushed in listing order, each group is sorted too.
        for (key, owner, actor) in &entries {
            owners[*owner].push(key.clone());
            if actor != owner {
                actors[*actor].push(key.clone());
            }
        }
        let tree = |groups: Vec<Vec<Listed>>| -> ByUrn {
            groups
                .into_iter()
                .enumerate()
                .filter(|(_, group)| !group.is_empty())
                .map(|(n, group)| (urns[n].clone(), Listing::from_sorted(group)))
                .collect()
        };
        let (by_owner, by_actor) = (tree(owners), tree(actors));
        Index {
            by_id,
            all: Listing::from_sorted(entries.into_iter().map(|(key, _, _)| key).collect()),
            by_owner,
            by_actor,
        }
    }

    /// Every record, in listing order.
    #[cfg_attr(not(feature = "fs"), allow(dead_code))]
    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<StoredAccessToken>> {
        self.all.records()
    }

    /// The ids of the records with `expiresAt < now_ms`.
    pub(crate) fn expired_ids(&self, now_ms: i64) -> Vec<String> {
        self.all
            .range(Listed::expired_at(now_ms))
            .filter_map(|listed| listed.record().map(|t| t.id.clone()))
            .collect()
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Arc<StoredAccessToken>> {
        self.by_id.get(&IdKey::new(id))
    }

    fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(&IdKey::new(id))
    }

    /// Inserts `token`, refusing a duplicate id and, with a `limit`, an
    /// owner whose live tokens already fill it. Each map is searched once:
    /// the owner's urn is hashed with SipHash (callers choose urns), a
    /// sizeable share of an insert.
    pub(crate) fn insert(&mut self, mut token: StoredAccessToken, limit: Option<OwnerLimit>) -> Result<()> {
        let id_slot = match self.by_id.entry(IdKey::new(&token.id)) {
            hash_map::Entry::Occupied(_) => return Err(Error::AlreadyExists { id: token.id }),
            hash_map::Entry::Vacant(slot) => slot,
        };
        // Share one copy of each urn between the index and every record that
        // names it (urn clones share their text): a page of one owner's
        // tokens then copies one warm urn instead of two cold ones per token.
        let info = &mut token.info;
        let own_token = info.actor_urn == info.owner_urn;
        if !own_token {
            if let Some((actor, _)) = (self.by_owner.get_key_value(&info.actor_urn))
                .or_else(|| self.by_actor.get_key_value(&info.actor_urn))
            {
                info.actor_urn = actor.clone();
            }
        }
        let owned = self.by_owner.entry(info.owner_urn.clone());
        if let (Some(limit), hash_map::Entry::Occupied(tokens)) = (limit, &owned) {
            // Fewer tokens than the limit, expired ones included, leave room
            // without counting: the common case walks none of the owner's
            // entries (create/datahub: -0.5 us of 4.4).
            if tokens.get().len() >= limit.max_live {
                Index::check_owner_limit(&info.owner_urn, tokens.get().live_at(limit.now_ms), limit)?;
            }
        }
        info.owner_urn = owned.key().clone();
        if own_token {
            info.actor_urn = info.owner_urn.clone();
        }
        let token = Arc::new(token);
        let key = Listed::of(&token);
        owned.or_default().insert(key.clone());
        if !own_token {
            let actor = token.info.actor_urn.clone();
            self.by_actor.entry(actor).or_default().insert(key.clone());
        }
        self.all.insert(key);
        id_slot.insert(token);
        Ok(())
    }

    /// How many of `owner`'s tokens are live at `now_ms` ([`Listing::live_at`]).
    #[cfg_attr(not(feature = "fs"), allow(dead_code))]
    pub(crate) fn live_count_of_owner(&self, owner: &Urn, now_ms: i64) -> usize {
        self.by_owner
            .get(owner)
            .map_or(0, |tokens| tokens.live_at(now_ms))
    }

    /// Fails with `LimitExceeded` if `live` tokens already fill `limit`.
    pub(crate) fn check_owner_limit(owner: &Urn, live: usize, limit: OwnerLimit) -> Result<()> {
        if live >= limit.max_live {
            return Err(Error::LimitExceeded {
                owner: owner.to_string(),
                limit: limit.max_live,
            });
        }
        Ok(())
    }

    /// Moves the token's `lastUsedAt` forward to `at_ms`; `false` if there
    /// is no such token. The listing order does not depend on it, so the new
    /// record simply takes the old one's place in every index.
    pub(crate) fn record_use(&mut self, id: &str, at_ms: i64) -> bool {
        let Some(token) = self.by_id.get_mut(&IdKey::new(id)) else {
            return false;
        };
        if token.info.last_used_at.is_some_and(|last| last >= at_ms) {
            return true;
        }
        let mut used = (**token).clone();
        used.info.last_used_at = Some(at_ms);
        let used = Arc::new(used);
        *token = used.clone();
        let key = Listed::of(&used);
        for (index, urn) in user_indexes(&mut self.by_owner, &mut self.by_actor, &used) {
            if let Some(ordered) = index.get_mut(urn) {
                ordered.replace(key.clone());
            }
        }
        self.all.replace(key);
        true
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<StoredAccessToken>> {
        let token = self.by_id.remove(&IdKey::new(id))?;
        let key = Listed::of(&token);
        self.all.remove(&key);
        for (index, urn) in user_indexes(&mut self.by_owner, &mut self.by_actor, &token) {
            if let Some(ordered) = index.get_mut(urn) {
                ordered.remove(&key);
                if ordered.is_empty() {
                    index.remove(urn);
                }
            }
        }
        Some(token)
    }

    /// The smallest sets of candidates, each in listing order, that
    /// together hold every match: one owner's or actor's tokens when a
    /// filter pins those down. Also says which filter every candidate
    /// already satisfies.
    fn candidates<'a>(&'a self, query: &ListQuery) -> (Vec<&'a Listing>, Option<usize>) {
        let mut best: (Vec<&Listing>, Option<usize>) = (vec![&self.all], None);
        let mut best_size = self.all.len();
        for (position, filter) in query.filters.iter().enumerate() {
            // An actor's own tokens sit under their owner, which also holds
            // tokens of other actors: those candidates need the filter again.
            let lookups: [(TokenField, &[&ByUrn], Option<usize>); 2] = [
                (TokenField::OwnerUrn, &[&self.by_owner], Some(position)),
                (TokenField::ActorUrn, &[&self.by_owner, &self.by_actor], None),
            ];
            for (field, indexes, satisfied) in lookups {
                let Some(values) = filter.equal_texts(field) else {
                    continue;
                };
                let mut sets: Vec<&Listing> = Vec::new();
                for urn in values.iter().filter_map(|value| Urn::parse(value.as_str()).ok()) {
                    for set in indexes.iter().filter_map(|index| index.get(&urn)) {
                        if !sets.iter().any(|s| std::ptr::eq(*s, set)) {
                            sets.push(set);
                        }
                    }
                }
                let size = sets.iter().map(|s| s.len()).sum();
                if size < best_size || (size == best_size && best.1.is_none()) {
                    best_size = size;
                    best = (sets, satisfied);
                }
            }
        }
        best
    }

    pub(crate) fn list(&self, query: &ListQuery) -> ListPage {
        let (sets, satisfied) = self.candidates(query);
        let residual: Vec<_> = query
            .filters
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != satisfied)
            .map(|(_, f)| f)
            .collect();
        let page = |matching: &mut dyn Iterator<Item = &Arc<StoredAccessToken>>| -> Vec<StoredAccessToken> {
            let records: Vec<&Arc<StoredAccessToken>> =
                matching.skip(query.start).take(query.count).collect();
            prefetch(&records);
            records.into_iter().map(|t| (**t).clone()).collect()
        };
        let keep = |t: &&Arc<StoredAccessToken>| residual.iter().all(|f| f.matches(&t.info));
        match sets.as_slice() {
            // Fast path: the index answers the whole query, so the total is
            // its size and the page costs O(start + count).
            [set] if residual.is_empty() => ListPage {
                total: set.len(),
                tokens: page(&mut set.records()),
            },
            [set] => ListPage {
                total: set.records().filter(keep).count(),
                tokens: page(&mut set.records().filter(keep)),
            },
            sets => {
                let mut merged: Vec<&Listed> = sets
                    .iter()
                    .flat_map(|s| s.iter())
                    .filter(|listed| listed.record().is_some_and(|t| keep(&t)))
                    .collect();
                merged.sort_unstable();
                // One owner's and another actor's sets can share a token.
                merged.dedup();
                ListPage {
                    total: merged.len(),
                    tokens: page(&mut merged.iter().filter_map(|listed| listed.record())),
                }
            }
        }
    }
}

/// The per-user indexes that hold `token`, each with the urn it is under:
/// its owner's, and its actor's unless that is the owner (see `by_actor`).
fn user_indexes<'a>(
    by_owner: &'a mut ByUrn,
    by_actor: &'a mut ByUrn,
    token: &'a StoredAccessToken,
) -> impl Iterator<Item = (&'a mut ByUrn, &'a Urn)> {
    let own_token = token.info.actor_urn == token.info.owner_urn;
    [
        (by_owner, &token.info.owner_urn),
        (by_actor, &token.info.actor_urn),
    ]
    .into_iter()
    .take(if own_token { 1 } else { 2 })
}

/// Reads every cache line of a page's records, then a byte of each text they
/// point to, before any record is copied. In a large store a page's records
/// are cold, several cache misses each; copied one after another, each miss
/// waits for the one before. The reads within each pass do not depend on
/// each other, so the processor has them in flight together and the copies
/// then find their data in cache.
fn prefetch(records: &[&Arc<StoredAccessToken>]) {
    let touched: i64 = records
        .iter()
        .map(|t| {
            let info = &t.info;
            let lens = t.id.len() + info.name.len() + info.description.as_ref().map_or(0, String::len);
            info.created_at
                ^ info.expires_at.unwrap_or(0)
                ^ info.last_used_at.unwrap_or(0)
                ^ lens as i64
                ^ (info.owner_urn.as_str().len() + info.actor_urn.as_str().len()) as i64
        })
        .fold(0, |a, b| a ^ b);
    std::hint::black_box(touched);
    let first = |text: &str| u32::from(text.as_bytes().first().copied().unwrap_or(0));
    let touched: u32 = records
        .iter()
        .map(|t| first(&t.id) + first(&t.info.name) + t.info.description.as_deref().map_or(0, first))
        .sum();
    std::hint::black_box(touched);
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn insert_within_limit(&self, token: StoredAccessToken, limit: Option<OwnerLimit>) -> Result<()> {
        // Checked and inserted under one write lock: concurrent inserts
        // for the owner cannot both see room for one more.
        self.write().insert(token, limit)
    }

    async fn replace(&self, old_id: &str, new: StoredAccessToken) -> Result<()> {
        let mut index = self.write();
        if index.get(old_id).is_none() {
            return Err(Error::NotFound);
        }
        if index.get(&new.id).is_some() {
            return Err(Error::AlreadyExists { id: new.id });
        }
        index.remove(old_id);
        index.insert(new, None)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredAccessToken>> {
        Ok(self.read().get(id).map(|t| (**t).clone()))
    }

    async fn contains(&self, id: &str) -> Result<bool> {
        Ok(self.read().contains(id))
    }

    fn contains_now(&self, id: &str) -> Option<bool> {
        Some(self.read().contains(id))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        Ok(self.write().remove(id).is_some())
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        Ok(self.read().list(query))
    }

    async fn delete_expired(&self, now_ms: i64) -> Result<Vec<String>> {
        let mut index = self.write();
        let expired = index.expired_ids(now_ms);
        for id in &expired {
            index.remove(id);
        }
        Ok(expired)
    }

    async fn record_last_used(&self, uses: &[TokenUse]) -> Result<()> {
        let mut index = self.write();
        for used in uses {
            index.record_use(&used.id, used.at_ms);
        }
        Ok(())
    }
}
