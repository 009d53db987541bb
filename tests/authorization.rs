//! DataHub's authorization rules (spec section 5), as a matrix: every
//! operation, by a manager, a generator and a user with no privilege, on
//! their own tokens and on another user's.

mod common;

use common::*;
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubAccessTokenInfo, DataHubTokenService, Error,
    FacetFilterInput, ListAccessTokenInput, Policies, PolicyEngine, Privilege, StoredAccessToken,
    TokenService, TokenStore, Urn, ROLE_ADMIN, ROLE_EDITOR, ROLE_READER, UNAUTHORIZED_MESSAGE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateForSelf,
    CreateForOther,
    ListOwn,
    ListOtherOwner,
    ListUnfiltered,
    RevokeOwn,
    RevokeOthers,
    MetadataOfOwn,
    MetadataOfOthers,
}

const OPS: [Op; 9] = [
    Op::CreateForSelf,
    Op::CreateForOther,
    Op::ListOwn,
    Op::ListOtherOwner,
    Op::ListUnfiltered,
    Op::RevokeOwn,
    Op::RevokeOthers,
    Op::MetadataOfOwn,
    Op::MetadataOfOthers,
];

/// Who may do what, straight from the spec's table.
fn allowed(caller: &str, op: Op) -> bool {
    let manages = caller == MANAGER;
    let generates = manages || caller == ALICE || caller == BOB;
    match op {
        // create: can_manage, or (actor == caller and can_generate)
        Op::CreateForSelf => generates,
        Op::CreateForOther => manages,
        // list: can_manage, or can_generate with ownerUrn = [caller]
        Op::ListOwn => generates,
        Op::ListOtherOwner | Op::ListUnfiltered => manages,
        // revoke: can_manage, or the stored ownerUrn is the caller (no
        // privilege needed to revoke what one owns, as in DataHub)
        Op::RevokeOwn => true,
        Op::RevokeOthers => manages,
        // metadata of a raw token: can_manage
        Op::MetadataOfOwn | Op::MetadataOfOthers => manages,
    }
}

/// A token record owned by `owner`, inserted directly: a user without any
/// privilege can still own tokens (created before the privilege was
/// withdrawn), and the raw token is needed for the metadata query.
async fn seed_owned_by(f: &Fixture, owner: &str) -> (String, String) {
    let token = f
        .create(MANAGER, owner, "seeded", AccessTokenDuration::OneDay)
        .await;
    let id = id_of(&token);
    // Re-own it: same record, ownerUrn = owner.
    let mut record = f.store.get(&id).await.unwrap().unwrap();
    f.store.delete(&id).await.unwrap();
    record.info.owner_urn = user(owner);
    f.store.insert(record).await.unwrap();
    (token.expose_access_token().to_owned(), id)
}

/// Runs `op` as `caller`; Ok(()) when it was allowed and did its job.
async fn run(f: &Fixture, caller: &str, op: Op) -> Result<(), Error> {
    let other = if caller == BOB { ALICE } else { BOB };
    let me = user(caller);
    match op {
        Op::CreateForSelf | Op::CreateForOther => {
            let actor = if op == Op::CreateForSelf { caller } else { other };
            let input = CreateAccessTokenInput::personal(actor, "matrix", AccessTokenDuration::OneDay);
            let created = f.service.create_access_token(&me, input).await?;
            let metadata = created.metadata.expect("metadata");
            assert_eq!(metadata.actor_urn.as_str(), actor);
            assert_eq!(metadata.owner_urn.as_str(), caller);
            assert!(f.store.contains(&metadata.id).await.unwrap());
        }
        Op::ListOwn | Op::ListOtherOwner | Op::ListUnfiltered => {
            let input = match op {
                Op::ListOwn => ListAccessTokenInput::owned_by(&me, 100),
                Op::ListOtherOwner => ListAccessTokenInput::owned_by(&user(other), 100),
                _ => ListAccessTokenInput::default(),
            };
            let result = f.service.list_access_tokens(&me, &input).await?;
            assert_eq!(result.count, result.tokens.len());
            if op == Op::ListOwn {
                assert!(result.tokens.iter().all(|t| t.owner_urn == me));
            }
        }
        Op::RevokeOwn | Op::RevokeOthers => {
            let owner = if op == Op::RevokeOwn { caller } else { other };
            let (_, id) = seed_owned_by(f, owner).await;
            let before = f.snapshot().await;
            let result = f.service.revoke_access_token(&me, &id).await;
            if result.is_err() {
                assert_eq!(f.snapshot().await, before, "a refused revoke changed the store");
            }
            result?;
            assert!(!f.store.contains(&id).await.unwrap());
        }
        Op::MetadataOfOwn | Op::MetadataOfOthers => {
            let owner = if op == Op::MetadataOfOwn { caller } else { other };
            let (token, id) = seed_owned_by(f, owner).await;
            let metadata = f.service.get_access_token_metadata(&me, &token).await?;
            assert_eq!(metadata.id, id);
            assert_eq!(metadata.owner_urn.as_str(), owner);
        }
    }
    Ok(())
}

