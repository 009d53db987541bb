//! The token format: DataHub's HS256 JWT, and token ids.
//!
//! A token is `b64url(header) . b64url(claims) . b64url(hmac_sha256(key, first two parts))`
//! with the header `{"alg":"HS256"}`; its id is `b64(sha256(token || salt))`.

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::Arc;

// SIMD base64: decoding a token's claims and encoding a new token took
// three to five times longer with the `base64` crate (measured).
use base64_simd::{Out, STANDARD, URL_SAFE_NO_PAD};
use ring::{digest, hmac};
use serde::{Deserialize, Deserializer, Serialize};
use subtle::ConstantTimeEq;

use crate::config::TokenServiceConfig;
use crate::error::{Error, Result};
use crate::model::AccessTokenType;
use crate::urn::Urn;

mod claims;

/// Longest token accepted for validation; longer input is refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// `version` claim of stateless (session) tokens.
pub const VERSION_STATELESS: &str = "1";
/// `version` claim of stateful (stored, revocable) tokens.
pub const VERSION_STATEFUL: &str = "2";
/// The only `actorType` DataHub issues.
pub(crate) const ACTOR_TYPE_USER: &str = "USER";

const HEADER_JSON: &str = r#"{"alg":"HS256"}"#;
/// Length of an HS256 signature (32 bytes) in unpadded base64url.
const SIGNATURE_B64_LEN: usize = 43;

/// The claims of a DataHub token, read with the accessors below.
///
/// The string claims share one allocation: verifying a token allocates once
/// for them, and a clone (the memo of verified tokens hands one out per
/// validation) copies no text. Serializes as the claims JSON of a token.
///
/// ```
/// use datahub_access_tokens::{AccessTokenClaims, AccessTokenType};
///
/// let claims = AccessTokenClaims::new("2", AccessTokenType::Personal, "datahub")
///     .with_sub("datahub")
///     .with_exp(1_700_000_000);
/// assert_eq!(claims.actor_type(), "USER");
/// assert_eq!(claims.sub(), Some("datahub"));
/// assert_eq!(claims.jti(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    /// The string claims one after another, in the order of the indexes below.
    strings: Arc<str>,
    /// Where each string claim ends in `strings`.
    ends: [usize; STRING_CLAIMS],
    /// Bit `i` set: string claim `i` is present (the first three always are).
    present: u8,
    token_type: AccessTokenType,
    exp: Option<i64>,
}

// Indexes of the string claims.
const VERSION: usize = 0;
const ACTOR_TYPE: usize = 1;
const ACTOR_ID: usize = 2;
const SUB: usize = 3;
const JTI: usize = 4;
const ISS: usize = 5;
const STRING_CLAIMS: usize = 6;

impl AccessTokenClaims {
    /// Claims of the given version and type for the user `actor_id`, with
    /// `actorType` `USER` and no optional claims (add them with the `with_`
    /// methods).
    pub fn new(version: &str, token_type: AccessTokenType, actor_id: &str) -> Self {
        let strings = [
            Some(version),
            Some(ACTOR_TYPE_USER),
            Some(actor_id),
            None,
            None,
            None,
        ];
        Self::from_parts(strings, token_type, None)
    }

    /// These claims with another `actorType` (DataHub only issues `USER`).
    pub fn with_actor_type(self, actor_type: &str) -> Self {
        self.with_string(ACTOR_TYPE, actor_type)
    }

    /// These claims with the subject `sub`.
    pub fn with_sub(self, sub: &str) -> Self {
        self.with_string(SUB, sub)
    }

    /// These claims with the token id `jti`.
    pub fn with_jti(self, jti: &str) -> Self {
        self.with_string(JTI, jti)
    }

    /// These claims with the issuer `iss`.
    pub fn with_iss(self, iss: &str) -> Self {
        self.with_string(ISS, iss)
    }

    /// These claims expiring at `exp`, in seconds since the epoch.
    pub fn with_exp(self, exp: i64) -> Self {
        AccessTokenClaims {
            exp: Some(exp),
            ..self
        }
    }

    /// `"2"` for stateful tokens, `"1"` for stateless session tokens.
    pub fn version(&self) -> &str {
        self.string(VERSION).unwrap_or_default()
    }

    /// The token type.
    pub fn token_type(&self) -> AccessTokenType {
        self.token_type
    }

    /// `USER` in every token that validates.
    pub fn actor_type(&self) -> &str {
        self.string(ACTOR_TYPE).unwrap_or_default()
    }

    /// The id part of the actor's urn (`datahub` for `urn:li:corpuser:datahub`).
    pub fn actor_id(&self) -> &str {
        self.string(ACTOR_ID).unwrap_or_default()
    }

    /// Subject; DataHub sets it to the actor id.
    pub fn sub(&self) -> Option<&str> {
        self.string(SUB)
    }

    /// A random UUID in DataHub's tokens.
    pub fn jti(&self) -> Option<&str> {
        self.string(JTI)
    }

    /// The issuer.
    pub fn iss(&self) -> Option<&str> {
        self.string(ISS)
    }

