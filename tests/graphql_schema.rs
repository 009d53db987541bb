//! The schema matches DataHub's `auth.graphql` (spec section 8) and reports
//! errors in DataHub's shape. Runs the schema in-process (no HTTP).

mod support_store;

use std::sync::Arc;

use async_graphql::{Request, Variables};
use datahub_access_tokens::graphql::{
    schema, schema_builder, AccessTokenSchema, Caller, MAX_QUERY_DEPTH, MAX_QUERY_FIELDS,
};
use datahub_access_tokens::store::MAX_COUNT;
use datahub_access_tokens::{
    DataHubTokenService, DurationPolicy, MemoryTokenStore, Policies, TokenServiceConfig, Urn,
    UNAUTHORIZED_MESSAGE,
};
use serde_json::{json, Value};
use support_store::{BrokenStore, SECRET_DETAILS};

fn user(id: &str) -> Urn {
    Urn::corp_user(id).unwrap()
}

fn memory_schema() -> AccessTokenSchema {
    schema(Arc::new(DataHubTokenService::new(
        TokenServiceConfig::generate().unwrap(),
        MemoryTokenStore::new(),
        Policies::datahub_defaults(),
    )))
}

/// Runs `query` as `caller`; returns the response as JSON.
async fn run(schema: &AccessTokenSchema, caller: &str, query: &str, variables: Value) -> Value {
    let request = Request::new(query)
        .variables(Variables::from_json(variables))
        .data(Caller(user(caller)));
    serde_json::to_value(schema.execute(request).await).unwrap()
}

/// The SDL without descriptions or blank lines, whitespace collapsed.
fn bare_sdl(schema: &AccessTokenSchema) -> String {
    let sdl = schema.sdl();
    let mut out = Vec::new();
    let mut in_description = false;
    for line in sdl.lines().map(str::trim) {
        if line.starts_with("\"\"\"") {
            // `"""text"""` on one line, or the start or end of a block.
            if !(line.len() > 3 && line.ends_with("\"\"\"")) {
                in_description = !in_description;
            }
            continue;
        }
        if !in_description && !line.is_empty() {
            out.push(line);
        }
    }
    out.join(" ")
}

#[test]
fn the_schema_is_datahubs_auth_graphql() {
    let sdl = bare_sdl(&memory_schema());
    for expected in [
        "type Mutation { createAccessToken(input: CreateAccessTokenInput!): AccessToken \
         revokeAccessToken(tokenId: String!): Boolean! \
         rotateAccessToken(tokenId: String!, duration: AccessTokenDuration, durationIso: String): AccessToken }",
        "type Query { listAccessTokens(input: ListAccessTokenInput!): ListAccessTokenResult! \
         getAccessTokenMetadata(token: String!): AccessTokenMetadata! }",
        "input CreateAccessTokenInput { type: AccessTokenType! actorUrn: String! \
         duration: AccessTokenDuration durationIso: String name: String! description: String }",
        "type AccessToken { accessToken: String! metadata: AccessTokenMetadata }",
        "input ListAccessTokenInput { start: Int count: Int filters: [FacetFilterInput!] }",
        "type ListAccessTokenResult { start: Int! count: Int! total: Int! tokens: [AccessTokenMetadata!]! }",
        "type AccessTokenMetadata { urn: String! type: EntityType! id: String! name: String! \
         description: String actorUrn: String! ownerUrn: String! createdAt: Long! expiresAt: Long \
         lastUsedAt: Long }",
        "input FacetFilterInput { field: String! value: String values: [String!] negated: Boolean \
         condition: FilterOperator }",
        "enum AccessTokenDuration { ONE_HOUR ONE_DAY ONE_WEEK ONE_MONTH THREE_MONTHS SIX_MONTHS ONE_YEAR NO_EXPIRY }",
        "enum AccessTokenType { PERSONAL }",
        "enum EntityType { ACCESS_TOKEN }",
        "enum FilterOperator { CONTAIN EQUAL IEQUAL IN EXISTS GREATER_THAN GREATER_THAN_OR_EQUAL_TO \
         LESS_THAN LESS_THAN_OR_EQUAL_TO START_WITH END_WITH DESCENDANTS_INCL ANCESTORS_INCL RELATED_INCL }",
        "scalar Long",
        "schema { query: Query mutation: Mutation }",
    ] {
        let expected = expected.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(sdl.contains(&expected), "missing `{expected}` in\n{sdl}");
    }
}

