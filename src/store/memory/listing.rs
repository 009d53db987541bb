//! One set of records in DataHub's listing order: all tokens, or one user's.

use std::cmp::{Ordering, Reverse};
use std::collections::{btree_set, BTreeSet};
use std::iter::Rev;
use std::ops::Range;
use std::slice;
use std::sync::Arc;

use crate::model::StoredAccessToken;

/// A record at its place in DataHub's listing order ([`ListingKey`]'s):
/// `expiresAt` descending, never-expiring last, then `createdAt`
/// descending, then id. The times sit in the entry itself, so a search
/// reads the record (for its id) only to break a tie of both times, and the
/// key needs no copy of the id: 32 bytes an entry, not the 40 of a
/// `ListingKey` plus 8 of a value, and no allocation for it.
///
/// [`ListingKey`]: crate::store::ListingKey
#[derive(Clone)]
pub(super) struct Listed {
    expires_at: Reverse<Option<i64>>,
    created_at: Reverse<i64>,
    /// `None` only in a range bound: before every record with these times.
    record: Option<Arc<StoredAccessToken>>,
}

const _: () = assert!(std::mem::size_of::<Listed>() == 32);

impl Listed {
    pub(super) fn of(record: &Arc<StoredAccessToken>) -> Self {
        Listed {
            expires_at: Reverse(record.info.expires_at),
            created_at: Reverse(record.info.created_at),
            record: Some(record.clone()),
        }
    }

    /// The records with `expiresAt < now_ms`, which sit together in listing
    /// order: after every token expiring at or after `now_ms`, before the
    /// never-expiring ones.
    pub(super) fn expired_at(now_ms: i64) -> Range<Self> {
        let first = match now_ms.checked_sub(1) {
            Some(latest) => Self::first_with_expiry(Some(latest)),
            None => Self::first_with_expiry(None),
        };
        first..Self::first_with_expiry(None)
    }

    fn first_with_expiry(expires_at: Option<i64>) -> Self {
        Listed {
            expires_at: Reverse(expires_at),
            created_at: Reverse(i64::MAX),
            record: None,
        }
    }

    pub(super) fn record(&self) -> Option<&Arc<StoredAccessToken>> {
        self.record.as_ref()
    }

    fn id(&self) -> Option<&str> {
        self.record.as_deref().map(|r| r.id.as_str())
    }
}

impl Ord for Listed {
    // `then`, not a tuple: both times compared without a branch between
    // them, ~19 instructions less per tree insert (callgrind).
    fn cmp(&self, other: &Self) -> Ordering {
        self.expires_at
            .cmp(&other.expires_at)
            .then(self.created_at.cmp(&other.created_at))
            .then_with(|| self.id().cmp(&other.id()))
    }
}

impl PartialOrd for Listed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Ids are unique, so equal keys are the same token.
impl PartialEq for Listed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Listed {}

/// Records in listing order. Most sets are one user's few hundred tokens at
/// most: those sit in one sorted vector, so a page is a run of adjacent
/// entries (a B-tree spreads it over several small nodes, each another cold
/// cache miss in a large store, reached one after another), and a new
/// token, which usually expires last of its owner's, is appended. A set
/// that grows past [`Listing::MOST_IN_VEC`] becomes a B-tree, so that no
/// insert or delete moves more than that many entries.
pub(super) enum Listing {
    /// In reverse listing order: the usual insert is a push.
    Vec(Vec<Listed>),
    Tree(BTreeSet<Listed>),
}

impl Default for Listing {
    fn default() -> Self {
        Listing::Vec(Vec::new())
    }
}

impl Listing {
    /// 32 KiB of entries: the most one insert or delete shifts, about a
    /// microsecond, against a few hundred nanoseconds for a B-tree's.
    const MOST_IN_VEC: usize = 1024;

