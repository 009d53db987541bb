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

pub(crate) struct VerifiedTokens {
    /// Most entries; the memo is emptied when full (simple, bounded, and
    /// refilled by the next requests). 0: the memo is off.
    capacity: usize,
    entries: RwLock<HashMap<String, (AccessTokenClaims, Urn)>>,
}

impl VerifiedTokens {
    /// A memo of at most `capacity` tokens (0: remembers nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity,
            entries: RwLock::default(),
        }
    }

    /// The claims and actor of the token with this id, if verified before.
    pub(crate) fn get(&self, token_id: &str) -> Option<(AccessTokenClaims, Urn)> {
        if self.capacity == 0 {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(token_id).cloned()
    }

    /// Remembers a verified token (copying it only if the memo is on).
    pub(crate) fn insert(&self, token_id: &str, claims: &AccessTokenClaims, actor: &Urn) {
        if self.capacity == 0 {
            return;
        }
        let entry = (claims.clone(), actor.clone());
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(token_id.to_owned(), entry);
    }

    /// Forgets a token that is revoked or expired.
    pub(crate) fn remove(&self, token_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.remove(token_id);
    }

    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).len()
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
        let claims = AccessTokenClaims {
            version: "2".into(),
            token_type: AccessTokenType::Personal,
            actor_type: "USER".into(),
            actor_id: actor.id().to_owned(),
            sub: None,
            jti: None,
            iss: None,
            exp: None,
        };
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
        for n in 0..MAX_VERIFIED_TOKENS + 10 {
            let (c, a) = claims(n);
            memo.insert(&format!("id{n}"), &c, &a);
            assert!(memo.len() <= MAX_VERIFIED_TOKENS);
        }
        assert!(memo.get(&format!("id{}", MAX_VERIFIED_TOKENS + 9)).is_some());
        assert_eq!(format!("{memo:?}"), "VerifiedTokens { len: 10 }");
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
