//! Token service settings, under DataHub's names and environment variables.

use std::fmt;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use crate::duration::{DurationPolicy, DEFAULT_ALLOWED_DURATIONS};
use crate::error::{Error, Result};

/// Environment variable holding the signing key.
pub const ENV_SIGNING_KEY: &str = "DATAHUB_TOKEN_SERVICE_SIGNING_KEY";
/// Environment variable listing previous signing keys, comma separated:
/// they still verify tokens they signed but never sign new ones.
pub const ENV_PREVIOUS_SIGNING_KEYS: &str = "DATAHUB_TOKEN_SERVICE_PREVIOUS_SIGNING_KEYS";
/// Environment variable holding the salt for token ids.
pub const ENV_SALT: &str = "DATAHUB_TOKEN_SERVICE_SALT";
/// Environment variable holding the issuer (`iss` claim).
pub const ENV_ISSUER: &str = "DATAHUB_TOKEN_SERVICE_ISSUER";
/// Environment variable allowing never-expiring tokens: `true`/`false`, or
/// Spring's `on`/`off`, `yes`/`no`, `1`/`0` (any case); empty is unset.
pub const ENV_ALLOW_NO_EXPIRY: &str = "ACCESS_TOKEN_ALLOW_NO_EXPIRY";
/// Environment variable listing allowed durations (ISO-8601, comma separated).
pub const ENV_ALLOWED_DURATIONS: &str = "ACCESS_TOKEN_ALLOWED_DURATIONS";
/// Environment variable with the lifetime of session tokens in ms.
pub const ENV_SESSION_DURATION_MS: &str = "SESSION_TOKEN_DURATION_MS";

/// Environment variable with the most live tokens one owner may hold (a
/// positive number, or `none` for no limit).
pub const ENV_MAX_TOKENS_PER_OWNER: &str = "ACCESS_TOKEN_MAX_PER_OWNER";
/// The default maximum of live tokens per owner.
pub const DEFAULT_MAX_TOKENS_PER_OWNER: usize = 100;

/// Environment variable with the least time between two recorded uses of
/// one token, in ms (a positive number, or `off` to record none).
pub const ENV_LAST_USED_INTERVAL_MS: &str = "ACCESS_TOKEN_LAST_USED_INTERVAL_MS";
/// The default least time between two recorded uses of one token: a minute.
pub const DEFAULT_LAST_USED_INTERVAL_MS: i64 = 60_000;

/// Every variable [`TokenServiceConfig::from_lookup`] reads.
const ENV_VARS: [&str; 9] = [
    ENV_SIGNING_KEY,
    ENV_PREVIOUS_SIGNING_KEYS,
    ENV_SALT,
    ENV_ISSUER,
    ENV_ALLOW_NO_EXPIRY,
    ENV_ALLOWED_DURATIONS,
    ENV_SESSION_DURATION_MS,
    ENV_MAX_TOKENS_PER_OWNER,
    ENV_LAST_USED_INTERVAL_MS,
];

/// The process environment as a lookup, once none of our variables holds
/// bytes that are not UTF-8: such a variable is set, and reading it as unset
/// would silently drop a limit or, for the key and salt, let generated ones
/// replace the configured ones. The error names the variable, never the
/// value (it may be a key).
fn process_env() -> Result<impl Fn(&str) -> Option<String>> {
    checked_env(|name| std::env::var(name))
}

fn checked_env(
    read: impl Fn(&str) -> std::result::Result<String, std::env::VarError>,
) -> Result<impl Fn(&str) -> Option<String>> {
    for name in ENV_VARS {
        if let Err(std::env::VarError::NotUnicode(_)) = read(name) {
            return Err(Error::Config(format!(
                "environment variable {name} is not valid UTF-8"
            )));
        }
    }
    Ok(move |name: &str| read(name).ok())
}

/// How many verified tokens a service remembers by default, so that a token
/// presented again skips the signature and claims checks.
pub const DEFAULT_VERIFIED_TOKEN_CACHE: usize = 16_384;

/// DataHub's default issuer.
pub const DEFAULT_ISSUER: &str = "datahub-metadata-service";
/// DataHub's default session token lifetime: one day.
pub const DEFAULT_SESSION_DURATION_MS: i64 = 24 * 60 * 60 * 1000;
/// Shortest signing key accepted, in bytes (HS256's hash size).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

// DataHub's published defaults: anyone can forge tokens for a deployment
// that keeps them. Reachable only through `insecure_datahub_defaults`.
const DATAHUB_DEFAULT_SIGNING_KEY: &str = "WnEdIeTG/VVCLQqGwC/BAkqyY0k+H8NEAtWGejrBI94=";
const DATAHUB_DEFAULT_SALT: &str = "ohDVbJBvHHVJh9S/UA4BYF9COuNnqqVhr9MLKEGXk1O=";

fn check_secrets(signing_key: &str, salt: &str) -> Result<()> {
    check_signing_key(signing_key, &format!("the signing key ({ENV_SIGNING_KEY})"))?;
    if salt.is_empty() {
        return Err(Error::Config(format!("the salt ({ENV_SALT}) is empty")));
    }
    Ok(())
}