    /// `sorted` is in listing order.
    pub(super) fn from_sorted(mut sorted: Vec<Listed>) -> Self {
        if sorted.len() <= Self::MOST_IN_VEC {
            sorted.reverse();
            Listing::Vec(sorted)
        } else {
            Listing::Tree(sorted.into_iter().collect())
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Listing::Vec(vec) => vec.len(),
            Listing::Tree(tree) => tree.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `key`; `false` if it is there already.
    pub(super) fn insert(&mut self, key: Listed) -> bool {
        match self {
            Listing::Vec(vec) => {
                // Checked first: a new token usually goes last.
                if vec.last().is_none_or(|last| key < *last) {
                    vec.push(key);
                } else {
                    let at = vec.partition_point(|listed| *listed > key);
                    if vec.get(at) == Some(&key) {
                        return false;
                    }
                    vec.insert(at, key);
                }
                if vec.len() > Self::MOST_IN_VEC {
                    *self = Listing::Tree(vec.drain(..).collect());
                }
                true
            }
            Listing::Tree(tree) => tree.insert(key),
        }
    }

    /// Removes the entry equal to `key`; `false` if there is none.
    pub(super) fn remove(&mut self, key: &Listed) -> bool {
        match self {
            Listing::Vec(vec) => match vec.binary_search_by(|listed| key.cmp(listed)) {
                Ok(at) => {
                    vec.remove(at);
                    true
                }
                Err(_) => false,
            },
            Listing::Tree(tree) => {
                let removed = tree.remove(key);
                // Back to a vector well below the limit, not at it: a set
                // at the limit cannot switch on every insert and delete.
                if tree.len() < Self::MOST_IN_VEC / 2 {
                    *self = Listing::Vec(std::mem::take(tree).into_iter().rev().collect());
                }
                removed
            }
        }
    }

    /// Puts `key` in place of the entry equal to it, if any.
    pub(super) fn replace(&mut self, key: Listed) {
        match self {
            Listing::Vec(vec) => {
                if let Ok(at) = vec.binary_search_by(|listed| key.cmp(listed)) {
                    vec[at] = key;
                }
            }
            Listing::Tree(tree) => {
                // `replace` alone would also insert a missing key.
                if tree.contains(&key) {
                    tree.replace(key);
                }
            }
        }
    }

    /// The entries in listing order.
    pub(super) fn iter(&self) -> Iter<'_> {
        match self {
            Listing::Vec(vec) => Iter::Vec(vec.iter().rev()),
            Listing::Tree(tree) => Iter::Tree(tree.range(..)),
        }
    }

    /// The entries `>= range.start` and `< range.end`, in listing order.
    pub(super) fn range(&self, range: Range<Listed>) -> Iter<'_> {
        match self {
            Listing::Vec(vec) => {
                // In reverse order: the larger keys come first.
                let from = vec.partition_point(|listed| *listed >= range.end);
                let to = vec.partition_point(|listed| *listed >= range.start);
                Iter::Vec(vec[from..to.max(from)].iter().rev())
            }
            Listing::Tree(tree) => Iter::Tree(tree.range(range)),
        }
    }

    /// How many entries are live at `now_ms` (`expiresAt` absent or
    /// `>= now_ms`): expired ones sit together, so this costs a search plus
    /// one step per expired (unpurged) entry, not one per entry.
    pub(super) fn live_at(&self, now_ms: i64) -> usize {
        self.len() - self.range(Listed::expired_at(now_ms)).count()
    }

    /// The records, in listing order.
    pub(super) fn records(&self) -> impl Iterator<Item = &Arc<StoredAccessToken>> {
        self.iter().filter_map(Listed::record)
    }
}

