//! Every invalid input gets an `InvalidInput` error whose message names the
//! problem, and nothing stored changes.

mod common;

use common::*;
use datahub_access_tokens::{
    AccessTokenDuration, AccessTokenType, CreateAccessTokenInput, Error, FacetFilterInput,
    ListAccessTokenInput, TokenService, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS,
};

/// A fixture already holding a few tokens, so "nothing changed" means something.
async fn populated() -> Fixture {
    let f = Fixture::new();
    f.create_own(ALICE, "alice's").await;
    f.create_own(BOB, "bob's").await;
    f.create(MANAGER, ALICE, "managed", AccessTokenDuration::NoExpiry)
        .await;
    f
}

/// Asserts `result` is `InvalidInput` mentioning every one of `expected`.
fn assert_invalid<T: std::fmt::Debug>(what: &str, result: Result<T, Error>, expected: &[&str]) {
    match result {
        Err(Error::InvalidInput(message)) => {
            for part in expected {
                assert!(
                    message.contains(part),
                    "{what}: expected {part:?} in the message {message:?}"
                );
            }
        }
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    }
}

fn create_input(actor: &str, name: &str) -> CreateAccessTokenInput {
    CreateAccessTokenInput::personal(actor, name, AccessTokenDuration::OneDay)
}

#[tokio::test]
async fn bad_create_inputs_are_named_and_change_nothing() {
    let f = populated().await;
    let before = f.snapshot().await;
    let too_long_name = "n".repeat(MAX_NAME_CHARS + 1);
    let too_long_description = "d".repeat(MAX_DESCRIPTION_CHARS + 1);
    let cases: Vec<(&str, CreateAccessTokenInput, Vec<&str>)> = vec![
        (
            "empty name",
            create_input(ALICE, ""),
            vec!["name must not be empty"],
        ),
        (
            "blank name",
            create_input(ALICE, " \t "),
            vec!["name must not be empty"],
        ),
        (
            "name over 256 characters",
            create_input(ALICE, &too_long_name),
            vec!["name is 257 characters long", "at most 256"],
        ),
        (
            "name over 256 characters, multi-byte",
            create_input(ALICE, &"é".repeat(MAX_NAME_CHARS + 1)),
            vec!["name is 257 characters long"],
        ),
        (
            "description over 4096 characters",
            create_input(ALICE, "ok").with_description(too_long_description),
            vec!["description is 4097 characters long", "at most 4096"],
        ),
        (
            "actor urn without the urn:li: prefix",
            create_input("alice", "ok"),
            vec!["actorUrn", "invalid urn", "urn:li:"],
        ),
        (
            "actor urn without an id",
            create_input("urn:li:corpuser:", "ok"),
            vec!["actorUrn", "invalid urn", "id is empty"],
        ),
        (
            "actor urn without an entity type",
            create_input("urn:li::alice", "ok"),
            vec!["actorUrn", "invalid urn", "entity type"],
        ),
        (
            "actor urn with a control character",
            create_input("urn:li:corpuser:al\u{0}ice", "ok"),
            vec!["actorUrn", "control characters"],
        ),
        (
            "an actor id with white space at its end",
            create_input("urn:li:corpuser:admin ", "ok"),
            vec!["actorUrn", "white space at its start or end"],
        ),
        (
            "a NUL character in the name",
            create_input(ALICE, "ci\u{0}"),
            vec!["name must not contain NUL characters"],
        ),
        (
            "a NUL character in the description",
            create_input(ALICE, "ok").with_description("first\u{0}line"),
            vec!["description must not contain NUL characters"],
        ),
        (
            "actor urn of a group",
            create_input("urn:li:corpGroup:admins", "ok"),
            vec!["actorUrn must be a user urn", "urn:li:corpGroup:admins"],
        ),
        (
            "actor urn of a dataset",
            create_input("urn:li:dataset:x", "ok"),
            vec!["actorUrn must be a user urn"],
        ),
        (
            "both duration and durationIso",
            CreateAccessTokenInput {
                duration_iso: Some("P1D".into()),
                ..create_input(ALICE, "ok")
            },
            vec!["either duration or durationIso, not both"],
        ),
        (
            "neither duration nor durationIso",
            CreateAccessTokenInput {
                duration: None,
                ..create_input(ALICE, "ok")
            },
            vec!["a duration is required", "duration or durationIso"],
        ),
        (
            "a duration outside the allowed list",
            CreateAccessTokenInput {
                duration: None,
                duration_iso: Some("P2D".into()),
                ..create_input(ALICE, "ok")
            },
            vec!["P2D is not allowed", "allowed durations", "ONE_WEEK (P7D)"],
        ),
        (
            "a malformed durationIso",
            CreateAccessTokenInput {
                duration: None,
                duration_iso: Some("thirty days".into()),
                ..create_input(ALICE, "ok")
            },
            vec!["invalid ISO-8601 duration", "THIRTY DAYS"],
        ),
        (
            "a SESSION token through createAccessToken",
            CreateAccessTokenInput {
                token_type: AccessTokenType::Session,
                ..create_input(ALICE, "ok")
            },
            vec!["SESSION", "only PERSONAL"],
        ),
    ];
    for (what, input, expected) in cases {
        // The caller could create the token if the input were right.
        assert_invalid(
            what,
            f.service.create_access_token(&user(ALICE), input.clone()).await,
            &expected,
        );
        // A manager gets the same answer: input is checked first.
        assert_invalid(
            what,
            f.service.create_access_token(&user(MANAGER), input).await,
            &expected,
        );
    }
    assert_eq!(f.snapshot().await, before, "a refused create changed the store");
}

