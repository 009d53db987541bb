//! Interoperability with implementations nobody here wrote: PyJWT decodes
//! and verifies our tokens with DataHub's claim set, PyJWT-minted tokens
//! built the way DataHub's Java code builds them validate here, and token
//! ids match Python's `hashlib`.
//!
//! Needs `python3` with PyJWT 2.x: when the system has none, the tests
//! install it privately under `target/pyjwt` with pip. If that fails too,
//! they fail and say how to install it, unless `SKIP_PYTHON_INTEROP=1` is
//! set outside CI.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;
use datahub_access_tokens::{
    AccessTokenDuration, Clock, DataHubAccessTokenInfo, Error, StoredAccessToken, SystemClock, TokenService,
    TokenServiceConfig, TokenStore,
};
use serde_json::{json, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyjwt_interop.py");
const INSTALL: &str = "python3 -m pip install 'PyJWT>=2,<3'";
/// `{"alg":"HS256"}` in base64url: the header DataHub (jjwt) writes.
const DATAHUB_HEADER_B64: &str = "eyJhbGciOiJIUzI1NiJ9";

/// A python3 that can `import jwt`.
#[derive(Clone)]
struct PyJwt {
    python: String,
    /// Where a private PyJWT install lives, if the system has none.
    pythonpath: Option<String>,
}

impl PyJwt {
    /// Finds python3 with PyJWT; `None` only when skipping is allowed.
    fn find() -> Option<Self> {
        // Probe once per test binary: starting Python is the slow part.
        static PROBE: OnceLock<Result<PyJwt, String>> = OnceLock::new();
        let problem = match PROBE.get_or_init(probe) {
            Ok(py) => return Some(py.clone()),
            Err(problem) => problem,
        };
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        if !in_ci && std::env::var("SKIP_PYTHON_INTEROP").as_deref() == Ok("1") {
            eprintln!("SKIPPING the PyJWT interop test (SKIP_PYTHON_INTEROP=1): {problem}");
            return None;
        }
        panic!(
            "the PyJWT interop test needs python3 with PyJWT: {problem}\n\
             install it with `{INSTALL}` (bash .ci/run does), \
             or set SKIP_PYTHON_INTEROP=1 to skip this test outside CI"
        );
    }

    /// Sends requests to the Python side; one answer each.
    fn run(&self, requests: &[Value]) -> Vec<Result<Value, String>> {
        let mut command = Command::new(&self.python);
        if let Some(path) = &self.pythonpath {
            command.env("PYTHONPATH", path);
        }
        let mut child = command
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(requests).unwrap().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the python side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answers: Vec<Value> = serde_json::from_slice(&out.stdout).expect("python answers JSON");
        assert_eq!(answers.len(), requests.len());
        answers
            .into_iter()
            .map(|a| match (a.get("ok"), a.get("error")) {
                (Some(ok), None) => Ok(ok.clone()),
                (None, Some(Value::String(e))) => Err(e.clone()),
                _ => panic!("malformed answer {a}"),
            })
            .collect()
    }

    fn one(&self, request: Value) -> Result<Value, String> {
        self.run(&[request]).pop().unwrap()
    }
}

/// The python to use (`$PYTHON`, default `python3`) if it has PyJWT 2.x.
fn probe() -> Result<PyJwt, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if let Ok(py) = check(&python, None) {
        return Ok(py);
    }
    // Not installed: install it privately under target/ so that
    // `cargo test` alone works on a fresh machine.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyjwt");
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            dir,
        ])
        .arg("PyJWT>=2,<3")
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "installing PyJWT into {dir} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    check(&python, Some(dir))
}