/// A string that must not reach logs: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Settings of a [`DataHubTokenService`](crate::DataHubTokenService).
///
/// The signing key and salt are used as the UTF-8 bytes of the strings given,
/// exactly as DataHub does (it does not base64-decode them), so a DataHub
/// deployment's values work unchanged. `Debug` never prints them.
#[derive(Debug, Clone)]
pub struct TokenServiceConfig {
    pub(crate) signing_key: Secret,
    pub(crate) previous_signing_keys: Vec<Secret>,
    pub(crate) salt: Secret,
    pub(crate) issuer: String,
    pub(crate) durations: DurationPolicy,
    pub(crate) session_duration_ms: i64,
    pub(crate) max_tokens_per_owner: Option<usize>,
    pub(crate) last_used_interval_ms: Option<i64>,
    pub(crate) verified_token_cache: usize,
}

impl TokenServiceConfig {
    /// Settings with this key and salt and DataHub's other defaults.
    ///
    /// Refuses an empty salt and a key shorter than
    /// [`MIN_SIGNING_KEY_BYTES`] (DataHub accepts both; we do not).
    pub fn new(signing_key: impl Into<String>, salt: impl Into<String>) -> Result<Self> {
        let (signing_key, salt) = (signing_key.into(), salt.into());
        check_secrets(&signing_key, &salt)?;
        if signing_key == DATAHUB_DEFAULT_SIGNING_KEY {
            tracing::warn!(
                "INSECURE: the signing key ({ENV_SIGNING_KEY}) is DataHub's published default, so \
                 anyone can mint tokens this service accepts; use a secret of your own"
            );
        }
        if salt == DATAHUB_DEFAULT_SALT {
            tracing::warn!(
                "INSECURE: the salt ({ENV_SALT}) is DataHub's published default, so anyone holding \
                 a token can work out its id; use a secret of your own"
            );
        }
        Ok(TokenServiceConfig {
            signing_key: Secret(signing_key),
            previous_signing_keys: Vec::new(),
            salt: Secret(salt),
            issuer: DEFAULT_ISSUER.to_owned(),
            durations: DurationPolicy::default(),
            session_duration_ms: DEFAULT_SESSION_DURATION_MS,
            max_tokens_per_owner: Some(DEFAULT_MAX_TOKENS_PER_OWNER),
            last_used_interval_ms: Some(DEFAULT_LAST_USED_INTERVAL_MS),
            verified_token_cache: DEFAULT_VERIFIED_TOKEN_CACHE,
        })
    }

    /// Whether the signing key, a previous signing key or the salt is
    /// DataHub's published default (see
    /// [`insecure_datahub_defaults`](Self::insecure_datahub_defaults)): with
    /// such a key anyone can mint tokens this service accepts. Each is logged
    /// as a warning when set; a production service may refuse them.
    pub fn uses_public_defaults(&self) -> bool {
        self.signing_key.expose() == DATAHUB_DEFAULT_SIGNING_KEY
            || self.salt.expose() == DATAHUB_DEFAULT_SALT
            || self
                .previous_signing_keys
                .iter()
                .any(|k| k.expose() == DATAHUB_DEFAULT_SIGNING_KEY)
    }

    /// Settings with a fresh random key and salt (32 random bytes each, in
    /// base64): for tests, demos, or a first start that then saves them.
    pub fn generate() -> Result<Self> {
        Self::new(random_secret()?, random_secret()?)
    }

    /// **INSECURE.** DataHub's published default key and salt: anyone can
    /// mint valid tokens for a service that uses them. Only for talking to a
    /// DataHub quickstart that also runs on its defaults.
    pub fn insecure_datahub_defaults() -> Self {
        Self::new(DATAHUB_DEFAULT_SIGNING_KEY, DATAHUB_DEFAULT_SALT).expect("DataHub's defaults are valid")
    }

