//! `filelog` (also `file_log`): tails files, as otelcol-contrib's receiver
//! does for the common cases: globs, `start_at`, fingerprints across
//! rotation, checkpointed offsets, gzip files, and an operator chain.
//! Each poll's new lines become one logs request; offsets move on only
//! once the pipeline took it, so a refusal (back-pressure) re-reads them
//! at the next poll and nothing is lost.

mod chain;
mod checkpoint;
mod config;
mod expr;
mod field;
mod files;
mod glob;
mod operators;
mod otlp;
mod timefmt;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pipeline::component::{parse_config, ConfigError, Context};
use pipeline::telemetry::Counter;
use pipeline::{Batch, ConsumeError, Signal};
use tokio::task::JoinHandle;

pub use config::FilelogConfig;
use field::Entry;
use files::{Cutting, Known, Tracker};

use operators::OnError;

use super::{ReceiverBuilder, ReceiverFactory, ReceiverMetrics, SignalConsumers, Stop};

/// The registry entries: otelcol's older and newer names.
pub fn factories() -> [ReceiverFactory; 2] {
    let parse: fn(serde_yaml::Value) -> Result<Arc<dyn ReceiverBuilder>, ConfigError> =
        |v| Ok(Arc::new(parse_config::<FilelogConfig>(v)?));
    [
        ReceiverFactory {
            type_name: "filelog",
            signals: &[Signal::Logs],
            parse,
        },
        ReceiverFactory {
            type_name: "file_log",
            signals: &[Signal::Logs],
            parse,
        },
    ]
}

/// Entries sent in one request at most: a backlog goes out in parts.
const MAX_ENTRIES: usize = 8192;

/// What one receiver runs with.
struct Reader {
    id: String,
    cfg: FilelogConfig,
    include: Vec<glob::Glob>,
    exclude: Vec<glob::Glob>,
    chain: chain::Chain,
    cutting: Cutting,
    checkpoint: Option<checkpoint::Checkpoint>,
    metrics: ReceiverMetrics,
    cut: Counter,
    op_errors: Vec<Counter>,
}

/// What a poll read, waiting to be taken by the pipeline.
struct Pending {
    entries: Vec<Entry>,
    /// (index in the tracker, offset once taken).
    moves: Vec<(usize, u64)>,
    /// gzip files read whole: (index, compressed size).
    done: Vec<(usize, u64)>,
}

