//! A schema extension that reports request errors in DataHub's shape and
//! explains a mutation sent without the `mutation` keyword.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Positioned, Request, Response, ServerError, ServerResult, Variables};

use super::errors::mark_request_error;
use super::{MAX_QUERY_DEPTH, MAX_QUERY_FIELDS};

/// The fields of the `Mutation` type (kept in step by a test).
pub(crate) const MUTATION_FIELDS: [&str; 3] = ["createAccessToken", "revokeAccessToken", "rotateAccessToken"];

/// Installs [`RequestErrors`] on a schema.
pub(crate) struct RequestErrorsFactory;

impl ExtensionFactory for RequestErrorsFactory {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestErrors)
    }
}

struct RequestErrors;

#[async_trait::async_trait]
impl Extension for RequestErrors {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // Parsed here once (the engine takes the parsed document), and
        // measured before any of the engine's walks: they spread fragments
        // without a memo, so a 1 KB document of fragments that each spread
        // the one before twice is 2^30 fields of work. A syntax error is
        // left for the engine to report.
        if let Ok(document) = request.parsed_query() {
            let fields = expanded_fields(document);
            if fields > MAX_QUERY_FIELDS {
                return Err(mark_request_error(ServerError::new(
                    format!(
                        "the query selects {fields} fields once its fragments are spread out; \
                         at most {MAX_QUERY_FIELDS} are allowed"
                    ),
                    None,
                )));
            }
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next
            .run(ctx, query, variables)
            .await
            .map_err(|e| mark_request_error(readable_syntax_error(e)))?;
        match mutation_in_query(&document) {
            Some(error) => Err(mark_request_error(error)),
            None => Ok(document),
        }
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        // Resolvers set their own codes; everything else async-graphql reports
        // (validation, variables, limits) is a problem with the request.
        response.errors = response
            .errors
            .into_iter()
            .map(|e| mark_request_error(readable_variable_error(e)))
            .collect();
        response
    }
}

/// The error for a query operation that selects a mutation field at its top
/// level (the seed page's `{ createAccessToken(...) }`), if any.
fn mutation_in_query(document: &ExecutableDocument) -> Option<ServerError> {
    document
        .operations
        .iter()
        .filter(|(_, op)| op.node.ty == OperationType::Query)
        .find_map(|(_, op)| find_mutation_field(document, &op.node.selection_set, &mut HashSet::new()))
        .map(|(name, pos)| {
            ServerError::new(
                format!(
                    "{name} is a mutation: send it with the `mutation` keyword, \
                     as in `mutation {{ {name}(...) {{ ... }} }}`, not inside a query `{{ ... }}`"
                ),
                Some(pos),
            )
        })
}

fn find_mutation_field<'d>(
    document: &'d ExecutableDocument,
    selection_set: &'d Positioned<SelectionSet>,
    seen_fragments: &mut HashSet<&'d str>,
) -> Option<(&'d str, async_graphql::Pos)> {
    selection_set.node.items.iter().find_map(|item| match &item.node {
        Selection::Field(field) => {
            let name = field.node.name.node.as_str();
            MUTATION_FIELDS.contains(&name).then_some((name, field.pos))
        }
        Selection::InlineFragment(fragment) => {
            find_mutation_field(document, &fragment.node.selection_set, seen_fragments)
        }
        Selection::FragmentSpread(spread) => {
            let name = spread.node.fragment_name.node.as_str();
            // Cyclic fragments are a validation error reported later; just stop here.
            if !seen_fragments.insert(name) {
                return None;
            }
            let fragment = document.fragments.get(&spread.node.fragment_name.node)?;
            find_mutation_field(document, &fragment.node.selection_set, seen_fragments)
        }
    })
}

/// Fields `document` selects with every fragment spread replaced by the
/// fragment, as the engine's checks and execution walk them: down to the
/// engine's recursion limit, below which it refuses the document anyway.
/// Memoized per fragment and depth, so linear in the document.
fn expanded_fields(document: &ExecutableDocument) -> usize {
    let mut memo = HashMap::new();
    document
        .operations
        .iter()
        .map(|(_, op)| selection_fields(document, &op.node.selection_set, 0, &mut memo))
        .fold(0, usize::saturating_add)
}

fn selection_fields<'d>(
    document: &'d ExecutableDocument,
    selection_set: &'d Positioned<SelectionSet>,
    depth: usize,
    memo: &mut HashMap<(&'d str, usize), usize>,
) -> usize {
    if depth > MAX_QUERY_DEPTH {
        return 0;
    }
    let fields = |set, memo: &mut _| selection_fields(document, set, depth + 1, memo);
    selection_set
        .node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => 1usize.saturating_add(fields(&field.node.selection_set, memo)),
            Selection::InlineFragment(fragment) => fields(&fragment.node.selection_set, memo),
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if let Some(&known) = memo.get(&(name.as_str(), depth)) {
                    return known;
                }
                let count = document
                    .fragments
                    .get(name)
                    .map_or(0, |fragment| fields(&fragment.node.selection_set, memo));
                memo.insert((name.as_str(), depth), count);
                count
            }
        })
        .fold(0, usize::saturating_add)
}

/// The parser's multi-line report (`--> 1:39 | ... = expected selection`)
/// as one line that says where and what was expected.
fn readable_syntax_error(error: ServerError) -> ServerError {
    let expected = error
        .message
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("= "))
        .unwrap_or(&error.message)
        .trim()
        .to_owned();
    let at = error
        .locations
        .first()
        .map(|pos| format!(" at line {}, column {}", pos.line, pos.column))
        .unwrap_or_default();
    ServerError {
        message: format!("Syntax error in the GraphQL query{at}: {expected}"),
        ..error
    }
}

/// async-graphql says "Variable t is not defined." when a declared non-null
/// variable has no value; say that.
fn readable_variable_error(error: ServerError) -> ServerError {
    let missing = error
        .message
        .strip_prefix("Variable ")
        .and_then(|rest| rest.strip_suffix(" is not defined."))
        .map(|name| format!("Variable ${name} is declared non-null but \"variables\" gives it no value."));
    match missing {
        Some(message) => ServerError { message, ..error },
        None => error,
    }
}
