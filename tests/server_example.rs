//! The `server` example, started as the README says: the seed page's curl
//! commands sent as written (with `--insecure-trust-actor-header`), the same
//! flows with Bearer tokens, persistence across restarts, policies files,
//! and the built binary's warning and clean shutdown.

#[path = "../examples/server.rs"]
#[allow(dead_code)] // the example's `main`
mod server;
mod support_http;

use std::path::Path;
use std::process::{Command, Stdio};

use clap::Parser as _;
use serde_json::{json, Value};
use support_http::{bootstrap_token, Http};

/// The seed page's four curl examples, line breaks restored, bodies byte for byte.
const SEED_CURL: &str = include_str!("data/seed_curl_examples.sh");

fn options(dir: &Path, extra: &[&str]) -> server::Options {
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    server::Options::try_parse_from(args).unwrap()
}

async fn start(dir: &Path, extra: &[&str]) -> server::Server {
    server::start(options(dir, extra)).await.unwrap()
}

/// Runs a curl command line (as a shell would) against `server` instead of
/// localhost:8080; returns (status, JSON body).
fn curl(command: &str, server: &server::Server) -> (u16, Value) {
    let command = command.replace("http://localhost:8080", &format!("http://{}", server.addr));
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{command} --silent --show-error --write-out '\\n%{{http_code}}'"
        ))
        .output()
        .expect("bash and curl must be installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status.parse().unwrap(), json)
}

fn seed_commands() -> Vec<&'static str> {
    let commands: Vec<&str> = SEED_CURL.trim().split("\n\n").collect();
    assert_eq!(commands.len(), 4);
    commands
}

/// The seed page's createAccessToken (with `mutation`), sent with a Bearer
/// token; returns the new token and its id.
async fn create_for_datahub(http: &Http, bearer: &str, name: &str) -> (String, String) {
    let create = format!(
        r#"mutation {{ createAccessToken(input: {{type: PERSONAL, actorUrn: "urn:li:corpuser:datahub", duration: ONE_HOUR, name: "{name}"}}) {{ accessToken metadata {{ id name description }} }} }}"#
    );
    let data = http.graphql(bearer, &create, json!({})).await.data();
    let field = |pointer: &str| data.pointer(pointer).and_then(Value::as_str).unwrap().to_owned();
    (
        field("/createAccessToken/accessToken"),
        field("/createAccessToken/metadata/id"),
    )
}

