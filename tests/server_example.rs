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

    // 1. createAccessToken without `mutation`: a clear error (in a 200, as
    // DataHub answers a document that cannot run), nothing created.
    let (status, body) = run(create.to_owned()).await;
    assert_eq!(status, 200, "{body}");
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

    // 4. revoke, as the page writes it (one `}` too many, which DataHub
    // ignores): the page's example id is DataHub's "no longer exists" ...
    let (status, body) = run(revoke.to_owned()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        error_of(&body),
        ("Access token no longer exists", 400, "BAD_REQUEST")
    );
    assert_eq!(run(list_all.to_owned()).await, (200, expected));
    // ... with or without the extra `}` ...
    let fixed = revoke.replace(r#""variables":{}}}'"#, r#""variables":{}}'"#);
    assert_ne!(fixed, revoke);
    assert_eq!(run(fixed).await, (status, body));
    // ... and our token's id revokes it: `true`, and the token is dead at once.
    let ours = revoke.replace("HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=", &id);
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

/// The example binary, started on a free port over `dir`.
struct Binary {
    child: std::process::Child,
    stderr: std::io::BufReader<std::process::ChildStderr>,
    /// What it has printed so far.
    seen: String,
    addr: std::net::SocketAddr,
}

impl Binary {
    fn start(dir: &Path, extra: &[&str]) -> Binary {
        let mut child = Command::new(example_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut binary = Binary {
            child,
            stderr,
            seen: String::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = binary.read_until("serving DataHub's token API on http://");
        let rest = line
            .split("serving DataHub's token API on http://")
            .nth(1)
            .unwrap();
        binary.addr = rest.split('/').next().unwrap().parse().unwrap();
        binary
    }

    /// Reads stderr up to the line containing `wanted`; returns that line.
    fn read_until(&mut self, wanted: &str) -> String {
        use std::io::BufRead;
        loop {
            let mut line = String::new();
            assert!(
                self.stderr.read_line(&mut line).unwrap() > 0,
                "the server exited before printing {wanted:?}: {}",
                self.seen
            );
            self.seen.push_str(&line);
            if line.contains(wanted) {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to exit, for at most `limit` (then kills it
    /// and fails); returns its exit status and all it printed.
    fn exit_within(mut self, limit: std::time::Duration) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running {limit:?} after the signal: {}", self.seen);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        self.stderr.read_to_string(&mut self.seen).unwrap();
        (status, self.seen)
    }
}

/// A connection that sent half a request's headers and then fell silent
/// (hyper's header read timeout is 30 s: it stays open during these tests).
/// A whole request is then answered on a second connection: connections
/// are accepted in the order they were made, so the server has surely
/// accepted this one (one still in the listen backlog when the stop begins
/// is never served, and there would be nothing open to wait for).
fn stalled_request(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"POST /api/graphql HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut later = std::net::TcpStream::connect(addr).unwrap();
    later
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    later.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("\"ok\""), "{answer}");
    stream
}

/// The store's lock is released: the same data directory opens again.
fn assert_store_closed(dir: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let again = start(dir, &[]).await;
        again.stop().await.unwrap();
    });
}

/// Generous: how long a stop may take beyond the grace period before the
/// tests call the server hung.
const EXIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(20);

#[test]
fn the_binary_warns_when_trusting_the_actor_header_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::start(dir.path(), &["--insecure-trust-actor-header"]);
    assert!(binary.seen.contains(server::INSECURE_WARNING), "{}", binary.seen);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let health = runtime.block_on(Http::new(binary.addr).get("/health", &[]));
    assert_eq!(health.status, 200);

    // Ctrl-C: a clean stop, exit code 0, the store's lock released.
    binary.signal("INT");
    let (status, seen) = binary.exit_within(EXIT_MARGIN);
    assert!(status.success(), "{status}: {seen}");
    assert!(seen.contains("stopping"), "{seen}");
    assert_store_closed(dir.path());
}

/// The audit's case: a client that stops mid-request used to keep the
/// server running after Ctrl-C until the client went away, without the
/// last-used times flushed or the store closed.
#[test]
fn a_stalled_request_does_not_keep_the_binary_from_stopping_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::start(dir.path(), &["--grace-period", "1"]);
    let stalled = stalled_request(binary.addr);
    let idle = std::net::TcpStream::connect(binary.addr).unwrap();

    binary.signal("INT");
    let (status, seen) = binary.exit_within(EXIT_MARGIN);
    assert!(status.success(), "{status}: {seen}");
    assert!(seen.contains("stopping"), "{seen}");
    assert!(seen.contains("after the grace period"), "{seen}");
    drop((stalled, idle));
    assert_store_closed(dir.path());
}

#[test]
fn a_second_ctrl_c_stops_without_waiting_for_open_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = Binary::start(dir.path(), &["--grace-period", "3600"]);
    let stalled = stalled_request(binary.addr);

    binary.signal("INT");
    binary.read_until("stopping");
    binary.signal("INT");
    let (status, seen) = binary.exit_within(EXIT_MARGIN);
    assert!(status.success(), "{status}: {seen}");
    assert!(seen.contains("stopping now"), "{seen}");
    drop(stalled);
    assert_store_closed(dir.path());
}

/// What `docker stop` and systemd send: the same clean stop as Ctrl-C (it
/// used to kill the process without flushing last-used times).
#[cfg(unix)]
#[test]
fn the_binary_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::start(dir.path(), &[]);
    binary.signal("TERM");
    let (status, seen) = binary.exit_within(EXIT_MARGIN);
    assert!(status.success(), "{status}: {seen}");
    assert!(seen.contains("stopping"), "{seen}");
    assert_store_closed(dir.path());
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error_and_leaves_the_store_closed() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut options = options(dir.path(), &[]);
    options.listen = addr.parse().unwrap();
    let error = server::start(options).await.err().unwrap();
    assert!(
        error.to_string().starts_with(&format!("cannot listen on {addr}")),
        "{error}"
    );
    // Nothing holds the data directory.
    start(dir.path(), &[]).await.stop().await.unwrap();
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
