//! Creating the schema at start: versioned, idempotent migrations (the SQL
//! files in `migrations/`, recorded in `<schema>.schema_migrations` and run
//! under an advisory lock so several collectors can start at once), then
//! TimescaleDB's hypertables, compression, retention and rollups when the
//! extension is there (hypertables only on its Apache-2 edition); on plain
//! PostgreSQL, the rollups as ordinary views.

use sqlx::{Executor, PgPool};

use super::config::TimescaleSettings;

/// Every migration, in order: (version, name, SQL with `{schema}`).
pub const MIGRATIONS: [(i32, &str, &str); 2] = [
    (1, "metrics", include_str!("migrations/0001_metrics.sql")),
    (
        2,
        "llm_calls",
        include_str!("migrations/0002_llm_calls.sql"),
    ),
];

/// The advisory lock every Observatory takes while migrating ("obsmig").
const LOCK_KEY: i64 = 0x6f62_736d_6967;

/// The tables that become hypertables.
pub const TABLES: [&str; 6] = [
    "metric_gauge",
    "metric_sum",
    "metric_histogram",
    "metric_exp_histogram",
    "metric_summary",
    "llm_calls",
];

/// Whether TimescaleDB is in use after [`setup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Hypertables and continuous aggregates.
    Timescale,
    /// The same tables on plain PostgreSQL.
    Postgres,
}

/// Why setup failed: `Retry` when the database could not be reached.
#[derive(Debug)]
pub enum SetupError {
    /// Not reachable now (down, restarting): try again later.
    Retry(String),
    /// The database answered, and the answer rules this config out.
    Fatal(String),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Retry(m) | SetupError::Fatal(m) => f.write_str(m),
        }
    }
}

fn classify(e: sqlx::Error) -> SetupError {
    if super::copy::retryable(&e) {
        SetupError::Retry(format!("database not reachable: {e}"))
    } else {
        SetupError::Fatal(e.to_string())
    }
}

/// An interval literal PostgreSQL reads (`'86400 seconds'`).
fn interval(d: std::time::Duration) -> String {
    format!("INTERVAL '{} seconds'", d.as_secs())
}

/// Applies the migrations not yet recorded; returns the versions applied.
pub async fn migrate(pool: &PgPool, schema: &str) -> Result<Vec<i32>, SetupError> {
    let mut tx = pool.begin().await.map_err(classify)?;
    // Concurrent starts take turns.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    tx.execute(
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())"
        )
        .as_str(),
    )
    .await
    .map_err(classify)?;
    let done: Vec<i32> =
        sqlx::query_scalar(&format!("SELECT version FROM {schema}.schema_migrations"))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        tx.execute(sql.replace("{schema}", schema).as_str())
            .await
            .map_err(|e| SetupError::Fatal(format!("migration {version} ({name}): {e}")))?;
        sqlx::query(&format!(
            "INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"
        ))
        .bind(version)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        applied.push(version);
    }
    tx.commit().await.map_err(classify)?;
    Ok(applied)
}

/// The rollup query for one bucket width.
fn rollup(schema: &str, unit: &str) -> String {
    format!(
        "SELECT time_bucket(INTERVAL '1 {unit}', time) AS bucket, service, model,
                count(*) AS calls,
                sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                sum(cost_usd) AS cost_usd,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms
         FROM {schema}.llm_calls GROUP BY 1, 2, 3"
    )
}

/// The rollups: view name and bucket unit (one bucket wide).
const ROLLUPS: [(&str, &str); 2] = [("llm_calls_1m", "minute"), ("llm_calls_1h", "hour")];

/// Plain PostgreSQL has no `time_bucket`; this one truncates to the width.
fn time_bucket_fn(schema: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {schema}.time_bucket(width interval, ts timestamptz)
         RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
         $$ SELECT to_timestamp(floor(extract(epoch FROM ts) / extract(epoch FROM width)) * extract(epoch FROM width)) $$"
    )
}

/// The rollups as ordinary views, bucketed by the extension's
/// `time_bucket` or, without it, by one defined in the schema.
async fn plain_rollups(
    pool: &PgPool,
    schema: &str,
    extension: bool,
    rollups: &[(&str, &str)],
) -> Result<(), SetupError> {
    let mut sql = if extension {
        String::new()
    } else {
        time_bucket_fn(schema) + ";"
    };
    for (view, unit) in rollups {
        let mut query = rollup(schema, unit);
        if !extension {
            query = query.replace("time_bucket(", &format!("{schema}.time_bucket("));
        }
        sql += &format!("CREATE OR REPLACE VIEW {schema}.{view} AS {query};");
    }
    pool.execute(sql.as_str()).await.map_err(classify)?;
    Ok(())
}

