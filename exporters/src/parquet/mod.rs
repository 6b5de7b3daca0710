//! `parquet`: archives traces and logs as Parquet files on a local disk or
//! S3 (MinIO works), under `<root>/<signal>/date=YYYY-MM-DD/hour=HH/<uuid>.parquet`.
//! Rows collect in an open file per signal, built in memory; the file is
//! rolled at `max_file_size_mib` or `max_file_age` and written whole, with
//! one put: a file is complete and readable, or not there (the local store
//! writes a staging file and renames it, S3 completes the object at once).

mod config;
mod schema;
mod traces;
mod upload;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use parquet::basic::ZstdLevel;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use pipeline::component::{parse_config, ConfigError, Context};
use pipeline::{Batch, BoxConsumer, Signal};
use rand::Rng;
use tokio::sync::Mutex;

pub use config::{Compression, ParquetConfig, S3Config};
pub use parquet::basic::Compression as Codec;
pub use schema::logs;
pub use traces::spans;

use crate::engine::{self, ExportError, Exporter, Sent};
use crate::{ExporterBuilder, ExporterFactory};
use upload::{Finished, Uploads};

/// Finished files kept for another upload try when the store refuses
/// them; beyond this, new data is refused (retryable) until they land.
const MAX_PENDING: usize = 4;

/// How long shutdown keeps retrying refused files (on their backoff)
/// before it gives them up: inside a pod's usual 30 s grace period.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(20);

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "parquet",
        signals: &[Signal::Traces, Signal::Logs],
        parse: |v| Ok(Arc::new(parse_config::<ParquetConfig>(v)?)),
    }
}

fn store(cfg: &ParquetConfig) -> Result<(Arc<dyn ObjectStore>, Path), ConfigError> {
    let err = |e: &dyn std::fmt::Display| ConfigError::new("endpoint", e.to_string());
    if let Some(rest) = cfg.endpoint.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = &cfg.s3;
        let mut b = object_store::aws::AmazonS3Builder::from_env();
        // Client options replace those read from the environment, so they
        // go first and only when `s3.tls` asks for something.
        if s3.tls != Default::default() {
            let mut client = object_store::ClientOptions::new()
                .with_allow_invalid_certificates(s3.tls.insecure_skip_verify);
            if let Some(ca) = &s3.tls.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    ConfigError::new("s3.tls.ca_file", format!("cannot read {ca}: {e}"))
                })?;
                for c in object_store::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| ConfigError::new("s3.tls.ca_file", e.to_string()))?
                {
                    client = client.with_root_certificate(c);
                }
            }
            b = b.with_client_options(client);
        }
        b = b
            .with_url(format!("s3://{bucket}"))
            .with_allow_http(s3.allow_http);
        if let Some(v) = &s3.region {
            b = b.with_region(v);
        }
        if let Some(v) = &s3.endpoint {
            b = b.with_endpoint(v);
        }
        if let Some(v) = &s3.access_key_id {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = &s3.secret_access_key {
            b = b.with_secret_access_key(v.expose());
        }

        let s = b.build().map_err(|e| err(&e))?;
        return Ok((Arc::new(s), Path::from(prefix)));
    }
    std::fs::create_dir_all(&cfg.endpoint)
        .map_err(|e| err(&format!("creating {}: {e}", cfg.endpoint)))?;
    let s = object_store::local::LocalFileSystem::new_with_prefix(&cfg.endpoint)
        .map_err(|e| err(&e))?;
    Ok((Arc::new(s), Path::default()))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A random (version 4) UUID in its usual text form.
fn uuid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = pipeline::wire::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
    opened: Instant,
    path: Path,
}

struct Archive {
    id: String,
    uploads: Uploads,
    prefix: Path,
    props: WriterProperties,
    max_bytes: usize,
    max_age: Duration,
    /// The open file of traces and of logs.
    open: [Mutex<Option<OpenFile>>; 2],
}

fn slot(s: Signal) -> usize {
    usize::from(s == Signal::Logs)
}