#[tokio::test]
async fn limits_are_inclusive() {
    let f = Fixture::new();
    let at_limit = [
        create_input(ALICE, &"n".repeat(MAX_NAME_CHARS)),
        create_input(ALICE, &"é".repeat(MAX_NAME_CHARS)),
        create_input(ALICE, "x").with_description("d".repeat(MAX_DESCRIPTION_CHARS)),
        create_input(ALICE, "x").with_description(""),
        create_input(ALICE, "a"),
    ];
    for input in at_limit {
        let created = f
            .service
            .create_access_token(&user(ALICE), input.clone())
            .await
            .unwrap();
        let metadata = created.metadata.unwrap();
        assert_eq!(metadata.name, input.name);
        assert_eq!(metadata.description, input.description);
    }
    assert_eq!(f.store.len(), 5);
}

#[tokio::test]
async fn no_expiry_needs_the_setting() {
    let strict =
        Fixture::with_config(datahub_access_tokens::TokenServiceConfig::new(SIGNING_KEY, SALT).unwrap());
    assert_invalid(
        "NO_EXPIRY by default",
        strict
            .service
            .create_access_token(
                &user(ALICE),
                CreateAccessTokenInput::personal(ALICE, "x", AccessTokenDuration::NoExpiry),
            )
            .await,
        &["NO_EXPIRY is not allowed", "ONE_HOUR (PT1H)"],
    );
    assert!(strict.store.is_empty());
}

fn filter(field: &str, condition: Option<&str>, values: &[&str]) -> FacetFilterInput {
    FacetFilterInput {
        field: field.into(),
        value: None,
        values: Some(values.iter().map(|v| v.to_string()).collect()),
        negated: None,
        condition: condition.map(Into::into),
    }
}

