//! Shared by the HTTP tests: a real server on `127.0.0.1:0`, a plain hyper
//! client, and raw TCP for requests a client library would tidy up.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, MemoryTokenStore, Policies, Privilege,
    TokenService, TokenServiceConfig, Urn,
};

/// Serves `app` on a fresh loopback port until the test's runtime ends.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The first GraphQL error's message.
    pub fn error_message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.body))
            .to_owned()
    }

    /// The first GraphQL error's `extensions.code`.
    pub fn error_code(&self) -> i64 {
        self.json()["errors"][0]["extensions"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
    }

    /// The first GraphQL error's `extensions.type`.
    pub fn error_type(&self) -> String {
        self.json()["errors"][0]["extensions"]["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no error type in {}", self.body))
            .to_owned()
    }

    /// Asserts a GraphQL answer without errors and returns its `data`.
    pub fn data(&self) -> Value {
        let json = self.json();
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(json.get("errors").is_none(), "unexpected errors: {}", self.body);
        json["data"].clone()
    }
}

/// A keep-alive HTTP/1 client for one server.
#[derive(Clone)]
pub struct Http {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Http {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", path, headers, Bytes::new()).await
    }

    /// `POST /api/graphql` with a JSON body, as curl sends it.
    pub async fn post_graphql(&self, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", "/api/graphql", &all, body).await
    }

    /// Runs a GraphQL document with a Bearer token.
    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> Reply {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        let auth = format!("Bearer {token}");
        self.post_graphql(&[("Authorization", &auth)], body).await
    }

    /// Sends raw bytes (the request must say `Connection: close`); returns
    /// the status and the body.
    pub async fn raw(&self, request: &[u8]) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

pub fn user(id: &str) -> Urn {
    Urn::corp_user(id).unwrap()
}

/// The users of the authorization tests and their privileges: `datahub`
/// and `admin` manage, `alice` and `bob` generate, `reader` has nothing.
pub fn matrix_policies() -> Policies {
    Policies::none()
        .with_grant(user("datahub"), Privilege::ManageAccessTokens)
        .unwrap()
        .with_role_definition("Admin", &Privilege::ALL)
        .with_role_definition("Editor", &[Privilege::GeneratePersonalAccessTokens])
        .with_role_definition("Reader", &[])
        .with_role(user("admin"), "Admin")
        .unwrap()
        .with_role(user("alice"), "Editor")
        .unwrap()
        .with_role(user("bob"), "Editor")
        .unwrap()
        .with_role(user("reader"), "Reader")
        .unwrap()
}

pub fn memory_service(policies: Policies) -> Arc<dyn TokenService> {
    memory_service_with(TokenServiceConfig::generate().unwrap(), policies)
}

pub fn memory_service_with(config: TokenServiceConfig, policies: Policies) -> Arc<dyn TokenService> {
    Arc::new(DataHubTokenService::new(
        config,
        MemoryTokenStore::new(),
        policies,
    ))
}

/// A token for `actor` minted directly through the service (as a bootstrap
/// tool would), created by the root user.
pub async fn bootstrap_token(service: &Arc<dyn TokenService>, actor: &str) -> String {
    let input =
        CreateAccessTokenInput::personal(user(actor).as_str(), "bootstrap", AccessTokenDuration::OneDay);
    service
        .create_access_token(&user("datahub"), input)
        .await
        .unwrap()
        .expose_access_token()
        .to_owned()
}