#[tokio::test]
async fn create_list_get_and_revoke_with_long_times() {
    let schema = memory_schema();
    let created = run(
        &schema,
        "alice",
        r#"mutation($input: CreateAccessTokenInput!) { createAccessToken(input: $input) {
             accessToken metadata { urn type id name description actorUrn ownerUrn createdAt expiresAt } } }"#,
        json!({"input": {"type": "PERSONAL", "actorUrn": "urn:li:corpuser:alice", "durationIso": "P30D",
                         "name": "ci", "description": "for CI"}}),
    )
    .await;
    assert!(created.get("errors").is_none(), "{created}");
    let token = &created["data"]["createAccessToken"];
    let metadata = &token["metadata"];
    let id = metadata["id"].as_str().unwrap();
    assert_eq!(metadata["urn"], format!("urn:li:dataHubAccessToken:{id}"));
    assert_eq!(metadata["type"], "ACCESS_TOKEN");
    assert_eq!(
        (&metadata["actorUrn"], &metadata["ownerUrn"]),
        (&json!("urn:li:corpuser:alice"), &json!("urn:li:corpuser:alice"))
    );
    let created_at = metadata["createdAt"]
        .as_i64()
        .expect("createdAt is a JSON number");
    assert_eq!(
        metadata["expiresAt"].as_i64(),
        Some(created_at + 30 * 24 * 3600 * 1000)
    );

    let query = r#"{ listAccessTokens(input: {filters: [{field: "ownerUrn", values: ["urn:li:corpuser:alice"]}]}) {
                     start count total tokens { id name } } }"#;
    let listed = run(&schema, "alice", query, json!({})).await;
    assert_eq!(
        listed["data"]["listAccessTokens"],
        json!({"start": 0, "count": 1, "total": 1, "tokens": [{"id": id, "name": "ci"}]})
    );

    let query = "query($t: String!) { getAccessTokenMetadata(token: $t) { id createdAt } }";
    let got = run(&schema, "datahub", query, json!({"t": token["accessToken"]})).await;
    assert_eq!(
        got["data"]["getAccessTokenMetadata"],
        json!({"id": id, "createdAt": created_at})
    );

    // DataHub's cleanup job lists by expiry with an unquoted enum condition.
    let query = r#"{ listAccessTokens(input: {filters: [{field: "expiresAt", values: ["99999999999999"],
                     condition: LESS_THAN}]}) { total } }"#;
    assert_eq!(
        run(&schema, "datahub", query, json!({})).await["data"]["listAccessTokens"]["total"],
        1
    );

    let revoke = "mutation($id: String!) { revokeAccessToken(tokenId: $id) }";
    let revoked = run(&schema, "alice", revoke, json!({"id": id})).await;
    assert_eq!(revoked, json!({"data": {"revokeAccessToken": true}}));
}