fn with_filter(f: FacetFilterInput) -> ListAccessTokenInput {
    ListAccessTokenInput {
        filters: Some(vec![f]),
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_list_inputs_are_named() {
    let f = populated().await;
    let before = f.snapshot().await;
    let page = |start, count| ListAccessTokenInput {
        start,
        count,
        filters: None,
    };
    let cases: Vec<(&str, ListAccessTokenInput, Vec<&str>)> = vec![
        (
            "negative start",
            page(Some(-1), None),
            vec!["start must not be negative", "-1"],
        ),
        (
            "very negative start",
            page(Some(i64::MIN), None),
            vec!["start must not be negative"],
        ),
        (
            "negative count",
            page(None, Some(-1)),
            vec!["count must be between 0 and 10000", "-1"],
        ),
        (
            "count over 10000",
            page(None, Some(10_001)),
            vec!["count must be between 0 and 10000", "10001"],
        ),
        (
            "unknown filter field",
            with_filter(filter("colour", None, &["red"])),
            vec!["unknown filter field \"colour\"", "ownerUrn"],
        ),
        (
            "field names are case-sensitive",
            with_filter(filter("OwnerUrn", None, &[ALICE])),
            vec!["unknown filter field \"OwnerUrn\""],
        ),
        (
            "unsupported operator",
            with_filter(filter("name", Some("LIKE"), &["x"])),
            vec!["unsupported filter condition \"LIKE\"", "EQUAL"],
        ),
        (
            "operator in lower case",
            with_filter(filter("name", Some("equal"), &["x"])),
            vec!["unsupported filter condition \"equal\""],
        ),
        (
            "non-numeric createdAt",
            with_filter(filter("createdAt", Some("GREATER_THAN"), &["yesterday"])),
            vec!["createdAt", "\"yesterday\"", "not a number"],
        ),
        (
            "non-numeric expiresAt",
            with_filter(filter("expiresAt", Some("LESS_THAN"), &["1700000000000", "soon"])),
            vec!["expiresAt", "\"soon\"", "not a number"],
        ),
        (
            "fractional expiresAt",
            with_filter(filter("expiresAt", None, &["1.5"])),
            vec!["expiresAt", "not a number"],
        ),
        (
            "a text operator on a time field",
            with_filter(filter("createdAt", Some("CONTAIN"), &["17"])),
            vec!["CONTAIN does not apply to createdAt"],
        ),
        (
            "a comparison on a text field",
            with_filter(filter("name", Some("GREATER_THAN"), &["a"])),
            vec!["GREATER_THAN does not apply to name"],
        ),
        (
            "a filter without values",
            with_filter(filter("name", None, &[])),
            vec!["name", "needs at least one value"],
        ),
        (
            "value and values that differ",
            with_filter(FacetFilterInput {
                value: Some("a".into()),
                ..filter("name", None, &["b"])
            }),
            vec!["both value and values"],
        ),
    ];
    for (what, input, expected) in cases {
        // A manager may list anything, so the refusal is about the input.
        assert_invalid(
            what,
            f.service.list_access_tokens(&user(MANAGER), &input).await,
            &expected,
        );
        // A generator's own listing is refused for the same reason.
        let mut own = input.clone();
        own.filters
            .get_or_insert_with(Vec::new)
            .push(filter("ownerUrn", None, &[ALICE]));
        assert_invalid(
            what,
            f.service.list_access_tokens(&user(ALICE), &own).await,
            &expected,
        );
    }
    assert_eq!(f.snapshot().await, before);
}

#[tokio::test]
async fn paging_limits_are_inclusive() {
    let f = populated().await;
    let manager = user(MANAGER);
    for (start, count) in [(0, 0), (0, 10_000), (2, 1), (1_000_000, 5)] {
        let result = f
            .service
            .list_access_tokens(
                &manager,
                &ListAccessTokenInput {
                    start: Some(start),
                    count: Some(count),
                    filters: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(result.start, start as usize);
        assert_eq!(result.total, 3);
        assert_eq!(
            result.count,
            3usize.saturating_sub(start as usize).min(count as usize)
        );
    }
    let defaults = f
        .service
        .list_access_tokens(&manager, &ListAccessTokenInput::default())
        .await
        .unwrap();
    assert_eq!((defaults.start, defaults.count, defaults.total), (0, 3, 3));
}

#[tokio::test]
async fn bad_revoke_inputs() {
    let f = populated().await;
    let before = f.snapshot().await;
    for bad in ["", "not-an-id", "HnMJylxuowJ1FKN74BbGogLvXCS4w-fsd3MZdI35+8A="] {
        assert_invalid(
            bad,
            f.service.revoke_access_token(&user(MANAGER), bad).await,
            &["is not a token id"],
        );
    }
    // Well-formed but unknown: DataHub's message.
    let err = f
        .service
        .revoke_access_token(&user(MANAGER), "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound), "{err:?}");
    assert_eq!(err.to_string(), "Access token no longer exists");
    assert_eq!(f.snapshot().await, before);
}

#[test]
fn graphql_json_inputs_are_checked() {
    // DataHub's field names parse ...
    let input: CreateAccessTokenInput = serde_json::from_str(
        r#"{"type":"PERSONAL","actorUrn":"urn:li:corpuser:alice","duration":"ONE_MONTH","name":"ci"}"#,
    )
    .unwrap();
    assert_eq!(input.duration, Some(AccessTokenDuration::OneMonth));
    // ... and mistakes are named.
    let err = serde_json::from_str::<CreateAccessTokenInput>(
        r#"{"type":"PERSONAL","actorUrn":"urn:li:corpuser:alice","duration":"ONE_FORTNIGHT","name":"ci"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ONE_FORTNIGHT"), "{err}");
    let err = serde_json::from_str::<CreateAccessTokenInput>(
        r#"{"type":"PERSONAL","actorUrn":"urn:li:corpuser:alice","duration":"ONE_DAY","nmae":"ci"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nmae"), "{err}");
    let err = serde_json::from_str::<ListAccessTokenInput>(r#"{"start":0,"filter":[]}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("filter"), "{err}");
}

#[tokio::test]
async fn revoking_by_the_token_itself_does_not_echo_it() {
    // A plausible mistake: passing the plaintext token where its id belongs.
    // The error may end up in logs, so it must not repeat the token.
    let f = populated().await;
    let created = f.create_own(ALICE, "mistaken").await;
    let token = created.expose_access_token();
    let before = f.snapshot().await;
    let err = f
        .service
        .revoke_access_token(&user(ALICE), token)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(shown.contains("is not a token id"), "{shown}");
    assert!(shown.contains("looks like an access token"), "{shown}");
    assert!(!shown.contains(token), "the error repeats the token: {shown}");
    assert!(
        !shown.contains(token.rsplit('.').next().unwrap()),
        "the error repeats the signature: {shown}"
    );
    assert_eq!(f.snapshot().await, before);
}

mod random_inputs {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-zA-Z0-9][a-zA-Z0-9 ]{0,19}",
            1 => Just(String::new()),
            1 => Just(" ".to_owned()),
            1 => "\\PC{1,20}",
            1 => "[a-z ]{250,260}",
            1 => Just("é".repeat(MAX_NAME_CHARS)),
            1 => Just("é".repeat(MAX_NAME_CHARS + 1)),
        ]
    }

    fn urn() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => proptest::sample::select(vec![ALICE, BOB, MANAGER]).prop_map(str::to_owned),
            1 => Just("urn:li:corpuser:".to_owned()),
            1 => Just("urn:li:corpGroup:x".to_owned()),
            1 => "urn:li:[a-zA-Z]{0,9}:\\PC{0,12}",
            1 => "\\PC{0,20}",
        ]
    }

    fn input() -> impl Strategy<Value = CreateAccessTokenInput> {
        let duration = proptest::sample::select(AccessTokenDuration::ALL.to_vec());
        let iso = prop_oneof![
            Just("P30D".to_owned()),
            Just("PT1H".to_owned()),
            Just("P2D".to_owned()),
            "[PTYMWDHS0-9]{0,8}",
        ];
        // Mostly exactly one of the two, as required.
        let lifetime = prop_oneof![
            4 => duration.clone().prop_map(|d| (Some(d), None)),
            4 => iso.clone().prop_map(|i| (None, Some(i))),
            1 => (duration, iso).prop_map(|(d, i)| (Some(d), Some(i))),
            1 => Just((None, None)),
        ];
        let description =
            proptest::option::of(prop_oneof![text(), Just("d".repeat(MAX_DESCRIPTION_CHARS + 1))]);
        (urn(), text(), lifetime, description).prop_map(
            |(actor_urn, name, (duration, duration_iso), description)| CreateAccessTokenInput {
                token_type: AccessTokenType::Personal,
                actor_urn,
                duration,
                duration_iso,
                name,
                description,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any create request either stores exactly one record or fails with
        /// InvalidInput / Unauthorized and stores nothing; never a panic.
        #[test]
        fn create_is_all_or_nothing(input in input(), caller in 0usize..3) {
            let caller = [ALICE, MANAGER, NOBODY][caller];
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
                let f = Fixture::new();
                let result = f.service.create_access_token(&user(caller), input.clone()).await;
                match result {
                    Ok(created) => {
                        let metadata = created.metadata.unwrap();
                        prop_assert_eq!(f.store.len(), 1);
                        prop_assert_eq!(&metadata.name, &input.name);
                        prop_assert_eq!(metadata.actor_urn.as_str(), input.actor_urn.as_str());
                        prop_assert!(!input.name.trim().is_empty());
                        prop_assert!(input.name.chars().count() <= MAX_NAME_CHARS);
                        prop_assert!(input.duration.is_some() != input.duration_iso.is_some());
                    }
                    Err(Error::InvalidInput(message)) => {
                        prop_assert!(!message.is_empty());
                        prop_assert!(f.store.is_empty());
                    }
                    Err(Error::Unauthorized) => {
                        prop_assert!(caller != MANAGER);
                        prop_assert!(f.store.is_empty());
                    }
                    Err(other) => prop_assert!(false, "unexpected error {:?}", other),
                }
                Ok(())
            })?;
        }
    }
}