/// [`Listing::iter`]'s iterator.
pub(super) enum Iter<'a> {
    Vec(Rev<slice::Iter<'a, Listed>>),
    Tree(btree_set::Range<'a, Listed>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Listed;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Vec(iter) => iter.next(),
            Iter::Tree(iter) => iter.next(),
        }
    }

    // Skipping to a page's start is one step in a vector.
    fn nth(&mut self, n: usize) -> Option<Self::Item> {
        match self {
            Iter::Vec(iter) => iter.nth(n),
            Iter::Tree(iter) => iter.nth(n),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Vec(iter) => iter.size_hint(),
            Iter::Tree(iter) => iter.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::DataHubAccessTokenInfo;
    use crate::urn::Urn;

    fn record(id: u16, created_at: i64, expires_at: Option<i64>) -> Arc<StoredAccessToken> {
        let owner = Urn::corp_user("owner").expect("urn");
        Arc::new(StoredAccessToken {
            id: format!("{id:05}"),
            info: DataHubAccessTokenInfo {
                name: "t".into(),
                actor_urn: owner.clone(),
                owner_urn: owner,
                created_at,
                expires_at,
                description: None,
                last_used_at: None,
            },
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert {
            id: u16,
            created_at: i64,
            expires_at: Option<i64>,
        },
        /// Removes the n-th record ever inserted (it may be gone already).
        Remove(usize),
        Replace(usize),
        Expired(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct times, so ties on both times (broken by id) are common.
        let time = 0..40i64;
        prop_oneof![
            6 => (any::<u16>(), time.clone(), proptest::option::of(time.clone()))
                .prop_map(|(id, created_at, expires_at)| Op::Insert { id, created_at, expires_at }),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => any::<usize>().prop_map(Op::Replace),
            1 => (-1..42i64).prop_map(Op::Expired),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// A `Listing` behaves as the `BTreeSet` of the same keys, across
        /// the switch to a tree and back.
        #[test]
        fn behaves_as_a_btree_set(
            ops in proptest::collection::vec(op(), 0..3000),
            growth in 0..2500usize,
        ) {
            let mut listing = Listing::default();
            let mut model = BTreeSet::new();
            let mut inserted: Vec<Arc<StoredAccessToken>> = Vec::new();
            // Grow past the vector's limit first in some cases.
            let grown = (0..growth).map(|n| Op::Insert { id: n as u16, created_at: n as i64 % 40, expires_at: Some(n as i64 % 7) });
            for op in grown.chain(ops) {
                match op {
                    Op::Insert { id, created_at, expires_at } => {
                        let record = record(id, created_at, expires_at);
                        // Equal ids with other times are other keys; keep one per id.
                        if inserted.iter().any(|r| r.id == record.id && model.contains(&Listed::of(r))) {
                            continue;
                        }
                        inserted.push(record.clone());
                        prop_assert_eq!(listing.insert(Listed::of(&record)), model.insert(Listed::of(&record)));
                    }
                    Op::Remove(n) if !inserted.is_empty() => {
                        let key = Listed::of(&inserted[n % inserted.len()]);
                        prop_assert_eq!(listing.remove(&key), model.remove(&key));
                    }
                    Op::Replace(n) if !inserted.is_empty() => {
                        let mut used = (*inserted[n % inserted.len()]).clone();
                        used.info.last_used_at = Some(1);
                        let used = Arc::new(used);
                        listing.replace(Listed::of(&used));
                        // `BTreeSet::replace` would also insert a missing key.
                        if model.contains(&Listed::of(&used)) {
                            model.replace(Listed::of(&used));
                        }
                    }
                    Op::Expired(now) => {
                        let ids = |iter: &mut dyn Iterator<Item = &Listed>| -> Vec<String> {
                            iter.filter_map(|l| l.record().map(|r| r.id.clone())).collect()
                        };
                        prop_assert_eq!(
                            ids(&mut listing.range(Listed::expired_at(now))),
                            ids(&mut model.range(Listed::expired_at(now)))
                        );
                    }
                    Op::Remove(_) | Op::Replace(_) => {}
                }
                prop_assert_eq!(listing.len(), model.len());
            }
            let listed: Vec<_> = listing.records().map(|r| (r.id.clone(), r.info.last_used_at)).collect();
            let expected: Vec<_> = model.iter().filter_map(Listed::record).map(|r| (r.id.clone(), r.info.last_used_at)).collect();
            prop_assert_eq!(listed, expected);
            for skip in [0, 1, 20, 1023, 1025] {
                prop_assert_eq!(listing.iter().nth(skip).and_then(Listed::record).map(|r| &r.id),
                    model.iter().nth(skip).and_then(Listed::record).map(|r| &r.id));
            }
        }
    }
}
