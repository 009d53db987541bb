//! Where the store's table lives, its names, and the versioned migrations
//! that create it.

use ring::digest;
// `Executor::execute` rather than `RawSql::execute`: the latter's generic
// `async fn` makes this future fail the `Send` check.
use sqlx::{Executor as _, PgPool};

use crate::error::{Error, Result};

/// Longest table name: index, function and trigger names add up to 23 bytes
/// and PostgreSQL truncates identifiers at 63.
const MAX_TABLE_LEN: usize = 40;
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENT_LEN: usize = 63;

/// Deleting more rows than this in one statement tells listeners to drop
/// their whole cache instead of naming every id.
const NAMED_REMOVALS_MAX: usize = 1000;

/// Validated names of everything the store creates, already quoted for SQL.
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) schema: String,
    pub(super) table: String,
    /// `"schema"."table"`.
    pub(super) qualified: String,
    /// The `LISTEN`/`NOTIFY` channel (unquoted).
    pub(super) channel: String,
}

impl Names {
    pub(super) fn new(schema: &str, table: &str) -> Result<Self> {
        check_ident("schema", schema, MAX_IDENT_LEN)?;
        check_ident("table", table, MAX_TABLE_LEN)?;
        // Channels are per database, so two stores in one database must
        // differ by schema or table.
        let readable = format!("{schema}.{table}");
        let channel = if readable.len() <= MAX_IDENT_LEN {
            readable
        } else {
            let hash = digest::digest(&digest::SHA256, readable.as_bytes());
            let hex: String = hash.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("datahub_tokens_{hex}")
        };
        Ok(Names {
            schema: schema.to_owned(),
            table: table.to_owned(),
            qualified: format!("\"{schema}\".\"{table}\""),
            channel,
        })
    }

    /// A schema-qualified, quoted name for a companion object `<table>_<suffix>`.
    fn companion(&self, suffix: &str) -> String {
        format!("\"{}\".\"{}_{suffix}\"", self.schema, self.table)
    }

    /// The (unqualified, quoted) name of an index `<table>_<suffix>`.
    fn index(&self, suffix: &str) -> String {
        format!("\"{}_{suffix}\"", self.table)
    }

    /// Key of the advisory lock that serializes migrations of this table.
    fn lock_key(&self) -> i64 {
        lock_key(&format!("datahub-access-tokens:{}", self.qualified))
    }

    /// Key of the advisory lock that serializes creating the schema, which
    /// stores of other tables in it may be doing at the same time.
    fn schema_lock_key(&self) -> i64 {
        lock_key(&format!("datahub-access-tokens schema:\"{}\"", self.schema))
    }
}

fn lock_key(text: &str) -> i64 {
    let hash = digest::digest(&digest::SHA256, text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_ref()[..8]);
    i64::from_le_bytes(bytes)
}

fn check_ident(what: &str, name: &str, max_len: usize) -> Result<()> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed || name.len() > max_len {
        return Err(Error::Config(format!(
            "PostgreSQL {what} name {name:?} is not usable: it must be 1 to {max_len} characters of \
             lowercase ASCII letters, digits and _, not starting with a digit"
        )));
    }
    Ok(())
}

/// One schema change. Versions start at 1 and never change once released.
struct Migration {
    version: i32,
    description: &'static str,
    sql: fn(&Names) -> String,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "token table with indexes for listing, owner, actor and creation time",
        sql: create_table,
    },
    Migration {
        version: 2,
        description: "NOTIFY listeners of every removed token id",
        sql: create_notify_trigger,
    },
    Migration {
        version: 3,
        description: "lastUsedAt column and index; updates notify only when they change ids",
        sql: add_last_used,
    },
];

/// The version of the table layout this library creates and expects.
pub const LATEST_VERSION: i32 = 3;

fn create_table(n: &Names) -> String {
    let t = &n.qualified;
    // The listing order is expiresAt desc (absent last), createdAt desc, id;
    // `COLLATE "C"` makes id order byte order, as in Rust. Each index ends
    // in that order so a page is read straight off it.
    let order = "expires_at DESC NULLS LAST, created_at DESC, id";
    format!(
        r#"
        CREATE TABLE {t} (
            id          TEXT COLLATE "C" PRIMARY KEY,
            name        TEXT NOT NULL,
            actor_urn   TEXT NOT NULL,
            owner_urn   TEXT NOT NULL,
            created_at  BIGINT NOT NULL,
            expires_at  BIGINT,
            description TEXT
        );
        CREATE INDEX {listing} ON {t} ({order});
        CREATE INDEX {owner} ON {t} (owner_urn, {order});
        CREATE INDEX {actor} ON {t} (actor_urn, {order});
        CREATE INDEX {created} ON {t} (created_at);
        "#,
        listing = n.index("listing_idx"),
        owner = n.index("owner_idx"),
        actor = n.index("actor_idx"),
        created = n.index("created_idx"),
    )
}