/// Whether `python` (with `pythonpath`) imports PyJWT 2.x.
fn check(python: &str, pythonpath: Option<&str>) -> Result<PyJwt, String> {
    let mut command = Command::new(python);
    command.args(["-c", "import jwt, sys; sys.stdout.write(jwt.__version__)"]);
    if let Some(path) = pythonpath {
        command.env("PYTHONPATH", path);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{python} -c 'import jwt'` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    if !version.starts_with("2.") {
        return Err(format!("PyJWT 2.x is needed, {python} has {version}"));
    }
    Ok(PyJwt {
        python: python.to_owned(),
        pythonpath: pythonpath.map(str::to_owned),
    })
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// DataHub's published key and salt, never-expiring tokens allowed.
fn datahub_defaults() -> TokenServiceConfig {
    TokenServiceConfig::insecure_datahub_defaults().with_duration_policy(config().duration_policy().clone())
}

/// A fixture whose manual clock reads the real time, so PyJWT (which checks
/// `exp` against the real clock) sees our tokens as current.
fn fixture_now(config: TokenServiceConfig) -> Fixture {
    let f = Fixture::with_config(config);
    f.clock.set(now_ms());
    f
}

#[tokio::test]
async fn pyjwt_verifies_our_tokens_with_datahubs_claims() {
    let Some(py) = PyJwt::find() else { return };
    for config in [config(), datahub_defaults()] {
        let key = config.expose_signing_key().to_owned();
        let f = fixture_now(config);
        let created_at = f.clock.now_ms();
        let personal = f
            .create(ALICE, ALICE, "interop", AccessTokenDuration::OneHour)
            .await;
        let forever = f
            .create(MANAGER, BOB, "forever", AccessTokenDuration::NoExpiry)
            .await;
        let session = f.service.create_session_token(&user(BOB)).await.unwrap();

        let answers = py.run(&[
            json!({"op": "decode", "token": personal.expose_access_token(), "key": key,
                   "issuer": "datahub-metadata-service", "require": ["exp", "jti", "sub", "iss"]}),
            json!({"op": "decode", "token": forever.expose_access_token(), "key": key,
                   "issuer": "datahub-metadata-service", "require": ["jti", "sub", "iss"]}),
            json!({"op": "decode", "token": session.expose_access_token(), "key": key,
                   "require": ["exp"]}),
        ]);
        let [personal_ok, forever_ok, session_ok] = <[_; 3]>::try_from(answers).unwrap();
        let personal_ok = personal_ok.expect("PyJWT verifies our personal token");
        assert_eq!(personal_ok["header"], json!({"alg": "HS256"}));
        let claims = &personal_ok["claims"];
        let mut names: Vec<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "actorId",
                "actorType",
                "exp",
                "iss",
                "jti",
                "sub",
                "type",
                "version"
            ]
        );
        assert_eq!(claims["version"], "2");
        assert_eq!(claims["type"], "PERSONAL");
        assert_eq!(claims["actorType"], "USER");
        assert_eq!(claims["actorId"], "alice");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["iss"], "datahub-metadata-service");
        assert_eq!(claims["exp"], (created_at + HOUR_MS) / 1000);
        assert_eq!(
            claims["exp"].as_i64().unwrap() * 1000 / 1000,
            personal.metadata.as_ref().unwrap().expires_at.unwrap() / 1000
        );

        let forever_claims = &forever_ok.expect("PyJWT verifies a never-expiring token")["claims"];
        assert!(
            forever_claims.get("exp").is_none(),
            "NO_EXPIRY tokens carry no exp"
        );
        assert_eq!(forever_claims["actorId"], "bob");

        let session_claims = &session_ok.expect("PyJWT verifies a session token")["claims"];
        assert_eq!(session_claims["version"], "1");
        assert_eq!(session_claims["type"], "SESSION");
        assert_eq!(session_claims["exp"], (created_at + DAY_MS) / 1000);
    }
}

#[tokio::test]
async fn pyjwt_rejects_what_it_should() {
    let Some(py) = PyJwt::find() else { return };
    // A token that expired long ago (the fixture clock starts in 2023).
    let old = Fixture::new();
    let expired = old.create_own(ALICE, "old").await;
    let f = fixture_now(config());
    let current = f.create_own(ALICE, "current").await;
    let answers = py.run(&[
        json!({"op": "decode", "token": expired.expose_access_token(), "key": SIGNING_KEY}),
        json!({"op": "decode", "token": current.expose_access_token(),
               "key": "another-key-that-is-long-enough-for-hs256"}),
        json!({"op": "decode", "token": current.expose_access_token(), "key": SIGNING_KEY,
               "issuer": "someone-else"}),
    ]);
    let errors: Vec<String> = answers.into_iter().map(|a| a.unwrap_err()).collect();
    assert!(errors[0].starts_with("ExpiredSignatureError"), "{}", errors[0]);
    assert!(errors[1].starts_with("InvalidSignatureError"), "{}", errors[1]);
    assert!(errors[2].starts_with("InvalidIssuerError"), "{}", errors[2]);
}

#[tokio::test]
async fn token_ids_match_python_hashlib() {
    let Some(py) = PyJwt::find() else { return };
    let f = fixture_now(config());
    let mut tokens = Vec::new();
    for (owner, duration) in [
        (ALICE, AccessTokenDuration::OneHour),
        (BOB, AccessTokenDuration::OneYear),
        (MANAGER, AccessTokenDuration::NoExpiry),
    ] {
        tokens.push(f.create(owner, owner, "id check", duration).await);
    }
    let requests: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"op": "hash", "token": t.expose_access_token(), "salt": SALT}))
        .collect();
    for (token, python_id) in tokens.iter().zip(py.run(&requests)) {
        let python_id = python_id.unwrap();
        assert_eq!(
            python_id,
            json!(id_of(token)),
            "metadata id differs from Python's"
        );
        assert_eq!(
            python_id,
            json!(f.service.codec().token_id(token.expose_access_token()))
        );
        assert!(f.store.contains(python_id.as_str().unwrap()).await.unwrap());
    }

    // Any string and salt, including non-ASCII ones (DataHub hashes UTF-8).
    let salts = [
        SALT,
        "ohDVbJBvHHVJh9S/UA4BYF9COuNnqqVhr9MLKEGXk1O=",
        "sël-ünïcødé-☃",
        "x",
    ];
    let inputs = [
        "",
        "a",
        "not.a.jwt",
        "ünïcødé ☃ token",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
    ];
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for salt in salts {
        let codec =
            datahub_access_tokens::TokenCodec::new(&TokenServiceConfig::new(SIGNING_KEY, salt).unwrap());
        for input in inputs {
            requests.push(json!({"op": "hash", "token": input, "salt": salt}));
            ours.push(codec.token_id(input));
        }
    }
    let theirs: Vec<String> = py
        .run(&requests)
        .into_iter()
        .map(|a| a.unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ours, theirs);

    // The docs' example id has the shape of ours: 44 characters of
    // standard base64 for 32 bytes; we treat it as a well-formed id.
    let example = "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=";
    assert_eq!(
        py.one(json!({"op": "id_bytes", "id": example})).unwrap(),
        json!(32)
    );
    for id in theirs.iter().chain([&example.to_owned()]) {
        assert_eq!(id.len(), 44);
        assert!(id.ends_with('='));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
    }
    assert!(matches!(
        f.service.revoke_access_token(&user(MANAGER), example).await,
        Err(Error::NotFound)
    ));
}

/// DataHub's Java (`StatefulTokenService`) claims: version, type, actorType,
/// actorId, then jjwt's exp (seconds), jti (random UUID), sub, iss.
fn datahub_claims(version: &str, token_type: &str, actor_id: &str, exp: Option<i64>) -> Value {
    let mut claims = json!({
        "version": version,
        "type": token_type,
        "actorType": "USER",
        "actorId": actor_id,
        "jti": "3f2a8c1e-7b4d-4e9a-9c6f-1d2e3f4a5b6c",
        "sub": actor_id,
        "iss": "datahub-metadata-service",
    });
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    claims
}

fn mint(key: &str, claims: &Value, typ: bool) -> Value {
    json!({"op": "mint", "key": key, "claims": claims, "typ": typ})
}

/// A PyJWT-minted token and, when a salt was sent, its id per Python.
struct Minted {
    token: String,
    id: Option<String>,
}

/// Mints every request in one Python run.
fn mint_all(py: &PyJwt, requests: &[Value]) -> Vec<Minted> {
    py.run(requests)
        .into_iter()
        .map(|answer| {
            let answer = answer.expect("PyJWT mints");
            Minted {
                token: answer["token"].as_str().unwrap().to_owned(),
                id: answer["id"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// The record DataHub would have written for a token it minted.
fn datahub_record(id: &str, actor: &str, expires_at: Option<i64>) -> StoredAccessToken {
    StoredAccessToken {
        id: id.to_owned(),
        info: DataHubAccessTokenInfo {
            name: "minted by DataHub".into(),
            actor_urn: user(actor),
            owner_urn: user(actor),
            created_at: now_ms(),
            expires_at,
            description: None,
            last_used_at: None,
        },
    }
}

#[tokio::test]
async fn pyjwt_minted_datahub_tokens_validate_here() {
    let Some(py) = PyJwt::find() else { return };
    for config in [config(), datahub_defaults()] {
        let key = config.expose_signing_key().to_owned();
        let salt = config.expose_salt().to_owned();
        let f = fixture_now(config);
        let exp = f.clock.now_ms() / 1000 + 3600;
        let with_salt = |mut request: Value| {
            request["salt"] = json!(salt);
            request
        };
        let personal = datahub_claims("2", "PERSONAL", "bob", Some(exp));
        let minted = mint_all(
            &py,
            &[
                with_salt(mint(&key, &personal, false)),
                with_salt(mint(&key, &personal, true)),
                // DataHub's never-expiring token: no exp claim.
                with_salt(mint(&key, &datahub_claims("2", "PERSONAL", "alice", None), false)),
                // DataHub's stateless session token (version 1).
                mint(&key, &datahub_claims("1", "SESSION", "alice", Some(exp)), false),
                // Newer DataHub's service account token.
                mint(
                    &key,
                    &datahub_claims("1", "SERVICE_ACCOUNT", "ingestion", Some(exp)),
                    true,
                ),
            ],
        );
        let [plain, typed, forever, session, service_account] = <[Minted; 5]>::try_from(minted).ok().unwrap();

        for (typ, minted) in [(false, &plain), (true, &typed)] {
            let (token, id) = (minted.token.as_str(), minted.id.as_deref().unwrap());
            let header = token.split('.').next().unwrap();
            if typ {
                assert_ne!(header, DATAHUB_HEADER_B64, "PyJWT's default header has typ");
            } else {
                assert_eq!(
                    header, DATAHUB_HEADER_B64,
                    "header is exactly {{\"alg\":\"HS256\"}}"
                );
            }
            assert_eq!(f.service.codec().token_id(token), id);

            // Genuine, but DataHub's record is not in our store: revoked.
            let err = f.service.validate_access_token(token).await.unwrap_err();
            assert!(matches!(err, Error::Revoked), "typ={typ}: {err:?}");

            // With the record DataHub wrote (shared store), it validates.
            f.store
                .insert(datahub_record(id, BOB, Some(exp * 1000)))
                .await
                .unwrap();
            let validated = f.service.validate_access_token(token).await.unwrap();
            assert_eq!(validated.actor, user(BOB));
            assert_eq!(validated.token_id.as_deref(), Some(id));
            assert_eq!(validated.claims.exp(), Some(exp));
            assert_eq!(validated.claims.iss(), Some("datahub-metadata-service"));

            // The manager can look it up; its owner can revoke it here.
            let metadata = f
                .service
                .get_access_token_metadata(&user(MANAGER), token)
                .await
                .unwrap();
            assert_eq!(metadata.id, id);
            f.service.revoke_access_token(&user(BOB), id).await.unwrap();
            assert!(matches!(
                f.service.validate_access_token(token).await,
                Err(Error::Revoked)
            ));
        }

        let id = forever.id.as_deref().unwrap();
        f.store.insert(datahub_record(id, ALICE, None)).await.unwrap();
        let validated = f.service.validate_access_token(&forever.token).await.unwrap();
        assert_eq!(validated.claims.exp(), None);
        assert_eq!(validated.token_id.as_deref(), Some(id));

        let validated = f.service.validate_access_token(&session.token).await.unwrap();
        assert_eq!(validated.token_id, None, "version 1 tokens are not looked up");
        assert_eq!(validated.actor, user(ALICE));

        let validated = f
            .service
            .validate_access_token(&service_account.token)
            .await
            .unwrap();
        assert_eq!(validated.actor, user("urn:li:corpuser:ingestion"));
    }
}

#[tokio::test]
async fn expired_pyjwt_token_is_deleted_here() {
    let Some(py) = PyJwt::find() else { return };
    let f = fixture_now(config());
    let exp = f.clock.now_ms() / 1000 - 10;
    let claims = datahub_claims("2", "PERSONAL", "bob", Some(exp));
    let minted = mint_all(&py, &[mint(SIGNING_KEY, &claims, false)]);
    let token = minted[0].token.as_str();
    let id = f.service.codec().token_id(token);
    f.store
        .insert(datahub_record(&id, BOB, Some(exp * 1000)))
        .await
        .unwrap();
    let err = f.service.validate_access_token(token).await.unwrap_err();
    assert!(matches!(err, Error::Expired), "{err:?}");
    assert!(
        !f.store.contains(&id).await.unwrap(),
        "the expired record was kept"
    );
}

#[tokio::test]
async fn pyjwt_minted_bad_tokens_are_refused_here() {
    let Some(py) = PyJwt::find() else { return };
    let f = fixture_now(config());
    let exp = f.clock.now_ms() / 1000 + 3600;
    let good = datahub_claims("2", "PERSONAL", "bob", Some(exp));
    let mut no_actor = good.clone();
    no_actor.as_object_mut().unwrap().remove("actorId");
    let mut group_actor = good.clone();
    group_actor["actorType"] = json!("GROUP");
    let cases = [
        (
            json!({"op": "mint", "key": "another-key-that-is-long-enough-for-hs256",
                   "claims": good, "typ": false}),
            "invalid signature",
        ),
        (
            json!({"op": "mint", "key": "k".repeat(64), "claims": good, "typ": true, "alg": "HS512"}),
            "\"HS512\" is not accepted",
        ),
        (
            json!({"op": "mint", "key": SIGNING_KEY, "claims": good, "typ": true, "alg": "HS384"}),
            "\"HS384\" is not accepted",
        ),
        (
            json!({"op": "mint", "key": null, "claims": good, "typ": true, "alg": "none"}),
            "\"none\" is not accepted",
        ),
        (mint(SIGNING_KEY, &no_actor, false), "missing claim actorId"),
        (mint(SIGNING_KEY, &group_actor, false), "unsupported actorType"),
        (
            mint(
                SIGNING_KEY,
                &datahub_claims("3", "PERSONAL", "bob", Some(exp)),
                false,
            ),
            "unsupported token version",
        ),
    ];
    let requests: Vec<Value> = cases.iter().map(|(r, _)| r.clone()).collect();
    for ((_, expected), minted) in cases.iter().zip(mint_all(&py, &requests)) {
        let err = f.service.validate_access_token(&minted.token).await.unwrap_err();
        assert!(matches!(err, Error::InvalidToken(_)), "{err:?}");
        assert!(
            err.to_string().contains(expected),
            "expected {expected:?} in {err}"
        );
    }
    assert!(f.store.is_empty());
}