#[tokio::test]
async fn every_duration_sets_its_lifetime() {
    // Never-expiring tokens allowed, so every value can be created.
    let config = TokenServiceConfig::generate()
        .unwrap()
        .with_duration_policy(DurationPolicy::parse("PT1H,P1D,P7D,P30D,P90D,P180D,P365D", true).unwrap());
    let schema = schema(Arc::new(DataHubTokenService::new(
        config,
        MemoryTokenStore::new(),
        Policies::datahub_defaults(),
    )));
    let create = "mutation($input: CreateAccessTokenInput!) { createAccessToken(input: $input) \
                  { metadata { createdAt expiresAt } } }";
    for (duration, lifetime) in [
        ("ONE_HOUR", Some(3_600_000_i64)),
        ("ONE_DAY", Some(86_400_000)),
        ("ONE_WEEK", Some(604_800_000)),
        ("ONE_MONTH", Some(2_592_000_000)),
        ("THREE_MONTHS", Some(7_776_000_000)),
        ("SIX_MONTHS", Some(15_552_000_000)),
        ("ONE_YEAR", Some(31_536_000_000)),
        ("NO_EXPIRY", None),
    ] {
        let input = json!({"input": {"type": "PERSONAL", "actorUrn": "urn:li:corpuser:alice",
                                     "duration": duration, "name": duration}});
        let created = run(&schema, "alice", create, input).await;
        let metadata = &created["data"]["createAccessToken"]["metadata"];
        let created_at = metadata["createdAt"]
            .as_i64()
            .unwrap_or_else(|| panic!("{created}"));
        let expires_at = metadata["expiresAt"].as_i64();
        assert_eq!(
            expires_at.map(|at| at - created_at),
            lifetime,
            "{duration}: {created}"
        );
    }
}

#[tokio::test]
async fn every_filter_operator_selects_what_it_names() {
    let schema = memory_schema();
    // Names and lifetimes chosen so each operator selects a different set.
    let create = "mutation($input: CreateAccessTokenInput!) { createAccessToken(input: $input) \
                  { metadata { expiresAt } } }";
    let mut expiry = std::collections::HashMap::new();
    for (name, duration, description) in [
        ("ab", "ONE_HOUR", None),
        ("abc", "ONE_DAY", None),
        ("cab", "ONE_WEEK", None),
        ("xyz", "ONE_MONTH", Some("described")),
    ] {
        let input = json!({"input": {"type": "PERSONAL", "actorUrn": "urn:li:corpuser:datahub",
                                     "duration": duration, "name": name, "description": description}});
        let created = run(&schema, "datahub", create, input).await;
        let at = created["data"]["createAccessToken"]["metadata"]["expiresAt"].clone();
        expiry.insert(
            name,
            at.as_i64().unwrap_or_else(|| panic!("{created}")).to_string(),
        );
    }
    let abc = expiry["abc"].as_str();
    let list =
        "query($f: FacetFilterInput!) { listAccessTokens(input: {filters: [$f]}) { tokens { name } } }";
    for (field, condition, values, expected) in [
        ("name", "EQUAL", vec!["ab"], vec!["ab"]),
        ("name", "IN", vec!["ab", "xyz"], vec!["ab", "xyz"]),
        ("name", "CONTAIN", vec!["ab"], vec!["ab", "abc", "cab"]),
        ("name", "START_WITH", vec!["ab"], vec!["ab", "abc"]),
        ("name", "END_WITH", vec!["ab"], vec!["ab", "cab"]),
        ("description", "EXISTS", vec![], vec!["xyz"]),
        ("expiresAt", "GREATER_THAN", vec![abc], vec!["cab", "xyz"]),
        (
            "expiresAt",
            "GREATER_THAN_OR_EQUAL_TO",
            vec![abc],
            vec!["abc", "cab", "xyz"],
        ),
        ("expiresAt", "LESS_THAN", vec![abc], vec!["ab"]),
        ("expiresAt", "LESS_THAN_OR_EQUAL_TO", vec![abc], vec!["ab", "abc"]),
    ] {
        let filter = json!({"f": {"field": field, "condition": condition, "values": values}});
        let listed = run(&schema, "datahub", list, filter).await;
        let tokens = listed["data"]["listAccessTokens"]["tokens"]
            .as_array()
            .unwrap_or_else(|| panic!("{condition}: {listed}"));
        let mut names: Vec<_> = tokens.iter().map(|t| t["name"].as_str().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(names, expected, "{field} {condition} {values:?}");
    }
}

fn first_error(response: &Value) -> (&str, i64, &str) {
    let error = &response["errors"][0];
    (
        error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {response}")),
        error["extensions"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no code in {response}")),
        error["extensions"]["type"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn denied_operations_are_403_unauthorized_with_datahubs_message() {
    let schema = memory_schema();
    let for_bob = r#"mutation { createAccessToken(input: {type: PERSONAL, actorUrn: "urn:li:corpuser:bob",
                     duration: ONE_HOUR, name: "x"}) { accessToken } }"#;
    let response = run(&schema, "alice", for_bob, json!({})).await;
    assert_eq!(
        first_error(&response),
        (UNAUTHORIZED_MESSAGE, 403, "UNAUTHORIZED")
    );
    assert_eq!(response["errors"][0]["path"], json!(["createAccessToken"]));
    assert_eq!(response["data"], json!({"createAccessToken": null}));

    let list_all = "{ listAccessTokens(input: {start: 0, count: 100, filters: []}) { total } }";
    let response = run(&schema, "alice", list_all, json!({})).await;
    assert_eq!(
        first_error(&response),
        (UNAUTHORIZED_MESSAGE, 403, "UNAUTHORIZED")
    );
    assert_eq!(response["data"], Value::Null);

    let response = run(
        &schema,
        "alice",
        r#"{ getAccessTokenMetadata(token: "x") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        first_error(&response),
        (UNAUTHORIZED_MESSAGE, 403, "UNAUTHORIZED")
    );
}

#[tokio::test]
async fn bad_input_is_400_bad_request_naming_the_problem() {
    let schema = memory_schema();
    let cases = [
        (
            r#"mutation { createAccessToken(input: {type: PERSONAL, actorUrn: "urn:li:corpuser:alice",
               duration: NO_EXPIRY, name: "x"}) { accessToken } }"#,
            "PT1H",
        ),
        (
            r#"mutation { createAccessToken(input: {type: PERSONAL, actorUrn: "alice", duration: ONE_DAY,
               name: "x"}) { accessToken } }"#,
            "actorUrn",
        ),
        (
            // Not in DataHub's AccessTokenType: a document error there, and here.
            r#"mutation { createAccessToken(input: {type: SESSION, actorUrn: "urn:li:corpuser:alice",
               duration: ONE_DAY, name: "x"}) { accessToken } }"#,
            "\"SESSION\"",
        ),
        (
            r#"mutation { revokeAccessToken(tokenId: "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=") }"#,
            "Access token no longer exists",
        ),
        (
            r#"mutation { revokeAccessToken(tokenId: "nope") }"#,
            "is not a token id",
        ),
        (
            r#"{ listAccessTokens(input: {filters: [{field: "colour", value: "red"}]}) { total } }"#,
            "colour",
        ),
        (
            r#"{ listAccessTokens(input: {filters: [{field: "name", value: "x", condition: IEQUAL}]}) { total } }"#,
            "IEQUAL",
        ),
        (r#"{ listAccessTokens(input: {count: -1}) { total } }"#, "count"),
    ];
    for (query, named) in cases {
        let response = run(&schema, "datahub", query, json!({})).await;
        let (message, code, kind) = first_error(&response);
        assert_eq!((code, kind), (400, "BAD_REQUEST"), "{response}");
        assert!(message.contains(named), "{message:?} should name {named:?}");
    }
}

