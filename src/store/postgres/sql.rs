//! Listing queries translated to SQL: filters become `WHERE` clauses with
//! array parameters, DataHub's order becomes `ORDER BY`, and the page and
//! its total come from one statement (one snapshot) in one round trip.

use sqlx::postgres::Postgres;
use sqlx::QueryBuilder;

use crate::store::{Condition, Filter, FilterValues, ListQuery, TokenField};

/// The stored columns, in the order rows are decoded.
pub(super) const COLUMNS: &str =
    "id, name, actor_urn, owner_urn, created_at, expires_at, description, last_used_at";

/// DataHub's listing order; every index ends in it.
pub(super) const ORDER: &str = "expires_at DESC NULLS LAST, created_at DESC, id";

fn column(field: TokenField) -> &'static str {
    match field {
        TokenField::Name => "name",
        TokenField::ActorUrn => "actor_urn",
        TokenField::OwnerUrn => "owner_urn",
        TokenField::CreatedAt => "created_at",
        TokenField::ExpiresAt => "expires_at",
        TokenField::Description => "description",
        TokenField::LastUsedAt => "last_used_at",
    }
}

/// `SELECT total, <columns>`: one row per token of the page, or a single
/// row with NULL columns when the page is empty; `total` in every row.
/// `prefix` goes first (`EXPLAIN `, or nothing).
pub(super) fn list(prefix: &str, table: &str, query: &ListQuery) -> QueryBuilder<'static, Postgres> {
    let mut sql = QueryBuilder::new(prefix);
    sql.push("SELECT matching.total, page.* FROM (SELECT count(*) AS total FROM ");
    sql.push(table);
    push_where(&mut sql, &query.filters);
    sql.push(") AS matching LEFT JOIN LATERAL (SELECT ");
    sql.push(COLUMNS).push(" FROM ").push(table);
    push_where(&mut sql, &query.filters);
    sql.push(" ORDER BY ").push(ORDER);
    sql.push(" LIMIT ")
        .push_bind(i64::try_from(query.count).unwrap_or(i64::MAX));
    sql.push(" OFFSET ")
        .push_bind(i64::try_from(query.start).unwrap_or(i64::MAX));
    sql.push(") AS page ON TRUE ORDER BY ");
    sql.push("page.expires_at DESC NULLS LAST, page.created_at DESC, page.id");
    sql
}

fn push_where(sql: &mut QueryBuilder<'static, Postgres>, filters: &[Filter]) {
    for (i, filter) in filters.iter().enumerate() {
        sql.push(if i == 0 { " WHERE " } else { " AND " });
        push_filter(sql, filter);
    }
}

/// One filter. An absent value (NULL) matches no condition, so the plain
/// form may yield NULL (false in `WHERE`), and the negated form is
/// `IS NOT TRUE`, which selects the NULLs too, exactly as `Filter::matches`.
fn push_filter(sql: &mut QueryBuilder<'static, Postgres>, filter: &Filter) {
    let col = column(filter.field());
    sql.push("(");
    if filter.negated() {
        sql.push("(");
    }
    match (filter.values(), filter.condition()) {
        (_, Condition::Exists) => {
            sql.push(col).push(" IS NOT NULL");
        }
        (FilterValues::Text(values), condition) => {
            // PostgreSQL text cannot hold NUL, so such a value matches nothing.
            let values: Vec<String> = values.iter().filter(|v| !v.contains('\0')).cloned().collect();
            match (condition, values.as_slice()) {
                (_, []) => {
                    sql.push("FALSE");
                }
                // A single value keeps the owner/actor indexes' order usable.
                (Condition::Equal | Condition::In, [one]) => {
                    sql.push(col).push(" = ").push_bind(one.clone());
                }
                (Condition::Equal | Condition::In, _) => {
                    sql.push(col).push(" = ANY(").push_bind(values).push(")");
                }
                (condition, _) => {
                    let test = match condition {
                        Condition::Contain => format!("strpos({col}, v) > 0"),
                        Condition::StartWith => format!("starts_with({col}, v)"),
                        _ => format!("right({col}, length(v)) = v"),
                    };
                    sql.push("EXISTS (SELECT 1 FROM unnest(")
                        .push_bind(values)
                        .push(format!("::text[]) AS value(v) WHERE {test})"));
                }
            }
        }
        (FilterValues::Millis(values), condition) => {
            let op = match condition {
                Condition::GreaterThan => ">",
                Condition::GreaterThanOrEqualTo => ">=",
                Condition::LessThan => "<",
                Condition::LessThanOrEqualTo => "<=",
                _ => "=",
            };
            match values.as_slice() {
                [one] => {
                    sql.push(col).push(format!(" {op} ")).push_bind(*one);
                }
                _ => {
                    sql.push(col)
                        .push(format!(" {op} ANY("))
                        .push_bind(values.clone())
                        .push(")");
                }
            }
        }
    }
    if filter.negated() {
        sql.push(") IS NOT TRUE");
    }
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(field: TokenField, condition: Condition, values: &[&str], negated: bool) -> Filter {
        Filter::new(
            field,
            condition,
            values.iter().map(|v| v.to_string()).collect(),
            negated,
        )
        .unwrap()
    }

    #[test]
    fn filters_become_parameterized_sql() {
        let query = ListQuery {
            filters: vec![
                filter(
                    TokenField::OwnerUrn,
                    Condition::Equal,
                    &["urn:li:corpuser:a'; drop"],
                    false,
                ),
                filter(TokenField::Name, Condition::Contain, &["x", "y"], true),
                filter(TokenField::ExpiresAt, Condition::LessThan, &["5", "7"], false),
                filter(TokenField::Description, Condition::Exists, &[], true),
                filter(TokenField::LastUsedAt, Condition::LessThan, &["9"], false),
            ],
            start: 0,
            count: 20,
        };
        let sql = list("", "\"s\".\"t\"", &query).into_sql();
        assert!(!sql.contains("drop"), "values are bound, never inlined: {sql}");
        assert!(sql.contains("(owner_urn = $1)"), "{sql}");
        assert!(sql.contains("((EXISTS (SELECT 1 FROM unnest($2::text[]) AS value(v) WHERE strpos(name, v) > 0)) IS NOT TRUE)"), "{sql}");
        assert!(sql.contains("(expires_at < ANY($3))"), "{sql}");
        assert!(sql.contains("((description IS NOT NULL) IS NOT TRUE)"), "{sql}");
        assert!(sql.contains("(last_used_at < $4)"), "{sql}");
        assert!(
            sql.contains("LIMIT $9 OFFSET $10"),
            "the filters are bound twice: {sql}"
        );
    }

    #[test]
    fn nul_values_match_nothing() {
        let query = ListQuery {
            filters: vec![filter(TokenField::Name, Condition::Equal, &["a\0b"], false)],
            start: 0,
            count: 20,
        };
        assert!(list("", "t", &query).into_sql().contains("(FALSE)"));
    }
}