/// The test grants behind an engine that answers only through the `async`
/// call, as a remote policy service would: no `is_authorized_now`.
#[derive(Debug)]
struct AsyncOnly(Policies);

#[async_trait::async_trait]
impl PolicyEngine for AsyncOnly {
    async fn is_authorized(&self, actor: &Urn, privilege: Privilege) -> Result<bool, Error> {
        tokio::task::yield_now().await;
        Ok(self.0.grants(actor, privilege))
    }
}

fn fixture(async_only: bool) -> Fixture {
    let f = Fixture::new();
    if !async_only {
        return f;
    }
    let service = DataHubTokenService::new(config(), f.store.clone(), AsyncOnly(policies()));
    Fixture {
        service: service.with_clock(f.clock.clone()),
        ..f
    }
}

#[tokio::test]
async fn authorization_matrix() {
    let mut checked = 0;
    // With an engine that answers at once (`Policies`) and one that answers
    // only through the `async` call.
    for async_only in [false, true] {
        for caller in [MANAGER, ALICE, NOBODY] {
            for op in OPS {
                let f = fixture(async_only);
                // Something to list and to be refused over.
                f.create(MANAGER, BOB, "bob's", AccessTokenDuration::OneWeek)
                    .await;
                f.create_own(ALICE, "alice's").await;
                let before = f.snapshot().await;
                let result = run(&f, caller, op).await;
                if allowed(caller, op) {
                    result.unwrap_or_else(|e| panic!("{caller} should be allowed {op:?}, got: {e}"));
                } else {
                    match result {
                        Err(Error::Unauthorized) => {}
                        other => panic!("{caller} should be refused {op:?}, got {other:?}"),
                    }
                    // Revoke and metadata cases seed a record before the call;
                    // compare only the records that existed before.
                    let after = f.snapshot().await;
                    for record in &before {
                        assert!(
                            after.contains(record),
                            "{caller} {op:?} was refused but changed the store"
                        );
                    }
                    if matches!(op, Op::CreateForSelf | Op::CreateForOther) {
                        assert_eq!(after, before, "refused create stored something");
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 54);
}

#[tokio::test]
async fn refusal_carries_datahubs_message() {
    let f = Fixture::new();
    let err = f
        .service
        .list_access_tokens(&user(ALICE), &ListAccessTokenInput::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized));
    assert_eq!(
        err.to_string(),
        "Unauthorized to perform this action. Please contact your DataHub administrator."
    );
    assert_eq!(err.to_string(), UNAUTHORIZED_MESSAGE);
}

fn filter(field: &str, values: &[&str], negated: bool, condition: Option<&str>) -> FacetFilterInput {
    FacetFilterInput {
        field: field.into(),
        value: None,
        values: Some(values.iter().map(|v| v.to_string()).collect()),
        negated: Some(negated),
        condition: condition.map(Into::into),
    }
}

fn listing(filters: Vec<FacetFilterInput>) -> ListAccessTokenInput {
    ListAccessTokenInput {
        start: None,
        count: None,
        filters: Some(filters),
    }
}

#[tokio::test]
async fn generator_may_list_only_with_an_exact_self_filter() {
    let f = Fixture::new();
    f.create_own(ALICE, "a1").await;
    f.create_own(ALICE, "a2").await;
    f.create_own(BOB, "b1").await;
    f.create(MANAGER, ALICE, "for alice", AccessTokenDuration::OneDay)
        .await;
    let alice = user(ALICE);

    let accepted = [
        (
            "ownerUrn = [self]",
            listing(vec![filter("ownerUrn", &[ALICE], false, None)]),
        ),
        (
            "explicit EQUAL",
            listing(vec![filter("ownerUrn", &[ALICE], false, Some("EQUAL"))]),
        ),
        (
            "IN [self]",
            listing(vec![filter("ownerUrn", &[ALICE], false, Some("IN"))]),
        ),
        (
            "deprecated value",
            listing(vec![FacetFilterInput {
                field: "ownerUrn".into(),
                value: Some(ALICE.into()),
                ..Default::default()
            }]),
        ),
        (
            "self filter plus a narrowing filter",
            listing(vec![
                filter("name", &["a1"], false, None),
                filter("ownerUrn", &[ALICE], false, None),
            ]),
        ),
    ];
    for (what, input) in accepted {
        let result = f
            .service
            .list_access_tokens(&alice, &input)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(result.total >= 1, "{what}");
        assert!(
            result.tokens.iter().all(|t| t.owner_urn == alice),
            "{what} returned someone else's token"
        );
    }
    // Alice sees her own two, not the one the manager made for her.
    let own = f
        .service
        .list_access_tokens(&alice, &ListAccessTokenInput::owned_by(&alice, 20))
        .await
        .unwrap();
    assert_eq!(own.total, 2);

    let refused = [
        ("no filters at all", ListAccessTokenInput::default()),
        ("empty filter list", listing(vec![])),
        (
            "another owner",
            listing(vec![filter("ownerUrn", &[BOB], false, None)]),
        ),
        (
            "negated self filter",
            listing(vec![filter("ownerUrn", &[ALICE], true, None)]),
        ),
        (
            "values [self, other]",
            listing(vec![filter("ownerUrn", &[ALICE, BOB], false, None)]),
        ),
        (
            "values [other, self]",
            listing(vec![filter("ownerUrn", &[BOB, ALICE], false, None)]),
        ),
        (
            "values [self, self]",
            listing(vec![filter("ownerUrn", &[ALICE, ALICE], false, None)]),
        ),
        (
            "CONTAIN self (would match longer ids)",
            listing(vec![filter("ownerUrn", &[ALICE], false, Some("CONTAIN"))]),
        ),
        (
            "START_WITH self",
            listing(vec![filter("ownerUrn", &[ALICE], false, Some("START_WITH"))]),
        ),
        (
            "actorUrn = [self] instead of ownerUrn",
            listing(vec![filter("actorUrn", &[ALICE], false, None)]),
        ),
        (
            "a prefix of the self urn",
            listing(vec![filter("ownerUrn", &["urn:li:corpuser:alic"], false, None)]),
        ),
    ];
    for (what, input) in refused {
        match f.service.list_access_tokens(&alice, &input).await {
            Err(Error::Unauthorized) => {}
            other => panic!("{what}: expected Unauthorized, got {other:?}"),
        }
    }

    // A user without the privilege is refused even with the self filter.
    let nobody = user(NOBODY);
    assert!(matches!(
        f.service
            .list_access_tokens(&nobody, &ListAccessTokenInput::owned_by(&nobody, 20))
            .await,
        Err(Error::Unauthorized)
    ));
    // The manager needs no filter.
    let all = f
        .service
        .list_access_tokens(&user(MANAGER), &ListAccessTokenInput::default())
        .await
        .unwrap();
    assert_eq!(all.total, 4);
}

#[tokio::test]
async fn admin_creating_for_someone_else() {
    let f = Fixture::new();
    let created = f
        .create(MANAGER, BOB, "bob's ci", AccessTokenDuration::OneWeek)
        .await;
    let metadata = created.metadata.clone().unwrap();
    assert_eq!(metadata.actor_urn.as_str(), BOB);
    assert_eq!(metadata.owner_urn.as_str(), MANAGER);

    let stored = f.store.get(&metadata.id).await.unwrap().unwrap();
    assert_eq!(
        stored,
        StoredAccessToken {
            id: metadata.id.clone(),
            info: DataHubAccessTokenInfo {
                name: "bob's ci".into(),
                actor_urn: user(BOB),
                owner_urn: user(MANAGER),
                created_at: T0,
                expires_at: Some(T0 + 7 * DAY_MS),
                description: None,
                last_used_at: None,
            },
        }
    );

    // The token carries Bob's identity.
    let validated = f
        .service
        .validate_access_token(created.expose_access_token())
        .await
        .unwrap();
    assert_eq!(validated.actor, user(BOB));
    assert_eq!(validated.claims.actor_id(), "bob");
    assert_eq!(validated.claims.sub(), Some("bob"));

    // Bob is its actor, not its owner: it is not among the tokens he owns,
    // and he may not revoke it; the manager may.
    let bobs = f
        .service
        .list_access_tokens(&user(BOB), &ListAccessTokenInput::owned_by(&user(BOB), 20))
        .await
        .unwrap();
    assert_eq!(bobs.total, 0);
    assert!(matches!(
        f.service.revoke_access_token(&user(BOB), &metadata.id).await,
        Err(Error::Unauthorized)
    ));
    f.service
        .revoke_access_token(&user(MANAGER), &metadata.id)
        .await
        .unwrap();
}

#[tokio::test]
async fn generator_cannot_impersonate() {
    let f = Fixture::new();
    for actor in [BOB, MANAGER, NOBODY] {
        let input = CreateAccessTokenInput::personal(actor, "x", AccessTokenDuration::OneHour);
        assert!(matches!(
            f.service.create_access_token(&user(ALICE), input).await,
            Err(Error::Unauthorized)
        ));
    }
    assert!(f.store.is_empty());
}

#[tokio::test]
async fn datahub_default_roles() {
    // Under DataHub's defaults every user generates; the Admin role and the
    // root user manage; Editor and Reader roles add nothing more.
    let admin = user("urn:li:corpuser:ops");
    let editor = user("urn:li:corpuser:ed");
    let reader = user("urn:li:corpuser:rita");
    let policies = Policies::datahub_defaults()
        .with_role(admin.clone(), ROLE_ADMIN)
        .unwrap()
        .with_role(editor.clone(), ROLE_EDITOR)
        .unwrap()
        .with_role(reader.clone(), ROLE_READER)
        .unwrap();
    let service = datahub_access_tokens::DataHubTokenService::new(
        config(),
        datahub_access_tokens::MemoryTokenStore::new(),
        policies,
    );
    let root = user("urn:li:corpuser:datahub");
    for (caller, manages) in [(&root, true), (&admin, true), (&editor, false), (&reader, false)] {
        // Everyone may create their own token ...
        let own = CreateAccessTokenInput::personal(caller.as_str(), "own", AccessTokenDuration::OneHour);
        service.create_access_token(caller, own).await.unwrap();
        // ... only managers one for someone else, or list everything.
        let for_other =
            CreateAccessTokenInput::personal("urn:li:corpuser:zed", "other", AccessTokenDuration::OneHour);
        assert_eq!(
            service.create_access_token(caller, for_other).await.is_ok(),
            manages,
            "{caller}"
        );
        assert_eq!(
            service
                .list_access_tokens(caller, &ListAccessTokenInput::default())
                .await
                .is_ok(),
            manages,
            "{caller}"
        );
    }
}

#[tokio::test]
async fn a_missing_token_is_not_found_only_to_managers() {
    let f = Fixture::new();
    let id = id_of(&f.create_own(ALICE, "gone").await);
    f.service.revoke_access_token(&user(ALICE), &id).await.unwrap();
    // As in DataHub: a token that does not exist has no owner, so revoking
    // it is refused to everyone who may not manage tokens (nor are they
    // told whether the id ever existed).
    for caller in [ALICE, BOB, NOBODY] {
        let err = f
            .service
            .revoke_access_token(&user(caller), &id)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unauthorized), "{caller}: {err:?}");
        assert_eq!(err.to_string(), UNAUTHORIZED_MESSAGE);
    }
    let err = f
        .service
        .revoke_access_token(&user(MANAGER), &id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound), "{err:?}");
    assert_eq!(err.to_string(), "Access token no longer exists");
}

