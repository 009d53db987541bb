//! A bounded memo of tokens whose signature and claims a service has already
//! checked, keyed by token id, so a token presented again skips the HMAC,
//! base64 and JSON work of [`TokenCodec::verify`](crate::TokenCodec::verify).
//!
//! The key is the token id `b64(sha256(token || salt))`, which the service
//! computes anyway for the revocation check: two tokens with the same id are
//! the same bytes (SHA-256 collision resistance), so the memo gives exactly
//! what verifying again would. Only what is re-checked on every call is
//! skipped: expiry and revocation are still decided per request. Ids are not
//! secret (stores key on them) and no token is kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use crate::codec::AccessTokenClaims;
use crate::urn::Urn;

type Verified = (AccessTokenClaims, Urn);

pub(crate) struct VerifiedTokens {
    /// Most entries per generation: half the memo's size, rounded up.
    /// 0: the memo is off.
    generation_size: usize,
    generations: RwLock<Generations>,
}

/// When `current` is full it becomes `previous`, and the old `previous` is
/// dropped. The memo stays bounded without the pause that emptying it
/// would cause (every token in use verified again at once): a token is
/// found in either generation, so one in use is verified again at most
/// once per two turnovers.
#[derive(Default)]
struct Generations {
    current: HashMap<String, Verified>,
    previous: HashMap<String, Verified>,
}

impl VerifiedTokens {
    /// A memo of at most `capacity` tokens, rounded up to even (0:
    /// remembers nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        VerifiedTokens {
            generation_size: capacity.div_ceil(2),
            generations: RwLock::default(),
        }
    }

    /// The claims and actor of the token with this id, if verified before.
    pub(crate) fn get(&self, token_id: &str) -> Option<Verified> {
        if self.generation_size == 0 {
            return None;
        }
        let generations = self.generations.read().unwrap_or_else(PoisonError::into_inner);
        generations
            .current
            .get(token_id)
            .or_else(|| generations.previous.get(token_id))
            .cloned()
    }

    /// Remembers a verified token (copying it only if the memo is on).
    pub(crate) fn insert(&self, token_id: &str, claims: &AccessTokenClaims, actor: &Urn) {
        if self.generation_size == 0 {
            return;
        }
        let entry = (claims.clone(), actor.clone());
        let mut generations = self.generations.write().unwrap_or_else(PoisonError::into_inner);
        let dropped = if generations.current.len() >= self.generation_size {
            let full = std::mem::take(&mut generations.current);
            Some(std::mem::replace(&mut generations.previous, full))
        } else {
            None
        };
        generations.current.insert(token_id.to_owned(), entry);
        drop(generations);
        // Freed after the lock is released: validations do not wait for it.
        drop(dropped);
    }

    /// Forgets a token that is revoked or expired.
    pub(crate) fn remove(&self, token_id: &str) {
        let mut generations = self.generations.write().unwrap_or_else(PoisonError::into_inner);
        generations.current.remove(token_id);
        generations.previous.remove(token_id);
    }

    fn len(&self) -> usize {
        let generations = self.generations.read().unwrap_or_else(PoisonError::into_inner);
        generations.current.len() + generations.previous.len()
    }
}

// By hand: the count is enough for logs.
impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccessTokenType;

    fn claims(n: usize) -> (AccessTokenClaims, Urn) {
        let actor = Urn::corp_user(&format!("u{n}")).unwrap();
        let claims = AccessTokenClaims::new("2", AccessTokenType::Personal, actor.id());
        (claims, actor)
    }

    const MAX_VERIFIED_TOKENS: usize = crate::config::DEFAULT_VERIFIED_TOKEN_CACHE;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let memo = VerifiedTokens::new(MAX_VERIFIED_TOKENS);
        let (c, a) = claims(1);
        memo.insert("id1", &c, &a);
        assert_eq!(memo.get("id1"), Some((c, a)));
        assert_eq!(memo.get("id2"), None);
        memo.remove("id1");
        assert_eq!(memo.get("id1"), None);
        for n in 0..3 * MAX_VERIFIED_TOKENS {
            let (c, a) = claims(n);
            memo.insert(&format!("id{n}"), &c, &a);
            assert!(memo.len() <= MAX_VERIFIED_TOKENS);
        }
        let last = 3 * MAX_VERIFIED_TOKENS - 1;
        assert!(memo.get(&format!("id{last}")).is_some());
        assert_eq!(memo.len(), MAX_VERIFIED_TOKENS);
        assert_eq!(
            format!("{memo:?}"),
            format!("VerifiedTokens {{ len: {MAX_VERIFIED_TOKENS} }}")
        );
    }

    #[test]
    fn a_full_memo_forgets_the_older_half_only() {
        let memo = VerifiedTokens::new(4);
        for n in 0..4 {
            let (c, a) = claims(n);
            memo.insert(&format!("id{n}"), &c, &a);
        }
        // Full: the next insert forgets id0 and id1 and keeps id2 and id3,
        // where emptying the memo would have forgotten all four.
        let (c, a) = claims(4);
        memo.insert("id4", &c, &a);
        let kept: Vec<bool> = (0..5).map(|n| memo.get(&format!("id{n}")).is_some()).collect();
        assert_eq!(kept, [false, false, true, true, true]);
        // Removal reaches either generation.
        memo.remove("id2");
        memo.remove("id4");
        assert_eq!(memo.get("id2"), None);
        assert_eq!(memo.get("id4"), None);
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let memo = VerifiedTokens::new(0);
        let (c, a) = claims(1);
        memo.insert("id1", &c, &a);
        assert_eq!(memo.get("id1"), None);
        assert_eq!(memo.len(), 0);
    }
}