    /// Reads DataHub's environment variables ([`ENV_SIGNING_KEY`],
    /// [`ENV_SALT`], [`ENV_ISSUER`], [`ENV_ALLOW_NO_EXPIRY`],
    /// [`ENV_ALLOWED_DURATIONS`], [`ENV_SESSION_DURATION_MS`]) and ours
    /// ([`ENV_PREVIOUS_SIGNING_KEYS`], [`ENV_MAX_TOKENS_PER_OWNER`],
    /// [`ENV_LAST_USED_INTERVAL_MS`]). Key and salt are required: unlike
    /// DataHub there is no silent public default.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(process_env()?)
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |name: &str| {
            lookup(name).ok_or_else(|| Error::Config(format!("environment variable {name} is not set")))
        };
        let mut config = Self::new(required(ENV_SIGNING_KEY)?, required(ENV_SALT)?)?;
        if let Some(keys) = lookup(ENV_PREVIOUS_SIGNING_KEYS) {
            // Empty items (a trailing comma, an empty variable) are skipped.
            let keys = keys.split(',').map(str::trim).filter(|k| !k.is_empty());
            config = config
                .with_previous_signing_keys(keys)
                .map_err(|e| Error::Config(format!("{ENV_PREVIOUS_SIGNING_KEYS}: {e}")))?;
        }
        if let Some(max) = lookup(ENV_MAX_TOKENS_PER_OWNER) {
            let max = match max.trim() {
                v if v.eq_ignore_ascii_case("none") => None,
                v => Some(v.parse().map_err(|_| {
                    Error::Config(format!(
                        "{ENV_MAX_TOKENS_PER_OWNER} must be a positive number or none (got {max:?})"
                    ))
                })?),
            };
            config = config
                .with_max_tokens_per_owner(max)
                .map_err(|e| Error::Config(format!("{ENV_MAX_TOKENS_PER_OWNER}: {e}")))?;
        }
        if let Some(interval) = lookup(ENV_LAST_USED_INTERVAL_MS) {
            let interval = match interval.trim() {
                v if v.eq_ignore_ascii_case("off") => None,
                v => Some(v.parse().map_err(|_| {
                    Error::Config(format!(
                        "{ENV_LAST_USED_INTERVAL_MS} must be a positive number of milliseconds or off \
                         (got {interval:?})"
                    ))
                })?),
            };
            config = config
                .with_last_used_interval_ms(interval)
                .map_err(|e| Error::Config(format!("{ENV_LAST_USED_INTERVAL_MS}: {e}")))?;
        }
        if let Some(issuer) = lookup(ENV_ISSUER) {
            config = config.with_issuer(issuer)?;
        }
        // Spring's boolean words, as DataHub reads its settings; empty is unset.
        let is = |v: &str, words: [&str; 4]| words.iter().any(|w| v.eq_ignore_ascii_case(w));
        let allow_no_expiry = match lookup(ENV_ALLOW_NO_EXPIRY).as_deref().map(str::trim) {
            None | Some("") => false,
            Some(v) if is(v, ["true", "on", "yes", "1"]) => true,
            Some(v) if is(v, ["false", "off", "no", "0"]) => false,
            Some(v) => {
                return Err(Error::Config(format!(
                    "{ENV_ALLOW_NO_EXPIRY} must be true or false (or on/off, yes/no, 1/0; got {v:?})"
                )))
            }
        };
        let allowed = lookup(ENV_ALLOWED_DURATIONS).unwrap_or_else(|| DEFAULT_ALLOWED_DURATIONS.into());
        config.durations = DurationPolicy::parse(&allowed, allow_no_expiry)
            .map_err(|e| Error::Config(format!("{ENV_ALLOWED_DURATIONS}: {e}")))?;
        if let Some(ms) = lookup(ENV_SESSION_DURATION_MS) {
            let ms = ms.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "{ENV_SESSION_DURATION_MS} must be a number of milliseconds (got {ms:?})"
                ))
            })?;
            config = config.with_session_duration_ms(ms)?;
        }
        Ok(config)
    }

    /// Sets the issuer (`iss` claim); must not be empty.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Result<Self> {
        let issuer = issuer.into();
        if issuer.trim().is_empty() {
            return Err(Error::Config("the issuer is empty".into()));
        }
        self.issuer = issuer;
        Ok(self)
    }

    /// Sets the keys of earlier deployments, to roll the signing key without
    /// invalidating every token at once: tokens signed by any of them still
    /// validate, new tokens are signed by the current key only. Removing a
    /// key later invalidates exactly the tokens it signed (token ids depend
    /// on the salt alone, so stored records stay valid).
    ///
    /// Each key is checked like the current one (at least
    /// [`MIN_SIGNING_KEY_BYTES`]); replaces any previous keys set before.
    pub fn with_previous_signing_keys<K: Into<String>>(
        mut self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Self> {
        let mut previous = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let key = key.into();
            check_signing_key(&key, &format!("previous signing key #{}", i + 1))?;
            if key == *self.signing_key.expose() {
                return Err(Error::Config(format!(
                    "previous signing key #{} is the current signing key",
                    i + 1
                )));
            }
            previous.push(Secret(key));
        }
        // Once, and only for settings that are kept.
        if let Some(i) = previous
            .iter()
            .position(|k| k.expose() == DATAHUB_DEFAULT_SIGNING_KEY)
        {
            tracing::warn!(
                "INSECURE: previous signing key #{} ({ENV_PREVIOUS_SIGNING_KEYS}) is DataHub's \
                 published default, so anyone can mint tokens this service accepts; drop it once \
                 the tokens it signed are replaced",
                i + 1
            );
        }
        self.previous_signing_keys = previous;
        Ok(self)
    }

    /// Sets the most live (unexpired) tokens one owner may hold; creating
    /// one more fails with [`Error::LimitExceeded`]. `None` removes the
    /// limit; the default is [`DEFAULT_MAX_TOKENS_PER_OWNER`]. Zero is refused
    /// (it would forbid every create).
    pub fn with_max_tokens_per_owner(mut self, max: Option<usize>) -> Result<Self> {
        if max == Some(0) {
            return Err(Error::Config(
                "the maximum number of tokens per owner must be at least 1 (use None for no limit)".into(),
            ));
        }
        self.max_tokens_per_owner = max;
        Ok(self)
    }

    /// The most live tokens one owner may hold; `None` if unlimited.
    pub fn max_tokens_per_owner(&self) -> Option<usize> {
        self.max_tokens_per_owner
    }

    /// Records when tokens are used (`lastUsedAt`), at most once per token
    /// per `interval_ms` (per service instance); `None` records nothing.
    /// The default is [`DEFAULT_LAST_USED_INTERVAL_MS`]. Zero or less is
    /// refused (use `None` to turn recording off).
    pub fn with_last_used_interval_ms(mut self, interval_ms: Option<i64>) -> Result<Self> {
        if interval_ms.is_some_and(|ms| ms <= 0) {
            return Err(Error::Config(format!(
                "the last-used interval must be positive (got {} ms; use None to turn recording off)",
                interval_ms.unwrap_or_default()
            )));
        }
        self.last_used_interval_ms = interval_ms;
        Ok(self)
    }

    /// The least time between two recorded uses of one token; `None` if
    /// uses are not recorded.
    pub fn last_used_interval_ms(&self) -> Option<i64> {
        self.last_used_interval_ms
    }

    /// How many verified tokens the service remembers by id (default
    /// [`DEFAULT_VERIFIED_TOKEN_CACHE`]; 0 turns the memo off). A token
    /// presented again then skips the HMAC and claims parsing; expiry and
    /// revocation are still checked on every call. Each entry holds the
    /// token's id and claims, never the token: a few hundred bytes. When
    /// full, the memo forgets its older half.
    pub fn with_verified_token_cache(mut self, tokens: usize) -> Self {
        self.verified_token_cache = tokens;
        self
    }

    /// How many verified tokens the service remembers.
    pub fn verified_token_cache(&self) -> usize {
        self.verified_token_cache
    }

    /// How many previous signing keys still verify tokens.
    pub fn previous_signing_key_count(&self) -> usize {
        self.previous_signing_keys.len()
    }

    /// Sets which token lifetimes may be requested.
    pub fn with_duration_policy(mut self, durations: DurationPolicy) -> Self {
        self.durations = durations;
        self
    }

    /// Sets the lifetime of session tokens; must be positive.
    pub fn with_session_duration_ms(mut self, ms: i64) -> Result<Self> {
        if ms <= 0 {
            return Err(Error::Config(format!(
                "the session token lifetime must be positive (got {ms} ms)"
            )));
        }
        self.session_duration_ms = ms;
        Ok(self)
    }

    /// The issuer (`iss` claim).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Which token lifetimes may be requested.
    pub fn duration_policy(&self) -> &DurationPolicy {
        &self.durations
    }

    /// The signing key, to save it (e.g. on first start). Never log it.
    pub fn expose_signing_key(&self) -> &str {
        self.signing_key.expose()
    }

    /// The salt, to save it (e.g. on first start). Never log it.
    pub fn expose_salt(&self) -> &str {
        self.salt.expose()
    }
}

