//! `loki`: pushes logs to Loki's native API, `POST /loki/api/v1/push`, as
//! snappy-compressed protobuf (or JSON). Labels come from a list of
//! attributes; the rest goes to structured metadata or into the line.
//! 429 and 5xx are retried (after `Retry-After` when given); a 400 (entries
//! too old, out of order, over limits) is counted and dropped, never retried.

mod config;
mod push;
mod streams;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pipeline::component::{parse_config, ConfigError, Context};
use pipeline::{Batch, BoxConsumer, Signal};

pub use config::{BasicAuth, Format, LineFormat, LokiConfig, DEFAULT_LABELS, PUSH_PATH};
pub use push::{json_body, protobuf_body};
pub use streams::{level, logfmt, names, sanitize, Entry, Names, Shaper, Stream, Text};

use crate::client::retry_after;
use crate::engine::{self, ExportError, Exporter, Sent};
use crate::{ExporterBuilder, ExporterFactory};

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "loki",
        signals: &[Signal::Logs],
        parse: |v| Ok(Arc::new(parse_config::<LokiConfig>(v)?)),
    }
}

impl ExporterBuilder for LokiConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            headers.insert(
                http::HeaderName::try_from(k.as_str()).expect("validated"),
                http::HeaderValue::try_from(v.as_str()).expect("validated"),
            );
        }
        if let Some(t) = &self.tenant_id {
            headers.insert("x-scope-orgid", t.parse().expect("validated"));
        }
        let target = self.url()?;
        let client = crate::tls::connect::http_client(&self.tls, &[&target], headers)?;
        let exporter = Loki {
            auth: crate::client::client_auth(self.auth.as_ref(), ctx)?,
            client,
            url: target.url,
            format: self.format,
            shaper: Shaper::new(self),
            basic_auth: self.basic_auth.clone(),
            bearer_token: self.bearer_token.clone(),
        };
        engine::start(ctx, self.engine(), Arc::new(exporter))
    }
}

struct Loki {
    auth: crate::client::ClientAuth,
    client: reqwest::Client,
    url: String,
    format: Format,
    shaper: Shaper,
    basic_auth: Option<BasicAuth>,
    bearer_token: Option<pipeline::secret::Secret>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[async_trait]
impl Exporter for Loki {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        let decoded = batch.decode_logs_each();
        let skipped = Sent {
            rejected: decoded.skipped_items,
            message: decoded.skipped_message().unwrap_or_default(),
        };
        let req = decoded.request;
        let names = names(&req);
        let streams = self.shaper.streams(&req, &names, now_ns());
        let (body, content_type) = match self.format {
            Format::Protobuf => (
                protobuf_body(&streams).map_err(ExportError::Permanent)?,
                "application/x-protobuf",
            ),
            Format::Json => (json_body(&streams), "application/json"),
        };
        let mut post = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some(a) = &self.basic_auth {
            post = post.basic_auth(&a.username, Some(a.password.expose()));
        }
        if let Some(t) = &self.bearer_token {
            post = post.bearer_auth(t.expose());
        }
        for (k, v) in crate::client::auth_headers(&self.auth, batch)? {
            post = post.header(k, v);
        }
        let resp = post
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::Retryable(format!("sending to Loki: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(skipped);
        }
        let after = retry_after(&resp);
        let detail = resp.text().await.unwrap_or_default();
        let message = format!("Loki answered HTTP {status}: {}", detail.trim());
        Err(match (status.as_u16(), after) {
            (429 | 500..=599, Some(after)) => ExportError::Throttled { after, message },
            (429 | 500..=599, None) => ExportError::Retryable(message),
            // 400: entries too old, out of order, or over a limit. Sending
            // them again cannot succeed.
            _ => ExportError::Permanent(message),
        })
    }
}