    /// Expiry in seconds since the epoch; `None`: never expires.
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }

    /// Whether the token is stored and revocable (version 2).
    pub fn is_stateful(&self) -> bool {
        self.version() == VERSION_STATEFUL
    }

    /// Whether `exp` has passed at `now_ms`: a token is good up to and
    /// including the millisecond `exp * 1000`, as in DataHub's JWT library.
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.exp.is_some_and(|exp| now_ms > exp.saturating_mul(1000))
    }

    /// The urn of the actor: `urn:li:corpuser:<actorId>`.
    pub fn actor_urn(&self) -> Result<Urn> {
        let actor_id = self.actor_id();
        if crate::urn::is_padded(actor_id) {
            return Err(Error::invalid_token(format!(
                "actorId {actor_id:?} has white space at its start or end"
            )));
        }
        Urn::corp_user(actor_id)
            .map_err(|_| Error::invalid_token(format!("actorId {actor_id:?} is not a valid user id")))
    }

    /// The claims with the string claims `strings` (the first three required).
    fn from_parts(
        strings: [Option<&str>; STRING_CLAIMS],
        token_type: AccessTokenType,
        exp: Option<i64>,
    ) -> Self {
        let mut ends = [0; STRING_CLAIMS];
        let mut present = 0;
        let mut end = 0;
        for (i, string) in strings.iter().enumerate() {
            if let Some(string) = string {
                present |= 1 << i;
                end += string.len();
            }
            ends[i] = end;
        }
        // Joined on the stack when short, so the shared text is the only allocation.
        let mut buf = [0u8; 256];
        let joined = match buf.get_mut(..end) {
            Some(out) => {
                for (string, at) in strings.iter().zip(ends) {
                    if let Some(string) = string {
                        out[at - string.len()..at].copy_from_slice(string.as_bytes());
                    }
                }
                // Whole `str`s joined: always UTF-8.
                std::str::from_utf8(out).ok().map(Arc::from)
            }
            None => None,
        };
        AccessTokenClaims {
            strings: joined.unwrap_or_else(|| strings.iter().flatten().copied().collect::<String>().into()),
            ends,
            present,
            token_type,
            exp,
        }
    }

    fn string(&self, i: usize) -> Option<&str> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (self.present & (1 << i) != 0).then(|| self.strings.get(start..self.ends[i]))?
    }

    fn with_string(self, i: usize, value: &str) -> Self {
        let mut strings = std::array::from_fn(|i| self.string(i));
        strings[i] = Some(value);
        Self::from_parts(strings, self.token_type, self.exp)
    }

    /// The claims borrowed, as written into a token.
    fn view(&self) -> ClaimsView<'_> {
        ClaimsView {
            version: self.version(),
            token_type: self.token_type,
            actor_type: self.actor_type(),
            actor_id: self.actor_id(),
            sub: self.sub(),
            jti: self.jti(),
            iss: self.iss(),
            exp: self.exp,
        }
    }
}

impl fmt::Debug for AccessTokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let view = self.view();
        f.debug_struct("AccessTokenClaims")
            .field("version", &view.version)
            .field("token_type", &view.token_type)
            .field("actor_type", &view.actor_type)
            .field("actor_id", &view.actor_id)
            .field("sub", &view.sub)
            .field("jti", &view.jti)
            .field("iss", &view.iss)
            .field("exp", &view.exp)
            .finish()
    }
}

impl Serialize for AccessTokenClaims {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.view().serialize(serializer)
    }
}

// RFC 7519 NumericDate may carry a fraction; DataHub writes whole seconds.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Number>::deserialize(d)?;
    Ok(value.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f.floor() as i64))))
}

/// Signs, verifies and identifies tokens with one key and salt.
///
/// Previous signing keys (see
/// [`TokenServiceConfig::with_previous_signing_keys`]) only verify: tokens
/// signed by the current key are checked exactly as without them, the others
/// are tried against each previous key in turn. `Debug` prints no key or salt.
#[derive(Clone)]
pub struct TokenCodec {
    previous_keys: Vec<hmac::Key>,
    salt: Vec<u8>,
    issuer: String,
    header_b64: String,
    /// SHA-256 for token ids.
    id_hash: AfterPrefix<digest::Context>,
    /// HMAC-SHA256 with the current signing key (previous keys only verify).
    mac: AfterPrefix<hmac::Context>,
}

const SHA256_BLOCK_BYTES: usize = 64;

/// A hash's state after the first SHA-256 block that the personal tokens
/// this codec mints all start with (their header and the start of their
/// claims, the same bytes in every one), beside its fresh state. Hashing a
/// token, or its signing input, that starts with that block resumes from
/// there: one SHA-256 block less (measured in benches/README.md,
/// "Validate"). Anything else is hashed from the start, to the same result.
///
/// Kept for the token id (no secret: the salt comes last) and for the
/// current key's HMAC (as secret as the key; `TokenCodec`'s `Debug` prints
/// neither).
#[derive(Clone)]
struct AfterPrefix<State> {
    prefix: [u8; SHA256_BLOCK_BYTES],
    fresh: State,
    resumed: State,
}