fn error_of(body: &Value) -> (&str, i64, &str) {
    let error = &body["errors"][0];
    (
        error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {body}")),
        error["extensions"]["code"].as_i64().unwrap(),
        error["extensions"]["type"].as_str().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_pages_curl_commands_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--insecure-trust-actor-header"]).await;
    let [create, list_own, list_all, revoke] = seed_commands().try_into().unwrap();
    let run = |command: String| {
        let server = &server;
        async move { tokio::task::block_in_place(|| curl(&command, server)) }
    };

    // 1. createAccessToken without `mutation`: a clear error, nothing created.
    let (status, body) = run(create.to_owned()).await;
    assert_eq!(status, 400, "{body}");
    let (message, code, kind) = error_of(&body);
    assert!(
        message.starts_with("createAccessToken is a mutation: send it with the `mutation` keyword"),
        "{message}"
    );
    assert_eq!((code, kind), (400, "BAD_REQUEST"));
    let (_, body) = run(list_all.to_owned()).await;
    assert_eq!(body["data"]["listAccessTokens"]["total"], 0, "{body}");

    // ... and with the keyword, as the page's GraphQL version has it: DataHub's answer.
    let fixed = create.replace(
        r#""query":"{ createAccessToken"#,
        r#""query":"mutation { createAccessToken"#,
    );
    let (status, body) = run(fixed).await;
    assert_eq!(status, 200, "{body}");
    let created = &body["data"]["createAccessToken"];
    let token = created["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let id = created["metadata"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 44);
    assert_eq!(
        created["metadata"],
        json!({"id": id, "name": "my personal token", "description": null})
    );

    // 2. and 3. list own tokens, list all tokens.
    let expected = json!({"data": {"listAccessTokens": {"start": 0, "count": 1, "total": 1, "tokens": [
        {"urn": format!("urn:li:dataHubAccessToken:{id}"), "id": id, "actorUrn": "urn:li:corpuser:datahub"}
    ]}}});
    assert_eq!(run(list_own.to_owned()).await, (200, expected.clone()));
    assert_eq!(run(list_all.to_owned()).await, (200, expected.clone()));

    // The new token works as a Bearer token on a protected route.
    let http = Http::new(server.addr);
    let bearer = format!("Bearer {token}");
    let reply = http.get("/api/whoami", &[("Authorization", &bearer)]).await;
    assert_eq!(
        reply.json(),
        json!({"actorUrn": "urn:li:corpuser:datahub", "tokenId": id})
    );

    // 4. revoke, with its extra `}`: a clear error, nothing revoked.
    let (status, body) = run(revoke.to_owned()).await;
    assert_eq!(status, 400, "{body}");
    let (message, code, _) = error_of(&body);
    assert!(
        message.starts_with(
            "The request body is not a valid GraphQL request: trailing characters at line 1 column"
        ),
        "{message}"
    );
    assert_eq!(code, 400);
    assert_eq!(run(list_all.to_owned()).await, (200, expected));

    // Without the extra `}`, the page's example id is DataHub's "no longer exists" ...
    let fixed = revoke.replace(r#""variables":{}}}'"#, r#""variables":{}}'"#);
    let (status, body) = run(fixed.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        error_of(&body),
        ("Access token no longer exists", 400, "BAD_REQUEST")
    );
    // ... and our token's id revokes it: `true`, and the token is dead at once.
    let ours = fixed.replace("HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=", &id);
    assert_eq!(
        run(ours).await,
        (200, json!({"data": {"revokeAccessToken": true}}))
    );
    assert_eq!(
        http.get("/api/whoami", &[("Authorization", &bearer)])
            .await
            .status,
        401
    );
    let (_, body) = run(list_all.to_owned()).await;
    assert_eq!(body["data"]["listAccessTokens"]["total"], 0);

    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_seed_pages_graphql_documents_work_with_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let http = Http::new(server.addr);
    let root = bootstrap_token(&server.service, "datahub").await;

    // The actor header means nothing without the flag.
    let reply = http
        .post_graphql(
            &[("X-DataHub-Actor", "urn:li:corpuser:datahub")],
            r#"{"query":"{ __typename }"}"#,
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_message().as_str()),
        (401, "Request is missing 'Authorization' header.")
    );

    let (token, id) = create_for_datahub(&http, &root, "my personal token").await;

    // The new token authenticates the next request, with the page's listing documents.
    let list_own = r#"{ listAccessTokens(input: {start: 0, count: 100, filters: [{field: "ownerUrn", value: "urn:li:corpuser:datahub"}]}) { start count total tokens { urn id actorUrn } } }"#;
    let list_all = r#"{ listAccessTokens(input: {start: 0, count: 100, filters: []}) { start count total tokens { urn id actorUrn } } }"#;
    for query in [list_own, list_all] {
        let data = http.graphql(&token, query, json!({})).await.data();
        // The bootstrap token (owned by datahub too) and the new one.
        assert_eq!(data["listAccessTokens"]["total"], 2, "{data}");
    }
    let revoke = format!(r#"mutation {{ revokeAccessToken(tokenId: "{id}") }}"#);
    assert_eq!(
        http.graphql(&token, &revoke, json!({})).await.data(),
        json!({"revokeAccessToken": true})
    );
    let reply = http.graphql(&token, list_own, json!({})).await;
    assert_eq!(
        (reply.status, reply.error_message().as_str()),
        (401, "Unable to verify the provided token.")
    );

    // The seed page's example id is not ours.
    let reply = http
        .graphql(
            &root,
            r#"mutation { revokeAccessToken(tokenId: "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=") }"#,
            json!({}),
        )
        .await;
    assert_eq!(reply.error_message(), "Access token no longer exists");

    assert_eq!(http.get("/health", &[]).await.json(), json!({"status": "ok"}));
    assert_eq!(http.get("/api/graphiql", &[]).await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tokens_key_and_salt_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let token = bootstrap_token(&server.service, "alice").await;
    server.stop().await.unwrap();

    let server = start(dir.path(), &[]).await;
    let reply = Http::new(server.addr)
        .get("/api/whoami", &[("Authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["actorUrn"], "urn:li:corpuser:alice");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_policies_file_decides_who_may_do_what() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.json");
    std::fs::write(
        &policies,
        r#"{"actors": {"urn:li:corpuser:ops": {"privileges": ["MANAGE_ACCESS_TOKENS"]}}}"#,
    )
    .unwrap();
    let data_dir = dir.path().join("data");
    let server = start(
        &data_dir,
        &[
            "--insecure-trust-actor-header",
            "--policies",
            policies.to_str().unwrap(),
        ],
    )
    .await;
    let http = Http::new(server.addr);
    let body = r#"{"query":"{ listAccessTokens(input: {}) { total } }"}"#;
    let ops = http
        .post_graphql(&[("X-DataHub-Actor", "urn:li:corpuser:ops")], body)
        .await;
    assert_eq!(ops.data(), json!({"listAccessTokens": {"total": 0}}));
    // Not even the root user: only what the file grants.
    let root = http
        .post_graphql(&[("X-DataHub-Actor", "urn:li:corpuser:datahub")], body)
        .await;
    assert_eq!(root.error_code(), 403);
    server.stop().await.unwrap();

    std::fs::write(&policies, r#"{"actors": {"ops": {}}}"#).unwrap();
    let error = server::start(options(&data_dir, &["--policies", policies.to_str().unwrap()]))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("invalid urn"), "{error}");
    let missing = dir.path().join("nope.json");
    let error = server::start(options(&data_dir, &["--policies", missing.to_str().unwrap()]))
        .await
        .err()
        .unwrap();
    assert!(
        error.to_string().starts_with("cannot read the policies file"),
        "{error}"
    );
    assert!(server::Options::try_parse_from(["server", "--listen", "localhost"]).is_err());
}

/// The built example binary (cargo test builds examples with the tests).
fn example_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("server");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --all-features` (or `cargo build --example server --all-features`)",
        path.display()
    );
    path
}

#[test]
fn the_binary_warns_when_trusting_the_actor_header_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(example_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure-trust-actor-header",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server exited: {seen}"
        );
        seen.push_str(&line);
        if let Some(rest) = line.split("serving DataHub's token API on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    assert!(seen.contains(server::INSECURE_WARNING), "{seen}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let health = runtime.block_on(Http::new(addr.parse().unwrap()).get("/health", &[]));
    assert_eq!(health.status, 200);

    // Ctrl-C: a clean stop, exit code 0, the store's lock released.
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    runtime.block_on(async {
        let again = start(dir.path(), &[]).await;
        again.stop().await.unwrap();
    });
}

/// Two servers on different ports over one PostgreSQL database, as issue 5
/// asks of `--postgres-url`: a token made on one works on the other, and
/// once revoked on one it fails on the other within the store's staleness
/// bound (1 s by default; normally milliseconds).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_postgres_database() {
    const URL_VAR: &str = "DATAHUB_TOKENS_TEST_POSTGRES_URL";
    let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) else {
        println!("NOT RUN: {URL_VAR} is not set (see README, \"PostgreSQL store\")");
        return;
    };
    let schema = format!(
        "dhat_servers_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    // One data directory: both read the key and salt generated there.
    let dir = tempfile::tempdir().unwrap();
    let shared = [
        "--postgres-url",
        url.as_str(),
        "--postgres-schema",
        schema.as_str(),
    ];
    let first = start(dir.path(), &shared).await;
    let second = start(dir.path(), &shared).await;
    assert_ne!(first.addr, second.addr);
    assert!(first.storage.contains(&schema), "{}", first.storage);

    let root = bootstrap_token(&first.service, "datahub").await;
    let (on_first, on_second) = (Http::new(first.addr), Http::new(second.addr));
    let (token, id) = create_for_datahub(&on_second, &root, "shared").await;

    let bearer = format!("Bearer {token}");
    let whoami = async |http: &Http| {
        http.get("/api/whoami", &[("Authorization", &bearer)])
            .await
            .status
    };
    assert_eq!(
        whoami(&on_first).await,
        200,
        "made on the second, works on the first"
    );
    let listed = on_first
        .graphql(&root, r#"{ listAccessTokens(input: {}) { total } }"#, json!({}))
        .await
        .data();
    assert_eq!(listed["listAccessTokens"]["total"], 2, "{listed}");

    let revoke = format!(r#"mutation {{ revokeAccessToken(tokenId: "{id}") }}"#);
    assert_eq!(
        on_second.graphql(&root, &revoke, json!({})).await.data(),
        json!({"revokeAccessToken": true})
    );
    let revoked = std::time::Instant::now();
    while whoami(&on_first).await != 401 {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(2),
            "revoked on the second server, still accepted by the first"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    first.stop().await.unwrap();
    second.stop().await.unwrap();
    let admin = datahub_access_tokens::store::postgres::PgPool::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}