/// Sets up TimescaleDB's parts when the extension is available; otherwise
/// plain views for the rollups (or an error with `require`).
pub async fn setup(
    pool: &PgPool,
    schema: &str,
    ts: &TimescaleSettings,
    require: bool,
) -> Result<Flavour, SetupError> {
    let available: Option<String> = sqlx::query_scalar(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'",
    )
    .fetch_optional(pool)
    .await
    .map_err(classify)?;
    let created = match available {
        None => Err("the timescaledb extension is not installed on this server".to_string()),
        Some(_) => pool
            .execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            .await
            .map(|_| ())
            .map_err(|e| format!("CREATE EXTENSION timescaledb failed: {e}")),
    };
    if let Err(why) = created {
        if require {
            return Err(SetupError::Fatal(format!(
                "{why} (require_timescaledb: true)"
            )));
        }
        tracing::warn!(schema, "{why}: using plain PostgreSQL tables, without hypertables, compression, retention or continuous aggregates");
        if ts.continuous_aggregates {
            plain_rollups(pool, schema, false, &ROLLUPS).await?;
        }
        return Ok(Flavour::Postgres);
    }
    // The Apache-2 edition (Debian's package, some clouds) has hypertables
    // but refuses compression, policies and continuous aggregates.
    let license: Option<String> =
        sqlx::query_scalar("SELECT current_setting('timescaledb.license', true)")
            .fetch_one(pool)
            .await
            .map_err(classify)?;
    let community = license.as_deref() != Some("apache");
    if !community {
        let lacking: Vec<&str> = [
            (!ts.compress_after.is_zero(), "compression (compress_after)"),
            (!ts.retention.is_zero(), "retention policies (retention)"),
            (
                ts.continuous_aggregates,
                "continuous aggregates (the rollups are ordinary views)",
            ),
        ]
        .into_iter()
        .filter_map(|(set, what)| set.then_some(what))
        .collect();
        if !lacking.is_empty() {
            tracing::warn!(schema, "timescaledb.license is apache: hypertables only; {} need the Community edition (timescaledb.license = timescale)", lacking.join(", "));
        }
    }
    for t in TABLES {
        let q = format!(
            "SELECT create_hypertable('{schema}.{t}', 'time', chunk_time_interval => {}, if_not_exists => TRUE, migrate_data => TRUE)",
            interval(ts.chunk_time_interval)
        );
        pool.execute(q.as_str()).await.map_err(classify)?;
        if !community {
            continue;
        }
        if !ts.compress_after.is_zero() {
            let segment = if t == "llm_calls" {
                "service, model"
            } else {
                "metric"
            };
            let q = format!(
                "ALTER TABLE {schema}.{t} SET (timescaledb.compress, timescaledb.compress_segmentby = '{segment}');
                 SELECT add_compression_policy('{schema}.{t}', {}, if_not_exists => TRUE)",
                interval(ts.compress_after)
            );
            pool.execute(q.as_str()).await.map_err(classify)?;
        }
        if !ts.retention.is_zero() {
            let q = format!(
                "SELECT add_retention_policy('{schema}.{t}', {}, if_not_exists => TRUE)",
                interval(ts.retention)
            );
            pool.execute(q.as_str()).await.map_err(classify)?;
        }
    }
    if ts.continuous_aggregates && !community {
        plain_rollups(pool, schema, true, &ROLLUPS).await?;
    } else if ts.continuous_aggregates {
        for (view, unit) in ROLLUPS {
            // A plain view left from a run without the extension goes first.
            let q = format!(
                "DO $$ BEGIN
                   IF EXISTS (SELECT 1 FROM pg_views WHERE schemaname = '{schema}' AND viewname = '{view}') THEN
                     EXECUTE 'DROP VIEW {schema}.{view}';
                   END IF;
                 END $$;
                 CREATE MATERIALIZED VIEW IF NOT EXISTS {schema}.{view} WITH (timescaledb.continuous) AS {} WITH NO DATA;
                 SELECT add_continuous_aggregate_policy('{schema}.{view}', start_offset => INTERVAL '3 {unit}', end_offset => INTERVAL '1 {unit}', schedule_interval => INTERVAL '1 {unit}', if_not_exists => TRUE)",
                rollup(schema, unit),
            );
            if let Err(e) = pool.execute(q.as_str()).await {
                // The dashboard still needs the rollup: as a plain view.
                tracing::warn!(schema, view, error = %e, "continuous aggregate not created; the rollup is an ordinary view");
                plain_rollups(pool, schema, true, &[(view, unit)]).await?;
            }
        }
    }
    Ok(Flavour::Timescale)
}
