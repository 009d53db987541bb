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

/// How many verified tokens are remembered; the memo is emptied when full
/// (simple, bounded, and refilled by the next requests).
pub(crate) const MAX_VERIFIED_TOKENS: usize = 16_384;

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: RwLock<HashMap<String, (AccessTokenClaims, Urn)>>,
}

impl VerifiedTokens {
    /// The claims and actor of the token with this id, if verified before.
    pub(crate) fn get(&self, token_id: &str) -> Option<(AccessTokenClaims, Urn)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(token_id).cloned()
    }

    /// Remembers a verified token.
    pub(crate) fn insert(&self, token_id: String, claims: AccessTokenClaims, actor: Urn) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_VERIFIED_TOKENS {
            entries.clear();
        }
        entries.insert(token_id, (claims, actor));
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

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let memo = VerifiedTokens::default();
        let (c, a) = claims(1);
        memo.insert("id1".into(), c.clone(), a.clone());
        assert_eq!(memo.get("id1"), Some((c, a)));
        assert_eq!(memo.get("id2"), None);
        memo.remove("id1");
        assert_eq!(memo.get("id1"), None);
        for n in 0..MAX_VERIFIED_TOKENS + 10 {
            let (c, a) = claims(n);
            memo.insert(format!("id{n}"), c, a);
            assert!(memo.len() <= MAX_VERIFIED_TOKENS);
        }
        assert!(memo.get(&format!("id{}", MAX_VERIFIED_TOKENS + 9)).is_some());
        assert_eq!(format!("{memo:?}"), "VerifiedTokens { len: 10 }");
    }
}
