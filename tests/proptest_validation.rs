//! Validation never panics and accepts only genuine tokens: arbitrary bytes,
//! JWT-shaped noise, correctly signed but arbitrary claims, and real tokens
//! mutated (flipped bits, cut or swapped segments, other headers) all end in
//! an error, and none of them changes the store. Only the untouched token
//! validates.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use datahub_access_tokens::{AccessTokenDuration, Error, TokenService, TokenStore, MAX_TOKEN_BYTES};
use proptest::prelude::*;
use ring::hmac;
use serde_json::{json, Value};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

/// A service holding a one-month and a never-expiring token, plus a
/// session token; returns them in that order.
async fn fixture() -> (Fixture, Vec<String>) {
    let f = Fixture::new();
    let month = f.create_own(ALICE, "month").await;
    let forever = f
        .create(MANAGER, BOB, "forever", AccessTokenDuration::NoExpiry)
        .await;
    let session = f.service.create_session_token(&user(BOB)).await.unwrap();
    let tokens = [month, forever, session]
        .iter()
        .map(|t| t.expose_access_token().to_owned())
        .collect();
    (f, tokens)
}

/// Validates `input`, which must fail, and checks the store is untouched.
async fn assert_refused(f: &Fixture, input: &str) -> Result<(), TestCaseError> {
    let before = f.snapshot().await;
    let result = f.service.validate_access_token(input).await;
    prop_assert!(result.is_err(), "accepted {:?}: {:?}", input, result);
    let metadata = f.service.get_access_token_metadata(&user(MANAGER), input).await;
    prop_assert!(metadata.is_err(), "metadata for {:?}: {:?}", input, metadata);
    prop_assert_eq!(f.snapshot().await, before, "a refused token changed the store");
    Ok(())
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// Headers other than DataHub's own.
const HEADERS: [&str; 12] = [
    r#"{"alg":"none"}"#,
    r#"{"alg":"HS512"}"#,
    r#"{"alg":"hs256"}"#,
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"typ":"JWT","alg":"HS256"}"#,
    r#"{"alg":"HS256","alg":"none"}"#,
    r#"{"alg":null}"#,
    r#"{}"#,
    r#"[]"#,
    r#"null"#,
    r#"{"alg":"HS256"} "#,
    r#"{"alg":"RS256","kid":"x"}"#,
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    Truncate { at: usize },
    RemoveRange { from: usize, len: usize },
    Insert { at: usize, byte: u8 },
    DropSegment(usize),
    SwapSegments(usize, usize),
    DuplicateSegment(usize),
    OtherHeader(usize),
    OtherTokensPart { part: usize, other: usize },
    Suffix(&'static str),
    Uppercase,
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), 1usize..8).prop_map(|(from, len)| Mutation::RemoveRange { from, len }),
        1 => (any::<usize>(), prop_oneof![Just(b'.'), Just(b'='), Just(b' '), Just(b'A'), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => (0usize..3).prop_map(Mutation::DropSegment),
        1 => (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
        1 => (0usize..3).prop_map(Mutation::DuplicateSegment),
        2 => (0..HEADERS.len()).prop_map(Mutation::OtherHeader),
        2 => (0usize..3, 0usize..3).prop_map(|(part, other)| Mutation::OtherTokensPart { part, other }),
        1 => prop_oneof![Just("="), Just("."), Just(".x"), Just("\n"), Just(" ")].prop_map(Mutation::Suffix),
        1 => Just(Mutation::Uppercase),
    ]
}

fn apply(token: &str, others: &[String], mutation: &Mutation) -> String {
    let bytes = token.as_bytes();
    let parts: Vec<&str> = token.split('.').collect();
    let join = |parts: &[&str]| parts.join(".");
    match *mutation {
        Mutation::FlipBit { at, bit } => {
            let mut bytes = bytes.to_vec();
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // Cut bytes, not chars: an earlier mutation may have made the text
        // non-ASCII (a flipped bit reads back as U+FFFD, three bytes).
        Mutation::Truncate { at } => String::from_utf8_lossy(&bytes[..at % bytes.len()]).into_owned(),
        Mutation::RemoveRange { from, len } => {
            let from = from % bytes.len();
            let to = (from + len).min(bytes.len());
            String::from_utf8_lossy(&[&bytes[..from], &bytes[to..]].concat()).into_owned()
        }
        Mutation::Insert { at, byte } => {
            let mut bytes = bytes.to_vec();
            bytes.insert(at % (bytes.len() + 1), byte);
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // Earlier mutations may have changed the number of segments.
        Mutation::DropSegment(i) => {
            let mut parts = parts.clone();
            parts.remove(i % parts.len());
            join(&parts)
        }
        Mutation::SwapSegments(a, b) => {
            let mut parts = parts.clone();
            let n = parts.len();
            parts.swap(a % n, b % n);
            join(&parts)
        }
        Mutation::DuplicateSegment(i) => {
            let mut parts = parts.clone();
            let i = i % parts.len();
            parts.insert(i, parts[i]);
            join(&parts)
        }
        Mutation::OtherHeader(h) => {
            let header = b64(HEADERS[h]);
            let mut parts = parts.clone();
            parts[0] = &header;
            join(&parts)
        }
        Mutation::OtherTokensPart { part, other } => {
            let other = &others[other % others.len()];
            let other_parts: Vec<&str> = other.split('.').collect();
            let mut parts = parts.clone();
            let part = part % parts.len();
            parts[part] = other_parts[part];
            join(&parts)
        }
        Mutation::Suffix(s) => format!("{token}{s}"),
        Mutation::Uppercase => token.to_ascii_uppercase(),
    }
}

/// Signs `payload` with the fixture's key under DataHub's header: a token
/// the service must treat as genuine, whatever its claims say.
fn sign(payload: &str) -> String {
    let input = format!("{}.{}", b64(r#"{"alg":"HS256"}"#), b64(payload));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SIGNING_KEY.as_bytes());
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(null)),
        Just(json!("2")),
        Just(json!("1")),
        Just(json!("PERSONAL")),
        Just(json!("SESSION")),
        Just(json!("USER")),
        Just(json!("alice")),
        Just(json!("")),
        Just(json!("a\nb")),
        Just(json!(2)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        Just(json!(-1e300)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(4_102_444_800i64)),
        Just(json!([1, "x"])),
        Just(json!({"nested": true})),
        "\\PC{0,12}".prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
    ]
}

const CLAIMS: [&str; 9] = [
    "version",
    "type",
    "actorType",
    "actorId",
    "sub",
    "jti",
    "iss",
    "exp",
    "extra",
];

/// A complete claim set (session or personal) with a few claims replaced
/// or removed.
fn perturbed_claims() -> impl Strategy<Value = String> {
    let change = (0..CLAIMS.len(), proptest::option::of(json_value()));
    (any::<bool>(), proptest::collection::vec(change, 0..3)).prop_map(|(session, changes)| {
        let mut claims = json!({
            "version": if session { "1" } else { "2" },
            "type": if session { "SESSION" } else { "PERSONAL" },
            "actorType": "USER",
            "actorId": "alice",
            "sub": "alice",
            "jti": "0b1c6b6e-5d3c-4c56-8a5d-0d6c0b0e8e59",
            "iss": "datahub-metadata-service",
            "exp": T0 / 1000 + 3600,
        });
        let object = claims.as_object_mut().unwrap();
        for (name, value) in changes {
            match value {
                Some(value) => object.insert(CLAIMS[name].to_owned(), value),
                None => object.remove(CLAIMS[name]),
            };
        }
        claims.to_string()
    })
}

fn claims_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => perturbed_claims(),
        3 => proptest::collection::vec((0..CLAIMS.len(), json_value()), 0..10).prop_map(|pairs| {
            let mut object = serde_json::Map::new();
            for (name, value) in pairs {
                object.insert(CLAIMS[name].to_owned(), value);
            }
            Value::Object(object).to_string()
        }),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        runtime().block_on(async {
            let (f, _) = fixture().await;
            assert_refused(&f, &String::from_utf8_lossy(&bytes)).await
        })?;
    }

    #[test]
    fn jwt_shaped_noise_is_refused(
        token in "[A-Za-z0-9_=-]{0,40}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}",
        datahub_header in any::<bool>(),
    ) {
        runtime().block_on(async {
            let (f, _) = fixture().await;
            let token = if datahub_header {
                // Get past the header check to the signature.
                format!("{}.{}", b64(r#"{"alg":"HS256"}"#), token.split_once('.').unwrap().1)
            } else {
                token
            };
            assert_refused(&f, &token).await
        })?;
    }

    #[test]
    fn mutated_tokens_are_refused(
        which in 0usize..3,
        mutations in proptest::collection::vec(mutation_strategy(), 1..3),
    ) {
        runtime().block_on(async {
            let (f, tokens) = fixture().await;
            let original = &tokens[which];
            let mut mutated = original.clone();
            for mutation in &mutations {
                if mutated.is_empty() {
                    break;
                }
                mutated = apply(&mutated, &tokens, mutation);
            }
            if tokens.contains(&mutated) {
                // E.g. a bit flipped twice, or every part taken from another
                // token: a genuine token after all.
                prop_assert!(f.service.validate_access_token(&mutated).await.is_ok());
                return Ok(());
            }
            assert_refused(&f, &mutated).await?;
            // The genuine tokens still work.
            for token in &tokens {
                prop_assert!(f.service.validate_access_token(token).await.is_ok());
            }
            Ok(())
        })?;
    }

    #[test]
    fn mutated_expired_tokens_do_not_delete_the_record(
        mutation in mutation_strategy(),
    ) {
        runtime().block_on(async {
            let (f, tokens) = fixture().await;
            let hour = f.create(ALICE, ALICE, "hour", AccessTokenDuration::OneHour).await;
            let hour_token = hour.expose_access_token();
            f.clock.advance(2 * HOUR_MS);
            let mutated = apply(hour_token, &tokens, &mutation);
            prop_assume!(mutated != hour_token);
            let result = f.service.validate_access_token(&mutated).await;
            prop_assert!(result.is_err());
            prop_assert!(f.store.contains(&id_of(&hour)).await.unwrap(), "a forged token deleted a record");
            // Only the genuine token deletes it.
            let genuine = f.service.validate_access_token(hour_token).await;
            prop_assert!(matches!(genuine, Err(Error::Expired)));
            prop_assert!(!f.store.contains(&id_of(&hour)).await.unwrap());
            Ok(())
        })?;
    }

    #[test]
    fn signed_arbitrary_claims_never_panic(payload in claims_strategy()) {
        runtime().block_on(async {
            let (f, _) = fixture().await;
            let before = f.snapshot().await;
            let token = sign(&payload);
            let claims: Option<serde_json::Map<String, Value>> = serde_json::from_str(&payload).ok();
            match f.service.validate_access_token(&token).await {
                Ok(validated) => {
                    // Only a complete, unexpired, unstored-by-design session
                    // (version 1) token can pass: it is not in the store.
                    let claims = claims.expect("accepted claims are a JSON object");
                    prop_assert_eq!(&claims["version"], &json!("1"));
                    prop_assert_eq!(&claims["actorType"], &json!("USER"));
                    prop_assert_eq!(&claims["actorId"], &json!(validated.claims.actor_id()));
                    prop_assert_eq!(validated.actor.id(), validated.claims.actor_id());
                    prop_assert_eq!(validated.token_id, None);
                }
                Err(Error::InvalidToken(_) | Error::Expired | Error::Revoked) => {}
                Err(other) => prop_assert!(false, "unexpected error {:?}", other),
            }
            prop_assert_eq!(f.snapshot().await, before);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn untouched_tokens_validate_and_oversized_input_is_refused_unread() {
    let (f, tokens) = fixture().await;
    for token in &tokens {
        f.service.validate_access_token(token).await.unwrap();
    }
    let huge = format!("{}.{}.x", b64(r#"{"alg":"HS256"}"#), "A".repeat(MAX_TOKEN_BYTES));
    let err = f.service.validate_access_token(&huge).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
    // Every header in the mutation list is refused on a real token.
    for header in HEADERS {
        let parts: Vec<&str> = tokens[0].split('.').collect();
        let token = format!("{}.{}.{}", b64(header), parts[1], parts[2]);
        let err = f.service.validate_access_token(&token).await.unwrap_err();
        assert!(matches!(err, Error::InvalidToken(_)), "{header}: {err:?}");
    }
}

/// A flipped high bit turns a byte into U+FFFD (three bytes): the mutations
/// after it cut bytes, not chars, wherever they land (CI once found a
/// truncation inside one).
#[tokio::test]
async fn mutations_after_a_non_ascii_flip_still_apply_and_are_refused() {
    let (f, tokens) = fixture().await;
    let flipped = apply(&tokens[0], &tokens, &Mutation::FlipBit { at: 91, bit: 7 });
    assert_eq!(flipped.find('\u{FFFD}'), Some(91), "{flipped}");
    for mutation in [
        Mutation::Truncate { at: 92 },
        Mutation::RemoveRange { from: 92, len: 3 },
    ] {
        let mutated = apply(&flipped, &tokens, &mutation);
        assert!(
            mutated.starts_with(&flipped[..91]) && mutated != flipped,
            "{mutated}"
        );
        assert_refused(&f, &mutated).await.unwrap();
    }
}