impl Archive {
    fn path(&self, signal: Signal) -> Path {
        let t = crate::time::utc(now_ns());
        let name = format!(
            "{}/date={:04}-{:02}-{:02}/hour={:02}/{}.parquet",
            signal.as_str(),
            t.year,
            t.month,
            t.day,
            t.hour,
            uuid()
        );
        self.prefix
            .parts()
            .chain(Path::from(name).parts())
            .collect()
    }

    /// Closes the open file of `signal` if it is due (or `force`).
    async fn roll(&self, signal: Signal, force: bool) -> Result<(), ExportError> {
        let done = {
            let mut open = self.open[slot(signal)].lock().await;
            let due = open.as_ref().is_some_and(|f| {
                force
                    || f.opened.elapsed() >= self.max_age
                    || f.writer.bytes_written() + f.writer.in_progress_size() >= self.max_bytes
            });
            if !due {
                return Ok(());
            }
            let f = open.take().expect("due");
            let bytes = f
                .writer
                .into_inner()
                .map_err(|e| ExportError::Permanent(format!("finishing a parquet file: {e}")))?;
            Finished::new(f.path, bytes.into(), f.rows)
        };
        self.uploads.put(done).await;
        Ok(())
    }

    async fn append(&self, signal: Signal, rows: RecordBatch) -> Result<(), ExportError> {
        let failed = |e: &dyn std::fmt::Display| ExportError::Permanent(format!("parquet: {e}"));
        {
            let mut open = self.open[slot(signal)].lock().await;
            if open.is_none() {
                // Reserved up front: growing a 64 MiB Vec copies it again and
                // again (untouched capacity is not resident memory).
                let out = Vec::with_capacity(self.max_bytes + (1 << 20));
                let writer = ArrowWriter::try_new(out, rows.schema(), Some(self.props.clone()))
                    .map_err(|e| failed(&e))?;
                *open = Some(OpenFile {
                    writer,
                    rows: 0,
                    opened: Instant::now(),
                    path: self.path(signal),
                });
            }
            let f = open.as_mut().expect("opened");
            f.writer.write(&rows).map_err(|e| failed(&e))?;
            f.rows += rows.num_rows();
        }
        self.roll(signal, false).await
    }
}

#[async_trait]
impl Exporter for Archive {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        if !self.uploads.retry_due().await && self.uploads.waiting().await >= MAX_PENDING {
            return Err(ExportError::Retryable(format!(
                "the object store refuses writes; {MAX_PENDING} finished files are waiting"
            )));
        }
        let mut skipped = Sent::default();
        let rows = match batch.signal {
            Signal::Traces => spans(batch),
            Signal::Logs => {
                let decoded = batch.decode_logs_each();
                skipped.rejected = decoded.skipped_items;
                skipped.message = decoded.skipped_message().unwrap_or_default();
                logs(&decoded.request)
            }
            Signal::Metrics => {
                return Err(ExportError::Permanent(
                    "metrics are not archived to parquet".into(),
                ))
            }
        }
        .map_err(|e| ExportError::Permanent(format!("building rows: {e}")))?;
        self.append(batch.signal, rows).await?;
        Ok(skipped)
    }

    async fn shutdown(&self) {
        for s in [Signal::Traces, Signal::Logs] {
            if let Err(e) = self.roll(s, true).await {
                tracing::error!(exporter = %self.id, error = %e, "closing the open parquet file failed; its rows are lost");
            }
        }
        self.uploads.drain(SHUTDOWN_BUDGET).await;
    }
}

/// Rolls files that reached their age while no data arrives.
async fn age_out(archive: Weak<Archive>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(a) = archive.upgrade() else { return };
        for s in [Signal::Traces, Signal::Logs] {
            let _ = a.roll(s, false).await;
        }
        a.uploads.retry_due().await;
    }
}

/// Columns whose values are nearly all distinct: interning random ids and
/// timestamps only to give the dictionary up took a fifth of the write.
const NO_DICTIONARY: [&str; 8] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "start_time",
    "end_time",
    "duration_ns",
    "time",
    "observed_time",
];