#[tokio::test]
async fn a_mutation_without_the_mutation_keyword_says_to_use_it() {
    let schema = memory_schema();
    // The seed page's first example, as sent.
    let seed = "{ createAccessToken(input: { type: PERSONAL, actorUrn: \"urn:li:corpuser:datahub\", duration: ONE_HOUR, name: \"my personal token\" } ) { accessToken metadata { id name description} } }";
    let revoke = r#"query { revokeAccessToken(tokenId: "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=") }"#;
    let in_fragment = r#"{ ... on Query { ...F } } fragment F on Query { revokeAccessToken(tokenId: "x") }"#;
    for (query, field) in [
        (seed, "createAccessToken"),
        (revoke, "revokeAccessToken"),
        (in_fragment, "revokeAccessToken"),
    ] {
        let response = run(&schema, "datahub", query, json!({})).await;
        let (message, code, kind) = first_error(&response);
        assert_eq!((code, kind), (400, "BAD_REQUEST"));
        assert!(
            message.starts_with(&format!(
                "{field} is a mutation: send it with the `mutation` keyword"
            )),
            "{message}"
        );
        assert!(response["errors"][0]["locations"].is_array(), "{response}");
    }
    // Nothing ran.
    let all = "{ listAccessTokens(input: {}) { total } }";
    assert_eq!(
        run(&schema, "datahub", all, json!({})).await["data"]["listAccessTokens"]["total"],
        0
    );
}