/// A statement-level trigger sends the removed ids on the channel, in the
/// deleting transaction, so listeners hear of a removal exactly when it
/// commits, whoever made it (this store, another replica, or an operator's
/// `DELETE`). Payloads: a JSON array of ids, or `*` for "forget everything"
/// (truncate, huge purges, ids too long for one notification).
fn create_notify_trigger(n: &Names) -> String {
    let t = &n.qualified;
    let function = n.companion("notify_removed");
    format!(
        r#"
        {create_function}
        CREATE TRIGGER {delete_trigger} AFTER DELETE ON {t}
            REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}();
        CREATE TRIGGER {update_trigger} AFTER UPDATE ON {t}
            REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}();
        CREATE TRIGGER {truncate_trigger} AFTER TRUNCATE ON {t}
            FOR EACH STATEMENT EXECUTE FUNCTION {function}();
        "#,
        create_function = notify_removed_function(n, "CREATE FUNCTION"),
        delete_trigger = n.index("notify_delete"),
        update_trigger = n.index("notify_update"),
        truncate_trigger = n.index("notify_truncate"),
    )
}

/// The function behind the delete and truncate triggers, created with
/// `create` (`CREATE FUNCTION` or `CREATE OR REPLACE FUNCTION`).
fn notify_removed_function(n: &Names, create: &str) -> String {
    let function = n.companion("notify_removed");
    let channel = &n.channel;
    format!(
        r#"
        {create} {function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            removed bigint;
            payload text;
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('{channel}', '*');
                RETURN NULL;
            END IF;
            SELECT count(*) INTO removed FROM removed_rows;
            IF removed = 0 THEN
                RETURN NULL;
            END IF;
            IF removed > {NAMED_REMOVALS_MAX} THEN
                PERFORM pg_notify('{channel}', '*');
                RETURN NULL;
            END IF;
            FOR payload IN
                SELECT json_agg(id)::text
                FROM (SELECT id, (row_number() OVER ()) / 100 AS chunk FROM removed_rows) AS numbered
                GROUP BY chunk
            LOOP
                IF octet_length(payload) > 7900 THEN
                    PERFORM pg_notify('{channel}', '*');
                    RETURN NULL;
                END IF;
                PERFORM pg_notify('{channel}', payload);
            END LOOP;
            RETURN NULL;
        END
        $fn$;
        "#
    )
}

/// `last_used_at` is written often (once a minute per token in use), so
/// updates no longer tell listeners to drop the updated ids: only an update
/// that changes ids (never done by this store; an operator's `UPDATE ... SET
/// id`) does, and then every listener forgets everything.
fn add_last_used(n: &Names) -> String {
    let t = &n.qualified;
    let function = n.companion("notify_id_changed");
    format!(
        r#"
        ALTER TABLE {t} ADD COLUMN last_used_at BIGINT;
        CREATE INDEX {last_used} ON {t} (last_used_at);
        {create_function}
        DROP TRIGGER {update_trigger} ON {t};
        CREATE TRIGGER {update_trigger} AFTER UPDATE ON {t}
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {function}();
        "#,
        create_function = notify_id_changed_function(n, "CREATE FUNCTION"),
        last_used = n.index("last_used_idx"),
        update_trigger = n.index("notify_update"),
    )
}

/// The function behind the update trigger (see [`notify_removed_function`]).
fn notify_id_changed_function(n: &Names, create: &str) -> String {
    let function = n.companion("notify_id_changed");
    let channel = &n.channel;
    format!(
        r#"
        {create} {function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF EXISTS (SELECT id FROM old_rows EXCEPT SELECT id FROM new_rows) THEN
                PERFORM pg_notify('{channel}', '*');
            END IF;
            RETURN NULL;
        END
        $fn$;
        "#
    )
}

/// The trigger functions name their channel as a literal, written when they
/// were made. After `ALTER SCHEMA .. RENAME` (or a renamed table) they would
/// go on notifying the old channel while listeners, and the heartbeats that
/// prove them alive, use the new one: other replicas' revocations would go
/// unheard while the cache stayed trusted. So each open checks them, and
/// points them at this store's channel if they name another.
async fn repoint_notify_functions(tx: &mut sqlx::PgConnection, names: &Names) -> Result<bool, sqlx::Error> {
    let functions = [
        names.companion("notify_removed"),
        names.companion("notify_id_changed"),
    ];
    let elsewhere: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::text[]) AS f(name) \
         WHERE strpos(coalesce((SELECT prosrc FROM pg_proc WHERE oid = to_regproc(f.name)), ''), $2) = 0",
    )
    .bind(&functions[..])
    .bind(format!("pg_notify('{}'", names.channel))
    .fetch_one(&mut *tx)
    .await?;
    if elsewhere == 0 {
        return Ok(false);
    }
    let replace = [
        notify_removed_function(names, "CREATE OR REPLACE FUNCTION"),
        notify_id_changed_function(names, "CREATE OR REPLACE FUNCTION"),
    ]
    .concat();
    tx.execute(sqlx::raw_sql(&replace)).await?;
    Ok(true)
}