/// Text columns no reader prunes by range: their min/max compared every
/// row's value (the resource JSON, every attribute) and cost a sixth of the
/// exporter's time in a profile of the e2e bench.
pub const NO_STATISTICS: [&[&str]; 9] = [
    &["resource_attributes"],
    &["attributes", "entries", "keys"],
    &["attributes", "entries", "values"],
    &["events"],
    &["links"],
    &["trace_state"],
    &["status_message"],
    &["scope_version"],
    &["body"],
];

/// Compression, and neither dictionary nor statistics where they cost
/// without paying back.
pub fn writer_properties(codec: Codec) -> WriterProperties {
    let mut b = WriterProperties::builder().set_compression(codec);
    for c in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    for c in NO_STATISTICS {
        let path = ColumnPath::new(c.iter().map(|p| p.to_string()).collect());
        b = b.set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    b.build()
}

impl ExporterBuilder for ParquetConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        let (store, prefix) = store(self)?;
        let codec = match self.compression {
            Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
            Compression::Snappy => Codec::SNAPPY,
            Compression::None => Codec::UNCOMPRESSED,
        };
        let archive = Arc::new(Archive {
            id: ctx.id.clone(),
            uploads: Uploads {
                id: ctx.id.clone(),
                store,
                timeout: self.timeout,
                retry: self.retry_on_failure.clone(),
                pending: Mutex::new(Vec::new()),
                files: ctx.metrics.counter(
                    "observatory_exporter_parquet_files_total",
                    "Parquet files written to the archive.",
                    &[("exporter", &ctx.id)],
                ),
                dropped: ctx.metrics.counter(
                    "observatory_exporter_parquet_rows_dropped_total",
                    "Rows in files the store kept refusing until retry_on_failure gave up (or shutdown ended).",
                    &[("exporter", &ctx.id)],
                ),
            },
            prefix,
            props: writer_properties(codec),
            max_bytes: (self.max_file_size_mib << 20) as usize,
            max_age: self.max_file_age,
            open: [Mutex::new(None), Mutex::new(None)],
        });
        let every =
            (self.max_file_age / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(age_out(Arc::downgrade(&archive), every));
        engine::start(ctx, self.engine(), archive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use pipeline::generate::{Generator, GeneratorOptions};
    use prost::Message;

    /// Statistics stay where readers prune (names, times, service) and are
    /// gone from the columns listed in NO_STATISTICS, whose paths must name
    /// real leaf columns for the setting to take effect.
    #[test]
    fn statistics_only_on_pruning_columns() {
        let req = Generator::new(GeneratorOptions::default()).spans(64);
        let batch = Batch::parse(Signal::Traces, req.encode_to_vec().into()).unwrap();
        let rows = spans(&batch).unwrap();
        let props = writer_properties(Codec::UNCOMPRESSED);
        let mut w = ArrowWriter::try_new(Vec::new(), rows.schema(), Some(props)).unwrap();
        w.write(&rows).unwrap();
        let file = bytes::Bytes::from(w.into_inner().unwrap());
        let reader = SerializedFileReader::new(file).unwrap();
        let group = reader.metadata().row_group(0);
        let stats = |path: &[&str]| {
            let want = ColumnPath::new(path.iter().map(|p| p.to_string()).collect());
            let col = (0..group.num_columns())
                .map(|i| group.column(i))
                .find(|c| *c.column_path() == want)
                .unwrap_or_else(|| panic!("no column {want}"));
            col.statistics()
                .is_some_and(|s| s.min_bytes_opt().is_some())
        };
        for path in NO_STATISTICS.iter().filter(|p| p[0] != "body") {
            assert!(!stats(path), "{path:?} has statistics");
        }
        for path in [&["name"][..], &["service_name"], &["start_time"]] {
            assert!(stats(path), "{path:?} lost its statistics");
        }
    }
}