#[tokio::test]
async fn every_mutation_field_is_covered_by_the_keyword_check() {
    // Kept in step with the schema: a new mutation field must get the message too.
    let schema = memory_schema();
    let sdl = bare_sdl(&schema);
    let mutation = sdl
        .split("type Mutation {")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    let fields: Vec<&str> = mutation
        .split_whitespace()
        .filter_map(|word| word.split_once('(').map(|(name, _)| name))
        .collect();
    assert_eq!(
        fields,
        ["createAccessToken", "revokeAccessToken", "rotateAccessToken"]
    );
    for field in fields {
        let response = run(&schema, "datahub", &format!("{{ {field} }}"), json!({})).await;
        assert!(
            first_error(&response)
                .0
                .starts_with(&format!("{field} is a mutation")),
            "{response}"
        );
    }
}

#[tokio::test]
async fn document_errors_are_400_bad_request() {
    let schema = memory_schema();
    let cases = [
        (
            "{ listAccessTokens(input: {}) { total ",
            json!({}),
            "Syntax error in the GraphQL query at line 1, column 39: expected selection",
        ),
        ("{ listAccessTokens(input: {}) { colour } }", json!({}), "colour"),
        (
            "{ listAccessTokens(input: {sort: 1}) { total } }",
            json!({}),
            "sort",
        ),
        (
            "query($n: Int) { listAccessTokens(input: {count: $n}) { total } }",
            json!({"n": "ten"}),
            "n",
        ),
        (
            "mutation($t: String!) { revokeAccessToken(tokenId: $t) }",
            json!({}),
            "t",
        ),
    ];
    for (query, variables, named) in cases {
        let response = run(&schema, "datahub", query, variables).await;
        let (message, code, kind) = first_error(&response);
        assert_eq!((code, kind), (400, "BAD_REQUEST"), "{response}");
        assert!(message.contains(named), "{message:?} should name {named:?}");
    }
    let introspection =
        "{ __schema { types { fields { type { ofType { ofType { ofType { name } } } } } } } }";
    assert!(run(&schema, "datahub", introspection, json!({}))
        .await
        .get("errors")
        .is_none());
    let too_deep = format!(
        "{{ {} }}",
        (0..MAX_QUERY_DEPTH + 1).fold("name".to_owned(), |inner, _| format!(
            "__schema {{ types {{ {inner} }} }}"
        ))
    );
    let response = run(&schema, "datahub", &too_deep, json!({})).await;
    assert_eq!(first_error(&response).1, 400, "{response}");
}

#[tokio::test]
async fn aliased_listings_cannot_multiply_the_work() {
    let schema = memory_schema();
    let page = |alias: String, count: usize| {
        format!(
            "{alias}: listAccessTokens(input: {{count: {count}}}) {{ start count total tokens \
             {{ urn type id name description actorUrn ownerUrn createdAt expiresAt lastUsedAt }} }}"
        )
    };
    // One page of the largest count, every field: allowed.
    let one = format!("{{ {} }}", page("a".into(), MAX_COUNT));
    let response = run(&schema, "datahub", &one, json!({})).await;
    assert!(response.get("errors").is_none(), "{response}");
    // Two such pages would answer with more than one largest page, and a
    // thousand default ones under aliases select too many fields: refused
    // before any runs.
    let thousand: Vec<String> = (0..1000).map(|n| page(format!("a{n}"), 20)).collect();
    for (query, reason) in [
        (
            format!(
                "{{ {} {} }}",
                page("a".into(), MAX_COUNT),
                page("b".into(), MAX_COUNT)
            ),
            "too complex",
        ),
        (
            format!("{{ {} }}", thousand.join(" ")),
            "fields once its fragments are spread out",
        ),
    ] {
        let response = run(&schema, "datahub", &query, json!({})).await;
        let (message, code, kind) = first_error(&response);
        assert_eq!((code, kind), (400, "BAD_REQUEST"), "{response}");
        assert!(message.contains(reason), "{message}");
        assert_eq!(response["data"], Value::Null, "{response}");
    }
}