/// The checks every signing key passes; `what` names the key, never shows it.
fn check_signing_key(key: &str, what: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Config(format!("{what} is empty")));
    }
    if key.len() < MIN_SIGNING_KEY_BYTES {
        return Err(Error::Config(format!(
            "{what} is {} bytes; at least {MIN_SIGNING_KEY_BYTES} are required",
            key.len()
        )));
    }
    Ok(())
}

/// Name of the file, inside a data directory, where
/// [`TokenServiceConfig::load_or_generate_in`] keeps a generated key and salt.
#[cfg(feature = "fs")]
pub const SECRETS_FILE_NAME: &str = "token-service-secrets.json";

/// The key file's content. No `Debug`: it holds secrets.
#[cfg(feature = "fs")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecretsFile {
    signing_key: String,
    salt: String,
}

#[cfg(feature = "fs")]
impl TokenServiceConfig {
    /// Settings for a service that keeps its data in `dir`, with zero
    /// configuration and never a public default key.
    ///
    /// When [`ENV_SIGNING_KEY`] and [`ENV_SALT`] are set this is
    /// [`from_env`](Self::from_env). When neither is set, the key and salt
    /// come from [`SECRETS_FILE_NAME`] in `dir`, which is created on first
    /// use (directory 0700, file 0600, written atomically and durably) with a
    /// fresh random key and salt; the other settings still come from the
    /// environment. Setting only one of the two is an error, and so is a
    /// missing key file in a directory that already holds a
    /// [`FileTokenStore`](crate::FileTokenStore) log (a new key would make its
    /// tokens invalid). A key file that users other than its owner may read
    /// or change is used, with an INSECURE warning. For tokens kept
    /// elsewhere (a database), use
    /// [`load_or_generate_for_store`](Self::load_or_generate_for_store),
    /// which asks the store itself.
    pub fn load_or_generate_in(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::load_or_generate_with(dir.as_ref(), process_env()?)
    }

    /// [`load_or_generate_in`](Self::load_or_generate_in) for a service whose
    /// tokens are in `store`, wherever it keeps them (a database, or a
    /// [`FileTokenStore`](crate::FileTokenStore) already open in `dir`): a
    /// missing key file is an error while `store` holds any token, since a
    /// new key would make them all invalid, and a new key is made only for an
    /// empty store. Open the store first, then call this.
    pub async fn load_or_generate_for_store(
        dir: impl AsRef<std::path::Path>,
        store: &dyn crate::TokenStore,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let lookup = process_env()?;
        let keys_from_env = lookup(ENV_SIGNING_KEY).is_some() || lookup(ENV_SALT).is_some();
        // Counted only when the key file is absent for sure (an unreadable
        // path is left to the read to report): loading one asks no store.
        let absent = matches!(dir.join(SECRETS_FILE_NAME).try_exists(), Ok(false));
        let held = if !keys_from_env && absent {
            store.list(&crate::store::ListQuery::all(0)).await?.total
        } else {
            0
        };
        Self::load_or_generate_checked(dir, lookup, NewKeyCheck::StoreHolds(held))
    }

    fn load_or_generate_with(dir: &std::path::Path, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::load_or_generate_checked(dir, lookup, NewKeyCheck::NoTokenLog)
    }

    fn load_or_generate_checked(
        dir: &std::path::Path,
        lookup: impl Fn(&str) -> Option<String>,
        new_key_check: NewKeyCheck,
    ) -> Result<Self> {
        match (lookup(ENV_SIGNING_KEY), lookup(ENV_SALT)) {
            (Some(_), Some(_)) => return Self::from_lookup(lookup),
            (None, None) => {}
            _ => {
                return Err(Error::Config(format!(
                    "set both {ENV_SIGNING_KEY} and {ENV_SALT}, or neither to use the ones kept in {}",
                    dir.join(SECRETS_FILE_NAME).display()
                )))
            }
        }
        let secrets = load_or_create_secrets(dir, new_key_check)?;
        // Only errors about the file's own key and salt name the file: the
        // other settings come from the environment.
        check_secrets(&secrets.signing_key, &secrets.salt).map_err(|e| match e {
            Error::Config(why) => {
                Error::Config(format!("{why} (in {})", dir.join(SECRETS_FILE_NAME).display()))
            }
            other => other,
        })?;
        Self::from_lookup(|name| match name {
            ENV_SIGNING_KEY => Some(secrets.signing_key.clone()),
            ENV_SALT => Some(secrets.salt.clone()),
            other => lookup(other),
        })
    }
}

