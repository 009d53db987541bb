//! The [`TokenService`] trait (DataHub's token operations) and
//! [`DataHubTokenService`], its implementation over a store and a policy engine.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::audit::{AuditEvent, AuditEventKind, AuditSink, TracingAuditSink};
use crate::clock::{Clock, SystemClock};
use crate::codec::{AccessTokenClaims, TokenCodec, MAX_TOKEN_BYTES, VERSION_STATEFUL, VERSION_STATELESS};
use crate::config::TokenServiceConfig;
use crate::duration::DurationPolicy;
use crate::error::{Error, Result};
use crate::last_used::{IfFailed, LastUsedRecorder, Noted};
use crate::model::{
    AccessToken, AccessTokenMetadata, AccessTokenType, CreateAccessTokenInput, DataHubAccessTokenInfo,
    ListAccessTokenInput, ListAccessTokenResult, RotateAccessTokenInput, StoredAccessToken,
};
use crate::policy::{PolicyEngine, Privilege};
use crate::store::{ListQuery, OwnerLimit, TokenField, TokenStore};
use crate::urn::Urn;
use crate::verified::VerifiedTokens;
use crate::BoxFuture;

/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest token description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;

/// What a successful validation tells about a token.
///
/// Non-exhaustive, so fields can be added; other [`TokenService`]
/// implementations (test doubles) build one with [`ValidatedAccessToken::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatedAccessToken {
    /// The user the token acts as.
    pub actor: Urn,
    /// The token's claims.
    pub claims: AccessTokenClaims,
    /// The stored token's id; `None` for stateless session tokens.
    pub token_id: Option<String>,
}

impl ValidatedAccessToken {
    /// A validation's answer with these fields.
    pub fn new(actor: Urn, claims: AccessTokenClaims, token_id: Option<String>) -> Self {
        ValidatedAccessToken {
            actor,
            claims,
            token_id,
        }
    }
}

/// DataHub's access token operations.
///
/// Operations that need authorization take the caller's urn (the
/// authenticated user making the request) and fail with
/// [`Error::Unauthorized`] under DataHub's rules:
///
/// | operation | allowed when |
/// |---|---|
/// | create | the caller can manage, or creates for themself and can generate |
/// | list | the caller can manage, or can generate and filters `ownerUrn` to exactly themself |
/// | revoke | the caller can manage, or owns the token |
/// | rotate | the caller can manage, or owns the token, acts as it, and can generate |
/// | get metadata | the caller can manage |
///
/// "Can generate" means holding [`Privilege::GeneratePersonalAccessTokens`] or
/// [`Privilege::ManageAccessTokens`]; "can manage" means the latter.
///
/// Implement it (a test double, say) with [`#[async_trait]`](crate::async_trait),
/// as the methods are declared.
#[async_trait]
pub trait TokenService: Debug + Send + Sync + 'static {
    /// Mints a personal token and stores its record. The plaintext is in
    /// the result and nowhere else. Fails with [`Error::LimitExceeded`] if
    /// the caller (the owner) already holds the configured maximum of live
    /// tokens.
    async fn create_access_token(&self, caller: &Urn, input: CreateAccessTokenInput) -> Result<AccessToken>;

    /// Lists token metadata matching the filters, one page at a time.
    async fn list_access_tokens(
        &self,
        caller: &Urn,
        input: &ListAccessTokenInput,
    ) -> Result<ListAccessTokenResult>;

    /// Revokes (deletes) a token by id. A missing token is
    /// [`Error::NotFound`] to a manager and, as in DataHub,
    /// [`Error::Unauthorized`] to anyone else (they own no such token).
    async fn revoke_access_token(&self, caller: &Urn, token_id: &str) -> Result<()>;

    /// Replaces the token `input.token_id` by a new one with the same actor,
    /// owner, name and description, in one atomic step: the old token stops
    /// validating exactly when the new one starts. The new token lasts
    /// `input.duration` or `input.duration_iso`, checked against the
    /// duration policy as on create (giving both is [`Error::InvalidInput`]),
    /// or, if neither is given, as long as the old one was made to last
    /// (`expiresAt - createdAt`, which the policy must still allow, never
    /// expiring included). Allowed to whoever may revoke the old token and
    /// create the new one; the plaintext of the new token is in the result
    /// and nowhere else.
    async fn rotate_access_token(&self, caller: &Urn, input: &RotateAccessTokenInput) -> Result<AccessToken>;

    /// The stored metadata of a plaintext token (managers only).
    async fn get_access_token_metadata(&self, caller: &Urn, token: &str) -> Result<AccessTokenMetadata>;

    /// Checks a presented token: format, signature, expiry and, for stored
    /// tokens, that it has not been revoked. An expired stored token is
    /// deleted. A stored token that passes has its use recorded
    /// (`lastUsedAt`), throttled and written off the caller's path.
    async fn validate_access_token(&self, token: &str) -> Result<ValidatedAccessToken>;

    /// Mints a stateless `SESSION` token (version 1) for `actor`: not
    /// stored, not revocable, valid for the configured session lifetime.
    async fn create_session_token(&self, actor: &Urn) -> Result<AccessToken>;

    /// Deletes every stored token that has expired; returns their ids.
    async fn purge_expired(&self) -> Result<Vec<String>>;

    /// Writes to the store now what the service has deferred (the uses of
    /// tokens, for `lastUsedAt`), after any write already under way. Call
    /// before shutting down, or before reading `lastUsedAt` in a test. If
    /// the write fails, the uses stay deferred: calling again retries them.
    async fn flush_last_used(&self) -> Result<()> {
        Ok(())
    }
}