impl Reader {
    fn matched(&self) -> Vec<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
        for g in &self.include {
            paths.extend(g.files());
        }
        paths
            .into_iter()
            .filter(|p| !self.exclude.iter().any(|g| g.matches(p)))
            .collect()
    }

    /// Finds the files and reads what is new in each (blocking I/O), then
    /// what is left in files renamed out of sight since the last poll.
    fn poll(&self, t: &mut Tracker, first: bool, now: Instant) -> Pending {
        t.age();
        let mut out = Pending {
            entries: Vec::new(),
            moves: Vec::new(),
            done: Vec::new(),
        };
        let gz = self.cfg.compression == "gzip";
        for path in self
            .matched()
            .into_iter()
            .take(self.cfg.max_concurrent_files)
        {
            let fp = match files::fingerprint(&path, self.cfg.fingerprint_size) {
                Ok(fp) if !fp.is_empty() => fp,
                // Empty files wait until they have a fingerprint.
                _ => continue,
            };
            let i = match t.find(&fp) {
                Some(i) => {
                    let k = &mut t.known[i];
                    if k.fingerprint.len() < fp.len() {
                        k.fingerprint = fp;
                    }
                    k.unseen = 0;
                    i
                }
                None => {
                    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                    // Only files there at start-up are skipped to their end.
                    let offset = if first && !self.cfg.from_beginning() && !gz {
                        len
                    } else {
                        0
                    };
                    t.known.push(Known::new(fp, path.clone(), offset));
                    t.known.len() - 1
                }
            };
            let k = &mut t.known[i];
            k.path = path.clone();
            if !gz {
                if let Err(e) = k.follow(&path) {
                    tracing::warn!(receiver = %self.id, path = %path.display(), error = %e, "cannot open file");
                    continue;
                }
            }
            self.read(t, i, true, now, &mut out);
        }
        if !gz {
            for i in 0..t.known.len() {
                if t.known[i].unseen > 0 && t.known[i].file.is_some() {
                    self.read(t, i, false, now, &mut out);
                }
            }
        }
        // What recombine held long enough goes out.
        self.chain
            .tick(now, &mut out.entries, &mut |step, err, on_error| {
                self.failed(step, err, on_error)
            });
        out
    }

    /// Reads file `i` of `t` into `out`, unless `out` is full.
    fn read(&self, t: &mut Tracker, i: usize, seen: bool, now: Instant, out: &mut Pending) {
        if out.entries.len() >= MAX_ENTRIES {
            return;
        }
        let k = &mut t.known[i];
        let read = if self.cfg.compression == "gzip" {
            files::read_gzip(k, self.cutting, now).map(|(r, len)| {
                out.done.push((i, len));
                r
            })
        } else {
            files::read_plain(k, self.cutting, now, seen)
        };
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(receiver = %self.id, path = %k.path.display(), error = %e, "cannot read file");
                return;
            }
        };
        self.cut.add(read.cut);
        if read.consumed != k.offset {
            out.moves.push((i, read.consumed));
        }
        let path = k.path.clone();
        for line in read.lines {
            self.entry(line, &path, now, &mut out.entries);
        }
    }

    /// A line through the operators, into `out` (none if an operator
    /// dropped it or `recombine` holds it).
    fn entry(&self, line: String, path: &std::path::Path, now: Instant, out: &mut Vec<Entry>) {
        let mut e = Entry {
            body: serde_json::Value::String(line),
            ..Default::default()
        };
        if self.cfg.include_file_name {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            e.attributes.insert("log.file.name".into(), name.into());
        }
        if self.cfg.include_file_path {
            e.attributes
                .insert("log.file.path".into(), path.display().to_string().into());
        }
        for (k, v) in &self.cfg.attributes {
            e.attributes
                .insert(yaml_key(k), serde_json::to_value(v).unwrap_or_default());
        }
        for (k, v) in &self.cfg.resource {
            e.resource
                .insert(yaml_key(k), serde_json::to_value(v).unwrap_or_default());
        }
        self.chain.run(e, now, out, &mut |step, err, on_error| {
            self.failed(step, err, on_error)
        });
    }

    /// Counts (and, unless quiet, logs) an operator's failure.
    fn failed(&self, step: usize, err: &str, on_error: OnError) {
        self.op_errors[step].add(1);
        let op = &self.chain.names[step];
        match on_error {
            OnError::Send => {
                tracing::warn!(receiver = %self.id, operator = %op, error = %err, "operator failed; the entry goes on as the operator left it")
            }
            OnError::Drop => {
                tracing::warn!(receiver = %self.id, operator = %op, error = %err, "operator failed; the entry is dropped")
            }
            OnError::SendQuiet | OnError::DropQuiet => {}
        }
    }
}