/// graphql-js's (and so GraphiQL's) introspection query.
const INTROSPECTION_QUERY: &str = "
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType {
  kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}";

#[tokio::test]
async fn fragments_and_aliases_cannot_multiply_the_work() {
    let schema = memory_schema();
    // Each fragment spreads the one before twice: 1 KB of text, 2^30
    // fields once spread out. Refused at once, before the engine walks it.
    let fragments: String = (1..=30)
        .map(|n| format!("fragment F{n} on Query {{ ...F{m} ...F{m} }}\n", m = n - 1))
        .collect();
    let doubling = format!("query {{ ...F30 }}\nfragment F0 on Query {{ __typename }}\n{fragments}");
    let response = run(&schema, "datahub", &doubling, json!({})).await;
    let (message, code, kind) = first_error(&response);
    assert_eq!((code, kind), (400, "BAD_REQUEST"), "{response}");
    assert!(
        message.contains("the query selects 1073741824 fields once its fragments are spread out"),
        "{message}"
    );
    // Aliased introspection, which costs no complexity, is bounded alike.
    let schemas: String = (0..MAX_QUERY_FIELDS / 4 + 1)
        .map(|n| format!("s{n}: __schema {{ types {{ name fields {{ name }} }} }} "))
        .collect();
    let response = run(&schema, "datahub", &format!("{{ {schemas} }}"), json!({})).await;
    assert!(first_error(&response).0.contains("fields once"), "{response}");
    // The introspection query GraphiQL sends fits easily.
    let response = run(&schema, "datahub", INTROSPECTION_QUERY, json!({})).await;
    assert!(response.get("errors").is_none(), "{response}");
    assert!(response["data"]["__schema"]["types"].as_array().unwrap().len() > 10);
}

#[tokio::test]
async fn a_schema_from_the_builder_keeps_the_guards_and_takes_more() {
    let service = Arc::new(DataHubTokenService::new(
        TokenServiceConfig::generate().unwrap(),
        MemoryTokenStore::new(),
        Policies::datahub_defaults(),
    ));
    // A user's own, tighter limit on top.
    let schema = schema_builder(service).limit_depth(2).finish();
    let deep = "{ listAccessTokens(input: {}) { tokens { name } } }";
    let response = run(&schema, "datahub", deep, json!({})).await;
    assert!(first_error(&response).0.contains("nested too deep"), "{response}");
    // DataHub's errors and the field count are still there.
    let response = run(
        &schema,
        "datahub",
        "{ listAccessTokens(input: {}) { total } }",
        json!({}),
    )
    .await;
    assert_eq!(response["data"]["listAccessTokens"]["total"], 0, "{response}");
    let fragments: String = (1..=30)
        .map(|n| format!("fragment F{n} on Query {{ ...F{m} ...F{m} }}\n", m = n - 1))
        .collect();
    let doubling = format!("query {{ ...F30 }}\nfragment F0 on Query {{ __typename }}\n{fragments}");
    let response = run(&schema, "datahub", &doubling, json!({})).await;
    assert_eq!(first_error(&response).1, 400, "{response}");
    assert!(first_error(&response).0.contains("fields once"), "{response}");
}

#[tokio::test]
async fn storage_failures_are_500_server_error_without_details() {
    let schema = schema(Arc::new(DataHubTokenService::new(
        TokenServiceConfig::generate().unwrap(),
        BrokenStore,
        Policies::datahub_defaults(),
    )));
    let create = r#"mutation { createAccessToken(input: {type: PERSONAL, actorUrn: "urn:li:corpuser:datahub",
                    duration: ONE_HOUR, name: "x"}) { accessToken } }"#;
    for query in [create, "{ listAccessTokens(input: {}) { total } }"] {
        let response = run(&schema, "datahub", query, json!({})).await;
        assert_eq!(
            first_error(&response),
            ("An unknown error occurred.", 500, "SERVER_ERROR")
        );
        let text = response.to_string();
        assert!(!SECRET_DETAILS.iter().any(|s| text.contains(s)), "{text}");
    }
}