/// What must hold no tokens before a new key file is made.
#[cfg(feature = "fs")]
enum NewKeyCheck {
    /// The directory, as a [`FileTokenStore`](crate::FileTokenStore) log.
    NoTokenLog,
    /// The store, which holds this many tokens.
    StoreHolds(usize),
}

#[cfg(feature = "fs")]
fn load_or_create_secrets(dir: &std::path::Path, new_key_check: NewKeyCheck) -> Result<SecretsFile> {
    use crate::store::file::fsutil;
    let path = dir.join(SECRETS_FILE_NAME);
    let storage = |what: &str, e: std::io::Error| Error::storage(format!("{what} {}", path.display()), e);
    let read = || -> Result<Option<SecretsFile>> {
        match std::fs::read(&path) {
            // serde_json's messages can quote the input: report only where.
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Config(format!(
                    "{} is not a key file (expected JSON {{\"signingKey\": ..., \"salt\": ...}}; \
                     problem at line {} column {})",
                    path.display(),
                    e.line(),
                    e.column()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage("reading", e)),
        }
    };
    if let Some(secrets) = read()? {
        warn_if_others_can_access(&path);
        return Ok(secrets);
    }
    // A new key would make every token already in the directory fail to
    // verify: the key file was lost or moved, and making one hides that.
    let holder = match new_key_check {
        NewKeyCheck::NoTokenLog => {
            let log = dir.join(crate::store::file::LOG_FILE_NAME);
            log.exists().then(|| format!("{} may hold tokens", log.display()))
        }
        NewKeyCheck::StoreHolds(0) => None,
        NewKeyCheck::StoreHolds(held) => Some(format!("the token store holds tokens ({held})")),
    };
    if let Some(holder) = holder {
        return Err(Error::Config(format!(
            "{} is missing, but {holder} signed with the key it held: a new key would make them all \
             invalid. Restore the file, or set {ENV_SIGNING_KEY} and {ENV_SALT}",
            path.display()
        )));
    }
    fsutil::create_private_dir(dir).map_err(|e| storage("creating the directory of", e))?;
    let fresh = SecretsFile {
        signing_key: random_secret()?,
        salt: random_secret()?,
    };
    let json = serde_json::to_vec_pretty(&fresh).expect("two strings serialize");
    if fsutil::create_new_durably(&path, &json).map_err(|e| storage("writing", e))? {
        return Ok(fresh);
    }
    // Another process created it first: use theirs, so both agree.
    read()?.ok_or_else(|| Error::Config(format!("{} vanished while being created", path.display())))
}

/// Warns when users other than the key file's owner may read or change it:
/// whoever reads it can sign tokens as anyone. This crate writes it 0600; a
/// copy or a restore from backup may not have kept that.
#[cfg(feature = "fs")]
fn warn_if_others_can_access(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "INSECURE: the key file {} has mode {mode:o}, so other users can read or change it \
                 and sign tokens as anyone; make it its owner's only (chmod 600)",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Config("the system random number generator failed".into()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<TokenServiceConfig> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TokenServiceConfig::from_lookup(|name| vars.get(name).cloned())
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    /// What `make` logs at WARN and above, as text.
    fn warnings_of(make: impl FnOnce()) -> String {
        let warnings = crate::test_log::Warnings::capture();
        make();
        warnings.text()
    }

    #[test]
    fn datahubs_public_defaults_are_flagged_loudly() {
        let public = [
            (
                DATAHUB_DEFAULT_SIGNING_KEY,
                "our own salt",
                &[ENV_SIGNING_KEY][..],
            ),
            (KEY, DATAHUB_DEFAULT_SALT, &[ENV_SALT]),
            (
                DATAHUB_DEFAULT_SIGNING_KEY,
                DATAHUB_DEFAULT_SALT,
                &[ENV_SIGNING_KEY, ENV_SALT],
            ),
        ];
        for (key, salt, named) in public {
            let mut config = None;
            let warnings = warnings_of(|| config = Some(TokenServiceConfig::new(key, salt).unwrap()));
            assert!(config.unwrap().uses_public_defaults());
            assert_eq!(warnings.matches("WARN").count(), named.len(), "{warnings}");
            assert!(named.iter().all(|name| warnings.contains(name)), "{warnings}");
            // Named, never printed.
            assert!(!warnings.contains(key) && !warnings.contains(salt), "{warnings}");
        }
        // A previous key too: a deployment moving off the defaults keeps
        // accepting forged tokens while it lists the old key.
        let mut config = None;
        let warnings = warnings_of(|| {
            let own = TokenServiceConfig::new(KEY, "our own salt").unwrap();
            config = Some(
                own.with_previous_signing_keys([DATAHUB_DEFAULT_SIGNING_KEY])
                    .unwrap(),
            );
        });
        assert!(config.unwrap().uses_public_defaults());
        assert_eq!(warnings.matches("WARN").count(), 1, "{warnings}");
        assert!(
            warnings.contains("INSECURE") && warnings.contains("previous signing key #1"),
            "{warnings}"
        );
        // Listed twice, it still warns once; refused settings do not warn.
        let warnings = warnings_of(|| {
            let own = TokenServiceConfig::new(KEY, "our own salt").unwrap();
            let twice = [DATAHUB_DEFAULT_SIGNING_KEY; 2];
            assert!(own.clone().with_previous_signing_keys(twice).is_ok());
            assert!(own
                .with_previous_signing_keys([DATAHUB_DEFAULT_SIGNING_KEY, "short"])
                .is_err());
        });
        assert_eq!(warnings.matches("WARN").count(), 1, "{warnings}");
        assert!(!warnings.contains(DATAHUB_DEFAULT_SIGNING_KEY), "{warnings}");
        assert!(TokenServiceConfig::insecure_datahub_defaults().uses_public_defaults());
        let vars = [
            (ENV_SIGNING_KEY, DATAHUB_DEFAULT_SIGNING_KEY),
            (ENV_SALT, DATAHUB_DEFAULT_SALT),
        ];
        assert!(warnings_of(|| drop(from(&vars).unwrap())).contains("INSECURE"));

        let mut own = None;
        let warnings = warnings_of(|| own = Some(TokenServiceConfig::new(KEY, "our own salt").unwrap()));
        assert!(!own.unwrap().uses_public_defaults());
        assert_eq!(warnings, "");
    }

    #[test]
    fn refuses_weak_secrets() {
        let err = |r: Result<TokenServiceConfig>| r.unwrap_err().to_string();
        assert!(err(TokenServiceConfig::new("", "salt")).contains("signing key"));
        assert!(err(TokenServiceConfig::new("short", "salt")).contains("at least 32"));
        assert!(err(TokenServiceConfig::new(KEY, "")).contains("salt"));
        assert!(TokenServiceConfig::new(KEY, "s").is_ok());
        // The minimum counts bytes, not characters: 16 `é` are 32 bytes.
        assert!(TokenServiceConfig::new("é".repeat(16), "s").is_ok());
        let thirty_one = format!("{}a", "é".repeat(15));
        assert!(err(TokenServiceConfig::new(thirty_one, "s")).contains("is 31 bytes"));
    }

    #[test]
    fn insecure_defaults_are_datahubs_published_ones() {
        let config = TokenServiceConfig::insecure_datahub_defaults();
        assert_eq!(
            config.expose_signing_key(),
            "WnEdIeTG/VVCLQqGwC/BAkqyY0k+H8NEAtWGejrBI94="
        );
        assert_eq!(
            config.expose_salt(),
            "ohDVbJBvHHVJh9S/UA4BYF9COuNnqqVhr9MLKEGXk1O="
        );
        assert_eq!(config.issuer(), "datahub-metadata-service");
    }

    #[test]
    fn a_variable_that_is_not_utf8_is_an_error_not_unset() {
        use std::env::VarError;
        let env = |bad: &'static str| {
            checked_env(move |name| match name {
                name if name == bad => Err(VarError::NotUnicode("5\u{fffd}".into())),
                ENV_SIGNING_KEY => Ok(KEY.to_owned()),
                ENV_SALT => Ok("salt".to_owned()),
                _ => Err(VarError::NotPresent),
            })
        };
        for bad in ENV_VARS {
            let err = env(bad).err().expect("refused").to_string();
            assert!(err.contains(&format!("{bad} is not valid UTF-8")), "{err}");
            assert!(!err.contains(KEY) && !err.contains('5'), "{err}");
        }
        let lookup = env("UNRELATED").expect("all UTF-8");
        assert_eq!(lookup(ENV_SALT).as_deref(), Some("salt"));
        assert_eq!(lookup(ENV_ISSUER), None);
        assert!(TokenServiceConfig::from_lookup(lookup).is_ok());
    }

    #[test]
    fn reads_datahub_environment() {
        assert!(from(&[]).unwrap_err().to_string().contains(ENV_SIGNING_KEY));
        let config = from(&[
            (ENV_SIGNING_KEY, KEY),
            (ENV_SALT, "salt"),
            (ENV_ISSUER, "me"),
            (ENV_ALLOW_NO_EXPIRY, "TRUE"),
            (ENV_ALLOWED_DURATIONS, "P1D, P2D"),
            (ENV_SESSION_DURATION_MS, "5000"),
        ])
        .unwrap();
        assert_eq!(config.issuer(), "me");
        assert!(config.duration_policy().allow_no_expiry());
        assert_eq!(config.duration_policy().allowed().len(), 2);
        assert_eq!(config.session_duration_ms, 5000);
        let defaults = from(&[(ENV_SIGNING_KEY, KEY), (ENV_SALT, "salt")]).unwrap();
        assert_eq!(defaults.issuer(), DEFAULT_ISSUER);
        assert_eq!(defaults.duration_policy(), &DurationPolicy::default());
        let allows = |v: &str| {
            from(&[(ENV_SIGNING_KEY, KEY), (ENV_SALT, "s"), (ENV_ALLOW_NO_EXPIRY, v)])
                .map(|c| c.duration_policy().allow_no_expiry())
                .map_err(|e| e.to_string())
        };
        for v in ["true", "On", "YES", " 1 "] {
            assert_eq!(allows(v), Ok(true), "{v:?}");
        }
        for v in ["false", "off", "No", "0", ""] {
            assert_eq!(allows(v), Ok(false), "{v:?}");
        }
        for v in ["y", "2", "enabled"] {
            let err = allows(v).unwrap_err();
            assert!(
                err.contains(ENV_ALLOW_NO_EXPIRY) && err.contains(&format!("{v:?}")),
                "{err}"
            );
        }
        assert!(from(&[
            (ENV_SIGNING_KEY, KEY),
            (ENV_SALT, "s"),
            (ENV_ALLOWED_DURATIONS, "P1Q")
        ])
        .is_err());
        assert!(from(&[
            (ENV_SIGNING_KEY, KEY),
            (ENV_SALT, "s"),
            (ENV_SESSION_DURATION_MS, "-1")
        ])
        .is_err());
    }

    #[test]
    fn reads_datahubs_variable_names() {
        let config = from(&[
            ("DATAHUB_TOKEN_SERVICE_SIGNING_KEY", KEY),
            ("DATAHUB_TOKEN_SERVICE_SALT", "pepper"),
            ("DATAHUB_TOKEN_SERVICE_ISSUER", "acme"),
            ("ACCESS_TOKEN_ALLOW_NO_EXPIRY", "true"),
            ("ACCESS_TOKEN_ALLOWED_DURATIONS", "P2D"),
            ("SESSION_TOKEN_DURATION_MS", "5000"),
        ])
        .unwrap();
        assert_eq!(config.expose_signing_key(), KEY);
        assert_eq!(config.expose_salt(), "pepper");
        assert_eq!(config.issuer(), "acme");
        assert!(config.duration_policy().allow_no_expiry());
        let allowed: Vec<_> = config
            .duration_policy()
            .allowed()
            .iter()
            .map(|d| d.as_str())
            .collect();
        assert_eq!(allowed, ["P2D"]);
        assert_eq!(config.session_duration_ms, 5000);
    }

    #[cfg(feature = "fs")]
    #[test]
    fn key_and_salt_are_generated_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let none = |_: &str| None;
        let first = TokenServiceConfig::load_or_generate_with(&dir, none).unwrap();
        let again = TokenServiceConfig::load_or_generate_with(&dir, none).unwrap();
        assert_eq!(first.expose_signing_key(), again.expose_signing_key());
        assert_eq!(first.expose_salt(), again.expose_salt());
        assert_ne!(first.expose_signing_key(), DATAHUB_DEFAULT_SIGNING_KEY);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(SECRETS_FILE_NAME)), 0o600);
        }
        // The environment wins when both are set; one alone is an error.
        let env = |name: &str| match name {
            ENV_SIGNING_KEY => Some(KEY.to_owned()),
            ENV_SALT => Some("s".to_owned()),
            _ => None,
        };
        let from_env = TokenServiceConfig::load_or_generate_with(&dir, env).unwrap();
        assert_eq!(from_env.expose_signing_key(), KEY);
        let only_key = |name: &str| (name == ENV_SIGNING_KEY).then(|| KEY.to_owned());
        let err = TokenServiceConfig::load_or_generate_with(&dir, only_key).unwrap_err();
        assert!(err.to_string().contains("set both"), "{err}");
        // Other settings still come from the environment, and so do their
        // errors: they do not blame the file.
        let issuer = |name: &str| (name == ENV_ISSUER).then(|| "me".to_owned());
        assert_eq!(
            TokenServiceConfig::load_or_generate_with(&dir, issuer)
                .unwrap()
                .issuer(),
            "me"
        );
        let bad_max = |name: &str| (name == ENV_MAX_TOKENS_PER_OWNER).then(|| "abc".to_owned());
        let err = TokenServiceConfig::load_or_generate_with(&dir, bad_max).unwrap_err();
        assert!(err.to_string().contains(ENV_MAX_TOKENS_PER_OWNER), "{err}");
        assert!(!err.to_string().contains(SECRETS_FILE_NAME), "{err}");
    }

    #[cfg(feature = "fs")]
    #[test]
    fn no_new_key_beside_existing_tokens() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(crate::store::file::LOG_FILE_NAME), b"tokens").unwrap();
        let err = TokenServiceConfig::load_or_generate_with(tmp.path(), |_| None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(SECRETS_FILE_NAME) && text.contains("is missing"),
            "{text}"
        );
        assert!(text.contains(ENV_SIGNING_KEY), "{text}");
        assert!(!tmp.path().join(SECRETS_FILE_NAME).exists());
        // The environment still works for such a directory.
        let env = |name: &str| match name {
            ENV_SIGNING_KEY => Some(KEY.to_owned()),
            ENV_SALT => Some("s".to_owned()),
            _ => None,
        };
        assert!(TokenServiceConfig::load_or_generate_with(tmp.path(), env).is_ok());
    }

    #[cfg(all(feature = "fs", unix))]
    #[test]
    fn a_key_file_others_can_read_is_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        TokenServiceConfig::load_or_generate_with(tmp.path(), none).unwrap();
        let path = tmp.path().join(SECRETS_FILE_NAME);
        let load =
            || warnings_of(|| drop(TokenServiceConfig::load_or_generate_with(tmp.path(), none).unwrap()));
        assert_eq!(load(), "", "as written: 0600");
        for mode in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let warnings = load();
            assert!(warnings.contains(&format!("has mode {mode:o}")), "{warnings}");
            assert!(warnings.contains(SECRETS_FILE_NAME), "{warnings}");
        }
    }

    #[cfg(feature = "fs")]
    #[tokio::test]
    async fn no_new_key_beside_a_store_holding_tokens() {
        use crate::store::TokenStore as _;
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::MemoryTokenStore::new();
        let made = TokenServiceConfig::load_or_generate_for_store(tmp.path(), &store)
            .await
            .unwrap();
        let key = made.expose_signing_key().to_owned();
        let service =
            crate::DataHubTokenService::new(made, store.clone(), crate::Policies::datahub_defaults());
        let user = crate::Urn::corp_user("alice").unwrap();
        let input =
            crate::CreateAccessTokenInput::personal(user.as_str(), "t", crate::AccessTokenDuration::OneDay);
        crate::TokenService::create_access_token(&service, &user, input)
            .await
            .unwrap();
        // Kept: the same key again.
        let again = TokenServiceConfig::load_or_generate_for_store(tmp.path(), &store)
            .await
            .unwrap();
        assert_eq!(again.expose_signing_key(), key);
        // Lost: an error, and no new file.
        let path = tmp.path().join(SECRETS_FILE_NAME);
        std::fs::remove_file(&path).unwrap();
        let err = TokenServiceConfig::load_or_generate_for_store(tmp.path(), &store)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(SECRETS_FILE_NAME) && text.contains("holds tokens (1)"),
            "{text}"
        );
        assert!(!path.exists());
        // Once the store is empty, a new key harms nothing.
        let ids: Vec<String> = store
            .list(&crate::store::ListQuery::all(10))
            .await
            .unwrap()
            .tokens
            .into_iter()
            .map(|t| t.id)
            .collect();
        for id in ids {
            store.delete(&id).await.unwrap();
        }
        assert!(TokenServiceConfig::load_or_generate_for_store(tmp.path(), &store)
            .await
            .is_ok());
        assert!(path.exists());
    }

    #[cfg(feature = "fs")]
    #[test]
    fn a_bad_key_file_is_named_without_quoting_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(SECRETS_FILE_NAME);
        std::fs::write(&path, r#"{"signingKey": "s3cr3t-value", "salt": 5}"#).unwrap();
        let err = TokenServiceConfig::load_or_generate_with(tmp.path(), |_| None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(SECRETS_FILE_NAME) && text.contains("line 1"),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        std::fs::write(&path, r#"{"signingKey": "short", "salt": "x"}"#).unwrap();
        let err = TokenServiceConfig::load_or_generate_with(tmp.path(), |_| None).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
        assert!(err.to_string().contains(SECRETS_FILE_NAME), "{err}");
    }

    #[test]
    fn previous_signing_keys() {
        const OLD: &str = "an older key of at least thirty-two bytes";
        let config = TokenServiceConfig::new(KEY, "s")
            .unwrap()
            .with_previous_signing_keys([OLD])
            .unwrap();
        assert_eq!(config.previous_signing_key_count(), 1);
        let printed = format!("{config:?}");
        assert!(!printed.contains(OLD) && !printed.contains(KEY), "{printed}");
        let err = |r: Result<TokenServiceConfig>| r.unwrap_err().to_string();
        let base = || TokenServiceConfig::new(KEY, "s").unwrap();
        assert!(err(base().with_previous_signing_keys([OLD, "short"]))
            .contains("previous signing key #2 is 5 bytes; at least 32"));
        assert!(err(base().with_previous_signing_keys([""])).contains("previous signing key #1 is empty"));
        assert!(err(base().with_previous_signing_keys([KEY])).contains("is the current signing key"));
        let env = from(&[
            (ENV_SIGNING_KEY, KEY),
            (ENV_SALT, "s"),
            (
                ENV_PREVIOUS_SIGNING_KEYS,
                &format!(" {OLD} , {}, ", "x".repeat(32)),
            ),
        ])
        .unwrap();
        assert_eq!(env.previous_signing_key_count(), 2);
        assert_eq!(env.previous_signing_keys[0].expose(), OLD);
        let bad = err(from(&[
            (ENV_SIGNING_KEY, KEY),
            (ENV_SALT, "s"),
            (ENV_PREVIOUS_SIGNING_KEYS, "tooshort"),
        ]));
        assert!(
            bad.contains(ENV_PREVIOUS_SIGNING_KEYS) && bad.contains("at least 32"),
            "{bad}"
        );
        assert!(!bad.contains("tooshort"), "{bad}");
        assert_eq!(
            from(&[
                (ENV_SIGNING_KEY, KEY),
                (ENV_SALT, "s"),
                (ENV_PREVIOUS_SIGNING_KEYS, "")
            ])
            .unwrap()
            .previous_signing_key_count(),
            0
        );
    }

    #[test]
    fn max_tokens_per_owner() {
        let base = || TokenServiceConfig::new(KEY, "s").unwrap();
        assert_eq!(base().max_tokens_per_owner(), Some(DEFAULT_MAX_TOKENS_PER_OWNER));
        assert_eq!(
            base()
                .with_max_tokens_per_owner(None)
                .unwrap()
                .max_tokens_per_owner(),
            None
        );
        assert!(base()
            .with_max_tokens_per_owner(Some(0))
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        let env = |v: &str| {
            from(&[
                (ENV_SIGNING_KEY, KEY),
                (ENV_SALT, "s"),
                (ENV_MAX_TOKENS_PER_OWNER, v),
            ])
        };
        assert_eq!(env(" 7 ").unwrap().max_tokens_per_owner(), Some(7));
        assert_eq!(env("NONE").unwrap().max_tokens_per_owner(), None);
        for bad in ["0", "-1", "lots"] {
            let e = env(bad).unwrap_err().to_string();
            assert!(e.contains(ENV_MAX_TOKENS_PER_OWNER), "{e}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let config = TokenServiceConfig::generate().unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains(config.expose_signing_key()));
        assert!(!printed.contains(config.expose_salt()));
        assert!(printed.contains("<redacted>"));
        assert_ne!(
            config.expose_signing_key(),
            TokenServiceConfig::generate().unwrap().expose_signing_key()
        );
    }
}