fn yaml_key(k: &serde_yaml::Value) -> String {
    match k {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

#[async_trait]
impl ReceiverBuilder for FilelogConfig {
    async fn start(
        &self,
        consumers: SignalConsumers,
        ctx: &Context,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String> {
        let Some(next) = consumers.get(Signal::Logs).cloned() else {
            return Ok(Vec::new());
        };
        let checkpoint = match &self.storage {
            None => None,
            Some(id) => {
                let spec = ctx.storage.get(id).ok_or_else(|| {
                    format!("storage: extension {id:?} is not defined or not listed in service.extensions")
                })?;
                Some(checkpoint::Checkpoint::new(spec, &ctx.id)?)
            }
        };
        let chain = self.chain().map_err(|e| e.to_string())?;
        let id = ctx.id.as_str();
        let reader = Arc::new(Reader {
            id: ctx.id.clone(),
            include: self
                .include
                .iter()
                .map(|g| glob::Glob::new(g).expect("validated"))
                .collect(),
            exclude: self
                .exclude
                .iter()
                .map(|g| glob::Glob::new(g).expect("validated"))
                .collect(),
            cutting: Cutting {
                max_log_size: self.max_log_size,
                force_flush: self.force_flush_period,
                ascii: self.encoding.eq_ignore_ascii_case("ascii"),
                keep_leading: self.preserve_leading_whitespaces,
                keep_trailing: self.preserve_trailing_whitespaces,
            },
            metrics: ReceiverMetrics::new(&ctx.metrics, id, "file"),
            cut: ctx.metrics.counter(
                "observatory_receiver_filelog_truncated_lines_total",
                "Lines longer than max_log_size, sent as several entries.",
                &[("receiver", id)],
            ),
            op_errors: chain
                .names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    ctx.metrics.counter(
                        "observatory_receiver_filelog_operator_errors_total",
                        "Entries an operator failed on (then sent on or dropped per on_error).",
                        &[("receiver", id), ("operator", &format!("{i}:{name}"))],
                    )
                })
                .collect(),
            chain,
            checkpoint,
            cfg: self.clone(),
        });
        let mut tracker = Tracker::default();
        let restored = match &reader.checkpoint {
            Some(c) => c.load()?,
            None => Vec::new(),
        };
        // Files known from a checkpoint continue where they stopped, so
        // start_at only applies to files never seen.
        let first = restored.is_empty();
        tracker.known = restored;
        let files = tracker.known.len();
        tracing::info!(receiver = %reader.id, include = ?self.include, restored = files, "reading files");
        Ok(vec![tokio::spawn(run(reader, tracker, first, next, stop))])
    }
}

async fn run(
    reader: Arc<Reader>,
    mut tracker: Tracker,
    mut first: bool,
    next: pipeline::BoxConsumer,
    stop: Stop,
) {
    let interval = reader.cfg.poll_interval;
    loop {
        let r = reader.clone();
        let polled = tokio::task::spawn_blocking(move || {
            let p = r.poll(&mut tracker, first, Instant::now());
            (tracker, p)
        })
        .await;
        let Ok((t, pending)) = polled else {
            tracing::error!(receiver = %reader.id, "a poll panicked; the receiver stops");
            return;
        };
        tracker = t;
        first = false;
        let more = pending.entries.len() >= MAX_ENTRIES;
        let taken = if pending.entries.is_empty() {
            true
        } else {
            // Encoded here from entries, so it needs no second validation.
            let items = pending.entries.len();
            let request = pipeline::batch::Request {
                bytes: otlp::encode(pending.entries).into(),
                items,
                index: None,
                client: None,
            };
            match reader
                .metrics
                .deliver(&next, Batch::new(Signal::Logs, request))
                .await
            {
                Ok(()) => true,
                Err(ConsumeError::Permanent(why)) => {
                    tracing::error!(receiver = %reader.id, %why, entries = items, "the pipeline refused these lines for good; they are skipped");
                    true
                }
                Err(_) => false,
            }
        };
        if taken {
            for (i, offset) in pending.moves {
                if let Some(k) = tracker.known.get_mut(i) {
                    k.offset = offset;
                }
            }
            // A gzip file is read whole: once taken, it is done.
            for (i, len) in pending.done {
                if let Some(k) = tracker.known.get_mut(i) {
                    k.done_len = len;
                }
            }
            if let Some(c) = &reader.checkpoint {
                if let Err(e) = c.save(&tracker.known) {
                    tracing::error!(receiver = %reader.id, error = %e, "cannot write the offsets checkpoint");
                }
            }
        }
        // A backlog is read on at once; otherwise wait for the next poll.
        let wait = if taken && more {
            Duration::ZERO
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.clone().wait() => return,
        }
    }
}