/// Forwards every method (`flush_last_used` included) to the service
/// inside, so `Arc<DataHubTokenService>` is a [`TokenService`] wherever one is
/// asked for. Written out as for `TokenStore`: `#[async_trait]` would box a
/// second future around the inner one's.
macro_rules! forward_token_service {
    ($wrapper:ident) => {
        impl<T: TokenService + ?Sized> TokenService for $wrapper<T> {
            fn create_access_token<'s, 'a, 'f>(
                &'s self,
                caller: &'a Urn,
                input: CreateAccessTokenInput,
            ) -> BoxFuture<'f, Result<AccessToken>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).create_access_token(caller, input)
            }
            fn list_access_tokens<'s, 'a, 'i, 'f>(
                &'s self,
                caller: &'a Urn,
                input: &'i ListAccessTokenInput,
            ) -> BoxFuture<'f, Result<ListAccessTokenResult>>
            where
                's: 'f,
                'a: 'f,
                'i: 'f,
                Self: 'f,
            {
                (**self).list_access_tokens(caller, input)
            }
            fn revoke_access_token<'s, 'a, 'i, 'f>(
                &'s self,
                caller: &'a Urn,
                token_id: &'i str,
            ) -> BoxFuture<'f, Result<()>>
            where
                's: 'f,
                'a: 'f,
                'i: 'f,
                Self: 'f,
            {
                (**self).revoke_access_token(caller, token_id)
            }
            fn rotate_access_token<'s, 'a, 'i, 'f>(
                &'s self,
                caller: &'a Urn,
                input: &'i RotateAccessTokenInput,
            ) -> BoxFuture<'f, Result<AccessToken>>
            where
                's: 'f,
                'a: 'f,
                'i: 'f,
                Self: 'f,
            {
                (**self).rotate_access_token(caller, input)
            }
            fn get_access_token_metadata<'s, 'a, 't, 'f>(
                &'s self,
                caller: &'a Urn,
                token: &'t str,
            ) -> BoxFuture<'f, Result<AccessTokenMetadata>>
            where
                's: 'f,
                'a: 'f,
                't: 'f,
                Self: 'f,
            {
                (**self).get_access_token_metadata(caller, token)
            }
            fn validate_access_token<'s, 't, 'f>(
                &'s self,
                token: &'t str,
            ) -> BoxFuture<'f, Result<ValidatedAccessToken>>
            where
                's: 'f,
                't: 'f,
                Self: 'f,
            {
                (**self).validate_access_token(token)
            }
            fn create_session_token<'s, 'a, 'f>(
                &'s self,
                actor: &'a Urn,
            ) -> BoxFuture<'f, Result<AccessToken>>
            where
                's: 'f,
                'a: 'f,
                Self: 'f,
            {
                (**self).create_session_token(actor)
            }
            fn purge_expired<'s, 'f>(&'s self) -> BoxFuture<'f, Result<Vec<String>>>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).purge_expired()
            }
            fn flush_last_used<'s, 'f>(&'s self) -> BoxFuture<'f, Result<()>>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).flush_last_used()
            }
        }
    };
}