#[tokio::test]
async fn a_create_anyone_may_not_make_is_refused_before_its_other_fields_are_read() {
    // As in DataHub: the type and actor decide who may create; a caller who
    // may not is told so (and learns nothing of the duration policy or
    // limits), whatever else the request holds.
    let f = Fixture::new();
    let bad_fields = [
        CreateAccessTokenInput {
            duration: None,
            duration_iso: Some("P2D".into()),
            ..CreateAccessTokenInput::personal(BOB, "t", AccessTokenDuration::OneDay)
        },
        CreateAccessTokenInput::personal(BOB, "", AccessTokenDuration::OneDay),
        CreateAccessTokenInput::personal(BOB, "x".repeat(300), AccessTokenDuration::OneDay),
    ];
    for input in bad_fields {
        for caller in [ALICE, NOBODY] {
            let err = f
                .service
                .create_access_token(&user(caller), input.clone())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Unauthorized), "{caller}: {err:?}");
        }
        // The same request by one who may: the field is named.
        let err = f
            .service
            .create_access_token(&user(MANAGER), input)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
    // A malformed actor is named to everyone: who may create is unknowable.
    let err = f
        .service
        .create_access_token(
            &user(NOBODY),
            CreateAccessTokenInput::personal("bob", "t", AccessTokenDuration::OneDay),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("actorUrn"), "{err}");
}
