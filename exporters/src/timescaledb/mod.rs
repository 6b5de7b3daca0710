//! `timescaledb`: writes metric points, and one `llm_calls` row per GenAI
//! span, to PostgreSQL with COPY. The schema is created at start by
//! versioned migrations; with the TimescaleDB extension the tables become
//! hypertables with compression, retention and continuous aggregates.
//! A database that is down or restarting is retried (the batch is written
//! in one transaction, so a retry never duplicates part of it); a row the
//! database refuses is counted and skipped, the rest of its batch lands.

mod config;
mod copy;
mod llm_calls;
mod points;
mod rows;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline::component::{parse_config, ConfigError, Context};
use pipeline::{Batch, BoxConsumer, Signal};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::OnceCell;

pub use config::{TimescaleConfig, TimescaleSettings};
pub use rows::Rows;
pub use schema::{Flavour, MIGRATIONS};

use crate::engine::{self, ExportError, Exporter, Sent};
use crate::{ExporterBuilder, ExporterFactory};

/// How long the start waits for the database before deferring the setup
/// to the first export.
const START_WAIT: Duration = Duration::from_secs(5);

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "timescaledb",
        signals: &[Signal::Metrics, Signal::Traces],
        parse: |v| Ok(Arc::new(parse_config::<TimescaleConfig>(v)?)),
    }
}

struct Timescale {
    pool: PgPool,
    cfg: TimescaleConfig,
    ready: OnceCell<Flavour>,
}

impl Timescale {
    async fn setup(&self) -> Result<Flavour, schema::SetupError> {
        let schema = &self.cfg.schema;
        let applied = schema::migrate(&self.pool, schema).await?;
        if !applied.is_empty() {
            tracing::info!(schema, ?applied, "database migrations applied");
        }
        schema::setup(
            &self.pool,
            schema,
            &self.cfg.timescaledb,
            self.cfg.require_timescaledb,
        )
        .await
    }

    async fn ready(&self) -> Result<Flavour, ExportError> {
        self.ready
            .get_or_try_init(|| self.setup())
            .await
            .copied()
            .map_err(|e| match e {
                schema::SetupError::Retry(m) => ExportError::Retryable(m),
                schema::SetupError::Fatal(m) => {
                    ExportError::Permanent(format!("creating the schema: {m}"))
                }
            })
    }
}

impl ExporterBuilder for TimescaleConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        let opts: PgConnectOptions = self.connect_options()?;
        let pool = PgPoolOptions::new()
            .max_connections(self.pool_size)
            .acquire_timeout(self.timeout)
            .connect_lazy_with(opts);
        let exporter = Arc::new(Timescale {
            pool,
            cfg: self.clone(),
            ready: OnceCell::new(),
        });
        // Set up now, so a database that rules this config out (say,
        // require_timescaledb on plain PostgreSQL) stops the start.
        let handle = tokio::runtime::Handle::current();
        let first = tokio::task::block_in_place(|| {
            handle.block_on(tokio::time::timeout(START_WAIT, exporter.ready()))
        });
        match first {
            Ok(Ok(flavour)) => {
                tracing::info!(exporter = %ctx.id, schema = %self.schema, ?flavour, "database ready")
            }
            Ok(Err(ExportError::Permanent(m))) => return Err(ConfigError::new("endpoint", m)),
            Ok(Err(e)) => {
                tracing::warn!(exporter = %ctx.id, error = %e, "database not reachable at start; the schema is created at the first export")
            }
            Err(_) => {
                tracing::warn!(exporter = %ctx.id, "database did not answer within 5s at start; the schema is created at the first export")
            }
        }
        engine::start(ctx, self.engine(), exporter)
    }
}

fn classify(e: sqlx::Error) -> ExportError {
    if copy::retryable(&e) {
        ExportError::Retryable(format!("database: {e}"))
    } else {
        ExportError::Permanent(format!("database refused the batch: {e}"))
    }
}

#[async_trait]
impl Exporter for Timescale {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        self.ready().await?;
        let schema = &self.cfg.schema;
        let skipped: (usize, Option<String>);
        let bad = match batch.signal {
            Signal::Metrics => {
                // One request decoded at a time; only the rows accumulate.
                let mut p = points::Points::default();
                let d = batch.for_each_decoded(|r: ExportMetricsServiceRequest| p.add_request(&r));
                skipped = (d.skipped_items, d.skipped_message());
                let tables: Vec<(&str, &str, &Rows)> = points::COPY
                    .iter()
                    .zip(&p.0)
                    .map(|((t, c), r)| (*t, *c, r))
                    .collect();
                copy::write(&self.pool, schema, &tables).await
            }
            Signal::Traces => {
                let mut rows = Rows::default();
                // Requests carry their span index from intake: model calls
                // are found and read in place. One without an index (none
                // today) is decoded.
                let mut unindexed = Batch {
                    signal: batch.signal,
                    requests: Vec::new(),
                };
                for r in &batch.requests {
                    match &r.index {
                        Some(index) => llm_calls::add_rows_indexed(&r.bytes, index, &mut rows),
                        None => unindexed.requests.push(r.clone()),
                    }
                }
                let d = unindexed.for_each_decoded(|r: ExportTraceServiceRequest| {
                    llm_calls::add_rows(&r, &mut rows)
                });
                skipped = (d.skipped_items, d.skipped_message());
                copy::write(
                    &self.pool,
                    schema,
                    &[("llm_calls", llm_calls::COLUMNS, &rows)],
                )
                .await
            }
            Signal::Logs => {
                return Err(ExportError::Permanent(
                    "logs are not written to TimescaleDB".into(),
                ))
            }
        }
        .map_err(classify)?;
        let mut message = if bad > 0 {
            format!("{bad} rows refused by the database (see the warnings)")
        } else {
            String::new()
        };
        if let (_, Some(m)) = &skipped {
            message = if message.is_empty() {
                m.clone()
            } else {
                format!("{message}; {m}")
            };
        }
        Ok(Sent {
            rejected: bad + skipped.0,
            message,
        })
    }
}