forward_token_service!(Arc);
forward_token_service!(Box);

/// The [`TokenService`]: DataHub's `StatefulTokenService` and its GraphQL
/// resolvers' authorization rules, over any store and policy engine.
#[derive(Debug, Clone)]
pub struct DataHubTokenService {
    codec: TokenCodec,
    durations: DurationPolicy,
    session_duration_ms: i64,
    max_tokens_per_owner: Option<usize>,
    store: Arc<dyn TokenStore>,
    policies: Arc<dyn PolicyEngine>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditSink>,
    verified: Arc<VerifiedTokens>,
    last_used: Option<Arc<LastUsedRecorder>>,
}

impl DataHubTokenService {
    /// A service with these settings, store and privilege checks, on the
    /// system clock.
    pub fn new(config: TokenServiceConfig, store: impl TokenStore, policies: impl PolicyEngine) -> Self {
        let store: Arc<dyn TokenStore> = Arc::new(store);
        DataHubTokenService {
            codec: TokenCodec::new(&config),
            durations: config.durations,
            session_duration_ms: config.session_duration_ms,
            max_tokens_per_owner: config.max_tokens_per_owner,
            last_used: config
                .last_used_interval_ms
                .map(|interval| Arc::new(LastUsedRecorder::new(interval, store.clone()))),
            store,
            policies: Arc::new(policies),
            clock: Arc::new(SystemClock),
            audit: Arc::new(TracingAuditSink),
            verified: Arc::new(VerifiedTokens::new(config.verified_token_cache)),
        }
    }

    /// Sends audit events to `sink` instead of `tracing` ([`TracingAuditSink`]).
    pub fn with_audit_sink(mut self, sink: impl AuditSink) -> Self {
        self.audit = Arc::new(sink);
        self
    }

    /// Uses `clock` for all times (tests use a [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The codec signing and identifying this service's tokens.
    pub fn codec(&self) -> &TokenCodec {
        &self.codec
    }

    /// The store holding this service's token records.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    fn audit(&self, kind: AuditEventKind, caller: Option<&Urn>, token_id: Option<&str>) {
        self.audit_at(self.clock.now_ms(), kind, caller, token_id);
    }

    /// [`audit`](Self::audit) at a time already read (one clock read less).
    fn audit_at(&self, at_ms: i64, kind: AuditEventKind, caller: Option<&Urn>, token_id: Option<&str>) {
        self.audit.record(AuditEvent {
            kind,
            caller: caller.cloned(),
            token_id: token_id.map(str::to_owned),
            at_ms,
        });
    }

    /// Records the denial of `operation` and returns the error to give.
    fn deny(&self, operation: &'static str, caller: &Urn, token_id: Option<&str>) -> Error {
        self.audit(AuditEventKind::Denied { operation }, Some(caller), token_id);
        Error::Unauthorized
    }

    /// Records a failed validation and returns its error.
    fn reject(&self, error: Error, token_id: Option<&str>) -> Error {
        let reason = error.to_string();
        self.audit(AuditEventKind::ValidationFailed { reason }, None, token_id);
        error
    }

    /// Signs a new personal token for `info` (its `expiresAt` set from
    /// `createdAt + lifetime_ms`) and returns it with the record to store.
    fn mint_personal(
        &self,
        mut info: DataHubAccessTokenInfo,
        lifetime_ms: Option<i64>,
    ) -> Result<(String, StoredAccessToken)> {
        info.expires_at = match lifetime_ms {
            Some(ms) => Some(
                info.created_at
                    .checked_add(ms)
                    .ok_or_else(|| Error::invalid_input("the expiry time is out of range"))?,
            ),
            None => None,
        };
        let token = self.codec.sign_new(
            VERSION_STATEFUL,
            AccessTokenType::Personal,
            &info.actor_urn,
            info.expires_at,
        );
        let id = self.codec.token_id(&token);
        Ok((token, StoredAccessToken { id, info }))
    }

    async fn holds(&self, caller: &Urn, privilege: Privilege) -> Result<bool> {
        match self.policies.is_authorized_now(caller, privilege) {
            Some(held) => Ok(held),
            None => self.policies.is_authorized(caller, privilege).await,
        }
    }

    async fn can_manage(&self, caller: &Urn) -> Result<bool> {
        self.holds(caller, Privilege::ManageAccessTokens).await
    }

    async fn can_generate(&self, caller: &Urn) -> Result<bool> {
        Ok(self
            .holds(caller, Privilege::GeneratePersonalAccessTokens)
            .await?
            || self.can_manage(caller).await?)
    }
}