/// Brings the schema to [`LATEST_VERSION`], applying each missing migration
/// once, in order, in one transaction under an advisory lock, so replicas
/// starting together do not race and a failure leaves nothing half-made.
pub(super) async fn migrate(pool: &PgPool, names: &Names) -> Result<(), MigrateError> {
    // Read committed, so that the reads after the lock see what the
    // replica that held it committed.
    let mut tx = pool.begin_with(super::BEGIN_WRITE).await?;
    // "relation ... already exists, skipping" at every start after the
    // first is no news: sqlx would log each such notice.
    tx.execute("SET LOCAL client_min_messages = warning").await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(names.lock_key())
        .execute(&mut *tx)
        .await?;
    let schema_exists = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
    let exists = sqlx::query_scalar::<_, bool>(schema_exists).bind(&names.schema);
    if !exists.fetch_one(&mut *tx).await? {
        // Asked again under the schema's lock: a store of another table may
        // have created it meanwhile (it holds that lock until it commits).
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(names.schema_lock_key())
            .execute(&mut *tx)
            .await?;
        let exists = sqlx::query_scalar::<_, bool>(schema_exists).bind(&names.schema);
        if !exists.fetch_one(&mut *tx).await? {
            let create = format!("CREATE SCHEMA \"{}\"", names.schema);
            tx.execute(sqlx::raw_sql(&create)).await?;
        }
    }
    let versions = names.companion("migrations");
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {versions} (
            version     INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        )"
    );
    tx.execute(sqlx::raw_sql(&create)).await?;
    let current: i32 = sqlx::query_scalar(&format!("SELECT COALESCE(max(version), 0) FROM {versions}"))
        .fetch_one(&mut *tx)
        .await?;
    if current > LATEST_VERSION {
        return Err(MigrateError::TooNew { found: current });
    }
    // Rendered before the first await below: holding the migrations' `fn`
    // pointers across an await trips rustc's `Send` inference.
    let pending: Vec<(i32, &str, String)> = MIGRATIONS
        .iter()
        .filter(|m| m.version > current)
        .map(|m| (m.version, m.description, (m.sql)(names)))
        .collect();
    let record = format!("INSERT INTO {versions} (version, description) VALUES ($1, $2)");
    for (version, description, sql) in pending {
        tx.execute(sqlx::raw_sql(&sql)).await?;
        sqlx::query(&record)
            .bind(version)
            .bind(description)
            .execute(&mut *tx)
            .await?;
    }
    if repoint_notify_functions(&mut tx, names).await? {
        tracing::warn!(
            table = %names.qualified,
            channel = %names.channel,
            "the table's notify triggers named another channel (schema or table renamed?); they now notify this one"
        );
    }
    tx.commit().await?;
    Ok(())
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub(super) enum MigrateError {
    #[error(
        "the table's schema is at version {found}, newer than the {LATEST_VERSION} this library \
         knows: upgrade datahub-access-tokens"
    )]
    TooNew { found: i32 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_quoted() {
        let n = Names::new("tenant_1", "tokens").unwrap();
        assert_eq!(n.qualified, "\"tenant_1\".\"tokens\"");
        assert_eq!(n.channel, "tenant_1.tokens");
        for bad in ["", "Tokens", "1tokens", "tok-ens", "tok\"ens", "tokens;drop"] {
            let err = Names::new("public", bad).unwrap_err().to_string();
            assert!(err.contains("PostgreSQL table name"), "{bad}: {err}");
        }
        assert!(Names::new("public", &"t".repeat(41)).is_err());
        assert!(Names::new(&"s".repeat(64), "tokens").is_err());
        let long = Names::new(&"s".repeat(63), "tokens").unwrap();
        assert!(long.channel.starts_with("datahub_tokens_") && long.channel.len() <= 63);
        assert_ne!(long.lock_key(), n.lock_key());
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=LATEST_VERSION).collect::<Vec<_>>());
    }
}