#[tokio::test]
async fn a_request_without_a_caller_is_refused() {
    let response = memory_schema()
        .execute(Request::new("{ listAccessTokens(input: {}) { total } }"))
        .await;
    let response = serde_json::to_value(response).unwrap();
    assert_eq!(first_error(&response).1, 401, "{response}");
}

#[tokio::test]
async fn rotate_access_token_replaces_the_token() {
    let schema = memory_schema();
    let created = run(
        &schema,
        "datahub",
        r#"mutation { createAccessToken(input: {type: PERSONAL, actorUrn: "urn:li:corpuser:datahub",
            duration: ONE_HOUR, name: "ci"}) { accessToken metadata { id name } } }"#,
        json!({}),
    )
    .await;
    let old_id = created["data"]["createAccessToken"]["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotate = "mutation($id: String!) { rotateAccessToken(tokenId: $id, duration: ONE_DAY) \
                  { accessToken metadata { id name expiresAt createdAt } } }";
    let rotated = run(&schema, "datahub", rotate, json!({ "id": old_id })).await;
    let metadata = &rotated["data"]["rotateAccessToken"]["metadata"];
    assert_eq!(metadata["name"], "ci", "{rotated}");
    assert_ne!(metadata["id"].as_str().unwrap(), old_id);
    let lifetime = metadata["expiresAt"].as_i64().unwrap() - metadata["createdAt"].as_i64().unwrap();
    assert_eq!(lifetime, 24 * 60 * 60 * 1000, "the given duration applies");
    let again = run(&schema, "datahub", rotate, json!({ "id": old_id })).await;
    assert_eq!(first_error(&again).0, "Access token no longer exists");
    let bob = run(&schema, "bob", rotate, json!({ "id": metadata["id"] })).await;
    assert_eq!(first_error(&bob).1, 403, "{bob}");
    // Nullable, as createAccessToken: the field is null, `data` is not.
    assert_eq!(bob["data"], json!({ "rotateAccessToken": null }), "{bob}");

    // durationIso, as in createAccessToken's input: a lifetime the policy
    // allows applies, one it does not is a 400, as on create.
    let rotate_iso = "mutation($id: String!, $iso: String) { \
                      rotateAccessToken(tokenId: $id, durationIso: $iso) { metadata { id expiresAt createdAt } } }";
    let one_week = json!({ "id": metadata["id"], "iso": "P1W" });
    let weekly = run(&schema, "datahub", rotate_iso, one_week).await;
    let weekly = &weekly["data"]["rotateAccessToken"]["metadata"];
    let lifetime = weekly["expiresAt"].as_i64().unwrap() - weekly["createdAt"].as_i64().unwrap();
    assert_eq!(lifetime, 7 * 24 * 60 * 60 * 1000, "{weekly}");
    let two_days = json!({ "id": weekly["id"], "iso": "P2D" });
    let refused = run(&schema, "datahub", rotate_iso, two_days).await;
    let (message, code, _) = first_error(&refused);
    assert_eq!(code, 400, "{refused}");
    assert!(message.contains("duration P2D is not allowed"), "{refused}");
    assert_eq!(refused["data"], json!({ "rotateAccessToken": null }), "{refused}");
    let both = "mutation($id: String!) { \
                rotateAccessToken(tokenId: $id, duration: ONE_DAY, durationIso: \"P1D\") { accessToken } }";
    let both = run(&schema, "datahub", both, json!({ "id": weekly["id"] })).await;
    assert_eq!(
        first_error(&both),
        (
            "give either duration or durationIso, not both",
            400,
            "BAD_REQUEST"
        ),
        "{both}"
    );
}