/// Checks a create request's type and actor, returning the actor.
fn check_create_target(input: &CreateAccessTokenInput) -> Result<Urn> {
    if input.token_type != AccessTokenType::Personal {
        return Err(Error::invalid_input(format!(
            "type {} cannot be created with createAccessToken: only PERSONAL tokens can",
            input.token_type
        )));
    }
    parse_user_urn("actorUrn", &input.actor_urn)
}

/// Checks a create request's name and description.
fn check_name_and_description(input: &CreateAccessTokenInput) -> Result<()> {
    // No store can keep NUL safely (PostgreSQL cannot at all): refused for
    // every store alike, so tokens move between stores.
    for (field, text) in [
        ("name", Some(&input.name)),
        ("description", input.description.as_ref()),
    ] {
        if text.is_some_and(|text| text.contains('\0')) {
            return Err(Error::invalid_input(format!(
                "{field} must not contain NUL characters (U+0000)"
            )));
        }
    }
    let name_chars = input.name.chars().count();
    if input.name.trim().is_empty() {
        return Err(Error::invalid_input("name must not be empty"));
    }
    if name_chars > MAX_NAME_CHARS {
        return Err(Error::invalid_input(format!(
            "name is {name_chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        )));
    }
    if let Some(description) = &input.description {
        let chars = description.chars().count();
        if chars > MAX_DESCRIPTION_CHARS {
            return Err(Error::invalid_input(format!(
                "description is {chars} characters long; at most {MAX_DESCRIPTION_CHARS} are allowed"
            )));
        }
    }
    Ok(())
}

fn parse_user_urn(what: &str, text: &str) -> Result<Urn> {
    let urn = Urn::parse(text).map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
    if !urn.is_corp_user() {
        return Err(Error::invalid_input(format!(
            "{what} must be a user urn (urn:li:corpuser:<id>), got {urn}"
        )));
    }
    if crate::urn::is_padded(urn.id()) {
        return Err(Error::invalid_input(format!(
            "{what}: the user id {:?} has white space at its start or end",
            urn.id()
        )));
    }
    Ok(urn)
}

/// Token ids are `b64(sha256(..))`: 44 characters of standard base64.
///
/// The message never repeats the input: a caller who passes the plaintext
/// token by mistake must not find it in an error that may be logged.
fn check_token_id(token_id: &str) -> Result<()> {
    let mut digest = [0u8; 32];
    match STANDARD.decode_slice(token_id, &mut digest) {
        Ok(32) if token_id.len() == 44 => Ok(()),
        _ if token_id.contains('.') => Err(Error::invalid_input(
            "tokenId is not a token id (44 characters of base64): it looks like an access token \
             itself; pass the token's id instead",
        )),
        _ => Err(Error::invalid_input(format!(
            "tokenId is not a token id (44 characters of base64); got {} characters",
            token_id.chars().count()
        ))),
    }
}

#[async_trait]
impl TokenService for DataHubTokenService {
    async fn create_access_token(&self, caller: &Urn, input: CreateAccessTokenInput) -> Result<AccessToken> {
        // As in DataHub: who may create depends on the actor, so the type
        // and actor are read first; the rest only for a caller who may.
        let actor = check_create_target(&input)?;
        let allowed =
            self.can_manage(caller).await? || (actor == *caller && self.can_generate(caller).await?);
        if !allowed {
            return Err(self.deny("createAccessToken", caller, None));
        }
        check_name_and_description(&input)?;
        let lifetime_ms = self
            .durations
            .resolve(input.duration, input.duration_iso.as_deref())?;
        let created_at = self.clock.now_ms();
        let info = DataHubAccessTokenInfo {
            name: input.name,
            actor_urn: actor,
            owner_urn: caller.clone(),
            created_at,
            expires_at: None,
            description: input.description,
            last_used_at: None,
        };
        let (token, stored) = self.mint_personal(info, lifetime_ms)?;
        let limit = self.max_tokens_per_owner.map(|max_live| OwnerLimit {
            max_live,
            now_ms: created_at,
        });
        self.store.insert_within_limit(stored.clone(), limit).await?;
        self.audit_at(
            created_at,
            AuditEventKind::Created,
            Some(caller),
            Some(&stored.id),
        );
        Ok(AccessToken::new(token, Some(stored.into())))
    }

    async fn list_access_tokens(
        &self,
        caller: &Urn,
        input: &ListAccessTokenInput,
    ) -> Result<ListAccessTokenResult> {
        let query = ListQuery::from_input(input)?;
        let lists_own_tokens = || {
            query.filters.iter().any(|f| {
                f.equal_texts(TokenField::OwnerUrn)
                    .is_some_and(|values| matches!(values, [only] if only == caller.as_str()))
            })
        };
        let allowed =
            self.can_manage(caller).await? || (lists_own_tokens() && self.can_generate(caller).await?);
        if !allowed {
            return Err(self.deny("listAccessTokens", caller, None));
        }
        let page = self.store.list(&query).await?;
        Ok(ListAccessTokenResult {
            start: query.start,
            count: page.tokens.len(),
            total: page.total,
            tokens: page.tokens.into_iter().map(Into::into).collect(),
        })
    }

    async fn revoke_access_token(&self, caller: &Urn, token_id: &str) -> Result<()> {
        check_token_id(token_id)?;
        if !self.can_manage(caller).await? {
            // As DataHub: only the owner may, and a missing token has none, so
            // whether an id exists is told only to those who may manage tokens.
            let owned = (self.store.get(token_id).await?).is_some_and(|t| t.info.owner_urn == *caller);
            if !owned {
                return Err(self.deny("revokeAccessToken", caller, Some(token_id)));
            }
        }
        if self.store.delete(token_id).await? {
            self.audit(AuditEventKind::Revoked, Some(caller), Some(token_id));
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    async fn rotate_access_token(&self, caller: &Urn, input: &RotateAccessTokenInput) -> Result<AccessToken> {
        let token_id = input.token_id.as_str();
        check_token_id(token_id)?;
        let manager = self.can_manage(caller).await?;
        // A missing token is NotFound only to managers, as for revoke.
        let old = match self.store.get(token_id).await? {
            Some(old) => old,
            None if manager => return Err(Error::NotFound),
            None => return Err(self.deny("rotateAccessToken", caller, Some(token_id))),
        };
        let info = &old.info;
        let allowed = manager
            || (info.owner_urn == *caller && info.actor_urn == *caller && self.can_generate(caller).await?);
        if !allowed {
            return Err(self.deny("rotateAccessToken", caller, Some(token_id)));
        }
        let now = self.clock.now_ms();
        // The token stops validating when its `exp` second has passed, up to
        // 999 ms before the stored `expiresAt` (exp is in whole seconds).
        // Rotating it after that would bring a dead token back to life.
        let exp_ms = info.expires_at.map(|at| at.div_euclid(1000).saturating_mul(1000));
        if exp_ms.is_some_and(|exp_ms| now > exp_ms) {
            return Err(Error::Expired);
        }
        let lifetime_ms = match (input.duration, input.duration_iso.as_deref()) {
            (None, None) => self.durations.check_kept_lifetime(
                info.expires_at
                    .map(|expires_at| expires_at.saturating_sub(info.created_at).max(0)),
            )?,
            // One given, or both: resolved, or refused, exactly as on create.
            (duration, duration_iso) => self.durations.resolve(duration, duration_iso)?,
        };
        let fresh = DataHubAccessTokenInfo {
            created_at: now,
            last_used_at: None,
            ..info.clone()
        };
        let (token, new) = self.mint_personal(fresh, lifetime_ms)?;
        // Atomic in the store: NotFound if someone revoked (or rotated) the
        // old token meanwhile, and then nothing was created.
        self.store.replace(token_id, new.clone()).await?;
        self.audit(
            AuditEventKind::Rotated {
                new_token_id: new.id.clone(),
            },
            Some(caller),
            Some(token_id),
        );
        Ok(AccessToken::new(token, Some(new.into())))
    }

    async fn get_access_token_metadata(&self, caller: &Urn, token: &str) -> Result<AccessTokenMetadata> {
        if !self.can_manage(caller).await? {
            return Err(self.deny("getAccessTokenMetadata", caller, None));
        }
        let claims = self.codec.verify(token)?;
        if !claims.is_stateful() {
            return Err(Error::invalid_input(
                "session tokens are not stored and have no metadata",
            ));
        }
        let stored = self
            .store
            .get(&self.codec.token_id(token))
            .await?
            .ok_or(Error::NotFound)?;
        Ok(stored.into())
    }

    async fn validate_access_token(&self, token: &str) -> Result<ValidatedAccessToken> {
        // The id is needed for the revocation check anyway; it also finds a
        // token verified before (see `verified.rs`). Oversized tokens go
        // straight to `verify`, which refuses them without hashing.
        let known_id = (token.len() <= MAX_TOKEN_BYTES).then(|| self.codec.token_id(token));
        let remembered = known_id.as_deref().and_then(|id| self.verified.get(id));
        let (claims, actor) = match remembered {
            Some(verified) => verified,
            None => match self.codec.verify(token).and_then(|c| {
                let actor = c.actor_urn()?;
                Ok((c, actor))
            }) {
                Ok((claims, actor)) => {
                    if let Some(id) = &known_id {
                        self.verified.insert(id, &claims, &actor);
                    }
                    (claims, actor)
                }
                Err(error) => return Err(self.reject(error, None)),
            },
        };
        let now = self.clock.now_ms();
        let expired = claims.is_expired_at(now);
        if !claims.is_stateful() {
            if expired {
                return Err(self.reject(Error::Expired, None));
            }
            return Ok(ValidatedAccessToken {
                actor,
                claims,
                token_id: None,
            });
        }
        let token_id = known_id.unwrap_or_else(|| self.codec.token_id(token));
        if expired {
            self.verified.remove(&token_id);
            // Genuine (the signature checked out) and dead: clean it up now.
            match self.store.delete(&token_id).await {
                Ok(true) => self.audit(AuditEventKind::Purged, None, Some(&token_id)),
                Ok(false) => {}
                Err(error) => return Err(self.reject(error, Some(&token_id))),
            }
            return Err(self.reject(Error::Expired, Some(&token_id)));
        }
        let exists = match self.store.contains_now(&token_id) {
            Some(exists) => Ok(exists),
            None => self.store.contains(&token_id).await,
        };
        match exists {
            Ok(true) => {}
            Ok(false) => {
                self.verified.remove(&token_id);
                return Err(self.reject(Error::Revoked, Some(&token_id)));
            }
            Err(error) => return Err(self.reject(error, Some(&token_id))),
        }
        if let Some(recorder) = &self.last_used {
            if recorder.note(&token_id, now) == Noted::FlushNow {
                // No runtime to defer to: record it here. Bookkeeping only,
                // so a failure does not fail the validation.
                if let Err(error) = recorder.flush(IfFailed::Drop).await {
                    tracing::warn!(%error, "recording when a token was last used failed");
                }
            }
        }
        Ok(ValidatedAccessToken {
            actor,
            claims,
            token_id: Some(token_id),
        })
    }

    async fn create_session_token(&self, actor: &Urn) -> Result<AccessToken> {
        let actor = parse_user_urn("actor", actor.as_str())?;
        let expires_at = self.clock.now_ms().saturating_add(self.session_duration_ms);
        let token = self.codec.sign_new(
            VERSION_STATELESS,
            AccessTokenType::Session,
            &actor,
            Some(expires_at),
        );
        Ok(AccessToken::new(token, None))
    }

    async fn flush_last_used(&self) -> Result<()> {
        match &self.last_used {
            Some(recorder) => recorder.flush(IfFailed::Keep).await,
            None => Ok(()),
        }
    }

    async fn purge_expired(&self) -> Result<Vec<String>> {
        let purged = self.store.delete_expired(self.clock.now_ms()).await?;
        for id in &purged {
            self.audit(AuditEventKind::Purged, None, Some(id));
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_id_format() {
        assert!(check_token_id("HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=").is_ok());
        for bad in [
            "",
            "abc",
            "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A",
            "HnMJylxuowJ1FKN74BbGogLvXCS4w-fsd3MZdI35+8A=",
        ] {
            assert!(
                check_token_id(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("is not a token id"),
                "{bad}"
            );
        }
    }
}