impl<State: Clone> AfterPrefix<State> {
    /// `update` feeds bytes to a `State` (ring's digest and HMAC contexts
    /// share no trait).
    fn new(template: &str, fresh: State, update: impl Fn(&mut State, &[u8])) -> Self {
        let mut prefix = [0; SHA256_BLOCK_BYTES];
        // A template shorter than a block would match no token: then
        // everything is hashed from the start.
        let len = template.len().min(prefix.len());
        prefix[..len].copy_from_slice(&template.as_bytes()[..len]);
        let mut resumed = fresh.clone();
        update(&mut resumed, &prefix);
        AfterPrefix {
            prefix,
            fresh,
            resumed,
        }
    }

    /// A state that has hashed the start of `data`, and the rest of `data`.
    fn start<'d>(&self, data: &'d [u8]) -> (State, &'d [u8]) {
        match data.strip_prefix(&self.prefix[..]) {
            Some(rest) => (self.resumed.clone(), rest),
            None => (self.fresh.clone(), data),
        }
    }
}

impl fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCodec")
            .field("key", &"<redacted>")
            .field("previous_keys", &self.previous_keys.len())
            .field("salt", &"<redacted>")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenCodec {
    /// A codec with the configuration's key, salt and issuer.
    pub fn new(config: &TokenServiceConfig) -> Self {
        let header_b64 = URL_SAFE_NO_PAD.encode_to_string(HEADER_JSON);
        // How every personal token starts: the header, then the claims'
        // version and type (a test checks that minted tokens share it).
        let mut template = header_b64.clone();
        template.push('.');
        URL_SAFE_NO_PAD.encode_append(
            claims_json(&ClaimsView {
                version: VERSION_STATEFUL,
                token_type: AccessTokenType::Personal,
                actor_type: ACTOR_TYPE_USER,
                actor_id: "",
                sub: None,
                jti: None,
                iss: None,
                exp: None,
            }),
            &mut template,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, config.signing_key.expose().as_bytes());
        TokenCodec {
            id_hash: AfterPrefix::new(
                &template,
                digest::Context::new(&digest::SHA256),
                digest::Context::update,
            ),
            mac: AfterPrefix::new(&template, hmac::Context::with_key(&key), hmac::Context::update),
            previous_keys: config
                .previous_signing_keys
                .iter()
                .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.expose().as_bytes()))
                .collect(),
            salt: config.salt.expose().as_bytes().to_vec(),
            issuer: config.issuer.clone(),
            header_b64,
        }
    }

    /// The issuer written into new tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Encodes and signs `claims` as a compact JWT.
    pub fn sign(&self, claims: &AccessTokenClaims) -> String {
        self.sign_json(&claims_json(&claims.view()))
    }

    /// Mints a new token as DataHub does: for `actor`, with a random `jti`,
    /// this codec's issuer, and `exp` the expiry rounded down to whole
    /// seconds. Builds no [`AccessTokenClaims`]: its text would be one more
    /// allocation and copy per token created.
    pub(crate) fn sign_new(
        &self,
        version: &str,
        token_type: AccessTokenType,
        actor: &Urn,
        expires_at_ms: Option<i64>,
    ) -> String {
        // uuid's `fast-rng` draws from a thread-local CSPRNG: one `getrandom`
        // call per token cost more than signing.
        let mut jti = uuid::Uuid::encode_buffer();
        let jti = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut jti);
        self.sign_json(&claims_json(&ClaimsView {
            version,
            token_type,
            actor_type: ACTOR_TYPE_USER,
            actor_id: actor.id(),
            sub: Some(actor.id()),
            jti: Some(jti),
            iss: Some(&self.issuer),
            exp: expires_at_ms.map(|ms| ms.div_euclid(1000)),
        }))
    }

    fn sign_json(&self, payload: &[u8]) -> String {
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 48);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_append(payload, &mut token);
        let tag = self.hmac(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_append(tag.as_ref(), &mut token);
        token
    }

    /// The token's id: standard base64 of `sha256(token || salt)`.
    pub fn token_id(&self, token: &str) -> String {
        STANDARD.encode_to_string(self.id_digest(token.as_bytes()))
    }

    fn id_digest(&self, token: &[u8]) -> digest::Digest {
        let (mut sha256, rest) = self.id_hash.start(token);
        sha256.update(rest);
        sha256.update(&self.salt);
        sha256.finish()
    }

    /// HMAC-SHA256 of `input` with the current key.
    fn hmac(&self, input: &[u8]) -> hmac::Tag {
        let (mut mac, rest) = self.mac.start(input);
        mac.update(rest);
        mac.sign()
    }

    /// Checks everything about `token` except time: size, shape, algorithm,
    /// signature (in constant time), then the required claims and version.
    /// Call [`AccessTokenClaims::is_expired_at`] for expiry.
    pub fn verify(&self, token: &str) -> Result<AccessTokenClaims> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::invalid_token(format!(
                "token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        // The header and signature hold no dot, so the dots that end the one
        // and start the other bound the payload without scanning it (a
        // hot-path cost). Where they are usually is checked first: after our
        // header, and before the 43 characters of an HS256 signature. A dot
        // anywhere else (a fourth part) cannot decode as base64url, so such a
        // token always fails below and is reported as misshapen.
        let bytes = token.as_bytes();
        let header_end = self.header_b64.len();
        let first = match bytes.get(header_end) {
            Some(b'.') if token.starts_with(&self.header_b64) => Some(header_end),
            _ => bytes.iter().position(|&b| b == b'.'),
        };
        let last = match bytes.len().checked_sub(SIGNATURE_B64_LEN + 1) {
            Some(at) if bytes[at] == b'.' => Some(at),
            _ => bytes.iter().rposition(|&b| b == b'.'),
        };
        let (Some(first), Some(last)) = (first, last) else {
            return Err(not_three_parts());
        };
        if first >= last {
            return Err(not_three_parts());
        }
        let (payload, signature) = (&token[first + 1..last], &token[last + 1..]);
        self.verify_parts(&token[..last], (&token[..first], payload, signature))
            .map_err(|e| {
                if payload.contains('.') || signature.contains('.') {
                    not_three_parts()
                } else {
                    e
                }
            })
    }

    fn verify_parts(
        &self,
        signing_input: &str,
        (header, payload, signature): (&str, &str, &str),
    ) -> Result<AccessTokenClaims> {
        if header != self.header_b64 {
            check_header(header)?;
        }
        // 43 characters are exactly 32 bytes (checked first: a longer
        // signature would not fit the buffer).
        let mut tag = [0u8; 32];
        if signature.len() != SIGNATURE_B64_LEN
            || URL_SAFE_NO_PAD
                .decode(signature.as_bytes(), Out::from_slice(&mut tag))
                .is_err()
        {
            return Err(Error::invalid_token("malformed signature"));
        }
        // Current key first: the common case pays for one HMAC, as before.
        let input = signing_input.as_bytes();
        if !tags_equal(self.hmac(input).as_ref(), &tag)
            && !self
                .previous_keys
                .iter()
                .any(|key| hmac::verify(key, input, &tag).is_ok())
        {
            return Err(Error::invalid_token("invalid signature"));
        }
        // Typical claims are a few hundred bytes: decode them on the stack,
        // into a buffer left uninitialized (the decoder writes before anyone reads).
        let mut buf = [MaybeUninit::<u8>::uninit(); 512];
        let heap;
        let claims = if URL_SAFE_NO_PAD.estimated_decoded_length(payload.len()) <= buf.len() {
            URL_SAFE_NO_PAD
                .decode(payload.as_bytes(), Out::from_uninit_slice(&mut buf))
                .ok()
                .map(|claims| &*claims)
        } else {
            heap = URL_SAFE_NO_PAD.decode_to_vec(payload).ok();
            heap.as_deref()
        };
        let claims = claims.ok_or_else(|| Error::invalid_token("claims are not base64url"))?;
        parse_claims(claims)
    }
}

/// Whether two 32-byte HMAC-SHA256 tags are equal, in constant time (as
/// `hmac::verify` compares): `subtle` over four words, not 32 bytes (byte by
/// byte, the comparison cost what resuming the HMAC saves).
fn tags_equal(computed: &[u8], presented: &[u8; 32]) -> bool {
    let words = |tag: &[u8]| -> [u64; 4] {
        std::array::from_fn(|i| u64::from_le_bytes(tag[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
    };
    computed.len() == presented.len() && bool::from(words(computed)[..].ct_eq(&words(presented)[..]))
}

/// [`AccessTokenClaims`] borrowed, as written into a token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimsView<'a> {
    version: &'a str,
    #[serde(rename = "type")]
    token_type: AccessTokenType,
    actor_type: &'a str,
    actor_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// The claims as JSON, byte for byte what `serde_json` writes for
/// [`AccessTokenClaims`] (a test checks), by hand because serializing was
/// most of the service's own share of creating a token. Written out member
/// by member, so each key (with its quotes, colon and the value's opening
/// quote) is a constant copy made without a call: a loop over the keys paid
/// a `memcpy` call for each piece, most of this function's time.
fn claims_json(claims: &ClaimsView<'_>) -> Vec<u8> {
    let mut json = Vec::with_capacity(256);
    push_string_member(&mut json, b"{\"version\":\"", claims.version);
    push_string_member(&mut json, b",\"type\":\"", claims.token_type.as_str());
    push_string_member(&mut json, b",\"actorType\":\"", claims.actor_type);
    push_string_member(&mut json, b",\"actorId\":\"", claims.actor_id);
    if let Some(sub) = claims.sub {
        push_string_member(&mut json, b",\"sub\":\"", sub);
    }
    if let Some(jti) = claims.jti {
        push_string_member(&mut json, b",\"jti\":\"", jti);
    }
    if let Some(iss) = claims.iss {
        push_string_member(&mut json, b",\"iss\":\"", iss);
    }
    if let Some(exp) = claims.exp {
        json.extend_from_slice(br#","exp":"#);
        serde_json::to_writer(&mut json, &exp).expect("an integer serializes");
    }
    json.push(b'}');
    json
}

/// `prefix` (up to and including the string's opening quote), then `value`
/// as the rest of a JSON string. Only strings that need escapes go through
/// `serde_json`, which escapes exactly `"`, `\` and control characters.
#[inline(always)]
fn push_string_member(json: &mut Vec<u8>, prefix: &[u8], value: &str) {
    json.extend_from_slice(prefix);
    // Without short-circuiting, the check compiles to a vector loop.
    let plain = value
        .bytes()
        .fold(true, |plain, b| plain & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        json.extend_from_slice(value.as_bytes());
        json.push(b'"');
    } else {
        let escaped = serde_json::to_string(value).expect("a string serializes");
        // Its opening quote is the prefix's last byte.
        json.extend_from_slice(&escaped.as_bytes()[1..]);
    }
}

fn not_three_parts() -> Error {
    Error::invalid_token("not a JWT: expected three dot-separated parts")
}

fn check_header(header: &str) -> Result<()> {
    /// What DataHub's JWT library (jjwt) checks of a header, so that a
    /// token it refuses is refused here too.
    #[derive(Deserialize)]
    struct Header {
        alg: Option<String>,
        // Typed: jjwt refuses a header whose `typ` or `kid` is no string.
        #[allow(dead_code)]
        typ: Option<String>,
        #[allow(dead_code)]
        kid: Option<String>,
        // Extensions a token may not be read without (RFC 7515 4.1.11);
        // this codec knows none.
        crit: Option<serde_json::Value>,
        // A compressed payload, or one that is not JWT claims.
        zip: Option<serde_json::Value>,
        cty: Option<serde_json::Value>,
    }
    let bytes = URL_SAFE_NO_PAD
        .decode_to_vec(header)
        .map_err(|_| Error::invalid_token("header is not base64url"))?;
    // A JSON object only: serde would also read the struct from an array.
    if !claims::opens_object(&bytes) {
        return Err(Error::invalid_token("header is not a JSON object"));
    }
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid_token(format!("malformed header: {e}")))?;
    for (name, value, why) in [
        (
            "crit",
            &header.crit,
            "critical extensions, which this codec does not support",
        ),
        (
            "zip",
            &header.zip,
            "a compressed payload, which this codec does not support",
        ),
        (
            "cty",
            &header.cty,
            "a content type: the payload is not plain JWT claims",
        ),
    ] {
        if value.is_some() {
            return Err(Error::invalid_token(format!("header has {name}: {why}")));
        }
    }
    match header.alg.as_deref() {
        Some("HS256") => Ok(()),
        Some(alg) => Err(Error::invalid_token(format!(
            "algorithm {alg:?} is not accepted; only HS256 is"
        ))),
        None => Err(Error::invalid_token("header has no alg")),
    }
}

fn parse_claims(payload: &[u8]) -> Result<AccessTokenClaims> {
    let raw = claims::read(payload).map_err(|e| Error::invalid_token(format!("malformed claims: {e}")))?;
    let missing = |name: &str| Error::invalid_token(format!("missing claim {name}"));
    let token_type = match raw.token_type.as_deref().ok_or_else(|| missing("type"))? {
        "PERSONAL" => AccessTokenType::Personal,
        "SESSION" => AccessTokenType::Session,
        "SERVICE_ACCOUNT" => AccessTokenType::ServiceAccount,
        other => return Err(Error::invalid_token(format!("unknown token type {other:?}"))),
    };
    let actor_type = raw.actor_type.ok_or_else(|| missing("actorType"))?;
    if actor_type != ACTOR_TYPE_USER {
        return Err(Error::invalid_token(format!(
            "unsupported actorType {actor_type:?}"
        )));
    }
    // DataHub's JWT library turns `exp` into milliseconds unchecked: past
    // this it overflows there and the token reads as long expired.
    if raw.exp.is_some_and(|exp| exp.checked_mul(1000).is_none()) {
        return Err(Error::invalid_token("exp is out of range"));
    }
    // jjwt refuses a token before its `nbf`; DataHub never sets one, and
    // refusing them all is simpler than keeping the time.
    if raw.nbf {
        return Err(Error::invalid_token(
            "nbf (not before) is not supported: DataHub's tokens never carry it",
        ));
    }
    let actor_id = raw.actor_id.ok_or_else(|| missing("actorId"))?;
    if actor_id.is_empty() {
        return Err(Error::invalid_token("empty claim actorId"));
    }
    let version = raw.version.ok_or_else(|| missing("version"))?;
    if version != VERSION_STATEFUL && version != VERSION_STATELESS {
        return Err(Error::invalid_token(format!(
            "unsupported token version {version:?}"
        )));
    }
    let strings = [
        Some(&*version),
        Some(&*actor_type),
        Some(&*actor_id),
        raw.sub.as_deref(),
        raw.jti.as_deref(),
        raw.iss.as_deref(),
    ];
    Ok(AccessTokenClaims::from_parts(strings, token_type, raw.exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    // Tests encode with the `base64` crate: an implementation the codec does not use.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn codec() -> TokenCodec {
        TokenCodec::new(&TokenServiceConfig::insecure_datahub_defaults())
    }

    fn claims_with_jti(jti: &str, exp: Option<i64>) -> AccessTokenClaims {
        let claims = AccessTokenClaims::new("2", AccessTokenType::Personal, "datahub")
            .with_sub("datahub")
            .with_jti(jti)
            .with_iss("datahub-metadata-service");
        match exp {
            Some(exp) => claims.with_exp(exp),
            None => claims,
        }
    }

    fn claims(exp: Option<i64>) -> AccessTokenClaims {
        claims_with_jti("0b1c6b6e-5d3c-4c56-8a5d-0d6c0b0e8e59", exp)
    }

    fn forge(header: &str, payload: &str, key: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    #[test]
    fn round_trip_with_datahub_header() {
        let codec = codec();
        let token = codec.sign(&claims(Some(1_700_000_000)));
        assert!(
            token.starts_with("eyJhbGciOiJIUzI1NiJ9."),
            "header is exactly {{\"alg\":\"HS256\"}}"
        );
        assert_eq!(codec.verify(&token).unwrap(), claims(Some(1_700_000_000)));
        let id = codec.token_id(&token);
        assert_eq!(id.len(), 44);
        assert!(id.ends_with('='));
    }

    #[test]
    fn minted_personal_tokens_start_with_the_resumed_block() {
        let codec = codec();
        let datahub = Urn::corp_user("datahub").unwrap();
        for (actor, expires) in [(datahub, Some(1)), (Urn::corp_user("a").unwrap(), None)] {
            let token = codec.sign_new(VERSION_STATEFUL, AccessTokenType::Personal, &actor, expires);
            assert!(
                token.as_bytes().starts_with(&codec.id_hash.prefix)
                    && codec.mac.prefix == codec.id_hash.prefix,
                "{token}"
            );
        }
        // The header, then 43 characters of base64 of `{"version":"2","type":"PERSONAL",`.
        let expected = "eyJhbGciOiJIUzI1NiJ9.eyJ2ZXJzaW9uIjoiMiIsInR5cGUiOiJQRVJTT05BTCIs";
        assert_eq!(&codec.id_hash.prefix[..], &expected.as_bytes()[..64]);
    }

    #[test]
    fn tags_differing_anywhere_are_not_equal() {
        let tag: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        assert!(tags_equal(&tag, &tag));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut other = tag;
                other[byte] ^= 1 << bit;
                assert!(!tags_equal(&tag, &other), "byte {byte} bit {bit}");
            }
        }
        assert!(!tags_equal(&tag[..31], &tag), "a shorter tag");
    }

    proptest::proptest! {
        /// Resuming after the prefix gives ring's own id hash and HMAC,
        /// whether or not the bytes start with it, whatever they hold after.
        #[test]
        fn resumed_hashes_are_the_plain_ones(
            use_prefix in proptest::bool::ANY,
            cut in 0usize..=64,
            rest in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let codec = codec();
            let mut bytes = if use_prefix { codec.id_hash.prefix[..cut].to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&rest);
            let mut plain = digest::Context::new(&digest::SHA256);
            plain.update(&bytes);
            plain.update(&codec.salt);
            let (resumed, plain) = (codec.id_digest(&bytes), plain.finish());
            proptest::prop_assert_eq!(resumed.as_ref(), plain.as_ref());
            let config = TokenServiceConfig::insecure_datahub_defaults();
            let key = hmac::Key::new(hmac::HMAC_SHA256, config.signing_key.expose().as_bytes());
            let (resumed, plain) = (codec.hmac(&bytes), hmac::sign(&key, &bytes));
            proptest::prop_assert_eq!(resumed.as_ref(), plain.as_ref());
        }
    }

    proptest::proptest! {
        #[test]
        fn claims_json_is_what_serde_writes(
            version in ".{0,4}",
            token_type in proptest::sample::select(vec![
                AccessTokenType::Personal,
                AccessTokenType::Session,
                AccessTokenType::ServiceAccount,
            ]),
            actor_type in ".{0,8}",
            actor_id in "\\PC{0,20}|[\"\\\\\u{0}-\u{1f}\u{7f}é]{0,6}",
            sub in proptest::option::of(".{0,12}"),
            jti in proptest::option::of("[a-f0-9-]{36}"),
            // Long enough at times that the claims' text is joined on the heap.
            iss in proptest::option::of("\\PC{0,24}|\\PC{250,300}"),
            exp in proptest::option::of(proptest::num::i64::ANY),
        ) {
            let mut claims = AccessTokenClaims::new(&version, token_type, &actor_id).with_actor_type(&actor_type);
            if let Some(sub) = &sub {
                claims = claims.with_sub(sub);
            }
            if let Some(jti) = &jti {
                claims = claims.with_jti(jti);
            }
            if let Some(iss) = &iss {
                claims = claims.with_iss(iss);
            }
            if let Some(exp) = exp {
                claims = claims.with_exp(exp);
            }
            let read_back = (
                claims.version(), claims.token_type(), claims.actor_type(), claims.actor_id(),
                claims.sub(), claims.jti(), claims.iss(), claims.exp(),
            );
            proptest::prop_assert_eq!(
                read_back,
                (&*version, token_type, &*actor_type, &*actor_id, sub.as_deref(), jti.as_deref(), iss.as_deref(), exp)
            );
            let token = codec().sign(&claims);
            let payload = token.split('.').nth(1).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap(),
                serde_json::to_string(&claims).unwrap()
            );
        }
    }

    #[test]
    fn new_tokens_carry_datahub_claims_and_distinct_v4_jtis() {
        let codec = codec();
        let actor = Urn::corp_user("datahub").unwrap();
        let mut jtis = std::collections::HashSet::new();
        for _ in 0..1000 {
            let token = codec.sign_new("2", AccessTokenType::Personal, &actor, Some(1_700_000_000_999));
            let claims = codec.verify(&token).unwrap();
            let jti = claims.jti().unwrap().to_owned();
            let uuid = uuid::Uuid::parse_str(&jti).unwrap();
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(jti, uuid.hyphenated().to_string());
            assert_eq!(claims, claims_with_jti(&jti, Some(1_700_000_000)));
            jtis.insert(jti);
        }
        assert_eq!(jtis.len(), 1000);
    }

    #[test]
    fn expiry_is_inclusive_of_the_exp_second() {
        let c = claims(Some(100));
        assert!(!c.is_expired_at(100_000));
        assert!(c.is_expired_at(100_001));
        assert!(!claims(None).is_expired_at(i64::MAX));
    }

    #[test]
    fn accepts_typ_header_and_extra_claims() {
        let key = TokenServiceConfig::insecure_datahub_defaults();
        let token = forge(
            r#"{"typ":"JWT","alg":"HS256"}"#,
            r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"x","exp":1.5e9,"foo":[1]}"#,
            key.expose_signing_key().as_bytes(),
        );
        assert_eq!(codec().verify(&token).unwrap().exp, Some(1_500_000_000));
    }

    #[test]
    fn token_types_and_exp_forms_as_datahub_reads_them() {
        let key = TokenServiceConfig::insecure_datahub_defaults();
        let verify = |type_and_exp: &str| {
            let claims = format!(r#"{{"version":"2","actorType":"USER","actorId":"x",{type_and_exp}}}"#);
            codec().verify(&forge(
                r#"{"alg":"HS256"}"#,
                &claims,
                key.expose_signing_key().as_bytes(),
            ))
        };
        // DataHub reads `type` with TokenType.valueOf: its names exactly.
        for (claim, token_type) in [
            ("PERSONAL", AccessTokenType::Personal),
            ("SESSION", AccessTokenType::Session),
            ("SERVICE_ACCOUNT", AccessTokenType::ServiceAccount),
        ] {
            let claims = verify(&format!(r#""type":"{claim}""#)).unwrap();
            assert_eq!(claims.token_type(), token_type);
        }
        for claim in [r#""personal""#, r#""ADMIN""#, r#""""#] {
            let err = verify(&format!(r#""type":{claim}"#)).unwrap_err().to_string();
            assert!(err.contains("unknown token type"), "{claim}: {err}");
        }
        // A null exp is no exp (jjwt reads it so); a fraction is cut to the second.
        assert_eq!(verify(r#""type":"PERSONAL","exp":null"#).unwrap().exp(), None);
        assert_eq!(
            verify(r#""type":"PERSONAL","exp":1700000000.9"#).unwrap().exp(),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn rejects_what_it_must() {
        let key = TokenServiceConfig::insecure_datahub_defaults()
            .expose_signing_key()
            .as_bytes()
            .to_vec();
        let good = r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"x"}"#;
        let cases = [
            (forge(r#"{"alg":"none"}"#, good, &key), "\"none\" is not accepted"),
            (
                forge(r#"{"alg":"HS512"}"#, good, &key),
                "\"HS512\" is not accepted",
            ),
            (forge(r#"{}"#, good, &key), "no alg"),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    good,
                    b"another key of at least thirty-two bytes",
                ),
                "invalid signature",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"type":"PERSONAL","actorType":"USER","actorId":"x"}"#,
                    &key,
                ),
                "missing claim version",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"version":"2","actorType":"USER","actorId":"x"}"#,
                    &key,
                ),
                "missing claim type",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"version":"2","type":"PERSONAL","actorId":"x"}"#,
                    &key,
                ),
                "missing claim actorType",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"version":"2","type":"PERSONAL","actorType":"USER"}"#,
                    &key,
                ),
                "missing claim actorId",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"version":"3","type":"PERSONAL","actorType":"USER","actorId":"x"}"#,
                    &key,
                ),
                "unsupported token version",
            ),
            (forge(r#"{"alg":"HS256"}"#, r#"[1,2]"#, &key), "malformed claims"),
            // Arrays that serde would read as the structs: not JWT objects.
            (forge(r#"["HS256"]"#, good, &key), "header is not a JSON object"),
            (
                forge(r#"{"alg":256}"#, good, &key),
                "malformed header: invalid type: integer `256`, expected a string",
            ),
            (
                forge(r#"{"alg":"HS256","alg":"none"}"#, good, &key),
                "malformed header: duplicate field `alg`",
            ),
            (forge(r#"{"alg":"HS256""#, good, &key), "malformed header: EOF"),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"x","nbf":1}"#,
                    &key,
                ),
                "nbf (not before) is not supported",
            ),
            (
                forge(r#"{"alg":"HS256","crit":["exp"]}"#, good, &key),
                "header has crit",
            ),
            (
                forge(r#"{"alg":"HS256","zip":"DEF"}"#, good, &key),
                "header has zip",
            ),
            (
                forge(r#"{"alg":"HS256","cty":"JWT"}"#, good, &key),
                "header has cty",
            ),
            (
                forge(r#"{"alg":"HS256","kid":1}"#, good, &key),
                "malformed header: invalid type",
            ),
            (
                forge(r#"{"alg":"HS256","typ":5}"#, good, &key),
                "malformed header: invalid type",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"x","exp":9223372036854776}"#,
                    &key,
                ),
                "exp is out of range",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"x","exp":1e300}"#,
                    &key,
                ),
                "exp is out of range",
            ),
            (
                forge(
                    r#"{"alg":"HS256"}"#,
                    r#" ["2","PERSONAL","USER","x",null,null,null]"#,
                    &key,
                ),
                "claims are not a JSON object",
            ),
            ("a.b".to_string(), "three dot-separated parts"),
            ("a.b.c.d".to_string(), "three dot-separated parts"),
            (
                format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(HEADER_JSON)),
                "malformed signature",
            ),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "longer than"),
        ];
        // A fourth part wherever it is: in the signature (where the dot
        // that starts it is still 44 bytes from the end), just before it,
        // in the payload, or right after the header.
        let real = forge(r#"{"alg":"HS256"}"#, good, &key);
        let with_dot_at = |at: usize, replace: bool| {
            let mut token = real.clone();
            token.replace_range(at..at + usize::from(replace), ".");
            (token, "three dot-separated parts")
        };
        // The same signature bytes spelled another way (the last
        // character's two spare bits set): a token has one spelling only.
        let respelled = {
            const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut token = real.clone();
            let last = token.pop().unwrap();
            let value = ALPHABET.iter().position(|&c| char::from(c) == last).unwrap();
            assert_eq!(value & 3, 0, "{real} ends in a canonical character");
            token.push(char::from(ALPHABET[value | 1]));
            (token, "malformed signature")
        };
        let cases = cases.into_iter().chain([
            respelled,
            with_dot_at(real.len() - 10, true),
            with_dot_at(real.len() - 44, false),
            with_dot_at(real.len() / 2, true),
            with_dot_at(real.find('.').unwrap() + 1, false),
        ]);
        for (token, expected) in cases {
            let err = codec().verify(&token).unwrap_err().to_string();
            assert!(err.starts_with("Failed to validate DataHub token: "), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn an_actor_id_with_white_space_around_it_is_no_actor() {
        // DataHub's JWT library trims it: there it would be another user.
        for id in [" admin", "admin ", "\u{2003}admin", "  "] {
            let claims = AccessTokenClaims::new(VERSION_STATEFUL, AccessTokenType::Personal, id);
            let err = claims.actor_urn().unwrap_err().to_string();
            assert!(err.contains("white space at its start or end"), "{id:?}: {err}");
        }
        let inner = AccessTokenClaims::new(VERSION_STATEFUL, AccessTokenType::Personal, "jane doe");
        assert_eq!(inner.actor_urn().unwrap().as_str(), "urn:li:corpuser:jane doe");
    }

    #[test]
    fn previous_keys_verify_but_never_sign() {
        const OLD: &str = "the key this deployment used before, 32+ bytes";
        const OLDER: &str = "the key used before that one, also 32+ bytes";
        let old = TokenCodec::new(&TokenServiceConfig::new(OLD, "salt").unwrap());
        let older = TokenCodec::new(&TokenServiceConfig::new(OLDER, "salt").unwrap());
        let config = TokenServiceConfig::new(
            TokenServiceConfig::insecure_datahub_defaults().expose_signing_key(),
            "salt",
        )
        .unwrap();
        let rolled = TokenCodec::new(&config.clone().with_previous_signing_keys([OLD, OLDER]).unwrap());
        let (old_token, older_token) = (old.sign(&claims(None)), older.sign(&claims(None)));
        assert_eq!(rolled.verify(&old_token).unwrap(), claims(None));
        assert_eq!(rolled.verify(&older_token).unwrap(), claims(None));
        // Ids depend on the salt only: stored records survive the roll.
        assert_eq!(rolled.token_id(&old_token), old.token_id(&old_token));
        // New tokens are signed by the current key: a codec without the
        // previous keys accepts them, the old key does not.
        let new_token = rolled.sign(&claims(None));
        assert!(TokenCodec::new(&config).verify(&new_token).is_ok());
        assert!(old
            .verify(&new_token)
            .unwrap_err()
            .to_string()
            .contains("invalid signature"));
        // Dropping a key invalidates exactly the tokens it signed.
        let dropped = TokenCodec::new(&config.clone().with_previous_signing_keys([OLD]).unwrap());
        assert!(dropped.verify(&old_token).is_ok());
        assert!(dropped.verify(&new_token).is_ok());
        assert!(dropped
            .verify(&older_token)
            .unwrap_err()
            .to_string()
            .contains("invalid signature"));
        let printed = format!("{rolled:?}");
        assert!(
            !printed.contains("before") && !printed.contains("WnEdIeTG"),
            "{printed}"
        );
    }

    #[test]
    fn debug_hides_key_and_salt() {
        let printed = format!("{:?}", codec());
        assert!(
            !printed.contains("WnEdIeTG") && !printed.contains("ohDVbJBv"),
            "{printed}"
        );
    }
}
